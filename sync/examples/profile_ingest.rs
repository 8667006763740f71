//! Ingest-only workload for profiling (`perf record cargo run --release --example profile_ingest`).
use vaarta_sync::identity::Identity;
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;
use vaarta_sync::replica::Replica;
use vaarta_sync::sample::Chatter;
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

fn main() {
    let t0 = 1_790_000_000_000;
    let mut chatter = Chatter::new(3);
    let mut a = Replica::open(Identity::from_seed([1; 32]), MemoryStore::new(), [1; 32]).unwrap();
    let mut b = Replica::open(Identity::from_seed([2; 32]), MemoryStore::new(), [2; 32]).unwrap();
    let (c, _) = a.create_conversation("p", History::Shared, t0).unwrap();
    a.add_member(&c, b.device_id(), false, t0).unwrap();
    let mut setup = Vec::new();
    for (t, _) in a.store().tags() {
        a.store()
            .for_each_id(&t, &[0; 32], &mut |id| {
                setup.push(*id);
                true
            })
            .unwrap();
    }
    for id in setup {
        let bytes = a.store().find_envelope(&id).unwrap().unwrap();
        b.ingest(&bytes, t0).unwrap();
    }
    let n = 20_000;
    let ts = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0..n {
        let (_, e) = a
            .send_message(
                &c,
                Draft {
                    body: chatter.message_exact(115),
                    ..Draft::default()
                },
                t0 + i,
            )
            .unwrap();
        sent.push(a.store().find_envelope(&e).unwrap().unwrap());
    }
    eprintln!("send phase {:.2}s", ts.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    for e in &sent {
        b.ingest(e, t0 + n).unwrap();
    }
    eprintln!("ingest {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
}
