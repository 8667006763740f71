//! A 5-namespace emulation with real binaries (root only; required in CI): mDNS discovery,
//! impaired links, a cut and a heal, then the invariants: every node converges to the same
//! log, nothing is delivered twice, nothing is lost.

use vaarta_tests::{emulate, netns_with_tools};

#[test]
fn five_namespace_emulation_converges() {
    if !netns_with_tools(&["nft", "tc"]) {
        return;
    }
    let r = emulate::run(&emulate::Config::default());
    println!("{}", serde_json::to_string_pretty(&r.json()).unwrap());
    assert!(r.converged, "nodes did not converge: {:?}", r);
    assert_eq!(r.duplicates, 0);
    assert_eq!(
        r.delivered, r.destinations,
        "every message reached every member"
    );
}
