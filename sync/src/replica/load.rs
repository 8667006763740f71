//! Loading: the replica's state from its store at open, and pages on demand.

use super::page_cache::decode_saved;
use super::*;

impl<S: Store> Replica<S> {
    pub(super) fn load(&mut self) -> Result<(), StoreError> {
        self.load_held()?;
        self.load_owed()?;
        self.load_invites()?;
        self.load_sent()?;
        if let Some(h) = self.store.get(keys::HLC)?
            && let Ok(v) = <[u8; 8]>::try_from(h.as_slice())
        {
            let bound = Hlc::unpack(u64::from_be_bytes(v));
            self.clock = Clock::resume(bound);
            self.clock_bound_ms = bound.ms;
        }
        let mut journals = self.load_journal()?;
        // Stores written before issue 11 kept own messages' envelope ids in `m/` records.
        let mut legacy = false;
        self.store.scan_keys(keys::OWN_MESSAGE, &mut |_| {
            legacy = true;
            false
        })?;
        self.pages.legacy_own = legacy;
        let mut records = Vec::new();
        self.store.scan_prefix(keys::CONVERSATION, &mut |k, v| {
            records.push((k.to_vec(), v.to_vec()));
            true
        })?;
        for (_, v) in records {
            if v.len() != 64 {
                continue;
            }
            let secret = ConversationSecret(v[..32].try_into().unwrap_or([0; 32]));
            let creator = DeviceId(v[32..].try_into().unwrap_or([0; 32]));
            let mut c = self.new_conversation(secret, creator);
            let id = c.id;
            let mut keys = Vec::new();
            self.store
                .scan_prefix(&keys::epoch_prefix(&id), &mut |k, v| {
                    if let (Ok(e), Ok(key)) =
                        (<[u8; 4]>::try_from(&k[18..]), <[u8; 32]>::try_from(v))
                    {
                        keys.push((EpochId(e), key));
                    }
                    true
                })?;
            c.keys.extend(keys);
            let mut pe: Vec<(u32, EpochId)> = Vec::new();
            self.store
                .scan_keys(&keys::page_epoch_prefix(&id), &mut |k| {
                    if let (Ok(p), Ok(e)) = (
                        <[u8; 4]>::try_from(&k[18..22]),
                        <[u8; 4]>::try_from(&k[22..26]),
                    ) {
                        pe.push((u32::from_be_bytes(p), EpochId(e)));
                    }
                    true
                })?;
            for (p, e) in pe {
                c.page_epochs.entry(p).or_default().insert(e);
            }
            let mut pages = BTreeSet::new();
            self.store.scan_keys(&keys::pages_prefix(&id), &mut |k| {
                if let Ok(n) = <[u8; 4]>::try_from(&k[18..22]) {
                    pages.insert(u32::from_be_bytes(n));
                }
                true
            })?;
            c.known_pages.extend(pages);
            for (page, seqs) in journals.remove(&id).unwrap_or_default() {
                c.known_pages.insert(page);
                for s in seqs {
                    self.pages.note_journal_entry(&id, page, s);
                }
            }
            self.by_tag.insert(c.tag, id);
            self.convs.insert(id, c);
            // Membership from the stored control envelopes.
            let mut ctl = Vec::new();
            self.store.scan_keys(&keys::control_prefix(&id), &mut |k| {
                if let Ok(e) = <[u8; 32]>::try_from(&k[18..]) {
                    ctl.push(EnvelopeId(e));
                }
                true
            })?;
            let mut envs = Vec::new();
            let tag = self.convs[&id].tag;
            for e in ctl {
                if let Some(bytes) = self.store.envelope(&tag, &e)?
                    && let Ok(env) = Envelope::decode(&bytes)
                {
                    envs.push(env);
                }
            }
            self.replay_controls(id, envs)?;
        }
        self.load_revoked()?;
        // Pending envelopes: retry each (they may have become applicable).
        let mut pend = Vec::new();
        self.store.scan_keys(keys::PENDING, &mut |k| {
            if let Ok(e) = <[u8; 32]>::try_from(&k[2..]) {
                pend.push(EnvelopeId(e));
            }
            true
        })?;
        // Read again where they are stored: a store error leaves them pending for the next
        // open (nothing is taken out before it is settled).
        for e in pend {
            let _ = self.reread_pending(&e, self.clock.last().ms);
        }
        // Unreadable envelopes whose key was stored before a restart could retry them.
        let ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        for id in ids {
            self.retry_unreadable(&id, self.clock.last().ms)?;
        }
        self.events.clear();
        self.load_vouched()?;
        self.load_carried()?;
        Ok(())
    }

    pub(super) fn ensure_page(&mut self, id: &ConversationId, n: u32) -> Result<(), CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if self.pages.touch(id, n) {
            // Pages sealed since they stayed over a bound (staged) go now.
            if self.pages.over_bound(id) {
                self.evict_pages(id, n)?;
            }
            return Ok(());
        }
        let actor = self.me.device_id().actor();
        let me = self.me.device_id();
        let saved = self.store.get(&keys::page(id, n))?;
        let (own, page_bytes) = match &saved {
            Some(bytes) => decode_saved(bytes, actor.to_bytes())
                .map_err(|e| StoreError::Corrupt(format!("page {n}: {e}")))?,
            None => (None, &[][..]),
        };
        let mut page = match &saved {
            Some(_) => Page::load(n, page_bytes, actor.clone())
                .map_err(|e| StoreError::Corrupt(format!("page {n}: {e}")))?,
            None => Page::new(n, actor.clone()),
        };
        page.set_late_ceilings(late_ceilings(c, n));
        // Own messages: saved with the page, or (saved before issue 11) in `m/` records.
        let mut legacy = false;
        let mut own = match own {
            Some(own) => own,
            None if self.pages.legacy_own => {
                let mut own = BTreeMap::new();
                let skip = keys::own_messages_prefix(id, n).len();
                self.store
                    .scan_prefix(&keys::own_messages_prefix(id, n), &mut |k, v| {
                        if let (Ok(key), Some(e)) =
                            (std::str::from_utf8(&k[skip..]), EnvelopeId::from_slice(v))
                        {
                            own.insert(key.to_string(), e);
                        }
                        legacy = true;
                        true
                    })?;
                own
            }
            None => BTreeMap::new(),
        };
        // Replay the journal: envelopes applied since the page was last saved.
        let mut entries = Vec::new();
        for s in self.pages.journal_seqs(id, n) {
            if let Some(v) = self.store.get(&keys::journal(s))?
                && let Some((_, jc, jp, e)) = keys::parse_journal(&keys::journal(s), &v)
                && jc == *id
                && jp == n
            {
                entries.push(e);
            }
        }
        let mut changes: Vec<Change> = Vec::new();
        for eid in entries {
            let Some(bytes) = self.store.envelope(&c.tag, &eid)? else {
                continue;
            };
            let Ok(env) = Envelope::decode(&bytes) else {
                continue;
            };
            let Some(key) = c.read_key(&env.header().epoch).copied() else {
                continue;
            };
            let Ok(opened) = envelope::open(&env, &key, &c.id, &mut |h| c.signers(h)) else {
                continue;
            };
            let mut r = Reader::new(&opened.payload);
            if r.u32_varint("page").ok() != Some(n) {
                continue;
            }
            if let Ok(cs) = decode_changes(r.rest(), &opened.signer.actor()) {
                if opened.signer == me {
                    // The envelope that created own messages (the last one, as when `m/`
                    // records were rewritten, should one change be sealed twice).
                    for m in cs.iter().flat_map(|ch| own_created(ch, n)) {
                        own.insert(m.key, eid);
                    }
                }
                changes.extend(cs);
            }
        }
        // A change may come from more than one journalled envelope (the same content sealed
        // twice): apply it once.
        let mut once: BTreeSet<ChangeHash> = BTreeSet::new();
        let fresh: Vec<(Change, u32)> = changes
            .into_iter()
            .filter(|ch| !page.has_change(&ch.hash()) && once.insert(ch.hash()))
            .map(|ch| (ch, 0))
            .collect();
        // One change (or the whole journal) into the page: contested changes (equivocation,
        // built on a held-out change) are decided by `Page::resolve`, as when they arrived.
        let pinned = pinned_hashes(c, n);
        let apply = |page: &mut Page, fresh: Vec<(Change, u32)>| -> Result<(), RuleError> {
            let only: Vec<Change> = fresh.iter().map(|(c, _)| c.clone()).collect();
            if page.contested(&only) {
                page.resolve(only, &pinned).map(|_| ())
            } else {
                page.apply(fresh).map(|_| ())
            }
        };
        if !fresh.is_empty() {
            // Journal order is application order, so sequence checks hold.
            if apply(&mut page, fresh.clone()).is_err() {
                // A page always loads: start again from the saved page and apply the journal
                // change by change, leaving out what does not apply (it was verified when it
                // arrived; what fails now cannot be shown anyway). A failed apply may leave
                // the document half-updated, so after one the page is rebuilt from the saved
                // page and the changes that applied.
                let base = |s: &S| -> Result<Page, StoreError> {
                    Ok(match s.get(&keys::page(id, n))? {
                        Some(bytes) => {
                            let (_, doc) = decode_saved(&bytes, actor.to_bytes())
                                .map_err(|e| StoreError::Corrupt(format!("page {n}: {e}")))?;
                            Page::load(n, doc, actor.clone())
                                .map_err(|e| StoreError::Corrupt(format!("page {n}: {e}")))?
                        }
                        None => Page::new(n, actor.clone()),
                    })
                    .map(|mut p| {
                        p.set_late_ceilings(late_ceilings(c, n));
                        p
                    })
                };
                page = base(&self.store)?;
                let mut good: Vec<(Change, u32)> = Vec::new();
                for ch in fresh {
                    if apply(&mut page, vec![ch.clone()]).is_ok() {
                        good.push(ch);
                    } else {
                        page = base(&self.store)?;
                        for g in &good {
                            apply(&mut page, vec![g.clone()]).map_err(|e| {
                                StoreError::Corrupt(format!("journal of page {n}: {e}"))
                            })?;
                        }
                    }
                }
            }
        }
        // Held-out changes are decided again with what removals pin now (a removal that
        // arrived since the page was saved may pin a fork that had lost).
        // So are changes of a removed device past its ceiling that the saved page holds
        // (taken before the removal was known here).
        if page.has_held_out() || page.over_ceiling() {
            page.resolve(Vec::new(), &pinned)
                .map_err(|e| StoreError::Corrupt(format!("page {n}: {e}")))?;
        }
        let c = self
            .convs
            .get_mut(id)
            .ok_or(CommandError::NoSuchConversation)?;
        self.pages.insert(id, n, page, own, legacy);
        c.known_pages.insert(n);
        self.evict_pages(id, n)?;
        Ok(())
    }

    /// The journal at open: moves entries written before issue 11 (`j/`, one key range per
    /// page) to `l/` under the seqs they had (one counter then too, so application order
    /// holds), then reads every entry: per conversation, per page, the seqs in order.
    /// Numbering resumes past the largest.
    fn load_journal(&mut self) -> Result<JournalIndex, StoreError> {
        let mut old = Vec::new();
        self.store.scan_prefix(keys::LEGACY_JOURNAL, &mut |k, v| {
            old.push((k.to_vec(), keys::parse_legacy_journal(k, v)));
            true
        })?;
        for (k, parsed) in old {
            // The new entry first: a crash in between leaves both, and the next open
            // writes the same entry again.
            if let Some((seq, c, page, e)) = parsed {
                self.store
                    .put(&keys::journal(seq), &keys::journal_value(&c, page, &e))?;
            }
            self.store.delete(&k)?;
        }
        let mut index = JournalIndex::new();
        let mut next = 0u64;
        self.store.scan_prefix(keys::JOURNAL, &mut |k, v| {
            if let Some((seq, c, page, _)) = keys::parse_journal(k, v) {
                index
                    .entry(c)
                    .or_default()
                    .entry(page)
                    .or_default()
                    .push(seq);
                next = next.max(seq + 1);
            }
            true
        })?;
        self.pages.resume_journal_seq(next);
        Ok(index)
    }
}

/// Journal seqs at open, per conversation and page, in application order.
type JournalIndex = BTreeMap<ConversationId, BTreeMap<u32, Vec<u64>>>;

/// The highest sequence number of each removed device's actor that page `n` of `c` takes
/// ([`crate::membership::State::late_ceiling`]).
pub(super) fn late_ceilings(c: &Conversation, n: u32) -> crate::page::LateCeilings {
    let st = c.membership.state();
    st.removed
        .keys()
        .filter_map(|d| {
            st.late_ceiling(d, n)
                .map(|max| (d.actor().to_bytes().to_vec(), max))
        })
        .collect()
}

/// The hashes of the changes removals pinned in page `n` of `c`.
pub(super) fn pinned_hashes(c: &Conversation, n: u32) -> BTreeSet<ChangeHash> {
    c.membership
        .state()
        .pinned_hashes(n)
        .into_iter()
        .map(ChangeHash)
        .collect()
}
