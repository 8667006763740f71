//! The driving harness: the output pump every driver runs after a batch of inputs, and a
//! seeded network of engines in virtual time for tests and simulations (behind the
//! `testing` feature; quinn-proto's `Pair`, iroh-gossip's `sim`).
//!
//! [`Network`] wires engines with in-memory links of a fixed latency and jumps from one
//! event to the next: a frame arriving, or the earliest [`Engine::poll_timeout`]. Nothing in
//! it depends on wall-clock time, so a run is reproducible.

use std::collections::{BTreeMap, BTreeSet};

use vaarta_sync::envelope::Envelope;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::EnvelopeId;
use vaarta_sync::store::MemoryStore;

pub use crate::drive::{Outputs, drain, pump};
use crate::{Action, Config, Engine, Event, Frame, LinkId, LinkUp, PeerKey};

/// Virtual time the harness starts at (2026-09): any fixed value works.
pub const T0: u64 = 1_790_000_000_000;

/// Engines wired in memory, in virtual time.
#[derive(Debug)]
pub struct Network {
    pub nodes: Vec<Engine<MemoryStore>>,
    /// (node, link) → (node, link) on the other side.
    wires: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    /// Frames on the way: (arrival, order) → (node, link, bytes).
    in_flight: BTreeMap<(u64, u64), (usize, LinkId, Vec<u8>)>,
    next_link: u64,
    next_frame: u64,
    pub now: u64,
    /// One-way delay of every link.
    pub latency_ms: u64,
    /// Every event each node emitted, in order.
    pub events: Vec<Vec<Event>>,
    /// Frames delivered so far.
    pub frames_delivered: u64,
    /// Envelopes whose pushes are spoiled on the wire (last byte flipped), so that every
    /// receiver refuses them: a test's way to keep one envelope from arriving.
    pub spoil: BTreeSet<EnvelopeId>,
}

impl Network {
    /// `n` engines named `node0`, `node1`, ..., with fixed keys and seeds.
    pub fn new(n: usize) -> Self {
        Self::with(n, |i| Config {
            name: format!("node{i}"),
            ..Config::default()
        })
    }

    /// `n` engines with the configuration `config(i)`, each of which has accepted every
    /// other's device (as the users of one team would: invitations between them are taken
    /// at once; see [`Self::strangers`] for engines that never met).
    pub fn with(n: usize, config: impl Fn(usize) -> Config) -> Self {
        let mut net = Self::strangers(n, config);
        let ids: Vec<_> = net.nodes.iter().map(|e| e.device_id()).collect();
        for (i, node) in net.nodes.iter_mut().enumerate() {
            for (j, d) in ids.iter().enumerate() {
                if i != j {
                    node.accept_device(d, T0).expect("a memory store writes");
                }
            }
        }
        net
    }

    /// `n` engines with the configuration `config(i)` that accepted nobody: invitations
    /// between them are held until accepted.
    pub fn strangers(n: usize, config: impl Fn(usize) -> Config) -> Self {
        let nodes = (0..n)
            .map(|i| {
                Engine::new(
                    Identity::from_seed([i as u8 + 1; 32]),
                    MemoryStore::new(),
                    config(i),
                    [i as u8; 32],
                    T0,
                )
                .expect("a memory store opens")
            })
            .collect();
        Self {
            nodes,
            wires: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_link: 1,
            next_frame: 0,
            now: T0,
            latency_ms: 1,
            events: (0..n).map(|_| Vec::new()).collect(),
            frames_delivered: 0,
            spoil: BTreeSet::new(),
        }
    }

    /// Links `a` (dialling) and `b`; returns each side's link id.
    pub fn connect(&mut self, a: usize, b: usize) -> (LinkId, LinkId) {
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        self.wires.insert((a, la), (b, lb));
        self.wires.insert((b, lb), (a, la));
        let (ta, tb) = (format!("t{a}").into_bytes(), format!("t{b}").into_bytes());
        let now = self.now;
        self.nodes[a].handle_link_up(
            LinkUp {
                link: la,
                peer: PeerKey::new(format!("p{b}")),
                outbound: true,
                dialed: None,
                local_tid: ta.clone(),
                remote_tid: tb.clone(),
            },
            now,
        );
        self.nodes[b].handle_link_up(
            LinkUp {
                link: lb,
                peer: PeerKey::new(format!("p{a}")),
                outbound: false,
                dialed: None,
                local_tid: tb,
                remote_tid: ta,
            },
            now,
        );
        (la, lb)
    }

    /// The other end of `node`'s `link`, while it is up.
    pub fn peer_of(&self, node: usize, link: LinkId) -> Option<(usize, LinkId)> {
        self.wires.get(&(node, link)).copied()
    }

    /// Cuts a link at both ends (frames on the way are lost).
    pub fn cut(&mut self, node: usize, link: LinkId) {
        if let Some((o, ol)) = self.wires.remove(&(node, link)) {
            self.wires.remove(&(o, ol));
            self.nodes[o].handle_link_down(ol, self.now);
        }
        self.nodes[node].handle_link_down(link, self.now);
    }

    /// Pumps every node and handles what is due at `now` until nothing more happens now.
    /// Returns true if anything moved.
    fn run_now(&mut self) -> bool {
        let mut any = false;
        for _ in 0..100_000 {
            let mut moved = false;
            let now = self.now;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (to, link, frame) = entry.remove();
                self.frames_delivered += 1;
                self.nodes[to].handle_frame(link, &frame, now);
                moved = true;
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            for i in 0..self.nodes.len() {
                let out = pump(&mut self.nodes[i], now).expect("memory store flush");
                for (l, mut f) in out.frames {
                    self.spoil_push(&mut f);
                    if let Some((o, ol)) = self.peer_of(i, l) {
                        self.next_frame += 1;
                        self.in_flight
                            .insert((now + self.latency_ms, self.next_frame), (o, ol, f));
                        moved = true;
                    }
                }
                for a in out.actions {
                    if let Action::Close { link, .. } = a {
                        // Frames already queued on it leave first (the transport flushes):
                        // they arrive before the other end sees the link go down.
                        if let Some((o, ol)) = self.peer_of(i, link) {
                            let queued: Vec<(u64, u64)> = self
                                .in_flight
                                .iter()
                                .filter(|(_, (to, l, _))| (*to, *l) == (o, ol))
                                .map(|(k, _)| *k)
                                .collect();
                            for k in queued {
                                if let Some((to, l, f)) = self.in_flight.remove(&k) {
                                    self.frames_delivered += 1;
                                    self.nodes[to].handle_frame(l, &f, now);
                                }
                            }
                        }
                        self.cut(i, link);
                        moved = true;
                    }
                }
                self.events[i].extend(out.events);
            }
            if !moved {
                return any;
            }
            any = true;
        }
        panic!("no progress at one point in time");
    }

    /// Flips the last byte of a push of an envelope in [`Self::spoil`].
    fn spoil_push(&self, f: &mut [u8]) {
        if self.spoil.is_empty() {
            return;
        }
        if let Ok(Frame::Push { envelope, .. }) = Frame::decode(f)
            && let Ok(env) = Envelope::decode(&envelope)
            && self.spoil.contains(&env.id())
            && let Some(last) = f.last_mut()
        {
            *last ^= 0x55;
        }
    }

    /// The next point in time something happens: a frame arrives or a deadline passes.
    pub fn next_time(&self) -> Option<u64> {
        let frame = self.in_flight.keys().next().map(|(t, _)| *t);
        let timer = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
        [frame, timer].into_iter().flatten().min()
    }

    /// Runs until no frame is on the way and no link has pushes queued or unacknowledged,
    /// jumping from event to event. Panics if that takes over ten virtual minutes.
    pub fn settle(&mut self) {
        let limit = self.now + 10 * 60_000;
        loop {
            self.run_now();
            if self.in_flight.is_empty() && self.nodes.iter().all(|n| n.backlog() == 0) {
                return;
            }
            let next = self.next_time().unwrap_or(self.now + 1).max(self.now + 1);
            assert!(next <= limit, "did not settle in ten virtual minutes");
            self.now = next;
        }
    }

    /// Runs every event up to `now + ms`, then stops there.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            self.run_now();
            match self.next_time() {
                Some(t) if t <= end => self.now = t.max(self.now + 1),
                _ => break,
            }
        }
        self.now = end;
        self.run_now();
    }

    /// Nodes linked to `node`, by their index.
    pub fn neighbours(&self, node: usize) -> BTreeSet<usize> {
        self.wires
            .iter()
            .filter(|((n, _), _)| *n == node)
            .map(|(_, (o, _))| *o)
            .collect()
    }
}

/// An organisation for tests: a root, one registrar for the whole organisation, and
/// chains for engines of a [`Network`] (whose identities are `Identity::from_seed([i + 1;
/// 32])`), valid from a year before [`T0`] for two years.
#[derive(Debug)]
pub struct TestOrg {
    pub root: Identity,
    pub registrar: vaarta_sync::org::Registrar,
}

impl TestOrg {
    const YEAR: u64 = 365 * 86_400_000;

    /// An organisation whose root key comes from `seed` (the registrar's from `seed + 1`).
    pub fn new(seed: u8, name: &str) -> Self {
        use vaarta_sync::org::{OrgRoot, Registrar, RegistrarCert, Unit};
        let root = Identity::from_seed([seed; 32]);
        let reg = Identity::from_seed([seed.wrapping_add(1); 32]);
        let from = T0 - Self::YEAR;
        let rec = OrgRoot::new(&root, name, from, T0 + Self::YEAR).expect("valid root");
        let cert = RegistrarCert::new(&root, reg.device_id(), Unit::whole(), from, T0 + Self::YEAR)
            .expect("valid certificate");
        let registrar = Registrar::new(reg, cert, rec).expect("the root certified it");
        TestOrg { root, registrar }
    }

    pub fn id(&self) -> vaarta_sync::ids::OrgId {
        self.registrar.root.org
    }

    /// A chain for network node `node`: the person `name`, `designation` in `unit`.
    pub fn enrol(
        &self,
        node: usize,
        name: &str,
        designation: &str,
        unit: &str,
    ) -> vaarta_sync::org::Chain {
        let device = Identity::from_seed([node as u8 + 1; 32]).device_id();
        let unit = vaarta_sync::org::Unit::parse(unit).expect("a valid unit path");
        let from = T0 - Self::YEAR;
        let person = self
            .registrar
            .issue_person(
                vaarta_sync::ids::PersonId([node as u8 + 1; 16]),
                vec![("en".into(), name.into())],
                designation,
                unit,
                vec!["en".into()],
                from,
                2 * Self::YEAR,
            )
            .expect("within the registrar's scope");
        let dev = self
            .registrar
            .issue_device(&person, device, "phone", from, 2 * Self::YEAR)
            .expect("the registrar issued the person");
        self.registrar.bundle(person, dev)
    }

    /// This organisation's credentials for node `node`: its chain, this root pinned.
    pub fn credentials(&self, chain: vaarta_sync::org::Chain) -> crate::Credentials {
        crate::Credentials {
            own: Some(chain),
            pinned: vec![self.id()],
            revocations: vaarta_sync::org::Revocations::new(),
            wipes: Default::default(),
            directory: Default::default(),
        }
    }

    /// The registrar assigns role `role` of unit `unit` (titled `title` in English) to the
    /// person enrolled for network node `node` ([`Self::enrol`]), from `from`.
    pub fn assign(
        &self,
        node: usize,
        unit: &str,
        role: &str,
        title: &str,
        from: u64,
    ) -> vaarta_sync::org::RoleAssignment {
        self.registrar
            .assign(
                vaarta_sync::org::Unit::parse(unit).expect("a valid unit path"),
                role,
                vec![("en".into(), title.into())],
                vaarta_sync::ids::PersonId([node as u8 + 1; 16]),
                from,
                from,
                Self::YEAR,
            )
            .expect("within the registrar's scope")
    }

    /// The registrar's wipe order of network node `node`'s device, at `at`.
    pub fn wipe_node(&self, node: usize, at: u64) -> vaarta_sync::org::WipeOrder {
        let device = Identity::from_seed([node as u8 + 1; 32]).device_id();
        self.registrar.wipe(device, at).expect("a valid wipe order")
    }

    /// The root's revocation of network node `node`'s device, effective at `at`.
    pub fn revoke_node(&self, node: usize, at: u64) -> vaarta_sync::org::Revocation {
        let device = Identity::from_seed([node as u8 + 1; 32]).device_id();
        vaarta_sync::org::Revocation::new(
            &self.root,
            vaarta_sync::org::Target::Device(device),
            at,
            None,
            at,
            T0 + Self::YEAR,
        )
        .expect("a valid revocation")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_engines_link_and_settle_in_a_few_virtual_milliseconds() {
        let mut net = Network::new(2);
        net.connect(0, 1);
        net.settle();
        assert!(net.now < T0 + 100, "took {} ms", net.now - T0);
        assert_eq!(net.nodes[0].links().len(), 1);
        assert!(net.nodes[0].links()[0].ready);
        // They share no tag, so neither shows the other its device.
        assert_eq!(net.nodes[0].links()[0].device, None);
        assert!(
            net.frames_delivered >= 4,
            "two hellos and two intros at least"
        );
        assert_eq!(net.neighbours(0), [1].into());
    }

    #[test]
    fn run_for_follows_deadlines_without_stepping_every_millisecond() {
        let mut net = Network::new(2);
        net.connect(0, 1);
        net.settle();
        let before = net.frames_delivered;
        // Five virtual minutes of an idle link: periodic reconciliations only.
        net.run_for(5 * 60_000);
        let resyncs = net.frames_delivered - before;
        assert!(resyncs > 0, "periodic reconciliation ran");
        assert!(resyncs < 100, "idle links stay quiet: {resyncs} frames");
    }
}
