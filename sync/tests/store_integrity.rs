//! Issue 9, items 5, 8 and 11: re-sealed and duplicated envelopes, unreadable envelopes whose
//! key arrives later, and the bounds on what a peer can make a replica store.

use vaarta_sync::envelope::{self, Envelope, OpenError};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::membership::History;
use vaarta_sync::page::Draft;
use vaarta_sync::replica::{IngestError, Ingested, Replica};
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;
const SALT: usize = envelope::SALT_LEN;

fn replica(n: u8) -> Replica<MemoryStore> {
    Replica::open(Identity::from_seed([n; 32]), MemoryStore::new(), [n; 32]).unwrap()
}

fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

fn bodies(r: &mut Replica<MemoryStore>, c: &ConversationId) -> Vec<String> {
    r.messages(c, 1000)
        .unwrap()
        .into_iter()
        .map(|m| m.view.body)
        .collect()
}

/// Every envelope (not tombstones) `from` holds, delivered to `to`.
fn sync(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
    let st = from.store();
    for (tag, _) in st.tags() {
        let mut ids = Vec::new();
        st.for_each_id(&tag, &[0; 32], &mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
        for id in ids {
            let b = st.envelope(&id).unwrap().unwrap();
            if !b.is_empty() {
                let _ = to.ingest(&b, now);
            }
        }
    }
}

/// Replica 1 makes a conversation with 2..=n as members, all synced.
fn group(n: u8) -> (Vec<Replica<MemoryStore>>, ConversationId) {
    let mut rs: Vec<Replica<MemoryStore>> = (1..=n).map(replica).collect();
    let (c, _) = rs[0].create_conversation("t", History::Shared, T0).unwrap();
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

/// Flushes, drops the replica and opens its store again (a restart).
fn restart(r: Replica<MemoryStore>, seed: u8) -> Replica<MemoryStore> {
    let mut st = r.into_store();
    st.flush().unwrap();
    Replica::open(Identity::from_seed([seed; 32]), st, [seed; 32]).unwrap()
}

/// The envelope re-encrypted under a new salt by anyone who holds the epoch key: the inner
/// plaintext (signer, payload, signature) is copied unchanged.
fn reseal(bytes: &[u8], key: &[u8; 32], c: &ConversationId, salt: [u8; SALT]) -> Vec<u8> {
    let env = Envelope::decode(bytes).unwrap();
    let mut w = vaarta_sync::codec::Writer::new();
    env.header().encode(&mut w);
    let hl = w.len();
    let nonce_of = |s: &[u8]| {
        let mut n = [0u8; 24];
        n[..SALT].copy_from_slice(s);
        n
    };
    let mut ad = bytes[..hl].to_vec();
    ad.extend_from_slice(&c.0);
    let inner = vaarta_sync::crypto::aead_open(
        key,
        &nonce_of(&bytes[hl..hl + SALT]),
        &ad,
        &bytes[hl + SALT..],
    )
    .unwrap();
    let ct = vaarta_sync::crypto::aead_seal(key, &nonce_of(&salt), &ad, &inner);
    [&bytes[..hl], &salt[..], &ct[..]].concat()
}

#[test]
fn a_resealed_envelope_is_refused_and_the_page_still_loads() {
    let (mut rs, c) = group(3);
    let (_, eid) = rs[0].send_message(&c, text("hello"), T0 + 200).unwrap();
    let bytes = rs[0].store().envelope(&eid).unwrap().unwrap();
    // Mallory, a member, holds the epoch key and re-seals Alice's envelope under a new salt.
    let epoch = Envelope::decode(&bytes).unwrap().header().epoch;
    let key = *rs[2].conversation(&c).unwrap().key(&epoch).unwrap();
    let copy = reseal(&bytes, &key, &c, [0x42; SALT]);
    assert_ne!(Envelope::decode(&copy).unwrap().id(), eid);
    assert_eq!(rs[1].ingest(&bytes, T0 + 300), Ok(Ingested::Applied(c)));
    let r = rs[1].ingest(&copy, T0 + 300);
    assert!(
        matches!(r, Err(IngestError::Open(OpenError::Signature(_)))),
        "the signature covers the salt: {r:?}"
    );
    // In the batch path too, before the original (on a fresh member).
    let mut late = replica(4);
    rs[0]
        .add_member(&c, late.device_id(), false, T0 + 400)
        .unwrap();
    sync(&rs[0], &mut late, T0 + 500);
    let mut fresh = replica(5);
    rs[0]
        .add_member(&c, fresh.device_id(), false, T0 + 600)
        .unwrap();
    let setup: Vec<Vec<u8>> = {
        let st = rs[0].store();
        let mut out = Vec::new();
        for (tag, _) in st.tags() {
            let mut ids = Vec::new();
            st.for_each_id(&tag, &[0; 32], &mut |id| {
                ids.push(*id);
                true
            })
            .unwrap();
            for id in ids {
                if id != eid {
                    out.push(st.envelope(&id).unwrap().unwrap());
                }
            }
        }
        out
    };
    for b in &setup {
        let _ = fresh.ingest(b, T0 + 700);
    }
    let got = fresh.ingest_batch(&[copy.as_slice(), bytes.as_slice()], T0 + 800);
    assert!(got[0].result.is_err(), "{:?}", got[0].result);
    assert_eq!(got[1].result, Ok(Ingested::Applied(c)));
    let mut fresh = restart(fresh, 5);
    assert_eq!(bodies(&mut fresh, &c), vec!["hello".to_string()]);
    let mut b = restart(std::mem::replace(&mut rs[1], replica(99)), 2);
    assert_eq!(bodies(&mut b, &c), vec!["hello".to_string()]);
}

/// The author itself (or a buggy client) seals the same change twice, under two salts: both
/// signatures are valid. The second is recognised as a duplicate, the page loads after an
/// unclean restart, by both ingestion paths.
#[test]
fn duplicated_content_is_recognised_and_the_page_always_loads() {
    for batch in [false, true] {
        let (mut rs, c) = group(2);
        let (_, eid) = rs[0].send_message(&c, text("once"), T0 + 200).unwrap();
        let bytes = rs[0].store().envelope(&eid).unwrap().unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        let opened = vaarta_sync::replica::open_with(&rs[0], &env).unwrap();
        let key = *rs[0]
            .conversation(&c)
            .unwrap()
            .key(&env.header().epoch)
            .unwrap();
        let twin = envelope::seal(
            env.header(),
            &key,
            &c,
            &Identity::from_seed([1; 32]),
            opened.hlc,
            &opened.payload,
            [0x17; SALT],
        );
        assert_ne!(twin.id(), eid);
        let (r0, r1) = if batch {
            let mut got = rs[1].ingest_batch(&[bytes.as_slice(), twin.bytes()], T0 + 300);
            let b = got.remove(1).result;
            (got.remove(0).result, b)
        } else {
            (
                rs[1].ingest(&bytes, T0 + 300),
                rs[1].ingest(twin.bytes(), T0 + 300),
            )
        };
        assert_eq!(r0, Ok(Ingested::Applied(c)), "batch {batch}");
        assert_eq!(r1, Ok(Ingested::Duplicate), "batch {batch}");
        // A valid envelope is not a tombstone.
        assert!(
            !rs[1]
                .store()
                .envelope(&twin.id())
                .unwrap()
                .is_some_and(|b| b.is_empty()),
            "batch {batch}"
        );
        let b = std::mem::replace(&mut rs[1], replica(99));
        let mut b = restart(b, 2);
        assert_eq!(
            bodies(&mut b, &c),
            vec!["once".to_string()],
            "batch {batch}"
        );
    }
}
