//! The signed directory on links and role addressing (issue 12, part 3): records spread
//! among the verified devices of an organisation, only to those that lack them, never to a
//! stranger; a message to a role reaches its holder now, and after a handover the new
//! holder and not the old.

mod common;

use common::{bodies, text};
use vaarta_engine::testing::{Network, T0, TestOrg};
use vaarta_engine::{EngineError, Event};
use vaarta_sync::org::{Record, RoleError};

fn learnt(net: &Network, node: usize) -> usize {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::DirectoryLearnt { records } => Some(records.len()),
            _ => None,
        })
        .sum()
}

#[test]
fn directory_records_spread_to_verified_devices_only_and_never_twice() {
    let mut net = Network::new(4);
    let org = TestOrg::new(100, "Bihar");
    let stranger_org = TestOrg::new(120, "Elsewhere");
    for i in 0..3 {
        let c = org.credentials(org.enrol(i, &format!("officer {i}"), "Constable", "bihar"));
        net.nodes[i].set_credentials(c, T0).unwrap();
    }
    net.nodes[3]
        .set_credentials(
            stranger_org.credentials(stranger_org.enrol(3, "outsider", "x", "y")),
            T0,
        )
        .unwrap();
    // A line 2 – 1 – 0 – 3.
    net.connect(1, 0);
    net.connect(2, 1);
    net.connect(0, 3);
    net.settle();
    let a = org.assign(1, "bihar/darbhanga", "dm", "DM Darbhanga", T0);
    assert_eq!(
        net.nodes[0]
            .add_directory_records(&[a.encode()], net.now)
            .unwrap(),
        1
    );
    net.settle();
    // Each of the three holds the three chains and the assignment.
    for i in 0..3 {
        assert_eq!(net.nodes[i].directory().len(), 4, "node {i}");
    }
    // Node 2 learnt node 0's chain and the assignment through node 1, once each.
    assert_eq!(learnt(&net, 2), 3, "chains of 0 and 1, and the assignment");
    // The stranger's organisation got nothing of ours, and took nothing in.
    assert_eq!(net.nodes[3].directory().len(), 1, "its own chain only");
    assert!(!net.nodes[0].directory().records().iter().any(|(_, r)| {
        vaarta_sync::org::DirRecord::decode(r)
            .is_ok_and(|d| matches!(d, vaarta_sync::org::DirRecord::Chain(c) if c.root.org == stranger_org.id()))
    }));
    // A link that comes up again exchanges lists, and nothing is new.
    let before: Vec<usize> = (0..3).map(|i| learnt(&net, i)).collect();
    net.connect(2, 0);
    net.settle();
    let after: Vec<usize> = (0..3).map(|i| learnt(&net, i)).collect();
    assert_eq!(before, after);
    // Something a node cannot verify is refused with its error, and nothing changes.
    let foreign = stranger_org.assign(3, "y", "lead", "Lead", T0);
    assert!(
        net.nodes[0]
            .add_directory_records(&[foreign.encode()], net.now)
            .is_err()
    );
    assert_eq!(net.nodes[0].directory().len(), 4);
}

#[test]
fn a_message_to_a_role_reaches_the_holder_and_after_a_handover_the_new_holder_only() {
    // Node 0: the control room; node 1: the DM until the handover; node 2: the DM after.
    let mut net = Network::new(3);
    let org = TestOrg::new(100, "Bihar");
    for (i, name) in ["Control Room", "Anita Kumari", "Ravi Shankar"]
        .into_iter()
        .enumerate()
    {
        let c = org.credentials(org.enrol(i, name, "Officer", "bihar/darbhanga"));
        net.nodes[i].set_credentials(c, T0).unwrap();
    }
    net.now = T0;
    net.connect(1, 0);
    net.connect(2, 0);
    net.settle();
    // Before anyone holds it: a typed refusal, nothing created.
    assert!(matches!(
        net.nodes[0].send_to_role("DM Darbhanga", text("x"), net.now),
        Err(EngineError::Role(RoleError::NoSuchRole(_)))
    ));
    let first = org.assign(1, "bihar/darbhanga", "dm", "DM Darbhanga", net.now - 1);
    net.nodes[1]
        .add_directory_records(&[first.encode()], net.now)
        .unwrap();
    net.settle();
    let (c, _) = net.nodes[0]
        .send_to_role("DM Darbhanga", text("flood at Kusheshwar"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["flood at Kusheshwar"]);
    assert!(net.nodes[2].replica().conversation(&c).is_none());
    // The same role again: the same conversation.
    let (c2, _) = net.nodes[0]
        .send_to_role("dm darbhanga", text("boats needed"), net.now)
        .unwrap();
    assert_eq!(c, c2);
    net.settle();
    // The handover, signed at another device and learnt through the directory.
    net.now += 60_000;
    let second = org.assign(2, "bihar/darbhanga", "dm", "DM Darbhanga", net.now);
    net.nodes[2]
        .add_directory_records(&[second.encode()], net.now)
        .unwrap();
    net.settle();
    let members = |net: &Network| -> Vec<_> {
        net.nodes[0]
            .replica()
            .conversation(&c)
            .unwrap()
            .membership
            .state()
            .members
            .keys()
            .copied()
            .collect()
    };
    assert!(
        !members(&net).contains(&net.nodes[1].device_id()),
        "old holder removed"
    );
    assert!(
        members(&net).contains(&net.nodes[2].device_id()),
        "new holder added"
    );
    let (c3, _) = net.nodes[0]
        .send_to_role("DM Darbhanga", text("after the handover"), net.now)
        .unwrap();
    assert_eq!(c3, c, "no group re-created");
    net.settle();
    assert_eq!(bodies(&mut net.nodes[2], &c), vec!["after the handover"]);
    let old = bodies(&mut net.nodes[1], &c);
    assert!(
        !old.contains(&"after the handover".to_string()),
        "the old holder gets nothing sent after the handover: {old:?}"
    );
    assert_eq!(old, vec!["flood at Kusheshwar", "boats needed"]);
}

#[test]
fn a_revoked_holder_leaves_the_role_and_the_role_falls_vacant() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "Bihar");
    let mut creds = Vec::new();
    for i in 0..2 {
        let c = org.credentials(org.enrol(i, &format!("officer {i}"), "Officer", "bihar"));
        net.nodes[i].set_credentials(c.clone(), T0).unwrap();
        creds.push(c);
    }
    net.now = T0;
    net.connect(1, 0);
    net.settle();
    let a = org.assign(1, "bihar", "sp", "SP", net.now - 1);
    net.nodes[0]
        .add_directory_records(&[a.encode()], net.now)
        .unwrap();
    let (c, _) = net.nodes[0]
        .send_to_role("SP", text("one"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["one"]);
    // Node 1's device is revoked: it leaves the role's conversation, and the role has no
    // device to send to.
    let mut c0 = creds[0].clone();
    c0.revocations
        .insert(org.revoke_node(1, net.now - 1))
        .unwrap();
    c0.directory = net.nodes[0].directory().clone();
    net.nodes[0].set_credentials(c0, net.now).unwrap();
    net.settle();
    let st = net.nodes[0]
        .replica()
        .conversation(&c)
        .unwrap()
        .membership
        .state()
        .clone();
    assert!(!st.is_member(&net.nodes[1].device_id()));
    assert!(matches!(
        net.nodes[0].send_to_role("SP", text("two"), net.now),
        Err(EngineError::Role(RoleError::NoDevices { .. }))
    ));
}
