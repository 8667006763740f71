//! Local writes: conversations, members, profiles, messages.

use super::*;

/// Bytes staged on one page before what is staged is sealed on its own: half the
/// decompressed limit a receiver accepts ([`crate::limits::MAX_CHANGES_BYTES`]), so that an
/// Automerge change's own overhead can never push an envelope past it.
const MAX_STAGED_BYTES: usize = crate::limits::MAX_CHANGES_BYTES / 2;
/// A message's share of a change beyond its body (keys, timestamps, reply, precedence),
/// counted generously.
const STAGED_MESSAGE_OVERHEAD: usize = 256;

impl<S: Store> Replica<S> {
    /// A timestamp for a local event. The store holds a bound above every timestamp issued
    /// ([`CLOCK_LEASE_MS`] ahead of the newest when written), rewritten only when the clock
    /// reaches it: at most about one write a second instead of one per event (issue 11:
    /// a value rewritten per message fills sled's log with stale copies). After a restart
    /// the clock resumes at the bound, so it never runs backwards, and is at most
    /// [`CLOCK_LEASE_MS`] ahead of the last timestamp issued.
    pub(super) fn tick(&mut self, now_ms: u64) -> Result<Hlc, StoreError> {
        let h = self.clock.tick(now_ms);
        if h.ms >= self.clock_bound_ms {
            let bound = h.ms.saturating_add(CLOCK_LEASE_MS).min(Hlc::MAX_MS);
            let packed = Hlc {
                ms: bound,
                counter: 0,
            }
            .pack();
            self.store.put(keys::HLC, &packed.to_be_bytes())?;
            self.clock_bound_ms = bound;
        }
        Ok(h)
    }

    pub(super) fn add_conversation(
        &mut self,
        c: Conversation,
    ) -> Result<ConversationId, StoreError> {
        let id = c.id;
        // A tag is bound to one conversation for good.
        if self.by_tag.get(&c.tag).is_some_and(|held| *held != id) {
            return Err(StoreError::Corrupt(
                "a conversation tag is bound already".into(),
            ));
        }
        let mut rec = c.secret.0.to_vec();
        rec.extend_from_slice(&c.creator.0);
        self.store.put(&keys::conv(&id), &rec)?;
        for (e, k) in &c.keys {
            self.store.put(&keys::epoch_key(&id, e), k)?;
        }
        self.by_tag.insert(c.tag, id);
        let members: Vec<DeviceId> = c.membership.state().members.keys().copied().collect();
        self.convs.insert(id, c);
        self.reclassify_carried(&members);
        self.emit(Event::ConversationAdded(id));
        Ok(id)
    }

    pub(super) fn store_key(
        &mut self,
        id: &ConversationId,
        epoch: EpochId,
        k: Key,
    ) -> Result<bool, StoreError> {
        let Some(c) = self.convs.get_mut(id) else {
            return Ok(false);
        };
        // A key that does not match the check membership records for its epoch is never
        // kept; one for an epoch not known yet is kept unverified ([`Conversation::key`] does
        // not give it out) and gives way to a verified one.
        let st = c.membership.state();
        let verdict = st.key_matches(&epoch, &k);
        if verdict == Some(false) {
            return Ok(false);
        }
        if let Some(old) = c.keys.get(&epoch)
            && (*old == k || st.key_matches(&epoch, old) == Some(true) || verdict.is_none())
        {
            return Ok(false);
        }
        c.keys.insert(epoch, k);
        self.store.put(&keys::epoch_key(id, &epoch), &k)?;
        Ok(true)
    }

    /// Creates a conversation with this device as its first admin.
    pub fn create_conversation(
        &mut self,
        title: &str,
        history: History,
        now_ms: u64,
    ) -> Result<(ConversationId, EnvelopeId), CommandError> {
        if self.convs.len() >= MAX_CONVERSATIONS {
            return Err(CommandError::Store(StoreError::Full));
        }
        let secret = ConversationSecret(self.seed32());
        let mut c = self.new_conversation(secret, self.me.device_id());
        let first = c.secret.first_epoch_key();
        c.keys.insert(crypto::epoch_id(&first), first);
        let id = self.add_conversation(c)?;
        let env = self.control(
            &id,
            Action::Create {
                title: truncate(title, crate::limits::MAX_NAME_BYTES),
                history,
            },
            now_ms,
        )?;
        if history == History::FromJoin {
            // The first epoch's key derives from the secret, which every newcomer receives:
            // from-join writes under a fresh key from the start.
            let me: BTreeSet<DeviceId> = [self.me.device_id()].into();
            self.rotate(&id, me, now_ms)?;
        }
        Ok((id, env))
    }

    /// Seals, stores and applies one membership operation.
    pub(super) fn control(
        &mut self,
        id: &ConversationId,
        action: Action,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let hlc = self.tick(now_ms)?;
        let salt = self.salt();
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let op = ControlOp {
            parents: c.membership.heads(),
            action,
        };
        let header = Header {
            kind: Kind::Control,
            precedence: Precedence::Flash,
            tag: c.tag,
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let env = envelope::seal(
            &header,
            &c.control_key,
            &c.id,
            &self.me,
            hlc,
            &op.encode(),
            salt,
        );
        let eid = env.id();
        self.store.put_envelope(&header.tag, &eid, env.bytes())?;
        self.record_sealed(Sealed::of(eid, &header, *id, Vec::new()));
        match self.apply_control(*id, &env, Some(now_ms)) {
            Ok(_) => Ok(eid),
            Err(IngestError::ControlFull) => Err(CommandError::ControlFull),
            Err(e) => Err(CommandError::Store(StoreError::Corrupt(e.to_string()))),
        }
    }

    pub(super) fn salt(&mut self) -> [u8; envelope::SALT_LEN] {
        let mut s = [0u8; envelope::SALT_LEN];
        self.rng.fill_bytes(&mut s);
        s
    }

    pub(super) fn require_admin(&self, id: &ConversationId) -> Result<&Conversation, CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let st = c.membership.state();
        if !st.is_member(&self.me.device_id()) {
            return Err(CommandError::NotMember);
        }
        if !st.is_admin(&self.me.device_id()) {
            return Err(CommandError::NotAdmin);
        }
        Ok(c)
    }

    /// Adds a member by device id alone: a signed `Add` in the conversation and an invitation
    /// (the secret and the keys it may read) sealed to the device, under its inbox tag.
    /// Returns the envelopes created.
    pub fn add_member(
        &mut self,
        id: &ConversationId,
        device: DeviceId,
        admin: bool,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, CommandError> {
        self.add_members(id, &[device], admin, now_ms)
    }

    /// Adds several members with one `Add` operation (an organisation enrolling a team), and
    /// one invitation each.
    pub fn add_members(
        &mut self,
        id: &ConversationId,
        devices: &[DeviceId],
        admin: bool,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, CommandError> {
        if let Some(bad) = devices.iter().find(|d| !d.is_valid()) {
            return Err(CommandError::BadDevice(bad.to_string()));
        }
        let mut devices: Vec<DeviceId> = devices.to_vec();
        devices.sort();
        devices.dedup();
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.require_admin(id)?;
        let history = c.membership.state().history;
        let mut out = Vec::new();
        let newcomers = devices.iter().any(|d| !c.membership.state().is_member(d));
        if history == History::FromJoin && newcomers {
            // Rotate so the newcomers read only from now on.
            let mut holders: BTreeSet<DeviceId> =
                c.membership.state().members.keys().copied().collect();
            holders.extend(devices.iter().copied());
            out.push(self.rotate(id, holders, now_ms)?);
        }
        let c = &self.convs[id];
        let grant: Vec<(EpochId, Key)> = match history {
            History::Shared => c
                .keys
                .keys()
                .filter_map(|e| c.key(e).map(|k| (*e, *k)))
                .collect(),
            History::FromJoin => c.sending_epoch().into_iter().collect(),
        };
        let mut epochs: Vec<EpochId> = grant.iter().map(|(e, _)| *e).collect();
        epochs.sort();
        out.push(self.control(
            id,
            Action::Add {
                devices: devices.clone(),
                admin,
                epochs,
            },
            now_ms,
        )?);
        for d in devices {
            out.push(self.invite(id, d, grant.clone(), now_ms)?);
        }
        Ok(out)
    }

    pub(super) fn invite(
        &mut self,
        id: &ConversationId,
        device: DeviceId,
        keys: Vec<(EpochId, Key)>,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let inv = Invitation {
            secret: c.secret.clone(),
            creator: c.creator,
            keys,
        };
        let hlc = self.tick(now_ms)?;
        let header = Header {
            kind: Kind::Invite,
            precedence: Precedence::Immediate,
            tag: crypto::inbox_tag(&device, crypto::day_of(now_ms)),
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let seed = self.seed32();
        let env = envelope::seal_invite(&header, &self.me, &device, hlc, &inv.encode(), seed)?;
        // Marked ours before it is stored, so that no open takes it for a carried envelope
        // (the tag is the invitee's, and the sealer cannot open it again to see the signer).
        self.record_sent_invitation(
            &env.id(),
            super::sent::SentInvitation {
                conv: *id,
                invitee: Some(device),
                sealed_at: now_ms,
                tag: Some(header.tag),
            },
        )?;
        self.store
            .put_envelope(&header.tag, &env.id(), env.bytes())?;
        self.record_sealed(Sealed::of(env.id(), &header, *id, Vec::new()));
        Ok(env.id())
    }

    /// Removes a member (or, with this device's id, leaves). An admin then rotates the key
    /// so the removed device cannot read anything new.
    pub fn remove_member(
        &mut self,
        id: &ConversationId,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, CommandError> {
        let me = self.me.device_id();
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let st = c.membership.state();
        if !st.is_member(&me) {
            return Err(CommandError::NotMember);
        }
        if device != me && !st.is_admin(&me) {
            return Err(CommandError::NotAdmin);
        }
        if !st.is_member(&device) {
            return Err(CommandError::NoSuchMember(device.to_string()));
        }
        // Pin what the removed device wrote, page by page, as this device has seen it.
        let pages: Vec<u32> = c.pages().collect();
        let actor = actor_bytes(&device);
        let mut pins = Vec::new();
        for p in pages {
            self.ensure_page(id, p)?;
            let page = self.pages.get(id, p).expect("loaded by ensure_page");
            if let Some(pr) = page.progress(&actor) {
                pins.push(Pin {
                    page: p,
                    seq: pr.seq,
                    max_op: pr.max_op,
                    hash: Some(pr.last_hash),
                });
            }
        }
        let mut out = vec![self.control(id, Action::Remove { device, pins }, now_ms)?];
        if device != me {
            let holders: BTreeSet<DeviceId> = self.convs[id]
                .membership
                .state()
                .members
                .keys()
                .copied()
                .collect();
            match self.rotate(id, holders, now_ms) {
                Ok(e) => out.push(e),
                // The removal holds; sending is refused from now on (`stage_message`).
                Err(CommandError::EpochsExhausted) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Sets this device's display name in a conversation.
    pub fn set_profile(
        &mut self,
        id: &ConversationId,
        name: &str,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        self.control(
            id,
            Action::Profile {
                name: truncate(name, crate::limits::MAX_NAME_BYTES),
            },
            now_ms,
        )
    }

    /// Renames a conversation (admins only; the title is cut to the name limit).
    pub fn set_title(
        &mut self,
        id: &ConversationId,
        title: &str,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        self.require_admin(id)?;
        self.control(
            id,
            Action::Title {
                title: truncate(title, crate::limits::MAX_NAME_BYTES),
            },
            now_ms,
        )
    }

    /// Stages a message (sealed by [`Replica::seal_staged`]); messages staged together travel
    /// in one envelope, which is much smaller than one envelope each.
    pub fn stage_message(
        &mut self,
        id: &ConversationId,
        draft: Draft,
        now_ms: u64,
    ) -> Result<MessageId, CommandError> {
        if draft.body.is_empty() {
            return Err(CommandError::EmptyBody);
        }
        let me = self.me.device_id();
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if !c.membership.state().is_member(&me) {
            return Err(CommandError::NotMember);
        }
        if c.membership.state().rotation_exhausted() {
            return Err(CommandError::EpochsExhausted);
        }
        let Some((epoch, _)) = c.sending_epoch() else {
            return Err(CommandError::NoKey);
        };
        let top = c.top_page();
        self.ensure_page(id, top)?;
        let c = &self.convs[id];
        let flash = draft.precedence == Precedence::Flash;
        let page_no = c.page_for(&epoch, flash, |p| self.pages.get(id, p).map(|pg| pg.len()));
        self.ensure_page(id, page_no)?;
        // What is staged on a page travels in one envelope, which every receiver must
        // accept: past the bound, seal what is staged first and start a new change.
        let cost = draft.body.len() + STAGED_MESSAGE_OVERHEAD;
        let staged_bytes = self.convs[id].staged.get(&page_no).map_or(0, |s| s.bytes);
        if staged_bytes > 0
            && staged_bytes + cost > MAX_STAGED_BYTES
            && draft.body.len() <= crate::limits::MAX_BODY_BYTES
        {
            let sealed = self.seal_page(id, page_no, now_ms)?;
            // Reported by the next `seal_staged`, with the rest of the batch.
            self.sealed_unreported.push(sealed);
        }
        let hlc = self.tick(now_ms)?;
        let c = self
            .convs
            .get_mut(id)
            .ok_or(CommandError::NoSuchConversation)?;
        let page = self
            .pages
            .get_mut(id, page_no)
            .ok_or(CommandError::NoSuchConversation)?;
        let mid = page.add_message(hlc, &draft)?;
        c.known_pages.insert(page_no);
        self.piggyback_read(id, page_no, now_ms);
        let c = self
            .convs
            .get_mut(id)
            .ok_or(CommandError::NoSuchConversation)?;
        let st = c.staged.entry(page_no).or_insert(Staged {
            precedence: draft.precedence,
            expiry: draft.expiry,
            bytes: 0,
        });
        st.bytes += cost;
        st.precedence = st.precedence.max(draft.precedence);
        st.expiry = match (st.expiry, draft.expiry) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Ok(mid)
    }

    /// Seals every staged page into envelopes (one per page), stores them. Returns their ids.
    /// Read watermarks that are due ([`Replica::mark_read`]) are staged first and travel with
    /// the rest.
    pub fn seal_staged(&mut self, now_ms: u64) -> Result<Vec<EnvelopeId>, CommandError> {
        self.stage_due_reads(now_ms)?;
        let work: Vec<(ConversationId, u32)> = self
            .convs
            .iter()
            .flat_map(|(id, c)| c.staged.keys().map(move |p| (*id, *p)))
            .collect();
        let mut out = std::mem::take(&mut self.sealed_unreported);
        for (id, p) in work {
            out.push(self.seal_page(&id, p, now_ms)?);
        }
        Ok(out)
    }

    pub(super) fn seal_page(
        &mut self,
        id: &ConversationId,
        p: u32,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let hlc = self.tick(now_ms)?;
        let salt = self.salt();
        let c = self
            .convs
            .get_mut(id)
            .ok_or(CommandError::NoSuchConversation)?;
        let staged = c.staged.remove(&p).unwrap_or(Staged {
            precedence: Precedence::Routine,
            expiry: None,
            bytes: 0,
        });
        let (epoch, key) = c.sending_epoch().ok_or(CommandError::NoKey)?;
        let page = self
            .pages
            .get_mut(id, p)
            .ok_or(CommandError::NoSuchConversation)?;
        let Some(change) = page.commit() else {
            return Err(CommandError::EmptyBody);
        };
        let created: Vec<MessageId> =
            match page::check_change(&change, &self.me.device_id().actor()) {
                Ok(_) => own_created(&change, p),
                Err(e) => return Err(e.into()),
            };
        let mut payload = Writer::new();
        payload.varint(u64::from(p));
        // Our own fresh change always has our actor; failing here is a bug, not bad input.
        let raw = encode_changes(std::slice::from_ref(&change), &self.me.device_id().actor())
            .map_err(|e| RuleError::Malformed(e.to_string()))?;
        payload.raw(&with_codec(|codec| codec.compress(&raw)));
        let header = Header {
            kind: Kind::Change,
            precedence: staged.precedence,
            tag: c.tag,
            epoch,
            expiry: staged.expiry,
        };
        let env = envelope::seal(
            &header,
            &key,
            &c.id,
            &self.me,
            hlc,
            payload.as_slice(),
            salt,
        );
        let eid = env.id();
        self.store.put_envelope(&header.tag, &eid, env.bytes())?;
        // Kept with the page (saved with it, recovered from the journal after a crash).
        self.pages.note_own(id, p, &created, eid);
        self.record_sealed(Sealed::of(eid, &header, *id, created));
        self.note_page_epoch(id, p, epoch)?;
        self.journal(id, p, &eid)?;
        self.emit(Event::MessagesChanged {
            conversation: *id,
            page: p,
        });
        self.wake_deps(&[change.hash()])?;
        Ok(eid)
    }

    /// Sends one message: stage and seal. Returns its id and envelope.
    pub fn send_message(
        &mut self,
        id: &ConversationId,
        draft: Draft,
        now_ms: u64,
    ) -> Result<(MessageId, EnvelopeId), CommandError> {
        let mid = self.stage_message(id, draft, now_ms)?;
        let env = self.seal_page(id, mid.page, now_ms)?;
        Ok((mid, env))
    }

    pub(super) fn edit(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
        f: impl FnOnce(&mut Page, Hlc) -> Result<(), RuleError>,
    ) -> Result<EnvelopeId, CommandError> {
        let me = self.me.device_id();
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if !c.membership.state().is_member(&me) {
            return Err(CommandError::NotMember);
        }
        self.ensure_page(id, msg.page)?;
        let hlc = self.tick(now_ms)?;
        let c = self
            .convs
            .get_mut(id)
            .ok_or(CommandError::NoSuchConversation)?;
        let page = self
            .pages
            .get_mut(id, msg.page)
            .ok_or(CommandError::NoSuchConversation)?;
        f(page, hlc)?;
        c.staged.entry(msg.page).or_insert(Staged {
            precedence: Precedence::Routine,
            expiry: None,
            bytes: 0,
        });
        self.seal_page(id, msg.page, now_ms)
    }

    pub fn edit_message(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
        body: &str,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        if body.is_empty() {
            return Err(CommandError::EmptyBody);
        }
        self.edit(id, msg, now_ms, |p, h| p.edit_message(&msg.key, body, h))
    }

    pub fn delete_message(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        self.edit(id, msg, now_ms, |p, h| p.delete_message(&msg.key, h))
    }

    pub fn react(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
        emoji: Option<&str>,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        self.edit(id, msg, now_ms, |p, _| p.react(&msg.key, emoji))
    }
}
