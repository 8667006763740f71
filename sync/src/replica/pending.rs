//! The pending set: envelopes that wait for a dependency, an author or a key.
//!
//! [`Pending`] owns the set and its store records (`q/`, see [`keys`]); the replica parks an
//! envelope (already stored) when it is fine but early, and retries it when what it waits
//! for arrives: a change hash ([`Replica::wake_deps`]) or anything else of its conversation
//! (membership, keys: [`Replica::wake_conversation`]).

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingEntry {
    pub(super) conversation: ConversationId,
    pub(super) waiting: Waiting,
    /// Arrival number: the smallest is evicted first.
    order: u64,
}

/// The pending set, bounded by [`MAX_PENDING`]: past it the oldest entry is forgotten (and
/// its envelope deleted, so reconciliation fetches it again later).
#[derive(Debug, Default)]
pub(super) struct Pending {
    entries: BTreeMap<EnvelopeId, PendingEntry>,
    /// Arrival order → envelope.
    by_order: BTreeMap<u64, EnvelopeId>,
    /// Change hash → envelopes that wait for it.
    waiting_on: BTreeMap<ChangeHash, Vec<EnvelopeId>>,
    /// Envelopes woken and not retried yet.
    wake: VecDeque<EnvelopeId>,
    /// True while some caller up the stack retries the woken envelopes.
    draining: bool,
    next_order: u64,
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// If the set is full, forgets its oldest entry entirely (its `q/` record and its stored
    /// envelope: peers still hold it and will offer it again later). True if one was evicted.
    pub(super) fn evict_if_full<S: Store>(&mut self, store: &mut S) -> Result<bool, StoreError> {
        if self.entries.len() >= MAX_PENDING
            && let Some((_, oldest)) = self.by_order.pop_first()
        {
            self.unpark(store, &oldest)?;
            store.remove_envelope(&oldest)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Adds an entry (call [`Pending::evict_if_full`] first) and writes its `q/` record.
    pub(super) fn insert<S: Store>(
        &mut self,
        store: &mut S,
        conversation: ConversationId,
        env: EnvelopeId,
        waiting: Waiting,
    ) -> Result<(), StoreError> {
        if let Waiting::Dependencies(d) = &waiting {
            for h in d {
                self.waiting_on.entry(*h).or_default().push(env);
            }
        }
        let order = self.next_order;
        self.next_order += 1;
        self.entries.insert(
            env,
            PendingEntry {
                conversation,
                waiting,
                order,
            },
        );
        self.by_order.insert(order, env);
        store.put(&keys::pending(&env), &conversation.0)?;
        Ok(())
    }

    /// Removes an entry and its `q/` record; `None` if it was not pending.
    pub(super) fn unpark<S: Store>(
        &mut self,
        store: &mut S,
        env: &EnvelopeId,
    ) -> Result<Option<PendingEntry>, StoreError> {
        let Some(p) = self.entries.remove(env) else {
            return Ok(None);
        };
        self.by_order.remove(&p.order);
        if let Waiting::Dependencies(d) = &p.waiting {
            for h in d {
                if let Some(v) = self.waiting_on.get_mut(h) {
                    v.retain(|e| e != env);
                    if v.is_empty() {
                        self.waiting_on.remove(h);
                    }
                }
            }
        }
        store.delete(&keys::pending(env))?;
        Ok(Some(p))
    }

    /// The envelopes that wait for any of `hashes` (in hash order, then arrival order), no
    /// longer indexed under those hashes. They stay pending until unparked.
    pub(super) fn take_waiting_on(&mut self, hashes: &[ChangeHash]) -> Vec<EnvelopeId> {
        let mut envs = Vec::new();
        for h in hashes {
            if let Some(v) = self.waiting_on.remove(h) {
                envs.extend(v);
            }
        }
        envs
    }

    /// Envelopes of `conv` that wait for something else than a dependency (an author, a
    /// signer, a key), in envelope id order.
    pub(super) fn waiting_in(&self, conv: &ConversationId) -> Vec<EnvelopeId> {
        self.entries
            .iter()
            .filter(|(_, p)| {
                p.conversation == *conv && !matches!(p.waiting, Waiting::Dependencies(_))
            })
            .map(|(e, _)| *e)
            .collect()
    }

    pub(super) fn queue_wake(&mut self, envs: Vec<EnvelopeId>) {
        self.wake.extend(envs);
    }

    pub(super) fn next_woken(&mut self) -> Option<EnvelopeId> {
        self.wake.pop_front()
    }

    /// Claims the retry loop: false if a caller up the stack already runs it.
    pub(super) fn begin_drain(&mut self) -> bool {
        !std::mem::replace(&mut self.draining, true)
    }

    pub(super) fn end_drain(&mut self) {
        self.draining = false;
    }
}

impl<S: Store> Replica<S> {
    pub(super) fn park(
        &mut self,
        conv: ConversationId,
        env: EnvelopeId,
        waiting: Waiting,
    ) -> Result<Ingested, IngestError> {
        if self.pending.evict_if_full(&mut self.store)? {
            self.stats.pending_evicted += 1;
        }
        self.pending
            .insert(&mut self.store, conv, env, waiting.clone())?;
        Ok(Ingested::Pending(conv, waiting))
    }

    pub(super) fn unpark(&mut self, env: &EnvelopeId) -> Result<Option<PendingEntry>, StoreError> {
        self.pending.unpark(&mut self.store, env)
    }

    /// Queues pending envelopes to be tried again, and tries them unless a caller up the
    /// stack is already doing so (iterative, so a long chain cannot overflow the stack).
    pub(super) fn retry(&mut self, envs: Vec<EnvelopeId>, now_ms: u64) -> Result<(), StoreError> {
        self.pending.queue_wake(envs);
        if !self.pending.begin_drain() {
            return Ok(());
        }
        let r = self.drain(now_ms);
        self.pending.end_drain();
        r
    }

    pub(super) fn drain(&mut self, now_ms: u64) -> Result<(), StoreError> {
        while let Some(e) = self.pending.next_woken() {
            if self.unpark(&e)?.is_none() {
                continue;
            }
            let Some(bytes) = self.store.envelope(&e)? else {
                continue;
            };
            // Remove and re-ingest through the normal path.
            self.store.remove_envelope(&e)?;
            let _ = self.ingest(&bytes, now_ms);
        }
        Ok(())
    }

    pub(super) fn wake_deps(&mut self, hashes: &[ChangeHash]) -> Result<(), StoreError> {
        let envs = self.pending.take_waiting_on(hashes);
        if envs.is_empty() {
            return Ok(());
        }
        let now = self.clock.last().ms;
        self.retry(envs, now)
    }

    pub(super) fn wake_conversation(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let envs = self.pending.waiting_in(conv);
        self.retry(envs, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn env(n: u32) -> EnvelopeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        EnvelopeId(b)
    }

    fn hash(n: u8) -> ChangeHash {
        ChangeHash([n; 32])
    }

    const CONV: ConversationId = ConversationId([7; 16]);
    const TAG: Tag = Tag([8; 16]);

    fn q_records(st: &MemoryStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        st.scan_prefix(keys::PENDING, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out
    }

    fn park(p: &mut Pending, st: &mut MemoryStore, e: EnvelopeId, w: Waiting) -> bool {
        let evicted = p.evict_if_full(st).unwrap();
        p.insert(st, CONV, e, w).unwrap();
        evicted
    }

    #[test]
    fn bound_holds_and_the_oldest_is_evicted_first() {
        let mut st = MemoryStore::new();
        let mut p = Pending::default();
        // Arrival order differs from id order, so eviction must follow arrival.
        let ids: Vec<EnvelopeId> = (0..MAX_PENDING as u32 + 3)
            .map(|i| env(i.wrapping_mul(2_654_435_761)))
            .collect();
        for (i, e) in ids.iter().enumerate() {
            st.put_envelope(&TAG, e, b"x").unwrap();
            let evicted = park(&mut p, &mut st, *e, Waiting::Dependencies(vec![hash(1)]));
            assert_eq!(evicted, i >= MAX_PENDING, "at {i}");
            assert!(p.len() <= MAX_PENDING);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(q_records(&st).len(), MAX_PENDING);
        for e in &ids[..3] {
            assert!(
                p.unpark(&mut st, e).unwrap().is_none(),
                "evicted entries are gone"
            );
            assert!(
                !st.contains(e).unwrap(),
                "evicted envelopes leave the store"
            );
        }
        for e in &ids[3..6] {
            assert!(st.contains(e).unwrap());
        }
        // The next one to go is the fourth arrival.
        let next = EnvelopeId([0xee; 32]);
        st.put_envelope(&TAG, &next, b"x").unwrap();
        assert!(park(&mut p, &mut st, next, Waiting::Parents));
        assert!(!st.contains(&ids[3]).unwrap());
        assert!(st.contains(&ids[4]).unwrap());
        // Evicted entries no longer wait on their hash.
        let woken = p.take_waiting_on(&[hash(1)]);
        assert_eq!(woken.len(), MAX_PENDING - 1);
        assert_eq!(woken[0], ids[4]);
    }

    #[test]
    fn park_unpark_round_trip() {
        let mut st = MemoryStore::new();
        let mut p = Pending::default();
        let w = Waiting::Dependencies(vec![hash(1), hash(2)]);
        assert!(!park(&mut p, &mut st, env(1), w.clone()));
        assert_eq!(p.len(), 1);
        assert_eq!(
            q_records(&st),
            vec![(keys::pending(&env(1)), CONV.0.to_vec())]
        );
        let got = p.unpark(&mut st, &env(1)).unwrap().unwrap();
        assert_eq!(got.conversation, CONV);
        assert_eq!(got.waiting, w);
        assert_eq!(p.len(), 0);
        assert!(q_records(&st).is_empty());
        assert!(p.unpark(&mut st, &env(1)).unwrap().is_none());
        assert!(p.take_waiting_on(&[hash(1), hash(2)]).is_empty());
        // Parked again, it is new (no stale order entry evicts it early).
        assert!(!park(
            &mut p,
            &mut st,
            env(1),
            Waiting::Epoch(EpochId([1; 4]))
        ));
        assert_eq!(p.waiting_in(&CONV), vec![env(1)]);
    }

    #[test]
    fn wake_by_hash_and_by_conversation() {
        let mut st = MemoryStore::new();
        let mut p = Pending::default();
        park(
            &mut p,
            &mut st,
            env(3),
            Waiting::Dependencies(vec![hash(1), hash(2)]),
        );
        park(
            &mut p,
            &mut st,
            env(2),
            Waiting::Dependencies(vec![hash(2)]),
        );
        park(&mut p, &mut st, env(1), Waiting::Author(DeviceId([1; 32])));
        park(&mut p, &mut st, env(4), Waiting::Parents);
        // By hash: arrival order under one hash.
        assert_eq!(p.take_waiting_on(&[hash(2)]), vec![env(3), env(2)]);
        assert!(p.take_waiting_on(&[hash(2)]).is_empty());
        assert_eq!(p.take_waiting_on(&[hash(9), hash(1)]), vec![env(3)]);
        // Taking does not unpark.
        assert_eq!(p.len(), 4);
        // By conversation: what waits for anything but a dependency, in id order.
        assert_eq!(p.waiting_in(&CONV), vec![env(1), env(4)]);
        assert!(p.waiting_in(&ConversationId([0; 16])).is_empty());
        // The wake queue is first in, first out, and the drain is claimed once.
        p.queue_wake(vec![env(2), env(1)]);
        assert!(p.begin_drain());
        assert!(!p.begin_drain());
        assert_eq!(p.next_woken(), Some(env(2)));
        assert_eq!(p.next_woken(), Some(env(1)));
        assert_eq!(p.next_woken(), None);
        p.end_drain();
        assert!(p.begin_drain());
    }
}
