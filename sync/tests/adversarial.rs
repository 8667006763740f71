//! The control plane against members and ex-members (docs/security.md, "Control plane
//! against members and ex-members").
//!
//! Every hostile input here is *validly signed* by a device that holds, or once held, the
//! conversation secret: a current member, a removed member or a removed admin. Each test
//! builds the hostile envelopes by hand (the replica's own commands never write them), delivers
//! them, and then checks what the control plane promises:
//! * the honest members converge (same membership, same messages);
//! * a revocation holds (the removed device stays removed and gets no new key);
//! * the honest replicas keep working (`maintain`, profiles and messages never fail);
//! * nothing honest is tombstoned (every honest envelope is still held, readable).

mod common;
use common::{bodies, envelopes, replica, text};
use std::collections::BTreeSet;

use vaarta_sync::crypto::{self, ConversationSecret, Key};
use vaarta_sync::envelope::{self, Envelope, Header, Kind, Precedence};
use vaarta_sync::hlc::{Hlc, MAX_FORWARD_SKEW_MS};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId, EpochId, OpHash, Tag};
use vaarta_sync::limits::{MAX_CONTROL_OPS, MAX_CONTROL_OPS_PER_MEMBER, MAX_LATE_CHANGES_PER_PAGE};
use vaarta_sync::membership::{Action, ControlOp, History};
use vaarta_sync::replica::{CommandError, Config, Replica};
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;

fn reopen(r: Replica<MemoryStore>, n: u8) -> Replica<MemoryStore> {
    Replica::open(Identity::from_seed([n; 32]), r.into_store(), [n + 100; 32]).unwrap()
}

/// Delivers everything `from` holds to `to` (twice, so that what waited gets its turn).
fn sync(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
    for _ in 0..2 {
        for b in envelopes(from) {
            let _ = to.ingest(&b, now);
        }
    }
}

/// [`sync`] between two replicas of one slice.
fn deliver(rs: &mut [Replica<MemoryStore>], from: usize, to: usize, now: u64) {
    for _ in 0..2 {
        for b in envelopes(&rs[from]) {
            let _ = rs[to].ingest(&b, now);
        }
    }
}

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

/// Asserts `r` holds every one of `ids` with its bytes (not refused, not a tombstone).
fn holds_all(r: &Replica<MemoryStore>, ids: &[EnvelopeId], what: &str) {
    for id in ids {
        let b = r.store().find_envelope(id).unwrap();
        assert!(
            b.as_ref().is_some_and(|b| !b.is_empty()),
            "{what}: honest envelope {id:?} is {}",
            if b.is_some() { "a tombstone" } else { "gone" }
        );
    }
}

/// What a holder of the conversation secret knows, and can sign with.
struct Forger {
    id: ConversationId,
    tag: Tag,
    control_key: Key,
    salt: u64,
}

impl Forger {
    fn of(r: &Replica<MemoryStore>, c: &ConversationId) -> Self {
        let conv = r.conversation(c).unwrap();
        Self {
            id: conv.id,
            tag: conv.tag,
            control_key: conv.control_key,
            salt: 0,
        }
    }

    /// A control envelope signed by `signer` with any time and any parents.
    fn control(&mut self, signer: &Identity, hlc: Hlc, parents: Vec<OpHash>, a: Action) -> Vec<u8> {
        let mut parents = parents;
        parents.sort();
        parents.dedup();
        self.salt += 1;
        let mut salt = [0u8; envelope::SALT_LEN];
        salt[..8].copy_from_slice(&self.salt.to_le_bytes());
        salt[8] = 0xad;
        let header = Header {
            kind: Kind::Control,
            precedence: Precedence::Flash,
            tag: self.tag,
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let op = ControlOp { parents, action: a };
        envelope::seal(
            &header,
            &self.control_key,
            &self.id,
            signer,
            hlc,
            &op.encode(),
            salt,
        )
        .bytes()
        .to_vec()
    }
}

/// The operation hash of a control envelope (what later operations name as a parent).
fn op_hash(r: &Replica<MemoryStore>, bytes: &[u8]) -> OpHash {
    let env = Envelope::decode(bytes).unwrap();
    OpHash(
        vaarta_sync::replica::open_with(r, &env)
            .unwrap()
            .signed_hash,
    )
}

fn heads(r: &Replica<MemoryStore>, c: &ConversationId) -> Vec<OpHash> {
    r.conversation(c).unwrap().membership.heads()
}

/// An invitation sealed by `from` to `to`, carrying any secret, creator and keys.
fn invitation(
    from: &Identity,
    to: &DeviceId,
    secret: &ConversationSecret,
    creator: DeviceId,
    keys: Vec<(EpochId, Key)>,
    now: u64,
) -> Vec<u8> {
    let inv = vaarta_sync::conversation::Invitation {
        secret: secret.clone(),
        creator,
        keys,
    };
    let header = Header {
        kind: Kind::Invite,
        precedence: Precedence::Immediate,
        tag: crypto::inbox_tag(to, crypto::day_of(now)),
        epoch: EpochId([0; 4]),
        expiry: None,
    };
    envelope::seal_invite(
        &header,
        from,
        to,
        Hlc {
            ms: now,
            counter: 0,
        },
        &inv.encode(),
        [9; 32],
    )
    .unwrap()
    .bytes()
    .to_vec()
}

/// Replicas 1..=n: 1 creates a conversation (history `h`) and adds the others (admins where
/// `admins` says so), everyone synced.
fn group(n: u8, admins: &[u8], h: History) -> (Vec<Replica<MemoryStore>>, ConversationId) {
    group_with(n, admins, h, Config::default())
}

/// [`group`] with replicas opened under `config`.
fn group_with(
    n: u8,
    admins: &[u8],
    h: History,
    config: Config,
) -> (Vec<Replica<MemoryStore>>, ConversationId) {
    let mut rs: Vec<Replica<MemoryStore>> = (1..=n)
        .map(|n| {
            Replica::open_with_config(
                Identity::from_seed([n; 32]),
                MemoryStore::new(),
                [n; 32],
                config,
            )
            .unwrap()
        })
        .collect();
    let (c, _) = rs[0].create_conversation("field team", h, T0).unwrap();
    for i in 1..n as usize {
        let d = rs[i].device_id();
        let admin = admins.contains(&(i as u8 + 1));
        rs[0].add_member(&c, d, admin, T0 + i as u64).unwrap();
    }
    sync_all(&mut rs, T0 + 100);
    (rs, c)
}

fn own_ids(r: &Replica<MemoryStore>, c: &ConversationId) -> Vec<EnvelopeId> {
    let tag = r.conversation(c).unwrap().tag;
    let mut ids = Vec::new();
    r.store()
        .for_each_id(&tag, &[0; 32], &mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
    ids.retain(|id| {
        r.store()
            .find_envelope(id)
            .unwrap()
            .is_some_and(|b| !b.is_empty())
    });
    ids
}

// ---------------------------------------------------------------------------------------
// 1. Conversation hijack by invitation.

#[test]
fn foreign_creator_invitation_does_not_hijack() {
    // Asha (1) creates, Bhavesh (2) and Mallory (3) are members.
    let (mut rs, c) = group(3, &[], History::Shared);
    rs[0]
        .send_message(&c, text("convoy at 5"), T0 + 200)
        .unwrap();
    rs[1].send_message(&c, text("ack"), T0 + 210).unwrap();
    sync_all(&mut rs, T0 + 300);
    let honest: Vec<EnvelopeId> = own_ids(&rs[0], &c);
    let tag = rs[1].conversation(&c).unwrap().tag;
    assert_eq!(bodies(&mut rs[1], &c), ["convoy at 5", "ack"]);
    // Mallory invites Bhavesh to "the same" conversation, naming herself as creator.
    let secret = rs[2].conversation(&c).unwrap().secret.clone();
    let mallory = Identity::from_seed([3; 32]);
    let fake = invitation(
        &mallory,
        &rs[1].device_id(),
        &secret,
        mallory.device_id(),
        vec![],
        T0 + 400,
    );
    let _ = rs[1].ingest(&fake, T0 + 400);
    // The tag still routes to the real conversation; nothing honest was tombstoned.
    assert_eq!(rs[1].conversation_of_tag(&tag), Some(c));
    holds_all(&rs[1], &honest, "after the fake invitation");
    assert_eq!(bodies(&mut rs[1], &c), ["convoy at 5", "ack"]);
    // And it holds after a restart, and the conversation keeps working.
    let b = rs.remove(1);
    let mut b = reopen(b, 2);
    assert_eq!(b.conversation_of_tag(&tag), Some(c));
    assert!(b.info(&c).unwrap().me_member);
    assert_eq!(bodies(&mut b, &c), ["convoy at 5", "ack"]);
    b.send_message(&c, text("still here"), T0 + 500).unwrap();
    sync(&b, &mut rs[0], T0 + 600);
    assert_eq!(bodies(&mut rs[0], &c), ["convoy at 5", "ack", "still here"]);
}

#[test]
fn foreign_creator_invitation_first_does_not_capture_the_newcomer() {
    // Mallory (3), a member, knows whom Asha will add next (Chitra, 4) and invites her first
    // with a fake creator; Chitra must still join the real conversation.
    let (mut rs, c) = group(3, &[], History::Shared);
    rs[0]
        .send_message(&c, text("before Chitra"), T0 + 200)
        .unwrap();
    let mut chitra = replica(4);
    let mallory = Identity::from_seed([3; 32]);
    let secret = rs[2].conversation(&c).unwrap().secret.clone();
    let fake = invitation(
        &mallory,
        &chitra.device_id(),
        &secret,
        mallory.device_id(),
        vec![],
        T0 + 250,
    );
    let _ = chitra.ingest(&fake, T0 + 250);
    rs[0]
        .add_member(&c, chitra.device_id(), false, T0 + 300)
        .unwrap();
    sync(&rs[0], &mut chitra, T0 + 400);
    assert!(chitra.info(&c).unwrap().me_member);
    assert_eq!(bodies(&mut chitra, &c), ["before Chitra"]);
    holds_all(&chitra, &own_ids(&rs[0], &c), "newcomer");
}

// ---------------------------------------------------------------------------------------
// 2. Freezing the membership log.

#[test]
fn junk_operations_do_not_freeze_the_log() {
    // Asha (1, admin), Bhavesh (2), Mallory (3, removed later), Chitra (4).
    let (mut rs, c) = group(4, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let outsider = Identity::from_seed([77; 32]);
    let mut f = Forger::of(&rs[2], &c);
    let old_heads = heads(&rs[2], &c);
    rs[0]
        .remove_member(&c, mallory.device_id(), T0 + 200)
        .unwrap();
    let mut junk = Vec::new();
    // An outsider who learnt the secret: operations in valid positions.
    for i in 0..MAX_CONTROL_OPS as u64 {
        junk.push(f.control(
            &outsider,
            Hlc {
                ms: T0 + 210,
                counter: i as u16,
            },
            old_heads.clone(),
            Action::Title {
                title: format!("junk {i}"),
            },
        ));
    }
    // The removed member: operations concurrent with her removal, and ones whose parents
    // never arrive.
    for i in 0..MAX_CONTROL_OPS as u64 {
        let parents = if i % 2 == 0 {
            old_heads.clone()
        } else {
            vec![OpHash(*blake3::hash(&i.to_le_bytes()).as_bytes())]
        };
        junk.push(f.control(
            &mallory,
            Hlc {
                ms: T0 + 220,
                counter: i as u16,
            },
            parents,
            Action::Profile {
                name: format!("m{i}"),
            },
        ));
    }
    for r in rs.iter_mut() {
        for j in &junk {
            let _ = r.ingest(j, T0 + 230);
        }
    }
    sync_all(&mut rs, T0 + 300);
    // Asha can still remove Bhavesh and rotate; Chitra can still name herself; duties run.
    let b = rs[1].device_id();
    rs[0]
        .remove_member(&c, b, T0 + 400)
        .expect("removal after junk");
    rs[3]
        .set_profile(&c, "Chitra", T0 + 410)
        .expect("profile after junk");
    for r in rs.iter_mut() {
        r.maintain(T0 + 20_000).expect("maintain after junk");
    }
    sync_all(&mut rs, T0 + 30_000);
    let (a, ch) = (&rs[0], &rs[3]);
    for r in [a, ch] {
        let st = r.conversation(&c).unwrap().membership.state();
        assert!(!st.is_member(&b) && !st.is_member(&mallory.device_id()));
        assert_eq!(st.title, "field team");
        assert_eq!(
            st.members.get(&ch.device_id()).unwrap().name.as_deref(),
            Some("Chitra")
        );
        // The log holds no operation of the outsider, and at most a member's quota of
        // Mallory's (those in a valid position; the ones whose parents never came are not
        // counted).
        let ctl = &r.conversation(&c).unwrap().membership;
        assert!(
            ctl.len() <= MAX_CONTROL_OPS_PER_MEMBER + 32,
            "{} operations kept",
            ctl.len()
        );
    }
    assert_eq!(
        a.conversation(&c).unwrap().membership.state(),
        ch.conversation(&c).unwrap().membership.state()
    );
    // The current key is one neither removed device holds.
    let cur = a
        .conversation(&c)
        .unwrap()
        .membership
        .state()
        .current_epoch()
        .unwrap()
        .clone();
    assert!(!cur.holders.contains(&b) && !cur.holders.contains(&mallory.device_id()));
    assert!(ch.conversation(&c).unwrap().key(&cur.id).is_some());
}

#[test]
fn one_spamming_member_is_held_to_its_quota() {
    // A member spams valid profile operations: she fills only her own quota, so the admin's
    // duties and the other members' operations go on.
    let (mut rs, c) = group(3, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let mut f = Forger::of(&rs[2], &c);
    let mut parents = heads(&rs[2], &c);
    let mut spam = Vec::new();
    for i in 0..(MAX_CONTROL_OPS as u64 + 16) {
        let e = f.control(
            &mallory,
            Hlc {
                ms: T0 + 200 + i,
                counter: 0,
            },
            parents.clone(),
            Action::Profile {
                name: format!("m{i}"),
            },
        );
        parents = vec![op_hash(&rs[2], &e)];
        let _ = rs[2].ingest(&e, T0 + 200);
        spam.push(e);
    }
    for r in rs.iter_mut().take(2) {
        for e in &spam {
            let _ = r.ingest(e, T0 + 10_000);
        }
    }
    let m = mallory.device_id();
    rs[0]
        .remove_member(&c, m, T0 + 10_100)
        .expect("removal of the spammer");
    rs[1]
        .set_profile(&c, "Bhavesh", T0 + 10_200)
        .expect("an honest profile");
    rs[0].maintain(T0 + 30_000).expect("maintain");
    rs[1].maintain(T0 + 30_000).expect("maintain");
    sync_all(&mut rs[..2], T0 + 40_000);
    for r in &rs[..2] {
        let st = r.conversation(&c).unwrap().membership.state();
        assert!(!st.is_member(&m));
        assert_eq!(
            st.members.get(&rs[1].device_id()).unwrap().name.as_deref(),
            Some("Bhavesh")
        );
        assert!(r.conversation(&c).unwrap().membership.len() <= MAX_CONTROL_OPS_PER_MEMBER + 16);
    }
}

#[test]
fn a_full_log_never_fails_duties() {
    // Sixteen members (a compromised team) each spend their whole quota: the log reaches
    // MAX_CONTROL_OPS. The admin still removes them and rotates, and duties never fail.
    let (mut rs, c) = group(2, &[], History::Shared);
    let spammers: Vec<Identity> = (0..16u8)
        .map(|i| Identity::from_seed([200 + i; 32]))
        .collect();
    let devices: Vec<DeviceId> = spammers.iter().map(|i| i.device_id()).collect();
    rs[0].add_members(&c, &devices, false, T0 + 150).unwrap();
    sync_all(&mut rs, T0 + 160);
    let mut f = Forger::of(&rs[0], &c);
    let mut parents = heads(&rs[0], &c);
    let mut n = 0u64;
    'fill: for round in 0..MAX_CONTROL_OPS_PER_MEMBER {
        for s in &spammers {
            let e = f.control(
                s,
                Hlc {
                    ms: T0 + 200 + n,
                    counter: 0,
                },
                parents.clone(),
                Action::Profile {
                    name: format!("s{round}"),
                },
            );
            n += 1;
            parents = vec![op_hash(&rs[0], &e)];
            for r in rs.iter_mut() {
                let _ = r.ingest(&e, T0 + 10_000);
            }
            if rs[0].conversation(&c).unwrap().membership.len() >= MAX_CONTROL_OPS {
                break 'fill;
            }
        }
    }
    for r in &rs {
        assert!(r.conversation(&c).unwrap().membership.len() >= MAX_CONTROL_OPS);
    }
    // A member's own operation is refused (the engine skips it without failing its flush);
    // the admin's removals and rotations still go in, and duties run.
    assert!(rs[1].set_profile(&c, "Bhavesh", T0 + 10_100).is_err());
    for d in &devices[..4] {
        rs[0]
            .remove_member(&c, *d, T0 + 10_200)
            .expect("removal in a full log");
    }
    for r in rs.iter_mut() {
        r.maintain(T0 + 30_000).expect("maintain in a full log");
    }
    sync_all(&mut rs, T0 + 40_000);
    let s0 = rs[0].conversation(&c).unwrap().membership.state().clone();
    assert_eq!(rs[1].conversation(&c).unwrap().membership.state(), &s0);
    let cur = s0.current_epoch().unwrap();
    for d in &devices[..4] {
        assert!(!s0.is_member(d) && !cur.holders.contains(d));
    }
    assert!(rs[1].conversation(&c).unwrap().key(&cur.id).is_some());
    // Messages still flow.
    rs[1]
        .send_message(&c, text("still talking"), T0 + 41_000)
        .unwrap();
    deliver(&mut rs, 1, 0, T0 + 42_000);
    assert_eq!(bodies(&mut rs[0], &c), ["still talking"]);
}

// ---------------------------------------------------------------------------------------
// 3. Backdated takeover by a removed admin.

#[test]
fn removed_admin_cannot_backdate_a_takeover() {
    // Asha (1, creator), Bhavesh (2, admin), Chitra (3), Dev (4). Asha removes Bhavesh.
    // Bhavesh, from the state before his removal, signs with time 0: remove Asha, make his
    // second device an admin, rename, rotate to a key of his.
    for order in 0..3 {
        let (mut rs, c) = group(4, &[2], History::Shared);
        let bhavesh = Identity::from_seed([2; 32]);
        let second = Identity::from_seed([22; 32]);
        let mut f = Forger::of(&rs[1], &c);
        let old = heads(&rs[1], &c);
        let zero = Hlc { ms: 0, counter: 0 };
        let a_id = rs[0].device_id();
        let mut hostile = vec![
            f.control(
                &bhavesh,
                zero,
                old.clone(),
                Action::Remove {
                    device: a_id,
                    pins: vec![],
                },
            ),
            f.control(
                &bhavesh,
                zero,
                old.clone(),
                Action::Add {
                    devices: vec![second.device_id()],
                    admin: true,
                    epochs: vec![],
                },
            ),
            f.control(
                &bhavesh,
                zero,
                old.clone(),
                Action::Title {
                    title: "mine".into(),
                },
            ),
        ];
        // The second device, once "added", removes Chitra.
        let add_hash = op_hash(&rs[1], &hostile[1]);
        hostile.push(f.control(
            &second,
            Hlc { ms: 1, counter: 0 },
            vec![add_hash],
            Action::Remove {
                device: rs[2].device_id(),
                pins: vec![],
            },
        ));
        let b_id = rs[1].device_id();
        rs[0].remove_member(&c, b_id, T0 + 500).unwrap();
        let honest = envelopes(&rs[0]);
        // Deliver to Chitra and Dev in different orders; Asha gets the hostile ones late.
        match order {
            0 => {
                for e in hostile.iter().chain(&honest) {
                    let _ = rs[2].ingest(e, T0 + 600);
                }
            }
            1 => {
                for e in honest.iter().chain(&hostile) {
                    let _ = rs[2].ingest(e, T0 + 600);
                }
            }
            _ => {
                for e in hostile.iter().rev().chain(honest.iter().rev()) {
                    let _ = rs[2].ingest(e, T0 + 600);
                }
            }
        }
        for e in honest.iter().chain(&hostile) {
            let _ = rs[3].ingest(e, T0 + 600);
            let _ = rs[0].ingest(e, T0 + 600);
        }
        sync_all(&mut rs[..], T0 + 700);
        rs[0].maintain(T0 + 20_000).unwrap();
        sync_all(&mut rs[..], T0 + 21_000);
        let s0 = rs[0].conversation(&c).unwrap().membership.state().clone();
        for r in &rs[2..] {
            assert_eq!(
                r.conversation(&c).unwrap().membership.state(),
                &s0,
                "order {order}"
            );
        }
        assert!(s0.is_admin(&a_id), "order {order}: the creator was removed");
        assert!(
            !s0.is_member(&b_id),
            "order {order}: the removal did not hold"
        );
        assert!(!s0.is_member(&second.device_id()), "order {order}");
        assert!(s0.is_member(&rs[2].device_id()), "order {order}");
        assert_eq!(s0.title, "field team");
        let cur = s0.current_epoch().unwrap();
        assert!(!cur.holders.contains(&b_id));
        assert!(rs[2].conversation(&c).unwrap().key(&cur.id).is_some());
    }
}

/// The simulator's backdated-takeover finding, at the sync level: an admin removed on one
/// side of a split, not knowing it, removes a member on the other side and rotates; the
/// honest members there write under that rotation's key. After the heal the removal wins and
/// the rotation is void, so the other side never learns that epoch: the honest messages
/// written under it must still reach everyone, and every honest replica show the same.
#[test]
fn messages_under_a_voided_rotation_reach_everyone() {
    let (mut rs, c) = group(5, &[2], History::Shared);
    let (b_id, e_id) = (rs[1].device_id(), rs[4].device_id());
    // Split: Asha alone; Bhavesh, Chitra, Dev and Esha on the other side.
    rs[0].remove_member(&c, b_id, T0 + 400).unwrap();
    rs[0].send_message(&c, text("asha"), T0 + 410).unwrap();
    rs[1].remove_member(&c, e_id, T0 + 420).unwrap();
    deliver(&mut rs, 1, 2, T0 + 430);
    deliver(&mut rs, 1, 3, T0 + 430);
    rs[2].send_message(&c, text("chitra"), T0 + 440).unwrap();
    deliver(&mut rs, 2, 3, T0 + 450);
    rs[3].send_message(&c, text("dev"), T0 + 460).unwrap();
    deliver(&mut rs, 3, 2, T0 + 470);
    // The heal; then duties run and everyone syncs again.
    sync_all(&mut rs, T0 + 1_000);
    for round in 0..2u64 {
        for r in rs.iter_mut() {
            r.maintain(T0 + 20_000 + round * 20_000).expect("maintain");
        }
        sync_all(&mut rs, T0 + 21_000 + round * 20_000);
    }
    let honest = [0usize, 2, 3, 4];
    let mut first: Option<(Vec<String>, [u8; 32])> = None;
    for i in honest {
        let st = rs[i].conversation(&c).unwrap().membership.state().clone();
        assert!(!st.is_member(&b_id) && st.is_member(&e_id), "replica {i}");
        let shown = bodies(&mut rs[i], &c);
        let digest = rs[i].state_digest(&c).unwrap();
        match &first {
            None => first = Some((shown, digest)),
            Some(f) => assert_eq!(f, &(shown, digest), "replica {i}"),
        }
    }
    let (shown, _) = first.unwrap();
    for m in ["asha", "chitra", "dev"] {
        assert!(shown.iter().any(|s| s == m), "{m} is missing: {shown:?}");
    }
}

#[test]
fn concurrent_mutual_removal_is_decided_by_seniority_not_by_time() {
    // Two admins remove each other concurrently, each with a time that would win under an
    // HLC order: the senior one (granted admin first) stays, whatever the times and hashes.
    for (ta, tb) in [(0u64, T0), (T0, 0), (T0, T0)] {
        let (mut rs, c) = group(3, &[2, 3], History::Shared);
        let mut f = Forger::of(&rs[1], &c);
        let old = heads(&rs[1], &c);
        let (b, ch) = (Identity::from_seed([2; 32]), Identity::from_seed([3; 32]));
        let rb = f.control(
            &b,
            Hlc { ms: ta, counter: 0 },
            old.clone(),
            Action::Remove {
                device: ch.device_id(),
                pins: vec![],
            },
        );
        let rc = f.control(
            &ch,
            Hlc { ms: tb, counter: 0 },
            old.clone(),
            Action::Remove {
                device: b.device_id(),
                pins: vec![],
            },
        );
        for r in rs.iter_mut() {
            let _ = r.ingest(&rb, T0 + 600);
            let _ = r.ingest(&rc, T0 + 600);
        }
        let s = rs[0].conversation(&c).unwrap().membership.state().clone();
        assert!(
            s.is_admin(&b.device_id()) && !s.is_member(&ch.device_id()),
            "{ta} {tb}"
        );
        for r in &rs[1..] {
            assert_eq!(r.conversation(&c).unwrap().membership.state(), &s);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Clock poisoning.

#[test]
fn far_future_control_time_does_not_move_the_clock() {
    let (mut rs, c) = group(3, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let mut f = Forger::of(&rs[2], &c);
    let mut parents = heads(&rs[2], &c);
    let now = T0 + 1_000;
    // One far-future operation, then a ladder of one skew step each.
    let mut times = vec![Hlc::MAX_MS];
    times.extend((1..=30).map(|i| now + i * (MAX_FORWARD_SKEW_MS - 1)));
    for (i, ms) in times.into_iter().enumerate() {
        let e = f.control(
            &mallory,
            Hlc { ms, counter: 0 },
            parents.clone(),
            Action::Profile {
                name: format!("t{i}"),
            },
        );
        parents = vec![op_hash(&rs[2], &e)];
        let _ = rs[0].ingest(&e, now);
        let _ = rs[1].ingest(&e, now);
    }
    for r in &rs[..2] {
        assert!(
            r.clock().ms <= now + MAX_FORWARD_SKEW_MS,
            "clock moved to {:?}",
            r.clock()
        );
    }
    // After a restart too, and the victims' messages are still read by the others.
    let a = rs.remove(0);
    let mut a = reopen(a, 1);
    assert!(a.clock().ms <= now + MAX_FORWARD_SKEW_MS);
    a.send_message(&c, text("on time"), now + 10).unwrap();
    sync(&a, &mut rs[0], now + 20);
    assert_eq!(bodies(&mut rs[0], &c), ["on time"]);
}

// ---------------------------------------------------------------------------------------
// 6. Planted signer candidates.

#[test]
fn rejected_adds_plant_no_signer_candidates() {
    let (mut rs, c) = group(3, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let mut f = Forger::of(&rs[2], &c);
    let target = rs[1].device_id();
    // 1,024 ids sharing the target's signer hint, in an Add that a plain member may not make.
    let mut devices: BTreeSet<DeviceId> = BTreeSet::new();
    for i in 0u32..1024 {
        let mut d = target.0;
        d[8..12].copy_from_slice(&i.to_le_bytes());
        d[12] ^= 0x5a;
        devices.insert(DeviceId(d));
    }
    let add = f.control(
        &mallory,
        Hlc {
            ms: T0 + 200,
            counter: 0,
        },
        heads(&rs[2], &c),
        Action::Add {
            devices: devices.into_iter().collect(),
            admin: false,
            epochs: vec![],
        },
    );
    let _ = rs[0].ingest(&add, T0 + 200);
    let hint = &target.0[..envelope::SIGNER_HINT_LEN];
    assert_eq!(rs[0].conversation(&c).unwrap().signers(hint), vec![target]);
    // The target's messages are still read.
    rs[1].send_message(&c, text("mine"), T0 + 300).unwrap();
    deliver(&mut rs, 1, 0, T0 + 400);
    assert_eq!(bodies(&mut rs[0], &c), ["mine"]);
}

/// Review finding: a plain member names keys she holds in an `Add` she may not make (it is
/// rejected); operations those keys sign on top of it are charged to her quota, not each to a
/// quota of its own.
#[test]
fn keys_named_in_a_rejected_add_share_its_signers_quota() {
    let (mut rs, c) = group(3, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let puppets: Vec<Identity> = (60..63u8).map(|n| Identity::from_seed([n; 32])).collect();
    let mut f = Forger::of(&rs[2], &c);
    let before = rs[0].conversation(&c).unwrap().membership.len();
    let mut devices: Vec<DeviceId> = puppets.iter().map(|p| p.device_id()).collect();
    devices.sort();
    let add = f.control(
        &mallory,
        Hlc {
            ms: T0 + 200,
            counter: 0,
        },
        heads(&rs[0], &c),
        Action::Add {
            devices,
            admin: false,
            epochs: vec![],
        },
    );
    let _ = rs[0].ingest(&add, T0 + 200);
    let mut ms = T0 + 201;
    for p in &puppets {
        let mut parents = vec![op_hash(&rs[0], &add)];
        for i in 0..MAX_CONTROL_OPS_PER_MEMBER as u64 {
            ms += 1;
            let e = f.control(
                p,
                Hlc { ms, counter: 0 },
                parents.clone(),
                Action::Profile {
                    name: format!("p{i}"),
                },
            );
            parents = vec![op_hash(&rs[0], &e)];
            let _ = rs[0].ingest(&e, T0 + 10_000);
        }
    }
    let held = rs[0].conversation(&c).unwrap().membership.len() - before;
    assert!(
        held <= MAX_CONTROL_OPS_PER_MEMBER,
        "{held} operations held through one rejected Add"
    );
    // Mallory's own quota is what they used up.
    let own = f.control(
        &mallory,
        Hlc {
            ms: ms + 1,
            counter: 0,
        },
        heads(&rs[0], &c),
        Action::Profile { name: "m".into() },
    );
    let _ = rs[0].ingest(&own, T0 + 10_001);
    assert_eq!(
        rs[0].conversation(&c).unwrap().membership.len() - before,
        held
    );
    // An honest member is not touched.
    rs[1].set_profile(&c, "Bhavesh", T0 + 10_100).unwrap();
    deliver(&mut rs, 1, 0, T0 + 10_200);
    let st = rs[0].conversation(&c).unwrap().membership.state();
    assert_eq!(
        st.members.get(&rs[1].device_id()).unwrap().name.as_deref(),
        Some("Bhavesh")
    );
}

// ---------------------------------------------------------------------------------------
// 4. Key injection through invitations.

#[test]
fn invitation_keys_for_a_held_conversation_are_not_taken() {
    // Mallory, removed, knows the next epoch's id once the rotation is published and sends
    // Bhavesh an invitation with a key for it. (A real attacker grinds a key whose id
    // matches; here the invitation names the epoch with a key that does not derive it,
    // and, separately, a key that derives an id of its own.)
    let (mut rs, c) = group(3, &[], History::Shared);
    let mallory = Identity::from_seed([3; 32]);
    let secret = rs[2].conversation(&c).unwrap().secret.clone();
    let creator = rs[0].device_id();
    rs[0]
        .remove_member(&c, mallory.device_id(), T0 + 200)
        .unwrap();
    let cur = rs[0]
        .conversation(&c)
        .unwrap()
        .membership
        .state()
        .current_epoch()
        .unwrap()
        .id;
    let mine: Key = [0x66; 32];
    let inv = invitation(
        &mallory,
        &rs[1].device_id(),
        &secret,
        creator,
        vec![(cur, mine), (crypto::epoch_id(&mine), mine)],
        T0 + 210,
    );
    let _ = rs[1].ingest(&inv, T0 + 210);
    deliver(&mut rs, 0, 1, T0 + 300);
    let b = &rs[1];
    assert_ne!(b.conversation(&c).unwrap().key(&cur), Some(&mine));
    assert_eq!(
        b.conversation(&c).unwrap().key(&crypto::epoch_id(&mine)),
        None
    );
    assert_eq!(
        b.conversation(&c).unwrap().key(&cur),
        rs[0].conversation(&c).unwrap().key(&cur)
    );
}

// ---------------------------------------------------------------------------------------
// 9. Edits after removal, and rotation with many epochs.

/// A replica that applied the removed member's edits before it learnt of the removal and one
/// that learnt of the removal first hold the same changes and show the same thing: the
/// message as it stood at the removal's pin, without the late edit and reaction.
#[test]
fn removed_member_late_edits_are_hidden_everywhere() {
    let (mut rs, c) = group(3, &[], History::Shared);
    let (m, _) = rs[2]
        .send_message(&c, text("from Mallory"), T0 + 200)
        .unwrap();
    sync_all(&mut rs, T0 + 300);
    // Mallory edits and reacts after Asha removed her but before she learns of it.
    let mallory_id = rs[2].device_id();
    rs[0].remove_member(&c, mallory_id, T0 + 400).unwrap();
    rs[2].edit_message(&c, &m, "rewritten", T0 + 410).unwrap();
    rs[2].react(&c, &m, Some("x"), T0 + 420).unwrap();
    // Bhavesh gets Mallory's edits first, Asha's removal later; Asha the other way round.
    deliver(&mut rs, 2, 1, T0 + 500);
    deliver(&mut rs, 0, 1, T0 + 510);
    deliver(&mut rs, 2, 0, T0 + 520);
    sync_all(&mut rs[..2], T0 + 600);
    let va = rs[0].messages(&c, 10).unwrap();
    let vb = rs[1].messages(&c, 10).unwrap();
    assert_eq!(
        va.iter().map(|m| &m.view).collect::<Vec<_>>(),
        vb.iter().map(|m| &m.view).collect::<Vec<_>>()
    );
    assert_eq!(
        rs[0].state_digest(&c).unwrap(),
        rs[1].state_digest(&c).unwrap()
    );
    // What both show is the message as it was pinned: no late edit, no late reaction.
    assert_eq!(va.len(), 1);
    assert_eq!(va[0].view.body, "from Mallory");
    assert_eq!(va[0].view.edited_at, None);
    assert!(va[0].view.reactions.is_empty());
    // Both hold Mallory's late changes (taken, not refused), and show the same after a restart.
    let late = own_ids(&rs[2], &c);
    holds_all(&rs[0], &late, "Asha");
    holds_all(&rs[1], &late, "Bhavesh");
    let b = rs.remove(1);
    let mut b = reopen(b, 2);
    let vb = b.messages(&c, 10).unwrap();
    assert_eq!(
        va.iter().map(|m| &m.view).collect::<Vec<_>>(),
        vb.iter().map(|m| &m.view).collect::<Vec<_>>()
    );
}

/// A message as shown: body, reactions, deleted.
type Shown = (String, Vec<(String, String)>, bool);

/// Every kind of late write by a removed member — withdrawing a reaction, deleting and
/// editing her message, a new message, a reaction to someone else's — and an honest reaction
/// built on her late message, delivered in every order relative to the removal: every
/// replica ends with the same changes and shows the same messages, those of the pin.
#[test]
fn removed_member_late_writes_converge_in_every_order() {
    let mut seen: Option<(Vec<Shown>, [u8; 32])> = None;
    for order in 0..4 {
        let (mut rs, c) = group(4, &[], History::Shared);
        let (asha_msg, _) = rs[0]
            .send_message(&c, text("convoy at 5"), T0 + 150)
            .unwrap();
        let (m, _) = rs[2]
            .send_message(&c, text("from Mallory"), T0 + 200)
            .unwrap();
        sync_all(&mut rs, T0 + 250);
        rs[2].react(&c, &m, Some("👍"), T0 + 260).unwrap();
        rs[2].react(&c, &asha_msg, Some("ok"), T0 + 270).unwrap();
        sync_all(&mut rs, T0 + 300);
        let mallory = rs[2].device_id();
        rs[0].remove_member(&c, mallory, T0 + 400).unwrap();
        let removal = envelopes(&rs[0]);
        // Mallory, not knowing, writes on.
        rs[2].react(&c, &m, None, T0 + 410).unwrap();
        rs[2].react(&c, &asha_msg, Some("no"), T0 + 415).unwrap();
        rs[2].edit_message(&c, &m, "rewritten", T0 + 420).unwrap();
        let (late_msg, _) = rs[2].send_message(&c, text("late"), T0 + 425).unwrap();
        rs[2].delete_message(&c, &m, T0 + 430).unwrap();
        let late = envelopes(&rs[2]);
        // Chitra (3) gets the late writes first and builds on them; Dev (4) in `order`.
        for b in &late {
            let _ = rs[3].ingest(b, T0 + 500);
        }
        let honest = rs[3].react(&c, &late_msg, Some("?"), T0 + 510).unwrap();
        let honest_b = rs[3].store().find_envelope(&honest).unwrap().unwrap();
        let mut all: Vec<Vec<u8>> = Vec::new();
        match order {
            0 => all.extend(late.iter().chain(&removal).cloned()),
            1 => all.extend(removal.iter().chain(&late).cloned()),
            2 => all.extend(late.iter().rev().chain(removal.iter().rev()).cloned()),
            _ => {
                all.extend(removal.iter().rev().cloned());
                all.push(honest_b.clone());
                all.extend(late.iter().rev().cloned());
            }
        }
        all.push(honest_b.clone());
        for _ in 0..2 {
            for b in &all {
                let _ = rs[1].ingest(b, T0 + 600);
            }
        }
        for b in late.iter().chain([&honest_b]) {
            let _ = rs[0].ingest(b, T0 + 600);
        }
        for b in &removal {
            let _ = rs[3].ingest(b, T0 + 600);
        }
        let mut honest_rs: Vec<Replica<MemoryStore>> = vec![rs.remove(0), rs.remove(0)];
        honest_rs.push(rs.remove(1));
        sync_all(&mut honest_rs, T0 + 700);
        for r in honest_rs.iter_mut() {
            r.maintain(T0 + 20_000).expect("maintain");
            holds_all(r, &[honest], "the honest reaction");
        }
        sync_all(&mut honest_rs, T0 + 21_000);
        let mut first: Option<(Vec<Shown>, [u8; 32])> = None;
        for r in honest_rs.iter_mut() {
            let shown: Vec<Shown> = r
                .messages(&c, 100)
                .unwrap()
                .into_iter()
                .map(|m| (m.view.body, m.view.reactions, m.view.deleted))
                .collect();
            let digest = r.state_digest(&c).unwrap();
            match &first {
                None => first = Some((shown, digest)),
                Some(f) => assert_eq!(f, &(shown, digest), "order {order}"),
            }
        }
        let (shown, _) = first.clone().unwrap();
        // As pinned: Mallory's message unedited with her 👍, her "ok" on Asha's message.
        assert_eq!(shown.len(), 2, "order {order}: {shown:?}");
        assert_eq!(shown[0].0, "convoy at 5");
        assert_eq!(
            shown[0].1.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ["ok"]
        );
        assert_eq!(shown[1].0, "from Mallory");
        assert!(!shown[1].2, "order {order}: a late deletion shows");
        assert_eq!(
            shown[1].1.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ["👍"]
        );
        // Runs are seeded alike, so views and digests agree across orders too.
        if let Some(s0) = &seen {
            assert_eq!(Some(s0), first.as_ref(), "order {order}");
        }
        seen = first;
    }
}

/// B3: Mallory forks her device and writes two different changes with one sequence number,
/// one to each half; in each half an honest member builds on the one it got. Whatever the
/// order the others get them in, every replica ends with the same document and shows the
/// same messages, nothing waits for ever, both forks still spread (evidence), Mallory is
/// flagged everywhere, and the honest message built on the losing fork is sent again by its
/// author.
/// Every id a replica holds under `tag`, envelope or tombstone (what reconciliation offers).
fn held_ids(r: &Replica<MemoryStore>, tag: &Tag) -> BTreeSet<EnvelopeId> {
    let mut ids = BTreeSet::new();
    r.store()
        .for_each_id(tag, &[0; 32], &mut |id| {
            ids.insert(*id);
            true
        })
        .unwrap();
    ids
}

/// What a replica shows of a conversation and its digest (page heads and membership).
fn view(r: &mut Replica<MemoryStore>, c: &ConversationId) -> (Vec<String>, [u8; 32]) {
    (bodies(r, c), r.state_digest(c).unwrap())
}

/// Issue 9, last hardening, item 1: a removed device that writes more than
/// `MAX_LATE_CHANGES_PER_PAGE` changes in a page before it learns of its removal. Replicas
/// that took the excess before they learnt of the removal kept it in their documents, and
/// an honest change built on it, while those that learnt first refused it (and the honest
/// change waited there for ever): the documents differed for good. Now a page leaves out a
/// removed device's changes past its ceiling, and what is built on them, whenever they came.
/// Asha (0) removes Mallory (2), who writes on; Bhavesh (1) and Chitra (3) get the late
/// writes before or after the removal, or half of them each (then sync); Chitra builds on
/// the excess (her message leaves the page with it, and she sends it again). All end with
/// the same document, the same ids held, and so after a reload and after a power cut.
#[test]
fn a_removed_members_changes_past_the_late_bound_converge_in_every_order() {
    let extra = 5u64;
    let mut seen: Option<(Vec<String>, [u8; 32])> = None;
    for order in 0..4 {
        let (mut rs, c) = group(4, &[], History::Shared);
        rs[2].send_message(&c, text("before"), T0 + 150).unwrap();
        sync_all(&mut rs, T0 + 200);
        let mallory = rs[2].device_id();
        rs[0].remove_member(&c, mallory, T0 + 400).unwrap();
        let removal = envelopes(&rs[0]);
        // Mallory, not knowing, writes past the bound: one change per message.
        let before: BTreeSet<Vec<u8>> = envelopes(&rs[2]).into_iter().collect();
        for i in 0..MAX_LATE_CHANGES_PER_PAGE + extra {
            rs[2]
                .send_message(&c, text(&format!("late {i}")), T0 + 500 + i)
                .unwrap();
        }
        let late: Vec<Vec<u8>> = envelopes(&rs[2])
            .into_iter()
            .filter(|b| !before.contains(b))
            .collect();
        assert_eq!(late.len() as u64, MAX_LATE_CHANGES_PER_PAGE + extra);
        // Chitra takes every late write first and builds on the last (past the bound).
        for _ in 0..2 {
            for b in &late {
                let _ = rs[3].ingest(b, T0 + 600);
            }
        }
        rs[3]
            .send_message(&c, text("honest on top"), T0 + 610)
            .unwrap();
        let chitra = envelopes(&rs[3]);
        match order {
            // Bhavesh: the removal first, then the late writes.
            0 => {
                for b in removal.iter().chain(&late) {
                    let _ = rs[1].ingest(b, T0 + 700);
                }
            }
            // The late writes first, then the removal.
            1 => {
                for b in late.iter().chain(&removal) {
                    let _ = rs[1].ingest(b, T0 + 700);
                }
            }
            // In reverse, what Chitra wrote first.
            2 => {
                for b in chitra.iter().rev().chain(late.iter().rev()).chain(&removal) {
                    let _ = rs[1].ingest(b, T0 + 700);
                }
            }
            // Split: Bhavesh gets the removal and the first half, Chitra kept the rest.
            _ => {
                let half = late.len() / 2;
                for b in removal.iter().chain(&late[..half]) {
                    let _ = rs[1].ingest(b, T0 + 700);
                }
            }
        }
        let mut honest: Vec<Replica<MemoryStore>> = vec![rs.remove(0), rs.remove(0)];
        honest.push(rs.remove(1));
        // Asha gets the late writes after her removal of Mallory; then everyone syncs.
        for b in &late {
            let _ = honest[0].ingest(b, T0 + 800);
        }
        sync_all(&mut honest, T0 + 900);
        for r in honest.iter_mut() {
            r.maintain(T0 + 20_000).expect("maintain");
        }
        sync_all(&mut honest, T0 + 21_000);
        let tag = honest[0].conversation(&c).unwrap().tag;
        let views: Vec<_> = honest.iter_mut().map(|r| view(r, &c)).collect();
        let ids: Vec<_> = honest.iter().map(|r| held_ids(r, &tag)).collect();
        for i in 1..3 {
            assert_eq!(views[i], views[0], "order {order}: replica {i}");
            assert_eq!(ids[i], ids[0], "order {order}: replica {i}, ids");
        }
        // What the removal pinned shows, nothing past it; Chitra's message left the page
        // with the excess it was built on, and she sent it again on what is kept.
        assert_eq!(
            views[0].0,
            vec!["before".to_string(), "honest on top".to_string()],
            "order {order}"
        );
        match &seen {
            None => seen = Some(views[0].clone()),
            Some(s) => assert_eq!(&views[0], s, "order {order}: differs from order 0"),
        }
        // A reload (saved page or journal) and a power cut decide the same.
        for (i, r) in honest.into_iter().enumerate() {
            let n = [1u8, 2, 4][i];
            let mut r = r;
            r.store_mut().flush().unwrap();
            let mut r = reopen(r, n);
            assert_eq!(view(&mut r, &c), views[0], "order {order}: reopened {i}");
            r.checkpoint().unwrap();
            r.store_mut().flush().unwrap();
            let mut st = r.into_store();
            st.crash();
            let mut r = Replica::open(Identity::from_seed([n; 32]), st, [n + 100; 32]).unwrap();
            assert_eq!(
                view(&mut r, &c),
                views[0],
                "order {order}: after a crash {i}"
            );
            assert_eq!(
                held_ids(&r, &tag),
                ids[0],
                "order {order}: ids after a crash {i}"
            );
        }
    }
}

#[test]
fn equivocating_changes_converge_in_every_order() {
    let mut seen: Option<Vec<String>> = None;
    for order in 0..4 {
        let (mut rs, c) = group(5, &[], History::Shared);
        rs[2].send_message(&c, text("before"), T0 + 150).unwrap();
        sync_all(&mut rs, T0 + 200);
        // The same device state twice: one sequence number, two changes.
        let mut twin = Replica::open(
            Identity::from_seed([3; 32]),
            rs[2].store().clone(),
            [77; 32],
        )
        .unwrap();
        let (_, x) = rs[2].send_message(&c, text("fork x"), T0 + 300).unwrap();
        let (_, y) = twin.send_message(&c, text("fork y"), T0 + 300).unwrap();
        let x = rs[2].store().find_envelope(&x).unwrap().unwrap();
        let y = twin.store().find_envelope(&y).unwrap().unwrap();
        rs[0].ingest(&x, T0 + 310).unwrap();
        let (_, ha) = rs[0].send_message(&c, text("on x"), T0 + 320).unwrap();
        rs[1].ingest(&y, T0 + 310).unwrap();
        let (_, hb) = rs[1].send_message(&c, text("on y"), T0 + 320).unwrap();
        let ids = [
            Envelope::decode(&x).unwrap().id(),
            Envelope::decode(&y).unwrap().id(),
            ha,
            hb,
        ];
        let ha = rs[0].store().find_envelope(&ha).unwrap().unwrap();
        let hb = rs[1].store().find_envelope(&hb).unwrap().unwrap();
        let seq: Vec<&Vec<u8>> = match order {
            0 => vec![&x, &ha, &y, &hb],
            1 => vec![&y, &hb, &x, &ha],
            2 => vec![&hb, &ha, &y, &x],
            _ => vec![&ha, &x, &hb, &y],
        };
        for b in &seq {
            let _ = rs[3].ingest(b, T0 + 400);
        }
        for b in seq.iter().rev() {
            let _ = rs[4].ingest(b, T0 + 400);
        }
        let mut honest: Vec<Replica<MemoryStore>> = vec![rs.remove(0), rs.remove(0)];
        honest.extend(rs.drain(1..));
        sync_all(&mut honest, T0 + 500);
        let mallory = Identity::from_seed([3; 32]).device_id();
        let mut first: Option<(Vec<String>, [u8; 32])> = None;
        for (i, r) in honest.iter_mut().enumerate() {
            holds_all(r, &ids, "both forks and both honest messages");
            assert_eq!(
                r.pending_len(),
                0,
                "order {order}, replica {i}: something waits"
            );
            assert_eq!(
                r.info(&c).unwrap().equivocators,
                vec![mallory],
                "order {order}, replica {i}"
            );
            let shown = bodies(r, &c);
            let digest = r.state_digest(&c).unwrap();
            match &first {
                None => first = Some((shown, digest)),
                Some(f) => assert_eq!(f, &(shown, digest), "order {order}, replica {i}"),
            }
        }
        let (shown, digest) = first.clone().unwrap();
        // One fork shows, with the honest message built on it; the honest message built on
        // the other was sent again by its author and shows too.
        assert_eq!(shown.len(), 4, "order {order}: {shown:?}");
        assert_eq!(shown[0], "before");
        assert!(
            shown[1..] == ["fork x", "on x", "on y"] || shown[1..] == ["fork y", "on y", "on x"],
            "order {order}: {shown:?}"
        );
        // The same after a restart.
        let r = honest.remove(3);
        let mut r = reopen(r, 5);
        assert_eq!(
            (bodies(&mut r, &c), r.state_digest(&c).unwrap()),
            (shown.clone(), digest)
        );
        if let Some(s0) = &seen {
            assert_eq!(s0, &shown, "order {order}");
        }
        seen = Some(shown);
    }
}

/// `n` forks of Mallory's (replica 3's) next change, each its own envelope: every one signed
/// with the same sequence number, with bodies `body(i)`.
fn forks(
    rs: &[Replica<MemoryStore>],
    c: &ConversationId,
    n: u16,
    body: impl Fn(u16) -> String,
) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut seed = [0x77; 32];
            seed[..2].copy_from_slice(&i.to_le_bytes());
            let mut twin =
                Replica::open(Identity::from_seed([3; 32]), rs[2].store().clone(), seed).unwrap();
            let (_, e) = twin.send_message(c, text(&body(i)), T0 + 300).unwrap();
            twin.store().find_envelope(&e).unwrap().unwrap()
        })
        .collect()
}

/// What a replica holds of `c`: held-out changes per page, its digest and what it shows.
type HeldState = (Vec<(u32, Vec<u8>)>, [u8; 32], Vec<String>);

fn held_state(r: &mut Replica<MemoryStore>, c: &ConversationId) -> HeldState {
    let shown = bodies(r, c)
        .into_iter()
        .map(|b| b.chars().take(16).collect())
        .collect();
    let held = r
        .held_out(c)
        .unwrap()
        .into_iter()
        .map(|(p, h)| (p, h.into_iter().map(|h| h[0]).collect()))
        .collect();
    (held, r.state_digest(c).unwrap(), shown)
}

/// Delivers `forks` to five honest replicas in five ways — in order, in reverse, split
/// between two replicas (odd and even) that then sync, and one that built a message on one
/// fork — then syncs everyone, restarts one cleanly and another after a power cut (getting
/// everything again): all end with the same held-out set, the same document and the same
/// messages. Returns that state.
fn deliver_forks_every_way(
    mut rs: Vec<Replica<MemoryStore>>,
    c: &ConversationId,
    forks: &[Vec<u8>],
) -> HeldState {
    // Bhavesh builds on fork 7.
    rs[1].ingest(&forks[7], T0 + 310).unwrap();
    let (_, on) = rs[1].send_message(c, text("on 7"), T0 + 320).unwrap();
    let on = rs[1].store().find_envelope(&on).unwrap().unwrap();
    let mut all: Vec<Vec<u8>> = forks.to_vec();
    all.insert(40, on);
    for b in &all {
        let _ = rs[3].ingest(b, T0 + 400);
    }
    for b in all.iter().rev() {
        let _ = rs[4].ingest(b, T0 + 400);
    }
    for (i, b) in all.iter().enumerate() {
        let to = if i % 2 == 0 { 0 } else { 5 };
        let _ = rs[to].ingest(b, T0 + 400);
    }
    // The split pair sees each other's half; then everyone meets.
    deliver(&mut rs, 0, 5, T0 + 450);
    deliver(&mut rs, 5, 0, T0 + 450);
    assert_eq!(
        held_state(&mut rs[0], c),
        held_state(&mut rs[5], c),
        "split pair"
    );
    rs.remove(2);
    sync_all(&mut rs, T0 + 500);
    let first = held_state(&mut rs[0], c);
    for (i, r) in rs.iter_mut().enumerate() {
        assert_eq!(held_state(r, c), first, "replica {i}");
    }
    // A clean restart (from the page saved with what it holds out, and its cutoff) decides
    // the same; so does a power cut that forgets everything this
    // replica got since it joined, once it gets it all again (from one peer, in its order).
    let mut a = rs.remove(2);
    a.checkpoint().unwrap();
    a.store_mut().flush().unwrap();
    let mut a = reopen(a, 4);
    assert_eq!(held_state(&mut a, c), first, "after a restart");
    let mut st = rs.remove(2).into_store();
    st.crash();
    let mut b = Replica::open(Identity::from_seed([5; 32]), st, [105; 32]).unwrap();
    sync(&a, &mut b, T0 + 700);
    assert_eq!(held_state(&mut b, c), first, "after a power cut and a sync");
    first
}

/// B3 past the bound: Mallory signs 300 forks of one change (more than
/// `MAX_HELD_OUT_PER_PAGE` can hold out). Before, past the bound a page refused further
/// contested changes, so replicas that got them in different orders held different sets for
/// good. Now what a page holds out is the lowest-hash run of the contested changes, closed
/// under dependencies: the same wherever and in whatever order they arrive.
#[test]
fn held_out_changes_past_the_bound_do_not_depend_on_arrival_order() {
    use vaarta_sync::page::MAX_HELD_OUT_PER_PAGE;
    let (mut rs, c) = group(6, &[], History::Shared);
    rs[2].send_message(&c, text("before"), T0 + 150).unwrap();
    sync_all(&mut rs, T0 + 200);
    let forks = forks(&rs, &c, 300, |i| format!("fork {i}"));
    let (held, _, shown) = deliver_forks_every_way(rs, &c, &forks);
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].1.len(),
        MAX_HELD_OUT_PER_PAGE,
        "held out: the bound, filled"
    );
    // "before", the winning fork, and Bhavesh's message (on 7, or sent again).
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown.iter().any(|b| b == "on 7"), "{shown:?}");
}

/// The same with forks of 60 KB of text each: the bytes bound binds before the count.
#[test]
fn held_out_changes_are_bounded_by_bytes_whatever_the_order() {
    use vaarta_sync::page::MAX_HELD_OUT_PER_PAGE;
    let (mut rs, c) = group(6, &[], History::Shared);
    rs[2].send_message(&c, text("before"), T0 + 150).unwrap();
    sync_all(&mut rs, T0 + 200);
    let forks = forks(&rs, &c, 120, |i| {
        let mut s = String::new();
        let mut h = blake3::hash(&i.to_le_bytes());
        while s.len() < 60_000 {
            s.push_str(&h.to_hex());
            h = blake3::hash(h.as_bytes());
        }
        s
    });
    let (held, _, shown) = deliver_forks_every_way(rs, &c, &forks);
    let n = held.iter().map(|(_, h)| h.len()).sum::<usize>();
    assert!(
        n > 0 && n < MAX_HELD_OUT_PER_PAGE.min(forks.len() - 1),
        "{n} held out"
    );
    assert_eq!(shown.len(), 3);
}

/// B3 across power cuts and checkpoints: a replica that held the losing fork learns of the
/// winner; whether it then checkpoints (the page saved with what it holds out), reopens
/// cleanly, or loses everything unflushed in a crash and gets the winner again, its page
/// loads and ends as the other replicas'.
#[test]
fn equivocation_survives_checkpoints_and_crashes() {
    for case in 0..3 {
        let (mut rs, c) = group(3, &[], History::Shared);
        rs[1].send_message(&c, text("before"), T0 + 150).unwrap();
        sync_all(&mut rs, T0 + 200);
        let mut twin = Replica::open(
            Identity::from_seed([2; 32]),
            rs[1].store().clone(),
            [78; 32],
        )
        .unwrap();
        let (_, x) = rs[1].send_message(&c, text("fork x"), T0 + 300).unwrap();
        let (_, y) = twin.send_message(&c, text("fork y"), T0 + 300).unwrap();
        let x = rs[1].store().find_envelope(&x).unwrap().unwrap();
        let y = twin.store().find_envelope(&y).unwrap().unwrap();
        // Asha and Chitra each get both, in opposite orders.
        for b in [&x, &y] {
            rs[0].ingest(b, T0 + 310).unwrap();
        }
        rs[2].ingest(&y, T0 + 310).unwrap();
        rs[2].store_mut().flush().unwrap();
        rs[2].ingest(&x, T0 + 320).unwrap();
        let mut r = rs.remove(2);
        r = match case {
            0 => {
                r.checkpoint().unwrap();
                r.store_mut().flush().unwrap();
                reopen(r, 3)
            }
            1 => {
                r.store_mut().flush().unwrap();
                reopen(r, 3)
            }
            _ => {
                let mut st = r.into_store();
                st.crash();
                let mut r = Replica::open(Identity::from_seed([3; 32]), st, [103; 32]).unwrap();
                r.ingest(&x, T0 + 330).unwrap();
                r
            }
        };
        assert_eq!(
            (bodies(&mut r, &c), r.state_digest(&c).unwrap()),
            (bodies(&mut rs[0], &c), rs[0].state_digest(&c).unwrap()),
            "case {case}"
        );
        assert_eq!(bodies(&mut r, &c).len(), 2, "case {case}");
        assert_eq!(r.info(&c).unwrap().equivocators, vec![rs[1].device_id()]);
        // A checkpoint after reopening keeps it so.
        r.checkpoint().unwrap();
        let mut r = reopen(r, 3);
        assert_eq!(
            r.state_digest(&c).unwrap(),
            rs[0].state_digest(&c).unwrap(),
            "case {case}"
        );
    }
}

/// Review finding: a removed member must not rewrite what it wrote before its removal by
/// forking it. Mallory wrote "hello", Bhavesh replied, Asha removed her; Mallory then signs
/// a fork of "hello" (same sequence number, "pay X") ground to a lower hash than the
/// original. Every replica still shows "hello" and the reply, and never "pay X".
#[test]
fn a_removed_member_cannot_fork_what_its_removal_pinned() {
    let (mut rs, c) = group(3, &[], History::Shared);
    let before_hello = rs[2].store().clone();
    rs[2].send_message(&c, text("hello"), T0 + 150).unwrap();
    sync_all(&mut rs, T0 + 200);
    rs[1].send_message(&c, text("reply"), T0 + 210).unwrap();
    sync_all(&mut rs, T0 + 250);
    let mallory = rs[2].device_id();
    rs[0].remove_member(&c, mallory, T0 + 300).unwrap();
    sync_all(&mut rs[..2], T0 + 310);
    // Grind: forks of "hello" until one would win by hash (tried on a scratch copy of a
    // replica that knows nothing of the removal).
    let mut fork = None;
    for n in 0..64u8 {
        let mut twin = Replica::open(
            Identity::from_seed([3; 32]),
            before_hello.clone(),
            [120 + n; 32],
        )
        .unwrap();
        let (_, e) = twin
            .send_message(&c, text(&format!("pay X {n}")), T0 + 150)
            .unwrap();
        let bytes = twin.store().find_envelope(&e).unwrap().unwrap();
        let mut scratch = Replica::open(
            Identity::from_seed([3; 32]),
            rs[2].store().clone(),
            [200; 32],
        )
        .unwrap();
        let _ = scratch.ingest(&bytes, T0 + 320);
        if bodies(&mut scratch, &c)
            .iter()
            .any(|b| b.starts_with("pay X"))
        {
            fork = Some(bytes);
            break;
        }
    }
    let fork = fork.expect("a fork with a lower hash");
    for r in rs.iter_mut().take(2) {
        let _ = r.ingest(&fork, T0 + 400);
    }
    sync_all(&mut rs[..2], T0 + 500);
    for (i, r) in rs.iter_mut().take(2).enumerate() {
        let shown = bodies(r, &c);
        assert_eq!(shown, ["hello", "reply"], "replica {i}");
    }
    assert_eq!(
        rs[0].state_digest(&c).unwrap(),
        rs[1].state_digest(&c).unwrap()
    );
}

#[test]
fn split_delivery_equivocation_converges() {
    // An admin (Bhavesh) signs two conflicting operations on the same parents and sends one
    // to each half: after the halves meet, everyone agrees.
    let (mut rs, c) = group(4, &[2], History::Shared);
    let b = Identity::from_seed([2; 32]);
    let mut f = Forger::of(&rs[1], &c);
    let old = heads(&rs[1], &c);
    let x = f.control(
        &b,
        Hlc {
            ms: T0 + 500,
            counter: 0,
        },
        old.clone(),
        Action::Title { title: "x".into() },
    );
    let y = f.control(
        &b,
        Hlc {
            ms: T0 + 500,
            counter: 0,
        },
        old.clone(),
        Action::Title { title: "y".into() },
    );
    let _ = rs[0].ingest(&x, T0 + 600);
    let _ = rs[2].ingest(&x, T0 + 600);
    let _ = rs[3].ingest(&y, T0 + 600);
    sync_all(&mut rs, T0 + 700);
    let s = rs[0].conversation(&c).unwrap().membership.state().clone();
    for r in &rs[1..] {
        assert_eq!(r.conversation(&c).unwrap().membership.state(), &s);
    }
}

#[test]
fn from_join_newcomer_cannot_read_the_first_epoch() {
    // Asha writes alone, then adds Chitra to a from-join conversation: Chitra holds the
    // conversation secret, and must still not read what was written before she joined.
    let mut a = replica(1);
    let (c, _) = a.create_conversation("ops", History::FromJoin, T0).unwrap();
    let (_, before) = a.send_message(&c, text("before"), T0 + 100).unwrap();
    let mut chitra = replica(4);
    a.add_member(&c, chitra.device_id(), false, T0 + 200)
        .unwrap();
    sync(&a, &mut chitra, T0 + 300);
    assert!(chitra.info(&c).unwrap().me_member);
    let env = Envelope::decode(&a.store().find_envelope(&before).unwrap().unwrap()).unwrap();
    let key = chitra.conversation(&c).unwrap().secret.first_epoch_key();
    assert!(
        !envelope::can_decrypt(&env, &key, &c),
        "the first epoch's messages are readable from the secret"
    );
    assert!(bodies(&mut chitra, &c).is_empty());
}

/// The bound is lowered through [`Config`] (every replica of the conversation uses the same
/// value, as the protocol requires) so that it is reached in a few rotations; the code paths
/// are the production ones, which read the bound from the conversation.
#[test]
fn rotation_past_max_epochs_is_loud_not_silent() {
    // After the last epoch a removal cannot rotate the key: the removal still holds,
    // nobody seals under the key the removed device holds, and duties neither fail nor fill
    // the log with rotations every replica would refuse.
    const EPOCHS: usize = 6;
    let config = Config {
        max_epochs: EPOCHS,
        ..Config::default()
    };
    let (mut rs, c) = group_with(3, &[], History::Shared, config);
    let members: Vec<DeviceId> = rs.iter().map(|r| r.device_id()).collect();
    let epochs =
        |r: &Replica<MemoryStore>| r.conversation(&c).unwrap().membership.state().epochs.len();
    let mut now = T0 + 1_000;
    let mut rounds = 0;
    while epochs(&rs[0]) < EPOCHS {
        // Removing and re-adding a member rotates (cheaply: one removal, one rotation).
        rs[0].remove_member(&c, members[2], now).unwrap();
        rs[0].add_member(&c, members[2], false, now + 1).unwrap();
        now += 2;
        rounds += 1;
        assert!(rounds < EPOCHS, "removals do not rotate");
    }
    assert_eq!(epochs(&rs[0]), EPOCHS);
    // Before the bound bites, sending works (the current key is held by members only).
    sync_all(&mut rs, now + 1);
    rs[1].send_message(&c, text("before"), now + 1).unwrap();
    let leaked = rs[0]
        .conversation(&c)
        .unwrap()
        .membership
        .state()
        .current_epoch()
        .unwrap()
        .id;
    rs[0].remove_member(&c, members[2], now + 2).unwrap();
    sync_all(&mut rs[..2], now + 3);
    let len = rs[0].conversation(&c).unwrap().membership.len();
    for r in rs[..2].iter_mut() {
        let st = r.conversation(&c).unwrap().membership.state();
        assert!(!st.is_member(&members[2]));
        assert_eq!(st.epochs.len(), EPOCHS, "a rotation past the bound held");
        assert_eq!(st.current_epoch().unwrap().id, leaked);
        assert!(st.rotation_exhausted());
        assert_eq!(
            r.send_message(&c, text("under a leaked key"), now + 4),
            Err(CommandError::EpochsExhausted)
        );
        r.maintain(now + 20_000).expect("maintain");
        r.maintain(now + 40_000).expect("maintain");
    }
    // Duties added no operation (no rotation every replica would refuse, once per round).
    assert_eq!(rs[0].conversation(&c).unwrap().membership.len(), len);
    sync_all(&mut rs[..2], now + 50_000);
    assert_eq!(rs[1].conversation(&c).unwrap().membership.len(), len);
}

#[test]
fn default_config_uses_the_protocol_bound() {
    assert_eq!(
        Config::default().max_epochs,
        vaarta_sync::limits::MAX_EPOCHS
    );
    let (rs, c) = group(1, &[], History::Shared);
    assert_eq!(
        rs[0]
            .conversation(&c)
            .unwrap()
            .membership
            .state()
            .max_epochs,
        vaarta_sync::limits::MAX_EPOCHS
    );
}
