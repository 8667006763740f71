//! Devices vouched for by an organisation this device pinned (issue 9, C4): the engine
//! judges each link's credential chain against the pinned roots and tells the replica of a
//! verified one ([`Replica::vouch`]) or of a revoked one ([`Replica::unvouch`]). What such a
//! device pushes to be carried, when it is not a contact, counts in a share of its own that
//! strangers never evict (`carry.rs`). Device keys are free; an enrolment is not.
//!
//! Each entry is a record `g/` ‖ device → the chain's earliest expiry (ms), so the share
//! holds across restarts; an expired entry counts for nothing and is dropped at open. At
//! most [`MAX_VOUCHED_DEVICES`]: past it the entry expiring first goes. Only a chain that
//! verified against a root pinned here adds one, so no stranger can grow the table.

use super::*;
use crate::limits::MAX_VOUCHED_DEVICES;

impl<S: Store> Replica<S> {
    /// True if `d` is vouched for now.
    pub fn is_vouched(&self, d: &DeviceId) -> bool {
        self.vouched
            .get(d)
            .is_some_and(|until| *until > self.clock.last().ms)
    }

    /// `d` presented a credential chain that verified against a root pinned here, valid
    /// until `until_ms`: what it pushes is carried in the vouched share from now on.
    pub fn vouch(&mut self, d: &DeviceId, until_ms: u64) -> Result<(), StoreError> {
        if self.vouched.get(d) == Some(&until_ms) {
            return Ok(());
        }
        if !self.vouched.contains_key(d) && self.vouched.len() >= MAX_VOUCHED_DEVICES {
            let first = self
                .vouched
                .iter()
                .min_by_key(|(dev, until)| (**until, **dev))
                .map(|(dev, _)| *dev);
            if let Some(old) = first {
                self.unvouch(&old)?;
            }
        }
        self.store.put(&keys::vouched(d), &until_ms.to_be_bytes())?;
        self.vouched.insert(*d, until_ms);
        self.reclassify_carried(&[*d]);
        Ok(())
    }

    /// `d` is vouched for no more (its credential was revoked, or no longer verifies).
    pub fn unvouch(&mut self, d: &DeviceId) -> Result<(), StoreError> {
        if self.vouched.remove(d).is_some() {
            self.store.delete(&keys::vouched(d))?;
            self.reclassify_carried(&[*d]);
        }
        Ok(())
    }

    /// Loads the vouched devices at open (before the carried index, which uses them);
    /// expired and undecodable records are deleted.
    pub(super) fn load_vouched(&mut self) -> Result<(), StoreError> {
        let now = self.clock.last().ms;
        let mut stale = Vec::new();
        let mut live = Vec::new();
        self.store.scan_prefix(keys::VOUCHED, &mut |k, v| {
            let d = k
                .get(keys::VOUCHED.len()..)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(DeviceId);
            let until = <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
            match (d, until) {
                (Some(d), Some(u)) if u > now => live.push((d, u)),
                _ => stale.push(k.to_vec()),
            }
            true
        })?;
        for k in stale {
            self.store.delete(&k)?;
        }
        self.vouched = live.into_iter().collect();
        Ok(())
    }
}
