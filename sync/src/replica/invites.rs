//! Invitations from strangers: held in a bounded inbox until the user accepts or declines.
//!
//! Anyone who knows a device id can seal invitations to it. An invitation whose inviter is a
//! *contact* — a device that is a member (or the creator) of a conversation this device
//! holds, or one the user accepted — is taken at once, as before. Any other invitation that
//! would create a conversation is *held*: its envelope stays in the store (so reconciliation
//! does not fetch it again), a record `i/` names it, and nothing else changes — no
//! conversation, no new tag in the hello. At most [`MAX_HELD_INVITATIONS`] are held, one per
//! conversation; past it the oldest is dropped and its envelope becomes a tombstone.
//! Accepting takes the held invitation as a contact's (and makes its inviter a contact);
//! declining drops it and leaves a tombstone. With [`InvitePolicy::AcceptAll`] every
//! invitation is taken as a contact's.
//!
//! The policy is the node's decision: a bare [`Replica`] (a library value, as the sync
//! tests and benchmarks use it) starts with `AcceptAll`; the node engine sets its
//! configured policy at start, and the engine's default is `HoldStrangers`.

use super::*;
use crate::limits::{MAX_ACCEPTED_DEVICES, MAX_HELD_INVITATIONS};

/// Whose invitations create conversations without the user's say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitePolicy {
    /// Contacts' only; strangers' are held (the engine's default).
    HoldStrangers,
    /// Everyone's (no invitation is held).
    AcceptAll,
}

/// An invitation held for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldInvitation {
    pub conversation: ConversationId,
    pub inviter: DeviceId,
    pub envelope: EnvelopeId,
    pub received_ms: u64,
    /// Arrival order (the oldest is dropped first).
    pub order: u64,
}

impl HeldInvitation {
    fn encode(&self) -> Vec<u8> {
        [
            &self.order.to_be_bytes()[..],
            &self.received_ms.to_be_bytes(),
            &self.inviter.0,
            &self.envelope.0,
        ]
        .concat()
    }

    fn decode(conversation: ConversationId, v: &[u8]) -> Option<Self> {
        if v.len() != 80 {
            return None;
        }
        Some(Self {
            conversation,
            order: u64::from_be_bytes(v[..8].try_into().ok()?),
            received_ms: u64::from_be_bytes(v[8..16].try_into().ok()?),
            inviter: DeviceId(v[16..48].try_into().ok()?),
            envelope: EnvelopeId(v[48..80].try_into().ok()?),
        })
    }
}

/// The held invitations and the accepted devices, as loaded from the store.
#[derive(Debug)]
pub(super) struct Invites {
    pub(super) policy: InvitePolicy,
    held: BTreeMap<ConversationId, HeldInvitation>,
    next_order: u64,
    accepted: BTreeSet<DeviceId>,
}

impl Default for Invites {
    fn default() -> Self {
        Self {
            policy: InvitePolicy::AcceptAll,
            held: BTreeMap::new(),
            next_order: 0,
            accepted: BTreeSet::new(),
        }
    }
}

impl<S: Store> Replica<S> {
    pub fn set_invite_policy(&mut self, p: InvitePolicy) {
        self.invites.policy = p;
    }

    /// The invitations held for the user, oldest first.
    pub fn invitations(&self) -> Vec<HeldInvitation> {
        let mut v: Vec<HeldInvitation> = self.invites.held.values().cloned().collect();
        v.sort_by_key(|h| h.order);
        v
    }

    /// True if invitations from `d` are taken without asking: a member or creator of a
    /// conversation held here, or a device the user accepted.
    pub fn is_contact(&self, d: &DeviceId) -> bool {
        *d == self.me.device_id()
            || self.invites.accepted.contains(d)
            || self
                .convs
                .values()
                .any(|c| c.creator == *d || c.membership.state().is_member(d))
    }

    pub(super) fn load_invites(&mut self) -> Result<(), StoreError> {
        let mut held = Vec::new();
        self.store.scan_prefix(keys::HELD_INVITATION, &mut |k, v| {
            if let Some(c) = k.get(2..18).and_then(|b| <[u8; 16]>::try_from(b).ok())
                && let Some(h) = HeldInvitation::decode(ConversationId(c), v)
            {
                held.push(h);
            }
            true
        })?;
        let mut accepted = Vec::new();
        self.store.scan_prefix(keys::ACCEPTED_DEVICE, &mut |k, _| {
            if let Some(d) = k.get(2..34).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                accepted.push(DeviceId(d));
            }
            true
        })?;
        self.invites.next_order = held.iter().map(|h| h.order + 1).max().unwrap_or(0);
        self.invites.held = held.into_iter().map(|h| (h.conversation, h)).collect();
        self.invites.accepted = accepted.into_iter().collect();
        Ok(())
    }

    /// Whether an opened invitation for `conv` from `inviter` must be held rather than taken.
    pub(super) fn must_hold(&self, conv: &ConversationId, inviter: &DeviceId) -> bool {
        self.invites.policy == InvitePolicy::HoldStrangers
            && !self.convs.contains_key(conv)
            && !self.is_contact(inviter)
    }

    /// Holds an invitation envelope from a stranger (see the module docs).
    pub(super) fn hold_invitation(
        &mut self,
        env: &Envelope,
        conv: ConversationId,
        inviter: DeviceId,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let tag = env.header().tag;
        if self.invites.held.contains_key(&conv) {
            // One per conversation: a second copy is remembered as dropped.
            self.tombstone(&tag, &env.id())?;
            return Ok(Ingested::Duplicate);
        }
        while self.invites.held.len() >= MAX_HELD_INVITATIONS {
            let Some(oldest) = self
                .invites
                .held
                .values()
                .min_by_key(|h| h.order)
                .map(|h| h.conversation)
            else {
                break;
            };
            self.drop_invitation(&oldest)?;
        }
        self.store.put_envelope(&tag, &env.id(), env.bytes())?;
        let h = HeldInvitation {
            conversation: conv,
            inviter,
            envelope: env.id(),
            received_ms: now_ms,
            order: self.invites.next_order,
        };
        self.invites.next_order += 1;
        self.store.put(&keys::held_invitation(&conv), &h.encode())?;
        self.invites.held.insert(conv, h);
        self.emit(Event::InvitationHeld {
            conversation: conv,
            inviter,
        });
        Ok(Ingested::InvitationHeld(conv))
    }

    /// Forgets a held invitation; its envelope becomes a tombstone.
    fn drop_invitation(
        &mut self,
        conv: &ConversationId,
    ) -> Result<Option<HeldInvitation>, StoreError> {
        let Some(h) = self.invites.held.remove(conv) else {
            return Ok(None);
        };
        self.store.delete(&keys::held_invitation(conv))?;
        let tag = self.store.tag_of(&h.envelope)?;
        self.store.remove_envelope(&h.envelope)?;
        if let Some(tag) = tag {
            self.tombstone(&tag, &h.envelope)?;
        }
        Ok(Some(h))
    }

    /// Declines a held invitation: it is dropped and not fetched again.
    pub fn decline_invitation(&mut self, conv: &ConversationId) -> Result<(), CommandError> {
        match self.drop_invitation(conv)? {
            Some(_) => Ok(()),
            None => Err(CommandError::NoSuchInvitation),
        }
    }

    /// Accepts a held invitation: the conversation is added as if a contact had invited us,
    /// and the inviter becomes a contact.
    pub fn accept_invitation(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<ConversationId, CommandError> {
        let h = self
            .invites
            .held
            .get(conv)
            .cloned()
            .ok_or(CommandError::NoSuchInvitation)?;
        let bytes = self
            .store
            .envelope(&h.envelope)?
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StoreError::Corrupt(format!("held invitation {conv}: no envelope")))?;
        let env = Envelope::decode(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("held invitation {conv}: {e}")))?;
        self.invites.held.remove(conv);
        self.store.delete(&keys::held_invitation(conv))?;
        self.accept_device_only(&h.inviter)?;
        match self.ingest_invite(&env, now_ms) {
            Ok(_) => Ok(*conv),
            Err(IngestError::Store(e)) => Err(e.into()),
            Err(IngestError::TooManyConversations) => Err(CommandError::TooManyConversations),
            Err(e) => Err(CommandError::Store(StoreError::Corrupt(format!(
                "held invitation {conv}: {e}"
            )))),
        }
    }

    fn accept_device_only(&mut self, d: &DeviceId) -> Result<(), CommandError> {
        if self.invites.accepted.contains(d) {
            return Ok(());
        }
        if self.invites.accepted.len() >= MAX_ACCEPTED_DEVICES {
            return Err(CommandError::TooManyAccepted);
        }
        self.store.put(&keys::accepted_device(d), &[])?;
        self.invites.accepted.insert(*d);
        Ok(())
    }

    /// Accepts a device: its invitations are taken from now on, and those held are accepted
    /// (their conversations are returned).
    pub fn accept_device(
        &mut self,
        d: &DeviceId,
        now_ms: u64,
    ) -> Result<Vec<ConversationId>, CommandError> {
        if !d.is_valid() {
            return Err(CommandError::BadDevice(d.to_string()));
        }
        self.accept_device_only(d)?;
        let from: Vec<ConversationId> = self
            .invitations()
            .into_iter()
            .filter(|h| h.inviter == *d)
            .map(|h| h.conversation)
            .collect();
        let mut out = Vec::new();
        for c in from {
            out.push(self.accept_invitation(&c, now_ms)?);
        }
        Ok(out)
    }
}
