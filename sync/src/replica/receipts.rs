//! Read receipts and alert acknowledgements (issue 13): what a member's device says it read,
//! and a person's "received, acting" on a FLASH or IMMEDIATE message.
//!
//! Both are ordinary page writes (`page` schema: `^<reader>` and `!<message><acker>`), so
//! they are signed by their author, end-to-end encrypted under the conversation's epoch key,
//! carried by relays like any change, and refused like any change from a non-member or from
//! a removed device past its pin (`membership::State::change_allowed`). The page rules bind
//! each to its author's actor, so nobody acknowledges or reads for someone else.
//!
//! Bytes (storage is budgeted at ~400 B per message, docs/performance.md):
//! * a read receipt is a per-member, per-page **watermark** ("read up to this message"), not
//!   a record per message; a device holds the newest one it owes and seals it at most once
//!   per [`READ_RECEIPT_INTERVAL_MS`] per conversation ([`Replica::seal_due_reads`]), or for
//!   free with its own next change on that page. A member reading a busy conversation costs
//!   one small envelope per interval, whatever the number of messages read;
//! * an acknowledgement names one message, only a FLASH or IMMEDIATE one of another author
//!   that its author's change builds on, at most once per member per message
//!   (`Page::check_acks`). FLASH and IMMEDIATE messages are few.

use super::*;

/// The least time between two read watermarks this device seals for one conversation
/// (a guess: short enough for a roll-call to show "read" within half a minute, long enough
/// that reading a busy conversation costs one envelope per half minute, not one per message).
pub const READ_RECEIPT_INTERVAL_MS: u64 = 30_000;

/// A read watermark this device owes a conversation.
#[derive(Debug, Clone, Default)]
pub(super) struct ReadsOwed {
    /// The newest message read and not yet sealed in a watermark, per conversation.
    owed: BTreeMap<ConversationId, MessageId>,
    /// When a watermark was last sealed, per conversation (in memory: after a restart the
    /// first one may come early, which costs one envelope).
    last: BTreeMap<ConversationId, u64>,
}

/// One member's answer to one message, as the roll-call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollEntry {
    pub device: DeviceId,
    pub name: Option<String>,
    /// When it acknowledged the message (its clock), if it did.
    pub acknowledged: Option<Hlc>,
    /// Its read watermark reaches the message (or it acknowledged it).
    pub read: bool,
}

impl<S: Store> Replica<S> {
    /// Whether this device sends read receipts in `id` (on unless turned off).
    pub fn read_receipts(&self, id: &ConversationId) -> bool {
        !matches!(self.store.get(&keys::read_off(id)), Ok(Some(_)))
    }

    /// Turns this device's read receipts in `id` on or off (a local setting; what was sent
    /// stays sent). Turning them off forgets the watermark owed.
    pub fn set_read_receipts(&mut self, id: &ConversationId, on: bool) -> Result<(), CommandError> {
        if !self.convs.contains_key(id) {
            return Err(CommandError::NoSuchConversation);
        }
        if on {
            self.store.delete(&keys::read_off(id))?;
        } else {
            self.store.put(&keys::read_off(id), &[])?;
            self.reads.owed.remove(id);
        }
        Ok(())
    }

    /// Records that this device's user read `msg` (and what came before it). Nothing is sent
    /// now: the watermark is sealed by [`Replica::seal_due_reads`] (at most once per
    /// [`READ_RECEIPT_INTERVAL_MS`]) or with this device's next message on its page. Returns
    /// whether a watermark is now owed (false with read receipts off, or for a message that
    /// is not newer than the one owed).
    pub fn mark_read(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
    ) -> Result<bool, CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if !c.membership.state().is_member(&self.me.device_id()) {
            return Err(CommandError::NotMember);
        }
        if !c.pages().any(|p| p == msg.page) || page::parse_key(&msg.key).is_none() {
            return Err(CommandError::NoSuchMessage(msg.to_string()));
        }
        if !self.read_receipts(id) {
            return Ok(false);
        }
        let newer = self
            .reads
            .owed
            .get(id)
            .is_none_or(|m| (m.page, &m.key) < (msg.page, &msg.key));
        if newer {
            self.reads.owed.insert(*id, msg.clone());
        }
        Ok(newer)
    }

    /// When the next owed watermark is due, if one is owed.
    pub fn read_due(&self) -> Option<u64> {
        self.reads
            .owed
            .keys()
            .map(|c| {
                self.reads
                    .last
                    .get(c)
                    .map_or(0, |t| t.saturating_add(READ_RECEIPT_INTERVAL_MS))
            })
            .min()
    }

    /// Stages the watermarks owed whose interval has passed (one per conversation, on the
    /// page of the newest message read), for [`Replica::seal_staged`] to seal with whatever
    /// else is staged there.
    pub(super) fn stage_due_reads(&mut self, now_ms: u64) -> Result<(), CommandError> {
        let due: Vec<ConversationId> = self
            .reads
            .owed
            .keys()
            .filter(|c| {
                self.reads
                    .last
                    .get(c)
                    .is_none_or(|t| now_ms >= t.saturating_add(READ_RECEIPT_INTERVAL_MS))
            })
            .copied()
            .collect();
        for id in due {
            let Some(msg) = self.reads.owed.remove(&id) else {
                continue;
            };
            let writable = self.convs.get(&id).is_some_and(|c| {
                c.membership.state().is_member(&self.me.device_id()) && c.sending_epoch().is_some()
            });
            if !writable {
                continue;
            }
            self.ensure_page(&id, msg.page)?;
            let page = self
                .pages
                .get_mut(&id, msg.page)
                .ok_or(CommandError::NoSuchConversation)?;
            if !page.mark_read(&msg.key)? {
                continue;
            }
            self.reads.last.insert(id, now_ms);
            if let Some(c) = self.convs.get_mut(&id) {
                c.staged.entry(msg.page).or_insert(Staged {
                    precedence: Precedence::Routine,
                    expiry: None,
                    bytes: 0,
                });
            }
        }
        Ok(())
    }

    /// Stages the watermark owed for `id` on page `p` with this device's own change there
    /// (free: it rides in the same envelope). Called when a message is staged.
    pub(super) fn piggyback_read(&mut self, id: &ConversationId, p: u32, now_ms: u64) {
        let Some(msg) = self.reads.owed.get(id).filter(|m| m.page == p).cloned() else {
            return;
        };
        if let Some(page) = self.pages.get_mut(id, p)
            && page.mark_read(&msg.key).is_ok()
        {
            self.reads.owed.remove(id);
            self.reads.last.insert(*id, now_ms);
        }
    }

    /// Acknowledges a FLASH or IMMEDIATE message of another member ("received, acting"):
    /// sealed at once, at the message's precedence, so it travels in the same lane.
    pub fn acknowledge(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<EnvelopeId, CommandError> {
        let me = self.me.device_id();
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if !c.membership.state().is_member(&me) {
            return Err(CommandError::NotMember);
        }
        if !c.pages().any(|p| p == msg.page) {
            return Err(CommandError::NoSuchMessage(msg.to_string()));
        }
        let view = self
            .page_messages(id, msg.page)?
            .into_iter()
            .find(|m| m.view.id == *msg)
            .ok_or_else(|| CommandError::NoSuchMessage(msg.to_string()))?;
        let precedence = view.view.precedence;
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
        page.acknowledge(&msg.key, hlc)?;
        let st = c.staged.entry(msg.page).or_insert(Staged {
            precedence,
            expiry: None,
            bytes: 0,
        });
        st.precedence = st.precedence.max(precedence);
        // An acknowledgement says "read" too.
        if self
            .reads
            .owed
            .get(id)
            .is_some_and(|m| (m.page, &m.key) <= (msg.page, &msg.key))
        {
            self.reads.owed.remove(id);
        }
        self.seal_page(id, msg.page, now_ms)
    }

    /// The roll-call of `msg`: every current member but its author, with its
    /// acknowledgement and whether it read it (delivery is the engine's: receipts of the
    /// envelope, `vaarta-engine` `Engine::rollcall`). Members in device order.
    pub fn rollcall(
        &mut self,
        id: &ConversationId,
        msg: &MessageId,
    ) -> Result<(MessageInfo, Vec<RollEntry>), CommandError> {
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        if !c.pages().any(|p| p == msg.page) {
            return Err(CommandError::NoSuchMessage(msg.to_string()));
        }
        let later: Vec<u32> = c.pages().filter(|p| *p > msg.page).collect();
        let info = self
            .page_messages(id, msg.page)?
            .into_iter()
            .find(|m| m.view.id == *msg)
            .ok_or_else(|| CommandError::NoSuchMessage(msg.to_string()))?;
        let page = self
            .pages
            .get_mut(id, msg.page)
            .expect("loaded by page_messages");
        let acks: BTreeMap<String, Hlc> = page.acks_of(&msg.key).into_iter().collect();
        let marks = page.read_marks();
        // A watermark on a later page covers this one.
        let mut later_readers: BTreeSet<String> = BTreeSet::new();
        for p in later {
            self.ensure_page(id, p)?;
            if let Some(pg) = self.pages.get_mut(id, p) {
                later_readers.extend(pg.read_marks().into_keys());
            }
        }
        let c = &self.convs[id];
        let st = c.membership.state();
        let out = st
            .members
            .keys()
            .filter(|d| Some(**d) != info.author)
            .map(|d| {
                let prefix = page::actor_prefix(&actor_bytes(d));
                let acknowledged = acks.get(&prefix).copied();
                let read = acknowledged.is_some()
                    || later_readers.contains(&prefix)
                    || marks.get(&prefix).is_some_and(|k| *k >= msg.key);
                RollEntry {
                    device: *d,
                    name: c.name_of(d),
                    acknowledged,
                    read,
                }
            })
            .collect();
        Ok((info, out))
    }
}
