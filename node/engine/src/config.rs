//! Engine settings, and every fixed number the engine uses, with where it comes from.
//!
//! [`Config`] holds what a driver may choose; the constants below are the engine's own
//! bounds. Each says why it has the value it has (`docs/security.md` for the bounds that
//! protect against peers, `docs/performance.md` for the measured ones).

/// Engine settings. Defaults say where each number comes from.
#[derive(Debug, Clone)]
pub struct Config {
    /// This device's display name.
    pub name: String,
    /// Carry envelopes of conversations this device is not in (store-and-forward for others).
    pub relay: bool,
    /// Largest total of carried bytes (guess: a phone can spare 256 MiB).
    pub relay_max_bytes: u64,
    /// One tag holds at most `relay_max_bytes / relay_tag_share` of carried bytes, and what
    /// one peer device pushed at most `relay_max_bytes / relay_origin_share`; past a quota the
    /// oldest carried envelope of that tag, that peer or in all is evicted
    /// ([`vaarta_sync::limits::RELAY_TAG_SHARE`], [`vaarta_sync::limits::RELAY_ORIGIN_SHARE`]).
    pub relay_tag_share: u64,
    pub relay_origin_share: u64,
    /// What strangers (peers that are not contacts: in no conversation with this device, not
    /// accepted) pushed holds at most `relay_max_bytes / relay_stranger_share` together, and
    /// never evicts a contact's carried envelope
    /// ([`vaarta_sync::limits::RELAY_STRANGER_SHARE`]).
    pub relay_stranger_share: u64,
    /// What peers whose credential chain verified against a root pinned here pushed, when
    /// they are not contacts, holds at most `relay_max_bytes / relay_vouched_share` together,
    /// and strangers never evict it ([`vaarta_sync::limits::RELAY_VOUCHED_SHARE`]).
    pub relay_vouched_share: u64,
    /// Re-reconcile each link this often even if nothing seems new (guess: cheap, ~25 bytes).
    pub resync_interval_ms: u64,
    /// Links at most (rust-libp2p's connection-limit guidance; a phone rarely sees more;
    /// `docs/security.md`, "Bound everything a peer can grow").
    pub max_links: usize,
    /// Inbound links at most: the rest of [`Self::max_links`] is kept for links this device
    /// dials, so strangers that connect cannot take every slot (eclipse; libp2p's
    /// connection-limit docs pair a total limit with an incoming one for this reason). Links
    /// to static peers are never refused for want of a slot.
    pub max_inbound_links: usize,
    /// A link whose peer has not sent its hello and intro this long after it came up is
    /// closed (a silent connection holds a slot for nothing; guess: the hello and intro take
    /// two round trips).
    pub hello_timeout_ms: u64,
    /// Known peers (mDNS hints, static peers) at most (discovery tables are capped:
    /// `docs/security.md`, same section).
    pub max_peers: usize,
    /// Least time between two dials (dialling is rate-limited, same section).
    pub min_dial_interval_ms: u64,
    /// Redial backoff: first wait (guess: 1 s doubling to 1 min).
    pub backoff_initial_ms: u64,
    /// Redial backoff: largest wait.
    pub backoff_max_ms: u64,
    /// How long an mDNS hint stays worth dialling after it was last seen.
    pub hint_ttl_ms: u64,
    /// Pushes in flight (unacknowledged) per link and precedence lane: flow control (a link
    /// holds at most four windows in flight, one per precedence).
    pub push_window: usize,
    /// Envelopes queued for one link; past this the queue is dropped and a reconciliation is
    /// scheduled instead (it finds the same envelopes again; nothing is lost).
    pub max_push_queue: usize,
    /// Refused frames or envelopes from one link before it is cut off.
    pub max_faults: u32,
    /// Links a relayed envelope is announced to (gossipsub's lazy degree is 6; we take a few
    /// more since contacts are brief), the rest learn of it by reconciliation.
    pub announce_fanout: usize,
    /// Acknowledgements wait up to this long to cover more envelopes (TCP's delayed-ACK idea;
    /// 20 ms halves a paced link's receipt bytes and is invisible to users).
    pub ack_delay_ms: u64,
    /// ...or until this many envelopes are waiting for one.
    pub ack_every: u32,
    /// How long a misbehaving peer is refused after being cut off.
    pub ban_ms: u64,
    /// Peers to keep connected (transport addresses, dialled with backoff).
    pub static_peers: Vec<String>,
    /// Whose invitations create conversations at once: by default only contacts' (members
    /// of a conversation held here, devices the user accepted); strangers' wait in a bounded
    /// inbox for the user ([`vaarta_sync::replica::InvitePolicy`]).
    pub invitations: vaarta_sync::replica::InvitePolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "device".into(),
            relay: true,
            relay_max_bytes: DEFAULT_RELAY_MAX_BYTES,
            relay_tag_share: vaarta_sync::limits::RELAY_TAG_SHARE,
            relay_origin_share: vaarta_sync::limits::RELAY_ORIGIN_SHARE,
            relay_stranger_share: vaarta_sync::limits::RELAY_STRANGER_SHARE,
            relay_vouched_share: vaarta_sync::limits::RELAY_VOUCHED_SHARE,
            resync_interval_ms: 30_000,
            max_links: 64,
            max_inbound_links: 48,
            hello_timeout_ms: 10_000,
            max_peers: 256,
            min_dial_interval_ms: 100,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            hint_ttl_ms: 5 * 60_000,
            push_window: 1024,
            max_push_queue: 100_000,
            max_faults: 8,
            announce_fanout: 8,
            ack_delay_ms: 20,
            ack_every: 64,
            ban_ms: 60_000,
            static_peers: Vec::new(),
            invitations: vaarta_sync::replica::InvitePolicy::HoldStrangers,
        }
    }
}

/// Default relay quota (the replica's own default, [`vaarta_sync::limits`]), written once.
pub const DEFAULT_RELAY_MAX_BYTES: u64 = vaarta_sync::limits::DEFAULT_RELAY_MAX_BYTES;

/// How often admin duties run (key rotation after a removal, key shares for new members).
/// The replica rate-limits each conversation's duties on its own; this only bounds how often
/// the engine asks.
pub const MAINTAIN_INTERVAL_MS: u64 = 5_000;

/// How often carried envelopes past their expiry are dropped (checked at a maintain run).
pub const EXPIRE_INTERVAL_MS: u64 = 60_000;

/// A reconciliation that found nothing new doubles the link's resync interval, up to this
/// many times the configured one (an idle link costs ~25 bytes per resync).
pub const RESYNC_BACKOFF_MAX_FACTOR: u64 = 4;

/// Ids a peer may be found lacking in one reconciliation before receipt recovery gives up
/// for that session (it then waits for the next one).
pub const MAX_SESSION_LACKS: usize = 4096;

/// Own messages per conversation awaiting receipts that one reconciliation looks at; the
/// list is kept near this size. Receipts lost with a link concern the last few messages sent
/// before it dropped, and each reconciliation's cost grows with this number.
pub const MAX_AWAITING_RECEIPTS: usize = 256;

/// Receipt ids one link may have looked up at once (a `Receipt` budget that refills at
/// [`RECEIPT_IDS_PER_S`]): twice what a device may owe one author
/// ([`vaarta_sync::limits::MAX_OWED_RECEIPTS_PER_AUTHOR`]), so an honest peer's receipts at
/// link up always fit. Ids past the budget are counted and dropped unread (not a fault: an
/// honest burst is never punished; the work stays bounded).
pub const RECEIPT_IDS_BURST: u64 = 2 * vaarta_sync::limits::MAX_OWED_RECEIPTS_PER_AUTHOR as u64;
/// Receipt ids a link's budget regains per second.
pub const RECEIPT_IDS_PER_S: u64 = 100;

/// An envelope asked for with `Want` is asked of another peer if the first has not
/// delivered it within this long.
pub const WANT_RETRY_MS: u64 = 5_000;

/// Frames waiting on one link past which no more pushes are added to it: the transport
/// drains it first (pushes stay in the queue, ordered, so FLASH overtakes what is queued).
pub const MAX_FRAMES_QUEUED_PER_LINK: usize = 64;

/// A link that stayed up this long resets its peer's redial backoff when it drops.
pub const LONG_LINK_MS: u64 = 30_000;

/// Transport addresses remembered per peer (mDNS may list many).
pub const MAX_PEER_ADDRS: usize = 8;

/// A static peer's dial that never reports back is retried after at least this long.
pub const STATIC_DIAL_TIMEOUT_MS: u64 = 10_000;

/// A discovered peer is not dialled again within this long (or its backoff, if longer).
pub const PEER_REDIAL_MIN_MS: u64 = 5_000;

/// Store items a reconciliation session may visit, per item held under its tags (plus
/// [`RECON_WORK_BASE`]). An honest session visits each item about once per level of the
/// range tree that still differs (log_16 n levels: 5 for a million ids); the bound stops a
/// peer whose messages make this device scan its store again and again (a 25-byte message
/// can ask for a full scan). Measured: 1.2 items per item for 300 differences among 20k.
pub const RECON_WORK_PER_ITEM: u64 = 8;

/// Store items any session may visit, however little is held.
pub const RECON_WORK_BASE: u64 = 4096;

/// Reconciliations a peer may start on a link in a burst (link up, a few tag changes), and
/// the time that earns one more: past it, new sessions are ignored (the honest initiator
/// starts over when its stalled session expires). With the per-session work bound, this
/// bounds the store work one link can cause per unit of time.
pub const RECON_STARTS_BURST: u64 = 4;
pub const RECON_START_EVERY_MS: u64 = 10_000;
