//! Ingestion: envelopes from elsewhere, verified and applied (or parked, or refused).

use super::*;

/// A change envelope that passed every check but dependencies.
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) page: u32,
    pub(super) signer: DeviceId,
    /// The newest time among its changes.
    pub(super) hlc: Hlc,
    /// Each change with the number of messages it creates.
    pub(super) changes: Vec<(Change, u32)>,
    /// The acknowledgements its changes carry (index into `changes`, message keys): checked
    /// against the page before they are applied ([`crate::page::Page::check_acks`]).
    pub(super) acks: Vec<(usize, Vec<String>)>,
}

/// What [`Replica::verify_change`] concluded about a change envelope it did not refuse.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Passed every check but dependencies (which are checked against the page, where the
    /// changes are applied).
    Ready(Checked),
    /// Fine so far, but something has not arrived: store it and park it.
    Wait(Waiting),
    /// Its epoch is known and its key was not granted to this device (a member): store it,
    /// it will never be readable here.
    Unreadable,
}

/// A change envelope the batch path verified, waiting to be applied with its page's group.
#[derive(Debug)]
pub(super) struct Verified {
    conv: ConversationId,
    env: Envelope,
    checked: Checked,
}

/// The batch path's first step for one envelope.
#[derive(Debug)]
pub(super) enum Fast {
    /// Settled (duplicate, refused, stored and parked, unreadable).
    Done(Result<Ingested, IngestError>),
    /// Not a change of one of our conversations with nothing staged: the general path.
    Slow,
    /// Verified: applied with its (conversation, page) group.
    Ready(Box<Verified>),
}

impl<S: Store> Replica<S> {
    /// Ingests many envelopes at once. Same result as calling [`Replica::ingest`] on each in
    /// order, but the changes bound for one page are applied to Automerge in one call, which
    /// costs a fraction of one call per change (measured: ~10 µs instead of ~60 µs a change).
    /// Each result comes with the envelope's id and tag (when it decoded), so the caller
    /// need not decode or hash it again.
    pub fn ingest_batch(&mut self, batch: &[&[u8]], now_ms: u64) -> Vec<Admission> {
        self.ingest_batch_from(batch, &[], now_ms)
    }

    /// [`Replica::ingest_batch`] where `origins[i]` pushed `batch[i]` (see
    /// [`Replica::ingest_from`]; missing entries: no peer).
    pub fn ingest_batch_from(
        &mut self,
        batch: &[&[u8]],
        origins: &[Option<DeviceId>],
        now_ms: u64,
    ) -> Vec<Admission> {
        let mut results: Vec<Option<Result<Ingested, IngestError>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut names: Vec<Option<(EnvelopeId, Tag)>> = vec![None; batch.len()];
        // Envelopes verified and ready to apply, grouped by (conversation, page).
        let mut groups: BTreeMap<(ConversationId, u32), Vec<(usize, Verified)>> = BTreeMap::new();
        let mut seen: BTreeSet<EnvelopeId> = BTreeSet::new();
        // Who pushed what, for the whole batch: an envelope its author pushed and that
        // another of the batch wakes owes no receipt (the acknowledgement says "stored").
        let mut pushed: Vec<(EnvelopeId, DeviceId)> = Vec::new();
        for (i, bytes) in batch.iter().enumerate() {
            let (name, fast) = self.verify_fast(bytes, now_ms, &mut seen);
            names[i] = name;
            if let (Some((id, _)), Some(Some(o))) = (name, origins.get(i))
                && self.pushed_by.insert((id, *o))
            {
                pushed.push((id, *o));
            }
            match fast {
                Fast::Done(r) => results[i] = Some(r),
                Fast::Slow => {
                    let origin = origins.get(i).copied().flatten();
                    results[i] = Some(self.ingest_from(bytes, origin, now_ms));
                }
                Fast::Ready(v) => groups
                    .entry((v.conv, v.checked.page))
                    .or_default()
                    .push((i, *v)),
            }
        }
        for ((conv, page_no), items) in groups {
            for (i, r) in self.apply_group(conv, page_no, items, now_ms) {
                results[i] = Some(r);
            }
        }
        for p in &pushed {
            self.pushed_by.remove(p);
        }
        results
            .into_iter()
            .zip(names)
            .map(|(r, name)| Admission {
                id: name.map(|n| n.0),
                tag: name.map(|n| n.1),
                result: r.unwrap_or(Ok(Ingested::Duplicate)),
            })
            .collect()
    }

    /// The batch path's decode, dedup and route. Change envelopes of our conversations with
    /// nothing staged are verified by [`Replica::verify_change`], like on the general path;
    /// what is not ready is settled here exactly as the general path would (stored, parked
    /// or refused), and what is ready is applied later with its page's group. Everything
    /// else takes the general path.
    /// Also returns the envelope's id and tag when it decodes.
    pub(super) fn verify_fast(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        seen: &mut BTreeSet<EnvelopeId>,
    ) -> (Option<(EnvelopeId, Tag)>, Fast) {
        let env = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => return (None, Fast::Done(Err(e.into()))),
        };
        let name = (env.id(), env.header().tag);
        (Some(name), self.verify_decoded(env, now_ms, seen))
    }

    fn verify_decoded(
        &mut self,
        env: Envelope,
        now_ms: u64,
        seen: &mut BTreeSet<EnvelopeId>,
    ) -> Fast {
        match self.store.contains(&env.header().tag, &env.id()) {
            Ok(true) => return Fast::Done(Ok(Ingested::Duplicate)),
            Ok(false) => {}
            Err(e) => return Fast::Done(Err(e.into())),
        }
        if !seen.insert(env.id()) {
            return Fast::Done(Ok(Ingested::Duplicate));
        }
        let h = *env.header();
        let Some(conv) = self.by_tag.get(&h.tag).copied() else {
            return Fast::Slow;
        };
        let Some(c) = self.convs.get(&conv) else {
            return Fast::Slow;
        };
        // With ops staged, the general path seals them first (it draws from the generator).
        if h.kind != Kind::Change || !c.staged.is_empty() {
            return Fast::Slow;
        }
        match self.verify_change(conv, &env) {
            // Acknowledgements are checked against the page as their author saw it, one
            // envelope at a time (they are few: one per member per alert).
            Ok(Verdict::Ready(checked)) if !checked.acks.is_empty() => Fast::Slow,
            Ok(Verdict::Ready(checked)) => Fast::Ready(Box::new(Verified { conv, env, checked })),
            // From here on, what `ingest` would do for this envelope (it would decode it,
            // find it absent, route it to `ingest_change` and verify it to the same verdict).
            Ok(verdict) => {
                let r = self.settle_change(conv, &env, verdict, now_ms);
                Fast::Done(self.refuse_on_error(&env, r))
            }
            Err(e) => Fast::Done(self.refuse_on_error(&env, Err(e))),
        }
    }

    pub(super) fn apply_group(
        &mut self,
        conv: ConversationId,
        page_no: u32,
        items: Vec<(usize, Verified)>,
        now_ms: u64,
    ) -> Vec<(usize, Result<Ingested, IngestError>)> {
        let mut out = Vec::with_capacity(items.len());
        if let Err(e) = self.ensure_page(&conv, page_no) {
            let err = match e {
                CommandError::Store(s) => IngestError::Store(s),
                other => IngestError::Store(StoreError::Corrupt(other.to_string())),
            };
            return items
                .into_iter()
                .map(|(i, _)| (i, Err(err.clone())))
                .collect();
        }
        // Order the group causally: take what is applicable, repeat.
        let mut known: BTreeSet<ChangeHash> = BTreeSet::new();
        let mut rest = items;
        let mut ready: Vec<(usize, Verified)> = Vec::new();
        let mut duplicates: Vec<(usize, Verified)> = Vec::new();
        while let Some(page) = self.pages.get_mut(&conv, page_no) {
            let mut progress = false;
            let mut still = Vec::new();
            for (i, v) in rest {
                let changes = &v.checked.changes;
                if changes
                    .iter()
                    .all(|(ch, _)| known.contains(&ch.hash()) || page.has_change(&ch.hash()))
                {
                    // Same content as what the page or the group holds (see `settle_change`).
                    duplicates.push((i, v));
                    progress = true;
                    continue;
                }
                let ok = changes.iter().all(|(ch, _)| {
                    ch.deps().iter().all(|d| {
                        known.contains(d)
                            || page.has_change(d)
                            || changes.iter().any(|(o, _)| o.hash() == *d)
                    })
                });
                if ok {
                    known.extend(changes.iter().map(|(c, _)| c.hash()));
                    ready.push((i, v));
                    progress = true;
                } else {
                    still.push((i, v));
                }
            }
            rest = still;
            if !progress || rest.is_empty() {
                break;
            }
        }
        // Whatever still lacks a dependency takes the general path (and waits there). It is
        // verified again there, on purpose: since the first step, envelopes later in the batch
        // that took the general path (membership, keys) have been applied, and the general path
        // judges it against that state, as it does every envelope it parks and retries.
        for (i, v) in rest {
            out.push((i, self.ingest(v.env.bytes(), now_ms)));
        }
        for (i, v) in duplicates {
            let r = self
                .store
                .put_envelope(&v.env.header().tag, &v.env.id(), v.env.bytes())
                .map(|_| Ingested::Duplicate)
                .map_err(IngestError::from);
            out.push((i, r));
        }
        if ready.is_empty() {
            return out;
        }
        // A change carried by two envelopes of the group is applied once.
        let mut once: BTreeSet<ChangeHash> = BTreeSet::new();
        let all: Vec<(Change, u32)> = ready
            .iter()
            .flat_map(|(_, v)| v.checked.changes.iter().cloned())
            .filter(|(c, _)| once.insert(c.hash()))
            .collect();
        let hashes: Vec<ChangeHash> = all.iter().map(|(c, _)| c.hash()).collect();
        let applied = match self.pages.get_mut(&conv, page_no) {
            Some(page) => page.apply(all),
            None => Err(RuleError::Automerge("page vanished".into())),
        };
        if applied.is_err() {
            // The document may be half-updated: drop it; it reloads from durable state.
            self.pages.discard(&conv, page_no);
            // One bad envelope spoils a batch: isolate it by applying one at a time.
            for (i, v) in ready {
                out.push((i, self.ingest(v.env.bytes(), now_ms)));
            }
            return out;
        }
        let first_ready = out.len();
        for (i, v) in ready {
            let r = (|| -> Result<Ingested, IngestError> {
                if let Some(c) = self.convs.get_mut(&conv) {
                    c.learn_actor(v.checked.signer);
                }
                self.clock.observe(v.checked.hlc, now_ms);
                self.store
                    .put_envelope(&v.env.header().tag, &v.env.id(), v.env.bytes())?;
                self.note_page_epoch(&conv, page_no, v.env.header().epoch)?;
                self.note_own_changes(
                    &conv,
                    page_no,
                    v.env.id(),
                    v.checked.signer,
                    v.checked.changes.iter().map(|(c, _)| c),
                );
                self.journal(&conv, page_no, &v.env.id())?;
                self.owe_for_applied(&v.env.id(), v.checked.signer)?;
                self.stats.applied += 1;
                self.emit(Event::Applied {
                    conversation: conv,
                    envelope: v.env.id(),
                });
                Ok(Ingested::Applied(conv))
            })();
            if r.is_err() {
                // As in `settle_change`: memory must not hold what the store does not.
                self.pages.discard(&conv, page_no);
            }
            out.push((i, r));
        }
        self.emit(Event::MessagesChanged {
            conversation: conv,
            page: page_no,
        });
        if let Err(e) = self.wake_deps(&hashes) {
            // Applied and stored, but retrying what waited for these changes failed on
            // storage: report it for every envelope of the group, as the general path does
            // for the one it applied (the caller must not acknowledge them).
            let e = IngestError::from(e);
            for (_, r) in &mut out[first_ready..] {
                if r.is_ok() {
                    *r = Err(e.clone());
                }
            }
        }
        out
    }

    /// Takes an envelope from anywhere (a peer, a file) and does what the module docs say.
    pub fn ingest(&mut self, bytes: &[u8], now_ms: u64) -> Result<Ingested, IngestError> {
        self.ingest_from(bytes, None, now_ms)
    }

    /// [`Replica::ingest`] of an envelope pushed by the peer device `origin` (what it asks
    /// us to carry counts against its quota; `None`: no peer, e.g. a file).
    pub fn ingest_from(
        &mut self,
        bytes: &[u8],
        origin: Option<DeviceId>,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let env = Envelope::decode(bytes)?;
        if self.store.contains(&env.header().tag, &env.id())? {
            return Ok(Ingested::Duplicate);
        }
        // (Already listed when a batch routes it here.)
        let listed = origin.filter(|o| self.pushed_by.insert((env.id(), *o)));
        let r = self.ingest_decoded(&env, origin, now_ms);
        if let Some(o) = listed {
            self.pushed_by.remove(&(env.id(), o));
        }
        r
    }

    /// [`Replica::ingest`] after the duplicate check: also reads again an envelope the store
    /// already holds (one held unreadable), which stays stored whatever happens. `origin`
    /// as for [`Replica::ingest_from`].
    pub(super) fn ingest_decoded(
        &mut self,
        env: &Envelope,
        origin: Option<DeviceId>,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let tag = env.header().tag;
        if let Some(conv) = self.by_tag.get(&tag).copied() {
            // Seal local staged ops first so remote changes never mix with them.
            // They are reported by the next `seal_staged`, so the caller still pushes them.
            if self.convs.get(&conv).is_some_and(|c| !c.staged.is_empty()) {
                let sealed = self.seal_staged(now_ms).map_err(|e| match e {
                    CommandError::Store(s) => IngestError::Store(s),
                    other => IngestError::Store(StoreError::Io(other.to_string())),
                })?;
                self.sealed_unreported.extend(sealed);
            }
            let r = self.ingest_conversation(conv, env, now_ms);
            return self.refuse_on_error(env, r);
        }
        if env.header().kind == Kind::Invite && self.inbox_tags(now_ms).contains(&tag) {
            let r = self.ingest_invite(env, now_ms);
            return self.refuse_on_error(env, r);
        }
        if !self.carries() {
            return Ok(Ingested::NotWanted);
        }
        if env.header().is_expired(now_ms) {
            // Remember it as held-and-dropped, so reconciliation stops offering it.
            self.tombstone(&tag, &env.id())?;
            return Ok(Ingested::NotWanted);
        }
        self.carry(env, origin)
    }

    pub(super) fn refuse_on_error(
        &mut self,
        env: &Envelope,
        r: Result<Ingested, IngestError>,
    ) -> Result<Ingested, IngestError> {
        if let Err(e) = &r
            && e.is_peer_fault()
        {
            self.stats.refused += 1;
            // Remember the refusal so reconciliation does not fetch it again (a revoked
            // author's envelope may be judged again once a removal pins it: `revoked`).
            if e.tombstones() {
                self.tombstone(&env.header().tag, &env.id())?;
            }
        }
        r
    }

    pub(super) fn ingest_invite(
        &mut self,
        env: &Envelope,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        self.ingest_invite_with(env, now_ms, true)
    }

    /// Takes an invitation the user accepted: as a contact's, never held.
    pub(super) fn take_invite(
        &mut self,
        env: &Envelope,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        self.ingest_invite_with(env, now_ms, false)
    }

    fn ingest_invite_with(
        &mut self,
        env: &Envelope,
        now_ms: u64,
        may_hold: bool,
    ) -> Result<Ingested, IngestError> {
        let opened = envelope::open_invite(env, &self.me)?;
        let inv = Invitation::decode(&opened.payload)?;
        self.clock.observe(opened.hlc, now_ms);
        let conv_id = inv.secret.conversation_id(&inv.creator);
        // Checked against what is held: a conversation held is the same (secret, creator), and
        // a tag already bound is never bound again (the tag derives from both, so a known
        // secret with another creator is another conversation under another tag).
        let tag = crate::conversation::conversation_tag(&inv.secret, &inv.creator);
        if let Some(held) = self.convs.get(&conv_id)
            && (held.secret != inv.secret || held.creator != inv.creator)
        {
            return Err(IngestError::BadInvitation);
        }
        if self.by_tag.get(&tag).is_some_and(|c| *c != conv_id) {
            return Err(IngestError::BadInvitation);
        }
        if may_hold && self.must_hold(&conv_id, &opened.signer) {
            return self.hold_invitation(env, conv_id, opened.signer, now_ms);
        }
        self.store
            .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
        let mut readmit_tag = None;
        if !self.convs.contains_key(&conv_id) {
            if self.convs.len() >= MAX_CONVERSATIONS {
                return Err(IngestError::TooManyConversations);
            }
            let mut c = self.new_conversation(inv.secret.clone(), inv.creator);
            c.learn_actor(opened.signer);
            readmit_tag = Some(c.tag);
            self.add_conversation(c)?;
        }
        let mut new_keys = false;
        for (e, k) in inv.keys {
            if crypto::epoch_id(&k) == e {
                new_keys |= self.store_key(&conv_id, e, k)?;
            }
        }
        if let Some(tag) = readmit_tag {
            // Envelopes of this conversation carried before we were invited are ours now.
            let mut carried = Vec::new();
            self.store.for_each_id(&tag, &[0; 32], &mut |id| {
                carried.push(*id);
                true
            })?;
            let mut readmit = Vec::new();
            for id in carried {
                if let Some(b) = self.store.envelope(&tag, &id)?
                    && !b.is_empty()
                {
                    self.uncarry(&id)?;
                    self.store.remove_envelope(&tag, &id)?;
                    readmit.push(b);
                }
            }
            // Membership first, so authors are known when their changes are checked.
            readmit.sort_by_key(|b| {
                Envelope::decode(b)
                    .map(|e| e.header().kind != Kind::Control)
                    .unwrap_or(true)
            });
            let refs: Vec<&[u8]> = readmit.iter().map(|b| b.as_slice()).collect();
            let _ = self.ingest_batch(&refs, now_ms);
        }
        if new_keys {
            self.emit(Event::MembershipChanged(conv_id));
            self.wake_conversation(&conv_id, now_ms)?;
        }
        // Taken now: if it was held (acknowledged as deferred) or came another way, its
        // author is owed a receipt.
        self.owe_for_applied(&env.id(), opened.signer)?;
        Ok(Ingested::Invited(conv_id))
    }

    pub(super) fn ingest_conversation(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        match env.header().kind {
            Kind::Control => {
                self.store
                    .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
                match self.apply_control(conv, env, Some(now_ms)) {
                    // A parent has not arrived: stored and parked (bounded; not counted in
                    // the log), retried when the conversation's membership changes.
                    Ok(Ingested::Pending(_, Waiting::Parents)) => {
                        self.park(conv, env, Waiting::Parents)
                    }
                    Ok(r) => {
                        self.reresolve_pages(&conv, now_ms)?;
                        self.wake_conversation(&conv, now_ms)?;
                        Ok(r)
                    }
                    Err(e) => {
                        self.store.remove_envelope(&env.header().tag, &env.id())?;
                        self.store.delete(&keys::control(&conv, &env.id()))?;
                        Err(e)
                    }
                }
            }
            Kind::Change => self.ingest_change(conv, env, now_ms),
            Kind::Invite => Err(OpenError::WrongKind {
                expected: Kind::Change,
                got: Kind::Invite,
            }
            .into()),
        }
    }

    /// Opens a control envelope and inserts its operation. The envelope must already be stored.
    /// `now_ms` is the local time when the envelope came from elsewhere (`None` when it is
    /// replayed from the store at open): only then may its time move the clock, and never
    /// past [`crate::hlc::MAX_FORWARD_SKEW_MS`] ahead of local time. An operation whose
    /// parents have not all arrived is not inserted: `Pending(_, Waiting::Parents)`, and the
    /// caller parks it.
    pub(super) fn apply_control(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        now_ms: Option<u64>,
    ) -> Result<Ingested, IngestError> {
        let c = self
            .convs
            .get_mut(&conv)
            .ok_or(StoreError::Corrupt("conversation vanished".into()))?;
        let opened = envelope::open(env, &c.control_key, &c.id, &mut |_| Vec::new())?;
        let op = ControlOp::decode(&opened.payload)?;
        let hash = OpHash(opened.signed_hash);
        // Members before, with envelopes carried: one may stop being a member (and a
        // contact) without being named removed, when a concurrent removal rejects its `Add`.
        let mut was: Vec<DeviceId> = c
            .membership
            .state()
            .members
            .keys()
            .filter(|d| self.carried.holds(&Some(**d)))
            .copied()
            .collect();
        let inserted = match c.membership.insert(
            hash,
            Entry {
                signer: opened.signer,
                hlc: opened.hlc,
                op,
            },
        ) {
            Ok(inserted) => inserted,
            Err(membership::InsertError::Early) => {
                return Ok(Ingested::Pending(conv, Waiting::Parents));
            }
            Err(membership::InsertError::Outsider) => return Err(IngestError::ControlOutsider),
            Err(membership::InsertError::Full) => return Err(IngestError::ControlFull),
        };
        // Only devices the evaluated membership names become known actors (and so signer
        // candidates): never the devices of a rejected `Add`.
        let st = c.membership.state();
        let known: Vec<DeviceId> = st
            .members
            .keys()
            .chain(st.removed.keys())
            .copied()
            .collect();
        known.iter().for_each(|d| c.learn_actor(*d));
        if let Some(now_ms) = now_ms {
            self.clock.observe(opened.hlc, now_ms);
            self.store.put(&keys::control(&conv, &env.id()), &[])?;
            self.owe_for_applied(&env.id(), opened.signer)?;
        }
        if inserted {
            // Whose carried envelopes count as a contact's may have changed.
            was.extend(known);
            self.reclassify_carried(&was);
            self.learn_keys(&conv)?;
            self.emit(Event::MembershipChanged(conv));
        }
        Ok(Ingested::Applied(conv))
    }

    /// Replays a conversation's stored control envelopes at open, in causal order whatever
    /// the order they are stored in (an operation waits for its parents).
    pub(super) fn replay_controls(
        &mut self,
        conv: ConversationId,
        envs: Vec<Envelope>,
    ) -> Result<(), StoreError> {
        let mut left = envs;
        loop {
            let before = left.len();
            let mut still = Vec::new();
            for env in left {
                match self.apply_control(conv, &env, None) {
                    Ok(Ingested::Pending(..)) => still.push(env),
                    Err(IngestError::Store(e)) => return Err(e),
                    _ => {}
                }
            }
            left = still;
            if left.is_empty() || left.len() == before {
                return Ok(());
            }
        }
    }

    /// Opens key slots addressed to this device in the conversation's operations.
    pub(super) fn learn_keys(&mut self, conv: &ConversationId) -> Result<(), StoreError> {
        let me = self.me.clone();
        let Some(c) = self.convs.get_mut(conv) else {
            return Ok(());
        };
        // Keys offered before membership knew their epoch, that turn out not to match it.
        let st = c.membership.state();
        let wrong: Vec<EpochId> = c
            .keys
            .iter()
            .filter(|(e, k)| st.key_matches(e, k) == Some(false))
            .map(|(e, _)| *e)
            .collect();
        for e in wrong {
            c.keys.remove(&e);
            self.store.delete(&keys::epoch_key(conv, &e))?;
        }
        let Some(c) = self.convs.get(conv) else {
            return Ok(());
        };
        let mut found = Vec::new();
        for h in &c.membership.state().order {
            let Some(e) = c.membership.entry(h) else {
                continue;
            };
            if let Action::Keys { epoch, slots, .. } = &e.op.action {
                if c.key(epoch).is_some() {
                    continue;
                }
                if let Some(slot) = slots.iter().find(|s| s.device == me.device_id())
                    && let Some(k) = membership::open_slot(&me, &c.id, epoch, &e.signer, slot)
                {
                    found.push((*epoch, k));
                }
            }
        }
        // Keys of voided epochs, shared by a member that held one (`share_voided_keys`): in
        // rejected operations, taken only if the key matches the check of the voided
        // rotation that started the epoch (`Conversation::read_key`).
        for h in c.membership.state().rejected.keys() {
            let Some(e) = c.membership.entry(h) else {
                continue;
            };
            if let Action::Keys {
                epoch,
                check,
                slots,
                ..
            } = &e.op.action
            {
                // Cheapest tests first: junk operations may be many.
                let Some(slot) = slots.iter().find(|s| s.device == me.device_id()) else {
                    continue;
                };
                if c.membership.state().epoch(epoch).is_some()
                    || c.keys.contains_key(epoch)
                    || found.iter().any(|(e, _)| e == epoch)
                    || !c.membership.records_check(epoch, check)
                {
                    continue;
                }
                if let Some(k) = membership::open_slot(&me, &c.id, epoch, &e.signer, slot)
                    && membership::key_check(&k) == *check
                {
                    found.push((*epoch, k));
                }
            }
        }
        for (e, k) in found {
            self.store_key(conv, e, k)?;
        }
        Ok(())
    }

    /// The general path for a change envelope: verify, then settle.
    pub(super) fn ingest_change(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let verdict = self.verify_change(conv, env)?;
        self.settle_change(conv, env, verdict, now_ms)
    }

    /// The one verification of change envelopes, for both paths: key for the epoch → decrypt
    /// and verify the signature (the signer must be a device the conversation knows: the
    /// actor binding) → page number and changes → page rules (each change well-formed and
    /// by the signer's actor) → membership (the signer may write this page up to this
    /// sequence number). No store writes and no randomness: what it concludes is settled by
    /// [`Replica::settle_change`]; an error refuses the envelope ([`Replica::refuse_on_error`]).
    ///
    /// Dependencies are checked where the changes are applied, against the page: one at a
    /// time in [`Replica::settle_change`], by group in [`Replica::apply_group`]. The two
    /// paths differ only there, and on purpose:
    /// * the batch path applies one (conversation, page) group in one Automerge call, emits
    ///   one `MessagesChanged` per group, and sends what lacks a dependency within the group
    ///   (or a group whose application failed) through the general path, which verifies it
    ///   again against the state after the whole batch's general-path envelopes;
    /// * the general path learns the signer's actor before the dependency check (so it is
    ///   known even if the envelope is parked); the batch path after applying, since nothing
    ///   reads it in between.
    pub(super) fn verify_change(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
    ) -> Result<Verdict, IngestError> {
        let epoch = env.header().epoch;
        let c = self
            .convs
            .get(&conv)
            .ok_or(StoreError::Corrupt("conversation vanished".into()))?;
        let Some(key) = c.read_key(&epoch).copied() else {
            // Known epoch not granted to us: unreadable for good. Unknown: wait for it.
            let known = c.membership.state().epoch(&epoch).is_some();
            if known && c.membership.state().is_member(&self.me.device_id()) {
                return Ok(Verdict::Unreadable);
            }
            return Ok(Verdict::Wait(Waiting::Epoch(epoch)));
        };
        let opened =
            match envelope::open_cached(env, &key, &c.id, &mut self.keys, &mut |h| c.signers(h)) {
                // Its author is not known here yet (its membership has not arrived).
                Err(OpenError::UnknownSigner(hint)) => {
                    return Ok(Verdict::Wait(Waiting::Signer(hint)));
                }
                r => r?,
            };
        // A revoked member's change this replica did not hold, whatever time it claims.
        if self.refused_as_revoked(&conv, &opened.signer) {
            return Err(IngestError::AuthorRevoked);
        }
        let mut r = Reader::new(&opened.payload);
        let page_no = r.u32_varint("page")?;
        let actor = opened.signer.actor();
        let changes = decode_changes(r.rest(), &actor)?;
        let mut checked = Vec::with_capacity(changes.len());
        let mut newest = Hlc::default();
        let mut acks = Vec::new();
        for ch in changes {
            let found = page::check_change_full(&ch, &actor)?;
            newest = newest.max(found.newest);
            if !found.acks.is_empty() {
                acks.push((checked.len(), found.acks));
            }
            checked.push((ch, found.created));
        }
        // Refused only when every change is past what the page takes from a removed
        // device: an envelope that also holds changes the page takes is stored, and the
        // page leaves out the rest ([`crate::page::Page::set_late_ceilings`]), as a replica
        // that took it before it learnt of the removal does.
        let first_seq = checked.iter().map(|(c, _)| c.seq()).min().unwrap_or(0);
        match c
            .membership
            .state()
            .change_allowed(&opened.signer, page_no, first_seq)
        {
            None => Ok(Verdict::Wait(Waiting::Author(opened.signer))),
            Some(false) => Err(IngestError::AuthorRemoved),
            Some(true) => Ok(Verdict::Ready(Checked {
                page: page_no,
                signer: opened.signer,
                hlc: newest,
                changes: checked,
                acks,
            })),
        }
    }

    /// Acts on a verdict, one envelope at a time: stores and parks what waits, stores what
    /// is unreadable, and applies what is ready unless a dependency is missing (then it is
    /// stored and parked too).
    pub(super) fn settle_change(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        verdict: Verdict,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let checked = match verdict {
            Verdict::Ready(checked) => checked,
            Verdict::Wait(Waiting::Epoch(epoch)) => {
                // Not decrypted: bounded apart (anyone who knows the tag can send these).
                return self.park_unverified(conv, env, epoch);
            }
            Verdict::Wait(waiting) => {
                self.store
                    .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
                return self.park(conv, env, waiting);
            }
            Verdict::Unreadable => {
                self.store
                    .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
                self.hold_unreadable(conv, env.id(), env.header().epoch)?;
                return Ok(Ingested::Unreadable(conv));
            }
        };
        let Checked {
            page: page_no,
            signer,
            hlc: newest,
            changes: checked,
            acks,
        } = checked;
        let epoch = env.header().epoch;
        self.ensure_page(&conv, page_no).map_err(|e| match e {
            CommandError::Store(s) => IngestError::Store(s),
            other => IngestError::Store(StoreError::Corrupt(other.to_string())),
        })?;
        let c = self
            .convs
            .get_mut(&conv)
            .ok_or(StoreError::Corrupt("conversation vanished".into()))?;
        c.learn_actor(signer);
        let page = self
            .pages
            .get_mut(&conv, page_no)
            .ok_or(StoreError::Corrupt("page vanished".into()))?;
        let only: Vec<Change> = checked.iter().map(|(c, _)| c.clone()).collect();
        let missing = page.missing_deps(&only);
        if !missing.is_empty() {
            self.store
                .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
            return self.park(conv, env, Waiting::Dependencies(missing));
        }
        let hashes: Vec<ChangeHash> = only.iter().map(|c| c.hash()).collect();
        if !hashes.iter().all(|h| page.holds(h)) {
            // Acknowledgements name messages their author saw (a refusal tombstones it).
            for (i, keys) in &acks {
                page.check_acks(&only[*i], keys)?;
            }
        }
        if hashes.iter().all(|h| page.holds(h)) {
            // Every change is in the page already: the same content under another envelope
            // (its author sealed it twice). Held, so reconciliation does not fetch it again,
            // but not journalled: replaying it would apply the changes twice.
            self.store
                .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
            return Ok(Ingested::Duplicate);
        }
        if page.contested(&only) {
            // Before the journal entry (which may save the page whole).
            self.note_own_changes(&conv, page_no, env.id(), signer, &only);
            let r = self.settle_contested(conv, env, page_no, newest, only, now_ms)?;
            self.owe_for_applied(&env.id(), signer)?;
            return Ok(r);
        }
        if let Err(e) = page.apply(checked) {
            // Whatever failed (a rule, an Automerge error part-way, a panic), the document may
            // be half-updated: drop it; it reloads from durable state.
            self.pages.discard(&conv, page_no);
            return Err(e.into());
        }
        self.clock.observe(newest, now_ms);
        // Before the journal entry (which may save the page whole).
        self.note_own_changes(&conv, page_no, env.id(), signer, &only);
        let stored = (|| -> Result<(), StoreError> {
            self.store
                .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
            self.note_page_epoch(&conv, page_no, epoch)?;
            self.journal(&conv, page_no, &env.id())
        })();
        if let Err(e) = stored {
            // Applied in memory but not stored (disk full, I/O error): drop the page so that
            // memory is what the store holds, and the envelope is applied again when it
            // comes back (else it would look like a duplicate and never be journalled).
            self.pages.discard(&conv, page_no);
            return Err(e.into());
        }
        self.stats.applied += 1;
        self.emit(Event::Applied {
            conversation: conv,
            envelope: env.id(),
        });
        self.emit(Event::MessagesChanged {
            conversation: conv,
            page: page_no,
        });
        self.owe_for_applied(&env.id(), signer)?;
        self.wake_deps(&hashes)?;
        Ok(Ingested::Applied(conv))
    }

    /// Decides again the loaded pages of `conv` that hold changes out, or hold a removed
    /// device's changes past its ceiling, with what removals pin now (pages not loaded are
    /// decided again when they load).
    pub(super) fn reresolve_pages(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let Some(c) = self.convs.get(conv) else {
            return Ok(());
        };
        let loaded = self.pages.loaded(conv);
        let pins: Vec<(u32, BTreeSet<ChangeHash>, crate::page::LateCeilings)> = loaded
            .iter()
            .map(|n| {
                (
                    *n,
                    super::load::pinned_hashes(c, *n),
                    super::load::late_ceilings(c, *n),
                )
            })
            .collect();
        for (n, pinned, ceilings) in pins {
            let Some(page) = self.pages.get_mut(conv, n) else {
                continue;
            };
            page.set_late_ceilings(ceilings);
            // A removal that arrived now may leave out changes its device wrote past the
            // ceiling, which this replica took before it knew.
            if !(page.has_held_out() || page.over_ceiling()) || page.has_staged() {
                continue;
            }
            let before = own_messages(page, &self.me.device_id());
            match page.resolve(Vec::new(), &pinned) {
                Ok(r) if r.removed.is_empty() => {}
                Ok(r) => {
                    self.emit(Event::MessagesChanged {
                        conversation: *conv,
                        page: n,
                    });
                    self.send_again(conv, n, &before, &r.left, now_ms)?;
                }
                // Reloads from durable state (and is decided again there).
                Err(_) => self.pages.discard(conv, n),
            }
        }
        Ok(())
    }

    /// Sends again, as new messages on what the page keeps, our own messages that were in
    /// `before` and whose creating change is among `left` (changes that left the page: built
    /// on a fork that lost, or on a removed device's change past its ceiling). Their edits
    /// and reactions are not redone.
    fn send_again(
        &mut self,
        conv: &ConversationId,
        page_no: u32,
        before: &BTreeMap<String, MessageView>,
        left: &[Change],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mine = self.me.device_id().actor();
        let lost: Vec<MessageView> = left
            .iter()
            .filter(|c| c.actor_id() == &mine)
            .flat_map(|c| own_created(c, page_no))
            .filter_map(|id| before.get(&id.key).cloned())
            .filter(|m| !m.deleted)
            .collect();
        for m in lost {
            let draft = Draft {
                body: m.body,
                reply_to: m.reply_to,
                precedence: m.precedence,
                expiry: m.expiry,
            };
            match self.send_message(conv, draft, now_ms) {
                Ok(_) => {}
                Err(CommandError::Store(e)) => return Err(e),
                // Not a member any more, no key, every epoch used: nothing to send with.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// [`Replica::settle_change`] for changes that equivocate or build on a held-out change:
    /// the page decides again what its document holds ([`Page::resolve`], the same on every
    /// replica with the same changes), rebuilding it if a fork it held loses now. The envelope
    /// is stored and journalled like any other, whatever lost, so both forks spread and a
    /// reload decides the same. A device newly found equivocating is recorded (`v/`) and
    /// shown by [`Replica::info`].
    fn settle_contested(
        &mut self,
        conv: ConversationId,
        env: &Envelope,
        page_no: u32,
        newest: Hlc,
        changes: Vec<Change>,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        let page = self
            .pages
            .get_mut(&conv, page_no)
            .ok_or(StoreError::Corrupt("page vanished".into()))?;
        // Our own messages as they stand, in case a fork they were built on loses now.
        let before = own_messages(page, &self.me.device_id());
        let pinned = super::load::pinned_hashes(&self.convs[&conv], page_no);
        let page = self
            .pages
            .get_mut(&conv, page_no)
            .ok_or(StoreError::Corrupt("page vanished".into()))?;
        let resolved = match page.resolve(changes, &pinned) {
            Ok(r) => r,
            Err(e) => {
                self.pages.discard(&conv, page_no);
                return Err(e.into());
            }
        };
        self.clock.observe(newest, now_ms);
        let stored = (|| -> Result<(), StoreError> {
            self.store
                .put_envelope(&env.header().tag, &env.id(), env.bytes())?;
            self.note_page_epoch(&conv, page_no, env.header().epoch)?;
            self.journal(&conv, page_no, &env.id())?;
            let c = &self.convs[&conv];
            let flagged: Vec<DeviceId> = resolved
                .new_equivocators
                .iter()
                .filter_map(|a| c.device_of_actor(a))
                .collect();
            for d in flagged {
                self.store.put(&keys::equivocator(&conv, &d), &[])?;
            }
            Ok(())
        })();
        if let Err(e) = stored {
            self.pages.discard(&conv, page_no);
            return Err(e.into());
        }
        self.stats.applied += 1;
        self.emit(Event::Applied {
            conversation: conv,
            envelope: env.id(),
        });
        self.emit(Event::MessagesChanged {
            conversation: conv,
            page: page_no,
        });
        if !resolved.new_equivocators.is_empty() {
            self.emit(Event::MembershipChanged(conv));
        }
        // What waited on these changes is decided now too (held out if built on a loser).
        self.wake_deps(&hashes)?;
        // Our own messages built on a fork that lost are held out everywhere: send them
        // again, as new messages on what is kept (their edits and reactions are not redone).
        self.send_again(&conv, page_no, &before, &resolved.left, now_ms)?;
        Ok(Ingested::Applied(conv))
    }
}

/// Our own messages in `page` as they stand, by key.
fn own_messages(page: &Page, me: &DeviceId) -> BTreeMap<String, MessageView> {
    let mine = me.actor();
    page.messages()
        .into_iter()
        .filter(|m| m.actor == mine.to_bytes())
        .map(|m| (m.id.key.clone(), m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::Faulty;

    const T0: u64 = 1_790_000_000_000;

    fn text(s: &str) -> Draft {
        Draft {
            body: s.into(),
            ..Draft::default()
        }
    }

    #[test]
    fn a_failed_wake_is_reported_by_both_paths() {
        for batch in [false, true] {
            let (mut a, mut b, c) =
                super::super::testing::joined_pair(Faulty::new(&MemoryStore::new()), T0);
            let tag = a.conversation(&c).unwrap().tag;
            let (_, first) = a.send_message(&c, text("one"), T0 + 1).unwrap();
            let (_, second) = a.send_message(&c, text("two"), T0 + 2).unwrap();
            let first = a.store().envelope(&tag, &first).unwrap().unwrap();
            let second = a.store().envelope(&tag, &second).unwrap().unwrap();
            assert!(matches!(
                b.ingest(&second, T0 + 3).unwrap(),
                Ingested::Pending(_, Waiting::Dependencies(_))
            ));
            // Waking the second envelope unparks it, which deletes its `q/` record: refused.
            b.store().fail_deletes(true);
            let r = if batch {
                b.ingest_batch(&[first.as_slice()], T0 + 4).remove(0).result
            } else {
                b.ingest(&first, T0 + 4)
            };
            assert!(
                matches!(r, Err(IngestError::Store(StoreError::Io(_)))),
                "batch {batch}: {r:?}"
            );
            // Not a peer fault: the first envelope is stored, not a tombstone.
            assert!(
                !b.store()
                    .envelope(&tag, &Envelope::decode(&first).unwrap().id())
                    .unwrap()
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
