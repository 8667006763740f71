//! Engines wired together in memory (no network, virtual time).

mod common;

use common::{bodies, connect_and_invite, invite, text};
use vaarta_engine::testing::Network;
use vaarta_engine::{Event, LinkId};
use vaarta_sync::ids::ConversationId;
use vaarta_sync::membership::History;
use vaarta_sync::store::Store;

type Net = Network;

#[test]
fn invite_travels_and_messages_flow_with_delivery_receipts() {
    let mut net = Net::new(2);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "EOC");
    let b = net.nodes[1].device_id();
    assert!(
        net.nodes[1]
            .conversations()
            .iter()
            .any(|i| i.id == c && i.me_member)
    );
    net.nodes[0]
        .send_message(&c, text("पहला संदेश"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["पहला संदेश"]);
    // Delivery: node 0 knows node 1 stored it.
    let msgs = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(msgs[0].1, vec![b]);
    // Names travel in profiles.
    let info = net.nodes[0]
        .conversations()
        .into_iter()
        .find(|i| i.id == c)
        .unwrap();
    assert!(
        info.members
            .iter()
            .any(|m| m.name.as_deref() == Some("node1"))
    );
    net.nodes[1]
        .send_message(&c, text("received"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[0], &c), vec!["पहला संदेश", "received"]);
}

#[test]
fn acknowledgements_wait_for_the_flush() {
    let mut net = Net::new(2);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    net.nodes[0].send_message(&c, text("hi"), net.now).unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let mut pushes = Vec::new();
    while let Some((l, f)) = net.nodes[0].poll_transmit() {
        pushes.push((l, f));
    }
    assert!(!pushes.is_empty());
    for (l, f) in pushes {
        let (o, ol) = net.peer_of(0, l).unwrap();
        net.nodes[o].handle_frame(ol, &f, net.now);
    }
    // Before node 1 flushes, it must not acknowledge anything.
    let mut before = Vec::new();
    while let Some((_, f)) = net.nodes[1].poll_transmit() {
        before.push(f);
    }
    assert!(before.iter().all(|f| f[0] != 4), "ack before flush");
    let flushes = net.nodes[1].replica().store().flushes;
    net.nodes[1].flush(net.now).unwrap();
    assert_eq!(net.nodes[1].replica().store().flushes, flushes + 1);
    // Acknowledgements are delayed a little to cover more envelopes.
    let delay = net.nodes[1].config().ack_delay_ms;
    net.nodes[1].handle_timeout(net.now + delay);
    let mut after = Vec::new();
    while let Some((_, f)) = net.nodes[1].poll_transmit() {
        after.push(f);
    }
    assert!(after.iter().any(|f| f[0] == 4), "ack after flush");
}

#[test]
fn offline_member_catches_up_by_reconciliation() {
    let mut net = Net::new(2);
    let (c, la, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    net.cut(0, la);
    for i in 0..300 {
        net.nodes[0]
            .send_message(&c, text(&format!("m{i}")), net.now + i)
            .unwrap();
        if i % 7 == 0 {
            net.nodes[0].flush(net.now + i).unwrap();
        }
    }
    net.settle();
    assert!(bodies(&mut net.nodes[1], &c).is_empty());
    net.connect(0, 1);
    net.settle();
    let got = bodies(&mut net.nodes[1], &c);
    assert_eq!(got.len(), 300);
    assert_eq!(got[299], "m299");
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Reconciled { .. }))
    );
}

#[test]
fn relay_carries_for_members_it_cannot_read() {
    // 0 and 2 are members; 1 is a relay between them and never a member.
    let mut net = Net::new(3);
    let (l01, _) = net.connect(0, 1);
    net.settle();
    let c = invite(&mut net, 0, 2, "x");
    net.nodes[0]
        .send_message(&c, text("via the relay"), net.now)
        .unwrap();
    net.settle();
    // Node 0 leaves; node 2 arrives at the relay.
    net.cut(0, l01);
    net.connect(1, 2);
    net.settle();
    assert_eq!(bodies(&mut net.nodes[2], &c), vec!["via the relay"]);
    assert!(
        net.nodes[1].conversations().is_empty(),
        "the relay learned nothing"
    );
}

#[test]
fn garbage_cuts_the_link_and_others_keep_working() {
    let mut net = Net::new(3);
    let (_, l10) = net.connect(0, 1);
    let (c, _, _) = connect_and_invite(&mut net, (0, 2), 0, 2, "x");
    // Node 1 turns hostile: garbage frame.
    let (o, ol) = net.peer_of(1, l10).unwrap();
    net.nodes[o].handle_frame(ol, &[0xde, 0xad, 0xbe, 0xef], net.now);
    net.settle();
    assert!(net.peer_of(1, l10).is_none(), "link cut");
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Refused { cut: true, .. }))
    );
    // Banned: a new connection from the same peer is refused at once.
    net.connect(1, 0);
    net.settle();
    assert_eq!(
        net.nodes[0]
            .links()
            .iter()
            .filter(|l| l.peer.as_str() == "p1")
            .count(),
        0
    );
    net.nodes[0]
        .send_message(&c, text("still fine"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[2], &c), vec!["still fine"]);
}

#[test]
fn forged_envelopes_count_as_faults() {
    let mut net = Net::new(2);
    let (c, _, l10) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    let conv = net.nodes[0].replica().conversation(&c).unwrap();
    let (tag, epoch) = (conv.tag, conv.sending_epoch().unwrap().0);
    // Pushes of junk envelopes under the conversation's tag and epoch (they fail
    // authentication), with increasing sequence numbers.
    for seq in 1000..1000 + 10u64 {
        let mut env = vec![1u8, 0];
        env.extend_from_slice(&tag.0);
        env.extend_from_slice(&epoch.0);
        env.extend_from_slice(&[seq as u8; 200]);
        let f = vaarta_engine::Frame::Push {
            lane: vaarta_sync::envelope::Precedence::Routine,
            seq,
            envelope: env,
        }
        .encode();
        let (o, ol) = net.peer_of(1, l10).unwrap();
        net.nodes[o].handle_frame(ol, &f, net.now);
    }
    net.settle();
    assert!(net.peer_of(1, l10).is_none(), "cut after repeated faults");
    assert!(net.nodes[0].replica().pending_len() == 0);
}

/// Sends one message from node 0 and lets node 1 store it, but cuts the link before node 1's
/// acknowledgement leaves: node 0 has no receipt yet.
fn deliver_without_receipt(net: &mut Net, c: &ConversationId, link0: LinkId, body: &str) {
    net.nodes[0].send_message(c, text(body), net.now).unwrap();
    net.nodes[0].flush(net.now).unwrap();
    while let Some((l, f)) = net.nodes[0].poll_transmit() {
        if let Some((o, ol)) = net.peer_of(0, l) {
            net.nodes[o].handle_frame(ol, &f, net.now);
        }
    }
    net.nodes[1].flush(net.now).unwrap();
    while net.nodes[1].poll_transmit().is_some() {}
    net.cut(0, link0);
    assert!(bodies(&mut net.nodes[1], c).iter().any(|b| b == body));
}

/// Two linked nodes in one conversation that node 0 created: (net, conversation, node 0's
/// link, node 1's device).
fn linked_pair() -> (Net, ConversationId, LinkId, vaarta_sync::ids::DeviceId) {
    let mut net = Net::new(2);
    let (c, la, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    let b = net.nodes[1].device_id();
    (net, c, la, b)
}

#[test]
fn receipts_lost_with_a_link_are_recovered_by_the_next_reconciliation() {
    let (mut net, c, la, b) = linked_pair();
    let receipts = |net: &mut Net| -> Vec<Vec<_>> {
        net.nodes[0]
            .messages(&c, 10)
            .unwrap()
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    };

    let awaiting = |net: &Net| {
        let mut n = 0;
        net.nodes[0]
            .replica()
            .store()
            .scan_prefix(b"w/", &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
        n
    };

    // Node 0 is the responder of the next reconciliation.
    deliver_without_receipt(&mut net, &c, la, "one");
    assert_eq!(receipts(&mut net), vec![vec![]]);
    assert_eq!(awaiting(&net), 1, "listed until every member confirms");
    net.now += 10;
    let (_, la) = net.connect(1, 0);
    net.settle();
    assert_eq!(receipts(&mut net), vec![vec![b]]);

    // Node 0 is the initiator of the next one.
    deliver_without_receipt(&mut net, &c, la, "two");
    assert_eq!(receipts(&mut net), vec![vec![b], vec![]]);
    net.now += 10;
    net.connect(0, 1);
    net.settle();
    assert_eq!(receipts(&mut net), vec![vec![b], vec![b]]);
    assert_eq!(awaiting(&net), 0, "confirmed messages leave the list");
    // Acknowledged pushes take their message off the list at once.
    net.nodes[0]
        .send_message(&c, text("three"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(receipts(&mut net)[2], vec![b]);
    assert_eq!(awaiting(&net), 0);
}

#[test]
fn a_message_staged_while_a_remote_one_arrives_is_still_pushed() {
    let (mut net, c, _, _) = linked_pair();
    // Node 1 stages a message; before its next flush, node 0's message arrives. Ingesting
    // it seals node 1's staged message first; that envelope must still be pushed at once
    // (not wait for the next periodic reconciliation, 30 s away).
    net.nodes[1]
        .send_message(&c, text("from one"), net.now)
        .unwrap();
    net.nodes[0]
        .send_message(&c, text("from zero"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    while let Some((l, f)) = net.nodes[0].poll_transmit() {
        let (o, ol) = net.peer_of(0, l).unwrap();
        net.nodes[o].handle_frame(ol, &f, net.now);
    }
    net.settle();
    let mut zero = bodies(&mut net.nodes[0], &c);
    let mut one = bodies(&mut net.nodes[1], &c);
    zero.sort();
    one.sort();
    assert_eq!(zero, vec!["from one", "from zero"]);
    assert_eq!(one, zero);
}

#[test]
fn edits_deletions_reactions_and_control_operations_get_created_and_receipts() {
    let (mut net, c, _, b) = linked_pair();
    net.nodes[0].send_message(&c, text("m"), net.now).unwrap();
    net.settle();
    let msg = net.nodes[0].messages(&c, 1).unwrap()[0].0.view.id.clone();
    let created = |net: &Net| -> Vec<vaarta_sync::ids::EnvelopeId> {
        net.events[0]
            .iter()
            .filter_map(|e| match e {
                Event::Created { envelope } => Some(*envelope),
                _ => None,
            })
            .collect()
    };
    let delivered = |net: &Net, env| {
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Delivered { envelope, device } if *envelope == env && *device == b))
    };
    let before = created(&net).len();
    net.nodes[0]
        .edit_message(&c, &msg, "m, edited", net.now)
        .unwrap();
    net.settle();
    net.nodes[0].react(&c, &msg, Some("👍"), net.now).unwrap();
    net.settle();
    net.nodes[0].delete_message(&c, &msg, net.now).unwrap();
    net.settle();
    // A control operation: a third member is added (its invitation is not awaited: the
    // invitee shows up as a member instead).
    let d = vaarta_sync::identity::Identity::from_seed([77; 32]).device_id();
    net.nodes[0].add_member(&c, d, false, net.now).unwrap();
    net.settle();
    let after = created(&net);
    assert_eq!(
        after.len() - before,
        4,
        "edit, reaction, deletion, add: {after:?}"
    );
    for env in &after[before..] {
        assert!(
            delivered(&net, *env),
            "no receipt from the member for {env:?}"
        );
    }
}

#[test]
fn an_idle_engine_has_no_deadline() {
    let mut net = Net::new(1);
    assert_eq!(
        net.nodes[0].poll_timeout(),
        None,
        "nothing held, no link, no peer"
    );
    let now = net.now;
    net.nodes[0]
        .create_conversation("x", History::Shared, now)
        .unwrap();
    net.nodes[0].flush(now).unwrap();
    assert!(
        net.nodes[0].poll_timeout().is_some(),
        "a conversation has admin duties"
    );
}

#[test]
fn a_silent_peer_does_not_make_the_timer_spin() {
    // Node 1 answers the hello, then never answers a reconciliation: node 0's session stays
    // outstanding until it is abandoned. Meanwhile every deadline node 0 names must lie in
    // the future (a past one makes a driver call it in a loop).
    let mut e = Net::new(2);
    let (la, lb) = e.connect(0, 1);
    // Deliver the two hellos by hand, nothing else.
    let now = e.now;
    let ha = e.nodes[0].poll_transmit().unwrap().1;
    let hb = e.nodes[1].poll_transmit().unwrap().1;
    e.nodes[1].handle_frame(lb, &ha, now);
    e.nodes[0].handle_frame(la, &hb, now);
    e.nodes[0].flush(now).unwrap();
    while e.nodes[0].poll_transmit().is_some() {}
    let mut t = now;
    let mut calls = 0;
    while t < now + 5 * 60_000 {
        let next = e.nodes[0].poll_timeout().expect("a link is up");
        assert!(next > t, "deadline {next} not after {t}");
        t = next;
        e.nodes[0].handle_timeout(t);
        e.nodes[0].flush(t).unwrap();
        while e.nodes[0].poll_transmit().is_some() {}
        calls += 1;
    }
    assert!(calls < 200, "{calls} wake-ups in five idle minutes");
}
