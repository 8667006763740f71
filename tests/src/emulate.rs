//! Emulation with real binaries: N network namespaces on a bridge, link impairment, real
//! `vaarta up` processes discovering each other by mDNS, a workload driven through the CLI,
//! a cut and a heal, and the same metrics as the simulator. Everything created is removed when
//! the run ends, pass or fail (the namespaces and processes are owned by drop guards).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{LinkModel, Netns, Node, wait_for};

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub messages_per_node: usize,
    pub delay_ms: u32,
    pub loss_pct: u32,
    /// Node cut off (link down) for part of the workload.
    pub cut: Option<usize>,
    pub subnet: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nodes: 5,
            messages_per_node: 6,
            delay_ms: 10,
            loss_pct: 1,
            cut: Some(4),
            subnet: 9,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub nodes: usize,
    pub messages: usize,
    pub destinations: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub latency_p50_ms: u64,
    pub latency_p90_ms: u64,
    pub converged: bool,
    pub convergence_after_heal_ms: u64,
    pub bytes_out: u64,
    pub link_model: String,
}

impl Report {
    pub fn json(&self) -> Value {
        json!({
            "nodes": self.nodes, "messages": self.messages, "destinations": self.destinations,
            "delivered": self.delivered, "delivery_ratio": self.delivered as f64 / self.destinations.max(1) as f64,
            "duplicates": self.duplicates, "latency_p50_ms": self.latency_p50_ms, "latency_p90_ms": self.latency_p90_ms,
            "converged": self.converged, "convergence_after_heal_ms": self.convergence_after_heal_ms,
            "bytes_out": self.bytes_out, "bytes_per_delivered": self.bytes_out as f64 / self.delivered.max(1) as f64,
            "link_model": self.link_model,
        })
    }
}

fn log_ids(n: &Node, conv: &str) -> Vec<(String, String)> {
    let out = n.cli(&["log", conv, "--json", "--limit", "100000"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|m| {
            (
                m["id"].as_str().unwrap_or("").to_string(),
                m["body"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Runs an emulation. Panics (after cleaning up) if the environment cannot host it.
pub fn run(cfg: &Config) -> Report {
    let model = LinkModel {
        delay_ms: cfg.delay_ms,
        loss_pct: cfg.loss_pct,
        rate_kbit: None,
    };
    let ns = Netns::bridge(cfg.nodes, cfg.subnet, Some(model));
    let mut nodes: Vec<Node> = (0..cfg.nodes)
        .map(|i| Node::init(&format!("n{i}")))
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.netns = Some(ns.node_ns(i));
        n.up(&["--listen", "/ip4/0.0.0.0/tcp/0"]);
    }
    let t = Duration::from_secs(120);
    for n in &nodes {
        wait_for(&format!("{} to discover peers by mDNS", n.name), t, || {
            (n.linked() >= 1).then_some(())
        });
    }
    let ids: Vec<String> = nodes[1..].iter().map(|n| n.device_id()).collect();
    for n in &nodes[1..] {
        n.accept(&nodes[0]);
    }
    let mut args = vec!["conv", "create", "emulation"];
    for d in &ids {
        args.push("--member");
        args.push(d);
    }
    let conv = nodes[0].ok(&args).trim().to_string();
    for n in &nodes[1..] {
        wait_for("membership", t, || {
            n.is_member_of(&conv, cfg.nodes).then_some(())
        });
    }
    // Workload: rounds of one message per node; the cut node is offline for the middle third.
    // Logs are polled between rounds too, so first-seen times (latency) are measured while the
    // workload runs (resolution: one polling pass, ~100 ms per node).
    let start = Instant::now();
    let mut sent: BTreeMap<String, (usize, Instant)> = BTreeMap::new();
    let mut first_seen: BTreeMap<(String, usize), Instant> = BTreeMap::new();
    let observe = |first_seen: &mut BTreeMap<(String, usize), Instant>| {
        for (i, n) in nodes.iter().enumerate() {
            for (_, body) in log_ids(n, &conv) {
                first_seen.entry((body, i)).or_insert_with(Instant::now);
            }
        }
    };
    let rounds = cfg.messages_per_node;
    let mut heal_at = None;
    for r in 0..rounds {
        if let Some(c) = cfg.cut {
            if r == rounds / 3 {
                ns.set_link(c, false);
            }
            if r == 2 * rounds / 3 {
                ns.set_link(c, true);
                heal_at = Some(Instant::now());
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            let body = format!(
                "round {r} from n{i}: ठीक है, water level at marker {}",
                r * 7 + i
            );
            let t0 = Instant::now();
            n.ok(&["send", &conv, &body]);
            sent.insert(body, (i, t0));
        }
        observe(&mut first_seen);
    }
    let heal_at = heal_at.unwrap_or(start);
    // Watch until every node has every message (or time out), noting first-seen times.
    let mut duplicates = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut converged_at = None;
    while Instant::now() < deadline {
        let mut all = true;
        let mut sets = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let log = log_ids(n, &conv);
            let mut seen_ids = BTreeSet::new();
            let mut bodies = BTreeSet::new();
            for (id, body) in &log {
                if !seen_ids.insert(id.clone()) {
                    duplicates += 1;
                }
                bodies.insert(body.clone());
                first_seen
                    .entry((body.clone(), i))
                    .or_insert_with(Instant::now);
            }
            all &= sent.keys().all(|b| bodies.contains(b));
            sets.push(log);
        }
        if all && sets.windows(2).all(|w| w[0] == w[1]) {
            converged_at = Some(Instant::now());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lat: Vec<u64> = Vec::new();
    let mut delivered = 0;
    let mut destinations = 0;
    for (body, (src, at)) in &sent {
        for i in 0..cfg.nodes {
            if i == *src {
                continue;
            }
            destinations += 1;
            if let Some(seen) = first_seen.get(&(body.clone(), i)) {
                delivered += 1;
                lat.push(seen.saturating_duration_since(*at).as_millis() as u64);
            }
        }
    }
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let bytes_out: u64 = nodes
        .iter()
        .map(|n| {
            n.json(&["id"])["traffic"]["bytes_out"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let report = Report {
        nodes: cfg.nodes,
        messages: sent.len(),
        destinations,
        delivered,
        duplicates,
        latency_p50_ms: p(0.5),
        latency_p90_ms: p(0.9),
        converged: converged_at.is_some(),
        convergence_after_heal_ms: converged_at
            .map(|c| c.saturating_duration_since(heal_at).as_millis() as u64)
            .unwrap_or(0),
        bytes_out,
        link_model: ns.impairment.clone(),
    };
    for n in &mut nodes {
        n.stop();
    }
    drop(ns);
    report
}
