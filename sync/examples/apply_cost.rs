//! Micro-measurements behind the numbers quoted in `limits.rs` and `compress.rs`:
//! Automerge apply cost against page size and batch size, signing, verification,
//! and zstd level against size. `cargo run --release -p vaarta-sync --example apply_cost`.
use automerge::ActorId;
use std::time::Instant;
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::page::{Draft, Page};

fn per(t: Instant, n: usize) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let mut src = Page::new(0, ActorId::from(&[1u8; 16][..]));
    let mut changes = Vec::new();
    for i in 0..2000u64 {
        let d = Draft {
            body: "x".repeat(115),
            ..Draft::default()
        };
        src.add_message(
            Hlc {
                ms: 1_790_000_000_000 + i,
                counter: 0,
            },
            &d,
        )
        .unwrap();
        changes.push(src.commit().unwrap());
    }
    for n in [100usize, 250, 500, 1000, 2000] {
        let mut dst = Page::new(0, ActorId::from(&[2u8; 16][..]));
        let t = Instant::now();
        for c in &changes[..n] {
            dst.apply(vec![(c.clone(), 1)]).unwrap();
        }
        println!(
            "apply one at a time into a page growing to {n}: {:.1} us/change",
            per(t, n)
        );
    }
    for chunk in [10usize, 100] {
        let mut dst = Page::new(0, ActorId::from(&[2u8; 16][..]));
        let t = Instant::now();
        for c in changes.chunks(chunk) {
            dst.apply(c.iter().map(|c| (c.clone(), 1)).collect())
                .unwrap();
        }
        println!(
            "apply in batches of {chunk} (to 2000): {:.1} us/change",
            per(t, 2000)
        );
    }
    let id = Identity::from_seed([1; 32]);
    let sig = id.sign(b"message");
    let t = Instant::now();
    for _ in 0..2000 {
        id.device_id().verify(b"message", &sig).unwrap();
    }
    println!("verify_strict: {:.1} us", per(t, 2000));
    let t = Instant::now();
    for _ in 0..2000 {
        std::hint::black_box(id.sign(b"message"));
    }
    println!("sign: {:.1} us", per(t, 2000));
    for lvl in [3, 6, 9, 12, 15, 19] {
        let mut c =
            zstd::bulk::Compressor::with_dictionary(lvl, vaarta_sync::compress::DICT_V1).unwrap();
        let t = Instant::now();
        let tot: usize = changes[..1000]
            .iter()
            .map(|ch| c.compress(ch.raw_bytes()).unwrap().len())
            .sum();
        println!(
            "zstd level {lvl} with dictionary: {:.1} us, {:.1} bytes",
            per(t, 1000),
            tot as f64 / 1000.0
        );
    }
}
