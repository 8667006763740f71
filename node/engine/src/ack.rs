//! Acknowledgements on one link: which pushes were received, and the cumulative
//! acknowledgement that is due once they are durable (delayed, like TCP's delayed ACK).
//! The acknowledgement lists the pushes it covers that were *not* stored (refused, or not
//! wanted), so the sender records receipts only for what this device holds.

use std::collections::BTreeSet;

use crate::wire::MAX_IDS_PER_FRAME;

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
    /// may be acknowledged. `refused` names those among them that were not stored.
    pub(crate) fn durable(&mut self, up_to: u64, n: u32, refused: &[u64], now: u64) {
        let due = self.due.get_or_insert((up_to, now, 0));
        due.0 = due.0.max(up_to);
        due.2 += n;
        self.refused
            .extend(refused.iter().copied().filter(|s| *s <= up_to));
    }

    /// When the acknowledgement waiting is due at the latest.
    pub(crate) fn deadline(&self, delay: u64) -> Option<u64> {
        self.due.map(|(_, since, _)| since + delay)
    }

    /// The acknowledgement to send now, if `every` pushes wait or the oldest has waited
    /// `delay`: (up to, refused pushes). It is then no longer due, unless more pushes were
    /// refused than one frame lists: then it covers up to the last one listed, and the rest
    /// stays due (call again).
    pub(crate) fn take_due(&mut self, now: u64, delay: u64, every: u32) -> Option<(u64, Vec<u64>)> {
        let (up_to, since, n) = self.due?;
        if n >= every || now >= since + delay {
            if self.refused.len() > MAX_IDS_PER_FRAME {
                let refused: Vec<u64> = (0..MAX_IDS_PER_FRAME)
                    .filter_map(|_| self.refused.pop_first())
                    .collect();
                return Some((*refused.last().expect("listed"), refused));
            }
            self.due = None;
            return Some((
                up_to,
                std::mem::take(&mut self.refused).into_iter().collect(),
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
        a.durable(3, 3, &[], 100);
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(119, 20, 64), None);
        a.durable(7, 4, &[5], 110);
        // Still due from the first durable batch, covering the later one.
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(120, 20, 64), Some((7, vec![5])));
        assert_eq!(a.deadline(20), None);
        a.durable(70, 64, &[], 200);
        assert_eq!(a.take_due(200, 20, 64), Some((70, vec![])));
    }

    #[test]
    fn refusals_beyond_one_frame_are_acknowledged_in_several() {
        let mut a = AckState::default();
        let n = MAX_IDS_PER_FRAME as u64 + 10;
        let refused: Vec<u64> = (1..=n).collect();
        a.durable(n + 5, (n + 5) as u32, &refused, 0);
        let (up1, r1) = a.take_due(100, 20, 64).unwrap();
        assert_eq!(r1.len(), MAX_IDS_PER_FRAME);
        assert_eq!(up1, MAX_IDS_PER_FRAME as u64);
        let (up2, r2) = a.take_due(100, 20, 64).unwrap();
        assert_eq!(up2, n + 5);
        assert_eq!(r2, (MAX_IDS_PER_FRAME as u64 + 1..=n).collect::<Vec<_>>());
        assert_eq!(a.take_due(100, 20, 64), None);
    }
}
