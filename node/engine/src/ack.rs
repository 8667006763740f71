//! Acknowledgements on one link: which pushes were received, and the cumulative
//! acknowledgement that is due once they are durable (delayed, like TCP's delayed ACK).

/// One link's receive side.
#[derive(Debug, Default)]
pub(crate) struct AckState {
    /// Highest push sequence received and handed to ingestion (acknowledged after the next
    /// flush).
    received_up_to: Option<u64>,
    /// Durable pushes not yet acknowledged: (up to, since when, how many).
    due: Option<(u64, u64, u32)>,
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

    /// `n` pushes up to `up_to` are durable at `now`: they may be acknowledged.
    pub(crate) fn durable(&mut self, up_to: u64, n: u32, now: u64) {
        let due = self.due.get_or_insert((up_to, now, 0));
        due.0 = due.0.max(up_to);
        due.2 += n;
    }

    /// When the acknowledgement waiting is due at the latest.
    pub(crate) fn deadline(&self, delay: u64) -> Option<u64> {
        self.due.map(|(_, since, _)| since + delay)
    }

    /// The acknowledgement to send now, if `every` pushes wait or the oldest has waited
    /// `delay`; it is then no longer due.
    pub(crate) fn take_due(&mut self, now: u64, delay: u64, every: u32) -> Option<u64> {
        let (up_to, since, n) = self.due?;
        if n >= every || now >= since + delay {
            self.due = None;
            return Some(up_to);
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
        a.durable(3, 3, 100);
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(119, 20, 64), None);
        a.durable(7, 4, 110);
        // Still due from the first durable batch, covering the later one.
        assert_eq!(a.deadline(20), Some(120));
        assert_eq!(a.take_due(120, 20, 64), Some(7));
        assert_eq!(a.deadline(20), None);
        a.durable(70, 64, 200);
        assert_eq!(a.take_due(200, 20, 64), Some(70));
    }
}
