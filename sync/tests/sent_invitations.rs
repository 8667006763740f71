//! Invitations this device sealed for others (issue 9, last hardening, item 2): before, they
//! were never deleted and accumulated for the device's life. Now one goes once its invitee
//! has joined (the log holds an operation it signed) or left, after
//! `SENT_INVITATION_TTL_MS`, and past `MAX_SENT_INVITATIONS` the oldest goes; one still
//! waiting for its invitee within its time is kept, across restarts and power cuts.

mod common;

use common::{envelopes, replica};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{DeviceId, EnvelopeId};
use vaarta_sync::limits::{MAX_SENT_INVITATIONS, SENT_INVITATION_TTL_MS};
use vaarta_sync::membership::History;
use vaarta_sync::replica::Replica;
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;

fn reopen(r: Replica<MemoryStore>, n: u8) -> Replica<MemoryStore> {
    Replica::open(Identity::from_seed([n; 32]), r.into_store(), [n + 50; 32]).unwrap()
}

/// Whether `r` still holds the envelope `id` with its bytes.
fn holds(r: &Replica<MemoryStore>, id: &EnvelopeId) -> bool {
    r.store()
        .find_envelope(id)
        .unwrap()
        .is_some_and(|b| !b.is_empty())
}

fn deliver(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
    for _ in 0..2 {
        for b in envelopes(from) {
            let _ = to.ingest(&b, now);
        }
    }
}

/// Bhavesh takes his invitation and writes his profile: once that reaches Asha, her next
/// duty run deletes the invitation (envelope and record). Chitra's, still waiting, is kept —
/// by that run, after a restart and after a power cut — until it is older than the TTL.
#[test]
fn an_accepted_invitation_goes_and_a_pending_one_stays_until_it_expires() {
    let mut asha = replica(1);
    let mut bhavesh = replica(2);
    let chitra: DeviceId = Identity::from_seed([3; 32]).device_id();
    let (c, _) = asha
        .create_conversation("team", History::Shared, T0)
        .unwrap();
    let to_b = *asha
        .add_member(&c, bhavesh.device_id(), false, T0 + 1)
        .unwrap()
        .last()
        .unwrap();
    let to_c = *asha
        .add_member(&c, chitra, false, T0 + 2)
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(asha.sent_invitation_count(), 2);
    asha.maintain(T0 + 10).unwrap();
    assert!(
        holds(&asha, &to_b) && holds(&asha, &to_c),
        "both still pending"
    );
    deliver(&asha, &mut bhavesh, T0 + 20);
    assert!(bhavesh.info(&c).unwrap().me_member);
    bhavesh.set_profile(&c, "Bhavesh", T0 + 30).unwrap();
    deliver(&bhavesh, &mut asha, T0 + 40);
    asha.maintain(T0 + 50).unwrap();
    assert!(!holds(&asha, &to_b), "the accepted invitation is deleted");
    assert!(holds(&asha, &to_c), "the pending one is kept");
    assert_eq!(asha.sent_invitation_count(), 1);
    // Across a restart and a power cut (after a flush), the pending one is still ours:
    // kept, and not counted as carried.
    asha.store_mut().flush().unwrap();
    let mut asha = reopen(asha, 1);
    asha.maintain(T0 + 60).unwrap();
    assert_eq!(asha.sent_invitation_count(), 1);
    assert!(holds(&asha, &to_c));
    assert_eq!(asha.carried_usage().envelopes, 0);
    asha.store_mut().flush().unwrap();
    let mut st = asha.into_store();
    st.crash();
    let mut asha = Replica::open(Identity::from_seed([1; 32]), st, [9; 32]).unwrap();
    asha.maintain(T0 + 2 + SENT_INVITATION_TTL_MS).unwrap();
    assert!(holds(&asha, &to_c), "kept up to its TTL");
    asha.maintain(T0 + 3 + SENT_INVITATION_TTL_MS).unwrap();
    assert!(!holds(&asha, &to_c), "expired");
    assert_eq!(asha.sent_invitation_count(), 0);
    let asha = reopen(asha, 1);
    assert_eq!(asha.sent_invitation_count(), 0);
}

/// An invitation whose invitee was removed before joining is no longer needed.
#[test]
fn an_invitation_to_a_removed_invitee_goes() {
    let mut asha = replica(1);
    let (c, _) = asha
        .create_conversation("team", History::Shared, T0)
        .unwrap();
    let d = Identity::from_seed([4; 32]).device_id();
    let inv = *asha
        .add_member(&c, d, false, T0 + 1)
        .unwrap()
        .last()
        .unwrap();
    asha.remove_member(&c, d, T0 + 2).unwrap();
    asha.maintain(T0 + 3).unwrap();
    assert!(!holds(&asha, &inv));
    assert_eq!(asha.sent_invitation_count(), 0);
}

/// A flood of invitations this device seals itself (a script adding thousands of devices)
/// keeps at most `MAX_SENT_INVITATIONS`: the oldest go, the newest stay, across a restart.
#[test]
fn self_issued_invitations_are_bounded_oldest_first() {
    let mut asha = replica(1);
    let extra = 200usize;
    let mut sent: Vec<EnvelopeId> = Vec::new();
    let mut k = 0u32;
    let mut t = T0;
    while sent.len() < MAX_SENT_INVITATIONS + extra {
        let (c, _) = asha
            .create_conversation(&format!("team {k}"), History::Shared, t)
            .unwrap();
        let devices: Vec<DeviceId> = (0..1000u32)
            .map(|i| {
                let mut s = [0u8; 32];
                s[..4].copy_from_slice(&k.to_le_bytes());
                s[4..8].copy_from_slice(&i.to_le_bytes());
                Identity::from_seed(s).device_id()
            })
            .collect();
        t += 1;
        let out = asha.add_members(&c, &devices, false, t).unwrap();
        // The `Add` first, then one invitation per device.
        sent.extend(out.into_iter().skip(1));
        k += 1;
        t += 1;
    }
    assert_eq!(asha.sent_invitation_count(), MAX_SENT_INVITATIONS);
    // The first batch was sealed first (one time for the batch: ties go by id), so the
    // deleted ones all come from it and every later one is kept.
    let gone = sent.len() - MAX_SENT_INVITATIONS;
    assert!(gone < 1000);
    let deleted = sent[..1000].iter().filter(|e| !holds(&asha, e)).count();
    assert_eq!(deleted, gone, "the oldest deleted");
    assert!(sent[1000..].iter().all(|e| holds(&asha, e)), "newer kept");
    asha.store_mut().flush().unwrap();
    let asha = reopen(asha, 1);
    assert_eq!(asha.sent_invitation_count(), MAX_SENT_INVITATIONS);
}
