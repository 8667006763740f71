//! The `vaarta` command as a user drives it: spawned processes against real nodes (or a
//! home with no node running), reading what a terminal or a script would read.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use vaarta_tests::{Node, bin, pair, wait_for};

const T: Duration = Duration::from_secs(60);

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Bug 2: a member's message that holds a newline, a fake header and escape sequences shows
/// as one message of that member, every further line indented, no control character raw.
#[test]
fn log_cannot_be_spoofed_by_a_members_message() {
    let (a, b, conv) = pair();
    spoof_shows_under_its_author(&a, &b, &conv);
}

/// Bhavesh sends a message with a newline, a fake header of Asha's and escape sequences,
/// then Asha a plain one: Asha's `log` shows two messages at column 0, the rest indented and
/// escaped; the JSON form keeps the text exactly.
fn spoof_shows_under_its_author(a: &Node, b: &Node, conv: &str) {
    let before = a.bodies(conv).len();
    let evil = "see below\n2026-12-01 20:28:30  Asha: [FLASH] Cancel the evacuation\n\
                \u{1b}[2J\u{1b}]0;pwned\u{7}";
    b.ok(&["send", conv, evil]);
    wait_for("Bhavesh's message at Asha", T, || {
        (a.bodies(conv).len() == before + 1).then_some(())
    });
    a.ok(&["send", conv, "Boats at ghat 3"]);
    let shown = a.ok(&["log", conv, "--limit", "2"]);
    assert!(
        !shown.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters: {shown:?}"
    );
    let headers: Vec<&str> = shown.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        headers.len(),
        2,
        "one line per message at column 0: {shown}"
    );
    assert!(headers[0].contains("  Bhavesh: see below"), "{shown}");
    assert!(headers[1].contains("  Asha: Boats at ghat 3"), "{shown}");
    let rest: Vec<&str> = shown.lines().filter(|l| l.starts_with(' ')).collect();
    assert_eq!(
        rest,
        [
            "    | 2026-12-01 20:28:30  Asha: [FLASH] Cancel the evacuation",
            "    | \\u{1b}[2J\\u{1b}]0;pwned\\u{7}"
        ]
    );
    // The JSON form keeps the text exactly as written.
    let msgs: Vec<Value> = a
        .ok(&["log", conv, "--json", "--limit", "2"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs[0]["body"], evil);
}

/// Bug 5: `vaarta log | head -1` (the reader gone before the writer is done) ends quietly
/// with status 0, not a panic (status 101).
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let a = Node::init("Asha");
    let conv = a.ok(&["conv", "create", "pipe"]).trim().to_string();
    for i in 0..3 {
        a.ok(&["send", &conv, &format!("message {i}")]);
    }
    for args in [
        vec!["log", conv.as_str()],
        vec!["conv", "list"],
        vec!["id", "--json"],
    ] {
        closed_stdout_is_quiet(&a, &args);
    }
}

/// `vaarta ARGS | head -0`: the reader closes the pipe before anything is written; the
/// command ends with status 0 and no panic.
fn closed_stdout_is_quiet(a: &Node, args: &[&str]) {
    let mut child = Command::new(bin())
        .arg("--home")
        .arg(&a.home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "vaarta {args:?} with a closed stdout: {} {}",
        out.status,
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// Bug 6: ids that hold `/`, `?`, `#`, `%` or spaces reach the node as one id, online as
/// offline: the same clear error, never a request to another path.
#[test]
fn odd_ids_give_the_same_answer_online_and_offline() {
    let mut a = Node::init("Asha");
    let conv = a.ok(&["conv", "create", "ids"]).trim().to_string();
    let odd = [
        "x/y",
        "x?limit=1",
        "x y",
        "x#y",
        "x%2Fy",
        "..",
        "messages/../x",
    ];
    let answers = |a: &Node| -> Vec<(bool, String)> {
        let mut out = Vec::new();
        for id in odd {
            for args in [
                vec!["conv", "show", id],
                vec!["log", id],
                vec!["send", id, "hello"],
            ] {
                let o = a.cli(&args);
                out.push((o.status.success(), stderr(&o).trim().to_string()));
            }
        }
        // A message id with a slash, in a real conversation.
        let o = a.cli(&["send", &conv, "hi", "--reply-to", "1/2"]);
        out.push((o.status.success(), stderr(&o).trim().to_string()));
        out
    };
    let offline = answers(&a);
    for (ok, err) in &offline {
        assert!(!ok);
        assert!(
            err.contains("no conversation matches") || err.contains("is not a message id"),
            "{err}"
        );
    }
    a.up_loopback(&[]);
    assert_eq!(answers(&a), offline);
    assert!(a.bodies(&conv).is_empty(), "nothing was sent anywhere");
}

/// Bug 11: SIGHUP (the terminal closed) stops the node cleanly: status 0, api.json removed.
#[test]
fn sighup_stops_the_node_cleanly() {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let pid = a.pid().unwrap();
    let mut child = a.take_child().unwrap();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let st = wait_for("the node to exit", T, || child.try_wait().ok().flatten());
    assert!(st.success(), "SIGHUP: {st}: {}", a.log());
    assert!(!a.home.join("api.json").exists(), "api.json left behind");
}

/// A stand-in for whatever listens on a dead node's port: records every request, answers
/// each with `answer` (a status line and a JSON body).
fn impostor(answer: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            s.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (addr, seen)
}

/// Bug 11: after a crash, api.json names a port that something else holds now. The CLI
/// checks the pid (alive, holding that socket) and the node's identity before it sends the
/// token or any message text.
#[test]
fn a_stale_api_file_is_not_trusted() {
    let a = Node::init("Asha");
    let conv = a.ok(&["conv", "create", "stale"]).trim().to_string();
    std::fs::write(a.home.join("api-token"), "old-token").unwrap();
    let fake = r#"{"device_id": "someone-else", "online": true, "listen": [], "warnings": []}"#;
    // 1. The pid is dead: api.json is stale, the command runs offline, nothing is sent.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    // 2. The pid lives but does not hold the socket (a reused pid).
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    for pid in [dead, other.id()] {
        let (addr, seen) = impostor(fake);
        std::fs::write(
            a.home.join("api.json"),
            format!(r#"{{"addr": "{addr}", "pid": {pid}}}"#),
        )
        .unwrap();
        let o = a.cli(&["send", &conv, "secret plan"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("no node running"),
            "saved offline"
        );
        assert_eq!(*seen.lock().unwrap(), "", "nothing reached the impostor");
    }
    let _ = other.kill();
    let _ = other.wait();
    // 3. The process holds the socket (here: this test) but is not this home's node.
    let (addr, seen) = impostor(fake);
    std::fs::write(
        a.home.join("api.json"),
        format!(r#"{{"addr": "{addr}", "pid": {}}}"#, std::process::id()),
    )
    .unwrap();
    let o = a.cli(&["send", &conv, "secret plan"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("answers as device someone-else"),
        "{}",
        stderr(&o)
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.contains("secret plan") && !seen.contains("POST"),
        "{seen}"
    );
    std::fs::remove_file(a.home.join("api.json")).unwrap();
    assert_eq!(a.bodies(&conv), ["secret plan", "secret plan"]);
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} / {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// Global `--json` on every data command (before or after the subcommand), one JSON value
/// per command (JSON Lines for `log`), and errors as JSON on stderr, usage errors too.
#[test]
fn every_data_command_speaks_json() {
    let (a, b, conv) = pair();
    let bd = b.device_id();
    let run = |args: &[&str]| {
        let o = a.cli(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        json_of(&o)
    };
    assert_eq!(run(&["--json", "id"])["online"], true);
    assert!(run(&["peers", "--json"])["connected"].is_array());
    assert!(run(&["conv", "list", "--json"]).is_array());
    let shown = run(&["conv", "show", &conv, "--json"]);
    assert_eq!(shown["id"], conv.as_str());
    assert_eq!(shown["equivocators"], serde_json::json!([]), "{shown}");
    let added = run(&["conv", "add", &conv, &bd, "--json"]);
    assert_eq!(
        (added["changed"].clone(), added["admin"].clone()),
        (false.into(), false.into())
    );
    let added = run(&["--json", "conv", "add", &conv, &bd, "--admin"]);
    assert_eq!(
        (added["changed"].clone(), added["admin"].clone()),
        (true.into(), true.into())
    );
    // Adding an admin again without a role keeps them admin (it used to demote).
    assert_eq!(run(&["conv", "add", &conv, &bd, "--json"])["admin"], true);
    let sent = run(&["send", &conv, "hello", "--json"]);
    let id = sent["ids"][0].as_str().unwrap().to_string();
    let log = a.ok(&["log", &conv, "--json"]);
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], id.as_str());
    let c2 = run(&["conv", "create", "second", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(run(&["conv", "remove", &conv, &bd, "--json"])["ok"], true);
    // The last admin cannot leave: a JSON error, status 1.
    let o = a.cli(&["conv", "remove", &c2, &a.device_id(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("last admin"),
        "{err}"
    );
    // Usage errors: JSON, status 2.
    let o = a.cli(&["log", &conv, "--limit", "0", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains("0"), "{err}");
    // A fresh home: init --json.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .arg("--home")
        .arg(dir.path().join("h"))
        .args(["--json", "init", "--name", "Chitra"])
        .output()
        .unwrap();
    assert_eq!(json_of(&o)["name"], "Chitra");
}

/// `echo INPUT | vaarta send CONV -`.
fn send_stdin(a: &Node, conv: &str, input: &str) -> std::process::Output {
    let mut child = Command::new(bin())
        .arg("--home")
        .arg(&a.home)
        .args(["send", conv, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A new user's whole path, as one scenario: two homes, `init`, a `vaarta.toml` with a
/// static peer (no `--peer` typed), `up` both, an invitation accepted, text from stdin and
/// from a file, `--json` on every data command (each output parsed; an error under
/// `--json` is JSON), `completions bash`, `man`, `log | head` with the pipe closed, and a
/// member's forged header shown indented under its real author.
#[test]
fn a_new_user_from_init_to_an_unspoofable_log() {
    let (a, mut b, _) = asha_up_and_bhavesh_configured();
    assert_eq!(b.json(&["config"])["settings"]["peers"]["from"], "file");
    b.up(&[]);
    wait_for("Bhavesh linked through the file's peer", T, || {
        (b.linked() >= 1).then_some(())
    });
    // Bhavesh takes Asha's invitations; Asha invites him.
    assert_eq!(b.json(&["invites", "accept", &a.device_id()])["ok"], true);
    let conv = a.json(&["conv", "create", "Flood relief", "--member", &b.device_id()])["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("Bhavesh to join", T, || {
        b.is_member_of(&conv, 2).then_some(())
    });
    // Text from stdin and from a file, each answered with JSON ids.
    let o = send_stdin(&b, &conv, "from stdin\nline two\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let file = b.home.with_extension("msg");
    std::fs::write(&file, "from a file").unwrap();
    let sent = b.json(&["send", &conv, "--file", file.to_str().unwrap()]);
    assert!(sent["ids"][0].is_string(), "{sent}");
    wait_for("both at Asha", T, || {
        (a.bodies(&conv).len() == 2).then_some(())
    });
    assert_eq!(a.bodies(&conv), ["from stdin\nline two\n", "from a file"]);
    // Every data command under --json parses (log as JSON Lines).
    for node in [&a, &b] {
        for args in [
            vec!["id"],
            vec!["peers"],
            vec!["invites"],
            vec!["config"],
            vec!["conv", "list"],
            vec!["conv", "show", conv.as_str()],
        ] {
            let _ = node.json(&args);
        }
        for line in node.ok(&["log", &conv, "--json"]).lines() {
            let _: Value = serde_json::from_str(line).unwrap();
        }
    }
    let o = a.cli(&["conv", "show", "no-such-conversation", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert!(err["error"].is_string(), "{err}");
    // Completions and the man page, from the same binary.
    let o = a.cli(&["completions", "bash"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("vaarta"));
    let o = a.cli(&["man"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH vaarta 1"));
    // `vaarta log | head -1`, the pipe closed early.
    closed_stdout_is_quiet(&a, &["log", &conv]);
    // A forged header and escape sequences from a member.
    spoof_shows_under_its_author(&a, &b, &conv);
}

/// Message text from standard input (`send CONV -`) and from a file, of any size up to the
/// limit (a 1 MB argument fails in the shell with "Argument list too long").
#[test]
fn send_reads_stdin_and_files() {
    let mut a = Node::init("Asha");
    let conv = a.ok(&["conv", "create", "stdin"]).trim().to_string();
    let text = "line one\nदूसरी पंक्ति\n".repeat(1000);
    let send_stdin = |a: &Node, input: &str| send_stdin(a, &conv, input);
    let o = send_stdin(&a, &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = a.home.with_extension("msg");
    std::fs::write(&file, "from a file").unwrap();
    a.up_loopback(&[]);
    a.ok(&["send", &conv, "--file", file.to_str().unwrap()]);
    assert_eq!(a.bodies(&conv), [text.as_str(), "from a file"]);
    // Too big, blank, or a file that is not there: one clear line naming the problem.
    let o = send_stdin(&a, &"x".repeat(70_000));
    assert!(
        stderr(&o).contains("the limit is 65536 bytes (64 KiB)"),
        "{}",
        stderr(&o)
    );
    let o = send_stdin(&a, "  \n ");
    assert!(
        stderr(&o).contains("the message is empty"),
        "{}",
        stderr(&o)
    );
    let o = a.cli(&["send", &conv, "--file", "/nonexistent/msg"]);
    assert!(stderr(&o).contains("/nonexistent/msg"), "{}", stderr(&o));
    let o = a.cli(&["send", &conv]);
    assert_eq!(o.status.code(), Some(2));
}

/// Bugs 4 and 9: out-of-range values are refused with a clear error instead of a silent
/// wrong result (an expiry in the past, one message for --limit 0, --home ignored).
#[test]
fn out_of_range_values_are_refused() {
    let a = Node::init("Asha");
    let conv = a.ok(&["conv", "create", "range"]).trim().to_string();
    for bad in ["0", "0s", "99999999999999999d", "367d"] {
        let o = a.cli(&["send", &conv, "hi", "--expires", bad]);
        assert_eq!(o.status.code(), Some(1), "--expires {bad}");
        assert!(
            stderr(&o).contains("must be between 1s and 366d"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    a.ok(&["send", &conv, "hi", "--expires", "2h"]);
    let m: Value = serde_json::from_str(a.ok(&["log", &conv, "--json"]).trim()).unwrap();
    let left = m["expires_at_ms"].as_u64().unwrap() - m["sent_at_ms"].as_u64().unwrap();
    assert!((7_199_000..=7_201_000).contains(&left), "{m}");
    for limit in ["0", "100001"] {
        assert_eq!(
            a.cli(&["log", &conv, "--limit", limit]).status.code(),
            Some(2)
        );
    }
    assert_eq!(a.cli(&["bench", "--messages", "0"]).status.code(), Some(2));
    let o = a.cli(&["demo"]);
    assert!(stderr(&o).contains("--home is not used"), "{}", stderr(&o));
}

/// Bug 8: every OS error names its path; "run init" only when there is no identity.
#[test]
fn home_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let vaarta = |home: &std::path::Path, args: &[&str]| {
        Command::new(bin())
            .arg("--home")
            .arg(home)
            .args(args)
            .output()
            .unwrap()
    };
    // A file where the home should be.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for args in [&["init", "--name", "A"][..], &["id"][..]] {
        let o = vaarta(&file, args);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains(file.to_str().unwrap()),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("run `vaarta init"), "{}", stderr(&o));
        assert!(
            !stderr(&o).contains("already has an identity"),
            "{}",
            stderr(&o)
        );
    }
    // A home inside a directory we may not write to (root may write anywhere: use a
    // path under a file, which fails for everyone).
    let below = file.join("home");
    let o = vaarta(&below, &["init", "--name", "A"]);
    assert!(
        stderr(&o).contains(below.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    // An unreadable key file (a directory in its place reads as an error for root too).
    let home = dir.path().join("h");
    std::fs::create_dir_all(home.join("identity.key")).unwrap();
    let o = vaarta(&home, &["id"]);
    assert!(
        stderr(&o).contains(home.join("identity.key").to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("run `vaarta init"), "{}", stderr(&o));
    let o = vaarta(&dir.path().join("none"), &["id"]);
    assert!(stderr(&o).contains("run `vaarta init"), "{}", stderr(&o));
}

/// With no `--home`, no `$VAARTA_HOME` and no `$HOME`, the CLI refuses with a clear line
/// instead of guessing (a relative `./.vaarta`, or another user's home from the password
/// database): nothing is created anywhere.
#[test]
fn without_home_the_cli_asks_for_one() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["id"][..], &["init", "--name", "A"][..], &["up"][..]] {
        let o = Command::new(bin())
            .args(args)
            .env_remove("HOME")
            .env_remove("VAARTA_HOME")
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("set --home or VAARTA_HOME (HOME is not set)"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!cwd.path().join(".vaarta").exists(), "a home in the cwd");
    }
    // An empty $HOME is no home either; `--home` and `$VAARTA_HOME` need none.
    let o = Command::new(bin())
        .arg("id")
        .env("HOME", "")
        .env_remove("VAARTA_HOME")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("(HOME is not set)"), "{}", stderr(&o));
    let o = Command::new(bin())
        .arg("id")
        .env_remove("HOME")
        .env("VAARTA_HOME", cwd.path().join("v"))
        .output()
        .unwrap();
    assert!(stderr(&o).contains("run `vaarta init"), "{}", stderr(&o));
}

/// One raw HTTP/1.1 exchange with a node's API: (status code, body).
fn raw_http(node: &Node, head: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let info: Value =
        serde_json::from_slice(&std::fs::read(node.home.join("api.json")).unwrap()).unwrap();
    let mut s = std::net::TcpStream::connect(info["addr"].as_str().unwrap()).unwrap();
    write!(
        s,
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (status, rest) = answer.split_once("\r\n\r\n").unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, rest.to_string())
}

/// The local API authenticates before it reads a body, refuses foreign Host and Origin
/// headers (DNS rebinding, drive-by requests from web pages), and answers every error,
/// the framework's own included, as {"error": ...}.
#[test]
fn the_api_checks_callers_before_bodies() {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let token = std::fs::read_to_string(a.home.join("api-token")).unwrap();
    let info: Value =
        serde_json::from_slice(&std::fs::read(a.home.join("api.json")).unwrap()).unwrap();
    let host = info["addr"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {}", token.trim());
    let post = "POST /v1/conversations HTTP/1.1";
    let cases: Vec<(String, &str, u16, &str)> = vec![
        // No token: 401 whatever the body (it used to be 415/400/422 first).
        (format!("{post}\r\nHost: {host}"), "not json", 401, "token"),
        (
            format!("{post}\r\nHost: {host}\r\nContent-Type: text/plain"),
            "{}",
            401,
            "token",
        ),
        (
            format!("{post}\r\nHost: {host}\r\nContent-Type: application/json"),
            "{",
            401,
            "token",
        ),
        // Foreign Host or Origin: refused even with the token.
        (
            format!("{post}\r\nHost: evil.example:80\r\n{auth}\r\nContent-Type: application/json"),
            r#"{"title":"x"}"#,
            403,
            "Host",
        ),
        (
            format!(
                "{post}\r\nHost: {host}\r\nOrigin: http://evil.example\r\n{auth}\r\nContent-Type: application/json"
            ),
            r#"{"title":"x"}"#,
            403,
            "origin",
        ),
        // With the token: the framework's rejections as JSON.
        (
            format!("{post}\r\nHost: {host}\r\n{auth}\r\nContent-Type: text/plain"),
            "{}",
            415,
            "Content-Type",
        ),
        (
            format!("{post}\r\nHost: {host}\r\n{auth}\r\nContent-Type: application/json"),
            "{",
            400,
            "JSON",
        ),
        (
            format!("{post}\r\nHost: {host}\r\n{auth}\r\nContent-Type: application/json"),
            "{}",
            422,
            "title",
        ),
        (
            format!("PUT /v1/status HTTP/1.1\r\nHost: {host}\r\n{auth}"),
            "",
            405,
            "method",
        ),
        (
            format!("GET /v1/conversations/x/messages?limit=-1 HTTP/1.1\r\nHost: {host}\r\n{auth}"),
            "",
            400,
            "limit",
        ),
    ];
    for (head, body, status, word) in cases {
        let (code, answer) = raw_http(&a, &head, body);
        let v: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{head}: not JSON ({e}): {answer}"));
        assert_eq!(code, status, "{head}\n{answer}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{answer}"));
        assert!(
            msg.to_lowercase().contains(&word.to_lowercase()),
            "{head}: {msg}"
        );
    }
    // A loopback origin (a local app's page) with the token is served.
    let (code, _) = raw_http(
        &a,
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nOrigin: http://127.0.0.1:9\r\n{auth}"
        ),
        "",
    );
    assert_eq!(code, 200);
}

/// Bug 3: a second node on an address another node holds is refused with a clear error.
/// Paging back through the API (`before=`), as a client scrolls: every message once, in
/// order, across pages, ending with `[]`; `vaarta log --before` the same; and what a caller
/// may get wrong is refused with a clear error, never a crash.
#[test]
fn paging_back_through_the_api_visits_every_message_once() {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let token = std::fs::read_to_string(a.home.join("api-token")).unwrap();
    let info: Value =
        serde_json::from_slice(&std::fs::read(a.home.join("api.json")).unwrap()).unwrap();
    let host = info["addr"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {}", token.trim());
    let conv = a.ok(&["conv", "create", "Paging"]).trim().to_string();
    // 600 messages in batches of 50: more than two pages of 256.
    for batch in 0..12 {
        let msgs: Vec<Value> = (0..50)
            .map(|i| serde_json::json!({"body": format!("b{batch} m{i}")}))
            .collect();
        let (code, answer) = raw_http(
            &a,
            &format!(
                "POST /v1/conversations/{conv}/messages HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Type: application/json"
            ),
            &serde_json::json!({ "messages": msgs }).to_string(),
        );
        assert_eq!(code, 200, "{answer}");
    }
    let get = |query: &str| -> (u16, Value) {
        let (code, answer) = raw_http(
            &a,
            &format!(
                "GET /v1/conversations/{conv}/messages?{query} HTTP/1.1\r\nHost: {host}\r\n{auth}"
            ),
            "",
        );
        let v = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{query}: not JSON ({e}): {answer}"));
        (code, v)
    };
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, all) = get("limit=5000");
    assert_eq!(code, 200);
    let all = ids(&all);
    assert_eq!(all.len(), 600);
    assert!(
        all.iter().any(|id| !id.starts_with("0.")) && all.iter().any(|id| id.starts_with("1.")),
        "the messages span pages: {:?}",
        &all[..3]
    );
    let (_, newest) = get("limit=7");
    let mut seen = ids(&newest);
    loop {
        let (code, older) = get(&format!("limit=7&before={}", seen[0]));
        assert_eq!(code, 200, "{older}");
        let older = ids(&older);
        if older.is_empty() {
            break;
        }
        assert!(older.len() <= 7);
        seen.splice(0..0, older);
    }
    assert_eq!(seen, all);
    // The CLI pages back the same way.
    let pivot = &all[300];
    let log = a.ok(&["log", &conv, "--before", pivot, "--limit", "3", "--json"]);
    let logged: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(logged, all[297..300]);
    let refused = a.cli(&["log", &conv, "--before", "nonsense"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("message id"),
        "{}",
        stderr(&refused)
    );
    // What a caller may get wrong: a clear error each, and the node keeps answering.
    let (_, key) = pivot.split_once('.').unwrap();
    let long = "9".repeat(10_000);
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("limit=0&before={pivot}"), 400, "limit"),
        (format!("limit=100001&before={pivot}"), 400, "limit"),
        (
            format!("limit=99999999999999999999999&before={pivot}"),
            400,
            "limit",
        ),
        (
            format!("limit=5&from_page=0&before={pivot}"),
            400,
            "from_page",
        ),
        ("limit=5&before=nonsense".into(), 400, "message id"),
        ("limit=5&before=".into(), 400, "message id"),
        (format!("limit=5&before={long}.{key}"), 400, "message id"),
        (
            format!("limit=5&before=4000000000.{key}"),
            404,
            "no message",
        ),
        (
            format!("limit=5&before=0.{}ABCDEF0123456789", &key[..14]),
            400,
            "message id",
        ),
        (
            format!("limit=5&before=0.0000000000000{}", &key[13..]),
            404,
            "no message",
        ),
    ];
    for (query, status, word) in cases {
        let (code, v) = get(&query);
        assert_eq!(code, status, "{query}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{query}: {v}"));
        assert!(msg.contains(word), "{query}: {msg}");
    }
    assert_eq!(get("limit=1").0, 200, "the node still answers");
}

#[test]
fn two_nodes_cannot_share_a_listen_port() {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let addr = a.addr("/tcp/");
    let b = Node::init("Bhavesh");
    let o = b.cli(&["up", "--listen", &addr, "--no-mdns"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
}

/// Issue 9 item 10, as the README walkthrough goes: Asha adds Bhavesh, who has never
/// accepted her; the invitation waits, `up` says so, `vaarta invites` lists it, and
/// `vaarta invites accept ID` joins the conversation.
#[test]
fn a_strangers_invitation_waits_until_accepted() {
    let mut a = Node::init("Asha");
    let mut b = Node::init("Bhavesh");
    a.up_loopback(&[]);
    let addr = a.addr("/tcp/");
    b.up_loopback(&[&addr]);
    wait_for("a link", T, || (a.linked() >= 1).then_some(()));
    let conv = a
        .ok(&["conv", "create", "Flood relief", "--member", &b.device_id()])
        .trim()
        .to_string();
    let held = wait_for("the invitation to arrive", T, || {
        let v = b.json(&["invites"]);
        v.as_array().filter(|l| !l.is_empty()).cloned()
    });
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["id"], conv.as_str());
    assert_eq!(held[0]["inviter"], a.device_id().as_str());
    assert!(b.json(&["conv", "list"]).as_array().unwrap().is_empty());
    wait_for("`up` to say an invitation waits", T, || {
        b.log()
            .contains(&format!("vaarta invites accept {conv}"))
            .then_some(())
    });
    let listed = b.ok(&["invites"]);
    assert!(listed.contains(&a.device_id()), "{listed}");
    assert!(b.cli(&["invites", "accept", "zzzz"]).status.code() == Some(1));
    let joined = b.ok(&["invites", "accept", &conv[..8]]);
    assert!(joined.contains(&conv), "{joined}");
    wait_for("Bhavesh to join", T, || {
        b.is_member_of(&conv, 2).then_some(())
    });
    a.ok(&["send", &conv, "Boat team at ghat 3"]);
    wait_for("the message", T, || {
        (b.bodies(&conv) == ["Boat team at ghat 3"]).then_some(())
    });
    assert!(b.json(&["invites"]).as_array().unwrap().is_empty());
}

/// Bug 7 (rest): a conversation you left says so (in `conv list`, `conv show` and their
/// JSON), rather than reading like one you were invited to and have not joined yet.
#[test]
fn a_conversation_you_left_says_you_left() {
    let (a, b, conv) = pair();
    let bd = b.device_id();
    let left = b.json(&["conv", "remove", &conv, &bd]);
    assert_eq!(left["left"], true, "{left}");
    let listed = b.json(&["conv", "list"]);
    let mine = &listed[0];
    assert_eq!(
        (mine["member"].clone(), mine["removed"].clone()),
        (false.into(), true.into()),
        "{mine}"
    );
    let line = b.ok(&["conv", "list"]);
    assert!(line.contains("you left or were removed"), "{line}");
    assert!(
        b.ok(&["conv", "show", &conv])
            .contains("you left or were removed"),
        "conv show"
    );
    wait_for("Asha to see Bhavesh gone", T, || {
        a.is_member_of(&conv, 1).then_some(())
    });
    assert_eq!(a.json(&["conv", "show", &conv])["removed"], false);
}

/// Bug 12: an unreachable `--peer` is visible (a warning in `up`, in `peers` and `id`, with
/// the last error); `up` says when a peer links and leaves; `peers` lists the peers seen
/// recently, not only the connected ones.
#[test]
fn peers_show_who_came_and_went_and_an_unreachable_static_peer() {
    // Port 1 (tcpmux) refuses on loopback; a freed ephemeral port could be taken by another
    // test's node meanwhile.
    let dead = "/ip4/127.0.0.1/tcp/1".to_string();
    let mut a = Node::init("Asha");
    a.up_loopback(&[&dead]);
    let warning = format!("warning: static peer {dead} is unreachable");
    let t = std::time::Instant::now();
    while !a.log().contains(&warning) {
        assert!(
            t.elapsed() < T,
            "no unreachable warning; up printed: {}\npeers: {}",
            a.log(),
            a.ok(&["peers", "--json"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = a.json(&["peers"]);
    let st = &p["static"][0];
    assert_eq!(st["addr"], dead.as_str(), "{p}");
    assert_eq!(st["unreachable"], true, "{p}");
    assert!(
        st["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{p}"
    );
    let id = a.json(&["id"]);
    assert_eq!(id["unreachable"][0]["addr"], dead.as_str(), "{id}");
    assert!(
        a.ok(&["peers"])
            .contains(&format!("unreachable static peer {dead}"))
    );
    assert!(a.ok(&["id"]).contains("unreachable static peer"));

    let mut b = Node::init("Bhavesh");
    b.up_loopback(&[&a.addr("/tcp/")]);
    let bd = b.device_id();
    let linked = format!("peer linked: Bhavesh ({bd}) at /ip4/127.0.0.1/tcp/");
    wait_for("up to say Bhavesh linked", T, || {
        a.log().contains(&linked).then_some(())
    });
    b.stop();
    let left = format!("peer left:   Bhavesh ({bd}) at /ip4/127.0.0.1/tcp/");
    wait_for("up to say Bhavesh left", T, || {
        a.log().contains(&left).then_some(())
    });
    let p = a.json(&["peers"]);
    let seen = p["seen"].as_array().unwrap();
    let bs = seen
        .iter()
        .find(|s| s["device"] == bd.as_str())
        .unwrap_or_else(|| panic!("Bhavesh is not among the peers seen: {p}"));
    assert!(bs["last_seen_ms"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(bs["static"], false, "{p}");
    assert!(
        bs["addrs"][0]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/")
    );
    let text = a.ok(&["peers"]);
    assert!(
        text.contains(&format!("seen       Bhavesh      {bd}")),
        "{text}"
    );
}

/// `conv rename`, `edit`, `delete` and `react` do what the API does, with clear errors for
/// what it refuses; `log` shows the edit, the deletion, the reply link and who reacted (on
/// lines of their own that no body can start), and `log --ids` the ids to act on.
#[test]
fn edit_delete_react_rename_and_a_log_that_shows_them() {
    let (a, b, conv) = pair();
    let first = a.json(&["send", &conv, "Boats at ghat 3"])["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("Asha's message at Bhavesh", T, || {
        (b.bodies(&conv).len() == 1).then_some(())
    });
    let reply = b.json(&["send", &conv, "on my way", "--reply-to", &first])["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let typo = b.ok(&["send", &conv, "typo"]);
    let typo = typo.split_whitespace().nth(1).unwrap().to_string();
    b.ok(&["edit", &conv, &reply, "on my way, 10 min"]);
    b.ok(&["delete", &conv, &typo]);
    assert!(b.ok(&["react", &conv, &first, "🙏"]).contains("reacted"));
    // What the API refuses, the CLI says, with status 1.
    for (args, says) in [
        (vec!["edit", &conv, &first, "mine now"], "only the author"),
        (vec!["delete", &conv, &first], "only the author"),
        (vec!["react", &conv, &first, "abc"], "not an emoji"),
        (vec!["edit", &conv, &typo, "again"], "was deleted"),
        (vec!["conv", "rename", &conv, "Mine"], "admin"),
        (vec!["conv", "rename", &conv, "  "], "empty"),
    ] {
        let o = b.cli(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert!(
        a.ok(&["conv", "rename", &conv, "Flood relief (north)"])
            .contains("Flood relief (north)")
    );
    wait_for("the edit, deletion, reaction and title at Asha", T, || {
        let log = a.ok(&["log", &conv]);
        let title = a.json(&["conv", "show", &conv])["title"].clone();
        (log.contains("(edited")
            && log.contains("(deleted)")
            && log.contains("🙏")
            && title == "Flood relief (north)")
            .then_some(log)
    });
    let log = a.ok(&["log", &conv, "--ids"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(lines[0].starts_with(&format!("{first}  ")), "{log}");
    assert!(
        lines[0].ends_with("Asha: Boats at ghat 3  · delivered"),
        "{log}"
    );
    assert_eq!(lines[1], "    + reactions: 🙏 Bhavesh", "{log}");
    assert!(lines[2].starts_with(&format!("{reply}  ")), "{log}");
    assert!(lines[2].contains("Bhavesh (edited "), "{log}");
    assert!(lines[2].ends_with("): on my way, 10 min"), "{log}");
    assert_eq!(
        lines[3], "    + reply to Asha: \"Boats at ghat 3\"",
        "{log}"
    );
    assert!(lines[4].ends_with("Bhavesh: (deleted)"), "{log}");
    // Taking a reaction back; --json answers.
    let r = b.json(&["react", &conv, &first, "--remove"]);
    assert_eq!(r["ok"], true);
    wait_for("the reaction gone at Asha", T, || {
        (!a.ok(&["log", &conv]).contains("🙏")).then_some(())
    });
}

/// Every command and subcommand of the clap definitions, as "conv rename" etc.
fn all_commands() -> Vec<String> {
    fn walk(c: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}{}", s.get_name());
            out.push(name.clone());
            walk(s, &format!("{name} "), out);
        }
    }
    let mut out = Vec::new();
    walk(&vaarta::clap_command(), "", &mut out);
    out
}

/// `vaarta completions bash|zsh|fish` names every command and subcommand (and bash accepts
/// the script); `vaarta man` renders (groff finds no error when it is installed) with every
/// command and the exit statuses; `--help` gives the exit statuses too.
#[test]
fn completions_and_man_page_cover_every_command() {
    let cmds = all_commands();
    assert!(cmds.contains(&"conv rename".to_string()), "{cmds:?}");
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for c in &cmds {
            let last = c.rsplit(' ').next().unwrap();
            assert!(script.contains(last), "{shell} completion lacks `{c}`");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("vaarta.bash");
            std::fs::write(&f, &script).unwrap();
            let st = Command::new("bash").arg("-n").arg(&f).status().unwrap();
            assert!(st.success(), "bash -n on the completion script");
        }
    }
    let o = Command::new(bin()).arg("man").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(page.contains(".TH vaarta 1"), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
    ] {
        assert!(page.contains(&format!(".SH {section}")), "no {section}");
    }
    for c in cmds.iter().filter(|c| !c.contains(' ')) {
        assert!(
            page.contains(&format!("vaarta\\-{}(1)", c.replace('-', "\\-"))),
            "man lacks {c}"
        );
    }
    for code in ["\\fB0\\fR", "\\fB1\\fR", "\\fB2\\fR"] {
        assert!(page.contains(code), "man lacks exit status {code}");
    }
    if Command::new("groff").arg("--version").output().is_ok() {
        let mut g = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        g.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
        let r = g.wait_with_output().unwrap();
        assert!(
            r.status.success() && r.stderr.is_empty(),
            "groff: {}",
            stderr(&r)
        );
        // Bold and underline are overstruck (`X\x08X`): keep the last character of each.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&r.stdout).chars() {
            if c == '\x08' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(text.contains("EXIT STATUS"), "{text}");
        assert!(text.contains("vaarta-conv(1)"), "{text}");
    } else {
        eprintln!(
            "SKIPPED the groff rendering (groff not installed); the page's structure was checked"
        );
    }
    // Pages per command, into a directory.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for c in &cmds {
        let f = dir.path().join(format!("vaarta-{}.1", c.replace(' ', "-")));
        assert!(f.exists(), "no {}", f.display());
    }
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Exit status: 0 success, 1 error"), "{help}");
    assert!(help.contains("2 usage error"), "{help}");
}

/// Starts `vaarta up` on `home` with `args` and no $RUST_LOG, standard error to `log`;
/// returns once `log` holds `want` (and the log's text).
fn up_until_logged(
    home: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    want: &str,
) -> String {
    let log = home.with_extension(format!("log{}", args.len()));
    let f = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("--home")
        .arg(home)
        .args(["up", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args(["--peer", "/ip4/127.0.0.1/tcp/1"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(f);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let text = wait_for(&format!("{want:?} in the log of up {args:?}"), T, || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "up exited: {st}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains(want).then_some(t)
    });
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    text
}

/// The node's log level follows -v (counted) and -q; its log has no ANSI codes when it goes
/// to a file, whatever $TERM says, unless `--color always`; `--color never` and NO_COLOR
/// keep colour off too; error lines follow the same rule.
#[test]
fn log_levels_and_no_colour_in_files() {
    let a = Node::init("Asha");
    let plain = up_until_logged(
        &a.home,
        &["-vv"],
        &[("TERM", "xterm-256color")],
        "dial failed",
    );
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "ANSI codes in a log file: {plain:?}"
    );
    let coloured = up_until_logged(&a.home, &["-vv", "--color", "always"], &[], "dial failed");
    assert!(coloured.contains("\u{1b}["), "{coloured:?}");
    let never = up_until_logged(&a.home, &["-v", "--color=never"], &[], "node up");
    assert!(
        !never.contains('\u{1b}') && !never.contains("DEBUG"),
        "{never:?}"
    );
    // -q: errors only (the info line of the start is not there; a later line shows it ran).
    let quiet = up_until_logged(&a.home, &["-q"], &[], "unreachable");
    assert!(
        !quiet.contains("node up") && !quiet.contains("INFO"),
        "{quiet}"
    );
    // Error lines: plain in a pipe, red only when asked.
    let o = a.cli(&["conv", "show", "nothing-here"]);
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    let o = a.cli(&["--color", "always", "conv", "show", "nothing-here"]);
    assert!(
        stderr(&o).starts_with("\u{1b}[1;31merror:"),
        "{:?}",
        stderr(&o)
    );
}

/// Asha up on loopback; Bhavesh's home (not up) with a `vaarta.toml` that names Asha's
/// address as a static peer, loopback listening and no mDNS. Returns Asha's address too.
fn asha_up_and_bhavesh_configured() -> (Node, Node, String) {
    let mut a = Node::init("Asha");
    a.up_loopback(&[]);
    let addr = a.addr("/tcp/");
    let b = Node::init("Bhavesh");
    std::fs::write(
        b.home.join("vaarta.toml"),
        format!(
            "# Bhavesh's field kit\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\npeers = [\"{addr}\"]\nmdns = false\nlog_level = \"info\"\n"
        ),
    )
    .unwrap();
    (a, b, addr)
}

/// `vaarta.toml` in the home: a plain `vaarta up` listens, dials and leaves mDNS off as the
/// file says (no `--peer` retyped); `vaarta config` shows each setting and its source, a
/// variable beating the file and a flag beating both; a bad file stops `up` and `config`
/// with an error naming the file and the line.
#[test]
fn the_config_file_is_honoured_and_shown() {
    let (_a, mut b, addr) = asha_up_and_bhavesh_configured();
    let file = b.home.join("vaarta.toml");
    let c = b.json(&["config"]);
    assert_eq!(c["file_found"], true);
    assert_eq!(c["settings"]["peers"]["value"][0], addr.as_str());
    assert_eq!(c["settings"]["peers"]["from"], "file");
    assert_eq!(c["settings"]["mdns"]["value"], false);
    assert_eq!(c["settings"]["relay"]["from"], "default");
    let shown = b.ok(&["config"]);
    assert!(
        shown.contains(&format!("peers:      {addr}  (file)")),
        "{shown}"
    );
    assert!(shown.contains("mdns:       off  (file)"), "{shown}");
    // A variable beats the file; -v beats RUST_LOG and the file.
    let o = Command::new(bin())
        .arg("--home")
        .arg(&b.home)
        .args(["config", "--json", "-vv"])
        .env("VAARTA_MDNS", "on")
        .env("VAARTA_PEERS", "/ip4/127.0.0.1/tcp/9,/ip4/127.0.0.1/tcp/8")
        .output()
        .unwrap();
    let c = json_of(&o);
    assert_eq!(c["settings"]["mdns"]["value"], true);
    assert_eq!(c["settings"]["mdns"]["from"], "env VAARTA_MDNS");
    assert_eq!(c["settings"]["peers"]["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        c["settings"]["log_level"],
        serde_json::json!({"value": "debug", "from": "flag"})
    );
    // `vaarta up` with no flags: linked to Asha through the file's peer.
    b.up(&[]);
    wait_for("Bhavesh linked through the file's peer", T, || {
        (b.linked() >= 1).then_some(())
    });
    assert!(b.log().contains("settings:  "), "{}", b.log());
    b.stop();
    // A bad file: a clear error with the file, line and column, status 1, for up and config.
    std::fs::write(&file, "mdns = false\npeers = [\"192.168.1.20:7447\"]\n").unwrap();
    for args in [vec!["up"], vec!["config"]] {
        let o = b.cli(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains(&format!(
                "{}:2:10: '192.168.1.20:7447' is not a multiaddr",
                file.display()
            )),
            "{e}"
        );
    }
    std::fs::write(&file, "mdns = false\npeer = []\n").unwrap();
    let e = stderr(&b.cli(&["config"]));
    assert!(e.contains("vaarta.toml:2:1: unknown field `peer`"), "{e}");
}

/// Minutes past midnight of the first "YYYY-MM-DD HH:MM:SS" in `line`.
fn minute_of_day(line: &str) -> i64 {
    let t = line.split_whitespace().nth(1).unwrap();
    let h: i64 = t[0..2].parse().unwrap();
    let m: i64 = t[3..5].parse().unwrap();
    h * 60 + m
}

/// Times in the local zone with the zone shown ($TZ respected: Asia/Kolkata is UTC+5:30 and
/// says IST); `conv show` lines up a Devanagari name with others by display width.
#[test]
fn times_in_the_local_zone_and_tables_by_display_width() {
    let a = Node::init("आशा देवी");
    let b = Node::init("Bhavesh");
    let conv = a
        .ok(&["conv", "create", "बाढ़ राहत", "--member", &b.device_id()])
        .trim()
        .to_string();
    a.ok(&["send", &conv, "नाव घाट 3 पर"]);
    let log_in = |tz: &str| {
        let o = Command::new(bin())
            .arg("--home")
            .arg(&a.home)
            .args(["log", &conv])
            .env("TZ", tz)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let utc = log_in("UTC");
    let ist = log_in("Asia/Kolkata");
    assert!(utc.contains(" UTC  आशा देवी: नाव घाट 3 पर"), "{utc}");
    assert!(ist.contains(" IST  आशा देवी: नाव घाट 3 पर"), "{ist}");
    assert_eq!(
        (minute_of_day(&ist) - minute_of_day(&utc)).rem_euclid(24 * 60),
        5 * 60 + 30,
        "{utc}{ist}"
    );
    let shown = a.ok(&["conv", "show", &conv]);
    let lines: Vec<&str> = shown.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{shown}");
    let id_col = |l: &str| {
        let id = l.split_whitespace().last().unwrap();
        unicode_width::UnicodeWidthStr::width(&l[..l.rfind(id).unwrap()])
    };
    assert_eq!(id_col(lines[0]), id_col(lines[1]), "{shown}");
}

/// `up --on-message PROGRAM` runs the program for each message from another member (not for
/// one's own, nor for what was there before the node started), directly and not through a
/// shell, with the message as JSON on stdin and its facts in the environment; a program that
/// cannot run is a logged warning and the node goes on.
#[test]
fn on_message_runs_a_program_for_each_incoming_message() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    std::fs::create_dir(&got).unwrap();
    let script = dir.path().join("hook");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nd='{}'\nprintf '%s\\n%s\\n%s\\n%s\\n' \"$VAARTA_CONVERSATION\" \"$VAARTA_AUTHOR\" \"$VAARTA_AUTHOR_NAME\" \"$VAARTA_PRECEDENCE\" > \"$d/env.$VAARTA_MESSAGE.tmp\"\ncat > \"$d/msg.$VAARTA_MESSAGE.tmp\"\nmv \"$d/env.$VAARTA_MESSAGE.tmp\" \"$d/env.$VAARTA_MESSAGE\"\nmv \"$d/msg.$VAARTA_MESSAGE.tmp\" \"$d/msg.$VAARTA_MESSAGE\"\n",
            got.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut a = Node::init("Asha");
    let mut b = Node::init("Bhavesh");
    let conv = a
        .ok(&["conv", "create", "hooks", "--member", &b.device_id()])
        .trim()
        .to_string();
    a.ok(&["send", &conv, "before the node started"]);
    let script_s = script.to_str().unwrap();
    a.up(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--on-message",
        script_s,
    ]);
    let addr = a.addr("/tcp/");
    b.up(&[
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--peer",
        &addr,
        "--on-message",
        "/nonexistent/siren",
    ]);
    b.accept(&a);
    wait_for("Bhavesh to join", T, || {
        b.is_member_of(&conv, 2).then_some(())
    });
    let evil = "Evacuate ghat 3 $(touch pwned) `touch pwned2`; touch pwned3 \"'";
    let id = b.json(&["send", &conv, evil, "--precedence", "flash"])["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    a.ok(&["send", &conv, "my own message"]);
    let body = wait_for("the hook to run for Bhavesh's message", T, || {
        std::fs::read_to_string(got.join(format!("msg.{id}"))).ok()
    });
    let v: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["body"], evil);
    assert_eq!(v["conversation"], conv.as_str());
    assert_eq!(v["conversation_title"], "hooks");
    let env = std::fs::read_to_string(got.join(format!("env.{id}"))).unwrap();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [conv.as_str(), &b.device_id(), "Bhavesh", "flash"]
    );
    // A later message from Bhavesh runs it again; Asha's own and the old one never did.
    let id2 = b.json(&["send", &conv, "second"])["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the hook for the second message", T, || {
        got.join(format!("msg.{id2}")).exists().then_some(())
    });
    let ran: Vec<String> = std::fs::read_dir(&got)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("msg."))
        .collect();
    assert_eq!(ran.len(), 2, "{ran:?}");
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!dir.path().join(f).exists() && !std::path::Path::new(f).exists());
    }
    // Bhavesh's program does not exist: a warning per message, and his node goes on.
    wait_for("Bhavesh's warning", T, || {
        b.log()
            .contains("on-message: cannot start /nonexistent/siren")
            .then_some(())
    });
    assert!(b.json(&["id"])["online"] == true);
}

/// Issue 11's measuring tool: `vaarta bench --corpus` runs a real daemon, fills it through
/// the API, reads the messages back through the API and reports every measure; bad
/// arguments are refused with a clear message; its temporary home is gone afterwards.
#[test]
fn bench_corpus_measures_a_filled_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = |args: &[&str]| {
        Command::new(bin())
            .arg("bench")
            .args(args)
            .env("TMPDIR", tmp.path())
            .env_remove("VAARTA_HOME")
            .output()
            .unwrap()
    };
    let o = bench(&["--corpus", "300", "--conversations", "3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json_of(&o);
    assert_eq!(r["corpus_messages"], 300, "{r}");
    assert_eq!(r["conversations"], 3, "{r}");
    // Counted by reading every conversation through the API after the restart.
    assert_eq!(r["messages_read_back"], 300, "{r}");
    assert_eq!(r["newest_50_reads"], 3, "{r}");
    // 100 messages in the first conversation: scrolled in steps of 50.
    assert_eq!(
        (r["scroll_messages"].clone(), r["scroll_requests"].clone()),
        (100.into(), 2.into())
    );
    let num = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is missing or not a number: {r}"))
    };
    // The envelope alone is larger than the 100-byte text.
    for k in [
        "disk_apparent_bytes_per_message",
        "disk_allocated_bytes_per_message",
    ] {
        assert!(num(k) > 100.0, "{k}: {r}");
    }
    let per = num("disk_apparent_bytes") / 300.0;
    assert!(
        (per - num("disk_apparent_bytes_per_message")).abs() < 1e-6,
        "{r}"
    );
    for k in [
        "fill_s",
        "fill_msgs_per_s",
        "first_start_ms",
        "cold_start_ms",
        "newest_50_p50_ms",
        "newest_50_p99_ms",
        "scroll_ms",
        "read_newest_scroll_ms",
    ] {
        assert!(num(k) > 0.0 && num(k).is_finite(), "{k}: {r}");
    }
    assert!(num("newest_50_p99_ms") >= num("newest_50_p50_ms"), "{r}");
    for k in [
        "rss_after_fill_bytes",
        "rss_after_start_bytes",
        "rss_after_newest_50_bytes",
    ] {
        if cfg!(target_os = "linux") {
            // More than a megabyte: a daemon's resident set, not the bench's arithmetic.
            assert!(num(k) > 1e6, "{k}: {r}");
        } else {
            assert!(r[k].is_null(), "{k}: {r}");
        }
    }
    // The daemon is stopped and its home removed.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    for (args, says) in [
        (&["--corpus", "0"][..], "--corpus must be at least 1"),
        (
            &["--corpus", "5", "--conversations", "0"][..],
            "--conversations must be at least 1",
        ),
        (
            &["--corpus", "2", "--conversations", "3"][..],
            "more than --corpus 2",
        ),
    ] {
        let o = bench(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    // --conversations belongs to --corpus; --corpus replaces the two-node run.
    assert_eq!(bench(&["--conversations", "5"]).status.code(), Some(2));
    assert_eq!(
        bench(&["--corpus", "5", "--messages", "5"]).status.code(),
        Some(2)
    );
}
