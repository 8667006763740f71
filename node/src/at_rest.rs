//! Sealing at rest: everything the node writes to its database is sealed with a key the
//! device holds, so that the database files alone reveal no message text, title, name or key
//! (docs/security.md, "At rest").
//!
//! * The **storage key** (32 random bytes) lives in `storage.key` in the home (0600). Every
//!   value the [`SledStore`](crate::store::SledStore) writes — envelope bytes, saved pages,
//!   conversation secrets, epoch keys, profiles — is sealed with XChaCha20-Poly1305 under it:
//!   `nonce (24, random) ‖ ciphertext ‖ tag (16)`, with the tree and the record's key as
//!   associated data (a value moved to another key does not open). Record keys stay in the
//!   clear: they are ids, tags, page and sequence numbers (see `vaarta_sync::replica::keys`).
//!   Tombstones (empty envelope values) stay empty.
//! * With a **passphrase**, the storage key and the identity key are *wrapped*: Argon2id
//!   (19 MiB, 2 passes, 1 lane — the OWASP minimum, ~50 ms here) derives a key-encryption key
//!   from the passphrase and a random salt, and XChaCha20-Poly1305 seals the secret under it.
//!   A copy of the whole home then reveals nothing without the passphrase.
//!
//! File format (`storage.key`, and `identity.key` once wrapped, hex-encoded after a label):
//! ```text
//! plain   = "VSK1" 0x00 key:[32]
//! wrapped = "VSK1" 0x01 m_kib:u32le t:u32le p:u32le salt:[16] nonce:[24] aead(kek, ad = the bytes before nonce, key:[32])
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

const MAGIC: &[u8; 4] = b"VSK1";
const PLAIN: u8 = 0;
const WRAPPED: u8 = 1;
/// Bytes sealing adds to a value: nonce and tag.
pub const OVERHEAD: usize = 24 + 16;
/// Argon2id cost: the OWASP minimum (19 MiB, two passes, one lane).
const M_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// Largest Argon2 memory cost a key file may ask for (a crafted file must not exhaust memory).
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 64;

/// A passphrase, wiped from memory when dropped; never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Self {
        Self(Zeroizing::new(s.into()))
    }

    /// Reads a passphrase file: its first line, without the line ending.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let raw = Zeroizing::new(std::fs::read_to_string(path)?);
        let line = raw.lines().next().unwrap_or("");
        Ok(Self::new(line))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

/// Why a key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a Vaarta key file")]
    Malformed,
    #[error("protected by a passphrase: set VAARTA_PASSPHRASE or pass --passphrase-file")]
    NeedsPassphrase,
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// A 32-byte secret (the storage key or the identity seed), wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn new(b: [u8; 32]) -> Self {
        Self(Zeroizing::new(b))
    }

    /// From the OS generator.
    pub fn random() -> Result<Self, String> {
        let mut b = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *b).map_err(|e| format!("no OS randomness: {e}"))?;
        Ok(Self(b))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn kek(pass: &Passphrase, salt: &[u8], m: u32, t: u32, p: u32) -> Result<Secret, KeyFileError> {
    if m > MAX_M_KIB || t > MAX_T_COST || p == 0 || p > 16 {
        return Err(KeyFileError::Malformed);
    }
    let params =
        argon2::Params::new(m, t, p, Some(32)).map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass.0.as_bytes(), salt, &mut *out)
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    Ok(Secret(out))
}

/// Encodes a key file for `secret`: wrapped under `pass` if given, else plain.
pub fn encode(secret: &Secret, pass: Option<&Passphrase>) -> Result<Vec<u8>, String> {
    let mut out = MAGIC.to_vec();
    let Some(pass) = pass.filter(|p| !p.is_empty()) else {
        out.push(PLAIN);
        out.extend_from_slice(secret.bytes());
        return Ok(out);
    };
    out.push(WRAPPED);
    for v in [M_KIB, T_COST, P_COST] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(|e| format!("no OS randomness: {e}"))?;
    getrandom::fill(&mut nonce).map_err(|e| format!("no OS randomness: {e}"))?;
    out.extend_from_slice(&salt);
    let k = kek(pass, &salt, M_KIB, T_COST, P_COST).map_err(|e| e.to_string())?;
    let ct = XChaCha20Poly1305::new(k.bytes().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret.bytes(),
                aad: &out,
            },
        )
        .map_err(|_| "sealing failed".to_string())?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Whether a key file is wrapped by a passphrase.
pub fn is_wrapped(file: &[u8]) -> bool {
    file.len() > 4 && &file[..4] == MAGIC && file[4] == WRAPPED
}

/// Decodes a key file (unwrapping it with `pass` if it is wrapped).
pub fn decode(file: &[u8], pass: Option<&Passphrase>) -> Result<Secret, KeyFileError> {
    if file.len() < 5 || &file[..4] != MAGIC {
        return Err(KeyFileError::Malformed);
    }
    match file[4] {
        PLAIN => {
            let k: [u8; 32] = file[5..].try_into().map_err(|_| KeyFileError::Malformed)?;
            Ok(Secret::new(k))
        }
        WRAPPED => {
            if file.len() != 5 + 12 + 16 + 24 + 32 + 16 {
                return Err(KeyFileError::Malformed);
            }
            let Some(pass) = pass.filter(|p| !p.is_empty()) else {
                return Err(KeyFileError::NeedsPassphrase);
            };
            let u = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap_or([0; 4]));
            let (m, t, p) = (u(5), u(9), u(13));
            let salt = &file[17..33];
            let nonce = &file[33..57];
            let k = kek(pass, salt, m, t, p)?;
            let mut pt = XChaCha20Poly1305::new(k.bytes().into())
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: &file[57..],
                        aad: &file[..33],
                    },
                )
                .map_err(|_| KeyFileError::WrongPassphrase)?;
            let k: Result<[u8; 32], _> = pt.as_slice().try_into();
            pt.zeroize();
            Ok(Secret::new(k.map_err(|_| KeyFileError::Malformed)?))
        }
        _ => Err(KeyFileError::Malformed),
    }
}

/// Seals and opens store values under the storage key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

fn ad(space: u8, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + 16 + key.len());
    a.extend_from_slice(b"vaarta rest v1");
    a.push(space);
    a.extend_from_slice(key);
    a
}

impl Sealer {
    pub fn new(key: &Secret) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.bytes().into()),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` of `value`, bound to (`space`, `key`).
    pub fn seal(&self, space: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        // The OS generator does not fail once the process has started (getrandom reads
        // it at the first call); a failure here would repeat nonces, so refuse to go on.
        getrandom::fill(&mut nonce).expect("OS randomness");
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &ad(space, key),
                },
            )
            // Only fails for inputs beyond 256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(OVERHEAD + value.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a sealed value; `None` if it does not authenticate (corrupt, moved, or another key).
    pub fn open(&self, space: u8, key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad: &ad(space, key),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_plain_and_wrapped() {
        let s = Secret::new([7; 32]);
        let plain = encode(&s, None).unwrap();
        assert!(!is_wrapped(&plain));
        assert_eq!(decode(&plain, None).unwrap().bytes(), &[7; 32]);
        let pass = Passphrase::new("correct horse");
        let wrapped = encode(&s, Some(&pass)).unwrap();
        assert!(is_wrapped(&wrapped));
        assert!(!wrapped.windows(32).any(|w| w == [7; 32]));
        assert_eq!(decode(&wrapped, Some(&pass)).unwrap().bytes(), &[7; 32]);
        assert_eq!(
            decode(&wrapped, None).unwrap_err(),
            KeyFileError::NeedsPassphrase
        );
        assert_eq!(
            decode(&wrapped, Some(&Passphrase::new("wrong"))).unwrap_err(),
            KeyFileError::WrongPassphrase
        );
        // A crafted memory cost is refused before any allocation.
        let mut greedy = wrapped.clone();
        greedy[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&greedy, Some(&pass)).unwrap_err(),
            KeyFileError::Malformed
        );
    }

    #[test]
    fn sealed_values_are_bound_to_their_key() {
        let s = Sealer::new(&Secret::new([1; 32]));
        let v = s.seal(1, b"c/abc", b"secret title");
        assert!(!v.windows(12).any(|w| w == b"secret title"));
        assert_eq!(s.open(1, b"c/abc", &v).unwrap(), b"secret title");
        assert!(s.open(1, b"c/abd", &v).is_none());
        assert!(s.open(0, b"c/abc", &v).is_none());
        assert!(
            Sealer::new(&Secret::new([2; 32]))
                .open(1, b"c/abc", &v)
                .is_none()
        );
    }
}
