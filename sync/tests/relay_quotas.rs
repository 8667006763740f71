//! Relay quotas against sybil strangers (issue 9 item 14): strangers (origins that are not
//! contacts) share a pool of half the relay quota, and never evict what contacts (or local
//! imports) asked this device to carry.

mod common;

use common::replica;
use vaarta_sync::envelope::{self, Header, Kind, Precedence};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{DeviceId, EnvelopeId, EpochId, Tag};
use vaarta_sync::membership::History;
use vaarta_sync::replica::{Ingested, RelayPolicy, Replica};
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;
/// The relay quota: 1/8 per tag (5,000), 1/4 per origin (10,000), 1/2 for strangers.
const Q: u64 = 40_000;

fn policy() -> RelayPolicy {
    RelayPolicy::new(true, Q)
}

fn tag_n(n: u64) -> Tag {
    let mut t = [0xA5u8; 16];
    t[..8].copy_from_slice(&n.to_le_bytes());
    Tag(t)
}

/// An envelope of about `size` bytes under `tag` that nobody here can read (an invitation
/// sealed to a device that is not around): what a relay carries blind.
fn junk(tag: Tag, k: u64, size: usize) -> Vec<u8> {
    let header = Header {
        kind: Kind::Invite,
        precedence: Precedence::Routine,
        tag,
        epoch: EpochId([0; 4]),
        expiry: None,
    };
    let from = Identity::from_seed([201; 32]);
    let to = Identity::from_seed([202; 32]).device_id();
    let hlc = vaarta_sync::hlc::Hlc {
        ms: T0,
        counter: (k % 60_000) as u16,
    };
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&k.to_le_bytes());
    let payload: Vec<u8> = (0..size).map(|i| (i as u64 ^ k) as u8).collect();
    envelope::seal_invite(&header, &from, &to, hlc, &payload, seed)
        .unwrap()
        .bytes()
        .to_vec()
}

fn sybil(n: u64) -> DeviceId {
    DeviceId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// What one origin pushed, by envelope id.
#[derive(Default)]
struct Pushed(Vec<EnvelopeId>);

impl Pushed {
    fn push(
        &mut self,
        r: &mut Replica<MemoryStore>,
        env: Vec<u8>,
        origin: Option<DeviceId>,
    ) -> Ingested {
        self.0.push(envelope::Envelope::decode(&env).unwrap().id());
        r.ingest_from(&env, origin, T0).unwrap()
    }

    fn held(&self, r: &Replica<MemoryStore>) -> u64 {
        self.0
            .iter()
            .map(|id| {
                r.store()
                    .find_envelope(id)
                    .unwrap()
                    .map_or(0, |b| b.len() as u64)
            })
            .sum()
    }

    fn all_held(&self, r: &Replica<MemoryStore>) -> bool {
        self.0.iter().all(|id| {
            r.store()
                .find_envelope(id)
                .unwrap()
                .is_some_and(|b| !b.is_empty())
        })
    }
}

/// A relay (seed 1) with a conversation whose other member is device seed 2 (a contact),
/// carrying `policy()`.
fn relay_with_contact() -> (Replica<MemoryStore>, DeviceId) {
    let mut r = replica(1);
    r.set_relay_policy(policy());
    let contact = Identity::from_seed([2; 32]).device_id();
    let (c, _) = r.create_conversation("team", History::Shared, T0).unwrap();
    r.add_member(&c, contact, false, T0).unwrap();
    assert!(r.is_contact(&contact));
    (r, contact)
}

/// The contact pushes 6 envelopes and a file import 4 (about 11 KB in all), each under a
/// tag of its own.
fn carry_for_contacts(r: &mut Replica<MemoryStore>, contact: DeviceId) -> (Pushed, Pushed) {
    let (mut by_contact, mut imported) = (Pushed::default(), Pushed::default());
    for k in 0..6 {
        let got = by_contact.push(r, junk(tag_n(k), k, 1_000), Some(contact));
        assert_eq!(got, Ingested::Carried);
    }
    for k in 0..4 {
        let got = imported.push(r, junk(tag_n(100 + k), 100 + k, 1_000), None);
        assert_eq!(got, Ingested::Carried);
    }
    (by_contact, imported)
}

/// Ten sybil origins (`first..first + 10`) push 20 envelopes each, each under a tag of its
/// own: five times the relay quota.
fn flood(r: &mut Replica<MemoryStore>, first: u64) -> Vec<Pushed> {
    let mut sybils: Vec<Pushed> = (0..10).map(|_| Pushed::default()).collect();
    for round in 0..20 {
        for (i, p) in sybils.iter_mut().enumerate() {
            let k = 10_000 * first + 100 * i as u64 + round;
            p.push(r, junk(tag_n(k), k, 1_000), Some(sybil(first + i as u64)));
        }
    }
    sybils
}

fn assert_bounds(r: &Replica<MemoryStore>, sybils: &[Pushed]) {
    let strangers: u64 = sybils.iter().map(|p| p.held(r)).sum();
    assert!(strangers <= Q / 2, "strangers hold {strangers} > {}", Q / 2);
    assert!(strangers > Q / 4, "strangers are carried too: {strangers}");
    let used = r.carried_usage().bytes;
    assert!(used <= Q, "carried {used} > {Q}");
}

/// Before, each sybil held no more than the contact, so the "in all" rule (the oldest of
/// the origin holding the most) evicted the contact's envelopes, then the file's.
#[test]
fn sybil_strangers_do_not_evict_what_contacts_asked_us_to_carry() {
    let (mut r, contact) = relay_with_contact();
    let (by_contact, imported) = carry_for_contacts(&mut r, contact);
    let sybils = flood(&mut r, 1);
    assert!(by_contact.all_held(&r), "a contact's envelope was evicted");
    assert!(imported.all_held(&r), "an imported envelope was evicted");
    assert_bounds(&r, &sybils);
    let newest = sybils.last().unwrap().0.last().unwrap();
    assert!(
        r.store().find_envelope(newest).unwrap().is_some(),
        "the newest stranger envelope is carried"
    );
    // The contact is still served (within its own quota: 8 of its envelopes fit).
    let mut more = Pushed::default();
    for k in 0..2 {
        let got = more.push(&mut r, junk(tag_n(50 + k), 50 + k, 1_000), Some(contact));
        assert_eq!(got, Ingested::Carried);
    }
    assert!(by_contact.all_held(&r) && more.all_held(&r) && imported.all_held(&r));
    assert!(r.carried_usage().bytes <= Q);
}

/// Before, a stranger past a tag's quota with nothing of its own under the tag evicted the
/// tag's oldest envelope, a contact's.
#[test]
fn a_stranger_cannot_evict_a_contacts_envelope_under_a_tag() {
    let (mut r, contact) = relay_with_contact();
    let t = tag_n(7);
    let mut by_contact = Pushed::default();
    // 4 × ~1.1 KB: the tag's quota (5,000) has no room for another.
    for k in 0..4 {
        assert_eq!(
            by_contact.push(&mut r, junk(t, k, 1_000), Some(contact)),
            Ingested::Carried
        );
    }
    let mut stranger = Pushed::default();
    for k in 0..5 {
        let got = stranger.push(&mut r, junk(t, 100 + k, 1_000), Some(sybil(k)));
        assert_eq!(got, Ingested::NotWanted, "refused, not carried");
    }
    assert!(by_contact.all_held(&r), "a contact's envelope was evicted");
    assert_eq!(stranger.held(&r), 0);
    assert!(r.carried_bytes_of(&t, &contact).0 <= Q / 8);
    // The contact itself makes room under the tag with its own oldest.
    let got = by_contact.push(&mut r, junk(t, 200, 1_000), Some(contact));
    assert_eq!(got, Ingested::Carried);
    assert!(r.carried_bytes_of(&t, &contact).0 <= Q / 8);
}

/// A contact past a tag's quota evicts a stranger's envelope under the tag before its own
/// or another contact's.
#[test]
fn a_contact_under_a_full_tag_evicts_a_strangers_envelope_first() {
    let (mut r, contact) = relay_with_contact();
    let t = tag_n(9);
    let mut imported = Pushed::default();
    let mut stranger = Pushed::default();
    imported.push(&mut r, junk(t, 1, 1_000), None);
    stranger.push(&mut r, junk(t, 2, 1_000), Some(sybil(1)));
    imported.push(&mut r, junk(t, 3, 1_000), None);
    stranger.push(&mut r, junk(t, 4, 1_000), Some(sybil(1)));
    let mut by_contact = Pushed::default();
    for k in 0..2 {
        let got = by_contact.push(&mut r, junk(t, 10 + k, 1_000), Some(contact));
        assert_eq!(got, Ingested::Carried);
    }
    assert!(imported.all_held(&r), "the file's (older) were kept");
    assert!(by_contact.all_held(&r));
    assert_eq!(stranger.held(&r), 0, "the stranger's went");
    assert!(r.carried_bytes_of(&t, &contact).0 <= Q / 8);
}

/// The classes are counted from what is held at open: after a restart the same bounds hold.
#[test]
fn the_strangers_pool_holds_across_a_restart() {
    let (mut r, contact) = relay_with_contact();
    let (by_contact, imported) = carry_for_contacts(&mut r, contact);
    let before = flood(&mut r, 1);
    assert_bounds(&r, &before);
    let usage = r.carried_usage();
    let mut r = Replica::open(Identity::from_seed([1; 32]), r.into_store(), [3; 32]).unwrap();
    r.set_relay_policy(policy());
    // (The invitation `add_member` sealed for the contact is not carried, before or after.)
    assert_eq!(r.carried_usage(), usage, "the index is rebuilt");
    let after = flood(&mut r, 20);
    assert!(by_contact.all_held(&r), "a contact's envelope was evicted");
    assert!(imported.all_held(&r), "an imported envelope was evicted");
    let both: Vec<Pushed> = before.into_iter().chain(after).collect();
    assert_bounds(&r, &both);
}

/// A stranger that becomes a contact (added to a conversation) is counted as one from then
/// on; one removed goes back to the strangers' pool.
#[test]
fn an_origins_class_follows_membership() {
    let (mut r, _) = relay_with_contact();
    let c = r.conversation_ids()[0];
    let newcomer = Identity::from_seed([3; 32]).device_id();
    let mut by_newcomer = Pushed::default();
    for k in 0..6 {
        by_newcomer.push(&mut r, junk(tag_n(k), k, 1_000), Some(newcomer));
    }
    r.add_member(&c, newcomer, false, T0 + 1).unwrap();
    let sybils = flood(&mut r, 1);
    assert!(
        by_newcomer.all_held(&r),
        "a new contact's envelope was evicted"
    );
    assert_bounds(&r, &sybils);
    r.remove_member(&c, newcomer, T0 + 2).unwrap();
    assert!(!r.is_contact(&newcomer));
    let sybils = flood(&mut r, 40);
    assert!(
        by_newcomer.held(&r) < 6 * 1_000,
        "a removed member's envelopes are a stranger's again"
    );
    assert_bounds(&r, &sybils);
}

/// A full strangers' pool makes room from the stranger origin that holds the most (the
/// pusher's own if it holds as much): a newcomer is carried, and the smallest keeps its own.
#[test]
fn a_full_strangers_pool_makes_room_from_its_largest_origin() {
    let (mut r, _) = relay_with_contact();
    let mut big: Vec<Pushed> = (0..2).map(|_| Pushed::default()).collect();
    // Two strangers, 9 envelopes each (about 9.9 KB, within 1/4): the pool is full.
    for k in 0..9 {
        for (i, p) in big.iter_mut().enumerate() {
            let n = 100 * i as u64 + k;
            p.push(&mut r, junk(tag_n(n), n, 1_000), Some(sybil(i as u64)));
        }
    }
    let full: u64 = big.iter().map(|p| p.held(&r)).sum();
    assert!(full + 1_200 > Q / 2, "the pool is full: {full}");
    let mut newcomer = Pushed::default();
    for k in 0..3 {
        let n = 1_000 + k;
        let got = newcomer.push(&mut r, junk(tag_n(n), n, 1_000), Some(sybil(9)));
        assert_eq!(got, Ingested::Carried);
    }
    assert!(newcomer.all_held(&r), "a newcomer is carried");
    assert!(
        big.iter().all(|p| p.held(&r) < 9 * 1_000),
        "both big ones gave room"
    );
    // The big ones push on: they make room from each other (or themselves), not from the
    // newcomer.
    for k in 0..10 {
        for (i, p) in big.iter_mut().enumerate() {
            let n = 2_000 + 100 * i as u64 + k;
            p.push(&mut r, junk(tag_n(n), n, 1_000), Some(sybil(i as u64)));
        }
    }
    assert!(newcomer.all_held(&r), "the smallest stranger kept its own");
    assert!(r.carried_usage().stranger_bytes <= Q / 2);
}

/// An envelope carried for others is held but not readable here: an acknowledgement calls it
/// deferred (a member's device carrying its conversation before it accepted the invitation
/// must not count as delivered; review of the deferred acknowledgements).
#[test]
fn a_carried_envelope_is_waiting_not_read() {
    let mut r = replica(1);
    r.set_relay_policy(policy());
    let env = junk(tag_n(7), 1, 200);
    let id = envelope::Envelope::decode(&env).unwrap().id();
    assert!(!r.is_waiting(&id));
    assert_eq!(r.ingest_from(&env, None, T0).unwrap(), Ingested::Carried);
    assert!(r.is_waiting(&id), "carried: held, not read");
}

/// An invitation this device sealed for a device that is not around waits under the
/// invitee's inbox tag, a tag that is not ours. Before, the pass at open that records
/// envelopes stored before carried records existed took it for a carried envelope with no
/// origin: it then counted against the relay quota, and a contact filling the invitee's tag
/// or the whole quota evicted it before it was delivered.
#[test]
fn an_invitation_we_sealed_is_not_carried_after_a_restart() {
    let mut r = replica(1);
    r.set_relay_policy(policy());
    let (c, _) = r.create_conversation("team", History::Shared, T0).unwrap();
    let invitee = Identity::from_seed([2; 32]).device_id();
    let invitation = *r
        .add_member(&c, invitee, false, T0)
        .unwrap()
        .last()
        .unwrap();
    let other = Identity::from_seed([3; 32]).device_id();
    r.add_member(&c, other, false, T0).unwrap();
    let inbox = vaarta_sync::crypto::inbox_tag(&invitee, vaarta_sync::crypto::day_of(T0));
    assert_eq!(r.store().find_tag(&invitation).unwrap(), Some(inbox));
    assert_eq!(r.carried_usage().envelopes, 0);
    let mut r = Replica::open(Identity::from_seed([1; 32]), r.into_store(), [3; 32]).unwrap();
    r.set_relay_policy(policy());
    assert_eq!(r.carried_usage().envelopes, 0, "nothing is carried");
    // A contact fills the invitee's tag with one envelope of nearly the tag's quota (with
    // nothing of its own there, it would evict the tag's oldest), then imports and the
    // contact fill the whole quota (the "in all" rule evicts from the largest contact).
    let mut pushed = Pushed::default();
    let got = pushed.push(&mut r, junk(inbox, 1, 4_600), Some(other));
    assert_eq!(got, Ingested::Carried);
    for k in 0..60 {
        pushed.push(&mut r, junk(tag_n(k), 10 + k, 1_000), None);
        pushed.push(&mut r, junk(tag_n(100 + k), 100 + k, 1_000), Some(other));
    }
    assert!(r.carried_usage().bytes <= Q);
    assert!(r.stats.carried_evicted > 0, "the quota was filled");
    let held = r.store().find_envelope(&invitation).unwrap();
    assert!(
        held.is_some_and(|b| !b.is_empty()),
        "the invitation was evicted"
    );
    let mut offered = Vec::new();
    r.store()
        .for_each_id(&inbox, &[0; 32], &mut |id| {
            offered.push(*id);
            true
        })
        .unwrap();
    assert!(offered.contains(&invitation), "offered under the inbox tag");
    // And after another restart, still not carried.
    let usage = r.carried_usage();
    let r = Replica::open(Identity::from_seed([1; 32]), r.into_store(), [4; 32]).unwrap();
    assert_eq!(r.carried_usage(), usage);
}

/// Issue 9, C4: device ids are free, so a per-origin quota does not stop a thousand sybils
/// from taking the strangers' half from an honest stranger. A stranger whose credential
/// chain verified against a root pinned here (the engine calls `vouch`) is carried in a
/// share of its own that no stranger evicts, across a restart; an honest stranger without
/// a credential still competes with the sybils (what remains), and a vouch that ends
/// (revoked, expired) puts the device back among the strangers.
#[test]
fn a_thousand_sybils_do_not_evict_what_a_vouched_stranger_asked_us_to_carry() {
    let (mut r, contact) = relay_with_contact();
    let (by_contact, _) = carry_for_contacts(&mut r, contact);
    let officer = Identity::from_seed([40; 32]).device_id();
    let plain = Identity::from_seed([41; 32]).device_id();
    assert!(!r.is_contact(&officer) && !r.is_contact(&plain));
    r.vouch(&officer, T0 + 30 * 86_400_000).unwrap();
    assert!(r.is_vouched(&officer) && !r.is_vouched(&plain));
    let (mut vouched, mut unvouched) = (Pushed::default(), Pushed::default());
    for k in 0..8 {
        let got = vouched.push(&mut r, junk(tag_n(500 + k), 500 + k, 1_000), Some(officer));
        assert_eq!(got, Ingested::Carried);
        let got = unvouched.push(&mut r, junk(tag_n(600 + k), 600 + k, 1_000), Some(plain));
        assert_eq!(got, Ingested::Carried);
    }
    let usage = r.carried_usage();
    assert!(usage.vouched_bytes > 8_000 && usage.vouched_bytes <= Q / 4);
    // 1,000 fresh ids, one envelope each under a fresh tag: 27 times the relay quota.
    let sybils = |r: &mut Replica<MemoryStore>, first: u64| {
        let mut p = Pushed::default();
        for n in first..first + 1_000 {
            p.push(
                r,
                junk(tag_n(1_000_000 + n), 1_000_000 + n, 1_000),
                Some(sybil(n)),
            );
        }
        p
    };
    let first = sybils(&mut r, 0);
    assert!(
        vouched.all_held(&r),
        "a sybil evicted a vouched stranger's envelope"
    );
    assert!(by_contact.all_held(&r));
    assert_eq!(
        unvouched.held(&r),
        0,
        "what remains: an honest stranger's went"
    );
    assert!(first.held(&r) <= Q / 2 && r.carried_usage().bytes <= Q);
    // Across a restart: the vouch and the classes are rebuilt from the store.
    let usage = r.carried_usage();
    let mut r = Replica::open(Identity::from_seed([1; 32]), r.into_store(), [3; 32]).unwrap();
    r.set_relay_policy(policy());
    assert!(r.is_vouched(&officer));
    assert_eq!(r.carried_usage(), usage, "the index is rebuilt");
    let second = sybils(&mut r, 1_000);
    assert!(vouched.all_held(&r), "evicted after the restart");
    assert!(by_contact.all_held(&r));
    assert!(first.held(&r) + second.held(&r) <= Q / 2);
    // The vouched device is still served, within its share (its own oldest goes first).
    let mut more = Pushed::default();
    let got = more.push(&mut r, junk(tag_n(700), 700, 1_000), Some(officer));
    assert_eq!(got, Ingested::Carried);
    assert!(r.carried_usage().vouched_bytes <= Q / 4);
    // Its credential revoked: back among the strangers, whom the next sybils evict.
    r.unvouch(&officer).unwrap();
    assert_eq!(r.carried_usage().vouched_bytes, 0);
    sybils(&mut r, 2_000);
    assert_eq!(vouched.held(&r) + more.held(&r), 0);
    assert!(by_contact.all_held(&r));
}

/// A vouch past its chain's expiry counts for nothing, and is dropped at the next open.
#[test]
fn an_expired_vouch_counts_for_nothing() {
    let (mut r, _) = relay_with_contact();
    let officer = Identity::from_seed([40; 32]).device_id();
    r.vouch(&officer, T0 - 1).unwrap();
    assert!(!r.is_vouched(&officer));
    let mut p = Pushed::default();
    p.push(&mut r, junk(tag_n(1), 1, 1_000), Some(officer));
    let usage = r.carried_usage();
    assert_eq!((usage.vouched_bytes, usage.stranger_envelopes), (0, 1));
    let r = Replica::open(Identity::from_seed([1; 32]), r.into_store(), [3; 32]).unwrap();
    assert!(!r.is_vouched(&officer));
    let mut n = 0;
    r.store()
        .scan_prefix(vaarta_sync::replica::keys::VOUCHED, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 0, "the record is gone");
}
