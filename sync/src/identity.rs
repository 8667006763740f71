//! Device identity: one Ed25519 key pair per device, created at first run from the caller's
//! CSPRNG (the daemon uses the OS; the simulator a seeded generator). The X25519 key used
//! for key agreement is *derived* from it (the standard Edwards→Montgomery map, as libsodium's
//! `crypto_sign_ed25519_pk_to_curve25519`), so a member can be added by device id alone:
//! the id is enough to seal keys to that device.

use std::fmt;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use thiserror::Error;

use crate::ids::DeviceId;

/// A device's secret key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    id: DeviceId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.id.short())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("not a valid Ed25519 public key")]
    BadKey,
    #[error("signature does not verify")]
    BadSignature,
}

impl Identity {
    /// The identity whose secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let id = DeviceId(signing.verifying_key().to_bytes());
        Self { signing, id }
    }

    /// A fresh identity from a cryptographically secure generator.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The secret seed, for the node's identity file.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn device_id(&self) -> DeviceId {
        self.id
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(msg).to_bytes()
    }

    /// The X25519 private scalar that matches [`DeviceId::x25519_public`].
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }
}

/// Decompressed public keys of recent signers: decompressing a key is a field square root,
/// ~15% of a verification, and the same few members sign almost everything.
#[derive(Debug, Default, Clone)]
pub struct KeyCache {
    keys: std::collections::HashMap<DeviceId, VerifyingKey>,
}

impl KeyCache {
    const MAX: usize = 4096;

    pub fn verify(
        &mut self,
        who: &DeviceId,
        msg: &[u8],
        sig: &[u8; 64],
    ) -> Result<(), VerifyError> {
        let key = match self.keys.get(who) {
            Some(k) => *k,
            None => {
                let k = VerifyingKey::from_bytes(&who.0).map_err(|_| VerifyError::BadKey)?;
                if self.keys.len() >= Self::MAX {
                    self.keys.clear();
                }
                self.keys.insert(*who, k);
                k
            }
        };
        key.verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl DeviceId {
    /// Strict Ed25519 verification (rejects small-order keys and non-canonical signatures,
    /// so a signature cannot be malleated into a second valid one).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), VerifyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| VerifyError::BadKey)?;
        key.verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| VerifyError::BadSignature)
    }

    /// True if these bytes are a usable Ed25519 public key.
    pub fn is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|k| !k.is_weak())
    }

    /// The device's X25519 public key, derived from its Ed25519 key.
    pub fn x25519_public(&self) -> Option<[u8; 32]> {
        let key = VerifyingKey::from_bytes(&self.0).ok()?;
        if key.is_weak() {
            return None;
        }
        Some(key.to_montgomery().to_bytes())
    }

    /// The Automerge actor bound to this key.
    pub fn actor(&self) -> automerge::ActorId {
        automerge::ActorId::from(&crate::ids::actor_bytes(self)[..])
    }

    /// Thirty digits in six groups that identify this device's key: read it out or compare
    /// it on screen. Iterated hashing makes grinding a look-alike key expensive.
    pub fn safety_number(&self) -> String {
        digits(
            &stretch(b"vaarta 2026 device safety number v1", &[&self.0]),
            30,
        )
    }
}

/// The number two devices compare to be sure they hold each other's real keys: the same
/// on both sides whatever the order of the arguments.
pub fn safety_number(a: &DeviceId, b: &DeviceId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    digits(
        &stretch(b"vaarta 2026 pair safety number v1", &[&lo.0, &hi.0]),
        30,
    )
}

fn stretch(domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    for p in parts {
        h.update(p);
    }
    let mut out = *h.finalize().as_bytes();
    for _ in 0..4096 {
        let mut h = blake3::Hasher::new();
        h.update(&out);
        for p in parts {
            h.update(p);
        }
        out = *h.finalize().as_bytes();
    }
    out
}

/// `n` decimal digits (n a multiple of 5) in groups of five, each group from 5 bytes mod 10^5.
fn digits(hash: &[u8; 32], n: usize) -> String {
    let groups = n / 5;
    let mut out = String::with_capacity(n + groups);
    for g in 0..groups {
        let chunk = &hash[g * 5..g * 5 + 5];
        let mut v: u64 = 0;
        for b in chunk {
            v = (v << 8) | u64::from(*b);
        }
        if g > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn x25519_matches_between_halves() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        use curve25519_dalek::montgomery::MontgomeryPoint;
        let ab =
            MontgomeryPoint(b.device_id().x25519_public().unwrap()).mul_clamped(a.x25519_secret());
        let ba =
            MontgomeryPoint(a.device_id().x25519_public().unwrap()).mul_clamped(b.x25519_secret());
        assert_eq!(ab, ba);
    }

    #[test]
    fn safety_numbers_are_symmetric_and_distinct() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = Identity::generate(&mut rng).device_id();
        let b = Identity::generate(&mut rng).device_id();
        let c = Identity::generate(&mut rng).device_id();
        assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
        assert_ne!(safety_number(&a, &b), safety_number(&a, &c));
        let s = a.safety_number();
        assert_eq!(s.len(), 35);
        assert!(
            s.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
        );
    }

    #[test]
    fn strict_verification() {
        let id = Identity::from_seed([3; 32]);
        let sig = id.sign(b"hello");
        assert!(id.device_id().verify(b"hello", &sig).is_ok());
        assert_eq!(
            id.device_id().verify(b"hellO", &sig),
            Err(VerifyError::BadSignature)
        );
        // The identity point is a weak key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(!DeviceId(weak).is_valid());
        assert!(DeviceId(weak).x25519_public().is_none());
    }
}
