//! Bundle export + import of 10,000 messages (issue 16): time, bytes per message, and the
//! bundle's size over the sum of its envelopes. `cargo run -p vaarta-engine --example
//! bundle_bench --features testing [--release] [-- MESSAGES]`. A writes one envelope per
//! message (a flush after each send, as a phone sending one at a time does); B, a member,
//! imports the bundle in memory (no file I/O: the engine's part only).

use std::time::Instant;

use vaarta_engine::bundle::format::MAX_BUNDLE_BYTES;
use vaarta_engine::bundle::{For, Selection};
use vaarta_engine::testing::Network;
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut net = Network::new(2);
    let now = net.now;
    let c = net.nodes[0]
        .create_conversation("bench", History::Shared, now)
        .unwrap()
        .0;
    let b = net.nodes[1].device_id();
    net.nodes[0].add_member(&c, b, false, now).unwrap();
    for i in 0..n {
        let draft = Draft {
            body: format!("message {i}: water level at the embankment is rising"),
            ..Draft::default()
        };
        net.nodes[0]
            .send_message(&c, draft, now + i as u64)
            .unwrap();
        net.nodes[0].flush(now + i as u64).unwrap();
    }
    let sel = Selection {
        conversations: Vec::new(),
        since_ms: 0,
        for_: For::Anyone,
    };
    let t = Instant::now();
    let mut bundle = Vec::new();
    let x = net.nodes[0]
        .export_bundle::<std::convert::Infallible>(
            &sel,
            MAX_BUNDLE_BYTES,
            now + n as u64,
            &mut |b| {
                bundle.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
    let export = t.elapsed();
    let t = Instant::now();
    let (_, tally) = net.nodes[1].import_bundle(&bundle, now + n as u64).unwrap();
    net.nodes[1].flush(now + n as u64).unwrap();
    let import = t.elapsed();
    let shown = net.nodes[1].messages(&c, n + 10).unwrap().len();
    assert_eq!(shown, n, "{tally:?}");
    println!(
        "{n} messages, {} envelopes: export {:.2} s, import {:.2} s; bundle {} bytes = {:.1} bytes/message; bundle / envelopes = {:.4}; import: {} new, {} refused",
        x.records,
        export.as_secs_f64(),
        import.as_secs_f64(),
        x.bytes,
        x.bytes as f64 / n as f64,
        x.bytes as f64 / x.envelope_bytes as f64,
        tally.new,
        tally.refused,
    );
}
