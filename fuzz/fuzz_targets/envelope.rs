//! Every decoder that takes bytes from a peer: envelopes (and opening them), membership
//! operations, invitations, link frames, page change lists. None may panic or allocate from
//! an unchecked length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaarta_sync::conversation::Invitation;
use vaarta_sync::envelope::{self, Envelope};
use vaarta_sync::ids::ConversationId;
use vaarta_sync::membership::ControlOp;

/// Panics that our code catches on purpose (the Automerge panic boundary) are handled
/// errors, not crashes: silence the abort-on-panic hook so only *uncaught* panics (which
/// libfuzzer-sys still turns into aborts) count as findings.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    if let Ok(env) = Envelope::decode(data) {
        let _ = envelope::open(&env, &[7u8; 32], &ConversationId([1; 16]), &mut |h| vec![vaarta_sync::ids::DeviceId([h[0]; 32])]);
        let _ = env.header().is_expired(0);
    }
    if let Ok(op) = ControlOp::decode(data) {
        assert_eq!(ControlOp::decode(&op.encode()).as_ref(), Ok(&op));
    }
    let _ = Invitation::decode(data);
    if let Ok(f) = vaarta_engine::Frame::decode(data) {
        assert_eq!(f.encode(), data);
    }
    let _ = vaarta_sync::page::parse_change(data);
});
