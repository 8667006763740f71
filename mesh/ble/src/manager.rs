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

#[cfg(test)]
mod tests {
    use super::*;

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
