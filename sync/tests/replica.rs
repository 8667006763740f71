//! Replicas exchanging envelopes directly (no network): membership, keys, convergence under
//! any delivery order, and every rejection the sync core promises.

mod common;
use common::{bodies, envelopes, replica, text};
use proptest::prelude::*;
use vaarta_sync::codec::DecodeError;
use vaarta_sync::envelope::{self, Envelope, Header, Kind, OpenError, Precedence};
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId, EpochId};
use vaarta_sync::limits::MAX_LATE_CHANGES_PER_PAGE;
use vaarta_sync::membership::History;
use vaarta_sync::page::RuleError;
use vaarta_sync::replica::{IngestError, Ingested, Replica};
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;
const SALT: usize = envelope::SALT_LEN;

/// Delivers everything `from` holds to `to` until nothing new arrives.
fn sync(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
    for b in envelopes(from) {
        let _ = to.ingest(&b, now);
    }
}

/// A conversation made by replica 1 with the others as members, all synced.
fn group(n: u8) -> (Vec<Replica<MemoryStore>>, ConversationId) {
    let mut rs: Vec<Replica<MemoryStore>> = (1..=n).map(replica).collect();
    let (c, _) = rs[0]
        .create_conversation("बाढ़ नियंत्रण कक्ष", History::Shared, T0)
        .unwrap();
    for i in 1..n as usize {
        let d = rs[i].device_id();
        rs[0].add_member(&c, d, false, T0 + i as u64).unwrap();
    }
    for i in 1..n as usize {
        let (a, b) = rs.split_at_mut(i);
        sync(&a[0], &mut b[0], T0 + 100);
    }
    (rs, c)
}

#[test]
fn add_by_device_id_and_talk() {
    let (mut rs, c) = group(3);
    for r in &rs {
        let info = r.info(&c).unwrap();
        assert!(info.me_member, "{:?}", r.device_id());
        assert_eq!(info.members.len(), 3);
        assert_eq!(info.title, "बाढ़ नियंत्रण कक्ष");
    }
    rs[1]
        .send_message(&c, text("पानी बढ़ रहा है — water rising at ghat 3"), T0 + 200)
        .unwrap();
    rs[2]
        .send_message(&c, text("நிவாரண முகாமை அடைந்தோம்"), T0 + 300)
        .unwrap();
    let snapshot: Vec<Vec<Vec<u8>>> = rs.iter().map(envelopes).collect();
    for (i, r) in rs.iter_mut().enumerate() {
        for (j, envs) in snapshot.iter().enumerate() {
            if i != j {
                for b in envs {
                    let _ = r.ingest(b, T0 + 400);
                }
            }
        }
    }
    let want = vec![
        "पानी बढ़ रहा है — water rising at ghat 3".to_string(),
        "நிவாரண முகாமை அடைந்தோம்".to_string(),
    ];
    let d0 = rs[0].state_digest(&c).unwrap();
    for r in rs.iter_mut() {
        assert_eq!(bodies(r, &c), want);
        assert_eq!(r.state_digest(&c).unwrap(), d0);
    }
}

#[test]
fn edits_deletes_and_reactions_merge() {
    let (mut rs, c) = group(2);
    let (m, _) = rs[0]
        .send_message(&c, text("convoy at 5"), T0 + 200)
        .unwrap();
    let (a, b) = rs.split_at_mut(1);
    sync(&a[0], &mut b[0], T0 + 300);
    // Concurrent: author edits, the other reacts.
    a[0].edit_message(&c, &m, "convoy at 6", T0 + 400).unwrap();
    b[0].react(&c, &m, Some("👍"), T0 + 400).unwrap();
    sync(&a[0], &mut b[0], T0 + 500);
    sync(&b[0], &mut a[0], T0 + 500);
    let ma = a[0].messages(&c, 10).unwrap();
    let mb = b[0].messages(&c, 10).unwrap();
    assert_eq!(ma[0].view, mb[0].view);
    assert_eq!(ma[0].view.body, "convoy at 6");
    assert_eq!(ma[0].view.reactions.len(), 1);
    // Only the author can delete.
    assert!(b[0].delete_message(&c, &m, T0 + 600).is_err());
    a[0].delete_message(&c, &m, T0 + 600).unwrap();
    sync(&a[0], &mut b[0], T0 + 700);
    assert!(b[0].messages(&c, 10).unwrap()[0].view.deleted);
}

#[test]
fn removed_member_cannot_read_new_messages() {
    let (mut rs, c) = group(3);
    let mallory = rs[2].device_id();
    rs[0].remove_member(&c, mallory, T0 + 1000).unwrap();
    rs[0]
        .send_message(&c, text("after removal"), T0 + 1100)
        .unwrap();
    let envs = envelopes(&rs[0]);
    for b in &envs {
        let _ = rs[1].ingest(b, T0 + 1200);
        let _ = rs[2].ingest(b, T0 + 1200);
    }
    assert_eq!(bodies(&mut rs[1], &c), vec!["after removal"]);
    assert!(bodies(&mut rs[2], &c).is_empty());
    assert!(!rs[2].info(&c).unwrap().me_member);
    // The new message's epoch is one Mallory never received.
    let new_env = envs
        .iter()
        .map(|b| Envelope::decode(b).unwrap())
        .find(|e| e.header().kind == Kind::Change)
        .unwrap();
    assert!(vaarta_sync::replica::open_with(&rs[2], &new_env).is_err());
    assert!(vaarta_sync::replica::open_with(&rs[1], &new_env).is_ok());
}

#[test]
fn removed_member_writing_with_old_key_is_hidden_then_refused() {
    let (mut rs, c) = group(3);
    // Mallory writes one message while still a member; everyone has it.
    rs[2].send_message(&c, text("before"), T0 + 500).unwrap();
    let m_envs = envelopes(&rs[2]);
    for b in &m_envs {
        let _ = rs[0].ingest(b, T0 + 600);
        let _ = rs[1].ingest(b, T0 + 600);
    }
    let mallory = rs[2].device_id();
    rs[0].remove_member(&c, mallory, T0 + 1000).unwrap();
    // Mallory has not heard of the removal and writes with the old key.
    let (_, late) = rs[2]
        .send_message(&c, text("after, old key"), T0 + 1100)
        .unwrap();
    let late_bytes = rs[2].store().find_envelope(&late).unwrap().unwrap();
    sync(&rs[0].clone_envs(), &mut rs[1], T0 + 1200);
    // Taken (every replica takes it, whenever it learnt of the removal), never shown.
    assert_eq!(
        rs[1].ingest(&late_bytes, T0 + 1300),
        Ok(Ingested::Applied(c))
    );
    assert_eq!(bodies(&mut rs[1], &c), vec!["before"]);
    // Past MAX_LATE_CHANGES_PER_PAGE late changes in the page, they are refused, and
    // remembered as refused.
    let mut last = None;
    for i in 1..=MAX_LATE_CHANGES_PER_PAGE {
        let (_, e) = rs[2]
            .send_message(&c, text(&format!("late {i}")), T0 + 1400 + i)
            .unwrap();
        last = Some(e);
    }
    let late: Vec<Vec<u8>> = envelopes(&rs[2]);
    let past = rs[2]
        .store()
        .find_envelope(&last.unwrap())
        .unwrap()
        .unwrap();
    for b in &late {
        if *b != past {
            let _ = rs[1].ingest(b, T0 + 1500);
        }
    }
    assert_eq!(
        rs[1].ingest(&past, T0 + 1600),
        Err(IngestError::AuthorRemoved)
    );
    assert_eq!(rs[1].ingest(&past, T0 + 1700), Ok(Ingested::Duplicate));
    assert_eq!(bodies(&mut rs[1], &c), vec!["before"]);
}

trait CloneEnvs {
    fn clone_envs(&self) -> Replica<MemoryStore>;
}

impl CloneEnvs for Replica<MemoryStore> {
    /// A throwaway replica holding the same envelopes (to use `sync` while borrowing).
    fn clone_envs(&self) -> Replica<MemoryStore> {
        let mut st = MemoryStore::new();
        for b in envelopes(self) {
            let e = Envelope::decode(&b).unwrap();
            st.put_envelope(&e.header().tag, &e.id(), &b).unwrap();
        }
        Replica::open(Identity::from_seed([200; 32]), st, [0; 32]).unwrap()
    }
}

#[test]
fn non_admin_cannot_add_or_remove() {
    let (mut rs, c) = group(3);
    let d = rs[2].device_id();
    assert!(rs[1].remove_member(&c, d, T0 + 100).is_err());
    assert!(
        rs[1]
            .add_member(
                &c,
                Identity::from_seed([77; 32]).device_id(),
                false,
                T0 + 100
            )
            .is_err()
    );
}

#[test]
fn forged_author_is_refused() {
    let (mut rs, c) = group(3);
    // Mallory (a member, so she has the key) seals a change claiming to be signed by Alice:
    // she can put Alice's key in the signer field but cannot make Alice's signature.
    let (_, eid) = rs[2]
        .send_message(&c, text("I am Alice"), T0 + 100)
        .unwrap();
    let bytes = rs[2].store().find_envelope(&eid).unwrap().unwrap();
    let env = Envelope::decode(&bytes).unwrap();
    let opened = vaarta_sync::replica::open_with(&rs[2], &env).unwrap();
    let alice = rs[0].device_id();
    let key = *rs[2]
        .conversation(&c)
        .unwrap()
        .key(&env.header().epoch)
        .unwrap();
    let forged = forge(
        env.header(),
        &key,
        &c,
        alice,
        &opened.payload,
        &Identity::from_seed([3; 32]),
    );
    let r = rs[1].ingest(&forged, T0 + 200);
    assert!(
        matches!(r, Err(IngestError::Open(OpenError::Signature(_)))),
        "{r:?}"
    );
    assert!(bodies(&mut rs[1], &c).is_empty());
}

/// Builds an envelope whose inner signer field says `claimed` but which `actual` signs.
fn forge(
    h: &Header,
    key: &[u8; 32],
    c: &ConversationId,
    claimed: DeviceId,
    payload: &[u8],
    actual: &Identity,
) -> Vec<u8> {
    // Seal normally as `actual`, then decrypt, swap the signer field, re-encrypt.
    let env = envelope::seal(
        h,
        key,
        c,
        actual,
        Hlc { ms: T0, counter: 0 },
        payload,
        [1; SALT],
    );
    let bytes = env.bytes().to_vec();
    let hl = header_len(h);
    let salt: [u8; SALT] = bytes[hl..hl + SALT].try_into().unwrap();
    let mut nonce = [0u8; 24];
    nonce[..SALT].copy_from_slice(&salt);
    let mut ad = bytes[..hl].to_vec();
    ad.extend_from_slice(&c.0);
    let mut inner = vaarta_sync::crypto::aead_open(key, &nonce, &ad, &bytes[hl + SALT..]).unwrap();
    // Change envelopes name the signer by the first bytes of its key.
    let n = vaarta_sync::envelope::SIGNER_HINT_LEN;
    inner[..n].copy_from_slice(&claimed.0[..n]);
    let ct = vaarta_sync::crypto::aead_seal(key, &nonce, &ad, &inner);
    [&bytes[..hl + SALT], &ct[..]].concat()
}

fn header_len(h: &Header) -> usize {
    let mut w = vaarta_sync::codec::Writer::new();
    h.encode(&mut w);
    w.len()
}

#[test]
fn actor_not_bound_to_signer_is_refused() {
    let (mut rs, c) = group(3);
    // Alice writes a message; Mallory re-signs Alice's change (Alice's actor) with her own key.
    let (_, eid) = rs[0]
        .send_message(&c, text("orders from Alice"), T0 + 100)
        .unwrap();
    let bytes = rs[0].store().find_envelope(&eid).unwrap().unwrap();
    let env = Envelope::decode(&bytes).unwrap();
    let opened = vaarta_sync::replica::open_with(&rs[0], &env).unwrap();
    let key = *rs[0]
        .conversation(&c)
        .unwrap()
        .key(&env.header().epoch)
        .unwrap();
    let mallory = Identity::from_seed([3; 32]);
    let resigned = envelope::seal(
        env.header(),
        &key,
        &c,
        &mallory,
        opened.hlc,
        &opened.payload,
        [9; SALT],
    );
    let r = rs[1].ingest(resigned.bytes(), T0 + 200);
    // The wire form of a change has no actor: it is restored as the signer's (Mallory's), so
    // the change can only ever be Mallory's, and its message key (Alice's) gives it away.
    assert_eq!(
        r,
        Err(IngestError::Rule(RuleError::Forbidden(
            "message key of another author"
        )))
    );
    assert!(bodies(&mut rs[1], &c).is_empty());
}

#[test]
fn replay_into_another_conversation_is_refused() {
    let mut a = replica(1);
    let mut b = replica(2);
    let (c1, _) = a.create_conversation("one", History::Shared, T0).unwrap();
    let (c2, _) = a.create_conversation("two", History::Shared, T0).unwrap();
    a.add_member(&c1, b.device_id(), false, T0).unwrap();
    a.add_member(&c2, b.device_id(), false, T0).unwrap();
    let (_, eid) = a.send_message(&c1, text("for one only"), T0 + 10).unwrap();
    sync(&a, &mut b, T0 + 20);
    assert_eq!(bodies(&mut b, &c1), vec!["for one only"]);
    let bytes = a.store().find_envelope(&eid).unwrap().unwrap();
    // 1. Same bytes under the other conversation's tag (and its epoch): the AEAD fails.
    //    With only the tag moved, no key matches the epoch: it waits and is never shown.
    let tag2 = a.conversation(&c2).unwrap().tag;
    let mut moved = bytes.clone();
    moved[2..18].copy_from_slice(&tag2.0);
    assert!(matches!(
        b.ingest(&moved, T0 + 30),
        Ok(Ingested::Pending(..))
    ));
    let epoch2 = a.conversation(&c2).unwrap().sending_epoch().unwrap().0;
    moved[18..22].copy_from_slice(&epoch2.0);
    assert_eq!(
        b.ingest(&moved, T0 + 30),
        Err(IngestError::Open(OpenError::Decrypt))
    );
    // 2. A member of both re-encrypts the signed content for conversation two: the signature
    //    covers conversation one's id, so it fails.
    let env = Envelope::decode(&bytes).unwrap();
    let opened = vaarta_sync::replica::open_with(&a, &env).unwrap();
    let conv2 = a.conversation(&c2).unwrap();
    let (epoch2, key2) = conv2.sending_epoch().unwrap();
    let key1 = *a
        .conversation(&c1)
        .unwrap()
        .key(&env.header().epoch)
        .unwrap();
    let h2 = Header {
        tag: tag2,
        epoch: epoch2,
        ..*env.header()
    };
    // Rebuild the exact signed inner under c2's key by decrypting and re-encrypting.
    let hl = header_len(env.header());
    let mut nonce = [0u8; 24];
    nonce[..SALT].copy_from_slice(&bytes[hl..hl + SALT]);
    let mut ad1 = bytes[..hl].to_vec();
    ad1.extend_from_slice(&c1.0);
    let inner = vaarta_sync::crypto::aead_open(&key1, &nonce, &ad1, &bytes[hl + SALT..]).unwrap();
    let mut w = vaarta_sync::codec::Writer::new();
    h2.encode(&mut w);
    let mut ad2 = w.as_slice().to_vec();
    ad2.extend_from_slice(&c2.0);
    let ct = vaarta_sync::crypto::aead_seal(&key2, &nonce, &ad2, &inner);
    let replayed = [w.as_slice(), &nonce[..SALT], &ct].concat();
    let r = b.ingest(&replayed, T0 + 40);
    assert!(
        matches!(r, Err(IngestError::Open(OpenError::Signature(_)))),
        "{r:?}"
    );
    assert!(bodies(&mut b, &c2).is_empty());
    let _ = opened;
}

#[test]
fn tampered_truncated_oversize_and_noncanonical_are_refused() {
    let (mut rs, c) = group(2);
    let (_, eid) = rs[0].send_message(&c, text("x"), T0 + 10).unwrap();
    let bytes = rs[0].store().find_envelope(&eid).unwrap().unwrap();
    // Tampered ciphertext.
    let mut t = bytes.clone();
    let n = t.len();
    t[n - 5] ^= 0x40;
    assert_eq!(
        rs[1].ingest(&t, T0),
        Err(IngestError::Open(OpenError::Decrypt))
    );
    // Truncated.
    assert!(matches!(
        rs[1].ingest(&bytes[..40], T0),
        Err(IngestError::Decode(DecodeError::Truncated(_)))
    ));
    assert!(matches!(rs[1].ingest(&[], T0), Err(IngestError::Decode(_))));
    // Oversize.
    let mut big = bytes.clone();
    big.resize(vaarta_sync::limits::MAX_ENVELOPE_BYTES + 1, 0);
    assert!(matches!(
        rs[1].ingest(&big, T0),
        Err(IngestError::Decode(DecodeError::TooLarge { .. }))
    ));
    // Non-canonical: an expiry varint padded with a zero continuation byte.
    let mut w = vaarta_sync::codec::Writer::new();
    Header {
        kind: Kind::Change,
        precedence: Precedence::Routine,
        tag: rs[0].conversation(&c).unwrap().tag,
        epoch: EpochId([0; 4]),
        expiry: Some(5),
    }
    .encode(&mut w);
    let mut nc = w.into_vec();
    let last = nc.len() - 1;
    nc[last] |= 0x80;
    nc.push(0);
    nc.extend_from_slice(&[0u8; 200]);
    assert!(matches!(
        rs[1].ingest(&nc, T0),
        Err(IngestError::Decode(DecodeError::NonCanonical(_)))
    ));
    // The good one still applies after all that.
    assert!(matches!(
        rs[1].ingest(&bytes, T0 + 20),
        Ok(Ingested::Applied(_))
    ));
    assert_eq!(bodies(&mut rs[1], &c), vec!["x"]);
}

#[test]
fn late_member_reads_shared_history_and_from_join_does_not() {
    for (history, expect) in [(History::Shared, 2usize), (History::FromJoin, 1)] {
        let mut a = replica(1);
        let mut b = replica(2);
        let (c, _) = a.create_conversation("h", history, T0).unwrap();
        a.send_message(&c, text("old"), T0 + 1).unwrap();
        a.add_member(&c, b.device_id(), false, T0 + 2).unwrap();
        a.send_message(&c, text("new"), T0 + 3).unwrap();
        sync(&a, &mut b, T0 + 10);
        assert_eq!(b.messages(&c, 10).unwrap().len(), expect, "{history:?}");
    }
}

#[test]
fn restart_keeps_everything() {
    let (mut rs, c) = group(2);
    for i in 0..300 {
        rs[0]
            .send_message(&c, text(&format!("m{i}")), T0 + 100 + i)
            .unwrap();
    }
    let (a, b) = rs.split_at_mut(1);
    sync(&a[0], &mut b[0], T0 + 1000);
    let mut bb = std::mem::replace(&mut b[0], replica(99));
    bb.store_mut().flush().unwrap();
    let store = bb.into_store();
    let mut reopened = Replica::open(Identity::from_seed([2; 32]), store, [5; 32]).unwrap();
    let msgs = reopened.messages(&c, 1000).unwrap();
    assert_eq!(msgs.len(), 300);
    assert_eq!(msgs[299].view.body, "m299");
    reopened
        .send_message(&c, text("after restart"), T0 + 2000)
        .unwrap();
    sync(&reopened, &mut a[0], T0 + 3000);
    assert_eq!(a[0].messages(&c, 1).unwrap()[0].view.body, "after restart");
}

#[test]
fn pages_roll_over_and_stay_bounded() {
    let (mut rs, c) = group(2);
    let n = vaarta_sync::limits::PAGE_CAPACITY as u64 * 2 + 10;
    for i in 0..n {
        rs[0]
            .stage_message(&c, text(&format!("m{i}")), T0 + i)
            .unwrap();
        if i % 50 == 49 {
            rs[0].seal_staged(T0 + i).unwrap();
        }
    }
    rs[0].seal_staged(T0 + n).unwrap();
    // A page fills to its capacity plus at most one staged batch (50 here).
    let cap = vaarta_sync::limits::PAGE_CAPACITY as u64;
    let pages = rs[0].info(&c).unwrap().pages as u64;
    assert!(
        pages >= n / (cap + 50) && pages <= n / cap + 1,
        "{pages} pages"
    );
    let (a, b) = rs.split_at_mut(1);
    sync(&a[0], &mut b[0], T0 + n + 1);
    assert_eq!(b[0].messages(&c, 5000).unwrap().len(), n as usize);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    /// N replicas receiving the same envelopes in random order, with duplicates and losses
    /// (repaired by a final full exchange), converge to identical state.
    #[test]
    fn replicas_converge_under_any_delivery(seed in any::<u64>(), drop_pct in 0u64..50) {
        let (mut rs, c) = group(4);
        let mut x = seed | 1;
        let mut rnd = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        // Everyone writes, edits and reacts while exchanging lossy, shuffled subsets.
        for round in 0..6u64 {
            for (i, r) in rs.iter_mut().enumerate() {
                let now = T0 + 1000 + round * 100 + i as u64;
                let (m, _) = r.send_message(&c, text(&format!("r{round} from {i}")), now).unwrap();
                if rnd() % 3 == 0 {
                    r.edit_message(&c, &m, &format!("r{round} from {i} (edited)"), now + 1).unwrap();
                }
                if rnd() % 4 == 0 {
                    r.react(&c, &m, Some("✅"), now + 2).unwrap();
                }
            }
            let all: Vec<Vec<Vec<u8>>> = rs.iter().map(envelopes).collect();
            for (i, r) in rs.iter_mut().enumerate() {
                let mut inbox: Vec<&Vec<u8>> = all.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, e)| e.iter()).collect();
                for k in (1..inbox.len()).rev() {
                    inbox.swap(k, (rnd() % (k as u64 + 1)) as usize);
                }
                // Half the replicas take envelopes one by one, half in batches (with duplicates).
                let mut batch: Vec<&[u8]> = Vec::new();
                for b in inbox {
                    if rnd() % 100 < drop_pct { continue; }
                    if i % 2 == 0 {
                        let _ = r.ingest(b, T0 + 5000);
                        if rnd() % 5 == 0 { let _ = r.ingest(b, T0 + 5000); }
                    } else {
                        batch.push(b);
                        if rnd() % 5 == 0 { batch.push(b); }
                    }
                }
                for chunk in batch.chunks(1 + (rnd() % 40) as usize) {
                    for res in r.ingest_batch(chunk, T0 + 5000) {
                        prop_assert!(res.result.is_ok(), "{res:?}");
                    }
                }
            }
        }
        // Repair: a full exchange.
        let all: Vec<Vec<u8>> = rs.iter().flat_map(envelopes).collect();
        for r in rs.iter_mut() {
            for b in &all { let _ = r.ingest(b, T0 + 9000); }
        }
        let d0 = rs[0].state_digest(&c).unwrap();
        let m0: Vec<_> = rs[0].messages(&c, 1000).unwrap().into_iter().map(|m| m.view).collect();
        prop_assert_eq!(m0.len(), 24);
        for r in rs.iter_mut().skip(1) {
            prop_assert_eq!(r.state_digest(&c).unwrap(), d0);
            let m: Vec<_> = r.messages(&c, 1000).unwrap().into_iter().map(|m| m.view).collect();
            prop_assert_eq!(&m, &m0);
            prop_assert_eq!(r.pending_len(), 0);
        }
    }
}

#[test]
fn envelope_ids_are_hashes_of_exact_bytes() {
    let (mut rs, c) = group(1);
    let (_, eid) = rs[0].send_message(&c, text("x"), T0).unwrap();
    let bytes = rs[0].store().find_envelope(&eid).unwrap().unwrap();
    assert_eq!(EnvelopeId(*blake3::hash(&bytes).as_bytes()), eid);
}

/// Changes carry no separate timestamp: the receiver learns the author's clock from the
/// message keys, so a reply written on a device whose clock is behind still sorts after the
/// message it answers (whether it arrived alone or in a batch).
#[test]
fn replies_sort_after_what_they_answer_despite_a_slow_clock() {
    for batched in [false, true] {
        let (mut rs, c) = group(2);
        // Alice's clock runs 40 s ahead of Bob's.
        rs[0]
            .send_message(&c, text("पानी का स्तर बढ़ रहा है"), T0 + 40_000)
            .unwrap();
        let (a, b) = rs.split_at_mut(1);
        if batched {
            let all = envelopes(&a[0]);
            let refs: Vec<&[u8]> = all.iter().map(|v| v.as_slice()).collect();
            for r in b[0].ingest_batch(&refs, T0 + 1_000) {
                r.result.unwrap();
            }
        } else {
            sync(&a[0], &mut b[0], T0 + 1_000);
        }
        b[0].send_message(&c, text("noted"), T0 + 1_001).unwrap();
        let msgs = b[0].messages(&c, 10).unwrap();
        let bodies: Vec<&str> = msgs.iter().map(|m| m.view.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["पानी का स्तर बढ़ रहा है", "noted"],
            "batched={batched}"
        );
        assert!(msgs[1].view.sent_at > msgs[0].view.sent_at);
    }
}

#[test]
fn inbox_window_takes_any_day_a_peer_names() {
    let d = vaarta_sync::identity::Identity::from_seed([5; 32]).device_id();
    // The day comes from a peer's hello: extremes must not overflow.
    assert_eq!(vaarta_sync::replica::inbox_window(&d, u64::MAX).len(), 8);
    assert_eq!(vaarta_sync::replica::inbox_window(&d, 0).len(), 2);
}

#[test]
fn every_own_envelope_is_reported_with_its_routing_facts() {
    let mut a = replica(1);
    let b = replica(2);
    // Without asking, nothing is kept.
    let (c0, _) = a.create_conversation("quiet", History::Shared, T0).unwrap();
    assert!(a.take_sealed().is_empty());
    a.report_sealed();
    let (c, first) = a.create_conversation("EOC", History::Shared, T0).unwrap();
    let mut made = vec![first];
    made.extend(a.add_member(&c, b.device_id(), false, T0).unwrap());
    a.stage_message(&c, text("one"), T0 + 1).unwrap();
    let m2 = a.stage_message(&c, text("two"), T0 + 1).unwrap();
    made.extend(a.seal_staged(T0 + 2).unwrap());
    made.push(a.edit_message(&c, &m2, "two, edited", T0 + 3).unwrap());
    made.push(a.react(&c, &m2, Some("👍"), T0 + 4).unwrap());
    made.push(a.set_profile(&c0, "Asha", T0 + 5).unwrap());
    let sealed = a.take_sealed();
    assert_eq!(
        sealed.iter().map(|s| s.id).collect::<Vec<_>>(),
        made,
        "every envelope, in sealing order"
    );
    for s in &sealed {
        let bytes = a.store().find_envelope(&s.id).unwrap().unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.id(), s.id);
        assert_eq!(env.header().tag, s.tag);
        assert_eq!(env.header().kind, s.kind);
        assert_eq!(env.header().precedence, s.precedence);
    }
    let kinds: Vec<Kind> = sealed.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Control,
            Kind::Control,
            Kind::Invite,
            Kind::Change,
            Kind::Change,
            Kind::Change,
            Kind::Control
        ]
    );
    // The batch of two messages names both; an edit or a reaction names none.
    assert_eq!(sealed[3].messages.len(), 2);
    assert!(sealed[3].messages.contains(&m2));
    assert!(sealed[4].messages.is_empty() && sealed[5].messages.is_empty());
    assert_eq!(sealed[6].conversation, c0);
    assert!(a.take_sealed().is_empty(), "drained");
}

#[test]
fn a_batch_names_what_it_ingested() {
    let mut a = replica(1);
    let mut b = replica(2);
    let (c, _) = a.create_conversation("x", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    a.send_message(&c, text("hi"), T0 + 1).unwrap();
    let all = envelopes(&a);
    let mut refs: Vec<&[u8]> = all.iter().map(|v| v.as_slice()).collect();
    refs.push(b"not an envelope");
    let out = b.ingest_batch(&refs, T0 + 2);
    for (bytes, adm) in all.iter().zip(&out) {
        let env = Envelope::decode(bytes).unwrap();
        assert_eq!(adm.id, Some(env.id()));
        assert_eq!(adm.tag, Some(env.header().tag));
    }
    let junk = out.last().unwrap();
    assert_eq!((junk.id, junk.tag), (None, None));
    assert!(junk.result.is_err());
}

#[test]
fn a_checkpoint_or_a_digest_never_swallows_staged_messages() {
    // Saving a page (checkpoint) or reading its heads (digest) closes Automerge's open
    // transaction: staged ops became a local change that no envelope ever carried.
    let mut a = replica(1);
    let mut b = replica(2);
    let (c, _) = a.create_conversation("x", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    a.send_message(&c, text("first"), T0 + 1).unwrap();
    a.stage_message(&c, text("staged across a checkpoint"), T0 + 2)
        .unwrap();
    a.checkpoint().unwrap();
    assert!(a.state_digest(&c).is_err(), "no digest while staged");
    let sealed = a.seal_staged(T0 + 3).unwrap();
    assert_eq!(sealed.len(), 1);
    a.checkpoint().unwrap();
    assert!(a.state_digest(&c).is_ok());
    sync(&a, &mut b, T0 + 4);
    assert_eq!(
        bodies(&mut b, &c),
        vec!["first", "staged across a checkpoint"]
    );
    assert_eq!(a.state_digest(&c), b.state_digest(&c));
}

#[test]
fn a_large_batch_is_sealed_in_envelopes_the_receiver_accepts() {
    // Found as a new user: 30 messages of 60,000 bytes staged together were sealed in one
    // envelope that expands beyond the receiver's limit: refused, and every message lost.
    let mut a = replica(1);
    let mut b = replica(2);
    let (c, _) = a.create_conversation("x", History::Shared, T0).unwrap();
    a.add_member(&c, b.device_id(), false, T0).unwrap();
    sync(&a, &mut b, T0);
    let body = |i: usize| format!("{i:02}{}", "x".repeat(59_998));
    for i in 0..30 {
        a.stage_message(&c, text(&body(i)), T0 + 1).unwrap();
    }
    let sealed = a.seal_staged(T0 + 2).unwrap();
    assert!(sealed.len() > 1, "split into several envelopes");
    for id in sealed {
        let bytes = a.store().find_envelope(&id).unwrap().unwrap();
        let r = b.ingest(&bytes, T0 + 3);
        assert!(r.is_ok(), "refused: {r:?}");
    }
    let got = bodies(&mut b, &c);
    assert_eq!(got.len(), 30);
    assert!((0..30).all(|i| got.contains(&body(i))));
}

/// The stored clock is a bound written once per lease, not once per message (issue 11), and
/// after a crash (unflushed writes lost) the clock still never runs backwards.
#[test]
fn the_clock_is_stored_once_a_lease_and_never_runs_backwards_across_a_crash() {
    use vaarta_sync::replica::CLOCK_LEASE_MS;
    let stored = |r: &Replica<MemoryStore>| {
        let v = r
            .store()
            .get(vaarta_sync::replica::keys::HLC)
            .unwrap()
            .unwrap();
        Hlc::unpack(u64::from_be_bytes(v.as_slice().try_into().unwrap()))
    };
    let (mut rs, c) = group(2);
    let mut a = rs.remove(0);
    a.send_message(&c, text("first"), T0).unwrap();
    let bound = stored(&a);
    assert!(bound > a.clock(), "the bound is above what was issued");
    // A hundred messages within the lease, some with a clock standing still: one bound.
    for i in 0..100 {
        a.send_message(&c, text(&format!("m{i}")), T0 + i / 2)
            .unwrap();
        assert!(a.clock() < bound);
    }
    assert_eq!(stored(&a), bound, "no write of the clock within the lease");
    // Past the lease, a new bound.
    a.send_message(&c, text("later"), T0 + CLOCK_LEASE_MS + 5)
        .unwrap();
    assert!(stored(&a) > bound);
    let issued = a.clock();
    a.store_mut().flush().unwrap();
    // More messages, not flushed, then a crash that loses them and the clock's writes.
    for i in 0..10 {
        a.send_message(&c, text(&format!("lost{i}")), T0 + 3 * CLOCK_LEASE_MS + i)
            .unwrap();
    }
    let mut st = a.into_store();
    st.crash();
    let mut a = Replica::open(Identity::from_seed([1; 32]), st, [9; 32]).unwrap();
    assert!(a.clock() > issued);
    // The wall clock went back to before the lost messages: the clock still moves on from
    // the stored bound, past everything issued before the last flush.
    a.send_message(&c, text("after"), T0).unwrap();
    assert!(a.clock() > issued);
}
