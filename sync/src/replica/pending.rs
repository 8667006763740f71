//! The pending set: envelopes that wait for a dependency, an author or a key.

use super::*;

impl<S: Store> Replica<S> {
    pub(super) fn park(
        &mut self,
        conv: ConversationId,
        env: EnvelopeId,
        waiting: Waiting,
    ) -> Result<Ingested, IngestError> {
        if self.pending.len() >= MAX_PENDING
            && let Some((_, oldest)) = self.pending_order.pop_first()
        {
            // Forget it entirely: peers still hold it and will offer it again later.
            self.unpark(&oldest)?;
            self.store.remove_envelope(&oldest)?;
            self.stats.pending_evicted += 1;
        }
        if let Waiting::Dependencies(d) = &waiting {
            for h in d {
                self.waiting_on.entry(*h).or_default().push(env);
            }
        }
        let order = self.next_order;
        self.next_order += 1;
        self.pending.insert(
            env,
            PendingEntry {
                conversation: conv,
                waiting: waiting.clone(),
                order,
            },
        );
        self.pending_order.insert(order, env);
        self.store.put(&keys::pending(&env), &conv.0)?;
        Ok(Ingested::Pending(conv, waiting))
    }

    pub(super) fn unpark(&mut self, env: &EnvelopeId) -> Result<Option<PendingEntry>, StoreError> {
        let Some(p) = self.pending.remove(env) else {
            return Ok(None);
        };
        self.pending_order.remove(&p.order);
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
        self.store.delete(&keys::pending(env))?;
        Ok(Some(p))
    }

    /// Queues pending envelopes to be tried again, and tries them unless a caller up the
    /// stack is already doing so (iterative, so a long chain cannot overflow the stack).
    pub(super) fn retry(&mut self, envs: Vec<EnvelopeId>, now_ms: u64) -> Result<(), StoreError> {
        self.wake.extend(envs);
        if self.draining {
            return Ok(());
        }
        self.draining = true;
        let r = self.drain(now_ms);
        self.draining = false;
        r
    }

    pub(super) fn drain(&mut self, now_ms: u64) -> Result<(), StoreError> {
        while let Some(e) = self.wake.pop_front() {
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
        let mut envs = Vec::new();
        for h in hashes {
            if let Some(v) = self.waiting_on.remove(h) {
                envs.extend(v);
            }
        }
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
        let envs: Vec<EnvelopeId> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.conversation == *conv && !matches!(p.waiting, Waiting::Dependencies(_))
            })
            .map(|(e, _)| *e)
            .collect();
        self.retry(envs, now_ms)
    }
}
