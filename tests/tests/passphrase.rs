//! A home protected by a passphrase, as a user drives it: the node is started with the
//! passphrase, commands the running node answers need none, commands run while no node is
//! up ask for it clearly, and both key files end up wrapped.

use std::time::Duration;

use vaarta_tests::{Node, wait_for};

const T: Duration = Duration::from_secs(60);
const WRAPPED_STORAGE: [u8; 5] = [b'V', b'S', b'K', b'1', 1];

fn key_files(n: &Node) -> (String, Vec<u8>) {
    (
        std::fs::read_to_string(n.home.join("identity.key")).unwrap(),
        std::fs::read(n.home.join("storage.key")).unwrap(),
    )
}

#[test]
fn a_protected_home_asks_for_its_passphrase_only_where_it_must() {
    let mut a = Node::init("Asha");
    let pass = a.home.with_extension("pass");
    std::fs::write(&pass, "monsoon ghat 3\n").unwrap();
    let pass = pass.to_str().unwrap();
    a.up(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--passphrase-file",
        pass,
    ]);
    // `up` itself waited on `vaarta id` without the passphrase: the running node answers.
    let conv = a.ok(&["conv", "create", "Relief"]).trim().to_string();
    a.ok(&["send", &conv, "boats at ghat 3"]);
    wait_for("the message", T, || {
        (a.bodies(&conv).len() == 1).then_some(())
    });
    let (id, storage) = key_files(&a);
    assert!(id.starts_with("wrapped "), "identity.key wrapped: {id:?}");
    assert_eq!(storage[..5], WRAPPED_STORAGE, "storage.key wrapped");
    a.stop();

    // No node up: the database must be opened, which takes the passphrase.
    let out = a.cli(&["log", &conv]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("passphrase"), "{err}");
    let wrong = a.home.with_extension("wrong");
    std::fs::write(&wrong, "monsoon ghat 4\n").unwrap();
    let out = a.cli(&["--passphrase-file", wrong.to_str().unwrap(), "log", &conv]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = a.ok(&["--passphrase-file", pass, "log", &conv]);
    assert!(shown.contains("boats at ghat 3"), "{shown}");
}

/// A passphrase given to a command the running node answers changes nothing on disk: the
/// keys are wrapped together, only where the database is opened.
#[test]
fn both_keys_are_wrapped_together_or_not_at_all() {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let pass = a.home.with_extension("pass");
    std::fs::write(&pass, "monsoon\n").unwrap();
    let pass = pass.to_str().unwrap();
    let before = key_files(&a);
    a.ok(&["--passphrase-file", pass, "id"]);
    assert_eq!(key_files(&a), before, "an online command wraps nothing");
    a.stop();
    a.ok(&["--passphrase-file", pass, "conv", "list"]);
    let (id, storage) = key_files(&a);
    assert!(id.starts_with("wrapped "), "{id:?}");
    assert_eq!(storage[..5], WRAPPED_STORAGE);
    let out = a.cli(&["conv", "list"]);
    assert!(!out.status.success(), "now protected");
}
