//! Which peers to dial and when: static peers (kept connected), discovery hints (mDNS),
//! backoff with jitter after failures and drops, a least interval between dials, and bans
//! for peers that misbehaved. The dialer decides; the engine turns its answers into
//! [`Action::Dial`]s for the driver.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use vaarta_sync::ids::DeviceId;

use crate::config::{MAX_PEER_ADDRS, PEER_REDIAL_MIN_MS, STATIC_DIAL_TIMEOUT_MS};
use crate::{Action, Config, LinkId, PeerKey};

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

/// A known but not connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSeen {
    pub peer: PeerKey,
    pub device: Option<DeviceId>,
    pub name: Option<String>,
    pub addrs: Vec<String>,
    pub last_seen_ms: u64,
}

/// Bounded: at most [`Config::max_peers`] discovered peers (the stalest unconnected one is
/// evicted), [`MAX_PEER_ADDRS`] addresses each, and the configured static peers.
#[derive(Debug)]
pub(crate) struct Dialer {
    rng: ChaCha20Rng,
    peers: BTreeMap<PeerKey, PeerInfo>,
    statics: Vec<StaticPeer>,
    /// Bans of peers not in `peers` (strangers that connected and misbehaved): peer → until.
    /// Bounded by `max_peers` (the ban ending soonest goes first), so fresh peer ids that
    /// fault do not grow the table; the transport bans the connection as well.
    bans: BTreeMap<PeerKey, u64>,
    last_dial: u64,
    max_peers: usize,
    gap: u64,
    backoff_initial: u64,
    backoff_max: u64,
    hint_ttl: u64,
    /// Something changed since [`Self::take_changed`] (the deadline may have moved).
    changed: bool,
}

/// A wait of `base` with jitter: uniformly in `[base/2, base]`, so peers that lost each
/// other at the same moment do not redial in lockstep.
fn jitter(rng: &mut ChaCha20Rng, base: u64) -> u64 {
    base / 2 + rng.next_u64() % (base / 2 + 1)
}

impl Dialer {
    pub(crate) fn new(config: &Config, rng: ChaCha20Rng, now: u64) -> Self {
        let statics = config
            .static_peers
            .iter()
            .map(|a| StaticPeer {
                addr: a.clone(),
                link: None,
                next_dial: now,
                backoff: config.backoff_initial_ms,
                dialing: false,
            })
            .collect();
        Self {
            rng,
            peers: BTreeMap::new(),
            statics,
            bans: BTreeMap::new(),
            last_dial: 0,
            max_peers: config.max_peers,
            gap: config.min_dial_interval_ms,
            backoff_initial: config.backoff_initial_ms,
            backoff_max: config.backoff_max_ms,
            hint_ttl: config.hint_ttl_ms,
            changed: true,
        }
    }

    /// True once after anything changed that may move [`Self::deadline`].
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    fn grow(&self, b: u64) -> u64 {
        (b * 2).min(self.backoff_max)
    }

    pub(crate) fn is_banned(&self, peer: &PeerKey, now: u64) -> bool {
        self.peers.get(peer).is_some_and(|p| p.banned_until > now)
            || self.bans.get(peer).is_some_and(|t| *t > now)
    }

    /// True if `dialed` is a static peer's address.
    pub(crate) fn is_static(&self, dialed: Option<&str>) -> bool {
        dialed.is_some_and(|a| self.statics.iter().any(|s| s.addr == a))
    }

    /// A link came up; if we dialled a static peer's address, that peer is connected.
    pub(crate) fn link_up(&mut self, link: LinkId, dialed: Option<&str>) {
        self.changed = true;
        if let Some(addr) = dialed
            && let Some(s) = self.statics.iter_mut().find(|s| s.addr == addr)
        {
            s.link = Some(link);
            s.dialing = false;
        }
    }

    /// A link to `peer` dropped; `up_long` if it had been up a good while (its backoff
    /// starts over).
    pub(crate) fn link_down(&mut self, link: LinkId, peer: &PeerKey, up_long: bool, now: u64) {
        self.changed = true;
        let initial = self.backoff_initial;
        for i in 0..self.statics.len() {
            if self.statics[i].link != Some(link) {
                continue;
            }
            let mut backoff = self.statics[i].backoff;
            if up_long {
                backoff = initial;
            }
            let wait = jitter(&mut self.rng, backoff);
            let grown = self.grow(backoff);
            let s = &mut self.statics[i];
            s.link = None;
            s.dialing = false;
            s.next_dial = now + wait;
            s.backoff = grown;
        }
        if let Some(backoff) = self.peers.get(peer).map(|p| p.backoff) {
            let wait = jitter(&mut self.rng, backoff);
            let grown = self.grow(backoff);
            let p = self.peers.get_mut(peer).expect("present");
            p.next_dial = now + wait;
            p.backoff = if up_long { initial } else { grown };
        }
    }

    /// Discovery says `peer` may be reachable at `addrs`. False if the table is full of
    /// connected peers and the hint was dropped.
    pub(crate) fn discovered(
        &mut self,
        peer: PeerKey,
        addrs: Vec<String>,
        now: u64,
        connected: &BTreeSet<PeerKey>,
    ) -> bool {
        self.changed = true;
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max_peers {
            // Evict the stalest peer that is not connected.
            let Some(victim) = self
                .peers
                .iter()
                .filter(|(k, _)| !connected.contains(k))
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(k, _)| k.clone())
            else {
                return false;
            };
            self.peers.remove(&victim);
        }
        let initial = self.backoff_initial;
        // A stranger banned before it was discovered stays banned.
        let banned_until = if self.peers.contains_key(&peer) {
            0
        } else {
            self.bans.remove(&peer).unwrap_or(0)
        };
        let p = self.peers.entry(peer).or_insert(PeerInfo {
            addrs: Vec::new(),
            last_seen: now,
            device: None,
            name: None,
            next_dial: now.max(banned_until),
            backoff: initial,
            banned_until,
        });
        p.last_seen = now;
        for a in addrs.into_iter().take(MAX_PEER_ADDRS) {
            if !p.addrs.contains(&a) {
                p.addrs.push(a);
            }
        }
        p.addrs.truncate(MAX_PEER_ADDRS);
        true
    }

    /// A dial we asked for failed.
    pub(crate) fn dial_failed(&mut self, peer: Option<&PeerKey>, addr: &str, now: u64) {
        self.changed = true;
        if let Some(i) = self.statics.iter().position(|s| s.addr == addr) {
            let wait = jitter(&mut self.rng, self.statics[i].backoff);
            let grown = self.grow(self.statics[i].backoff);
            let s = &mut self.statics[i];
            s.dialing = false;
            s.next_dial = now + wait;
            s.backoff = grown;
        }
        if let Some(backoff) = peer.and_then(|k| self.peers.get(k)).map(|p| p.backoff) {
            let wait = jitter(&mut self.rng, backoff);
            let grown = self.grow(backoff);
            let p = self.peers.get_mut(peer.expect("found")).expect("present");
            p.next_dial = now + wait;
            p.backoff = grown;
        }
    }

    /// The peer's intro arrived (the link carries data): its backoff starts over.
    pub(crate) fn ready(&mut self, peer: &PeerKey) {
        let initial = self.backoff_initial;
        if let Some(p) = self.peers.get_mut(peer) {
            self.changed = true;
            p.backoff = initial;
        }
    }

    /// The peer's proof verified: remember who it is; its backoff starts over.
    pub(crate) fn hello(&mut self, peer: &PeerKey, device: DeviceId, name: &str) {
        self.changed = true;
        let initial = self.backoff_initial;
        if let Some(p) = self.peers.get_mut(peer) {
            p.device = Some(device);
            p.name = Some(name.to_string());
            p.backoff = initial;
        }
    }

    /// Refuses `peer` for `ban_ms` (it misbehaved).
    pub(crate) fn ban(&mut self, peer: &PeerKey, now: u64, ban_ms: u64) {
        self.changed = true;
        if let Some(p) = self.peers.get_mut(peer) {
            p.banned_until = now + ban_ms;
            p.next_dial = p.next_dial.max(now + ban_ms);
            return;
        }
        self.bans.retain(|_, t| *t > now);
        if !self.bans.contains_key(peer) && self.bans.len() >= self.max_peers.max(1) {
            let soonest = self
                .bans
                .iter()
                .min_by_key(|(k, t)| (**t, (*k).clone()))
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                self.bans.remove(&k);
            }
        }
        self.bans.insert(peer.clone(), now + ban_ms);
    }

    /// Entries in the peer and ban tables (for bounds checks).
    #[cfg(test)]
    pub(crate) fn table_len(&self) -> (usize, usize) {
        (self.peers.len(), self.bans.len())
    }

    /// Dials due at `now`: static peers first, then discovered ones, one per least dial
    /// interval. `connected` are the peers with a link; `me` is never dialled.
    pub(crate) fn due(
        &mut self,
        now: u64,
        me: DeviceId,
        connected: &BTreeSet<PeerKey>,
        out: &mut impl Extend<Action>,
    ) {
        self.changed = true;
        for s in &mut self.statics {
            if now < self.last_dial + self.gap {
                return;
            }
            if s.link.is_none() && !s.dialing && s.next_dial <= now {
                s.dialing = true;
                // A dial that never reports back is retried after the backoff.
                s.next_dial = now + s.backoff.max(STATIC_DIAL_TIMEOUT_MS);
                self.last_dial = now;
                out.extend([Action::Dial {
                    peer: None,
                    addr: s.addr.clone(),
                }]);
            }
        }
        for (k, p) in self.peers.iter_mut() {
            if now < self.last_dial + self.gap {
                return;
            }
            if connected.contains(k)
                || p.next_dial > now
                || p.banned_until > now
                || now.saturating_sub(p.last_seen) > self.hint_ttl
                || p.device == Some(me)
                || p.addrs.is_empty()
            {
                continue;
            }
            p.next_dial = now + p.backoff.max(PEER_REDIAL_MIN_MS);
            self.last_dial = now;
            out.extend([Action::Dial {
                peer: Some(k.clone()),
                addr: p.addrs[0].clone(),
            }]);
        }
    }

    /// When [`Self::due`] next has a dial to make: a static peer whose backoff ends, or a
    /// discovered one (not connected, not banned, its hint still fresh then), never before
    /// the least dial interval. `None` if no dial can become due without new input.
    pub(crate) fn deadline(&self, me: DeviceId, connected: &BTreeSet<PeerKey>) -> Option<u64> {
        let gap_at = self.last_dial + self.gap;
        let statics = self
            .statics
            .iter()
            .filter(|s| s.link.is_none() && !s.dialing)
            .map(|s| s.next_dial.max(gap_at));
        let peers = self
            .peers
            .iter()
            .filter(|(k, p)| !connected.contains(k) && !p.addrs.is_empty() && p.device != Some(me))
            .filter_map(|(_, p)| {
                let t = p.next_dial.max(p.banned_until).max(gap_at);
                (t.saturating_sub(p.last_seen) <= self.hint_ttl).then_some(t)
            });
        statics.chain(peers).min()
    }

    pub(crate) fn peers_seen(&self) -> Vec<PeerSeen> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn dialer(statics: &[&str]) -> Dialer {
        let config = Config {
            static_peers: statics.iter().map(|s| s.to_string()).collect(),
            max_peers: 3,
            ..Config::default()
        };
        Dialer::new(&config, ChaCha20Rng::from_seed([1; 32]), 0)
    }

    fn dials(d: &mut Dialer, now: u64, connected: &BTreeSet<PeerKey>) -> Vec<Action> {
        let mut out = Vec::new();
        d.due(now, DeviceId([9; 32]), connected, &mut out);
        out
    }

    #[test]
    fn failed_static_dials_back_off_with_jitter_up_to_the_cap() {
        let mut d = dialer(&["/ip4/127.0.0.1/tcp/1"]);
        let none = BTreeSet::new();
        let mut now;
        let mut expected = 1_000;
        assert_eq!(
            d.deadline(DeviceId([9; 32]), &BTreeSet::new()),
            Some(100),
            "due at once, after the least interval"
        );
        for _ in 0..10 {
            let due = d.deadline(DeviceId([9; 32]), &BTreeSet::new()).unwrap();
            let a = dials(&mut d, due, &none);
            assert_eq!(a.len(), 1, "one dial when due");
            assert_eq!(
                d.deadline(DeviceId([9; 32]), &BTreeSet::new()),
                None,
                "no deadline while the dial is out"
            );
            now = d.last_dial + 1;
            d.dial_failed(None, "/ip4/127.0.0.1/tcp/1", now);
            let wait = d.deadline(DeviceId([9; 32]), &BTreeSet::new()).unwrap() - now;
            assert!(
                (expected / 2..=expected).contains(&wait),
                "wait {wait} outside [{}, {expected}]",
                expected / 2
            );
            expected = (expected * 2).min(60_000);
        }
        assert_eq!(expected, 60_000);
    }

    #[test]
    fn a_long_link_resets_the_backoff() {
        let mut d = dialer(&["a"]);
        for _ in 0..5 {
            d.dial_failed(None, "a", 0);
        }
        assert_eq!(d.statics[0].backoff, 32_000);
        d.link_up(LinkId(1), Some("a"));
        assert_eq!(
            d.deadline(DeviceId([9; 32]), &BTreeSet::new()),
            None,
            "connected"
        );
        d.link_down(LinkId(1), &PeerKey::from("p"), true, 100_000);
        let wait = d.deadline(DeviceId([9; 32]), &BTreeSet::new()).unwrap() - 100_000;
        assert!((500..=1_000).contains(&wait), "{wait}");
    }

    #[test]
    fn bans_of_strangers_are_bounded_and_survive_discovery() {
        let mut d = dialer(&[]);
        // max_peers is 3 in these tests.
        for n in 0..100 {
            d.ban(&PeerKey::new(format!("s{n}")), 1_000 + n, 60_000);
        }
        assert_eq!(
            d.table_len(),
            (0, 3),
            "strangers' bans do not grow the tables"
        );
        assert!(d.is_banned(&PeerKey::new("s99"), 2_000));
        assert!(
            !d.is_banned(&PeerKey::new("s0"), 2_000),
            "the soonest-ending went"
        );
        d.discovered(
            PeerKey::new("s99"),
            vec!["/a".into()],
            2_000,
            &BTreeSet::new(),
        );
        assert!(
            d.is_banned(&PeerKey::new("s99"), 2_001),
            "still banned once discovered"
        );
    }

    #[test]
    fn banned_peers_are_not_dialled_until_the_ban_ends() {
        let mut d = dialer(&[]);
        let p = PeerKey::from("p");
        let none = BTreeSet::new();
        assert!(d.discovered(p.clone(), vec!["addr".into()], 0, &none));
        d.ban(&p, 0, 60_000);
        assert!(d.is_banned(&p, 59_999));
        assert!(dials(&mut d, 1_000, &none).is_empty());
        assert!(!d.is_banned(&p, 60_000));
        d.discovered(p.clone(), vec![], 60_000, &none);
        assert_eq!(dials(&mut d, 60_000, &none).len(), 1);
        // A ban of an unknown peer is remembered too.
        let q = PeerKey::from("q");
        d.ban(&q, 0, 10);
        assert!(d.is_banned(&q, 5));
    }

    #[test]
    fn the_peer_table_is_bounded_and_evicts_the_stalest_unconnected() {
        let mut d = dialer(&[]);
        let none = BTreeSet::new();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            assert!(d.discovered(PeerKey::from(*name), vec![], i as u64, &none));
        }
        assert!(d.discovered(PeerKey::from("d"), vec![], 10, &none));
        let names: Vec<String> = d.peers_seen().iter().map(|p| p.peer.to_string()).collect();
        assert_eq!(names, vec!["b", "c", "d"]);
        // All connected: a new hint is dropped rather than evicting a connected peer.
        let all: BTreeSet<PeerKey> = ["b", "c", "d"].iter().map(|s| PeerKey::from(*s)).collect();
        assert!(!d.discovered(PeerKey::from("e"), vec![], 11, &all));
        assert_eq!(d.peers_seen().len(), 3);
        // Addresses per peer are bounded.
        let many: Vec<String> = (0..20).map(|i| format!("/ip4/10.0.0.{i}")).collect();
        d.discovered(PeerKey::from("b"), many, 12, &none);
        let b = d.peers_seen().into_iter().find(|p| p.peer.as_str() == "b");
        assert_eq!(b.unwrap().addrs.len(), MAX_PEER_ADDRS);
    }

    #[test]
    fn dials_are_spaced_by_the_least_interval_and_skip_connected_and_self() {
        let mut d = dialer(&[]);
        let none = BTreeSet::new();
        for name in ["a", "b", "me"] {
            d.discovered(PeerKey::from(name), vec![format!("/{name}")], 0, &none);
        }
        d.hello(&PeerKey::from("me"), DeviceId([9; 32]), "me");
        assert_eq!(dials(&mut d, 1_000, &none).len(), 1);
        assert!(
            dials(&mut d, 1_050, &none).is_empty(),
            "within the interval"
        );
        let connected: BTreeSet<PeerKey> = [PeerKey::from("b")].into();
        assert!(
            dials(&mut d, 1_100, &connected).is_empty(),
            "b is connected, me is me"
        );
        assert_eq!(dials(&mut d, 1_100, &none).len(), 1, "b when it is not");
    }

    #[test]
    fn the_deadline_covers_discovered_peers_too() {
        // Regression: discovered peers waiting for the least dial interval, a ban or a
        // backoff had no deadline, so a daemon that wakes only for deadlines dialled them
        // at the next unrelated timer (the mDNS test took 60 s instead of 5).
        let mut d = dialer(&[]);
        let me = DeviceId([9; 32]);
        let none = BTreeSet::new();
        assert_eq!(d.deadline(me, &none), None);
        d.discovered(PeerKey::from("a"), vec!["/a".into()], 0, &none);
        d.discovered(PeerKey::from("b"), vec!["/b".into()], 0, &none);
        assert_eq!(
            dials(&mut d, 1_000, &none).len(),
            1,
            "a; b waits for the interval"
        );
        assert_eq!(d.deadline(me, &none), Some(1_100));
        assert_eq!(dials(&mut d, 1_100, &none).len(), 1, "b");
        // Both dialled: next deadlines are their redial times, unless connected.
        let both: BTreeSet<PeerKey> = [PeerKey::from("a"), PeerKey::from("b")].into();
        assert_eq!(d.deadline(me, &both), None);
        assert_eq!(d.deadline(me, &none), Some(6_000));
        // A ban pushes it out; a stale hint drops it.
        d.ban(&PeerKey::from("a"), 1_100, 60_000);
        assert_eq!(d.deadline(me, &none), Some(6_100), "b only");
        let ttl = d.hint_ttl;
        d.dial_failed(Some(&PeerKey::from("b")), "/b", ttl);
        assert_eq!(
            d.deadline(me, &none),
            Some(61_100),
            "b's hint is stale by its redial time: a, once its ban ends"
        );
    }
}
