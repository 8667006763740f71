//! Conversations and the message workload, generated once per run from the seed and shared
//! by every router.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use vaarta_sync::envelope::Precedence;

use crate::scenario::Scenario;
use crate::world::{World, select, unit};

#[derive(Debug, Clone)]
pub struct Conv {
    pub name: String,
    /// Members; the first one is the admin who creates it.
    pub members: Vec<usize>,
    /// Chat messages per member per hour.
    pub chat_rate: f64,
    /// Members the admin removes, with when (ms from the start): they write nothing after
    /// it and are no destination of what is written from then on.
    pub removed: std::collections::BTreeMap<usize, u64>,
}

impl Conv {
    /// Whether `node` is still a member at `time_ms` (as far as the workload knows).
    pub fn member_at(&self, node: usize, time_ms: u64) -> bool {
        self.members.contains(&node) && self.removed.get(&node).is_none_or(|&t| time_ms < t)
    }
}

/// A hostile member, resolved against the world: see [`crate::scenario::Adversary`].
#[derive(Debug, Clone)]
pub struct Hostile {
    pub node: usize,
    pub conv: usize,
    pub admin: bool,
    pub removed_at_ms: u64,
    pub attacks: Vec<crate::scenario::Attack>,
}

/// The scenario's adversaries, checked: each names one member of an existing conversation,
/// not its admin.
pub fn hostiles(sc: &Scenario, world: &World, convs: &[Conv]) -> Result<Vec<Hostile>, String> {
    let mut out = Vec::new();
    for a in &sc.adversaries {
        let conv = convs
            .iter()
            .position(|c| c.name == a.conversation)
            .ok_or_else(|| format!("adversary {}: no conversation {}", a.node, a.conversation))?;
        let nodes = select(&world.nodes, &a.node)?;
        let [node] = nodes[..] else {
            return Err(format!("adversary {} must name exactly one node", a.node));
        };
        let c = &convs[conv];
        if !c.members.contains(&node) || c.members[0] == node {
            return Err(format!(
                "adversary {} must be a member of {} other than its admin",
                a.node, c.name
            ));
        }
        out.push(Hostile {
            node,
            conv,
            admin: a.admin,
            removed_at_ms: a.removed_at_s * 1000,
            attacks: a.attacks.clone(),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: usize,
    pub time_ms: u64,
    pub src: usize,
    pub conv: usize,
    pub size: usize,
    pub precedence: Precedence,
    pub ttl_ms: u64,
    pub alert: bool,
}

pub fn conversations(sc: &Scenario, world: &World) -> Result<Vec<Conv>, String> {
    let mut out = Vec::new();
    for spec in &sc.conversations {
        let chat_rate = spec
            .chat_rate_per_member_hour
            .unwrap_or(sc.workload.rate_per_member_hour);
        let mut extra = Vec::new();
        for sel in &spec.members {
            for n in select(&world.nodes, sel)? {
                if !extra.contains(&n) {
                    extra.push(n);
                }
            }
        }
        match &spec.per_team_of {
            None => {
                if extra.is_empty() {
                    return Err(format!("conversation {} has no members", spec.name));
                }
                out.push(Conv {
                    name: spec.name.clone(),
                    members: extra,
                    chat_rate,
                    removed: Default::default(),
                });
            }
            Some(group) => {
                let teams: std::collections::BTreeSet<usize> = world
                    .nodes
                    .iter()
                    .filter(|n| &n.group == group)
                    .filter_map(|n| n.team)
                    .collect();
                if teams.is_empty() {
                    return Err(format!(
                        "conversation {}: group {group} has no teams",
                        spec.name
                    ));
                }
                for t in teams {
                    let mut members = extra.clone();
                    for n in world
                        .nodes
                        .iter()
                        .filter(|n| &n.group == group && n.team == Some(t))
                    {
                        if !members.contains(&n.index) {
                            members.push(n.index);
                        }
                    }
                    out.push(Conv {
                        name: format!("{}-{t}", spec.name),
                        members,
                        chat_rate,
                        removed: Default::default(),
                    });
                }
            }
        }
    }
    let removals: Vec<Hostile> = hostiles(sc, world, &out)?;
    for h in removals {
        out[h.conv].removed.insert(h.node, h.removed_at_ms);
    }
    Ok(out)
}

fn precedence_of(name: &str) -> Precedence {
    name.parse().unwrap_or_default()
}

pub fn messages(sc: &Scenario, world: &World, convs: &[Conv]) -> Result<Vec<Message>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x5eed_0002);
    let w = &sc.workload;
    let stop = (sc.duration_s.saturating_sub(w.stop_before_end_s)) * 1000;
    let mut out = Vec::new();
    let weights: Vec<(Precedence, f64)> = if w.precedence.is_empty() {
        vec![(Precedence::Routine, 1.0)]
    } else {
        w.precedence
            .iter()
            .map(|(k, v)| (precedence_of(k), *v))
            .collect()
    };
    let total: f64 = weights.iter().map(|(_, v)| v).sum();
    {
        for (ci, c) in convs.iter().enumerate() {
            if c.chat_rate <= 0.0 {
                continue;
            }
            let rate_per_ms = c.chat_rate / 3_600_000.0;
            for &m in &c.members {
                // Relay-only members (e.g. an EOC that only alerts) still chat; keep simple.
                let mut t = 0.0f64;
                loop {
                    let u = unit(&mut rng).max(1e-12);
                    t += -u.ln() / rate_per_ms;
                    if t >= stop as f64 || !c.member_at(m, t as u64) {
                        break;
                    }
                    let mut x = unit(&mut rng) * total;
                    let mut prec = Precedence::Routine;
                    for (p, v) in &weights {
                        if x < *v {
                            prec = *p;
                            break;
                        }
                        x -= v;
                    }
                    let size = w.size_min
                        + (rng.next_u64() % (w.size_max - w.size_min + 1) as u64) as usize;
                    out.push(Message {
                        id: 0,
                        time_ms: t as u64,
                        src: m,
                        conv: ci,
                        size,
                        precedence: prec,
                        ttl_ms: w.ttl_s * 1000,
                        alert: false,
                    });
                }
            }
        }
    }
    for a in &w.alerts {
        let from = select(&world.nodes, &a.from)?;
        let src = *from.first().ok_or("alert has no sender")?;
        let targets: Vec<usize> = convs
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                a.conversations
                    .iter()
                    .any(|p| c.name == *p || c.name.starts_with(&format!("{p}-")))
            })
            .map(|(i, _)| i)
            .collect();
        if targets.is_empty() {
            return Err(format!("alert from {} matches no conversation", a.from));
        }
        let mut t = a.every_s * 1000;
        while t < stop {
            for &ci in &targets {
                if convs[ci].member_at(src, t) {
                    out.push(Message {
                        id: 0,
                        time_ms: t,
                        src,
                        conv: ci,
                        size: a.size,
                        precedence: Precedence::Flash,
                        ttl_ms: w.ttl_s * 1000,
                        alert: true,
                    });
                }
            }
            t += a.every_s.max(1) * 1000;
        }
    }
    out.sort_by_key(|m| (m.time_ms, m.src, m.conv));
    for (i, m) in out.iter_mut().enumerate() {
        m.id = i;
    }
    Ok(out)
}

/// Destinations of a message: the conversation's members (at the time it is written) except
/// the author.
pub fn destinations(m: &Message, convs: &[Conv]) -> Vec<usize> {
    let c = &convs[m.conv];
    c.members
        .iter()
        .copied()
        .filter(|d| *d != m.src && c.member_at(*d, m.time_ms))
        .collect()
}

/// Deterministic text of a given size for a message (mixed scripts, like real traffic).
pub fn body(m: &Message) -> String {
    let mut c = vaarta_sync::sample::Chatter::new(m.id as u64 ^ 0xbeef);
    c.message_exact(m.size)
}
