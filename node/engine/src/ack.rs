//! Acknowledgements on one link: which pushes were received, and the cumulative
//! acknowledgement that is due once they are durable (delayed, like TCP's delayed ACK).
//! The acknowledgement lists the pushes it covers that were *not* stored (refused, or not
//! wanted) and those stored but not readable yet (*deferred*: pending, unreadable, or an
//! invitation held), so the sender records receipts only for what this device holds and
//! reads; a deferred push is confirmed later by a `Receipt` frame.

use std::collections::BTreeSet;

use vaarta_sync::envelope::Precedence;

use crate::wire::MAX_IDS_PER_FRAME;

/// A link's receive side, one [`AckState`] per lane (pushes are numbered per precedence).
#[derive(Debug, Default)]
pub(crate) struct Lanes([AckState; 4]);

impl Lanes {
    pub(crate) fn lane(&mut self, lane: Precedence) -> &mut AckState {
        &mut self.0[lane as usize]
    }

    /// When the earliest acknowledgement waiting is due.
    pub(crate) fn deadline(&self, delay: u64) -> Option<u64> {
        self.0.iter().filter_map(|a| a.deadline(delay)).min()
    }

    /// Every lane's state, FLASH first (acknowledgements of the most urgent lane go first).
    pub(crate) fn all_mut(&mut self) -> impl Iterator<Item = (Precedence, &mut AckState)> {
        let mut lanes: Vec<(Precedence, &mut AckState)> = self
            .0
            .iter_mut()
            .enumerate()
            .map(|(i, a)| (Precedence::from_u8(i as u8).expect("four lanes"), a))
            .collect();
        lanes.reverse();
        lanes.into_iter()
    }
}

/// What an acknowledgement says of one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Held and read (or carried, or a duplicate of an envelope held).
    Stored,
    /// Held, not readable yet: a receipt follows once it is.
    Deferred,
    /// Not held: refused, or not wanted.
    Refused,
}

/// One acknowledgement to send: (up to, refused pushes, deferred pushes).
pub(crate) type Due = (u64, Vec<u64>, Vec<u64>);

/// One link's receive side.
#[derive(Debug, Default)]
pub(crate) struct AckState {
    /// Highest push sequence received and handed to ingestion (acknowledged after the next
    /// flush).
    received_up_to: Option<u64>,
    /// Durable pushes not yet acknowledged: (up to, since when, how many).
    due: Option<(u64, u64, u32)>,
    /// Pushes covered by `due` (or earlier) that were not stored.
    refused: BTreeSet<u64>,
    /// Pushes covered by `due` (or earlier) stored but not readable yet.
    deferred: BTreeSet<u64>,
}

impl AckState {
    /// A push numbered `seq` arrived. False if it does not follow the last one (a peer
    /// fault: pushes are numbered in order on a link).
    pub(crate) fn receive(&mut self, seq: u64) -> bool {
        if self.received_up_to.is_some_and(|r| seq <= r) {
            return false;
        }
        self.received_up_to = Some(seq);
        true
    }

    /// `n` pushes up to `up_to` were handled and what was stored is durable at `now`: they
    /// may be acknowledged. `refused` names those among them that were not stored,
    /// `deferred` those stored but not readable yet.
    pub(crate) fn durable(
        &mut self,
        up_to: u64,
        n: u32,
        refused: &[u64],
        deferred: &[u64],
        now: u64,
    ) {
        let due = self.due.get_or_insert((up_to, now, 0));
        due.0 = due.0.max(up_to);
        due.2 += n;
        self.refused
            .extend(refused.iter().copied().filter(|s| *s <= up_to));
        self.deferred.extend(
            deferred
                .iter()
                .copied()
                .filter(|s| *s <= up_to && !self.refused.contains(s)),
        );
    }

    /// When the acknowledgement waiting is due at the latest.
    pub(crate) fn deadline(&self, delay: u64) -> Option<u64> {
        self.due.map(|(_, since, _)| since + delay)
    }

    /// The acknowledgement to send now, if `every` pushes wait or the oldest has waited
    /// `delay`: (up to, refused pushes, deferred pushes). It is then no longer due, unless
    /// either list holds more than one frame lists: then it covers up to the last sequence
    /// that fits both lists, and the rest stays due (call again).
    pub(crate) fn take_due(&mut self, now: u64, delay: u64, every: u32) -> Option<Due> {
        let (up_to, since, n) = self.due?;
        if n >= every || now >= since + delay {
            // The highest sequence both lists can name in full in one frame.
            let cut = [&self.refused, &self.deferred]
                .into_iter()
                .filter(|l| l.len() > MAX_IDS_PER_FRAME)
                .filter_map(|l| l.iter().nth(MAX_IDS_PER_FRAME - 1).copied())
                .min();
            if let Some(cut) = cut {
                let take = |l: &mut BTreeSet<u64>| {
                    let rest = l.split_off(&(cut + 1));
                    std::mem::replace(l, rest).into_iter().collect::<Vec<u64>>()
                };
                let refused = take(&mut self.refused);
                let deferred = take(&mut self.deferred);
                return Some((cut, refused, deferred));
            }
            self.due = None;
            return Some((
                up_to,
                std::mem::take(&mut self.refused).into_iter().collect(),
                std::mem::take(&mut self.deferred).into_iter().collect(),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_must_move_forward() {
        let mut a = AckState::default();
        assert!(a.receive(1));
        assert!(a.receive(5));
        assert!(!a.receive(5));
        assert!(!a.receive(2));
        assert!(a.receive(6));
    }

    #[test]
    fn acknowledgement_waits_for_the_delay_or_the_count() {
        let mut a = AckState::default();
        assert_eq!(a.take_due(0, 20, 64), None);
        a.durable(3, 3, &[], &[], 100);
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(119, 20, 64), None);
        a.durable(7, 4, &[5], &[6], 110);
        // Still due from the first durable batch, covering the later one.
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(120, 20, 64), Some((7, vec![5], vec![6])));
        assert_eq!(a.deadline(20), None);
        a.durable(70, 64, &[], &[], 200);
        assert_eq!(a.take_due(200, 20, 64), Some((70, vec![], vec![])));
    }

    #[test]
    fn refusals_beyond_one_frame_are_acknowledged_in_several() {
        let mut a = AckState::default();
        let n = MAX_IDS_PER_FRAME as u64 + 10;
        let refused: Vec<u64> = (1..=n).collect();
        a.durable(n + 5, (n + 5) as u32, &refused, &[], 0);
        let (up1, r1, d1) = a.take_due(100, 20, 64).unwrap();
        assert_eq!(r1.len(), MAX_IDS_PER_FRAME);
        assert_eq!(up1, MAX_IDS_PER_FRAME as u64);
        assert!(d1.is_empty());
        let (up2, r2, _) = a.take_due(100, 20, 64).unwrap();
        assert_eq!(up2, n + 5);
        assert_eq!(r2, (MAX_IDS_PER_FRAME as u64 + 1..=n).collect::<Vec<_>>());
        assert_eq!(a.take_due(100, 20, 64), None);
    }

    #[test]
    fn deferrals_beyond_one_frame_are_acknowledged_in_several_with_the_refusals() {
        let mut a = AckState::default();
        let max = MAX_IDS_PER_FRAME as u64;
        // Odd sequences deferred, even ones refused, one of each more than a frame lists;
        // a sequence listed in both counts as refused.
        let deferred: Vec<u64> = (0..=max + 1).map(|i| 2 * i + 1).collect();
        let mut refused: Vec<u64> = (1..=max + 1).map(|i| 2 * i).collect();
        refused.push(2 * max + 3);
        refused.sort_unstable();
        let up_to = 2 * max + 10;
        a.durable(up_to, up_to as u32, &refused, &deferred, 0);
        let mut frames = Vec::new();
        while let Some(f) = a.take_due(100, 20, 64) {
            assert!(f.1.len() <= MAX_IDS_PER_FRAME && f.2.len() <= MAX_IDS_PER_FRAME);
            assert!(f.1.iter().chain(&f.2).all(|s| *s <= f.0));
            frames.push(f);
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0].0,
            2 * max - 1,
            "the last deferred of the first frame"
        );
        assert_eq!(frames[1].0, up_to);
        let all_refused: Vec<u64> = frames.iter().flat_map(|f| f.1.clone()).collect();
        let all_deferred: Vec<u64> = frames.iter().flat_map(|f| f.2.clone()).collect();
        assert_eq!(all_refused, refused);
        assert_eq!(all_deferred, deferred[..deferred.len() - 1].to_vec());
        // Frames go out in order: the second starts past the first.
        assert!(
            frames[1]
                .1
                .iter()
                .chain(&frames[1].2)
                .all(|s| *s > frames[0].0)
        );
    }
}
