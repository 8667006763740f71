//! The node's [`Store`] on sled 0.34 (the stable line; the 1.0 alphas still change format)
//! and the files beside it: the envelope log ([`crate::envlog`]), the page journal
//! ([`crate::journal`]) and the saved pages ([`crate::pages`]).
//!
//! sled holds `env` (tag number ‖ id → where the envelope's bytes are; `tags` numbers the
//! tags, so a key is 36 bytes, not 48), `meta`, the page pointers (`pages`) and `rest`. What
//! sled stores badly stays out of it (issue 11: sled keeps every written, rewritten and
//! removed version until it cleans a segment): the journal's put-and-delete per message
//! (~390 B of disk per message in sled) goes to the journal file, and each saved page (`p/`,
//! rewritten at every checkpoint: 249 → 157 B of sled per message at 20,000) to a file of its
//! own, sled keeping a 12-byte pointer. Envelopes are
//! looked up by (tag, id) ([`Store`]), so there is no id → tag index: the `idx` tree of
//! earlier versions (about 500 B of disk per message, issue 11) is dropped at open if
//! present. Envelope bytes are appended to the envelope log; `env` holds their 14-byte
//! [`Location`] (segment, frame, slice). A value in `env` is told apart by its length alone:
//! empty is a tombstone, 14 bytes a location, 40 bytes or more an envelope sealed inline by
//! the previous version (read as before; such stores are not rewritten). Writes go to sled's
//! page cache and the files' pending writes; [`Store::flush`] makes them durable: first the
//! log's new frames, the journal's new operations and the new page files (`fdatasync`, the
//! log's and the journal's in parallel), then their ends and pointers in sled
//! (`Db::flush`, which fsyncs), so an acknowledged envelope's bytes are always on disk.
//! The engine flushes once per batch before acknowledging anything (group commit).
//!
//! An envelope is one `env` record, so no crash can leave two trees disagreeing about it.
//! What a crash can leave is a location past the log's recorded end (written by sled in the
//! background after the last flush), whose envelope was never acknowledged: open cuts those.
//! That needs a scan of the `env` keys and values (14 bytes each), which also rebuilds the
//! per-tag summaries (count and sum of ids) that reconciliation needs. After a clean stop
//! ([`Store::close`]) no scan is needed: the close leaves a sealed snapshot of the summaries
//! and the byte count in `rest`, which the next open reads instead, so cold start does not
//! grow with the number of envelopes. The snapshot is taken out at open (used or not) and by
//! any write after the close, and is used only if the log's end and the journal's mark are
//! those it was written with; after a crash, open scans. A database that is *corrupt* is moved aside, never deleted (docs/security.md,
//! "Nothing acknowledged is ever lost" and E3): see [`open_or_quarantine`]. Any other failure
//! (a lock, a full disk, an I/O error, a wrong key) is reported and leaves the database alone.
//!
//! Every value is sealed at rest under the device's storage key ([`crate::at_rest`]): envelope
//! bytes in the log's frames (one seal per frame; tombstones stay empty), every metadata value
//! in `meta`, each page file, the snapshot. `rest` holds a sealed canary so that a wrong key is told apart
//! from corruption at open, and the log's end (the mark, 8 bytes in the clear like the
//! locations). Envelope reads check the bytes' BLAKE3 hash against the id, so a location (or
//! an inline value) that points at other bytes is [`StoreError::Corrupt`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vaarta_sync::ids::{EnvelopeId, Tag};
use vaarta_sync::store::{Store, StoreError, Summary};

use crate::at_rest::{OVERHEAD, Sealer, Secret};
use crate::envlog::{EnvLog, Location, Pos, Syncs};
use crate::journal::{Journal, Mark};
use crate::pages::{PageFiles, Pointer};

/// Associated-data spaces of sealed values (one per tree).
const SPACE_ENV: u8 = 0;
const SPACE_META: u8 = 1;
const SPACE_CANARY: u8 = 2;
/// Of the index snapshot a clean close leaves (3, 4 and 5 are the log's, the journal's and
/// the page files').
const SPACE_SNAPSHOT: u8 = 6;
/// In `rest`: the per-tag summaries and byte count at a clean close ([`Store::close`]), so
/// the next open need not scan every `env` record. Taken out at open, used or not.
const SNAPSHOT_KEY: &[u8] = b"index-snapshot";
const SNAPSHOT_VERSION: u8 = 1;
const CANARY_KEY: &[u8] = b"canary";
const CANARY: &[u8] = b"vaarta sealed store v1";
/// The envelope log's durable end, in `rest` ([`crate::envlog`]).
const LOG_END_KEY: &[u8] = b"log-end";
/// The journal's durable generation and length, in `rest` ([`crate::journal`]).
const JOURNAL_MARK_KEY: &[u8] = b"journal-mark";
/// The keys the sync core writes for its page journal: they go to [`crate::journal`], not sled.
const JOURNAL_PREFIX: &[u8] = vaarta_sync::replica::keys::JOURNAL;
/// The keys the sync core writes for its saved pages: they go to [`crate::pages`], not sled.
const PAGE_PREFIX: &[u8] = vaarta_sync::replica::keys::PAGE;
/// The tree of page pointers (key → generation ‖ length, [`crate::pages`]).
const PAGES_TREE: &[u8] = b"pages";
/// The id → tag tree of earlier versions, dropped at open.
const OLD_INDEX_TREE: &[u8] = b"idx";
/// The envelope log's directory inside the sled directory (why: [`crate::envlog`]).
pub const LOG_DIR: &str = "envlog";

/// A clean close's record of the index: the per-tag summaries and the byte count.
type Snapshot = (BTreeMap<Tag, Summary>, u64);

/// What an `env` value is, by its length.
enum Stored {
    Tomb,
    At(Location),
    /// Sealed inline by the previous version.
    Inline(sled::IVec),
}

fn classify(v: sled::IVec) -> Result<Stored, StoreError> {
    if v.is_empty() {
        Ok(Stored::Tomb)
    } else if let Some(l) = Location::decode(&v) {
        Ok(Stored::At(l))
    } else if v.len() > OVERHEAD {
        Ok(Stored::Inline(v))
    } else {
        Err(StoreError::Corrupt(format!(
            "an envelope value of {} bytes is neither a location nor a sealed envelope",
            v.len()
        )))
    }
}

/// The id of an envelope is the BLAKE3 hash of its bytes (`vaarta_sync::envelope`): bytes
/// that do not hash to it are not the envelope asked for.
fn verified(id: &EnvelopeId, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if blake3::hash(&bytes).as_bytes() == &id.0 {
        Ok(bytes)
    } else {
        Err(StoreError::Corrupt(format!(
            "the bytes stored for envelope {} are not that envelope",
            data_encoding::HEXLOWER.encode(&id.0[..8])
        )))
    }
}

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    env: sled::Tree,
    tag_numbers: sled::Tree,
    /// Each tag that has records in `env`, and its number; and the reverse.
    numbers: BTreeMap<Tag, u32>,
    tags_by_number: BTreeMap<u32, Tag>,
    meta: sled::Tree,
    rest: sled::Tree,
    log: EnvLog,
    journal: Journal,
    pages: PageFiles,
    page_pointers: sled::Tree,
    sealer: Sealer,
    summaries: BTreeMap<Tag, Summary>,
    bytes: u64,
    pub flushes: u64,
    /// Whether a snapshot of the index is in `rest` (written by [`Store::close`]): the next
    /// write takes it out, so no open can use a snapshot older than the store.
    snapshot_out: bool,
    /// Whether this open rebuilt the index by scanning `env` (no usable snapshot).
    pub scanned_at_open: bool,
}

/// What a sled error means for the caller. Only sled's own verdict of corruption (or a file
/// it could not parse) is [`StoreError::Corrupt`] — the one case that moves the database
/// aside. A full disk is [`StoreError::Full`]; every OS error (EIO, EACCES, a lock…) is
/// [`StoreError::Io`]: the data on disk is fine, the operation failed.
fn io(e: sled::Error) -> StoreError {
    match e {
        // Unsupported: sled could not parse its own config file.
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
            StoreError::Corrupt(e.to_string())
        }
        sled::Error::Io(ref ioe) if ioe.raw_os_error() == Some(28) => StoreError::Full,
        sled::Error::Io(ref ioe)
            if ioe.raw_os_error().is_none()
                && matches!(
                    ioe.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Io(e.to_string()),
    }
}

fn corrupt_value(what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "a sealed {what} value does not authenticate under the storage key"
    ))
}

/// The envelope's logical key, tag ‖ id: the `env` key of earlier versions, and what an
/// inline value is sealed to (its associated data) in every version.
fn env_key(tag: &Tag, id: &EnvelopeId) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&tag.0);
    k[16..].copy_from_slice(&id.0);
    k
}

/// The `env` key: the tag's number ([`TAGS_TREE`]) ‖ id, 36 bytes instead of 48 (sled's disk
/// cost grows with the key; issue 11's layout study, `frames-id`).
const ENV_KEY_LEN: usize = 4 + 32;

fn short_key(no: u32, id: &EnvelopeId) -> [u8; ENV_KEY_LEN] {
    let mut k = [0u8; ENV_KEY_LEN];
    k[..4].copy_from_slice(&no.to_be_bytes());
    k[4..].copy_from_slice(&id.0);
    k
}

/// The tree of tag numbers: tag (16 bytes) → its number (u32 BE) in `env` keys.
const TAGS_TREE: &[u8] = b"tags";

/// What happened when the database was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Clean,
    /// The old database could not be opened and was moved to this path; a new one was made.
    Quarantined(PathBuf),
}

impl SledStore {
    /// Opens (or creates) the store at `path`, sealed under `key`.
    pub fn open(path: &Path, key: &Secret) -> Result<Self, StoreError> {
        let fresh = !path.exists();
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(io)?;
        let env = db.open_tree("env").map_err(io)?;
        // The id → tag index of earlier versions: lookups name the tag now.
        if db.tree_names().iter().any(|n| n == OLD_INDEX_TREE) {
            db.drop_tree(OLD_INDEX_TREE).map_err(io)?;
            tracing::info!("dropped the envelope index of an earlier version (idx)");
        }
        let meta = db.open_tree("meta").map_err(io)?;
        let rest = db.open_tree("rest").map_err(io)?;
        let tag_numbers = db.open_tree(TAGS_TREE).map_err(io)?;
        let sealer = Sealer::new(key);
        match rest.get(CANARY_KEY).map_err(io)? {
            Some(v) => {
                if sealer.open(SPACE_CANARY, CANARY_KEY, &v).as_deref() != Some(CANARY) {
                    // Not corruption: another key (another home's key file, a restored
                    // backup of only one of the two). Leave the database as it is.
                    return Err(StoreError::Io(
                        "the storage key does not open this database (storage.key belongs to another database?)".into(),
                    ));
                }
            }
            None => {
                if !fresh && (!env.is_empty() || !meta.is_empty()) {
                    return Err(StoreError::Io(
                        "the database is not sealed at rest (written by an older version); move it away to start afresh".into(),
                    ));
                }
                rest.insert(CANARY_KEY, sealer.seal(SPACE_CANARY, CANARY_KEY, CANARY))
                    .map_err(io)?;
                db.flush().map_err(io)?;
            }
        }
        let mark = match rest.get(LOG_END_KEY).map_err(io)? {
            None => Pos::default(),
            Some(v) => Pos::decode(&v)
                .ok_or_else(|| StoreError::Corrupt("the envelope log's end is malformed".into()))?,
        };
        let log = EnvLog::open(&path.join(LOG_DIR), sealer.clone(), mark)?;
        let journal_mark = match rest.get(JOURNAL_MARK_KEY).map_err(io)? {
            None => None,
            Some(v) => Some(
                Mark::decode(&v)
                    .ok_or_else(|| StoreError::Corrupt("the journal's mark is malformed".into()))?,
            ),
        };
        let journal = Journal::open(path, sealer.clone(), journal_mark)?;
        let page_pointers = db.open_tree(PAGES_TREE).map_err(io)?;
        let mut index = BTreeMap::new();
        for item in page_pointers.iter() {
            let (k, v) = item.map_err(io)?;
            let p = Pointer::decode(&v)
                .ok_or_else(|| StoreError::Corrupt("a page pointer is malformed".into()))?;
            index.insert(k.to_vec(), p);
        }
        let pages = PageFiles::open(path, sealer.clone(), index)?;
        restrict_permissions(path);
        let mut s = Self {
            db,
            env,
            tag_numbers,
            numbers: BTreeMap::new(),
            tags_by_number: BTreeMap::new(),
            meta,
            rest,
            log,
            journal,
            pages,
            page_pointers,
            sealer,
            summaries: BTreeMap::new(),
            bytes: 0,
            flushes: 0,
            snapshot_out: false,
            scanned_at_open: false,
        };
        s.load_index()?;
        s.move_out_of_sled(JOURNAL_PREFIX, "the page journal")?;
        s.move_out_of_sled(PAGE_PREFIX, "the saved pages")?;
        Ok(s)
    }

    /// The `rest` values a snapshot must match: the log's end and the journal's mark.
    fn ends(&self) -> Result<Vec<u8>, StoreError> {
        let mut v = Vec::new();
        for k in [LOG_END_KEY, JOURNAL_MARK_KEY] {
            let b = self
                .rest
                .get(k)
                .map_err(io)?
                .map(|b| b.to_vec())
                .unwrap_or_default();
            v.push(b.len() as u8);
            v.extend_from_slice(&b);
        }
        Ok(v)
    }

    fn encode_snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut v = vec![SNAPSHOT_VERSION];
        v.extend_from_slice(&self.ends()?);
        v.extend_from_slice(&self.bytes.to_be_bytes());
        v.extend_from_slice(&(self.summaries.len() as u32).to_be_bytes());
        for (t, s) in &self.summaries {
            v.extend_from_slice(&t.0);
            v.extend_from_slice(&s.count.to_be_bytes());
            v.extend_from_slice(&s.sum);
        }
        Ok(v)
    }

    /// The summaries and byte count of a snapshot, if it is of this store as it is: the
    /// same log end and journal mark, and a summary for exactly the tags that have numbers.
    fn decode_snapshot(&self, b: &[u8]) -> Result<Option<Snapshot>, StoreError> {
        let ends = self.ends()?;
        let Some(rest) = b
            .strip_prefix(&[SNAPSHOT_VERSION][..])
            .and_then(|r| r.strip_prefix(&ends[..]))
        else {
            return Ok(None);
        };
        let (Some(bytes), Some(n)) = (
            rest.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
            rest.get(8..12)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes),
        ) else {
            return Ok(None);
        };
        let entries = &rest[12..];
        if entries.len() != n as usize * 56 || n as usize != self.numbers.len() {
            return Ok(None);
        }
        let mut sums = BTreeMap::new();
        for e in entries.chunks_exact(56) {
            let tag = Tag(e[..16].try_into().unwrap_or_default());
            if !self.numbers.contains_key(&tag) {
                return Ok(None);
            }
            let count = u64::from_be_bytes(e[16..24].try_into().unwrap_or_default());
            sums.insert(
                tag,
                Summary {
                    count,
                    sum: e[24..].try_into().unwrap_or_default(),
                },
            );
        }
        Ok(Some((sums, bytes)))
    }

    /// Uses the snapshot a clean close left, if it matches; takes it out either way (and
    /// flushes that), so a crash after this open cannot bring back a stale one.
    fn take_snapshot(&mut self) -> Result<bool, StoreError> {
        let Some(sealed) = self.rest.get(SNAPSHOT_KEY).map_err(io)? else {
            return Ok(false);
        };
        let found = match self.sealer.open(SPACE_SNAPSHOT, SNAPSHOT_KEY, &sealed) {
            Some(b) => self.decode_snapshot(&b)?,
            None => None,
        };
        self.rest.remove(SNAPSHOT_KEY).map_err(io)?;
        self.db.flush().map_err(io)?;
        let Some((summaries, bytes)) = found else {
            tracing::warn!("the index snapshot does not match the store: scanning instead");
            return Ok(false);
        };
        self.summaries = summaries;
        self.bytes = bytes;
        Ok(true)
    }

    /// The next write makes the snapshot stale: take it out first.
    fn void_snapshot(&mut self) -> Result<(), StoreError> {
        if self.snapshot_out {
            self.rest.remove(SNAPSHOT_KEY).map_err(io)?;
            self.db.flush().map_err(io)?;
            self.snapshot_out = false;
        }
        Ok(())
    }

    /// A database of an earlier version keeps in `meta` what now lives in files of its own
    /// (`what`: the page journal, the saved pages): move it there (written and synced, then
    /// the marks or pointers and the removals in one sled flush).
    fn move_out_of_sled(&mut self, prefix: &[u8], what: &str) -> Result<(), StoreError> {
        let mut old = Vec::new();
        for item in self.meta.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            let v = self.open_meta(&k, &v)?;
            old.push((k, v));
        }
        if old.is_empty() {
            return Ok(());
        }
        for (k, v) in &old {
            self.meta.remove(k).map_err(io)?;
            if Self::is_journal(k) {
                self.journal.put(k, v)?;
            } else {
                self.pages.put(k, v)?;
            }
        }
        tracing::info!(records = old.len(), "moved {what} out of sled");
        self.flush()
    }

    /// `env` keys of the previous version (tag ‖ id, 48 bytes) become number ‖ id, once, at
    /// open; values are kept as they are (an inline value is sealed to tag ‖ id, which does
    /// not change). A crash part-way leaves both kinds, and the next open goes on.
    fn shorten_keys(&mut self) -> Result<(), StoreError> {
        let mut old = Vec::new();
        for item in self.env.iter() {
            let (k, v) = item.map_err(io)?;
            if k.len() == 48 {
                old.push((k, v));
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        let n = old.len();
        for (k, v) in old {
            let tag = Tag(k[..16].try_into().unwrap_or_default());
            let id = EnvelopeId(k[16..].try_into().unwrap_or_default());
            let no = self.number_for(&tag)?;
            self.env.insert(short_key(no, &id), v).map_err(io)?;
            self.env.remove(k).map_err(io)?;
        }
        self.db.flush().map_err(io)?;
        tracing::info!(
            envelopes = n,
            "shortened the envelope keys of an earlier version"
        );
        Ok(())
    }

    /// The tag's number, given one (durable with the next flush, before or with the record
    /// that uses it) if it has none.
    fn number_for(&mut self, tag: &Tag) -> Result<u32, StoreError> {
        if let Some(&no) = self.numbers.get(tag) {
            return Ok(no);
        }
        let no = match self.tags_by_number.last_key_value() {
            None => 0,
            Some((&last, _)) => last.checked_add(1).ok_or_else(|| {
                StoreError::Io("the store has used every tag number (2^32)".into())
            })?,
        };
        self.tag_numbers
            .insert(tag.0, &no.to_be_bytes())
            .map_err(io)?;
        self.numbers.insert(*tag, no);
        self.tags_by_number.insert(no, *tag);
        Ok(no)
    }

    /// Drops the number of a tag with no record left in `env`, so that tags seen once (a
    /// stranger's junk, carried envelopes evicted) do not stay in the store for ever.
    fn forget_number(&mut self, tag: &Tag) -> Result<(), StoreError> {
        if let Some(no) = self.numbers.remove(tag) {
            self.tags_by_number.remove(&no);
            self.tag_numbers.remove(tag.0).map_err(io)?;
        }
        Ok(())
    }

    /// The `env` key of (tag, id), if the tag has a number (else no record has it).
    fn key(&self, tag: &Tag, id: &EnvelopeId) -> Option<[u8; ENV_KEY_LEN]> {
        self.numbers.get(tag).map(|no| short_key(*no, id))
    }

    fn is_journal(key: &[u8]) -> bool {
        key.starts_with(JOURNAL_PREFIX)
    }

    /// Whether keys under `prefix` may be in the journal or the page files as well as in
    /// `meta` (a prefix shorter than theirs).
    fn spans_side_files(prefix: &[u8]) -> bool {
        JOURNAL_PREFIX.starts_with(prefix) || PAGE_PREFIX.starts_with(prefix)
    }

    /// A `meta` value opened (it is sealed to its key).
    fn open_meta(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.sealer
            .open(SPACE_META, key, sealed)
            .ok_or_else(|| corrupt_value("metadata"))
    }

    /// Rebuilds the per-tag summaries and the byte count from the `env` keys (one scan of
    /// every envelope record: keys and 14-byte locations), and cuts the locations past the
    /// log's recorded end (written after the last flush: never acknowledged).
    fn load_index(&mut self) -> Result<(), StoreError> {
        for item in self.tag_numbers.iter() {
            let (k, v) = item.map_err(io)?;
            let (Ok(tag), Ok(no)) = (<[u8; 16]>::try_from(&k[..]), <[u8; 4]>::try_from(&v[..]))
            else {
                return Err(StoreError::Corrupt(
                    "a tag number record is malformed".into(),
                ));
            };
            let no = u32::from_be_bytes(no);
            if self.tags_by_number.insert(no, Tag(tag)).is_some() {
                return Err(StoreError::Corrupt(format!(
                    "tag number {no} is given twice"
                )));
            }
            self.numbers.insert(Tag(tag), no);
        }
        if self.take_snapshot()? {
            return Ok(());
        }
        self.scanned_at_open = true;
        self.shorten_keys()?;
        let mut cut = Vec::new();
        for item in self.env.iter() {
            let (k, v) = item.map_err(io)?;
            if k.len() != ENV_KEY_LEN {
                return Err(StoreError::Corrupt("envelope key of the wrong size".into()));
            }
            let no = u32::from_be_bytes(k[..4].try_into().unwrap_or_default());
            let id = EnvelopeId(k[4..].try_into().unwrap_or_default());
            let Some(&tag) = self.tags_by_number.get(&no) else {
                // sled writes in order, so a record whose tag number is not durable was
                // written after the last flush: never acknowledged.
                cut.push(k);
                continue;
            };
            let held = match classify(v)? {
                Stored::Tomb => 0,
                Stored::At(l) if !self.log.holds(&l) => {
                    cut.push(k);
                    continue;
                }
                Stored::At(_) => Location::LEN,
                Stored::Inline(v) => v.len() - OVERHEAD,
            };
            self.summaries.entry(tag).or_default().add(&id);
            self.bytes += (held + ENV_KEY_LEN) as u64;
        }
        // Numbers of tags with no record left (a crash after the last removal).
        let unused: Vec<Tag> = self
            .numbers
            .keys()
            .filter(|t| !self.summaries.contains_key(t))
            .copied()
            .collect();
        for t in unused {
            self.forget_number(&t)?;
        }
        for item in self.meta.iter() {
            let (k, v) = item.map_err(io)?;
            self.bytes += (k.len() + v.len().saturating_sub(OVERHEAD)) as u64;
        }
        self.bytes += self.journal.stats().1;
        for (k, p) in self.pages.pointers() {
            self.bytes += (k.len() + p.len as usize) as u64;
        }
        if !cut.is_empty() {
            tracing::warn!(
                envelopes = cut.len(),
                "dropped envelopes written after the last flush (never acknowledged)"
            );
            for k in cut {
                self.env.remove(k).map_err(io)?;
            }
            self.flush()?;
        }
        Ok(())
    }

    /// sled's files, the envelope log's segments and the journal file.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.log.bytes() + self.journal.stats().2
    }

    /// What the database holds, by kind of record: every record of every tree is visited
    /// (keys are in the clear, values are counted as stored, sealing included), and the
    /// envelope log: `log segments` (files, bytes), `log frames` (frames, their 44 bytes each
    /// of length, nonce and tag), `log live envelopes` (those a location points at, their
    /// bytes) and `log dead bytes` (payload no location points at: removed envelopes, and
    /// bytes of envelopes dropped after a crash never reach the log). For the storage
    /// benchmark and docs/performance.md ("where the bytes go"); it reads everything, so it
    /// is not for the engine's path.
    pub fn census(&self) -> Result<Vec<CensusRow>, StoreError> {
        let mut rows: BTreeMap<String, CensusRow> = BTreeMap::new();
        let mut count = |kind: String, k: usize, v: usize| {
            let r = rows.entry(kind.clone()).or_insert_with(|| CensusRow {
                kind,
                ..CensusRow::default()
            });
            r.records += 1;
            r.key_bytes += k as u64;
            r.value_bytes += v as u64;
        };
        let (mut live, mut live_bytes) = (0u64, 0u64);
        for item in self.env.iter() {
            let (k, v) = item.map_err(io)?;
            let n = v.len();
            let kind = match classify(v)? {
                Stored::Tomb => "env tombstones",
                Stored::At(l) => {
                    live += 1;
                    live_bytes += u64::from(l.len);
                    "env locations"
                }
                Stored::Inline(_) => "env envelopes inline (previous format)",
            };
            count(kind.into(), k.len(), n);
        }
        for item in self.meta.iter() {
            let (k, v) = item.map_err(io)?;
            count(format!("meta {}", meta_kind(&k)), k.len(), v.len());
        }
        let st = self.log.stats()?;
        let mut row = |kind: &str, records: u64, value_bytes: u64| {
            rows.insert(
                kind.into(),
                CensusRow {
                    kind: kind.into(),
                    records,
                    key_bytes: 0,
                    value_bytes,
                },
            );
        };
        row("log segments", st.segments, st.bytes);
        row(
            "log frames",
            st.frames,
            st.frames * crate::envlog::FRAME_OVERHEAD as u64,
        );
        row("log live envelopes", live, live_bytes);
        row("log dead bytes", 0, st.payload.saturating_sub(live_bytes));
        let (records, record_bytes, file_bytes) = self.journal.stats();
        row("journal records", records, record_bytes);
        row("journal file", 1, file_bytes);
        let (records, value_bytes, file_bytes) = self.pages.stats();
        row("page records", records, value_bytes);
        row("page files", records, file_bytes);
        Ok(rows.into_values().collect())
    }
}

/// One kind of record in [`SledStore::census`]: how many, and their key and value bytes as
/// stored (sealed values include [`OVERHEAD`]); sled's own overhead (page headers, its log,
/// stale versions not yet compacted) is the difference to [`SledStore::size_on_disk`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CensusRow {
    pub kind: String,
    pub records: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// The prefix that names a metadata record's kind (`vaarta_sync::replica::keys`): up to and
/// including the first `/`, or the whole key when it has none (`h`).
fn meta_kind(k: &[u8]) -> String {
    let end = k.iter().position(|b| *b == b'/').map_or(k.len(), |i| i + 1);
    String::from_utf8_lossy(&k[..end.min(8)]).into_owned()
}

/// Owner-only permissions on the database directory and its files (0700 / 0600): the home
/// is 0700 already, this keeps a database copied or moved elsewhere private too.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        };
        set(path, 0o700);
        let mut dirs = vec![path.to_path_buf()];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    set(&p, 0o700);
                    dirs.push(p);
                } else {
                    set(&p, 0o600);
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Opens the store in `dir`. Only if it is *corrupt* ([`StoreError::Corrupt`]) is it moved to
/// `dir.corrupt-<when>` and an empty one started; it is never deleted. Every other failure —
/// locked by another process, disk full (ENOSPC), an I/O error (EIO), a wrong storage key — is
/// returned as it is and the database stays where it is, untouched: what is stored there is
/// not lost, and the node can be started again once the cause is fixed.
pub fn open_or_quarantine(
    dir: &Path,
    key: &Secret,
    now_ms: u64,
) -> Result<(SledStore, Opened), StoreError> {
    match SledStore::open(dir, key) {
        Ok(s) => Ok((s, Opened::Clean)),
        Err(StoreError::Io(msg))
            if msg.contains("lock")
                || msg.contains("WouldBlock")
                || msg.contains("temporarily unavailable") =>
        {
            Err(StoreError::Io(format!(
                "the database is in use by another process ({msg})"
            )))
        }
        Err(e @ StoreError::Corrupt(_)) if dir.exists() => {
            let aside = dir.with_file_name(format!(
                "{}.corrupt-{}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or("db"),
                now_ms
            ));
            std::fs::rename(dir, &aside).map_err(|r| {
                StoreError::Io(format!("cannot move the corrupt database aside: {r}"))
            })?;
            tracing::error!(error = %e, moved_to = %aside.display(), "database corrupt: moved aside, starting empty");
            let s = SledStore::open(dir, key)?;
            Ok((s, Opened::Quarantined(aside)))
        }
        Err(e) => Err(e),
    }
}

impl Store for SledStore {
    fn put_envelope(
        &mut self,
        tag: &Tag,
        id: &EnvelopeId,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        self.void_snapshot()?;
        let no = self.number_for(tag)?;
        let k = short_key(no, id);
        let replaces_tomb = match self.env.get(k).map_err(io)? {
            Some(old) if !old.is_empty() || bytes.is_empty() => return Ok(false),
            Some(_) => true,
            None => false,
        };
        let stored: Vec<u8> = if bytes.is_empty() {
            Vec::new()
        } else {
            self.log.append(bytes).encode().to_vec()
        };
        self.bytes += stored.len() as u64;
        self.env.insert(k, stored).map_err(io)?;
        if !replaces_tomb {
            // The tombstone it replaces was counted already.
            self.bytes += ENV_KEY_LEN as u64;
            self.summaries.entry(*tag).or_default().add(id);
        }
        Ok(true)
    }

    fn envelope(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(k) = self.key(tag, id) else {
            return Ok(None);
        };
        let Some(v) = self.env.get(k).map_err(io)? else {
            return Ok(None);
        };
        let bytes = match classify(v)? {
            Stored::Tomb => return Ok(Some(Vec::new())),
            Stored::At(l) => self.log.read(&l)?,
            Stored::Inline(v) => self
                .sealer
                .open(SPACE_ENV, &env_key(tag, id), &v)
                .ok_or_else(|| corrupt_value("envelope"))?,
        };
        verified(id, bytes).map(Some)
    }

    fn envelope_len(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<usize>, StoreError> {
        let Some(k) = self.key(tag, id) else {
            return Ok(None);
        };
        let Some(v) = self.env.get(k).map_err(io)? else {
            return Ok(None);
        };
        Ok(Some(match classify(v)? {
            Stored::Tomb => 0,
            Stored::At(l) => l.len as usize,
            Stored::Inline(v) => v.len() - OVERHEAD,
        }))
    }

    fn contains(&self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        match self.key(tag, id) {
            None => Ok(false),
            Some(k) => self.env.contains_key(k).map_err(io),
        }
    }

    fn remove_envelope(&mut self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        self.void_snapshot()?;
        let Some(k) = self.key(tag, id) else {
            return Ok(false);
        };
        let Some(old) = self.env.remove(k).map_err(io)? else {
            return Ok(false);
        };
        // A location's bytes stay in the log (dead until compaction, crate::envlog).
        let held = match classify(old) {
            Ok(Stored::Inline(v)) => v.len() - OVERHEAD,
            Ok(Stored::At(_)) => Location::LEN,
            _ => 0,
        };
        self.bytes = self.bytes.saturating_sub((held + ENV_KEY_LEN) as u64);
        if let Some(s) = self.summaries.get_mut(tag) {
            s.sub(id);
            if s.count == 0 {
                self.summaries.remove(tag);
                self.forget_number(tag)?;
            }
        }
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
        let Some(&no) = self.numbers.get(tag) else {
            return Ok(());
        };
        let start = short_key(no, &EnvelopeId(*from));
        let end = short_key(no, &EnvelopeId([0xff; 32]));
        for item in self.env.range(start..=end) {
            let (k, _) = item.map_err(io)?;
            let id = EnvelopeId(k[4..].try_into().unwrap_or_default());
            if !f(&id) {
                break;
            }
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if Self::is_journal(key) {
            return Ok(self.journal.get(key));
        }
        if PageFiles::is_page(key) {
            return self.pages.get(key);
        }
        match self.meta.get(key).map_err(io)? {
            None => Ok(None),
            Some(v) => self.open_meta(key, &v).map(Some),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.void_snapshot()?;
        if Self::is_journal(key) {
            if let Some(old) = self.journal.put(key, value)? {
                self.bytes = self.bytes.saturating_sub((key.len() + old) as u64);
            }
            self.bytes += (key.len() + value.len()) as u64;
            return Ok(());
        }
        if PageFiles::is_page(key) {
            if let Some(old) = self.pages.put(key, value)? {
                self.bytes = self.bytes.saturating_sub((key.len() + old) as u64);
            }
            self.bytes += (key.len() + value.len()) as u64;
            return Ok(());
        }
        let sealed = self.sealer.seal(SPACE_META, key, value);
        if let Some(old) = self.meta.insert(key, sealed).map_err(io)? {
            self.bytes = self
                .bytes
                .saturating_sub((key.len() + old.len().saturating_sub(OVERHEAD)) as u64);
        }
        self.bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.void_snapshot()?;
        if Self::is_journal(key) {
            if let Some(old) = self.journal.delete(key) {
                self.bytes = self.bytes.saturating_sub((key.len() + old) as u64);
            }
            return Ok(());
        }
        if PageFiles::is_page(key) {
            if let Some(old) = self.pages.delete(key) {
                self.bytes = self.bytes.saturating_sub((key.len() + old) as u64);
            }
            return Ok(());
        }
        if let Some(old) = self.meta.remove(key).map_err(io)? {
            self.bytes = self
                .bytes
                .saturating_sub((key.len() + old.len().saturating_sub(OVERHEAD)) as u64);
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if Self::is_journal(prefix) {
            self.journal.scan(prefix, f);
            return Ok(());
        }
        if PageFiles::is_page(prefix) {
            for k in self.pages.keys(prefix) {
                let v = self.pages.get(&k)?.unwrap_or_default();
                if !f(&k, &v) {
                    break;
                }
            }
            return Ok(());
        }
        if Self::spans_side_files(prefix) {
            // A prefix shorter than the journal's or the pages' (none in the sync core
            // today): all three, in key order.
            let mut all = BTreeMap::new();
            for item in self.meta.scan_prefix(prefix) {
                let (k, v) = item.map_err(io)?;
                let v = self.open_meta(&k, &v)?;
                all.insert(k.to_vec(), v);
            }
            self.journal.scan(prefix, &mut |k, v| {
                all.insert(k.to_vec(), v.to_vec());
                true
            });
            for k in self.pages.keys(prefix) {
                let v = self.pages.get(&k)?.unwrap_or_default();
                all.insert(k, v);
            }
            for (k, v) in &all {
                if !f(k, v) {
                    break;
                }
            }
            return Ok(());
        }
        for item in self.meta.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            let v = self.open_meta(&k, &v)?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Keys only: no value is opened (a value that does not open is found when it is read).
    fn scan_keys(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), StoreError> {
        if Self::is_journal(prefix) || Self::spans_side_files(prefix) {
            return self.scan_prefix(prefix, &mut |k, _| f(k));
        }
        if PageFiles::is_page(prefix) {
            for k in self.pages.keys(prefix) {
                if !f(&k) {
                    break;
                }
            }
            return Ok(());
        }
        for item in self.meta.scan_prefix(prefix).keys() {
            if !f(&item.map_err(io)?) {
                break;
            }
        }
        Ok(())
    }

    /// The log's new frames and the journal's new operations first (written and
    /// `fdatasync`ed), then their ends in `rest` and sled's flush: once this returns, every
    /// envelope put so far is on disk and indexed, and the journal agrees with the saved pages.
    fn flush(&mut self) -> Result<(), StoreError> {
        let (mut log_syncs, mut journal_syncs) = (Syncs::default(), Syncs::default());
        let end = if self.log.has_pending() {
            Some(self.log.write_pending_unsynced(&mut log_syncs)?)
        } else {
            None
        };
        let mark = self.journal.write_pending_unsynced(&mut journal_syncs)?;
        let pages = if self.pages.has_pending() {
            Some(self.pages.write_pending_unsynced(&mut log_syncs)?)
        } else {
            None
        };
        // All on the disk before sled records their ends and pointers. The ends go first:
        // sled recovers a prefix of its writes, so a page pointer that survives a crash
        // comes with the log end and journal mark of its flush (a page never holds changes
        // whose envelopes the next open cuts, nor misses records the journal dropped).
        Syncs::run_both(log_syncs, journal_syncs)?;
        if let Some(end) = end {
            self.rest.insert(LOG_END_KEY, &end.encode()).map_err(io)?;
        }
        if let Some(m) = mark {
            self.journal.synced(m);
            self.rest
                .insert(JOURNAL_MARK_KEY, &m.encode())
                .map_err(io)?;
        }
        for (k, p) in pages.iter().flatten() {
            match p {
                Some(p) => self.page_pointers.insert(k, &p.encode()).map(|_| ()),
                None => self.page_pointers.remove(k).map(|_| ()),
            }
            .map_err(io)?;
        }
        self.db.flush().map_err(io)?;
        if let Some(end) = end {
            self.log.committed(end);
        }
        if let Some(updates) = pages {
            self.pages.committed(updates);
        }
        self.flushes += 1;
        if self.journal.wants_compaction() {
            let (file, m) = self.journal.compact()?;
            self.rest
                .insert(JOURNAL_MARK_KEY, &m.encode())
                .map_err(io)?;
            self.db.flush().map_err(io)?;
            self.journal.switch(file, m);
        }
        Ok(())
    }

    /// Flushes, then leaves a snapshot of the per-tag summaries and the byte count for the
    /// next open, which then reads it instead of every `env` record (cold start independent
    /// of history, issue 11). Any write after this takes it out again.
    fn close(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let snap = self.encode_snapshot()?;
        self.rest
            .insert(
                SNAPSHOT_KEY,
                self.sealer.seal(SPACE_SNAPSHOT, SNAPSHOT_KEY, &snap),
            )
            .map_err(io)?;
        self.db.flush().map_err(io)?;
        self.snapshot_out = true;
        Ok(())
    }

    /// sled's records (keys and values, unsealed sizes; a location is 14 bytes) and every
    /// byte of the envelope log, removed envelopes included until compaction frees them.
    fn bytes_used(&self) -> u64 {
        self.bytes + self.log.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new([0x5a; 32])
    }

    /// An envelope id as the sync core makes it: the BLAKE3 hash of the bytes.
    fn real(bytes: &[u8]) -> (EnvelopeId, Vec<u8>) {
        (EnvelopeId(*blake3::hash(bytes).as_bytes()), bytes.to_vec())
    }

    /// `n` distinct envelopes of `len` bytes each.
    fn many(n: usize, len: usize) -> Vec<(EnvelopeId, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let mut b = vec![(i % 251) as u8; len];
                b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                real(&b)
            })
            .collect()
    }

    fn flip(file: &Path, at: usize) {
        let mut b = std::fs::read(file).unwrap();
        b[at] ^= 0x40;
        std::fs::write(file, b).unwrap();
    }

    fn seg_len(dir: &Path, seg: u32) -> u64 {
        std::fs::metadata(dir.join(LOG_DIR).join(format!("{seg:08}.seg")))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Waits until no sled handle of this process holds the database in `dir`. sled 0.34
    /// takes a non-blocking `flock` on `dir/db` at open and lets go of it only when its
    /// background threads drop their last reference, some time after the `Db` is dropped
    /// (spacejam/sled#1234, #1289): opening it again at once fails now and then with
    /// `WouldBlock`. Taking the same lock, blocking, returns once sled has let go.
    fn released(dir: &Path) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .unwrap();
        f.lock().unwrap();
    }

    #[test]
    fn the_census_counts_every_record_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(&dir.path().join("db"), &key()).unwrap();
        let tag = Tag([1; 16]);
        let (two, three) = (real(b"two"), real(b"three"));
        s.put_envelope(&tag, &two.0, &two.1).unwrap();
        s.put_envelope(&tag, &three.0, &three.1).unwrap();
        s.put_envelope(&tag, &EnvelopeId([4; 32]), b"").unwrap();
        s.put(b"j/abc", b"v").unwrap();
        s.put(b"j/abd", b"vv").unwrap();
        s.put(b"h", b"12345678").unwrap();
        s.put(b"l/\0\0\0\0\0\0\0\x01", b"0123").unwrap();
        s.put(b"p/page", b"saved page").unwrap();
        s.flush().unwrap();
        s.remove_envelope(&tag, &two.0).unwrap();
        let rows = s.census().unwrap();
        let row = |k: &str| rows.iter().find(|r| r.kind == k).cloned().unwrap();
        let env = row("env locations");
        assert_eq!((env.records, env.key_bytes), (1, ENV_KEY_LEN as u64));
        assert_eq!(env.value_bytes, Location::LEN as u64);
        assert_eq!(row("env tombstones").value_bytes, 0);
        let j = row("meta j/");
        assert_eq!((j.records, j.key_bytes), (2, 10));
        assert_eq!(j.value_bytes, (3 + 2 * OVERHEAD) as u64);
        assert_eq!(row("meta h").records, 1);
        // One flush, one frame of "two" ‖ "three"; "two" removed: its 3 bytes are dead.
        let frames = row("log frames");
        assert_eq!((frames.records, frames.value_bytes), (1, 44));
        let segs = row("log segments");
        assert_eq!((segs.records, segs.value_bytes), (1, 44 + 8));
        let live = row("log live envelopes");
        assert_eq!((live.records, live.value_bytes), (1, 5));
        assert_eq!(row("log dead bytes").value_bytes, 3);
        // The journal's record is in its file, not in sled's meta.
        assert!(!rows.iter().any(|r| r.kind == "meta l/"), "{rows:?}");
        let jr = row("journal records");
        assert_eq!((jr.records, jr.value_bytes), (1, 14));
        assert!(row("journal file").value_bytes > 14 + 44);
        // The saved page is a file, not in sled's meta.
        assert!(!rows.iter().any(|r| r.kind == "meta p/"), "{rows:?}");
        let pr = row("page records");
        assert_eq!((pr.records, pr.value_bytes), (1, 10));
        assert_eq!(row("page files").value_bytes, (10 + OVERHEAD) as u64);
        assert_eq!(rows.len(), 12, "{rows:?}");
    }

    #[test]
    fn persists_across_reopen_and_drops_the_old_index_tree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let two = real(b"two");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put_envelope(&tag, &two.0, &two.1).unwrap();
            s.put_envelope(&tag, &EnvelopeId([3; 32]), b"").unwrap();
            s.put(b"k", b"v").unwrap();
            // The id → tag tree an earlier version kept, with a stale entry as a torn write
            // left it (its envelope never landed).
            let idx = s.db.open_tree(OLD_INDEX_TREE).unwrap();
            idx.insert(two.0.0, &tag.0).unwrap();
            idx.insert([9u8; 32], &tag.0).unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert!(
            !s.db.tree_names().iter().any(|n| n == OLD_INDEX_TREE),
            "idx dropped at open"
        );
        assert_eq!(s.envelope(&tag, &two.0).unwrap().unwrap(), b"two");
        assert_eq!(
            s.envelope(&tag, &EnvelopeId([3; 32])).unwrap().unwrap(),
            b""
        );
        assert!(!s.contains(&tag, &EnvelopeId([9; 32])).unwrap());
        assert_eq!(s.summary(&tag).count, 2);
        assert_eq!(s.get(b"k").unwrap().unwrap(), b"v");
        drop(s);
        // And a store without one opens as well (the next open finds none).
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.summary(&tag).count, 2);
    }

    /// Lookups name the tag: an envelope stored under A is not found under B, and the same
    /// id under B is another record (the sync core stores an envelope under the tag its
    /// header names, so this does not happen through it).
    #[test]
    fn an_envelope_under_one_tag_is_not_found_under_another() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let (a, b) = (Tag([1; 16]), Tag([2; 16]));
        let (id, bytes) = real(&[7; 300]);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert!(s.put_envelope(&a, &id, &bytes).unwrap());
            assert!(s.contains(&a, &id).unwrap());
            assert!(!s.contains(&b, &id).unwrap());
            assert_eq!(s.envelope(&b, &id).unwrap(), None);
            assert_eq!(s.envelope_len(&b, &id).unwrap(), None);
            assert!(!s.remove_envelope(&b, &id).unwrap());
            assert_eq!(s.summary(&b).count, 0);
            // A tombstone under B is B's alone.
            assert!(s.put_envelope(&b, &id, b"").unwrap());
            assert_eq!(s.envelope(&b, &id).unwrap().unwrap(), b"");
            assert_eq!(s.envelope(&a, &id).unwrap().unwrap(), bytes);
            s.flush().unwrap();
        }
        released(&p);
        let mut s = SledStore::open(&p, &key()).unwrap();
        assert_eq!((s.summary(&a).count, s.summary(&b).count), (1, 1));
        assert!(s.remove_envelope(&b, &id).unwrap());
        assert_eq!(s.envelope(&a, &id).unwrap().unwrap(), bytes);
        assert_eq!(s.tags().len(), 1);
    }

    #[test]
    fn corrupt_database_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(b"k", b"v").unwrap();
            s.flush().unwrap();
        }
        released(&p);
        // Scribble over every file sled wrote.
        for e in std::fs::read_dir(&p).unwrap() {
            let f = e.unwrap().path();
            if f.is_file() {
                std::fs::write(&f, vec![0xa5u8; 4096]).unwrap();
            }
        }
        let (s, opened) = open_or_quarantine(&p, &key(), 42).unwrap();
        let Opened::Quarantined(aside) = opened else {
            panic!("expected quarantine")
        };
        assert!(aside.exists(), "old data kept");
        assert!(s.get(b"k").unwrap().is_none());
    }

    #[test]
    fn only_corruption_is_quarantined() {
        // ENOSPC and EIO are errors of the operation, not of the data.
        let os = |n| sled::Error::Io(std::io::Error::from_raw_os_error(n));
        assert_eq!(io(os(28)), StoreError::Full);
        assert!(matches!(io(os(5)), StoreError::Io(_)));
        assert!(matches!(io(os(13)), StoreError::Io(_)));
        assert!(matches!(
            io(sled::Error::Corruption { at: None, bt: () }),
            StoreError::Corrupt(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        // An I/O error at open (here ENOTDIR: the path is a file): reported, left in place.
        let p = dir.path().join("db");
        std::fs::write(&p, b"precious").unwrap();
        let e = open_or_quarantine(&p, &key(), 42).unwrap_err();
        assert!(matches!(e, StoreError::Io(_)), "{e:?}");
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing moved"
        );
        // The wrong storage key: reported, left in place, and still readable with the right one.
        let p = dir.path().join("db2");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(b"k", b"v").unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let e = open_or_quarantine(&p, &Secret::new([1; 32]), 43).unwrap_err();
        assert!(
            matches!(&e, StoreError::Io(m) if m.contains("storage key")),
            "{e:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "nothing moved"
        );
        released(&p);
        let (s, opened) = open_or_quarantine(&p, &key(), 44).unwrap();
        assert_eq!(opened, Opened::Clean);
        assert_eq!(s.get(b"k").unwrap().unwrap(), b"v");
    }

    #[test]
    fn values_are_sealed_and_a_tampered_value_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let mut s = SledStore::open(&p, &key()).unwrap();
        let e = real(b"envelope-bytes");
        s.put_envelope(&tag, &e.0, &e.1).unwrap();
        s.put(b"c/conv", b"plaintext-page").unwrap();
        s.flush().unwrap();
        let raw = s.meta.get(b"c/conv").unwrap().unwrap();
        assert!(!raw.windows(9).any(|w| w == b"plaintext"));
        let seg = std::fs::read(s.log.segment_path(0)).unwrap();
        assert_eq!(seg.len(), 14 + 44);
        assert!(!seg.windows(8).any(|w| w == b"envelope"));
        // The location (14) and key (48), the frame (14 + 44), the metadata record.
        assert_eq!(s.bytes_used(), 14 + 36 + 14 + 44 + 6 + 14);
        // A value moved under another key does not open.
        s.meta
            .insert(b"c/other", s.meta.get(b"c/conv").unwrap().unwrap())
            .unwrap();
        assert!(matches!(s.get(b"c/other"), Err(StoreError::Corrupt(_))));
    }

    /// A key scan lists what a full scan lists, journal keys included, and opens no value:
    /// a value that does not open stops the full scan but not the key scan.
    #[test]
    fn key_scans_list_every_key_and_open_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(&dir.path().join("db"), &key()).unwrap();
        for k in [&b"k/1"[..], b"k/2", b"k/3", b"q/1"] {
            s.put(k, b"value").unwrap();
        }
        let journal = [JOURNAL_PREFIX, b"a"].concat();
        s.put(&journal, b"journal record").unwrap();
        s.flush().unwrap();
        let keys = |s: &SledStore, prefix: &[u8]| {
            let mut v = Vec::new();
            s.scan_keys(prefix, &mut |k| {
                v.push(k.to_vec());
                true
            })
            .map(|()| v)
        };
        let full = |s: &SledStore, prefix: &[u8]| {
            let mut v = Vec::new();
            s.scan_prefix(prefix, &mut |k, _| {
                v.push(k.to_vec());
                true
            })
            .map(|()| v)
        };
        for prefix in [&b"k/"[..], b"", JOURNAL_PREFIX] {
            assert_eq!(keys(&s, prefix).unwrap(), full(&s, prefix).unwrap());
        }
        assert_eq!(keys(&s, b"k/").unwrap().len(), 3);
        assert_eq!(keys(&s, JOURNAL_PREFIX).unwrap(), vec![journal]);
        // Stops when told to.
        let mut first = Vec::new();
        s.scan_keys(b"k/", &mut |k| {
            first.push(k.to_vec());
            false
        })
        .unwrap();
        assert_eq!(first, vec![b"k/1".to_vec()]);
        // A value sealed to another key: the full scan finds it corrupt, the key scan lists it.
        s.meta
            .insert(b"k/2", s.meta.get(b"k/1").unwrap().unwrap())
            .unwrap();
        assert!(matches!(full(&s, b"k/"), Err(StoreError::Corrupt(_))));
        assert_eq!(keys(&s, b"k/").unwrap().len(), 3);
    }

    /// The relay count at open reads lengths, not sealed bytes: no decryption per carried
    /// envelope, and one rotten value does not stop the node from starting.
    #[test]
    fn envelope_lengths_need_no_opening() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let ((a, ab), (b, bb), t) = (real(&[7; 300]), real(&[8; 20]), EnvelopeId([4; 32]));
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put_envelope(&tag, &a, &ab).unwrap();
            s.flush().unwrap();
            s.put_envelope(&tag, &b, &bb).unwrap();
            s.put_envelope(&tag, &t, b"").unwrap();
            s.flush().unwrap();
        }
        released(&p);
        // Rot the second frame (b's).
        flip(&p.join(LOG_DIR).join("00000000.seg"), 44 + 300 + 4 + 24 + 5);
        let s = SledStore::open(&p, &key()).unwrap();
        assert!(matches!(s.envelope(&tag, &b), Err(StoreError::Corrupt(_))));
        assert_eq!(s.envelope(&tag, &a).unwrap().unwrap(), ab);
        assert_eq!(s.envelope_len(&tag, &a).unwrap(), Some(300));
        assert_eq!(s.envelope_len(&tag, &b).unwrap(), Some(20));
        assert_eq!(s.envelope_len(&tag, &t).unwrap(), Some(0));
        assert_eq!(s.envelope_len(&tag, &EnvelopeId([5; 32])).unwrap(), None);
    }

    #[test]
    fn envelopes_round_trip_through_the_log_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tags = [Tag([1; 16]), Tag([2; 16]), Tag([3; 16])];
        // Sizes around a frame's limit, and one envelope far above it (its own frame).
        let mut all = Vec::new();
        for (i, len) in [181usize, 246, 4096, 4097, 100, 70_000, 3, 223]
            .iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            let mut b = vec![i as u8; *len];
            b[0] = (i >> 8) as u8;
            all.push((tags[i % 3], real(&b)));
        }
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            for (n, (tag, (id, b))) in all.iter().enumerate() {
                assert!(s.put_envelope(tag, id, b).unwrap());
                // Served from memory before the flush.
                assert_eq!(s.envelope(tag, id).unwrap().as_deref(), Some(&b[..]));
                if n % 7 == 6 {
                    s.flush().unwrap();
                }
            }
            assert!(!s.put_envelope(&all[0].0, &all[0].1.0, &all[0].1.1).unwrap());
            s.flush().unwrap();
            for (tag, (id, b)) in &all {
                assert_eq!(s.envelope(tag, id).unwrap().as_deref(), Some(&b[..]));
                assert_eq!(s.envelope_len(tag, id).unwrap(), Some(b.len()));
            }
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        for (tag, (id, b)) in &all {
            assert_eq!(s.envelope(tag, id).unwrap().as_deref(), Some(&b[..]));
            // Under its own tag only.
            for other in tags.iter().filter(|t| *t != tag) {
                assert!(!s.contains(other, id).unwrap());
                assert_eq!(s.envelope(other, id).unwrap(), None);
            }
        }
        let mut want = BTreeMap::<Tag, Summary>::new();
        for (tag, (id, _)) in &all {
            want.entry(*tag).or_default().add(id);
        }
        assert_eq!(s.tags(), want.into_iter().collect::<Vec<_>>());
        // Frames hold at most 4 KiB of envelopes, unless one envelope is larger.
        let census = s.census().unwrap();
        let frames = census.iter().find(|r| r.kind == "log frames").unwrap();
        assert!(frames.records > 200 / 7, "{census:?}");
    }

    #[test]
    fn a_crash_before_the_frame_is_written_loses_only_unflushed_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let es = many(40, 220);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            for (id, b) in &es[..30] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            s.flush().unwrap();
            for (id, b) in &es[30..] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            // The crash: the pending frames never reach the file, but sled (in the
            // background, or on drop) has written their locations.
            s.log.forget_pending();
            s.db.flush().unwrap();
        }
        released(&p);
        let mut s = SledStore::open(&p, &key()).unwrap();
        for (id, b) in &es[..30] {
            assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
        }
        for (id, _) in &es[30..] {
            assert!(!s.contains(&tag, id).unwrap());
            assert_eq!(s.envelope(&tag, id).unwrap(), None);
        }
        assert_eq!(s.summary(&tag).count, 30);
        let mut seen = 0;
        s.for_each_id(&tag, &[0; 32], &mut |_| {
            seen += 1;
            true
        })
        .unwrap();
        assert_eq!(seen, 30);
        // They can be put again (a peer sends them again) and are kept this time.
        for (id, b) in &es[30..] {
            assert!(s.put_envelope(&tag, id, b).unwrap());
        }
        s.flush().unwrap();
        for (id, b) in &es {
            assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
        }
    }

    #[test]
    fn a_torn_last_frame_is_cut_at_open_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let es = many(12, 300);
        let durable;
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            for (id, b) in &es[..4] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            s.flush().unwrap();
            durable = seg_len(&p, 0);
            for (id, b) in &es[4..8] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            // The frames are written, then the power goes: half of them reached the disk,
            // sled's flush (the mark, and the acknowledgement after it) never happened.
            s.log.write_pending().unwrap();
            let full = seg_len(&p, 0);
            assert!(full > durable);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(s.log.segment_path(0))
                .unwrap();
            f.set_len(durable + (full - durable) / 2).unwrap();
            s.log.forget_pending();
            s.env.flush().unwrap();
        }
        released(&p);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert_eq!(seg_len(&p, 0), durable, "the torn tail is cut");
            for (id, b) in &es[..4] {
                assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
            }
            for (id, _) in &es[4..8] {
                assert!(!s.contains(&tag, id).unwrap());
            }
            for (id, b) in &es[8..] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            s.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        for (id, b) in es[..4].iter().chain(&es[8..]) {
            assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
        }
        assert_eq!(s.summary(&tag).count, 8);
    }

    /// Acknowledged frames that do not open are corruption, reported on read, never cut:
    /// in the middle of the log and at its end alike.
    #[test]
    fn a_flipped_byte_in_an_acknowledged_frame_is_corruption_not_loss() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let es = many(3, 200);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            for (id, b) in &es {
                s.put_envelope(&tag, id, b).unwrap();
                s.flush().unwrap();
            }
        }
        released(&p);
        let frame = 44 + 200;
        let seg = p.join(LOG_DIR).join("00000000.seg");
        let before = seg_len(&p, 0);
        flip(&seg, frame + 100); // the middle frame
        flip(&seg, 2 * frame + 100); // the last one
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(seg_len(&p, 0), before, "nothing cut");
        assert_eq!(
            s.envelope(&tag, &es[0].0).unwrap().as_deref(),
            Some(&es[0].1[..])
        );
        for (id, _) in &es[1..] {
            assert!(
                matches!(s.envelope(&tag, id), Err(StoreError::Corrupt(_))),
                "{:?}",
                s.envelope(&tag, id)
            );
            assert!(s.contains(&tag, id).unwrap(), "still indexed, not dropped");
        }
        assert_eq!(s.summary(&tag).count, 3);
        drop(s);
        // A frame's length prefix rotten: out of bounds, corruption too (no allocation).
        released(&p);
        let mut b = std::fs::read(&seg).unwrap();
        b[frame..frame + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&seg, b).unwrap();
        let s = SledStore::open(&p, &key()).unwrap();
        assert!(matches!(
            s.envelope(&tag, &es[1].0),
            Err(StoreError::Corrupt(_))
        ));
        drop(s);
        // A segment shorter than the log's recorded end is corruption at open (moved aside).
        released(&p);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(frame as u64).unwrap();
        drop(f);
        assert!(matches!(
            SledStore::open(&p, &key()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_location_pointing_at_other_bytes_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(&dir.path().join("db"), &key()).unwrap();
        let tag = Tag([1; 16]);
        let es = many(2, 200);
        for (id, b) in &es {
            s.put_envelope(&tag, id, b).unwrap();
        }
        s.flush().unwrap();
        let other = s.env.get(s.key(&tag, &es[1].0).unwrap()).unwrap().unwrap();
        s.env.insert(s.key(&tag, &es[0].0).unwrap(), other).unwrap();
        assert!(matches!(
            s.envelope(&tag, &es[0].0),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            s.envelope(&tag, &es[1].0).unwrap().as_deref(),
            Some(&es[1].1[..])
        );
        // A location past its frame's payload, or past the log's end: corruption too.
        let mut l =
            Location::decode(&s.env.get(s.key(&tag, &es[1].0).unwrap()).unwrap().unwrap()).unwrap();
        l.len += 1_000;
        s.env
            .insert(s.key(&tag, &es[0].0).unwrap(), &l.encode())
            .unwrap();
        assert!(matches!(
            s.envelope(&tag, &es[0].0),
            Err(StoreError::Corrupt(_))
        ));
        l.frame.seg += 5;
        s.env
            .insert(s.key(&tag, &es[0].0).unwrap(), &l.encode())
            .unwrap();
        assert!(matches!(
            s.envelope(&tag, &es[0].0),
            Err(StoreError::Corrupt(_))
        ));
        // A value of no known shape.
        s.env
            .insert(s.key(&tag, &es[0].0).unwrap(), &[1u8; 20])
            .unwrap();
        assert!(matches!(
            s.envelope(&tag, &es[0].0),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn an_envelope_replaces_its_tombstone_and_a_removed_one_can_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let (a, ab) = real(&[5; 250]);
        let (b, bb) = real(&[6; 250]);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert!(s.put_envelope(&tag, &a, b"").unwrap());
            assert!(!s.put_envelope(&tag, &a, b"").unwrap());
            assert_eq!(s.envelope(&tag, &a).unwrap().unwrap(), b"");
            assert!(s.put_envelope(&tag, &a, &ab).unwrap());
            assert!(!s.put_envelope(&tag, &a, b"").unwrap(), "never the reverse");
            assert_eq!(s.summary(&tag).count, 1);
            s.put_envelope(&tag, &b, &bb).unwrap();
            s.flush().unwrap();
            assert!(s.remove_envelope(&tag, &b).unwrap());
            assert_eq!(s.envelope(&tag, &b).unwrap(), None);
            assert_eq!(s.envelope_len(&tag, &b).unwrap(), None);
            s.flush().unwrap();
        }
        released(&p);
        let mut s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.envelope(&tag, &a).unwrap().unwrap(), ab);
        assert!(!s.contains(&tag, &b).unwrap());
        assert!(s.put_envelope(&tag, &b, &bb).unwrap());
        s.flush().unwrap();
        assert_eq!(s.envelope(&tag, &b).unwrap().unwrap(), bb);
        assert_eq!(s.summary(&tag).count, 2);
        let census = s.census().unwrap();
        let dead = census.iter().find(|r| r.kind == "log dead bytes").unwrap();
        assert_eq!(
            dead.value_bytes, 250,
            "the first copy of b stays in its segment"
        );
    }

    #[test]
    fn the_log_rolls_over_to_a_new_segment_past_4_mib() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        // 1,200 envelopes of 4,000 bytes: one per frame, 4.8 MB in all.
        let es = many(1_200, 4_000);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            for (n, (id, b)) in es.iter().enumerate() {
                s.put_envelope(&tag, id, b).unwrap();
                if n % 50 == 49 {
                    s.flush().unwrap();
                }
            }
            s.flush().unwrap();
        }
        let (a, b) = (seg_len(&p, 0), seg_len(&p, 1));
        assert!(a <= crate::envlog::SEGMENT_MAX && a > crate::envlog::SEGMENT_MAX - 4_044);
        assert_eq!(a + b, 1_200 * 4_044);
        assert_eq!(seg_len(&p, 2), 0);
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        for (id, b) in &es {
            assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
        }
        assert_eq!(s.log.bytes(), a + b);
        assert!(s.size_on_disk() > a + b);
    }

    /// A store written by the previous version (envelopes sealed inline in `env`, written
    /// here the way it wrote them) opens with every envelope, and new ones go to the log.
    fn jkey(seq: u64) -> Vec<u8> {
        [JOURNAL_PREFIX, &seq.to_be_bytes()].concat()
    }

    fn journal_of(s: &SledStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v = Vec::new();
        s.scan_prefix(JOURNAL_PREFIX, &mut |k, val| {
            v.push((k.to_vec(), val.to_vec()));
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn the_journal_lives_in_its_file_and_a_store_of_the_previous_version_moves_it_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            // The previous version: journal records sealed in `meta`, no journal mark.
            let s = SledStore::open(&p, &key()).unwrap();
            for i in 0..5u64 {
                let k = jkey(i);
                s.meta
                    .insert(&k, s.sealer.seal(SPACE_META, &k, &[i as u8; 52]))
                    .unwrap();
            }
            s.rest.remove(JOURNAL_MARK_KEY).unwrap();
            s.db.flush().unwrap();
        }
        released(&p);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert_eq!(s.meta.scan_prefix(JOURNAL_PREFIX).count(), 0);
            assert_eq!(journal_of(&s).len(), 5);
            assert_eq!(s.get(&jkey(3)).unwrap(), Some(vec![3; 52]));
            s.delete(&jkey(0)).unwrap();
            s.put(&jkey(9), b"nine").unwrap();
            // Other keys under a shorter prefix are still sled's, and both are scanned.
            s.put(b"lx", b"sled").unwrap();
            let mut under_l = Vec::new();
            s.scan_prefix(b"l", &mut |k, _| {
                under_l.push(k.to_vec());
                true
            })
            .unwrap();
            assert_eq!(under_l.len(), 6);
            assert!(under_l.windows(2).all(|w| w[0] < w[1]));
            s.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        let keys: Vec<_> = journal_of(&s).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![jkey(1), jkey(2), jkey(3), jkey(4), jkey(9)]);
        assert_eq!(s.get(b"lx").unwrap().as_deref(), Some(&b"sled"[..]));
    }

    #[test]
    fn a_journal_delete_is_durable_only_with_the_flush_that_saves_its_page() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(&jkey(1), b"entry").unwrap();
            s.put(b"p/page", b"old save").unwrap();
            s.flush().unwrap();
            // The page is saved and its record deleted; the journal's new frame is written
            // and synced, then the process dies before sled's flush records the new mark.
            s.put(b"p/page", b"new save").unwrap();
            s.delete(&jkey(1)).unwrap();
            s.journal.write_pending().unwrap().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        let page = s.get(b"p/page").unwrap();
        let record = s.get(&jkey(1)).unwrap();
        // What must never happen: the record gone and the page's new save lost with it.
        assert!(
            !(page.as_deref() == Some(&b"old save"[..]) && record.is_none()),
            "the page's save was lost together with its journal record"
        );
        // The journal's new mark never reached sled (sled may have written the page in the
        // background or on drop), so the record is back: replaying it into a page that
        // holds its changes changes nothing.
        assert_eq!(record.as_deref(), Some(&b"entry"[..]));
    }

    fn page_files(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p.join(crate::pages::PAGES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Saved pages are files, one per page, not sled values: a new save replaces the file
    /// once durable, a delete removes it, and all of it survives reopen.
    #[test]
    fn saved_pages_live_in_files_one_per_page_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(b"p/one", b"first save of one").unwrap();
            s.put(b"p/two", b"first save of two").unwrap();
            s.put(b"q/other", b"not a page").unwrap();
            // Read before the flush.
            assert_eq!(
                s.get(b"p/one").unwrap().as_deref(),
                Some(&b"first save of one"[..])
            );
            assert!(page_files(&p).is_empty());
            s.flush().unwrap();
            assert_eq!(page_files(&p).len(), 2);
            assert!(
                s.meta.get(b"p/one").unwrap().is_none(),
                "a page went to sled"
            );
            // The file is sealed.
            for f in page_files(&p) {
                let b = std::fs::read(p.join(crate::pages::PAGES_DIR).join(f)).unwrap();
                assert!(!b.windows(4).any(|w| w == b"save"));
            }
            s.put(b"p/one", b"second save of one").unwrap();
            s.delete(b"p/two").unwrap();
            assert_eq!(s.get(b"p/two").unwrap(), None);
            s.flush().unwrap();
            assert_eq!(page_files(&p).len(), 1, "{:?}", page_files(&p));
            let mut listed = Vec::new();
            s.scan_prefix(b"p/", &mut |k, v| {
                listed.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
            assert_eq!(
                listed,
                vec![(b"p/one".to_vec(), b"second save of one".to_vec())]
            );
            // A scan wider than the pages' prefix sees the pages and sled's records.
            let mut keys = Vec::new();
            s.scan_keys(b"", &mut |k| {
                keys.push(k.to_vec());
                true
            })
            .unwrap();
            assert!(keys.contains(&b"p/one".to_vec()) && keys.contains(&b"q/other".to_vec()));
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(
            s.get(b"p/one").unwrap().as_deref(),
            Some(&b"second save of one"[..])
        );
        assert_eq!(s.get(b"p/two").unwrap(), None);
        assert_eq!(
            s.get(b"q/other").unwrap().as_deref(),
            Some(&b"not a page"[..])
        );
    }

    /// A flush cut short after writing a page's file and before sled's flush: the page keeps
    /// its previous save, the journal keeps its record, and the stray file is deleted at open.
    #[test]
    fn a_page_file_written_by_a_flush_that_did_not_complete_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(&jkey(1), b"entry").unwrap();
            s.put(b"p/page", b"old save").unwrap();
            s.flush().unwrap();
            s.put(b"p/page", b"new save").unwrap();
            s.delete(&jkey(1)).unwrap();
            let mut syncs = crate::envlog::Syncs::default();
            s.pages.write_pending_unsynced(&mut syncs).unwrap();
            s.journal.write_pending().unwrap().unwrap();
            syncs.run().unwrap();
            assert_eq!(page_files(&p).len(), 2);
            s.pages.crash();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.get(b"p/page").unwrap().as_deref(), Some(&b"old save"[..]));
        assert_eq!(s.get(&jkey(1)).unwrap().as_deref(), Some(&b"entry"[..]));
        assert_eq!(page_files(&p).len(), 1);
    }

    /// A page file that is missing, damaged or moved to another page is corruption, never a
    /// page silently gone.
    #[test]
    fn a_missing_damaged_or_moved_page_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put(b"p/a", b"save of a").unwrap();
            s.put(b"p/b", b"save of b").unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let pages = p.join(crate::pages::PAGES_DIR);
        let files = page_files(&p);
        // Damaged.
        flip(&pages.join(&files[0]), 30);
        {
            let s = SledStore::open(&p, &key()).unwrap();
            assert!(matches!(s.get(b"p/a"), Err(StoreError::Corrupt(_))));
            assert_eq!(s.get(b"p/b").unwrap().as_deref(), Some(&b"save of b"[..]));
        }
        released(&p);
        // b's file moved over a's name: it does not open as a's.
        std::fs::copy(pages.join(&files[1]), pages.join(&files[0])).unwrap();
        {
            let s = SledStore::open(&p, &key()).unwrap();
            assert!(matches!(s.get(b"p/a"), Err(StoreError::Corrupt(_))));
        }
        released(&p);
        // Missing.
        std::fs::remove_file(pages.join(&files[0])).unwrap();
        assert!(matches!(
            SledStore::open(&p, &key()),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// A database of the previous version holds its saved pages in sled: they move to files
    /// at open, once.
    #[test]
    fn saved_pages_of_the_previous_version_move_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let s = SledStore::open(&p, &key()).unwrap();
            // As the previous version wrote them: sealed values in `meta`.
            for (k, v) in [(&b"p/x"[..], &b"save of x"[..]), (b"p/y", b"save of y")] {
                s.meta.insert(k, s.sealer.seal(SPACE_META, k, v)).unwrap();
            }
            s.db.flush().unwrap();
        }
        released(&p);
        {
            let s = SledStore::open(&p, &key()).unwrap();
            assert!(s.meta.scan_prefix(b"p/").next().is_none());
            assert_eq!(page_files(&p).len(), 2);
            assert_eq!(s.get(b"p/x").unwrap().as_deref(), Some(&b"save of x"[..]));
            assert_eq!(s.bytes_used(), 2 * (3 + 9) + s.log.bytes());
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.get(b"p/y").unwrap().as_deref(), Some(&b"save of y"[..]));
        assert_eq!(page_files(&p).len(), 2);
    }

    /// A clean close leaves a snapshot of the index: the next open reads it instead of every
    /// `env` record and ends with the same summaries and byte count as a scan.
    #[test]
    fn a_clean_close_lets_the_next_open_skip_the_envelope_scan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let (a, b) = (Tag([1; 16]), Tag([2; 16]));
        let es = many(30, 100);
        let state = |s: &SledStore| (s.tags(), s.bytes_used());
        let closed = {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert!(s.scanned_at_open, "a new store has no snapshot");
            for (i, (id, bytes)) in es.iter().enumerate() {
                s.put_envelope(if i % 3 == 0 { &a } else { &b }, id, bytes)
                    .unwrap();
            }
            s.put_envelope(&a, &EnvelopeId([9; 32]), b"").unwrap();
            s.remove_envelope(&b, &es[1].0).unwrap();
            s.put(b"c/conv", b"metadata").unwrap();
            s.put(b"p/page", b"a saved page").unwrap();
            s.close().unwrap();
            state(&s)
        };
        released(&p);
        {
            let s = SledStore::open(&p, &key()).unwrap();
            assert!(!s.scanned_at_open, "the snapshot was not used");
            assert_eq!(state(&s), closed);
            assert_eq!(s.summary(&b).count, 19);
            // Not closed this time (a crash): the snapshot was taken out at open.
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert!(s.scanned_at_open, "a snapshot was used twice");
        assert_eq!(state(&s), closed, "the scan and the snapshot disagree");
    }

    /// A write after the close voids the snapshot, so the next open scans and sees it; a
    /// snapshot that does not match the store (another log end) is not used.
    #[test]
    fn a_write_after_close_or_a_stale_snapshot_means_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let es = many(3, 100);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put_envelope(&tag, &es[0].0, &es[0].1).unwrap();
            s.close().unwrap();
            s.put_envelope(&tag, &es[1].0, &es[1].1).unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let stale = {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert!(s.scanned_at_open);
            assert_eq!(s.summary(&tag).count, 2);
            s.close().unwrap();
            s.rest.get(SNAPSHOT_KEY).unwrap().unwrap()
        };
        released(&p);
        {
            // The snapshot of two envelopes planted back after a third was stored.
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert!(!s.scanned_at_open);
            s.put_envelope(&tag, &es[2].0, &es[2].1).unwrap();
            s.flush().unwrap();
            s.rest.insert(SNAPSHOT_KEY, stale).unwrap();
            s.db.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert!(s.scanned_at_open, "a stale snapshot was used");
        assert_eq!(s.summary(&tag).count, 3);
    }

    #[test]
    fn the_journal_file_stays_small_while_records_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let mut s = SledStore::open(&p, &key()).unwrap();
        for i in 0..60_000u64 {
            s.put(&jkey(i), &[1; 52]).unwrap();
            if i >= 256 {
                s.delete(&jkey(i - 256)).unwrap();
            }
            if i % 3 == 2 {
                s.flush().unwrap();
            }
        }
        s.flush().unwrap();
        let (live, _, file) = s.journal.stats();
        assert_eq!(live, 256);
        // 60,000 records of 62 bytes went through; the file holds about the live ones.
        assert!(
            file <= 4 * crate::journal::COMPACT_MIN,
            "journal file of {file} bytes"
        );
        drop(s);
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(journal_of(&s).len(), 256);
        assert_eq!(journal_of(&s)[0].0, jkey(60_000 - 256));
    }

    #[test]
    fn env_keys_are_short_and_a_tag_with_no_record_left_loses_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let (a, b) = (Tag([1; 16]), Tag([2; 16]));
        let es = many(4, 100);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put_envelope(&a, &es[0].0, &es[0].1).unwrap();
            s.put_envelope(&a, &es[1].0, &es[1].1).unwrap();
            s.put_envelope(&b, &es[2].0, &es[2].1).unwrap();
            s.flush().unwrap();
            assert!(s.env.iter().keys().all(|k| k.unwrap().len() == ENV_KEY_LEN));
            assert_eq!(s.tag_numbers.len(), 2);
            // The same id under another tag is another record.
            assert!(!s.contains(&b, &es[0].0).unwrap());
            s.remove_envelope(&b, &es[2].0).unwrap();
            assert_eq!(s.tag_numbers.len(), 1);
            assert_eq!(s.envelope(&b, &es[2].0).unwrap(), None);
            // Back again: a new number, found as before.
            s.put_envelope(&b, &es[3].0, &es[3].1).unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.summary(&a).count, 2);
        assert_eq!(s.summary(&b).count, 1);
        assert_eq!(
            s.envelope(&b, &es[3].0).unwrap().as_deref(),
            Some(&es[3].1[..])
        );
        assert_eq!(
            s.envelope(&a, &es[1].0).unwrap().as_deref(),
            Some(&es[1].1[..])
        );
        let mut ids = Vec::new();
        s.for_each_id(&a, &[0; 32], &mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
        let mut want = vec![es[0].0, es[1].0];
        want.sort();
        assert_eq!(ids, want);
    }

    #[test]
    fn a_store_of_the_previous_format_opens_with_every_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        let old = many(20, 200);
        let new = many(25, 201);
        {
            let s = SledStore::open(&p, &key()).unwrap();
            for (id, b) in &old {
                let k = env_key(&tag, id);
                s.env.insert(k, s.sealer.seal(SPACE_ENV, &k, b)).unwrap();
            }
            s.env
                .insert(env_key(&tag, &EnvelopeId([9; 32])), Vec::new())
                .unwrap();
            s.db.flush().unwrap();
            std::fs::remove_dir_all(p.join(LOG_DIR)).unwrap();
            s.rest.remove(LOG_END_KEY).unwrap();
            s.db.flush().unwrap();
        }
        released(&p);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            assert_eq!(s.summary(&tag).count, 21);
            for (id, b) in &old {
                assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
                assert_eq!(s.envelope_len(&tag, id).unwrap(), Some(200));
            }
            assert_eq!(
                s.envelope(&tag, &EnvelopeId([9; 32])).unwrap().unwrap(),
                b""
            );
            for (id, b) in &new[..20] {
                s.put_envelope(&tag, id, b).unwrap();
            }
            assert!(!s.put_envelope(&tag, &old[0].0, &old[0].1).unwrap());
            assert!(s.remove_envelope(&tag, &old[1].0).unwrap());
            s.flush().unwrap();
            let census = s.census().unwrap();
            let inline = census
                .iter()
                .find(|r| r.kind == "env envelopes inline (previous format)")
                .unwrap();
            assert_eq!(inline.records, 19);
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        for (id, b) in old[..1].iter().chain(&old[2..]).chain(&new[..20]) {
            assert_eq!(s.envelope(&tag, id).unwrap().as_deref(), Some(&b[..]));
        }
        assert!(!s.contains(&tag, &old[1].0).unwrap());
        assert_eq!(s.summary(&tag).count, 40);
        // An inline value moved under another id does not open (sealed to its key).
        let k0 = s.key(&tag, &old[0].0).unwrap();
        let v = s.env.get(k0).unwrap().unwrap();
        s.env.insert(s.key(&tag, &old[2].0).unwrap(), v).unwrap();
        assert!(matches!(
            s.envelope(&tag, &old[2].0),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_log_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let mut s = SledStore::open(&p, &key()).unwrap();
        let (id, b) = real(b"x");
        s.put_envelope(&Tag([1; 16]), &id, &b).unwrap();
        s.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p.join(LOG_DIR)), 0o700);
        assert_eq!(mode(&s.log.segment_path(0)), 0o600);
    }
}
