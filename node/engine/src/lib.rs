//! The Vaarta node engine: one device's whole protocol brain, with no I/O.
//!
//! It composes the sync core ([`vaarta_sync::replica::Replica`]) with the mesh protocol:
//! which peers to dial and when to try again, the hello handshake that binds a device key to
//! a transport session, which conversation tags two devices reconcile, when to start a
//! reconciliation, which envelopes to push to whom and in what order, acknowledgements, and
//! receipts for envelopes read after they waited.
//! The tokio daemon (`vaarta-node`) and the discrete-event simulator (`vaarta-sim`) are two
//! drivers of this same code.
//!
//! # Contract (quinn-style)
//! * Inputs: [`Engine::handle_link_up`], [`Engine::handle_link_down`],
//!   [`Engine::handle_frame`], [`Engine::handle_discovered`], [`Engine::handle_dial_failed`],
//!   [`Engine::handle_timeout`], and commands ([`Engine::send_message`], ...). `now_ms` is
//!   always an argument; randomness comes from a seed.
//! * After a batch of inputs the driver calls [`Engine::flush`]: inbound envelopes are
//!   ingested as one batch, staged messages are sealed into envelopes (group commit), the store
//!   is flushed once, and only *then* are acknowledgements released. Nothing is acknowledged
//!   before it is durable (rule 4).
//! * Outputs, polled after `flush` in this order until each returns `None`:
//!   1. [`Engine::poll_action`]: dials and closes (a close names a link whose frames the
//!      driver may still send first);
//!   2. [`Engine::poll_transmit`]: frames per link, in the order they must leave;
//!   3. [`Engine::poll_event`]: what the application shows;
//!   4. [`Engine::poll_timeout`]: when to call [`Engine::handle_timeout`] next (`None`: no
//!      deadline). Call it only then; calling it early does nothing harmful.
//!
//!   [`drive::pump`] does exactly this, for every driver.
//!
//! # Parts
//! [`config`] (settings and every bound), [`event`] (what comes out), [`link`] (one
//! transport connection, built from a [`push`] queue and an [`ack`] state), [`session`]
//! (reconciliation per link), [`tags`] (which tags a link carries; relays' carried sets),
//! [`dial`] (whom to dial, backoff, bans), [`receipts`] (delivery records), [`timer`] (every
//! deadline), [`commands`] and [`queries`].
//!
//! # Routing
//! Envelopes sealed on this device are pushed at once to every linked device whose
//! reconciled tag set includes their tag, in precedence order (FLASH first, membership
//! operations before messages). Envelopes relayed from another link are announced (`Have`) to
//! at most [`Config::announce_fanout`] interested links and pushed when asked (`Want`).
//! Reconciliation repairs whatever that missed: on link up, when either side's tags change,
//! and every [`Config::resync_interval_ms`] (backing off while nothing is new). See
//! `ARCHITECTURE.md` for the life of a message.

pub mod ack;
pub mod bundle;
pub mod commands;
pub mod config;
mod credentials;
pub mod dial;
pub mod directory;
pub mod drive;
pub mod event;
/// Signed export of a conversation (docs/export.md): the format and [`export::verify`],
/// which checks a file with no store, key or network. The format lives in `vaarta-sync`
/// (it reads Automerge pages); [`Engine::export_conversation`] writes one.
pub mod export {
    pub use vaarta_sync::export::*;
    pub use vaarta_sync::replica::export::{ExportFailed, Exported};
}
pub mod link;
pub mod push;
pub mod queries;
pub mod receipts;
pub mod rollcall;
pub mod session;
pub mod tags;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timer;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use vaarta_sync::envelope::{Envelope, Kind, Precedence};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId, Tag};
use vaarta_sync::replica::{self, Ingested, RelayPolicy, Replica, Sealed};
use vaarta_sync::store::{Store, StoreError};

pub use config::Config;
pub use credentials::{Credentials, PeerCredential};
pub use dial::PeerSeen;
pub use event::{Action, CloseReason, Counters, EngineError, Event, Fault};
pub use link::{LinkId, LinkInfo, LinkUp, PeerKey};
pub use timer::Timer;
pub use wire::{Frame, Hello, MAX_FRAME_BYTES};

use ack::Disposition;
use config::{
    EXPIRE_INTERVAL_MS, LONG_LINK_MS, MAINTAIN_INTERVAL_MS, MAX_FRAMES_QUEUED_PER_LINK,
    WANT_RETRY_MS,
};
use dial::Dialer;
use link::{Link, Links};
use push::Enqueued;
use timer::TimerTable;

/// Where a new envelope came from: it decides how it spreads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Sealed on this device: pushed at once to every interested link.
    Own,
    /// Pushed by a peer on this link: announced to a few other interested links.
    Link(LinkId),
    /// Imported from outside any link: announced like a relayed envelope.
    Import,
}

/// A push received, ingested at the next flush.
#[derive(Debug)]
struct Received {
    link: LinkId,
    /// Its lane and push sequence there (for the acknowledgement).
    lane: Precedence,
    seq: u64,
    envelope: Vec<u8>,
    /// Whose quota it counts against if carried: the pusher's device, or its transport id.
    origin: Option<DeviceId>,
}

/// A new envelope to spread, with what routing it needs (known from sealing or ingestion,
/// never read back from the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fresh {
    id: EnvelopeId,
    tag: Tag,
    /// Precedence and kind, for our own envelopes (pushed at once).
    route: Option<(Precedence, Kind)>,
    source: Source,
}

impl Fresh {
    pub(crate) fn own(s: &Sealed) -> Self {
        Self {
            id: s.id,
            tag: s.tag,
            route: Some((s.precedence, s.kind)),
            source: Source::Own,
        }
    }
}

/// One device's engine. See the crate docs.
#[derive(Debug)]
pub struct Engine<S: Store> {
    replica: Replica<S>,
    config: Config,
    links: Links,
    dialer: Dialer,
    timers: TimerTable,
    /// Pushes received, ingested at the next flush (with the link's peer device when it was
    /// pushed: what it asks us to carry counts against its quota, even if the link is gone
    /// by the flush).
    inbox: Vec<Received>,
    /// Envelopes created or stored since the last push round, and where they came from.
    fresh: Vec<Fresh>,
    /// Own envelopes sealed since the last flush: listed as awaiting receipts and reported
    /// as [`Event::Created`] at the flush that makes them durable.
    sealed: Vec<Sealed>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Arrival order of pushes (ties within a precedence).
    next_order: u64,
    expire_at: u64,
    /// Conversations where this device's name is known to be posted.
    profiled: BTreeSet<ConversationId>,
    /// Tags in the last hello we sent.
    announced: BTreeSet<Tag>,
    /// The conversation presences our last intro listed (a rotation changes them).
    announced_presence: BTreeSet<Tag>,
    /// Day of the last hello (a new day moves the inbox window: hello again).
    hello_day: u64,
    /// Tags in the last `Carry` we sent.
    announced_carry: BTreeSet<Tag>,
    /// Envelopes asked for with `Want`, and when (bounded by [`Config::max_push_queue`]).
    requested: BTreeMap<EnvelopeId, u64>,
    /// Nonces for hellos (seeded: a run is reproducible).
    rng: ChaCha20Rng,
    /// Decompressed keys of peers whose hellos we verify.
    hello_keys: vaarta_sync::identity::KeyCache,
    /// Frames taken from the links, waiting for [`Engine::poll_transmit`].
    outgoing: VecDeque<(LinkId, Vec<u8>)>,
    counters: Counters,
    now: u64,
    /// Organisation credentials: ours (in every `Proof`), the roots we pinned, the
    /// revocations we know.
    credentials: Credentials,
    /// Our chain as the `Proof` carries it (encoded once).
    own_chain: Vec<u8>,
    /// Chains peers presented that a pinned root vouched for (or that a revocation killed):
    /// what says which revocation kills which device key, for the replica
    /// (`credentials::Engine::enforce_revocations`). At most `MAX_CHAINS_SEEN`.
    chains_seen: BTreeMap<DeviceId, vaarta_sync::org::Chain>,
    /// A valid wipe order for this device was reported (`Event::WipeOrdered`).
    wipe_ordered: bool,
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
        let mut nseed = [0u8; 32];
        rng.fill_bytes(&mut nseed);
        let mut replica = Replica::open(identity, store, rseed)?;
        replica.report_sealed();
        replica.set_relay_policy(RelayPolicy {
            tag_share: config.relay_tag_share,
            origin_share: config.relay_origin_share,
            stranger_share: config.relay_stranger_share,
            vouched_share: config.relay_vouched_share,
            ..RelayPolicy::new(config.relay, config.relay_max_bytes)
        });
        replica.set_invite_policy(config.invitations);
        let dialer = Dialer::new(&config, rng, now_ms);
        let mut e = Self {
            replica,
            config,
            links: Links::default(),
            dialer,
            timers: TimerTable::default(),
            inbox: Vec::new(),
            fresh: Vec::new(),
            sealed: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_order: 0,
            expire_at: now_ms + EXPIRE_INTERVAL_MS,
            profiled: BTreeSet::new(),
            announced: BTreeSet::new(),
            announced_presence: BTreeSet::new(),
            announced_carry: BTreeSet::new(),
            hello_day: 0,
            requested: BTreeMap::new(),
            outgoing: VecDeque::new(),
            rng: ChaCha20Rng::from_seed(nseed),
            hello_keys: Default::default(),
            counters: Counters::default(),
            now: now_ms,
            credentials: Credentials::default(),
            own_chain: Vec::new(),
            chains_seen: BTreeMap::new(),
            wipe_ordered: false,
        };
        e.settle();
        Ok(e)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    // ------------------------------------------------------------------ outputs

    pub fn poll_transmit(&mut self) -> Option<(LinkId, Vec<u8>)> {
        if self.outgoing.is_empty() {
            // One pass over the links fills a batch; the driver drains it frame by frame.
            for id in self.links.ids() {
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
            self.settle();
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

    /// The next time [`Engine::handle_timeout`] has work (see [`timer`]).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next()
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

    /// Lists what the replica sealed since the last call for spreading.
    pub(crate) fn note_sealed(&mut self) {
        for s in self.replica.take_sealed() {
            self.fresh.push(Fresh::own(&s));
            self.sealed.push(s);
        }
    }

    /// Re-arms the timers of the links touched since the last call, and the dialer's.
    /// Every public method that changes state ends with it, so [`Self::poll_timeout`] is
    /// always current.
    fn settle(&mut self) {
        for id in self.links.take_touched() {
            let (resync, ack) = match self.links.get(&id) {
                Some(l) => (
                    (l.ready() && l.outbound && l.sessions.resync_at != u64::MAX).then(|| {
                        // While our session is outstanding the next thing to do is to give
                        // up on it, one interval after it was due.
                        if l.sessions.initiator.is_some() {
                            l.sessions.resync_at + self.config.resync_interval_ms
                        } else {
                            l.sessions.resync_at
                        }
                    }),
                    l.ack.deadline(self.config.ack_delay_ms),
                ),
                None => (None, None),
            };
            let hello = self
                .links
                .get(&id)
                .filter(|l| l.remote.is_none() && !l.closing)
                .map(|l| l.up_at + self.config.hello_timeout_ms);
            self.timers.set(Timer::Resync(id), resync);
            self.timers.set(Timer::Ack(id), ack);
            self.timers.set(Timer::Hello(id), hello);
        }
        if self.dialer.take_changed() || self.links.take_membership_changed() {
            let dial = if self.links.len() >= self.config.max_links {
                None
            } else {
                self.dialer
                    .deadline(self.replica.device_id(), &self.links.peers())
            };
            self.timers.set(Timer::Dial, dial);
        }
        // A new day moves the inbox window: hello again (only linked peers care).
        let day = (!self.links.is_empty())
            .then(|| (vaarta_sync::crypto::day_of(self.now) + 1) * vaarta_sync::crypto::DAY_MS);
        self.timers.set(Timer::Day, day);
        self.settle_reads();
        // Admin duties and expiry exist once something is held; an empty device sleeps.
        if self.timers.get(Timer::Maintain).is_none() && self.replica.holds_anything() {
            self.timers.set(Timer::Maintain, Some(self.now));
        }
    }

    // ------------------------------------------------------------------ links

    /// A transport connection is up. Both transport ids are bound into the hello proofs.
    pub fn handle_link_up(&mut self, up: LinkUp, now_ms: u64) {
        self.now = now_ms;
        let banned = self.dialer.is_banned(&up.peer, now_ms);
        // Inbound links get at most `max_inbound_links` slots, so those this device dials
        // always find one; links to static peers are never refused for want of a slot
        // (there are only as many as configured).
        let full = if up.outbound {
            !self.dialer.is_static(up.dialed.as_deref())
                && self.links.len() >= self.config.max_links
        } else {
            self.links.len() >= self.config.max_links
                || self.links.values().filter(|l| !l.outbound).count()
                    >= self.config.max_inbound_links
        };
        if banned || full {
            self.actions.push_back(Action::Close {
                link: up.link,
                reason: if banned {
                    CloseReason::Banned
                } else {
                    CloseReason::TooManyLinks
                },
                ban: banned,
            });
            return;
        }
        self.dialer.link_up(up.link, up.dialed.as_deref());
        let id = up.link;
        let static_peer = up.outbound && self.dialer.is_static(up.dialed.as_deref());
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);
        let l = Link::new(
            up,
            now_ms,
            self.config.resync_interval_ms,
            nonce,
            static_peer,
        );
        self.links.insert(id, l);
        self.send(id, Frame::Hello { nonce });
        self.settle();
    }

    pub fn handle_link_down(&mut self, link: LinkId, now_ms: u64) {
        self.now = now_ms;
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        self.outgoing.retain(|(l, _)| *l != link);
        // Pushes whose acknowledgement will never come: noted, so that no later
        // reconciliation takes "held" for "read" (receipts.rs).
        if let Some(device) = l.device() {
            let unacked = l.push.unacked_ids();
            self.unacknowledged(device, &unacked);
        }
        // Anything received but not yet ingested is still processed at the next flush; the
        // acknowledgement simply cannot be sent, so the peer will offer it again.
        let up_long = now_ms.saturating_sub(l.up_at) > LONG_LINK_MS;
        self.dialer.link_down(link, &l.peer, up_long, now_ms);
        self.event(Event::LinkClosed {
            link,
            device: l.device(),
        });
        self.settle();
    }

    /// mDNS (or any discovery) says `peer` may be reachable at `addrs`. A hint only.
    pub fn handle_discovered(&mut self, peer: PeerKey, addrs: Vec<String>, now_ms: u64) {
        self.now = now_ms;
        let connected = self.links.peers();
        if self.dialer.discovered(peer, addrs, now_ms, &connected) {
            self.dial_due(now_ms);
        }
        self.settle();
    }

    pub fn handle_dial_failed(&mut self, peer: Option<PeerKey>, addr: String, now_ms: u64) {
        self.now = now_ms;
        self.dialer.dial_failed(peer.as_ref(), &addr, now_ms);
        self.settle();
    }

    fn dial_due(&mut self, now_ms: u64) {
        if self.links.len() >= self.config.max_links {
            return;
        }
        let connected = self.links.peers();
        let me = self.replica.device_id();
        self.dialer.due(now_ms, me, &connected, &mut self.actions);
    }

    /// A frame arrived on a link. Envelopes are queued for the next [`Engine::flush`].
    pub fn handle_frame(&mut self, link: LinkId, bytes: &[u8], now_ms: u64) {
        self.now = now_ms;
        self.on_frame(link, bytes, now_ms);
        self.settle();
    }

    fn on_frame(&mut self, link: LinkId, bytes: &[u8], now_ms: u64) {
        self.counters.frames_in += 1;
        self.counters.bytes_in += bytes.len() as u64;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.closing {
            return;
        }
        l.bytes_in += bytes.len() as u64;
        if let Some(v) = wire::foreign_hello_version(bytes) {
            return self.refuse_version(link, v);
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.fault(link, Fault::BadFrame(e)),
        };
        match frame {
            Frame::Hello { nonce } => self.on_hello(link, nonce),
            _ if l.remote_nonce.is_none() => self.fault(link, Fault::BeforeHello),
            Frame::Intro { relay, blinds } => self.on_intro(link, relay, blinds, now_ms),
            Frame::Proof(h, sig) => self.on_proof(link, h, sig),
            _ if l.remote.is_none() => self.fault(link, Fault::BeforeHello),
            Frame::Ask { tags } => self.on_ask(link, tags),
            Frame::Held { blinds } => self.on_held(link, blinds),
            Frame::Recon {
                session,
                tags,
                message,
            } => self.on_recon(link, session, tags, &message),
            Frame::Push {
                lane,
                seq,
                envelope,
            } => {
                if !l.ack.lane(lane).receive(seq) {
                    return self.fault(link, Fault::PushSequence);
                }
                self.counters.envelopes_in += 1;
                // What a peer pushes for us to carry counts against its device's quota; a
                // peer that has not shown its device (it recognised none of our tags) is
                // counted by its transport id instead, so strangers do not share one quota.
                let origin = Some(l.device().unwrap_or(l.stranger_origin));
                self.inbox.push(Received {
                    link,
                    lane,
                    seq,
                    envelope,
                    origin,
                });
            }
            Frame::Ack {
                lane,
                up_to,
                refused,
                deferred,
            } => self.on_ack(link, lane, up_to, &refused, &deferred),
            Frame::Receipt { ids } => self.on_receipt(link, &ids, now_ms),
            Frame::Revocations { records } => self.on_revocations(link, records),
            Frame::DirHave { last, ids } => self.on_dir_have(link, last, ids),
            Frame::Directory { records } => self.on_directory(link, records),
            Frame::Have { ids } => self.on_have(link, ids),
            Frame::Carry { tags } => self.on_carry(link, tags),
            Frame::TagSync { session, message } => self.on_tag_sync(link, session, &message),
            Frame::Want { ids } => self.on_want(link, ids),
            Frame::Bye { reason } => {
                l.closing = true;
                self.actions.push_back(Action::Close {
                    link,
                    reason: CloseReason::PeerSaidBye(reason),
                    ban: false,
                });
            }
        }
    }

    /// Counts a refusal against the link; cuts and bans the peer at a fatal fault or at
    /// [`Config::max_faults`].
    fn fault(&mut self, link: LinkId, reason: Fault) {
        self.counters.refused += 1;
        let (max, ban, now) = (self.config.max_faults, self.config.ban_ms, self.now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.faults += 1;
        let cut = l.faults >= max || reason.is_fatal();
        if cut && !l.closing {
            l.closing = true;
            l.frames_out.clear();
            // One reason for every fault: telling the peer why (a key this device lacks, an
            // envelope pending, a decrypt failure) would tell it which keys the device holds.
            // The detailed reason stays local (the event, the log).
            l.frames_out.push_back(
                Frame::Bye {
                    reason: wire::BYE_REFUSED.into(),
                }
                .encode(),
            );
            let peer = l.peer.clone();
            self.dialer.ban(&peer, now, ban);
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::Fault(reason.clone()),
                ban: true,
            });
        }
        tracing::warn!(%link, %reason, cut, "refused input from peer");
        self.event(Event::Refused { link, reason, cut });
    }

    /// A peer speaking another protocol version: told so in the clear (nothing secret in
    /// it), and the link closed without a ban (it may be upgraded soon).
    fn refuse_version(&mut self, link: LinkId, v: u8) {
        self.counters.refused += 1;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.closing = true;
        l.frames_out.clear();
        l.frames_out.push_back(
            Frame::Bye {
                reason: wire::bye_version(v),
            }
            .encode(),
        );
        let reason = Fault::Version(v);
        self.actions.push_back(Action::Close {
            link,
            reason: CloseReason::Fault(reason.clone()),
            ban: false,
        });
        tracing::warn!(%link, version = v, "peer speaks another protocol version");
        self.event(Event::Refused {
            link,
            reason,
            cut: true,
        });
    }

    /// The peer's nonce: the session key is now known, so we send our intro.
    fn on_hello(&mut self, link: LinkId, nonce: [u8; 32]) {
        if self.links.values().any(|l| l.nonce == nonce) {
            // Our own nonce came back: the link leads to this device.
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::ConnectedToSelf,
                ban: false,
            });
            if let Some(l) = self.links.get_mut(&link) {
                l.closing = true;
            }
            return;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.remote_nonce.is_some() {
            return self.fault(link, Fault::SecondHello);
        }
        l.remote_nonce = Some(nonce);
        l.key = wire::Blinder::new(&l.local_tid, &l.nonce, &l.remote_tid, &nonce);
        if l.key.is_none() {
            // Its transport id and nonce are ours: the link leads back here.
            l.closing = true;
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::ConnectedToSelf,
                ban: false,
            });
            return;
        }
        self.send_intro(link);
    }

    /// The peer's blinded tags (first, or again after its tags changed).
    fn on_intro(&mut self, link: LinkId, relay: bool, blinds: Vec<wire::Blind>, now_ms: u64) {
        let carries = self.replica.carries();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let first = l.remote.is_none();
        let before = l.tags.clone();
        if first {
            let peer = l.peer.clone();
            self.dialer.ready(&peer);
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.remote = Some(link::Remote {
            relay,
            blinds: blinds.into_iter().collect(),
        });
        let start_tag_sync = carries && relay && l.outbound && l.tag_sync.is_none() && first;
        self.send_held(link);
        self.retag(link);
        if first && relay {
            let ask = self.tags_to_ask(link);
            self.ask(link, ask);
        }
        if start_tag_sync {
            let carry = self.my_carry();
            self.start_tag_sync(link, &carry);
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let changed = l.tags != before;
        if changed {
            l.sessions.nudged = false;
        }
        // An intro while our session is outstanding may be the responder's nudge (it ignored
        // the session): start over.
        if l.outbound && (first || changed || l.sessions.initiator.is_some()) {
            l.sessions.resync_at = now_ms;
            self.start_recon(link);
        }
    }

    /// The peer shows its device, proven over this session.
    fn on_proof(&mut self, link: LinkId, h: Hello, sig: [u8; 64]) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let Some(theirs) = l.remote_nonce else { return };
        if !wire::verify_proof(
            &h,
            &sig,
            (&l.remote_tid, &theirs),
            (&l.local_tid, &l.nonce),
            &mut self.hello_keys,
        ) {
            return self.fault(link, Fault::BadHelloProof);
        }
        if h.device == self.replica.device_id() {
            self.actions.push_back(Action::Close {
                link,
                reason: CloseReason::ConnectedToSelf,
                ban: false,
            });
            if let Some(l) = self.links.get_mut(&link) {
                l.closing = true;
            }
            return;
        }
        if let Some(d) = &l.device {
            if d.device != h.device {
                return self.fault(link, Fault::DeviceChanged);
            }
            return;
        }
        let credential = match credentials::judge(&h, &self.credentials, self.now) {
            Ok(c) => c,
            Err(f) => {
                self.vouch(&h.device, None);
                if matches!(f, Fault::Revoked(_)) {
                    self.remember_chain(&h);
                    self.enforce_revocations();
                    return self.cut_revoked(link, &h.device, f);
                }
                return self.fault(link, f);
            }
        };
        let peer = l.peer.clone();
        if matches!(credential, Some(PeerCredential::Verified(_))) {
            self.remember_chain(&h);
        }
        self.vouch(&h.device, credential.as_ref());
        self.dialer.hello(&peer, h.device, &h.name);
        let (device, name) = (h.device, h.name.clone());
        let verified = matches!(credential, Some(PeerCredential::Verified(_)));
        if let Some(l) = self.links.get_mut(&link) {
            l.device = Some(h);
            l.credential = credential;
        }
        if verified {
            self.share_revocations(link);
            self.share_directory(link);
        }
        self.event(Event::LinkReady { link, device, name });
        self.send_owed_receipts(Some(link));
        // A conversation it listed under our previous epoch may now be shared.
        self.retag(link);
    }

    fn on_have(&mut self, link: LinkId, ids: Vec<EnvelopeId>) {
        let now = self.now;
        let mut want = Vec::new();
        // Announced ids carry no tag: held under any of the link's session tags (what it
        // pushes and announces) is held.
        let tags = self.links.get(&link).map_or(&[][..], |l| &l.tags[..]);
        for id in ids {
            if tags
                .iter()
                .any(|t| matches!(self.replica.store().contains(t, &id), Ok(true)))
            {
                continue;
            }
            // Ask one peer at a time; ask again if the first did not deliver in time.
            if self
                .requested
                .get(&id)
                .is_some_and(|t| now < t + WANT_RETRY_MS)
            {
                continue;
            }
            if self.requested.len() >= self.config.max_push_queue {
                self.requested.retain(|_, t| now < *t + WANT_RETRY_MS);
            }
            self.requested.insert(id, now);
            want.push(id);
        }
        if !want.is_empty() {
            self.send(link, Frame::Want { ids: want });
        }
    }

    /// The peer handled every push of `lane` up to `up_to`, stored all but `refused`, and
    /// cannot read `deferred` yet: receipts for the others; a refusal or a deferral noted
    /// for these (no receipt by recovery; a deferred one gets its receipt from a `Receipt`).
    fn on_ack(
        &mut self,
        link: LinkId,
        lane: Precedence,
        up_to: u64,
        refused: &[u64],
        deferred: &[u64],
    ) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let device = l.device();
        let acked = l.push.acknowledged(lane, up_to);
        let Some(device) = device else { return };
        for (seq, e, tag) in acked {
            let d = if refused.binary_search(&seq).is_ok() {
                Disposition::Refused
            } else if deferred.binary_search(&seq).is_ok() {
                Disposition::Deferred
            } else {
                Disposition::Stored
            };
            self.acknowledged(e, tag, device, d);
        }
    }

    /// The peer asks for envelopes: only those under the link's session tags are pushed
    /// (what the two devices reconcile; any other stored envelope is none of its business),
    /// and each at most once per link.
    fn on_want(&mut self, link: LinkId, ids: Vec<EnvelopeId>) {
        let max = self.config.max_push_queue;
        for id in ids {
            let Some(l) = self.links.get(&link) else {
                return;
            };
            // Looked up under the link's session tags only (one point read each).
            let store = self.replica.store();
            let Some(tag) = l
                .tags
                .iter()
                .find(|t| matches!(store.contains(t, &id), Ok(true)))
                .copied()
            else {
                // Not held under them (held elsewhere, or not at all: the store cannot tell
                // without an id → tag index, and it makes no difference to the peer).
                self.counters.wants_ignored += 1;
                continue;
            };
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            // Past the bound, refused (the peer's next link serves the rest): forgetting
            // what was served would let it fetch the same envelopes over and over.
            if l.tags.binary_search(&tag).is_err()
                || l.served.contains(&id)
                || l.served.len() >= max
            {
                self.counters.wants_ignored += 1;
                continue;
            }
            l.served.insert(id);
            self.enqueue(link, tag, id);
        }
    }

    /// Queues a stored envelope for pushing on `link` (a peer asked for it: its header,
    /// read from the store, gives the precedence).
    fn enqueue(&mut self, link: LinkId, tag: Tag, id: EnvelopeId) {
        let header = match self.replica.store().envelope(&tag, &id) {
            Ok(Some(b)) if !b.is_empty() => Envelope::decode(&b).ok().map(|e| *e.header()),
            _ => None,
        };
        let Some(h) = header else { return };
        self.enqueue_routed(link, tag, id, h.precedence, h.kind);
    }

    fn enqueue_routed(
        &mut self,
        link: LinkId,
        tag: Tag,
        id: EnvelopeId,
        precedence: Precedence,
        kind: Kind,
    ) {
        let max = self.config.max_push_queue;
        let order = self.next_order;
        self.next_order += 1;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if let Enqueued::Overflowed(dropped) = l.push.enqueue(id, tag, precedence, kind, order, max)
        {
            // Let reconciliation find the rest, and let the peer ask again for what was
            // dropped unsent (only that: what was pushed stays served).
            l.sessions.resync_at = 0;
            for d in dropped.iter().chain([&id]) {
                l.served.remove(d);
            }
        }
    }

    fn fill_pushes(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link)
            && l.ready()
            && let Some(ids) = l.push.take_announce(wire::MAX_IDS_PER_FRAME)
        {
            l.frames_out.push_back(Frame::Have { ids }.encode());
        }
        let window = self.config.push_window;
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if !l.ready() || l.frames_out.len() > MAX_FRAMES_QUEUED_PER_LINK {
                return;
            }
            let Some((id, tag, lane)) = l.push.pop(window) else {
                return;
            };
            let bytes = match self.replica.store().envelope(&tag, &id) {
                Ok(Some(b)) if !b.is_empty() => b,
                _ => continue,
            };
            let l = self.links.get_mut(&link).expect("present");
            let seq = l.push.sent(id, tag, lane);
            l.frames_out.push_back(
                Frame::Push {
                    lane,
                    seq,
                    envelope: bytes,
                }
                .encode(),
            );
            self.counters.pushes_out += 1;
        }
    }

    /// Pushes (own) or announces (relayed) a stored envelope to the interested links, but
    /// not back to the link it came from.
    fn spread(&mut self, f: Fresh) {
        let Fresh {
            id,
            tag,
            route,
            source: from,
        } = f;
        if route.is_some() {
            // Our own envelope under a tag a linked relay does not carry for us yet: ask it
            // (it will see the tag in the envelope's header anyway).
            let ask = self
                .links
                .select(|l| l.ready() && l.is_relay() && l.tags.binary_search(&tag).is_err());
            for link in ask {
                self.ask(link, vec![tag]);
            }
        }
        let mut targets: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(lid, l)| {
                from != Source::Link(**lid) && l.ready() && l.tags.binary_search(&tag).is_ok()
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
        // Only our own envelopes carry their route (`Fresh::own`): those are pushed.
        if route.is_none() && targets.len() > self.config.announce_fanout {
            let key = |l: &LinkId| {
                let mut h = blake3::Hasher::new();
                h.update(&id.0);
                h.update(
                    self.links
                        .get(l)
                        .map(|x| x.peer.as_str().as_bytes())
                        .unwrap_or_default(),
                );
                *h.finalize().as_bytes()
            };
            targets.sort_by_cached_key(key);
            targets.truncate(self.config.announce_fanout);
        }
        let max = self.config.max_push_queue;
        for t in targets {
            match route {
                Some((precedence, kind)) => self.enqueue_routed(t, tag, id, precedence, kind),
                None => {
                    if let Some(l) = self.links.get_mut(&t) {
                        l.push.announce(id, max);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ time

    /// Deadlines have passed (see [`timer`] for what each does).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.send_due_acks(now_ms);
        if !self.links.is_empty() && vaarta_sync::crypto::day_of(now_ms) != self.hello_day {
            self.tags_changed();
        }
        self.settle();
        let resync = self.config.resync_interval_ms;
        let expired = self.timers.expired(now_ms);
        // Links whose peer stayed silent: closed (not banned: it may be slow, not hostile).
        for t in &expired {
            if let Timer::Hello(link) = *t
                && let Some(l) = self.links.get_mut(&link)
                && l.remote.is_none()
                && !l.closing
            {
                l.closing = true;
                self.counters.hello_timeouts += 1;
                self.actions.push_back(Action::Close {
                    link,
                    reason: CloseReason::HelloTimeout,
                    ban: false,
                });
            }
        }
        let due: Vec<LinkId> = expired
            .into_iter()
            .filter_map(|t| match t {
                Timer::Resync(l) => Some(l),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for link in due {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            if l.sessions.initiator.is_none() {
                self.start_recon(link);
            } else if l.sessions.stalled(now_ms, resync) {
                // The peer went silent: abandon the session and start over.
                l.sessions.initiator = None;
                self.start_recon(link);
            }
        }
        self.dial_due(now_ms);
        self.settle();
    }

    // ------------------------------------------------------------------ flush (group commit)

    /// Ingests queued envelopes as one batch, seals staged messages, runs admin duties,
    /// flushes the store once, then releases acknowledgements and pushes. In this order:
    /// 1. ingest the inbox (faults for refused envelopes);
    /// 2. seal staged messages (each listed as awaiting receipts, `Created`);
    /// 3. admin duties and carried-envelope expiry, when due;
    /// 4. profile names;
    /// 5. **flush the store**;
    /// 6. new tags: hello (own) or `Carry` (carried);
    /// 7. acknowledgements of what step 5 made durable (stored, deferred or refused per
    ///    push), and `Receipt`s owed to the authors of linked devices;
    /// 8. push/announce what is new.
    pub fn flush(&mut self, now_ms: u64) -> Result<(), EngineError> {
        self.now = now_ms;
        let r = self.flush_inner(now_ms);
        self.settle();
        r
    }

    fn flush_inner(&mut self, now_ms: u64) -> Result<(), EngineError> {
        let inbox = std::mem::take(&mut self.inbox);
        // Per link and lane: (up to, pushes handled, pushes not stored, pushes deferred).
        type Handled = (u64, u32, Vec<u64>, Vec<u64>);
        let mut acks: BTreeMap<(LinkId, Precedence), Handled> = BTreeMap::new();
        // (pusher's device, envelope) acknowledged as stored.
        let mut stored_by: Vec<(DeviceId, EnvelopeId)> = Vec::new();
        if !inbox.is_empty() {
            let refs: Vec<&[u8]> = inbox.iter().map(|i| i.envelope.as_slice()).collect();
            let origins: Vec<Option<DeviceId>> = inbox.iter().map(|i| i.origin).collect();
            let results = self.replica.ingest_batch_from(&refs, &origins, now_ms);
            for (
                Received {
                    link, lane, seq, ..
                },
                adm,
            ) in inbox.iter().zip(results)
            {
                if let Some(id) = adm.id {
                    self.requested.remove(&id);
                }
                let disposition = self.disposition(&adm);
                match adm.result {
                    Ok(ing) => {
                        if let (Some(id), Some(tag)) = (adm.id, adm.tag)
                            && !matches!(ing, Ingested::Duplicate | Ingested::NotWanted)
                        {
                            self.fresh.push(Fresh {
                                id,
                                tag,
                                route: None,
                                source: Source::Link(*link),
                            });
                        }
                        if let Ingested::Invited(_) = ing {
                            self.tags_changed();
                        }
                    }
                    Err(e) if e.is_peer_fault() => {
                        self.fault(*link, Fault::Envelope(e));
                    }
                    Err(e) => {
                        return Err(EngineError::Store(match e {
                            replica::IngestError::Store(s) => s,
                            other => StoreError::Io(other.to_string()),
                        }));
                    }
                }
                let a = acks
                    .entry((*link, *lane))
                    .or_insert((*seq, 0, Vec::new(), Vec::new()));
                a.0 = a.0.max(*seq);
                a.1 += 1;
                match disposition {
                    Disposition::Stored => {
                        // Its author (if it pushed it) hears "stored": nothing more owed.
                        if let (Some(id), Some(d)) =
                            (adm.id, self.links.get(link).and_then(|l| l.device()))
                        {
                            stored_by.push((d, id));
                        }
                    }
                    Disposition::Refused => a.2.push(*seq),
                    Disposition::Deferred => a.3.push(*seq),
                }
            }
        }
        for (d, id) in stored_by {
            self.replica.receipts_sent(&d, &[id])?;
        }
        self.replica.seal_staged(now_ms)?;
        self.note_sealed();
        // Every own envelope but invitations (the invitee shows up as a member instead)
        // awaits receipts: messages, edits, deletions, reactions, membership operations.
        for s in std::mem::take(&mut self.sealed) {
            if s.kind != Kind::Invite {
                self.await_receipts(&s, now_ms)?;
                self.event(Event::Created { envelope: s.id });
            }
        }
        if self
            .timers
            .get(Timer::Maintain)
            .is_some_and(|t| now_ms >= t)
        {
            // Admin duties (key rotation, key shares) are rate-limited per conversation anyway.
            let next = self
                .replica
                .holds_anything()
                .then_some(now_ms + MAINTAIN_INTERVAL_MS);
            self.timers.set(Timer::Maintain, next);
            self.replica.maintain(now_ms)?;
            self.note_sealed();
            if now_ms >= self.expire_at {
                self.expire_at = now_ms + EXPIRE_INTERVAL_MS;
                self.replica.expire_carried(now_ms)?;
            }
        }
        self.publish_profiles(now_ms)?;
        self.replica.store_mut().flush()?;
        self.counters.flushes += 1;
        // New tags: our own (a conversation) go in a new hello to everyone; carried ones (a
        // relay holding something new for others) in a `Carry` to the relays we are linked to.
        let (mut own_new, mut carry_new) = (false, false);
        for f in &self.fresh {
            let t = f.tag;
            if self.replica.is_own_tag(&t, now_ms) {
                let conv = self
                    .replica
                    .conversation_of_tag(&t)
                    .and_then(|id| self.replica.conversation(&id));
                // A new conversation, or a new epoch (its presence changed).
                own_new |= conv.is_some_and(|c| {
                    !self.announced.contains(&t)
                        || !c
                            .listed_presences()
                            .iter()
                            .all(|p| self.announced_presence.contains(p))
                });
            } else if self.replica.carries() {
                // Carried for others (an invitation we sent, too): `Carry` to relays, `Held`
                // to peers that listed it.
                carry_new |= !self.announced_carry.contains(&t);
            } else if f.source == Source::Own {
                // Our own envelope under another device's tag (an invitation): listed in
                // our next intro, so the invitee recognises it.
                own_new |= !self.announced.contains(&t);
            }
        }
        if own_new && !self.links.is_empty() {
            self.tags_changed();
        }
        if carry_new && !self.links.is_empty() {
            self.carry_changed();
        }
        // Durable: acknowledge, send the receipts owed, and spread.
        for ((link, lane), (up_to, n, refused, deferred)) in acks {
            if let Some(l) = self.links.get_mut(&link)
                && !l.closing
            {
                l.ack
                    .lane(lane)
                    .durable(up_to, n, &refused, &deferred, now_ms);
            }
        }
        self.settle();
        self.send_due_acks(now_ms);
        self.send_owed_receipts(None);
        for f in std::mem::take(&mut self.fresh) {
            self.spread(f);
        }
        Ok(())
    }

    /// What the acknowledgement of an ingested push says (rule 4: "stored" only for what
    /// this device holds and can read), judged after the whole batch (a later envelope of
    /// the batch may have woken an earlier one, or evicted it):
    /// * stored: applied, an invitation opened, or held and read now (a duplicate of an
    ///   envelope held, or one woken within the batch);
    /// * deferred: held but not readable yet — pending (a dependency, an author, a signer,
    ///   an epoch key, parents), unreadable (its key not granted here yet), an invitation
    ///   held for the user, or carried for others (a relay, or a member's device that has
    ///   not accepted the invitation yet: non-members' acknowledgements make no receipt). Pending and unreadable envelopes are also evictable under this
    ///   device's bounds, so the sender must not count them delivered; the receipt follows
    ///   once they are applied (`Receipt`);
    /// * refused: refused, not wanted, or no longer held (a tombstone, or evicted).
    fn disposition(&self, adm: &replica::Admission) -> Disposition {
        match &adm.result {
            Ok(Ingested::Applied(_) | Ingested::Invited(_)) => Disposition::Stored,
            Ok(
                Ingested::Carried
                | Ingested::Pending(..)
                | Ingested::Unreadable(_)
                | Ingested::InvitationHeld(_)
                | Ingested::Duplicate,
            ) => match adm.id {
                Some(id) if self.replica.is_waiting(&id) => Disposition::Deferred,
                Some(id) if adm.tag.is_some_and(|t| matches!(self.replica.store().envelope_len(&t, &id), Ok(Some(n)) if n > 0)) => {
                    Disposition::Stored
                }
                _ => Disposition::Refused,
            },
            Ok(Ingested::NotWanted) | Err(_) => Disposition::Refused,
        }
    }

    /// Sends acknowledgements that are due (everything they cover is already durable).
    fn send_due_acks(&mut self, now_ms: u64) {
        let (delay, every) = (self.config.ack_delay_ms, self.config.ack_every);
        for link in self.timers.ack_links() {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            for (lane, ack) in l.ack.all_mut() {
                while let Some((up_to, refused, deferred)) = ack.take_due(now_ms, delay, every) {
                    if !l.closing {
                        l.frames_out.push_back(
                            Frame::Ack {
                                lane,
                                up_to,
                                refused,
                                deferred,
                            }
                            .encode(),
                        );
                    }
                }
            }
        }
    }
}
