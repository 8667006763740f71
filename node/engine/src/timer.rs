//! Every deadline of the engine in one table, keyed by what it is for (quinn's `Timer` and
//! `TimerTable`, with links' timers in the same table).
//!
//! | timer | armed while | at | fires |
//! |---|---|---|---|
//! | `Maintain` | the device holds a conversation or an envelope | every [`crate::config::MAINTAIN_INTERVAL_MS`] | admin duties and expiry at the next flush |
//! | `Day` | a link is up | the next UTC midnight | a new intro (the inbox window moves) |
//! | `Dial` | a static peer is due for a dial | its backoff, after the least dial interval | [`crate::dial::Dialer::due`] |
//! | `Ack(link)` | durable pushes wait for an acknowledgement | oldest + `ack_delay_ms` | the cumulative `Ack` |
//! | `Hello(link)` | the link's peer has not sent its hello and intro | link up + `hello_timeout_ms` | the link is closed |
//! | `Read` | a read watermark is owed ([`vaarta_sync::replica::Replica::mark_read`]) | the last one sealed for its conversation + 30 s | the watermark is sealed at the next flush |
//! | `Resync(link)` | our outbound link is ready | its resync time; with our session outstanding, one interval later | a reconciliation; or the stalled one is abandoned and started over |
//!
//! An engine that holds nothing, has no link and no static peer to dial has no deadline:
//! [`crate::Engine::poll_timeout`] is `None`.
//!
//! [`crate::Engine::poll_timeout`] is the earliest armed deadline; the table keeps them
//! ordered so that costs O(log n), not a scan of the links.

use std::collections::{BTreeMap, BTreeSet};

use crate::LinkId;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Maintain,
    Day,
    Dial,
    Ack(LinkId),
    Hello(LinkId),
    Read,
    /// Last in the order ([`TimerTable::expired`] ranges up to it).
    Resync(LinkId),
}

/// Armed deadlines (virtual or wall-clock milliseconds, as the driver passes `now`).
#[derive(Debug, Default)]
pub struct TimerTable {
    at: BTreeMap<Timer, u64>,
    order: BTreeSet<(u64, Timer)>,
}

impl TimerTable {
    /// Arms `timer` at `deadline`, or disarms it with `None`.
    pub fn set(&mut self, timer: Timer, deadline: Option<u64>) {
        if let Some(old) = self.at.remove(&timer) {
            self.order.remove(&(old, timer));
        }
        if let Some(t) = deadline {
            self.at.insert(timer, t);
            self.order.insert((t, timer));
        }
    }

    pub fn get(&self, timer: Timer) -> Option<u64> {
        self.at.get(&timer).copied()
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next(&self) -> Option<u64> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Timers due at `now`, earliest first (they stay armed: the owner re-arms or disarms).
    pub fn expired(&self, now: u64) -> Vec<Timer> {
        self.order
            .range(..=(now, Timer::Resync(LinkId(u64::MAX))))
            .map(|(_, t)| *t)
            .collect()
    }

    /// Links with an acknowledgement waiting, in link order.
    pub fn ack_links(&self) -> Vec<LinkId> {
        self.at
            .range(Timer::Ack(LinkId(0))..=Timer::Ack(LinkId(u64::MAX)))
            .map(|(t, _)| match t {
                Timer::Ack(l) => *l,
                _ => unreachable!("range of Ack timers"),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Maintain, Some(50));
        t.set(Timer::Resync(LinkId(1)), Some(30));
        t.set(Timer::Ack(LinkId(2)), Some(40));
        assert_eq!(t.next(), Some(30));
        // Re-arming moves it; disarming removes it.
        t.set(Timer::Resync(LinkId(1)), Some(60));
        assert_eq!(t.next(), Some(40));
        t.set(Timer::Ack(LinkId(2)), None);
        assert_eq!(t.next(), Some(50));
        assert_eq!(t.len(), 2);
        t.set(Timer::Maintain, None);
        t.set(Timer::Resync(LinkId(1)), None);
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }

    #[test]
    fn expired_lists_due_timers_in_time_order() {
        let mut t = TimerTable::default();
        t.set(Timer::Resync(LinkId(3)), Some(10));
        t.set(Timer::Dial, Some(20));
        t.set(Timer::Ack(LinkId(1)), Some(10));
        t.set(Timer::Maintain, Some(21));
        assert_eq!(
            t.expired(20),
            vec![Timer::Ack(LinkId(1)), Timer::Resync(LinkId(3)), Timer::Dial]
        );
        assert_eq!(t.expired(9), vec![]);
        assert_eq!(t.get(Timer::Dial), Some(20));
    }

    #[test]
    fn ack_links_lists_only_acknowledgement_timers() {
        let mut t = TimerTable::default();
        t.set(Timer::Ack(LinkId(7)), Some(1));
        t.set(Timer::Resync(LinkId(2)), Some(1));
        t.set(Timer::Ack(LinkId(2)), Some(9));
        t.set(Timer::Maintain, Some(0));
        assert_eq!(t.ack_links(), vec![LinkId(2), LinkId(7)]);
    }
}
