//! `vaarta bench --corpus N`: one real daemon (this binary run as `vaarta up` in a temporary
//! home) filled with N messages through its HTTP API, then measured as issue 11 asks.
//!
//! * fill: N messages of 100 bytes, round-robin over C conversations (no other members),
//!   one message per request, K client threads sharing one counter;
//! * disk: every file under the home after a clean stop (SIGTERM), apparent size and
//!   allocated blocks (`st_blocks · 512`), per message;
//! * cold start: spawn of `vaarta up` until its API first answers `GET /v1/status`;
//! * RSS: `VmRSS` of the daemon from `/proc/PID/status` (Linux only; elsewhere "n/a"),
//!   after the restart and after reading every conversation's newest 50;
//! * newest 50: one request per conversation, p50/p99 through [`crate::bench::pct`];
//! * scroll back 1,000 in one conversation: the newest 50, then 19 requests of
//!   `limit=50&before=<oldest id seen>`, timed together; one request for the newest 1,000 is
//!   timed as well, and the run fails unless the scroll yielded exactly those, in order;
//! * read-back: every conversation read whole through the API (after the measurements, as
//!   it loads every page); the run fails unless it holds the N acknowledged messages.
//!
//! The daemon is always killed and the home removed when the run ends, also on error and
//! on Ctrl-C, SIGTERM or SIGHUP (the signal kills the daemon; the run then fails and cleans
//! up).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use vaarta_node::api::{MAX_LIMIT, OutgoingMessage};
use vaarta_node::client::Client;
use vaarta_node::{ApiError, Home, Request};

use crate::bench::{body, pct};

/// What `vaarta bench --corpus` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Args {
    pub messages: u64,
    pub conversations: u64,
    pub clients: u64,
    /// No progress on standard error (`--quiet` or `--json`).
    pub quiet: bool,
    pub json: bool,
}

/// How long the daemon may take to answer after its spawn, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// The scroll: this many messages, in steps of [`SCREEN`].
const SCROLL: usize = 1_000;
const SCREEN: usize = 50;

/// The running daemon's pid (0: none), for the signal watcher.
static DAEMON: AtomicU32 = AtomicU32::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Kills the daemon on Ctrl-C, SIGTERM or SIGHUP, so that the run fails at its next step
/// and drops its [`Run`] (which removes the home) instead of the process dying with it.
fn watch_signals() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(anyhow!("cannot watch for signals: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            let kinds = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ];
            let mut sigs = Vec::new();
            for k in kinds {
                match signal(k) {
                    Ok(s) => sigs.push(s),
                    Err(e) => {
                        let _ = ready.send(Err(anyhow!("cannot watch for signals: {e}")));
                        return;
                    }
                }
            }
            let _ = ready.send(Ok(()));
            let [a, b, c] = &mut sigs[..] else { return };
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
            let pid = DAEMON.load(Ordering::SeqCst);
            if pid != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        });
    });
    is_ready
        .recv()
        .map_err(|_| anyhow!("cannot watch for signals"))?
}

/// Checks the arguments: clear errors before anything starts.
pub fn check(a: &Args) -> Result<()> {
    if a.messages == 0 {
        bail!("--corpus must be at least 1 (the number of messages to fill)");
    }
    if a.conversations == 0 {
        bail!("--conversations must be at least 1");
    }
    if a.conversations > a.messages {
        bail!(
            "--conversations {} is more than --corpus {}: every conversation needs at least one message",
            a.conversations,
            a.messages
        );
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    Ok(())
}

/// The temporary home and the daemon running on it. Dropping it kills the daemon (if still
/// running) and then removes the home.
struct Run {
    child: Option<Child>,
    home: Home,
    log: PathBuf,
    // Declared last: removed after `drop` has killed the daemon.
    /// `None` once kept ([`Run::keep`]).
    root: Option<tempfile::TempDir>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            DAEMON.store(0, Ordering::SeqCst);
            let _ = c.wait();
        }
    }
}

impl Run {
    fn new() -> Result<Run> {
        let root = tempfile::Builder::new()
            .prefix("vaarta-corpus-")
            .tempdir()?;
        let run = Run {
            child: None,
            home: Home::new(root.path().join("home")),
            // Outside the home, so it is not counted as stored bytes.
            log: root.path().join("daemon.log"),
            root: Some(root),
        };
        let out = run
            .vaarta()
            .args(["init", "--name", "corpus"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| anyhow!("cannot run {}: {e}", exe_name()))?;
        if !out.status.success() {
            bail!(
                "`vaarta init` in the temporary home failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(run)
    }

    /// Keeps the temporary home (the daemon is down) for `census` and prints where it is.
    fn keep(&mut self) {
        if let Some(root) = self.root.take() {
            eprintln!(
                "VAARTA_CORPUS_KEEP: the home is kept at {}",
                root.keep().join("home").display()
            );
        }
    }

    /// This binary against the temporary home, with no peers or addresses from the
    /// environment.
    fn vaarta(&self) -> Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vaarta"));
        let mut c = Command::new(exe);
        for v in ["VAARTA_HOME", "VAARTA_LISTEN", "VAARTA_PEERS", "VAARTA_API"] {
            c.env_remove(v);
        }
        c.arg("--home").arg(&self.home.dir);
        c
    }

    /// Spawns `vaarta up` and waits until its API answers; returns the client and the time
    /// from the spawn to that first answer.
    fn start(&mut self) -> Result<(Client, Duration)> {
        let _ = std::fs::remove_file(self.home.api_path());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = self.vaarta();
        cmd.args(["up", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let me = self.home.info().map_err(|e| anyhow!("{e}"))?;
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| anyhow!("cannot start `{} up`: {e}", exe_name()))?;
        DAEMON.store(child.id(), Ordering::SeqCst);
        self.child = Some(child);
        loop {
            if let Some(st) = self.exited() {
                bail!(
                    "the daemon exited before its API answered ({st}); its output ends:\n{}",
                    self.log_tail()
                );
            }
            if let Some((info, token)) = self.home.running_api() {
                let c = Client::new(&info.addr, &token);
                if let Ok(s) = c.request(Request::Status)
                    && s["device_id"].as_str() == Some(me.device_id.as_str())
                {
                    return Ok((c, t0.elapsed()));
                }
            }
            if t0.elapsed() > START_TIMEOUT {
                bail!(
                    "the daemon did not answer within {START_TIMEOUT:?}; its output ends:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the daemon with SIGTERM and waits for a clean exit.
    fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            self.child = Some(c);
            bail!("cannot send SIGTERM to the daemon (`kill` failed)");
        }
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait()? {
                DAEMON.store(0, Ordering::SeqCst);
                if !st.success() {
                    bail!(
                        "the daemon did not stop cleanly ({st}); its output ends:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if t.elapsed() > STOP_TIMEOUT {
                self.child = Some(c);
                bail!("the daemon did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's exit status, if it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last 4 KB of what the daemon printed.
    fn log_tail(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return "(no output)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let s = String::from_utf8_lossy(&buf).trim().to_string();
        if s.is_empty() {
            "(no output)".into()
        } else {
            s
        }
    }

    /// A failed request as an error: what was asked, the HTTP status and the API's message,
    /// and the daemon's output if it has exited.
    fn failed(&mut self, what: &str, e: ApiError) -> anyhow::Error {
        let mut msg = format!("{what} failed: HTTP {}: {}", e.status, e.message);
        if let Some(st) = self.exited() {
            msg.push_str(&format!(
                "\nthe daemon exited ({st}); its output ends:\n{}",
                self.log_tail()
            ));
        }
        anyhow!(msg)
    }
}

fn exe_name() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "vaarta".into())
}

/// The resident set of a process in bytes (`VmRSS` in `/proc/PID/status`); `None` where
/// there is no such file (not Linux).
fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn disk(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| anyhow!("cannot read {}: {e}", d.display()))? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total.0 += m.len();
                total.1 += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}

fn one(text: String) -> Vec<OutgoingMessage> {
    vec![OutgoingMessage {
        body: text,
        precedence: None,
        expires_in_ms: None,
        removed_expires_in_s: None,
        reply_to: None,
    }]
}

fn newest(c: &Client, conv: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
    messages(c, conv, limit, None)
}

/// The `limit` messages just older than `before` (`None`: the newest `limit`).
fn messages(
    c: &Client,
    conv: &str,
    limit: usize,
    before: Option<String>,
) -> Result<Vec<Value>, ApiError> {
    match c.request(Request::Messages {
        conversation: conv.into(),
        limit,
        from_page: None,
        before,
    })? {
        Value::Array(a) => Ok(a),
        other => Err(ApiError {
            status: 200,
            message: format!("expected a list of messages, got {other}"),
        }),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the corpus benchmark and prints its table (or JSON).
pub fn run(a: Args) -> Result<()> {
    check(&a)?;
    watch_signals()?;
    let r = measure(a);
    if r.is_err() && INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: the daemon was killed and its temporary home removed");
    }
    r
}

fn measure(a: Args) -> Result<()> {
    let n = a.messages as usize;
    let convs_n = a.conversations as usize;
    let clients = (a.clients as usize).min(n);
    // Messages in conversation k (message i goes to conversation i mod C).
    let held = |k: usize| n / convs_n + usize::from(k < n % convs_n);
    let note = |s: &str| {
        if !a.quiet {
            eprintln!("{s}");
        }
    };
    let mut run = Run::new()?;
    let (client, first_start) = run.start()?;
    note(&format!(
        "daemon up in {:.0} ms; creating {convs_n} conversations",
        ms(first_start)
    ));
    let mut convs = Vec::with_capacity(convs_n);
    for i in 0..convs_n {
        let created = client
            .request(Request::CreateConversation {
                title: format!("corpus {i}"),
                members: Vec::new(),
                history_from_join: false,
            })
            .map_err(|e| run.failed("creating a conversation", e))?;
        let id = created["id"]
            .as_str()
            .ok_or_else(|| anyhow!("the node created a conversation without an id: {created}"))?;
        convs.push(id.to_string());
    }

    // Fill: each client takes the next index; message i goes to conversation i mod C.
    let convs = Arc::new(convs);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, convs) = (client.clone(), convs.clone());
            let (next, done, stop) = (next.clone(), done.clone(), stop.clone());
            // Each client answers when it saw its last answer.
            std::thread::spawn(move || -> Result<Instant, (usize, ApiError)> {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = client.request(Request::Send {
                        conversation: convs[i % convs.len()].clone(),
                        messages: one(body(i)),
                    });
                    if let Err(e) = r {
                        stop.store(true, Ordering::Relaxed);
                        return Err((i, e));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Instant::now())
            })
        })
        .collect();
    let mut last = Instant::now();
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if last.elapsed() >= Duration::from_secs(3) {
            last = Instant::now();
            let d = done.load(Ordering::Relaxed);
            note(&format!(
                "filled {d} of {n} ({:.0} msg/s)",
                d as f64 / t0.elapsed().as_secs_f64()
            ));
        }
    }
    let mut first_err = None;
    let mut end = t0;
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => end = end.max(t),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => bail!("a client thread panicked"),
        }
    }
    if let Some((i, e)) = first_err {
        return Err(run.failed(&format!("sending message {i}"), e));
    }
    let fill = end - t0;
    let fill_rate = n as f64 / fill.as_secs_f64();
    let rss_after_fill = run.pid().and_then(rss);
    note(&format!(
        "filled {n} messages in {:.1} s ({fill_rate:.0} msg/s); stopping the daemon",
        fill.as_secs_f64()
    ));
    drop(client);
    run.stop()?;
    let (apparent, allocated) = disk(&run.home.dir)?;
    // Where the bytes are: the envelope log (the envelopes themselves, sealed in frames),
    // the saved pages' files, and the sled database beside them (the `env` locations and
    // metadata; the page journal's file is counted with it).
    let db = run.home.db_path();
    let (log_bytes, _) = disk(&db.join(vaarta_node::store::LOG_DIR))?;
    let (page_bytes, _) = disk(&db.join(vaarta_node::pages::PAGES_DIR))?;
    let (db_bytes, _) = disk(&db)?;
    let sled_bytes = db_bytes.saturating_sub(log_bytes + page_bytes);

    // Restart: cold start and memory with the whole history on disk.
    let (client, cold) = run.start()?;
    let rss_after_start = run.pid().and_then(rss);
    note(&format!(
        "restarted in {:.0} ms; reading every conversation's newest {SCREEN}",
        ms(cold)
    ));
    let mut reads = Vec::with_capacity(convs.len());
    for (k, conv) in convs.iter().enumerate() {
        let t = Instant::now();
        let got = newest(&client, conv, SCREEN)
            .map_err(|e| run.failed("reading a conversation's newest 50", e))?;
        reads.push(ms(t.elapsed()));
        let held = held(k);
        if got.len() != held.min(SCREEN) {
            bail!(
                "conversation {conv} answered {} of its newest {SCREEN} messages, expected {}",
                got.len(),
                held.min(SCREEN)
            );
        }
    }
    let rss_after_reads = run.pid().and_then(rss);

    // Scroll back in the first (fullest) conversation: its newest screen, then each older
    // screen before the oldest message seen.
    let scroll = held(0).min(SCROLL);
    let mut seen: Vec<Value> = Vec::with_capacity(scroll);
    let mut requests = 0;
    let t = Instant::now();
    while seen.len() < scroll {
        let limit = SCREEN.min(scroll - seen.len());
        let before = seen
            .first()
            .map(|m| m["id"].as_str().unwrap_or("").to_string());
        let got = messages(&client, &convs[0], limit, before)
            .map_err(|e| run.failed("scrolling back", e))?;
        requests += 1;
        if got.len() != limit {
            bail!(
                "scrolling back: asked for {limit} messages after {} seen, got {}",
                seen.len(),
                got.len()
            );
        }
        seen.splice(0..0, got);
    }
    let scroll_time = t.elapsed();
    let t = Instant::now();
    let newest_scroll = newest(&client, &convs[0], scroll)
        .map_err(|e| run.failed("reading the newest 1,000", e))?;
    let read_scroll = t.elapsed();
    if seen != newest_scroll {
        bail!("scrolling back did not yield the newest {scroll} messages, once each and in order");
    }

    // Read-back: what the node holds, through the API (capped by its limit per request).
    note("counting the messages through the API");
    let (mut read_back, mut expected) = (0, 0);
    for (k, conv) in convs.iter().enumerate() {
        let got = newest(&client, conv, MAX_LIMIT).map_err(|e| run.failed("counting", e))?;
        read_back += got.len();
        expected += held(k).min(MAX_LIMIT);
    }
    let capped = expected < n;
    if read_back != expected {
        bail!(
            "the node answered {read_back} messages; {expected} were acknowledged{}",
            if capped {
                format!(" (counting at most {MAX_LIMIT} per conversation)")
            } else {
                String::new()
            }
        );
    }
    drop(client);
    run.stop()?;
    if std::env::var_os("VAARTA_CORPUS_KEEP").is_some() {
        run.keep();
    }

    let p50 = pct(&reads, 0.5);
    let p99 = pct(&reads, 0.99);
    let per = |b: u64| b as f64 / n as f64;
    let report = json!({
        "corpus_messages": n,
        "conversations": convs_n,
        "clients": clients,
        "messages_read_back": read_back,
        "read_back_capped_per_conversation": capped.then_some(MAX_LIMIT),
        "fill_s": fill.as_secs_f64(),
        "fill_msgs_per_s": fill_rate,
        "disk_apparent_bytes": apparent,
        "disk_allocated_bytes": allocated,
        "disk_apparent_bytes_per_message": per(apparent),
        "disk_allocated_bytes_per_message": per(allocated),
        "envelope_log_bytes": log_bytes,
        "page_files_bytes": page_bytes,
        "sled_bytes": sled_bytes,
        "first_start_ms": ms(first_start),
        "cold_start_ms": ms(cold),
        "rss_after_fill_bytes": rss_after_fill,
        "rss_after_start_bytes": rss_after_start,
        "rss_after_newest_50_bytes": rss_after_reads,
        "newest_50_reads": reads.len(),
        "newest_50_p50_ms": p50,
        "newest_50_p99_ms": p99,
        "scroll_messages": scroll,
        "scroll_requests": requests,
        "scroll_ms": ms(scroll_time),
        "read_newest_scroll_ms": ms(read_scroll),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mb = |b: Option<u64>| match b {
        Some(b) => format!("{:.1} MB", b as f64 / 1e6),
        None => "n/a".into(),
    };
    println!(
        "# Vaarta storage corpus: {n} messages in {convs_n} conversations, one daemon (`vaarta up`), {clients} clients\n"
    );
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| fill through the API, one 100-byte message per request | {fill_rate:.0} msg/s | ≥ 4,000 |"
    );
    println!(
        "| disk per message, everything under the home after a clean stop (apparent size; {apparent} B) | {:.0} B | ≤ 400 |",
        per(apparent)
    );
    println!(
        "| of which the envelope log ({log_bytes} B) / saved pages ({page_bytes} B) / the sled database and journal ({sled_bytes} B) / the rest of the home | {:.0} / {:.0} / {:.0} / {:.0} B | |",
        per(log_bytes),
        per(page_bytes),
        per(sled_bytes),
        per(apparent.saturating_sub(db_bytes))
    );
    println!(
        "| disk per message, allocated blocks ({allocated} B) | {:.0} B | ≤ 400 |",
        per(allocated)
    );
    println!(
        "| cold start with the corpus (spawn → first API answer; empty home: {:.0} ms) | {:.0} ms | ≤ 1,000 ms |",
        ms(first_start),
        ms(cold)
    );
    println!(
        "| RSS after the restart (VmRSS, Linux only) | {} | ≤ 150 MB |",
        mb(rss_after_start)
    );
    println!(
        "| RSS after reading every conversation's newest {SCREEN} | {} | ≤ 150 MB |",
        mb(rss_after_reads)
    );
    println!(
        "| newest {SCREEN} of a conversation, p50 ({} reads) | {p50:.2} ms | |",
        reads.len()
    );
    println!("| newest {SCREEN} of a conversation, p99 | {p99:.2} ms | ≤ 20 ms |");
    println!(
        "| scroll back {scroll} messages in one conversation: {requests} requests of {SCREEN}, each `before` the oldest seen | {:.1} ms | ≤ 100 ms |",
        ms(scroll_time)
    );
    println!(
        "| the newest {scroll} in one request | {:.1} ms | |",
        ms(read_scroll)
    );
    println!("| RSS at the end of the fill | {} | |", mb(rss_after_fill));
    println!(
        "| messages read back through the API | {read_back}{} | {n} |",
        if capped {
            format!(" (at most {MAX_LIMIT} per conversation)")
        } else {
            String::new()
        }
    );
    Ok(())
}
