//! Reconciliation messages from a hostile peer, against a small store.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaarta_sync::ids::{EnvelopeId, Tag};
use vaarta_sync::recon::Session;
use vaarta_sync::store::{MemoryStore, Store};

/// Panics that our code catches on purpose (the Automerge panic boundary) are handled
/// errors, not crashes: silence the abort-on-panic hook so only *uncaught* panics (which
/// libfuzzer-sys still turns into aborts) count as findings.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let mut store = MemoryStore::new();
    for i in 0..40u8 {
        let tag = Tag([i % 3; 16]);
        let _ = store.put_envelope(&tag, &EnvelopeId([i.wrapping_mul(37); 32]), b"x");
    }
    let tags = vec![Tag([0; 16]), Tag([1; 16]), Tag([2; 16])];
    // Split the input into up to four messages of one session.
    let mut s = Session::respond(tags);
    for chunk in data.split(|b| *b == 0xfe).take(4) {
        if s.handle_message(&store, chunk).is_err() {
            break;
        }
        while s.poll_transmit().is_some() {}
        while s.poll_have().is_some() {}
    }
});
