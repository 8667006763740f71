//! Signed export and verification of a 10,000-message conversation (issue 17): time to write
//! and to verify, the file's size per message, and how it splits between the Automerge
//! document and the signed changes. `cargo run -p vaarta-engine --example export_bench
//! --features testing [--release] [-- MESSAGES]`. Two members write alternately, one
//! envelope per message (a flush after each send); A exports in memory (no file I/O).

use std::time::Instant;

use vaarta_engine::export;
use vaarta_engine::testing::Network;
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut net = Network::new(2);
    net.connect(0, 1);
    net.settle();
    let c = net.nodes[0]
        .create_conversation("bench", History::Shared, net.now)
        .unwrap()
        .0;
    let b = net.nodes[1].device_id();
    let now = net.now;
    net.nodes[0].add_member(&c, b, false, now).unwrap();
    net.settle();
    for i in 0..n {
        let who = i % 2;
        let at = net.now + 1;
        let draft = Draft {
            body: format!("message {i}: water level at the embankment is rising"),
            ..Draft::default()
        };
        net.nodes[who].send_message(&c, draft, at).unwrap();
        net.nodes[who].flush(at).unwrap();
        if i % 100 == 99 {
            net.settle();
        }
    }
    net.settle();
    let shown = net.nodes[0].messages(&c, n + 10).unwrap().len();
    assert_eq!(shown, n);
    let t = Instant::now();
    let x = net.nodes[0].export_conversation(&c, net.now).unwrap();
    let write = t.elapsed();
    let t = Instant::now();
    let v = export::verify(&x.bytes).unwrap();
    let verify = t.elapsed();
    assert_eq!(v.messages.len(), n);
    let doc = export::parse(&x.bytes).unwrap().document.len();
    println!(
        "{n} messages by {} devices, {} signed changes: export (build + self-check) {:.2} s, verify {:.2} s; file {} bytes = {:.1} bytes/message (document {:.1}, signed changes {:.1})",
        v.signers.len(),
        v.signed_changes,
        write.as_secs_f64(),
        verify.as_secs_f64(),
        x.bytes.len(),
        x.bytes.len() as f64 / n as f64,
        doc as f64 / n as f64,
        (x.bytes.len() - doc) as f64 / n as f64,
    );
}
