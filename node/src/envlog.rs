//! The envelope log: envelope bytes in append-only, sealed segment files beside sled
//! (issue 11, step 1 of the `frames-id` recommendation in docs/performance.md).
//!
//! sled costs 2–6× the bytes it is given, and most for small records written at many
//! insertion points; an envelope written once into a file that only grows costs its own size
//! plus one seal per commit. So the envelope bytes leave sled: sled's `env` tree keeps only a
//! small *location* per envelope ([`Location`]), the bytes live here.
//!
//! ## Format
//!
//! The log is a directory (`envlog/` inside the sled directory, see below) of *segment* files
//! `00000000.seg`, `00000001.seg`, … of at most [`SEGMENT_MAX`] bytes each (a single frame
//! larger than that would get a segment of its own; envelopes are at most 257 KiB, so this
//! does not happen). A segment is a sequence of *frames*:
//!
//! ```text
//! frame   = len:u32le  nonce:[24]  ciphertext:[len]  tag:[16]
//! payload = envelope bytes, concatenated (the locations say where each one starts and ends)
//! sealed with XChaCha20-Poly1305 under the storage key (crate::at_rest::Sealer),
//! associated data = space 3 ‖ segment:u32be ‖ frame offset:u32be ‖ len:u32be
//! ```
//!
//! At each [`Store::flush`](vaarta_sync::store::Store::flush) what was appended since the
//! last flush is sealed as new frames of at most [`FRAME_MAX`] payload bytes (an envelope
//! larger than that gets a frame of its own), written after the previous frame and
//! `fdatasync`ed; only then is the new end of the log recorded in sled (the *mark*, in the
//! `rest` tree) and sled flushed. The engine acknowledges only after that flush, so:
//!
//! * **Nothing written is ever rewritten.** A crash can only leave bytes *after* the mark —
//!   frames of a flush whose sled flush did not complete, torn or whole — and those held only
//!   unacknowledged envelopes. [`EnvLog::open`] cuts them (truncates the segment to the mark,
//!   deletes segments after it). sled may have written the locations of those envelopes in
//!   the background; the store's repair at open drops every location at or past the mark.
//! * **A frame before the mark that does not open is corruption**, reported as
//!   [`StoreError::Corrupt`] when it is read, never dropped: it held acknowledged envelopes.
//!   A segment shorter than the mark is corruption at open. (Telling a torn tail from damage
//!   by scanning alone would need guessing; the mark makes it exact. Its cost is one 8-byte
//!   sled value rewritten per flush that appended something.)
//!
//! Reads ([`EnvLog::read`]) open one frame (≤ 4 KiB + 44 for ordinary envelopes), served from
//! a small cache of the last [`CACHE_FRAMES`] frames opened; envelopes appended but not yet
//! flushed are served from memory. The store checks the bytes against the envelope id (their
//! BLAKE3 hash), so a location pointing at other bytes is detected.
//!
//! **Why inside the sled directory** (`db/envlog/`): the log and sled's index are one
//! database — a quarantine (`open_or_quarantine`) moves both aside together, a backup or copy
//! of `db/` takes both, the owner-only permissions pass walks both, and sled's lock on
//! `db/db` (taken before the log is opened) keeps a second process off the log too. sled
//! only looks at its own `conf`, `db`, `blobs/` and `snap.*` names there.
//!
//! **Removal.** Removing an envelope removes its location; its bytes stay sealed in their
//! segment (dead bytes, counted by the census) until segment compaction, a follow-up: copy
//! the live envelopes of a segment more than a quarter dead to the log's end, re-point their
//! locations, flush, then delete the file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vaarta_sync::store::StoreError;

use crate::at_rest::{OVERHEAD, Sealer};

/// Largest segment file: 4 MiB (docs/performance.md, the `frames` layouts of the study; small
/// enough that compaction copies little at a time, large enough that a year is a few hundred
/// files).
pub const SEGMENT_MAX: u64 = 4 * 1024 * 1024;
/// Largest frame payload: ~4 KiB, one page of a typical file system, so a read opens a few
/// envelopes, not a segment (study: `frames`).
pub const FRAME_MAX: usize = 4096;
/// Bytes a frame adds to its payload: the length prefix, nonce and tag.
pub const FRAME_OVERHEAD: usize = 4 + OVERHEAD;
/// Frames kept open in memory for reads (bounded: at most this many payloads, each ≤ 4 KiB
/// unless one large envelope).
pub const CACHE_FRAMES: usize = 8;
/// Associated-data space of frames (the store's spaces are 0–2).
const SPACE_LOG: u8 = 3;
/// A frame's payload can never be longer than this (one envelope of the largest size):
/// a length prefix beyond it is corruption, not an allocation.
const PAYLOAD_LIMIT: usize = vaarta_sync::limits::MAX_ENVELOPE_BYTES + FRAME_MAX;

/// A position in the log: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub seg: u32,
    pub off: u32,
}

impl Pos {
    pub const LEN: usize = 8;

    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.seg.to_le_bytes());
        b[4..].copy_from_slice(&self.off.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: [u8; 8] = b.try_into().ok()?;
        Some(Self {
            seg: u32::from_le_bytes(b[..4].try_into().ok()?),
            off: u32::from_le_bytes(b[4..].try_into().ok()?),
        })
    }
}

/// Where one envelope's bytes are: the frame (segment, offset) and the slice of its payload.
/// Stored as sled's `env` value: 14 bytes, never 0 (a tombstone) and never ≥ 40 (an inline
/// sealed value of the previous format), so the three are told apart by length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub frame: Pos,
    pub at: u16,
    pub len: u32,
}

impl Location {
    pub const LEN: usize = 14;

    pub fn encode(&self) -> [u8; 14] {
        let mut b = [0u8; 14];
        b[..8].copy_from_slice(&self.frame.encode());
        b[8..10].copy_from_slice(&self.at.to_le_bytes());
        b[10..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(Self {
            frame: Pos::decode(&b[..8])?,
            at: u16::from_le_bytes(b[8..10].try_into().ok()?),
            len: u32::from_le_bytes(b[10..].try_into().ok()?),
        })
    }
}

#[derive(Debug)]
struct Pending {
    at: Pos,
    payload: Vec<u8>,
}

impl Pending {
    fn end(&self) -> Pos {
        Pos {
            seg: self.at.seg,
            off: self.at.off + (FRAME_OVERHEAD + self.payload.len()) as u32,
        }
    }
}

/// What the log holds on disk, for the census.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segments: u64,
    pub bytes: u64,
    pub frames: u64,
    /// Payload bytes of all frames (live and dead envelopes).
    pub payload: u64,
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::Full
    } else {
        StoreError::Io(format!("envelope log: {what}: {e}"))
    }
}

fn seg_name(seg: u32) -> String {
    format!("{seg:08}.seg")
}

fn parse_seg_name(name: &str) -> Option<u32> {
    let n = name.strip_suffix(".seg")?;
    if n.len() != 8 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn frame_ad(at: Pos, len: usize) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&at.seg.to_be_bytes());
    k[4..8].copy_from_slice(&at.off.to_be_bytes());
    k[8..].copy_from_slice(&(len as u32).to_be_bytes());
    k
}

#[cfg(unix)]
pub(crate) fn private_file(o: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    o.mode(0o600)
}
#[cfg(not(unix))]
pub(crate) fn private_file(o: &mut OpenOptions) -> &mut OpenOptions {
    o
}

pub(crate) fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(buf, off)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = f;
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(buf)
    }
}

/// The append-only envelope log (see the module docs).
#[derive(Debug)]
pub struct EnvLog {
    dir: PathBuf,
    sealer: Sealer,
    /// End of the durable, acknowledged log (the mark).
    durable: Pos,
    /// Bytes of every segment up to the mark.
    bytes: u64,
    /// Frames appended since the last flush, in order, not yet on disk (or written but not
    /// yet committed by sled's flush).
    pending: Vec<Pending>,
    pending_bytes: u64,
    /// The segment being appended to, open for writing.
    writer: Option<(u32, File)>,
    cache: Mutex<VecDeque<(Pos, Arc<Vec<u8>>)>>,
    segment_max: u64,
}

impl EnvLog {
    /// Opens the log in `dir` (created 0700 if missing) whose durable end is `mark`: bytes
    /// past the mark are cut (they were never acknowledged); a segment shorter than the mark
    /// is [`StoreError::Corrupt`].
    pub fn open(dir: &Path, sealer: Sealer, mark: Pos) -> Result<Self, StoreError> {
        Self::open_with(dir, sealer, mark, SEGMENT_MAX)
    }

    pub(crate) fn open_with(
        dir: &Path,
        sealer: Sealer,
        mark: Pos,
        segment_max: u64,
    ) -> Result<Self, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("create", e))?;
            sync_dir(dir.parent().unwrap_or(dir));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut bytes = 0u64;
        let mut cut = false;
        let mut mark_seg_len = None;
        for e in std::fs::read_dir(dir).map_err(|e| io_err("list", e))? {
            let e = e.map_err(|e| io_err("list", e))?;
            let Some(seg) = e.file_name().to_str().and_then(parse_seg_name) else {
                continue;
            };
            let p = e.path();
            let len = e.metadata().map_err(|e| io_err("stat", e))?.len();
            if seg > mark.seg {
                // Created by a flush that did not complete: nothing in it was acknowledged.
                std::fs::remove_file(&p).map_err(|e| io_err("cut", e))?;
                cut = true;
                tracing::warn!(
                    segment = seg,
                    bytes = len,
                    "envelope log: cut an unacknowledged segment"
                );
            } else if seg == mark.seg {
                mark_seg_len = Some(len);
                if len > u64::from(mark.off) {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .map_err(|e| io_err("open", e))?;
                    f.set_len(u64::from(mark.off))
                        .map_err(|e| io_err("truncate", e))?;
                    f.sync_all().map_err(|e| io_err("sync", e))?;
                    cut = true;
                    tracing::warn!(
                        segment = seg,
                        bytes = len - u64::from(mark.off),
                        "envelope log: cut an unacknowledged tail"
                    );
                }
                bytes += u64::from(mark.off);
            } else {
                bytes += len;
            }
        }
        if u64::from(mark.off) > mark_seg_len.unwrap_or(0) {
            return Err(StoreError::Corrupt(format!(
                "envelope log: segment {} holds {} bytes, the database says {} were written",
                mark.seg,
                mark_seg_len.unwrap_or(0),
                mark.off
            )));
        }
        if cut {
            sync_dir(dir);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            sealer,
            durable: mark,
            bytes,
            pending: Vec::new(),
            pending_bytes: 0,
            writer: None,
            cache: Mutex::new(VecDeque::new()),
            segment_max,
        })
    }

    /// The durable end of the log (the mark last committed).
    pub fn durable(&self) -> Pos {
        self.durable
    }

    /// Where the log ends once everything pending is written.
    pub fn end(&self) -> Pos {
        self.pending.last().map_or(self.durable, Pending::end)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Bytes of the log: segments up to the mark and the frames pending.
    pub fn bytes(&self) -> u64 {
        self.bytes + self.pending_bytes
    }

    /// Whether a location lies in the log as it is (durable or pending).
    pub fn holds(&self, loc: &Location) -> bool {
        loc.frame < self.end()
    }

    /// Appends an envelope (in memory until [`EnvLog::write_pending`]); returns its location.
    pub fn append(&mut self, bytes: &[u8]) -> Location {
        let need = bytes.len();
        let fits = self.pending.last().is_some_and(|f| {
            !f.payload.is_empty()
                && f.payload.len() + need <= FRAME_MAX
                && u64::from(f.at.off) + (FRAME_OVERHEAD + f.payload.len() + need) as u64
                    <= self.segment_max
        });
        if !fits {
            let mut at = self.end();
            if at.off > 0 && u64::from(at.off) + (FRAME_OVERHEAD + need) as u64 > self.segment_max {
                at = Pos {
                    seg: at.seg + 1,
                    off: 0,
                };
            }
            self.pending.push(Pending {
                at,
                payload: Vec::with_capacity(need.max(FRAME_MAX)),
            });
            self.pending_bytes += FRAME_OVERHEAD as u64;
        }
        let f = self.pending.last_mut().expect("a pending frame");
        let at = f.payload.len() as u16;
        f.payload.extend_from_slice(bytes);
        self.pending_bytes += need as u64;
        Location {
            frame: f.at,
            at,
            len: need as u32,
        }
    }

    /// Seals every pending frame, writes it at its place and `fdatasync`s the segments
    /// written (and the directory when a segment was created). Returns the new end, which the
    /// caller records in sled and flushes before calling [`EnvLog::committed`]. The pending
    /// frames stay until then: a failed write or sled flush is retried at the next flush, at
    /// the same places (past the mark, so nothing acknowledged is overwritten).
    pub fn write_pending(&mut self) -> Result<Pos, StoreError> {
        let mut syncs = Syncs::default();
        let end = self.write_pending_unsynced(&mut syncs)?;
        syncs.run()?;
        Ok(end)
    }

    /// [`EnvLog::write_pending`] without the `fdatasync`: the files to sync go to `syncs`,
    /// which the caller runs (with the journal's, in parallel) before anything records
    /// the returned end.
    pub(crate) fn write_pending_unsynced(&mut self, syncs: &mut Syncs) -> Result<Pos, StoreError> {
        let mut i = 0;
        while i < self.pending.len() {
            let seg = self.pending[i].at.seg;
            let start = self.pending[i].at.off;
            let mut buf = Vec::new();
            while i < self.pending.len() && self.pending[i].at.seg == seg {
                let f = &self.pending[i];
                let sealed =
                    self.sealer
                        .seal(SPACE_LOG, &frame_ad(f.at, f.payload.len()), &f.payload);
                buf.extend_from_slice(&(f.payload.len() as u32).to_le_bytes());
                buf.extend_from_slice(&sealed);
                i += 1;
            }
            let created = self.writer_for(seg)?;
            let (_, w) = self.writer.as_mut().expect("writer");
            write_at(w, &buf, u64::from(start)).map_err(|e| io_err("write", e))?;
            syncs.file(w)?;
            if created {
                syncs.dir(&self.dir);
            }
        }
        Ok(self.end())
    }

    /// sled has recorded `end` durably: the pending frames are part of the acknowledged log.
    pub fn committed(&mut self, end: Pos) {
        debug_assert_eq!(end, self.end());
        let mut moved = 0u64;
        for f in &self.pending {
            moved += (FRAME_OVERHEAD + f.payload.len()) as u64;
        }
        self.bytes += moved;
        self.pending.clear();
        self.pending_bytes = 0;
        self.durable = end;
    }

    /// Drops what was appended since the last commit, as a crash would.
    #[cfg(test)]
    pub(crate) fn forget_pending(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }

    fn writer_for(&mut self, seg: u32) -> Result<bool, StoreError> {
        if self.writer.as_ref().is_some_and(|(s, _)| *s == seg) {
            return Ok(false);
        }
        let p = self.dir.join(seg_name(seg));
        let created = !p.exists();
        let f = private_file(OpenOptions::new().read(true).write(true).create(true))
            .open(&p)
            .map_err(|e| io_err("open", e))?;
        self.writer = Some((seg, f));
        Ok(created)
    }

    /// The bytes at `loc`: from the pending frames, the cache, or the segment file. A frame
    /// that does not open, a length prefix out of bounds or a slice beyond the payload is
    /// [`StoreError::Corrupt`].
    pub fn read(&self, loc: &Location) -> Result<Vec<u8>, StoreError> {
        let slice = |payload: &[u8]| -> Result<Vec<u8>, StoreError> {
            let a = usize::from(loc.at);
            payload
                .get(a..a + loc.len as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "envelope log: a location points past its frame ({:?})",
                        loc.frame
                    ))
                })
        };
        if loc.frame >= self.durable {
            return match self.pending.iter().find(|f| f.at == loc.frame) {
                Some(f) => slice(&f.payload),
                None => Err(StoreError::Corrupt(format!(
                    "envelope log: a location points past the log's end ({:?})",
                    loc.frame
                ))),
            };
        }
        if let Some(p) = self.cache.lock().ok().and_then(|c| {
            c.iter()
                .find(|(at, _)| *at == loc.frame)
                .map(|(_, p)| p.clone())
        }) {
            return slice(&p);
        }
        let payload = Arc::new(self.open_frame(loc.frame)?);
        let out = slice(&payload);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_FRAMES {
                c.pop_front();
            }
            c.push_back((loc.frame, payload));
        }
        out
    }

    fn open_frame(&self, at: Pos) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: &str| {
            StoreError::Corrupt(format!(
                "envelope log: frame at segment {} offset {}: {why}",
                at.seg, at.off
            ))
        };
        let f = match File::open(self.dir.join(seg_name(at.seg))) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("its segment is missing"));
            }
            Err(e) => return Err(io_err("open", e)),
        };
        let mut len = [0u8; 4];
        read_frame_part(&f, &mut len, u64::from(at.off)).map_err(|e| match e {
            None => corrupt("cut short"),
            Some(e) => io_err("read", e),
        })?;
        let len = u32::from_le_bytes(len) as usize;
        if len > PAYLOAD_LIMIT {
            return Err(corrupt("length out of bounds"));
        }
        let mut sealed = vec![0u8; len + OVERHEAD];
        read_frame_part(&f, &mut sealed, u64::from(at.off) + 4).map_err(|e| match e {
            None => corrupt("cut short"),
            Some(e) => io_err("read", e),
        })?;
        self.sealer
            .open(SPACE_LOG, &frame_ad(at, len), &sealed)
            .ok_or_else(|| corrupt("does not authenticate under the storage key"))
    }

    /// Segments, bytes, frames and payload bytes, by walking every frame's length prefix
    /// (no decryption). Reads the whole log's headers: for the census, not the engine.
    pub fn stats(&self) -> Result<LogStats, StoreError> {
        let mut s = LogStats::default();
        for seg in 0..=self.durable.seg {
            let end = if seg == self.durable.seg {
                u64::from(self.durable.off)
            } else {
                match std::fs::metadata(self.dir.join(seg_name(seg))) {
                    Ok(m) => m.len(),
                    Err(_) => continue,
                }
            };
            if end == 0 {
                continue;
            }
            let f = File::open(self.dir.join(seg_name(seg))).map_err(|e| io_err("open", e))?;
            s.segments += 1;
            s.bytes += end;
            let mut off = 0u64;
            while off < end {
                let mut len = [0u8; 4];
                read_at(&f, &mut len, off).map_err(|e| io_err("read", e))?;
                let len = u64::from(u32::from_le_bytes(len));
                s.frames += 1;
                s.payload += len;
                off += FRAME_OVERHEAD as u64 + len;
            }
        }
        for f in &self.pending {
            s.frames += 1;
            s.payload += f.payload.len() as u64;
            s.bytes += (FRAME_OVERHEAD + f.payload.len()) as u64;
        }
        Ok(s)
    }

    #[cfg(test)]
    pub(crate) fn segment_path(&self, seg: u32) -> PathBuf {
        self.dir.join(seg_name(seg))
    }
}

/// `None`: the file ends before the frame does.
fn read_frame_part(f: &File, buf: &mut [u8], off: u64) -> Result<(), Option<std::io::Error>> {
    match read_at(f, buf, off) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(None),
        Err(e) => Err(Some(e)),
    }
}

pub(crate) fn write_at(f: &mut File, buf: &[u8], off: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(buf, off)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        f.seek(SeekFrom::Start(off))?;
        f.write_all(buf)
    }
}

/// fsyncs a directory so that a file created or removed in it survives a power cut.
/// Files written but not yet `fdatasync`ed, and directories that gained a file: what must
/// reach the disk before a flush records the new ends. The envelope log's and the journal's
/// run in parallel ([`Syncs::run_both`]): one `fdatasync` waits for the other's journal
/// commit on ext4 rather than after it, so a flush costs two disk waits, not three.
#[derive(Debug, Default)]
pub(crate) struct Syncs {
    files: Vec<File>,
    dirs: Vec<PathBuf>,
}

impl Syncs {
    pub fn file(&mut self, f: &File) -> Result<(), StoreError> {
        self.files
            .push(f.try_clone().map_err(|e| io_err("sync", e))?);
        Ok(())
    }

    pub fn dir(&mut self, d: &Path) {
        self.dirs.push(d.to_path_buf());
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    pub fn run(self) -> Result<(), StoreError> {
        for f in &self.files {
            f.sync_data().map_err(|e| io_err("sync", e))?;
        }
        for d in &self.dirs {
            sync_dir(d);
        }
        Ok(())
    }

    /// Runs both, the second on a thread of its own when both have work; the first error.
    pub fn run_both(a: Syncs, b: Syncs) -> Result<(), StoreError> {
        if a.is_empty() {
            return b.run();
        }
        if b.is_empty() {
            return a.run();
        }
        std::thread::scope(|s| {
            let other = s.spawn(|| b.run());
            let first = a.run();
            let second = other
                .join()
                .unwrap_or_else(|_| Err(StoreError::Io("the sync thread panicked".into())));
            first.and(second)
        })
    }
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
