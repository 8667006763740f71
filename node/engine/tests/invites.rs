//! Invitations from strangers (issue 9 item 10): held in a bounded inbox until the user
//! accepts or declines them; a contact's (a device we share a conversation with, or one
//! the user accepted) are taken at once as before.

mod common;

use common::{connect_and_invite, invite, named, restart, text};
use vaarta_engine::testing::Network;
use vaarta_engine::{Config, Frame};
use vaarta_sync::conversation::Invitation;
use vaarta_sync::crypto::{self, ConversationSecret};
use vaarta_sync::envelope::{self, Header, Kind, Precedence};
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::EpochId;
use vaarta_sync::limits::MAX_HELD_INVITATIONS;
use vaarta_sync::membership::History;
use vaarta_sync::replica::{Event as SyncEvent, InvitePolicy};
use vaarta_sync::store::Store;

/// An invitation to a new conversation (secret from `k`) from `from` to `to`.
fn invitation(from: &Identity, to: &Network, node: usize, k: u64, now: u64) -> Vec<u8> {
    invitation_as(from, from, to, node, k, now)
}

/// A stranger who knows node 0's device id pushes 5,000 invitations: they land in a bounded
/// inbox, no conversation is created, node 0's hello does not grow nor is it sent again, and
/// node 0 still serves its honest peer. Before the inbox (invitations policy `AcceptAll`,
/// i.e. the old behaviour) every invitation created a conversation and sent a hello to every
/// link: `flood(AcceptAll)` fails the assertions below.
fn flood(policy: InvitePolicy) {
    let mut net = Network::with(3, |i| Config {
        invitations: policy,
        ..named(i)
    });
    // Nodes 0 and 1 are a team with a conversation; node 2 is the stranger's link.
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "EOC");
    let (_, on0) = net.connect(2, 0);
    net.settle();
    let stranger = Identity::from_seed([99; 32]);
    let hellos = net.nodes[0].counters().hellos_out;
    let stored = net.nodes[0].replica().store().bytes_used();
    let n = 5_000u64;
    let t = net.now;
    for k in 0..n {
        let f = Frame::Push {
            lane: vaarta_sync::envelope::Precedence::Routine,
            seq: k + 1,
            envelope: invitation(&stranger, &net, 0, k, t),
        };
        net.nodes[0].handle_frame(on0, &f.encode(), t);
        if k % 64 == 63 {
            let out = vaarta_engine::testing::pump(&mut net.nodes[0], t).unwrap();
            net.events[0].extend(out.events);
        }
    }
    net.settle();
    let e = &net.nodes[0];
    assert_eq!(
        e.conversations().len(),
        1,
        "no conversation from a stranger"
    );
    assert_eq!(
        e.invitations().len(),
        vaarta_sync::limits::MAX_HELD_PER_INVITER,
        "bounded inbox: one stranger holds a few"
    );
    assert_eq!(e.counters().hellos_out, hellos, "no hello sent again");
    assert_eq!(
        e.replica().conversation_tags().len(),
        1,
        "the hello names one conversation tag"
    );
    // The inbox keeps the newest (the oldest are dropped).
    let held = e.invitations();
    assert!(held.iter().all(|h| h.inviter == stranger.device_id()));
    let added = net.events[0]
        .iter()
        .filter(|ev| {
            matches!(
                ev,
                vaarta_engine::Event::Sync(SyncEvent::InvitationHeld { .. })
            )
        })
        .count();
    let refusals: Vec<_> = net.events[0]
        .iter()
        .filter(|ev| matches!(ev, vaarta_engine::Event::Refused { .. }))
        .take(3)
        .collect();
    assert_eq!(
        added as u64, n,
        "each held invitation is told to the app ({refusals:?})"
    );
    // Store growth is bounded: held envelopes and tombstones of the dropped (ids only).
    let grown = e.replica().store().bytes_used() - stored;
    assert!(
        grown < n * 200,
        "{grown} bytes for {n} invitations (≈ 270 B each held in full)"
    );
    // The honest member is still served.
    net.nodes[1]
        .send_message(&c, text("still here"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(net.nodes[0].messages(&c, 10).unwrap().len(), 1);
}

#[test]
fn a_strangers_invitation_flood_is_held_in_a_bounded_inbox() {
    flood(InvitePolicy::HoldStrangers);
}

#[test]
#[should_panic(expected = "no conversation from a stranger")]
fn without_the_inbox_the_flood_creates_conversations() {
    flood(InvitePolicy::AcceptAll);
}

/// A real stranger's invitation waits; accepting it adds the conversation, its messages
/// arrive, and later invitations from that device are taken at once.
#[test]
fn a_held_invitation_accepted_brings_the_conversation() {
    let mut net = Network::strangers(2, named);
    net.connect(0, 1);
    net.settle();
    let c = invite(&mut net, 1, 0, "Flood relief");
    let a = net.nodes[0].device_id();
    net.nodes[1]
        .send_message(&c, text("boat team at ghat 3"), net.now)
        .unwrap();
    net.settle();
    assert!(net.nodes[0].conversations().is_empty());
    let held = net.nodes[0].invitations();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].conversation, c);
    assert_eq!(held[0].inviter, net.nodes[1].device_id());
    let now = net.now;
    assert_eq!(net.nodes[0].accept_invitation(&c, now).unwrap(), c);
    net.settle();
    assert!(net.nodes[0].invitations().is_empty());
    let msgs = net.nodes[0].messages(&c, 10).unwrap();
    assert_eq!(msgs.len(), 1);
    // The inviter is a contact now: its next invitation is taken at once.
    let c2 = net.nodes[1]
        .create_conversation("Second", History::Shared, net.now)
        .unwrap()
        .0;
    net.nodes[1].add_member(&c2, a, false, net.now).unwrap();
    net.settle();
    assert!(net.nodes[0].invitations().is_empty());
    assert_eq!(net.nodes[0].conversations().len(), 2);
    // Accepting what is not held says so.
    assert!(net.nodes[0].accept_invitation(&c2, net.now).is_err());
}

/// Declining drops the invitation for good: reconciliation does not bring it back.
#[test]
fn a_declined_invitation_stays_declined() {
    let mut net = Network::strangers(2, named);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 1, 0, "x");
    assert_eq!(net.nodes[0].invitations().len(), 1);
    net.nodes[0].decline_invitation(&c).unwrap();
    net.run_for(5 * 60_000);
    assert!(net.nodes[0].invitations().is_empty());
    assert!(net.nodes[0].conversations().is_empty());
    assert!(net.nodes[0].decline_invitation(&c).is_err());
}

/// Invitations from a device we share a conversation with are taken at once, as before,
/// even from a device the user never accepted: node 2 met node 0 only as a fellow member.
#[test]
fn a_fellow_members_invitation_is_taken_at_once() {
    let mut net = Network::strangers(3, named);
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.settle();
    // Node 0 accepts node 1 (the user knows them); node 1 brings 0 and 2 together.
    let b = net.nodes[1].device_id();
    let now = net.now;
    net.nodes[0].accept_device(&b, now).unwrap();
    net.nodes[2].accept_device(&b, now).unwrap();
    let c = net.nodes[1]
        .create_conversation("team", History::Shared, net.now)
        .unwrap()
        .0;
    let (a, d) = (net.nodes[0].device_id(), net.nodes[2].device_id());
    net.nodes[1]
        .add_members(&c, &[a, d], false, net.now)
        .unwrap();
    net.settle();
    assert_eq!(net.nodes[0].conversations().len(), 1);
    assert_eq!(net.nodes[2].conversations().len(), 1);
    // Node 2 (never accepted by node 0, but a fellow member) invites node 0 elsewhere.
    let c2 = net.nodes[2]
        .create_conversation("side", History::Shared, net.now)
        .unwrap()
        .0;
    net.nodes[2].add_member(&c2, a, false, net.now).unwrap();
    net.settle();
    assert!(net.nodes[0].invitations().is_empty());
    assert_eq!(net.nodes[0].conversations().len(), 2);
}

/// Held invitations and accepted devices survive a restart.
#[test]
fn the_inbox_survives_a_restart() {
    let mut net = Network::strangers(2, named);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 1, 0, "x");
    restart(&mut net, 0);
    assert_eq!(net.nodes[0].invitations().len(), 1);
    let now = net.now;
    net.nodes[0].accept_invitation(&c, now).unwrap();
    assert_eq!(net.nodes[0].conversations().len(), 1);
}

// ------------------------------------------------------------------ review findings

/// An invitation to the conversation of (secret from `k`, `creator`), signed by `signer`,
/// to node `node`.
fn invitation_as(
    signer: &Identity,
    creator: &Identity,
    to: &Network,
    node: usize,
    k: u64,
    now: u64,
) -> Vec<u8> {
    let to_dev = to.nodes[node].device_id();
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&k.to_le_bytes());
    let inv = Invitation {
        secret: ConversationSecret(s),
        creator: creator.device_id(),
        keys: Vec::new(),
    };
    let header = Header {
        kind: Kind::Invite,
        precedence: Precedence::Immediate,
        tag: crypto::inbox_tag(&to_dev, crypto::day_of(now)),
        epoch: EpochId([0; 4]),
        expiry: None,
    };
    let hlc = Hlc {
        ms: now,
        counter: (k % 60_000) as u16,
    };
    let mut seed = [5u8; 32];
    seed[..8].copy_from_slice(&k.to_le_bytes());
    seed[8..16].copy_from_slice(&signer.device_id().0[..8]);
    envelope::seal_invite(&header, signer, &to_dev, hlc, &inv.encode(), seed)
        .unwrap()
        .bytes()
        .to_vec()
}

/// Pushes envelopes into node 0 on `link` (as its peer), flushing after each.
fn push_all(net: &mut Network, link: vaarta_engine::LinkId, seq: &mut u64, envs: Vec<Vec<u8>>) {
    for e in envs {
        *seq += 1;
        let f = Frame::Push {
            lane: vaarta_sync::envelope::Precedence::Routine,
            seq: *seq,
            envelope: e,
        };
        let t = net.now;
        net.nodes[0].handle_frame(link, &f.encode(), t);
        let out = vaarta_engine::testing::pump(&mut net.nodes[0], t).unwrap();
        net.events[0].extend(out.events);
    }
}

/// Review finding 1: one stranger cannot push a real invitation out of the inbox (at most
/// 4 are held per inviter), and when many strangers do, the real one is not tombstoned: it
/// comes back at the next reconciliation with its inviter.
#[test]
fn a_strangers_flood_does_not_push_out_a_real_invitation_for_good() {
    let mut net = Network::strangers(3, named);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 1, 0, "real");
    let real = |net: &Network| {
        net.nodes[0]
            .invitations()
            .iter()
            .any(|h| h.conversation == c)
    };
    assert!(real(&net));
    let (_, on0) = net.connect(2, 0);
    net.settle();
    let mut seq = 0;
    // One stranger, 200 invitations.
    let stranger = Identity::from_seed([99; 32]);
    let t = net.now;
    let envs = (0..200)
        .map(|k| invitation_as(&stranger, &stranger, &net, 0, k, t))
        .collect();
    push_all(&mut net, on0, &mut seq, envs);
    assert!(real(&net), "one stranger pushed the real invitation out");
    let by_stranger = net.nodes[0]
        .invitations()
        .iter()
        .filter(|h| h.inviter == stranger.device_id())
        .count();
    assert!(by_stranger <= 4, "{by_stranger} held for one stranger");
    // A hundred strangers, one each: the real one may go, but not for good.
    let envs = (0..100u8)
        .map(|i| {
            let s = Identity::from_seed([i.wrapping_add(100); 32]);
            invitation_as(&s, &s, &net, 0, 1_000 + u64::from(i), t)
        })
        .collect();
    push_all(&mut net, on0, &mut seq, envs);
    assert!(net.nodes[0].invitations().len() <= MAX_HELD_INVITATIONS);
    // Not tombstoned: the next link with a device that holds it brings it back (a peer
    // serves an envelope once per link).
    let l = net.nodes[0]
        .links()
        .into_iter()
        .find(|l| l.device == Some(net.nodes[1].device_id()))
        .unwrap()
        .link;
    net.cut(0, l);
    net.connect(0, 1);
    net.settle();
    assert!(
        real(&net),
        "the real invitation came back with the next link"
    );
}

/// Review finding 2: an accept that fails (here: no room for another conversation) keeps
/// the invitation and makes nobody a contact, with a clear error.
#[test]
fn a_failed_accept_keeps_the_invitation_and_trusts_nobody() {
    let mut net = Network::strangers(2, named);
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 1, 0, "real");
    assert_eq!(net.nodes[0].invitations().len(), 1);
    let now = net.now;
    for i in 0..vaarta_sync::replica::MAX_CONVERSATIONS {
        net.nodes[0]
            .create_conversation(&format!("c{i}"), History::Shared, now)
            .unwrap();
    }
    let err = net.nodes[0].accept_invitation(&c, now).unwrap_err();
    assert!(err.to_string().contains("too many conversations"), "{err}");
    assert_eq!(net.nodes[0].invitations().len(), 1, "still held");
    let inviter = net.nodes[1].device_id();
    assert!(
        !net.nodes[0].replica().is_contact(&inviter),
        "nobody trusted"
    );
}

/// Review finding 3: the creator of a conversation, once removed, is not a contact: its
/// invitations wait like a stranger's.
#[test]
fn a_removed_creator_is_not_a_contact() {
    let mut net = Network::strangers(3, named);
    net.connect(0, 1);
    net.connect(1, 2);
    net.connect(0, 2);
    net.settle();
    let (a, b, z) = (
        net.nodes[0].device_id(),
        net.nodes[1].device_id(),
        net.nodes[2].device_id(),
    );
    let now = net.now;
    // Node 1 knows node 2 (the creator); node 0 knows only node 1.
    net.nodes[1].accept_device(&z, now).unwrap();
    net.nodes[0].accept_device(&b, now).unwrap();
    let c = net.nodes[2]
        .create_conversation("team", History::Shared, net.now)
        .unwrap()
        .0;
    net.nodes[2].add_member(&c, b, true, net.now).unwrap();
    net.settle();
    net.nodes[1].add_member(&c, a, false, net.now).unwrap();
    net.settle();
    assert_eq!(net.nodes[0].conversations().len(), 1);
    net.nodes[1].remove_member(&c, z, net.now).unwrap();
    net.settle();
    assert!(!net.nodes[0].replica().is_contact(&z), "a removed creator");
    // The removed creator invites node 0 elsewhere, 20 times.
    for i in 0..20 {
        let c2 = net.nodes[2]
            .create_conversation(&format!("lure {i}"), History::Shared, net.now)
            .unwrap()
            .0;
        net.nodes[2].add_member(&c2, a, false, net.now).unwrap();
    }
    net.settle();
    assert_eq!(net.nodes[0].conversations().len(), 1, "none joined");
    assert!(!net.nodes[0].invitations().is_empty());
}

/// Review finding 4: the first invitation for a conversation does not decide who invited:
/// a second one (here the creator's, after someone else's) is held too, both inviters are
/// shown, and accepting takes both without making the other signer a contact.
#[test]
fn every_invitation_for_a_held_conversation_is_held() {
    let mut net = Network::strangers(3, named);
    let (_, on0) = net.connect(2, 0);
    net.settle();
    let (creator, other) = (Identity::from_seed([61; 32]), Identity::from_seed([62; 32]));
    let t = net.now;
    let mut seq = 0;
    let envs = vec![
        invitation_as(&other, &creator, &net, 0, 7, t),
        invitation_as(&creator, &creator, &net, 0, 7, t),
    ];
    push_all(&mut net, on0, &mut seq, envs);
    let held = net.nodes[0].invitations();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[0].conversation, held[1].conversation);
    let inviters: std::collections::BTreeSet<_> = held.iter().map(|h| h.inviter).collect();
    assert_eq!(
        inviters,
        [creator.device_id(), other.device_id()]
            .into_iter()
            .collect()
    );
    let c = held[0].conversation;
    let now = net.now;
    net.nodes[0].accept_invitation(&c, now).unwrap();
    assert!(net.nodes[0].invitations().is_empty());
    assert_eq!(net.nodes[0].conversations().len(), 1);
    assert!(!net.nodes[0].replica().is_contact(&other.device_id()));
}
