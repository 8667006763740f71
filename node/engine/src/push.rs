//! What one link still has to send: envelopes to push in precedence order, relayed ones to
//! announce, and pushes in flight awaiting the peer's acknowledgement.
//!
//! Pushes are numbered per lane (the envelope's precedence), and each lane has its own
//! window: a FLASH push is not held back by routine pushes in flight, and a link that
//! schedules by priority may deliver it before them (`wire::frame_priority`).

use std::collections::{BTreeMap, BTreeSet};

use vaarta_sync::envelope::{Kind, Precedence};
use vaarta_sync::ids::{EnvelopeId, Tag};

/// Membership operations and invitations before messages of the same precedence (a new
/// member needs the key before the messages).
pub(crate) fn kind_rank(k: Kind) -> u8 {
    match k {
        Kind::Control | Kind::Invite => 0,
        Kind::Change => 1,
    }
}

/// What [`PushQueue::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// Already waiting on this link.
    Already,
    /// The queue was full: it was dropped whole (these were in it; the one offered was
    /// not queued either), and the caller must schedule a reconciliation, which finds the
    /// same envelopes again (nothing is lost).
    Overflowed(Vec<EnvelopeId>),
}

/// One link's outgoing envelopes. Bounded: at most `max` queued and `max` announced.
#[derive(Debug, Default)]
pub(crate) struct PushQueue {
    /// Per lane (indexed by precedence), (kind rank, arrival order) → id: control before
    /// messages, then first come first served; lanes are served FLASH first.
    /// Each with the tag it is stored under (the store is keyed by tag and id).
    queue: [BTreeSet<(u8, u64, EnvelopeId, Tag)>; 4],
    queued: BTreeSet<EnvelopeId>,
    /// Relayed envelopes to announce with `Have`.
    announce: BTreeSet<EnvelopeId>,
    /// Pushes sent and not yet acknowledged, by (lane, push sequence).
    unacked: BTreeMap<(Precedence, u64), (EnvelopeId, Tag)>,
    /// Per lane: pushes in flight, and the sequence of the next push.
    in_flight: [usize; 4],
    next_push: [u64; 4],
}

impl PushQueue {
    pub(crate) fn new() -> Self {
        Self {
            next_push: [1; 4],
            ..Self::default()
        }
    }

    /// Queues `id` for pushing; `order` breaks ties within a precedence (increasing).
    pub(crate) fn enqueue(
        &mut self,
        id: EnvelopeId,
        tag: Tag,
        precedence: Precedence,
        kind: Kind,
        order: u64,
        max: usize,
    ) -> Enqueued {
        if self.queued.contains(&id) {
            return Enqueued::Already;
        }
        if self.queued.len() >= max {
            self.queue.iter_mut().for_each(BTreeSet::clear);
            return Enqueued::Overflowed(std::mem::take(&mut self.queued).into_iter().collect());
        }
        self.queued.insert(id);
        self.queue[precedence as usize].insert((kind_rank(kind), order, id, tag));
        Enqueued::Queued
    }

    /// The next envelope to push, highest precedence first, from a lane whose window
    /// (`window` pushes in flight) has room.
    pub(crate) fn pop(&mut self, window: usize) -> Option<(EnvelopeId, Tag, Precedence)> {
        let lane = Precedence::ALL.into_iter().find(|p| {
            self.in_flight[*p as usize] < window && !self.queue[*p as usize].is_empty()
        })?;
        let (_, _, id, tag) = self.queue[lane as usize].pop_first()?;
        self.queued.remove(&id);
        Some((id, tag, lane))
    }

    /// Records that `id` was pushed on `lane`; returns its push sequence number there.
    pub(crate) fn sent(&mut self, id: EnvelopeId, tag: Tag, lane: Precedence) -> u64 {
        let l = lane as usize;
        let seq = self.next_push[l];
        self.next_push[l] += 1;
        self.in_flight[l] += 1;
        self.unacked.insert((lane, seq), (id, tag));
        seq
    }

    /// The peer acknowledged every push of `lane` up to `up_to`: the pushes no longer in
    /// flight, in push order, as (sequence, envelope, tag).
    pub(crate) fn acknowledged(
        &mut self,
        lane: Precedence,
        up_to: u64,
    ) -> Vec<(u64, EnvelopeId, Tag)> {
        let acked: Vec<(Precedence, u64)> = self
            .unacked
            .range((lane, 0)..=(lane, up_to))
            .map(|(k, _)| *k)
            .collect();
        self.in_flight[lane as usize] -= acked.len();
        acked
            .into_iter()
            .filter_map(|k| self.unacked.remove(&k).map(|(e, t)| (k.1, e, t)))
            .collect()
    }

    /// Lists a relayed envelope to announce; false if the announce list is full.
    pub(crate) fn announce(&mut self, id: EnvelopeId, max: usize) -> bool {
        if self.announce.len() >= max {
            return false;
        }
        self.announce.insert(id);
        true
    }

    /// Up to `n` envelopes to announce in one `Have`.
    pub(crate) fn take_announce(&mut self, n: usize) -> Option<Vec<EnvelopeId>> {
        if self.announce.is_empty() {
            return None;
        }
        Some((0..n).map_while(|_| self.announce.pop_first()).collect())
    }

    /// The envelopes of the pushes in flight, by lane and push order.
    pub(crate) fn unacked_ids(&self) -> Vec<(EnvelopeId, Tag)> {
        self.unacked.values().copied().collect()
    }

    /// Pushes in flight, on every lane.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Envelopes queued or in flight.
    pub(crate) fn backlog(&self) -> usize {
        self.queued.len() + self.unacked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tag = Tag([1; 16]);

    fn id(n: u8) -> EnvelopeId {
        EnvelopeId([n; 32])
    }

    #[test]
    fn flash_first_then_control_then_arrival_order() {
        let mut q = PushQueue::new();
        let max = 100;
        q.enqueue(id(1), T, Precedence::Routine, Kind::Change, 1, max);
        q.enqueue(id(2), T, Precedence::Routine, Kind::Control, 2, max);
        q.enqueue(id(3), T, Precedence::Flash, Kind::Change, 3, max);
        q.enqueue(id(4), T, Precedence::Routine, Kind::Change, 4, max);
        q.enqueue(id(5), T, Precedence::Immediate, Kind::Change, 5, max);
        let order: Vec<EnvelopeId> = std::iter::from_fn(|| q.pop(10).map(|(e, ..)| e)).collect();
        assert_eq!(order, vec![id(3), id(5), id(2), id(1), id(4)]);
    }

    #[test]
    fn an_envelope_is_queued_once() {
        let mut q = PushQueue::new();
        assert_eq!(
            q.enqueue(id(1), T, Precedence::Routine, Kind::Change, 1, 10),
            Enqueued::Queued
        );
        assert_eq!(
            q.enqueue(id(1), T, Precedence::Flash, Kind::Change, 2, 10),
            Enqueued::Already
        );
        assert_eq!(q.backlog(), 1);
        assert_eq!(q.pop(10), Some((id(1), T, Precedence::Routine)));
        assert_eq!(q.pop(10), None);
        // Popped: it may be queued again (a `Want` after a lost push).
        assert_eq!(
            q.enqueue(id(1), T, Precedence::Routine, Kind::Change, 3, 10),
            Enqueued::Queued
        );
    }

    #[test]
    fn the_queue_is_bounded_and_overflow_drops_it_whole() {
        let mut q = PushQueue::new();
        for n in 0..3 {
            assert_eq!(
                q.enqueue(id(n), T, Precedence::Routine, Kind::Change, n.into(), 3),
                Enqueued::Queued
            );
        }
        assert_eq!(
            q.enqueue(id(9), T, Precedence::Flash, Kind::Change, 9, 3),
            Enqueued::Overflowed(vec![id(0), id(1), id(2)])
        );
        assert_eq!(q.backlog(), 0);
        assert_eq!(q.pop(10), None);
    }

    #[test]
    fn acknowledgements_are_cumulative_per_lane() {
        let mut q = PushQueue::new();
        let r = Precedence::Routine;
        let s: Vec<u64> = (1..=4).map(|n| q.sent(id(n), T, r)).collect();
        assert_eq!(s, vec![1, 2, 3, 4]);
        assert_eq!(q.sent(id(9), T, Precedence::Flash), 1, "lanes number apart");
        assert_eq!(q.in_flight(), 5);
        assert_eq!(q.acknowledged(r, 2), vec![(1, id(1), T), (2, id(2), T)]);
        assert_eq!(q.acknowledged(r, 2), vec![]);
        assert_eq!(q.acknowledged(r, 10), vec![(3, id(3), T), (4, id(4), T)]);
        assert_eq!(q.in_flight(), 1, "the FLASH lane's push is still in flight");
        assert_eq!(q.acknowledged(Precedence::Flash, 1), vec![(1, id(9), T)]);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn a_full_lane_does_not_block_a_more_urgent_one_nor_a_less_urgent_one() {
        let mut q = PushQueue::new();
        for n in 0..3 {
            q.enqueue(id(n), T, Precedence::Flash, Kind::Change, n.into(), 10);
        }
        q.enqueue(id(5), T, Precedence::Routine, Kind::Change, 5, 10);
        let window = 2;
        let mut lanes = Vec::new();
        while let Some((e, t, lane)) = q.pop(window) {
            q.sent(e, t, lane);
            lanes.push(lane);
        }
        // Two FLASH fill their window; the routine one goes; the third FLASH waits.
        assert_eq!(
            lanes,
            vec![Precedence::Flash, Precedence::Flash, Precedence::Routine]
        );
        assert_eq!(q.backlog(), 4);
        q.acknowledged(Precedence::Flash, 1);
        assert_eq!(q.pop(window), Some((id(2), T, Precedence::Flash)));
    }

    #[test]
    fn announcements_are_bounded_and_batched() {
        let mut q = PushQueue::new();
        assert!(q.announce(id(1), 2));
        assert!(q.announce(id(2), 2));
        assert!(!q.announce(id(3), 2));
        assert_eq!(q.take_announce(1), Some(vec![id(1)]));
        assert_eq!(q.take_announce(8), Some(vec![id(2)]));
        assert_eq!(q.take_announce(8), None);
    }
}
