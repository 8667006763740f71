//! The chain rule, the time rule and revocations.
//!
//! **Chain rule.** A [`Chain`] is root record → registrar certificate → (person credential,
//! device credential), plus optionally a cross-certification of the same registrar by
//! another organisation's root. It verifies when every signature holds; the registrar
//! certificate is signed by the root; the person and device credentials are signed by the
//! certified registrar and name the same person; the person's unit is inside the
//! registrar's scope; and either the organisation's root is pinned, or the
//! cross-certifying root is pinned and the unit is also inside the cross-certification's
//! scope and both credentials were issued inside its period.
//!
//! **Time rule.** Clocks of field devices drift and get reset, so each record is valid at
//! `now` when `issued_at − skew ≤ now ≤ expires + skew` ([`super::DEFAULT_SKEW_MS`], seven
//! days, either way). A device whose clock is seven days off therefore still accepts a
//! credential that is valid by the true time; the price is that a credential is accepted up
//! to seven days after it expired, which is why expiry is not the way to take a device away
//! (revocation is). A credential never outlives what vouches for it: the chain's `expires`
//! is the earliest of all its records. Issue times are judged against the issuer's period:
//! a credential issued after its registrar's certificate expired is refused (no tolerance:
//! the registrar signs its own issue time), one issued before the certificate's issue time
//! is refused beyond the tolerance.
//!
//! **Revocations and the cascade.** A revocation of a device or a person kills it from its
//! effective time (`effective_at ≤ now + skew`: a skewed clock errs towards revoked). A
//! revocation of a registrar kills what that registrar issued *at or after* its effective
//! time, and leaves what it issued before valid: a registrar is usually revoked because the
//! officer moved on or lost a laptop, and every person they enrolled honestly must not be
//! stranded in the field with no way to re-enrol. The effective time should therefore be
//! when the key may have been lost, not when the loss was noticed; a stolen registrar key
//! can still backdate what it signs, so individual revocations of what it issued remain
//! the tool for a known compromise (and a later part logs every issuance in the signed
//! directory, so backdated credentials are visible).
//!
//! Who may revoke: the organisation's root (and, for a chain verified through a
//! cross-certification, the cross-certifying root) anything in the chain; a registrar of
//! the same organisation, whose certificate was valid when it signed the revocation, the
//! devices and persons of units inside its scope (and always what it issued itself) and
//! registrars whose scope is inside its own. A registrar's own revocations are void from the
//! effective time of a *root's* revocation of it; revocations by registrars do not void each
//! other's revocations. So when two registrars revoke each other concurrently, both are
//! revoked from their effective times, whatever order the revocations arrive in: the
//! outcome is a function of the set of revocations, never of their order (a rule that let
//! a revoked registrar's revocations lapse would make the result depend on which of the two
//! came first, and could have no fixed point when the times are equal).

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{DeviceId, OrgId, PersonId};

use super::record::{
    DeviceCred, OrgRoot, PersonCred, Record, RegistrarCert, Revocation, RoleAssignment, Target,
    Unit, WipeOrder,
};
use super::{CredError, MAX_RECORD_BYTES, MAX_REVOCATIONS, VERSION};

/// Kind byte of an encoded chain (records use 1 to 5).
const CHAIN_KIND: u8 = 0x10;

/// A device's credentials as presented to a verifier (and the enrolment bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The root of the organisation the registrar belongs to.
    pub root: OrgRoot,
    pub registrar: RegistrarCert,
    /// Another organisation's root certifying the same registrar.
    pub cross: Option<RegistrarCert>,
    pub person: PersonCred,
    pub device: DeviceCred,
}

impl Chain {
    /// `version · 0x10 · root · registrar · (0 | 1 cross) · person · device`, each record
    /// length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1024);
        w.u8(VERSION).u8(CHAIN_KIND);
        w.bytes(&self.root.encode()).bytes(&self.registrar.encode());
        match &self.cross {
            None => w.u8(0),
            Some(c) => w.u8(1).bytes(&c.encode()),
        };
        w.bytes(&self.person.encode()).bytes(&self.device.encode());
        w.into_vec()
    }

    /// Parses and checks every record's bounds and signature (not the chain rule: that is
    /// [`verify_device`]).
    pub fn decode(bytes: &[u8]) -> Result<Chain, CredError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let kind = r.u8("record kind")?;
        if kind != CHAIN_KIND {
            return Err(CredError::WrongKind {
                expected: "credential chain",
                found: kind,
            });
        }
        let root = OrgRoot::decode(r.bytes("root record", MAX_RECORD_BYTES)?)?;
        let registrar = RegistrarCert::decode(r.bytes("registrar certificate", MAX_RECORD_BYTES)?)?;
        let cross = match r.u8("cross-certification flag")? {
            0 => None,
            1 => Some(RegistrarCert::decode(
                r.bytes("cross-certification", MAX_RECORD_BYTES)?,
            )?),
            _ => return Err(DecodeError::NonCanonical("cross-certification flag").into()),
        };
        let person = PersonCred::decode(r.bytes("person credential", MAX_RECORD_BYTES)?)?;
        let device = DeviceCred::decode(r.bytes("device credential", MAX_RECORD_BYTES)?)?;
        r.finish()?;
        Ok(Chain {
            root,
            registrar,
            cross,
            person,
            device,
        })
    }

    /// The roots whose revocations count for this chain, given the one that vouched.
    fn roots(&self, via: Option<OrgId>) -> Vec<OrgId> {
        let mut v = vec![self.root.org];
        v.extend(via);
        v
    }
}

/// What a verified chain says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The person's organisation.
    pub org: OrgId,
    pub org_name: String,
    /// The pinned root that vouched when it is not `org`'s (a cross-certification).
    pub via: Option<OrgId>,
    pub registrar: DeviceId,
    pub person: PersonId,
    pub names: Vec<(String, String)>,
    pub designation: String,
    pub unit: Unit,
    pub languages: Vec<String>,
    pub device: DeviceId,
    pub label: String,
    /// The earliest expiry in the chain.
    pub expires: u64,
}

/// Checks `chain` against the pinned roots and known revocations at `now`, with `skew` of
/// clock tolerance either way (module docs: the chain rule, the time rule, the cascade).
/// Pure: the same inputs give the same answer.
pub fn verify_device(
    chain: &Chain,
    pinned: &[OrgId],
    revocations: &Revocations,
    now: u64,
    skew: u64,
) -> Result<Verified, CredError> {
    let Chain {
        root,
        registrar,
        cross,
        person,
        device,
    } = chain;
    // Authenticity of every record (decoding checked it too; a chain built in memory may
    // not have been decoded).
    root.check_signature()?;
    registrar.check_signature()?;
    if let Some(c) = cross {
        c.check_signature()?;
    }
    person.check_signature()?;
    device.check_signature()?;

    // Who issued what.
    if registrar.issuer != root.org {
        return Err(CredError::NotIssuedByRoot);
    }
    if let Some(c) = cross
        && c.registrar != registrar.registrar
    {
        return Err(CredError::CrossSubjectMismatch {
            certified: c.registrar,
        });
    }
    let via = if pinned.contains(&root.org) {
        None
    } else {
        match cross {
            Some(c) if pinned.contains(&c.issuer) => Some(c.issuer),
            _ => return Err(CredError::UnknownRoot(root.org)),
        }
    };
    for issuer in [person.issuer, device.issuer] {
        if issuer != registrar.registrar {
            return Err(CredError::NotARegistrar { issuer });
        }
    }
    if device.person != person.person {
        return Err(CredError::PersonMismatch {
            device_says: device.person,
            person: person.person,
        });
    }
    if !registrar.scope.covers(&person.unit) {
        return Err(CredError::OutsideScope {
            unit: person.unit.as_str().into(),
            scope: registrar.scope.as_str().into(),
        });
    }

    // Issue times inside the issuer's period.
    issued_within(
        RegistrarCert::WHAT,
        registrar.issued_at,
        root.issued_at,
        root.expires,
        skew,
    )?;
    for (what, at) in [
        (PersonCred::WHAT, person.issued_at),
        (DeviceCred::WHAT, device.issued_at),
    ] {
        issued_within(what, at, registrar.issued_at, registrar.expires, skew)?;
    }
    let cross_used = cross.as_ref().filter(|_| via.is_some());
    if let Some(c) = cross_used {
        if !c.scope.covers(&person.unit) {
            return Err(CredError::CrossOutsideScope {
                unit: person.unit.as_str().into(),
                scope: c.scope.as_str().into(),
            });
        }
        for (what, at) in [
            (PersonCred::WHAT, person.issued_at),
            (DeviceCred::WHAT, device.issued_at),
        ] {
            if at.saturating_add(skew) < c.issued_at || at > c.expires {
                return Err(CredError::CrossOutsidePeriod {
                    record: what,
                    issued_at: at,
                    from: c.issued_at,
                    until: c.expires,
                });
            }
        }
    }

    // Valid now, within the tolerance.
    let mut periods = vec![
        (OrgRoot::WHAT, root.issued_at, root.expires),
        (RegistrarCert::WHAT, registrar.issued_at, registrar.expires),
    ];
    if let Some(c) = cross_used {
        periods.push(("cross-certification", c.issued_at, c.expires));
    }
    periods.push((PersonCred::WHAT, person.issued_at, person.expires));
    periods.push((DeviceCred::WHAT, device.issued_at, device.expires));
    for &(record, issued_at, expires) in &periods {
        if now.saturating_add(skew) < issued_at {
            return Err(CredError::NotYetValid {
                record,
                issued_at,
                now,
                skew,
            });
        }
        if now > expires.saturating_add(skew) {
            return Err(CredError::Expired {
                record,
                expires,
                now,
                skew,
            });
        }
    }

    revocations.check(chain, &chain.roots(via), now, skew)?;

    Ok(Verified {
        org: root.org,
        org_name: root.name.clone(),
        via,
        registrar: registrar.registrar,
        person: person.person,
        names: person.names.clone(),
        designation: person.designation.clone(),
        unit: person.unit.clone(),
        languages: person.languages.clone(),
        device: device.device,
        label: device.label.clone(),
        expires: periods.iter().map(|p| p.2).min().unwrap_or(0),
    })
}

/// Whether `order` is one this device must obey: it names `chain`'s device (this device's
/// own enrolment), and its signer has authority to revoke that device under the rules of
/// this module — the organisation's root (or the cross-certifying root), or a registrar of
/// that root, certified when it signed, whose scope covers the person's unit (or who
/// issued the chain), and that a root has not revoked by then. The revocations this device
/// holds count only for that last point (its own earlier revocation does not make a forged
/// order valid). A chain that no longer verifies for another reason (expired) still obeys
/// its root. Pure.
pub fn verify_wipe(
    order: &WipeOrder,
    chain: &Chain,
    pinned: &[OrgId],
    held: &Revocations,
    now: u64,
    skew: u64,
) -> Result<(), CredError> {
    order.check_signature()?;
    order.revocation.check_signature()?;
    let named = order.device();
    if named != chain.device.device {
        return Err(CredError::WipeForAnotherDevice { named });
    }
    let not_authorised = CredError::WipeNotAuthorised {
        issuer: order.issuer,
    };
    if order.revocation.issuer_cert.is_none()
        && order.issuer.0 == chain.root.org.0
        && pinned.contains(&chain.root.org)
    {
        return Ok(());
    }
    // Only the order's own revocation can revoke the device here; registrars' revocations
    // held still void a revoked registrar's order.
    let mut set = Revocations::new();
    for r in held.iter() {
        if matches!(r.target, Target::Registrar(_)) {
            let _ = set.insert(r.clone());
        }
    }
    set.insert(order.revocation.clone())?;
    match verify_device(chain, pinned, &set, now, skew) {
        Err(CredError::DeviceRevoked { .. }) => Ok(()),
        Ok(_) => Err(not_authorised),
        Err(e) => Err(e),
    }
}

/// What a verified role assignment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRole {
    pub org: OrgId,
    pub unit: Unit,
    pub role: String,
    pub titles: Vec<(String, String)>,
    pub holder: PersonId,
    pub from: u64,
    /// The registrar that signed it (the root's key when the root did).
    pub issuer: DeviceId,
    /// The earliest of the assignment's and its certificate's expiry.
    pub expires: u64,
}

/// Checks a role assignment at `now`, beside [`verify_device`] and by the same rules: the
/// signer is `org`'s root, or a registrar whose attached certificate that root signed; the
/// root is pinned here (`UnknownRoot`); the unit is inside the registrar's scope
/// (`OutsideScope`); the assignment was issued while the certificate was valid
/// (`RegistrarExpiredAtIssue`, `IssuedBeforeIssuer`); it and the certificate are valid now
/// (`Expired`, `NotYetValid`, with `skew` either way); and the registrar was not revoked
/// at or before it signed (`RegistrarRevoked`: the cascade). A key nobody certified, a
/// member's own device key among them, is `NotARegistrar` (refused at decoding, and again
/// here for a record built in memory). Whether the holder is a person of `org` is the
/// directory's question (it knows the people). Pure.
pub fn verify_role(
    a: &RoleAssignment,
    pinned: &[OrgId],
    revocations: &Revocations,
    now: u64,
    skew: u64,
) -> Result<VerifiedRole, CredError> {
    a.check_signature()?;
    let mut periods = Vec::with_capacity(2);
    match &a.issuer_cert {
        None => {
            if a.issuer.0 != a.org.0 {
                return Err(CredError::NotARegistrar { issuer: a.issuer });
            }
        }
        Some(c) => {
            c.check_signature()?;
            if c.registrar != a.issuer {
                return Err(CredError::NotARegistrar { issuer: a.issuer });
            }
            if c.issuer != a.org {
                return Err(CredError::NotIssuedByRoot);
            }
        }
    }
    if !pinned.contains(&a.org) {
        return Err(CredError::UnknownRoot(a.org));
    }
    if let Some(c) = &a.issuer_cert {
        if !c.scope.covers(&a.unit) {
            return Err(CredError::OutsideScope {
                unit: a.unit.as_str().into(),
                scope: c.scope.as_str().into(),
            });
        }
        issued_within(
            RoleAssignment::WHAT,
            a.issued_at,
            c.issued_at,
            c.expires,
            skew,
        )?;
        periods.push((RegistrarCert::WHAT, c.issued_at, c.expires));
    }
    periods.push((RoleAssignment::WHAT, a.issued_at, a.expires));
    for &(record, issued_at, expires) in &periods {
        if now.saturating_add(skew) < issued_at {
            return Err(CredError::NotYetValid {
                record,
                issued_at,
                now,
                skew,
            });
        }
        if now > expires.saturating_add(skew) {
            return Err(CredError::Expired {
                record,
                expires,
                now,
                skew,
            });
        }
    }
    if let Some(c) = &a.issuer_cert
        && let Some(at) = revocations.registrar_revoked_from(c, &[a.org], skew)
        && a.issued_at >= at
    {
        return Err(CredError::RegistrarRevoked { effective_at: at });
    }
    Ok(VerifiedRole {
        org: a.org,
        unit: a.unit.clone(),
        role: a.role.clone(),
        titles: a.titles.clone(),
        holder: a.holder,
        from: a.from,
        issuer: a.issuer,
        expires: periods.iter().map(|p| p.2).min().unwrap_or(a.expires),
    })
}

/// `at` (an issue time) inside `[from − skew, until]`.
fn issued_within(
    record: &'static str,
    at: u64,
    from: u64,
    until: u64,
    skew: u64,
) -> Result<(), CredError> {
    if at > until {
        return Err(CredError::RegistrarExpiredAtIssue {
            record,
            issued_at: at,
            expires: until,
        });
    }
    if at.saturating_add(skew) < from {
        return Err(CredError::IssuedBeforeIssuer {
            record,
            issued_at: at,
            certified: from,
        });
    }
    Ok(())
}

/// The revocations a device knows: at most one per (target, issuer) — the earliest
/// effective — and at most `max` in all. Insertion order never changes what
/// [`verify_device`] answers.
#[derive(Debug, Clone)]
pub struct Revocations {
    by_target: BTreeMap<Target, BTreeMap<DeviceId, Revocation>>,
    len: usize,
    max: usize,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::with_limit(MAX_REVOCATIONS)
    }
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limit(max: usize) -> Self {
        Revocations {
            by_target: BTreeMap::new(),
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a revocation after checking its signatures. `Ok(true)` if it changed the set
    /// (new, or earlier than the one held from the same issuer); a full set refuses new
    /// entries (it never forgets one it holds).
    pub fn insert(&mut self, r: Revocation) -> Result<bool, CredError> {
        r.check_signature()?;
        if let Some(c) = &r.issuer_cert {
            c.check_signature()?;
            if c.registrar != r.issuer {
                return Err(CredError::RevokerCertMismatch {
                    certified: c.registrar,
                });
            }
        }
        let full = self.len >= self.max;
        let per = self.by_target.entry(r.target).or_default();
        match per.get(&r.issuer) {
            Some(held) => {
                let key = |x: &Revocation| (x.effective_at, x.issued_at, x.encode());
                if key(&r) < key(held) {
                    per.insert(r.issuer, r);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            None if full => {
                if per.is_empty() {
                    self.by_target.remove(&r.target);
                }
                Err(CredError::RevocationsFull { max: self.max })
            }
            None => {
                per.insert(r.issuer, r);
                self.len += 1;
                Ok(true)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Revocation> {
        self.by_target.values().flat_map(|m| m.values())
    }

    fn of(&self, t: &Target) -> impl Iterator<Item = &Revocation> {
        self.by_target.get(t).into_iter().flat_map(|m| m.values())
    }

    /// The earliest effective time of an authorised revocation of `t`, if any.
    fn earliest(&self, t: Target, chain: &Chain, roots: &[OrgId], skew: u64) -> Option<u64> {
        self.of(&t)
            .filter(|r| self.authorised(r, chain, roots, skew))
            .map(|r| r.effective_at)
            .min()
    }

    fn check(&self, chain: &Chain, roots: &[OrgId], now: u64, skew: u64) -> Result<(), CredError> {
        let horizon = now.saturating_add(skew);
        if let Some(at) = self.earliest(Target::Device(chain.device.device), chain, roots, skew)
            && at <= horizon
        {
            return Err(CredError::DeviceRevoked { effective_at: at });
        }
        if let Some(at) = self.earliest(Target::Person(chain.person.person), chain, roots, skew)
            && at <= horizon
        {
            return Err(CredError::PersonRevoked { effective_at: at });
        }
        let latest_issue = chain.person.issued_at.max(chain.device.issued_at);
        if let Some(at) = self.earliest(
            Target::Registrar(chain.registrar.registrar),
            chain,
            roots,
            skew,
        ) && latest_issue >= at
        {
            return Err(CredError::RegistrarRevoked { effective_at: at });
        }
        Ok(())
    }

    /// Whether `r`'s issuer may revoke its target as it concerns `chain` (module docs).
    fn authorised(&self, r: &Revocation, chain: &Chain, roots: &[OrgId], skew: u64) -> bool {
        self.authorised_over(
            r,
            chain.root.org,
            &chain.registrar,
            Some(&chain.person.unit),
            roots,
            skew,
        )
    }

    /// The earliest effective time of an authorised revocation of the registrar `cert`
    /// certifies (by its root, or a registrar of `cert`'s organisation whose scope covers
    /// its scope): what it signed at or after that time is dead (the cascade).
    pub fn registrar_revoked_from(
        &self,
        cert: &RegistrarCert,
        roots: &[OrgId],
        skew: u64,
    ) -> Option<u64> {
        self.of(&Target::Registrar(cert.registrar))
            .filter(|r| self.authorised_over(r, cert.issuer, cert, None, roots, skew))
            .map(|r| r.effective_at)
            .min()
    }

    /// Whether `r`'s issuer may revoke its target, for what `registrar` (of `org`) issued
    /// to a person of `unit` (`None`: no person concerned; only the issuing registrar
    /// itself, or a root, may then revoke a device or person).
    fn authorised_over(
        &self,
        r: &Revocation,
        org: OrgId,
        registrar: &RegistrarCert,
        unit: Option<&Unit>,
        roots: &[OrgId],
        skew: u64,
    ) -> bool {
        if roots.iter().any(|o| o.0 == r.issuer.0) {
            return true;
        }
        let own = r.issuer == registrar.registrar;
        let cert = if own {
            Some(registrar)
        } else {
            r.issuer_cert.as_ref()
        };
        let Some(cert) = cert else {
            return false;
        };
        if cert.issuer != org
            || cert.registrar != r.issuer
            || cert.check_signature().is_err()
            || r.issued_at > cert.expires
            || r.issued_at.saturating_add(skew) < cert.issued_at
        {
            return false;
        }
        // Void from a root's revocation of the revoker.
        let voided = self
            .of(&Target::Registrar(r.issuer))
            .any(|v| roots.iter().any(|o| o.0 == v.issuer.0) && v.effective_at <= r.issued_at);
        if voided {
            return false;
        }
        match r.target {
            Target::Device(_) | Target::Person(_) => {
                own || unit.is_some_and(|u| cert.scope.covers(u))
            }
            Target::Registrar(_) => cert.scope.covers(&registrar.scope),
        }
    }
}
