//! Sneakernet with real `vaarta` processes on three homes that never link (issue 16): A
//! exports, B (not a member) imports and re-exports for a relay, C imports and shows A's
//! messages; a tampered or truncated bundle is refused with nothing taken and the node
//! keeps running; importing twice changes nothing.

use vaarta_tests::Node;

fn up_alone(n: &mut Node) {
    // No peers, no mDNS: nothing to link with.
    n.up_loopback(&[]);
}

#[test]
fn three_nodes_that_never_link_pass_messages_on_files() {
    let mut a = Node::init("a");
    let mut b = Node::init("b");
    let mut c = Node::init("c");
    c.accept(&a);
    let conv = a
        .ok(&["conv", "create", "camp", "--member", &c.device_id()])
        .trim()
        .to_string();
    for n in [&mut a, &mut b, &mut c] {
        up_alone(n);
    }
    let sent: Vec<String> = (0..5).map(|i| format!("boat {i} leaves at dawn")).collect();
    for m in &sent {
        a.ok(&["send", &conv, m]);
    }
    let dir = tempfile::tempdir().unwrap();
    let from_a = dir.path().join("from-a.vbundle");
    let from_b = dir.path().join("from-b.vbundle");
    let out = a.ok(&["bundle", "export", from_a.to_str().unwrap()]);
    assert!(out.contains("wrote"), "{out}");

    // B carries what it cannot read.
    let r = b.cli(&["bundle", "import", from_a.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains(" 0 refused"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("importing:"),
        "no progress on stderr"
    );
    assert!(b.bodies(&conv).is_empty());
    b.ok(&["bundle", "export", "--for-relay", from_b.to_str().unwrap()]);

    // A tampered and a truncated bundle: refused, nothing taken, the node keeps running.
    let good = std::fs::read(&from_b).unwrap();
    let bad = dir.path().join("bad.vbundle");
    let mut t = good.clone();
    t[good.len() / 2] ^= 0x20;
    std::fs::write(&bad, &t).unwrap();
    let r = c.cli(&["bundle", "import", bad.to_str().unwrap()]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("nothing taken"), "{err}");
    std::fs::write(&bad, &good[..good.len() - 10]).unwrap();
    let r = c.cli(&["bundle", "import", bad.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(c.bodies(&conv).is_empty(), "a refused bundle left messages");
    assert_eq!(c.json(&["id"])["online"], true);

    // The good one: C shows A's messages.
    let first = c.json(&["bundle", "import", from_b.to_str().unwrap()]);
    assert_eq!(first["refused"], 0, "{first}");
    assert_eq!(c.bodies(&conv), sent);
    // Twice: nothing new.
    let second = c.json(&["bundle", "import", from_b.to_str().unwrap()]);
    assert_eq!(second["new"], 0, "{second}");
    assert_eq!(
        second["already_held"], first["new"],
        "{first} then {second}"
    );
    assert_eq!(c.bodies(&conv), sent);

    // Never linked.
    for n in [&a, &b, &c] {
        assert_eq!(n.linked(), 0, "{} linked", n.name);
    }
}

#[test]
fn a_bundle_is_written_and_read_with_no_node_running() {
    let a = Node::init("a");
    let c = Node::init("c");
    c.accept(&a);
    let conv = a
        .ok(&["conv", "create", "camp", "--member", &c.device_id()])
        .trim()
        .to_string();
    a.ok(&["send", &conv, "offline hello"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b.vbundle");
    a.ok(&[
        "bundle",
        "export",
        "--for",
        &c.device_id(),
        "--conversation",
        &conv,
        f.to_str().unwrap(),
    ]);
    c.ok(&["bundle", "import", f.to_str().unwrap()]);
    assert_eq!(c.bodies(&conv), vec!["offline hello".to_string()]);
    // No temporary file is left beside the bundle.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
