//! The Vaarta node engine: one device's whole protocol brain, with no I/O.
//!
//! It composes the sync core ([`vaarta_sync::replica::Replica`]) with the mesh protocol:
//! which peers to dial and when to try again, the hello handshake that binds a device key to
//! a transport session, which conversation tags two devices reconcile, when to start a
//! reconciliation, which envelopes to push to whom and in what order, and acknowledgements.
//! The tokio daemon (`vaarta-node`) and the discrete-event simulator (`vaarta-sim`) are two
//! drivers of this same code.
//!
//! # Contract (quinn-style)
//! * Inputs: `handle_link_up`, `handle_link_down`, `handle_frame`, `handle_discovered`,
//!   `handle_dial_failed`, `handle_timeout`, and commands (`send_message`, ...). `now_ms` is
//!   always an argument; randomness comes from a seed.
//! * After a batch of inputs the driver calls [`Engine::flush`]: inbound envelopes are
//!   ingested as one batch, staged messages are sealed into envelopes (group commit), the store
//!   is flushed once, and only *then* are acknowledgements released. Nothing is acknowledged
//!   before it is durable (rule 4).
//! * Outputs: [`Engine::poll_transmit`] (frames per link), [`Engine::poll_action`] (dial,
//!   close), [`Engine::poll_event`] and [`Engine::poll_timeout`] (the next deadline).
//!
//! # Routing
//! An envelope is pushed at once to every linked device whose reconciled tag set includes its
//! tag, except the one it came from (flooding among interested devices, with relays carrying
//! tags they are not members of). Reconciliation repairs whatever pushing missed: on link up,
//! when either side's tags change, and every [`Config::resync_interval_ms`]. Pushes leave in
//! precedence order (FLASH first, membership operations before messages).

pub mod wire;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;
use vaarta_sync::envelope::{Envelope, Kind, Precedence};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId, Tag};
use vaarta_sync::membership::History;
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::recon;
use vaarta_sync::replica::{
    self, CommandError, ConversationInfo, Ingested, MessageInfo, RelayPolicy, Replica,
};
use vaarta_sync::store::{Store, StoreError};

pub use wire::{Frame, Hello, MAX_FRAME_BYTES};

/// A link (one transport connection/stream) as the driver numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// How the driver names a remote transport endpoint (a libp2p peer id; a simulator node).
pub type PeerKey = String;

/// Engine settings. Defaults say where each number comes from.
#[derive(Debug, Clone)]
pub struct Config {
    /// This device's display name.
    pub name: String,
    /// Carry envelopes of conversations this device is not in (store-and-forward for others).
    pub relay: bool,
    /// Largest total of carried bytes (guess: a phone can spare 256 MiB).
    pub relay_max_bytes: u64,
    /// Re-reconcile each link this often even if nothing seems new (guess: cheap, ~25 bytes).
    pub resync_interval_ms: u64,
    /// Links at most (rust-libp2p guidance and THREATS §4.1; a phone rarely sees more).
    pub max_links: usize,
    /// Known peers (mDNS hints, static peers) at most (THREATS F2: cap discovery tables).
    pub max_peers: usize,
    /// Least time between two dials (THREATS F2: rate-limit dialling).
    pub min_dial_interval_ms: u64,
    /// Redial backoff: first wait and cap (guess: 1 s doubling to 1 min).
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How long an mDNS hint stays worth dialling after it was last seen.
    pub hint_ttl_ms: u64,
    /// Pushes in flight (unacknowledged) per link: flow control.
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "device".into(),
            relay: true,
            relay_max_bytes: 256 * 1024 * 1024,
            resync_interval_ms: 30_000,
            max_links: 64,
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
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a transport connection to `addr` (and `peer`, if known).
    Dial { peer: Option<PeerKey>, addr: String },
    /// Close a link (after sending what is queued on it). With `ban`, the peer misbehaved:
    /// drop its whole transport connection and refuse it for [`Config::ban_ms`].
    Close {
        link: LinkId,
        reason: String,
        ban: bool,
    },
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
    /// A device acknowledged (stored durably) an envelope of ours.
    Delivered {
        envelope: EnvelopeId,
        device: DeviceId,
    },
    /// A peer sent something refused; `cut` if the link was closed for it.
    Refused {
        link: LinkId,
        reason: String,
        cut: bool,
    },
    /// A reconciliation finished.
    Reconciled {
        link: LinkId,
        stats: recon::Stats,
    },
    /// This device sealed a new envelope of its own (durable at the flush that emits this).
    Created {
        envelope: EnvelopeId,
    },
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

#[derive(Debug)]
struct Link {
    peer: PeerKey,
    outbound: bool,
    dialed: Option<String>,
    local_tid: Vec<u8>,
    remote_tid: Vec<u8>,
    up_at: u64,
    remote: Option<Hello>,
    /// Tags the peer carries for others (relays only; learnt by tag reconciliation).
    remote_carry: Vec<Tag>,
    /// A reconciliation of carried tag sets in progress (relay to relay).
    tag_sync: Option<TagSync>,
    tags: Vec<Tag>,
    initiator: Option<(u64, recon::Session)>,
    responder: Option<(u64, recon::Session)>,
    /// What the current reconciliation found the peer lacking, and when it started: when it
    /// ends, our own messages sealed before that are known to be on the peer (receipts that
    /// a dropped link lost are recovered so). `None` once more than [`MAX_SESSION_LACKS`].
    session_lacks: Option<BTreeSet<EnvelopeId>>,
    session_started: u64,
    /// Responder: we re-sent our hello because a session came on another tag list; not
    /// again until our tag list for this link changes (no ping-pong if the lists disagree).
    nudged: bool,
    next_session: u64,
    resync_at: u64,
    /// Current resync interval: doubles while reconciliations find nothing (up to 4x the
    /// configured one), resets when one finds something.
    resync_every: u64,
    /// Envelopes to push: (precedence, kind rank, order) → id.
    queue: BTreeSet<(Reverse<Precedence>, u8, u64, EnvelopeId)>,
    queued: BTreeSet<EnvelopeId>,
    /// Relayed envelopes to announce with `Have`.
    announce: BTreeSet<EnvelopeId>,
    unacked: BTreeMap<u64, EnvelopeId>,
    next_push: u64,
    /// Highest push sequence received and handed to ingestion (acked after the next flush).
    received_up_to: Option<u64>,
    /// Durable pushes not yet acknowledged: (up to, since when, how many).
    ack_due: Option<(u64, u64, u32)>,
    faults: u32,
    closing: bool,
    bytes_in: u64,
    bytes_out: u64,
    frames_out: VecDeque<Vec<u8>>,
}

impl Link {
    fn ready(&self) -> bool {
        self.remote.is_some() && !self.closing
    }
}

/// Relays reconcile the *sets of tags* they carry with the same range-based reconciliation as
/// envelopes (tags padded to 32 bytes are the items), so two relays that already know each
/// other's tags spend ~25 bytes, not a list of thousands of tags, on each new link.
#[derive(Debug)]
struct TagSync {
    id: u64,
    session: recon::Session,
    set: vaarta_sync::store::MemoryStore,
    mine: BTreeSet<Tag>,
}

const TAG_SET: Tag = Tag([0; 16]);

/// Ids a peer may be found lacking in one reconciliation before receipt recovery gives up
/// for that session (it then waits for the next one).
const MAX_SESSION_LACKS: usize = 4096;
/// Own messages per conversation awaiting receipts that one reconciliation looks at; the
/// list is kept near this size. Receipts lost with a link concern the last few messages sent
/// before it dropped, and each reconciliation's cost grows with this number.
const MAX_AWAITING_RECEIPTS: usize = 256;

fn tag_set(tags: &[Tag]) -> vaarta_sync::store::MemoryStore {
    let mut st = vaarta_sync::store::MemoryStore::new();
    for t in tags {
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&t.0);
        let _ = st.put_envelope(&TAG_SET, &EnvelopeId(id), b"t");
    }
    st
}

/// What the engine knows about a peer it might dial.
#[derive(Debug, Clone)]
struct PeerInfo {
    addrs: Vec<String>,
    last_seen: u64,
    device: Option<DeviceId>,
    name: Option<String>,
    next_dial: u64,
    backoff: u64,
    banned_until: u64,
}

#[derive(Debug, Clone)]
struct StaticPeer {
    addr: String,
    link: Option<LinkId>,
    next_dial: u64,
    backoff: u64,
    dialing: bool,
}

/// A connected link as shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub link: LinkId,
    pub peer: PeerKey,
    pub device: Option<DeviceId>,
    pub name: Option<String>,
    pub outbound: bool,
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tags: usize,
}

/// A known but not connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSeen {
    pub peer: PeerKey,
    pub device: Option<DeviceId>,
    pub name: Option<String>,
    pub addrs: Vec<String>,
    pub last_seen_ms: u64,
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
}

/// One device's engine. See the crate docs.
#[derive(Debug)]
pub struct Engine<S: Store> {
    replica: Replica<S>,
    config: Config,
    rng: ChaCha20Rng,
    links: BTreeMap<LinkId, Link>,
    peers: BTreeMap<PeerKey, PeerInfo>,
    statics: Vec<StaticPeer>,
    /// Envelopes received since the last flush: (link, push seq, bytes).
    inbox: Vec<(LinkId, u64, Vec<u8>)>,
    /// Envelopes created or stored since the last push round, with the link they came from.
    fresh: Vec<(EnvelopeId, Option<LinkId>)>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    last_dial: u64,
    next_order: u64,
    maintain_at: u64,
    expire_at: u64,
    profiled: BTreeSet<ConversationId>,
    /// Tags in the last hello we sent.
    announced: BTreeSet<Tag>,
    /// Day of the last hello (a new day moves the inbox window: hello again).
    hello_day: u64,
    /// Tags in the last `Carry` we sent.
    announced_carry: BTreeSet<Tag>,
    /// Envelopes asked for with `Want`, and when.
    requested: BTreeMap<EnvelopeId, u64>,
    /// Links with an acknowledgement waiting.
    acks_due: BTreeSet<LinkId>,
    /// Decompressed keys of peers whose hellos we verify.
    hello_keys: vaarta_sync::identity::KeyCache,
    /// Frames taken from the links, waiting for [`Engine::poll_transmit`].
    outgoing: VecDeque<(LinkId, Vec<u8>)>,
    counters: Counters,
    now: u64,
}

fn kind_rank(k: Kind) -> u8 {
    match k {
        Kind::Control | Kind::Invite => 0,
        Kind::Change => 1,
    }
}

/// Tags two devices reconcile: what both are willing to hold. Members hold their own
/// conversations; a relay holds anything, so two relays reconcile everything either carries
/// (`*_carry`, exchanged in `Carry` frames), and a relay and a member reconcile the member's.
pub fn session_tags(a: &Hello, a_carry: &[Tag], b: &Hello, b_carry: &[Tag]) -> Vec<Tag> {
    // What each device wants: its conversations and its inbox window (derived, not sent).
    let want = |h: &Hello| -> Vec<Tag> {
        let mut t = h.tags.clone();
        t.extend(replica::inbox_window(&h.device, h.day));
        t
    };
    let (wa, wb) = (want(a), want(b));
    let mut t: Vec<Tag> = match (a.relay, b.relay) {
        (true, true) => wa
            .iter()
            .chain(wb.iter())
            .chain(a_carry)
            .chain(b_carry)
            .copied()
            .collect(),
        (true, false) => wb,
        (false, true) => wa,
        (false, false) => {
            let bs: BTreeSet<&Tag> = wb.iter().collect();
            wa.iter().filter(|t| bs.contains(t)).copied().collect()
        }
    };
    t.sort();
    t.dedup();
    t
}

impl<S: Store> Engine<S> {
    /// Opens the engine over a store. `seed` seeds every random choice (the daemon passes
    /// OS randomness; the simulator a per-node seed).
    pub fn new(
        identity: Identity,
        store: S,
        config: Config,
        seed: [u8; 32],
        now_ms: u64,
    ) -> Result<Self, StoreError> {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut rseed = [0u8; 32];
        rng.fill_bytes(&mut rseed);
        let mut replica = Replica::open(identity, store, rseed)?;
        replica.set_relay_policy(RelayPolicy {
            carry: config.relay,
            max_bytes: config.relay_max_bytes,
        });
        let statics = config
            .static_peers
            .iter()
            .map(|a| StaticPeer {
                addr: a.clone(),
                link: None,
                next_dial: now_ms,
                backoff: config.backoff_initial_ms,
                dialing: false,
            })
            .collect();
        Ok(Self {
            replica,
            config,
            rng,
            links: BTreeMap::new(),
            peers: BTreeMap::new(),
            statics,
            inbox: Vec::new(),
            fresh: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            last_dial: 0,
            next_order: 0,
            maintain_at: now_ms,
            expire_at: now_ms + 60_000,
            profiled: BTreeSet::new(),
            announced: BTreeSet::new(),
            announced_carry: BTreeSet::new(),
            hello_day: 0,
            requested: BTreeMap::new(),
            outgoing: VecDeque::new(),
            acks_due: BTreeSet::new(),
            hello_keys: Default::default(),
            counters: Counters::default(),
            now: now_ms,
        })
    }

    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    pub fn replica_mut(&mut self) -> &mut Replica<S> {
        &mut self.replica
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn device_id(&self) -> DeviceId {
        self.replica.device_id()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn into_store(self) -> S {
        self.replica.into_store()
    }

    // ------------------------------------------------------------------ outputs

    pub fn poll_transmit(&mut self) -> Option<(LinkId, Vec<u8>)> {
        if self.outgoing.is_empty() {
            // One pass over the links fills a batch; the driver drains it frame by frame.
            let ids: Vec<LinkId> = self.links.keys().copied().collect();
            for id in ids {
                self.fill_pushes(id);
                if let Some(l) = self.links.get_mut(&id) {
                    while let Some(f) = l.frames_out.pop_front() {
                        l.bytes_out += f.len() as u64;
                        self.counters.frames_out += 1;
                        self.counters.bytes_out += f.len() as u64;
                        self.outgoing.push_back((id, f));
                    }
                }
            }
        }
        self.outgoing.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.replica.poll_event().map(Event::Sync)
    }

    /// The next time [`Engine::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.maintain_at;
        for l in self.links.values() {
            if l.ready() && l.outbound {
                t = t.min(l.resync_at);
            }
        }
        for link in &self.acks_due {
            if let Some((_, since, _)) = self.links.get(link).and_then(|l| l.ack_due) {
                t = t.min(since + self.config.ack_delay_ms);
            }
        }
        for s in &self.statics {
            if s.link.is_none() && !s.dialing {
                t = t.min(
                    s.next_dial
                        .max(self.last_dial + self.config.min_dial_interval_ms),
                );
            }
        }
        Some(t)
    }

    fn send(&mut self, link: LinkId, f: Frame) {
        if let Some(l) = self.links.get_mut(&link) {
            l.frames_out.push_back(f.encode());
        }
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= vaarta_sync::limits::MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    // ------------------------------------------------------------------ links

    fn my_hello(&self) -> Hello {
        let mut tags = self.replica.conversation_tags();
        tags.truncate(wire::MAX_HELLO_TAGS);
        Hello {
            device: self.replica.device_id(),
            name: self.config.name.clone(),
            // A relay whose quota is used up stops offering to carry.
            relay: self.replica.carries(),
            day: vaarta_sync::crypto::day_of(self.now),
            tags,
        }
    }

    /// Tags this relay carries for others (sent only to other relays).
    fn my_carry(&self) -> Vec<Tag> {
        if !self.replica.carries() {
            return Vec::new();
        }
        let own: BTreeSet<Tag> = self
            .replica
            .tags_of_interest(self.now)
            .into_iter()
            .collect();
        let mut t: Vec<Tag> = self
            .replica
            .store()
            .tags()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| !own.contains(t))
            .collect();
        t.truncate(wire::MAX_CARRY_TAGS);
        t
    }

    /// Recomputes a link's session tags; restarts reconciliation (dialer side) if they changed.
    fn retag(&mut self, link: LinkId) {
        let mine = self.my_hello();
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(r) = &l.remote else { return };
        let tags = session_tags(&mine, &carry, r, &l.remote_carry);
        if tags != l.tags {
            l.tags = tags;
            l.nudged = false;
            if l.outbound {
                l.resync_at = 0;
                l.initiator = None;
            }
        }
    }

    /// A transport connection is up. `local_tid`/`remote_tid` are the transport-authenticated
    /// ids of both ends (bound into the hello proof). `dialed` is the address we dialled.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_link_up(
        &mut self,
        link: LinkId,
        peer: PeerKey,
        outbound: bool,
        dialed: Option<String>,
        local_tid: Vec<u8>,
        remote_tid: Vec<u8>,
        now_ms: u64,
    ) {
        self.now = now_ms;
        let banned = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.banned_until > now_ms);
        if banned || self.links.len() >= self.config.max_links {
            self.actions.push_back(Action::Close {
                link,
                reason: if banned {
                    "banned".into()
                } else {
                    "too many links".into()
                },
                ban: banned,
            });
            return;
        }
        if let Some(addr) = &dialed
            && let Some(s) = self.statics.iter_mut().find(|s| &s.addr == addr)
        {
            s.link = Some(link);
            s.dialing = false;
        }
        let l = Link {
            peer: peer.clone(),
            outbound,
            dialed,
            local_tid,
            remote_tid,
            up_at: now_ms,
            remote: None,
            remote_carry: Vec::new(),
            tag_sync: None,
            tags: Vec::new(),
            initiator: None,
            responder: None,
            session_lacks: Some(BTreeSet::new()),
            session_started: self.now,
            nudged: false,
            next_session: 1,
            resync_at: u64::MAX,
            resync_every: self.config.resync_interval_ms,
            queue: BTreeSet::new(),
            queued: BTreeSet::new(),
            announce: BTreeSet::new(),
            unacked: BTreeMap::new(),
            next_push: 1,
            received_up_to: None,
            ack_due: None,
            faults: 0,
            closing: false,
            bytes_in: 0,
            bytes_out: 0,
            frames_out: VecDeque::new(),
        };
        self.links.insert(link, l);
        self.send_hello(link);
    }

    fn send_hello(&mut self, link: LinkId) {
        let hello = self.my_hello();
        self.announced = hello.tags.iter().copied().collect();
        self.hello_day = hello.day;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let f = Frame::hello(self.replica.identity(), hello, &l.local_tid, &l.remote_tid);
        self.send(link, f);
    }

    pub fn handle_link_down(&mut self, link: LinkId, now_ms: u64) {
        self.now = now_ms;
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        self.outgoing.retain(|(l, _)| *l != link);
        // Anything received but not yet ingested is still processed at the next flush; the
        // acknowledgement simply cannot be sent, so the peer will offer it again.
        let device = l.remote.as_ref().map(|h| h.device);
        let up_long = now_ms.saturating_sub(l.up_at) > 30_000;
        for s in &mut self.statics {
            if s.link == Some(link) {
                s.link = None;
                s.dialing = false;
                if up_long {
                    s.backoff = self.config.backoff_initial_ms;
                }
                s.next_dial = now_ms + jitter(&mut self.rng, s.backoff);
                s.backoff = (s.backoff * 2).min(self.config.backoff_max_ms);
            }
        }
        if let Some(p) = self.peers.get_mut(&l.peer) {
            p.next_dial = now_ms + jitter(&mut self.rng, p.backoff);
            p.backoff = (p.backoff * 2).min(self.config.backoff_max_ms);
            if up_long {
                p.backoff = self.config.backoff_initial_ms;
            }
        }
        self.event(Event::LinkClosed { link, device });
    }

    /// mDNS (or any discovery) says `peer` may be reachable at `addrs`. A hint only.
    pub fn handle_discovered(&mut self, peer: PeerKey, addrs: Vec<String>, now_ms: u64) {
        self.now = now_ms;
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers {
            // Evict the stalest peer that is not connected.
            let connected: BTreeSet<&PeerKey> = self.links.values().map(|l| &l.peer).collect();
            if let Some(victim) = self
                .peers
                .iter()
                .filter(|(k, _)| !connected.contains(k))
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(k, _)| k.clone())
            {
                self.peers.remove(&victim);
            } else {
                return;
            }
        }
        let initial = self.config.backoff_initial_ms;
        let p = self.peers.entry(peer).or_insert(PeerInfo {
            addrs: Vec::new(),
            last_seen: now_ms,
            device: None,
            name: None,
            next_dial: now_ms,
            backoff: initial,
            banned_until: 0,
        });
        p.last_seen = now_ms;
        for a in addrs.into_iter().take(8) {
            if !p.addrs.contains(&a) {
                p.addrs.push(a);
            }
        }
        p.addrs.truncate(8);
        self.dial_due(now_ms);
    }

    pub fn handle_dial_failed(&mut self, peer: Option<PeerKey>, addr: String, now_ms: u64) {
        self.now = now_ms;
        if let Some(s) = self.statics.iter_mut().find(|s| s.addr == addr) {
            s.dialing = false;
            s.next_dial = now_ms + jitter(&mut self.rng, s.backoff);
            s.backoff = (s.backoff * 2).min(self.config.backoff_max_ms);
        }
        if let Some(p) = peer.and_then(|k| self.peers.get_mut(&k)) {
            p.next_dial = now_ms + jitter(&mut self.rng, p.backoff);
            p.backoff = (p.backoff * 2).min(self.config.backoff_max_ms);
        }
    }

    fn dial_due(&mut self, now_ms: u64) {
        if self.links.len() >= self.config.max_links {
            return;
        }
        let gap = self.config.min_dial_interval_ms;
        for i in 0..self.statics.len() {
            if now_ms < self.last_dial + gap {
                return;
            }
            let s = &mut self.statics[i];
            if s.link.is_none() && !s.dialing && s.next_dial <= now_ms {
                s.dialing = true;
                // A dial that never reports back is retried after the backoff.
                s.next_dial = now_ms + s.backoff.max(10_000);
                self.last_dial = now_ms;
                self.actions.push_back(Action::Dial {
                    peer: None,
                    addr: s.addr.clone(),
                });
            }
        }
        if self.peers.is_empty() {
            return;
        }
        let connected: BTreeSet<PeerKey> = self.links.values().map(|l| l.peer.clone()).collect();
        let me = self.replica.device_id();
        let keys: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for k in keys {
            if now_ms < self.last_dial + gap {
                return;
            }
            let ttl = self.config.hint_ttl_ms;
            let p = self.peers.get_mut(&k).expect("listed");
            if connected.contains(&k)
                || p.next_dial > now_ms
                || p.banned_until > now_ms
                || now_ms.saturating_sub(p.last_seen) > ttl
                || p.device == Some(me)
                || p.addrs.is_empty()
            {
                continue;
            }
            p.next_dial = now_ms + p.backoff.max(5_000);
            self.last_dial = now_ms;
            let addr = p.addrs[0].clone();
            self.actions.push_back(Action::Dial {
                peer: Some(k),
                addr,
            });
        }
    }

    /// A frame arrived on a link. Envelopes are queued for the next [`Engine::flush`].
    pub fn handle_frame(&mut self, link: LinkId, bytes: &[u8], now_ms: u64) {
        self.now = now_ms;
        self.counters.frames_in += 1;
        self.counters.bytes_in += bytes.len() as u64;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.closing {
            return;
        }
        l.bytes_in += bytes.len() as u64;
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.fault(link, format!("bad frame: {e}")),
        };
        match frame {
            Frame::Hello(h, sig) => self.on_hello(link, h, sig, now_ms),
            _ if l.remote.is_none() => self.fault(link, "frame before hello".into()),
            Frame::Recon {
                session,
                tags,
                message,
            } => self.on_recon(link, session, tags, &message),
            Frame::Push { seq, envelope } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                if l.received_up_to.is_some_and(|r| seq <= r) {
                    return self.fault(link, "push sequence went backwards".into());
                }
                l.received_up_to = Some(seq);
                self.counters.envelopes_in += 1;
                self.inbox.push((link, seq, envelope));
            }
            Frame::Ack { up_to } => self.on_ack(link, up_to),
            Frame::Have { ids } => self.on_have(link, ids),
            Frame::Carry { tags } => {
                if let Some(l) = self.links.get_mut(&link) {
                    let mut all: BTreeSet<Tag> = l.remote_carry.iter().copied().collect();
                    all.extend(tags);
                    l.remote_carry = all.into_iter().take(wire::MAX_CARRY_TAGS).collect();
                }
                self.retag(link);
            }
            Frame::TagSync { session, message } => self.on_tag_sync(link, session, &message),
            Frame::Want { ids } => {
                for id in ids {
                    self.enqueue(link, id);
                }
            }
            Frame::Bye { reason } => {
                self.actions.push_back(Action::Close {
                    link,
                    reason: format!("peer said bye: {reason}"),
                    ban: false,
                });
                if let Some(l) = self.links.get_mut(&link) {
                    l.closing = true;
                }
            }
        }
    }

    fn fault(&mut self, link: LinkId, reason: String) {
        self.counters.refused += 1;
        let max = self.config.max_faults;
        let ban = self.config.ban_ms;
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.faults += 1;
        let cut =
            l.faults >= max || reason.starts_with("bad frame") || reason.contains("before hello");
        if cut && !l.closing {
            l.closing = true;
            l.frames_out.clear();
            l.frames_out.push_back(
                Frame::Bye {
                    reason: reason.clone(),
                }
                .encode(),
            );
            let peer = l.peer.clone();
            if let Some(p) = self.peers.get_mut(&peer) {
                p.banned_until = now + ban;
            } else {
                self.peers.insert(
                    peer,
                    PeerInfo {
                        addrs: Vec::new(),
                        last_seen: now,
                        device: None,
                        name: None,
                        next_dial: now + ban,
                        backoff: ban,
                        banned_until: now + ban,
                    },
                );
            }
            self.actions.push_back(Action::Close {
                link,
                reason: reason.clone(),
                ban: true,
            });
        }
        tracing::warn!(%link, %reason, cut, "refused input from peer");
        self.event(Event::Refused { link, reason, cut });
    }

    fn on_hello(&mut self, link: LinkId, h: Hello, sig: [u8; 64], now_ms: u64) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if !wire::verify_hello(&h, &sig, &l.remote_tid, &l.local_tid, &mut self.hello_keys) {
            return self.fault(link, "bad frame: hello proof does not verify".into());
        }
        if h.device == self.replica.device_id() {
            self.actions.push_back(Action::Close {
                link,
                reason: "connected to myself".into(),
                ban: false,
            });
            if let Some(l) = self.links.get_mut(&link) {
                l.closing = true;
            }
            return;
        }
        let first = l.remote.is_none();
        let peer = l.peer.clone();
        let mine = self.my_hello();
        let carry = self.my_carry();
        let tags = session_tags(&mine, &carry, &h, &l.remote_carry);
        let start_tag_sync =
            self.replica.carries() && h.relay && l.outbound && l.tag_sync.is_none() && first;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.device = Some(h.device);
            p.name = Some(h.name.clone());
            p.backoff = self.config.backoff_initial_ms;
        }
        let device = h.device;
        let name = h.name.clone();
        let l = self.links.get_mut(&link).expect("checked");
        let changed = l.tags != tags;
        if changed {
            l.nudged = false;
        }
        l.tags = tags;
        l.remote = Some(h);
        if start_tag_sync {
            let set = tag_set(&carry);
            if let Ok(mut session) = recon::Session::initiate(vec![TAG_SET], &set) {
                while let Some(m) = session.poll_transmit() {
                    l.frames_out.push_back(
                        Frame::TagSync {
                            session: 1,
                            message: m,
                        }
                        .encode(),
                    );
                }
                l.tag_sync = Some(TagSync {
                    id: 1,
                    session,
                    set,
                    mine: carry.iter().copied().collect(),
                });
            }
        }
        if first {
            self.event(Event::LinkReady { link, device, name });
        }
        let l = self.links.get_mut(&link).expect("checked");
        // A hello while our session is outstanding may be the responder's nudge (it ignored
        // the session): start over.
        if l.outbound && (first || changed || l.initiator.is_some()) {
            l.resync_at = now_ms;
            self.start_recon(link);
        }
    }

    fn start_recon(&mut self, link: LinkId) {
        let resync = self.config.resync_interval_ms;
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.ready() || !l.outbound {
            return;
        }
        let id = l.next_session;
        l.next_session += 1;
        let _ = resync;
        l.resync_at = now + l.resync_every;
        let digest = wire::tags_digest(&l.tags);
        match recon::Session::initiate(l.tags.clone(), self.replica.store()) {
            Ok(mut s) => {
                let mut frames = Vec::new();
                while let Some(m) = s.poll_transmit() {
                    frames.push(Frame::Recon {
                        session: id,
                        tags: digest,
                        message: m,
                    });
                }
                let l = self.links.get_mut(&link).expect("present");
                l.initiator = Some((id, s));
                l.session_lacks = Some(BTreeSet::new());
                l.session_started = self.now;
                for f in frames {
                    l.frames_out.push_back(f.encode());
                }
            }
            Err(e) => tracing::error!(%link, error = %e, "cannot start reconciliation"),
        }
    }

    fn on_recon(&mut self, link: LinkId, session: u64, tags: [u8; 4], message: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let digest = wire::tags_digest(&l.tags);
        if digest != tags {
            tracing::debug!(%link, outbound = l.outbound, session, "reconciliation on another tag list: ignored");
            // Built on another tag list (a hello crossed it in flight): ignore it, and send our
            // hello again (once per tag list), which makes the initiator start over on the
            // tags both sides will then share. Otherwise it would wait for the stalled
            // session to expire (a minute), holding back whatever the peer lacks.
            if !l.outbound {
                l.responder = None;
                if !l.nudged {
                    l.nudged = true;
                    self.send_hello(link);
                }
            }
            return;
        }
        let is_initiator = l.outbound && l.initiator.as_ref().is_some_and(|(id, _)| *id == session);
        let mut s = if is_initiator {
            l.initiator.take().map(|(_, s)| s)
        } else if l.outbound {
            // A reply to a session we already replaced: ignore it.
            return;
        } else {
            match l.responder.take() {
                Some((id, s)) if id == session => Some(s),
                _ => {
                    l.session_lacks = Some(BTreeSet::new());
                    l.session_started = self.now;
                    Some(recon::Session::respond(l.tags.clone()))
                }
            }
        }
        .expect("session");
        if let Err(e) = s.handle_message(self.replica.store(), message) {
            return self.fault(link, format!("reconciliation: {e}"));
        }
        let mut frames = Vec::new();
        while let Some(m) = s.poll_transmit() {
            frames.push(Frame::Recon {
                session,
                tags: digest,
                message: m,
            });
        }
        let mut haves = Vec::new();
        while let Some((_, id)) = s.poll_have() {
            haves.push(id);
        }
        let done = s.is_done();
        let stats = s.stats();
        let l = self.links.get_mut(&link).expect("present");
        for f in frames {
            l.frames_out.push_back(f.encode());
        }
        if let Some(lacks) = &mut l.session_lacks {
            lacks.extend(haves.iter().copied());
            if lacks.len() > MAX_SESSION_LACKS {
                l.session_lacks = None;
            }
        }
        if !done {
            if is_initiator {
                l.initiator = Some((session, s));
            } else {
                l.responder = Some((session, s));
            }
        } else {
            if is_initiator {
                // Nothing new either way (one exchange, no pushes): back off; else reset.
                let quiet =
                    stats.messages_sent <= 2 && stats.messages_received == 1 && haves.is_empty();
                let base = self.config.resync_interval_ms;
                l.resync_every = if quiet {
                    (l.resync_every * 2).min(base * 4)
                } else {
                    base
                };
                l.resync_at = self.now + l.resync_every;
            }
            self.events.push_back(Event::Reconciled { link, stats });
            self.recover_receipts(link);
        }
        // Announce rather than push: a device reconciling with several peers at once (a
        // partition healing) then receives each missing envelope once, from whoever it asks.
        let max = self.config.max_push_queue;
        if let Some(l) = self.links.get_mut(&link) {
            for id in haves {
                if l.announce.len() < max {
                    l.announce.insert(id);
                }
            }
        }
    }

    fn on_ack(&mut self, link: LinkId, up_to: u64) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let device = l.remote.as_ref().map(|h| h.device);
        let acked: Vec<u64> = l.unacked.range(..=up_to).map(|(k, _)| *k).collect();
        let mut delivered = Vec::new();
        for k in acked {
            if let Some(e) = l.unacked.remove(&k) {
                delivered.push(e);
            }
        }
        let Some(device) = device else { return };
        for e in delivered {
            // Record deliveries of envelopes of conversations the acking device is in.
            let Ok(Some(tag)) = self.replica.store().tag_of(&e) else {
                continue;
            };
            let Some(conv) = self.replica.conversation_of_tag(&tag) else {
                continue;
            };
            let member = self
                .replica
                .conversation(&conv)
                .is_some_and(|c| c.membership.state().is_member(&device));
            if member {
                self.record_delivery(e, device);
            }
        }
    }

    /// Lists a message envelope we just sealed as awaiting receipts from the other members.
    fn await_receipts(&mut self, id: EnvelopeId, now_ms: u64) -> Result<(), StoreError> {
        let Some(tag) = self.replica.store().tag_of(&id)? else {
            return Ok(());
        };
        let me = self.replica.device_id();
        let others = self
            .replica
            .conversation_of_tag(&tag)
            .and_then(|c| self.replica.conversation(&c))
            .map(|c| {
                let st = c.membership.state();
                st.members.len() - usize::from(st.is_member(&me))
            })
            .unwrap_or(0);
        if others > 0 {
            let left = u32::try_from(others).unwrap_or(u32::MAX);
            self.replica
                .store_mut()
                .put(&awaiting_key(&tag, &id), &awaiting_value(now_ms, left))?;
        }
        Ok(())
    }

    fn record_delivery(&mut self, e: EnvelopeId, device: DeviceId) {
        let key = delivery_key(&e, &device);
        if !matches!(self.replica.store().get(&key), Ok(None)) {
            return;
        }
        let _ = self.replica.store_mut().put(&key, &[]);
        self.event(Event::Delivered {
            envelope: e,
            device,
        });
        // One member fewer to hear from.
        let Ok(Some(tag)) = self.replica.store().tag_of(&e) else {
            return;
        };
        let k = awaiting_key(&tag, &e);
        if let Ok(Some(v)) = self.replica.store().get(&k) {
            let _ = match parse_awaiting(&v) {
                Some((at, left)) if left > 1 => self
                    .replica
                    .store_mut()
                    .put(&k, &awaiting_value(at, left - 1)),
                _ => self.replica.store_mut().delete(&k),
            };
        }
    }

    /// A reconciliation with `link` ended: every own message sealed before it started and not
    /// found lacking is on the peer. Records those receipts (a push whose acknowledgement a
    /// dropped link lost is otherwise never confirmed). A message leaves the list when its
    /// last member confirms ([`Self::record_delivery`] counts down).
    fn recover_receipts(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let (Some(lacks), Some(device)) =
            (l.session_lacks.take(), l.remote.as_ref().map(|h| h.device))
        else {
            return;
        };
        let (tags, started) = (l.tags.clone(), l.session_started);
        for tag in tags {
            let member = self
                .replica
                .conversation_of_tag(&tag)
                .and_then(|c| self.replica.conversation(&c))
                .is_some_and(|c| c.membership.state().is_member(&device));
            if !member {
                continue;
            }
            let prefix = awaiting_prefix(&tag);
            let mut awaiting: Vec<(u64, EnvelopeId)> = Vec::new();
            let _ = self.replica.store().scan_prefix(&prefix, &mut |k, v| {
                let id = k
                    .get(prefix.len()..)
                    .and_then(|x| <[u8; 32]>::try_from(x).ok());
                if let (Some(id), Some((at, _))) = (id, parse_awaiting(v)) {
                    awaiting.push((at, EnvelopeId(id)));
                }
                awaiting.len() < MAX_AWAITING_RECEIPTS
            });
            // A member that never confirms (gone for good, or removed) must not pin the list:
            // when it is full, the older half is given up (their receipts can still come
            // with acknowledgements).
            awaiting.sort_unstable();
            let give_up = if awaiting.len() >= MAX_AWAITING_RECEIPTS {
                MAX_AWAITING_RECEIPTS / 2
            } else {
                0
            };
            for (i, (sealed_at, e)) in awaiting.into_iter().enumerate() {
                if sealed_at < started && !lacks.contains(&e) {
                    self.record_delivery(e, device);
                }
                if i < give_up {
                    let _ = self.replica.store_mut().delete(&awaiting_key(&tag, &e));
                }
            }
        }
    }

    fn enqueue(&mut self, link: LinkId, id: EnvelopeId) {
        let max = self.config.max_push_queue;
        let header = match self.replica.store().envelope(&id) {
            Ok(Some(b)) if !b.is_empty() => Envelope::decode(&b).ok().map(|e| *e.header()),
            _ => None,
        };
        let Some(h) = header else { return };
        let order = self.next_order;
        self.next_order += 1;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.queued.contains(&id) {
            return;
        }
        if l.queue.len() >= max {
            // Drop the queue and let reconciliation find the rest.
            l.queue.clear();
            l.queued.clear();
            l.resync_at = 0;
            return;
        }
        l.queued.insert(id);
        l.queue
            .insert((Reverse(h.precedence), kind_rank(h.kind), order, id));
    }

    fn fill_pushes(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link)
            && l.ready()
            && !l.announce.is_empty()
        {
            let ids: Vec<EnvelopeId> = (0..wire::MAX_IDS_PER_FRAME)
                .map_while(|_| l.announce.pop_first())
                .collect();
            l.frames_out.push_back(Frame::Have { ids }.encode());
        }
        let window = self.config.push_window;
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if !l.ready() || l.unacked.len() >= window || l.frames_out.len() > 64 {
                return;
            }
            let Some(item) = l.queue.pop_first() else {
                return;
            };
            let id = item.3;
            l.queued.remove(&id);
            let bytes = match self.replica.store().envelope(&id) {
                Ok(Some(b)) if !b.is_empty() => b,
                _ => continue,
            };
            let l = self.links.get_mut(&link).expect("present");
            let seq = l.next_push;
            l.next_push += 1;
            l.unacked.insert(seq, id);
            l.frames_out.push_back(
                Frame::Push {
                    seq,
                    envelope: bytes,
                }
                .encode(),
            );
            self.counters.pushes_out += 1;
        }
    }

    /// Pushes a stored envelope to every interested link but `from`.
    fn spread(&mut self, id: EnvelopeId, from: Option<LinkId>) {
        let Ok(Some(tag)) = self.replica.store().tag_of(&id) else {
            return;
        };
        let mut targets: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(lid, l)| {
                Some(**lid) != from && l.ready() && l.tags.binary_search(&tag).is_ok()
            })
            .map(|(lid, _)| *lid)
            .collect();
        // Eager for our own envelopes; lazy (announce, then push on request) for relayed ones,
        // whatever their precedence: one round trip per hop is nothing next to the copies a
        // dense mesh would otherwise carry (measured in the simulator). Relayed envelopes are
        // announced to at most `announce_fanout` links, a different subset per envelope
        // (gossip); reconciliation covers the others.
        // (Relaying FLASH eagerly as well was measured in the flood-relief scenario: no faster
        // at p50, 50% more copies; so relays announce FLASH like the rest, first in order.)
        let eager = from.is_none();
        if !eager && targets.len() > self.config.announce_fanout {
            let key = |l: &LinkId| {
                let mut h = blake3::Hasher::new();
                h.update(&id.0);
                h.update(
                    self.links
                        .get(l)
                        .map(|x| x.peer.as_bytes())
                        .unwrap_or_default(),
                );
                *h.finalize().as_bytes()
            };
            targets.sort_by_cached_key(key);
            targets.truncate(self.config.announce_fanout);
        }
        let max = self.config.max_push_queue;
        for t in targets {
            if eager {
                self.enqueue(t, id);
            } else if let Some(l) = self.links.get_mut(&t)
                && l.announce.len() < max
            {
                l.announce.insert(id);
            }
        }
    }

    fn on_tag_sync(&mut self, link: LinkId, session: u64, message: &[u8]) {
        if !self.replica.carries() {
            return;
        }
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.remote.as_ref().is_some_and(|h| h.relay) {
            return self.fault(
                link,
                "tag reconciliation from a peer that is not a relay".into(),
            );
        }
        let mut sync = match l.tag_sync.take() {
            Some(t) if t.id == session => t,
            _ if l.outbound => return,
            _ => TagSync {
                id: session,
                session: recon::Session::respond(vec![TAG_SET]),
                set: tag_set(&carry),
                mine: carry.iter().copied().collect(),
            },
        };
        if let Err(e) = sync.session.handle_message(&sync.set, message) {
            return self.fault(link, format!("tag reconciliation: {e}"));
        }
        while let Some(m) = sync.session.poll_transmit() {
            l.frames_out.push_back(
                Frame::TagSync {
                    session,
                    message: m,
                }
                .encode(),
            );
        }
        let mut haves: Vec<Tag> = Vec::new();
        while let Some((_, id)) = sync.session.poll_have() {
            let mut t = [0u8; 16];
            t.copy_from_slice(&id.0[..16]);
            haves.push(Tag(t));
        }
        if !haves.is_empty() {
            l.frames_out.push_back(
                Frame::Carry {
                    tags: haves.clone(),
                }
                .encode(),
            );
        }
        // Tags both of us carry are known to the peer; the rest arrive in its `Carry`.
        let missing: BTreeSet<Tag> = haves.into_iter().collect();
        let mut known: BTreeSet<Tag> = l.remote_carry.iter().copied().collect();
        known.extend(sync.mine.iter().filter(|t| !missing.contains(t)).copied());
        l.remote_carry = known.into_iter().take(wire::MAX_CARRY_TAGS).collect();
        let done = sync.session.is_done();
        let outbound = l.outbound;
        if !done {
            l.tag_sync = Some(sync);
        }
        self.retag(link);
        if done && outbound {
            // The peer's view of the tags changes when our `Carry` arrives: reconcile again,
            // after it (frames on a link stay in order).
            self.start_recon(link);
        }
    }

    fn on_have(&mut self, link: LinkId, ids: Vec<EnvelopeId>) {
        let now = self.now;
        let mut want = Vec::new();
        for id in ids {
            if matches!(self.replica.store().contains(&id), Ok(true)) {
                continue;
            }
            // Ask one peer at a time; ask again if the first did not deliver within 5 s.
            if self.requested.get(&id).is_some_and(|t| now < t + 5_000) {
                continue;
            }
            if self.requested.len() >= self.config.max_push_queue {
                self.requested.retain(|_, t| now < *t + 5_000);
            }
            self.requested.insert(id, now);
            want.push(id);
        }
        if !want.is_empty() {
            self.send(link, Frame::Want { ids: want });
        }
    }

    // ------------------------------------------------------------------ time

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.send_due_acks(now_ms);
        if !self.links.is_empty() && vaarta_sync::crypto::day_of(now_ms) != self.hello_day {
            self.tags_changed();
        }
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.ready() && l.outbound && l.resync_at <= now_ms && l.initiator.is_none()
            })
            .map(|(k, _)| *k)
            .collect();
        for l in due {
            self.start_recon(l);
        }
        // A reconciliation that stalled (peer silent) is abandoned at the next interval.
        let resync = self.config.resync_interval_ms;
        for l in self.links.values_mut() {
            if l.initiator.is_some() && l.resync_at + resync <= now_ms {
                l.initiator = None;
                l.resync_at = now_ms;
            }
        }
        self.dial_due(now_ms);
    }

    // ------------------------------------------------------------------ flush (group commit)

    /// Ingests queued envelopes as one batch, seals staged messages, runs admin duties,
    /// flushes the store once, then releases acknowledgements and pushes.
    pub fn flush(&mut self, now_ms: u64) -> Result<(), EngineError> {
        self.now = now_ms;
        let inbox = std::mem::take(&mut self.inbox);
        let mut acks: BTreeMap<LinkId, (u64, u32)> = BTreeMap::new();
        if !inbox.is_empty() {
            let refs: Vec<&[u8]> = inbox.iter().map(|(_, _, b)| b.as_slice()).collect();
            let results = self.replica.ingest_batch(&refs, now_ms);
            for ((link, seq, bytes), r) in inbox.iter().zip(results) {
                if !self.requested.is_empty() {
                    self.requested
                        .remove(&EnvelopeId(*blake3::hash(bytes).as_bytes()));
                }
                match r {
                    Ok(ing) => {
                        if !matches!(ing, Ingested::Duplicate | Ingested::NotWanted) {
                            let id = EnvelopeId(*blake3::hash(bytes).as_bytes());
                            self.fresh.push((id, Some(*link)));
                        }
                        if let Ingested::Invited(_) = ing {
                            self.tags_changed();
                        }
                    }
                    Err(e) if e.is_peer_fault() => {
                        self.fault(*link, format!("refused envelope: {e}"));
                    }
                    Err(e) => {
                        return Err(EngineError::Store(match e {
                            replica::IngestError::Store(s) => s,
                            other => StoreError::Io(other.to_string()),
                        }));
                    }
                }
                let a = acks.entry(*link).or_insert((*seq, 0));
                a.0 = a.0.max(*seq);
                a.1 += 1;
            }
        }
        for id in self.replica.seal_staged(now_ms)? {
            self.fresh.push((id, None));
            self.await_receipts(id, now_ms)?;
            self.event(Event::Created { envelope: id });
        }
        if now_ms >= self.maintain_at {
            // Admin duties (key rotation, key shares) are rate-limited per conversation anyway.
            self.maintain_at = now_ms + 5_000;
            for id in self.replica.maintain(now_ms)? {
                self.fresh.push((id, None));
            }
            if now_ms >= self.expire_at {
                self.expire_at = now_ms + 60_000;
                self.replica.expire_carried(now_ms)?;
            }
        }
        self.publish_profiles(now_ms)?;
        self.replica.store_mut().flush()?;
        // New tags: our own (a conversation) go in a new hello to everyone; carried ones (a
        // relay holding something new for others) in a `Carry` to the relays we are linked to.
        let (mut own_new, mut carry_new) = (false, false);
        for (id, _) in &self.fresh {
            if let Ok(Some(t)) = self.replica.store().tag_of(id) {
                if self.replica.is_own_tag(&t, now_ms) {
                    own_new |= self.replica.conversation_of_tag(&t).is_some()
                        && !self.announced.contains(&t);
                } else if self.config.relay {
                    carry_new |= !self.announced_carry.contains(&t);
                }
            }
        }
        if own_new && !self.links.is_empty() {
            self.tags_changed();
        }
        if carry_new && !self.links.is_empty() {
            self.carry_changed();
        }
        // Durable: acknowledge and spread.
        for (link, (up_to, n)) in acks {
            if let Some(l) = self.links.get_mut(&link)
                && !l.closing
            {
                let due = l.ack_due.get_or_insert((up_to, now_ms, 0));
                due.0 = due.0.max(up_to);
                due.2 += n;
                self.acks_due.insert(link);
            }
        }
        self.send_due_acks(now_ms);
        for (id, from) in std::mem::take(&mut self.fresh) {
            self.spread(id, from);
        }
        Ok(())
    }

    /// Sends acknowledgements that are due (everything they cover is already durable).
    fn send_due_acks(&mut self, now_ms: u64) {
        let (delay, every) = (self.config.ack_delay_ms, self.config.ack_every);
        let due: Vec<LinkId> = self.acks_due.iter().copied().collect();
        for link in due {
            let Some(l) = self.links.get_mut(&link) else {
                self.acks_due.remove(&link);
                continue;
            };
            if let Some((up_to, since, n)) = l.ack_due
                && (n >= every || now_ms >= since + delay)
            {
                l.ack_due = None;
                self.acks_due.remove(&link);
                if !l.closing {
                    l.frames_out.push_back(Frame::Ack { up_to }.encode());
                }
            }
        }
    }

    /// Posts this device's name in conversations where it is a member without one.
    fn publish_profiles(&mut self, now_ms: u64) -> Result<(), EngineError> {
        let me = self.replica.device_id();
        let name = self.config.name.clone();
        if name.is_empty() || self.profiled.len() == self.replica.conversation_ids().len() {
            return Ok(());
        }
        for id in self.replica.conversation_ids() {
            if self.profiled.contains(&id) {
                continue;
            }
            let Some(c) = self.replica.conversation(&id) else {
                continue;
            };
            let st = c.membership.state();
            let Some(m) = st.members.get(&me) else {
                continue;
            };
            if m.name.as_deref() != Some(name.as_str()) {
                let env = self.replica.set_profile(&id, &name, now_ms)?;
                self.fresh.push((env, None));
            }
            self.profiled.insert(id);
        }
        Ok(())
    }

    /// Our tag set changed (a new conversation): tell every peer, which restarts reconciliation.
    fn tags_changed(&mut self) {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.send_hello(link);
            self.retag(link);
        }
    }

    /// This relay carries a new tag: tell the relays it is linked with.
    fn carry_changed(&mut self) {
        let carry = self.my_carry();
        let new: Vec<Tag> = carry
            .iter()
            .filter(|t| !self.announced_carry.contains(t))
            .copied()
            .collect();
        self.announced_carry = carry.into_iter().collect();
        if new.is_empty() {
            return;
        }
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.ready() && l.remote.as_ref().is_some_and(|h| h.relay))
            .map(|(k, _)| *k)
            .collect();
        for link in links {
            self.send(link, Frame::Carry { tags: new.clone() });
            self.retag(link);
        }
    }

    // ------------------------------------------------------------------ commands

    pub fn create_conversation(
        &mut self,
        title: &str,
        history: History,
        now_ms: u64,
    ) -> Result<ConversationId, EngineError> {
        let (id, env) = self.replica.create_conversation(title, history, now_ms)?;
        self.fresh.push((env, None));
        self.tags_changed();
        Ok(id)
    }

    pub fn add_member(
        &mut self,
        conv: &ConversationId,
        device: DeviceId,
        admin: bool,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        for env in self.replica.add_member(conv, device, admin, now_ms)? {
            self.fresh.push((env, None));
        }
        Ok(())
    }

    pub fn add_members(
        &mut self,
        conv: &ConversationId,
        devices: &[DeviceId],
        admin: bool,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        for env in self.replica.add_members(conv, devices, admin, now_ms)? {
            self.fresh.push((env, None));
        }
        Ok(())
    }

    pub fn remove_member(
        &mut self,
        conv: &ConversationId,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        for env in self.replica.remove_member(conv, device, now_ms)? {
            self.fresh.push((env, None));
        }
        Ok(())
    }

    /// Stages a message; it is sealed and made durable by the next [`Engine::flush`], with
    /// any other messages staged before it (one envelope per page).
    pub fn send_message(
        &mut self,
        conv: &ConversationId,
        draft: Draft,
        now_ms: u64,
    ) -> Result<MessageId, EngineError> {
        Ok(self.replica.stage_message(conv, draft, now_ms)?)
    }

    pub fn edit_message(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        body: &str,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        let e = self.replica.edit_message(conv, msg, body, now_ms)?;
        self.fresh.push((e, None));
        Ok(())
    }

    pub fn delete_message(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        let e = self.replica.delete_message(conv, msg, now_ms)?;
        self.fresh.push((e, None));
        Ok(())
    }

    pub fn react(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        emoji: Option<&str>,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        let e = self.replica.react(conv, msg, emoji, now_ms)?;
        self.fresh.push((e, None));
        Ok(())
    }

    // ------------------------------------------------------------------ queries

    pub fn conversations(&self) -> Vec<ConversationInfo> {
        self.replica
            .conversation_ids()
            .iter()
            .filter_map(|c| self.replica.info(c))
            .collect()
    }

    pub fn messages(
        &mut self,
        conv: &ConversationId,
        limit: usize,
    ) -> Result<Vec<(MessageInfo, Vec<DeviceId>)>, EngineError> {
        let msgs = self.replica.messages(conv, limit)?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut delivered = Vec::new();
            if let Some(e) = m.envelope {
                self.replica
                    .store()
                    .scan_prefix(&delivery_prefix(&e), &mut |k, _| {
                        if let Some(d) = DeviceId::from_slice(&k[k.len() - 32..]) {
                            delivered.push(d);
                        }
                        true
                    })?;
            }
            out.push((m, delivered));
        }
        Ok(out)
    }

    pub fn links(&self) -> Vec<LinkInfo> {
        self.links
            .iter()
            .map(|(id, l)| LinkInfo {
                link: *id,
                peer: l.peer.clone(),
                device: l.remote.as_ref().map(|h| h.device),
                name: l.remote.as_ref().map(|h| h.name.clone()),
                outbound: l.outbound,
                since_ms: l.up_at,
                bytes_in: l.bytes_in,
                bytes_out: l.bytes_out,
                tags: l.tags.len(),
            })
            .collect()
    }

    pub fn peers_seen(&self) -> Vec<PeerSeen> {
        self.peers
            .iter()
            .map(|(k, p)| PeerSeen {
                peer: k.clone(),
                device: p.device,
                name: p.name.clone(),
                addrs: p.addrs.clone(),
                last_seen_ms: p.last_seen,
            })
            .collect()
    }

    /// Links currently in a reconciliation, and envelopes waiting to be pushed (for tests).
    pub fn backlog(&self) -> usize {
        self.links
            .values()
            .map(|l| l.queue.len() + l.unacked.len())
            .sum()
    }

    /// True if the link's dialled address is `addr` (for the daemon's bookkeeping).
    pub fn link_dialed(&self, link: LinkId) -> Option<&str> {
        self.links.get(&link).and_then(|l| l.dialed.as_deref())
    }
}

fn delivery_prefix(e: &EnvelopeId) -> Vec<u8> {
    [b"d/".as_slice(), &e.0].concat()
}

fn delivery_key(e: &EnvelopeId, d: &DeviceId) -> Vec<u8> {
    [delivery_prefix(e).as_slice(), &d.0].concat()
}

/// Own message envelopes not yet confirmed by every member: `w/` ‖ tag ‖ envelope id →
/// sealed-at (ms) ‖ members still to confirm (u32), both big-endian.
fn awaiting_prefix(tag: &Tag) -> Vec<u8> {
    [b"w/".as_slice(), &tag.0].concat()
}

fn awaiting_key(tag: &Tag, e: &EnvelopeId) -> Vec<u8> {
    [awaiting_prefix(tag).as_slice(), &e.0].concat()
}

fn awaiting_value(sealed_at: u64, left: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&sealed_at.to_be_bytes());
    v[8..].copy_from_slice(&left.to_be_bytes());
    v
}

fn parse_awaiting(v: &[u8]) -> Option<(u64, u32)> {
    let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let left = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
    Some((at, left))
}

fn jitter(rng: &mut ChaCha20Rng, base: u64) -> u64 {
    base / 2 + rng.next_u64() % (base / 2 + 1)
}
