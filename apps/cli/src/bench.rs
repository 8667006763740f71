//! `vaarta bench`: two real nodes (engine, sled with fsync, libp2p TCP+Noise+Yamux) on
//! loopback, measured end to end. Prints a table; the numbers go in docs/performance.md.
//! (`vaarta bench --corpus`, one daemon's storage, is [`crate::corpus`].)
//!
//! * throughput: 64 concurrent senders on A; "delivered" means durable on B (B flushes before
//!   it acknowledges, and answers queries only after its flush);
//! * latency: one message at a time, from the send call on A to B's "messages" event (which B
//!   emits after its flush);
//! * bytes on the wire: TCP payload in both directions of the A–B connection, read from the
//!   kernel (`ss -ti`), divided by messages: it includes Noise, Yamux, framing, pushes,
//!   acknowledgements and reconciliation;
//! * idle reconnect: B restarts after `history` messages and reconciles with nothing new.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use vaarta_node::api::OutgoingMessage;
use vaarta_node::{Home, Node, Options, Request};

fn opts(peers: &[String]) -> Result<Options> {
    Ok(Options {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        peers: peers.iter().map(|p| p.parse()).collect::<Result<_, _>>()?,
        mdns: false,
        publish_api: false,
        ..Options::default()
    })
}

/// TCP payload bytes (sent + received) on sockets whose local port is `port`.
fn tcp_bytes(port: u16) -> Option<u64> {
    tcp_bytes_dir(port).map(|(s, r)| s + r)
}

/// (sent, received) TCP payload bytes on sockets whose local port is `port`.
fn tcp_bytes_dir(port: u16) -> Option<(u64, u64)> {
    let per = tcp_sockets(port)?;
    Some(per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)))
}

/// Per established socket with local port `port` (keyed by the peer address): (sent, received).
fn tcp_sockets(port: u16) -> Option<std::collections::BTreeMap<String, (u64, u64)>> {
    let out = std::process::Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = std::collections::BTreeMap::new();
    let mut peer = String::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            peer = line.split_whitespace().nth(3).unwrap_or("").to_string();
            continue;
        }
        let (mut sent, mut recv) = (0, 0);
        for tok in line.split_whitespace() {
            if let Some(v) = tok.strip_prefix("bytes_sent:") {
                sent = v.parse::<u64>().unwrap_or(0);
            }
            if let Some(v) = tok.strip_prefix("bytes_received:") {
                recv = v.parse::<u64>().unwrap_or(0);
            }
        }
        map.insert(peer.clone(), (sent, recv));
    }
    Some(map)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

async fn wait_for<F>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: AsyncFnMut() -> bool,
{
    let t = Instant::now();
    while t.elapsed() < timeout {
        if check().await {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

async fn newest(n: &Node, conv: &str) -> Option<String> {
    match n
        .call(Request::Messages {
            conversation: conv.into(),
            limit: 1,
            from_page: None,
            before: None,
        })
        .await
    {
        Ok(Value::Array(a)) => a
            .first()
            .and_then(|m| m["body"].as_str().map(str::to_string)),
        _ => None,
    }
}

pub(crate) fn body(i: usize) -> String {
    // 100 bytes of chat-like text (ASCII, so length is exact).
    let mut s =
        format!("msg {i:06}: boat team at ghat 3 needs tarpaulins, ORS and drinking water now. ");
    while s.len() < 100 {
        s.push('.');
    }
    s.truncate(100);
    s
}

fn one(b: String) -> Vec<OutgoingMessage> {
    vec![OutgoingMessage {
        body: b,
        precedence: None,
        expires_in_ms: None,
        removed_expires_in_s: None,
        reply_to: None,
    }]
}

/// The `p` quantile of latencies in milliseconds: nearest rank (rank `ceil(p·n)`), read from
/// an HDR histogram of microseconds with 3 significant figures (at most 0.1% above the exact
/// sample). 0 for no samples.
pub(crate) fn pct(ms: &[f64], p: f64) -> f64 {
    let Ok(mut h) = hdrhistogram::Histogram::<u64>::new(3) else {
        return 0.0;
    };
    for &v in ms {
        // Auto-resizing, so any non-negative latency is recorded.
        let _ = h.record((v.max(0.0) * 1000.0).round() as u64);
    }
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(p) as f64 / 1000.0
}

pub fn run(messages: usize, history: usize, json_out: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    rt.block_on(bench(messages, history, json_out))
}

async fn bench(messages: usize, history: usize, json_out: bool) -> Result<()> {
    if messages == 0 {
        bail!("--messages must be at least 1");
    }
    // The latency run writes 500 messages first; the history includes them and the
    // throughput run.
    if history < messages + 500 {
        bail!(
            "--history {history} is less than what the run writes before it ({} messages: 500 for latency and --messages {messages})",
            messages + 500
        );
    }
    let root = tempfile::Builder::new().prefix("vaarta-bench-").tempdir()?;
    let ha = Home::new(root.path().join("a"));
    let hb = Home::new(root.path().join("b"));
    ha.init("A").map_err(|e| anyhow!("{e}"))?;
    hb.init("B").map_err(|e| anyhow!("{e}"))?;
    let a = Node::start(&ha, opts(&[])?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let a_addr = a.listen[0].to_string();
    let a_port = port_of(&a_addr);
    let mut b = Node::start(&hb, opts(std::slice::from_ref(&a_addr))?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    // B accepts A's device, so A's invitation is taken at once.
    b.call(Request::AcceptInvitation {
        id: a.device_id.clone(),
    })
    .await
    .map_err(|e| anyhow!(e.message))?;
    let created = a
        .call(Request::CreateConversation {
            title: "bench".into(),
            members: vec![b.device_id.clone()],
            history_from_join: false,
        })
        .await
        .map_err(|e| anyhow!(e.message))?;
    let conv = created["id"].as_str().unwrap_or("").to_string();
    wait_for("B joins", Duration::from_secs(30), async || {
        b.call(Request::Conversation {
            conversation: conv.clone(),
        })
        .await
        .is_ok_and(|c| c["member"] == true)
    })
    .await?;
    eprintln!("nodes up and linked; measuring...");

    // Latency and paced bytes: one message at a time.
    let paced = 500;
    let mut events = b.events.subscribe();
    let bytes0 = tcp_bytes(a_port).unwrap_or(0);
    let dir0 = tcp_bytes_dir(a_port).unwrap_or((0, 0));
    let st0 = a
        .call(Request::Status)
        .await
        .map_err(|e| anyhow!(e.message))?;
    let mut lat = Vec::with_capacity(paced);
    for i in 0..paced {
        while events.try_recv().is_ok() {}
        let t0 = Instant::now();
        a.call(Request::Send {
            conversation: conv.clone(),
            messages: one(body(i)),
        })
        .await
        .map_err(|e| anyhow!(e.message))?;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .map_err(|_| anyhow!("no event on B"))??;
            if ev.contains("\"messages\"") {
                break;
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Let the acknowledgement travel back before the next one.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paced_bytes = tcp_bytes(a_port).map(|b1| b1.saturating_sub(bytes0) as f64 / paced as f64);
    let dir1 = tcp_bytes_dir(a_port).unwrap_or((0, 0));
    let paced_dir = (
        (dir1.0 - dir0.0) as f64 / paced as f64,
        (dir1.1 - dir0.1) as f64 / paced as f64,
    );
    let st1 = a
        .call(Request::Status)
        .await
        .map_err(|e| anyhow!(e.message))?;
    let d = |k: &str| {
        (st1["traffic"][k].as_u64().unwrap_or(0) - st0["traffic"][k].as_u64().unwrap_or(0)) as f64
            / paced as f64
    };
    eprintln!(
        "paced: per message A sent {:.1} frames / {:.1} bytes of Vaarta frames, received {:.1} frames / {:.1} bytes",
        d("frames_out"),
        d("bytes_out"),
        d("frames_in"),
        d("bytes_in")
    );

    // Throughput: up to 64 concurrent senders share `messages - 1` messages exactly; the
    // last one is the marker that B must hold, so `messages` are measured.
    let bytes0 = tcp_bytes(a_port).unwrap_or(0);
    let t0 = Instant::now();
    let spread = messages - 1;
    let senders = spread.clamp(1, 64);
    let mut tasks = Vec::new();
    let a = std::sync::Arc::new(a);
    let mut next = paced;
    for s in 0..senders {
        let a = a.clone();
        let conv = conv.clone();
        let count = spread / senders + usize::from(s < spread % senders);
        let first = next;
        next += count;
        tasks.push(tokio::spawn(async move {
            for i in first..first + count {
                a.call(Request::Send {
                    conversation: conv.clone(),
                    messages: one(body(i)),
                })
                .await
                .map_err(|e| anyhow!(e.message))?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let marker = "end of throughput run".to_string();
    a.call(Request::Send {
        conversation: conv.clone(),
        messages: one(marker.clone()),
    })
    .await
    .map_err(|e| anyhow!(e.message))?;
    wait_for("B has everything", Duration::from_secs(300), async || {
        newest(&b, &conv).await.as_deref() == Some(marker.as_str())
    })
    .await?;
    let el = t0.elapsed().as_secs_f64();
    let sent = messages;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst_bytes = tcp_bytes(a_port).map(|b1| b1.saturating_sub(bytes0) as f64 / sent as f64);
    let got = match b
        .call(Request::Messages {
            conversation: conv.clone(),
            limit: (paced + sent).min(vaarta_node::api::MAX_LIMIT),
            from_page: None,
            before: None,
        })
        .await
    {
        Ok(Value::Array(m)) => m.len(),
        _ => 0,
    };
    if got != (paced + sent).min(vaarta_node::api::MAX_LIMIT) {
        bail!("B has {got} messages, expected {}", paced + sent);
    }
    let rate = sent as f64 / el;

    // History for the idle reconnect: batches of 100 per call.
    let have = paced + sent;
    let mut i = have;
    while i < history {
        let n = (history - i).min(100);
        let batch: Vec<OutgoingMessage> = (i..i + n).flat_map(|k| one(body(k))).collect();
        a.call(Request::Send {
            conversation: conv.clone(),
            messages: batch,
        })
        .await
        .map_err(|e| anyhow!(e.message))?;
        i += n;
    }
    let last = body(i.max(have) - 1);
    let target = if history > have { last } else { marker.clone() };
    wait_for("history on B", Duration::from_secs(600), async || {
        newest(&b, &conv).await.as_deref() == Some(target.as_str())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    let old_sockets = tcp_sockets(a_port).unwrap_or_default();
    b = Node::start(&hb, opts(std::slice::from_ref(&a_addr))?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut ev = b.events.subscribe();
    let t0 = Instant::now();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), ev.recv())
            .await
            .map_err(|_| anyhow!("no reconciliation"))??;
        if e.contains("\"reconciled\"") {
            break;
        }
    }
    let reconnect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Vaarta's own frames on the new link (hello, tag sync, reconciliation), both directions.
    let st = b
        .call(Request::Status)
        .await
        .map_err(|e| anyhow!(e.message))?;
    let vaarta_reconnect = st["traffic"]["bytes_in"].as_u64().unwrap_or(0)
        + st["traffic"]["bytes_out"].as_u64().unwrap_or(0);
    // Only the new connection counts (the old one may linger in the table while it closes).
    let reconnect_bytes = tcp_sockets(a_port).map(|m| {
        m.iter()
            .filter(|(k, _)| !old_sockets.contains_key(*k))
            .map(|(_, v)| v.0 + v.1)
            .sum::<u64>()
    });
    let status = b
        .call(Request::Status)
        .await
        .map_err(|e| anyhow!(e.message))?;
    let history_total = history;

    let p50 = pct(&lat, 0.5);
    let p99 = pct(&lat, 0.99);
    let report = json!({
        "throughput_msgs_per_s": rate,
        "throughput_messages": sent,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "bytes_per_message_paced": paced_bytes,
        "bytes_per_message_paced_a_to_b": paced_dir.0,
        "bytes_per_message_paced_b_to_a": paced_dir.1,
        "bytes_per_message_burst": burst_bytes,
        "idle_reconnect_bytes": reconnect_bytes,
        "idle_reconnect_vaarta_frame_bytes": vaarta_reconnect,
        "idle_reconnect_ms": reconnect_ms,
        "history_messages": history_total,
        "b_stored_bytes": status["stored_bytes"],
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "# Vaarta node benchmark: two nodes on loopback (TCP + Noise + Yamux, sled with fsync)\n"
        );
        println!("| measure | value | target |");
        println!("|---|---:|---:|");
        println!(
            "| messages/s delivered A→B, durable on both ({sent} messages, 64 senders) | {rate:.0} | ≥ 5,000 |"
        );
        println!(
            "| one-hop latency p50, warm link (500 messages, one at a time) | {p50:.2} ms | ≤ 2 ms |"
        );
        println!("| one-hop latency p99 | {p99:.2} ms | ≤ 10 ms |");
        match paced_bytes {
            Some(v) => println!(
                "| TCP bytes per 100-byte message, one at a time, incl. receipt ({:.0} A→B, {:.0} B→A) | {v:.0} | ≤ 300 |",
                paced_dir.0, paced_dir.1
            ),
            None => println!("| TCP bytes per message | (ss not available) | |"),
        }
        if let Some(v) = burst_bytes {
            println!(
                "| TCP bytes per 100-byte message, burst (group commit), incl. receipts | {v:.0} | ≤ 300 |"
            );
        }
        println!(
            "| Vaarta frame bytes for an idle reconnect after {history_total} messages (hello, reconciliation; both ways) | {vaarta_reconnect} | ≤ 1 KB |"
        );
        match reconnect_bytes {
            Some(v) => println!(
                "| TCP bytes for that reconnect, incl. libp2p connection set-up (Noise, Yamux, identify, ping, stream negotiation) | {v} | |"
            ),
            None => println!("| TCP bytes for that reconnect | (ss not available) | |"),
        }
        println!("| idle reconnect until reconciled | {reconnect_ms:.0} ms | |");
    }
    if let Ok(a) = std::sync::Arc::try_unwrap(a) {
        a.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    }
    b.shutdown().await.map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
