//! Replaying The ONE (akeranen/the-one) on its own contacts and messages, with its baselines
//! modelled the way it models them, so that delivery, overhead and latency can be compared
//! number for number with its `MessageStatsReport`.
//!
//! Inputs (named by a scenario file, see `simulations/scenarios/README.md`):
//! - a `ConnectivityONEReport` (`<time> CONN <addr1> <addr2> up|down`);
//! - the messages: a `CreatedMessagesReport` (`time ID size fromHost toHost TTL isResponse`)
//!   or an external events file (`time C id from to size [responseSize]`), one-to-one
//!   between hosts named by a group prefix plus the numeric address (`c42`) or the address;
//! - the host groups in The ONE's order (address ranges follow from it), each with its
//!   interfaces and buffer.
//!
//! What is modelled, as The ONE's `World`, `DTNHost`, `ActiveRouter`, `CBRConnection` and the
//! three routers do it (read from its source, not copied):
//! - **Update passes.** Each update interval (tick) ends with a pass over every host in a
//!   freshly shuffled order; every message-creation event gets a pass of its own at its time,
//!   before the tick's connectivity changes. In a pass a host first applies the connection
//!   changes it is the first of its pair to see (its interfaces' update), then runs its
//!   router.
//! - **Connections.** One connection per shared interface type (a pair with two shared
//!   interfaces can hold two). The report does not name the interface: with nested ranges,
//!   the first `up` of a pair is on the longest-range shared interface that is not up, and a
//!   `down` takes the shortest-range one that is up. Speed is the interface's transmit speed.
//! - **Transfers.** A connection carries one message at a time, in either direction, and a
//!   host takes part in at most one transfer at a time (sending or receiving; The ONE's
//!   `isTransferring`). A transfer of `size` bytes at `speed` ends `size/speed` s after it
//!   starts and is finalized at the sender's first update after that (relayed, delivered);
//!   if the connection went down before that update, it is aborted.
//! - **Buffers.** Finite, per group; room is made by dropping the oldest received message
//!   that is not being sent (FIFO), at creation and before accepting a transfer.
//! - **TTL** in minutes, The ONE's integer `getTtl()` (remaining minutes, truncated): a relay
//!   refuses a message whose TTL reads 0 unless it is the destination; each host drops its
//!   expired messages every 60 s when it is not sending.
//! - **Routers.** Epidemic (deliverable messages first, then any message the peer lacks),
//!   binary or plain Spray-and-Wait (`copies` tokens; a sender keeps ⌈n/2⌉, the receiver gets
//!   ⌊n/2⌋ as of the transfer's start; one token: direct delivery only) and PRoPHET
//!   (`P_init`, `β`, `γ`, seconds per time unit; encounter update and transitivity on every
//!   connection that comes up, initiator first; lazy aging; forwards a message to a peer
//!   whose predictability for its destination is higher, highest first).
//! - The ONE's random send queue (`sendQueue` = random, its default) shuffles the candidates
//!   and sends the first one the peer accepts; here a uniformly random acceptable candidate
//!   is taken, which has the same distribution. Java's shuffles and hash orders cannot be
//!   reproduced, so runs agree statistically, not event for event.
//!
//! Statistics are The ONE's `MessageStatsReport`: `delivery_prob = delivered / created`,
//! `overhead_ratio = (relayed − delivered) / delivered`, median = the element at index
//! `n / 2` of the sorted latencies.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// A scenario that replays The ONE's inputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Drives the update order and the random send queue.
    #[serde(default = "one")]
    pub seed: u64,
    /// The ONE connectivity report (relative to the scenario file).
    pub connectivity: String,
    /// A CreatedMessagesReport or an external events file (relative to the scenario file).
    pub messages: String,
    /// `Scenario.updateInterval`, seconds.
    #[serde(default = "one_f")]
    pub update_interval_s: f64,
    /// `Scenario.endTime`, seconds.
    pub end_time_s: f64,
    /// `Group.msgTtl`, minutes: for messages whose file gives no TTL (external events).
    #[serde(default)]
    pub ttl_min: Option<u32>,
    /// Interface types by name.
    pub interfaces: BTreeMap<String, OneInterface>,
    /// Host groups in The ONE's order: addresses are assigned in this order from 0.
    #[serde(rename = "group")]
    pub groups: Vec<OneGroup>,
    /// Any of `epidemic`, `prophet`, `spray-and-wait`.
    #[serde(default = "all_routers")]
    pub routers: Vec<String>,
    #[serde(default)]
    pub spray_and_wait: SprayConfig,
    #[serde(default)]
    pub prophet: ProphetConfig,
    /// The ONE's MessageStatsReport per router, to compare with (relative to the file).
    #[serde(default)]
    pub reference: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}
fn one_f() -> f64 {
    1.0
}
fn all_routers() -> Vec<String> {
    vec!["epidemic".into(), "prophet".into(), "spray-and-wait".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneInterface {
    /// `transmitSpeed`, bytes per second (The ONE's `250k` is 250,000).
    pub speed_bytes_s: f64,
    /// `transmitRange`, metres: orders a pair's connections (longest comes up first).
    pub range_m: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneGroup {
    /// `groupID`: host names are this prefix plus the address.
    pub prefix: String,
    pub count: usize,
    /// Interface names, in the group's order (`interface1`, `interface2`, …).
    pub interfaces: Vec<String>,
    /// `bufferSize`, bytes (The ONE's `5M` is 5,000,000).
    pub buffer_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SprayConfig {
    #[serde(default = "six")]
    pub copies: u32,
    #[serde(default = "yes")]
    pub binary: bool,
}

impl Default for SprayConfig {
    fn default() -> Self {
        Self {
            copies: 6,
            binary: true,
        }
    }
}

fn six() -> u32 {
    6
}
fn yes() -> bool {
    true
}

/// The ONE's ProphetRouter parameters (its defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProphetConfig {
    #[serde(default = "p_init")]
    pub p_init: f64,
    #[serde(default = "beta")]
    pub beta: f64,
    #[serde(default = "gamma")]
    pub gamma: f64,
    #[serde(default = "thirty")]
    pub seconds_in_time_unit: f64,
}

impl Default for ProphetConfig {
    fn default() -> Self {
        Self {
            p_init: p_init(),
            beta: beta(),
            gamma: gamma(),
            seconds_in_time_unit: thirty(),
        }
    }
}

fn p_init() -> f64 {
    0.75
}
fn beta() -> f64 {
    0.25
}
fn gamma() -> f64 {
    0.98
}
fn thirty() -> f64 {
    30.0
}

impl OneScenario {
    pub fn parse(text: &str) -> Result<OneScenario, String> {
        let s: OneScenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if s.groups.is_empty() {
            return Err("a scenario needs at least one [[group]]".into());
        }
        for g in &s.groups {
            if g.prefix.is_empty() || g.prefix.chars().any(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "group prefix '{}' must be non-empty and hold no digit",
                    g.prefix
                ));
            }
            if g.interfaces.is_empty() {
                return Err(format!("group {} has no interface", g.prefix));
            }
            for i in &g.interfaces {
                if !s.interfaces.contains_key(i) {
                    return Err(format!("group {} uses unknown interface {i}", g.prefix));
                }
            }
        }
        for (n, i) in &s.interfaces {
            if !(i.speed_bytes_s > 0.0 && i.speed_bytes_s.is_finite() && i.range_m >= 0.0) {
                return Err(format!("interface {n}: speed must be positive, range >= 0"));
            }
        }
        if !(s.update_interval_s > 0.0 && s.update_interval_s.is_finite()) {
            return Err("update_interval_s must be positive".into());
        }
        if !(s.end_time_s > 0.0 && s.end_time_s.is_finite()) {
            return Err("end_time_s must be positive".into());
        }
        if s.end_time_s / s.update_interval_s > 1e8 {
            return Err("more than 10^8 update passes: raise update_interval_s".into());
        }
        for r in &s.routers {
            Router::from_name(r)?;
        }
        for r in s.reference.keys() {
            Router::from_name(r)?;
        }
        if s.spray_and_wait.copies == 0 {
            return Err("spray_and_wait.copies must be at least 1".into());
        }
        let p = &s.prophet;
        if !(0.0..=1.0).contains(&p.p_init)
            || !(0.0..=1.0).contains(&p.beta)
            || !(0.0..=1.0).contains(&p.gamma)
            || !p.seconds_in_time_unit.is_finite()
            || p.seconds_in_time_unit <= 0.0
        {
            return Err(
                "prophet: p_init, beta, gamma in [0, 1], seconds_in_time_unit finite and > 0"
                    .into(),
            );
        }
        Ok(s)
    }

    pub fn host_count(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    /// Group of each address.
    pub fn group_of(&self) -> Vec<usize> {
        self.groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| std::iter::repeat_n(i, g.count))
            .collect()
    }

    /// The host's name as The ONE prints it: group prefix + address.
    pub fn host_name(&self, addr: usize) -> String {
        let g = self.group_of()[addr];
        format!("{}{addr}", self.groups[g].prefix)
    }

    /// Resolves a host name (`c42`, or a bare address `42`) to an address, checking that the
    /// prefix is the group of that address.
    fn host(&self, group_of: &[usize], name: &str) -> Result<usize, String> {
        let prefix_len = name.len() - name.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
        let (prefix, num) = name.split_at(prefix_len);
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("'{name}' is not a host name (prefix + address)"));
        }
        let addr: usize = num
            .parse()
            .map_err(|_| format!("'{name}': address out of range"))?;
        let Some(&g) = group_of.get(addr) else {
            return Err(format!(
                "host '{name}': address {addr} is past the last host ({} hosts)",
                group_of.len()
            ));
        };
        if !prefix.is_empty() && prefix != self.groups[g].prefix {
            return Err(format!(
                "host '{name}': address {addr} belongs to group '{}', not '{prefix}'",
                self.groups[g].prefix
            ));
        }
        Ok(addr)
    }
}

/// A message to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct OneMessage {
    pub id: String,
    pub time_s: f64,
    pub size: u32,
    pub from: usize,
    pub to: usize,
    pub ttl_min: u32,
}

/// Parses a CreatedMessagesReport or an external events file (`C` lines only). `file` names
/// the file in errors (`file:line: …`).
pub fn parse_messages(sc: &OneScenario, text: &str, file: &str) -> Result<Vec<OneMessage>, String> {
    let group_of = sc.group_of();
    let mut out: Vec<OneMessage> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (ln, line) in text.lines().enumerate() {
        let at = |e: String| format!("{file}:{}: {e} (in '{}')", ln + 1, line.trim());
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let time: f64 = f[0]
            .parse()
            .map_err(|_| at(format!("bad time '{}'", f[0])))?;
        if !time.is_finite() || time < 0.0 {
            return Err(at(format!("bad time '{}'", f[0])));
        }
        let msg = if f.len() >= 2 && f[1] == "C" {
            // External events: time C id from to size [responseSize]
            if !(f.len() == 6 || f.len() == 7) {
                return Err(at(
                    "expected 'time C id from to size [responseSize]'".to_string()
                ));
            }
            let size = size_of(f[5]).map_err(at)?;
            if f.len() == 7 && size_of(f[6]).map_err(at)? != 0 {
                return Err(at(
                    "responses are not modelled (responseSize must be 0)".into()
                ));
            }
            let ttl_min = sc.ttl_min.ok_or_else(|| {
                at("external events carry no TTL: set ttl_min in the scenario".into())
            })?;
            OneMessage {
                id: f[2].to_string(),
                time_s: time,
                size,
                from: sc.host(&group_of, f[3]).map_err(at)?,
                to: sc.host(&group_of, f[4]).map_err(at)?,
                ttl_min,
            }
        } else if f.len() == 2 && !f[1].is_empty() {
            return Err(at(format!(
                "unknown event '{}' (only C, message creation, is replayed)",
                f[1]
            )));
        } else {
            // CreatedMessagesReport: time ID size fromHost toHost TTL isResponse
            if f.len() != 7 {
                return Err(at(
                    "expected 'time ID size fromHost toHost TTL isResponse' or 'time C id from to size'"
                        .to_string(),
                ));
            }
            if ["S", "A", "DE", "DR", "R", "CONN"].contains(&f[1]) {
                return Err(at(format!(
                    "unknown event '{}' (only C, message creation, is replayed)",
                    f[1]
                )));
            }
            match f[6] {
                "N" => {}
                "Y" => return Err(at("responses are not modelled (isResponse Y)".into())),
                o => return Err(at(format!("isResponse must be N or Y, got '{o}'"))),
            }
            let ttl_min: u32 = match f[5] {
                "n/a" => {
                    return Err(at("infinite TTL (n/a) is not modelled".into()));
                }
                t => t
                    .parse()
                    .map_err(|_| at(format!("bad TTL '{t}' (minutes)")))?,
            };
            OneMessage {
                id: f[1].to_string(),
                time_s: time,
                size: size_of(f[2]).map_err(at)?,
                from: sc.host(&group_of, f[3]).map_err(at)?,
                to: sc.host(&group_of, f[4]).map_err(at)?,
                ttl_min,
            }
        };
        if msg.from == msg.to {
            return Err(at("a message from a host to itself".into()));
        }
        if msg.size == 0 {
            return Err(at("a message of 0 bytes".into()));
        }
        if let Some(prev) = out.last()
            && msg.time_s < prev.time_s
        {
            return Err(at(format!(
                "time {} is before the previous line's {}",
                msg.time_s, prev.time_s
            )));
        }
        if !ids.insert(msg.id.clone()) {
            return Err(at(format!("duplicate message id {}", msg.id)));
        }
        out.push(msg);
    }
    Ok(out)
}

/// A size as The ONE writes it: bytes, or with `k`/`M`/`G` (powers of 1000).
fn size_of(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1_000u64),
        Some('M') => (&s[..s.len() - 1], 1_000_000),
        Some('G') => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size '{s}'"))?;
    u32::try_from(n * mult).map_err(|_| format!("size '{s}' is over 4 GB"))
}

/// A connection change, with the interface it is on (inferred, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneContact {
    pub time_s: f64,
    pub a: usize,
    pub b: usize,
    pub up: bool,
    /// Index into the scenario's interfaces (sorted by name).
    pub iface: usize,
}

/// Parses a ConnectivityONEReport and assigns each change an interface.
pub fn parse_connectivity(
    sc: &OneScenario,
    text: &str,
    file: &str,
) -> Result<Vec<OneContact>, String> {
    let names: Vec<&String> = sc.interfaces.keys().collect();
    let n = sc.host_count();
    let group_of = sc.group_of();
    let group_ifaces: Vec<Vec<usize>> = sc
        .groups
        .iter()
        .map(|g| {
            g.interfaces
                .iter()
                .map(|i| names.iter().position(|n| *n == i).unwrap_or(0))
                .collect()
        })
        .collect();
    // Up connections per pair: interface indices.
    let mut open: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut last = 0.0f64;
    for (ln, line) in text.lines().enumerate() {
        let at = |e: String| format!("{file}:{}: {e} (in '{}')", ln + 1, line.trim());
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 5 || f[1] != "CONN" {
            return Err(at("expected '<time> CONN <addr1> <addr2> up|down'".into()));
        }
        let t: f64 = f[0]
            .parse()
            .map_err(|_| at(format!("bad time '{}'", f[0])))?;
        if !t.is_finite() || t < last {
            return Err(at(format!("time {} is before the previous line's", f[0])));
        }
        last = t;
        let a = sc.host(&group_of, f[2]).map_err(at)?;
        let b = sc.host(&group_of, f[3]).map_err(at)?;
        if a == b || a >= n || b >= n {
            return Err(at("a connection of a host with itself".into()));
        }
        let (a, b) = (a.min(b), a.max(b));
        let up = match f[4] {
            "up" => true,
            "down" => false,
            o => return Err(at(format!("expected up or down, got '{o}'"))),
        };
        let shared: Vec<usize> = group_ifaces[group_of[a]]
            .iter()
            .copied()
            .filter(|i| group_ifaces[group_of[b]].contains(i))
            .collect();
        if shared.is_empty() {
            return Err(at(format!(
                "hosts {} and {} share no interface",
                sc.host_name(a),
                sc.host_name(b)
            )));
        }
        let range = |i: usize| sc.interfaces[names[i]].range_m;
        let list = open.entry((a, b)).or_default();
        let iface = if up {
            // The longest-range shared interface that is not up yet (first in order on ties).
            let mut best: Option<usize> = None;
            for &i in &shared {
                if !list.contains(&i) && best.is_none_or(|bi| range(i) > range(bi)) {
                    best = Some(i);
                }
            }
            let i = best.ok_or_else(|| {
                at(format!(
                    "'up' for a pair already connected on every interface it shares ({})",
                    shared.len()
                ))
            })?;
            list.push(i);
            i
        } else {
            let mut best: Option<usize> = None;
            for &i in list.iter() {
                if best.is_none_or(|bi| range(i) < range(bi)) {
                    best = Some(i);
                }
            }
            let i = best.ok_or_else(|| at("'down' for a pair that is not connected".into()))?;
            list.retain(|x| *x != i);
            i
        };
        out.push(OneContact {
            time_s: t,
            a,
            b,
            up,
            iface,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Router {
    Epidemic,
    Prophet,
    SprayAndWait,
}

impl Router {
    pub fn from_name(s: &str) -> Result<Router, String> {
        match s {
            "epidemic" => Ok(Router::Epidemic),
            "prophet" => Ok(Router::Prophet),
            "spray-and-wait" => Ok(Router::SprayAndWait),
            o => Err(format!(
                "unknown router {o} (epidemic, prophet, spray-and-wait)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Router::Epidemic => "epidemic",
            Router::Prophet => "prophet",
            Router::SprayAndWait => "spray-and-wait",
        }
    }
}

/// The numbers of The ONE's MessageStatsReport.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageStats {
    pub created: u64,
    pub started: u64,
    pub relayed: u64,
    pub aborted: u64,
    pub dropped: u64,
    pub removed: u64,
    pub delivered: u64,
    pub delivery_prob: f64,
    pub overhead_ratio: f64,
    pub latency_avg: f64,
    pub latency_med: f64,
    pub hopcount_avg: f64,
    pub hopcount_med: u64,
}

impl MessageStats {
    /// Reads The ONE's `MessageStatsReport` text (the fields above; others are ignored).
    pub fn parse_report(text: &str, file: &str) -> Result<MessageStats, String> {
        let mut m = BTreeMap::new();
        for (ln, line) in text.lines().enumerate() {
            if let Some((k, v)) = line.split_once(':')
                && !line.starts_with("Message stats")
            {
                let v = v.trim();
                let x: f64 = if v == "NaN" {
                    f64::NAN
                } else {
                    v.parse()
                        .map_err(|_| format!("{file}:{}: bad number '{v}'", ln + 1))?
                };
                m.insert(k.trim().to_string(), x);
            }
        }
        let get = |k: &str| {
            m.get(k)
                .copied()
                .ok_or_else(|| format!("{file}: no '{k}' line"))
        };
        Ok(MessageStats {
            created: get("created")? as u64,
            started: get("started")? as u64,
            relayed: get("relayed")? as u64,
            aborted: get("aborted")? as u64,
            dropped: get("dropped")? as u64,
            removed: get("removed")? as u64,
            delivered: get("delivered")? as u64,
            delivery_prob: get("delivery_prob")?,
            overhead_ratio: get("overhead_ratio")?,
            latency_avg: get("latency_avg")?,
            latency_med: get("latency_med")?,
            hopcount_avg: get("hopcount_avg")?,
            hopcount_med: get("hopcount_med")? as u64,
        })
    }
}

/// Everything one router's replay produced.
#[derive(Debug, Clone)]
pub struct OneResult {
    pub router: Router,
    pub stats: MessageStats,
    /// (message index, delivery time s) of first deliveries, in time order.
    pub deliveries: Vec<(usize, f64)>,
    /// Update passes run (ticks plus event passes).
    pub passes: u64,
    /// BLAKE3 over every transfer start, finalization and abort.
    pub trace_hash: String,
}

#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64).max(1)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + i)
            })
        })
    }
}

/// The `k`-th set bit of `words` (k < popcount).
fn nth_one(words: &[u64], mut k: u32) -> usize {
    for (w, &word) in words.iter().enumerate() {
        let c = word.count_ones();
        if k < c {
            let mut bits = word;
            for _ in 0..k {
                bits &= bits - 1;
            }
            return w * 64 + bits.trailing_zeros() as usize;
        }
        k -= c;
    }
    unreachable!("k below the popcount")
}

struct InFlight {
    msg: usize,
    from: usize,
    done_s: f64,
    /// Tokens the receiver gets (Spray-and-Wait), as of the start.
    copies: u32,
    hops: u32,
}

struct Conn {
    a: usize,
    b: usize,
    iface: usize,
    speed: f64,
    up: bool,
    flight: Option<InFlight>,
}

impl Conn {
    fn other(&self, x: usize) -> usize {
        if x == self.a { self.b } else { self.a }
    }
}

struct Host {
    has: Bits,
    delivered: Bits,
    bytes: u64,
    cap: u64,
    /// Per message: tokens (Spray-and-Wait), hops so far, tie-break key (PRoPHET), receive
    /// sequence number (for the FIFO drop order).
    copies: Vec<u32>,
    hops: Vec<u32>,
    tie: Vec<u64>,
    recv_seq: Vec<u64>,
    /// (message, receive sequence) in receive order; stale entries are skipped.
    arrivals: VecDeque<(usize, u64)>,
    /// Messages with more than one token (Spray-and-Wait).
    multi: Bits,
    /// The connection this host is sending on.
    sending: Option<usize>,
    /// Up connections, in The ONE's order (by interface of this host, then by coming up).
    conns: Vec<usize>,
    last_ttl_check: f64,
    preds: Vec<f64>,
    last_age: f64,
}

struct Sim<'a> {
    sc: &'a OneScenario,
    router: Router,
    msgs: &'a [OneMessage],
    hosts: Vec<Host>,
    conns: Vec<Conn>,
    /// Per host: interface index → position in the host's interface list.
    iface_pos: Vec<Vec<usize>>,
    /// Messages destined to each host.
    to: Vec<Bits>,
    /// Messages created so far (held or not).
    created: Bits,
    /// Messages whose TTL reads 0 or less now.
    expired: Bits,
    rng: ChaCha8Rng,
    stats: MessageStats,
    latencies: Vec<f64>,
    hopcounts: Vec<u64>,
    deliveries: Vec<(usize, f64)>,
    seq: u64,
    hasher: blake3::Hasher,
    /// Connection changes already applied (by the first host of the pair to update).
    applied: Vec<bool>,
}

/// The ONE's `Message.getTtl()`: remaining whole minutes, truncated.
fn ttl_left(m: &OneMessage, now: f64) -> i64 {
    ((f64::from(m.ttl_min) * 60.0 - (now - m.time_s)) / 60.0) as i64
}

/// Runs one router on the contacts and messages, as The ONE would.
pub fn simulate(
    sc: &OneScenario,
    router: Router,
    contacts: &[OneContact],
    msgs: &[OneMessage],
) -> OneResult {
    let n = sc.host_count();
    let m = msgs.len();
    let names: Vec<&String> = sc.interfaces.keys().collect();
    let group_of = sc.group_of();
    let mut to: Vec<Bits> = (0..n).map(|_| Bits::new(m)).collect();
    for (i, msg) in msgs.iter().enumerate() {
        to[msg.to].set(i);
    }
    let iface_pos = (0..n)
        .map(|h| {
            let g = &sc.groups[group_of[h]];
            (0..names.len())
                .map(|i| {
                    g.interfaces
                        .iter()
                        .position(|x| x == names[i])
                        .unwrap_or(usize::MAX)
                })
                .collect()
        })
        .collect();
    let hosts = (0..n)
        .map(|h| Host {
            has: Bits::new(m),
            delivered: Bits::new(m),
            bytes: 0,
            cap: sc.groups[group_of[h]].buffer_bytes,
            copies: vec![0; m],
            hops: vec![0; m],
            tie: vec![0; m],
            recv_seq: vec![0; m],
            arrivals: VecDeque::new(),
            multi: Bits::new(m),
            sending: None,
            conns: Vec::new(),
            last_ttl_check: 0.0,
            preds: if router == Router::Prophet {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            last_age: 0.0,
        })
        .collect();
    let mut sim = Sim {
        sc,
        router,
        msgs,
        hosts,
        conns: Vec::new(),
        iface_pos,
        to,
        created: Bits::new(m),
        expired: Bits::new(m),
        rng: ChaCha8Rng::seed_from_u64(sc.seed ^ 0x0e5e_ed00 ^ ((router as u64) << 56)),
        stats: MessageStats::default(),
        latencies: Vec::new(),
        hopcounts: Vec::new(),
        deliveries: Vec::new(),
        seq: 0,
        hasher: blake3::Hasher::new(),
        applied: vec![false; contacts.len()],
    };
    let mut order: Vec<usize> = (0..n).collect();
    let mut next_msg = 0;
    let mut next_contact = 0;
    let mut clock = 0.0f64;
    let mut passes = 0u64;
    // Per pass: the pending connection changes of each host (indices into `contacts`).
    let mut pending: Vec<Vec<usize>> = vec![Vec::new(); n];
    while clock < sc.end_time_s {
        let run_until = clock + sc.update_interval_s;
        // Message creation events due by the end of this interval, each with its own pass.
        while next_msg < m && msgs[next_msg].time_s <= run_until {
            let now = msgs[next_msg].time_s.max(clock);
            sim.create(next_msg, now);
            next_msg += 1;
            sim.pass(now, &mut order, contacts, &mut pending);
            passes += 1;
        }
        // Movement → the connectivity changes of this tick.
        while next_contact < contacts.len() && contacts[next_contact].time_s <= run_until {
            let c = &contacts[next_contact];
            pending[c.a].push(next_contact);
            pending[c.b].push(next_contact);
            next_contact += 1;
        }
        clock = run_until;
        sim.pass(clock, &mut order, contacts, &mut pending);
        passes += 1;
    }
    sim.finish(passes)
}

impl Sim<'_> {
    fn create(&mut self, i: usize, now: f64) {
        let msg = &self.msgs[i];
        self.created.set(i);
        self.stats.created += 1;
        let copies = match self.router {
            Router::SprayAndWait => self.sc.spray_and_wait.copies,
            _ => 1,
        };
        // makeRoomForNewMessage, then add even if it does not fit (as The ONE does).
        self.make_room(msg.from, u64::from(msg.size), now);
        self.store(msg.from, i, copies, 0);
    }

    fn store(&mut self, h: usize, i: usize, copies: u32, hops: u32) {
        self.seq += 1;
        let tie = self.rng.next_u64();
        let size = u64::from(self.msgs[i].size);
        let host = &mut self.hosts[h];
        host.has.set(i);
        host.bytes += size;
        host.copies[i] = copies;
        if copies > 1 {
            host.multi.set(i);
        } else {
            host.multi.clear(i);
        }
        host.hops[i] = hops;
        host.tie[i] = tie;
        host.recv_seq[i] = self.seq;
        host.arrivals.push_back((i, self.seq));
    }

    fn delete(&mut self, h: usize, i: usize) {
        let size = u64::from(self.msgs[i].size);
        let host = &mut self.hosts[h];
        debug_assert!(host.has.get(i));
        host.has.clear(i);
        host.multi.clear(i);
        host.bytes -= size;
        self.stats.dropped += 1;
    }

    /// The message `h` is sending, if any.
    fn sending_msg(&self, h: usize) -> Option<usize> {
        self.hosts[h]
            .sending
            .and_then(|c| self.conns[c].flight.as_ref().map(|f| f.msg))
    }

    /// ActiveRouter.makeRoomForMessage: drop the oldest received (not being sent) until
    /// `size` fits. False if it cannot.
    fn make_room(&mut self, h: usize, size: u64, _now: f64) -> bool {
        if size > self.hosts[h].cap {
            return false;
        }
        let busy = self.sending_msg(h);
        let mut skipped: Vec<(usize, u64)> = Vec::new();
        let mut ok = true;
        while self.hosts[h].cap.saturating_sub(self.hosts[h].bytes) < size {
            let Some((i, s)) = self.hosts[h].arrivals.pop_front() else {
                ok = false;
                break;
            };
            let host = &self.hosts[h];
            if !host.has.get(i) || host.recv_seq[i] != s {
                continue; // stale
            }
            if Some(i) == busy {
                skipped.push((i, s));
                continue;
            }
            self.delete(h, i);
        }
        for e in skipped.into_iter().rev() {
            self.hosts[h].arrivals.push_front(e);
        }
        ok
    }

    fn is_transferring(&self, h: usize) -> bool {
        let host = &self.hosts[h];
        host.sending.is_some()
            || host
                .conns
                .iter()
                .any(|&c| self.conns[c].flight.is_some() || !self.conns[c].up)
    }

    fn age(&mut self, h: usize, now: f64) {
        let host = &mut self.hosts[h];
        let diff = (now - host.last_age) / self.sc.prophet.seconds_in_time_unit;
        if diff == 0.0 {
            return;
        }
        let mult = self.sc.prophet.gamma.powf(diff);
        for p in host.preds.iter_mut() {
            *p *= mult;
        }
        host.last_age = now;
    }

    fn pred(&mut self, h: usize, of: usize, now: f64) -> f64 {
        self.age(h, now);
        self.hosts[h].preds[of]
    }

    /// ProphetRouter.changedConnection on `x` for a connection to `y` that came up.
    fn prophet_up(&mut self, x: usize, y: usize, now: f64) {
        let p = &self.sc.prophet;
        let (p_init, beta) = (p.p_init, p.beta);
        let old = self.pred(x, y, now);
        self.hosts[x].preds[y] = old + (1.0 - old) * p_init;
        let p_xy = self.hosts[x].preds[y];
        self.age(y, now);
        for c in 0..self.hosts.len() {
            if c == x {
                continue;
            }
            let p_yc = self.hosts[y].preds[c];
            if p_yc == 0.0 {
                continue; // absent in The ONE's map: no change
            }
            let old = self.hosts[x].preds[c];
            self.hosts[x].preds[c] = old + (1.0 - old) * p_xy * p_yc * beta;
        }
    }

    fn apply_contact(&mut self, c: &OneContact, initiator: usize, now: f64) {
        let (a, b) = (c.a, c.b);
        if c.up {
            let id = self.conns.len();
            let speed = self.sc.interfaces[self.sc.interfaces.keys().nth(c.iface).expect("iface")]
                .speed_bytes_s;
            self.conns.push(Conn {
                a,
                b,
                iface: c.iface,
                speed,
                up: true,
                flight: None,
            });
            for h in [a, b] {
                let pos = self.iface_pos[h][c.iface];
                let at = self.hosts[h]
                    .conns
                    .iter()
                    .position(|&o| self.iface_pos[h][self.conns[o].iface] > pos)
                    .unwrap_or(self.hosts[h].conns.len());
                self.hosts[h].conns.insert(at, id);
            }
            if self.router == Router::Prophet {
                let other = if initiator == a { b } else { a };
                self.prophet_up(initiator, other, now);
                self.prophet_up(other, initiator, now);
            }
        } else {
            // The pair's connection on that interface.
            let Some(pos) = self.hosts[a]
                .conns
                .iter()
                .position(|&o| self.conns[o].other(a) == b && self.conns[o].iface == c.iface)
            else {
                return;
            };
            let id = self.hosts[a].conns.remove(pos);
            self.hosts[b].conns.retain(|&o| o != id);
            self.conns[id].up = false;
        }
    }
}

impl Sim<'_> {
    /// One `updateHosts()`: every host in a shuffled order, each applying the connection
    /// changes it sees first, then running its router.
    fn pass(
        &mut self,
        now: f64,
        order: &mut [usize],
        contacts: &[OneContact],
        pending: &mut [Vec<usize>],
    ) {
        for i in (1..order.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for w in self.expired.0.iter_mut() {
            *w = 0;
        }
        for i in self.created.ones().collect::<Vec<_>>() {
            if ttl_left(&self.msgs[i], now) <= 0 {
                self.expired.set(i);
            }
        }
        for &x in order.iter() {
            for ci in std::mem::take(&mut pending[x]) {
                if !self.applied[ci] {
                    self.applied[ci] = true;
                    self.apply_contact(&contacts[ci], x, now);
                }
            }
            self.update(x, now);
        }
    }

    fn trace(&mut self, tag: u8, now: f64, c: usize, msg: usize) {
        self.hasher.update(&[tag]);
        self.hasher.update(&now.to_bits().to_le_bytes());
        self.hasher.update(&(c as u64).to_le_bytes());
        self.hasher.update(&(msg as u64).to_le_bytes());
    }

    /// `DTNHost.update` after the interfaces: the router's update.
    fn update(&mut self, x: usize, now: f64) {
        // ActiveRouter.update: finalize or abort the transfer being sent.
        if let Some(c) = self.hosts[x].sending {
            let conn = &self.conns[c];
            // isMessageTransferred (remaining bytes, truncated, is 0) comes before isUp.
            let state = conn.flight.as_ref().map(|f| {
                (
                    (((f.done_s - now) * conn.speed) as i64) <= 0,
                    conn.up,
                    f.msg,
                )
            });
            match state {
                None => self.hosts[x].sending = None,
                Some((true, _, _)) => self.finalize(c, now),
                Some((false, false, msg)) => {
                    self.conns[c].flight = None;
                    self.hosts[x].sending = None;
                    self.stats.aborted += 1;
                    self.trace(3, now, c, msg);
                }
                Some((false, true, _)) => {}
            }
            if self.hosts[x].sending.is_none() && self.hosts[x].bytes > self.hosts[x].cap {
                self.make_room(x, 0, now);
            }
        }
        // TTL check every 60 s, only when not sending.
        if self.hosts[x].sending.is_none() && now - self.hosts[x].last_ttl_check >= 60.0 {
            let old: Vec<usize> = self.hosts[x]
                .has
                .ones()
                .filter(|&i| self.expired.get(i))
                .collect();
            for i in old {
                self.delete(x, i);
            }
            self.hosts[x].last_ttl_check = now;
        }
        // canStartTransfer, isTransferring.
        if self.hosts[x].conns.is_empty()
            || self.hosts[x].has.0.iter().all(|w| *w == 0)
            || self.is_transferring(x)
        {
            return;
        }
        if self.exchange_deliverable(x, now) {
            return;
        }
        match self.router {
            Router::Epidemic => self.try_all(x, now, false),
            Router::SprayAndWait => self.try_all(x, now, true),
            Router::Prophet => self.try_other(x, now),
        }
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// exchangeDeliverableMessages: messages for a connected destination, else ask the
    /// connected hosts for messages for this one.
    fn exchange_deliverable(&mut self, x: usize, now: f64) -> bool {
        let mut tuples: Vec<(usize, usize)> = Vec::new();
        for &c in &self.hosts[x].conns {
            let y = self.conns[c].other(x);
            if self.conns[c].flight.is_some() || self.is_transferring(y) {
                continue;
            }
            let hy = &self.hosts[y];
            for (w, (&held, &dest)) in self.hosts[x].has.0.iter().zip(&self.to[y].0).enumerate() {
                let mut bits = held & dest & !hy.delivered.0[w];
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if u64::from(self.msgs[i].size) <= hy.cap {
                        tuples.push((i, c));
                    }
                }
            }
        }
        if !tuples.is_empty() {
            let (i, c) = tuples[self.pick(tuples.len())];
            self.start(x, c, i, now);
            return true;
        }
        let conns = self.hosts[x].conns.clone();
        for c in conns {
            let y = self.conns[c].other(x);
            if self.is_transferring(y) {
                continue;
            }
            let hx = &self.hosts[x];
            let mut cand: Vec<usize> = Vec::new();
            for (w, (&held, &dest)) in self.hosts[y].has.0.iter().zip(&self.to[x].0).enumerate() {
                let mut bits = held & dest & !hx.delivered.0[w];
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if u64::from(self.msgs[i].size) <= hx.cap {
                        cand.push(i);
                    }
                }
            }
            if !cand.is_empty() {
                let i = cand[self.pick(cand.len())];
                self.start(y, c, i, now);
                return true;
            }
        }
        false
    }

    /// Epidemic's tryAllMessagesToAllConnections (and Spray-and-Wait's with the messages
    /// that have tokens left): per connection in order, a random message the peer accepts.
    fn try_all(&mut self, x: usize, now: f64, with_tokens_only: bool) {
        let conns = self.hosts[x].conns.clone();
        for c in conns {
            let y = self.conns[c].other(x);
            if self.conns[c].flight.is_some() || self.is_transferring(y) {
                continue;
            }
            let (hx, hy) = (&self.hosts[x], &self.hosts[y]);
            let mut words: Vec<u64> = (0..hx.has.0.len())
                .map(|w| {
                    let mut b = hx.has.0[w]
                        & !hy.has.0[w]
                        & !hy.delivered.0[w]
                        & (!self.expired.0[w] | self.to[y].0[w]);
                    if with_tokens_only {
                        b &= hx.multi.0[w];
                    }
                    b
                })
                .collect();
            loop {
                let count: u32 = words.iter().map(|w| w.count_ones()).sum();
                if count == 0 {
                    break;
                }
                let k = self.pick(count as usize) as u32;
                let i = nth_one(&words, k);
                if u64::from(self.msgs[i].size) <= self.hosts[y].cap {
                    self.start(x, c, i, now);
                    return;
                }
                words[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// ProphetRouter.tryOtherMessages: messages whose destination the peer is likelier to
    /// meet, highest predictability first.
    fn try_other(&mut self, x: usize, now: f64) {
        self.age(x, now);
        // (p_y, tie, order, msg, conn)
        let mut best: Option<(f64, u64, usize, usize)> = None;
        let conns = self.hosts[x].conns.clone();
        for c in conns {
            let y = self.conns[c].other(x);
            if self.is_transferring(y) {
                continue;
            }
            self.age(y, now);
            let (hx, hy) = (&self.hosts[x], &self.hosts[y]);
            for w in 0..hx.has.0.len() {
                let mut bits = hx.has.0[w] & !hy.has.0[w];
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let d = self.msgs[i].to;
                    let py = hy.preds[d];
                    if py <= hx.preds[d] {
                        continue;
                    }
                    // startTransfer's checks at the peer (it is not transferring).
                    if hy.delivered.get(i)
                        || (self.expired.get(i) && d != y)
                        || u64::from(self.msgs[i].size) > hy.cap
                    {
                        continue;
                    }
                    let tie = hx.tie[i];
                    let better = match best {
                        None => true,
                        Some((bp, bt, _, _)) => py > bp || (py == bp && tie < bt),
                    };
                    if better {
                        best = Some((py, tie, i, c));
                    }
                }
            }
        }
        if let Some((_, _, i, c)) = best {
            self.start(x, c, i, now);
        }
    }

    fn start(&mut self, x: usize, c: usize, i: usize, now: f64) {
        let y = self.conns[c].other(x);
        let size = self.msgs[i].size;
        self.make_room(y, u64::from(size), now);
        self.stats.started += 1;
        let copies = match self.router {
            Router::SprayAndWait if self.sc.spray_and_wait.binary => self.hosts[x].copies[i] / 2,
            _ => 1,
        };
        let speed = self.conns[c].speed;
        self.conns[c].flight = Some(InFlight {
            msg: i,
            from: x,
            done_s: now + f64::from(size) / speed,
            copies,
            hops: self.hosts[x].hops[i] + 1,
        });
        self.hosts[x].sending = Some(c);
        self.trace(1, now, c, i);
    }

    fn finalize(&mut self, c: usize, now: f64) {
        let Some(f) = self.conns[c].flight.take() else {
            return;
        };
        let x = f.from;
        let y = self.conns[c].other(x);
        let i = f.msg;
        self.hosts[x].sending = None;
        if self.router == Router::SprayAndWait && self.hosts[x].has.get(i) {
            let hx = &mut self.hosts[x];
            let n = hx.copies[i];
            hx.copies[i] = if self.sc.spray_and_wait.binary {
                n.div_ceil(2)
            } else {
                n.saturating_sub(1)
            };
            if hx.copies[i] <= 1 {
                hx.multi.clear(i);
            }
        }
        self.stats.relayed += 1;
        self.trace(2, now, c, i);
        if self.msgs[i].to == y {
            if !self.hosts[y].delivered.get(i) {
                self.hosts[y].delivered.set(i);
                self.stats.delivered += 1;
                self.latencies.push(now - self.msgs[i].time_s);
                self.hopcounts.push(u64::from(f.hops));
                self.deliveries.push((i, now));
            }
        } else if !self.hosts[y].has.get(i) {
            self.store(y, i, f.copies, f.hops);
        }
    }

    fn finish(mut self, passes: u64) -> OneResult {
        let s = &mut self.stats;
        s.delivery_prob = if s.created > 0 {
            s.delivered as f64 / s.created as f64
        } else {
            0.0
        };
        s.overhead_ratio = if s.delivered > 0 {
            (s.relayed as f64 - s.delivered as f64) / s.delivered as f64
        } else {
            f64::NAN
        };
        self.latencies.sort_by(f64::total_cmp);
        self.hopcounts.sort_unstable();
        let n = self.latencies.len();
        s.latency_avg = if n > 0 {
            self.latencies.iter().sum::<f64>() / n as f64
        } else {
            f64::NAN
        };
        s.latency_med = self.latencies.get(n / 2).copied().unwrap_or(f64::NAN);
        s.hopcount_avg = if n > 0 {
            self.hopcounts.iter().sum::<u64>() as f64 / n as f64
        } else {
            0.0
        };
        s.hopcount_med = self.hopcounts.get(n / 2).copied().unwrap_or(0);
        OneResult {
            router: self.router,
            stats: self.stats,
            deliveries: self.deliveries,
            passes,
            trace_hash: self.hasher.finalize().to_hex().to_string(),
        }
    }
}

/// A scenario's inputs, read: contacts and messages.
#[derive(Debug, Clone)]
pub struct OneInput {
    pub contacts: Vec<OneContact>,
    pub messages: Vec<OneMessage>,
}

impl OneInput {
    /// Parses the connectivity and message texts (`*_file` name them in errors).
    pub fn parse(
        sc: &OneScenario,
        connectivity: &str,
        connectivity_file: &str,
        messages: &str,
        messages_file: &str,
    ) -> Result<OneInput, String> {
        Ok(OneInput {
            contacts: parse_connectivity(sc, connectivity, connectivity_file)?,
            messages: parse_messages(sc, messages, messages_file)?,
        })
    }
}

/// Runs every router the scenario lists.
pub fn run(sc: &OneScenario, input: &OneInput) -> Result<Vec<OneResult>, String> {
    sc.routers
        .iter()
        .map(|r| {
            Ok(simulate(
                sc,
                Router::from_name(r)?,
                &input.contacts,
                &input.messages,
            ))
        })
        .collect()
}

/// Vaarta's own router on the same contacts and messages: every host a Vaarta device that
/// carries every conversation (role `vehicle`), one two-member conversation per pair of
/// hosts that exchange messages, set up before the start; a pair is linked while any of its
/// connections is up, at the speed of the interface that came up first. Statistics are
/// computed as The ONE's report computes them, with "relayed" the envelopes pushed between
/// devices.
pub fn vaarta(sc: &OneScenario, input: &OneInput) -> Result<(MessageStats, String), String> {
    use crate::scenario::Scenario;
    use crate::workload::{Conv, Message};
    use crate::world::{Contact, World};
    let mut toml = format!(
        "name = \"{}\"\nseed = {}\nduration_s = {}\nquiesce_s = 0\nrouters = [\"vaarta\"]\n",
        sc.name,
        sc.seed,
        sc.end_time_s.ceil() as u64
    );
    for (name, i) in &sc.interfaces {
        toml.push_str(&format!(
            "[radios.{name}]\nrange_m = {}\nrate_kbytes_s = {}\nmax_links = 1000\n",
            i.range_m,
            i.speed_bytes_s / 1000.0
        ));
    }
    for (gi, g) in sc.groups.iter().enumerate() {
        toml.push_str(&format!(
            "[[group]]\nname = \"{}{gi}\"\ncount = {}\nrole = \"vehicle\"\nradios = {:?}\n",
            g.prefix, g.count, g.interfaces
        ));
    }
    toml.push_str("[workload]\nrate_per_member_hour = 0\nsize_min = 1\nsize_max = 1\nttl_s = 1\n");
    let vsc = Scenario::parse(&toml)?;
    let (nodes, radio_names) = World::nodes_of(&vsc)?;
    let radios = radio_names.iter().map(|n| vsc.radios[n].clone()).collect();
    let mut open: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut contacts = Vec::new();
    for c in &input.contacts {
        let k = open.entry((c.a, c.b)).or_default();
        let time_ms = (c.time_s * 1000.0).round() as u64;
        if c.up {
            *k += 1;
            if *k == 1 {
                contacts.push(Contact {
                    time_ms,
                    a: c.a,
                    b: c.b,
                    up: true,
                    radio: c.iface,
                });
            }
        } else {
            *k = k.saturating_sub(1);
            if *k == 0 {
                contacts.push(Contact {
                    time_ms,
                    a: c.a,
                    b: c.b,
                    up: false,
                    radio: c.iface,
                });
            }
        }
    }
    let world = World {
        nodes,
        radio_names,
        radios,
        contacts,
        outages: Vec::new(),
        heals_ms: Vec::new(),
    };
    let mut pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut convs = Vec::new();
    let mut msgs = Vec::new();
    for (i, m) in input.messages.iter().enumerate() {
        let key = (m.from.min(m.to), m.from.max(m.to));
        let conv = *pairs.entry(key).or_insert_with(|| {
            convs.push(Conv {
                name: format!("{}-{}", sc.host_name(key.0), sc.host_name(key.1)),
                members: vec![key.0, key.1],
                chat_rate: 0.0,
                removed: Default::default(),
            });
            convs.len() - 1
        });
        msgs.push(Message {
            id: i,
            time_ms: (m.time_s * 1000.0).round() as u64,
            src: m.from,
            conv,
            size: m.size as usize,
            precedence: Default::default(),
            ttl_ms: u64::from(m.ttl_min) * 60_000,
            alert: false,
        });
    }
    let (res, _checks, hash) = crate::vaarta::Runner::new(&vsc, &world, &convs, &msgs)?.run()?;
    let ok = crate::metrics::counted(&res, &msgs);
    let mut lat: Vec<f64> = ok
        .iter()
        .map(|d| (d.time_ms - msgs[d.msg].time_ms) as f64 / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let delivered = ok.len() as u64;
    let stats = MessageStats {
        created: msgs.len() as u64,
        relayed: res.transfers,
        delivered,
        delivery_prob: delivered as f64 / msgs.len().max(1) as f64,
        overhead_ratio: if delivered > 0 {
            (res.transfers as f64 - delivered as f64) / delivered as f64
        } else {
            f64::NAN
        },
        latency_avg: lat.iter().sum::<f64>() / lat.len().max(1) as f64,
        latency_med: lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN),
        ..MessageStats::default()
    };
    Ok((stats, blake3::Hash::from(hash).to_hex().to_string()))
}
