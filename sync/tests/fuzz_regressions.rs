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
        });
        assert!(r.is_ok(), "{} escaped a panic", path.display());
        n += 1;
    }
    assert!(n >= 1, "the regression corpus is empty");
}
