//! The node's [`Store`] on sled 0.34 (the stable line; the 1.0 alphas still change format).
//!
//! Three trees: `env` (tag ‖ id → envelope bytes), `idx` (id → tag) and `meta`. Writes go
//! to sled's page cache; [`Store::flush`] makes them durable (`Db::flush`, which fsyncs).
//! The engine flushes once per batch before acknowledging anything (group commit), so
//! durability does not cost throughput (sled does 3.4–5.2k single flushed inserts/s, 30–51k/s
//! in batches).
//!
//! sled writes each tree separately, so a crash can leave an `env` entry without its `idx`
//! entry or the reverse. Opening repairs both (a key scan, also needed to rebuild the per-tag
//! summaries). A database that is *corrupt* is moved aside, never deleted (docs/security.md,
//! "Nothing acknowledged is ever lost" and E3): see [`open_or_quarantine`]. Any other failure
//! (a lock, a full disk, an I/O error, a wrong key) is reported and leaves the database alone.
//!
//! Every value is sealed at rest under the device's storage key ([`crate::at_rest`]): envelope
//! bytes in `env` (tombstones stay empty), every metadata value in `meta`. A fourth tree,
//! `rest`, holds a sealed canary so that a wrong key is told apart from corruption at open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vaarta_sync::ids::{EnvelopeId, Tag};
use vaarta_sync::store::{Store, StoreError, Summary};

use crate::at_rest::{OVERHEAD, Sealer, Secret};

/// Associated-data spaces of sealed values (one per tree).
const SPACE_ENV: u8 = 0;
const SPACE_META: u8 = 1;
const SPACE_CANARY: u8 = 2;
const CANARY_KEY: &[u8] = b"canary";
const CANARY: &[u8] = b"vaarta sealed store v1";

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    env: sled::Tree,
    idx: sled::Tree,
    meta: sled::Tree,
    sealer: Sealer,
    summaries: BTreeMap<Tag, Summary>,
    bytes: u64,
    pub flushes: u64,
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

fn env_key(tag: &Tag, id: &EnvelopeId) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&tag.0);
    k[16..].copy_from_slice(&id.0);
    k
}

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
        let idx = db.open_tree("idx").map_err(io)?;
        let meta = db.open_tree("meta").map_err(io)?;
        let rest = db.open_tree("rest").map_err(io)?;
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
        restrict_permissions(path);
        let mut s = Self {
            db,
            env,
            idx,
            meta,
            sealer,
            summaries: BTreeMap::new(),
            bytes: 0,
            flushes: 0,
        };
        s.repair()?;
        Ok(s)
    }

    /// Rebuilds summaries and fixes `idx` after an interrupted write.
    fn repair(&mut self) -> Result<(), StoreError> {
        let mut fixed = 0usize;
        for item in self.env.iter() {
            let (k, v) = item.map_err(io)?;
            if k.len() != 48 {
                return Err(StoreError::Corrupt("envelope key of the wrong size".into()));
            }
            let tag = Tag(k[..16].try_into().unwrap_or_default());
            let id = EnvelopeId(k[16..].try_into().unwrap_or_default());
            self.summaries.entry(tag).or_default().add(&id);
            self.bytes += v.len().saturating_sub(OVERHEAD) as u64 + 48;
            if self.idx.get(id.0).map_err(io)?.as_deref() != Some(&tag.0[..]) {
                self.idx.insert(id.0, &tag.0).map_err(io)?;
                fixed += 1;
            }
        }
        let mut stale = Vec::new();
        for item in self.idx.iter() {
            let (k, v) = item.map_err(io)?;
            let (Ok(id), Ok(tag)) = (<[u8; 32]>::try_from(&k[..]), <[u8; 16]>::try_from(&v[..]))
            else {
                stale.push(k);
                continue;
            };
            if !self
                .env
                .contains_key(env_key(&Tag(tag), &EnvelopeId(id)))
                .map_err(io)?
            {
                stale.push(k);
            }
        }
        for k in stale {
            self.idx.remove(k).map_err(io)?;
            fixed += 1;
        }
        for item in self.meta.iter() {
            let (k, v) = item.map_err(io)?;
            self.bytes += (k.len() + v.len().saturating_sub(OVERHEAD)) as u64;
        }
        if fixed > 0 {
            tracing::warn!(
                fixed,
                "repaired the envelope index after an interrupted write"
            );
            self.flush()?;
        }
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// What the database holds, by kind of record: every record of every tree is visited
    /// (keys are in the clear, values are counted as stored, sealing included). For the
    /// storage benchmark and docs/performance.md ("where the bytes go"); it reads everything,
    /// so it is not for the engine's path.
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
        for item in self.env.iter() {
            let (k, v) = item.map_err(io)?;
            let kind = if v.is_empty() {
                "env tombstones"
            } else {
                "env envelopes"
            };
            count(kind.into(), k.len(), v.len());
        }
        for item in self.idx.iter() {
            let (k, v) = item.map_err(io)?;
            count("idx id → tag".into(), k.len(), v.len());
        }
        for item in self.meta.iter() {
            let (k, v) = item.map_err(io)?;
            count(format!("meta {}", meta_kind(&k)), k.len(), v.len());
        }
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
        if let Some(old_tag) = self.idx.get(id.0).map_err(io)? {
            let old_tag = Tag(old_tag[..].try_into().unwrap_or_default());
            let old = self.env.get(env_key(&old_tag, id)).map_err(io)?;
            let is_tomb = old.as_ref().is_none_or(|o| o.is_empty());
            if !is_tomb || bytes.is_empty() {
                return Ok(false);
            }
            self.remove_envelope(id)?;
        }
        let k = env_key(tag, id);
        let stored = if bytes.is_empty() {
            Vec::new()
        } else {
            self.sealer.seal(SPACE_ENV, &k, bytes)
        };
        self.env.insert(k, stored).map_err(io)?;
        self.idx.insert(id.0, &tag.0).map_err(io)?;
        self.summaries.entry(*tag).or_default().add(id);
        self.bytes += bytes.len() as u64 + 48;
        Ok(true)
    }

    fn envelope(&self, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(tag) = self.idx.get(id.0).map_err(io)? else {
            return Ok(None);
        };
        let tag = Tag(tag[..].try_into().unwrap_or_default());
        let k = env_key(&tag, id);
        match self.env.get(k).map_err(io)? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(Some(Vec::new())),
            Some(v) => self
                .sealer
                .open(SPACE_ENV, &k, &v)
                .map(Some)
                .ok_or_else(|| corrupt_value("envelope")),
        }
    }

    fn envelope_len(&self, id: &EnvelopeId) -> Result<Option<usize>, StoreError> {
        let Some(tag) = self.idx.get(id.0).map_err(io)? else {
            return Ok(None);
        };
        let tag = Tag(tag[..].try_into().unwrap_or_default());
        Ok(self
            .env
            .get(env_key(&tag, id))
            .map_err(io)?
            .map(|v| v.len().saturating_sub(OVERHEAD)))
    }

    fn contains(&self, id: &EnvelopeId) -> Result<bool, StoreError> {
        self.idx.contains_key(id.0).map_err(io)
    }

    fn tag_of(&self, id: &EnvelopeId) -> Result<Option<Tag>, StoreError> {
        Ok(self
            .idx
            .get(id.0)
            .map_err(io)?
            .and_then(|t| <[u8; 16]>::try_from(&t[..]).ok().map(Tag)))
    }

    fn remove_envelope(&mut self, id: &EnvelopeId) -> Result<bool, StoreError> {
        let Some(tag) = self.tag_of(id)? else {
            return Ok(false);
        };
        if let Some(old) = self.env.remove(env_key(&tag, id)).map_err(io)? {
            self.bytes = self
                .bytes
                .saturating_sub(old.len().saturating_sub(OVERHEAD) as u64 + 48);
            if let Some(s) = self.summaries.get_mut(&tag) {
                s.sub(id);
                if s.count == 0 {
                    self.summaries.remove(&tag);
                }
            }
        }
        self.idx.remove(id.0).map_err(io)?;
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
        let start = env_key(tag, &EnvelopeId(*from));
        let end = env_key(tag, &EnvelopeId([0xff; 32]));
        for item in self.env.range(start..=end) {
            let (k, _) = item.map_err(io)?;
            let id = EnvelopeId(k[16..].try_into().unwrap_or_default());
            if !f(&id) {
                break;
            }
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.meta.get(key).map_err(io)? {
            None => Ok(None),
            Some(v) => self
                .sealer
                .open(SPACE_META, key, &v)
                .map(Some)
                .ok_or_else(|| corrupt_value("metadata")),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
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
        for item in self.meta.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            let v = self
                .sealer
                .open(SPACE_META, &k, &v)
                .ok_or_else(|| corrupt_value("metadata"))?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(io)?;
        self.flushes += 1;
        Ok(())
    }

    fn bytes_used(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new([0x5a; 32])
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
        s.put_envelope(&tag, &EnvelopeId([2; 32]), b"two").unwrap();
        s.put_envelope(&tag, &EnvelopeId([3; 32]), b"three")
            .unwrap();
        s.put_envelope(&tag, &EnvelopeId([4; 32]), b"").unwrap();
        s.put(b"j/abc", b"v").unwrap();
        s.put(b"j/abd", b"vv").unwrap();
        s.put(b"h", b"12345678").unwrap();
        let rows = s.census().unwrap();
        let row = |k: &str| rows.iter().find(|r| r.kind == k).cloned().unwrap();
        let env = row("env envelopes");
        assert_eq!((env.records, env.key_bytes), (2, 96));
        assert_eq!(
            env.value_bytes,
            (3 + 5 + 2 * OVERHEAD) as u64,
            "sealed as stored"
        );
        assert_eq!(row("env tombstones").value_bytes, 0);
        assert_eq!(row("idx id → tag").records, 3);
        let j = row("meta j/");
        assert_eq!((j.records, j.key_bytes), (2, 10));
        assert_eq!(j.value_bytes, (3 + 2 * OVERHEAD) as u64);
        assert_eq!(row("meta h").records, 1);
        assert_eq!(rows.len(), 5, "{rows:?}");
    }

    #[test]
    fn persists_across_reopen_and_repairs_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let tag = Tag([1; 16]);
        {
            let mut s = SledStore::open(&p, &key()).unwrap();
            s.put_envelope(&tag, &EnvelopeId([2; 32]), b"two").unwrap();
            s.put_envelope(&tag, &EnvelopeId([3; 32]), b"").unwrap();
            s.put(b"k", b"v").unwrap();
            // Simulate a torn write: an index entry whose envelope never landed.
            s.idx.insert([9u8; 32], &tag.0).unwrap();
            s.flush().unwrap();
        }
        released(&p);
        let s = SledStore::open(&p, &key()).unwrap();
        assert_eq!(s.envelope(&EnvelopeId([2; 32])).unwrap().unwrap(), b"two");
        assert_eq!(s.envelope(&EnvelopeId([3; 32])).unwrap().unwrap(), b"");
        assert!(!s.contains(&EnvelopeId([9; 32])).unwrap());
        assert_eq!(s.summary(&tag).count, 2);
        assert_eq!(s.get(b"k").unwrap().unwrap(), b"v");
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
        s.put_envelope(&tag, &EnvelopeId([2; 32]), b"envelope-bytes")
            .unwrap();
        s.put(b"p/page", b"plaintext-page").unwrap();
        let raw = s.meta.get(b"p/page").unwrap().unwrap();
        assert!(!raw.windows(9).any(|w| w == b"plaintext"));
        let raw = s
            .env
            .get(env_key(&tag, &EnvelopeId([2; 32])))
            .unwrap()
            .unwrap();
        assert!(!raw.windows(8).any(|w| w == b"envelope"));
        assert_eq!(s.bytes_used(), 14 + 48 + 6 + 14);
        // A value moved under another key does not open.
        s.meta
            .insert(b"p/other", s.meta.get(b"p/page").unwrap().unwrap())
            .unwrap();
        assert!(matches!(s.get(b"p/other"), Err(StoreError::Corrupt(_))));
    }

    /// The relay count at open reads lengths, not sealed bytes: no decryption per carried
    /// envelope, and one rotten value does not stop the node from starting.
    #[test]
    fn envelope_lengths_need_no_opening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(&dir.path().join("db"), &key()).unwrap();
        let tag = Tag([1; 16]);
        let (a, b, t) = (
            EnvelopeId([2; 32]),
            EnvelopeId([3; 32]),
            EnvelopeId([4; 32]),
        );
        s.put_envelope(&tag, &a, &[7; 300]).unwrap();
        s.put_envelope(&tag, &b, &[8; 20]).unwrap();
        s.put_envelope(&tag, &t, b"").unwrap();
        let k = env_key(&tag, &b);
        let mut rotten = s.env.get(k).unwrap().unwrap().to_vec();
        rotten[30] ^= 1;
        s.env.insert(k, rotten).unwrap();
        assert!(matches!(s.envelope(&b), Err(StoreError::Corrupt(_))));
        assert_eq!(s.envelope_len(&a).unwrap(), Some(300));
        assert_eq!(s.envelope_len(&b).unwrap(), Some(20));
        assert_eq!(s.envelope_len(&t).unwrap(), Some(0));
        assert_eq!(s.envelope_len(&EnvelopeId([5; 32])).unwrap(), None);
    }
}
