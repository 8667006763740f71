//! Delivery receipts record only what the member's device stored (issue 10, item 1).

use vaarta_engine::testing::Network;
use vaarta_engine::{Event, Frame};
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId};
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;

fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

fn conversation(net: &mut Network) -> ConversationId {
    net.connect(0, 1);
    net.settle();
    let c = net.nodes[0]
        .create_conversation("EOC", History::Shared, net.now)
        .unwrap()
        .0;
    let b = net.nodes[1].device_id();
    net.nodes[0].add_member(&c, b, false, net.now).unwrap();
    net.settle();
    c
}

/// Sends one message from node 0 and hands its frames to node 1 by hand, spoiling the push
/// of the message's envelope on the way (so node 1 refuses it); the rest runs as usual.
fn send_spoiled(net: &mut Network, c: &ConversationId) {
    net.nodes[0]
        .send_message(c, text("spoiled"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let mut spoiled = 0;
    while let Some((l, mut f)) = net.nodes[0].poll_transmit() {
        if let Ok(Frame::Push { .. }) = Frame::decode(&f) {
            let last = f.len() - 1;
            f[last] ^= 0x55;
            spoiled += 1;
        }
        let (o, ol) = net.peer_of(0, l).unwrap();
        net.nodes[o].handle_frame(ol, &f, net.now);
    }
    assert_eq!(spoiled, 1, "one push of the message");
}

#[test]
fn a_refused_push_is_acknowledged_without_a_receipt_and_delivered_later() {
    let mut net = Network::new(2);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    let seen = net.events[0].len();
    send_spoiled(&mut net, &c);
    // Node 1 refuses the spoiled envelope, acknowledges the push (it handled it), and node 0
    // learns from the acknowledgement that it was not stored.
    net.run_for(1_000);
    let refused = net.events[1]
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .count();
    assert_eq!(refused, 1, "node 1 refused the spoiled push");
    assert!(
        net.nodes[1].messages(&c, 10).unwrap().is_empty(),
        "node 1 does not hold the message"
    );
    let msgs = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].1.is_empty(),
        "no receipt for an envelope the member refused: {:?}",
        msgs[0].1
    );
    assert!(
        !net.events[0][seen..]
            .iter()
            .any(|e| matches!(e, Event::Delivered { device, .. } if *device == b)),
        "no Delivered event"
    );
    // Nothing acknowledged is lost: the next reconciliation finds node 1 lacking it, it is
    // pushed again, stored, and only then is the receipt recorded.
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 2);
    net.settle();
    let got: Vec<String> = net.nodes[1]
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.view.body)
        .collect();
    assert_eq!(got, vec!["spoiled"]);
    let msgs = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(msgs[0].1, vec![b], "receipt once it is stored");
}

#[test]
fn a_stored_push_gets_its_receipt_from_the_acknowledgement() {
    let mut net = Network::new(2);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    net.nodes[0]
        .send_message(&c, text("fine"), net.now)
        .unwrap();
    net.settle();
    let msgs = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(msgs[0].1, vec![b]);
}

/// Issue 10, item 1, first half: limits agree between sender and receiver. A batch of 30
/// messages of 60,000 bytes staged before one flush (what the API's batch did) is sealed in
/// envelopes the receiver accepts: all 30 arrive, nothing is refused, every one has its
/// receipt.
#[test]
fn a_large_batch_arrives_whole_and_every_envelope_is_accepted() {
    let mut net = Network::new(2);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    for i in 0..30 {
        let body = format!("{i:02}{}", "x".repeat(59_998));
        net.nodes[0].send_message(&c, text(&body), net.now).unwrap();
    }
    net.settle();
    assert!(
        !net.events[1]
            .iter()
            .any(|e| matches!(e, Event::Refused { .. })),
        "the receiver refused nothing"
    );
    let got = net.nodes[1].messages(&c, 100).unwrap();
    assert_eq!(got.len(), 30);
    let msgs = net.nodes[0].messages(&c, 100).unwrap();
    assert!(msgs.iter().all(|(_, d)| d == &vec![b]), "30 receipts");
}

/// The envelope that carried node 0's message `body`, and the member devices that confirmed
/// holding it.
fn own(net: &mut Network, c: &ConversationId, body: &str) -> (EnvelopeId, Vec<DeviceId>) {
    net.nodes[0]
        .messages(c, 100)
        .unwrap()
        .into_iter()
        .find(|(m, _)| m.view.body == body)
        .and_then(|(m, d)| Some((m.envelope?, d)))
        .expect("an own message")
}

fn delivered_events(net: &Network, e: EnvelopeId, device: DeviceId) -> usize {
    net.events[0]
        .iter()
        .filter(|x| matches!(x, Event::Delivered { envelope, device: d } if *envelope == e && *d == device))
        .count()
}

/// Issue 9, rule 4: a push the receiver holds pending (its dependency has not arrived) is
/// acknowledged as deferred, not stored: the sender shows it undelivered, a reconciliation
/// does not override that, and the receipt comes (a `Receipt` frame) once the receiver has
/// applied it.
#[test]
fn a_pending_push_is_delivered_only_once_the_receiver_applies_it() {
    let mut net = Network::new(2);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    // The first message never reaches node 1 for now: every push of it is spoiled.
    net.nodes[0].send_message(&c, text("one"), net.now).unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let (e1, _) = own(&mut net, &c, "one");
    net.spoil.insert(e1);
    net.settle();
    // The second depends on the first: node 1 stores it and holds it pending.
    net.nodes[0].send_message(&c, text("two"), net.now).unwrap();
    net.settle();
    let (e2, delivered) = own(&mut net, &c, "two");
    assert!(
        net.nodes[1].messages(&c, 10).unwrap().is_empty(),
        "node 1 cannot show it yet"
    );
    assert!(
        delivered.is_empty(),
        "pending is not delivered: {delivered:?}"
    );
    assert_eq!(delivered_events(&net, e2, b), 0);
    // Reconciliations run (the first is offered again, spoiled): each finds node 1 holding
    // the second, which still does not make it delivered (receipt recovery).
    let reconciled = |net: &Network| {
        net.events[0]
            .iter()
            .filter(|e| matches!(e, Event::Reconciled { .. }))
            .count()
    };
    let before = reconciled(&net);
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 2);
    assert!(reconciled(&net) > before, "node 0 reconciled with node 1");
    let (_, delivered) = own(&mut net, &c, "two");
    assert!(delivered.is_empty(), "after reconciliation: {delivered:?}");
    assert_eq!(delivered_events(&net, e2, b), 0);
    // The first gets through (a new link serves it again): node 1 applies both and sends
    // its receipt for the second.
    net.spoil.clear();
    let link = net.nodes[0].links()[0].link;
    net.cut(0, link);
    net.connect(0, 1);
    net.run_for(interval * 2);
    net.settle();
    let got: Vec<String> = net.nodes[1]
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.view.body)
        .collect();
    assert_eq!(got, vec!["one", "two"]);
    let (_, delivered) = own(&mut net, &c, "two");
    assert_eq!(delivered, vec![b], "receipt once applied");
    assert_eq!(delivered_events(&net, e2, b), 1);
    let (_, delivered) = own(&mut net, &c, "one");
    assert_eq!(delivered, vec![b]);
}

/// Attacker's view of `Receipt`: a device that is not a member of the conversation, or an
/// id this device did not author (or does not know), records nothing and is no fault; a
/// member records only its own receipt; a frame over the bound cuts the link.
#[test]
fn receipts_count_only_from_members_for_our_own_envelopes() {
    let mut net = Network::new(3);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    let stranger = net.nodes[2].device_id();
    // Node 2 shares another conversation with node 0, so its device is proven on its link.
    let (l02, _) = net.connect(0, 2);
    let c2 = net.nodes[0]
        .create_conversation("other", History::Shared, net.now)
        .unwrap()
        .0;
    net.nodes[0]
        .add_member(&c2, stranger, false, net.now)
        .unwrap();
    net.settle();
    let l01 = net.nodes[0]
        .links()
        .into_iter()
        .find(|l| l.device == Some(b))
        .unwrap()
        .link;
    assert_eq!(
        net.nodes[0]
            .links()
            .into_iter()
            .find(|l| l.link == l02)
            .unwrap()
            .device,
        Some(stranger)
    );
    // A message node 1 never gets (spoiled on the wire): still awaiting its receipt.
    net.nodes[0]
        .send_message(&c, text("mine"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let (e, _) = own(&mut net, &c, "mine");
    net.spoil.insert(e);
    net.settle();
    // And one of node 1's, which node 0 holds.
    net.nodes[1]
        .send_message(&c, text("theirs"), net.now)
        .unwrap();
    net.settle();
    let theirs = net.nodes[1]
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .find_map(|(m, _)| m.envelope)
        .unwrap();
    let refused = |net: &Network| {
        net.events[0]
            .iter()
            .filter(|e| matches!(e, Event::Refused { .. }))
            .count()
    };
    let faults = refused(&net);
    let receipt = |ids: Vec<EnvelopeId>| Frame::Receipt { ids }.encode();
    // The non-member claims our message; node 1 claims its own message and an unknown id.
    net.nodes[0].handle_frame(l02, &receipt(vec![e]), net.now);
    net.nodes[0].handle_frame(l01, &receipt(vec![theirs, EnvelopeId([9; 32])]), net.now);
    net.run_for(100);
    assert!(
        !net.events[0]
            .iter()
            .any(|x| matches!(x, Event::Delivered { envelope, .. } if *envelope == e || *envelope == theirs)),
        "nothing recorded"
    );
    assert!(own(&mut net, &c, "mine").1.is_empty());
    assert_eq!(refused(&net), faults, "ignored, not a fault");
    // The member's receipt for our message: recorded, for that member's device only.
    net.nodes[0].handle_frame(l01, &receipt(vec![e]), net.now);
    net.run_for(100);
    assert_eq!(own(&mut net, &c, "mine").1, vec![b]);
    assert_eq!(delivered_events(&net, e, b), 1);
    // One id over the bound: a malformed frame, and the link is cut.
    let mut over = vec![14u8];
    let n = vaarta_engine::wire::MAX_IDS_PER_FRAME + 1;
    over.extend([(n & 0x7f) as u8 | 0x80, (n >> 7) as u8]);
    over.extend(std::iter::repeat_n(0u8, 32 * n));
    net.nodes[0].handle_frame(l02, &over, net.now);
    net.run_for(100);
    assert!(net.events[0].iter().any(|x| matches!(
        x,
        Event::Refused {
            link,
            cut: true,
            ..
        } if *link == l02
    )));
    assert!(net.nodes[0].links().iter().all(|l| l.link != l02));
}

/// An unreadable push (its epoch's key was not granted to the receiver yet) is deferred,
/// and its receipt follows once an admin shares the key and the receiver reads it.
#[test]
fn an_unreadable_push_gets_its_receipt_once_read() {
    let mut net = Network::new(4);
    let (a, b, c3, d) = (0, 1, 2, 3);
    let dev = |net: &Network, i: usize| net.nodes[i].device_id();
    let (l_ab, _) = net.connect(a, b);
    net.settle();
    let c = net.nodes[a]
        .create_conversation("t", History::Shared, net.now)
        .unwrap()
        .0;
    let (bd, cd) = (dev(&net, b), dev(&net, c3));
    net.nodes[a].add_member(&c, bd, true, net.now).unwrap();
    net.nodes[a].add_member(&c, cd, false, net.now).unwrap();
    net.settle();
    // Apart: A adds D while B removes C (a rotation whose key B seals for the members it
    // knows: not D).
    net.cut(a, l_ab);
    let dd = dev(&net, d);
    net.nodes[a].add_member(&c, dd, false, net.now).unwrap();
    net.nodes[b].remove_member(&c, cd, net.now).unwrap();
    net.settle();
    net.connect(a, d);
    net.settle();
    let (l_bd, _) = net.connect(b, d);
    net.settle();
    net.nodes[b]
        .send_message(&c, text("after rotation"), net.now)
        .unwrap();
    net.nodes[b].flush(net.now).unwrap();
    let e = net.nodes[b]
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .find(|(m, _)| m.view.body == "after rotation")
        .and_then(|(m, _)| m.envelope)
        .unwrap();
    net.run_for(5);
    assert_eq!(
        net.nodes[d].replica().unreadable_count(&c).0,
        1,
        "D cannot read it yet"
    );
    let delivered = |net: &mut Network| -> Vec<DeviceId> {
        net.nodes[b]
            .messages(&c, 10)
            .unwrap()
            .into_iter()
            .find(|(m, _)| m.envelope == Some(e))
            .unwrap()
            .1
    };
    assert!(
        delivered(&mut net).is_empty(),
        "unreadable is not delivered"
    );
    // B and D part. A (an admin) learns of the rotation through D and shares the key with
    // D, which reads the message: it owes B a receipt.
    net.cut(b, l_bd);
    net.run_for(60_000);
    net.settle();
    assert_eq!(net.nodes[d].replica().unreadable_count(&c).0, 0);
    let read: Vec<String> = net.nodes[d]
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.view.body)
        .collect();
    assert_eq!(read, vec!["after rotation"]);
    assert_eq!(net.nodes[d].replica().owed_receipts(&bd, 10), vec![e]);
    assert!(delivered(&mut net).is_empty(), "B has not heard yet");
    // B and D meet again: the receipt goes as soon as D sees B's proof.
    net.connect(b, d);
    net.settle();
    assert!(net.nodes[d].replica().owed_receipts(&bd, 10).is_empty());
    assert_eq!(delivered(&mut net), vec![dd]);
    let events = net.events[b]
        .iter()
        .filter(|x| matches!(x, Event::Delivered { envelope, device } if *envelope == e && *device == dd))
        .count();
    assert_eq!(events, 1);
}

/// Issue 9, review of protocol 5, item 1: the link drops after the receiver stored a push
/// it cannot read yet (pending) and before its deferred acknowledgement arrives. The next
/// reconciliation finds the envelope held, which says nothing of whether it can be read:
/// the sender must not count it delivered (before, receipt recovery did). It pushes it
/// again instead, learns "deferred" from that acknowledgement, and the receipt comes once
/// the receiver applies it — one receipt, only for the envelope that waited.
#[test]
fn a_link_drop_before_the_deferred_acknowledgement_is_not_taken_for_delivered() {
    let mut net = Network::new(2);
    let c = conversation(&mut net);
    let b = net.nodes[1].device_id();
    net.nodes[0].send_message(&c, text("one"), net.now).unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let (e1, _) = own(&mut net, &c, "one");
    net.spoil.insert(e1);
    net.settle();
    // The second, by hand: node 1 stores it (pending on the first) and its acknowledgement
    // is lost with the link.
    net.nodes[0].send_message(&c, text("two"), net.now).unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let (e2, _) = own(&mut net, &c, "two");
    while let Some((l, f)) = net.nodes[0].poll_transmit() {
        if let Some((o, ol)) = net.peer_of(0, l) {
            net.nodes[o].handle_frame(ol, &f, net.now);
        }
    }
    net.nodes[1].flush(net.now).unwrap();
    while net.nodes[1].poll_transmit().is_some() {}
    assert!(net.nodes[1].replica().is_waiting(&e2), "held, not readable");
    let link = net.nodes[0].links()[0].link;
    net.cut(0, link);
    let out_before = net.nodes[1].counters().receipt_ids_out;
    // A new link, reconciliations: the first is still spoiled, the second found held.
    net.now += 10;
    net.connect(0, 1);
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 2);
    let (_, delivered) = own(&mut net, &c, "two");
    assert!(delivered.is_empty(), "held is not read: {delivered:?}");
    assert_eq!(delivered_events(&net, e2, b), 0);
    // The first gets through: node 1 applies both and owes a receipt for the second only
    // (the first was pushed by its author and acknowledged as stored).
    net.spoil.clear();
    let link = net.nodes[0].links()[0].link;
    net.cut(0, link);
    net.connect(0, 1);
    net.run_for(interval * 2);
    net.settle();
    assert_eq!(
        vaarta_sync::replica::Replica::owed_receipt_count(net.nodes[1].replica()),
        0
    );
    assert_eq!(own(&mut net, &c, "two").1, vec![b], "receipt once applied");
    assert_eq!(delivered_events(&net, e2, b), 1);
    assert_eq!(own(&mut net, &c, "one").1, vec![b]);
    assert_eq!(
        net.nodes[1].counters().receipt_ids_out - out_before,
        1,
        "one receipt: the envelope that waited"
    );
}

/// The same held-not-read envelope reaching the member through a relay: node 1 holds it
/// pending when node 0 first links to it, and reconciliation does not make it delivered
/// (the open item "an envelope that reached a member by another path ... is counted
/// delivered by receipt recovery"); its receipt comes once node 1 reads it.
#[test]
fn an_envelope_held_unread_through_a_relay_is_delivered_only_by_its_receipt() {
    let mut net = Network::new(3);
    let (a, b, r) = (0, 1, 2);
    let (l_ab, _) = net.connect(a, b);
    net.settle();
    let c = net.nodes[a]
        .create_conversation("t", History::Shared, net.now)
        .unwrap()
        .0;
    let (bd, rd) = (net.nodes[b].device_id(), net.nodes[r].device_id());
    net.nodes[a].add_member(&c, bd, false, net.now).unwrap();
    net.nodes[a].add_member(&c, rd, false, net.now).unwrap();
    net.settle();
    net.cut(a, l_ab);
    // Node 0 writes two messages to node 2 only; the first never reaches node 1.
    let (l_ar, _) = net.connect(a, r);
    net.settle();
    net.nodes[a].send_message(&c, text("one"), net.now).unwrap();
    net.settle();
    net.nodes[a].send_message(&c, text("two"), net.now).unwrap();
    net.settle();
    net.cut(a, l_ar);
    let (e1, _) = own(&mut net, &c, "one");
    let (e2, _) = own(&mut net, &c, "two");
    net.spoil.insert(e1);
    let (l_rb, _) = net.connect(r, b);
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 2);
    assert!(
        net.nodes[b].replica().is_waiting(&e2),
        "node 1 holds it unread"
    );
    net.cut(r, l_rb);
    // Node 0 meets node 1: reconciliation finds the second held.
    let (l_ab, _) = net.connect(a, b);
    net.run_for(interval * 2);
    assert!(
        !own(&mut net, &c, "two").1.contains(&bd),
        "held is not read"
    );
    assert_eq!(delivered_events(&net, e2, bd), 0);
    net.cut(a, l_ab);
    // The first reaches node 1 through the relay: it reads both and owes node 0 receipts.
    net.spoil.clear();
    net.connect(r, b);
    net.run_for(interval * 2);
    assert!(!net.nodes[b].replica().is_waiting(&e2));
    net.connect(a, b);
    net.settle();
    assert!(own(&mut net, &c, "two").1.contains(&bd));
    assert!(own(&mut net, &c, "one").1.contains(&bd));
    assert_eq!(delivered_events(&net, e2, bd), 1);
}

/// Item 4, attacker's view of `Receipt` floods: a member sending the same receipt 10^5
/// times and receipts for 10^5 ids it never held, a removed member claiming our message,
/// and a stranger (no proven device): the work (ids looked up) stays within the link's
/// budget, only the member's own true receipt is recorded, once, nothing is a fault, and
/// the link keeps serving.
#[test]
fn receipt_floods_cost_bounded_work_and_change_nothing() {
    use vaarta_engine::config::RECEIPT_IDS_BURST;
    let mut net = Network::new(4);
    let c = conversation(&mut net);
    let (b, removed) = (net.nodes[1].device_id(), net.nodes[2].device_id());
    // Node 2 was a member and is removed; it shares another conversation with node 0, so
    // its device is proven on its link. Node 3 shares no conversation with node 0.
    let (l02, _) = net.connect(0, 2);
    net.nodes[0]
        .add_member(&c, removed, false, net.now)
        .unwrap();
    let c2 = net.nodes[0]
        .create_conversation("other", History::Shared, net.now)
        .unwrap()
        .0;
    net.nodes[0]
        .add_member(&c2, removed, false, net.now)
        .unwrap();
    net.settle();
    net.nodes[0].remove_member(&c, removed, net.now).unwrap();
    net.settle();
    let (l03, _) = net.connect(0, 3);
    net.settle();
    let l01 = net.nodes[0]
        .links()
        .into_iter()
        .find(|l| l.device == Some(b))
        .unwrap()
        .link;
    // Our message that node 1 (and everyone else) never got.
    net.nodes[0]
        .send_message(&c, text("mine"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let (e, _) = own(&mut net, &c, "mine");
    net.spoil.insert(e);
    net.settle();
    let faults = |net: &Network| {
        net.events[0]
            .iter()
            .filter(|e| matches!(e, Event::Refused { .. }))
            .count()
    };
    let f0 = faults(&net);
    let before = net.nodes[0].counters();
    let t = net.now;
    let receipt = |ids: Vec<EnvelopeId>| Frame::Receipt { ids }.encode();
    // The removed member and the stranger claim it.
    for _ in 0..1_000 {
        net.nodes[0].handle_frame(l02, &receipt(vec![e]), t);
        net.nodes[0].handle_frame(l03, &receipt(vec![e]), t);
    }
    assert!(own(&mut net, &c, "mine").1.is_empty(), "no claim counted");
    // The member: its true receipt, then the same 10^5 times, then 10^5 ids it never held.
    let n = 100_000u32;
    net.nodes[0].handle_frame(l01, &receipt(vec![e]), t);
    for _ in 0..n {
        net.nodes[0].handle_frame(l01, &receipt(vec![e]), t);
    }
    for k in 0..n {
        let mut id = [0xEEu8; 32];
        id[..4].copy_from_slice(&k.to_be_bytes());
        net.nodes[0].handle_frame(l01, &receipt(vec![EnvelopeId(id)]), t);
    }
    let after = net.nodes[0].counters();
    let sent = 2_000 + 1 + 2 * u64::from(n);
    assert_eq!(after.receipt_ids_in - before.receipt_ids_in, sent);
    let checked = after.receipt_ids_checked - before.receipt_ids_checked;
    // Each link has its own budget: the removed member's and node 3's (which knows our
    // inbox tags, so it sees and proves devices, but is in no conversation of ours) 1,000
    // each, looked up and none counted; the member's at most one burst.
    assert!(
        checked <= 2_000 + RECEIPT_IDS_BURST,
        "work bounded: {checked} ids looked up"
    );
    assert_eq!(
        after.receipt_ids_ignored - before.receipt_ids_ignored,
        sent - checked,
        "the rest dropped unread"
    );
    assert_eq!(
        own(&mut net, &c, "mine").1,
        vec![b],
        "only the member's own"
    );
    net.spoil.clear();
    net.run_for(1);
    assert_eq!(delivered_events(&net, e, b), 1, "once");
    assert_eq!(faults(&net), f0, "not a fault");
    // The link still serves: a new message (which depends on the first, fetched by the
    // next reconciliation) is delivered; its receipt gets through the link's budget,
    // refilled since.
    net.now += 1;
    net.nodes[0]
        .send_message(&c, text("after"), net.now)
        .unwrap();
    let interval = net.nodes[0].config().resync_interval_ms;
    net.run_for(interval * 2);
    net.settle();
    assert_eq!(own(&mut net, &c, "after").1, vec![b]);
    assert!(net.nodes[0].links().iter().any(|l| l.link == l01));
}
