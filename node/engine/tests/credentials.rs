//! Organisation credentials on links (issue 12): every device presents its chain in its
//! proof; a peer sees who is behind a link, verified against the roots it pinned; a
//! revocation learnt while linked cuts the revoked device off.

mod common;

use common::{bodies, connect_and_invite, text};
use vaarta_engine::testing::{Network, T0, TestOrg};
use vaarta_engine::{Event, Fault, LinkId, PeerCredential};
use vaarta_sync::org::CredError;

fn credential(net: &Network, node: usize, link: LinkId) -> Option<PeerCredential> {
    net.nodes[node]
        .links()
        .into_iter()
        .find(|l| l.link == link)
        .expect("the link is up")
        .credential
}

fn verified_name(c: Option<PeerCredential>) -> String {
    match c {
        Some(PeerCredential::Verified(v)) => {
            format!("{} ({}, {})", v.names[0].1, v.designation, v.unit)
        }
        other => panic!("not verified: {other:?}"),
    }
}

#[test]
fn members_of_one_organisation_see_who_is_behind_each_link() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "District Emergency Operations Centre, Puri");
    for (i, (name, role, unit)) in [
        ("Anita Das", "Tehsildar", "puri"),
        ("Bhavesh Rao", "Sub-Inspector", "puri/konark"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = org.credentials(org.enrol(i, name, role, unit));
        net.nodes[i].set_credentials(c, T0).unwrap();
    }
    let (c, l0, l1) = connect_and_invite(&mut net, (0, 1), 0, 1, "flood cell");
    assert_eq!(
        verified_name(credential(&net, 0, l0)),
        "Bhavesh Rao (Sub-Inspector, puri/konark)"
    );
    assert_eq!(
        verified_name(credential(&net, 1, l1)),
        "Anita Das (Tehsildar, puri)"
    );
    net.nodes[0]
        .send_message(&c, text("report at 6"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["report at 6"]);
}

#[test]
fn a_device_of_an_unpinned_organisation_is_unverified_and_still_syncs() {
    let mut net = Network::new(2);
    let ours = TestOrg::new(100, "District Emergency Operations Centre, Puri");
    let theirs = TestOrg::new(120, "National Disaster Response Force");
    net.nodes[0]
        .set_credentials(
            ours.credentials(ours.enrol(0, "Anita Das", "Tehsildar", "puri")),
            T0,
        )
        .unwrap();
    net.nodes[1]
        .set_credentials(
            theirs.credentials(theirs.enrol(1, "Chitra Nair", "Team Leader", "bn-3")),
            T0,
        )
        .unwrap();
    let (c, l0, l1) = connect_and_invite(&mut net, (0, 1), 0, 1, "joint cell");
    match credential(&net, 0, l0) {
        Some(PeerCredential::Unverified(why)) => {
            assert!(why.contains("not one this device trusts"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        credential(&net, 1, l1),
        Some(PeerCredential::Unverified(_))
    ));
    net.nodes[1]
        .send_message(&c, text("team of 30 landed"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[0], &c), vec!["team of 30 landed"]);
}

#[test]
fn a_device_without_credentials_shows_none() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "DEOC Puri");
    net.nodes[0]
        .set_credentials(
            org.credentials(org.enrol(0, "Anita Das", "Tehsildar", "puri")),
            T0,
        )
        .unwrap();
    let (_, l0, l1) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    assert_eq!(credential(&net, 0, l0), None);
    assert!(
        matches!(credential(&net, 1, l1), Some(PeerCredential::Unverified(_)),),
        "node 1 pinned no root"
    );
}

#[test]
fn a_revocation_learnt_while_linked_cuts_the_device_off_and_keeps_it_out() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "DEOC Puri");
    let mut creds = Vec::new();
    for i in 0..2 {
        let c = org.credentials(org.enrol(i, &format!("officer {i}"), "Constable", "puri"));
        net.nodes[i].set_credentials(c.clone(), T0).unwrap();
        creds.push(c);
    }
    let (c, l0, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    assert!(matches!(
        credential(&net, 0, l0),
        Some(PeerCredential::Verified(_))
    ));
    // Node 1's phone is reported stolen: node 0 learns the revocation.
    let mut c0 = creds[0].clone();
    c0.revocations
        .insert(org.revoke_node(1, net.now - 1))
        .unwrap();
    net.nodes[0].set_credentials(c0, net.now).unwrap();
    net.settle();
    assert!(net.nodes[0].links().is_empty(), "cut at once");
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::Refused {
            reason: Fault::Revoked(CredError::DeviceRevoked { .. }),
            cut: true,
            ..
        }
    )));
    // It comes back: refused again (banned, and its proof would be refused anyway).
    net.nodes[0]
        .send_message(&c, text("after the theft"), net.now)
        .unwrap();
    net.now += 1;
    net.connect(1, 0);
    net.settle();
    assert!(
        !bodies(&mut net.nodes[1], &c).contains(&"after the theft".to_string()),
        "the revoked device gets nothing new"
    );
}

#[test]
fn a_chain_for_another_device_is_refused_locally() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "DEOC Puri");
    let not_mine = org.credentials(org.enrol(1, "Bhavesh", "SI", "puri"));
    assert!(matches!(
        net.nodes[0].set_credentials(not_mine, T0),
        Err(CredError::NotMyDevice { .. })
    ));
}

/// Three devices of one organisation, 0 – 1 – 2 in a line (node 1 in a conversation with
/// each): the links between them verified both ways. Returns the organisation, each node's
/// credentials and the links (0's to 1, 1's to 0, 1's to 2).
fn line_of_three() -> (
    Network,
    TestOrg,
    Vec<vaarta_engine::Credentials>,
    [LinkId; 3],
) {
    let mut net = Network::new(3);
    let org = TestOrg::new(100, "DEOC Puri");
    let mut creds = Vec::new();
    for i in 0..3 {
        let c = org.credentials(org.enrol(i, &format!("officer {i}"), "Constable", "puri"));
        net.nodes[i].set_credentials(c.clone(), T0).unwrap();
        creds.push(c);
    }
    let (_, l01, l10) = connect_and_invite(&mut net, (0, 1), 0, 1, "a");
    let (_, l12, _) = connect_and_invite(&mut net, (1, 2), 1, 2, "b");
    for (n, l) in [(0, l01), (1, l10), (1, l12)] {
        assert!(matches!(
            credential(&net, n, l),
            Some(PeerCredential::Verified(_))
        ));
    }
    (net, org, creds, [l01, l10, l12])
}

fn learnt(net: &Network, node: usize) -> usize {
    net.events[node]
        .iter()
        .map(|e| match e {
            Event::RevocationsLearnt { records } => records.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_revocation_spreads_through_the_organisation_and_cuts_the_device_everywhere() {
    let (mut net, org, creds, [_, _, l12]) = line_of_three();
    // Node 2's phone is stolen; the registrar's revocation reaches node 0 only.
    let mut c0 = creds[0].clone();
    c0.revocations
        .insert(org.revoke_node(2, net.now - 1))
        .unwrap();
    net.nodes[0].set_credentials(c0, net.now).unwrap();
    net.settle();
    assert_eq!(learnt(&net, 1), 1, "node 1 learnt it from node 0");
    assert!(
        net.nodes[1].links().iter().all(|l| l.link != l12),
        "node 1 cut the revoked device"
    );
    assert_eq!(learnt(&net, 0), 0, "node 0 had it already: no echo back");
}

#[test]
fn a_new_link_hands_over_the_revocations_held() {
    let mut net = Network::new(2);
    let org = TestOrg::new(100, "DEOC Puri");
    let mut c0 = org.credentials(org.enrol(0, "officer 0", "Constable", "puri"));
    for n in 5..8 {
        c0.revocations.insert(org.revoke_node(n, T0)).unwrap();
    }
    net.nodes[0].set_credentials(c0, T0).unwrap();
    let c1 = org.credentials(org.enrol(1, "officer 1", "Constable", "puri"));
    net.nodes[1].set_credentials(c1, T0).unwrap();
    connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    assert_eq!(learnt(&net, 1), 3);
    assert_eq!(learnt(&net, 0), 0);
}

#[test]
fn revocations_from_unverified_peers_or_foreign_signers_are_not_taken() {
    let (mut net, org, _, [l01, l10, _]) = line_of_three();
    let other = TestOrg::new(120, "Another organisation");
    let nobody = vaarta_sync::identity::Identity::from_seed([99; 32]);
    let forged_root = vaarta_sync::org::Revocation::new(
        &nobody,
        vaarta_sync::org::Target::Device(net.nodes[2].device_id()),
        net.now,
        None,
        net.now,
        net.now + 1_000_000,
    )
    .unwrap();
    use vaarta_sync::org::Record;
    // From a verified peer (node 1 to node 0): another organisation's and nobody's
    // revocations of node 2 are passed over; node 0 holds nothing new.
    let f = vaarta_engine::Frame::Revocations {
        records: vec![other.revoke_node(2, net.now).encode(), forged_root.encode()],
    }
    .encode();
    net.nodes[0].handle_frame(l01, &f, net.now);
    net.settle();
    assert_eq!(learnt(&net, 0), 0);
    assert_eq!(net.nodes[0].counters().revocations_ignored, 2);
    // What the organisation's root signed is taken, from the same peer.
    let f = vaarta_engine::Frame::Revocations {
        records: vec![org.revoke_node(2, net.now).encode()],
    }
    .encode();
    net.nodes[0].handle_frame(l01, &f, net.now);
    net.settle();
    assert_eq!(learnt(&net, 0), 1);
    // A malformed record from a verified peer is a fault: the link is cut.
    let junk = vaarta_engine::Frame::Revocations {
        records: vec![vec![1, 2, 3]],
    }
    .encode();
    net.nodes[1].handle_frame(l10, &junk, net.now);
    net.settle();
    assert!(net.nodes[1].links().iter().all(|l| l.link != l10));
}

#[test]
fn revocations_from_a_peer_whose_credentials_do_not_verify_are_ignored_unread() {
    let mut net = Network::new(2);
    let ours = TestOrg::new(100, "DEOC Puri");
    net.nodes[0]
        .set_credentials(ours.credentials(ours.enrol(0, "a", "b", "puri")), T0)
        .unwrap();
    let (_, l0, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "x");
    assert_eq!(credential(&net, 0, l0), None, "node 1 is not enrolled");
    let f = vaarta_engine::Frame::Revocations {
        records: vec![vec![0xff; 100]],
    }
    .encode();
    net.nodes[0].handle_frame(l0, &f, net.now);
    net.settle();
    assert_eq!(learnt(&net, 0), 0);
    assert_eq!(net.nodes[0].counters().revocations_ignored, 1);
    assert_eq!(net.nodes[0].links().len(), 1, "not a fault: unread");
}

/// Issue 9, C4: enrolled devices of one organisation recognise each other by it (no
/// conversation shared), so their chains are judged; a relay then carries what a verified
/// one asks it to in the vouched share, which sybil strangers cannot evict, and still after
/// a restart. A device without a credential that asks the same is a stranger.
#[test]
fn a_relay_carries_for_a_verified_stranger_in_the_vouched_share_across_a_restart() {
    let mut net = Network::strangers(4, common::named);
    let org = TestOrg::new(100, "District Emergency Operations Centre, Puri");
    for (i, name) in [(0, "Relay Van"), (1, "Bhavesh Rao")] {
        let c = org.credentials(org.enrol(i, name, "Officer", "puri"));
        net.nodes[i].set_credentials(c, T0).unwrap();
    }
    // Nodes 1 and 3 each write to node 2, who is away, and meet relay node 0.
    for writer in [1, 3] {
        let c = common::invite(&mut net, writer, 2, "for node 2");
        net.nodes[writer]
            .send_message(&c, text("carry me"), net.now)
            .unwrap();
        net.connect(writer, 0);
    }
    net.settle();
    let officer = net.nodes[1].device_id();
    let relay = net.nodes[0].replica();
    assert!(!relay.is_contact(&officer));
    assert!(relay.is_vouched(&officer), "its chain verified on the link");
    assert!(!relay.is_vouched(&net.nodes[3].device_id()));
    let usage = relay.carried_usage();
    assert!(usage.vouched_bytes > 0, "{usage:?}");
    assert!(usage.stranger_bytes > 0, "{usage:?}");
    common::restart(&mut net, 0);
    let relay = net.nodes[0].replica();
    assert!(relay.is_vouched(&officer));
    assert_eq!(relay.carried_usage(), usage, "rebuilt at open");
}

/// Issue 12: a revocation learnt in one partition while the revoked device writes in the
/// other, then the heal, in both orders (the admin's side learning first or last). The
/// revocation reaches the replicas (`Replica::revoke_devices`), the admin removes the device
/// with a key rotation when it learns, and both sides end with the same pages: what the
/// admin held when the revocation reached it, nothing the device wrote after.
#[test]
fn a_revocation_learnt_in_one_partition_while_the_device_writes_in_the_other_converges() {
    for admin_first in [false, true] {
        let mut net = Network::new(3);
        let org = TestOrg::new(100, "DEOC Puri");
        let mut creds = Vec::new();
        for i in 0..3 {
            let c = org.credentials(org.enrol(i, &format!("officer {i}"), "Constable", "puri"));
            net.nodes[i].set_credentials(c.clone(), T0).unwrap();
            creds.push(c);
        }
        // Node 0 (the admin) with node 1 and Mallory (node 2) in one conversation.
        let (c, l01, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "flood cell");
        let mallory = net.nodes[2].device_id();
        net.nodes[0]
            .add_member(&c, mallory, false, net.now)
            .unwrap();
        let (l02, _) = net.connect(0, 2);
        let (l12, _) = net.connect(1, 2);
        net.settle();
        net.nodes[2].send_message(&c, text("m1"), net.now).unwrap();
        net.settle();
        assert_eq!(bodies(&mut net.nodes[1], &c), vec!["m1"]);
        // Partition: the learning side is cut off from the other.
        let (learner, other, other_link) = if admin_first {
            (0, 1, l12)
        } else {
            (1, 0, l02)
        };
        net.cut(0, l01);
        net.cut(learner, if learner == 0 { l02 } else { l12 });
        let _ = other_link;
        let mut learnt = creds[learner].clone();
        learnt
            .revocations
            .insert(org.revoke_node(2, net.now - 1))
            .unwrap();
        net.nodes[learner].set_credentials(learnt, net.now).unwrap();
        net.settle();
        assert!(net.nodes[learner].replica().is_revoked(&mallory));
        assert_eq!(
            net.nodes[0]
                .replica()
                .conversation(&c)
                .unwrap()
                .membership
                .state()
                .is_member(&mallory),
            !admin_first,
            "the admin removed the revoked device when it learnt"
        );
        // Mallory writes on the other side, which does not know yet.
        net.nodes[2].send_message(&c, text("m2"), net.now).unwrap();
        net.settle();
        assert!(bodies(&mut net.nodes[other], &c).contains(&"m2".to_string()));
        // Heal: the revocation spreads over the organisation's link.
        net.now += 1;
        net.connect(0, 1);
        net.settle();
        net.run_for(120_000);
        for n in [0, 1] {
            assert!(net.nodes[n].replica().is_revoked(&mallory), "node {n}");
            assert!(
                !net.nodes[n]
                    .replica()
                    .conversation(&c)
                    .unwrap()
                    .membership
                    .state()
                    .is_member(&mallory),
                "node {n}"
            );
        }
        let expected = if admin_first {
            vec!["m1"]
        } else {
            vec!["m1", "m2"]
        };
        assert_eq!(
            bodies(&mut net.nodes[0], &c),
            expected,
            "admin first: {admin_first}"
        );
        assert_eq!(
            bodies(&mut net.nodes[1], &c),
            expected,
            "admin first: {admin_first}"
        );
        assert_eq!(
            net.nodes[0].state_digest(&c).unwrap(),
            net.nodes[1].state_digest(&c).unwrap()
        );
        // After the rotation the admin's news does not reach the stolen key.
        net.nodes[0]
            .send_message(&c, text("new plan"), net.now)
            .unwrap();
        net.settle();
        assert!(bodies(&mut net.nodes[1], &c).contains(&"new plan".to_string()));
        assert!(!bodies(&mut net.nodes[2], &c).contains(&"new plan".to_string()));
    }
}

fn wipe_ordered(net: &Network, node: usize) -> bool {
    net.events[node]
        .iter()
        .any(|e| matches!(e, Event::WipeOrdered { .. }))
}

/// Issue 12, remote wipe: a registrar's wipe order for node 2 handed to node 0 travels like
/// a revocation (node 0 → node 1), implies the revocation (node 1 cuts node 2), and reaches
/// node 2 itself, the one device that acts on it, before the cut. A forged order (signed by
/// a key that is no registrar) is refused by the device it names, which stays linked.
#[test]
fn a_wipe_order_travels_like_a_revocation_and_only_the_named_device_obeys_it() {
    let (mut net, org, creds, [l01, l10, l12]) = line_of_three();
    let mut c0 = creds[0].clone();
    let order = org.wipe_node(2, net.now);
    c0.wipes.insert(order.device(), order);
    net.nodes[0].set_credentials(c0, net.now).unwrap();
    net.settle();
    assert_eq!(
        learnt(&net, 1),
        2,
        "node 1 took the order and the revocation it implies in (and saves them)"
    );
    assert!(
        net.nodes[1].replica().is_revoked(&net.nodes[2].device_id()),
        "the order implies the revocation"
    );
    assert!(
        net.nodes[1].links().iter().all(|l| l.link != l12),
        "node 1 cut node 2"
    );
    assert!(
        wipe_ordered(&net, 2),
        "node 2 heard its wipe order: {:?}",
        net.events[2]
            .iter()
            .filter(|e| !matches!(e, Event::Sync(_)))
            .collect::<Vec<_>>()
    );
    assert!(!wipe_ordered(&net, 0) && !wipe_ordered(&net, 1));
    // A forged order for node 1, from a verified peer: refused, nothing changes.
    let nobody = vaarta_sync::identity::Identity::from_seed([99; 32]);
    let forged = vaarta_sync::org::WipeOrder::new(
        &nobody,
        net.nodes[1].device_id(),
        None,
        net.now,
        net.now + 1_000,
    )
    .unwrap();
    use vaarta_sync::org::Record;
    let f = vaarta_engine::Frame::Revocations {
        records: vec![forged.encode()],
    }
    .encode();
    net.nodes[1].handle_frame(l10, &f, net.now);
    net.settle();
    assert!(!wipe_ordered(&net, 1));
    assert!(net.events[1].iter().any(|e| matches!(
        e,
        Event::WipeRefused { reason } if reason.contains("no authority")
    )));
    assert_eq!(net.nodes[1].counters().wipes_refused, 1);
    assert!(
        net.nodes[1].links().iter().any(|l| l.link == l10),
        "still linked"
    );
    let _ = l01;
}
