//! Three real nodes on loopback, linked by `--peer` only: messages flow, a node that was down
//! catches up, and everything survives restarts.

use std::time::Duration;

use vaarta_tests::{Node, wait_for};

const T: Duration = Duration::from_secs(60);

#[test]
fn three_nodes_by_static_peers_with_downtime_and_restarts() {
    let mut a = Node::init("asha");
    let mut b = Node::init("bhavesh");
    let mut c = Node::init("chitra");
    a.up_loopback(&[]);
    let a_addr = a.addr("/tcp/");
    b.up(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--peer",
        &a_addr,
    ]);
    let b_addr = b.addr("/tcp/");
    let c_args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--peer",
        &a_addr,
        "--peer",
        &b_addr,
    ];
    c.up(&c_args);
    wait_for("all linked", T, || {
        (a.linked() >= 2 && b.linked() >= 2 && c.linked() >= 2).then_some(())
    });

    b.accept(&a);
    c.accept(&a);
    let conv = a
        .ok(&[
            "conv",
            "create",
            "Relief ops",
            "--member",
            &b.device_id(),
            "--member",
            &c.device_id(),
        ])
        .trim()
        .to_string();
    assert_eq!(conv.len(), 26, "a conversation id: {conv}");
    wait_for("members see the conversation", T, || {
        (b.is_member_of(&conv, 3) && c.is_member_of(&conv, 3)).then_some(())
    });

    a.ok(&["send", &conv, "Need boats at ghat 3"]);
    b.ok(&["send", &conv, "नाव भेज रहे हैं", "--precedence", "immediate"]);
    let want = vec![
        "Need boats at ghat 3".to_string(),
        "नाव भेज रहे हैं".to_string(),
    ];
    for n in [&a, &b, &c] {
        wait_for("messages everywhere", T, || {
            (n.bodies(&conv) == want).then_some(())
        });
    }

    // C goes down; A and B write; C comes back and catches up.
    c.stop();
    a.ok(&["send", &conv, "Water rising", "--precedence", "flash"]);
    b.ok(&["send", &conv, "Moving to school"]);
    c.up(&c_args);
    wait_for("C catches up", T, || {
        (c.bodies(&conv).len() == 4).then_some(())
    });

    // Everyone restarts; history survives.
    for n in [&mut a, &mut b, &mut c] {
        n.stop();
    }
    for n in [&a, &b, &c] {
        // Offline reads work too (no node running).
        assert_eq!(
            n.bodies(&conv).len(),
            4,
            "{} after restart: {:?}",
            n.name,
            n.bodies(&conv)
        );
    }
    a.up_loopback(&[]);
    assert_eq!(a.bodies(&conv).len(), 4);
    let log = a.ok(&["log", &conv]);
    assert!(log.contains("[FLASH] asha: Water rising"), "{log}");
    assert!(log.contains("[IMMEDIATE] bhavesh: नाव भेज रहे हैं"), "{log}");
}

#[test]
fn offline_send_leaves_with_the_next_up_and_cli_errors_are_one_line() {
    let mut a = Node::init("a");
    let mut b = Node::init("b");
    // Nothing running: commands open the store directly.
    b.accept(&a);
    let conv = a
        .ok(&["conv", "create", "x", "--member", &b.device_id()])
        .trim()
        .to_string();
    let out = a.ok(&["send", &conv, "written offline"]);
    assert!(out.contains("saved"), "{out}");
    a.up_loopback(&[]);
    b.up_loopback(&[&a.addr("/tcp/")]);
    wait_for("delivery", T, || {
        (b.bodies(&conv) == vec!["written offline".to_string()]).then_some(())
    });
    wait_for("receipt", T, || {
        let out = a.ok(&["log", &conv, "--json"]);
        out.contains("\"state\":\"delivered\"").then_some(())
    });

    // Errors: non-zero exit, one clear line.
    for args in [
        vec!["send", "nosuchconv", "x"],
        vec!["conv", "add", &conv, "not-a-device"],
        vec!["send", &conv, "x", "--precedence", "urgent"],
        vec!["send", &conv, "x", "--expires", "soon"],
    ] {
        let out = a.cli(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    // init refuses to overwrite.
    let out = a.cli(&["init", "--name", "again"]);
    assert!(!out.status.success());
    // A second `up` on the same home is refused.
    let out = a.cli(&["up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
}
