//! The Bluetooth LE test on a real Linux stack (`tests/ble-vm/run.sh`): a QEMU guest with two
//! virtual controllers, bluetoothd and three nodes; A (Bluetooth only) and C (TCP only) talk
//! through B, once over L2CAP and once over GATT.
//!
//! It needs `qemu-system-x86_64`, btvirt (bluez-test-tools), bluetoothd, busybox and a
//! `vaarta` built with `--features ble` (`$VAARTA_BLE_BIN`, else `target/debug/vaarta` if it
//! was built so). Without them it prints `SKIPPED: …`; with `VAARTA_REQUIRE_BLE_VM=1` (CI) it
//! fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn missing() -> Vec<String> {
    let mut m = Vec::new();
    for tool in [
        "qemu-system-x86_64",
        "btvirt",
        "btmgmt",
        "dbus-daemon",
        "busybox",
        "apt-get",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            m.push(tool.to_string());
        }
    }
    if !Path::new("/usr/libexec/bluetooth/bluetoothd").exists() {
        m.push("bluetoothd".into());
    }
    m
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A vaarta binary with Bluetooth: `--ble` is refused by the others with a clear error.
fn ble_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("VAARTA_BLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/vaarta"));
    let home = tempfile::tempdir().ok()?;
    Command::new(&bin)
        .args(["--home"])
        .arg(home.path().join("h"))
        .args(["init", "--name", "probe"])
        .output()
        .ok()?;
    // A Bluetooth build fails here too (no adapter hci-none), after starting to try.
    let out = Command::new("timeout")
        .arg("20")
        .arg(&bin)
        .args(["--home"])
        .arg(home.path().join("h"))
        .args(["up", "--ble", "--ble-adapter", "hci-none", "--no-mdns"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (!text.contains("built without Bluetooth")).then_some(bin)
}

/// Needs the VM tools (else it prints `SKIPPED`, or fails under `VAARTA_REQUIRE_BLE_VM=1`);
/// boots the guest once, both modes, about 7 minutes under emulation.
///
/// NOT YET RELIABLE, so not part of `cargo test --workspace`: it passed 3 of the last 4
/// runs (2026-12-03: two from a fresh clone, the last of them in CI; one in `cargo test`).
/// In the one that failed, data from
/// the peripheral did not reach the central for over 60 s after the controllers connected,
/// so the dialler gave L2CAP up for GATT (`manager::DialConfig::l2cap_grace_ms`) and the
/// L2CAP check saw a GATT link. `.ci/run` runs it with `--ignored` in its own section,
/// reported, not gating (issue 14).
#[test]
#[ignore = "not yet reliable in the QEMU guest (issue 14): run with --ignored"]
fn a_to_c_through_b_over_l2cap_and_gatt_in_a_qemu_guest() {
    let require = std::env::var("VAARTA_REQUIRE_BLE_VM").is_ok_and(|v| v == "1");
    let mut why = missing();
    let bin = ble_binary();
    if bin.is_none() {
        why.push("a vaarta built with --features ble ($VAARTA_BLE_BIN)".into());
    }
    if !why.is_empty() {
        let msg = format!("SKIPPED: the Bluetooth VM test needs {}", why.join(", "));
        assert!(!require, "{msg} (VAARTA_REQUIRE_BLE_VM=1)");
        println!("{msg}");
        return;
    }
    let out = Command::new("bash")
        .arg(root().join("tests/ble-vm/run.sh"))
        .env("VAARTA_BIN", bin.expect("checked"))
        .output()
        .expect("run the harness");
    let console = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("BLE-VM "))
        .collect();
    for l in &checks {
        println!("{l}");
    }
    let failed: Vec<&&str> = checks.iter().filter(|l| l.contains(" FAIL")).collect();
    assert!(
        failed.is_empty() && checks.iter().any(|l| l.starts_with("BLE-VM RESULT PASS")),
        "Bluetooth VM test failed: {failed:?}\n--- console ---\n{console}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "l2cap link-a-b-ble-l2cap PASS",
        "l2cap a-to-c PASS",
        "l2cap c-to-a PASS",
        "l2cap a-linked-to-this-b-over-ble-l2cap PASS",
        "l2cap logs-agree PASS",
        "gatt link-a-b-ble-gatt PASS",
        "gatt a-to-c PASS",
        "gatt c-to-a PASS",
        "gatt a-linked-to-this-b-over-ble-gatt PASS",
        "gatt logs-agree PASS",
    ] {
        assert!(
            checks.iter().any(|l| l.contains(want)),
            "missing check {want}:\n{console}"
        );
    }
}

/// The default build has no Bluetooth: `--ble` (flag or config file) says how to get it and
/// the node does not start.
#[test]
fn up_ble_without_the_feature_says_how_to_rebuild() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().join("h");
    let bin = vaarta_tests::bin();
    let ok = Command::new(&bin)
        .arg("--home")
        .arg(&h)
        .args(["init", "--name", "n"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let up = |extra: &[&str]| {
        Command::new("timeout")
            .arg("30")
            .arg(&bin)
            .arg("--home")
            .arg(&h)
            .args(["up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = up(&["--ble"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("built without Bluetooth: rebuild with --features ble"),
        "{err}"
    );
    std::fs::write(h.join("vaarta.toml"), "ble = true\nble_l2cap = false\n").unwrap();
    let out = up(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("built without Bluetooth"), "{err}");
}
