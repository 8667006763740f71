//! Keys and the three primitives every envelope uses.
//!
//! * **BLAKE3** `derive_key` with a distinct context string for every derived value (domain
//!   separation: a tag can never be confused with a key or an id).
//! * **XChaCha20-Poly1305** for conversation content: 192-bit random nonces are safe to draw
//!   independently on every device, with no nonce state to lose in a crash.
//! * **Noise `X`** (`Noise_X_25519_ChaChaPoly_BLAKE2s`, via `snow`) to seal conversation keys to
//!   one member: a single message, no reply needed, so it can wait in a relay while the member
//!   is offline; it authenticates the sender's static key, which we check against the signer.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

use crate::identity::Identity;
use crate::ids::{ConversationId, DeviceId, EpochId, Tag};

/// A 256-bit symmetric key.
pub type Key = [u8; 32];

pub const NONCE_LEN: usize = 24;
pub const AEAD_TAG_LEN: usize = 16;

fn derive(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn first<const N: usize>(h: [u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[..N]);
    out
}

/// The secret every member of a conversation holds from the start: it names the conversation
/// and derives its routing tag, the control key (membership operations) and the first epoch key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationSecret(pub [u8; 32]);

impl std::fmt::Debug for ConversationSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConversationSecret(..)")
    }
}

impl ConversationSecret {
    /// The conversation id binds the creator's key: only the creator can sign its genesis.
    pub fn conversation_id(&self, creator: &DeviceId) -> ConversationId {
        ConversationId(first(derive(
            "vaarta 2026 conversation id v1",
            &[&self.0, &creator.0],
        )))
    }

    pub fn tag(&self) -> Tag {
        Tag(first(derive("vaarta 2026 conversation tag v1", &[&self.0])))
    }

    pub fn control_key(&self) -> Key {
        derive("vaarta 2026 control key v1", &[&self.0])
    }

    pub fn first_epoch_key(&self) -> Key {
        derive("vaarta 2026 first epoch key v1", &[&self.0])
    }
}

pub fn epoch_id(key: &Key) -> EpochId {
    EpochId(first(derive("vaarta 2026 epoch id v1", &[key])))
}

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Days since the Unix epoch (UTC) for an instant in milliseconds.
pub fn day_of(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}

/// The inbox tag of a device for one day: invitations to the device travel under it.
/// It changes daily so a relay cannot follow one device's inbox for long.
pub fn inbox_tag(device: &DeviceId, day: u64) -> Tag {
    Tag(first(derive(
        "vaarta 2026 inbox tag v1",
        &[&device.0, &day.to_le_bytes()],
    )))
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("authenticated decryption failed")]
    Decrypt,
    #[error("sealing failed")]
    Seal,
    #[error("the recipient key is not a valid public key")]
    BadRecipient,
}

pub fn aead_seal(key: &Key, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Only fails for inputs beyond 256 GiB, which never reach here.
        .unwrap_or_default()
}

pub fn aead_open(
    key: &Key,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

const NOISE_X: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";
/// Bytes a Noise `X` message adds to its payload: e (32) + encrypted s (32+16) + tag (16).
pub const NOISE_X_OVERHEAD: usize = 96;
/// The largest payload one Noise message can carry.
pub const NOISE_MAX_PAYLOAD: usize = 65_535 - NOISE_X_OVERHEAD;

/// snow's default primitives, with randomness supplied by the caller (sans-IO).
struct SeededResolver {
    seed: [u8; 32],
}

struct SeededRandom(ChaCha20Rng);

impl snow::types::Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl snow::resolvers::CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        snow::resolvers::DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(
        &self,
        choice: &snow::params::HashChoice,
    ) -> Option<Box<dyn snow::types::Hash>> {
        snow::resolvers::DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(
        &self,
        choice: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::DefaultResolver.resolve_cipher(choice)
    }
}

fn builder(seed: [u8; 32]) -> snow::Builder<'static> {
    noise_builder(NOISE_X, seed)
}

/// A snow builder for `pattern` (a constant Noise pattern name) with snow's default
/// primitives and every random byte drawn from `seed` (sans-IO, reproducible). Shared by the
/// invitation seal here and the Bluetooth link's handshake (`vaarta-ble`).
///
/// # Panics
/// If `pattern` is not a pattern snow knows (a programming error: callers pass constants).
pub fn noise_builder(pattern: &'static str, seed: [u8; 32]) -> snow::Builder<'static> {
    let params = pattern.parse().expect("valid noise pattern");
    snow::Builder::with_resolver(params, Box::new(SeededResolver { seed }))
}

/// Seals `payload` to `recipient` with Noise `X`. `prologue` binds the context (e.g. the
/// envelope header), so a sealed key cannot be replayed elsewhere. `seed` must be fresh
/// randomness from the caller: it becomes the ephemeral key.
pub fn noise_seal(
    sender: &Identity,
    recipient: &DeviceId,
    prologue: &[u8],
    payload: &[u8],
    seed: [u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    if payload.len() > NOISE_MAX_PAYLOAD {
        return Err(CryptoError::Seal);
    }
    let rs = recipient.x25519_public().ok_or(CryptoError::BadRecipient)?;
    let sk = sender.x25519_secret();
    let mut hs = builder(seed)
        .local_private_key(&sk)
        .and_then(|b| b.remote_public_key(&rs))
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_initiator())
        .map_err(|_| CryptoError::Seal)?;
    let mut out = vec![0u8; payload.len() + NOISE_X_OVERHEAD];
    let n = hs
        .write_message(payload, &mut out)
        .map_err(|_| CryptoError::Seal)?;
    out.truncate(n);
    Ok(out)
}

/// Opens a Noise `X` message sealed to `me`. Returns the sender's X25519 static key and the
/// payload; the caller checks that key against the signer it expects.
pub fn noise_open(
    me: &Identity,
    prologue: &[u8],
    message: &[u8],
) -> Result<([u8; 32], Vec<u8>), CryptoError> {
    if message.len() < NOISE_X_OVERHEAD || message.len() > 65_535 {
        return Err(CryptoError::Decrypt);
    }
    let sk = me.x25519_secret();
    let mut hs = builder([0; 32])
        .local_private_key(&sk)
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_responder())
        .map_err(|_| CryptoError::Decrypt)?;
    let mut out = vec![0u8; message.len()];
    let n = hs
        .read_message(message, &mut out)
        .map_err(|_| CryptoError::Decrypt)?;
    out.truncate(n);
    let rs = hs
        .get_remote_static()
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or(CryptoError::Decrypt)?;
    Ok((rs, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_x_round_trip_and_binding() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let c = Identity::from_seed([3; 32]);
        let sealed = noise_seal(&a, &b.device_id(), b"ctx", b"key material", [9; 32]).unwrap();
        assert_eq!(sealed.len(), 12 + NOISE_X_OVERHEAD);
        let (from, payload) = noise_open(&b, b"ctx", &sealed).unwrap();
        assert_eq!(payload, b"key material");
        assert_eq!(Some(from), a.device_id().x25519_public());
        // Wrong recipient, wrong context, tampering: all fail.
        assert!(noise_open(&c, b"ctx", &sealed).is_err());
        assert!(noise_open(&b, b"other", &sealed).is_err());
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert!(noise_open(&b, b"ctx", &bad).is_err());
        assert!(noise_open(&b, b"ctx", &sealed[..50]).is_err());
    }

    #[test]
    fn aead_binds_associated_data() {
        let k = [7u8; 32];
        let n = [1u8; NONCE_LEN];
        let ct = aead_seal(&k, &n, b"ad", b"hello");
        assert_eq!(aead_open(&k, &n, b"ad", &ct).unwrap(), b"hello");
        assert_eq!(aead_open(&k, &n, b"AD", &ct), Err(CryptoError::Decrypt));
    }

    #[test]
    fn derived_values_are_separated() {
        let cs = ConversationSecret([5; 32]);
        let creator = DeviceId([1; 32]);
        assert_ne!(cs.tag().0, cs.conversation_id(&creator).0);
        assert_ne!(cs.control_key(), cs.first_epoch_key());
        assert_ne!(inbox_tag(&creator, 1), inbox_tag(&creator, 2));
    }
}
