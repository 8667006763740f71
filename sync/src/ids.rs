//! Identifier newtypes with short, log-friendly `Display` forms.
//!
//! Printable ids use RFC 4648 base32 in lower case without padding: no look-alike symbols,
//! case-insensitive, safe in file names and URLs, and easy to read out over a radio.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lower-case base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Parses what [`base32`] prints (upper case accepted too); `None` on any other input,
/// including non-zero padding bits, so each value has exactly one spelling.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 5 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a valid {0}")]
pub struct ParseIdError(pub &'static str);

macro_rules! byte_id {
    ($(#[$m:meta])* $name:ident, $len:expr, $what:expr, $short:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            pub fn from_slice(s: &[u8]) -> Option<Self> {
                Some(Self(s.try_into().ok()?))
            }

            /// A few characters, for logs.
            pub fn short(&self) -> String {
                let mut s = self.to_string();
                s.truncate($short);
                s
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bytes = base32_decode(s.trim()).ok_or(ParseIdError($what))?;
                Self::from_slice(&bytes).ok_or(ParseIdError($what))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&base32(&self.0))
            }
        }
    };
}

byte_id!(
    /// A device: its Ed25519 public key. Printed as 52 base32 characters.
    DeviceId,
    32,
    "device id",
    8
);
byte_id!(
    /// A conversation, derived from its secret and its creator (see `crypto::ConversationSecret`).
    ConversationId,
    16,
    "conversation id",
    8
);
byte_id!(
    /// The cleartext routing tag of a conversation (or of a device inbox): relays see it,
    /// but it does not reveal the conversation id.
    Tag,
    16,
    "tag",
    8
);
byte_id!(
    /// BLAKE3 of the exact bytes of an envelope.
    EnvelopeId,
    32,
    "envelope id",
    10
);
byte_id!(
    /// BLAKE3 of the exact signed bytes of a membership operation.
    OpHash,
    32,
    "operation id",
    10
);
byte_id!(
    /// Names a conversation key (the first bytes of a hash of the key).
    EpochId,
    4,
    "epoch id",
    7
);

/// The Automerge actor of a device: the first 16 bytes of a domain-separated BLAKE3 of its
/// public key. Every change is checked to carry the actor of the key that signed it.
pub fn actor_bytes(device: &DeviceId) -> [u8; 16] {
    let h = blake3::derive_key("vaarta 2026 automerge actor v1", &device.0);
    let mut a = [0u8; 16];
    a.copy_from_slice(&h[..16]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        // Non-zero padding bits have no canonical meaning.
        assert!(base32_decode("mz").is_none());
    }

    proptest! {
        #[test]
        fn base32_round_trip(bytes: Vec<u8>) {
            prop_assert_eq!(base32_decode(&base32(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn device_id_round_trip(bytes: [u8; 32]) {
            let id = DeviceId(bytes);
            prop_assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
        }
    }
}
