//! Devices their organisation revoked (issue 12): the engine tells the replica which device
//! keys a revocation it holds kills ([`Replica::revoke_devices`]), when it learns one and at
//! start from the saved files; the set is also kept in the store (`z/` ‖ device), at most
//! [`MAX_REVOKED_DEVICES`].
//!
//! **Enforced on envelopes.** A revoked device's timestamps are its own claim, so nothing
//! here looks at them. What this replica *holds* (stored, applied) when it learns the
//! revocation stays; everything else the device signed — changes and membership
//! operations, pushed by it or carried by any relay — is refused
//! ([`IngestError::AuthorRevoked`]) while the device is still a member here.
//!
//! **Agreement.** Replicas learn a revocation at different times, so "what this replica
//! held" differs between them. They agree through the removal, as for any removed member:
//! an admin that learns the revocation removes the device from each conversation
//! ([`Replica::remove_member`], which rotates the key), and the signed removal pins, per
//! page, what *that admin* held when the revocation reached it. Once the removal is in the
//! log, the removed-member rules decide on every replica alike (`State::change_allowed`,
//! `State::late_ceiling`, `Page::set_late_ceilings`; shown up to the pin, whatever arrives
//! and in whatever order). So a refusal before the removal is no tombstone: the envelope may
//! be fetched again, and once the removal is in the log it is judged by the removal's pins
//! (taken where a replica that learnt later had it; out of the view past the pin).
//! Several admins may remove the device concurrently: the membership log applies the first
//! removal in its order and rejects the others (`NoSuchMember`), on every replica alike.

use super::*;

/// Revoked devices a replica keeps (the organisation module holds at most as many
/// revocations, [`crate::org::MAX_REVOCATIONS`]).
pub const MAX_REVOKED_DEVICES: usize = crate::org::MAX_REVOCATIONS;

impl<S: Store> Replica<S> {
    /// True if `d` is a device its organisation revoked, as far as this replica knows.
    pub fn is_revoked(&self, d: &DeviceId) -> bool {
        self.revoked.contains(d)
    }

    /// The revoked devices this replica knows.
    pub fn revoked_devices(&self) -> impl Iterator<Item = &DeviceId> {
        self.revoked.iter()
    }

    /// Takes in devices whose organisation revoked them: from now on what they signed and
    /// this replica does not hold is refused, and in every conversation where this device
    /// is an admin and the revoked device a member, it is removed (with a key rotation).
    /// Returns the envelopes sealed (removals and rotations). Idempotent: a device already
    /// known, or already removed, changes nothing. Past [`MAX_REVOKED_DEVICES`] further
    /// devices are not kept (nor enforced). This
    /// device itself is never taken in (a wipe order is how a device learns it is done).
    pub fn revoke_devices(
        &mut self,
        devices: &[DeviceId],
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, CommandError> {
        let me = self.me.device_id();
        for d in devices {
            if *d == me || self.revoked.contains(d) {
                continue;
            }
            if self.revoked.len() >= MAX_REVOKED_DEVICES {
                continue;
            }
            self.store.put(&keys::revoked(d), &[])?;
            self.revoked.insert(*d);
        }
        self.remove_revoked(now_ms)
    }

    /// Removes the revoked devices from every conversation where this device is an admin
    /// and they are members (a look at each such conversation's members). Removals that
    /// cannot go in now (a full log) are tried again by [`Replica::maintain`].
    pub(super) fn remove_revoked(&mut self, now_ms: u64) -> Result<Vec<EnvelopeId>, CommandError> {
        if self.revoked.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me.device_id();
        let mut out = Vec::new();
        let ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        for id in ids {
            let st = self.convs[&id].membership.state();
            if !st.is_admin(&me) {
                continue;
            }
            let targets: Vec<DeviceId> = st
                .members
                .keys()
                .filter(|d| **d != me && self.revoked.contains(d))
                .copied()
                .collect();
            for d in targets {
                match self.remove_member(&id, d, now_ms) {
                    Ok(sealed) => out.extend(sealed),
                    Err(CommandError::Store(e)) => return Err(CommandError::Store(e)),
                    // Not now (a full log, epochs exhausted): `maintain` tries again.
                    Err(_) => {}
                }
            }
        }
        Ok(out)
    }

    /// Whether an envelope signed by `signer` in `conv` is refused as a revoked device's:
    /// revoked, and still a member there (once removed, the removal's pins decide).
    pub(super) fn refused_as_revoked(&self, conv: &ConversationId, signer: &DeviceId) -> bool {
        self.revoked.contains(signer)
            && self
                .convs
                .get(conv)
                .is_some_and(|c| c.membership.state().is_member(signer))
    }

    /// Loads the revoked devices at open (before pending envelopes are read again).
    pub(super) fn load_revoked(&mut self) -> Result<(), StoreError> {
        let mut found = BTreeSet::new();
        self.store.scan_keys(keys::REVOKED, &mut |k| {
            if let Some(d) = k
                .get(keys::REVOKED.len()..)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                found.insert(DeviceId(d));
            }
            true
        })?;
        self.revoked = found;
        Ok(())
    }
}
