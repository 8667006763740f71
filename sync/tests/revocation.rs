//! Revocations enforced on envelopes (issue 12): a device its organisation revoked gets
//! nothing more into any replica's pages — not later writes, not writes claiming an old
//! time, not through a relay — and replicas that learn the revocation at different times
//! end with the same pages, through the signed removal an admin makes of it (which also
//! rotates the key, so the revoked device's key reads nothing sent after).

mod common;

use common::{bodies, envelopes, text};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId};
use vaarta_sync::membership::History;
use vaarta_sync::replica::{IngestError, Replica};
use vaarta_sync::store::MemoryStore;

const T0: u64 = 1_790_000_000_000;

type R = Replica<MemoryStore>;

/// Delivers everything `from` holds to `to` (twice, so that what waited gets its turn).
fn deliver(rs: &mut [R], from: usize, to: usize, now: u64) {
    for _ in 0..2 {
        for b in envelopes(&rs[from]) {
            let _ = rs[to].ingest(&b, now);
        }
    }
}

fn sync_among(rs: &mut [R], who: &[usize], now: u64) {
    for _ in 0..2 {
        for &i in who {
            for &j in who {
                if i != j {
                    deliver(rs, i, j, now);
                }
            }
        }
    }
}

/// Asha (0, creator and admin), Bina (1), Chitra (2) and Mallory (3), whose phone will be
/// stolen; `admins` (indices) are admins too. Everyone holds everything at `T0 + 100`.
fn field_team(admins: &[usize]) -> (Vec<R>, ConversationId) {
    let mut rs: Vec<R> = (1..=4u8)
        .map(|n| Replica::open(Identity::from_seed([n; 32]), MemoryStore::new(), [n; 32]).unwrap())
        .collect();
    let (c, _) = rs[0]
        .create_conversation("flood cell", History::Shared, T0)
        .unwrap();
    for i in 1..4 {
        let d = rs[i].device_id();
        rs[0]
            .add_member(&c, d, admins.contains(&i), T0 + i as u64)
            .unwrap();
    }
    sync_among(&mut rs, &[0, 1, 2, 3], T0 + 100);
    (rs, c)
}

fn mallory(rs: &[R]) -> DeviceId {
    rs[3].device_id()
}

/// What each of `who` shows, and its state digest: equal on all of them.
fn converged(rs: &mut [R], who: &[usize], c: &ConversationId) -> Vec<String> {
    let mut first: Option<(Vec<String>, [u8; 32])> = None;
    for &i in who {
        let shown = bodies(&mut rs[i], c);
        let digest = rs[i].state_digest(c).unwrap();
        match &first {
            None => first = Some((shown, digest)),
            Some(f) => assert_eq!(f, &(shown, digest), "replica {i} differs"),
        }
    }
    first.unwrap().0
}

#[test]
fn a_revoked_devices_later_and_backdated_writes_are_refused_on_every_replica() {
    let (mut rs, c) = field_team(&[]);
    rs[3]
        .send_message(&c, text("before the theft"), T0 + 200)
        .unwrap();
    sync_among(&mut rs, &[0, 1, 2, 3], T0 + 300);
    // A copy of the phone as it stood then (the thief's backup).
    let stolen_copy = rs[3].store().clone();
    let m = mallory(&rs);
    // Every honest replica learns the revocation; Bina and Chitra before the admin's removal.
    for i in [1, 2] {
        assert_eq!(rs[i].revoke_devices(&[m], T0 + 1_000).unwrap(), vec![]);
        assert!(rs[i].is_revoked(&m));
    }
    // The thief writes on, now...
    rs[3]
        .send_message(&c, text("later: all clear, go home"), T0 + 2_000)
        .unwrap();
    // ...and from the copy, at a time before the revocation (its clock is its own claim).
    let mut copy = Replica::open(Identity::from_seed([4; 32]), stolen_copy, [44; 32]).unwrap();
    copy.send_message(&c, text("backdated: all clear"), T0 + 400)
        .unwrap();
    let late: Vec<Vec<u8>> = envelopes(&rs[3])
        .into_iter()
        .chain(envelopes(&copy))
        .collect();
    for i in [1, 2] {
        let mut refused = 0;
        for b in &late {
            match rs[i].ingest(b, T0 + 2_100) {
                Err(IngestError::AuthorRevoked) => refused += 1,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(refused, 2, "replica {i}: the later and the backdated write");
        assert_eq!(bodies(&mut rs[i], &c), vec!["before the theft"]);
    }
    // Carried by a relay (a replica that is no member, relaying): still refused.
    let mut relay =
        Replica::open(Identity::from_seed([9; 32]), MemoryStore::new(), [9; 32]).unwrap();
    for b in &late {
        let _ = relay.ingest(b, T0 + 2_200);
    }
    let carried = envelopes(&relay);
    assert!(!carried.is_empty(), "the relay carried them");
    for b in &carried {
        assert!(matches!(
            rs[2].ingest(b, T0 + 2_300),
            Ok(vaarta_sync::replica::Ingested::Duplicate) | Err(IngestError::AuthorRevoked)
        ));
    }
    // The admin learns it last, after it took the later write: it removes Mallory, and its
    // removal pins what it held. Everyone converges on what is shown.
    for b in envelopes(&rs[3]) {
        let _ = rs[0].ingest(&b, T0 + 2_400);
    }
    let sealed = rs[0].revoke_devices(&[m], T0 + 3_000).unwrap();
    assert_eq!(sealed.len(), 2, "a removal and a rotation");
    assert!(
        !rs[0]
            .conversation(&c)
            .unwrap()
            .membership
            .state()
            .is_member(&m)
    );
    sync_among(&mut rs, &[0, 1, 2], T0 + 4_000);
    let shown = converged(&mut rs, &[0, 1, 2], &c);
    assert!(
        !shown.iter().any(|s| s.contains("backdated")),
        "the backdated write is shown nowhere: {shown:?}"
    );
    // The admin held the later write when it learnt: its removal pinned it, so it shows
    // everywhere alike (including where it was refused first); nothing after it does.
    assert_eq!(shown, vec!["before the theft", "later: all clear, go home"]);
    rs[3]
        .send_message(&c, text("after the removal"), T0 + 5_000)
        .unwrap();
    for i in [0, 1, 2] {
        deliver(&mut rs, 3, i, T0 + 5_100);
    }
    assert_eq!(converged(&mut rs, &[0, 1, 2], &c), shown);
}

/// Revocation learnt in one partition while the device writes in the other, then heal, in
/// both orders: the admin learning first or last.
#[test]
fn replicas_that_learn_the_revocation_at_different_times_end_with_the_same_pages() {
    for admin_first in [false, true] {
        let (mut rs, c) = field_team(&[]);
        let m = mallory(&rs);
        rs[3].send_message(&c, text("m1"), T0 + 200).unwrap();
        sync_among(&mut rs, &[0, 1, 2, 3], T0 + 300);
        // Partition {Asha, Mallory} | {Bina, Chitra}. One side learns the revocation.
        let early = if admin_first { vec![0] } else { vec![1, 2] };
        for &i in &early {
            rs[i].revoke_devices(&[m], T0 + 1_000).unwrap();
        }
        rs[3].send_message(&c, text("m2"), T0 + 1_100).unwrap();
        // Mallory's m2 reaches both sides (by a relay in the other partition).
        for i in [0, 1, 2] {
            deliver(&mut rs, 3, i, T0 + 1_200);
        }
        sync_among(&mut rs, &[1, 2], T0 + 1_300);
        // The other side learns it later.
        for i in [0, 1, 2] {
            if !early.contains(&i) {
                rs[i].revoke_devices(&[m], T0 + 2_000).unwrap();
            }
        }
        rs[3].send_message(&c, text("m3"), T0 + 2_100).unwrap();
        for i in [0, 1, 2] {
            deliver(&mut rs, 3, i, T0 + 2_200);
        }
        // Heal.
        sync_among(&mut rs, &[0, 1, 2], T0 + 3_000);
        for i in [0, 1, 2] {
            rs[i].maintain(T0 + 30_000).unwrap();
        }
        sync_among(&mut rs, &[0, 1, 2], T0 + 31_000);
        let shown = converged(&mut rs, &[0, 1, 2], &c);
        // What the admin held when the revocation reached it is what stays.
        let expected = if admin_first {
            vec!["m1"]
        } else {
            vec!["m1", "m2"]
        };
        assert_eq!(shown, expected, "admin first: {admin_first}");
    }
}

#[test]
fn the_revoked_devices_key_cannot_read_what_is_sent_after_the_rotation() {
    let (mut rs, c) = field_team(&[]);
    let m = mallory(&rs);
    rs[0].send_message(&c, text("before"), T0 + 200).unwrap();
    sync_among(&mut rs, &[0, 1, 2, 3], T0 + 300);
    rs[0].revoke_devices(&[m], T0 + 1_000).unwrap();
    rs[0]
        .send_message(&c, text("new rendezvous: school at 6"), T0 + 1_100)
        .unwrap();
    sync_among(&mut rs, &[0, 1, 2], T0 + 1_200);
    assert_eq!(
        bodies(&mut rs[1], &c),
        vec!["before", "new rendezvous: school at 6"]
    );
    // The thief has the device key and every envelope (captured traffic, a relay).
    deliver(&mut rs, 0, 3, T0 + 1_300);
    deliver(&mut rs, 1, 3, T0 + 1_300);
    let seen = bodies(&mut rs[3], &c);
    assert!(
        !seen.iter().any(|s| s.contains("rendezvous")),
        "the revoked key opened a message sent after the rotation: {seen:?}"
    );
    assert_eq!(seen, vec!["before"]);
}

#[test]
fn admins_removing_a_revoked_device_concurrently_converge() {
    // Asha and Bina are both admins; each learns the revocation on its own and removes.
    let (mut rs, c) = field_team(&[1]);
    let m = mallory(&rs);
    rs[3].send_message(&c, text("m1"), T0 + 200).unwrap();
    sync_among(&mut rs, &[0, 1, 2, 3], T0 + 300);
    for i in [0, 1] {
        let sealed = rs[i].revoke_devices(&[m], T0 + 1_000 + i as u64).unwrap();
        assert_eq!(sealed.len(), 2, "admin {i}: a removal and a rotation");
        // Again: nothing more (idempotent).
        assert_eq!(rs[i].revoke_devices(&[m], T0 + 1_010).unwrap(), vec![]);
    }
    sync_among(&mut rs, &[0, 1, 2], T0 + 2_000);
    for i in [0, 1, 2] {
        rs[i].maintain(T0 + 30_000).unwrap();
    }
    sync_among(&mut rs, &[0, 1, 2], T0 + 31_000);
    assert_eq!(converged(&mut rs, &[0, 1, 2], &c), vec!["m1"]);
    let members = |r: &R| -> Vec<DeviceId> {
        let conv = r.conversation(&c).unwrap();
        conv.membership.state().members.keys().copied().collect()
    };
    for i in [0, 1, 2] {
        assert!(!members(&rs[i]).contains(&m), "replica {i}");
        assert_eq!(members(&rs[i]), members(&rs[0]));
    }
    rs[1].send_message(&c, text("after"), T0 + 32_000).unwrap();
    sync_among(&mut rs, &[0, 1, 2], T0 + 33_000);
    deliver(&mut rs, 1, 3, T0 + 33_000);
    assert!(!bodies(&mut rs[3], &c).contains(&"after".to_string()));
    assert_eq!(bodies(&mut rs[2], &c), vec!["m1", "after"]);
}

#[test]
fn revoked_devices_survive_a_restart() {
    let (mut rs, c) = field_team(&[]);
    let m = mallory(&rs);
    rs[1].revoke_devices(&[m], T0 + 1_000).unwrap();
    let r1 = rs.remove(1);
    let mut r1 = Replica::open(Identity::from_seed([2; 32]), r1.into_store(), [22; 32]).unwrap();
    assert!(r1.is_revoked(&m));
    // Chitra's writes go in; Mallory's are refused, after the restart as before.
    rs[1].send_message(&c, text("after"), T0 + 2_000).unwrap();
    for b in envelopes(&rs[1]) {
        assert!(!matches!(
            r1.ingest(&b, T0 + 2_100),
            Err(IngestError::AuthorRevoked)
        ));
    }
    assert!(bodies(&mut r1, &c).contains(&"after".to_string()));
    let mut stolen = rs.remove(2);
    stolen.send_message(&c, text("thief"), T0 + 2_200).unwrap();
    let refused = envelopes(&stolen)
        .iter()
        .filter(|b| matches!(r1.ingest(b, T0 + 2_300), Err(IngestError::AuthorRevoked)))
        .count();
    assert_eq!(refused, 1);
    assert!(!bodies(&mut r1, &c).contains(&"thief".to_string()));
}
