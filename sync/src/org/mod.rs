//! Organisation credentials: small signed records that say "this device key belongs to this
//! person of this organisation", verifiable offline with nothing but the organisation's
//! pinned root key (docs/organisations.md).
//!
//! The trust model is a two-level PKI with fixed shape, in the spirit of X.509 path
//! validation (RFC 5280 §6) but without its generality:
//!
//! ```text
//!   OrgRoot (self-signed, pinned at enrolment)
//!     └─ RegistrarCert  root → registrar key, scope (a unit path), period
//!          ├─ PersonCred  registrar → person id, names, designation, unit, languages
//!          └─ DeviceCred  registrar → device key, for a person id, label
//!   [RegistrarCert from another organisation's root: cross-certification]
//!   Revocation  root or registrar → device | person | registrar, effective time
//!   WipeOrder   root or registrar → a device: erase yourself (carries its revocation)
//!   RoleAssignment root or registrar in scope → role (unit, key, titles) held by a person from a time
//! ```
//!
//! Every record is `version · kind · issuer · issued-at · expiry · body · signature`, in the
//! canonical codec (`crate::codec`); the signature is Ed25519 (strict) over a per-kind
//! context string followed by every byte before it, so a record of one kind can never be
//! read as another. Decoding verifies the signature, so a decoded record is authentic for
//! its issuer key; [`verify::verify_device`] then decides whether the chain of issuers
//! leads to a pinned root, at `now` (passed in: this module reads no clock), with a
//! tolerance for skewed clocks.
//!
//! Parts: [`record`] (the five records and their bounds), [`verify`] (the chain rule, the
//! time rule, revocations and their cascade), [`bundle`] (the enrolment bundle, its text
//! form for a QR code, and the registrar's issuing helper), [`directory`] (the signed
//! directory of people, devices and roles, its bounds, handover and search).

pub mod bundle;
pub mod directory;
pub mod record;
pub mod verify;

pub use bundle::{Registrar, armor, dearmor, enrol};
pub use directory::{DirId, DirRecord, Directory, Entry, Judge, RoleError, RoleId, fold};
pub use record::{
    DeviceCred, OrgRoot, PersonCred, Record, RegistrarCert, Revocation, RoleAssignment, Target,
    Unit, UnitError, WipeOrder, is_role_key, kind_of,
};
pub use verify::{
    Chain, Revocations, Verified, VerifiedRole, verify_device, verify_role, verify_wipe,
};

use thiserror::Error;

use crate::codec::DecodeError;
use crate::ids::{DeviceId, OrgId, PersonId};

/// Record format version (the first byte of every record and chain).
pub const VERSION: u8 = 1;
/// A record's encoding, at most (a person with the most names is about 3 KiB).
pub const MAX_RECORD_BYTES: usize = 4096;
/// Bytes of a display name, designation or name in one script.
pub const MAX_TEXT_BYTES: usize = 256;
/// Bytes of a device label ("phone", "laptop").
pub const MAX_LABEL_BYTES: usize = 64;
/// Scripts a person's name may be given in.
pub const MAX_NAMES: usize = 8;
/// Languages a person may list.
pub const MAX_LANGUAGES: usize = 8;
/// A BCP-47 tag, at most (RFC 5646 §4.4.1 recommends implementations accept 35).
pub const MAX_TAG_BYTES: usize = 35;
/// Bytes of a unit path (`bihar/darbhanga/sadar`).
pub const MAX_UNIT_BYTES: usize = 128;
/// Segments of a unit path.
pub const MAX_UNIT_SEGMENTS: usize = 8;
/// Signed links between a pinned root and a device key, at most: a cross-certification, the
/// registrar certificate and the device credential (the person credential sits beside the
/// device's, signed by the same registrar). The chain has this fixed shape, so it is bounded
/// by construction.
pub const MAX_CHAIN_LINKS: usize = 3;
/// How far a verifier's clock may be from the issuer's, either way, by default: seven days
/// (a phone left off in a drawer, a laptop with a flat RTC battery). See [`verify`].
pub const DEFAULT_SKEW_MS: u64 = 7 * 86_400_000;
/// Revocations a [`Revocations`] set holds by default (about 20 MiB at most).
pub const MAX_REVOCATIONS: usize = 65_536;
/// Records a [`Directory`] holds (chains of about 1 KiB, assignments of about 0.5 KiB:
/// some 16 MiB at most), enough for a district's officials and their devices several
/// times over. A full directory refuses new records rather than forget one.
pub const MAX_DIRECTORY_RECORDS: usize = 16_384;
/// Records one registrar key may have in a [`Directory`]: a rogue registrar's flood fills
/// its own quota, never the whole directory.
pub const MAX_DIRECTORY_PER_ISSUER: usize = 4_096;
/// Assignments of one role a [`Directory`] keeps (the latest in the handover order; an
/// older one matters only if every later one is revoked or expires).
pub const MAX_ASSIGNMENTS_PER_ROLE: usize = 4;

/// Why a credential, chain or revocation was refused. Every variant is a clear sentence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredError {
    #[error("malformed record: {0}")]
    Decode(#[from] DecodeError),
    #[error("expected a {expected} record, found kind {found}")]
    WrongKind { expected: &'static str, found: u8 },
    #[error("the {0} is not signed by its issuer (forged or altered)")]
    BadSignature(&'static str),
    #[error("the {record} expires before it was issued")]
    ExpiresBeforeIssue { record: &'static str },
    #[error("the organisation {0} is not one this device trusts (no pinned root)")]
    UnknownRoot(OrgId),
    #[error("the registrar certificate is not signed by the organisation's root")]
    NotIssuedByRoot,
    #[error(
        "{issuer} is not the registrar of this chain: only a certified registrar issues credentials"
    )]
    NotARegistrar { issuer: DeviceId },
    #[error("the device credential is for person {device_says}, the person credential is {person}")]
    PersonMismatch {
        device_says: PersonId,
        person: PersonId,
    },
    #[error("the cross-certification is for registrar {certified}, not this chain's registrar")]
    CrossSubjectMismatch { certified: DeviceId },
    #[error("unit '{unit}' is outside the registrar's scope '{scope}'")]
    OutsideScope { unit: String, scope: String },
    #[error("unit '{unit}' is outside the cross-certification's scope '{scope}'")]
    CrossOutsideScope { unit: String, scope: String },
    #[error(
        "the {record} was issued at {issued_at} ms, after its registrar's certificate expired ({expires} ms)"
    )]
    RegistrarExpiredAtIssue {
        record: &'static str,
        issued_at: u64,
        expires: u64,
    },
    #[error(
        "the {record} was issued at {issued_at} ms, before its issuer was certified ({certified} ms)"
    )]
    IssuedBeforeIssuer {
        record: &'static str,
        issued_at: u64,
        certified: u64,
    },
    #[error(
        "the {record} was issued at {issued_at} ms, outside the cross-certification's period ({from} to {until} ms)"
    )]
    CrossOutsidePeriod {
        record: &'static str,
        issued_at: u64,
        from: u64,
        until: u64,
    },
    #[error("the {record} expired at {expires} ms (now {now} ms, tolerance {skew} ms)")]
    Expired {
        record: &'static str,
        expires: u64,
        now: u64,
        skew: u64,
    },
    #[error("the {record} is valid only from {issued_at} ms (now {now} ms, tolerance {skew} ms)")]
    NotYetValid {
        record: &'static str,
        issued_at: u64,
        now: u64,
        skew: u64,
    },
    #[error("the device was revoked from {effective_at} ms")]
    DeviceRevoked { effective_at: u64 },
    #[error("the person was revoked from {effective_at} ms")]
    PersonRevoked { effective_at: u64 },
    #[error("the registrar was revoked from {effective_at} ms, before it issued this credential")]
    RegistrarRevoked { effective_at: u64 },
    #[error("the revocation's issuer certificate is for {certified}, not its signer")]
    RevokerCertMismatch { certified: DeviceId },
    #[error("the revocation set is full ({max} revocations)")]
    RevocationsFull { max: usize },
    #[error("this bundle is for device {bundle_for}, not this device ({me})")]
    NotMyDevice { bundle_for: DeviceId, me: DeviceId },
    #[error("the signing key is not the record's issuer")]
    WrongSigner,
    #[error("the wipe order's revocation is not its signer's, or not of a device")]
    BadWipeOrder,
    #[error("the wipe order is for device {named}, not this device")]
    WipeForAnotherDevice { named: DeviceId },
    #[error(
        "the wipe order's signer {issuer} has no authority over this device (not its organisation's root, nor a registrar in scope)"
    )]
    WipeNotAuthorised { issuer: DeviceId },
    #[error("the directory is full ({max} records)")]
    DirectoryFull { max: usize },
    #[error("registrar {issuer} already has {max} records in the directory")]
    IssuerQuotaFull { issuer: DeviceId, max: usize },
    #[error("not a credential text: {0}")]
    BadText(&'static str),
}
