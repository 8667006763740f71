//! Read-only views: conversations, tags, messages, digests.

use super::*;

/// A page number and the hashes of the changes it holds out ([`Replica::held_out`]).
pub type HeldOut = (u32, Vec<[u8; 32]>);

impl<S: Store> Replica<S> {
    pub fn conversation(&self, id: &ConversationId) -> Option<&Conversation> {
        self.convs.get(id)
    }

    pub fn conversation_ids(&self) -> Vec<ConversationId> {
        self.convs.keys().copied().collect()
    }

    /// Finds a conversation by a unique prefix of its printed id.
    pub fn resolve_conversation(&self, prefix: &str) -> Option<ConversationId> {
        let prefix = prefix.trim().to_ascii_lowercase();
        let mut hits = self
            .convs
            .keys()
            .filter(|c| c.to_string().starts_with(&prefix));
        let first = hits.next()?;
        hits.next().is_none().then_some(*first)
    }

    pub fn info(&self, id: &ConversationId) -> Option<ConversationInfo> {
        let c = self.convs.get(id)?;
        let st = c.membership.state();
        let me = self.me.device_id();
        Some(ConversationInfo {
            id: *id,
            title: st.title.clone(),
            members: st
                .members
                .iter()
                .map(|(d, m)| MemberInfo {
                    device: *d,
                    name: m.name.clone(),
                    admin: m.admin,
                })
                .collect(),
            me_admin: st.is_admin(&me),
            me_member: st.is_member(&me),
            me_removed: !st.is_member(&me) && st.removed.contains_key(&me),
            epochs: st.epochs.len(),
            pages: c.known_pages.len(),
            equivocators: {
                let mut ds = Vec::new();
                // A view: a store error here reads as no flag (the records stay).
                let _ = self
                    .store
                    .scan_keys(&keys::equivocators_prefix(id), &mut |k| {
                        if let Ok(d) = <[u8; 32]>::try_from(&k[18..]) {
                            ds.push(DeviceId(d));
                        }
                        true
                    });
                ds
            },
        })
    }

    /// Whether this device takes envelopes for others (relaying on, with a quota: a full
    /// relay evicts its oldest carried envelopes to make room).
    pub fn carries(&self) -> bool {
        self.relay.carry && self.relay.max_bytes > 0 && self.relay.max_envelopes > 0
    }

    /// Tags this device wants: its conversations and its recent inbox tags.
    pub fn tags_of_interest(&self, now_ms: u64) -> Vec<Tag> {
        let mut t: Vec<Tag> = self.by_tag.keys().copied().collect();
        t.extend(self.inbox_tags(now_ms));
        t.sort();
        t.dedup();
        t
    }

    pub fn inbox_tags(&self, now_ms: u64) -> Vec<Tag> {
        inbox_window(&self.me.device_id(), crypto::day_of(now_ms))
    }

    /// For each conversation: its tag, what this device's hello proves for it (its current
    /// epoch, [`Conversation::listed_presences`]) and the presence of the previous epoch.
    pub fn hello_presences(&self) -> Vec<(Tag, Vec<Tag>, Option<Tag>)> {
        self.by_tag
            .iter()
            .filter_map(|(t, id)| self.convs.get(id).map(|c| (t, c)))
            .map(|(t, c)| (*t, c.listed_presences(), c.previous_presence()))
            .collect()
    }

    /// True if `device` is a current member of the conversation under `tag`.
    pub fn is_member_of_tag(&self, tag: &Tag, device: &DeviceId) -> bool {
        self.conversation_of_tag(tag)
            .and_then(|id| self.convs.get(&id))
            .is_some_and(|c| c.membership.state().is_member(device))
    }

    /// The conversations' tags (without inbox tags).
    pub fn conversation_tags(&self) -> Vec<Tag> {
        self.by_tag.keys().copied().collect()
    }

    /// True if `tag` is one of our conversations (or inbox tags at `now_ms`).
    pub fn is_own_tag(&self, tag: &Tag, now_ms: u64) -> bool {
        self.by_tag.contains_key(tag) || self.inbox_tags(now_ms).contains(tag)
    }

    pub fn conversation_of_tag(&self, tag: &Tag) -> Option<ConversationId> {
        self.by_tag.get(tag).copied()
    }

    /// True if this replica holds a conversation or any envelope (so it has duties: key
    /// rotation, expiry).
    pub fn holds_anything(&self) -> bool {
        !self.convs.is_empty() || self.store.bytes_used() > 0
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The newest `limit` messages (oldest first), skipping messages hidden by membership.
    pub fn messages(
        &mut self,
        id: &ConversationId,
        limit: usize,
    ) -> Result<Vec<MessageInfo>, CommandError> {
        self.messages_from(id, 0, limit)
    }

    /// [`Replica::messages`] of the pages from `from_page` up only: pages below it are not
    /// read (a follower that knows which pages changed reads just those).
    pub fn messages_from(
        &mut self,
        id: &ConversationId,
        from_page: u32,
        limit: usize,
    ) -> Result<Vec<MessageInfo>, CommandError> {
        let pages: Vec<u32> = self
            .convs
            .get(id)
            .ok_or(CommandError::NoSuchConversation)?
            .pages()
            .rev()
            .take_while(|p| *p >= from_page)
            .collect();
        let mut out: Vec<MessageInfo> = Vec::new();
        for p in pages {
            if out.len() >= limit {
                break;
            }
            out.extend(self.page_messages(id, p)?);
        }
        self.newest(id, out, limit)
    }

    /// The `limit` messages just older than `before`, in the order of [`Replica::messages`]
    /// (sent-at time, then id), oldest first: paging back from the oldest message shown until
    /// the answer is empty visits every message once.
    ///
    /// Reads `before`'s page and the pages below it, newest first, and stops after the page
    /// that brings the count to `limit`; pages above `before`'s are taken to be newer (as
    /// [`Replica::messages`] takes them when it stops). A message written late into a lower
    /// page (by a device that had not seen the newer page) is placed by its time among the
    /// pages read. `before` must be a message of the conversation that [`Replica::messages`]
    /// would show, else [`CommandError::NoSuchMessage`].
    pub fn messages_before(
        &mut self,
        id: &ConversationId,
        before: &MessageId,
        limit: usize,
    ) -> Result<Vec<MessageInfo>, CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let no_such = || CommandError::NoSuchMessage(before.to_string());
        if !c.pages().any(|p| p == before.page) {
            return Err(no_such());
        }
        let pages: Vec<u32> = c.pages().rev().skip_while(|p| *p > before.page).collect();
        let first = self.page_messages(id, before.page)?;
        let cursor = first
            .iter()
            .find(|m| m.view.id == *before)
            .map(|m| (m.view.sent_at, m.view.id.clone()))
            .ok_or_else(no_such)?;
        let older = |m: &MessageInfo| (m.view.sent_at, &m.view.id) < (cursor.0, &cursor.1);
        let mut out: Vec<MessageInfo> = first.into_iter().filter(older).collect();
        for p in pages.into_iter().skip(1) {
            if out.len() >= limit {
                break;
            }
            out.extend(self.page_messages(id, p)?.into_iter().filter(older));
        }
        self.newest(id, out, limit)
    }

    /// The messages of page `p` that are shown, with the envelope ids of own messages.
    pub(super) fn page_messages(
        &mut self,
        id: &ConversationId,
        p: u32,
    ) -> Result<Vec<MessageInfo>, CommandError> {
        self.ensure_page(id, p)?;
        let c = &self.convs[id];
        let st = c.membership.state();
        // Removed authors are cut at their pins (what lies past them is held, not shown).
        let views = self
            .pages
            .get_mut(id, p)
            .expect("loaded by ensure_page")
            .messages_cut(|actor| c.device_of_actor(actor).and_then(|d| st.cut(&d, p)));
        let me = self.me.device_id();
        Ok(views
            .into_iter()
            .map(|v| {
                let author = c.device_of_actor(&v.actor);
                MessageInfo {
                    author_name: author.and_then(|a| c.name_of(&a)),
                    envelope: if author == Some(me) {
                        self.pages.own_envelope(id, p, &v.id.key)
                    } else {
                        None
                    },
                    author,
                    view: v,
                }
            })
            .collect())
    }

    /// The newest `limit` of `out`, oldest first.
    fn newest(
        &self,
        _id: &ConversationId,
        mut out: Vec<MessageInfo>,
        limit: usize,
    ) -> Result<Vec<MessageInfo>, CommandError> {
        out.sort_by(|a, b| (a.view.sent_at, &a.view.id).cmp(&(b.view.sent_at, &b.view.id)));
        let skip = out.len().saturating_sub(limit);
        Ok(out.into_iter().skip(skip).collect())
    }

    /// The numbers of the pages `id` has.
    fn page_numbers(&self, id: &ConversationId) -> Result<Vec<u32>, CommandError> {
        Ok(self
            .convs
            .get(id)
            .ok_or(CommandError::NoSuchConversation)?
            .pages()
            .collect())
    }

    /// The hashes of the changes each page of `id` holds out of its document (lost
    /// equivocations and what is built on them), per page number, in hash order: equal on
    /// two replicas that have the same changes, whatever order they came in.
    pub fn held_out(&mut self, id: &ConversationId) -> Result<Vec<HeldOut>, CommandError> {
        let pages = self.page_numbers(id)?;
        let mut out = Vec::new();
        for p in pages {
            self.ensure_page(id, p)?;
            let page = self
                .pages
                .get(id, p)
                .ok_or(CommandError::NoSuchConversation)?;
            let held: Vec<[u8; 32]> = page.held_out_hashes().map(|h| h.0).collect();
            if !held.is_empty() {
                out.push((p, held));
            }
        }
        Ok(out)
    }

    /// Heads of every page and the membership state: equal on two replicas iff they converged.
    pub fn state_digest(&mut self, id: &ConversationId) -> Result<[u8; 32], CommandError> {
        let pages = self.page_numbers(id)?;
        let mut h = blake3::Hasher::new();
        for p in pages {
            self.ensure_page(id, p)?;
            if !self.convs.contains_key(id) {
                return Err(CommandError::NoSuchConversation);
            }
            let page = self
                .pages
                .get_mut(id, p)
                .ok_or(CommandError::NoSuchConversation)?;
            if page.has_staged() {
                // Reading heads would commit the staged ops outside any envelope.
                return Err(CommandError::Staged);
            }
            let mut heads = page.heads();
            heads.sort();
            h.update(&p.to_be_bytes());
            for hd in heads {
                h.update(&hd.0);
            }
        }
        let c = &self.convs[id];
        for op in &c.membership.state().order {
            h.update(&op.0);
        }
        Ok(*h.finalize().as_bytes())
    }
}
