//! What one link still has to send: envelopes to push in precedence order, relayed ones to
//! announce, and pushes in flight awaiting the peer's acknowledgement.

use std::cmp::Reverse;
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
    /// (precedence, kind rank, arrival order) → id: FLASH first, then control before
    /// messages, then first come first served.
    /// Each with the tag it is stored under (the store is keyed by tag and id).
    queue: BTreeSet<(Reverse<Precedence>, u8, u64, EnvelopeId, Tag)>,
    queued: BTreeSet<EnvelopeId>,
    /// Relayed envelopes to announce with `Have`.
    announce: BTreeSet<EnvelopeId>,
    /// Pushes sent and not yet acknowledged, by push sequence.
    unacked: BTreeMap<u64, (EnvelopeId, Tag)>,
    next_push: u64,
}

impl PushQueue {
    pub(crate) fn new() -> Self {
        Self {
            next_push: 1,
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
        if self.queue.len() >= max {
            self.queue.clear();
            return Enqueued::Overflowed(std::mem::take(&mut self.queued).into_iter().collect());
        }
        self.queued.insert(id);
        self.queue
            .insert((Reverse(precedence), kind_rank(kind), order, id, tag));
        Enqueued::Queued
    }

    /// The next envelope to push, highest precedence first.
    pub(crate) fn pop(&mut self) -> Option<(EnvelopeId, Tag)> {
        let (_, _, _, id, tag) = self.queue.pop_first()?;
        self.queued.remove(&id);
        Some((id, tag))
    }

    /// Records that `id` was pushed; returns its push sequence number.
    pub(crate) fn sent(&mut self, id: EnvelopeId, tag: Tag) -> u64 {
        let seq = self.next_push;
        self.next_push += 1;
        self.unacked.insert(seq, (id, tag));
        seq
    }

    /// The peer acknowledged every push up to `up_to`: the pushes no longer in flight, in
    /// push order, as (sequence, envelope, tag).
    pub(crate) fn acknowledged(&mut self, up_to: u64) -> Vec<(u64, EnvelopeId, Tag)> {
        let acked: Vec<u64> = self.unacked.range(..=up_to).map(|(k, _)| *k).collect();
        acked
            .into_iter()
            .filter_map(|k| self.unacked.remove(&k).map(|(e, t)| (k, e, t)))
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

    /// The envelopes of the pushes in flight, in push order.
    pub(crate) fn unacked_ids(&self) -> Vec<(EnvelopeId, Tag)> {
        self.unacked.values().copied().collect()
    }

    /// Pushes in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Envelopes queued or in flight.
    pub(crate) fn backlog(&self) -> usize {
        self.queue.len() + self.unacked.len()
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
        let order: Vec<EnvelopeId> = std::iter::from_fn(|| q.pop().map(|(e, _)| e)).collect();
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
        assert_eq!(q.pop(), Some((id(1), T)));
        assert_eq!(q.pop(), None);
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
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn acknowledgements_are_cumulative() {
        let mut q = PushQueue::new();
        let s: Vec<u64> = (1..=4).map(|n| q.sent(id(n), T)).collect();
        assert_eq!(s, vec![1, 2, 3, 4]);
        assert_eq!(q.in_flight(), 4);
        assert_eq!(q.acknowledged(2), vec![(1, id(1), T), (2, id(2), T)]);
        assert_eq!(q.acknowledged(2), vec![]);
        assert_eq!(q.acknowledged(10), vec![(3, id(3), T), (4, id(4), T)]);
        assert_eq!(q.in_flight(), 0);
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
