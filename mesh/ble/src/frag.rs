//! Fragmentation of records (Noise messages) to the ATT MTU, and their bounded reassembly.
//!
//! One *fragment* is one ATT payload (a GATT write-without-response or notification value,
//! `MTU − 3` bytes at most) or one L2CAP SDU. A *record* is one Noise message (a handshake
//! message or one encrypted chunk, at most [`MAX_RECORD_BYTES`]). Records are sent one after
//! the other, never interleaved, so at most one record is ever being reassembled.
//!
//! ```text
//! fragment = header:u8 [record_len:varint if FIRST] data:1..
//! header   = FIRST(bit 7) | seq (bits 0..6, per direction, +1 mod 128 per fragment)
//! ```
//!
//! Both Bluetooth paths are ordered and reliable (the LE link layer acknowledges and
//! retransmits every PDU; ATT writes-without-response and notifications keep their order;
//! an L2CAP CoC is a credit-based ordered channel), so a gap, a repeat or a reordering is
//! never an honest event: the sequence number turns each into a typed [`FragError`] and the
//! driver cuts the link. Nothing is buffered past one record ([`MAX_RECORD_BYTES`]), a
//! length is checked before anything is allocated for it, and a partial record older than
//! the reassembly timeout is an error too.

use thiserror::Error;

/// The ATT header in front of every GATT write or notification value: opcode + handle.
pub const ATT_HEADER: usize = 3;
/// The smallest ATT MTU (the LE default).
pub const MIN_MTU: u16 = 23;
/// The largest ATT MTU a stack negotiates (Android asks for 517).
pub const MAX_MTU: u16 = 517;
/// An attribute value is at most 512 bytes (Core spec, Vol 3 Part F 3.2.9), whatever the MTU.
pub const MAX_ATT_VALUE: usize = 512;
/// The largest record: one chunk of at most [`crate::noise::MAX_CHUNK_PLAINTEXT`] bytes and
/// its 16-byte Poly1305 tag (handshake messages are at most 96 bytes).
pub const MAX_RECORD_BYTES: usize = crate::noise::MAX_CHUNK_PLAINTEXT + crate::noise::TAG_BYTES;
/// How long one record may take to arrive (bitchat's 30 s for a whole message; a record is
/// at most a few dozen fragments).
pub const DEFAULT_REASSEMBLY_TIMEOUT_MS: u64 = 30_000;

const FIRST: u8 = 0x80;
const SEQ_MASK: u8 = 0x7f;

/// Why a fragment stream was refused. Every one cuts the link.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FragError {
    #[error("ATT MTU {0} outside {MIN_MTU}..={MAX_MTU}")]
    BadMtu(u16),
    #[error("MTU renegotiated while a record was half sent or half received")]
    MtuChangedMidMessage,
    #[error("empty fragment")]
    Empty,
    #[error("fragment of {len} bytes over the {max}-byte ATT payload")]
    TooLarge { len: usize, max: usize },
    #[error("fragment {got} repeated")]
    Duplicate { got: u8 },
    #[error("fragment {got} out of order (expected {expected}): lost or reordered")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("a new record started before the last one was complete (missing fragments)")]
    Interrupted,
    #[error("continuation fragment with no record under way")]
    Orphan,
    #[error("record claims {claimed} bytes, over the {max}-byte limit")]
    RecordTooLarge { claimed: u64, max: usize },
    #[error("bad record length")]
    BadLength,
    #[error("fragment carries data past the record's declared end (overlap)")]
    Overrun,
    #[error("record not complete within {0} ms")]
    Timeout(u64),
}

/// ATT payload bytes for `mtu`, checked.
pub fn payload_for(mtu: u16) -> Result<usize, FragError> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(FragError::BadMtu(mtu));
    }
    Ok((mtu as usize - ATT_HEADER).min(MAX_ATT_VALUE))
}

/// Appends the minimal LEB128 encoding of `v`.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Reads a minimal LEB128 value of at most 5 bytes (35 bits: enough to read, and refuse, a
/// claim of 4 GiB). Returns the value and the bytes used.
pub(crate) fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // Minimal: no trailing zero group (except the single byte 0).
            if i > 0 && byte == 0 {
                return None;
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// Splits records into fragments for one direction of a link.
#[derive(Debug)]
pub struct Fragmenter {
    payload: usize,
    seq: u8,
    cur: Option<(Vec<u8>, usize)>,
}

impl Fragmenter {
    pub fn new(mtu: u16) -> Result<Self, FragError> {
        Ok(Self {
            payload: payload_for(mtu)?,
            seq: 0,
            cur: None,
        })
    }

    /// No record is half sent.
    pub fn idle(&self) -> bool {
        self.cur.is_none()
    }

    pub fn payload(&self) -> usize {
        self.payload
    }

    /// Takes a new MTU; refused while a record is half sent (the receiver would see the
    /// fragment sizes change under one record).
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), FragError> {
        let payload = payload_for(mtu)?;
        if !self.idle() {
            return Err(FragError::MtuChangedMidMessage);
        }
        self.payload = payload;
        Ok(())
    }

    /// The largest record that fills exactly `fragments` fragments at the current MTU.
    pub fn record_capacity(&self, fragments: usize) -> usize {
        let body = fragments.max(1) * (self.payload - 1);
        let cap = body.saturating_sub(1);
        let cap = if cap >= 128 {
            body.saturating_sub(varint_len(cap as u64))
        } else {
            cap
        };
        cap.clamp(1, MAX_RECORD_BYTES)
    }

    /// Queues one record; call only when [`Self::idle`].
    pub fn start(&mut self, record: Vec<u8>) {
        debug_assert!(self.idle() && !record.is_empty() && record.len() <= MAX_RECORD_BYTES);
        self.cur = Some((record, 0));
    }

    /// The next fragment of the record under way.
    pub fn next_fragment(&mut self) -> Option<Vec<u8>> {
        let (rec, off) = self.cur.as_mut()?;
        let mut f = Vec::with_capacity(self.payload);
        let first = *off == 0;
        f.push(if first { FIRST } else { 0 } | self.seq);
        if first {
            put_varint(&mut f, rec.len() as u64);
        }
        let n = (self.payload - f.len()).min(rec.len() - *off);
        f.extend_from_slice(&rec[*off..*off + n]);
        *off += n;
        if *off == rec.len() {
            self.cur = None;
        }
        self.seq = (self.seq + 1) & SEQ_MASK;
        Some(f)
    }
}

#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    total: usize,
    started_ms: u64,
}

/// Reassembles records from one direction's fragments. Holds at most one partial record.
#[derive(Debug)]
pub struct Reassembler {
    payload: usize,
    expected: u8,
    partial: Option<Partial>,
    timeout_ms: u64,
}

impl Reassembler {
    pub fn new(mtu: u16, timeout_ms: u64) -> Result<Self, FragError> {
        Ok(Self {
            payload: payload_for(mtu)?,
            expected: 0,
            partial: None,
            timeout_ms,
        })
    }

    pub fn idle(&self) -> bool {
        self.partial.is_none()
    }

    /// Takes a new MTU; refused while a record is half received.
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), FragError> {
        let payload = payload_for(mtu)?;
        if !self.idle() {
            return Err(FragError::MtuChangedMidMessage);
        }
        self.payload = payload;
        Ok(())
    }

    /// Bytes held for the partial record (at most [`MAX_RECORD_BYTES`]).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.capacity())
    }

    /// When the partial record times out.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.partial
            .as_ref()
            .map(|p| p.started_ms.saturating_add(self.timeout_ms))
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), FragError> {
        match self.poll_timeout() {
            Some(t) if now_ms >= t => Err(FragError::Timeout(self.timeout_ms)),
            _ => Ok(()),
        }
    }

    /// One fragment in; a whole record out when this fragment completes one.
    pub fn handle_fragment(
        &mut self,
        frag: &[u8],
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, FragError> {
        if frag.len() > self.payload {
            return Err(FragError::TooLarge {
                len: frag.len(),
                max: self.payload,
            });
        }
        let (&h, rest) = frag.split_first().ok_or(FragError::Empty)?;
        let seq = h & SEQ_MASK;
        if seq != self.expected {
            return Err(if seq == self.expected.wrapping_sub(1) & SEQ_MASK {
                FragError::Duplicate { got: seq }
            } else {
                FragError::OutOfOrder {
                    expected: self.expected,
                    got: seq,
                }
            });
        }
        let data = if h & FIRST != 0 {
            if self.partial.is_some() {
                return Err(FragError::Interrupted);
            }
            let (total, used) = get_varint(rest).ok_or(FragError::BadLength)?;
            if total > MAX_RECORD_BYTES as u64 {
                return Err(FragError::RecordTooLarge {
                    claimed: total,
                    max: MAX_RECORD_BYTES,
                });
            }
            if total == 0 {
                return Err(FragError::BadLength);
            }
            let total = total as usize;
            self.partial = Some(Partial {
                buf: Vec::with_capacity(total),
                total,
                started_ms: now_ms,
            });
            &rest[used..]
        } else {
            if self.partial.is_none() {
                return Err(FragError::Orphan);
            }
            rest
        };
        if data.is_empty() {
            return Err(FragError::Empty);
        }
        self.expected = (self.expected + 1) & SEQ_MASK;
        let p = self.partial.as_mut().ok_or(FragError::Orphan)?;
        if p.buf.len() + data.len() > p.total {
            return Err(FragError::Overrun);
        }
        p.buf.extend_from_slice(data);
        if p.buf.len() == p.total {
            return Ok(self.partial.take().map(|p| p.buf));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(mtu: u16, rec: &[u8]) -> Vec<Vec<u8>> {
        let mut f = Fragmenter::new(mtu).unwrap();
        f.start(rec.to_vec());
        std::iter::from_fn(|| f.next_fragment()).collect()
    }

    fn first_frag(seq: u8, total: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![FIRST | seq];
        put_varint(&mut f, total);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn records_round_trip_at_every_mtu_and_fill_fragments() {
        for mtu in [23u16, 185, 247, 512, 517] {
            let tx = Fragmenter::new(mtu).unwrap();
            for k in [1, 3, 8] {
                let cap = tx.record_capacity(k);
                let rec: Vec<u8> = (0..cap).map(|i| i as u8).collect();
                let frags = split(mtu, &rec);
                assert_eq!(frags.len(), k, "mtu {mtu} k {k}");
                assert!(frags.iter().all(|f| f.len() <= tx.payload()));
                let mut rx = Reassembler::new(mtu, 1000).unwrap();
                let mut out = None;
                for f in &frags {
                    out = rx.handle_fragment(f, 0).unwrap();
                }
                assert_eq!(out.unwrap(), rec);
                assert!(rx.idle());
            }
        }
    }

    #[test]
    fn duplicated_reordered_and_missing_fragments_are_refused() {
        let rec = vec![7u8; 100];
        let frags = split(23, &rec);
        assert!(frags.len() > 3);
        // Duplicate.
        let mut rx = Reassembler::new(23, 1000).unwrap();
        rx.handle_fragment(&frags[0], 0).unwrap();
        assert_eq!(
            rx.handle_fragment(&frags[0], 0),
            Err(FragError::Duplicate { got: 0 })
        );
        // Reordered / missing in the middle.
        let mut rx = Reassembler::new(23, 1000).unwrap();
        rx.handle_fragment(&frags[0], 0).unwrap();
        assert_eq!(
            rx.handle_fragment(&frags[2], 0),
            Err(FragError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        // Missing tail: the next record starts early.
        let mut rx = Reassembler::new(23, 1000).unwrap();
        rx.handle_fragment(&frags[0], 0).unwrap();
        assert_eq!(
            rx.handle_fragment(&first_frag(1, 10, &[1]), 0),
            Err(FragError::Interrupted)
        );
        // Missing head: a continuation with nothing under way.
        let mut rx = Reassembler::new(23, 1000).unwrap();
        assert_eq!(rx.handle_fragment(&[0, 1, 2], 0), Err(FragError::Orphan));
    }

    #[test]
    fn overlapping_data_past_the_declared_end_is_refused() {
        let mut rx = Reassembler::new(185, 1000).unwrap();
        rx.handle_fragment(&first_frag(0, 10, &[1; 8]), 0).unwrap();
        assert_eq!(
            rx.handle_fragment(&[1, 2, 2, 2], 0),
            Err(FragError::Overrun)
        );
        let mut rx = Reassembler::new(185, 1000).unwrap();
        assert_eq!(
            rx.handle_fragment(&first_frag(0, 4, &[1; 5]), 0),
            Err(FragError::Overrun)
        );
    }

    #[test]
    fn huge_claims_are_refused_before_allocation() {
        for claim in [1u64 << 32, u32::MAX as u64, MAX_RECORD_BYTES as u64 + 1] {
            let mut rx = Reassembler::new(185, 1000).unwrap();
            assert_eq!(
                rx.handle_fragment(&first_frag(0, claim, &[1]), 0),
                Err(FragError::RecordTooLarge {
                    claimed: claim,
                    max: MAX_RECORD_BYTES
                })
            );
            assert_eq!(rx.buffered(), 0);
        }
        let mut rx = Reassembler::new(185, 1000).unwrap();
        assert_eq!(
            rx.handle_fragment(&first_frag(0, 0, &[1]), 0),
            Err(FragError::BadLength)
        );
        // Six continuation bytes: not a varint we read.
        let mut rx = Reassembler::new(185, 1000).unwrap();
        assert_eq!(
            rx.handle_fragment(&[FIRST, 0xff, 0xff, 0xff, 0xff, 0xff, 1], 0),
            Err(FragError::BadLength)
        );
        // Non-minimal.
        let mut rx = Reassembler::new(185, 1000).unwrap();
        assert_eq!(
            rx.handle_fragment(&[FIRST, 0x85, 0x00, 1], 0),
            Err(FragError::BadLength)
        );
    }

    #[test]
    fn oversized_and_empty_fragments_are_refused() {
        let mut rx = Reassembler::new(23, 1000).unwrap();
        assert_eq!(
            rx.handle_fragment(&[0; 21], 0),
            Err(FragError::TooLarge { len: 21, max: 20 })
        );
        assert_eq!(rx.handle_fragment(&[], 0), Err(FragError::Empty));
        assert_eq!(
            rx.handle_fragment(&first_frag(0, 5, &[]), 0),
            Err(FragError::Empty)
        );
    }

    #[test]
    fn an_endless_stream_of_fragments_holds_one_record_at_most() {
        // Valid records forever: memory never passes one record.
        let mut rx = Reassembler::new(512, 1000).unwrap();
        let mut tx = Fragmenter::new(512).unwrap();
        for i in 0..2_000u32 {
            tx.start(vec![i as u8; MAX_RECORD_BYTES]);
            while let Some(f) = tx.next_fragment() {
                rx.handle_fragment(&f, 0).unwrap();
                assert!(rx.buffered() <= MAX_RECORD_BYTES);
            }
        }
        // One record that never ends is cut at its declared length.
        let mut rx = Reassembler::new(512, 1000).unwrap();
        rx.handle_fragment(&first_frag(0, MAX_RECORD_BYTES as u64, &[0; 500]), 0)
            .unwrap();
        let mut seq = 1u8;
        let err = loop {
            let mut f = vec![seq];
            f.extend_from_slice(&[0; 500]);
            seq = (seq + 1) & SEQ_MASK;
            if let Err(e) = rx.handle_fragment(&f, 0) {
                break e;
            }
            assert!(rx.buffered() <= MAX_RECORD_BYTES);
        };
        assert_eq!(err, FragError::Overrun);
    }

    #[test]
    fn a_stalled_record_times_out() {
        let mut rx = Reassembler::new(185, 30_000).unwrap();
        assert_eq!(rx.poll_timeout(), None);
        rx.handle_fragment(&first_frag(0, 1000, &[1; 100]), 5)
            .unwrap();
        assert_eq!(rx.poll_timeout(), Some(30_005));
        assert_eq!(rx.handle_timeout(30_004), Ok(()));
        assert_eq!(rx.handle_timeout(30_005), Err(FragError::Timeout(30_000)));
    }

    #[test]
    fn mtu_renegotiated_mid_message_is_refused_and_between_records_is_fine() {
        let mut tx = Fragmenter::new(185).unwrap();
        let mut rx = Reassembler::new(185, 1000).unwrap();
        tx.start(vec![1; 1000]);
        rx.handle_fragment(&tx.next_fragment().unwrap(), 0).unwrap();
        assert_eq!(tx.set_mtu(23), Err(FragError::MtuChangedMidMessage));
        assert_eq!(rx.set_mtu(512), Err(FragError::MtuChangedMidMessage));
        let mut tx = Fragmenter::new(185).unwrap();
        assert_eq!(tx.set_mtu(512), Ok(()));
        assert_eq!(tx.set_mtu(22), Err(FragError::BadMtu(22)));
        assert_eq!(tx.set_mtu(518), Err(FragError::BadMtu(518)));
        assert_eq!(tx.payload(), 509);
        // A bigger MTU after the exchange: fragments of the old size are still accepted.
        let mut rx = Reassembler::new(23, 1000).unwrap();
        rx.set_mtu(185).unwrap();
        assert_eq!(rx.handle_fragment(&[0; 30], 0), Err(FragError::Orphan));
    }

    #[test]
    fn varints_are_minimal_and_bounded() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, 1 << 32] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(get_varint(&b), Some((v, b.len())));
        }
        assert_eq!(get_varint(&[0x80]), None);
    }
}
