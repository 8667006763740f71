//! What the engine tells its driver: actions to perform, events to show, counters, and the
//! typed reasons a peer is refused or a link is closed.

use thiserror::Error;
use vaarta_sync::codec::DecodeError;
use vaarta_sync::ids::{DeviceId, EnvelopeId};
use vaarta_sync::recon::{self, ReconError};
use vaarta_sync::replica::{self, CommandError, IngestError};
use vaarta_sync::store::StoreError;

use crate::{LinkId, PeerKey};

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a transport connection to `addr` (and `peer`, if known).
    Dial { peer: Option<PeerKey>, addr: String },
    /// Close a link (after sending what is queued on it). With `ban`, the peer misbehaved:
    /// drop its whole transport connection and refuse it for [`crate::Config::ban_ms`].
    Close {
        link: LinkId,
        reason: CloseReason,
        ban: bool,
    },
}

/// Why the engine closes a link.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    /// The peer is banned (it misbehaved recently).
    #[error("banned")]
    Banned,
    /// Every link slot is taken.
    #[error("too many links")]
    TooManyLinks,
    /// The peer sent no valid hello within [`crate::Config::hello_timeout_ms`].
    #[error("no hello in time")]
    HelloTimeout,
    /// The link leads back to this device.
    #[error("connected to myself")]
    ConnectedToSelf,
    /// The peer closed the session with a `Bye`.
    #[error("peer said bye: {0}")]
    PeerSaidBye(String),
    /// The peer sent something that cuts the link (see [`Fault::is_fatal`]).
    #[error("{0}")]
    Fault(Fault),
}

/// Why input from a peer was refused. Every refusal counts against the link
/// ([`crate::Config::max_faults`]); a fatal one cuts it at once.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fault {
    /// A frame that does not decode.
    #[error("bad frame: {0}")]
    BadFrame(DecodeError),
    /// A hello whose proof does not verify over this link's transport ids.
    #[error("bad frame: hello proof does not verify")]
    BadHelloProof,
    /// Anything but a hello before the peer's hello.
    #[error("frame before hello")]
    BeforeHello,
    /// A push numbered at or below one already received on this link.
    #[error("push sequence went backwards")]
    PushSequence,
    /// A reconciliation message that does not follow the protocol.
    #[error("reconciliation: {0}")]
    Recon(ReconError),
    /// Tag reconciliation from a peer that did not say it relays.
    #[error("tag reconciliation from a peer that is not a relay")]
    TagSyncNotRelay,
    /// A tag reconciliation message that does not follow the protocol.
    #[error("tag reconciliation: {0}")]
    TagSync(ReconError),
    /// A second hello on the link names another device than the first.
    #[error("hello names another device than the link's")]
    DeviceChanged,
    /// A second `Hello` on the link (a session has one nonce each way).
    #[error("a second hello on the link")]
    SecondHello,
    /// A hello of another protocol version (told so in a `Bye`, not banned).
    #[error("protocol version {0} (this device speaks {v})", v = crate::wire::VERSION)]
    Version(u8),
    /// A pushed envelope the replica refused.
    #[error("refused envelope: {0}")]
    Envelope(IngestError),
    /// The credential chain in the peer's proof is malformed or forged.
    #[error("credentials: {0}")]
    Credential(vaarta_sync::org::CredError),
    /// The peer presented credentials issued for another device.
    #[error("credentials of another device")]
    CredentialOfAnotherDevice,
    /// The peer's credentials are revoked (its device, its person, or its registrar before
    /// it issued them).
    #[error("revoked: {0}")]
    Revoked(vaarta_sync::org::CredError),
}

impl Fault {
    /// True if the link is cut at the first such fault: the peer is not speaking the
    /// protocol (or not as who it claims), so nothing more it sends is worth reading.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Fault::BadFrame(_)
                | Fault::BadHelloProof
                | Fault::BeforeHello
                | Fault::DeviceChanged
                | Fault::SecondHello
                | Fault::Version(_)
                | Fault::Credential(_)
                | Fault::CredentialOfAnotherDevice
                | Fault::Revoked(_)
        )
    }
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Sync(replica::Event),
    LinkReady {
        link: LinkId,
        device: DeviceId,
        name: String,
    },
    LinkClosed {
        link: LinkId,
        device: Option<DeviceId>,
    },
    /// A member's device holds an envelope of ours durably and can read it: it acknowledged
    /// the push as stored, or sent a `Receipt` for one it had acknowledged as deferred (or
    /// a reconciliation recovered a lost acknowledgement). Emitted once per device.
    Delivered {
        envelope: EnvelopeId,
        device: DeviceId,
    },
    /// Organisation revocations new to this device, learnt from a peer (each an encoded
    /// `vaarta_sync::org::Revocation`, admitted and held): the daemon saves them with the
    /// home's credentials.
    RevocationsLearnt {
        records: Vec<Vec<u8>>,
    },
    /// Directory records new to this device, learnt from a peer and verified (each an
    /// encoded `vaarta_sync::org::DirRecord`): the daemon saves them with the home's
    /// credentials.
    DirectoryLearnt {
        records: Vec<Vec<u8>>,
    },
    /// A valid wipe order names this device (verified against the root it pinned): the
    /// daemon erases the identity keys and the store, and stops. Reported once.
    WipeOrdered {
        /// The root or registrar key that signed it.
        issuer: DeviceId,
        issued_at: u64,
    },
    /// A wipe order naming this device was refused (forged, out of scope, ...): nothing is
    /// erased.
    WipeRefused {
        reason: String,
    },
    /// A peer sent something refused; `cut` if the link was closed for it.
    Refused {
        link: LinkId,
        reason: Fault,
        cut: bool,
    },
    /// A reconciliation finished.
    Reconciled {
        link: LinkId,
        stats: recon::Stats,
    },
    /// This device sealed an envelope of its own: messages, edits, deletions, reactions and
    /// membership operations (not invitations). Durable at the flush that emits this; listed
    /// as awaiting receipts from the other members.
    Created {
        envelope: EnvelopeId,
    },
}

/// Traffic counters, for benchmarks and simulations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pushes_out: u64,
    pub envelopes_in: u64,
    pub refused: u64,
    pub flushes: u64,
    /// Links closed because the peer said no hello in time.
    pub hello_timeouts: u64,
    /// Envelopes asked for with `Want` and not pushed: not held under the link's session
    /// tags (held under others, or not at all), or already pushed on the link.
    pub wants_ignored: u64,
    /// Store items visited by reconciliation sessions (work bounded per session and link).
    pub recon_work: u64,
    /// Reconciliations a peer started beyond its link's allowance, ignored.
    pub recon_starts_ignored: u64,
    /// Intros (blinded tag lists) sent: one per link at link up, and one per link when our
    /// tags change.
    pub hellos_out: u64,
    /// Ids received in `Receipt` frames.
    pub receipt_ids_in: u64,
    /// Of those, ids looked up (within the link's budget, from a proven device).
    pub receipt_ids_checked: u64,
    /// Of those, ids dropped unread: past the link's budget, or from a link whose device is
    /// not proven.
    pub receipt_ids_ignored: u64,
    /// Ids sent in `Receipt` frames (receipts this device owed).
    pub receipt_ids_out: u64,
    /// Revocation records passed over: from a peer whose credentials did not verify here,
    /// or not signed by a root this device pinned (nor by a registrar it certified).
    pub revocations_ignored: u64,
    /// Directory records not taken in (from an unverified peer, or not verifying here).
    pub directory_ignored: u64,
    /// Wipe orders naming this device that were refused (`Event::WipeRefused`).
    pub wipes_refused: u64,
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Role(#[from] vaarta_sync::org::RoleError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protocol_violations_are_fatal() {
        assert!(Fault::BadFrame(DecodeError::Invalid("x")).is_fatal());
        assert!(Fault::BadHelloProof.is_fatal());
        assert!(Fault::BeforeHello.is_fatal());
        assert!(!Fault::PushSequence.is_fatal());
        assert!(!Fault::TagSyncNotRelay.is_fatal());
        assert!(!Fault::Envelope(IngestError::AuthorRemoved).is_fatal());
    }

    #[test]
    fn reasons_read_as_before() {
        // The text travels in `Bye` frames and logs; it must stay stable.
        assert_eq!(
            Fault::BadHelloProof.to_string(),
            "bad frame: hello proof does not verify"
        );
        assert_eq!(
            CloseReason::PeerSaidBye("x".into()).to_string(),
            "peer said bye: x"
        );
        assert_eq!(
            CloseReason::Fault(Fault::BeforeHello).to_string(),
            "frame before hello"
        );
    }
}
