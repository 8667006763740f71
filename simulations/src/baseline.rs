//! Baseline routers on the same contacts and workload: Epidemic (Vahdat & Becker 2000) and
//! binary Spray-and-Wait (Spyropoulos et al. 2005), as The ONE simulator models them —
//! messages of a given size, finite buffers with drop-oldest, oldest-first transfer order,
//! one transfer at a time per direction of a contact, TTL, and (like The ONE) perfect
//! knowledge of what the peer already holds.
//!
//! Messages here are multicast (to the members of a conversation): a copy reaching any
//! destination is a delivery to that destination. Spray-and-Wait sprays `copies` tokens
//! binary-style; a holder with one token only hands copies to destinations it meets.
//!
//! Holdings are bitsets over message ids, and each direction of a contact keeps a cursor, so
//! finding the next message to send costs a few word operations, not a scan of the buffer.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use crate::metrics::{Delivery, RouterResult};
use crate::scenario::Scenario;
use crate::vaarta::on_air_bytes;
use crate::workload::{Conv, Message, destinations};
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Epidemic,
    SprayAndWait,
}

#[derive(Debug)]
enum Ev {
    Contact(usize),
    Create(usize),
    Done {
        from: usize,
        to: usize,
        epoch: u64,
        msg: usize,
        tokens: u32,
    },
}

#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
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
}

struct Node {
    held: Bits,
    /// Spray-and-Wait tokens per message (empty for Epidemic).
    tokens: Vec<u32>,
    arrivals: VecDeque<usize>,
    bytes: u64,
    peak: u64,
}

struct Pipe {
    epoch: u64,
    busy: bool,
    radio: usize,
    cursor: usize,
}

pub fn run(
    kind: Kind,
    sc: &Scenario,
    world: &World,
    convs: &[Conv],
    msgs: &[Message],
    hasher: &mut blake3::Hasher,
) -> RouterResult {
    let n = world.nodes.len();
    let m = msgs.len();
    let mut is_dest: Vec<Bits> = (0..n).map(|_| Bits::new(m)).collect();
    for (i, msg) in msgs.iter().enumerate() {
        for d in destinations(msg, convs) {
            is_dest[d].set(i);
        }
    }
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| Node {
            held: Bits::new(m),
            tokens: if kind == Kind::SprayAndWait {
                vec![0; m]
            } else {
                Vec::new()
            },
            arrivals: VecDeque::new(),
            bytes: 0,
            peak: 0,
        })
        .collect();
    let mut got: Vec<Bits> = (0..n).map(|_| Bits::new(m)).collect();
    let mut inflight: Vec<Bits> = (0..n).map(|_| Bits::new(m)).collect();
    let mut queue: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut evs: BTreeMap<u64, Ev> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push =
        |q: &mut BinaryHeap<Reverse<(u64, u64)>>, evs: &mut BTreeMap<u64, Ev>, t: u64, e: Ev| {
            seq += 1;
            evs.insert(seq, e);
            q.push(Reverse((t, seq)));
        };
    for (i, c) in world.contacts.iter().enumerate() {
        push(&mut queue, &mut evs, c.time_ms, Ev::Contact(i));
    }
    for (i, msg) in msgs.iter().enumerate() {
        push(&mut queue, &mut evs, msg.time_ms, Ev::Create(i));
    }
    let end = (sc.duration_s + sc.quiesce_s) * 1000;
    let mut pipes: BTreeMap<(usize, usize), Pipe> = BTreeMap::new();
    let mut deliveries = Vec::new();
    let mut transfers = 0u64;
    let mut bytes = 0u64;
    let cap = sc.baseline_buffer_bytes;
    let mut now = 0u64;

    while let Some(Reverse((t, s))) = queue.pop() {
        if t > end {
            break;
        }
        now = t;
        let Some(ev) = evs.remove(&s) else { continue };
        let mut wake: Vec<usize> = Vec::new();
        match ev {
            Ev::Contact(i) => {
                let c = world.contacts[i];
                hasher.update(&[9, u8::from(c.up)]);
                for v in [c.time_ms, c.a as u64, c.b as u64] {
                    hasher.update(&v.to_le_bytes());
                }
                for (x, y) in [(c.a, c.b), (c.b, c.a)] {
                    if c.up {
                        let epoch = pipes.get(&(x, y)).map_or(1, |p| p.epoch + 1);
                        pipes.insert(
                            (x, y),
                            Pipe {
                                epoch,
                                busy: false,
                                radio: c.radio,
                                cursor: 0,
                            },
                        );
                    } else {
                        pipes.remove(&(x, y));
                    }
                }
                if c.up {
                    wake.push(c.a);
                    wake.push(c.b);
                }
            }
            Ev::Create(i) => {
                let msg = &msgs[i];
                let tokens = match kind {
                    Kind::Epidemic => 1,
                    Kind::SprayAndWait => sc.spray_copies.max(1),
                };
                store(
                    &mut nodes[msg.src],
                    i,
                    tokens,
                    msgs,
                    cap,
                    &mut pipes,
                    msg.src,
                );
                wake.push(msg.src);
            }
            Ev::Done {
                from,
                to,
                epoch,
                msg,
                tokens,
            } => {
                inflight[to].clear(msg);
                let alive = pipes.get(&(from, to)).is_some_and(|p| p.epoch == epoch);
                if alive {
                    if let Some(p) = pipes.get_mut(&(from, to)) {
                        p.busy = false;
                    }
                    transfers += 1;
                    bytes += on_air_bytes(
                        msgs[msg].size as u64,
                        &world.radios[pipes[&(from, to)].radio],
                    );
                    hasher.update(&[10]);
                    hasher.update(&(msg as u64).to_le_bytes());
                    if kind == Kind::SprayAndWait && tokens > 0 {
                        let t = &mut nodes[from].tokens[msg];
                        *t = t.saturating_sub(tokens).max(1);
                    }
                    if is_dest[to].get(msg) && !got[to].get(msg) {
                        got[to].set(msg);
                        deliveries.push(Delivery {
                            msg,
                            node: to,
                            time_ms: now,
                        });
                    }
                    if kind == Kind::Epidemic || tokens > 0 {
                        let keep = if kind == Kind::Epidemic { 1 } else { tokens };
                        store(&mut nodes[to], msg, keep, msgs, cap, &mut pipes, to);
                    }
                    wake.push(to);
                }
                wake.push(from);
            }
        }
        // Start transfers on the idle directions of the woken nodes.
        wake.sort_unstable();
        wake.dedup();
        for x in wake {
            let peers: Vec<usize> = pipes
                .range((x, 0)..(x + 1, 0))
                .filter(|(_, p)| !p.busy)
                .map(|((_, y), _)| *y)
                .collect();
            for y in peers {
                let Some((msg, tokens)) = pick(
                    kind, &nodes, &got, &inflight, &is_dest, msgs, &mut pipes, x, y, now,
                ) else {
                    continue;
                };
                let p = pipes.get_mut(&(x, y)).expect("listed");
                let radio = &world.radios[p.radio];
                let on_air = on_air_bytes(msgs[msg].size as u64, radio);
                let rate = (radio.rate_kbytes_s * 1000.0 * (1.0 - radio.loss).max(0.01)).max(1.0);
                let dur = ((on_air as f64) * 1000.0 / rate).ceil() as u64 + radio.latency_ms.max(1);
                p.busy = true;
                let epoch = p.epoch;
                inflight[y].set(msg);
                push(
                    &mut queue,
                    &mut evs,
                    now + dur,
                    Ev::Done {
                        from: x,
                        to: y,
                        epoch,
                        msg,
                        tokens,
                    },
                );
            }
        }
    }
    let _ = now;
    RouterResult {
        router: match kind {
            Kind::Epidemic => "epidemic".into(),
            Kind::SprayAndWait => "spray-and-wait".into(),
        },
        deliveries,
        duplicates: 0,
        transfers,
        bytes,
        peak_storage: nodes.iter().map(|b| b.peak).collect(),
        events: seq,
        bytes_by_kind: Default::default(),
    }
}

/// Stores a copy at `node` (drop-oldest to make room) and rewinds its outgoing cursors.
fn store(
    b: &mut Node,
    msg: usize,
    tokens: u32,
    msgs: &[Message],
    cap: u64,
    pipes: &mut BTreeMap<(usize, usize), Pipe>,
    node: usize,
) {
    let size = msgs[msg].size as u64;
    if size > cap || b.held.get(msg) {
        return;
    }
    while b.bytes + size > cap {
        let Some(old) = b.arrivals.pop_front() else {
            break;
        };
        if b.held.get(old) {
            b.held.clear(old);
            b.bytes -= msgs[old].size as u64;
        }
    }
    b.held.set(msg);
    if !b.tokens.is_empty() {
        b.tokens[msg] = tokens;
    }
    b.arrivals.push_back(msg);
    b.bytes += size;
    b.peak = b.peak.max(b.bytes);
    for (_, p) in pipes.range_mut((node, 0)..(node + 1, 0)) {
        p.cursor = p.cursor.min(msg);
    }
}

/// The next message `x` should send to `y`, oldest first.
#[allow(clippy::too_many_arguments)]
fn pick(
    kind: Kind,
    nodes: &[Node],
    got: &[Bits],
    inflight: &[Bits],
    is_dest: &[Bits],
    msgs: &[Message],
    pipes: &mut BTreeMap<(usize, usize), Pipe>,
    x: usize,
    y: usize,
    now: u64,
) -> Option<(usize, u32)> {
    let p = pipes.get_mut(&(x, y))?;
    let words = nodes[x].held.0.len();
    let mut w = p.cursor / 64;
    let mut rewind: Option<usize> = None;
    while w < words {
        // Candidates: held by x, not held by y (and, for S&W, not already delivered to y).
        let mut bits = nodes[x].held.0[w] & !nodes[y].held.0[w];
        if kind == Kind::SprayAndWait {
            bits &= !got[y].0[w];
        }
        if w == p.cursor / 64 {
            bits &= !0u64 << (p.cursor % 64);
        }
        while bits != 0 {
            let i = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let m = &msgs[i];
            if now > m.time_ms + m.ttl_ms {
                continue; // expired: never eligible again
            }
            if inflight[y].get(i) {
                rewind.get_or_insert(i);
                continue;
            }
            let give = match kind {
                Kind::Epidemic => Some(1),
                Kind::SprayAndWait => {
                    let t = nodes[x].tokens[i];
                    if t > 1 {
                        Some(t / 2)
                    } else if is_dest[y].get(i) {
                        Some(0)
                    } else {
                        None
                    }
                }
            };
            if let Some(g) = give {
                p.cursor = rewind.unwrap_or(i + 1).min(i + 1);
                return Some((i, g));
            }
        }
        w += 1;
    }
    p.cursor = rewind.unwrap_or(words * 64);
    None
}
