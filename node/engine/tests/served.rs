//! `Want` is served at most once per envelope per link, however often the peer asks and
//! however many envelopes it asks for (the set that remembers what was served is bounded by
//! refusing past its bound, not by forgetting).

use vaarta_engine::testing::Network;
use vaarta_engine::{Config, Event, Frame};
use vaarta_sync::ids::EnvelopeId;
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;

fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

#[test]
fn a_full_served_set_refuses_instead_of_forgetting() {
    let max = 4;
    let mut net = Network::with(2, |i| Config {
        name: format!("node{i}"),
        max_push_queue: max,
        ..Config::default()
    });
    net.connect(0, 1);
    net.settle();
    let c = net.nodes[0]
        .create_conversation("x", History::Shared, net.now)
        .unwrap()
        .0;
    let d = net.nodes[1].device_id();
    net.nodes[0].add_member(&c, d, false, net.now).unwrap();
    net.settle();
    for n in 0..max + 2 {
        net.nodes[0]
            .send_message(&c, text(&format!("m{n}")), net.now)
            .unwrap();
        net.settle();
    }
    let ids: Vec<EnvelopeId> = net.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::Created { envelope } => Some(*envelope),
            _ => None,
        })
        .collect();
    assert!(ids.len() > max, "{} envelopes", ids.len());
    let on0 = net.nodes[0].links()[0].link;
    let ask = |net: &mut Network, id: EnvelopeId| {
        let want = Frame::Want { ids: vec![id] }.encode();
        net.nodes[0].handle_frame(on0, &want, net.now);
        net.run_for(100);
    };
    let start = net.nodes[0].counters().pushes_out;
    for id in &ids {
        ask(&mut net, *id);
    }
    let served = net.nodes[0].counters().pushes_out - start;
    assert!(served <= ids.len() as u64, "each at most once: {served}");
    // The first one again: it was served on this link already.
    ask(&mut net, ids[0]);
    assert_eq!(
        net.nodes[0].counters().pushes_out - start,
        served,
        "an envelope served on this link is not served again"
    );
    assert_eq!(net.nodes[0].links().len(), 1, "the member stays linked");
}
