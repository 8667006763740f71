//! Links: one transport connection each, as the engine sees it once the driver reports it
//! up. A link starts with a hello each way; then it carries reconciliation, pushes,
//! announcements and acknowledgements until either side closes it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use vaarta_sync::ids::{DeviceId, EnvelopeId, Tag};

use crate::ack::Lanes;
use crate::push::PushQueue;
use crate::session::Sessions;
use crate::tags::TagSync;
use crate::wire::{Blind, Blinder, Hello};

/// A link (one transport connection/stream) as the driver numbers it. The mesh adapter and
/// the simulator number links with this same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// How the driver names a remote transport endpoint (a libp2p peer id; a simulator node).
/// It says nothing about the device behind it until that device's hello verifies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(String);

impl PeerKey {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for PeerKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for PeerKey {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A transport connection that came up, as the driver reports it to
/// [`crate::Engine::handle_link_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUp {
    pub link: LinkId,
    pub peer: PeerKey,
    /// We dialled it.
    pub outbound: bool,
    /// The address we dialled, if we did (static peers are matched by it).
    pub dialed: Option<String>,
    /// Our transport-authenticated id on this connection (bound into our hello's proof).
    pub local_tid: Vec<u8>,
    /// The peer's transport-authenticated id.
    pub remote_tid: Vec<u8>,
}

/// A connected link as shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub link: LinkId,
    pub peer: PeerKey,
    pub device: Option<DeviceId>,
    pub name: Option<String>,
    pub outbound: bool,
    /// Both sides' intros arrived: the link carries data (whether or not the peer showed
    /// its device).
    pub ready: bool,
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tags: usize,
    /// What the peer's organisation credentials say here (none presented: `None`).
    pub credential: Option<crate::PeerCredential>,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: PeerKey,
    pub(crate) outbound: bool,
    pub(crate) local_tid: Vec<u8>,
    pub(crate) remote_tid: Vec<u8>,
    /// Whom the relay quota charges for what this peer pushes while it has shown no device
    /// (it recognised none of our tags): a hash of its transport id, computed once per link.
    pub(crate) stranger_origin: DeviceId,
    pub(crate) up_at: u64,
    /// Our nonce for this session (sent in our `Hello`).
    pub(crate) nonce: [u8; 32],
    /// The peer's nonce, once its `Hello` arrived.
    pub(crate) remote_nonce: Option<[u8; 32]>,
    /// How this session's tags are blinded (both nonces known).
    pub(crate) key: Option<Blinder>,
    /// What our last `Intro` listed.
    pub(crate) sent: Option<Sent>,
    /// The peer's last `Intro`.
    pub(crate) remote: Option<Remote>,
    /// The peer's device, if it proved it (it recognised one of our tags, or dialled us as
    /// a static peer).
    pub(crate) device: Option<Hello>,
    /// What the peer's credential chain (in its proof) says here.
    pub(crate) credential: Option<crate::PeerCredential>,
    /// We sent our `Proof` on this link.
    pub(crate) proved: bool,
    /// We dialled this peer as a static peer: we show it our device whatever it knows.
    pub(crate) static_peer: bool,
    /// Tags we asked the peer (a relay) to carry for us, in the clear (`Ask`).
    pub(crate) asked: BTreeSet<Tag>,
    /// Tags the peer asked us to carry (counted only while we relay; bounded by
    /// [`crate::wire::MAX_CARRY_TAGS`]).
    pub(crate) remote_asked: BTreeSet<Tag>,
    /// Relays: the tags we carry for others, blinded for this session (computed once, at
    /// the peer's first intro, then extended as we carry new tags; at most
    /// [`crate::wire::MAX_CARRY_TAGS`]).
    pub(crate) carried_blinds: Option<BTreeMap<Blind, Tag>>,
    /// Tags the peer listed that we carry (told it in `Held`).
    pub(crate) held: BTreeSet<Tag>,
    /// Our tags the peer said it carries (its `Held`).
    pub(crate) remote_held: BTreeSet<Tag>,
    /// Tags the peer carries for others (relays only; learnt by tag reconciliation).
    pub(crate) remote_carry: Vec<Tag>,
    /// A reconciliation of carried tag sets in progress (relay to relay).
    pub(crate) tag_sync: Option<TagSync>,
    /// Tags this link reconciles and pushes ([`crate::tags::session_tags`]), sorted.
    pub(crate) tags: Vec<Tag>,
    pub(crate) sessions: Sessions,
    pub(crate) push: PushQueue,
    /// Pushes received, per lane.
    pub(crate) ack: Lanes,
    pub(crate) faults: u32,
    pub(crate) closing: bool,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Encoded frames waiting for [`crate::Engine::poll_transmit`].
    pub(crate) frames_out: VecDeque<Vec<u8>>,
    /// Envelopes pushed on this link on request (`Want`): each is sent once per link (a
    /// peer cannot fetch the same one over and over). Bounded by
    /// [`crate::Config::max_push_queue`]: past it further `Want`s are refused (counted in
    /// `wants_ignored`), never forgotten; entries dropped unsent from an overflowing push
    /// queue leave it.
    pub(crate) served: BTreeSet<EnvelopeId>,
    /// How many `Receipt` ids this link may still have looked up.
    pub(crate) receipt_budget: Budget,
    /// The directory records the peer said it holds (`DirHave`), plus those sent to it or
    /// received from it; at most `vaarta_sync::org::MAX_DIRECTORY_RECORDS`.
    pub(crate) dir_peer_has: BTreeSet<[u8; 16]>,
    /// We answered the peer's final `DirHave` (once per link: a peer cannot make us send
    /// the whole directory over and over).
    pub(crate) dir_answered: bool,
}

/// A token bucket: `burst` tokens at most, regaining `per_s` a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    tokens: u64,
    /// Time the tokens were last counted up to (ms).
    at: u64,
    burst: u64,
    per_s: u64,
}

impl Budget {
    pub(crate) fn new(burst: u64, per_s: u64, now: u64) -> Self {
        Self {
            tokens: burst,
            at: now,
            burst,
            per_s,
        }
    }

    /// Takes up to `n` tokens at `now`; returns how many were taken.
    pub(crate) fn take(&mut self, n: u64, now: u64) -> u64 {
        let gained = now.saturating_sub(self.at).saturating_mul(self.per_s) / 1000;
        if gained > 0 {
            self.tokens = self.tokens.saturating_add(gained).min(self.burst);
            self.at = now;
        }
        let took = n.min(self.tokens);
        self.tokens -= took;
        took
    }
}

impl Link {
    pub(crate) fn new(
        up: LinkUp,
        now: u64,
        resync_interval: u64,
        nonce: [u8; 32],
        static_peer: bool,
    ) -> Self {
        Self {
            peer: up.peer,
            outbound: up.outbound,
            local_tid: up.local_tid,
            stranger_origin: DeviceId(blake3::derive_key(
                "vaarta 2026 relay origin of a transport id",
                &up.remote_tid,
            )),
            remote_tid: up.remote_tid,
            up_at: now,
            nonce,
            remote_nonce: None,
            key: None,
            sent: None,
            remote: None,
            device: None,
            credential: None,
            proved: false,
            static_peer,
            asked: BTreeSet::new(),
            remote_asked: BTreeSet::new(),
            carried_blinds: None,
            held: BTreeSet::new(),
            remote_held: BTreeSet::new(),
            remote_carry: Vec::new(),
            tag_sync: None,
            tags: Vec::new(),
            sessions: Sessions::new(now, resync_interval),
            push: PushQueue::new(),
            ack: Lanes::default(),
            faults: 0,
            closing: false,
            bytes_in: 0,
            bytes_out: 0,
            frames_out: VecDeque::new(),
            served: BTreeSet::new(),
            receipt_budget: Budget::new(
                crate::config::RECEIPT_IDS_BURST,
                crate::config::RECEIPT_IDS_PER_S,
                now,
            ),
            dir_peer_has: BTreeSet::new(),
            dir_answered: false,
        }
    }

    /// The peer's intro arrived and the link is not closing: it carries data.
    pub(crate) fn ready(&self) -> bool {
        self.remote.is_some() && !self.closing
    }

    pub(crate) fn device(&self) -> Option<DeviceId> {
        self.device.as_ref().map(|h| h.device)
    }

    pub(crate) fn is_relay(&self) -> bool {
        self.remote.as_ref().is_some_and(|h| h.relay)
    }

    pub(crate) fn info(&self, id: LinkId) -> LinkInfo {
        LinkInfo {
            link: id,
            peer: self.peer.clone(),
            device: self.device(),
            name: self.device.as_ref().map(|h| h.name.clone()),
            outbound: self.outbound,
            ready: self.remote.is_some(),
            since_ms: self.up_at,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            tags: self.tags.len(),
            credential: self.credential.clone(),
        }
    }
}

/// What our last `Intro` on a link listed: our tags, sorted, each with its blinds.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) relay: bool,
    pub(crate) tags: Vec<SentTag>,
}

/// How an entry of our intro counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagKind {
    /// An inbox tag or a tag we hold envelopes under: a match shares it.
    Plain,
    /// A conversation's presence under its current epoch's key: a match shares the
    /// conversation (only current members compute it).
    Member,
    /// A conversation's plain tag, for relays: they offer (`Held`) what they carry under
    /// it. A peer listing it too shares nothing (an ex-member knows the tag).
    Offer,
    /// A conversation's presence under its previous epoch: a peer listing it shares the
    /// conversation only once proven a current member (`tags::Engine::retag`).
    Lag,
}

/// One of our tags as this session shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentTag {
    pub(crate) tag: Tag,
    pub(crate) kind: TagKind,
    /// As we list it.
    pub(crate) ours: Blind,
    /// As the peer lists it, if it knows it.
    pub(crate) theirs: Blind,
    /// As the peer claims, in a `Held`, to carry it.
    pub(crate) held_theirs: Blind,
    /// `Lag` entries: how the peer lists that presence as its current or as its previous,
    /// and how we then tell it we hold the conversation.
    pub(crate) lag: Option<(Blind, Blind, Blind)>,
    /// `Member` entries: how the peer lists that presence as its previous (it is a
    /// rotation ahead of us: it will tell us once we proved our device).
    pub(crate) ahead: Option<Blind>,
}

/// The peer's last `Intro`.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) relay: bool,
    pub(crate) blinds: BTreeSet<Blind>,
}

/// The link table. Every mutable access marks the link, so the engine re-arms that link's
/// timers (and only that link's) before it returns to the driver.
#[derive(Debug, Default)]
pub(crate) struct Links {
    map: BTreeMap<LinkId, Link>,
    touched: BTreeSet<LinkId>,
    /// A link was added or removed since [`Self::take_membership_changed`].
    membership_changed: bool,
}

impl Links {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn get(&self, id: &LinkId) -> Option<&Link> {
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &LinkId) -> Option<&mut Link> {
        let l = self.map.get_mut(id)?;
        self.touched.insert(*id);
        Some(l)
    }

    pub(crate) fn insert(&mut self, id: LinkId, l: Link) {
        self.touched.insert(id);
        self.membership_changed = true;
        self.map.insert(id, l);
    }

    pub(crate) fn remove(&mut self, id: &LinkId) -> Option<Link> {
        self.touched.insert(*id);
        self.membership_changed = true;
        self.map.remove(id)
    }

    pub(crate) fn ids(&self) -> Vec<LinkId> {
        self.map.keys().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LinkId, &Link)> {
        self.map.iter()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Link> {
        self.map.values()
    }

    /// Links (ids, sorted) that match `f`.
    pub(crate) fn select(&self, f: impl Fn(&Link) -> bool) -> Vec<LinkId> {
        self.map
            .iter()
            .filter(|(_, l)| f(l))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Links changed since the last call.
    pub(crate) fn take_touched(&mut self) -> BTreeSet<LinkId> {
        std::mem::take(&mut self.touched)
    }

    pub(crate) fn take_membership_changed(&mut self) -> bool {
        std::mem::take(&mut self.membership_changed)
    }

    /// Peers with a link.
    pub(crate) fn peers(&self) -> BTreeSet<PeerKey> {
        self.map.values().map(|l| l.peer.clone()).collect()
    }
}
