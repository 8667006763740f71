//! The alert roll-call over engines in virtual time (issue 13): a FLASH message to three
//! members, one acknowledges, one only reads, one is offline; then the offline one comes back.

use vaarta_engine::rollcall::Answer;
use vaarta_engine::testing::Network;
use vaarta_sync::envelope::Precedence;
use vaarta_sync::ids::{ConversationId, DeviceId};
use vaarta_sync::membership::History;
use vaarta_sync::page::{Draft, MessageId};

fn answers(net: &mut Network, c: &ConversationId, m: &MessageId) -> Vec<(DeviceId, &'static str)> {
    net.nodes[0]
        .rollcall(c, m)
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.device, m.answer.as_str()))
        .collect()
}

fn flash(net: &mut Network, c: &ConversationId, body: &str) -> MessageId {
    let m = net.nodes[0]
        .send_message(
            c,
            Draft {
                body: body.into(),
                precedence: Precedence::Flash,
                ..Draft::default()
            },
            net.now,
        )
        .unwrap();
    net.settle();
    m
}

#[test]
fn acknowledged_read_and_offline_members_then_the_offline_one_is_delivered() {
    let mut net = Network::new(4);
    net.connect(0, 1);
    net.connect(0, 2);
    net.settle();
    let c = net.nodes[0]
        .create_conversation("district control", History::Shared, net.now)
        .unwrap()
        .0;
    let ids: Vec<DeviceId> = net.nodes.iter().map(|n| n.device_id()).collect();
    net.nodes[0]
        .add_members(&c, &ids[1..], false, net.now)
        .unwrap();
    net.settle();
    let m = flash(&mut net, &c, "flood at the bridge: move to the school");
    // All three members are listed; the two linked ones hold the message.
    let mut want = vec![
        (ids[1], "delivered"),
        (ids[2], "delivered"),
        (ids[3], "not_delivered"),
    ];
    want.sort();
    let mut got = answers(&mut net, &c, &m);
    got.sort();
    assert_eq!(got, want);
    // Bhavesh acknowledges; Chitra reads.
    net.nodes[1].acknowledge(&c, &m, net.now).unwrap();
    assert!(net.nodes[2].mark_read(&c, &m).unwrap());
    net.settle();
    net.run_for(1_000);
    net.settle();
    let mut want = vec![
        (ids[1], "acknowledged"),
        (ids[2], "read"),
        (ids[3], "not_delivered"),
    ];
    want.sort();
    let mut got = answers(&mut net, &c, &m);
    got.sort();
    assert_eq!(got, want);
    let call = net.nodes[0].rollcall(&c, &m).unwrap();
    assert_eq!(call.counts(), (1, 1, 0, 1));
    let ack = call.members.iter().find(|x| x.device == ids[1]).unwrap();
    assert!(matches!(ack.answer, Answer::Acknowledged(at) if at.ms >= net.now - 2_000));
    // Re-alert: a FLASH reply for those who have not acknowledged.
    let (again, pending) = net.nodes[0].realert(&c, &m, net.now).unwrap();
    let mut pending_want = vec![ids[2], ids[3]];
    pending_want.sort();
    let mut pending = pending;
    pending.sort();
    assert_eq!(pending, pending_want);
    let again = again.expect("a re-alert is sent");
    net.settle();
    let seen = net.nodes[2].messages(&c, 10).unwrap();
    let nudge = seen.iter().find(|(x, _)| x.view.id == again).unwrap();
    assert_eq!(nudge.0.view.reply_to.as_ref(), Some(&m));
    assert_eq!(nudge.0.view.precedence, Precedence::Flash);
    // Only the sender re-alerts.
    assert!(net.nodes[1].realert(&c, &m, net.now).is_err());
    // Deepa comes online: her device takes the invitation and the message.
    net.connect(0, 3);
    net.settle();
    net.run_for(5_000);
    net.settle();
    let got = answers(&mut net, &c, &m);
    assert!(got.contains(&(ids[3], "delivered")), "{got:?}");
    assert!(got.contains(&(ids[1], "acknowledged")), "{got:?}");
    assert!(got.contains(&(ids[2], "read")), "{got:?}");
    // Every member's page shows the same acknowledgement (it is in the signed pages).
    for i in 1..4 {
        let call = net.nodes[i].rollcall(&c, &m).unwrap();
        let b = call.members.iter().find(|x| x.device == ids[1]).unwrap();
        assert!(matches!(b.answer, Answer::Acknowledged(_)), "node {i}");
    }
}
