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
//! `cargo run --release -p vaarta-node --example sled_amplification [N]`

fn run(name: &str, n: u64, parts: &[&str], mode: sled::Mode, seg: usize) {
    let has = |p: &str| parts.contains(&p);
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .cache_capacity(64 << 20)
        .mode(mode)
        .segment_size(seg)
        .open()
        .expect("sled opens");
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
            let mut mk = b"m/".to_vec();
            mk.push(conv);
            mk.extend_from_slice(&[0; 19]);
            mk.extend_from_slice(format!("{i:016x}{conv:016x}").as_bytes());
            meta.insert(mk, vec![1u8; 72]).expect("insert");
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

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000u64);
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
