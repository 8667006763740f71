//! `vaarta up --on-message PROGRAM` and `vaarta watch --exec PROGRAM`: run a program for
//! each message that arrives from another member (lxmd's `--on-inbound`), so a field office
//! can hook a siren, a printer or a gateway to the mesh without writing code.
//!
//! The program is run directly (never through a shell: nothing in a message can become a
//! command), with the message as one line of JSON on standard input (the object
//! `GET /v1/conversations/{id}/messages` gives, plus `conversation` and `conversation_title`)
//! and `VAARTA_CONVERSATION`, `VAARTA_MESSAGE`, `VAARTA_AUTHOR` (device id),
//! `VAARTA_AUTHOR_NAME`, `VAARTA_PRECEDENCE` in its environment.
//!
//! Bounded: at most `jobs` programs run at once, and at most [`QUEUE`] messages wait; when
//! the queue is full the watcher waits (the node itself never does: it only publishes
//! events, and one that lags is caught up by reading the pages again). A program still
//! running after [`TIMEOUT`] is killed; a failure (cannot start, non-zero exit, killed) is
//! logged as a warning and the next message goes on.
//!
//! Which messages are new: at start (and when a conversation is added) the newest
//! [`START_WINDOW`] messages of each conversation are taken as already seen; afterwards every
//! message id not seen before, on the pages the `messages` events name, is new. Ids are kept
//! for the newest [`KEEP_PAGES`] pages of each conversation only (a bound): a message that
//! arrives on an older page than that is not run for (it is logged).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use vaarta_node::Request;
use vaarta_node::client::Client;

use crate::follow::page_of;

/// Messages waiting for a free slot.
pub const QUEUE: usize = 256;
/// How long one run may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Messages per conversation taken as seen at start.
pub const START_WINDOW: usize = 512;
/// Pages per conversation whose ids are remembered (a page holds 256 messages).
pub const KEEP_PAGES: u32 = 8;

/// The new-message tracker of one conversation.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Pages below this one are no longer tracked.
    floor: u32,
    top: u32,
    ids: BTreeMap<u32, HashSet<String>>,
}

impl Tracker {
    /// Starts from the messages there now: all taken as seen.
    pub fn start(msgs: &[Value]) -> Tracker {
        let mut t = Tracker {
            floor: msgs.iter().filter_map(page_of).min().unwrap_or(0),
            ..Tracker::default()
        };
        let _ = t.update(msgs);
        t
    }

    /// The page a read must start from.
    pub fn floor(&self) -> u32 {
        self.floor
    }

    /// Remembers `msgs`; returns the new ones, in order, and how many arrived below the
    /// tracked pages.
    pub fn update<'a>(&mut self, msgs: &'a [Value]) -> (Vec<&'a Value>, usize) {
        let mut new = Vec::new();
        let mut below = 0;
        for m in msgs {
            let (Some(id), Some(page)) = (m["id"].as_str(), page_of(m)) else {
                continue;
            };
            if page < self.floor {
                below += usize::from(!self.ids.contains_key(&page));
                continue;
            }
            if self.ids.entry(page).or_default().insert(id.to_string()) {
                new.push(m);
            }
            self.top = self.top.max(page);
        }
        // Forget pages beyond the bound.
        let keep_from = self.top.saturating_sub(KEEP_PAGES - 1);
        if keep_from > self.floor {
            self.floor = keep_from;
            self.ids = self.ids.split_off(&keep_from);
        }
        (new, below)
    }
}

/// One run of the program.
#[derive(Debug, Clone)]
pub struct Job {
    pub stdin: String,
    pub env: Vec<(&'static str, String)>,
    pub message: String,
}

impl Job {
    /// The job for message `m` of conversation `conv` (titled `title`).
    pub fn of(m: &Value, conv: &str, title: &str) -> Job {
        let mut v = m.clone();
        v["conversation"] = conv.into();
        v["conversation_title"] = title.into();
        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
        Job {
            stdin: format!("{}\n", serde_json::to_string(&v).unwrap_or_default()),
            env: vec![
                ("VAARTA_CONVERSATION", conv.to_string()),
                ("VAARTA_MESSAGE", s("id")),
                ("VAARTA_AUTHOR", s("author")),
                ("VAARTA_AUTHOR_NAME", s("author_name")),
                ("VAARTA_PRECEDENCE", s("precedence")),
            ],
            message: s("id"),
        }
    }
}

/// The variables of the node's environment a program keeps: the basics a script needs
/// (where programs are, the home, the locale and the zone). Nothing else passes, so neither
/// the home's passphrase (`VAARTA_PASSPHRASE`) nor any other secret of the node's reaches it.
pub fn child_env(
    parent: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    parent
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            matches!(
                k.as_ref(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "LANG" | "LANGUAGE" | "TZ" | "TMPDIR"
            ) || k.starts_with("LC_")
        })
        .collect()
}

/// Kills a program and everything it started (its process group: it runs in its own).
fn kill_group(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `program` for `job`: its input written by another thread (a program that does not
/// read it cannot stall the wait), in a process group of its own with the environment of
/// [`child_env`] and the job's variables, killed with its group after `timeout`. `Err` says
/// what failed.
pub fn run_one(program: &PathBuf, job: &Job, timeout: Duration) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(program)
        .env_clear()
        .envs(child_env(std::env::vars_os()))
        .envs(job.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow!("cannot start {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = job.stdin.clone();
        // A program that does not read its input is no failure; the write ends when it
        // exits or is killed (the pipe closes).
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => bail!("{} exited with {st}", program.display()),
            Ok(None) if started.elapsed() >= timeout => {
                kill_group(&mut child);
                bail!(
                    "{} still ran after {} s: killed",
                    program.display(),
                    timeout.as_secs()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                bail!("waiting for {}: {e}", program.display())
            }
        }
    }
}

/// Starts `jobs` workers running `program`; returns the queue to feed them.
pub fn workers(program: PathBuf, jobs: usize) -> mpsc::SyncSender<Job> {
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for _ in 0..jobs.max(1) {
        let rx = rx.clone();
        let program = program.clone();
        std::thread::spawn(move || {
            loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                if let Err(e) = run_one(&program, &job, TIMEOUT) {
                    tracing::warn!(message = %job.message, "on-message: {e:#}");
                }
            }
        });
    }
    tx
}

/// Events read ahead of the watcher; beyond it, events are dropped and the watcher is told
/// it lagged (it then reads every tracked page again: nothing is missed, only re-read).
pub const EVENTS_AHEAD: usize = 1024;

/// Reads the event stream on a thread into a bounded channel: `Some(event)`, a synthetic
/// `lagged` event after events were dropped, `None` when the stream ends.
fn read_events(
    events: impl Iterator<Item = Value> + Send + 'static,
) -> mpsc::Receiver<Option<Value>> {
    let (tx, rx) = mpsc::sync_channel::<Option<Value>>(EVENTS_AHEAD);
    std::thread::spawn(move || {
        let mut dropped = 0u64;
        for ev in events {
            if dropped > 0 {
                match tx.try_send(Some(
                    serde_json::json!({"type": "lagged", "missed": dropped}),
                )) {
                    Ok(()) => dropped = 0,
                    Err(mpsc::TrySendError::Full(_)) => {}
                    Err(mpsc::TrySendError::Disconnected(_)) => return,
                }
            }
            match tx.try_send(Some(ev)) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => dropped += 1,
                Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        if dropped > 0 {
            let _ = tx.send(Some(
                serde_json::json!({"type": "lagged", "missed": dropped}),
            ));
        }
        let _ = tx.send(None);
    });
    rx
}

/// The watcher of every conversation: its trackers outlive a lost stream or a failed read,
/// so a retry catches up from where it was.
#[derive(Debug, Default)]
pub struct Watcher {
    convs: BTreeMap<String, (String, Tracker)>,
    started: bool,
}

impl Watcher {
    /// Watches until the node stops, reconnecting after errors (1 s, doubling to 30 s);
    /// `Ok` when the node is gone.
    pub fn run(&mut self, client: &Client, queue: &mpsc::SyncSender<Job>) -> Result<()> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.watch(client, queue) {
                Ok(()) => {}
                Err(e) => tracing::warn!("on-message: {e:#}; retrying"),
            }
            if client.request(Request::Status).is_err() {
                return Ok(());
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn fetch(
        client: &Client,
        conv: &str,
        from_page: Option<u32>,
        limit: usize,
    ) -> Result<Vec<Value>> {
        Ok(client
            .request(Request::Messages {
                conversation: conv.to_string(),
                limit,
                from_page,
                before: None,
            })
            .map_err(|e| anyhow!(e.message))?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Takes in conversations not tracked yet (what they hold now is taken as seen) and
    /// their current titles.
    fn add_all(&mut self, client: &Client) -> Result<()> {
        let list = client
            .request(Request::Conversations)
            .map_err(|e| anyhow!(e.message))?;
        for c in list.as_array().into_iter().flatten() {
            let (Some(id), title) = (c["id"].as_str(), c["title"].as_str().unwrap_or("")) else {
                continue;
            };
            match self.convs.get_mut(id) {
                Some(entry) => entry.0 = title.to_string(),
                None => {
                    let t = Tracker::start(&Self::fetch(client, id, None, START_WINDOW)?);
                    self.convs.insert(id.to_string(), (title.to_string(), t));
                }
            }
        }
        Ok(())
    }

    /// One connection: until the stream ends (`Ok`) or a read fails (`Err`). A connection
    /// after the first starts with a full catch-up from every tracker's floor.
    fn watch(&mut self, client: &Client, queue: &mpsc::SyncSender<Job>) -> Result<()> {
        let rx = read_events(client.events().map_err(|e| anyhow!(e.message))?);
        let mut catch_up = std::mem::replace(&mut self.started, true);
        self.add_all(client)?;
        loop {
            let mut pages: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
            let mut lagged = std::mem::take(&mut catch_up);
            let mut added = false;
            if !lagged {
                // Every event already there, together.
                let Ok(first) = rx.recv() else { return Ok(()) };
                let mut batch = vec![first];
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                }
                for ev in &batch {
                    let Some(ev) = ev else { return Ok(()) };
                    match ev["type"].as_str() {
                        Some("lagged") => lagged = true,
                        Some("conversation_added") | Some("membership_changed") => added = true,
                        Some("messages") => {
                            if let (Some(c), Some(p)) = (
                                ev["conversation"].as_str(),
                                ev["page"].as_u64().and_then(|p| u32::try_from(p).ok()),
                            ) {
                                pages.entry(c.to_string()).or_default().insert(p);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if added || lagged {
                self.add_all(client)?;
            }
            for (id, (title, tracker)) in self.convs.iter_mut() {
                if let Some(p) = pages.get(id).and_then(|p| p.iter().next())
                    && *p < tracker.floor()
                {
                    tracing::warn!(conversation = %id, page = p, "on-message: a message arrived on a page older than the tracked ones: not run for");
                }
                let from = if lagged {
                    Some(tracker.floor())
                } else {
                    match pages.get(id).and_then(|p| p.iter().next()) {
                        Some(p) => Some((*p).max(tracker.floor())),
                        None => continue,
                    }
                };
                let msgs = Self::fetch(client, id, from, vaarta_node::api::MAX_LIMIT)?;
                let (new, _) = tracker.update(&msgs);
                for m in new.into_iter().filter(|m| m["mine"] != true) {
                    if queue.send(Job::of(m, id, title)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(page: u32, key: &str) -> Value {
        json!({"id": format!("{page}.{key}"), "author": "d", "author_name": "Asha", "precedence": "flash", "body": "b"})
    }

    #[test]
    fn new_ids_only_and_a_bounded_memory() {
        let old = vec![msg(3, "a"), msg(4, "b")];
        let mut t = Tracker::start(&old);
        assert_eq!(t.floor(), 3);
        let again = [msg(3, "a"), msg(4, "b"), msg(4, "c")];
        let (new, below) = t.update(&again);
        assert_eq!((new.len(), below), (1, 0));
        assert_eq!(new[0]["id"], "4.c");
        // Pages far ahead: the oldest are forgotten, and a message there is counted below.
        let far: Vec<Value> = (0..20).map(|p| msg(5 + p, "x")).collect();
        let (new, _) = t.update(&far);
        assert_eq!(new.len(), 20);
        assert_eq!(t.floor(), 24 - (KEEP_PAGES - 1));
        assert!(t.ids.len() <= KEEP_PAGES as usize);
        let late = [msg(4, "late")];
        let (new, below) = t.update(&late);
        assert_eq!((new.len(), below), (0, 1));
    }

    /// Programs that block (until `release` appears) hold their slots only: every queued
    /// job runs in the end. Each program also checks that no more than 2 run beside it; that
    /// check can only catch an overlap that happens, so it is no proof of the bound (which
    /// holds by construction: `jobs` threads, each waiting for its child).
    #[test]
    fn blocked_programs_hold_their_slots_and_every_job_runs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let script = dir.path().join("slow");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nd='{d}'\ntouch \"$d/run.$VAARTA_MESSAGE\"\nn=$(ls \"$d\" | grep -c '^run\\.')\n[ \"$n\" -le 2 ] || touch \"$d/over\"\nwhile [ ! -e \"$d/release\" ]; do sleep 0.01; done\nrm \"$d/run.$VAARTA_MESSAGE\"\ntouch \"$d/done.$VAARTA_MESSAGE\"\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let queue = workers(script, 2);
        for i in 0..8 {
            queue
                .send(Job::of(&msg(1, &format!("k{i}")), "c", "t"))
                .unwrap();
        }
        let count = |prefix: &str| {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(prefix)
                })
                .count()
        };
        while count("run.") < 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(dir.path().join("release"), "").unwrap();
        while count("done.") < 8 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!dir.path().join("over").exists(), "more than 2 at once");
    }

    /// A program that never reads its input, given more than a pipe holds, is still killed
    /// at the timeout (the write must not block the wait), with its children.
    #[test]
    fn a_program_that_does_not_read_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("stuck");
        std::fs::write(
            &script,
            "#!/bin/sh\nsleep 3600 &\necho $! > \"$0.child\"\nwait\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut job = Job::of(&msg(1, "k"), "c", "t");
        job.stdin = "x".repeat(100 * 1024);
        let e = run_one(&script, &job, Duration::from_secs(1)).unwrap_err();
        assert!(format!("{e}").contains("killed"), "{e}");
        // The program's own child (the sleep) went with it: its process group was killed.
        let pid = std::fs::read_to_string(dir.path().join("stuck.child")).unwrap();
        let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "the program's child {pid} still runs");
    }

    /// The program gets a small, explicit environment: the message's facts and the basics
    /// (PATH, HOME, LANG, TZ...), never the home's passphrase or anything else of the node's.
    #[test]
    fn the_program_sees_no_secret_of_the_node() {
        let parent = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("LANG", "hi_IN.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "Asia/Kolkata"),
            ("VAARTA_PASSPHRASE", "s3cret"),
            ("VAARTA_HOME", "/root/.vaarta"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("RUST_LOG", "debug"),
        ]
        .map(|(k, v)| (std::ffi::OsString::from(k), std::ffi::OsString::from(v)));
        let kept: Vec<String> = child_env(parent.into_iter())
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().to_string())
            .collect();
        assert_eq!(kept, ["PATH", "HOME", "LANG", "LC_TIME", "TZ"]);
        // And for real: a program that dumps its environment (this test runs under cargo,
        // whose CARGO_* variables must not reach it).
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("dump");
        std::fs::write(&script, "#!/bin/sh\nenv > \"$0.env\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        run_one(&script, &Job::of(&msg(1, "k"), "c", "t"), TIMEOUT).unwrap();
        let env = std::fs::read_to_string(dir.path().join("dump.env")).unwrap();
        assert!(env.contains("VAARTA_MESSAGE=1.k"), "{env}");
        assert!(!env.contains("CARGO_"), "{env}");
    }

    /// Events the watcher has not taken wait up to [`EVENTS_AHEAD`]; more are dropped and
    /// reported as one `lagged` event (so the watcher re-reads: nothing is missed).
    #[test]
    fn the_event_queue_is_bounded_and_says_when_it_dropped() {
        let (done_tx, done_rx) = mpsc::channel();
        let n = EVENTS_AHEAD + 500;
        let mut i = 0;
        let events = std::iter::from_fn(move || {
            i += 1;
            if i > n {
                let _ = done_tx.send(());
                return None;
            }
            Some(serde_json::json!({"type": "messages", "n": i}))
        });
        let rx = read_events(events);
        done_rx.recv().unwrap();
        let got: Vec<Option<Value>> = rx.iter().collect();
        assert_eq!(got.len(), EVENTS_AHEAD + 2);
        assert_eq!(got[EVENTS_AHEAD - 1].as_ref().unwrap()["n"], EVENTS_AHEAD);
        assert_eq!(
            got[EVENTS_AHEAD],
            Some(serde_json::json!({"type": "lagged", "missed": 500}))
        );
        assert_eq!(got[EVENTS_AHEAD + 1], None);
    }

    #[test]
    fn a_job_carries_the_message_and_its_facts() {
        let j = Job::of(&msg(1, "k"), "conv1", "Flood relief");
        let v: Value = serde_json::from_str(j.stdin.trim()).unwrap();
        assert_eq!(v["conversation"], "conv1");
        assert_eq!(v["conversation_title"], "Flood relief");
        assert!(j.env.contains(&("VAARTA_PRECEDENCE", "flash".into())));
        assert!(j.env.contains(&("VAARTA_MESSAGE", "1.k".into())));
    }
}
