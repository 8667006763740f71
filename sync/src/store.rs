//! Storage, as a small synchronous trait (the iroh-docs pattern): the sync core and the node
//! engine are written against it, the daemon implements it on sled (`vaarta-node`), tests and
//! the simulator use [`MemoryStore`].
//!
//! Two spaces:
//! * **envelopes**, keyed by (tag, id), with a per-tag [`Summary`] (count and 256-bit sum of
//!   ids) kept up to date on every write, so reconciliation can fingerprint a whole tag in O(1).
//!   A *tombstone* (empty bytes) marks an envelope that was refused: it counts as "have" for
//!   reconciliation, so the same bad envelope is not fetched again, but it is never sent.
//! * **metadata**, a plain ordered key-value map.
//!
//! Writes are visible at once and *durable only after [`Store::flush`]*. Callers must flush
//! before they acknowledge anything to anyone (rule 4).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ids::{EnvelopeId, Tag};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is full")]
    Full,
}

/// Count and sum (mod 2^256, little-endian) of the ids under one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub count: u64,
    pub sum: [u8; 32],
}

impl Summary {
    pub fn add(&mut self, id: &EnvelopeId) {
        self.count += 1;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(self.sum[i]) + u16::from(id.0[i]) + carry;
            self.sum[i] = v as u8;
            carry = v >> 8;
        }
    }

    pub fn sub(&mut self, id: &EnvelopeId) {
        self.count = self.count.saturating_sub(1);
        let mut borrow = 0i16;
        for i in 0..32 {
            let v = i16::from(self.sum[i]) - i16::from(id.0[i]) - borrow;
            borrow = i16::from(v < 0);
            self.sum[i] = v.rem_euclid(256) as u8;
        }
    }

    pub fn merge(&mut self, other: &Summary) {
        self.count += other.count;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(self.sum[i]) + u16::from(other.sum[i]) + carry;
            self.sum[i] = v as u8;
            carry = v >> 8;
        }
    }
}

/// The storage the sync core needs.
///
/// Envelopes are named by (tag, id). An envelope's id is the BLAKE3 hash of its bytes and
/// its header names its tag, so every caller stores an envelope under the tag its header
/// names and looks it up there: one id has one tag. The store does not check this (it keeps
/// no id → tag index, issue 11): the same id put under another tag is another record, found
/// only under that tag.
pub trait Store {
    /// Stores an envelope (or a tombstone, with empty bytes) under `tag`. Returns false if
    /// the id was already present under `tag`. A tombstone never replaces an envelope; an
    /// envelope replaces a tombstone.
    fn put_envelope(
        &mut self,
        tag: &Tag,
        id: &EnvelopeId,
        bytes: &[u8],
    ) -> Result<bool, StoreError>;
    /// The bytes of the envelope `id` under `tag` (empty for a tombstone), if present.
    fn envelope(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError>;
    /// The length of an envelope's bytes (0 for a tombstone), if present under `tag`,
    /// without reading them back (a store that seals at rest need not open it).
    fn envelope_len(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<usize>, StoreError> {
        Ok(self.envelope(tag, id)?.map(|b| b.len()))
    }
    /// True if `id` is stored under `tag` (an envelope or a tombstone).
    fn contains(&self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError>;
    /// Removes the envelope (or tombstone) `id` under `tag`; false if there was none.
    fn remove_envelope(&mut self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError>;
    fn summary(&self, tag: &Tag) -> Summary;
    /// Every tag with at least one envelope.
    fn tags(&self) -> Vec<(Tag, Summary)>;
    /// Visits the ids under `tag` that are `>= from`, in order, until `f` returns false.
    fn for_each_id(
        &self,
        tag: &Tag,
        from: &[u8; 32],
        f: &mut dyn FnMut(&EnvelopeId) -> bool,
    ) -> Result<(), StoreError>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Visits metadata entries whose key starts with `prefix`, in order, until `f` is false.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Visits the keys of the metadata entries under `prefix`, in order, until `f` is false.
    /// For the scans that need no value: a store that seals values at rest need not open
    /// them (at start-up the replica lists every conversation's pages this way).
    fn scan_keys(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), StoreError> {
        self.scan_prefix(prefix, &mut |k, _| f(k))
    }

    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), StoreError>;
    /// A clean stop: flushes, and may record what lets the next open skip work (the node's
    /// store keeps its per-tag summaries, so it need not scan every envelope record). A
    /// write after it is allowed and undoes that.
    fn close(&mut self) -> Result<(), StoreError> {
        self.flush()
    }
    /// Bytes held (envelopes and metadata), for quotas and reports.
    fn bytes_used(&self) -> u64;
}

#[derive(Debug, Clone)]
enum Undo {
    Envelope(Tag, EnvelopeId, Option<Vec<u8>>),
    Meta(Vec<u8>, Option<Vec<u8>>),
}

/// An in-memory store. It can also *forget unflushed writes* ([`MemoryStore::crash`]), which
/// is how the simulator models a power cut.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    envelopes: BTreeMap<(Tag, EnvelopeId), Vec<u8>>,
    summaries: BTreeMap<Tag, Summary>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    undo: Vec<Undo>,
    bytes: u64,
    /// Flushes so far (for tests of group commit).
    pub flushes: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every write since the last flush, as a power cut would.
    pub fn crash(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Envelope(tag, id, prev) => {
                    self.raw_remove_envelope(&tag, &id);
                    if let Some(b) = prev {
                        self.raw_put_envelope(&tag, &id, b);
                    }
                }
                Undo::Meta(k, prev) => {
                    if let Some(old) = self.meta.remove(&k) {
                        self.bytes -= (k.len() + old.len()) as u64;
                    }
                    if let Some(v) = prev {
                        self.bytes += (k.len() + v.len()) as u64;
                        self.meta.insert(k, v);
                    }
                }
            }
        }
    }

    /// Writes not yet flushed.
    pub fn unflushed(&self) -> usize {
        self.undo.len()
    }

    fn raw_put_envelope(&mut self, tag: &Tag, id: &EnvelopeId, bytes: Vec<u8>) {
        self.bytes += bytes.len() as u64 + 48;
        if let Some(old) = self.envelopes.insert((*tag, *id), bytes) {
            self.bytes -= old.len() as u64 + 48;
        } else {
            self.summaries.entry(*tag).or_default().add(id);
        }
    }

    fn raw_remove_envelope(&mut self, tag: &Tag, id: &EnvelopeId) -> Option<Vec<u8>> {
        let old = self.envelopes.remove(&(*tag, *id))?;
        self.bytes -= old.len() as u64 + 48;
        if let Some(s) = self.summaries.get_mut(tag) {
            s.sub(id);
            if s.count == 0 {
                self.summaries.remove(tag);
            }
        }
        Some(old)
    }
}

impl Store for MemoryStore {
    fn put_envelope(
        &mut self,
        tag: &Tag,
        id: &EnvelopeId,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        if let Some(old) = self.envelopes.get(&(*tag, *id)) {
            if !old.is_empty() || bytes.is_empty() {
                return Ok(false);
            }
            // Envelope replaces a tombstone.
            self.raw_remove_envelope(tag, id);
            self.undo.push(Undo::Envelope(*tag, *id, Some(Vec::new())));
            self.raw_put_envelope(tag, id, bytes.to_vec());
            self.undo.push(Undo::Envelope(*tag, *id, None));
            return Ok(true);
        }
        self.undo.push(Undo::Envelope(*tag, *id, None));
        self.raw_put_envelope(tag, id, bytes.to_vec());
        Ok(true)
    }

    fn envelope(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.envelopes.get(&(*tag, *id)).cloned())
    }

    fn contains(&self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        Ok(self.envelopes.contains_key(&(*tag, *id)))
    }

    fn remove_envelope(&mut self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        let Some(old) = self.raw_remove_envelope(tag, id) else {
            return Ok(false);
        };
        self.undo.push(Undo::Envelope(*tag, *id, Some(old)));
        Ok(true)
    }

    fn summary(&self, tag: &Tag) -> Summary {
        self.summaries.get(tag).copied().unwrap_or_default()
    }

    fn tags(&self) -> Vec<(Tag, Summary)> {
        self.summaries.iter().map(|(t, s)| (*t, *s)).collect()
    }

    fn for_each_id(
        &self,
        tag: &Tag,
        from: &[u8; 32],
        f: &mut dyn FnMut(&EnvelopeId) -> bool,
    ) -> Result<(), StoreError> {
        for ((_, id), _) in self
            .envelopes
            .range((*tag, EnvelopeId(*from))..=(*tag, EnvelopeId([0xff; 32])))
        {
            if !f(id) {
                break;
            }
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.bytes += (key.len() + value.len()) as u64;
        let prev = self.meta.insert(key.to_vec(), value.to_vec());
        if let Some(p) = &prev {
            self.bytes -= (key.len() + p.len()) as u64;
        }
        self.undo.push(Undo::Meta(key.to_vec(), prev));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if let Some(prev) = self.meta.remove(key) {
            self.bytes -= (key.len() + prev.len()) as u64;
            self.undo.push(Undo::Meta(key.to_vec(), Some(prev)));
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for (k, v) in self.meta.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.undo.clear();
        self.flushes += 1;
        Ok(())
    }

    fn bytes_used(&self) -> u64 {
        self.bytes
    }
}

/// Stores for tests: failures on demand, lookups by id alone.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EnvelopeId {
        EnvelopeId([n; 32])
    }

    #[test]
    fn summary_add_sub_inverse() {
        let mut s = Summary::default();
        s.add(&id(200));
        s.add(&id(100));
        s.sub(&id(200));
        let mut t = Summary::default();
        t.add(&id(100));
        assert_eq!(s, t);
    }

    #[test]
    fn crash_forgets_unflushed_writes_only() {
        let mut st = MemoryStore::new();
        let tag = Tag([1; 16]);
        st.put_envelope(&tag, &id(1), b"one").unwrap();
        st.put(b"k", b"v1").unwrap();
        st.flush().unwrap();
        st.put_envelope(&tag, &id(2), b"two").unwrap();
        st.put(b"k", b"v2").unwrap();
        st.remove_envelope(&tag, &id(1)).unwrap();
        st.crash();
        assert_eq!(st.envelope(&tag, &id(1)).unwrap().unwrap(), b"one");
        assert!(!st.contains(&tag, &id(2)).unwrap());
        assert_eq!(st.get(b"k").unwrap().unwrap(), b"v1");
        assert_eq!(st.summary(&tag).count, 1);
    }

    #[test]
    fn tombstones_count_and_are_replaced_by_envelopes() {
        let mut st = MemoryStore::new();
        let tag = Tag([1; 16]);
        assert!(st.put_envelope(&tag, &id(1), b"").unwrap());
        assert!(!st.put_envelope(&tag, &id(1), b"").unwrap());
        assert_eq!(st.summary(&tag).count, 1);
        assert!(st.put_envelope(&tag, &id(1), b"real").unwrap());
        assert_eq!(st.summary(&tag).count, 1);
        assert!(!st.put_envelope(&tag, &id(1), b"").unwrap());
        assert_eq!(st.envelope(&tag, &id(1)).unwrap().unwrap(), b"real");
        st.crash();
        assert!(!st.contains(&tag, &id(1)).unwrap(), "every step undone");
        assert_eq!(st.summary(&tag).count, 0);
    }

    /// Lookups name the tag: an envelope stored under A is not found under B, and the same
    /// id put under B is another record (no id → tag index; the sync core always stores an
    /// envelope under the tag its header names).
    #[test]
    fn an_envelope_is_found_only_under_its_tag() {
        let mut st = MemoryStore::new();
        let (a, b) = (Tag([1; 16]), Tag([2; 16]));
        assert!(st.put_envelope(&a, &id(1), b"one").unwrap());
        assert!(st.contains(&a, &id(1)).unwrap());
        assert!(!st.contains(&b, &id(1)).unwrap());
        assert_eq!(st.envelope(&b, &id(1)).unwrap(), None);
        assert_eq!(st.envelope_len(&b, &id(1)).unwrap(), None);
        assert!(!st.remove_envelope(&b, &id(1)).unwrap());
        assert_eq!(st.envelope(&a, &id(1)).unwrap().unwrap(), b"one");
        assert!(st.put_envelope(&b, &id(1), b"").unwrap());
        assert_eq!((st.summary(&a).count, st.summary(&b).count), (1, 1));
        assert!(st.remove_envelope(&b, &id(1)).unwrap());
        assert_eq!(st.envelope(&a, &id(1)).unwrap().unwrap(), b"one");
        assert_eq!(st.tags().len(), 1);
    }
}
