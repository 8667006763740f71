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
    /// The tag the envelope is stored under (its conversation's).
    tag: Tag,
    pub(super) waiting: Waiting,
    /// Arrival number: the smallest is evicted first.
    order: u64,
    /// Bytes, for entries parked unverified ([`Waiting::Epoch`]: not decrypted); else 0.
    unverified_bytes: u64,
}

/// The entries parked unverified, per conversation (arrival order → envelope) and in bytes.
#[derive(Debug, Default)]
struct Unverified {
    per_conv: BTreeMap<ConversationId, (BTreeMap<u64, EnvelopeId>, u64)>,
    /// Arrival order → envelope, every conversation together.
    all: BTreeMap<u64, EnvelopeId>,
    bytes: u64,
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
    unverified: Unverified,
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// If the set is full, forgets its oldest entry entirely (its stored envelope, then its
    /// `q/` record: peers still hold it and will offer it again later). True if one was
    /// evicted.
    pub(super) fn evict_if_full<S: Store>(&mut self, store: &mut S) -> Result<bool, StoreError> {
        if self.entries.len() >= MAX_PENDING
            && let Some((_, oldest)) = self.by_order.first_key_value()
        {
            let oldest = *oldest;
            let tag = self.entries[&oldest].tag;
            self.drop_envelope(store, &tag, &oldest)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Deletes a pending envelope from the store, then its entry and `q/` record. In this
    /// order a crash in between leaves a record whose envelope is missing, which the next
    /// read releases ([`Replica::reread_pending`]); the other order would leave the envelope
    /// stored with no record: never read again, nor removed.
    pub(super) fn drop_envelope<S: Store>(
        &mut self,
        store: &mut S,
        tag: &Tag,
        env: &EnvelopeId,
    ) -> Result<(), StoreError> {
        store.remove_envelope(tag, env)?;
        self.release(store, env)
    }

    /// Adds an entry (call [`Pending::evict_if_full`] first) and writes its `q/` record.
    pub(super) fn insert<S: Store>(
        &mut self,
        store: &mut S,
        conversation: ConversationId,
        tag: Tag,
        env: EnvelopeId,
        waiting: Waiting,
    ) -> Result<(), StoreError> {
        self.insert_sized(store, conversation, tag, env, waiting, 0)
    }

    /// [`Pending::insert`]; `unverified_bytes` is the size of an envelope parked without
    /// being decrypted ([`Waiting::Epoch`]), counted against the unverified bounds.
    pub(super) fn insert_sized<S: Store>(
        &mut self,
        store: &mut S,
        conversation: ConversationId,
        tag: Tag,
        env: EnvelopeId,
        waiting: Waiting,
        unverified_bytes: u64,
    ) -> Result<(), StoreError> {
        if let Waiting::Dependencies(d) = &waiting {
            for h in d {
                self.waiting_on.entry(*h).or_default().push(env);
            }
        }
        let order = self.next_order;
        self.next_order += 1;
        let unverified = matches!(waiting, Waiting::Epoch(_));
        self.entries.insert(
            env,
            PendingEntry {
                conversation,
                tag,
                waiting,
                order,
                unverified_bytes,
            },
        );
        if unverified {
            let u = &mut self.unverified;
            let (m, b) = u.per_conv.entry(conversation).or_default();
            m.insert(order, env);
            *b += unverified_bytes;
            u.all.insert(order, env);
            u.bytes += unverified_bytes;
        }
        self.by_order.insert(order, env);
        store.put(&keys::pending(&env), &conversation.0)?;
        Ok(())
    }

    /// Removes an entry and its `q/` record; `None` if it was not pending.
    #[cfg(test)]
    fn unpark<S: Store>(
        &mut self,
        store: &mut S,
        env: &EnvelopeId,
    ) -> Result<Option<PendingEntry>, StoreError> {
        let p = self.forget(env);
        if p.is_some() {
            store.delete(&keys::pending(env))?;
        }
        Ok(p)
    }

    /// Removes an entry, if any, and its `q/` record, even if the entry is not in memory (at
    /// open, records are read before their entries exist).
    fn release<S: Store>(&mut self, store: &mut S, env: &EnvelopeId) -> Result<(), StoreError> {
        self.forget(env);
        store.delete(&keys::pending(env))
    }

    /// Removes an entry from memory only: its `q/` record stays (see
    /// [`Replica::reread_pending`]).
    fn forget(&mut self, env: &EnvelopeId) -> Option<PendingEntry> {
        let p = self.entries.remove(env)?;
        self.by_order.remove(&p.order);
        if matches!(p.waiting, Waiting::Epoch(_)) {
            let u = &mut self.unverified;
            u.all.remove(&p.order);
            u.bytes = u.bytes.saturating_sub(p.unverified_bytes);
            if let Some((m, b)) = u.per_conv.get_mut(&p.conversation) {
                m.remove(&p.order);
                *b = b.saturating_sub(p.unverified_bytes);
                if m.is_empty() {
                    u.per_conv.remove(&p.conversation);
                }
            }
        }
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
        Some(p)
    }

    /// Whether `env` is parked here.
    pub(super) fn contains(&self, env: &EnvelopeId) -> bool {
        self.entries.contains_key(env)
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

    /// The unverified entry to evict before one of `bytes` more for `conv` fits the bounds:
    /// the conversation's oldest if it is over its own bound, else the oldest of all if the
    /// replica is over its bound; `None` if it fits.
    fn unverified_victim(&self, conv: &ConversationId, bytes: u64) -> Option<EnvelopeId> {
        let u = &self.unverified;
        if let Some((m, b)) = u.per_conv.get(conv)
            && (m.len() >= MAX_UNVERIFIED_PER_TAG || b + bytes > MAX_UNVERIFIED_BYTES_PER_TAG)
        {
            return m.values().next().copied();
        }
        if u.bytes + bytes > MAX_UNVERIFIED_BYTES {
            return u.all.values().next().copied();
        }
        None
    }

    /// Unverified entries parked for `conv` (count, bytes), and bytes for every conversation.
    pub(super) fn unverified(&self, conv: &ConversationId) -> (usize, u64, u64) {
        let (n, b) = self
            .unverified
            .per_conv
            .get(conv)
            .map_or((0, 0), |(m, b)| (m.len(), *b));
        (n, b, self.unverified.bytes)
    }

    pub(super) fn queue_wake(&mut self, envs: Vec<EnvelopeId>) {
        self.wake.extend(envs);
    }

    pub(super) fn next_woken(&mut self) -> Option<EnvelopeId> {
        self.wake.pop_front()
    }

    /// Puts an envelope back at the head of the wake queue (its retry failed on a store
    /// error): the next drain reads it first.
    fn requeue(&mut self, env: EnvelopeId) {
        self.wake.push_front(env);
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
        env: &Envelope,
        waiting: Waiting,
    ) -> Result<Ingested, IngestError> {
        if self.pending.evict_if_full(&mut self.store)? {
            self.stats.pending_evicted += 1;
        }
        self.pending.insert(
            &mut self.store,
            conv,
            env.header().tag,
            env.id(),
            waiting.clone(),
        )?;
        Ok(Ingested::Pending(conv, waiting))
    }

    /// Parks an envelope waiting for an epoch key this device has never heard of. It could
    /// not be decrypted, so anyone who knows the tag could have sent it: the conversation's
    /// oldest such entries (or, past the replica's bound, the oldest of all) are deleted to
    /// make room (not refused: reconciliation fetches them again if they matter).
    pub(super) fn park_unverified(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        epoch: EpochId,
    ) -> Result<Ingested, IngestError> {
        let bytes = env.bytes().len() as u64;
        while let Some(victim) = self.pending.unverified_victim(&conv, bytes) {
            let tag = self.pending.entries[&victim].tag;
            self.pending.drop_envelope(&mut self.store, &tag, &victim)?;
            self.stats.pending_evicted += 1;
        }
        if self.pending.evict_if_full(&mut self.store)? {
            self.stats.pending_evicted += 1;
        }
        self.store
            .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
        self.pending.insert_sized(
            &mut self.store,
            conv,
            env.header().tag,
            env.id(),
            Waiting::Epoch(epoch),
            bytes,
        )?;
        Ok(Ingested::Pending(conv, Waiting::Epoch(epoch)))
    }

    /// Holds an envelope (already stored) that this device cannot read: its epoch is known
    /// and its key was not granted here. It is read again if the key arrives later
    /// ([`Replica::wake_conversation`]). Bounded per conversation and per replica; the
    /// oldest go first (deleted, not refused).
    pub(super) fn hold_unreadable(
        &mut self,
        conv: ConversationId,
        env: EnvelopeId,
        epoch: EpochId,
    ) -> Result<(), StoreError> {
        if self.held.unreadable_ids.contains_key(&env) {
            return Ok(());
        }
        loop {
            let per = self.held.unreadable.get(&conv).map_or(0, |m| m.len());
            let victim = if per >= MAX_UNREADABLE_PER_TAG {
                self.held
                    .unreadable
                    .get(&conv)
                    .and_then(|m| m.values().next().map(|(e, _)| *e))
            } else if self.held.unreadable_ids.len() >= MAX_UNREADABLE {
                self.held.unreadable_order.values().next().copied()
            } else {
                None
            };
            let Some(v) = victim else { break };
            let tag = self.unreadable_tag(&v);
            self.release_unreadable(&v)?;
            if let Some(tag) = tag {
                self.store.remove_envelope(&tag, &v)?;
            }
        }
        let order = self.held.next();
        let mut val = epoch.0.to_vec();
        val.extend_from_slice(&order.to_be_bytes());
        self.store.put(&keys::unreadable(&conv, &env), &val)?;
        self.held.add_unreadable(conv, env, epoch, order);
        Ok(())
    }

    /// The tag an unreadable envelope is stored under: its conversation's (the `i/` record
    /// names the conversation; conversations are never removed).
    fn unreadable_tag(&self, env: &EnvelopeId) -> Option<Tag> {
        let (conv, _) = self.held.unreadable_ids.get(env)?;
        self.convs.get(conv).map(|c| c.tag)
    }

    /// Forgets the unreadable record of `env` (the envelope stays).
    fn release_unreadable(&mut self, env: &EnvelopeId) -> Result<(), StoreError> {
        if let Some(conv) = self.held.remove_unreadable(env) {
            self.store.delete(&keys::unreadable(&conv, env))?;
        }
        Ok(())
    }

    /// Unreadable envelopes of `conv` whose key is now held: read them again.
    pub(super) fn retry_unreadable(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let Some(c) = self.convs.get(conv) else {
            return Ok(());
        };
        let ready: Vec<EnvelopeId> = self
            .held
            .unreadable
            .get(conv)
            .map(|m| {
                m.values()
                    .filter(|(_, ep)| c.read_key(ep).is_some())
                    .map(|(e, _)| *e)
                    .collect()
            })
            .unwrap_or_default();
        // Each is read again where it is stored, and its record released only once that
        // read has settled it: a store error in between leaves it held, to be read again at
        // the next key or the next open.
        let tag = c.tag;
        for e in ready {
            let bytes = match self.store.envelope(&tag, &e)? {
                Some(b) if !b.is_empty() => b,
                _ => {
                    self.release_unreadable(&e)?;
                    continue;
                }
            };
            let env = match Envelope::decode(&bytes) {
                Ok(env) => env,
                Err(_) => {
                    self.release_unreadable(&e)?;
                    continue;
                }
            };
            let r = self.ingest_decoded(&env, None, now_ms);
            match r {
                // Still unreadable (another epoch's key): still held.
                Ok(Ingested::Unreadable(_)) => {}
                Ok(_) => self.release_unreadable(&e)?,
                Err(err) if err.is_peer_fault() => {
                    // Refused now that it can be read: a tombstone takes its place.
                    self.release_unreadable(&e)?;
                    self.store.remove_envelope(&tag, &e)?;
                    if err.tombstones() {
                        self.tombstone(&tag, &e)?;
                    }
                }
                Err(err) => {
                    return Err(match err {
                        IngestError::Store(s) => s,
                        other => StoreError::Io(other.to_string()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Makes `id` a tombstone under `tag` (refused, or expired), within the bounds: past
    /// [`MAX_TOMBSTONES_PER_TAG`] for the tag, or [`MAX_TOMBSTONES`] in all, the oldest
    /// tombstone (of the tag, else of all) is forgotten.
    pub(super) fn tombstone(&mut self, tag: &Tag, id: &EnvelopeId) -> Result<(), StoreError> {
        if !self.store.put_envelope(tag, id, &[])? {
            return Ok(());
        }
        let order = self.held.next();
        self.store.put(&keys::tombstone(tag, order), &id.0)?;
        self.held.add_tombstone(*tag, order, *id);
        loop {
            let victim = if self.held.tombs.get(tag).map_or(0, |m| m.len()) > MAX_TOMBSTONES_PER_TAG
            {
                self.held
                    .tombs
                    .get(tag)
                    .and_then(|m| m.iter().next().map(|(o, e)| (*tag, *o, *e)))
            } else if self.held.tomb_order.len() > MAX_TOMBSTONES {
                self.held.tomb_order.iter().next().and_then(|(o, t)| {
                    self.held
                        .tombs
                        .get(t)
                        .and_then(|m| m.get(o))
                        .map(|e| (*t, *o, *e))
                })
            } else {
                None
            };
            let Some((t, o, e)) = victim else { break };
            self.held.remove_tombstone(&t, o);
            self.store.delete(&keys::tombstone(&t, o))?;
            // Only if it is still a tombstone (an envelope may have replaced it since).
            if self.store.envelope(&t, &e)?.is_some_and(|b| b.is_empty()) {
                self.store.remove_envelope(&t, &e)?;
            }
        }
        Ok(())
    }

    /// At open: the tombstone and unreadable records.
    pub(super) fn load_held(&mut self) -> Result<(), StoreError> {
        let mut held = Held::default();
        self.store.scan_prefix(keys::TOMBSTONE, &mut |k, v| {
            if let (Some(t), Some(o), Some(e)) = (
                k.get(2..18).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                k.get(18..26).and_then(|b| <[u8; 8]>::try_from(b).ok()),
                EnvelopeId::from_slice(v),
            ) {
                held.add_tombstone(Tag(t), u64::from_be_bytes(o), e);
            }
            true
        })?;
        self.store.scan_prefix(keys::UNREADABLE, &mut |k, v| {
            if let (Some(c), Some(e), Some(ep), Some(o)) = (
                k.get(2..18).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                k.get(18..50).and_then(EnvelopeId::from_slice),
                v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()),
                v.get(4..12).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ) {
                held.add_unreadable(ConversationId(c), e, EpochId(ep), u64::from_be_bytes(o));
            }
            true
        })?;
        self.held = held;
        Ok(())
    }

    /// Queues pending envelopes to be tried again, and tries them unless a caller up the
    /// stack is already doing so (iterative, so a long chain cannot overflow the stack).
    /// With nothing new to queue it tries what a store error left queued (see
    /// [`Replica::reread_pending`]; [`Replica::maintain`] does this at every duty run).
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
            if self.pending.contains(&e) {
                self.reread_pending(&e, now_ms)?;
            }
        }
        Ok(())
    }

    /// Reads a pending envelope again where it is stored (as [`Replica::retry_unreadable`]
    /// does), and releases its `q/` record only once that read has settled it: applied,
    /// parked again (a new record), or refused (removed, then a tombstone, then the record
    /// goes: a crash at any point leaves a record to settle it at the next open, or nothing
    /// held). A record whose envelope is missing or cannot be decoded is deleted (with the
    /// envelope). A store error in between leaves it stored and recorded pending, and queued
    /// at the head of the wake queue: read again at the next wake or duty run (or open).
    pub(super) fn reread_pending(&mut self, e: &EnvelopeId, now_ms: u64) -> Result<(), StoreError> {
        // Stored under its conversation's tag: the entry's, or (at open, before the entry
        // exists) that of the conversation its `q/` record names.
        let tag = match self.pending.entries.get(e) {
            Some(p) => Some(p.tag),
            None => self
                .store
                .get(&keys::pending(e))?
                .and_then(|v| <[u8; 16]>::try_from(&v[..]).ok())
                .and_then(|c| self.convs.get(&ConversationId(c)).map(|c| c.tag)),
        };
        let Some(tag) = tag else {
            return self.pending.release(&mut self.store, e);
        };
        let bytes = match self.store.envelope(&tag, e)? {
            Some(b) if !b.is_empty() => b,
            _ => return self.pending.release(&mut self.store, e),
        };
        let Ok(env) = Envelope::decode(&bytes) else {
            return self.pending.drop_envelope(&mut self.store, &tag, e);
        };
        let entry = self.pending.forget(e);
        let r = self.ingest_decoded(&env, None, now_ms);
        match r {
            // Parked again: `park` wrote its record anew.
            Ok(Ingested::Pending(..)) => Ok(()),
            Ok(_) => self.store.delete(&keys::pending(e)),
            Err(err) if err.is_peer_fault() => {
                self.store.remove_envelope(&tag, e)?;
                if err.tombstones() {
                    self.tombstone(&tag, e)?;
                }
                self.store.delete(&keys::pending(e))
            }
            Err(err) => {
                // Still pending, in memory as in the store, and queued to be read again. At
                // open there is no entry yet: it waits for anything of its conversation.
                let entry = entry.map(|p| (p.conversation, p.waiting, p.unverified_bytes));
                let entry = entry.or_else(|| {
                    self.by_tag
                        .get(&env.header().tag)
                        .map(|c| (*c, Waiting::Parents, 0))
                });
                if let Some((conv, waiting, bytes)) = entry
                    && !self.pending.contains(e)
                {
                    let _ =
                        self.pending
                            .insert_sized(&mut self.store, conv, tag, *e, waiting, bytes);
                }
                if self.pending.contains(e) {
                    self.pending.requeue(*e);
                }
                Err(match err {
                    IngestError::Store(s) => s,
                    other => StoreError::Io(other.to_string()),
                })
            }
        }
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
        self.retry(envs, now_ms)?;
        self.retry_unreadable(conv, now_ms)
    }
}

/// What a peer can make this replica hold without anyone having verified it, besides the
/// pending set: tombstones (`t/`) and unreadable envelopes (`u/`), each in the order it came
/// (one counter for both, resumed at open) so the oldest goes first past its bound.
#[derive(Debug, Default)]
pub(super) struct Held {
    next: u64,
    tombs: BTreeMap<Tag, BTreeMap<u64, EnvelopeId>>,
    tomb_order: BTreeMap<u64, Tag>,
    unreadable: BTreeMap<ConversationId, BTreeMap<u64, (EnvelopeId, EpochId)>>,
    unreadable_order: BTreeMap<u64, EnvelopeId>,
    unreadable_ids: BTreeMap<EnvelopeId, (ConversationId, u64)>,
}

impl Held {
    fn next(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    fn add_tombstone(&mut self, tag: Tag, order: u64, id: EnvelopeId) {
        self.next = self.next.max(order + 1);
        self.tombs.entry(tag).or_default().insert(order, id);
        self.tomb_order.insert(order, tag);
    }

    fn remove_tombstone(&mut self, tag: &Tag, order: u64) {
        self.tomb_order.remove(&order);
        if let Some(m) = self.tombs.get_mut(tag) {
            m.remove(&order);
            if m.is_empty() {
                self.tombs.remove(tag);
            }
        }
    }

    fn add_unreadable(&mut self, conv: ConversationId, id: EnvelopeId, epoch: EpochId, order: u64) {
        self.next = self.next.max(order + 1);
        self.unreadable
            .entry(conv)
            .or_default()
            .insert(order, (id, epoch));
        self.unreadable_order.insert(order, id);
        self.unreadable_ids.insert(id, (conv, order));
    }

    fn remove_unreadable(&mut self, id: &EnvelopeId) -> Option<ConversationId> {
        let (conv, order) = self.unreadable_ids.remove(id)?;
        self.unreadable_order.remove(&order);
        if let Some(m) = self.unreadable.get_mut(&conv) {
            m.remove(&order);
            if m.is_empty() {
                self.unreadable.remove(&conv);
            }
        }
        Some(conv)
    }

    pub(super) fn is_unreadable(&self, id: &EnvelopeId) -> bool {
        self.unreadable_ids.contains_key(id)
    }

    /// Tombstones recorded (under `tag`, and in all).
    pub(super) fn tombstones(&self, tag: &Tag) -> (usize, usize) {
        (
            self.tombs.get(tag).map_or(0, |m| m.len()),
            self.tomb_order.len(),
        )
    }

    /// Unreadable envelopes held (of `conv`, and in all).
    pub(super) fn unreadable(&self, conv: &ConversationId) -> (usize, usize) {
        (
            self.unreadable.get(conv).map_or(0, |m| m.len()),
            self.unreadable_ids.len(),
        )
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
        p.insert(st, CONV, TAG, e, w).unwrap();
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
                !st.contains(&TAG, e).unwrap(),
                "evicted envelopes leave the store"
            );
        }
        for e in &ids[3..6] {
            assert!(st.contains(&TAG, e).unwrap());
        }
        // The next one to go is the fourth arrival.
        let next = EnvelopeId([0xee; 32]);
        st.put_envelope(&TAG, &next, b"x").unwrap();
        assert!(park(&mut p, &mut st, next, Waiting::Parents));
        assert!(!st.contains(&TAG, &ids[3]).unwrap());
        assert!(st.contains(&TAG, &ids[4]).unwrap());
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

    #[test]
    fn unverified_entries_are_counted_and_released() {
        let mut st = MemoryStore::new();
        let mut p = Pending::default();
        let e = |n| Waiting::Epoch(EpochId([n; 4]));
        p.insert_sized(&mut st, CONV, TAG, env(1), e(1), 100)
            .unwrap();
        p.insert_sized(&mut st, CONV, TAG, env(2), e(2), 50)
            .unwrap();
        p.insert(&mut st, CONV, TAG, env(3), Waiting::Parents)
            .unwrap();
        assert_eq!(p.unverified(&CONV), (2, 150, 150));
        assert_eq!(p.unverified_victim(&CONV, 10), None);
        assert_eq!(
            p.unverified_victim(&CONV, MAX_UNVERIFIED_BYTES_PER_TAG),
            Some(env(1)),
            "the oldest of the conversation"
        );
        p.unpark(&mut st, &env(1)).unwrap();
        assert_eq!(p.unverified(&CONV), (1, 50, 50));
        p.unpark(&mut st, &env(2)).unwrap();
        p.unpark(&mut st, &env(3)).unwrap();
        assert_eq!(p.unverified(&CONV), (0, 0, 0));
    }
}
