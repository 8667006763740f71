//! The signed records, their canonical encoding and their bounds.
//!
//! ```text
//! record    = version:u8 kind:u8 issuer:[32] issued_at:varint expires:varint body sig:[64]
//! signed    = context(kind) ‖ every byte of the record before `sig`
//! root      body = name:str
//! registrar body = registrar:[32] scope:str
//! person    body = person:[16] n:varint (tag:str text:str){n, tags strictly ascending}
//!                  designation:str unit:str m:varint language:str{m, no repeats}
//! device    body = person:[16] device:[32] label:str
//! revocation body = target:(u8 [32|16]) effective_at:varint cert:(0 | 1 registrar-record:bytes)
//! wipe order body = revocation:bytes   (the same signer's revocation of the device to wipe)
//! role body  = org:[32] cert:(0 | 1 registrar-record:bytes) unit:str role:str
//!              n:varint (tag:str title:str){n, tags strictly ascending} holder:[16] from:varint
//! ```
//!
//! Decoding refuses unknown versions and kinds, oversized fields, control characters,
//! non-canonical orders and trailing bytes, then checks the signature: a decoded record is
//! authentic for its issuer key. Constructors sign and then decode their own encoding, so
//! the decoder is the one place the bounds live.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::identity::Identity;
use crate::ids::{DeviceId, OrgId, PersonId};

use super::{
    CredError, MAX_LABEL_BYTES, MAX_LANGUAGES, MAX_NAMES, MAX_RECORD_BYTES, MAX_TAG_BYTES,
    MAX_TEXT_BYTES, MAX_UNIT_BYTES, MAX_UNIT_SEGMENTS, VERSION,
};

const SIG: usize = 64;

/// The accessors every record struct shares: its `issued_at`, `expires` and `sig` fields.
macro_rules! common_fields {
    () => {
        fn issued_at(&self) -> u64 {
            self.issued_at
        }
        fn expires(&self) -> u64 {
            self.expires
        }
        fn sig(&self) -> &[u8; 64] {
            &self.sig
        }
        fn sig_mut(&mut self) -> &mut [u8; 64] {
            &mut self.sig
        }
    };
}

/// What every record has; the codec and signature are shared through it.
pub trait Record: Sized {
    /// The kind byte.
    const KIND: u8;
    /// Domain separation: prefixed to what is signed, never sent.
    const CONTEXT: &'static [u8];
    /// A name for errors ("person credential").
    const WHAT: &'static str;

    fn issuer_key(&self) -> [u8; 32];
    fn issued_at(&self) -> u64;
    fn expires(&self) -> u64;
    fn sig(&self) -> &[u8; 64];
    fn sig_mut(&mut self) -> &mut [u8; 64];
    fn write_body(&self, w: &mut Writer);
    /// The body, after the header; the signature is set by the caller.
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError>;

    /// Everything the signature covers except the context.
    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(VERSION)
            .u8(Self::KIND)
            .raw(&self.issuer_key())
            .varint(self.issued_at())
            .varint(self.expires());
        self.write_body(&mut w);
        w.into_vec()
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = self.signed_part();
        b.extend_from_slice(self.sig());
        b
    }

    /// Parses, checks every bound, then the signature.
    fn decode(bytes: &[u8]) -> Result<Self, CredError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge {
                what: Self::WHAT,
                len: bytes.len() as u64,
                max: MAX_RECORD_BYTES as u64,
            }
            .into());
        }
        if bytes.len() < SIG + 2 {
            return Err(DecodeError::Truncated(Self::WHAT).into());
        }
        let (body, sig) = bytes.split_at(bytes.len() - SIG);
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let kind = r.u8("record kind")?;
        if kind != Self::KIND {
            return Err(CredError::WrongKind {
                expected: Self::WHAT,
                found: kind,
            });
        }
        let issuer = r.array::<32>("issuer")?;
        let issued_at = r.varint("issued at")?;
        let expires = r.varint("expires")?;
        if expires < issued_at {
            return Err(CredError::ExpiresBeforeIssue { record: Self::WHAT });
        }
        let h = Header {
            issuer,
            issued_at,
            expires,
        };
        let mut rec = Self::read_body(h, &mut r)?;
        r.finish()?;
        rec.sig_mut().copy_from_slice(sig);
        rec.check_signature()?;
        Ok(rec)
    }

    /// Strict Ed25519 over the context and the signed part.
    fn check_signature(&self) -> Result<(), CredError> {
        let mut msg = Self::CONTEXT.to_vec();
        msg.extend_from_slice(&self.signed_part());
        DeviceId(self.issuer_key())
            .verify(&msg, self.sig())
            .map_err(|_| CredError::BadSignature(Self::WHAT))
    }

    /// Signs with `key` (which must be the issuer) and checks the result as a decoder would.
    fn signed(mut self, key: &Identity) -> Result<Self, CredError> {
        if key.device_id().0 != self.issuer_key() {
            return Err(CredError::WrongSigner);
        }
        let mut msg = Self::CONTEXT.to_vec();
        msg.extend_from_slice(&self.signed_part());
        *self.sig_mut() = key.sign(&msg);
        Self::decode(&self.encode())
    }
}

/// The common header, as decoded.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub issuer: [u8; 32],
    pub issued_at: u64,
    pub expires: u64,
}

/// A string of at most `max` bytes with no control characters (and, if `nonempty`, not
/// empty).
fn text(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
    nonempty: bool,
) -> Result<String, CredError> {
    let s = r.str(what, max)?;
    if (nonempty && s.trim().is_empty()) || s.chars().any(char::is_control) {
        return Err(DecodeError::Invalid(what).into());
    }
    Ok(s.to_string())
}

/// A BCP-47 language tag, syntactically: 1 to 35 ASCII letters, digits and single hyphens
/// between subtags (`hi`, `hi-Latn`, `mai-Deva-IN`). Not checked against the registry.
pub fn is_language_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TAG_BYTES
        && s.split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn tag(r: &mut Reader<'_>, what: &'static str) -> Result<String, CredError> {
    let s = r.str(what, MAX_TAG_BYTES)?;
    if !is_language_tag(s) {
        return Err(DecodeError::Invalid(what).into());
    }
    Ok(s.to_string())
}

/// Why a unit path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit path '{path}': {reason}")]
pub struct UnitError {
    pub path: String,
    pub reason: &'static str,
}

/// A place in an organisation: segments joined by `/` (`bihar/darbhanga`), any script.
/// The empty path is the whole organisation. A scope *covers* a unit when the unit's
/// segments start with all of the scope's: `bihar` covers `bihar/darbhanga`, never
/// `biharsharif`. Compared byte for byte (no case folding or normalisation).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Unit(String);

impl Unit {
    /// The whole organisation.
    pub fn whole() -> Unit {
        Unit(String::new())
    }

    pub fn parse(s: &str) -> Result<Unit, UnitError> {
        let bad = |reason| UnitError {
            path: s.chars().filter(|c| !c.is_control()).collect(),
            reason,
        };
        if s.is_empty() {
            return Ok(Unit::whole());
        }
        if s.len() > MAX_UNIT_BYTES {
            return Err(bad("longer than 128 bytes"));
        }
        let segments: Vec<&str> = s.split('/').collect();
        if segments.len() > MAX_UNIT_SEGMENTS {
            return Err(bad("more than 8 segments"));
        }
        for seg in segments {
            if seg.is_empty() {
                return Err(bad("an empty segment (a leading, trailing or double '/')"));
            }
            if seg.chars().any(char::is_control) {
                return Err(bad("a control character"));
            }
            if seg.trim() != seg {
                return Err(bad("a segment starts or ends with a space"));
            }
        }
        Ok(Unit(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_whole(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `unit` is this scope or inside it, on whole segments.
    pub fn covers(&self, unit: &Unit) -> bool {
        self.is_whole()
            || unit.0 == self.0
            || (unit.0.len() > self.0.len()
                && unit.0.starts_with(&self.0)
                && unit.0.as_bytes()[self.0.len()] == b'/')
    }

    fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Unit, CredError> {
        let s = r.str(what, MAX_UNIT_BYTES)?;
        Unit::parse(s).map_err(|_| DecodeError::Invalid(what).into())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole() {
            f.write_str("(whole organisation)")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({:?})", self.0)
    }
}

/// An organisation's root: its id is its key; self-signed. Devices pin it at enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRoot {
    pub org: OrgId,
    /// Display name, any script ("बिहार पुलिस").
    pub name: String,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl OrgRoot {
    /// A root record signed by `root` (whose key becomes the organisation id).
    pub fn new(
        root: &Identity,
        name: &str,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        OrgRoot {
            org: OrgId(root.device_id().0),
            name: name.trim().to_string(),
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(root)
    }
}

impl Record for OrgRoot {
    const KIND: u8 = 1;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org root v1";
    const WHAT: &'static str = "organisation root";

    fn issuer_key(&self) -> [u8; 32] {
        self.org.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.str(&self.name);
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        Ok(OrgRoot {
            org: OrgId(h.issuer),
            name: text(r, "organisation name", MAX_TEXT_BYTES, true)?,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// A root certifies a registrar key for a scope and a period. Issued by the registrar's own
/// root it makes a registrar; issued by another organisation's root it is a
/// cross-certification (that organisation accepts what the registrar issues, within this
/// scope and period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarCert {
    pub issuer: OrgId,
    pub registrar: DeviceId,
    pub scope: Unit,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl RegistrarCert {
    pub fn new(
        root: &Identity,
        registrar: DeviceId,
        scope: Unit,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        RegistrarCert {
            issuer: OrgId(root.device_id().0),
            registrar,
            scope,
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(root)
    }
}

impl Record for RegistrarCert {
    const KIND: u8 = 2;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org registrar certificate v1";
    const WHAT: &'static str = "registrar certificate";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.raw(&self.registrar.0).str(self.scope.as_str());
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let registrar = DeviceId(r.array::<32>("registrar key")?);
        if !registrar.is_valid() {
            return Err(DecodeError::Invalid("registrar key").into());
        }
        Ok(RegistrarCert {
            issuer: OrgId(h.issuer),
            registrar,
            scope: Unit::read(r, "scope")?,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// A registrar certifies a person: who they are, in which unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonCred {
    /// The registrar's key.
    pub issuer: DeviceId,
    pub person: PersonId,
    /// (BCP-47 tag, name in that script), tags strictly ascending: `en`, `hi`, `mai`.
    pub names: Vec<(String, String)>,
    pub designation: String,
    pub unit: Unit,
    /// BCP-47 tags in order of preference, no repeats.
    pub languages: Vec<String>,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl PersonCred {
    /// Signs a person credential (names are put in tag order). No policy is checked here:
    /// [`super::Registrar::issue_person`] checks the scope.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registrar: &Identity,
        person: PersonId,
        mut names: Vec<(String, String)>,
        designation: &str,
        unit: Unit,
        languages: Vec<String>,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        names.sort();
        PersonCred {
            issuer: registrar.device_id(),
            person,
            names,
            designation: designation.trim().to_string(),
            unit,
            languages,
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(registrar)
    }

    /// The name for a reader of `lang` (its tag or its primary language), else the first.
    pub fn name_for(&self, lang: &str) -> &str {
        let primary = |t: &str| t.split('-').next().unwrap_or("").to_ascii_lowercase();
        self.names
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(lang))
            .or_else(|| self.names.iter().find(|(t, _)| primary(t) == primary(lang)))
            .or(self.names.first())
            .map(|(_, n)| n.as_str())
            .unwrap_or("")
    }
}

impl Record for PersonCred {
    const KIND: u8 = 3;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org person credential v1";
    const WHAT: &'static str = "person credential";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.raw(&self.person.0).varint(self.names.len() as u64);
        for (t, n) in &self.names {
            w.str(t).str(n);
        }
        w.str(&self.designation)
            .str(self.unit.as_str())
            .varint(self.languages.len() as u64);
        for l in &self.languages {
            w.str(l);
        }
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let person = PersonId(r.array::<16>("person id")?);
        let n = r.count("person names", MAX_NAMES, 3)?;
        if n == 0 {
            return Err(DecodeError::Invalid("person names (at least one)").into());
        }
        let mut names: Vec<(String, String)> = Vec::with_capacity(n);
        for _ in 0..n {
            let t = tag(r, "name script tag")?;
            let name = text(r, "person name", MAX_TEXT_BYTES, true)?;
            if names.last().is_some_and(|(prev, _)| *prev >= t) {
                return Err(DecodeError::NonCanonical(
                    "person names (one per tag, tags ascending)",
                )
                .into());
            }
            names.push((t, name));
        }
        let designation = text(r, "designation", MAX_TEXT_BYTES, false)?;
        let unit = Unit::read(r, "unit")?;
        let m = r.count("languages", MAX_LANGUAGES, 2)?;
        let mut languages: Vec<String> = Vec::with_capacity(m);
        for _ in 0..m {
            let l = tag(r, "language tag")?;
            if languages.contains(&l) {
                return Err(DecodeError::NonCanonical("languages (a repeated tag)").into());
            }
            languages.push(l);
        }
        Ok(PersonCred {
            issuer: DeviceId(h.issuer),
            person,
            names,
            designation,
            unit,
            languages,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// A registrar certifies one device key of a person. A person has several, each revocable
/// on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCred {
    pub issuer: DeviceId,
    pub person: PersonId,
    pub device: DeviceId,
    /// "phone", "laptop".
    pub label: String,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl DeviceCred {
    pub fn new(
        registrar: &Identity,
        person: PersonId,
        device: DeviceId,
        label: &str,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        DeviceCred {
            issuer: registrar.device_id(),
            person,
            device,
            label: label.trim().to_string(),
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(registrar)
    }
}

impl Record for DeviceCred {
    const KIND: u8 = 4;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org device credential v1";
    const WHAT: &'static str = "device credential";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.raw(&self.person.0).raw(&self.device.0).str(&self.label);
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let person = PersonId(r.array::<16>("person id")?);
        let device = DeviceId(r.array::<32>("device key")?);
        if !device.is_valid() {
            return Err(DecodeError::Invalid("device key").into());
        }
        Ok(DeviceCred {
            issuer: DeviceId(h.issuer),
            person,
            device,
            label: text(r, "device label", MAX_LABEL_BYTES, false)?,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// What a revocation revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Device(DeviceId),
    Person(PersonId),
    /// A registrar key: what it issued from the effective time on is dead (the cascade).
    Registrar(DeviceId),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Device(d) => write!(f, "device {d}"),
            Target::Person(p) => write!(f, "person {p}"),
            Target::Registrar(r) => write!(f, "registrar {r}"),
        }
    }
}

/// A root or a registrar revokes a device, a person or a registrar from `effective_at`.
/// `expires` says when replicas may forget it (when everything it could kill has expired);
/// verification honours a revocation whatever its age. A registrar attaches its own
/// certificate so that any verifier can judge its authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// A root key or a registrar key.
    pub issuer: DeviceId,
    pub target: Target,
    pub effective_at: u64,
    pub issuer_cert: Option<RegistrarCert>,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl Revocation {
    pub fn new(
        issuer: &Identity,
        target: Target,
        effective_at: u64,
        issuer_cert: Option<RegistrarCert>,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        Revocation {
            issuer: issuer.device_id(),
            target,
            effective_at,
            issuer_cert,
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(issuer)
    }
}

impl Record for Revocation {
    const KIND: u8 = 5;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org revocation v1";
    const WHAT: &'static str = "revocation";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        match &self.target {
            Target::Device(d) => w.u8(1).raw(&d.0),
            Target::Person(p) => w.u8(2).raw(&p.0),
            Target::Registrar(r) => w.u8(3).raw(&r.0),
        };
        w.varint(self.effective_at);
        match &self.issuer_cert {
            None => w.u8(0),
            Some(c) => w.u8(1).bytes(&c.encode()),
        };
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let target = match r.u8("revocation target")? {
            1 => Target::Device(DeviceId(r.array::<32>("device key")?)),
            2 => Target::Person(PersonId(r.array::<16>("person id")?)),
            3 => Target::Registrar(DeviceId(r.array::<32>("registrar key")?)),
            _ => return Err(DecodeError::Invalid("revocation target").into()),
        };
        let effective_at = r.varint("effective at")?;
        let issuer_cert = match r.u8("issuer certificate flag")? {
            0 => None,
            1 => {
                let c = RegistrarCert::decode(r.bytes("issuer certificate", MAX_RECORD_BYTES)?)?;
                if c.registrar.0 != h.issuer {
                    return Err(CredError::RevokerCertMismatch {
                        certified: c.registrar,
                    });
                }
                Some(c)
            }
            _ => return Err(DecodeError::NonCanonical("issuer certificate flag").into()),
        };
        Ok(Revocation {
            issuer: DeviceId(h.issuer),
            target,
            effective_at,
            issuer_cert,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// A root or a registrar orders a device to erase its keys and store (a remote wipe). It
/// carries the same signer's revocation of the device, so a wipe order implies the
/// revocation wherever it travels, and the authority to order it is the authority to revoke
/// the device ([`super::verify::verify_wipe`]). Nodes hold and pass it on like revocations;
/// only the named device acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeOrder {
    pub issuer: DeviceId,
    /// A revocation of [`WipeOrder::device`] by the same issuer.
    pub revocation: Revocation,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl WipeOrder {
    /// Signs a wipe order of `device` by `issuer` (a root key, or a registrar key with its
    /// certificate), with the revocation it implies, effective at `now`.
    pub fn new(
        issuer: &Identity,
        device: DeviceId,
        issuer_cert: Option<RegistrarCert>,
        now: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        let revocation = Revocation::new(
            issuer,
            Target::Device(device),
            now,
            issuer_cert,
            now,
            expires.max(now),
        )?;
        WipeOrder {
            issuer: issuer.device_id(),
            revocation,
            issued_at: now,
            expires: expires.max(now),
            sig: [0; 64],
        }
        .signed(issuer)
    }

    /// The device to wipe.
    pub fn device(&self) -> DeviceId {
        match self.revocation.target {
            Target::Device(d) => d,
            // Refused at decoding.
            _ => DeviceId([0; 32]),
        }
    }
}

impl Record for WipeOrder {
    const KIND: u8 = 6;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org wipe order v1";
    const WHAT: &'static str = "wipe order";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.bytes(&self.revocation.encode());
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let revocation = Revocation::decode(r.bytes("wipe order revocation", MAX_RECORD_BYTES)?)?;
        if revocation.issuer.0 != h.issuer || !matches!(revocation.target, Target::Device(_)) {
            return Err(CredError::BadWipeOrder);
        }
        Ok(WipeOrder {
            issuer: DeviceId(h.issuer),
            revocation,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// Bytes of a role key (`dm`, `sp`, `ndrf-team-7-leader`).
pub const MAX_ROLE_KEY_BYTES: usize = 64;

/// Whether `s` is a role key: 1 to 64 of ASCII lower-case letters, digits, `-`, `_`, `.`.
/// The key is what identifies a role within a unit (its titles, in any script, are for
/// people), so it is compared byte for byte and needs no Unicode normalisation.
pub fn is_role_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ROLE_KEY_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// A registrar in scope (or the organisation's root) assigns a role of a unit to a person
/// from a time: "DM Darbhanga" (`dm` in `bihar/darbhanga`) is Anita Kumari's from 1 March.
/// A later assignment of the same role (same organisation, unit and key) hands it over
/// (`super::directory`). The registrar's certificate is attached, so any device can judge
/// its authority offline (`super::verify::verify_role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// A registrar key, or the organisation's root key itself.
    pub issuer: DeviceId,
    pub org: OrgId,
    /// The issuer's certificate (from `org`'s root); `None` when the root signs.
    pub issuer_cert: Option<RegistrarCert>,
    pub unit: Unit,
    /// The role's key within the unit ([`is_role_key`]).
    pub role: String,
    /// (BCP-47 tag, title in that script), tags strictly ascending: `en=DM Darbhanga`,
    /// `hi=डीएम दरभंगा`. At least one.
    pub titles: Vec<(String, String)>,
    /// Who holds the role.
    pub holder: PersonId,
    /// From when (ms): the handover time.
    pub from: u64,
    pub issued_at: u64,
    pub expires: u64,
    pub sig: [u8; 64],
}

impl RoleAssignment {
    /// Signs an assignment (titles are put in tag order). `issuer_cert` is the signer's
    /// certificate, `None` when `issuer` is the root of `org`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: &Identity,
        org: OrgId,
        issuer_cert: Option<RegistrarCert>,
        unit: Unit,
        role: &str,
        mut titles: Vec<(String, String)>,
        holder: PersonId,
        from: u64,
        issued_at: u64,
        expires: u64,
    ) -> Result<Self, CredError> {
        titles.sort();
        RoleAssignment {
            issuer: issuer.device_id(),
            org,
            issuer_cert,
            unit,
            role: role.to_string(),
            titles,
            holder,
            from,
            issued_at,
            expires,
            sig: [0; 64],
        }
        .signed(issuer)
    }

    /// The title for a reader of `lang` (its tag or primary language), else the first.
    pub fn title_for(&self, lang: &str) -> &str {
        let primary = |t: &str| t.split('-').next().unwrap_or("").to_ascii_lowercase();
        self.titles
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(lang))
            .or_else(|| {
                self.titles
                    .iter()
                    .find(|(t, _)| primary(t) == primary(lang))
            })
            .or(self.titles.first())
            .map(|(_, n)| n.as_str())
            .unwrap_or("")
    }
}

impl Record for RoleAssignment {
    const KIND: u8 = 7;
    const CONTEXT: &'static [u8] = b"vaarta 2026 org role assignment v1";
    const WHAT: &'static str = "role assignment";

    fn issuer_key(&self) -> [u8; 32] {
        self.issuer.0
    }
    common_fields!();
    fn write_body(&self, w: &mut Writer) {
        w.raw(&self.org.0);
        match &self.issuer_cert {
            None => w.u8(0),
            Some(c) => w.u8(1).bytes(&c.encode()),
        };
        w.str(self.unit.as_str())
            .str(&self.role)
            .varint(self.titles.len() as u64);
        for (t, n) in &self.titles {
            w.str(t).str(n);
        }
        w.raw(&self.holder.0).varint(self.from);
    }
    fn read_body(h: Header, r: &mut Reader<'_>) -> Result<Self, CredError> {
        let org = OrgId(r.array::<32>("organisation")?);
        let issuer_cert = match r.u8("issuer certificate flag")? {
            0 => None,
            1 => Some(RegistrarCert::decode(
                r.bytes("issuer certificate", MAX_RECORD_BYTES)?,
            )?),
            _ => return Err(DecodeError::NonCanonical("issuer certificate flag").into()),
        };
        // The signer is the certified registrar, or the root itself.
        match &issuer_cert {
            Some(c) if c.registrar.0 != h.issuer => {
                return Err(CredError::NotARegistrar {
                    issuer: DeviceId(h.issuer),
                });
            }
            Some(c) if c.issuer != org => return Err(CredError::NotIssuedByRoot),
            None if h.issuer != org.0 => {
                return Err(CredError::NotARegistrar {
                    issuer: DeviceId(h.issuer),
                });
            }
            _ => {}
        }
        let unit = Unit::read(r, "unit")?;
        let role = r.str("role key", MAX_ROLE_KEY_BYTES)?;
        if !is_role_key(role) {
            return Err(DecodeError::Invalid("role key").into());
        }
        let role = role.to_string();
        let n = r.count("role titles", MAX_NAMES, 3)?;
        if n == 0 {
            return Err(DecodeError::Invalid("role titles (at least one)").into());
        }
        let mut titles: Vec<(String, String)> = Vec::with_capacity(n);
        for _ in 0..n {
            let t = tag(r, "title script tag")?;
            let title = text(r, "role title", MAX_TEXT_BYTES, true)?;
            if titles.last().is_some_and(|(prev, _)| *prev >= t) {
                return Err(
                    DecodeError::NonCanonical("role titles (one per tag, tags ascending)").into(),
                );
            }
            titles.push((t, title));
        }
        let holder = PersonId(r.array::<16>("holder")?);
        let from = r.varint("from")?;
        Ok(RoleAssignment {
            issuer: DeviceId(h.issuer),
            org,
            issuer_cert,
            unit,
            role,
            titles,
            holder,
            from,
            issued_at: h.issued_at,
            expires: h.expires,
            sig: [0; 64],
        })
    }
}

/// The kind byte of an encoded record (its second byte), if it has one.
pub fn kind_of(bytes: &[u8]) -> Option<u8> {
    bytes.get(1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_whole_segments_only() {
        let u = |s| Unit::parse(s).unwrap();
        assert!(u("bihar").covers(&u("bihar")));
        assert!(u("bihar").covers(&u("bihar/darbhanga")));
        assert!(!u("bihar").covers(&u("biharsharif")));
        assert!(!u("bihar/darbhanga").covers(&u("bihar")));
        assert!(Unit::whole().covers(&u("odisha/cuttack")));
        assert!(!u("bihar").covers(&Unit::whole()));
        for bad in ["/bihar", "bihar/", "bihar//darbhanga", " bihar", "a\u{7}b"] {
            assert!(Unit::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Unit::parse("बिहार/दरभंगा").is_ok());
    }

    #[test]
    fn language_tags() {
        for good in ["en", "hi", "hi-Latn", "mai-Deva-IN"] {
            assert!(is_language_tag(good), "{good}");
        }
        for bad in ["", "-en", "en-", "en--x", "हिन्दी", "toolongsubtag"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }
}
