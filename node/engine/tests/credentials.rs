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
