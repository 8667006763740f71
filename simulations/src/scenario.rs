//! Scenario files (TOML). See `simulations/scenarios/README.md` for the full reference.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "one")]
    pub seed: u64,
    /// Virtual seconds to simulate.
    pub duration_s: u64,
    /// Mobility and contact evaluation step.
    #[serde(default = "thousand")]
    pub tick_ms: u64,
    #[serde(default)]
    pub area: Area,
    /// Fixed places (camps, offices) that mobility models and groups can refer to by name.
    #[serde(default)]
    pub places: BTreeMap<String, [f64; 2]>,
    /// Radio models by name.
    pub radios: BTreeMap<String, Radio>,
    #[serde(rename = "group")]
    pub groups: Vec<Group>,
    #[serde(default, rename = "conversation")]
    pub conversations: Vec<ConversationSpec>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// Member devices turned hostile (Vaarta router only; the baselines have no membership).
    #[serde(default, rename = "adversary")]
    pub adversaries: Vec<Adversary>,
    /// A contact trace in The ONE's connectivity format replaces mobility when set
    /// (a path relative to the scenario file).
    #[serde(default)]
    pub contact_trace: Option<String>,
    /// Routers to run on identical contacts and workload.
    #[serde(default = "default_routers")]
    pub routers: Vec<String>,
    /// Copies for Spray-and-Wait.
    #[serde(default = "six")]
    pub spray_copies: u32,
    /// Buffer of a baseline router node, in bytes (The ONE's default groupsize buffer).
    #[serde(default = "baseline_buffer")]
    pub baseline_buffer_bytes: u64,
    /// After `duration_s`, keep links as they are (no movement, no workload) for this long
    /// so that linked members can converge; then the invariants are checked.
    #[serde(default = "quiesce")]
    pub quiesce_s: u64,
}

fn one() -> u64 {
    1
}
fn thousand() -> u64 {
    1000
}
fn six() -> u32 {
    6
}
fn quiesce() -> u64 {
    120
}
fn baseline_buffer() -> u64 {
    50 * 1024 * 1024
}
fn default_routers() -> Vec<String> {
    vec!["vaarta".into(), "epidemic".into(), "spray-and-wait".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub width_m: f64,
    pub height_m: f64,
}

impl Default for Area {
    fn default() -> Self {
        Self {
            width_m: 1000.0,
            height_m: 1000.0,
        }
    }
}

/// A radio: range, throughput, latency, loss, and how many links one device can hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Radio {
    pub range_m: f64,
    /// Usable throughput, kilobytes per second.
    pub rate_kbytes_s: f64,
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction of throughput lost to retransmissions (the link itself stays reliable).
    #[serde(default)]
    pub loss: f64,
    /// Largest frame payload (BLE MTU); larger frames take several.
    #[serde(default)]
    pub mtu: Option<u64>,
    /// Bytes of overhead per MTU-sized packet.
    #[serde(default)]
    pub packet_overhead: u64,
    /// Bytes of overhead once per frame (with an MTU: the link layer's per-record costs, e.g.
    /// the Bluetooth link's Noise tag and record headers; docs/performance.md, "Bluetooth link
    /// layer").
    #[serde(default)]
    pub frame_overhead: u64,
    #[serde(default = "max_links")]
    pub max_links: usize,
    /// Preference when two devices share several radios (higher wins).
    #[serde(default)]
    pub preference: i32,
}

fn max_links() -> usize {
    64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A member's phone or radio: carries only its own conversations.
    Field,
    /// A vehicle acting as a data mule: carries everything.
    Vehicle,
    /// A camp laptop: static, carries everything.
    Laptop,
    /// A relay-only box: carries everything, member of nothing.
    Relay,
}

impl Role {
    pub fn relays(self) -> bool {
        !matches!(self, Role::Field)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub count: usize,
    pub role: Role,
    pub radios: Vec<String>,
    #[serde(default)]
    pub mobility: Mobility,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Mobility {
    /// Fixed positions: at a named place (scattered within `spread_m`), or uniformly random.
    #[default]
    Static,
    StaticAt {
        place: String,
        #[serde(default)]
        spread_m: f64,
    },
    /// One node per place in turn (node i at places[i % n]), scattered within `spread_m`.
    StaticAtPlaces {
        places: Vec<String>,
        #[serde(default)]
        spread_m: f64,
    },
    /// Random waypoint over the area.
    RandomWaypoint {
        speed_min: f64,
        speed_max: f64,
        #[serde(default)]
        pause_s: f64,
    },
    /// Teams of `team_size` move together between `places`, staying `pause_s` at each,
    /// members scattered within `spread_m` of the team's centre.
    Teams {
        team_size: usize,
        places: Vec<String>,
        speed: f64,
        pause_s: f64,
        spread_m: f64,
    },
    /// A fixed route through places, repeated (vehicles as data mules).
    Route {
        places: Vec<String>,
        speed: f64,
        #[serde(default)]
        pause_s: f64,
    },
}

/// A conversation: who is in it. Members are group names, or "group[i]" / "group[a..b]",
/// or "team:group" (one conversation per team of a `teams` group).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationSpec {
    pub name: String,
    pub members: Vec<String>,
    /// One conversation per team of this group (members of the team + `members`).
    #[serde(default)]
    pub per_team_of: Option<String>,
    /// Chat messages per member per hour here (default: the workload's rate; 0 for a
    /// broadcast-only conversation).
    #[serde(default)]
    pub chat_rate_per_member_hour: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Chat messages per member per hour.
    pub rate_per_member_hour: f64,
    pub size_min: usize,
    pub size_max: usize,
    /// Share of each precedence among chat messages.
    #[serde(default)]
    pub precedence: BTreeMap<String, f64>,
    /// Seconds after which relays stop carrying a message, and after which a delivery no
    /// longer counts.
    pub ttl_s: u64,
    /// Stop creating messages this long before the end (so late ones can be delivered).
    #[serde(default)]
    pub stop_before_end_s: u64,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<Alert>,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            rate_per_member_hour: 0.0,
            size_min: 60,
            size_max: 200,
            precedence: BTreeMap::new(),
            ttl_s: 3600,
            stop_before_end_s: 0,
            alerts: Vec::new(),
        }
    }
}

/// A periodic FLASH alert from one node to conversations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub from: String,
    pub every_s: u64,
    /// Conversation names (or prefixes, for per-team conversations).
    pub conversations: Vec<String>,
    #[serde(default = "alert_size")]
    pub size: usize,
}

fn alert_size() -> usize {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Between `at_s` and `heal_s`, no link between nodes of different sides.
    Partition {
        at_s: u64,
        heal_s: u64,
        /// Node selectors of one side; everyone else is the other side.
        side: Vec<String>,
    },
    /// Every `every_s`, a random node goes down for `down_s` (links drop, nothing is lost).
    Churn { every_s: u64, down_s: u64 },
    /// A node crashes at `at_s` (unflushed state lost) and restarts at `restart_s`.
    Crash {
        node: String,
        at_s: u64,
        restart_s: u64,
    },
}

/// A member device that its conversation's admin removes, and that then attacks the
/// conversation with validly signed hostile envelopes (see `simulations/scenarios/README.md`).
/// What it builds is handed to every device it is linked with, as its own pushes would be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adversary {
    /// The hostile device: a selector naming one member of `conversation`, not its admin.
    pub node: String,
    pub conversation: String,
    /// Whether it was an admin before its removal (a removed admin can sign admin actions).
    #[serde(default)]
    pub admin: bool,
    /// When the admin (the conversation's first member) removes it.
    pub removed_at_s: u64,
    #[serde(default, rename = "attack")]
    pub attacks: Vec<Attack>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    pub kind: AttackKind,
    pub at_s: u64,
    /// How many envelopes (junk operations, re-sealed copies); a default per kind.
    #[serde(default)]
    pub count: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// On the membership it knew before its removal, at time 0: removes the admin, adds a
    /// second device of its own as admin (which removes an honest member), renames.
    BackdatedTakeover,
    /// Profile operations past its per-member quota, half on parents that never arrive, and
    /// as many title operations signed by an outsider who learnt the conversation secret.
    JunkOperations,
    /// An operation at the largest HLC, then a ladder of operations one skew step apart.
    FarFutureClock,
    /// Invitations to every honest member naming itself the conversation's creator.
    ForeignCreatorInvitation,
    /// Invitations (in the real creator's name) carrying keys of its own for the current and
    /// a new epoch.
    InjectedKeys,
    /// Honest envelopes it can read, re-sealed under new salts (new envelope ids).
    ResealedDuplicates,
    /// Two conflicting operations on the same parents and time, one to the even-numbered
    /// and the other to the odd-numbered devices it meets.
    SplitEquivocation,
}

impl AttackKind {
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::BackdatedTakeover => "backdated-takeover",
            AttackKind::JunkOperations => "junk-operations",
            AttackKind::FarFutureClock => "far-future-clock",
            AttackKind::ForeignCreatorInvitation => "foreign-creator-invitation",
            AttackKind::InjectedKeys => "injected-keys",
            AttackKind::ResealedDuplicates => "resealed-duplicates",
            AttackKind::SplitEquivocation => "split-equivocation",
        }
    }
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.groups.is_empty() {
            return Err("a scenario needs at least one [[group]]".into());
        }
        for g in &self.groups {
            for r in &g.radios {
                if !self.radios.contains_key(r) {
                    return Err(format!("group {} uses unknown radio {r}", g.name));
                }
            }
            let places: Vec<&String> = match &g.mobility {
                Mobility::StaticAt { place, .. } => vec![place],
                Mobility::Teams { places, .. }
                | Mobility::Route { places, .. }
                | Mobility::StaticAtPlaces { places, .. } => places.iter().collect(),
                _ => vec![],
            };
            for p in places {
                if !self.places.contains_key(p) {
                    return Err(format!("group {} refers to unknown place {p}", g.name));
                }
            }
        }
        if self.workload.size_min > self.workload.size_max || self.workload.size_min == 0 {
            return Err("workload sizes must satisfy 0 < size_min <= size_max".into());
        }
        if self.tick_ms == 0 || self.duration_s == 0 {
            return Err("duration_s and tick_ms must be positive".into());
        }
        for a in &self.adversaries {
            if a.removed_at_s >= self.duration_s {
                return Err(format!(
                    "adversary {}: removed_at_s is past the end",
                    a.node
                ));
            }
            for at in &a.attacks {
                if at.at_s >= self.duration_s {
                    return Err(format!(
                        "adversary {}: attack {} at {} s is past the end",
                        a.node,
                        at.kind.name(),
                        at.at_s
                    ));
                }
            }
        }
        for r in &self.routers {
            if !["vaarta", "epidemic", "spray-and-wait"].contains(&r.as_str()) {
                return Err(format!(
                    "unknown router {r} (vaarta, epidemic, spray-and-wait)"
                ));
            }
        }
        Ok(())
    }

    pub fn node_count(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }
}
