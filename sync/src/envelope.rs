//! Envelopes: the unit Vaarta stores, reconciles and moves.
//!
//! ```text
//! envelope  = header body
//! header    = version:u8(=2) flags:u8 tag:[16] epoch:[4] [expiry:varint]
//!             flags = kind (bits 0-1) | precedence (bits 2-3) | has-expiry (bit 4); bits 5-7 zero
//! body      = salt:[12] aead(key, nonce = salt ‖ 0^12, ad = header ‖ conversation-id, inner)   kinds Change, Control
//!           | noise-X(sender → recipient, prologue = domain ‖ header, inner)        kind Invite
//! inner     = signer:[32] hlc:varint payload signature:[64]          kinds Control, Invite
//!           | signer-hint:[8] payload signature:[64]                kind Change
//! signature = Ed25519(signer, domain ‖ conversation-id ‖ [salt] ‖ header ‖ signer ‖ [hlc] ‖ payload)
//!             (always over the full 32-byte signer key; the salt of Change and Control
//!             envelopes is signed, so nobody but the signer can re-seal the same inner
//!             bytes under a new salt, i.e. a new id)
//! A change needs no separate time: each message key carries its author's clock.
//! id        = BLAKE3(envelope)
//! ```
//!
//! The cleartext header is all a relay sees: a routing tag that does not reveal the
//! conversation, the precedence, an optional expiry and (from the frame) the size. The author,
//! the time and the content are inside the ciphertext, and so is the signature: a relay cannot
//! even test which of the devices it knows wrote an envelope.
//!
//! Sign-then-encrypt with the signature covering the header and the conversation id binds
//! everything: moving an envelope to another conversation fails authentication (wrong key, or
//! a signature over another conversation id), and changing the precedence or expiry fails the
//! AEAD. Every field has one encoding, and `id` hashes the exact bytes, so one envelope has one
//! id (docs/security.md: "one envelope, one id"; Briar 2023 issue 2).

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{self, AEAD_TAG_LEN, CryptoError, Key, NOISE_X_OVERHEAD, NONCE_LEN};

/// Random bytes per envelope that make the XChaCha20 nonce (the rest is zero). With 96
/// random bits the chance of a repeated nonce under one key stays below 2^-57 for a million
/// envelopes per epoch (keys rotate on every removal), and twelve bytes are saved on every
/// envelope compared with sending all 192 bits.
pub const SALT_LEN: usize = 12;

fn nonce_of(salt: &[u8; SALT_LEN]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..SALT_LEN].copy_from_slice(salt);
    n
}
use crate::hlc::Hlc;
use crate::identity::{Identity, KeyCache, VerifyError};
use crate::ids::{ConversationId, DeviceId, EnvelopeId, EpochId, Tag};
use crate::limits::MAX_ENVELOPE_BYTES;

/// 2: change envelopes with a signer hint, 12-byte salt, wire-form changes (2026-11).
pub const VERSION: u8 = 2;
/// v2: the salt is signed (issue 9 item 5: anyone with the epoch key could re-seal an
/// envelope under a new salt, hence a new id, and it verified).
const SIG_DOMAIN: &[u8] = b"vaarta 2026 envelope v2";
const INVITE_DOMAIN: &[u8] = b"vaarta 2026 invite v1";
const SIG_LEN: usize = 64;
/// Change envelopes name their signer by the first bytes of its key: the receiver knows the
/// members' keys, and the Automerge change inside names its actor anyway, so sending the full
/// key again would cost 24 bytes a message. The signature still covers the full key.
///
/// Eight bytes, not four: a member could grind a key whose first four bytes equal another
/// member's (2^32 tries, a day on one core) so that, while that member's key is not yet known
/// somewhere, its envelopes match only the impostor, fail and are refused for good. 2^64
/// tries is out of reach, and an honest clash is then negligible.
pub const SIGNER_HINT_LEN: usize = 8;
/// Smallest possible inner plaintext: signer, a one-byte hlc, the signature.
const MIN_INNER: usize = 32 + 1 + SIG_LEN;
const MIN_INNER_COMPACT: usize = SIGNER_HINT_LEN + 1 + SIG_LEN;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Automerge changes of one page of a conversation.
    Change = 0,
    /// One membership operation.
    Control = 1,
    /// A conversation secret and keys sealed to one device, under its inbox tag.
    Invite = 2,
}

/// Military-style message precedence, highest first: FLASH pre-empts everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Precedence {
    #[default]
    Routine = 0,
    Priority = 1,
    Immediate = 2,
    Flash = 3,
}

impl Precedence {
    pub const ALL: [Precedence; 4] = [
        Precedence::Flash,
        Precedence::Immediate,
        Precedence::Priority,
        Precedence::Routine,
    ];

    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Routine,
            1 => Self::Priority,
            2 => Self::Immediate,
            3 => Self::Flash,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Priority => "priority",
            Self::Immediate => "immediate",
            Self::Flash => "flash",
        }
    }
}

impl std::str::FromStr for Precedence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "routine" | "r" => Ok(Self::Routine),
            "priority" | "p" => Ok(Self::Priority),
            "immediate" | "o" | "i" => Ok(Self::Immediate),
            "flash" | "z" | "f" => Ok(Self::Flash),
            _ => Err(format!(
                "unknown precedence '{s}' (use flash, immediate, priority or routine)"
            )),
        }
    }
}

impl std::fmt::Display for Precedence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cleartext routing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub precedence: Precedence,
    pub tag: Tag,
    /// The conversation key used (zero for control operations and invites).
    pub epoch: EpochId,
    /// Seconds since the Unix epoch after which relays stop carrying the envelope.
    pub expiry: Option<u64>,
}

impl Header {
    pub fn encode(&self, w: &mut Writer) {
        let flags = self.kind as u8
            | (self.precedence as u8) << 2
            | if self.expiry.is_some() { 1 << 4 } else { 0 };
        w.u8(VERSION).u8(flags).raw(&self.tag.0).raw(&self.epoch.0);
        if let Some(e) = self.expiry {
            w.varint(e);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let flags = r.u8("flags")?;
        if flags & 0xe0 != 0 {
            return Err(DecodeError::NonCanonical("flags"));
        }
        let kind = match flags & 3 {
            0 => Kind::Change,
            1 => Kind::Control,
            2 => Kind::Invite,
            _ => return Err(DecodeError::Invalid("kind")),
        };
        let precedence = Precedence::from_u8((flags >> 2) & 3).unwrap_or_default();
        let tag = Tag(r.array("tag")?);
        let epoch = EpochId(r.array("epoch")?);
        let expiry = if flags & (1 << 4) != 0 {
            Some(r.varint("expiry")?)
        } else {
            None
        };
        Ok(Self {
            kind,
            precedence,
            tag,
            epoch,
            expiry,
        })
    }

    /// Whether a relay should still carry it at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiry.is_some_and(|e| e.saturating_mul(1000) < now_ms)
    }
}

/// A decoded (not yet opened) envelope. Holds its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    header: Header,
    header_len: usize,
    bytes: Vec<u8>,
    id: EnvelopeId,
}

impl Envelope {
    /// Strictly decodes an envelope: size, version, flags, minimal body length.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                what: "envelope",
                len: bytes.len() as u64,
                max: MAX_ENVELOPE_BYTES as u64,
            });
        }
        let mut r = Reader::new(bytes);
        let header = Header::decode(&mut r)?;
        let header_len = r.position();
        let min_body = match header.kind {
            Kind::Change => SALT_LEN + AEAD_TAG_LEN + MIN_INNER_COMPACT,
            Kind::Control => SALT_LEN + AEAD_TAG_LEN + MIN_INNER,
            Kind::Invite => NOISE_X_OVERHEAD + MIN_INNER,
        };
        if r.remaining() < min_body {
            return Err(DecodeError::Truncated("envelope body"));
        }
        Ok(Self {
            header,
            header_len,
            bytes: bytes.to_vec(),
            id: EnvelopeId(*blake3::hash(bytes).as_bytes()),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn id(&self) -> EnvelopeId {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn header_bytes(&self) -> &[u8] {
        &self.bytes[..self.header_len]
    }
}

/// What an opened envelope says, after its signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub signer: DeviceId,
    pub hlc: Hlc,
    pub payload: Vec<u8>,
    /// BLAKE3 of the exact signed bytes (names membership operations).
    pub signed_hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot decrypt: wrong key, wrong conversation or tampered ciphertext")]
    Decrypt,
    #[error("signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("the Noise sender key is not the signer's key")]
    SignerMismatch,
    #[error("expected a {expected:?} envelope, got {got:?}")]
    WrongKind { expected: Kind, got: Kind },
    #[error("signed by a key this device does not know (yet)")]
    UnknownSigner([u8; SIGNER_HINT_LEN]),
}

impl From<CryptoError> for OpenError {
    fn from(_: CryptoError) -> Self {
        OpenError::Decrypt
    }
}

fn signed_bytes(domain: &[u8], context: &[u8], header: &[u8], inner_unsigned: &[u8]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(domain.len() + context.len() + header.len() + inner_unsigned.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(context);
    m.extend_from_slice(header);
    m.extend_from_slice(inner_unsigned);
    m
}

fn inner_signed(
    signer: &Identity,
    hlc: Hlc,
    payload: &[u8],
    domain: &[u8],
    context: &[u8],
    header: &[u8],
    compact: bool,
) -> Vec<u8> {
    let key = signer.device_id().0;
    let mut w = Writer::with_capacity(32 + 10 + payload.len() + SIG_LEN);
    w.raw(&key);
    if !compact {
        w.varint(hlc.pack());
    }
    w.raw(payload);
    let sig = signer.sign(&signed_bytes(domain, context, header, w.as_slice()));
    let mut unsigned = w.into_vec();
    if compact {
        unsigned.drain(SIGNER_HINT_LEN..32);
    }
    unsigned.extend_from_slice(&sig);
    unsigned
}

/// Finds the devices whose key starts with a hint.
pub type Resolver<'a> = &'a mut dyn FnMut(&[u8; SIGNER_HINT_LEN]) -> Vec<DeviceId>;

fn parse_inner(
    inner: &[u8],
    domain: &[u8],
    context: &[u8],
    header: &[u8],
    cache: &mut KeyCache,
    resolve: Option<Resolver<'_>>,
) -> Result<Opened, OpenError> {
    let compact = resolve.is_some();
    if inner.len()
        < if compact {
            MIN_INNER_COMPACT
        } else {
            MIN_INNER
        }
    {
        return Err(DecodeError::Truncated("inner").into());
    }
    let (unsigned, sig) = inner.split_at(inner.len() - SIG_LEN);
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| DecodeError::Truncated("signature"))?;
    let (candidates, rest) = match resolve {
        Some(resolve) => {
            let hint: [u8; SIGNER_HINT_LEN] = unsigned[..SIGNER_HINT_LEN]
                .try_into()
                .map_err(|_| DecodeError::Truncated("signer"))?;
            let c = resolve(&hint);
            if c.is_empty() {
                return Err(OpenError::UnknownSigner(hint));
            }
            (c, &unsigned[SIGNER_HINT_LEN..])
        }
        None => (
            vec![DeviceId(
                unsigned[..32]
                    .try_into()
                    .map_err(|_| DecodeError::Truncated("signer"))?,
            )],
            &unsigned[32..],
        ),
    };
    let mut r = Reader::new(rest);
    let hlc = if compact {
        Hlc::default()
    } else {
        Hlc::unpack(r.varint("hlc")?)
    };
    let payload = r.rest().to_vec();
    let mut last = OpenError::Signature(VerifyError::BadSignature);
    for signer in candidates {
        let mut full = Vec::with_capacity(32 + rest.len());
        full.extend_from_slice(&signer.0);
        full.extend_from_slice(rest);
        let signed = signed_bytes(domain, context, header, &full);
        match cache.verify(&signer, &signed, &sig) {
            Ok(()) => {
                return Ok(Opened {
                    signer,
                    hlc,
                    payload,
                    signed_hash: *blake3::hash(&signed).as_bytes(),
                });
            }
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

/// Seals a Change or Control envelope.
#[allow(clippy::too_many_arguments)]
pub fn seal(
    header: &Header,
    key: &Key,
    conversation: &ConversationId,
    signer: &Identity,
    hlc: Hlc,
    payload: &[u8],
    salt: [u8; SALT_LEN],
) -> Envelope {
    debug_assert!(header.kind != Kind::Invite);
    let mut w = Writer::with_capacity(64 + payload.len() + 200);
    header.encode(&mut w);
    let header_len = w.len();
    let inner = inner_signed(
        signer,
        hlc,
        payload,
        SIG_DOMAIN,
        &signed_context(conversation, &salt),
        w.as_slice(),
        header.kind == Kind::Change,
    );
    let mut ad = w.as_slice().to_vec();
    ad.extend_from_slice(&conversation.0);
    let ct = crypto::aead_seal(key, &nonce_of(&salt), &ad, &inner);
    w.raw(&salt).raw(&ct);
    let bytes = w.into_vec();
    Envelope {
        header: *header,
        header_len,
        id: EnvelopeId(*blake3::hash(&bytes).as_bytes()),
        bytes,
    }
}

/// What a Change or Control signature covers besides the header and the inner bytes: the
/// conversation id and the salt.
fn signed_context(conversation: &ConversationId, salt: &[u8; SALT_LEN]) -> [u8; 16 + SALT_LEN] {
    let mut c = [0u8; 16 + SALT_LEN];
    c[..16].copy_from_slice(&conversation.0);
    c[16..].copy_from_slice(salt);
    c
}

/// Opens and verifies a Change or Control envelope with the conversation key of its epoch.
///
/// Change envelopes name their signer by a hint: `resolve` lists the known keys that match
/// it (the conversation's members). Control envelopes carry the full key.
pub fn open(
    env: &Envelope,
    key: &Key,
    conversation: &ConversationId,
    resolve: Resolver<'_>,
) -> Result<Opened, OpenError> {
    open_cached(env, key, conversation, &mut KeyCache::default(), resolve)
}

/// Whether `key` decrypts the envelope for `conversation`, whoever signed it: what a device
/// can *read*, as opposed to what it accepts (tests of confidentiality use this).
pub fn can_decrypt(env: &Envelope, key: &Key, conversation: &ConversationId) -> bool {
    decrypt(env, key, conversation).is_ok()
}

fn decrypt(env: &Envelope, key: &Key, conversation: &ConversationId) -> Result<Vec<u8>, OpenError> {
    if env.header.kind == Kind::Invite {
        return Err(OpenError::WrongKind {
            expected: Kind::Change,
            got: Kind::Invite,
        });
    }
    let body = &env.bytes[env.header_len..];
    let salt: [u8; SALT_LEN] = body[..SALT_LEN]
        .try_into()
        .map_err(|_| DecodeError::Truncated("salt"))?;
    let mut ad = env.header_bytes().to_vec();
    ad.extend_from_slice(&conversation.0);
    Ok(crypto::aead_open(
        key,
        &nonce_of(&salt),
        &ad,
        &body[SALT_LEN..],
    )?)
}

/// [`open`], reusing decompressed signer keys.
pub fn open_cached(
    env: &Envelope,
    key: &Key,
    conversation: &ConversationId,
    cache: &mut KeyCache,
    resolve: Resolver<'_>,
) -> Result<Opened, OpenError> {
    let inner = decrypt(env, key, conversation)?;
    let compact = env.header.kind == Kind::Change;
    let salt: [u8; SALT_LEN] = env.bytes[env.header_len..env.header_len + SALT_LEN]
        .try_into()
        .map_err(|_| DecodeError::Truncated("salt"))?;
    parse_inner(
        &inner,
        SIG_DOMAIN,
        &signed_context(conversation, &salt),
        env.header_bytes(),
        cache,
        compact.then_some(resolve),
    )
}

/// What the author of a Change envelope signed, taken out of its encryption: the cleartext
/// header as carried, the salt, the full signer key, the payload (page number and
/// compressed changes) and the signature. Anyone can check it with
/// [`SignedContent::verify`] knowing only the conversation id, with no epoch key: the
/// signature covers the plaintext (sign-then-encrypt), so a signed export
/// (`crate::export`) carries these instead of the envelopes and their keys, and discloses
/// nothing but what it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedContent {
    /// The envelope's cleartext header bytes, exactly as carried.
    pub header: Vec<u8>,
    pub salt: [u8; SALT_LEN],
    pub signer: DeviceId,
    pub payload: Vec<u8>,
    pub signature: [u8; SIG_LEN],
}

impl SignedContent {
    /// Checks the author's signature over the content for `conversation`: the header must
    /// be a canonical Change header and the signature the signer's (strict Ed25519) under the
    /// envelope domain. Returns the decoded header.
    pub fn verify(&self, conversation: &ConversationId) -> Result<Header, OpenError> {
        let mut r = Reader::new(&self.header);
        let header = Header::decode(&mut r)?;
        r.finish()?;
        if header.kind != Kind::Change {
            return Err(OpenError::WrongKind {
                expected: Kind::Change,
                got: header.kind,
            });
        }
        let mut full = Vec::with_capacity(32 + self.payload.len());
        full.extend_from_slice(&self.signer.0);
        full.extend_from_slice(&self.payload);
        let signed = signed_bytes(
            SIG_DOMAIN,
            &signed_context(conversation, &self.salt),
            &self.header,
            &full,
        );
        self.signer.verify(&signed, &self.signature)?;
        Ok(header)
    }
}

/// Opens a Change envelope as [`open`] does and hands back what its author signed
/// ([`SignedContent`]), verified.
pub fn open_signed(
    env: &Envelope,
    key: &Key,
    conversation: &ConversationId,
    resolve: Resolver<'_>,
) -> Result<SignedContent, OpenError> {
    if env.header.kind != Kind::Change {
        return Err(OpenError::WrongKind {
            expected: Kind::Change,
            got: env.header.kind,
        });
    }
    let inner = decrypt(env, key, conversation)?;
    let salt: [u8; SALT_LEN] = env.bytes[env.header_len..env.header_len + SALT_LEN]
        .try_into()
        .map_err(|_| DecodeError::Truncated("salt"))?;
    let opened = parse_inner(
        &inner,
        SIG_DOMAIN,
        &signed_context(conversation, &salt),
        env.header_bytes(),
        &mut KeyCache::default(),
        Some(resolve),
    )?;
    let signature: [u8; SIG_LEN] = inner[inner.len() - SIG_LEN..]
        .try_into()
        .map_err(|_| DecodeError::Truncated("signature"))?;
    Ok(SignedContent {
        header: env.header_bytes().to_vec(),
        salt,
        signer: opened.signer,
        payload: opened.payload,
        signature,
    })
}

/// Seals an invite to `recipient` (Noise `X`), signed by `sender`.
pub fn seal_invite(
    header: &Header,
    sender: &Identity,
    recipient: &DeviceId,
    hlc: Hlc,
    payload: &[u8],
    seed: [u8; 32],
) -> Result<Envelope, CryptoError> {
    debug_assert!(header.kind == Kind::Invite);
    let mut w = Writer::new();
    header.encode(&mut w);
    let header_len = w.len();
    let inner = inner_signed(
        sender,
        hlc,
        payload,
        INVITE_DOMAIN,
        &[],
        w.as_slice(),
        false,
    );
    let prologue = signed_bytes(INVITE_DOMAIN, &[], w.as_slice(), &[]);
    let sealed = crypto::noise_seal(sender, recipient, &prologue, &inner, seed)?;
    w.raw(&sealed);
    let bytes = w.into_vec();
    Ok(Envelope {
        header: *header,
        header_len,
        id: EnvelopeId(*blake3::hash(&bytes).as_bytes()),
        bytes,
    })
}

/// Opens an invite sealed to `me`; checks that the Noise sender is the signer.
pub fn open_invite(env: &Envelope, me: &Identity) -> Result<Opened, OpenError> {
    if env.header.kind != Kind::Invite {
        return Err(OpenError::WrongKind {
            expected: Kind::Invite,
            got: env.header.kind,
        });
    }
    let prologue = signed_bytes(INVITE_DOMAIN, &[], env.header_bytes(), &[]);
    let (sender_x, inner) = crypto::noise_open(me, &prologue, &env.bytes[env.header_len..])?;
    let opened = parse_inner(
        &inner,
        INVITE_DOMAIN,
        &[],
        env.header_bytes(),
        &mut KeyCache::default(),
        None,
    )?;
    if opened.signer.x25519_public() != Some(sender_x) {
        return Err(OpenError::SignerMismatch);
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> Header {
        Header {
            kind,
            precedence: Precedence::Immediate,
            tag: Tag([4; 16]),
            epoch: EpochId([1, 2, 3, 4]),
            expiry: Some(1_900_000_000),
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let alice = Identity::from_seed([1; 32]);
        let conv = ConversationId([9; 16]);
        let env = seal(
            &header(Kind::Change),
            &[7; 32],
            &conv,
            &alice,
            Hlc { ms: 5, counter: 1 },
            b"payload",
            [3; 12],
        );
        let decoded = Envelope::decode(env.bytes()).unwrap();
        assert_eq!(decoded, env);
        let opened = open(&decoded, &[7; 32], &conv, &mut |_| vec![alice.device_id()]).unwrap();
        assert_eq!(opened.signer, alice.device_id());
        assert_eq!(opened.payload, b"payload");
        // Change envelopes carry no separate time (message keys do).
        assert_eq!(opened.hlc, Hlc::default());
        // Another conversation id (same key) fails: the AD binds it.
        assert_eq!(
            open(&decoded, &[7; 32], &ConversationId([8; 16]), &mut |_| vec![
                alice.device_id()
            ]),
            Err(OpenError::Decrypt)
        );
        assert_eq!(
            open(&decoded, &[6; 32], &conv, &mut |_| vec![alice.device_id()]),
            Err(OpenError::Decrypt)
        );
        // Reading does not depend on knowing the signer.
        assert!(open(&decoded, &[7; 32], &conv, &mut |_| vec![]).is_err());
        assert!(can_decrypt(&decoded, &[7; 32], &conv));
        assert!(!can_decrypt(&decoded, &[6; 32], &conv));
        assert!(!can_decrypt(&decoded, &[7; 32], &ConversationId([8; 16])));
    }

    #[test]
    fn signed_content_verifies_without_the_key_and_refuses_any_change() {
        let alice = Identity::from_seed([1; 32]);
        let bob = Identity::from_seed([2; 32]);
        let conv = ConversationId([9; 16]);
        let env = seal(
            &header(Kind::Change),
            &[7; 32],
            &conv,
            &alice,
            Hlc::default(),
            b"payload",
            [3; 12],
        );
        let s = open_signed(&env, &[7; 32], &conv, &mut |_| vec![alice.device_id()]).unwrap();
        assert_eq!(s.signer, alice.device_id());
        assert_eq!(s.payload, b"payload");
        assert_eq!(s.verify(&conv).unwrap(), header(Kind::Change));
        assert!(s.verify(&ConversationId([8; 16])).is_err());
        let mut t = s.clone();
        t.payload[0] ^= 1;
        assert!(t.verify(&conv).is_err());
        let mut t = s.clone();
        t.salt[0] ^= 1;
        assert!(t.verify(&conv).is_err());
        let mut t = s.clone();
        t.header[1] ^= 1 << 2;
        assert!(t.verify(&conv).is_err());
        let mut t = s.clone();
        t.signer = bob.device_id();
        assert!(t.verify(&conv).is_err());
        let mut t = s.clone();
        t.signature[10] ^= 1;
        assert!(t.verify(&conv).is_err());
    }

    #[test]
    fn header_tampering_is_detected() {
        let alice = Identity::from_seed([1; 32]);
        let conv = ConversationId([9; 16]);
        let env = seal(
            &header(Kind::Change),
            &[7; 32],
            &conv,
            &alice,
            Hlc::default(),
            b"x",
            [3; 12],
        );
        let mut bytes = env.bytes().to_vec();
        // Raise the precedence from immediate to flash.
        bytes[1] |= 3 << 2;
        let tampered = Envelope::decode(&bytes).unwrap();
        assert_ne!(tampered.id(), env.id());
        assert_eq!(
            open(&tampered, &[7; 32], &conv, &mut |_| vec![alice.device_id()]),
            Err(OpenError::Decrypt)
        );
    }

    #[test]
    fn reserved_bits_and_versions_are_refused() {
        let alice = Identity::from_seed([1; 32]);
        let env = seal(
            &header(Kind::Change),
            &[7; 32],
            &ConversationId([9; 16]),
            &alice,
            Hlc::default(),
            b"x",
            [3; 12],
        );
        let mut b = env.bytes().to_vec();
        b[1] |= 0x80;
        assert_eq!(
            Envelope::decode(&b),
            Err(DecodeError::NonCanonical("flags"))
        );
        for v in [VERSION - 1, VERSION + 1] {
            let mut b = env.bytes().to_vec();
            b[0] = v;
            assert_eq!(Envelope::decode(&b), Err(DecodeError::UnknownVersion(v)));
        }
        let mut b = env.bytes().to_vec();
        b[1] = (b[1] & !3) | 3;
        assert_eq!(Envelope::decode(&b), Err(DecodeError::Invalid("kind")));
    }

    #[test]
    fn invite_round_trip() {
        let admin = Identity::from_seed([1; 32]);
        let bob = Identity::from_seed([2; 32]);
        let eve = Identity::from_seed([3; 32]);
        let h = Header {
            kind: Kind::Invite,
            precedence: Precedence::Priority,
            tag: Tag([1; 16]),
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let env = seal_invite(
            &h,
            &admin,
            &bob.device_id(),
            Hlc::default(),
            b"secret",
            [5; 32],
        )
        .unwrap();
        let env = Envelope::decode(env.bytes()).unwrap();
        let opened = open_invite(&env, &bob).unwrap();
        assert_eq!(opened.payload, b"secret");
        assert_eq!(opened.signer, admin.device_id());
        assert_eq!(open_invite(&env, &eve), Err(OpenError::Decrypt));
    }
}
