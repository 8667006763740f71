//! Nodes, where they are, and who is in contact with whom: mobility models, the contact trace
//! they produce (with faults applied), and The ONE's connectivity format.
//!
//! Every router in a run sees the *same* contact trace and the same workload, so their
//! results can be compared directly.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::scenario::{Fault, Mobility, Role, Scenario};

/// Uniform float in [0, 1) from a seeded generator.
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub index: usize,
    pub group: String,
    /// Index within its group.
    pub nth: usize,
    pub role: Role,
    pub radios: Vec<usize>,
    /// Team number within its group (for `teams` mobility and per-team conversations).
    pub team: Option<usize>,
}

/// A change of contact between two nodes (a < b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Contact {
    pub time_ms: u64,
    pub a: usize,
    pub b: usize,
    pub up: bool,
    /// Radio index (into [`World::radios`]).
    pub radio: usize,
}

/// Intervals during which a node is down (churn or crash), with whether it crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub node: usize,
    pub from_ms: u64,
    pub to_ms: u64,
    pub crash: bool,
}

#[derive(Debug, Clone)]
pub struct World {
    pub nodes: Vec<NodeSpec>,
    pub radio_names: Vec<String>,
    pub radios: Vec<crate::scenario::Radio>,
    pub contacts: Vec<Contact>,
    pub outages: Vec<Outage>,
    /// Heal times of partitions (for convergence-after-heal).
    pub heals_ms: Vec<u64>,
}

/// Resolves a node selector: "group", "group[i]", "group[a..b]".
pub fn select(nodes: &[NodeSpec], sel: &str) -> Result<Vec<usize>, String> {
    let (name, range) = match sel.split_once('[') {
        Some((n, rest)) => (n, Some(rest.trim_end_matches(']'))),
        None => (sel, None),
    };
    let members: Vec<&NodeSpec> = nodes.iter().filter(|n| n.group == name).collect();
    if members.is_empty() {
        return Err(format!("no group named '{name}' (in selector '{sel}')"));
    }
    let pick = |i: usize| {
        members
            .get(i)
            .map(|n| n.index)
            .ok_or_else(|| format!("'{sel}': group {name} has {} nodes", members.len()))
    };
    match range {
        None => Ok(members.iter().map(|n| n.index).collect()),
        Some(r) => match r.split_once("..") {
            Some((a, b)) => {
                let a: usize = a.parse().map_err(|_| format!("bad selector '{sel}'"))?;
                let b: usize = b.parse().map_err(|_| format!("bad selector '{sel}'"))?;
                (a..b).map(pick).collect()
            }
            None => Ok(vec![pick(
                r.parse().map_err(|_| format!("bad selector '{sel}'"))?,
            )?]),
        },
    }
}

struct Mover {
    pos: [f64; 2],
    target: [f64; 2],
    speed: f64,
    pause_until_ms: u64,
    /// Route / places cursor.
    cursor: usize,
}

impl World {
    pub fn nodes_of(sc: &Scenario) -> Result<(Vec<NodeSpec>, Vec<String>), String> {
        let radio_names: Vec<String> = sc.radios.keys().cloned().collect();
        let mut nodes = Vec::new();
        for g in &sc.groups {
            let team_size = match &g.mobility {
                Mobility::Teams { team_size, .. } => Some((*team_size).max(1)),
                _ => None,
            };
            for i in 0..g.count {
                nodes.push(NodeSpec {
                    index: nodes.len(),
                    group: g.name.clone(),
                    nth: i,
                    role: g.role,
                    radios: g
                        .radios
                        .iter()
                        .map(|r| radio_names.iter().position(|n| n == r).unwrap_or(0))
                        .collect(),
                    team: team_size.map(|t| i / t),
                });
            }
        }
        Ok((nodes, radio_names))
    }

    /// Builds the world from a scenario: mobility → contacts, or a replayed contact trace.
    pub fn build(sc: &Scenario, trace_text: Option<&str>) -> Result<World, String> {
        let (nodes, radio_names) = Self::nodes_of(sc)?;
        let radios: Vec<crate::scenario::Radio> =
            radio_names.iter().map(|n| sc.radios[n].clone()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x5eed_0001);
        let end_ms = sc.duration_s * 1000;
        let outages = outages(sc, &nodes, &mut rng)?;
        let mut contacts = match trace_text {
            Some(t) => parse_one_trace(t, nodes.len())?,
            None => mobility_contacts(sc, &nodes, &radios, &mut rng)?,
        };
        // Faults: partitions and outages cut contacts.
        let mut heals = Vec::new();
        let mut cuts: Vec<(u64, u64, BTreeSet<usize>)> = Vec::new();
        for f in &sc.faults {
            if let Fault::Partition { at_s, heal_s, side } = f {
                let mut set = BTreeSet::new();
                for sel in side {
                    set.extend(select(&nodes, sel)?);
                }
                cuts.push((at_s * 1000, heal_s * 1000, set));
                heals.push(heal_s * 1000);
            }
        }
        contacts = apply_cuts(contacts, &cuts, &outages, end_ms);
        Ok(World {
            nodes,
            radio_names,
            radios,
            contacts,
            outages,
            heals_ms: heals,
        })
    }

    /// The contact trace in The ONE's connectivity report format.
    pub fn to_one_trace(&self) -> String {
        let mut s = String::new();
        for c in &self.contacts {
            s.push_str(&format!(
                "{:.1} CONN {} {} {}\n",
                c.time_ms as f64 / 1000.0,
                c.a,
                c.b,
                if c.up { "up" } else { "down" }
            ));
        }
        s
    }
}

fn outages(sc: &Scenario, nodes: &[NodeSpec], rng: &mut ChaCha8Rng) -> Result<Vec<Outage>, String> {
    let mut out = Vec::new();
    let end = sc.duration_s * 1000;
    for f in &sc.faults {
        match f {
            Fault::Churn { every_s, down_s } => {
                let mut t = every_s * 1000;
                while t < end && *every_s > 0 {
                    let node = (rng.next_u64() % nodes.len() as u64) as usize;
                    out.push(Outage {
                        node,
                        from_ms: t,
                        to_ms: (t + down_s * 1000).min(end),
                        crash: false,
                    });
                    t += every_s * 1000;
                }
            }
            Fault::Crash {
                node,
                at_s,
                restart_s,
            } => {
                for n in select(nodes, node)? {
                    out.push(Outage {
                        node: n,
                        from_ms: at_s * 1000,
                        to_ms: restart_s * 1000,
                        crash: true,
                    });
                }
            }
            Fault::Partition { .. } => {}
        }
    }
    out.sort_by_key(|o| (o.from_ms, o.node));
    Ok(out)
}

/// Removes contact time during partitions and outages, keeping the trace well formed.
fn apply_cuts(
    contacts: Vec<Contact>,
    cuts: &[(u64, u64, BTreeSet<usize>)],
    outages: &[Outage],
    end_ms: u64,
) -> Vec<Contact> {
    if cuts.is_empty() && outages.is_empty() {
        return contacts;
    }
    // Boundaries at which the allowed set may change.
    let mut bounds: BTreeSet<u64> = BTreeSet::new();
    for (a, b, _) in cuts {
        bounds.insert(*a);
        bounds.insert(*b);
    }
    for o in outages {
        bounds.insert(o.from_ms);
        bounds.insert(o.to_ms);
    }
    let allowed = |t: u64, a: usize, b: usize| -> bool {
        for (from, to, side) in cuts {
            if t >= *from && t < *to && side.contains(&a) != side.contains(&b) {
                return false;
            }
        }
        !outages
            .iter()
            .any(|o| (o.node == a || o.node == b) && t >= o.from_ms && t < o.to_ms)
    };
    // Walk physical contacts and boundaries in time order; emit the allowed ones.
    let mut physical: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut emitted: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut i = 0;
    let mut bounds_iter = bounds.into_iter().peekable();
    loop {
        let next_c = contacts.get(i).map(|c| c.time_ms);
        let next_b = bounds_iter.peek().copied();
        let t = match (next_c, next_b) {
            (None, None) => break,
            (Some(c), Some(b)) => c.min(b),
            (Some(c), None) => c,
            (None, Some(b)) => b,
        };
        if t > end_ms {
            break;
        }
        while let Some(c) = contacts.get(i).filter(|c| c.time_ms == t) {
            if c.up {
                physical.insert((c.a, c.b), c.radio);
            } else {
                physical.remove(&(c.a, c.b));
            }
            i += 1;
        }
        if bounds_iter.peek() == Some(&t) {
            bounds_iter.next();
        }
        // Reconcile emitted with physical ∩ allowed.
        let want: BTreeMap<(usize, usize), usize> = physical
            .iter()
            .filter(|((a, b), _)| allowed(t, *a, *b))
            .map(|(k, v)| (*k, *v))
            .collect();
        let gone: Vec<(usize, usize)> = emitted
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for (a, b) in gone {
            let radio = emitted.remove(&(a, b)).unwrap_or(0);
            out.push(Contact {
                time_ms: t,
                a,
                b,
                up: false,
                radio,
            });
        }
        for (k, r) in want {
            if let std::collections::btree_map::Entry::Vacant(e) = emitted.entry(k) {
                e.insert(r);
                out.push(Contact {
                    time_ms: t,
                    a: k.0,
                    b: k.1,
                    up: true,
                    radio: r,
                });
            }
        }
    }
    out
}

fn place(sc: &Scenario, name: &str) -> [f64; 2] {
    sc.places.get(name).copied().unwrap_or([0.0, 0.0])
}

fn scatter(rng: &mut ChaCha8Rng, c: [f64; 2], spread: f64) -> [f64; 2] {
    let r = spread * unit(rng).sqrt();
    let th = unit(rng) * std::f64::consts::TAU;
    [c[0] + r * th.cos(), c[1] + r * th.sin()]
}

fn mobility_contacts(
    sc: &Scenario,
    nodes: &[NodeSpec],
    radios: &[crate::scenario::Radio],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Contact>, String> {
    let (w, h) = (sc.area.width_m, sc.area.height_m);
    let group_of: Vec<usize> = nodes
        .iter()
        .map(|n| {
            sc.groups
                .iter()
                .position(|g| g.name == n.group)
                .ok_or_else(|| format!("unknown group {}", n.group))
        })
        .collect::<Result<_, _>>()?;
    let places_of =
        |names: &[String]| -> Vec<[f64; 2]> { names.iter().map(|p| place(sc, p)).collect() };
    let mut movers: Vec<Mover> = Vec::with_capacity(nodes.len());
    // Teams: one centre mover per (group, team); members keep an offset from it.
    let mut centres: BTreeMap<(usize, usize), Mover> = BTreeMap::new();
    let mut offsets: Vec<[f64; 2]> = vec![[0.0, 0.0]; nodes.len()];
    for n in nodes {
        let g = &sc.groups[group_of[n.index]];
        let pos = [unit(rng) * w, unit(rng) * h];
        let mut m = Mover {
            pos,
            target: pos,
            speed: 0.0,
            pause_until_ms: 0,
            cursor: 0,
        };
        match &g.mobility {
            Mobility::Static | Mobility::RandomWaypoint { .. } => {}
            Mobility::StaticAt { place: p, spread_m } => {
                m.pos = scatter(rng, place(sc, p), *spread_m);
                m.target = m.pos;
            }
            Mobility::StaticAtPlaces { places, spread_m } => {
                m.pos = scatter(rng, place(sc, &places[n.nth % places.len()]), *spread_m);
                m.target = m.pos;
            }
            Mobility::Teams {
                places, spread_m, ..
            } => {
                let team = n.team.unwrap_or(0);
                offsets[n.index] = scatter(rng, [0.0, 0.0], *spread_m);
                centres.entry((group_of[n.index], team)).or_insert_with(|| {
                    let p = place(sc, &places[team % places.len()]);
                    Mover {
                        pos: p,
                        target: p,
                        speed: 0.0,
                        pause_until_ms: 0,
                        cursor: team % places.len(),
                    }
                });
            }
            Mobility::Route { places, .. } => {
                let start = n.nth % places.len();
                m.pos = place(sc, &places[start]);
                m.target = m.pos;
                m.cursor = start;
            }
        }
        movers.push(m);
    }
    let static_node: Vec<bool> = nodes
        .iter()
        .map(|n| {
            matches!(
                sc.groups[group_of[n.index]].mobility,
                Mobility::Static | Mobility::StaticAt { .. } | Mobility::StaticAtPlaces { .. }
            )
        })
        .collect();
    let route_places: Vec<Vec<[f64; 2]>> = sc
        .groups
        .iter()
        .map(|g| match &g.mobility {
            Mobility::Route { places, .. } | Mobility::Teams { places, .. } => places_of(places),
            _ => Vec::new(),
        })
        .collect();
    let max_range = radios.iter().map(|r| r.range_m).fold(1.0, f64::max);
    let end = sc.duration_s * 1000;
    let mut current: PairMap = PairMap::default();
    let mut next: PairMap = PairMap::default();
    let mut fresh: Vec<(u64, usize, usize, usize)> = Vec::new();
    let mut degree = vec![0usize; nodes.len()];
    let mut out = Vec::new();
    let mut t = 0;
    let dt = sc.tick_ms as f64 / 1000.0;
    let caps: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.radios
                .iter()
                .map(|r| radios[*r].max_links)
                .max()
                .unwrap_or(64)
        })
        .collect();
    let mut grid: std::collections::HashMap<(i64, i64), Vec<usize>> =
        std::collections::HashMap::new();
    let mut candidates: Vec<(u64, usize, usize, usize)> = Vec::new();
    while t <= end {
        // Move team centres, then members.
        for (&(g, _), c) in centres.iter_mut() {
            if let Mobility::Teams { speed, pause_s, .. } = &sc.groups[g].mobility
                && advance(c, dt, t, *speed)
            {
                // Next place: any other one.
                let places = &route_places[g];
                let mut next = (rng.next_u64() % places.len() as u64) as usize;
                if places.len() > 1 && next == c.cursor {
                    next = (next + 1) % places.len();
                }
                c.cursor = next;
                c.target = places[next];
                c.pause_until_ms = t + (*pause_s * 1000.0) as u64;
            }
        }
        for n in nodes {
            if static_node[n.index] {
                continue;
            }
            let g = group_of[n.index];
            let m = &mut movers[n.index];
            match &sc.groups[g].mobility {
                Mobility::RandomWaypoint {
                    speed_min,
                    speed_max,
                    pause_s,
                } => {
                    if m.speed == 0.0 {
                        m.speed = speed_min + unit(rng) * (speed_max - speed_min);
                    }
                    if advance(m, dt, t, m.speed) {
                        m.target = [unit(rng) * w, unit(rng) * h];
                        m.speed = speed_min + unit(rng) * (speed_max - speed_min);
                        m.pause_until_ms = t + (*pause_s * 1000.0) as u64;
                    }
                }
                Mobility::Teams { .. } => {
                    let c = &centres[&(g, n.team.unwrap_or(0))];
                    m.pos = [
                        c.pos[0] + offsets[n.index][0],
                        c.pos[1] + offsets[n.index][1],
                    ];
                }
                Mobility::Route { speed, pause_s, .. } if advance(m, dt, t, *speed) => {
                    let places = &route_places[g];
                    m.cursor = (m.cursor + 1) % places.len().max(1);
                    m.target = places[m.cursor];
                    m.pause_until_ms = t + (*pause_s * 1000.0) as u64;
                }
                _ => {}
            }
        }
        // Contacts: a grid of cells as large as the longest range, visited in key order so
        // that candidates come out in a deterministic order without sorting them all.
        for v in grid.values_mut() {
            v.clear();
        }
        for (i, m) in movers.iter().enumerate() {
            grid.entry((
                (m.pos[0] / max_range).floor() as i64,
                (m.pos[1] / max_range).floor() as i64,
            ))
            .or_default()
            .push(i);
        }
        let mut cells: Vec<(i64, i64)> = grid
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| *k)
            .collect();
        cells.sort_unstable();
        candidates.clear();
        for &(cx, cy) in &cells {
            let list = &grid[&(cx, cy)];
            for dx in -1..=1 {
                for dy in -1..=1 {
                    let Some(other) = grid.get(&(cx + dx, cy + dy)) else {
                        continue;
                    };
                    for &a in list {
                        for &b in other {
                            if a >= b {
                                continue;
                            }
                            let d = dist(movers[a].pos, movers[b].pos);
                            if d > max_range {
                                continue;
                            }
                            // Best common radio in range.
                            let mut best: Option<usize> = None;
                            for &ra in &nodes[a].radios {
                                if nodes[b].radios.contains(&ra)
                                    && d <= radios[ra].range_m
                                    && best.is_none_or(|x| {
                                        radios[ra].preference > radios[x].preference
                                    })
                                {
                                    best = Some(ra);
                                }
                            }
                            if let Some(r) = best {
                                candidates.push(((d * 1000.0) as u64, a, b, r));
                            }
                        }
                    }
                }
            }
        }
        // Respect per-device link limits: existing contacts keep their place; new ones are
        // taken nearest first.
        degree.iter_mut().for_each(|d| *d = 0);
        next.clear();
        fresh.clear();
        for &(d, a, b, r) in &candidates {
            if current.get(&(a, b)) == Some(&r) {
                if degree[a] < radios[r].max_links.min(caps[a])
                    && degree[b] < radios[r].max_links.min(caps[b])
                {
                    degree[a] += 1;
                    degree[b] += 1;
                    next.insert((a, b), r);
                }
            } else {
                fresh.push((d, a, b, r));
            }
        }
        fresh.sort_unstable();
        for &(_, a, b, r) in &fresh {
            if !next.contains_key(&(a, b))
                && degree[a] < radios[r].max_links.min(caps[a])
                && degree[b] < radios[r].max_links.min(caps[b])
            {
                degree[a] += 1;
                degree[b] += 1;
                next.insert((a, b), r);
            }
        }
        let mut downs: Vec<(usize, usize, usize)> = current
            .iter()
            .filter(|(k, r)| next.get(*k) != Some(*r))
            .map(|(k, r)| (k.0, k.1, *r))
            .collect();
        let mut ups: Vec<(usize, usize, usize)> = next
            .iter()
            .filter(|(k, r)| current.get(*k) != Some(*r))
            .map(|(k, r)| (k.0, k.1, *r))
            .collect();
        downs.sort_unstable();
        ups.sort_unstable();
        for (a, b, r) in downs {
            out.push(Contact {
                time_ms: t,
                a,
                b,
                up: false,
                radio: r,
            });
        }
        for (a, b, r) in ups {
            out.push(Contact {
                time_ms: t,
                a,
                b,
                up: true,
                radio: r,
            });
        }
        std::mem::swap(&mut current, &mut next);
        t += sc.tick_ms;
    }
    Ok(out)
}

/// A fast hasher for node-pair keys (iteration order never reaches outputs: diffs are sorted).
#[derive(Default)]
struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type PairMap =
    std::collections::HashMap<(usize, usize), usize, std::hash::BuildHasherDefault<PairHasher>>;

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Moves towards the target. Returns true when the mover is at its target and not pausing
/// (the caller then picks the next target and pause).
fn advance(m: &mut Mover, dt: f64, now_ms: u64, speed: f64) -> bool {
    if now_ms < m.pause_until_ms {
        return false;
    }
    let d = dist(m.pos, m.target);
    let travel = speed * dt;
    if d <= travel || d == 0.0 {
        m.pos = m.target;
        true
    } else {
        m.pos[0] += (m.target[0] - m.pos[0]) * travel / d;
        m.pos[1] += (m.target[1] - m.pos[1]) * travel / d;
        false
    }
}

/// Parses The ONE's connectivity report: `<time> CONN <host1> <host2> up|down`.
pub fn parse_one_trace(text: &str, nodes: usize) -> Result<Vec<Contact>, String> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || {
            format!(
                "contact trace line {}: expected '<time> CONN <a> <b> up|down', got '{line}'",
                ln + 1
            )
        };
        if f.len() != 5 || f[1] != "CONN" {
            return Err(bad());
        }
        let t: f64 = f[0].parse().map_err(|_| bad())?;
        let a: usize = f[2]
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .map_err(|_| bad())?;
        let b: usize = f[3]
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .map_err(|_| bad())?;
        if a >= nodes || b >= nodes || a == b {
            return Err(format!(
                "contact trace line {}: host out of range (scenario has {nodes} nodes)",
                ln + 1
            ));
        }
        let up = match f[4] {
            "up" => true,
            "down" => false,
            _ => return Err(bad()),
        };
        if !t.is_finite() || t < 0.0 {
            return Err(bad());
        }
        out.push(Contact {
            time_ms: (t * 1000.0).round() as u64,
            a: a.min(b),
            b: a.max(b),
            up,
            radio: 0,
        });
    }
    out.sort_by_key(|c| (c.time_ms, !c.up, c.a, c.b));
    Ok(out)
}
