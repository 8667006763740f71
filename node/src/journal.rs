//! The page journal in a file of its own beside sled (issue 11: "the journal out of sled").
//!
//! The sync core records every envelope applied to a page since the page was last saved
//! (`l/` ‖ seq → conversation ‖ page ‖ envelope id, [`vaarta_sync::replica::keys::JOURNAL`])
//! and deletes those records once the page is saved. Each message therefore writes one
//! record and deletes it soon after. In sled, that pair cost about 390 B of disk per message
//! (measured with `vaarta bench --corpus 20000`: 678 B of sled per message with the journal in
//! sled, 288 B without it), because sled keeps every written and removed version until it
//! cleans a segment. Here the records go to an append-only file that is rewritten, holding only
//! the live records, once it has grown past [`COMPACT_MIN`] bytes and four times what is live:
//! its size follows the pages not yet saved, not the history.
//!
//! The [`SledStore`](crate::store::SledStore) sends every key under `l/` here; every other key
//! stays in sled. The journal holds all live records in memory: at most one per envelope
//! applied to a page that is not saved yet, and the sync core bounds the loaded pages
//! (`MAX_LOADED_PAGES_TOTAL`) and saves a page whose journal is full.
//!
//! ## Format
//!
//! The journal is a file `journal.<generation>` (eight digits) in the sled directory:
//!
//! ```text
//! frame   = len:u32le  nonce:[24]  ciphertext:[len]  tag:[16]
//! payload = op*
//! op      = 1 klen:u8 key value_len:u32le value     (put)
//!         | 2 klen:u8 key                           (delete)
//! sealed with XChaCha20-Poly1305 under the storage key (crate::at_rest::Sealer),
//! associated data = space 4 ‖ generation:u32be ‖ frame offset:u64be ‖ len:u32be
//! ```
//!
//! ## Crashes
//!
//! Like the envelope log, the journal has a *mark*, its generation and durable length, kept in
//! sled's `rest` tree. At [`Store::flush`](vaarta_sync::store::Store::flush) the operations
//! since the last flush are written as frames and `fdatasync`ed ([`Journal::write_pending`]),
//! then the new mark is inserted in sled and sled is flushed — in the same flush as the saved
//! pages whose records the operations delete, so a delete is never durable without its page's
//! save, and a put never durable as "acknowledged" without the envelope's location. At open:
//!
//! * bytes past the mark are cut: they were written by a flush whose sled flush did not
//!   complete, so every envelope they name was never acknowledged;
//! * a frame before the mark that does not open is [`StoreError::Corrupt`] (the database is
//!   moved aside, never silently thinned);
//! * a journal file of another generation is a compaction that did not finish (the new file
//!   written, the mark not yet moved) or one that finished (the mark moved, the old file not
//!   yet deleted): it is deleted.
//!
//! A record that survives while the page's save was also made durable is harmless: replaying
//! an envelope into a page that holds its changes changes nothing.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use vaarta_sync::store::StoreError;

use crate::at_rest::{OVERHEAD, Sealer};
use crate::envlog::{Syncs, private_file, read_at, sync_dir, write_at};

/// The file name's prefix; the generation follows in eight digits.
pub const FILE_PREFIX: &str = "journal.";
/// Rewrite the file once it is larger than this and four times the live records.
pub const COMPACT_MIN: u64 = 1 << 20;
/// At most this many payload bytes per frame.
const FRAME_MAX: usize = 64 * 1024;
/// A frame's length field and seal.
const FRAME_OVERHEAD: u64 = 4 + OVERHEAD as u64;
/// The sealing space of journal frames (0–3 are the store's and the envelope log's).
const SPACE_JOURNAL: u8 = 4;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// The journal's durable generation and length, kept in sled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub generation: u32,
    pub len: u64,
}

impl Mark {
    pub const LEN: usize = 12;

    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.generation.to_be_bytes());
        b[4..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; 12] = b.try_into().ok()?;
        Some(Self {
            generation: u32::from_be_bytes(b[..4].try_into().ok()?),
            len: u64::from_be_bytes(b[4..].try_into().ok()?),
        })
    }
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::Full
    } else {
        StoreError::Io(format!("journal: {what}: {e}"))
    }
}

fn file_name(generation: u32) -> String {
    format!("{FILE_PREFIX}{generation:08}")
}

fn frame_ad(generation: u32, off: u64, len: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&generation.to_be_bytes());
    k[4..12].copy_from_slice(&off.to_be_bytes());
    k[12..].copy_from_slice(&(len as u32).to_be_bytes());
    k
}

fn open_file(path: &Path) -> Result<File, StoreError> {
    private_file(OpenOptions::new().read(true).write(true).create(true))
        .open(path)
        .map_err(|e| io_err("open", e))
}

/// Appends a put of `key` = `value` to a frame's payload.
fn encode_put(payload: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    payload.push(OP_PUT);
    payload.push(key.len() as u8);
    payload.extend_from_slice(key);
    payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
    payload.extend_from_slice(value);
}

/// Appends `payload` sealed as the frame at `at` of `generation` to `out`; returns its size.
fn seal_frame(sealer: &Sealer, generation: u32, out: &mut Vec<u8>, at: u64, payload: &[u8]) -> u64 {
    let sealed = sealer.seal(
        SPACE_JOURNAL,
        &frame_ad(generation, at, payload.len()),
        payload,
    );
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed);
    4 + sealed.len() as u64
}

/// One operation not yet written to the file.
#[derive(Debug)]
enum Op {
    Put(Vec<u8>),
    Delete(Vec<u8>),
}

/// A live record: its value, and whether its put is in the file already.
#[derive(Debug)]
struct Record {
    value: Vec<u8>,
    written: bool,
}

/// The journal (see the module docs).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    sealer: Sealer,
    generation: u32,
    file: File,
    /// Bytes in the file (written; durable once sled's flush has recorded them as the mark).
    len: u64,
    live: BTreeMap<Vec<u8>, Record>,
    live_bytes: u64,
    /// Operations since the last [`Journal::write_pending`], in order.
    ops: Vec<Op>,
}

impl Journal {
    /// Opens the journal in `dir` (the sled directory) at `mark`; `None`: there is none yet
    /// (a new database, or one from before the journal left sled).
    pub fn open(dir: &Path, sealer: Sealer, mark: Option<Mark>) -> Result<Self, StoreError> {
        let mark = mark.unwrap_or_default();
        let path = dir.join(file_name(mark.generation));
        let file = open_file(&path)?;
        let on_disk = file.metadata().map_err(|e| io_err("stat", e))?.len();
        if on_disk < mark.len {
            return Err(StoreError::Corrupt(format!(
                "the journal is {on_disk} bytes, {} were made durable",
                mark.len
            )));
        }
        if on_disk > mark.len {
            tracing::info!(
                bytes = on_disk - mark.len,
                "cut the journal's bytes written after the last flush (never acknowledged)"
            );
            file.set_len(mark.len).map_err(|e| io_err("truncate", e))?;
            file.sync_data().map_err(|e| io_err("sync", e))?;
        }
        let mut j = Self {
            dir: dir.to_path_buf(),
            sealer,
            generation: mark.generation,
            file,
            len: mark.len,
            live: BTreeMap::new(),
            live_bytes: 0,
            ops: Vec::new(),
        };
        j.replay()?;
        // Files of other generations: a compaction cut short, or one whose old file was
        // not deleted yet.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(FILE_PREFIX) && *name != file_name(j.generation) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(j)
    }

    fn replay(&mut self) -> Result<(), StoreError> {
        let corrupt =
            |at: u64, why: &str| StoreError::Corrupt(format!("journal frame at byte {at}: {why}"));
        let mut buf = vec![0u8; self.len as usize];
        read_at(&self.file, &mut buf, 0).map_err(|e| io_err("read", e))?;
        let mut off = 0usize;
        while off < buf.len() {
            let at = off as u64;
            let Some(len) = buf.get(off..off + 4) else {
                return Err(corrupt(at, "cut inside its length"));
            };
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            let end = off + 4 + len + OVERHEAD;
            let Some(sealed) = buf.get(off + 4..end) else {
                return Err(corrupt(at, "longer than the journal"));
            };
            let payload = self
                .sealer
                .open(SPACE_JOURNAL, &frame_ad(self.generation, at, len), sealed)
                .ok_or_else(|| corrupt(at, "does not authenticate under the storage key"))?;
            self.apply(&payload)
                .ok_or_else(|| corrupt(at, "malformed operation"))?;
            off = end;
        }
        Ok(())
    }

    fn apply(&mut self, mut p: &[u8]) -> Option<()> {
        while let Some((&op, rest)) = p.split_first() {
            let (&klen, rest) = rest.split_first()?;
            let key = rest.get(..klen as usize)?.to_vec();
            p = &rest[klen as usize..];
            match op {
                OP_PUT => {
                    let vlen = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
                    let value = p.get(4..4 + vlen)?.to_vec();
                    p = &p[4 + vlen..];
                    self.insert(key, value, true);
                }
                OP_DELETE => {
                    self.remove(&key);
                }
                _ => return None,
            }
        }
        Some(())
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, written: bool) {
        self.live_bytes += (key.len() + value.len()) as u64;
        if let Some(old) = self.live.insert(key, Record { value, written }) {
            self.live_bytes -= old.value.len() as u64;
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Record> {
        let r = self.live.remove(key)?;
        self.live_bytes -= (key.len() + r.value.len()) as u64;
        Some(r)
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.live.get(key).map(|r| r.value.clone())
    }

    /// Every live record under `prefix`, in key order, until `f` says stop.
    pub fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) {
        for (k, r) in self.live.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, &r.value) {
                break;
            }
        }
    }

    /// Records a put (written at the next flush). Returns the previous value's length.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Option<usize>, StoreError> {
        if key.len() > u8::MAX as usize {
            return Err(StoreError::Io(format!(
                "journal key of {} bytes (at most 255)",
                key.len()
            )));
        }
        let old = self.remove(key);
        if old.as_ref().is_some_and(|r| !r.written) {
            self.drop_pending_put(key);
        }
        self.insert(key.to_vec(), value.to_vec(), false);
        self.ops.push(Op::Put(key.to_vec()));
        Ok(old.map(|r| r.value.len()))
    }

    /// Records a delete; one of a put not yet written cancels the put instead. Returns the
    /// removed value's length.
    pub fn delete(&mut self, key: &[u8]) -> Option<usize> {
        let old = self.remove(key)?;
        if old.written {
            self.ops.push(Op::Delete(key.to_vec()));
        } else {
            self.drop_pending_put(key);
        }
        Some(old.value.len())
    }

    fn drop_pending_put(&mut self, key: &[u8]) {
        if let Some(i) = self
            .ops
            .iter()
            .rposition(|o| matches!(o, Op::Put(k) if k == key))
        {
            self.ops.remove(i);
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Writes the operations since the last call as sealed frames and `fdatasync`s the
    /// file; returns the mark to record in sled before its flush (`None`: nothing to write).
    pub fn write_pending(&mut self) -> Result<Option<Mark>, StoreError> {
        let mut syncs = Syncs::default();
        let m = self.write_pending_unsynced(&mut syncs)?;
        syncs.run()?;
        if let Some(m) = m {
            self.synced(m);
        }
        Ok(m)
    }

    /// [`Journal::write_pending`] without the `fdatasync`: the file goes to `syncs`; once
    /// they ran, the caller calls [`Journal::synced`] with the mark, then records it.
    pub(crate) fn write_pending_unsynced(
        &mut self,
        syncs: &mut Syncs,
    ) -> Result<Option<Mark>, StoreError> {
        if self.ops.is_empty() {
            return Ok(None);
        }
        let ops = std::mem::take(&mut self.ops);
        let mut out = Vec::new();
        let mut payload = Vec::new();
        let mut at = self.len;
        for op in &ops {
            match op {
                Op::Put(k) => {
                    let Some(r) = self.live.get_mut(k) else {
                        continue;
                    };
                    r.written = true;
                    encode_put(&mut payload, k, &r.value);
                }
                Op::Delete(k) => {
                    payload.push(OP_DELETE);
                    payload.push(k.len() as u8);
                    payload.extend_from_slice(k);
                }
            }
            if payload.len() >= FRAME_MAX {
                at += seal_frame(&self.sealer, self.generation, &mut out, at, &payload);
                payload.clear();
            }
        }
        if !payload.is_empty() {
            seal_frame(&self.sealer, self.generation, &mut out, at, &payload);
        }
        write_at(&mut self.file, &out, self.len).map_err(|e| io_err("write", e))?;
        syncs.file(&self.file)?;
        Ok(Some(Mark {
            generation: self.generation,
            len: self.len + out.len() as u64,
        }))
    }

    /// The frames up to `m` are on the disk: the next ones go after them. (Until then a
    /// failed sync leaves the length alone, so the next flush writes over them.)
    pub fn synced(&mut self, m: Mark) {
        debug_assert_eq!(m.generation, self.generation);
        self.len = m.len;
    }

    pub fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            len: self.len,
        }
    }

    /// Whether the file should be rewritten with only its live records.
    pub fn wants_compaction(&self) -> bool {
        self.ops.is_empty()
            && self.len > COMPACT_MIN
            && self.len > 4 * (self.live_bytes + self.live.len() as u64 * 6 + FRAME_OVERHEAD)
    }

    /// Writes the live records to the next generation's file and `fdatasync`s it; returns
    /// the new file and its mark. The caller records the mark in sled, flushes, then calls
    /// [`Journal::switch`]; until then the current file stays the journal.
    pub fn compact(&self) -> Result<(File, Mark), StoreError> {
        let generation = self.generation.wrapping_add(1);
        let path = self.dir.join(file_name(generation));
        let mut file = open_file(&path)?;
        file.set_len(0).map_err(|e| io_err("truncate", e))?;
        let mut out = Vec::new();
        let mut payload = Vec::new();
        let mut at = 0u64;
        for (k, r) in &self.live {
            encode_put(&mut payload, k, &r.value);
            if payload.len() >= FRAME_MAX {
                at += seal_frame(&self.sealer, generation, &mut out, at, &payload);
                payload.clear();
            }
        }
        if !payload.is_empty() {
            seal_frame(&self.sealer, generation, &mut out, at, &payload);
        }
        write_at(&mut file, &out, 0).map_err(|e| io_err("write", e))?;
        file.sync_data().map_err(|e| io_err("sync", e))?;
        sync_dir(&self.dir);
        Ok((
            file,
            Mark {
                generation,
                len: out.len() as u64,
            },
        ))
    }

    /// Makes the file [`Journal::compact`] wrote the journal (its mark is durable in sled)
    /// and deletes the old one.
    pub fn switch(&mut self, file: File, mark: Mark) {
        let old = self.dir.join(file_name(self.generation));
        self.file = file;
        self.generation = mark.generation;
        self.len = mark.len;
        let _ = std::fs::remove_file(old);
        sync_dir(&self.dir);
    }

    /// Live records and the file's length in bytes (for the census and `size_on_disk`).
    pub fn stats(&self) -> (u64, u64, u64) {
        (self.live.len() as u64, self.live_bytes, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at_rest::Secret;

    fn sealer() -> Sealer {
        Sealer::new(&Secret::new([7; 32]))
    }

    fn all(j: &Journal) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v = Vec::new();
        j.scan(b"", &mut |k, val| {
            v.push((k.to_vec(), val.to_vec()));
            true
        });
        v
    }

    #[test]
    fn records_survive_reopen_at_the_mark_and_writes_past_it_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), sealer(), None).unwrap();
        j.put(b"l/1", b"one").unwrap();
        j.put(b"l/2", b"two").unwrap();
        let mark = j.write_pending().unwrap().unwrap();
        j.delete(b"l/1");
        j.put(b"l/3", b"three").unwrap();
        // Written and synced, but sled's flush (which records the mark) never happened.
        j.write_pending().unwrap().unwrap();
        drop(j);
        let j = Journal::open(dir.path(), sealer(), Some(mark)).unwrap();
        assert_eq!(
            all(&j),
            vec![
                (b"l/1".to_vec(), b"one".to_vec()),
                (b"l/2".to_vec(), b"two".to_vec())
            ]
        );
        assert_eq!(j.mark(), mark);
    }

    #[test]
    fn a_put_deleted_before_the_flush_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), sealer(), None).unwrap();
        j.put(b"l/1", b"one").unwrap();
        assert_eq!(j.delete(b"l/1"), Some(3));
        assert!(!j.has_pending());
        assert_eq!(j.write_pending().unwrap(), None);
        assert_eq!(j.delete(b"l/1"), None);
    }

    #[test]
    fn a_damaged_frame_before_the_mark_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), sealer(), None).unwrap();
        j.put(b"l/1", b"one").unwrap();
        let mark = j.write_pending().unwrap().unwrap();
        drop(j);
        let p = dir.path().join(file_name(0));
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(matches!(
            Journal::open(dir.path(), sealer(), Some(mark)),
            Err(StoreError::Corrupt(_))
        ));
        // A file shorter than its mark is corruption too.
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(
            Journal::open(dir.path(), sealer(), Some(mark)),
            Err(StoreError::Corrupt(_))
        ));
        // Another key does not open it.
        let other = Sealer::new(&Secret::new([8; 32]));
        let dir2 = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir2.path(), sealer(), None).unwrap();
        j.put(b"l/1", b"one").unwrap();
        let mark = j.write_pending().unwrap().unwrap();
        drop(j);
        assert!(matches!(
            Journal::open(dir2.path(), other, Some(mark)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn compaction_keeps_only_live_records_and_either_side_of_the_switch_opens() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), sealer(), None).unwrap();
        let mut mark = Mark::default();
        let value = [9u8; 52];
        for i in 0u64..40_000 {
            j.put(&[b"l/".as_slice(), &i.to_be_bytes()].concat(), &value)
                .unwrap();
            if i >= 10 {
                j.delete(&[b"l/".as_slice(), &(i - 10).to_be_bytes()].concat());
            }
            if i % 3 == 0 {
                mark = j.write_pending().unwrap().unwrap_or(mark);
            }
        }
        mark = j.write_pending().unwrap().unwrap_or(mark);
        assert!(j.wants_compaction(), "{:?}", j.stats());
        let live = all(&j);
        assert_eq!(live.len(), 10);
        let (file, new) = j.compact().unwrap();
        // A crash before the new mark reached sled: the old generation is the journal.
        {
            let old = Journal::open(dir.path(), sealer(), Some(mark)).unwrap();
            assert_eq!(all(&old), live);
            assert!(!dir.path().join(file_name(1)).exists());
        }
        // The new file was deleted by that open; write it again and switch.
        let (file2, new2) = j.compact().unwrap();
        drop(file);
        assert_eq!(new, new2);
        j.switch(file2, new2);
        assert!(j.len < COMPACT_MIN);
        j.put(b"l/zz", b"after").unwrap();
        let m = j.write_pending().unwrap().unwrap();
        drop(j);
        let j = Journal::open(dir.path(), sealer(), Some(m)).unwrap();
        assert_eq!(all(&j).len(), 11);
        assert_eq!(j.get(b"l/zz").as_deref(), Some(&b"after"[..]));
        assert!(!dir.path().join(file_name(0)).exists());
    }
}
