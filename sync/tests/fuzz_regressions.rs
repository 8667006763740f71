//! Inputs the fuzzers found (fuzz/fuzz_targets), replayed on every test run through every
//! decoder. Each must give an error or a value, and no panic may escape.

use vaarta_sync::conversation::Invitation;
use vaarta_sync::envelope::Envelope;
use vaarta_sync::membership::ControlOp;

#[test]
fn replay_fuzz_crashers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        let r = std::panic::catch_unwind(|| {
            let _ = Envelope::decode(&data);
            let _ = ControlOp::decode(&data);
            let _ = Invitation::decode(&data);
            let _ = vaarta_sync::org::Chain::decode(&data);
            let _ = <vaarta_sync::org::Revocation as vaarta_sync::org::Record>::decode(&data);
            // Automerge itself may panic on such input; parse_change turns that into Err.
            let _ = vaarta_sync::page::parse_change(&data);
            // A signed export: as it is, and re-signed around the input as its document and
            // as a signed change, so the input reaches the Automerge loader and the change
            // decoder behind a valid exporter signature.
            let _ = vaarta_sync::export::verify(&data);
            for bytes in resigned_exports(&data) {
                assert!(vaarta_sync::export::verify(&bytes).is_err());
            }
        });
        assert!(r.is_ok(), "{} escaped a panic", path.display());
        n += 1;
    }
    assert!(n >= 1, "the regression corpus is empty");
}

/// Exports signed by a fixed key that carry `data` as their document, and as the payload of
/// a signed change.
fn resigned_exports(data: &[u8]) -> Vec<Vec<u8>> {
    use vaarta_sync::envelope::SignedContent;
    use vaarta_sync::export::{Header, write};
    use vaarta_sync::identity::Identity;
    use vaarta_sync::ids::ConversationId;
    let me = Identity::from_seed([9; 32]);
    let header = Header {
        exporter: me.device_id(),
        created_ms: 1,
        conversation: ConversationId([1; 16]),
    };
    let signed = SignedContent {
        header: vec![2, 0],
        salt: [0; 12],
        signer: me.device_id(),
        payload: data.to_vec(),
        signature: [0; 64],
    };
    let mut out = Vec::new();
    if !data.is_empty() {
        out.extend(write(&header, data, &[], &me));
    }
    out.extend(write(&header, b"x", &[signed], &me));
    out
}
