//! `cargo bench -p vaarta-sync` — prints the sync-core figures asked for in docs/performance.md:
//! append+seal rate against history length, open+verify+apply rate, envelope sizes and their
//! byte breakdown, and reconciliation cost against the size of the difference.
//!
//! Set `VAARTA_BENCH_QUICK=1` for a short run (history up to 10^5), as CI does to prove the
//! bench still builds and runs.

use std::time::{Duration, Instant};

use vaarta_sync::envelope::{Envelope, SALT_LEN};
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, EnvelopeId, Tag};
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;
use vaarta_sync::recon;
use vaarta_sync::replica::Replica;
use vaarta_sync::sample::Chatter;
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;

fn quick() -> bool {
    std::env::var_os("VAARTA_BENCH_QUICK").is_some()
}

fn replica(n: u8) -> Replica<MemoryStore> {
    Replica::open(Identity::from_seed([n; 32]), MemoryStore::new(), [n; 32]).unwrap()
}

fn draft(body: String) -> Draft {
    Draft {
        body,
        ..Draft::default()
    }
}

/// Builds `history` messages quickly (1,000 per change), then times single sends.
fn append_rate(history: u64, chatter: &mut Chatter) -> (f64, u64) {
    let mut r = replica(1);
    let (c, _) = r.create_conversation("bench", History::Shared, T0).unwrap();
    let mut now = T0;
    for i in 0..history {
        now += 1;
        r.stage_message(&c, draft(chatter.message_exact(115)), now)
            .unwrap();
        if i % 1000 == 999 {
            r.seal_staged(now).unwrap();
        }
    }
    r.seal_staged(now).unwrap();
    r.store_mut().flush().unwrap();
    let n = if quick() { 1000 } else { 5000 };
    let bodies: Vec<String> = (0..n).map(|_| chatter.message_exact(115)).collect();
    let t = Instant::now();
    for b in bodies {
        now += 1;
        r.send_message(&c, draft(b), now).unwrap();
    }
    let el = t.elapsed();
    (n as f64 / el.as_secs_f64(), peak_rss_kb())
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

fn envelopes_of(r: &Replica<MemoryStore>, tag: &Tag) -> Vec<Vec<u8>> {
    let mut ids = Vec::new();
    r.store()
        .for_each_id(tag, &[0; 32], &mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
    ids.iter()
        .map(|i| r.store().find_envelope(i).unwrap().unwrap())
        .collect()
}

fn main() {
    let mut chatter = Chatter::new(7);
    println!("# Vaarta sync core benchmark (one thread)\n");

    // 1. Append + seal against history.
    println!("## append + seal (one message per envelope, 115-byte bodies)\n");
    println!("| history (messages) | append+seal msg/s | peak RSS MiB |");
    println!("|---:|---:|---:|");
    let sizes: &[u64] = if quick() {
        &[1_000, 100_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    for &h in sizes {
        let (rate, rss) = append_rate(h, &mut chatter);
        println!("| {h} | {rate:.0} | {:.0} |", rss as f64 / 1024.0);
    }

    // 2. Open + verify + apply.
    let n = if quick() { 2_000 } else { 20_000 };
    let mut a = replica(1);
    let b = replica(2);
    let (c, _) = a.create_conversation("bench", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    let setup: Vec<Vec<u8>> = a
        .store()
        .tags()
        .iter()
        .flat_map(|(t, _)| envelopes_of(&a, t))
        .collect();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let (_, eid) = a
            .send_message(&c, draft(chatter.message_exact(115)), T0 + 10 + i as u64)
            .unwrap();
        sent.push(a.store().find_envelope(&eid).unwrap().unwrap());
    }
    println!("\n## open + verify + apply (one envelope = one message)\n");
    println!("| how | envelopes | seconds | msg/s |");
    println!("|---|---:|---:|---:|");
    for batch in [1usize, 64] {
        let mut b = replica(2);
        for e in &setup {
            b.ingest(e, T0).unwrap();
        }
        let t = Instant::now();
        for chunk in sent.chunks(batch) {
            let refs: Vec<&[u8]> = chunk.iter().map(|e| e.as_slice()).collect();
            for r in b.ingest_batch(&refs, T0 + 1_000_000) {
                r.result.unwrap();
            }
        }
        let el = t.elapsed();
        let how = if batch == 1 {
            "one at a time".to_string()
        } else {
            format!("batches of {batch} (as the node reads them)")
        };
        println!(
            "| {how} | {n} | {:.2} | {:.0} |",
            el.as_secs_f64(),
            n as f64 / el.as_secs_f64()
        );
        assert_eq!(b.messages(&c, 5).unwrap().len(), 5);
    }

    // 3. Envelope size and its breakdown.
    let sizes: Vec<usize> = sent.iter().map(|e| e.len()).collect();
    let avg = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let env = Envelope::decode(&sent[0]).unwrap();
    let opened = vaarta_sync::replica::open_with(&a, &env).unwrap();
    let header = {
        let mut w = vaarta_sync::codec::Writer::new();
        env.header().encode(&mut w);
        w.len()
    };
    let compressed = opened.payload.len() - 1;
    let raw_change = {
        let mut codec = vaarta_sync::compress::Codec::new();
        let raw = codec.decompress(&opened.payload[1..]).unwrap();
        raw.len() - 2
    };
    println!("\n## envelope bytes for one 115-byte message (chat text)\n");
    println!(
        "average over {} envelopes: {avg:.1} bytes (min {}, max {})\n",
        sizes.len(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap()
    );
    println!("| part | bytes |");
    println!("|---|---:|");
    println!("| cleartext header (version, flags, tag 16, epoch 4) | {header} |");
    println!("| salt (nonce) | {SALT_LEN} |");
    println!(
        "| signer hint (first bytes of the key; the signature covers all 32) | {} |",
        vaarta_sync::envelope::SIGNER_HINT_LEN
    );
    println!("| page number | 1 |");
    println!("| Automerge change, compressed (raw {raw_change}) | {compressed} |");
    println!("| Ed25519 signature | 64 |");
    println!("| Poly1305 tag | 16 |");
    println!("| **total (this envelope)** | **{}** |", sent[0].len());

    // Incompressible text: the worst case.
    let mut r = replica(3);
    let (c3, _) = r.create_conversation("x", History::Shared, T0).unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut worst = 0usize;
    for i in 0..200 {
        let body: String = (0..115)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'!' + (x % 90) as u8) as char
            })
            .collect();
        let (_, e) = r.send_message(&c3, draft(body), T0 + i).unwrap();
        worst += r.store().find_envelope(&e).unwrap().unwrap().len();
    }
    println!(
        "\nrandom printable text (incompressible), 115 bytes: {:.1} bytes per envelope",
        worst as f64 / 200.0
    );

    // 4. 100 messages travelling together.
    for (label, kind) in [("chat text", 0), ("random text", 1)] {
        let mut r = replica(4);
        let (c4, _) = r.create_conversation("x", History::Shared, T0).unwrap();
        let mut payload = 0;
        for i in 0..100 {
            let body = if kind == 0 {
                chatter.message_exact(115)
            } else {
                (0..115)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (b'!' + (x % 90) as u8) as char
                    })
                    .collect()
            };
            payload += body.len();
            r.stage_message(&c4, draft(body), T0 + i).unwrap();
        }
        let e = r.seal_staged(T0 + 200).unwrap();
        let bytes = r.store().find_envelope(&e[0]).unwrap().unwrap().len();
        println!(
            "100 messages in one envelope ({label}): {bytes} bytes for {payload} bytes of text = {:.2}x the payload",
            bytes as f64 / payload as f64
        );
    }

    // 5. Reconciliation cost.
    println!("\n## reconciliation, 100,000 envelopes\n");
    println!("| differences | round trips | bytes A→B | bytes B→A | time |");
    println!("|---:|---:|---:|---:|---:|");
    let tag = Tag([7; 16]);
    let mut base = MemoryStore::new();
    for i in 0..100_000u64 {
        base.put_envelope(
            &tag,
            &EnvelopeId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            b"x",
        )
        .unwrap();
    }
    for d in [0u64, 1, 10, 1_000] {
        let mut bside = base.clone();
        for i in 0..d {
            // Half the differences on each side.
            let id = EnvelopeId(*blake3::hash(&(1_000_000 + i).to_le_bytes()).as_bytes());
            if i % 2 == 0 {
                bside.put_envelope(&tag, &id, b"x").unwrap();
            } else {
                bside
                    .remove_envelope(
                        &tag,
                        &EnvelopeId(*blake3::hash(&(i * 7).to_le_bytes()).as_bytes()),
                    )
                    .unwrap();
            }
        }
        let t = Instant::now();
        let (trips, ab, ba, pa, pb) = recon::run_pair(&[tag], &base, &bside).unwrap();
        let el: Duration = t.elapsed();
        assert_eq!((pa.len() + pb.len()) as u64, d);
        println!(
            "| {d} | {trips} | {ab} | {ba} | {:.1} ms |",
            el.as_secs_f64() * 1000.0
        );
    }
    let _ = (ConversationId([0; 16]), Hlc::default());
    let _ = tag;
}
