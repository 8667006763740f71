//! Contacts this device's user verified: the safety number (or the QR code) of a device,
//! compared in person or over a trusted channel, recorded as `y/` ‖ device id → when (ms,
//! u64 BE). A local note, never sent: it marks the device in member lists and peers, and a
//! verified device found signing two different changes with one sequence number (its key on
//! two devices: a cloned image) is flagged as such (docs/security.md, B9).
//!
//! Only a number that is the device's own is taken ([`DeviceId::check_safety_number`]): a
//! typo or a substituted code is refused, never recorded. At most
//! [`MAX_VERIFIED_DEVICES`] are kept; past it a new one is refused with a clear error (the
//! user removes one first), since silently forgetting a verification would be worse.

use super::{CommandError, Replica, keys};
use crate::identity::SafetyError;
use crate::ids::DeviceId;
use crate::limits::MAX_VERIFIED_DEVICES;
use crate::store::Store;

impl<S: Store> Replica<S> {
    /// Marks `device` verified with the safety number the user typed or scanned (any
    /// script's digits, any grouping). Returns false if it was verified already (the first
    /// time is kept).
    pub fn mark_verified(
        &mut self,
        device: &DeviceId,
        safety_number: &str,
        now_ms: u64,
    ) -> Result<bool, CommandError> {
        if !device.is_valid() {
            return Err(CommandError::BadDevice(device.to_string()));
        }
        device.check_safety_number(safety_number)?;
        let key = keys::verified(device);
        if self.store.get(&key)?.is_some() {
            return Ok(false);
        }
        if self.verified_devices()?.len() >= MAX_VERIFIED_DEVICES {
            return Err(CommandError::TooManyVerified);
        }
        self.store.put(&key, &now_ms.to_be_bytes())?;
        Ok(true)
    }

    /// Forgets that `device` was verified. Returns whether it was.
    pub fn unmark_verified(&mut self, device: &DeviceId) -> Result<bool, CommandError> {
        let key = keys::verified(device);
        let was = self.store.get(&key)?.is_some();
        if was {
            self.store.delete(&key)?;
        }
        Ok(was)
    }

    /// When `device` was verified here, if it was.
    pub fn verified_at(&self, device: &DeviceId) -> Option<u64> {
        let v = self.store.get(&keys::verified(device)).ok()??;
        Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
    }

    /// Every verified device with when, in device order.
    pub fn verified_devices(&self) -> Result<Vec<(DeviceId, u64)>, CommandError> {
        let mut out = Vec::new();
        self.store.scan_prefix(keys::VERIFIED, &mut |k, v| {
            let d = k.get(2..34).and_then(|b| <[u8; 32]>::try_from(b).ok());
            let at = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok());
            if let (Some(d), Some(at)) = (d, at) {
                out.push((DeviceId(d), u64::from_be_bytes(at)));
            }
            true
        })?;
        Ok(out)
    }
}

impl From<SafetyError> for CommandError {
    fn from(e: SafetyError) -> Self {
        CommandError::Safety(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::store::MemoryStore;

    fn replica(store: MemoryStore) -> Replica<MemoryStore> {
        Replica::open(Identity::from_seed([1; 32]), store, [1; 32]).unwrap()
    }
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn only_the_devices_own_safety_number_marks_it_verified_and_it_survives_reopen() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let a = Identity::generate(&mut rng).device_id();
        let b = Identity::generate(&mut rng).device_id();
        let mut r = replica(MemoryStore::new());
        // A substituted number (b's) or a typo is refused, and nothing is recorded.
        assert!(matches!(
            r.mark_verified(&a, &b.safety_number(), 10),
            Err(CommandError::Safety(_))
        ));
        assert!(matches!(
            r.mark_verified(&a, "123", 10),
            Err(CommandError::Safety(_))
        ));
        assert_eq!(r.verified_at(&a), None);
        assert_eq!(r.mark_verified(&a, &a.safety_number(), 10), Ok(true));
        assert_eq!(r.mark_verified(&a, &a.safety_number(), 20), Ok(false));
        assert_eq!(
            r.verified_at(&a),
            Some(10),
            "the first verification is kept"
        );
        assert_eq!(r.verified_devices().unwrap(), vec![(a, 10)]);
        r.store_mut().flush().unwrap();
        let mut r = replica(r.into_store());
        assert_eq!(r.verified_at(&a), Some(10));
        assert_eq!(r.unmark_verified(&a), Ok(true));
        assert_eq!(r.unmark_verified(&a), Ok(false));
        assert_eq!(r.verified_at(&a), None);
    }

    #[test]
    fn verified_devices_are_bounded_and_the_next_is_refused_not_evicted() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let mut r = replica(MemoryStore::new());
        let mut first = None;
        for i in 0..MAX_VERIFIED_DEVICES {
            let d = Identity::generate(&mut rng).device_id();
            r.store
                .put(&keys::verified(&d), &(i as u64).to_be_bytes())
                .unwrap();
            first.get_or_insert(d);
        }
        let d = Identity::generate(&mut rng).device_id();
        assert_eq!(
            r.mark_verified(&d, &d.safety_number(), 1),
            Err(CommandError::TooManyVerified)
        );
        assert!(r.verified_at(&first.unwrap()).is_some());
    }
}
