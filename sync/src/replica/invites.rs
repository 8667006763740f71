//! Invitations from strangers: held in a bounded inbox until the user accepts or declines.
//!
//! Anyone who knows a device id can seal invitations to it. An invitation whose inviter is a
//! *contact* — a current member of a conversation this device holds, or a device the user
//! accepted — is taken at once, as before. Any other invitation that would create a
//! conversation is *held*: its envelope stays in the store (so reconciliation does not fetch
//! it again), a record `i/` names it, and nothing else changes — no conversation, no new tag
//! in the hello. Several invitations for one conversation are held (from different signers:
//! the first does not decide who invited), within bounds: [`MAX_HELD_PER_CONVERSATION`] per
//! conversation and [`MAX_HELD_PER_INVITER`] per inviter (past either, that one's oldest
//! goes), [`MAX_HELD_INVITATIONS`] in all (past it, the oldest of the inviter holding the
//! most). An invitation that goes to make room is *forgotten*, not tombstoned: its envelope
//! is removed, so the next reconciliation with whoever holds it brings it back.
//! Accepting takes every held invitation of the conversation that verifies, as a contact's
//! would be taken; nobody becomes a contact by it (the conversation's members are contacts
//! once its membership arrives). If nothing could be taken the invitations stay held.
//! Declining drops them and leaves tombstones (bounded like every tombstone, so a declined
//! invitation can come back once 10,000 newer tombstones of the tag have pushed it out).
//! With [`InvitePolicy::AcceptAll`] every invitation is taken as a contact's.
//!
//! The policy is the node's decision: a bare [`Replica`] (a library value, as the sync
//! tests and benchmarks use it) starts with `AcceptAll`; the node engine sets its
//! configured policy at start, and the engine's default is `HoldStrangers`.

use super::*;
use crate::limits::{
    MAX_ACCEPTED_DEVICES, MAX_HELD_INVITATIONS, MAX_HELD_PER_CONVERSATION, MAX_HELD_PER_INVITER,
};
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
    /// The (inbox) tag its envelope is stored under.
    pub tag: Tag,
}

impl HeldInvitation {
    fn encode(&self) -> Vec<u8> {
        [
            &self.order.to_be_bytes()[..],
            &self.received_ms.to_be_bytes(),
            &self.inviter.0,
            &self.conversation.0,
            &self.tag.0,
        ]
        .concat()
    }

    /// A record of 80 bytes, or of 64 (written before issue 11, without the tag: `None`
    /// in its place, for [`Replica::load_invites`] to find).
    fn decode(envelope: EnvelopeId, v: &[u8]) -> Option<(Self, Option<Tag>)> {
        let tag = match v.len() {
            64 => None,
            80 => Some(Tag(v[64..80].try_into().ok()?)),
            _ => return None,
        };
        let h = Self {
            envelope,
            order: u64::from_be_bytes(v[..8].try_into().ok()?),
            received_ms: u64::from_be_bytes(v[8..16].try_into().ok()?),
            inviter: DeviceId(v[16..48].try_into().ok()?),
            conversation: ConversationId(v[48..64].try_into().ok()?),
            tag: tag.unwrap_or(Tag([0; 16])),
        };
        Some((h, tag))
    }
}

/// The held invitations and the accepted devices, as loaded from the store.
#[derive(Debug)]
pub(super) struct Invites {
    pub(super) policy: InvitePolicy,
    /// By envelope id.
    held: BTreeMap<EnvelopeId, HeldInvitation>,
    next_order: u64,
    accepted: BTreeSet<DeviceId>,
}

impl Invites {
    pub(super) fn is_held(&self, id: &EnvelopeId) -> bool {
        self.held.contains_key(id)
    }
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

    /// The invitations held for the user, oldest first (a conversation may appear more than
    /// once, with different inviters).
    pub fn invitations(&self) -> Vec<HeldInvitation> {
        let mut v: Vec<HeldInvitation> = self.invites.held.values().cloned().collect();
        v.sort_by_key(|h| h.order);
        v
    }

    fn held_for(&self, conv: &ConversationId) -> Vec<HeldInvitation> {
        self.invitations()
            .into_iter()
            .filter(|h| h.conversation == *conv)
            .collect()
    }

    /// True if invitations from `d` are taken without asking: a current member of a
    /// conversation held here, or a device the user accepted. (A creator that was removed
    /// is not a contact.)
    pub fn is_contact(&self, d: &DeviceId) -> bool {
        *d == self.me.device_id()
            || self.invites.accepted.contains(d)
            || self
                .convs
                .values()
                .any(|c| c.membership.state().is_member(d))
    }

    pub(super) fn load_invites(&mut self) -> Result<(), StoreError> {
        let mut held = Vec::new();
        let mut stale = Vec::new();
        self.store.scan_prefix(keys::HELD_INVITATION, &mut |k, v| {
            match k
                .get(2..)
                .and_then(EnvelopeId::from_slice)
                .and_then(|e| HeldInvitation::decode(e, v))
            {
                Some(h) => held.push(h),
                None => stale.push(k.to_vec()),
            }
            true
        })?;
        for k in stale {
            self.store.delete(&k)?;
        }
        // Records written before issue 11 do not name the tag: it is one of the inbox
        // tags of the day the invitation arrived (those it was stored under), looked up
        // once and written into the record.
        let mut found = Vec::with_capacity(held.len());
        for (mut h, tag) in held {
            if tag.is_none() {
                let day = crypto::day_of(h.received_ms);
                let mut at = None;
                for t in inbox_window(&self.me.device_id(), day) {
                    if self.store.contains(&t, &h.envelope)? {
                        at = Some(t);
                        break;
                    }
                }
                let Some(t) = at else {
                    // Its envelope is gone: nothing left to hold.
                    self.store.delete(&keys::held_invitation(&h.envelope))?;
                    continue;
                };
                h.tag = t;
                self.store
                    .put(&keys::held_invitation(&h.envelope), &h.encode())?;
            }
            found.push(h);
        }
        let held = found;
        let mut accepted = Vec::new();
        self.store.scan_keys(keys::ACCEPTED_DEVICE, &mut |k| {
            if let Some(d) = k.get(2..34).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                accepted.push(DeviceId(d));
            }
            true
        })?;
        self.invites.next_order = held.iter().map(|h| h.order + 1).max().unwrap_or(0);
        self.invites.held = held.into_iter().map(|h| (h.envelope, h)).collect();
        self.invites.accepted = accepted.into_iter().collect();
        Ok(())
    }

    /// Whether an opened invitation for `conv` from `inviter` must be held rather than taken.
    pub(super) fn must_hold(&self, conv: &ConversationId, inviter: &DeviceId) -> bool {
        self.invites.policy == InvitePolicy::HoldStrangers
            && !self.convs.contains_key(conv)
            && !self.is_contact(inviter)
    }

    /// The oldest held invitation matching `f`.
    fn oldest_held(&self, f: impl Fn(&HeldInvitation) -> bool) -> Option<EnvelopeId> {
        self.invites
            .held
            .values()
            .filter(|h| f(h))
            .min_by_key(|h| h.order)
            .map(|h| h.envelope)
    }

    /// The oldest invitation of the inviter that holds the most (ties: the oldest).
    fn oldest_of_largest_inviter(&self) -> Option<EnvelopeId> {
        let mut per: BTreeMap<DeviceId, (usize, u64)> = BTreeMap::new();
        for h in self.invites.held.values() {
            let e = per.entry(h.inviter).or_insert((0, u64::MAX));
            e.0 += 1;
            e.1 = e.1.min(h.order);
        }
        let (d, _) = per
            .into_iter()
            .max_by_key(|(_, (n, first))| (*n, std::cmp::Reverse(*first)))?;
        self.oldest_held(|h| h.inviter == d)
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
        let room = |r: &Self| {
            let per_conv = r
                .invites
                .held
                .values()
                .filter(|h| h.conversation == conv)
                .count();
            let per_inviter = r
                .invites
                .held
                .values()
                .filter(|h| h.inviter == inviter)
                .count();
            if per_conv >= MAX_HELD_PER_CONVERSATION {
                r.oldest_held(|h| h.conversation == conv)
            } else if per_inviter >= MAX_HELD_PER_INVITER {
                r.oldest_held(|h| h.inviter == inviter)
            } else if r.invites.held.len() >= MAX_HELD_INVITATIONS {
                r.oldest_of_largest_inviter()
            } else {
                None
            }
        };
        while let Some(victim) = room(self) {
            self.drop_invitation(&victim, false)?;
        }
        self.store.put_envelope(&tag, &env.id(), env.bytes())?;
        let h = HeldInvitation {
            tag,
            conversation: conv,
            inviter,
            envelope: env.id(),
            received_ms: now_ms,
            order: self.invites.next_order,
        };
        self.invites.next_order += 1;
        self.store
            .put(&keys::held_invitation(&env.id()), &h.encode())?;
        self.invites.held.insert(env.id(), h);
        self.emit(Event::InvitationHeld {
            conversation: conv,
            inviter,
        });
        Ok(Ingested::InvitationHeld(conv))
    }

    /// Forgets a held invitation and removes its envelope: with `tombstone` it is
    /// remembered as dropped (declined, refused); without, the next reconciliation with
    /// whoever holds it may bring it back (evicted to make room).
    fn drop_invitation(&mut self, env: &EnvelopeId, tombstone: bool) -> Result<(), StoreError> {
        let Some(h) = self.invites.held.remove(env) else {
            return Ok(());
        };
        self.store.delete(&keys::held_invitation(env))?;
        self.store.remove_envelope(&h.tag, env)?;
        if tombstone {
            self.tombstone(&h.tag, env)?;
        }
        Ok(())
    }

    /// Declines the held invitations of a conversation: they are dropped and remembered as
    /// tombstones (not fetched again while those are kept).
    pub fn decline_invitation(&mut self, conv: &ConversationId) -> Result<(), CommandError> {
        let held = self.held_for(conv);
        if held.is_empty() {
            return Err(CommandError::NoSuchInvitation);
        }
        for h in held {
            self.drop_invitation(&h.envelope, true)?;
        }
        Ok(())
    }

    /// Accepts the held invitations of a conversation: each that verifies is taken as if a
    /// contact had sent it (the first adds the conversation). Nobody becomes a contact by
    /// it. If none can be taken they stay held (a store error, no room for another
    /// conversation) or, if they are invalid, are dropped as refused; either way an error
    /// says why.
    pub fn accept_invitation(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<ConversationId, CommandError> {
        let held = self.held_for(conv);
        if held.is_empty() {
            return Err(CommandError::NoSuchInvitation);
        }
        if !self.convs.contains_key(conv) && self.convs.len() >= MAX_CONVERSATIONS {
            return Err(CommandError::TooManyConversations);
        }
        let mut taken = false;
        let mut refused = Vec::new();
        let mut why = None;
        for h in &held {
            let env = match self.store.envelope(&h.tag, &h.envelope)? {
                Some(b) if !b.is_empty() => Envelope::decode(&b).ok(),
                _ => None,
            };
            let Some(env) = env else {
                refused.push(h.envelope);
                continue;
            };
            match self.take_invite(&env, now_ms) {
                Ok(_) => taken = true,
                Err(IngestError::Store(e)) => return Err(e.into()),
                Err(IngestError::TooManyConversations) => {
                    return Err(CommandError::TooManyConversations);
                }
                Err(e) => {
                    why = Some(e.to_string());
                    refused.push(h.envelope);
                }
            }
        }
        for e in &refused {
            self.drop_invitation(e, true)?;
        }
        if !taken {
            return Err(CommandError::InvitationRefused(
                why.unwrap_or_else(|| "its envelope is gone".into()),
            ));
        }
        for h in &held {
            if self.invites.held.remove(&h.envelope).is_some() {
                self.store.delete(&keys::held_invitation(&h.envelope))?;
            }
        }
        Ok(*conv)
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
        self.reclassify_carried(&[*d]);
        Ok(())
    }

    /// Accepts a device: its invitations are taken from now on, and the conversations it
    /// invited us to are accepted (returned).
    pub fn accept_device(
        &mut self,
        d: &DeviceId,
        now_ms: u64,
    ) -> Result<Vec<ConversationId>, CommandError> {
        if !d.is_valid() {
            return Err(CommandError::BadDevice(d.to_string()));
        }
        self.accept_device_only(d)?;
        let mut from: Vec<ConversationId> = self
            .invitations()
            .into_iter()
            .filter(|h| h.inviter == *d)
            .map(|h| h.conversation)
            .collect();
        from.sort();
        from.dedup();
        let mut out = Vec::new();
        for c in from {
            if self.invites.held.values().any(|h| h.conversation == c) {
                out.push(self.accept_invitation(&c, now_ms)?);
            }
        }
        Ok(out)
    }
}
