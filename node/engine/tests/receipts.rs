//! Delivery receipts record only what the member's device stored (issue 10, item 1).

use vaarta_engine::testing::Network;
use vaarta_engine::{Event, Frame};
use vaarta_sync::ids::ConversationId;
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
