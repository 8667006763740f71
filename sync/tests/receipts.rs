//! Read receipts and alert acknowledgements between replicas (issue 13): what the sender's
//! roll-call shows, what an attacker cannot make it show, and what receipts cost.

mod common;
use common::{envelopes, text};

use vaarta_sync::envelope::Precedence;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::membership::History;
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::replica::receipts::READ_RECEIPT_INTERVAL_MS;
use vaarta_sync::replica::{CommandError, Replica};
use vaarta_sync::store::MemoryStore;

const T0: u64 = 1_790_000_000_000;

fn sync_all(rs: &mut [Replica<MemoryStore>], now: u64) {
    for _ in 0..2 {
        let snapshot: Vec<Vec<Vec<u8>>> = rs.iter().map(envelopes).collect();
        for (i, r) in rs.iter_mut().enumerate() {
            for (j, envs) in snapshot.iter().enumerate() {
                if i != j {
                    for b in envs {
                        let _ = r.ingest(b, now);
                    }
                }
            }
        }
    }
}

/// Asha (0) with `n - 1` members, all synced.
fn group(n: u8) -> (Vec<Replica<MemoryStore>>, ConversationId) {
    let mut rs: Vec<Replica<MemoryStore>> = (1..=n)
        .map(|i| Replica::open(Identity::from_seed([i; 32]), MemoryStore::new(), [i; 32]).unwrap())
        .collect();
    let (c, _) = rs[0]
        .create_conversation("district control", History::Shared, T0)
        .unwrap();
    for i in 1..n as usize {
        let d = rs[i].device_id();
        rs[0].add_member(&c, d, false, T0 + i as u64).unwrap();
    }
    sync_all(&mut rs, T0 + 100);
    (rs, c)
}

fn alert(body: &str, precedence: Precedence) -> Draft {
    Draft {
        body: body.into(),
        precedence,
        ..Draft::default()
    }
}

/// (acknowledged, read) per member, in device order, as `r`'s roll-call shows them.
fn calls(
    r: &mut Replica<MemoryStore>,
    c: &ConversationId,
    m: &MessageId,
) -> Vec<(vaarta_sync::ids::DeviceId, bool, bool)> {
    r.rollcall(c, m)
        .unwrap()
        .1
        .into_iter()
        .map(|e| (e.device, e.acknowledged.is_some(), e.read))
        .collect()
}

#[test]
fn the_sender_sees_who_acknowledged_who_read_and_who_did_neither() {
    let (mut rs, c) = group(4);
    let (m, _) = rs[0]
        .send_message(
            &c,
            alert("flood at the bridge", Precedence::Flash),
            T0 + 200,
        )
        .unwrap();
    sync_all(&mut rs, T0 + 300);
    // Bhavesh acknowledges; Chitra only reads; Deepa does nothing.
    rs[1].acknowledge(&c, &m, T0 + 400).unwrap();
    assert!(rs[2].mark_read(&c, &m).unwrap());
    rs[2].seal_staged(T0 + 400).unwrap();
    sync_all(&mut rs, T0 + 500);
    let (info, entries) = rs[0].rollcall(&c, &m).unwrap();
    assert_eq!(info.view.body, "flood at the bridge");
    assert_eq!(entries.len(), 3, "every member but the sender");
    let by = |i: usize| {
        let d = rs[i].device_id();
        entries.iter().find(|e| e.device == d).unwrap().clone()
    };
    let (b, ch, d) = (by(1), by(2), by(3));
    assert!(b.acknowledged.is_some() && b.read, "{b:?}");
    assert!(b.acknowledged.unwrap().ms >= T0 + 400);
    assert!(ch.acknowledged.is_none() && ch.read, "{ch:?}");
    assert!(d.acknowledged.is_none() && !d.read, "{d:?}");
    // Every replica shows the same roll-call (it is in the signed pages).
    let want = calls(&mut rs[0], &c, &m);
    for r in rs.iter_mut().skip(1) {
        assert_eq!(calls(r, &c, &m), want);
    }
    // A watermark on a later message, or a later page, covers this one.
    let (later, _) = rs[0]
        .send_message(&c, text("water rising"), T0 + 600)
        .unwrap();
    sync_all(&mut rs, T0 + 700);
    rs[3].mark_read(&c, &later).unwrap();
    rs[3].seal_staged(T0 + 700).unwrap();
    sync_all(&mut rs, T0 + 800);
    assert!(calls(&mut rs[0], &c, &m).iter().all(|(_, _, read)| *read));
}

#[test]
fn acknowledgements_only_for_alerts_of_others_and_once() {
    let (mut rs, c) = group(3);
    let (routine, _) = rs[0]
        .send_message(&c, text("tea at four"), T0 + 200)
        .unwrap();
    let (imm, _) = rs[0]
        .send_message(&c, alert("road closed", Precedence::Immediate), T0 + 210)
        .unwrap();
    sync_all(&mut rs, T0 + 300);
    assert!(matches!(
        rs[1].acknowledge(&c, &routine, T0 + 400),
        Err(CommandError::Rule(_))
    ));
    assert!(matches!(
        rs[0].acknowledge(&c, &imm, T0 + 400),
        Err(CommandError::Rule(_))
    ));
    rs[1].acknowledge(&c, &imm, T0 + 400).unwrap();
    assert!(matches!(
        rs[1].acknowledge(&c, &imm, T0 + 410),
        Err(CommandError::Rule(_))
    ));
    let made_up = MessageId {
        page: 0,
        key: vaarta_sync::page::message_key(
            vaarta_sync::hlc::Hlc {
                ms: T0 + 5,
                counter: 0,
            },
            &[9; 16],
        ),
    };
    assert!(matches!(
        rs[1].acknowledge(&c, &made_up, T0 + 420),
        Err(CommandError::NoSuchMessage(_))
    ));
    // A device that is not a member cannot acknowledge at all.
    let mut outsider =
        Replica::open(Identity::from_seed([50; 32]), MemoryStore::new(), [50; 32]).unwrap();
    assert!(outsider.acknowledge(&c, &imm, T0 + 430).is_err());
    sync_all(&mut rs, T0 + 500);
    let got = calls(&mut rs[0], &c, &imm);
    assert_eq!(got.iter().filter(|(_, acked, _)| *acked).count(), 1);
}

#[test]
fn an_ex_members_receipts_after_its_removal_do_not_count() {
    let (mut rs, c) = group(3);
    let (m, _) = rs[0]
        .send_message(&c, alert("evacuate ward 4", Precedence::Flash), T0 + 200)
        .unwrap();
    sync_all(&mut rs, T0 + 300);
    let mallory = rs[2].device_id();
    rs[0].remove_member(&c, mallory, T0 + 400).unwrap();
    // Mallory, not yet told, acknowledges (and reads) after her removal.
    let ack = rs[2].acknowledge(&c, &m, T0 + 410).unwrap();
    rs[2].mark_read(&c, &m).unwrap();
    let read = rs[2].seal_staged(T0 + 410).unwrap();
    assert_eq!(read.len(), 1);
    let bytes = |id| {
        use vaarta_sync::store::testing::FindEnvelope;
        rs[2].store().find_envelope(&id).unwrap().unwrap()
    };
    let (ack_bytes, read_bytes) = (bytes(ack), bytes(read[0]));
    // Taken as late writes are (every replica holds the same changes whether it learnt of
    // the removal before or after they came; bounded by the late-change ceiling past which
    // they are refused, docs/security.md), never counted.
    for b in [&ack_bytes, &read_bytes] {
        let r = rs[0].ingest(b, T0 + 500);
        assert!(r.is_ok(), "{r:?}");
    }
    let got = rs[0].rollcall(&c, &m).unwrap().1;
    assert!(got.iter().all(|e| e.device != mallory), "{got:?}");
    assert!(got.iter().all(|e| e.acknowledged.is_none() && !e.read));
    // Once told, her device refuses to write any.
    sync_all(&mut rs, T0 + 600);
    assert_eq!(
        rs[2].acknowledge(&c, &m, T0 + 700),
        Err(CommandError::NotMember)
    );
    assert_eq!(rs[2].mark_read(&c, &m), Err(CommandError::NotMember));
}

#[test]
fn reading_a_busy_conversation_costs_one_watermark_per_interval() {
    let (mut rs, c) = group(2);
    let mut ids = Vec::new();
    for i in 0..50u64 {
        let (m, _) = rs[0]
            .send_message(&c, text(&format!("report {i}")), T0 + 200 + i)
            .unwrap();
        ids.push(m);
    }
    sync_all(&mut rs, T0 + 300);
    // Bhavesh reads them one by one, flushing after each (as the node does per batch).
    let mut sealed = 0;
    for (i, m) in ids.iter().enumerate() {
        rs[1].mark_read(&c, m).unwrap();
        sealed += rs[1].seal_staged(T0 + 400 + i as u64 * 100).unwrap().len();
    }
    assert_eq!(sealed, 1, "one watermark within the interval");
    assert!(rs[1].read_due().is_some(), "the newest one is still owed");
    let next = T0 + 400 + READ_RECEIPT_INTERVAL_MS;
    assert_eq!(rs[1].read_due(), Some(next));
    assert_eq!(rs[1].seal_staged(next).unwrap().len(), 1);
    assert_eq!(rs[1].read_due(), None);
    sync_all(&mut rs, next + 100);
    assert!(calls(&mut rs[0], &c, ids.last().unwrap())[0].2);
    // Owed watermarks ride free with the reader's own message on the page.
    let (m, _) = rs[0]
        .send_message(&c, text("one more"), next + 200)
        .unwrap();
    sync_all(&mut rs, next + 300);
    rs[1].mark_read(&c, &m).unwrap();
    rs[1].stage_message(&c, text("seen"), next + 400).unwrap();
    assert_eq!(rs[1].seal_staged(next + 400).unwrap().len(), 1);
    assert_eq!(rs[1].read_due(), None);
    sync_all(&mut rs, next + 500);
    assert!(calls(&mut rs[0], &c, &m)[0].2);
}

#[test]
fn read_receipts_can_be_turned_off_per_conversation() {
    let (mut rs, c) = group(2);
    let (m, _) = rs[0].send_message(&c, text("hello"), T0 + 200).unwrap();
    sync_all(&mut rs, T0 + 300);
    assert!(rs[1].read_receipts(&c));
    rs[1].set_read_receipts(&c, false).unwrap();
    assert!(!rs[1].read_receipts(&c));
    assert!(!rs[1].mark_read(&c, &m).unwrap());
    assert!(rs[1].seal_staged(T0 + 400).unwrap().is_empty());
    sync_all(&mut rs, T0 + 500);
    assert!(!calls(&mut rs[0], &c, &m)[0].2);
    // The setting survives a restart (it is stored), and can be turned on again.
    let st = rs.remove(1).into_store();
    let mut b = Replica::open(Identity::from_seed([2; 32]), st, [2; 32]).unwrap();
    assert!(!b.read_receipts(&c));
    b.set_read_receipts(&c, true).unwrap();
    assert!(b.mark_read(&c, &m).unwrap());
}

/// What a receipt costs on the wire and in the store: its envelope's bytes (printed; the
/// bound is the storage budget of ~400 B per message, docs/performance.md, which one
/// receipt per member per *alert* and one watermark per member per 30 s must not double).
#[test]
fn a_receipt_envelope_is_small() {
    use vaarta_sync::store::testing::FindEnvelope;
    let (mut rs, c) = group(3);
    let (m, msg_env) = rs[0]
        .send_message(
            &c,
            alert("flood at the bridge", Precedence::Flash),
            T0 + 200,
        )
        .unwrap();
    sync_all(&mut rs, T0 + 300);
    let ack = rs[1].acknowledge(&c, &m, T0 + 400).unwrap();
    rs[2].mark_read(&c, &m).unwrap();
    let read = rs[2].seal_staged(T0 + 400).unwrap()[0];
    let len = |r: &Replica<MemoryStore>, id| r.store().find_envelope(&id).unwrap().unwrap().len();
    let (msg_len, ack_len, read_len) = (len(&rs[0], msg_env), len(&rs[1], ack), len(&rs[2], read));
    println!(
        "envelope bytes: message {msg_len}, acknowledgement {ack_len}, read watermark {read_len}"
    );
    assert!(ack_len < 400 && read_len < 400, "{ack_len} {read_len}");
}
