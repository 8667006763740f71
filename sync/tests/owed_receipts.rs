//! Receipts owed (issue 9, review of protocol 5): whatever path applies an envelope that its
//! author did not hear "stored" about, the author is owed a receipt; nothing else is.

mod common;

use common::{envelopes, replica, text};
use vaarta_sync::envelope::Envelope;
use vaarta_sync::ids::{DeviceId, EnvelopeId};
use vaarta_sync::membership::History;
use vaarta_sync::replica::{Ingested, InvitePolicy};
use vaarta_sync::store::testing::FindEnvelope;

const T0: u64 = 1_790_000_000_000;

fn id_of(b: &[u8]) -> EnvelopeId {
    Envelope::decode(b).unwrap().id()
}

/// Item 2, second half: a stranger's invitation is held, and the conversation's envelopes
/// that arrive meanwhile are carried unread (both acknowledged as deferred). Once the user
/// accepts, the invitation and every carried envelope read owe their author a receipt.
/// Before, accepting owed nothing (only envelopes read again from the pending set or the
/// unreadable set were owed), so the author showed them undelivered for good.
#[test]
fn a_held_invitation_and_the_envelopes_carried_before_it_was_accepted_owe_receipts() {
    let mut a = replica(1);
    let mut b = replica(2);
    b.set_invite_policy(InvitePolicy::HoldStrangers);
    let (c, _) = a.create_conversation("team", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    a.send_message(&c, text("before you accepted"), T0 + 1)
        .unwrap();
    a.seal_staged(T0 + 1).unwrap();
    let from_a = Some(a.device_id());
    let all = envelopes(&a);
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    for e in &all {
        let got = b.ingest_from(e, from_a, T0 + 2).unwrap();
        kinds.push(got.clone());
        if matches!(got, Ingested::Carried | Ingested::InvitationHeld(_)) {
            assert!(b.is_waiting(&id_of(e)), "deferred: {got:?}");
            ids.push(id_of(e));
        }
    }
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, Ingested::InvitationHeld(_))),
        "{kinds:?}"
    );
    assert!(kinds.contains(&Ingested::Carried), "{kinds:?}");
    assert_eq!(b.owed_receipt_count(), 0, "nothing read yet");
    b.accept_invitation(&c, T0 + 3).unwrap();
    let got: Vec<String> = b
        .messages(&c, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.view.body)
        .collect();
    assert_eq!(got, vec!["before you accepted"]);
    let mut owed = b.owed_receipts(&a.device_id(), 100);
    owed.sort();
    ids.sort();
    assert_eq!(
        owed, ids,
        "every envelope that waited is owed to its author"
    );
    assert!(
        ids.len() >= 3,
        "the invitation, the membership, the message"
    );
}

/// Attacker's view of the owed set: a stranger (or anyone) pushing envelopes that do not
/// verify under a conversation tag, or carried envelopes nobody here can read, creates no
/// owed receipt; a member's own envelope pushed by the member itself owes none either.
#[test]
fn only_envelopes_applied_here_owe_receipts() {
    let mut a = replica(1);
    let mut b = replica(2);
    let (c, _) = a.create_conversation("team", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    let from_a = Some(a.device_id());
    // In one batch (store order may put an operation before its parent: it is woken within
    // the batch, and acknowledged as stored).
    let all = envelopes(&a);
    let refs: Vec<&[u8]> = all.iter().map(|e| e.as_slice()).collect();
    b.ingest_batch_from(&refs, &vec![from_a; refs.len()], T0 + 1);
    assert_eq!(
        b.owed_receipt_count(),
        0,
        "its author pushed each: acknowledged as stored"
    );
    // A stranger forges envelopes under the tag (random bytes after a valid message's
    // header) and pushes carried junk: refused or carried, never owed.
    let (_, m) = a.send_message(&c, text("hi"), T0 + 2).unwrap();
    let good = a.store().find_envelope(&m).unwrap().unwrap();
    let stranger = Some(DeviceId([66; 32]));
    for k in 0..50u8 {
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1 - (k as usize % 20)] ^= k | 1;
        let _ = b.ingest_from(&bad, stranger, T0 + 3);
    }
    assert_eq!(b.owed_receipt_count(), 0);
    // The real one, relayed by the stranger: applied, owed to its author (not the relay).
    assert_eq!(
        b.ingest_from(&good, stranger, T0 + 4).unwrap(),
        Ingested::Applied(c)
    );
    assert_eq!(b.owed_receipts(&a.device_id(), 10), vec![m]);
    assert!(b.owed_receipts(&DeviceId([66; 32]), 10).is_empty());
}
