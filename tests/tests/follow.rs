//! `vaarta log --follow` as a user runs it, against a real node: it prints only the newest
//! `--limit` messages at start, then every message of a burst larger than one fetch, then
//! edits, deletions and reactions (a peer's too) as lines that say so, and it exits non-zero
//! when the node stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaarta_tests::{Node, bin, wait_for};

const T: Duration = Duration::from_secs(60);

/// One request to a node's local API, as any app would send it (plain HTTP/1.1 on loopback,
/// the token from the home). Panics unless the answer is 200.
fn api(node: &Node, method: &str, path: &str, body: Option<Value>) -> Value {
    let info: Value =
        serde_json::from_slice(&std::fs::read(node.home.join("api.json")).expect("api.json"))
            .expect("api.json is json");
    let addr = info["addr"].as_str().expect("addr");
    let token = std::fs::read_to_string(node.home.join("api-token")).expect("api-token");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )
    .expect("write request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{method} {path}: {head}\n{body}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

/// A running `vaarta log --follow` and what it printed so far.
struct Follow {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Follow {
    fn start(node: &Node, conv: &str, limit: usize) -> Follow {
        let mut child = Command::new(bin())
            .arg("--home")
            .arg(&node.home)
            .args(["log", conv, "--follow", "--limit", &limit.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vaarta log --follow");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push(line);
            }
        });
        let e = err.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            e.lock().unwrap().push_str(&s);
        });
        Follow { child, out, err }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Waits (up to `timeout`) until `done` holds for the output; returns whether it did.
    fn wait(&self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if done(&self.lines()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done(&self.lines())
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn burst_body(i: usize) -> String {
    format!("burst {i:03}")
}

/// The burst messages printed as new messages, in the order printed.
fn burst_seen(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .filter(|l| !l.contains("(edited)") && !l.contains("reacted"))
        .filter_map(|l| {
            let i = l.find(": burst ")? + ": burst ".len();
            l.get(i..i + 3)?.parse().ok()
        })
        .collect()
}

#[test]
fn follow_prints_bursts_edits_deletions_reactions_and_fails_when_the_node_stops() {
    let mut a = Node::init("Asha");
    let mut b = Node::init("Bhavesh");
    a.up_loopback(&[]);
    b.up_loopback(&[&a.addr("/tcp/")]);
    b.accept(&a);
    let conv = a
        .ok(&["conv", "create", "Follow", "--member", &b.device_id()])
        .trim()
        .to_string();
    wait_for("Bhavesh sees the conversation", T, || {
        b.is_member_of(&conv, 2).then_some(())
    });
    for i in 0..10 {
        a.ok(&["send", &conv, &format!("before {i}")]);
    }

    // At start, only the newest three.
    let follow = Follow::start(&a, &conv, 3);
    assert!(
        follow.wait(T, |l| l.iter().any(|l| l.contains("before 9"))),
        "the newest message at start: {:?}",
        follow.lines()
    );

    // One message: the first event must not bring back what --limit left out.
    a.ok(&["send", &conv, "after start"]);
    assert!(
        follow.wait(T, |l| l.iter().any(|l| l.contains("after start"))),
        "a new message: {:?}",
        follow.lines()
    );

    // 300 messages in one request: more than any single fetch of the old follow (200).
    let path = format!("/v1/conversations/{conv}/messages");
    let messages: Vec<Value> = (0..300).map(|i| json!({"body": burst_body(i)})).collect();
    let ids = api(&a, "POST", &path, Some(json!({ "messages": messages })))["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect::<Vec<_>>();
    assert_eq!(ids.len(), 300);
    let all_burst = follow.wait(T, |l| burst_seen(l).len() >= 300);

    // An edit and a deletion here, a reaction from Bhavesh's device.
    api(
        &a,
        "PATCH",
        &format!("{path}/{}", ids[10]),
        Some(json!({"body": "burst 010, corrected"})),
    );
    api(&a, "DELETE", &format!("{path}/{}", ids[11]), None);
    wait_for("Bhavesh has the burst", T, || {
        (b.bodies(&conv).len() == 311).then_some(())
    });
    api(
        &b,
        "POST",
        &format!("{path}/{}/reaction", ids[20]),
        Some(json!({"emoji": "👍"})),
    );
    let edited = |l: &[String]| {
        l.iter()
            .any(|l| l.contains("Asha (edited): burst 010, corrected"))
    };
    let deleted = |l: &[String]| l.iter().any(|l| l.contains("Asha deleted a message"));
    let reacted = |l: &[String]| {
        l.iter()
            .any(|l| l.contains("Bhavesh reacted 👍 to \"burst 020\""))
    };
    follow.wait(T, |l| edited(l) && deleted(l) && reacted(l));

    let lines = follow.lines();
    let mut wrong = Vec::new();
    let older: Vec<&String> = lines
        .iter()
        .filter(|l| (0..7).any(|i| l.contains(&format!("before {i}"))))
        .collect();
    if !older.is_empty() {
        wrong.push(format!("printed messages older than --limit 3: {older:?}"));
    }
    let seen = burst_seen(&lines);
    if !all_burst || seen != (0..300).collect::<Vec<_>>() {
        let missing = (0..300).filter(|i| !seen.contains(i)).count();
        wrong.push(format!(
            "burst: {} lines, {missing} of 300 missing, in order: {}",
            seen.len(),
            seen.windows(2).all(|w| w[0] < w[1])
        ));
    }
    for (ok, what) in [
        (edited(&lines), "the edit"),
        (deleted(&lines), "the deletion"),
        (reacted(&lines), "Bhavesh's reaction"),
    ] {
        if !ok {
            wrong.push(format!("{what} is not shown"));
        }
    }

    // The node stops: follow ends with an error that says so.
    a.stop();
    let mut follow = follow;
    let status = wait_for("follow to end after the node stopped", T, || {
        follow.child.try_wait().expect("try_wait")
    });
    std::thread::sleep(Duration::from_millis(100));
    let err = follow.err.lock().unwrap().clone();
    if status.success() || !err.contains("the node stopped") {
        wrong.push(format!(
            "after the node stopped, follow exited with {status}, stderr {err:?}"
        ));
    }
    let tail = &lines[lines.len().saturating_sub(8)..];
    assert!(
        wrong.is_empty(),
        "{}\n(last lines: {tail:?})",
        wrong.join("\n")
    );
}
