//! Identifier newtypes with short, log-friendly `Display` forms.
//!
//! Printable ids use RFC 4648 base32 in lower case without padding: no look-alike symbols,
//! case-insensitive, safe in file names and URLs, and easy to read out over a radio.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// RFC 4648 base32 in lower case without padding; decoding takes upper case too and
/// refuses non-zero trailing bits (each value has exactly one spelling).
static BASE32: std::sync::LazyLock<data_encoding::Encoding> = std::sync::LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.check_trailing_bits = true;
    spec.encoding().expect("a valid base32 specification")
});

/// Lower-case base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    BASE32.encode(bytes)
}

/// Parses what [`base32`] prints (upper case accepted too); `None` on any other input,
/// including non-zero padding bits, so each value has exactly one spelling.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    BASE32.decode(s.as_bytes()).ok()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Hex in either case.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
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

byte_id!(
    /// An organisation: its root public key (Ed25519). Printed as 52 base32 characters.
    OrgId,
    32,
    "organisation id",
    8
);
byte_id!(
    /// A person enrolled by a registrar (16 random bytes; several devices share one).
    PersonId,
    16,
    "person id",
    8
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
