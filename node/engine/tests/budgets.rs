//! Strangers and resource budgets (issue 9 part B), at engine level in virtual time: each
//! test bounds bytes, entries or work per input, and checks honest peers are still served.

use vaarta_engine::testing::Network;
use vaarta_engine::{Action, CloseReason, Event, Frame, LinkId, LinkUp, MAX_FRAME_BYTES, PeerKey};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, EnvelopeId, Tag};
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;
use vaarta_sync::store::Store;

fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

/// Nodes 0 and 1 linked, in one conversation, with one message sent; its tag.
fn shared(net: &mut Network) -> (ConversationId, Tag) {
    net.connect(0, 1);
    net.settle();
    let c = net.nodes[0]
        .create_conversation("EOC", History::Shared, net.now)
        .unwrap()
        .0;
    let b = net.nodes[1].device_id();
    net.nodes[0].add_member(&c, b, false, net.now).unwrap();
    net.settle();
    net.nodes[0]
        .send_message(&c, text("hello"), net.now)
        .unwrap();
    net.settle();
    let r = net.nodes[0].replica();
    let tag = r
        .store()
        .tags()
        .into_iter()
        .map(|(t, _)| t)
        .find(|t| r.conversation_of_tag(t) == Some(c))
        .expect("the conversation's tag");
    (c, tag)
}

fn fake(n: u64) -> EnvelopeId {
    EnvelopeId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn refused(net: &Network, node: usize, since: usize) -> usize {
    net.events[node][since..]
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .count()
}

/// Item 12: an honest reconciliation whose reply is larger than a frame (1,500 missing among
/// 100k shared ids: ≈ 560 KB in one message before) is sent in parts; nobody is refused or
/// cut, and it completes.
#[test]
fn a_large_honest_reconciliation_fits_the_frame_limit() {
    let mut net = Network::new(2);
    let (_, tag) = shared(&mut net);
    // Plant 100k shared ids, and 1,500 only node 0 has (tombstones: found lacking and
    // announced, never pushed, so the planted ids need no content).
    for n in 0..100_000 {
        for node in 0..2 {
            net.nodes[node]
                .store_for_tests()
                .put_envelope(&tag, &fake(n), b"x")
                .unwrap();
        }
    }
    for n in 1_000_000..1_001_500 {
        net.nodes[0]
            .store_for_tests()
            .put_envelope(&tag, &fake(n), b"")
            .unwrap();
    }
    let since = [net.events[0].len(), net.events[1].len()];
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 3);
    assert_eq!(refused(&net, 0, since[0]) + refused(&net, 1, since[1]), 0);
    assert_eq!(net.nodes[0].links().len(), 1, "still linked");
    let big = net.events[0][since[0]..]
        .iter()
        .chain(&net.events[1][since[1]..])
        .filter_map(|e| match e {
            Event::Reconciled { stats, .. } => Some(stats.bytes_received + stats.bytes_sent),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(
        big > MAX_FRAME_BYTES as u64,
        "the reconciliation moved more than a frame ({big} bytes) and completed"
    );
}

/// A stranger's transport connection to `node` that never says anything.
fn silent_inbound(net: &mut Network, node: usize, n: u64) -> LinkId {
    let link = LinkId(1_000_000 + n);
    let now = net.now;
    net.nodes[node].handle_link_up(
        LinkUp {
            link,
            peer: PeerKey::new(format!("stranger{n}")),
            outbound: false,
            dialed: None,
            local_tid: b"victim".to_vec(),
            remote_tid: format!("stranger{n}").into_bytes(),
        },
        now,
    );
    link
}

/// Item 15: 64 silent inbound connections with fresh peer ids (the whole `max_links`) do not
/// eclipse a node: inbound links get at most `max_inbound_links`, the node still dials out
/// and is served, and the silent links are closed after the hello timeout, freeing slots for
/// honest inbound peers.
#[test]
fn silent_strangers_cannot_take_every_link_slot() {
    let mut net = Network::new(3);
    let cfg = net.nodes[0].config().clone();
    for n in 0..cfg.max_links as u64 {
        silent_inbound(&mut net, 0, n);
    }
    let mut refused_slots = 0;
    while let Some(a) = net.nodes[0].poll_action() {
        if let Action::Close {
            reason: CloseReason::TooManyLinks,
            link,
            ..
        } = a
        {
            refused_slots += 1;
            net.nodes[0].handle_link_down(link, net.now);
        }
    }
    assert_eq!(net.nodes[0].links().len(), cfg.max_inbound_links);
    assert_eq!(refused_slots, cfg.max_links - cfg.max_inbound_links);
    // The node dials an honest peer: a slot is there; they link and sync.
    net.connect(0, 1);
    net.run_for(100);
    assert!(
        net.nodes[0]
            .links()
            .iter()
            .any(|l| l.ready && l.peer.as_str() == "p1"),
        "the dialled honest peer is linked"
    );
    // The silent ones are closed at the hello timeout, and only they.
    net.run_for(cfg.hello_timeout_ms);
    assert_eq!(net.nodes[0].links().len(), 1);
    assert_eq!(
        net.nodes[0].counters().hello_timeouts,
        cfg.max_inbound_links as u64
    );
    // An honest peer dialling in is accepted now.
    net.connect(2, 0);
    net.settle();
    assert_eq!(net.nodes[0].links().len(), 2);
    let c = net.nodes[0]
        .create_conversation("x", History::Shared, net.now)
        .unwrap()
        .0;
    let d = net.nodes[2].device_id();
    net.nodes[0].add_member(&c, d, false, net.now).unwrap();
    net.nodes[0]
        .send_message(&c, text("served"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(net.nodes[2].messages(&c, 10).unwrap().len(), 1);
}

fn created(net: &Network, node: usize) -> Vec<EnvelopeId> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::Created { envelope } => Some(*envelope),
            _ => None,
        })
        .collect()
}

/// Item 16: `Want` is served only for envelopes under the link's session tags, and each at
/// most once per link.
#[test]
fn want_serves_only_session_tags_and_once_per_link() {
    // Nodes 0 and 1 share a conversation; node 2 is a stranger that is not a relay (so its
    // session with node 0 has none of node 0's tags).
    let mut net = Network::with(3, |i| vaarta_engine::Config {
        name: format!("node{i}"),
        relay: i != 2,
        ..vaarta_engine::Config::default()
    });
    let (_c, _tag) = shared(&mut net);
    let secret = *created(&net, 0).last().expect("the message");
    let (_, on0) = net.connect(2, 0);
    net.settle();
    let pushes = net.nodes[0].counters().pushes_out;
    let want = Frame::Want { ids: vec![secret] }.encode();
    for _ in 0..10 {
        net.nodes[0].handle_frame(on0, &want, net.now);
    }
    net.run_for(100);
    assert_eq!(
        net.nodes[0].counters().pushes_out,
        pushes,
        "nothing outside the link's tags is pushed"
    );
    assert_eq!(net.nodes[0].counters().wants_ignored, 10);
    // The member may fetch it, once per link however often it asks.
    let on0_from1 = net.nodes[0]
        .links()
        .into_iter()
        .find(|l| l.device == Some(net.nodes[1].device_id()))
        .unwrap()
        .link;
    let pushes = net.nodes[0].counters().pushes_out;
    for _ in 0..10 {
        net.nodes[0].handle_frame(on0_from1, &want, net.now);
    }
    net.run_for(100);
    assert_eq!(net.nodes[0].counters().pushes_out, pushes + 1);
}

/// Item 16: a second hello on a link cannot switch the device behind it.
#[test]
fn a_second_hello_cannot_switch_the_device() {
    let mut net = Network::new(3);
    let (on2, on0) = net.connect(2, 0);
    net.settle();
    let other = Identity::from_seed([99; 32]);
    // A second `Hello` (a new nonce, to start the session over as another device) cuts the
    // link; a `Proof` for another device cannot be made without this session's nonces.
    let f = Frame::Hello { nonce: [7; 32] }.encode();
    let _ = on2;
    net.nodes[0].handle_frame(on0, &f, net.now);
    let devices: Vec<_> = net.nodes[0].links().into_iter().map(|l| l.device).collect();
    assert!(
        !devices.contains(&Some(other.device_id())),
        "the link's device did not change"
    );
    net.run_for(100);
    assert!(net.nodes[0].links().is_empty(), "the link is cut");
}

/// Item 16: every fault's `Bye` gives the same reason (which keys a device holds must not
/// show in why it refused), and strangers that fault with fresh peer ids do not grow the
/// peer table.
#[test]
fn bye_reasons_are_uniform_and_faulting_strangers_do_not_grow_tables() {
    let mut net = Network::with(2, |i| vaarta_engine::Config {
        name: format!("node{i}"),
        max_peers: 8,
        ..vaarta_engine::Config::default()
    });
    let mut reasons = std::collections::BTreeSet::new();
    for n in 0..100u64 {
        let link = silent_inbound(&mut net, 0, n);
        // Alternate two different faults: a frame before the hello, and garbage.
        let junk: Vec<u8> = if n % 2 == 0 {
            Frame::Ack {
                up_to: 1,
                refused: vec![],
            }
            .encode()
        } else {
            vec![0xee; 40]
        };
        net.nodes[0].handle_frame(link, &junk, net.now);
        while let Some((l, f)) = net.nodes[0].poll_transmit() {
            if l == link
                && let Ok(Frame::Bye { reason }) = Frame::decode(&f)
            {
                reasons.insert(reason);
            }
        }
        while let Some(a) = net.nodes[0].poll_action() {
            if let Action::Close { link, .. } = a {
                net.nodes[0].handle_link_down(link, net.now);
            }
        }
    }
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        net.nodes[0].peers_seen().len() <= 8,
        "{} peers",
        net.nodes[0].peers_seen().len()
    );
    // Honest peers are still served.
    net.connect(1, 0);
    net.settle();
    assert_eq!(net.nodes[0].links().len(), 1);
}

/// Item 13: a stranger floods reconciliation, each message a small fingerprint under a new
/// session id (each used to start a responder that scans the store). Sessions a link may
/// start are bounded in a burst and in rate, each session's store work is bounded, and the
/// honest member is still served.
#[test]
fn a_reconciliation_flood_is_bounded_per_link() {
    let mut net = Network::new(3);
    let (c, tag) = shared(&mut net);
    // Node 2 knows the tag (a member: since protocol 4 a stranger, relay or not, shares no
    // tag of node 0's and so reconciles none) and dials node 0; its first reconciliation
    // message is taken as the flood's template.
    let d2 = net.nodes[2].device_id();
    net.nodes[0].add_member(&c, d2, false, net.now).unwrap();
    let (on2, on0) = net.connect(2, 0);
    net.settle();
    assert!(net.nodes[2].conversations().iter().any(|i| i.id == c));
    let n = 20_000u64;
    for k in 0..n {
        net.nodes[0]
            .store_for_tests()
            .put_envelope(&tag, &fake(k), b"x")
            .unwrap();
    }
    let mut template = None;
    let mut t = net.now;
    for _ in 0..50 {
        t = net.nodes[2].poll_timeout().unwrap().max(t);
        net.nodes[2].handle_timeout(t);
        let out = vaarta_engine::testing::pump(&mut net.nodes[2], t).unwrap();
        for (l, f) in out.frames {
            if l == on2
                && let Ok(Frame::Recon { tags, message, .. }) = Frame::decode(&f)
            {
                template = Some((tags, message));
            }
        }
        if template.is_some() {
            break;
        }
        t += 1;
    }
    let (digest, message) = template.expect("node 2 reconciles");
    assert!(
        message.len() < 40,
        "a small message: {} bytes",
        message.len()
    );
    let before = net.nodes[0].counters();
    let flood = 1_000u64;
    for k in 0..flood {
        let f = Frame::Recon {
            session: 1_000 + k,
            tags: digest,
            message: message.clone(),
        };
        net.nodes[0].handle_frame(on0, &f.encode(), t);
        while net.nodes[0].poll_transmit().is_some() {}
    }
    let after = net.nodes[0].counters();
    let started = flood - (after.recon_starts_ignored - before.recon_starts_ignored);
    assert!(started <= 4, "{started} sessions started");
    let work = after.recon_work - before.recon_work;
    assert!(work >= n, "the sessions that started did scan ({work})");
    let held = n + 100; // planted, plus the conversation's own few
    assert!(
        work <= started * (4096 + 8 * held),
        "{work} items visited for {flood} messages"
    );
    // The honest member is still served.
    net.now = net.now.max(t);
    net.nodes[1]
        .send_message(&c, text("still here"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(net.nodes[0].messages(&c, 10).unwrap().len(), 2);
}

/// Text that does not compress.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect()
}

/// Item 14: the relay quota holds across a restart (the count of carried bytes was never
/// rebuilt, so every restart gave a full quota again).
#[test]
fn the_relay_quota_holds_across_a_restart() {
    let quota = 20_000;
    let mut net = Network::with(3, |i| vaarta_engine::Config {
        name: format!("node{i}"),
        relay: true,
        relay_max_bytes: if i == 0 { quota } else { 1 << 28 },
        ..vaarta_engine::Config::default()
    });
    // Nodes 1 and 2 share a conversation; node 0 only relays for node 1.
    net.connect(1, 2);
    net.settle();
    let c = net.nodes[1]
        .create_conversation("far", History::Shared, net.now)
        .unwrap()
        .0;
    let d = net.nodes[2].device_id();
    net.nodes[1].add_member(&c, d, false, net.now).unwrap();
    net.settle();
    net.connect(1, 0);
    net.run_for(1_000);
    for i in 0..40 {
        let body = noise(i, 2_000);
        net.nodes[1].send_message(&c, text(&body), net.now).unwrap();
        net.run_for(200);
    }
    let used = |e: &vaarta_engine::Engine<vaarta_sync::store::MemoryStore>| {
        let r = e.replica();
        r.store()
            .tags()
            .into_iter()
            .filter(|(t, _)| r.conversation_of_tag(t).is_none())
            .map(|(t, _)| {
                let mut n = 0u64;
                r.store()
                    .for_each_id(&t, &[0; 32], &mut |id| {
                        n += r
                            .store()
                            .envelope(id)
                            .unwrap()
                            .map_or(0, |b| b.len() as u64);
                        true
                    })
                    .unwrap();
                n
            })
            .sum::<u64>()
    };
    let before = used(&net.nodes[0]);
    assert!(before <= quota && before > quota / 2, "filled: {before}");
    // Restart node 0 on its store.
    let config = net.nodes[0].config().clone();
    let old = net.nodes.remove(0);
    let store = old.close().unwrap();
    let restarted = vaarta_engine::Engine::new(
        Identity::from_seed([1; 32]),
        store,
        config,
        [0; 32],
        net.now,
    )
    .unwrap();
    net.nodes.insert(0, restarted);
    net.connect(1, 0);
    net.run_for(1_000);
    for i in 0..10 {
        let body = noise(1_000 + i, 2_000);
        net.nodes[1].send_message(&c, text(&body), net.now).unwrap();
        net.run_for(200);
    }
    assert!(
        used(&net.nodes[0]) <= quota,
        "{} > {quota}",
        used(&net.nodes[0])
    );
}
