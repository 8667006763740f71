//! One conversation as a member sees it: its secret and keys, its membership, which pages it has.
//! Storage is the [`crate::replica::Replica`]'s job; this type holds the in-memory state.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{ConversationSecret, Key};
use crate::envelope::Precedence;
use crate::ids::{ConversationId, DeviceId, EpochId, Tag, actor_bytes};
use crate::limits::MAX_EPOCHS;
use crate::membership::Membership;

/// What an invitation carries: the conversation secret, the creator (which names the
/// conversation), and the keys the inviting admin grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub secret: ConversationSecret,
    pub creator: DeviceId,
    pub keys: Vec<(EpochId, Key)>,
}

impl Invitation {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.secret.0)
            .raw(&self.creator.0)
            .varint(self.keys.len() as u64);
        for (e, k) in &self.keys {
            w.raw(&e.0).raw(k);
        }
        w.into_vec()
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let secret = ConversationSecret(r.array("secret")?);
        let creator = DeviceId(r.array("creator")?);
        let n = r.count("keys", MAX_EPOCHS, 36)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push((EpochId(r.array("epoch")?), r.array("key")?));
        }
        r.finish()?;
        Ok(Self {
            secret,
            creator,
            keys,
        })
    }
}

/// The routing tag of the conversation named by (secret, creator). It depends on the creator
/// as the conversation id does, so an invitation that pairs a known secret with another
/// creator names another conversation under another tag: it can never take over the tag of
/// the real one (docs/security.md, "Control plane against members and ex-members").
pub fn conversation_tag(secret: &ConversationSecret, creator: &DeviceId) -> Tag {
    let mut h = blake3::Hasher::new_derive_key("vaarta 2026 conversation tag v2");
    h.update(&secret.0);
    h.update(&creator.0);
    let mut t = [0u8; 16];
    t.copy_from_slice(&h.finalize().as_bytes()[..16]);
    Tag(t)
}

/// What a hello proves about a conversation (docs/security.md, "What a stranger learns from
/// a hello"): a value only a holder of both the tag and the epoch's key can compute, so a
/// device removed by the rotation that started the epoch cannot.
pub fn presence(tag: &Tag, key: &Key) -> Tag {
    let mut h = blake3::Hasher::new_derive_key("vaarta 2026 hello presence v1");
    h.update(key);
    h.update(&tag.0);
    let mut t = [0u8; 16];
    t.copy_from_slice(&h.finalize().as_bytes()[..16]);
    Tag(t)
}

/// Parameters of the ops staged (not yet sealed) in one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Staged {
    pub precedence: Precedence,
    pub expiry: Option<u64>,
    /// Body bytes staged, plus a per-message allowance (bounds the envelope's size).
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Conversation {
    pub id: ConversationId,
    pub secret: ConversationSecret,
    pub creator: DeviceId,
    pub tag: Tag,
    pub control_key: Key,
    pub membership: Membership,
    pub(crate) keys: BTreeMap<EpochId, Key>,
    /// Pages known to exist (loaded or not; the replica's page cache holds loaded ones).
    pub(crate) known_pages: BTreeSet<u32>,
    pub(crate) actors: BTreeMap<[u8; 16], DeviceId>,
    pub(crate) staged: BTreeMap<u32, Staged>,
    /// Epochs whose envelopes wrote into each page. A device starts a new page when its key
    /// changes, so that members who joined with the new key never depend on changes they
    /// cannot decrypt.
    pub(crate) page_epochs: BTreeMap<u32, BTreeSet<EpochId>>,
    /// When admin duties (rotation, key shares) last ran, in ms.
    pub(crate) last_duty_ms: u64,
}

impl Conversation {
    pub fn new(secret: ConversationSecret, creator: DeviceId) -> Self {
        let id = secret.conversation_id(&creator);
        let tag = conversation_tag(&secret, &creator);
        let control_key = secret.control_key();
        // No key yet: the creator takes the first epoch key, others receive keys from an admin.
        let keys = BTreeMap::new();
        let mut c = Self {
            id,
            membership: Membership::new(id, secret.clone()),
            secret,
            creator,
            tag,
            control_key,
            keys,
            known_pages: BTreeSet::new(),
            actors: BTreeMap::new(),
            staged: BTreeMap::new(),
            page_epochs: BTreeMap::new(),
            last_duty_ms: 0,
        };
        c.learn_actor(creator);
        c
    }

    /// The same conversation with a lower epoch bound ([`Membership::with_max_epochs`]).
    pub fn with_max_epochs(mut self, n: usize) -> Self {
        self.membership = self.membership.with_max_epochs(n);
        self
    }

    pub fn learn_actor(&mut self, d: DeviceId) {
        self.actors.insert(actor_bytes(&d), d);
    }

    /// The device behind an actor id, if known.
    pub fn device_of_actor(&self, actor: &[u8]) -> Option<DeviceId> {
        let a: [u8; 16] = actor.try_into().ok()?;
        self.actors.get(&a).copied()
    }

    /// Devices whose key starts with `hint` among the creator, the members and the removed
    /// members as the evaluated membership names them: the candidates for a change
    /// envelope's signer. Devices named only by a rejected operation are never candidates
    /// (they could be planted by the thousand with the hint of a member's key).
    pub fn signers(&self, hint: &[u8]) -> Vec<DeviceId> {
        let st = self.membership.state();
        let mut out: Vec<DeviceId> = st
            .members
            .keys()
            .chain(st.removed.keys())
            .chain([&self.creator])
            .filter(|d| d.0.starts_with(hint))
            .copied()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn title(&self) -> &str {
        &self.membership.state().title
    }

    /// The key of `epoch`, if this device holds it *and* it matches the check the epoch's
    /// admin recorded in membership. A key offered by anyone else (an invitation, before the
    /// membership arrived) is not used until then, and never if it does not match.
    pub fn key(&self, epoch: &EpochId) -> Option<&Key> {
        self.keys
            .get(epoch)
            .filter(|k| self.membership.state().key_matches(epoch, k) == Some(true))
    }

    /// The key to *read* envelopes of `epoch` with: [`Conversation::key`], or, for an epoch
    /// no longer in the membership state (its rotation was voided by its admin's removal), a
    /// held key that matches the check a held `Keys` operation recorded for it. Never used
    /// to seal.
    pub fn read_key(&self, epoch: &EpochId) -> Option<&Key> {
        self.key(epoch).or_else(|| {
            self.keys.get(epoch).filter(|k| {
                self.membership.state().epoch(epoch).is_none()
                    && self
                        .membership
                        .records_check(epoch, &crate::membership::key_check(k))
            })
        })
    }

    /// Held keys of epochs whose rotation was voided ([`Conversation::read_key`]).
    pub fn voided_keys(&self) -> Vec<(EpochId, Key)> {
        self.keys
            .iter()
            .filter(|(e, _)| self.membership.state().epoch(e).is_none())
            .filter_map(|(e, _)| self.read_key(e).map(|k| (*e, *k)))
            .collect()
    }

    pub fn epochs_held(&self) -> Vec<EpochId> {
        self.keys.keys().copied().collect()
    }

    /// The key to seal new messages with: the newest epoch whose key we hold.
    pub fn sending_epoch(&self) -> Option<(EpochId, Key)> {
        let st = self.membership.state();
        st.epochs
            .iter()
            .rev()
            .find_map(|e| self.key(&e.id).map(|k| (e.id, *k)))
    }

    /// What this device's hello proves for the conversation ([`presence`]): of its current
    /// epoch (the newest whose key it holds, checked); before any key is checked (an invitee
    /// whose membership has not arrived), of each key it holds; nothing without a key.
    pub fn listed_presences(&self) -> Vec<Tag> {
        if let Some((_, k)) = self.sending_epoch() {
            return vec![presence(&self.tag, &k)];
        }
        let mut v: Vec<Tag> = self.keys.values().map(|k| presence(&self.tag, k)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The presence of the epoch before the current one (its key held and checked): what a
    /// member that has not yet seen the latest rotation lists.
    pub fn previous_presence(&self) -> Option<Tag> {
        let st = self.membership.state();
        let (current, _) = self.sending_epoch()?;
        let at = st.epochs.iter().position(|e| e.id == current)?;
        st.epochs[..at]
            .iter()
            .rev()
            .find_map(|e| self.key(&e.id))
            .map(|k| presence(&self.tag, k))
    }

    /// The page new messages go to with `epoch`: the newest page unless it is full or was
    /// written under another key.
    /// A FLASH message starts a page of its own (unless the newest page is still empty), so
    /// it depends on nothing: a device that missed earlier messages — expired at relays, or
    /// never carried — can still show the alert the moment it arrives.
    pub(crate) fn page_for(
        &self,
        epoch: &EpochId,
        flash: bool,
        len: impl Fn(u32) -> Option<u32>,
    ) -> u32 {
        let top = self.top_page();
        if self.staged.contains_key(&top) {
            return top;
        }
        let foreign = self
            .page_epochs
            .get(&top)
            .is_some_and(|es| es.iter().any(|e| e != epoch));
        let used = len(top).unwrap_or(0);
        let full = used >= crate::limits::PAGE_CAPACITY;
        if foreign || full || (flash && used > 0) {
            top + 1
        } else {
            top
        }
    }

    pub fn top_page(&self) -> u32 {
        self.known_pages.iter().next_back().copied().unwrap_or(0)
    }

    pub fn pages(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.known_pages.iter().copied()
    }

    /// A member's display name: their own profile, else a short id.
    pub fn name_of(&self, d: &DeviceId) -> Option<String> {
        self.membership
            .state()
            .members
            .get(d)
            .and_then(|m| m.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_round_trip_and_strictness() {
        let inv = Invitation {
            secret: ConversationSecret([1; 32]),
            creator: DeviceId([2; 32]),
            keys: vec![(EpochId([3; 4]), [4; 32])],
        };
        let b = inv.encode();
        assert_eq!(Invitation::decode(&b).unwrap(), inv);
        assert!(Invitation::decode(&b[..b.len() - 1]).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(Invitation::decode(&long).is_err());
    }
}
