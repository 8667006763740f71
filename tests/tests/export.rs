//! Signed export with real `vaarta` processes (issue 17): two linked nodes exchange messages
//! (with an edit and a reaction), each exports the conversation, `vaarta verify-export` passes
//! with no home, store or node, the exported messages equal `vaarta log`'s, the document
//! loaded with the standard `@automerge/automerge` npm library in Node shows the same
//! messages, and a tampered file fails with a clear error and a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use vaarta_tests::{Node, bin, nodejs, pair, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// `vaarta verify-export FILE [--json]` run with a home that does not exist and no node:
/// the check needs nothing but the file.
fn verify_export(file: &Path, json: bool) -> Output {
    let nowhere = tempfile::tempdir().unwrap();
    let mut c = Command::new(bin());
    c.env_remove("VAARTA_HOME")
        .arg("--home")
        .arg(nowhere.path().join("no-such-home"))
        .arg("verify-export")
        .arg(file);
    if json {
        c.arg("--json");
    }
    c.output().expect("run vaarta")
}

fn log_lines(n: &Node, conv: &str) -> Vec<Value> {
    n.ok(&["log", conv, "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect()
}

/// The fields a record shows of a message, from `vaarta log --json`, `verify-export --json`
/// or the Node script alike.
fn fields(m: &Value) -> Value {
    let reactions: Vec<Value> = m["reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| serde_json::json!({"by": r["by"], "emoji": r["emoji"]}))
        .collect();
    serde_json::json!({
        "id": m["id"], "author": m["author"], "author_name": m["author_name"],
        "sent_at_ms": m["sent_at_ms"], "body": m["body"], "reply_to": m["reply_to"],
        "precedence": m["precedence"], "expires_at_ms": m["expires_at_ms"],
        "edited_at_ms": m["edited_at_ms"], "deleted": m["deleted"], "reactions": reactions,
    })
}

fn all_fields(v: &[Value]) -> Vec<Value> {
    v.iter().map(fields).collect()
}

fn export(n: &Node, conv: &str, file: &Path) {
    let out = n.ok(&["export", conv, "--out", file.to_str().unwrap()]);
    assert!(out.contains("wrote"), "{out}");
}

fn tampered_fails(good: &[u8], dir: &Path, name: &str, at: usize) {
    let mut t = good.to_vec();
    t[at] ^= 0x04;
    let f = dir.join(format!("{name}.vexport"));
    std::fs::write(&f, &t).unwrap();
    let r = verify_export(&f, false);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "a tampered {name} verified");
    assert!(err.contains("NOT VERIFIED"), "{name}: {err}");
    assert!(
        r.stdout.is_empty(),
        "{name}: printed messages of a bad file"
    );
}

#[test]
fn two_nodes_exchange_messages_and_the_export_verifies_and_equals_the_log() {
    let (a, b, conv) = pair();
    for m in ["boat 1 leaves at dawn", "पानी का स्तर बढ़ रहा है"]
    {
        a.ok(&["send", &conv, m]);
    }
    wait_for("Bhavesh to get Asha's messages", WAIT, || {
        (b.bodies(&conv).len() == 2).then_some(())
    });
    b.ok(&["send", &conv, "seen, leavng now"]);
    let mine = log_lines(&b, &conv)
        .into_iter()
        .find(|m| m["mine"] == true)
        .unwrap();
    b.ok(&[
        "edit",
        &conv,
        mine["id"].as_str().unwrap(),
        "seen, leaving now",
    ]);
    let first = log_lines(&b, &conv)[0]["id"].as_str().unwrap().to_string();
    b.ok(&["react", &conv, &first, "👍"]);
    wait_for(
        "Asha to get Bhavesh's message, edit and reaction",
        WAIT,
        || {
            let l = log_lines(&a, &conv);
            (l.len() == 3
                && l.iter().any(|m| m["body"] == "seen, leaving now")
                && l[0]["reactions"].as_array().is_some_and(|r| r.len() == 1))
            .then_some(())
        },
    );

    let dir = tempfile::tempdir().unwrap();
    for (n, name) in [(&a, "a"), (&b, "b")] {
        let f = dir.path().join(format!("{name}.vexport"));
        export(n, &conv, &f);
        let r = verify_export(&f, true);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["exporter"], n.device_id().as_str());
        let exported = v["messages"].as_array().unwrap().clone();
        let log = log_lines(n, &conv);
        assert_eq!(
            all_fields(&exported),
            all_fields(&log),
            "{name}: export vs log"
        );
        assert_eq!(exported.len(), 3);
        assert_eq!(exported[2]["author"], b.device_id().as_str());
        assert_eq!(exported[2]["body"], "seen, leaving now");
        assert!(exported[2]["edited_at_ms"].is_u64());
        assert_eq!(v["signers"].as_array().unwrap().len(), 2, "{v}");
        // The human form names who wrote what.
        let r = verify_export(&f, false);
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success());
        assert!(text.contains("पानी का स्तर बढ़ रहा है"), "{text}");
        assert!(text.contains(&b.device_id()), "{text}");
        assert!(text.contains("OK: 3 messages"), "{text}");
    }

    // The standard Automerge library in Node shows the same messages as the log.
    let f = dir.path().join("a.vexport");
    if nodejs::node_available() {
        let out = Command::new("node")
            .arg(nodejs::js_dir().join("show-export.mjs"))
            .arg(&f)
            .output()
            .expect("run node");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).expect("json from node");
        assert_eq!(shown["conversation"], conv.as_str());
        assert_eq!(shown["exporter"], a.device_id().as_str());
        assert_eq!(
            all_fields(shown["messages"].as_array().unwrap()),
            all_fields(&log_lines(&a, &conv)),
            "Automerge in Node vs vaarta log"
        );
    }

    // Tampered: a byte of the document, of a signed change, of the signature; truncated.
    let good = std::fs::read(&f).unwrap();
    let doc_len = u32::from_be_bytes(good[67..71].try_into().unwrap()) as usize;
    tampered_fails(&good, dir.path(), "document", 71 + doc_len / 2);
    tampered_fails(&good, dir.path(), "signed change", good.len() - 105 - 20);
    tampered_fails(&good, dir.path(), "signature", good.len() - 1);
    tampered_fails(&good, dir.path(), "exporter key", 20);
    let cut = dir.path().join("cut.vexport");
    std::fs::write(&cut, &good[..good.len() - 30]).unwrap();
    let r = verify_export(&cut, false);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // A file that is not an export at all.
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "boat 1 leaves at dawn\n").unwrap();
    let r = verify_export(&foreign, false);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a Vaarta export"));
}

#[test]
fn an_export_is_written_with_no_node_running() {
    let a = Node::init("a");
    let conv = a.ok(&["conv", "create", "camp"]).trim().to_string();
    a.ok(&["send", &conv, "offline record"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.vexport");
    export(&a, &conv, &f);
    let r = verify_export(&f, true);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["messages"][0]["body"], "offline record");
    assert_eq!(
        all_fields(v["messages"].as_array().unwrap()),
        all_fields(&log_lines(&a, &conv))
    );
    // Owner-only (it holds the messages in the clear), and no temporary file is left.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // An unknown conversation is a clear error.
    let r = a.cli(&["export", "zzzz", "--out", f.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no conversation"));
}
