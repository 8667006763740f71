//! Link limits and the scan duty cycle, sans-IO.
//!
//! At most [`ManagerConfig::max_links`] Bluetooth links at once (phones manage about seven:
//! the controller schedules every connection event in one radio; Briar blamed group
//! failures on the classic piconet's limit of seven). While below the limit the radio scans
//! `scan_on_ms` out of every `scan_on_ms + scan_off_ms` (bitchat's 5 s / 10 s default);
//! at the limit it stops scanning (there is nobody it could connect to). The manager turns
//! that into start/stop commands at the right instants and reports the fraction of time
//! spent scanning, a battery proxy (scanning dominates an idle BLE radio's draw).

use std::collections::BTreeSet;

use thiserror::Error;
use vaarta_engine::link::LinkId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// Most links at once.
    pub max_links: usize,
    /// Scan window length.
    pub scan_on_ms: u64,
    /// Pause between scan windows; 0 scans continuously.
    pub scan_off_ms: u64,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            max_links: 7,
            scan_on_ms: 5_000,
            scan_off_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkRefused {
    #[error("at the limit of {0} Bluetooth links")]
    Full(usize),
    #[error("link {0} already counted")]
    Duplicate(LinkId),
}

/// What the driver should do with the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Start,
    Stop,
}

#[derive(Debug)]
pub struct Manager {
    config: ManagerConfig,
    links: BTreeSet<LinkId>,
    origin: u64,
    /// Accounting is exact up to here.
    last: u64,
    active_ms: u64,
    /// What the driver was last told.
    reported: bool,
}

impl Manager {
    pub fn new(config: ManagerConfig, now_ms: u64) -> Self {
        Self {
            config,
            links: BTreeSet::new(),
            origin: now_ms,
            last: now_ms,
            active_ms: 0,
            reported: false,
        }
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }

    pub fn is_full(&self) -> bool {
        self.links.len() >= self.config.max_links
    }

    fn period(&self) -> u64 {
        self.config.scan_on_ms + self.config.scan_off_ms
    }

    /// Whether the duty cycle wants the radio scanning at `t` (ignoring the link limit).
    fn in_window(&self, t: u64) -> bool {
        let p = self.period();
        p == 0 || self.config.scan_off_ms == 0 || (t - self.origin) % p < self.config.scan_on_ms
    }

    /// Scan time in `[origin, t)` by the duty cycle alone.
    fn cycle_active_until(&self, t: u64) -> u64 {
        let p = self.period();
        if p == 0 || self.config.scan_off_ms == 0 {
            return t - self.origin;
        }
        let d = t - self.origin;
        (d / p) * self.config.scan_on_ms + (d % p).min(self.config.scan_on_ms)
    }

    fn advance(&mut self, now_ms: u64) {
        let now = now_ms.max(self.last);
        if !self.is_full() {
            self.active_ms += self.cycle_active_until(now) - self.cycle_active_until(self.last);
        }
        self.last = now;
    }

    /// Whether the radio should be scanning now.
    pub fn scanning(&self, now_ms: u64) -> bool {
        !self.is_full() && self.in_window(now_ms.max(self.last))
    }

    /// Counts a new link, or refuses it at the limit (the driver disconnects it).
    pub fn add_link(&mut self, link: LinkId, now_ms: u64) -> Result<(), LinkRefused> {
        if self.links.contains(&link) {
            return Err(LinkRefused::Duplicate(link));
        }
        if self.is_full() {
            return Err(LinkRefused::Full(self.config.max_links));
        }
        self.advance(now_ms);
        self.links.insert(link);
        Ok(())
    }

    pub fn remove_link(&mut self, link: LinkId, now_ms: u64) {
        self.advance(now_ms);
        self.links.remove(&link);
    }

    /// A scanner command if the wanted state changed since the last one.
    pub fn poll_command(&mut self, now_ms: u64) -> Option<Scan> {
        self.advance(now_ms);
        let want = self.scanning(now_ms);
        if want == self.reported {
            return None;
        }
        self.reported = want;
        Some(if want { Scan::Start } else { Scan::Stop })
    }

    /// When the duty cycle next flips (call [`Self::poll_command`] then). `None` when full
    /// or scanning continuously.
    pub fn poll_timeout(&self) -> Option<u64> {
        let p = self.period();
        if self.is_full() || p == 0 || self.config.scan_off_ms == 0 || self.config.scan_on_ms == 0 {
            return None;
        }
        let d = self.last - self.origin;
        let phase = d % p;
        let next = if phase < self.config.scan_on_ms {
            self.config.scan_on_ms
        } else {
            p
        };
        Some(self.last - phase + next)
    }

    /// Fraction of the time since creation spent scanning.
    pub fn active_fraction(&mut self, now_ms: u64) -> f64 {
        self.advance(now_ms);
        let total = self.last - self.origin;
        if total == 0 {
            0.0
        } else {
            self.active_ms as f64 / total as f64
        }
    }
}

/// Redial settings ([`Dials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialConfig {
    /// Wait after the first failed dial; doubled per further failure.
    pub backoff_min_ms: u64,
    /// The longest wait between two dials of one peer.
    pub backoff_max_ms: u64,
    /// A peer not seen (advert or link) for this long is no longer dialled.
    pub forget_after_ms: u64,
    /// Failed L2CAP attempts in a row before a dial uses GATT instead, and
    /// [`Self::l2cap_grace_ms`] the failures must span. A channel refused or stalled in the
    /// first tens of seconds of a connection is usually transient (seen in the BlueZ guest:
    /// no data from the peripheral for ~50 s after the controllers connected, while both
    /// bluetoothds ran their own GATT discovery): a few quick failures must not pin a peer to
    /// the slower path. The fallback is for one dial: after a GATT dial (linked or not) the
    /// count starts again, so a peer that was merely away (its node restarting: no listener,
    /// no GATT service either) is back on L2CAP when it returns.
    pub l2cap_tries: u32,
    pub l2cap_grace_ms: u64,
    /// Peers remembered at once (a crowd of adverts, or one device rotating its address,
    /// cannot grow the table past this; the least recently seen goes first).
    pub max_peers: usize,
}

impl Default for DialConfig {
    fn default() -> Self {
        Self {
            backoff_min_ms: 1_000,
            backoff_max_ms: 30_000,
            forget_after_ms: 5 * 60_000,
            l2cap_tries: 3,
            l2cap_grace_ms: 60_000,
            max_peers: 64,
        }
    }
}

/// How a dial is to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    L2cap,
    Gatt,
}

/// How a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The link came up over this path (the peer proved its key) and later ended.
    Linked(Path),
    /// No link: the connection or the handshake failed on this path.
    Failed(Path),
}

#[derive(Debug, Clone)]
struct Candidate<V> {
    value: V,
    last_seen: u64,
    next_try: u64,
    failures: u32,
    l2cap_failures: u32,
    /// When the current run of L2CAP failures began.
    l2cap_failing_since: Option<u64>,
    dialing: bool,
}

/// The peers this device dials (the one-dialer rule picked it), sans-IO: a dial is retried
/// with exponential backoff for as long as the peer was seen recently, not only when a new
/// advert happens to arrive (a connected or idle peer may never advertise again, and a
/// scanner reports a known device once). `K` names a peer (its address), `V` is what the
/// driver needs to dial it.
#[derive(Debug)]
pub struct Dials<K, V> {
    config: DialConfig,
    peers: std::collections::BTreeMap<K, Candidate<V>>,
}

impl<K: Ord + Clone, V> Dials<K, V> {
    pub fn new(config: DialConfig) -> Self {
        Self {
            config,
            peers: std::collections::BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer advertised and should be dialled by us; `value` replaces the stored one.
    pub fn seen(&mut self, key: K, value: V, now_ms: u64) {
        if let Some(c) = self.peers.get_mut(&key) {
            c.value = value;
            c.last_seen = c.last_seen.max(now_ms);
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            // The least recently seen one that is not being dialled.
            let oldest = self
                .peers
                .iter()
                .filter(|(_, c)| !c.dialing)
                .min_by_key(|(_, c)| c.last_seen)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.peers.remove(&k);
                }
                None => return,
            }
        }
        self.peers.insert(
            key,
            Candidate {
                value,
                last_seen: now_ms,
                next_try: now_ms,
                failures: 0,
                l2cap_failures: 0,
                l2cap_failing_since: None,
                dialing: false,
            },
        );
    }

    /// What `key` is dialled with.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.peers.get(key).map(|c| &c.value)
    }

    /// The peer's adverts say it dials us (or it left): stop dialling it.
    pub fn forget(&mut self, key: &K) {
        if self.peers.get(key).is_some_and(|c| !c.dialing) {
            self.peers.remove(key);
        }
    }

    /// Peers due for a dial now (not being dialled, backoff over, seen recently). Peers not
    /// seen for [`DialConfig::forget_after_ms`] are dropped.
    pub fn due(&mut self, now_ms: u64) -> Vec<K> {
        let forget = self.config.forget_after_ms;
        self.peers
            .retain(|_, c| c.dialing || now_ms.saturating_sub(c.last_seen) < forget);
        self.peers
            .iter()
            .filter(|(_, c)| !c.dialing && c.next_try <= now_ms)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Starts a dial: which path to use and what to dial with. `None` if the peer is
    /// unknown or already being dialled.
    pub fn start(&mut self, key: &K, l2cap: bool, now_ms: u64) -> Option<(Path, &V)> {
        let (tries, grace) = (self.config.l2cap_tries, self.config.l2cap_grace_ms);
        let c = self.peers.get_mut(key).filter(|c| !c.dialing)?;
        c.dialing = true;
        let given_up = c.l2cap_failures >= tries
            && c.l2cap_failing_since
                .is_some_and(|t| now_ms.saturating_sub(t) >= grace);
        let path = if l2cap && !given_up {
            Path::L2cap
        } else {
            Path::Gatt
        };
        Some((path, &c.value))
    }

    /// A dial ended. A link that came up counts as a sighting and clears the failures; the
    /// peer is dialled again after the shortest backoff if it goes down.
    pub fn finished(&mut self, key: &K, outcome: Outcome, now_ms: u64) {
        let Some(c) = self.peers.get_mut(key) else {
            return;
        };
        c.dialing = false;
        match outcome {
            Outcome::Linked(_) => {
                c.l2cap_failures = 0;
                c.l2cap_failing_since = None;
                c.failures = 0;
                c.last_seen = c.last_seen.max(now_ms);
                c.next_try = now_ms + self.config.backoff_min_ms;
            }
            Outcome::Failed(path) => {
                c.failures = c.failures.saturating_add(1);
                if path == Path::L2cap {
                    c.l2cap_failures = c.l2cap_failures.saturating_add(1);
                    c.l2cap_failing_since.get_or_insert(now_ms);
                } else {
                    c.l2cap_failures = 0;
                    c.l2cap_failing_since = None;
                }
                let exp = (c.failures - 1).min(20);
                let wait = self
                    .config
                    .backoff_min_ms
                    .saturating_mul(1 << exp)
                    .min(self.config.backoff_max_ms);
                c.next_try = now_ms + wait;
            }
        }
    }

    /// When the next dial is due, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.peers
            .values()
            .filter(|c| !c.dialing)
            .map(|c| c.next_try)
            .min()
    }
}

/// Which link each peer device is on, sans-IO. A device whose Bluetooth address rotated
/// (a phone's resolvable private address changes every ~15 min) comes back from a new
/// address while the link from its old one may linger until the supervision timeout: the
/// newest link the device proved itself on is kept and the older one closed, so one device
/// holds one of the few Bluetooth link slots. Two links from the *same* address do not
/// happen (the driver runs one link per address); those are left alone here.
#[derive(Debug)]
pub struct Devices<D, K> {
    links: std::collections::BTreeMap<D, (LinkId, K)>,
}

impl<D: Ord, K: PartialEq> Default for Devices<D, K> {
    fn default() -> Self {
        Self {
            links: std::collections::BTreeMap::new(),
        }
    }
}

impl<D: Ord, K: PartialEq> Devices<D, K> {
    /// `link` (from address `key`) proved `device`: the link to close, if the device was on
    /// another one from another address.
    pub fn established(&mut self, device: D, link: LinkId, key: K) -> Option<LinkId> {
        match self.links.get(&device) {
            Some((old, old_key)) if *old != link && *old_key == key => None,
            _ => self
                .links
                .insert(device, (link, key))
                .map(|(old, _)| old)
                .filter(|old| *old != link),
        }
    }

    /// A link ended.
    pub fn link_down(&mut self, link: LinkId) {
        self.links.retain(|_, (l, _)| *l != link);
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dials() -> Dials<u8, &'static str> {
        Dials::new(DialConfig {
            max_peers: 3,
            ..Default::default()
        })
    }

    #[test]
    fn a_failed_dial_is_retried_with_backoff_without_a_new_advert() {
        let mut d = dials();
        d.seen(1, "p", 0);
        assert_eq!(d.due(0), vec![1]);
        assert_eq!(d.start(&1, true, 0), Some((Path::L2cap, &"p")));
        assert_eq!(d.due(0), Vec::<u8>::new(), "not twice at once");
        assert_eq!(d.start(&1, true, 0), None);
        d.finished(&1, Outcome::Failed(Path::L2cap), 100);
        assert_eq!(d.poll_timeout(), Some(1_100));
        assert!(d.due(1_099).is_empty());
        assert_eq!(d.due(1_100), vec![1]);
        d.start(&1, true, 0).unwrap();
        d.finished(&1, Outcome::Failed(Path::L2cap), 2_000);
        assert_eq!(d.poll_timeout(), Some(4_000));
        // The wait doubles up to the cap.
        for i in 0..10 {
            d.start(&1, false, 0).unwrap();
            d.finished(&1, Outcome::Failed(Path::Gatt), 10_000 + i);
        }
        assert_eq!(d.poll_timeout(), Some(10_009 + 30_000));
        // A link that came up resets it; when it ends the peer is dialled again soon.
        d.start(&1, false, 0).unwrap();
        d.finished(&1, Outcome::Linked(Path::Gatt), 200_000);
        assert_eq!(d.poll_timeout(), Some(201_000));
        // Not seen for five minutes (no advert, no link): no more dials.
        assert_eq!(d.due(200_000 + 299_999), vec![1]);
        assert!(d.due(200_000 + 300_000).is_empty());
        assert!(d.is_empty());
    }

    #[test]
    fn l2cap_is_given_up_for_gatt_only_after_three_failures_over_a_minute() {
        let mut d = dials();
        d.seen(1, "p", 0);
        // Three quick failures (a connection's first seconds): still L2CAP.
        for t in [0, 11_000, 23_000, 37_000] {
            assert_eq!(
                d.start(&1, true, t).map(|x| x.0),
                Some(Path::L2cap),
                "at {t}"
            );
            d.finished(&1, Outcome::Failed(Path::L2cap), t + 10_000);
        }
        // Failing since 10 s, four times: at 70 s the grace is over.
        assert_eq!(d.start(&1, true, 69_999).map(|x| x.0), Some(Path::L2cap));
        d.finished(&1, Outcome::Failed(Path::L2cap), 69_999);
        assert_eq!(d.start(&1, true, 70_000).map(|x| x.0), Some(Path::Gatt));
        // One GATT dial, then L2CAP again (whether GATT failed or linked).
        d.finished(&1, Outcome::Failed(Path::Gatt), 71_000);
        assert_eq!(d.start(&1, true, 90_000).map(|x| x.0), Some(Path::L2cap));
        d.finished(&1, Outcome::Failed(Path::L2cap), 90_000);
        assert_eq!(d.start(&1, true, 100_000).map(|x| x.0), Some(Path::L2cap));
        assert_eq!(d.start(&1, true, 100_000), None, "one dial at a time");
        d.finished(&1, Outcome::Failed(Path::L2cap), 100_000);
        assert_eq!(d.start(&1, true, 150_000).map(|x| x.0), Some(Path::L2cap));
        d.finished(&1, Outcome::Failed(Path::L2cap), 150_000);
        assert_eq!(d.start(&1, true, 150_000).map(|x| x.0), Some(Path::Gatt));
        d.finished(&1, Outcome::Linked(Path::Gatt), 160_000);
        assert_eq!(d.start(&1, true, 170_000).map(|x| x.0), Some(Path::L2cap));
        // A success over L2CAP clears the run.
        let mut d = dials();
        d.seen(1, "p", 0);
        for t in 0..3 {
            d.start(&1, true, t).unwrap();
            d.finished(&1, Outcome::Failed(Path::L2cap), t);
        }
        d.start(&1, true, 50_000).unwrap();
        d.finished(&1, Outcome::Linked(Path::L2cap), 50_000);
        d.start(&1, true, 200_000).unwrap();
        d.finished(&1, Outcome::Failed(Path::L2cap), 200_000);
        assert_eq!(d.start(&1, true, 300_000).map(|x| x.0), Some(Path::L2cap));
        // GATT only when L2CAP is off.
        let mut d = dials();
        d.seen(2, "q", 0);
        assert_eq!(d.start(&2, false, 0).map(|x| x.0), Some(Path::Gatt));
    }

    #[test]
    fn the_table_is_bounded_and_the_other_dialer_is_forgotten() {
        let mut d = dials();
        d.seen(1, "a", 10);
        d.seen(2, "b", 20);
        d.seen(3, "c", 30);
        d.start(&1, true, 0).unwrap();
        // Full: the least recently seen peer not being dialled goes (2, not 1).
        d.seen(4, "d", 40);
        assert_eq!(d.len(), 3);
        assert_eq!(d.due(40), vec![3, 4]);
        d.seen(3, "c2", 50);
        assert_eq!(d.start(&3, true, 0), Some((Path::L2cap, &"c2")));
        d.forget(&4);
        d.forget(&3); // being dialled: kept until it ends
        assert_eq!(d.len(), 2);
        d.finished(&3, Outcome::Failed(Path::L2cap), 60);
        d.forget(&3);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_device_that_rotated_its_address_keeps_only_its_newest_link() {
        let mut d: Devices<&str, u8> = Devices::default();
        assert_eq!(d.established("phone", LinkId(1), 10), None);
        assert_eq!(d.established("laptop", LinkId(2), 20), None);
        // The phone is back from a new address: its old link goes.
        assert_eq!(d.established("phone", LinkId(3), 11), Some(LinkId(1)));
        d.link_down(LinkId(1));
        assert_eq!(d.len(), 2);
        // A second link from the same address is not this rule's business.
        assert_eq!(d.established("phone", LinkId(4), 11), None);
        d.link_down(LinkId(3));
        d.link_down(LinkId(2));
        assert!(d.is_empty());
        assert_eq!(d.established("phone", LinkId(5), 12), None);
    }

    #[test]
    fn at_most_max_links_and_a_freed_slot_is_reused() {
        let mut m = Manager::new(ManagerConfig::default(), 0);
        for i in 0..7 {
            m.add_link(LinkId(i), 0).unwrap();
        }
        assert_eq!(m.add_link(LinkId(7), 0), Err(LinkRefused::Full(7)));
        assert_eq!(
            m.add_link(LinkId(3), 0),
            Err(LinkRefused::Duplicate(LinkId(3)))
        );
        m.remove_link(LinkId(3), 1);
        m.add_link(LinkId(7), 2).unwrap();
        assert_eq!(m.links(), 7);
        let mut m = Manager::new(
            ManagerConfig {
                max_links: 2,
                ..Default::default()
            },
            0,
        );
        m.add_link(LinkId(0), 0).unwrap();
        m.add_link(LinkId(1), 0).unwrap();
        assert!(m.add_link(LinkId(2), 0).is_err());
    }

    #[test]
    fn the_duty_cycle_drives_commands_and_the_active_fraction() {
        let mut m = Manager::new(ManagerConfig::default(), 1_000);
        assert_eq!(m.poll_command(1_000), Some(Scan::Start));
        assert_eq!(m.poll_command(1_000), None);
        assert_eq!(m.poll_timeout(), Some(6_000));
        assert_eq!(m.poll_command(6_000), Some(Scan::Stop));
        assert_eq!(m.poll_timeout(), Some(16_000));
        assert_eq!(m.poll_command(16_000), Some(Scan::Start));
        // One hour of 5 s on / 10 s off: a third.
        let mut t = 16_000;
        while t < 3_601_000 {
            m.poll_command(t);
            t = m.poll_timeout().unwrap();
        }
        let f = m.active_fraction(3_601_000);
        assert!((f - 1.0 / 3.0).abs() < 1e-3, "{f}");
        // Other settings.
        let mut m = Manager::new(
            ManagerConfig {
                scan_on_ms: 2_000,
                scan_off_ms: 28_000,
                ..Default::default()
            },
            0,
        );
        assert!((m.active_fraction(300_000) - 2.0 / 30.0).abs() < 1e-9);
        let mut m = Manager::new(
            ManagerConfig {
                scan_off_ms: 0,
                ..Default::default()
            },
            0,
        );
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(m.active_fraction(10_000), 1.0);
    }

    #[test]
    fn at_the_limit_the_scanner_stops_and_the_time_is_not_counted() {
        let mut m = Manager::new(
            ManagerConfig {
                max_links: 1,
                scan_on_ms: 1_000,
                scan_off_ms: 0,
            },
            0,
        );
        assert_eq!(m.poll_command(0), Some(Scan::Start));
        m.add_link(LinkId(1), 10_000).unwrap();
        assert_eq!(m.poll_command(10_000), Some(Scan::Stop));
        assert_eq!(m.poll_timeout(), None);
        m.remove_link(LinkId(1), 30_000);
        assert_eq!(m.poll_command(30_000), Some(Scan::Start));
        assert!((m.active_fraction(40_000) - 0.5).abs() < 1e-9);
    }
}
