//! Invitations this device sealed for others: kept until their invitee has joined, for at
//! most [`SENT_INVITATION_TTL_MS`], and at most [`MAX_SENT_INVITATIONS`] (oldest first).
//!
//! An invitation waits under its invitee's inbox tag, which is not ours, so an `s/` record
//! written before its envelope marks it as ours (never carried, never evicted by the relay
//! quotas: `carry`). Before, nothing ever deleted one: they accumulated for the device's
//! life. Now [`Replica::maintain`] deletes one
//! * once its invitee has *joined*: the log holds an operation the invitee signed (a
//!   device that took the invitation publishes its profile; any operation it signs shows it
//!   holds the secret), or the invitee is no longer a member (removed, or its `Add` lost);
//! * once its conversation is no longer held here;
//! * past [`SENT_INVITATION_TTL_MS`] after it was sealed;
//!
//! and sealing one past [`MAX_SENT_INVITATIONS`] deletes the oldest. The envelope goes
//! first, then its record: a power cut in between leaves a record naming nothing, which the
//! next sweep deletes (the other order would leave an envelope that the next open counts
//! as carried).
//!
//! Record value (`s/` ‖ envelope id): conversation id (16) ‖ invitee (32) ‖ sealed-at ms
//! (8, BE) ‖ tag (16). Records written before (the conversation id alone) name no invitee
//! and no time: the first sweep dates them to its own time and finds their tag.

use super::*;
use crate::limits::{MAX_SENT_INVITATIONS, SENT_INVITATION_TTL_MS};

/// One invitation this device sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SentInvitation {
    pub conv: ConversationId,
    /// `None` for a record written before invitees were recorded.
    pub invitee: Option<DeviceId>,
    pub sealed_at: u64,
    /// `None` for a record written before tags were recorded.
    pub tag: Option<Tag>,
}

impl SentInvitation {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.conv.0.to_vec();
        v.extend_from_slice(&self.invitee.map_or([0; 32], |d| d.0));
        v.extend_from_slice(&self.sealed_at.to_be_bytes());
        v.extend_from_slice(&self.tag.map_or([0; 16], |t| t.0));
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        let conv = ConversationId(v.get(..16)?.try_into().ok()?);
        if v.len() == 16 {
            return Some(Self {
                conv,
                invitee: None,
                sealed_at: 0,
                tag: None,
            });
        }
        if v.len() != 72 {
            return None;
        }
        Some(Self {
            conv,
            invitee: Some(DeviceId(v[16..48].try_into().ok()?)),
            sealed_at: u64::from_be_bytes(v[48..56].try_into().ok()?),
            tag: Some(Tag(v[56..72].try_into().ok()?)),
        })
    }
}

/// The invitations this device keeps for others, oldest first (sealed-at, then id; records
/// written before times were recorded count as sealed at 0), loaded at open.
#[derive(Debug, Default)]
pub(super) struct SentIndex {
    order: BTreeSet<(u64, EnvelopeId)>,
    at: BTreeMap<EnvelopeId, u64>,
}

impl SentIndex {
    fn insert(&mut self, id: EnvelopeId, at: u64) {
        if let Some(old) = self.at.insert(id, at) {
            self.order.remove(&(old, id));
        }
        self.order.insert((at, id));
    }

    fn remove(&mut self, id: &EnvelopeId) {
        if let Some(at) = self.at.remove(id) {
            self.order.remove(&(at, *id));
        }
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }
}

impl<S: Store> Replica<S> {
    /// Every `s/` record: envelope id and what it says (undecodable values as `None`).
    fn sent_records(&self) -> Result<Vec<(EnvelopeId, Option<SentInvitation>)>, StoreError> {
        let mut out = Vec::new();
        self.store.scan_prefix(keys::SENT_INVITATION, &mut |k, v| {
            if let Some(id) = k.get(2..).and_then(EnvelopeId::from_slice) {
                out.push((id, SentInvitation::decode(v)));
            }
            true
        })?;
        Ok(out)
    }

    /// The index of sent invitations, at open.
    pub(super) fn load_sent(&mut self) -> Result<(), StoreError> {
        let mut index = SentIndex::default();
        for (id, s) in self.sent_records()? {
            index.insert(id, s.map_or(0, |s| s.sealed_at));
        }
        self.sent = index;
        Ok(())
    }

    /// Invitations this device sealed and still keeps (for tests and reports).
    pub fn sent_invitation_count(&self) -> usize {
        self.sent.len()
    }

    /// Records an invitation this device is about to store, then keeps at most
    /// [`MAX_SENT_INVITATIONS`] (the oldest go).
    pub(super) fn record_sent_invitation(
        &mut self,
        id: &EnvelopeId,
        sent: SentInvitation,
    ) -> Result<(), StoreError> {
        self.store.put(&keys::sent_invitation(id), &sent.encode())?;
        self.sent.insert(*id, sent.sealed_at);
        while self.sent.len() > MAX_SENT_INVITATIONS {
            let Some(&(_, oldest)) = self.sent.order.iter().find(|(_, e)| e != id) else {
                break;
            };
            let tag = self
                .store
                .get(&keys::sent_invitation(&oldest))?
                .and_then(|v| SentInvitation::decode(&v))
                .and_then(|s| s.tag);
            self.forget_sent(&oldest, tag)?;
        }
        Ok(())
    }

    /// Deletes an invitation this device sealed: its envelope (under `tag`, or wherever it
    /// is when the record names none), then its record.
    fn forget_sent(&mut self, id: &EnvelopeId, tag: Option<Tag>) -> Result<(), StoreError> {
        let tag = match tag {
            Some(t) => Some(t),
            None => self.find_tag_of(id)?,
        };
        if let Some(t) = tag {
            self.store.remove_envelope(&t, id)?;
        }
        self.store.delete(&keys::sent_invitation(id))?;
        self.sent.remove(id);
        Ok(())
    }
    /// The tag an envelope is stored under, by looking under every tag (only for records
    /// written before tags were recorded).
    fn find_tag_of(&self, id: &EnvelopeId) -> Result<Option<Tag>, StoreError> {
        for (t, _) in self.store.tags() {
            if self.store.contains(&t, id)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Deletes the invitations this device sealed whose invitee joined or left, whose
    /// conversation is gone, or that are older than [`SENT_INVITATION_TTL_MS`]; dates and
    /// completes records written before invitees and times were recorded.
    pub(super) fn sweep_sent_invitations(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let records = self.sent_records()?;
        if records.is_empty() {
            return Ok(());
        }
        // Per conversation, once: the devices that signed an operation in its log.
        let mut signers: BTreeMap<ConversationId, BTreeSet<DeviceId>> = BTreeMap::new();
        for (id, sent) in records {
            let Some(sent) = sent else {
                // Not a record this code wrote: drop it (the envelope, if any, is then
                // carried or read like any other at the next open).
                self.store.delete(&keys::sent_invitation(&id))?;
                self.sent.remove(&id);
                continue;
            };
            let Some(c) = self.convs.get(&sent.conv) else {
                self.forget_sent(&id, sent.tag)?;
                continue;
            };
            let st = c.membership.state();
            let joined_or_gone = sent.invitee.is_some_and(|d| {
                !st.is_member(&d)
                    || signers
                        .entry(sent.conv)
                        .or_insert_with(|| {
                            st.order
                                .iter()
                                .filter_map(|h| c.membership.entry(h))
                                .map(|e| e.signer)
                                .collect()
                        })
                        .contains(&d)
            });
            let legacy = sent.tag.is_none();
            if joined_or_gone
                || (!legacy && now_ms.saturating_sub(sent.sealed_at) > SENT_INVITATION_TTL_MS)
            {
                self.forget_sent(&id, sent.tag)?;
                continue;
            }
            if legacy {
                // Dated now (the first sweep since the upgrade), with the tag it is under;
                // a record whose envelope is gone is deleted.
                match self.find_tag_of(&id)? {
                    Some(t) => {
                        let dated = SentInvitation {
                            sealed_at: now_ms,
                            tag: Some(t),
                            ..sent
                        };
                        self.store
                            .put(&keys::sent_invitation(&id), &dated.encode())?;
                    }
                    None => self.store.delete(&keys::sent_invitation(&id))?,
                }
            }
        }
        Ok(())
    }
}
