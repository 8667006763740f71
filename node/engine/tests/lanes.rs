//! Pushes travel in one lane per precedence: a link that schedules by priority (Bluetooth
//! LE, `vaarta-ble`'s lanes) may deliver a FLASH push before the routine pushes sent ahead
//! of it, and the receiver takes it, acknowledges it on its own lane, and the sender counts
//! every push delivered. A full routine window does not hold a FLASH back.

mod common;

use common::{bodies, connect_and_invite, text};
use vaarta_engine::testing::Network;
use vaarta_engine::wire::{FramePriority, frame_priority};
use vaarta_engine::{Config, Event, Frame, LinkId};
use vaarta_sync::envelope::Precedence;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::page::Draft;

fn flash(s: &str) -> Draft {
    Draft {
        body: s.into(),
        precedence: Precedence::Flash,
        ..Draft::default()
    }
}

/// Everything `from` has to send, as the frames of each link.
fn drain(net: &mut Network, from: usize) -> Vec<(LinkId, Vec<u8>)> {
    std::iter::from_fn(|| net.nodes[from].poll_transmit()).collect()
}

/// Hands frames to the other side of their link in the order given.
fn deliver(net: &mut Network, from: usize, frames: Vec<(LinkId, Vec<u8>)>) {
    for (l, f) in frames {
        if let Some((o, ol)) = net.peer_of(from, l) {
            net.nodes[o].handle_frame(ol, &f, net.now);
        }
    }
}

/// Orders frames as a link with lanes does: the highest priority first, each lane in order.
fn by_lane(mut frames: Vec<(LinkId, Vec<u8>)>) -> Vec<(LinkId, Vec<u8>)> {
    frames.sort_by_key(|(_, f)| frame_priority(f));
    frames
}

/// Refusals `node` reported so far (its events collected first, as the harness does).
fn faults(net: &mut Network, node: usize) -> usize {
    while let Some(e) = net.nodes[node].poll_event() {
        net.events[node].push(e);
    }
    net.events[node]
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .count()
}

/// Two linked members of one conversation node 0 created.
fn pair(window: usize) -> (Network, ConversationId) {
    let mut net = Network::with(2, |i| Config {
        name: format!("node{i}"),
        push_window: window,
        ..Config::default()
    });
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    (net, c)
}

#[test]
fn frames_are_classified_by_lane() {
    let push = |p| {
        Frame::Push {
            lane: p,
            seq: 1,
            envelope: vec![0; 10],
        }
        .encode()
    };
    assert_eq!(
        frame_priority(&push(Precedence::Flash)),
        FramePriority::push(Precedence::Flash)
    );
    assert!(frame_priority(&push(Precedence::Flash)) < frame_priority(&push(Precedence::Routine)));
    let hello = Frame::Hello { nonce: [0; 32] }.encode();
    assert_eq!(frame_priority(&hello), FramePriority::Control);
    assert!(frame_priority(&hello) < frame_priority(&push(Precedence::Flash)));
    let ack = Frame::Ack {
        lane: Precedence::Routine,
        up_to: 3,
        refused: vec![],
        deferred: vec![],
    }
    .encode();
    assert_eq!(frame_priority(&ack), FramePriority::Control);
    let have = Frame::Have { ids: vec![] }.encode();
    assert_eq!(frame_priority(&have), FramePriority::Bulk);
    assert!(frame_priority(&push(Precedence::Routine)) < frame_priority(&have));
    // Junk is bulk: a driver never fails on a frame the engine made, and the engine judges
    // what it receives itself.
    assert_eq!(frame_priority(&[]), FramePriority::Bulk);
    assert_eq!(frame_priority(&[3]), FramePriority::Bulk);
    assert_eq!(frame_priority(&[3, 9]), FramePriority::Bulk);
}

/// Five routine messages, one envelope each (messages written between two flushes are sealed
/// together), their pushes out on the link; then a FLASH. Every frame node 0 sent, in order.
fn routine_then_flash(net: &mut Network, c: &ConversationId) -> Vec<(LinkId, Vec<u8>)> {
    for i in 0..5 {
        net.nodes[0]
            .send_message(c, text(&format!("routine {i}")), net.now)
            .unwrap();
        net.nodes[0].flush(net.now).unwrap();
    }
    let mut frames = drain(net, 0);
    net.nodes[0]
        .send_message(c, flash("FLASH: dam breach"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    frames.extend(drain(net, 0));
    frames
}

#[test]
fn a_flash_push_overtaking_routine_pushes_is_taken_and_everything_is_delivered() {
    let (mut net, c) = pair(1024);
    let b = net.nodes[1].device_id();
    let frames = by_lane(routine_then_flash(&mut net, &c));
    let first_push = frames
        .iter()
        .find_map(|(_, f)| match Frame::decode(f) {
            Ok(Frame::Push { lane, .. }) => Some(lane),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        first_push,
        Precedence::Flash,
        "the link put the FLASH first"
    );
    deliver(&mut net, 0, frames);
    net.nodes[1].flush(net.now).unwrap();
    assert_eq!(faults(&mut net, 1), 0, "an overtaking push is no fault");
    net.settle();
    assert_eq!(faults(&mut net, 0) + faults(&mut net, 1), 0);
    let got = bodies(&mut net.nodes[1], &c);
    assert_eq!(got.len(), 6, "{got:?}");
    // Every push was acknowledged on its lane: every message counts as delivered.
    let receipts = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(receipts.len(), 6);
    assert!(receipts.iter().all(|(_, d)| d == &vec![b]), "{receipts:?}");
}

#[test]
fn a_full_routine_window_does_not_hold_a_flash_back() {
    let (mut net, c) = pair(2);
    // One envelope each (messages written between two flushes are sealed together).
    for i in 0..5 {
        net.nodes[0]
            .send_message(&c, text(&format!("routine {i}")), net.now)
            .unwrap();
        net.nodes[0].flush(net.now).unwrap();
    }
    let routine = drain(&mut net, 0);
    let pushes = |frames: &[(LinkId, Vec<u8>)]| -> Vec<Precedence> {
        frames
            .iter()
            .filter_map(|(_, f)| match Frame::decode(f) {
                Ok(Frame::Push { lane, .. }) => Some(lane),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        pushes(&routine),
        vec![Precedence::Routine; 2],
        "window of 2"
    );
    // Nothing is acknowledged yet; a FLASH is written.
    net.nodes[0]
        .send_message(&c, flash("FLASH"), net.now)
        .unwrap();
    net.nodes[0].flush(net.now).unwrap();
    let next = drain(&mut net, 0);
    assert_eq!(pushes(&next), vec![Precedence::Flash]);
    deliver(&mut net, 0, routine);
    deliver(&mut net, 0, next);
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c).len(), 6);
    assert_eq!(faults(&mut net, 0) + faults(&mut net, 1), 0);
}

#[test]
fn a_repeated_push_within_a_lane_is_a_fault_and_lanes_number_apart() {
    let (mut net, c) = pair(1024);
    let mut frames = Vec::new();
    for d in [text("routine 1"), flash("flash"), text("routine 2")] {
        net.nodes[0].send_message(&c, d, net.now).unwrap();
        net.nodes[0].flush(net.now).unwrap();
        frames.extend(drain(&mut net, 0));
    }
    let seqs: Vec<(Precedence, u64)> = frames
        .iter()
        .filter_map(|(_, f)| match Frame::decode(f) {
            Ok(Frame::Push { lane, seq, .. }) => Some((lane, seq)),
            _ => None,
        })
        .collect();
    let lanes: Vec<Precedence> = seqs.iter().map(|s| s.0).collect();
    assert_eq!(
        lanes,
        vec![Precedence::Routine, Precedence::Flash, Precedence::Routine]
    );
    assert_eq!(
        seqs[2].1,
        seqs[0].1 + 1,
        "the FLASH push took no number from the routine lane: {seqs:?}"
    );
    let replay = frames
        .iter()
        .find(|(_, f)| matches!(Frame::decode(f), Ok(Frame::Push { .. })))
        .cloned()
        .unwrap();
    deliver(&mut net, 0, frames);
    assert_eq!(faults(&mut net, 1), 0);
    deliver(&mut net, 0, vec![replay]);
    assert_eq!(
        faults(&mut net, 1),
        1,
        "the same push twice on one lane is refused"
    );
}

/// A guess from the Bluetooth guest run (docs/performance.md, "FLASH during a 1 MB bulk
/// transfer") was that a FLASH written after messages the peer does not hold yet cannot be
/// shown before them, its change following the author's earlier ones. It does not hold: the
/// FLASH alone reaches B and B shows it at once.
#[test]
fn a_flash_that_arrives_before_its_authors_backlog_is_shown_at_once() {
    let (mut net, c) = pair(1024);
    // Only the FLASH push reaches B: the routine ones are still on their way.
    let flash_only: Vec<_> = routine_then_flash(&mut net, &c)
        .into_iter()
        .filter(|(_, f)| {
            matches!(Frame::decode(f), Ok(Frame::Push { lane, .. }) if lane == Precedence::Flash)
        })
        .collect();
    assert_eq!(flash_only.len(), 1);
    deliver(&mut net, 0, flash_only);
    net.nodes[1].flush(net.now).unwrap();
    let got = bodies(&mut net.nodes[1], &c);
    assert!(
        got.iter().any(|b| b.contains("FLASH")),
        "B does not show the FLASH before the author's earlier messages: {got:?}"
    );
}
