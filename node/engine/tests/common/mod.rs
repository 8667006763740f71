//! Helpers the engine integration tests share (each test file includes this module).
#![allow(dead_code)]

use vaarta_engine::testing::Network;
use vaarta_engine::{Config, LinkId};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, Tag};
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;
use vaarta_sync::store::MemoryStore;

pub type Engine = vaarta_engine::Engine<MemoryStore>;

/// A plain message with `s` as its body.
pub fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

/// The bodies of the newest 10,000 messages of `c` on one engine, oldest first.
pub fn bodies(e: &mut Engine, c: &ConversationId) -> Vec<String> {
    e.messages(c, 10_000)
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.view.body)
        .collect()
}

/// The default configuration, named `node{i}`.
pub fn named(i: usize) -> Config {
    Config {
        name: format!("node{i}"),
        ..Config::default()
    }
}

/// Node `admin` creates a conversation (shared history) titled `title` and adds node
/// `member`'s device to it; nothing is delivered yet.
pub fn invite(net: &mut Network, admin: usize, member: usize, title: &str) -> ConversationId {
    let c = net.nodes[admin]
        .create_conversation(title, History::Shared, net.now)
        .unwrap()
        .0;
    let d = net.nodes[member].device_id();
    net.nodes[admin].add_member(&c, d, false, net.now).unwrap();
    c
}

/// The tag of conversation `c` as node `node` holds it.
pub fn conversation_tag(net: &Network, node: usize, c: &ConversationId) -> Tag {
    net.nodes[node]
        .replica()
        .conversation(c)
        .expect("the conversation")
        .tag
}

/// Node `from` dials node `to` and the link settles; then node `admin` invites node
/// `member` ([`invite`]) and that settles too. Returns the conversation and the link's
/// ends at `from` and at `to`.
pub fn connect_and_invite(
    net: &mut Network,
    (from, to): (usize, usize),
    admin: usize,
    member: usize,
    title: &str,
) -> (ConversationId, LinkId, LinkId) {
    let (at_from, at_to) = net.connect(from, to);
    net.settle();
    let c = invite(net, admin, member, title);
    net.settle();
    (c, at_from, at_to)
}

/// Closes node `node` and opens a new engine on its store, with the same identity and
/// configuration (and generator seed) that [`Network`] gave it.
pub fn restart(net: &mut Network, node: usize) {
    let config = net.nodes[node].config().clone();
    let store = net.nodes.remove(node).close().unwrap();
    reopen(net, node, store, config);
}

/// Node `node` loses what it did not flush (a power cut) and starts again on its store.
pub fn restart_after_crash(net: &mut Network, node: usize) {
    let config = net.nodes[node].config().clone();
    let mut store = net.nodes.remove(node).crash();
    store.crash();
    reopen(net, node, store, config);
}

fn reopen(net: &mut Network, node: usize, store: MemoryStore, config: Config) {
    let e = vaarta_engine::Engine::new(
        Identity::from_seed([node as u8 + 1; 32]),
        store,
        config,
        [node as u8; 32],
        net.now,
    )
    .unwrap();
    net.nodes.insert(node, e);
}
