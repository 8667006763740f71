//! Every decoder that takes bytes from a peer: envelopes (and opening them), membership
//! operations, invitations, link frames, page change lists (raw and in wire form). None may panic or allocate from
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

fn signer() -> vaarta_sync::ids::DeviceId {
    static ID: std::sync::OnceLock<vaarta_sync::ids::DeviceId> = std::sync::OnceLock::new();
    *ID.get_or_init(|| vaarta_sync::identity::Identity::from_seed([1; 32]).device_id())
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    if let Ok(env) = Envelope::decode(data) {
        // The seed's signer (see sync/examples/fuzz_seeds.rs) and a key that is not one, so
        // both the accepting and the refusing paths of `open` are reached.
        let signer = signer();
        let _ = envelope::open(&env, &[7u8; 32], &ConversationId([1; 16]), &mut |h| {
            vec![vaarta_sync::ids::DeviceId([h[0]; 32]), signer]
        });
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
    if let Ok(raw) = vaarta_sync::wirechange::restore(data, &[5u8; 16]) {
        if let Ok(ch) = vaarta_sync::page::parse_change(&raw) {
            // What restores and parses strips back to the same wire bytes.
            assert_eq!(
                vaarta_sync::wirechange::strip(ch.raw_bytes(), &[5u8; 16]).as_deref(),
                Ok(data)
            );
        }
    }
});
