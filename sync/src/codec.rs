//! Canonical binary encoding used by every Vaarta wire and storage format.
//!
//! The rules are few and strict, because ids are hashes of exact bytes (docs/security.md:
//! "one envelope, one id"):
//! * integers are unsigned LEB128 ("varint") and must be *minimal*: an over-long encoding,
//!   more than ten bytes, or a value above `u64::MAX` is rejected;
//! * every length is checked against a caller-given maximum *and* against the bytes that are
//!   actually left before anything is allocated or sliced;
//! * a decoder must consume its input exactly: trailing bytes are an error.
//!
//! A value therefore has exactly one encoding, and `decode(encode(x)) == x` and
//! `encode(decode(b)) == b` for every accepted `b`.

use thiserror::Error;

/// Why bytes were refused. Decoding never panics and never allocates from an unchecked length.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ended early while reading {0}")]
    Truncated(&'static str),
    #[error("non-canonical encoding of {0}")]
    NonCanonical(&'static str),
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("unknown version {0}")]
    UnknownVersion(u8),
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Raw bytes with no length prefix (the reader must know the length).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// A varint length followed by the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.varint(b.len() as u64);
        self.raw(b)
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.u8(u8::from(b))
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Number of bytes `varint(v)` takes.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads canonical encodings from a byte slice without copying.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::NonCanonical(what)),
        }
    }

    /// A minimal LEB128 varint.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8(what)?;
            let low = u64::from(byte & 0x7f);
            if i == 9 && low > 1 {
                return Err(DecodeError::NonCanonical(what));
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                // A last byte of zero (other than a lone zero) means the encoding was padded.
                if byte == 0 && i > 0 {
                    return Err(DecodeError::NonCanonical(what));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::NonCanonical(what))
    }

    /// A varint that must be at most `max`.
    pub fn varint_max(&mut self, what: &'static str, max: u64) -> Result<u64, DecodeError> {
        let v = self.varint(what)?;
        if v > max {
            return Err(DecodeError::TooLarge { what, len: v, max });
        }
        Ok(v)
    }

    pub fn u32_varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.varint_max(what, u64::from(u32::MAX))? as u32)
    }

    /// Exactly `n` raw bytes.
    pub fn raw(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.raw(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.varint_max(what, max as u64)? as usize;
        self.raw(len, what)
    }

    pub fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let b = self.bytes(what, max)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Invalid(what))
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// A count of items that each take at least `min_item` bytes: rejects counts that could
    /// not possibly fit in what is left, so callers may `Vec::with_capacity(count)` safely.
    pub fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint_max(what, max as u64)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n)
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_rejects_overlong() {
        // 1 encoded in two bytes.
        assert_eq!(
            Reader::new(&[0x81, 0x00]).varint("x"),
            Err(DecodeError::NonCanonical("x"))
        );
        // Eleven bytes.
        let mut long = vec![0xff; 10];
        long.push(0x01);
        assert!(Reader::new(&long).varint("x").is_err());
        // u64::MAX is fine, one above is not.
        let mut w = Writer::new();
        w.varint(u64::MAX);
        assert_eq!(Reader::new(w.as_slice()).varint("x"), Ok(u64::MAX));
        let mut over = w.into_vec();
        *over.last_mut().unwrap() = 0x02;
        assert!(Reader::new(&over).varint("x").is_err());
    }

    #[test]
    fn lying_lengths_are_refused_before_allocation() {
        let mut w = Writer::new();
        w.varint(u64::from(u32::MAX));
        let mut r = Reader::new(w.as_slice());
        assert!(matches!(
            r.bytes("blob", 1024),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut r = Reader::new(&[5, 1, 2]);
        assert_eq!(r.bytes("blob", 1024), Err(DecodeError::Truncated("blob")));
        let mut r = Reader::new(&[200, 1]);
        assert_eq!(
            r.count("items", 1000, 32),
            Err(DecodeError::Truncated("items"))
        );
    }

    proptest! {
        #[test]
        fn varint_round_trip(v: u64) {
            let mut w = Writer::new();
            w.varint(v);
            prop_assert_eq!(w.len(), varint_len(v));
            let mut r = Reader::new(w.as_slice());
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn varint_never_panics(bytes: Vec<u8>) {
            let mut r = Reader::new(&bytes);
            if let Ok(v) = r.varint("v") {
                // Whatever was accepted re-encodes to the same bytes.
                let mut w = Writer::new();
                w.varint(v);
                prop_assert_eq!(w.as_slice(), &bytes[..r.position()]);
            }
        }
    }
}
