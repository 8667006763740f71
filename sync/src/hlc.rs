//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014).
//!
//! A timestamp is (wall milliseconds, counter). It never goes backwards on one device, it
//! moves past every timestamp the device has seen, and it stays close to real time, so
//! messages sort sensibly even when a phone's clock is wrong. A remote timestamp more than
//! [`MAX_FORWARD_SKEW_MS`] ahead of our clock is not allowed to drag the clock forward
//! (a device with a clock set to next year must not poison everyone's clocks); the message
//! itself is still accepted and shown — skew never drops an honest message.

use std::fmt;

/// How far ahead of local time a remote timestamp may pull our clock (guess: one day covers
/// badly set phones and time zones mistaken for UTC without letting a year-off clock win).
pub const MAX_FORWARD_SKEW_MS: u64 = 24 * 60 * 60 * 1000;

/// A hybrid logical timestamp. Orders by wall time, then counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (48 bits are used).
    pub ms: u64,
    pub counter: u16,
}

impl Hlc {
    pub const MAX_MS: u64 = (1 << 48) - 1;

    /// Packs into one integer that orders the same way.
    pub fn pack(self) -> u64 {
        (self.ms.min(Self::MAX_MS) << 16) | u64::from(self.counter)
    }

    pub fn unpack(v: u64) -> Self {
        Self {
            ms: v >> 16,
            counter: (v & 0xffff) as u16,
        }
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms, self.counter)
    }
}

/// One device's clock. `now_ms` is always passed in (sans-IO).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes after `last` (e.g. the newest timestamp found in storage).
    pub fn resume(last: Hlc) -> Self {
        Self { last }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let now_ms = now_ms.min(Hlc::MAX_MS);
        self.last = if now_ms > self.last.ms {
            Hlc {
                ms: now_ms,
                counter: 0,
            }
        } else {
            bump(self.last)
        };
        self.last
    }

    /// Moves past a timestamp received from another device, unless it is more than
    /// [`MAX_FORWARD_SKEW_MS`] ahead of `now_ms`, the *local* wall clock. The limit is from
    /// local time, never from the clock's own last value: otherwise a peer could ratchet the
    /// clock forward one skew step per message.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        let limit = now_ms.min(Hlc::MAX_MS).saturating_add(MAX_FORWARD_SKEW_MS);
        if remote.ms > limit || remote <= self.last {
            return;
        }
        self.last = remote;
    }
}

fn bump(h: Hlc) -> Hlc {
    match h.counter.checked_add(1) {
        Some(counter) => Hlc { ms: h.ms, counter },
        None => Hlc {
            ms: h.ms + 1,
            counter: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_even_when_wall_clock_steps_back() {
        let mut c = Clock::new();
        let a = c.tick(1_000);
        let b = c.tick(900);
        let d = c.tick(900);
        assert!(a < b && b < d);
        assert_eq!(b.ms, 1_000);
    }

    #[test]
    fn observes_remote_but_not_far_future() {
        let mut c = Clock::new();
        c.tick(1_000);
        c.observe(
            Hlc {
                ms: 5_000,
                counter: 3,
            },
            1_000,
        );
        assert!(
            c.tick(1_000)
                > Hlc {
                    ms: 5_000,
                    counter: 3
                }
        );
        let before = c.last();
        c.observe(
            Hlc {
                ms: 1_000 + 10 * MAX_FORWARD_SKEW_MS,
                counter: 0,
            },
            1_000,
        );
        assert_eq!(c.last(), before);
    }

    #[test]
    fn remote_times_cannot_ratchet_the_clock() {
        let mut c = Clock::new();
        let now = 1_000;
        for i in 1..10 {
            c.observe(
                Hlc {
                    ms: now + i * (MAX_FORWARD_SKEW_MS - 1),
                    counter: 0,
                },
                now,
            );
        }
        assert!(c.last().ms <= now + MAX_FORWARD_SKEW_MS);
        c.observe(
            Hlc {
                ms: Hlc::MAX_MS,
                counter: 0,
            },
            now,
        );
        assert!(c.last().ms <= now + MAX_FORWARD_SKEW_MS);
    }

    #[test]
    fn counter_overflow_carries_into_ms() {
        let mut c = Clock::resume(Hlc {
            ms: 10,
            counter: u16::MAX,
        });
        assert_eq!(c.tick(5), Hlc { ms: 11, counter: 0 });
        assert_eq!(
            Hlc::unpack(Hlc { ms: 77, counter: 9 }.pack()),
            Hlc { ms: 77, counter: 9 }
        );
    }
}
