//! Receipts owed: envelopes that waited here (pending, or held unreadable) and were applied
//! later. Their author was told "deferred" when it pushed them (or learnt nothing, if they
//! came another way); once applied, this device owes the author a receipt, which the engine
//! sends the next time the author's own device is linked (`Receipt` frame).
//!
//! The list is durable (`n/`, see [`keys`]) and bounded by [`MAX_OWED_RECEIPTS`]: past it
//! the oldest entry is dropped. A dropped entry, like a lost `Receipt` frame, costs the
//! author one receipt (its message shows as sent, not delivered), never a message.

use super::*;
use crate::limits::MAX_OWED_RECEIPTS;

/// The owed receipts, indexed by author and by the order they were owed in.
#[derive(Debug, Default)]
pub(super) struct Owed {
    next: u64,
    by_author: BTreeMap<DeviceId, BTreeMap<EnvelopeId, u64>>,
    by_order: BTreeMap<u64, (DeviceId, EnvelopeId)>,
}

impl Owed {
    fn add(&mut self, author: DeviceId, env: EnvelopeId, order: u64) {
        self.next = self.next.max(order + 1);
        self.by_author.entry(author).or_default().insert(env, order);
        self.by_order.insert(order, (author, env));
    }

    fn remove(&mut self, author: &DeviceId, env: &EnvelopeId) -> bool {
        let Some(m) = self.by_author.get_mut(author) else {
            return false;
        };
        let Some(order) = m.remove(env) else {
            return false;
        };
        if m.is_empty() {
            self.by_author.remove(author);
        }
        self.by_order.remove(&order);
        true
    }

    fn contains(&self, author: &DeviceId, env: &EnvelopeId) -> bool {
        self.by_author
            .get(author)
            .is_some_and(|m| m.contains_key(env))
    }
}

impl<S: Store> Replica<S> {
    /// Called where an envelope is applied: if it is one being read again after waiting,
    /// its author (`signer`) is owed a receipt.
    pub(super) fn applied_after_wait(
        &mut self,
        env: &EnvelopeId,
        signer: DeviceId,
    ) -> Result<(), StoreError> {
        if self.rereading.contains(env) {
            self.owe_receipt(signer, *env)?;
        }
        Ok(())
    }

    /// Records that `author` is owed a receipt for `env` (never to ourselves), dropping the
    /// oldest entry past [`MAX_OWED_RECEIPTS`].
    pub(super) fn owe_receipt(
        &mut self,
        author: DeviceId,
        env: EnvelopeId,
    ) -> Result<(), StoreError> {
        if author == self.me.device_id() || self.owed.contains(&author, &env) {
            return Ok(());
        }
        while self.owed.by_order.len() >= MAX_OWED_RECEIPTS {
            let Some((_, (a, e))) = self.owed.by_order.first_key_value().map(|(o, v)| (*o, *v))
            else {
                break;
            };
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
        let Some(m) = self.owed.by_author.get(author) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, EnvelopeId)> = m.iter().map(|(e, o)| (*o, *e)).collect();
        v.sort_unstable();
        v.into_iter().take(max).map(|(_, e)| e).collect()
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

    /// At open: the owed receipts.
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

    fn id(n: u32) -> EnvelopeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        EnvelopeId(b)
    }

    #[test]
    fn owed_receipts_are_bounded_oldest_first_and_survive_a_restart() {
        let me = Identity::from_seed([1; 32]);
        let mut r = Replica::open(me.clone(), MemoryStore::new(), [1; 32]).unwrap();
        let (a, b) = (DeviceId([7; 32]), DeviceId([8; 32]));
        r.owe_receipt(me.device_id(), id(0)).unwrap();
        assert_eq!(r.owed_receipt_count(), 0, "never to ourselves");
        let n = MAX_OWED_RECEIPTS as u32 + 10;
        for i in 0..n {
            let author = if i % 2 == 0 { a } else { b };
            r.owe_receipt(author, id(i)).unwrap();
            assert!(r.owed_receipt_count() <= MAX_OWED_RECEIPTS);
        }
        // Owing one twice changes nothing.
        r.owe_receipt(b, id(n - 1)).unwrap();
        assert_eq!(r.owed_receipt_count(), MAX_OWED_RECEIPTS);
        // The ten oldest were dropped: a's first owed is now id(10).
        assert_eq!(r.owed_receipts(&a, 2), vec![id(10), id(12)]);
        assert_eq!(r.owed_receipts(&b, 1), vec![id(11)]);
        r.receipts_sent(&a, &[id(10), id(12)]).unwrap();
        assert_eq!(r.owed_receipts(&a, 1), vec![id(14)]);
        let mut store = r.into_store();
        store.flush().unwrap();
        let r = Replica::open(me, store, [1; 32]).unwrap();
        assert_eq!(r.owed_receipt_count(), MAX_OWED_RECEIPTS - 2);
        assert_eq!(r.owed_receipts(&a, 1), vec![id(14)]);
        assert_eq!(r.owed_receipts(&b, 1), vec![id(11)]);
    }

    const T0: u64 = 1_790_000_000_000;

    #[test]
    fn an_envelope_applied_after_waiting_owes_its_author_a_receipt() {
        let (mut a, mut b, c) = super::super::testing::joined_pair(MemoryStore::new(), T0);
        let draft = |s: &str| Draft {
            body: s.into(),
            ..Draft::default()
        };
        // (Setup envelopes that waited for their parents are owed too: start afresh.)
        let setup_owed = b.owed_receipts(&a.device_id(), 10);
        b.receipts_sent(&a.device_id(), &setup_owed).unwrap();
        let (_, first) = a.send_message(&c, draft("one"), T0 + 1).unwrap();
        let (_, second) = a.send_message(&c, draft("two"), T0 + 2).unwrap();
        let bytes = |id| a.store().envelope(&id).unwrap().unwrap();
        assert!(matches!(
            b.ingest(&bytes(second), T0 + 3).unwrap(),
            Ingested::Pending(_, Waiting::Dependencies(_))
        ));
        assert_eq!(b.owed_receipt_count(), 0, "nothing owed while it waits");
        assert_eq!(
            b.ingest(&bytes(first), T0 + 4).unwrap(),
            Ingested::Applied(c)
        );
        // The first was applied on arrival (its push is acknowledged as stored); the second
        // waited, and is owed to its author now.
        assert_eq!(b.owed_receipts(&a.device_id(), 10), vec![second]);
    }
}
