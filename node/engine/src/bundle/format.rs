//! The bundle file format (docs/bundles.md draws it byte by byte), written and read with no
//! I/O: [`Writer`] hands back the bytes to append, [`Reader`] takes bytes as they are read
//! and hands back what they complete. A driver streams a file through them.
//!
//! ```text
//! header   magic "\x89VBNDL\r\n" (8) · version u16 (1) · exporter device key (32)
//!          · created-at ms u64 · for: kind u8 (0 anyone, 1 device, 2 relay) · device (32)
//!          · since ms u64 (0: none)
//! records  type u8 (1 envelope; 2 reserved for attachment chunks) · length u32 · bytes
//! end      type u8 (0) · record count u64
//! trailer  BLAKE3 of every byte above (32) · Ed25519 of BUNDLE_DOMAIN ‖ hash by the
//!          exporter (64)
//! ```
//! All integers are big-endian. Nothing may follow the trailer.
//!
//! Bounds (checked before anything is allocated): a file holds at most [`MAX_BUNDLE_BYTES`]
//! and [`MAX_RECORDS`] records; a record at most [`MAX_ENVELOPE_BYTES`] (the engine's
//! envelope limit, the same a push may carry).
//!
//! What the signature proves: that the device named in the header wrote these exact bytes
//! (a carrier cannot add, drop, reorder or change a record, nor pass its bundle off as
//! another device's). It proves nothing about the envelopes inside, each of which is
//! checked on import like a push (its own author's signature, membership, quotas).

use thiserror::Error;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::DeviceId;
pub use vaarta_sync::limits::MAX_ENVELOPE_BYTES;

/// The first bytes of every bundle (a high byte and CR LF, as PNG, so a text-mode copy or a
/// 7-bit channel is caught by the magic).
pub const MAGIC: [u8; 8] = *b"\x89VBNDL\r\n";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// The signature's domain: a bundle signature verifies as nothing else, nor anything else
/// as one.
pub const BUNDLE_DOMAIN: &[u8] = b"vaarta 2026 bundle signature v1";
/// The largest bundle (a USB stick holds more; this keeps an import to minutes on a
/// phone, and a hostile file from exhausting a disk through us).
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;
/// The most records in one bundle (256 MiB of the smallest envelopes is about this many).
pub const MAX_RECORDS: u64 = 1 << 20;
/// Bytes of the header.
pub const HEADER_LEN: usize = 8 + 2 + 32 + 8 + 1 + 32 + 8;
/// Bytes after the last record: end marker, count, hash, signature.
pub const TRAILER_LEN: usize = 1 + 8 + 32 + 64;
/// Bytes a record adds before its content.
pub const RECORD_HEAD_LEN: usize = 1 + 4;

/// Record types.
pub const RECORD_END: u8 = 0;
pub const RECORD_ENVELOPE: u8 = 1;
/// Reserved for attachment chunks (issue 16, later part); refused by version 1 readers.
pub const RECORD_CHUNK: u8 = 2;

/// Whom a bundle was written for (what the exporter selected; the importer does not rely
/// on it: every envelope is checked anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum For {
    /// Everything the exporter selected, for anyone.
    Anyone,
    /// What one device may read or carry.
    Device(DeviceId),
    /// Everything a relay may carry.
    Relay,
}

/// A bundle's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub exporter: DeviceId,
    pub created_ms: u64,
    pub for_: For,
    /// Only envelopes written at or after this time were selected (where the exporter could
    /// tell; 0: no bound).
    pub since_ms: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_be_bytes());
        h[10..42].copy_from_slice(&self.exporter.0);
        h[42..50].copy_from_slice(&self.created_ms.to_be_bytes());
        let (kind, dev) = match self.for_ {
            For::Anyone => (0, [0; 32]),
            For::Device(d) => (1, d.0),
            For::Relay => (2, [0; 32]),
        };
        h[50] = kind;
        h[51..83].copy_from_slice(&dev);
        h[83..91].copy_from_slice(&self.since_ms.to_be_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<Self, BundleError> {
        if h.len() < 10 || h[..8] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(BundleError::Version(version));
        }
        if h.len() != HEADER_LEN {
            return Err(BundleError::Truncated);
        }
        let exporter = DeviceId(h[10..42].try_into().unwrap());
        if !exporter.is_valid() {
            return Err(BundleError::Malformed(
                "the exporter key is not a valid device key",
            ));
        }
        let created_ms = u64::from_be_bytes(h[42..50].try_into().unwrap());
        let dev: [u8; 32] = h[51..83].try_into().unwrap();
        let for_ = match h[50] {
            0 if dev == [0; 32] => For::Anyone,
            1 => For::Device(DeviceId(dev)),
            2 if dev == [0; 32] => For::Relay,
            _ => return Err(BundleError::Malformed("unknown recipient kind")),
        };
        let since_ms = u64::from_be_bytes(h[83..91].try_into().unwrap());
        Ok(Self {
            exporter,
            created_ms,
            for_,
            since_ms,
        })
    }
}

/// Why a bundle is refused. Every one means: nothing of it is taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    #[error("not a Vaarta bundle (the file does not start with the bundle magic)")]
    NotABundle,
    #[error("bundle format version {0} is not read here: this device reads version {VERSION}")]
    Version(u16),
    #[error("the bundle is truncated (it ends before its signed trailer)")]
    Truncated,
    #[error("the bundle is malformed: {0}")]
    Malformed(&'static str),
    #[error("a record of {0} bytes is over the limit of {MAX_ENVELOPE_BYTES} bytes")]
    RecordTooLarge(u64),
    #[error("record type {0} is not known here (a newer format?)")]
    UnknownRecord(u8),
    #[error("the bundle is over {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    #[error("the bundle holds over {MAX_RECORDS} records")]
    TooManyRecords,
    #[error("the trailer says {said} records but the bundle holds {found}")]
    Count { said: u64, found: u64 },
    #[error(
        "the bundle's signature does not verify: it was changed after it was written, or signed by another key than its header names"
    )]
    BadSignature,
    #[error("bytes follow the bundle's trailer")]
    TrailingBytes,
    #[error("the bundle is full: the record does not fit within {0} bytes")]
    Full(u64),
}

/// Writes a bundle: [`Writer::new`] gives the header's bytes, [`Writer::record`] each
/// record's, [`Writer::finish`] the trailer's. The driver appends them in that order.
#[derive(Debug)]
pub struct Writer {
    hasher: blake3::Hasher,
    count: u64,
    bytes: u64,
    max_bytes: u64,
}

impl Writer {
    /// A writer that keeps the whole bundle within `max_bytes` (capped at
    /// [`MAX_BUNDLE_BYTES`]), with the header's bytes to write first.
    pub fn new(header: &Header, max_bytes: u64) -> (Self, Vec<u8>) {
        let h = header.encode();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&h);
        (
            Self {
                hasher,
                count: 0,
                bytes: HEADER_LEN as u64,
                max_bytes: max_bytes.min(MAX_BUNDLE_BYTES),
            },
            h.to_vec(),
        )
    }

    /// The bytes of one envelope record, or why it cannot be added: too large for a record,
    /// or [`BundleError::Full`] (the bundle stays valid: finish it).
    pub fn record(&mut self, envelope: &[u8]) -> Result<Vec<u8>, BundleError> {
        if envelope.is_empty() || envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(BundleError::RecordTooLarge(envelope.len() as u64));
        }
        let add = (RECORD_HEAD_LEN + envelope.len()) as u64;
        if self.bytes + add + TRAILER_LEN as u64 > self.max_bytes {
            return Err(BundleError::Full(self.max_bytes));
        }
        if self.count >= MAX_RECORDS {
            return Err(BundleError::TooManyRecords);
        }
        let mut r = Vec::with_capacity(add as usize);
        r.push(RECORD_ENVELOPE);
        r.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        r.extend_from_slice(envelope);
        self.hasher.update(&r);
        self.count += 1;
        self.bytes += add;
        Ok(r)
    }

    /// Records so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes the finished bundle will have.
    pub fn len_when_finished(&self) -> u64 {
        self.bytes + TRAILER_LEN as u64
    }

    /// The trailer, signed by `identity` (which must be the header's exporter).
    pub fn finish(mut self, identity: &Identity) -> Vec<u8> {
        let mut t = Vec::with_capacity(TRAILER_LEN);
        t.push(RECORD_END);
        t.extend_from_slice(&self.count.to_be_bytes());
        self.hasher.update(&t);
        let hash = *self.hasher.finalize().as_bytes();
        t.extend_from_slice(&hash);
        t.extend_from_slice(&identity.sign(&signed_message(&hash)));
        t
    }
}

fn signed_message(hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(BUNDLE_DOMAIN.len() + 32);
    m.extend_from_slice(BUNDLE_DOMAIN);
    m.extend_from_slice(hash);
    m
}

/// What a [`Reader`] found in the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Header(Header),
    /// An envelope record's content (not checked here: the engine checks it like a push).
    Envelope(Vec<u8>),
    /// The BLAKE3 of every byte up to and including the `records`-th record, after every
    /// `every` records of a reader made by [`Reader::with_checkpoints`]: a driver that reads
    /// a file twice compares them, so the second pass takes only bytes the first verified.
    Checkpoint {
        records: u64,
        hash: [u8; 32],
    },
    /// The signed trailer verified: the bundle is whole and the header's exporter wrote it.
    /// `hash` is the BLAKE3 the signature covers.
    End {
        count: u64,
        hash: [u8; 32],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The magic and version first, so a foreign file is named as such.
    Magic,
    Header,
    RecordHead,
    RecordBody {
        len: usize,
    },
    Count,
    Trailer {
        count: u64,
    },
    Done,
}

/// Reads a bundle from bytes fed in any pieces. Buffers at most one record. An error is
/// final: the reader refuses everything after it.
#[derive(Debug)]
pub struct Reader {
    state: State,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    header: Option<Header>,
    count: u64,
    bytes: u64,
    failed: Option<BundleError>,
    checkpoint_every: u64,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    pub fn new() -> Self {
        Self {
            state: State::Magic,
            buf: Vec::new(),
            hasher: blake3::Hasher::new(),
            header: None,
            count: 0,
            bytes: 0,
            failed: None,
            checkpoint_every: 0,
        }
    }

    /// A reader that also reports an [`Item::Checkpoint`] after every `every` records.
    pub fn with_checkpoints(every: u64) -> Self {
        Self {
            checkpoint_every: every,
            ..Self::new()
        }
    }

    /// Records read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Takes the next bytes; appends to `out` what they complete.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Item>) -> Result<(), BundleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_inner(data, out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn feed_inner(&mut self, mut data: &[u8], out: &mut Vec<Item>) -> Result<(), BundleError> {
        self.bytes += data.len() as u64;
        if self.bytes > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        while !data.is_empty() {
            if self.state == State::Done {
                return Err(BundleError::TrailingBytes);
            }
            let need = self.need() - self.buf.len();
            let take = need.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.need() {
                self.step(out)?;
            }
        }
        Ok(())
    }

    /// The input ended: an error unless the trailer was read and verified.
    pub fn finish(&self) -> Result<(), BundleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.state {
            State::Done => Ok(()),
            // Too short to say what it is: judge by the bytes there are.
            State::Magic
                if self.buf.is_empty()
                    || !MAGIC.starts_with(&self.buf[..self.buf.len().min(8)]) =>
            {
                Err(BundleError::NotABundle)
            }
            _ => Err(BundleError::Truncated),
        }
    }

    fn need(&self) -> usize {
        match self.state {
            State::Magic => 10,
            State::Header => HEADER_LEN,
            State::RecordHead => 1,
            State::RecordBody { len } => RECORD_HEAD_LEN + len,
            State::Count => 8,
            State::Trailer { .. } => 96,
            State::Done => 0,
        }
    }

    fn step(&mut self, out: &mut Vec<Item>) -> Result<(), BundleError> {
        match self.state {
            State::Magic => {
                // Magic and version (the rest of the header follows).
                if self.buf[..8] != MAGIC {
                    return Err(BundleError::NotABundle);
                }
                let v = u16::from_be_bytes([self.buf[8], self.buf[9]]);
                if v != VERSION {
                    return Err(BundleError::Version(v));
                }
                self.state = State::Header;
            }
            State::Header => {
                let h = Header::decode(&self.buf)?;
                self.hasher.update(&self.buf);
                self.buf.clear();
                self.header = Some(h);
                self.state = State::RecordHead;
                out.push(Item::Header(h));
            }
            State::RecordHead => match self.buf[0] {
                RECORD_END => {
                    self.hasher.update(&self.buf);
                    self.buf.clear();
                    self.state = State::Count;
                }
                RECORD_ENVELOPE => {
                    // Read the length: 4 more bytes.
                    self.state = State::RecordBody { len: 0 };
                    self.buf.reserve(4);
                }
                t => return Err(BundleError::UnknownRecord(t)),
            },
            State::RecordBody { len: 0 } if self.buf.len() == RECORD_HEAD_LEN => {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as u64;
                if len == 0 {
                    return Err(BundleError::Malformed("an empty record"));
                }
                if len > MAX_ENVELOPE_BYTES as u64 {
                    return Err(BundleError::RecordTooLarge(len));
                }
                if self.count >= MAX_RECORDS {
                    return Err(BundleError::TooManyRecords);
                }
                self.buf.reserve(len as usize);
                self.state = State::RecordBody { len: len as usize };
            }
            State::RecordBody { .. } => {
                self.hasher.update(&self.buf);
                self.count += 1;
                out.push(Item::Envelope(self.buf[RECORD_HEAD_LEN..].to_vec()));
                if self.checkpoint_every > 0 && self.count.is_multiple_of(self.checkpoint_every) {
                    out.push(Item::Checkpoint {
                        records: self.count,
                        hash: *self.hasher.finalize().as_bytes(),
                    });
                }
                self.buf.clear();
                self.state = State::RecordHead;
            }
            State::Count => {
                let said = u64::from_be_bytes(self.buf[..8].try_into().unwrap());
                if said != self.count {
                    return Err(BundleError::Count {
                        said,
                        found: self.count,
                    });
                }
                self.hasher.update(&self.buf);
                self.buf.clear();
                self.state = State::Trailer { count: said };
            }
            State::Trailer { count } => {
                let hash = *self.hasher.finalize().as_bytes();
                let sig: [u8; 64] = self.buf[32..96].try_into().unwrap();
                let exporter = self.header.map(|h| h.exporter);
                if self.buf[..32] != hash
                    || exporter.is_none_or(|e| e.verify(&signed_message(&hash), &sig).is_err())
                {
                    return Err(BundleError::BadSignature);
                }
                self.buf.clear();
                self.state = State::Done;
                out.push(Item::End { count, hash });
            }
            State::Done => return Err(BundleError::TrailingBytes),
        }
        Ok(())
    }
}
