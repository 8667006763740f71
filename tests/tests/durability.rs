//! A node killed with SIGKILL right after `vaarta send` returned still has the message after
//! restart, and delivers it.

use std::time::Duration;

use vaarta_tests::{Node, wait_for};

const T: Duration = Duration::from_secs(60);

#[test]
fn sigkill_after_send_loses_nothing() {
    let mut a = Node::init("a");
    let mut b = Node::init("b");
    b.accept(&a);
    let conv = a
        .ok(&["conv", "create", "x", "--member", &b.device_id()])
        .trim()
        .to_string();
    a.up_loopback(&[]);
    for round in 0..5 {
        let text = format!("durable {round}");
        let out = a.ok(&["send", &conv, &text]);
        assert!(out.contains("sent"), "{out}");
        // No grace period at all.
        a.kill9();
        a.up_loopback(&[]);
        assert!(
            a.bodies(&conv).contains(&text),
            "lost '{text}' after SIGKILL"
        );
    }
    b.up_loopback(&[&a.addr("/tcp/")]);
    wait_for("delivery after the crashes", T, || {
        (b.bodies(&conv).len() == 5).then_some(())
    });
}

#[test]
fn sigkill_during_a_stream_of_sends_keeps_every_acknowledged_message() {
    let mut a = Node::init("a");
    let conv = a.ok(&["conv", "create", "x"]).trim().to_string();
    a.up_loopback(&[]);
    // Send from a background thread and kill the node mid-stream; every send that returned
    // success must be there after restart.
    let home = a.home.clone();
    let conv2 = conv.clone();
    let sender = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..200 {
            let text = format!("m{i}");
            let out = std::process::Command::new(vaarta_tests::bin())
                .arg("--home")
                .arg(&home)
                .args(["send", &conv2, &text])
                .output()
                .expect("run");
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sent") {
                acked.push(text);
            } else {
                // The node is gone; later sends would only be saved offline.
                break;
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(400));
    a.kill9();
    let acked = sender.join().expect("sender");
    a.up_loopback(&[]);
    let have = a.bodies(&conv);
    for t in &acked {
        assert!(
            have.contains(t),
            "acknowledged '{t}' was lost ({} acked, {} present)",
            acked.len(),
            have.len()
        );
    }
}
