//! Receipts owed: envelopes applied here that their author has not been told about by an
//! acknowledgement. The author learns "stored" from the acknowledgement of its own push
//! when this device applies the push at once (or within the same batch); in every other
//! case this device owes it a receipt once it applies the envelope, whatever path brought
//! it: one acknowledged as *deferred* (pending, held unreadable, an invitation held, carried
//! before the invitation was accepted) and applied later — woken, read when its key came,
//! read again after it was evicted and fetched from another device or a relay, taken on
//! accepting an invitation — and one that another device pushed (a relay, another member,
//! a file). The engine sends them in `Receipt` frames to the author's own proven device the
//! next time it is linked.
//!
//! The set is durable (`n/`, see [`keys`]) and bounded twice: at most
//! [`MAX_OWED_RECEIPTS_PER_AUTHOR`] per author (past it the author's own oldest goes) and
//! [`MAX_OWED_RECEIPTS`] in all (past it the oldest of the author owing the most goes, ties
//! to the lower device id). So one author, however much it sends, holds at most its own
//! cap, and an author owed no more than `MAX_OWED_RECEIPTS / authors` is never evicted by
//! the others. Only envelopes that verified and were applied (signed by a device the
//! conversation admits) create entries: a stranger cannot make any. A dropped entry, like a
//! lost `Receipt` frame, costs the author one receipt (its message shows as sent, not
//! delivered), never a message.

use super::*;
use crate::limits::{MAX_OWED_RECEIPTS, MAX_OWED_RECEIPTS_PER_AUTHOR};

/// One author's owed receipts: envelope → order, and order → envelope.
type ByAuthor = (BTreeMap<EnvelopeId, u64>, BTreeMap<u64, EnvelopeId>);

/// The owed receipts, indexed by author (envelope → order, order → envelope) and by the
/// order they were owed in.
#[derive(Debug, Default)]
pub(super) struct Owed {
    next: u64,
    by_author: BTreeMap<DeviceId, ByAuthor>,
    by_order: BTreeMap<u64, (DeviceId, EnvelopeId)>,
}

impl Owed {
    fn add(&mut self, author: DeviceId, env: EnvelopeId, order: u64) {
        self.next = self.next.max(order + 1);
        let (ids, orders) = self.by_author.entry(author).or_default();
        ids.insert(env, order);
        orders.insert(order, env);
        self.by_order.insert(order, (author, env));
    }

    fn remove(&mut self, author: &DeviceId, env: &EnvelopeId) -> bool {
        let Some((ids, orders)) = self.by_author.get_mut(author) else {
            return false;
        };
        let Some(order) = ids.remove(env) else {
            return false;
        };
        orders.remove(&order);
        if ids.is_empty() {
            self.by_author.remove(author);
        }
        self.by_order.remove(&order);
        true
    }

    fn contains(&self, author: &DeviceId, env: &EnvelopeId) -> bool {
        self.by_author
            .get(author)
            .is_some_and(|(ids, _)| ids.contains_key(env))
    }

    fn owed_to(&self, author: &DeviceId) -> usize {
        self.by_author.get(author).map_or(0, |(ids, _)| ids.len())
    }

    /// The entry to drop before one more for `author` fits: its own oldest if it holds its
    /// cap, else (the set full) the oldest of the author owing the most.
    fn victim(&self, author: &DeviceId) -> Option<(DeviceId, EnvelopeId)> {
        let oldest = |a: &DeviceId| {
            self.by_author
                .get(a)
                .and_then(|(_, orders)| orders.values().next().map(|e| (*a, *e)))
        };
        if self.owed_to(author) >= MAX_OWED_RECEIPTS_PER_AUTHOR {
            return oldest(author);
        }
        if self.by_order.len() >= MAX_OWED_RECEIPTS {
            // The first author with the largest count (map order: the lower device id).
            let biggest = self
                .by_author
                .iter()
                .map(|(a, (ids, _))| (ids.len(), std::cmp::Reverse(*a)))
                .max()
                .map(|(_, std::cmp::Reverse(a))| a)?;
            return oldest(&biggest);
        }
        None
    }
}

impl<S: Store> Replica<S> {
    /// Called where an envelope signed by `signer` is applied: its author is owed a receipt
    /// unless it pushed this envelope itself in the ingest call under way (then the
    /// acknowledgement of that push, judged after the batch, says "stored").
    pub(super) fn owe_for_applied(
        &mut self,
        env: &EnvelopeId,
        signer: DeviceId,
    ) -> Result<(), StoreError> {
        if self.pushed_by.contains(&(*env, signer)) {
            return Ok(());
        }
        self.owe_receipt(signer, *env)
    }

    /// Records that `author` is owed a receipt for `env` (never to ourselves), within the
    /// bounds (module docs).
    pub(super) fn owe_receipt(
        &mut self,
        author: DeviceId,
        env: EnvelopeId,
    ) -> Result<(), StoreError> {
        if author == self.me.device_id() || self.owed.contains(&author, &env) {
            return Ok(());
        }
        while let Some((a, e)) = self.owed.victim(&author) {
            self.owed.remove(&a, &e);
            self.store.delete(&keys::owed_receipt(&a, &e))?;
        }
        let order = self.owed.next;
        self.store
            .put(&keys::owed_receipt(&author, &env), &order.to_be_bytes())?;
        self.owed.add(author, env, order);
        Ok(())
    }

    /// Up to `max` envelopes whose receipt is owed to `author`, oldest first.
    pub fn owed_receipts(&self, author: &DeviceId, max: usize) -> Vec<EnvelopeId> {
        self.owed
            .by_author
            .get(author)
            .map(|(_, orders)| orders.values().take(max).copied().collect())
            .unwrap_or_default()
    }

    /// Receipts owed, to every author together.
    pub fn owed_receipt_count(&self) -> usize {
        self.owed.by_order.len()
    }

    /// The receipts for `ids` were sent to `author`: no longer owed.
    pub fn receipts_sent(
        &mut self,
        author: &DeviceId,
        ids: &[EnvelopeId],
    ) -> Result<(), StoreError> {
        for e in ids {
            if self.owed.remove(author, e) {
                self.store.delete(&keys::owed_receipt(author, e))?;
            }
        }
        Ok(())
    }

    /// At open: the owed receipts (a store written before the per-author bound may hold
    /// more for one author: the next entry owed to it trims it to the bound).
    pub(super) fn load_owed(&mut self) -> Result<(), StoreError> {
        let mut owed = Owed::default();
        self.store.scan_prefix(keys::OWED_RECEIPT, &mut |k, v| {
            if let (Some(a), Some(e), Ok(o)) = (
                k.get(2..34).and_then(DeviceId::from_slice),
                k.get(34..66).and_then(EnvelopeId::from_slice),
                <[u8; 8]>::try_from(v),
            ) {
                owed.add(a, e, u64::from_be_bytes(o));
            }
            true
        })?;
        self.owed = owed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::FindEnvelope;

    fn id(n: u32) -> EnvelopeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        EnvelopeId(b)
    }

    fn dev(n: u8) -> DeviceId {
        DeviceId([n; 32])
    }

    /// Issue 9, review of protocol 5, item 3: the owed set is bounded per author and in all,
    /// one author's flood evicts only its own entries, the set full evicts from the author
    /// owed the most, and all of it survives a restart. With the old single bound (4,096,
    /// oldest first) the flood below left the other authors nothing.
    #[test]
    fn owed_receipts_are_bounded_per_author_and_in_all_and_survive_a_restart() {
        let me = Identity::from_seed([1; 32]);
        let mut r = Replica::open(me.clone(), MemoryStore::new(), [1; 32]).unwrap();
        r.owe_receipt(me.device_id(), id(0)).unwrap();
        assert_eq!(r.owed_receipt_count(), 0, "never to ourselves");
        // Three quiet authors first, then one author's flood.
        for (k, a) in [2u8, 3, 4].into_iter().enumerate() {
            for i in 0..10 {
                r.owe_receipt(dev(a), id(1_000_000 * (k as u32 + 1) + i))
                    .unwrap();
            }
        }
        let flood = dev(9);
        let n = 10 * MAX_OWED_RECEIPTS_PER_AUTHOR as u32;
        for i in 0..n {
            r.owe_receipt(flood, id(i)).unwrap();
            assert!(r.owed.owed_to(&flood) <= MAX_OWED_RECEIPTS_PER_AUTHOR);
        }
        for a in [2u8, 3, 4] {
            assert_eq!(
                r.owed_receipts(&dev(a), 100).len(),
                10,
                "untouched by the flood"
            );
        }
        // The flood kept its newest, oldest first.
        let kept = r.owed_receipts(&flood, MAX_OWED_RECEIPTS_PER_AUTHOR + 1);
        assert_eq!(kept.len(), MAX_OWED_RECEIPTS_PER_AUTHOR);
        assert_eq!(kept[0], id(n - MAX_OWED_RECEIPTS_PER_AUTHOR as u32));
        // Owing one twice changes nothing.
        r.owe_receipt(flood, id(n - 1)).unwrap();
        assert_eq!(r.owed_receipts(&flood, usize::MAX).len(), kept.len());
        // Many authors fill the set: past it, the author owed the most loses its oldest.
        let mut k = 0u32;
        let mut a = 20u8;
        while r.owed_receipt_count() < MAX_OWED_RECEIPTS {
            r.owe_receipt(dev(a), id(5_000_000 + k)).unwrap();
            k += 1;
            if k.is_multiple_of(100) {
                a += 1;
            }
        }
        let before = r.owed_receipts(&flood, 1)[0];
        r.owe_receipt(dev(a), id(9_000_000)).unwrap();
        assert_eq!(r.owed_receipt_count(), MAX_OWED_RECEIPTS, "bounded in all");
        assert_ne!(
            r.owed_receipts(&flood, 1)[0],
            before,
            "the biggest lost its oldest"
        );
        for q in [2u8, 3, 4] {
            assert_eq!(
                r.owed_receipts(&dev(q), 100).len(),
                10,
                "small authors kept"
            );
        }
        r.receipts_sent(&dev(2), &[id(1_000_000), id(1_000_001)])
            .unwrap();
        let flood_kept = r.owed_receipts(&flood, usize::MAX);
        let mut store = r.into_store();
        store.flush().unwrap();
        let r = Replica::open(me, store, [1; 32]).unwrap();
        assert_eq!(r.owed_receipt_count(), MAX_OWED_RECEIPTS - 2);
        assert_eq!(r.owed_receipts(&dev(2), 1), vec![id(1_000_002)]);
        assert_eq!(r.owed_receipts(&flood, usize::MAX), flood_kept);
    }

    const T0: u64 = 1_790_000_000_000;

    fn draft(s: &str) -> Draft {
        Draft {
            body: s.into(),
            ..Draft::default()
        }
    }

    /// (a, b, c, first, second): `a` sent two messages, the second depends on the first;
    /// `b` owes nothing yet (the setup's receipts are cleared).
    fn two_messages() -> (
        Replica<MemoryStore>,
        Replica<MemoryStore>,
        ConversationId,
        Vec<u8>,
        Vec<u8>,
    ) {
        let (mut a, mut b, c) = super::super::testing::joined_pair(MemoryStore::new(), T0);
        let setup_owed = b.owed_receipts(&a.device_id(), 10);
        b.receipts_sent(&a.device_id(), &setup_owed).unwrap();
        let (_, first) = a.send_message(&c, draft("one"), T0 + 1).unwrap();
        let (_, second) = a.send_message(&c, draft("two"), T0 + 2).unwrap();
        let first = a.store().find_envelope(&first).unwrap().unwrap();
        let second = a.store().find_envelope(&second).unwrap().unwrap();
        (a, b, c, first, second)
    }

    fn bodies_of(r: &mut Replica<MemoryStore>, c: &ConversationId) -> Vec<String> {
        r.messages(c, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.view.body)
            .collect()
    }

    fn id_of(bytes: &[u8]) -> EnvelopeId {
        Envelope::decode(bytes).unwrap().id()
    }

    fn tag_of_env(bytes: &[u8]) -> Tag {
        Envelope::decode(bytes).unwrap().header().tag
    }

    #[test]
    fn an_envelope_applied_after_waiting_owes_its_author_a_receipt() {
        let (a, mut b, c, first, second) = two_messages();
        let author = Some(a.device_id());
        assert!(matches!(
            b.ingest_from(&second, author, T0 + 3).unwrap(),
            Ingested::Pending(_, Waiting::Dependencies(_))
        ));
        assert_eq!(b.owed_receipt_count(), 0, "nothing owed while it waits");
        assert_eq!(
            b.ingest_from(&first, author, T0 + 4).unwrap(),
            Ingested::Applied(c)
        );
        // The first was applied on arrival from its author (its push is acknowledged as
        // stored); the second waited, and is owed to its author now.
        assert_eq!(b.owed_receipts(&a.device_id(), 10), vec![id_of(&second)]);
    }

    /// Item 4: a push woken within the batch that carried it, from its author, is
    /// acknowledged as stored: no receipt is owed for it as well. Here a new member's first
    /// message comes before the operation that adds it (it waits for its signer), both in
    /// one batch. Before, every envelope read again after waiting was owed, so its author got
    /// the receipt twice (the acknowledgement, then a `Receipt`).
    #[test]
    fn one_woken_in_the_batch_its_author_pushed_owes_nothing() {
        for relayed in [false, true] {
            let (mut a, mut b, c) = super::super::testing::joined_pair(MemoryStore::new(), T0);
            let setup_owed = b.owed_receipts(&a.device_id(), 10);
            b.receipts_sent(&a.device_id(), &setup_owed).unwrap();
            let mut m =
                Replica::open(Identity::from_seed([3; 32]), MemoryStore::new(), [3; 32]).unwrap();
            let added = a.add_member(&c, m.device_id(), false, T0 + 1).unwrap();
            let op = added
                .iter()
                .map(|e| a.store().find_envelope(e).unwrap().unwrap())
                .find(|b| Envelope::decode(b).unwrap().header().kind == Kind::Control)
                .unwrap();
            let mut everything = Vec::new();
            for (tag, _) in a.store().tags() {
                a.store()
                    .for_each_id(&tag, &[0; 32], &mut |id| {
                        everything.push(*id);
                        true
                    })
                    .unwrap();
            }
            for e in everything {
                let bytes = a.store().find_envelope(&e).unwrap().unwrap();
                let _ = m.ingest(&bytes, T0 + 2);
            }
            let (_, mine) = m.send_message(&c, draft("hello"), T0 + 3).unwrap();
            let mine = m.store().find_envelope(&mine).unwrap().unwrap();
            let pusher = if relayed {
                DeviceId([77; 32])
            } else {
                m.device_id()
            };
            let got = b.ingest_batch_from(&[&mine, &op], &[Some(pusher), Some(pusher)], T0 + 4);
            // The message is reported as it was found (waiting for its signer); the engine
            // judges the acknowledgement after the batch, when it is no longer waiting.
            assert_eq!(got[1].result, Ok(Ingested::Applied(c)), "{got:?}");
            assert!(!b.is_waiting(&id_of(&mine)), "woken in the batch");
            assert_eq!(bodies_of(&mut b, &c), vec!["hello".to_string()]);
            let owed = b.owed_receipts(&m.device_id(), 9);
            if relayed {
                assert_eq!(owed, vec![id_of(&mine)], "its author heard nothing");
            } else {
                assert!(owed.is_empty(), "acknowledged as stored: {owed:?}");
            }
            // The operation came from another device than its author: owed to the author.
            assert_eq!(b.owed_receipts(&a.device_id(), 9), vec![id_of(&op)]);
        }
        // One at a time: the second waits in one ingest call and is woken in another (its
        // acknowledgement said deferred): owed.
        let (a, mut b, _, first, second) = two_messages();
        let author = Some(a.device_id());
        b.ingest_from(&second, author, T0 + 3).unwrap();
        b.ingest_from(&first, author, T0 + 4).unwrap();
        assert_eq!(b.owed_receipts(&a.device_id(), 9), vec![id_of(&second)]);
    }

    /// Item 2: an envelope acknowledged as deferred, evicted, and applied later from another
    /// device (a relay, a third member) owes its author a receipt. Before, only envelopes
    /// read again where they were stored were owed, so the author showed it "deferred" for
    /// ever.
    #[test]
    fn a_deferred_envelope_evicted_and_applied_by_another_path_owes_its_receipt() {
        let (a, mut b, _, first, second) = two_messages();
        let author = Some(a.device_id());
        b.ingest_from(&second, author, T0 + 3).unwrap();
        assert!(b.is_waiting(&id_of(&second)));
        // Evicted (as the full pending set evicts its oldest).
        b.pending
            .drop_envelope(&mut b.store, &tag_of_env(&second), &id_of(&second))
            .unwrap();
        assert!(!b.is_waiting(&id_of(&second)));
        // Both come again from a third device, in two batches.
        let other = Some(dev(55));
        b.ingest_batch_from(&[&first], &[other], T0 + 4);
        b.ingest_batch_from(&[&second], &[other], T0 + 5);
        let mut owed = b.owed_receipts(&a.device_id(), 9);
        owed.sort();
        let mut want = vec![id_of(&first), id_of(&second)];
        want.sort();
        assert_eq!(owed, want);
        // Had the author pushed it again itself, the acknowledgement would say stored.
        let (a, mut b, _, first, second) = two_messages();
        b.ingest_from(&second, author, T0 + 3).unwrap();
        b.pending
            .drop_envelope(&mut b.store, &tag_of_env(&second), &id_of(&second))
            .unwrap();
        b.ingest_batch_from(&[&first, &second], &[author, author], T0 + 4);
        assert!(b.owed_receipts(&a.device_id(), 9).is_empty());
    }
}
