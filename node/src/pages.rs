//! Saved pages in files of their own beside sled (issue 11: "page state saved compactly").
//!
//! The sync core saves a page (`p/` ‖ conversation ‖ page number → `Page::save` bytes and the
//! page's own-message pairs, [`vaarta_sync::replica::keys::PAGE`]) when it is full or idle and
//! saves it again after later changes. In sled such a value is rewritten in place, and sled
//! keeps every version until it cleans the segment: with 100,000 messages in 100
//! conversations the saves were 5.1 MB of live values (51 B per message) in a sled database of
//! 19.5 MB. Here each save is one sealed file, written once and deleted when the next save of
//! the same page is durable, so a page costs what its last save weighs.
//!
//! ## Format
//!
//! `pages/<key in hex>.<generation, 16 hex digits>` in the sled directory, holding the value
//! sealed with XChaCha20-Poly1305 under the storage key ([`crate::at_rest::Sealer`]), associated
//! data = space 5 ‖ key ‖ generation: a file renamed to another page or generation does not
//! open. sled's `pages` tree maps each key to its file's generation and value length (12 bytes,
//! in the clear like the envelope locations: they say nothing of the text).
//!
//! ## Crashes
//!
//! At [`Store::flush`](vaarta_sync::store::Store::flush) each page saved since the last flush
//! is written to a new file and `fdatasync`ed (with the directory, and in parallel with the
//! envelope log and the journal), then the pointers are inserted in sled and sled is flushed,
//! in the same flush as the journal's mark, so the journal's deletes of a page's records are
//! durable only with the save that holds them. Only then are the files the pointers no longer
//! name deleted. At open:
//!
//! * a file no pointer names is deleted: a flush that did not complete wrote it (nothing in
//!   it was acknowledged as a page: the journal still holds its records), or a flush that did
//!   complete had not deleted it yet;
//! * a pointer whose file is missing, or a file that does not open, is
//!   [`StoreError::Corrupt`] (the database is moved aside, never silently thinned).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use vaarta_sync::store::StoreError;

use crate::at_rest::{OVERHEAD, Sealer};
use crate::envlog::{Syncs, private_file, sync_dir};

/// Associated-data space of a page file.
const SPACE_PAGE: u8 = 5;
/// The directory, inside the sled directory.
pub const PAGES_DIR: &str = "pages";
/// The longest key kept here (a page key is 22 bytes).
const MAX_KEY: usize = 64;
/// A pointer in sled's `pages` tree: generation ‖ value length.
const POINTER_LEN: usize = 12;

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::Full
    } else {
        StoreError::Io(format!("page files: {what}: {e}"))
    }
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn file_name(key: &[u8], generation: u64) -> String {
    format!("{}.{generation:016x}", hex(key))
}

fn parse_name(name: &str) -> Option<(Vec<u8>, u64)> {
    let (k, g) = name.split_once('.')?;
    if g.len() != 16 {
        return None;
    }
    let key = data_encoding::HEXLOWER.decode(k.as_bytes()).ok()?;
    Some((key, u64::from_str_radix(g, 16).ok()?))
}

fn ad(key: &[u8], generation: u64) -> Vec<u8> {
    let mut a = key.to_vec();
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

/// Where a saved page is: its file's generation and the value's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub generation: u64,
    pub len: u32,
}

impl Pointer {
    pub fn encode(&self) -> [u8; POINTER_LEN] {
        let mut b = [0u8; POINTER_LEN];
        b[..8].copy_from_slice(&self.generation.to_be_bytes());
        b[8..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Pointer> {
        let b: &[u8; POINTER_LEN] = b.try_into().ok()?;
        Some(Pointer {
            generation: u64::from_be_bytes(b[..8].try_into().ok()?),
            len: u32::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// What a flush must record in sled once the files are on the disk: each key's new pointer,
/// or `None` for a page deleted.
pub type Updates = Vec<(Vec<u8>, Option<Pointer>)>;

#[derive(Debug)]
pub struct PageFiles {
    dir: PathBuf,
    sealer: Sealer,
    /// The durable pointers (as recorded in sled).
    index: BTreeMap<Vec<u8>, Pointer>,
    /// Saves and deletes since the last flush (`None`: deleted), read before the files.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Files written by a flush that has not committed yet.
    written: Vec<(Vec<u8>, Pointer)>,
    next_generation: u64,
}

impl PageFiles {
    /// Opens the directory `db/pages` with the pointers sled holds; deletes the files no
    /// pointer names (see the module docs).
    pub fn open(
        db: &Path,
        sealer: Sealer,
        index: BTreeMap<Vec<u8>, Pointer>,
    ) -> Result<Self, StoreError> {
        let dir = db.join(PAGES_DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create", e))?;
            sync_dir(db);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut next = index.values().map(|p| p.generation + 1).max().unwrap_or(0);
        let mut found = 0usize;
        for e in std::fs::read_dir(&dir).map_err(|e| io_err("list", e))? {
            let e = e.map_err(|e| io_err("list", e))?;
            let name = e.file_name();
            let Some((key, generation)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            next = next.max(generation + 1);
            if index.get(&key).is_some_and(|p| p.generation == generation) {
                found += 1;
            } else {
                std::fs::remove_file(e.path()).map_err(|e| io_err("remove", e))?;
            }
        }
        if found != index.len() {
            return Err(StoreError::Corrupt(format!(
                "{} saved page(s) named in the database have no file",
                index.len() - found
            )));
        }
        Ok(Self {
            dir,
            sealer,
            index,
            pending: BTreeMap::new(),
            written: Vec::new(),
            next_generation: next,
        })
    }

    pub fn is_page(key: &[u8]) -> bool {
        key.starts_with(vaarta_sync::replica::keys::PAGE)
    }

    /// The value's length, if the key has one (pending writes first).
    fn len_of(&self, key: &[u8]) -> Option<usize> {
        match self.pending.get(key) {
            Some(v) => v.as_ref().map(Vec::len),
            None => self.index.get(key).map(|p| p.len as usize),
        }
    }

    /// Saves `value` under `key` (on the disk at the next flush); the previous value's
    /// length, if any.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Option<usize>, StoreError> {
        if key.len() > MAX_KEY || u32::try_from(value.len()).is_err() {
            return Err(StoreError::Io(format!(
                "page files: a key of {} bytes or a value of {} bytes is too long",
                key.len(),
                value.len()
            )));
        }
        let old = self.len_of(key);
        self.pending.insert(key.to_vec(), Some(value.to_vec()));
        Ok(old)
    }

    pub fn delete(&mut self, key: &[u8]) -> Option<usize> {
        let old = self.len_of(key);
        if old.is_some() {
            self.pending.insert(key.to_vec(), None);
        }
        old
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        let Some(p) = self.index.get(key) else {
            return Ok(None);
        };
        let path = self.dir.join(file_name(key, p.generation));
        let sealed = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Corrupt(format!("the saved page {} has no file", hex(key)))
            } else {
                io_err("read", e)
            }
        })?;
        match self
            .sealer
            .open(SPACE_PAGE, &ad(key, p.generation), &sealed)
        {
            Some(v) if v.len() == p.len as usize => Ok(Some(v)),
            _ => Err(StoreError::Corrupt(format!(
                "the saved page {} does not open",
                hex(key)
            ))),
        }
    }

    /// The keys under `prefix`, pending writes included, in order.
    pub fn keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let mut all: BTreeMap<&[u8], bool> = BTreeMap::new();
        let under = |k: &&Vec<u8>| k.starts_with(prefix);
        for k in self
            .index
            .range(prefix.to_vec()..)
            .map(|(k, _)| k)
            .take_while(under)
        {
            all.insert(k, true);
        }
        for (k, v) in self
            .pending
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| under(k))
        {
            all.insert(k, v.is_some());
        }
        all.into_iter()
            .filter(|(_, live)| *live)
            .map(|(k, _)| k.to_vec())
            .collect()
    }

    /// The durable pointers.
    pub fn pointers(&self) -> impl Iterator<Item = (&Vec<u8>, &Pointer)> {
        self.index.iter()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes each page saved since the last flush to a new file (the files and the
    /// directory go to `syncs`); returns the pointers to record in sled once they ran.
    /// Until [`PageFiles::committed`] the pending writes stay readable (and a failed flush
    /// writes them again next time).
    pub(crate) fn write_pending_unsynced(
        &mut self,
        syncs: &mut Syncs,
    ) -> Result<Updates, StoreError> {
        // Files of a flush that failed: no pointer names them.
        for (key, p) in std::mem::take(&mut self.written) {
            let _ = std::fs::remove_file(self.dir.join(file_name(&key, p.generation)));
        }
        let mut updates = Vec::with_capacity(self.pending.len());
        for (key, value) in &self.pending {
            let Some(value) = value else {
                updates.push((key.clone(), None));
                continue;
            };
            let generation = self.next_generation;
            self.next_generation += 1;
            let path = self.dir.join(file_name(key, generation));
            let mut f = private_file(OpenOptions::new().write(true).create_new(true))
                .open(&path)
                .map_err(|e| io_err("create", e))?;
            f.write_all(&self.sealer.seal(SPACE_PAGE, &ad(key, generation), value))
                .map_err(|e| io_err("write", e))?;
            syncs.file(&f)?;
            let p = Pointer {
                generation,
                len: value.len() as u32,
            };
            self.written.push((key.clone(), p));
            updates.push((key.clone(), Some(p)));
        }
        if !self.written.is_empty() {
            syncs.dir(&self.dir);
        }
        Ok(updates)
    }

    /// sled has recorded `updates` durably: they are the index now, and the files they
    /// replaced (or deleted) go.
    pub fn committed(&mut self, updates: Updates) {
        for (key, p) in updates {
            let old = match p {
                Some(p) => self.index.insert(key.clone(), p),
                None => self.index.remove(&key),
            };
            if let Some(old) = old {
                // Best effort: a file left behind is deleted at the next open.
                let _ = std::fs::remove_file(self.dir.join(file_name(&key, old.generation)));
            }
        }
        self.written.clear();
        self.pending.clear();
    }

    /// Forgets the writes since the last flush, as a crash would (the files they wrote
    /// stay until the next open deletes them).
    #[cfg(test)]
    pub fn crash(&mut self) {
        self.pending.clear();
        self.written.clear();
    }

    /// Saved pages, the bytes of their values, and the bytes of their files.
    pub fn stats(&self) -> (u64, u64, u64) {
        let values: u64 = self.index.values().map(|p| u64::from(p.len)).sum();
        let n = self.index.len() as u64;
        (n, values, values + n * OVERHEAD as u64)
    }
}
