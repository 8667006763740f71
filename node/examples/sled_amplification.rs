//! How much disk sled 0.34 uses for the node's write pattern, per message, and which records
//! make it grow (issue 11, docs/performance.md "Where the bytes go"). Not the node's code: the
//! same shapes of keys and values, written the way the node writes them for one message sent
//! (group commit every 3 messages, 100 conversations interleaved):
//!
//! * `env`: tag-clustered random key (48 B), sealed envelope (268 B);
//! * `idx`: envelope id (32 B) → tag (16 B);
//! * `m`: own-message record, one insertion point per conversation (52 B key, 72 B value);
//! * `j`: journal entry, one insertion point per conversation (30 B key, 72 B value);
//! * `h`: the clock, one key rewritten twice per message (1 B key, 48 B value).
//!
//! `cargo run --release -p vaarta-node --example sled_amplification [N]` prints the record
//! table above (default N = 20,000).
//!
//! `… --example sled_amplification N LAYOUT` measures one candidate storage layout, then the
//! effect of deleting 10% of the envelopes (spread over every conversation, flushed every 3
//! like the node's eviction). `LAYOUT = layouts` runs them all:
//!
//! * `today`: env + idx + m + j, with each conversation's journal deleted every 256 entries
//!   (the checkpoint; the saved page it writes is not modelled);
//! * `bare`: env + idx only;
//! * `segment`: envelopes appended to 4 MiB segment files beside sled in blocks of at most
//!   4 KiB sealed once (nonce 24 + tag 16 per block); the open block is rewritten in place at
//!   each commit, then the segment is fsynced before sled's flush. sled holds only
//!   tag ‖ id (48 B) → segment u32 ‖ block offset u32 ‖ offset u16 ‖ length u16; no idx;
//! * `segment+m`: `segment` plus the m/ records;
//! * `segment-id`: `segment` with conversation number u16 ‖ id (34 B) → segment u16 ‖ block
//!   offset u32 ‖ offset u16 ‖ length u16 (10 B);
//! * `segment-short`, `segment-short+m`: `segment` with a 20-byte index record: conversation
//!   number u16 ‖ id\[..8\] → segment u16 ‖ block offset u32 ‖ offset u16 ‖ length u16 (a
//!   lookup confirms the whole id against the envelope read; a prefix collision would take
//!   a longer key);
//! * `frames`: `segment-short`, but each commit seals what it appended as a new frame
//!   (nonce 24 + tag 16 per commit, at most 4 KiB) after the last one: nothing written is
//!   ever rewritten;
//! * `frames-id`: `frames` with the index of `segment-id`; `frames-id6`: the same with a
//!   6-byte location, segment u16 ‖ frame offset u32 (a read finds the envelope among the
//!   frame's length-prefixed entries);
//! * `chunk`: envelopes packed per (tag, chunk of 64) in one sled value (tag ‖ chunk u32 →
//!   sealed list), the open chunk rewritten at each append; idx id → tag ‖ chunk;
//! * `seqkey`: env keyed tag ‖ arrival seq u64 (24 B, appends at each tag's end) and idx
//!   id → tag ‖ seq;
//! * `arrival`: env keyed by one global arrival seq u64 (8 B; every insert at the tree's end),
//!   no idx: what sled costs for pure appends;
//! * `batch30`: `today` with a group commit every 30 messages instead of 3;
//! * `compacted`: `today`, then every tree copied into a fresh database (`Db::export` /
//!   `Db::import`), the size of the copy;
//! * `no-m`: `today` without the m/ records (own messages' envelope ids kept with the page);
//! * `no-m-seq`: `no-m` with the journal keyed by one global sequence: `l/` ‖ seq u64 BE
//!   (10 B) → conversation ‖ page u32 ‖ envelope id (52 B, sealed: 92 B), each page's
//!   entries deleted at its checkpoint as in `today` (the node after issue 11's sync part);
//! * `no-m-batch`: `no-m-seq` with one journal record per group commit (key `l/` ‖ commit
//!   seq u64 BE → the commit's entries, 52 B each, sealed once), deleted once every entry in
//!   it is checkpointed.
//!
//! Sizes are the apparent sizes of every file in the database directory (and the segment
//! files), divided by N.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Envelope bytes before sealing at rest (268 sealed − nonce 24 − tag 16).
const ENV: usize = 228;
/// Sealing at rest adds a nonce and a tag to each sealed value.
const SEAL: usize = 40;
const BLOCK: usize = 4096;
const SEGMENT: u64 = 4 << 20;
const CHUNK: u64 = 64;
const JOURNAL_MAX: u32 = 256;

fn open(dir: &Path, mode: sled::Mode, seg: usize) -> sled::Db {
    sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(64 << 20)
        .mode(mode)
        .segment_size(seg)
        .open()
        .expect("sled opens")
}

/// Apparent size of every file under `p`.
fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).expect("read dir") {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn run(name: &str, n: u64, parts: &[&str], mode: sled::Mode, seg: usize) {
    let has = |p: &str| parts.contains(&p);
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = open(dir.path(), mode, seg);
    let env = db.open_tree("env").expect("tree");
    let idx = db.open_tree("idx").expect("tree");
    let meta = db.open_tree("meta").expect("tree");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut written = 0u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let conv = (i % 100) as u8;
        let mut k = [0u8; 48];
        k[0] = conv;
        k[16..24].copy_from_slice(&x.to_be_bytes());
        env.insert(k, vec![7u8; 268]).expect("insert");
        written += 316;
        if has("idx") {
            idx.insert(&k[16..48], &k[..16]).expect("insert");
            written += 48;
        }
        if has("m") {
            meta.insert(m_key(conv, i), vec![1u8; 72]).expect("insert");
            written += 124;
        }
        if has("j") {
            let mut jk = b"j/".to_vec();
            jk.push(conv);
            jk.extend_from_slice(&[0; 19]);
            jk.extend_from_slice(&i.to_be_bytes());
            meta.insert(jk, vec![1u8; 72]).expect("insert");
            written += 102;
        }
        if has("h") {
            meta.insert(b"h", vec![2u8; 48]).expect("insert");
            meta.insert(b"h", vec![3u8; 48]).expect("insert");
            written += 98;
        }
        if i % 3 == 0 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    let d = db.size_on_disk().expect("size");
    println!(
        "| {name} | {} | {} | {:.2} |",
        written / n,
        d / n,
        d as f64 / written as f64
    );
}

fn m_key(conv: u8, i: u64) -> Vec<u8> {
    let mut mk = b"m/".to_vec();
    mk.push(conv);
    mk.extend_from_slice(&[0; 19]);
    mk.extend_from_slice(format!("{i:016x}{conv:016x}").as_bytes());
    mk
}

/// One message of the fill: its conversation and a random 64-bit part of its id.
struct Msg {
    conv: u8,
    id: [u8; 32],
}

fn messages(n: u64) -> Vec<Msg> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&x.to_be_bytes());
            id[8..16].copy_from_slice(&i.to_be_bytes());
            Msg {
                conv: (i % 100) as u8,
                id,
            }
        })
        .collect()
}

fn tag(conv: u8) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = conv;
    t
}

/// The segment files: append-only, blocks of at most [`BLOCK`] bytes sealed once.
struct Segments {
    dir: std::path::PathBuf,
    file: File,
    number: u32,
    /// Where the open block starts in the current segment.
    block_at: u64,
    /// The open block's plaintext.
    open: Vec<u8>,
    dirty: bool,
    /// Seal what each commit appended as its own frame instead of rewriting the open block.
    frames: bool,
}

impl Segments {
    fn new(dir: &Path, frames: bool) -> Self {
        let dir = dir.join("segments");
        std::fs::create_dir_all(&dir).expect("segment dir");
        Segments {
            file: Self::create(&dir, 0),
            dir,
            number: 0,
            block_at: 0,
            open: Vec::new(),
            dirty: false,
            frames,
        }
    }

    fn create(dir: &Path, number: u32) -> File {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join(format!("{number:08}")))
            .expect("segment file")
    }

    /// Appends one envelope; returns its location value (12 B).
    fn append(&mut self, bytes: &[u8]) -> [u8; 12] {
        if SEAL + self.open.len() + 2 + bytes.len() > BLOCK {
            self.write_open();
            if !self.frames {
                self.block_at += (SEAL + self.open.len()) as u64;
                self.open.clear();
            }
            if self.block_at + BLOCK as u64 > SEGMENT {
                self.file.sync_data().expect("fsync");
                self.number += 1;
                self.file = Self::create(&self.dir, self.number);
                self.block_at = 0;
            }
        }
        let mut loc = [0u8; 12];
        loc[..4].copy_from_slice(&self.number.to_be_bytes());
        loc[4..8].copy_from_slice(&(self.block_at as u32).to_be_bytes());
        loc[8..10].copy_from_slice(&(self.open.len() as u16).to_be_bytes());
        loc[10..].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.open
            .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.open.extend_from_slice(bytes);
        self.dirty = true;
        loc
    }

    /// Writes the open block, sealed: a fresh nonce, the plaintext, a tag (stand-in bytes).
    fn write_open(&mut self) {
        if !self.dirty {
            return;
        }
        let mut sealed = vec![9u8; 24];
        sealed.extend_from_slice(&self.open);
        sealed.extend_from_slice(&[8u8; 16]);
        self.file
            .seek(SeekFrom::Start(self.block_at))
            .expect("seek");
        self.file.write_all(&sealed).expect("write");
        self.dirty = false;
        if self.frames {
            self.block_at += sealed.len() as u64;
            self.open.clear();
        }
    }

    /// Makes every appended envelope durable (before sled's flush).
    fn commit(&mut self) {
        self.write_open();
        self.file.sync_data().expect("fsync");
    }
}

/// What one layout cost, per message of the fill.
struct Outcome {
    written: u64,
    disk: u64,
    /// Of `disk`, the segment files.
    segments: u64,
    after_delete: u64,
}

fn layout(name: &str, n: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = open(dir.path(), sled::Mode::HighThroughput, 512 << 10);
    let env = db.open_tree("env").expect("tree");
    let idx = db.open_tree("idx").expect("tree");
    let meta = db.open_tree("meta").expect("tree");
    let msgs = messages(n);
    let every = if name == "batch30" { 30 } else { 3 };
    let today = matches!(name, "today" | "batch30" | "compacted");
    // The journal without m/: per-conversation keys (`no-m`), one global sequence
    // (`no-m-seq`), or one record per group commit (`no-m-batch`).
    let journal_only = matches!(name, "no-m" | "no-m-seq" | "no-m-batch");
    // `no-m-seq`: each conversation's live journal seqs; `no-m-batch`: each conversation's
    // live commit records and the entries each record still holds.
    let mut seqs: Vec<Vec<u64>> = vec![Vec::new(); 100];
    let mut batch_of: Vec<Vec<u64>> = vec![Vec::new(); 100];
    let mut batch_live: std::collections::BTreeMap<u64, u32> = Default::default();
    let mut open_batch: Vec<u8> = Vec::new();
    let mut commit_no = 0u64;
    let mut segments = (name.starts_with("segment") || name.starts_with("frames"))
        .then(|| Segments::new(dir.path(), name.starts_with("frames")));
    let mut journal = [0u32; 100];
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new(); 100];
    let mut chunk_no = [0u32; 100];
    let mut written = 0u64;
    // Where each envelope's record is, for the deletion pass.
    let mut keys: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let i = i as u64;
        let t = tag(m.conv);
        let c = usize::from(m.conv);
        match name {
            "segment" | "segment+m" => {
                let s = segments.as_mut().expect("segments");
                let loc = s.append(&[7u8; ENV]);
                let k = [&t[..], &m.id].concat();
                env.insert(&k, &loc).expect("insert");
                written += (ENV + 2) as u64 + 48 + 12;
                keys.push((k, Vec::new()));
            }
            "segment-short" | "segment-short+m" | "frames" => {
                let s = segments.as_mut().expect("segments");
                let loc = s.append(&[7u8; ENV]);
                // Conversation number u16 ‖ id[..8] → segment u16 ‖ block u32 ‖ offset u16
                // ‖ length u16.
                let k = [&[0, m.conv][..], &m.id[..8]].concat();
                let v = [&loc[2..4], &loc[4..]].concat();
                env.insert(&k, v).expect("insert");
                written += (ENV + 2) as u64 + 10 + 10;
                keys.push((k, Vec::new()));
            }
            "segment-id" | "frames-id" | "frames-id6" => {
                let s = segments.as_mut().expect("segments");
                let loc = s.append(&[7u8; ENV]);
                // Conversation number u16 ‖ id → segment u16 ‖ block u32 ‖ offset u16
                // ‖ length u16 (`frames-id6`: segment u16 ‖ frame offset u32).
                let k = [&[0, m.conv][..], &m.id[..]].concat();
                let v = if name == "frames-id6" {
                    [&loc[2..4], &loc[4..8]].concat()
                } else {
                    [&loc[2..4], &loc[4..]].concat()
                };
                written += (ENV + 2 + 34 + v.len()) as u64;
                env.insert(&k, v).expect("insert");
                keys.push((k, Vec::new()));
            }
            "chunk" => {
                let open = &mut chunks[c];
                open.extend_from_slice(&(ENV as u16).to_be_bytes());
                open.extend_from_slice(&[7u8; ENV]);
                let k = [&t[..], &chunk_no[c].to_be_bytes()].concat();
                let mut v = vec![9u8; 24];
                v.extend_from_slice(open);
                v.extend_from_slice(&[8u8; 16]);
                written += (k.len() + v.len()) as u64;
                env.insert(&k, v).expect("insert");
                idx.insert(m.id, &k[..]).expect("insert");
                written += 32 + 20;
                if open.len() as u64 >= CHUNK * (ENV as u64 + 2) {
                    open.clear();
                    chunk_no[c] += 1;
                }
                keys.push((Vec::new(), m.id.to_vec()));
            }
            "arrival" => {
                let k = i.to_be_bytes();
                env.insert(k, vec![7u8; ENV + SEAL]).expect("insert");
                written += 8 + 268;
                keys.push((k.to_vec(), Vec::new()));
            }
            "seqkey" => {
                let k = [&t[..], &i.to_be_bytes()].concat();
                env.insert(&k, vec![7u8; ENV + SEAL]).expect("insert");
                idx.insert(m.id, &k[..]).expect("insert");
                written += 24 + 268 + 32 + 24;
                keys.push((k, m.id.to_vec()));
            }
            _ => {
                let k = [&t[..], &m.id].concat();
                env.insert(&k, vec![7u8; ENV + SEAL]).expect("insert");
                idx.insert(m.id, &t).expect("insert");
                written += 316 + 48;
                keys.push((k, m.id.to_vec()));
            }
        }
        if today || name.ends_with("+m") {
            meta.insert(m_key(m.conv, i), vec![1u8; 72])
                .expect("insert");
            written += 124;
        }
        if today {
            let mut jk = b"j/".to_vec();
            jk.extend_from_slice(&t);
            jk.extend_from_slice(&[0; 4]);
            jk.extend_from_slice(&i.to_be_bytes());
            meta.insert(jk, vec![1u8; 72]).expect("insert");
            written += 102;
            journal[c] += 1;
            if journal[c] == JOURNAL_MAX {
                // The checkpoint: the page's journal is deleted.
                let mut p = b"j/".to_vec();
                p.extend_from_slice(&t);
                for k in meta.scan_prefix(&p).keys() {
                    meta.remove(k.expect("key")).expect("remove");
                }
                journal[c] = 0;
            }
        }
        if journal_only {
            let entry = [&t[..], &[0u8; 4], &m.id].concat();
            match name {
                "no-m" => {
                    let jk = [&b"j/"[..], &t, &[0; 4], &i.to_be_bytes()].concat();
                    meta.insert(jk, vec![1u8; 72]).expect("insert");
                    written += 102;
                }
                "no-m-seq" => {
                    let jk = [&b"l/"[..], &i.to_be_bytes()].concat();
                    meta.insert(jk, vec![1u8; 52 + SEAL]).expect("insert");
                    written += 10 + 92;
                    seqs[c].push(i);
                }
                _ => {
                    open_batch.extend_from_slice(&entry);
                    batch_of[c].push(commit_no);
                    *batch_live.entry(commit_no).or_default() += 1;
                }
            }
            journal[c] += 1;
            if journal[c] == JOURNAL_MAX {
                match name {
                    "no-m" => {
                        let p = [&b"j/"[..], &t].concat();
                        for k in meta.scan_prefix(&p).keys() {
                            meta.remove(k.expect("key")).expect("remove");
                        }
                    }
                    "no-m-seq" => {
                        for s in seqs[c].drain(..) {
                            meta.remove([&b"l/"[..], &s.to_be_bytes()].concat())
                                .expect("remove");
                        }
                    }
                    _ => {
                        for b in batch_of[c].drain(..) {
                            let live = batch_live.get_mut(&b).expect("live batch");
                            *live -= 1;
                            if *live == 0 {
                                batch_live.remove(&b);
                                if b < commit_no {
                                    meta.remove([&b"l/"[..], &b.to_be_bytes()].concat())
                                        .expect("remove");
                                }
                            }
                        }
                    }
                }
                journal[c] = 0;
            }
        }
        if i.is_multiple_of(every) {
            if name == "no-m-batch" && !open_batch.is_empty() {
                if batch_live.contains_key(&commit_no) {
                    let v = [&open_batch[..], &[1u8; SEAL]].concat();
                    written += 10 + v.len() as u64;
                    meta.insert([&b"l/"[..], &commit_no.to_be_bytes()].concat(), v)
                        .expect("insert");
                }
                open_batch.clear();
                commit_no += 1;
            }
            if let Some(s) = segments.as_mut() {
                s.commit();
            }
            db.flush().expect("flush");
        }
    }
    if let Some(s) = segments.as_mut() {
        s.commit();
    }
    db.flush().expect("flush");
    let disk = if name == "compacted" {
        let copy = tempfile::tempdir().expect("temporary directory");
        let fresh = open(copy.path(), sled::Mode::HighThroughput, 512 << 10);
        fresh.import(db.export());
        fresh.flush().expect("flush");
        let d = dir_size(copy.path());
        drop(fresh);
        d
    } else {
        dir_size(dir.path())
    };
    // Delete 10% of the envelopes, chosen by id (every conversation loses some).
    for (j, (m, (k, id))) in msgs.iter().zip(&keys).enumerate() {
        if m.id[7] % 10 != 0 {
            continue;
        }
        if !k.is_empty() {
            env.remove(k).expect("remove");
        }
        if !id.is_empty() {
            idx.remove(id).expect("remove");
        }
        if j % 3 == 0 {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    let after = dir_size(dir.path());
    let seg_dir = dir.path().join("segments");
    let segments = if seg_dir.exists() {
        dir_size(&seg_dir)
    } else {
        0
    };
    Outcome {
        written: written / n,
        disk: disk / n,
        segments: segments / n,
        after_delete: after / n,
    }
}

const LAYOUTS: &[&str] = &[
    "today",
    "bare",
    "segment",
    "segment+m",
    "segment-id",
    "segment-short",
    "segment-short+m",
    "frames",
    "frames-id",
    "frames-id6",
    "chunk",
    "seqkey",
    "arrival",
    "batch30",
    "compacted",
    "no-m",
    "no-m-seq",
    "no-m-batch",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let n = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000u64);
    if let Some(which) = args.next() {
        let names: Vec<&str> = if which == "layouts" {
            LAYOUTS.to_vec()
        } else if let Some(l) = LAYOUTS.iter().find(|l| **l == which) {
            vec![*l]
        } else {
            eprintln!(
                "unknown layout {which}; one of: layouts {}",
                LAYOUTS.join(" ")
            );
            std::process::exit(2);
        };
        println!("{n} messages");
        println!(
            "| layout | written B/msg | on disk B/msg | of which segment files | after deleting 10% B/msg | seconds |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for name in names {
            if name == "chunk" && n > 50_000 && which == "layouts" {
                // It writes ~7 KB per message: 200,000 would need 1.4 GB.
                println!("| chunk | (skipped above 50,000: run it alone) | | | | |");
                continue;
            }
            let t = std::time::Instant::now();
            let o = layout(name, n);
            println!(
                "| {name} | {} | {} | {} | {} | {:.0} |",
                o.written,
                o.disk,
                o.segments,
                o.after_delete,
                t.elapsed().as_secs_f64()
            );
        }
        return;
    }
    use sled::Mode::{HighThroughput, LowSpace};
    let ht = HighThroughput;
    println!("{n} messages");
    println!("| records | written B/msg | on disk B/msg | disk / written |");
    println!("|---|---:|---:|---:|");
    run("env", n, &[], ht, 512 << 10);
    run("env + idx", n, &["idx"], ht, 512 << 10);
    run("env + m", n, &["m"], ht, 512 << 10);
    run("env + j", n, &["j"], ht, 512 << 10);
    run("env + h", n, &["h"], ht, 512 << 10);
    run(
        "all (the node today)",
        n,
        &["idx", "m", "j", "h"],
        ht,
        512 << 10,
    );
    run(
        "all, LowSpace",
        n,
        &["idx", "m", "j", "h"],
        LowSpace,
        512 << 10,
    );
    run(
        "all, 64 KiB segments",
        n,
        &["idx", "m", "j", "h"],
        ht,
        64 << 10,
    );
    run(
        "all, 2 MiB segments",
        n,
        &["idx", "m", "j", "h"],
        ht,
        2 << 20,
    );
}
