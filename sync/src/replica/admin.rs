//! Admin duties: key rotation, key shares, expiry of carried envelopes.

use super::*;

impl<S: Store> Replica<S> {
    /// Replaces carried envelopes whose expiry has passed with tombstones (freeing their
    /// bytes; reconciliation still counts them as held). Returns how many expired.
    pub fn expire_carried(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        let own: BTreeSet<Tag> = self.by_tag.keys().copied().collect();
        let mut expired = Vec::new();
        for (tag, _) in self.store.tags() {
            if own.contains(&tag) {
                continue;
            }
            let mut ids = Vec::new();
            self.store.for_each_id(&tag, &[0; 32], &mut |id| {
                ids.push(*id);
                true
            })?;
            for id in ids {
                if let Some(b) = self.store.envelope(&id)?
                    && !b.is_empty()
                    && Envelope::decode(&b).is_ok_and(|e| e.header().is_expired(now_ms))
                {
                    expired.push((tag, id, b.len() as u64));
                }
            }
        }
        for (tag, id, len) in &expired {
            self.store.remove_envelope(id)?;
            self.tombstone(tag, id)?;
            self.carried_bytes = self.carried_bytes.saturating_sub(*len);
        }
        Ok(expired.len())
    }

    pub(super) fn rotate(
        &mut self,
        id: &ConversationId,
        holders: BTreeSet<DeviceId>,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let key = self.seed32();
        let epoch = crypto::epoch_id(&key);
        let conv = self
            .convs
            .get(id)
            .ok_or(CommandError::NoSuchConversation)?
            .id;
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
                slots,
            },
            now_ms,
        )
    }

    /// Runs admin duties: rotate the key if a removed device still holds the current one, and
    /// share the current key with members who lack it. Returns envelopes created.
    pub fn maintain(&mut self, now_ms: u64) -> Result<Vec<EnvelopeId>, CommandError> {
        let me = self.me.device_id();
        let mut out = Vec::new();
        let ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        for id in ids {
            let c = &self.convs[&id];
            let st = c.membership.state();
            if !st.is_admin(&me) || now_ms.saturating_sub(c.last_duty_ms) < DUTY_INTERVAL_MS {
                continue;
            }
            let rotate = st.needs_rotation();
            let missing = st.missing_current_key();
            let have_current = st
                .current_epoch()
                .is_some_and(|e| c.keys.contains_key(&e.id));
            if !rotate && (missing.is_empty() || !have_current) {
                continue;
            }
            let members: BTreeSet<DeviceId> = st.members.keys().copied().collect();
            let current = st.current_epoch().map(|e| e.id);
            if let Some(c) = self.convs.get_mut(&id) {
                c.last_duty_ms = now_ms;
            }
            if rotate {
                out.push(self.rotate(&id, members, now_ms)?);
            } else if let Some(epoch) = current {
                let key = self.convs[&id].keys[&epoch];
                let conv = self.convs[&id].id;
                let me_id = self.me.clone();
                let seeds: Vec<[u8; 32]> = (0..missing.len()).map(|_| self.seed32()).collect();
                let mut it = seeds.into_iter();
                let rng = &mut self.rng;
                let slots = membership::seal_slots(&me_id, &conv, &key, &missing, || {
                    it.next().unwrap_or_else(|| fresh_seed(rng))
                });
                out.push(self.control(
                    &id,
                    Action::Keys {
                        epoch,
                        rotate: false,
                        slots,
                    },
                    now_ms,
                )?);
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
