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

/// The text a verification QR code holds: `vaarta:<device id>#<the 30 digits>`. The digits
/// are the device's safety number (a function of the id), so a code whose digits do not
/// belong to its id is not one of ours: refused, not trusted.
pub const VERIFICATION_CODE_PREFIX: &str = "vaarta:";
/// The longest verification code read (the real ones are 90 bytes); longer text is refused
/// before it is looked at.
pub const MAX_VERIFICATION_CODE_BYTES: usize = 256;

/// Why a verification code or a typed safety number was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SafetyError {
    #[error(
        "not a Vaarta verification code (it starts with `vaarta:` and holds a device id and 30 digits)"
    )]
    NotACode,
    #[error("{0} is not a valid device id")]
    BadDevice(String),
    #[error("a safety number has 30 digits (in groups of five); this has {0}")]
    WrongLength(usize),
    #[error("a safety number is digits, spaces and dashes only; found {0:?}")]
    NotDigits(char),
    #[error(
        "the safety number does not match device {0}: this is not the device you were shown (or a digit was mistyped)"
    )]
    Mismatch(String),
}

/// The value 0–9 of a decimal digit in any script Indian users type in (ASCII, Devanagari,
/// Bengali, Gurmukhi, Gujarati, Odia, Tamil, Telugu, Kannada, Malayalam, Arabic-Indic and
/// Urdu's Extended Arabic-Indic), so a number read out in Hindi and typed on a Hindi keyboard
/// still compares.
fn digit_value(c: char) -> Option<u8> {
    const ZEROS: [u32; 12] = [
        0x30, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0x660, 0x6F0,
    ];
    let c = c as u32;
    ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&c))
        .map(|&z| (c - z) as u8)
}

/// The 30 digits of a typed safety number, as ASCII without separators (spaces, dashes and
/// dots are ignored; anything else is refused).
pub fn normalize_safety_number(typed: &str) -> Result<String, SafetyError> {
    let mut out = String::with_capacity(30);
    for c in typed.chars().take(MAX_VERIFICATION_CODE_BYTES) {
        match digit_value(c) {
            Some(d) => out.push(char::from(b'0' + d)),
            None if c.is_whitespace() || matches!(c, '-' | '.' | '\u{2010}'..='\u{2015}') => {}
            None => return Err(SafetyError::NotDigits(c)),
        }
    }
    if out.len() != 30 {
        return Err(SafetyError::WrongLength(out.len()));
    }
    Ok(out)
}

impl DeviceId {
    /// Whether `typed` is this device's safety number (any script's digits, any grouping).
    pub fn check_safety_number(&self, typed: &str) -> Result<(), SafetyError> {
        let typed = normalize_safety_number(typed)?;
        let mine = normalize_safety_number(&self.safety_number())?;
        if typed != mine {
            return Err(SafetyError::Mismatch(self.to_string()));
        }
        Ok(())
    }

    /// This device's verification code (what its QR code holds).
    pub fn verification_code(&self) -> String {
        let digits: String = self.safety_number().split(' ').collect();
        format!("{VERIFICATION_CODE_PREFIX}{self}#{digits}")
    }
}

/// The device a verification code names, once its digits are checked against its id.
pub fn parse_verification_code(code: &str) -> Result<DeviceId, SafetyError> {
    if code.len() > MAX_VERIFICATION_CODE_BYTES {
        return Err(SafetyError::NotACode);
    }
    let rest = code
        .trim()
        .strip_prefix(VERIFICATION_CODE_PREFIX)
        .ok_or(SafetyError::NotACode)?;
    let (id, digits) = rest.split_once('#').ok_or(SafetyError::NotACode)?;
    let device: DeviceId = id
        .parse()
        .map_err(|_| SafetyError::BadDevice(id.to_string()))?;
    if !device.is_valid() {
        return Err(SafetyError::BadDevice(id.to_string()));
    }
    device.check_safety_number(digits)?;
    Ok(device)
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
    fn a_verification_code_names_its_device_and_refuses_digits_of_another() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = Identity::generate(&mut rng).device_id();
        let b = Identity::generate(&mut rng).device_id();
        let code = a.verification_code();
        assert!(code.starts_with("vaarta:"), "{code}");
        assert_eq!(parse_verification_code(&code), Ok(a));
        assert_eq!(parse_verification_code(&format!("  {code}\n")), Ok(a));
        // Another device's id with these digits (a substituted code), or one digit changed.
        let (_, digits) = code.split_once('#').unwrap();
        let swapped = format!("vaarta:{b}#{digits}");
        assert_eq!(
            parse_verification_code(&swapped),
            Err(SafetyError::Mismatch(b.to_string()))
        );
        let mut one_off = code.clone().into_bytes();
        let last = one_off.len() - 1;
        one_off[last] = if one_off[last] == b'0' { b'1' } else { b'0' };
        let one_off = String::from_utf8(one_off).unwrap();
        assert!(matches!(
            parse_verification_code(&one_off),
            Err(SafetyError::Mismatch(_))
        ));
        for bad in [
            "",
            "hello",
            "vaarta:",
            "vaarta:nope#123",
            &format!("vaarta:{a}"),
            &format!("vaarta:{a}#12345"),
            &format!("vaarta:{a}#{digits}x"),
            &"vaarta:".repeat(100),
        ] {
            assert!(parse_verification_code(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn a_safety_number_typed_in_any_indian_script_or_grouping_checks() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = Identity::generate(&mut rng).device_id();
        let s = a.safety_number();
        assert_eq!(a.check_safety_number(&s), Ok(()));
        assert_eq!(a.check_safety_number(&s.replace(' ', "")), Ok(()));
        assert_eq!(a.check_safety_number(&s.replace(' ', "-")), Ok(()));
        // Devanagari (Hindi, Marathi) and Tamil digits, as typed on those keyboards.
        for zero in ['\u{966}', '\u{BE6}', '\u{6F0}'] {
            let typed: String = s
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from_u32(zero as u32 + d).unwrap(),
                    None => c,
                })
                .collect();
            assert_eq!(a.check_safety_number(&typed), Ok(()), "{typed}");
        }
        assert_eq!(
            a.check_safety_number("12345"),
            Err(SafetyError::WrongLength(5))
        );
        assert_eq!(
            a.check_safety_number(&format!("{s}a")),
            Err(SafetyError::NotDigits('a'))
        );
        let b = Identity::generate(&mut rng).device_id();
        assert_eq!(
            a.check_safety_number(&b.safety_number()),
            Err(SafetyError::Mismatch(a.to_string()))
        );
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
