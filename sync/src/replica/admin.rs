//! Admin duties: key rotation, key shares, expiry of carried envelopes.

use super::*;

impl<S: Store> Replica<S> {
    /// Replaces carried envelopes whose expiry has passed with tombstones (freeing their
    /// bytes; reconciliation still counts them as held). Returns how many expired.
    pub fn expire_carried(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        for (id, tag) in self.carried_ids() {
            if let Some(b) = self.store.envelope(&tag, &id)?
                && !b.is_empty()
                && let Ok(e) = Envelope::decode(&b)
                && e.header().is_expired(now_ms)
            {
                expired.push((tag, id));
            }
        }
        for (tag, id) in &expired {
            self.uncarry(id)?;
            self.store.remove_envelope(tag, id)?;
            self.tombstone(tag, id)?;
        }
        Ok(expired.len())
    }

    pub(super) fn rotate(
        &mut self,
        id: &ConversationId,
        holders: BTreeSet<DeviceId>,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        // Refused here rather than by every replica: a rejected rotation would still fill
        // the log, once per duty round.
        if c.membership.state().epochs_full() {
            return Err(CommandError::EpochsExhausted);
        }
        let conv = c.id;
        let key = self.seed32();
        let epoch = crypto::epoch_id(&key);
        let me = self.me.clone();
        let mut seeds = Vec::with_capacity(holders.len());
        for _ in 0..holders.len() {
            seeds.push(self.seed32());
        }
        let mut it = seeds.into_iter();
        let others: BTreeSet<DeviceId> = holders
            .into_iter()
            .filter(|d| *d != me.device_id())
            .collect();
        // One fresh ephemeral seed per slot, drawn up front (the draw order is part of the
        // replica's determinism); past them, more are drawn, never a fixed value.
        let rng = &mut self.rng;
        let slots = membership::seal_slots(&me, &conv, &key, &others, || {
            it.next().unwrap_or_else(|| fresh_seed(rng))
        });
        self.store_key(id, epoch, key)?;
        self.control(
            id,
            Action::Keys {
                epoch,
                rotate: true,
                check: membership::key_check(&key),
                slots,
            },
            now_ms,
        )
    }

    /// A member's duty, once per voided epoch: where a rotation held until its admin's
    /// removal won (a split), members wrote under its key, and the members who never had it
    /// could not read that for ever. This device, a member holding the key of such an epoch
    /// (checked against the held rotation that started it), seals it to every other member
    /// in a `Keys` operation. The log rejects that operation (the epoch is in no state), but
    /// holds and spreads it, and every member opens its slot from it ([`Replica::learn_keys`]);
    /// [`Conversation::read_key`] then reads those envelopes everywhere. Nothing is ever
    /// sealed under a voided epoch.
    fn share_voided_keys(
        &mut self,
        id: &ConversationId,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, CommandError> {
        let me = self.me.device_id();
        let c = &self.convs[id];
        let st = c.membership.state();
        if !st.is_member(&me) {
            return Ok(Vec::new());
        }
        let mut fresh = Vec::new();
        for (e, k) in c.voided_keys() {
            // Once shared by anyone, it is not shared again.
            if !c.membership.has_share(&e)
                && self.store.get(&keys::voided_shared(id, &e))?.is_none()
            {
                fresh.push((e, k));
            }
        }
        let conv = c.id;
        let mut out = Vec::new();
        for (epoch, key) in fresh {
            // Members that had no slot for it (the rest open theirs from the rotation).
            let c = &self.convs[id];
            let holders = c.membership.key_holders(&epoch);
            let others: BTreeSet<DeviceId> = c
                .membership
                .state()
                .members
                .keys()
                .filter(|d| **d != me && !holders.contains(d))
                .copied()
                .collect();
            if !others.is_empty() {
                let me_id = self.me.clone();
                let seeds: Vec<[u8; 32]> = (0..others.len()).map(|_| self.seed32()).collect();
                let mut it = seeds.into_iter();
                let rng = &mut self.rng;
                let slots = membership::seal_slots(&me_id, &conv, &key, &others, || {
                    it.next().unwrap_or_else(|| fresh_seed(rng))
                });
                match self.control(
                    id,
                    Action::Keys {
                        epoch,
                        rotate: false,
                        check: membership::key_check(&key),
                        slots,
                    },
                    now_ms,
                ) {
                    Ok(e) => out.push(e),
                    // A full log: try again at the next duty run.
                    Err(CommandError::ControlFull) => continue,
                    Err(e) => return Err(e),
                }
            }
            self.store.put(&keys::voided_shared(id, &epoch), &[])?;
        }
        Ok(out)
    }

    /// Runs admin duties: remove revoked devices that are still members (`revoked`), rotate
    /// the key if a removed device still holds the current one, and
    /// share the current key with members who lack it. Returns envelopes created. First it
    /// reads again the woken pending envelopes a store error left queued, and deletes the
    /// invitations this device sealed that are no longer needed (`sent`).
    pub fn maintain(&mut self, now_ms: u64) -> Result<Vec<EnvelopeId>, CommandError> {
        self.retry(Vec::new(), now_ms)?;
        self.sweep_sent_invitations(now_ms)?;
        let me = self.me.device_id();
        let mut out = Vec::new();
        // Revoked devices still members where this device is an admin (revoked before it
        // became one, or a removal that could not go in): removed now.
        out.extend(self.remove_revoked(now_ms)?);
        let ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        for id in ids {
            out.extend(self.share_voided_keys(&id, now_ms)?);
            let c = &self.convs[&id];
            let st = c.membership.state();
            if !st.is_admin(&me) || now_ms.saturating_sub(c.last_duty_ms) < DUTY_INTERVAL_MS {
                continue;
            }
            let rotate = st.needs_rotation();
            let missing = st.missing_current_key();
            let have_current = st.current_epoch().is_some_and(|e| c.key(&e.id).is_some());
            if !rotate && (missing.is_empty() || !have_current) {
                continue;
            }
            let members: BTreeSet<DeviceId> = st.members.keys().copied().collect();
            let current = st.current_epoch().map(|e| e.id);
            if let Some(c) = self.convs.get_mut(&id) {
                c.last_duty_ms = now_ms;
            }
            if rotate {
                match self.rotate(&id, members, now_ms) {
                    Ok(e) => out.push(e),
                    // A full log must never fail the caller's flush: the duty waits. With
                    // every epoch used, sending is refused instead (`stage_message`).
                    Err(CommandError::ControlFull | CommandError::EpochsExhausted) => continue,
                    Err(e) => return Err(e),
                }
            } else if let Some(epoch) = current {
                let Some(key) = self.convs[&id].key(&epoch).copied() else {
                    continue;
                };
                let conv = self.convs[&id].id;
                let me_id = self.me.clone();
                let seeds: Vec<[u8; 32]> = (0..missing.len()).map(|_| self.seed32()).collect();
                let mut it = seeds.into_iter();
                let rng = &mut self.rng;
                let slots = membership::seal_slots(&me_id, &conv, &key, &missing, || {
                    it.next().unwrap_or_else(|| fresh_seed(rng))
                });
                match self.control(
                    &id,
                    Action::Keys {
                        epoch,
                        rotate: false,
                        check: membership::key_check(&key),
                        slots,
                    },
                    now_ms,
                ) {
                    Ok(e) => out.push(e),
                    Err(CommandError::ControlFull) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }
}

/// A fresh 32-byte seed from the replica's generator.
fn fresh_seed(rng: &mut rand_chacha::ChaCha20Rng) -> [u8; 32] {
    use rand_core::RngCore;
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::FindEnvelope;

    const T0: u64 = 1_790_000_000_000;

    fn deliver(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
        for (tag, _) in from.store.tags() {
            let mut ids = Vec::new();
            from.store
                .for_each_id(&tag, &[0; 32], &mut |id| {
                    ids.push(*id);
                    true
                })
                .unwrap();
            for id in ids {
                let b = from.store.find_envelope(&id).unwrap().unwrap();
                let _ = to.ingest(&b, now);
            }
        }
    }

    /// What grinding a 4-byte epoch id buys (a key whose id matches the next epoch's,
    /// delivered before the rotation): nothing. The key is held unverified, never used,
    /// and gives way to the admin's key from its slot.
    #[test]
    fn a_key_that_only_matches_the_epoch_id_is_never_used() {
        let me = |n: u8| Identity::from_seed([n; 32]);
        let mut a = Replica::open(me(1), MemoryStore::new(), [1; 32]).unwrap();
        let mut b = Replica::open(me(2), MemoryStore::new(), [2; 32]).unwrap();
        let (c, _) = a.create_conversation("t", History::Shared, T0).unwrap();
        a.add_member(&c, b.device_id(), false, T0 + 1).unwrap();
        deliver(&a, &mut b, T0 + 2);
        let members: BTreeSet<DeviceId> = [a.device_id(), b.device_id()].into();
        a.rotate(&c, members, T0 + 3).unwrap();
        let next = a.convs[&c].membership.state().current_epoch().unwrap().id;
        let ground: Key = [0x66; 32];
        // Before B knows the epoch: kept unverified, not given out.
        assert!(b.store_key(&c, next, ground).unwrap());
        assert_eq!(b.convs[&c].key(&next), None);
        deliver(&a, &mut b, T0 + 4);
        let real = a.convs[&c].key(&next).copied();
        assert!(real.is_some() && real != Some(ground));
        assert_eq!(b.convs[&c].key(&next).copied(), real);
        assert_eq!(b.convs[&c].sending_epoch().map(|(e, _)| e), Some(next));
        // Once the epoch is known the ground key is refused outright, and the store keeps
        // the real one (after a restart too).
        assert!(!b.store_key(&c, next, ground).unwrap());
        let b = Replica::open(me(2), b.into_store(), [3; 32]).unwrap();
        assert_eq!(b.convs[&c].key(&next).copied(), real);
    }
}
