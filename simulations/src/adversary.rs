//! Hostile members: validly signed hostile envelopes, built with the public sync API the way
//! `sync/tests/adversarial.rs` builds them, for a simulated device that its admin removed.
//!
//! The hostile device knows what a member knows: the conversation secret (hence the tag and
//! the control key), the epoch keys it was given, the membership heads it saw before its
//! removal, and every envelope it holds. It signs with its own key, a second device of its
//! own, or an outsider's key. The runner ([`crate::vaarta`]) hands each forged envelope to
//! every device the hostile one is linked with (through `Engine::import`, the checks a
//! pushed envelope gets), and after the run checks what the control plane promises.

use std::collections::{BTreeMap, BTreeSet};

use vaarta_sync::codec::Writer;
use vaarta_sync::conversation::Invitation;
use vaarta_sync::crypto::{self, ConversationSecret, Key};
use vaarta_sync::envelope::{self, Envelope, Header, Kind, Precedence, SALT_LEN};
use vaarta_sync::hlc::{Hlc, MAX_FORWARD_SKEW_MS};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, DeviceId, EpochId, OpHash, Tag};
use vaarta_sync::limits::MAX_CONTROL_OPS_PER_MEMBER;
use vaarta_sync::membership::{Action, ControlOp};
use vaarta_sync::replica::Replica;
use vaarta_sync::store::{MemoryStore, Store};

use crate::scenario::AttackKind;

/// Which of the devices the hostile one meets get an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    All,
    /// Devices with an even simulator index (one half of a split delivery).
    Even,
    Odd,
}

impl Audience {
    pub fn includes(self, node: usize) -> bool {
        match self {
            Audience::All => true,
            Audience::Even => node.is_multiple_of(2),
            Audience::Odd => node % 2 == 1,
        }
    }
}

/// One hostile envelope and who gets it.
#[derive(Debug, Clone)]
pub struct Forged {
    pub bytes: Vec<u8>,
    pub audience: Audience,
}

/// What the hostile device knew of the conversation when it was removed.
#[derive(Debug, Clone)]
pub struct Knowledge {
    pub id: ConversationId,
    pub tag: Tag,
    pub control_key: Key,
    pub secret: ConversationSecret,
    pub creator: DeviceId,
    /// Membership heads before the removal: hostile operations name them as parents, so
    /// they are concurrent with (not after) the removal.
    pub heads: Vec<OpHash>,
    /// Every epoch key it ever held, sampled over the run (what it can read with).
    pub keys: BTreeMap<EpochId, Key>,
    salt: u64,
}

impl Knowledge {
    pub fn of(rep: &Replica<MemoryStore>, conv: &ConversationId) -> Option<Self> {
        let c = rep.conversation(conv)?;
        let mut k = Self {
            id: c.id,
            tag: c.tag,
            control_key: c.control_key,
            secret: c.secret.clone(),
            creator: c.membership.state().creator?,
            heads: c.membership.heads(),
            keys: BTreeMap::new(),
            salt: 0,
        };
        k.learn(rep);
        Some(k)
    }

    /// Adds the epoch keys the device holds now.
    pub fn learn(&mut self, rep: &Replica<MemoryStore>) {
        if let Some(c) = rep.conversation(&self.id) {
            for ep in c.epochs_held() {
                if let Some(key) = c.key(&ep) {
                    self.keys.insert(ep, *key);
                }
            }
        }
    }

    fn salt(&mut self) -> [u8; SALT_LEN] {
        self.salt += 1;
        let mut s = [0u8; SALT_LEN];
        s[..8].copy_from_slice(&self.salt.to_le_bytes());
        s[8..].copy_from_slice(b"hsim");
        s
    }

    /// A control envelope signed by `signer` with any time and any parents.
    pub fn control(
        &mut self,
        signer: &Identity,
        hlc: Hlc,
        mut parents: Vec<OpHash>,
        action: Action,
    ) -> Vec<u8> {
        parents.sort();
        parents.dedup();
        let header = Header {
            kind: Kind::Control,
            precedence: Precedence::Flash,
            tag: self.tag,
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let op = ControlOp { parents, action };
        let salt = self.salt();
        envelope::seal(
            &header,
            &self.control_key,
            &self.id,
            signer,
            hlc,
            &op.encode(),
            salt,
        )
        .into_bytes()
    }

    /// The operation hash of a control envelope we sealed (what a child names as parent).
    fn op_hash(&self, bytes: &[u8]) -> Option<OpHash> {
        let env = Envelope::decode(bytes).ok()?;
        let mut resolve = |_: &[u8; envelope::SIGNER_HINT_LEN]| Vec::new();
        envelope::open(&env, &self.control_key, &self.id, &mut resolve)
            .ok()
            .map(|o| OpHash(o.signed_hash))
    }

    /// An invitation from `from` to `to` carrying any creator and keys.
    fn invitation(
        &self,
        from: &Identity,
        to: &DeviceId,
        creator: DeviceId,
        keys: Vec<(EpochId, Key)>,
        now_ms: u64,
        nonce: u8,
    ) -> Option<Vec<u8>> {
        let inv = Invitation {
            secret: self.secret.clone(),
            creator,
            keys,
        };
        let header = Header {
            kind: Kind::Invite,
            precedence: Precedence::Immediate,
            tag: crypto::inbox_tag(to, crypto::day_of(now_ms)),
            epoch: EpochId([0; 4]),
            expiry: None,
        };
        let hlc = Hlc {
            ms: now_ms,
            counter: 0,
        };
        envelope::seal_invite(&header, from, to, hlc, &inv.encode(), [nonce; 32])
            .ok()
            .map(Envelope::into_bytes)
    }
}

/// Who takes part: the identities a hostile device signs with, and its targets.
#[derive(Debug)]
pub struct Parties<'a> {
    pub me: &'a Identity,
    /// A second device of its own, "added" by the backdated takeover.
    pub second: &'a Identity,
    /// Someone who is not and never was a member, but learnt the secret.
    pub outsider: &'a Identity,
    /// The admin who removed it.
    pub admin: DeviceId,
    /// The conversation's honest members.
    pub honest: &'a [DeviceId],
}

/// Builds one attack's envelopes. `rep` is the hostile device's replica now (its store holds
/// what it can re-seal).
pub fn build(
    kind: AttackKind,
    count: Option<usize>,
    k: &mut Knowledge,
    who: &Parties<'_>,
    rep: &Replica<MemoryStore>,
    now_ms: u64,
) -> Vec<Forged> {
    let all = |bytes| Forged {
        bytes,
        audience: Audience::All,
    };
    let (admin, honest) = (who.admin, who.honest);
    let heads = k.heads.clone();
    let mut out = Vec::new();
    match kind {
        AttackKind::BackdatedTakeover => {
            let zero = Hlc { ms: 0, counter: 0 };
            let remove_admin = k.control(
                who.me,
                zero,
                heads.clone(),
                Action::Remove {
                    device: admin,
                    pins: vec![],
                },
            );
            let add_second = k.control(
                who.me,
                zero,
                heads.clone(),
                Action::Add {
                    devices: vec![who.second.device_id()],
                    admin: true,
                    epochs: vec![],
                },
            );
            let retitle = k.control(
                who.me,
                zero,
                heads.clone(),
                Action::Title {
                    title: "taken over".into(),
                },
            );
            // The second device, once "added", removes an honest member.
            if let (Some(parent), Some(victim)) = (k.op_hash(&add_second), honest.last()) {
                let second = k.control(
                    who.second,
                    Hlc { ms: 1, counter: 0 },
                    vec![parent],
                    Action::Remove {
                        device: *victim,
                        pins: vec![],
                    },
                );
                out.push(all(second));
            }
            out.extend([remove_admin, add_second, retitle].map(all));
        }
        AttackKind::JunkOperations => {
            let n = count.unwrap_or(MAX_CONTROL_OPS_PER_MEMBER + 16);
            for i in 0..n {
                let hlc = Hlc {
                    ms: now_ms,
                    counter: i as u16,
                };
                let parents = if i % 2 == 0 {
                    heads.clone()
                } else {
                    vec![OpHash(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes())]
                };
                let mine = k.control(
                    who.me,
                    hlc,
                    parents,
                    Action::Profile {
                        name: format!("junk {i}"),
                    },
                );
                let theirs = k.control(
                    who.outsider,
                    hlc,
                    heads.clone(),
                    Action::Title {
                        title: format!("junk {i}"),
                    },
                );
                out.extend([mine, theirs].map(all));
            }
        }
        AttackKind::FarFutureClock => {
            let mut parents = heads.clone();
            let mut times = vec![Hlc::MAX_MS];
            times.extend(
                (1..=count.unwrap_or(30) as u64).map(|i| now_ms + i * (MAX_FORWARD_SKEW_MS - 1)),
            );
            for (i, ms) in times.into_iter().enumerate() {
                let e = k.control(
                    who.me,
                    Hlc { ms, counter: 0 },
                    parents.clone(),
                    Action::Profile {
                        name: format!("t{i}"),
                    },
                );
                if let Some(h) = k.op_hash(&e) {
                    parents = vec![h];
                }
                out.push(all(e));
            }
        }
        AttackKind::ForeignCreatorInvitation => {
            for (i, to) in honest.iter().enumerate() {
                if let Some(e) =
                    k.invitation(who.me, to, who.me.device_id(), vec![], now_ms, i as u8)
                {
                    out.push(all(e));
                }
            }
        }
        AttackKind::InjectedKeys => {
            // Every epoch id it has seen (its state, and the headers of what it holds), with
            // a key of its own, and a key whose own id it names.
            let mut epochs: BTreeSet<EpochId> = k.keys.keys().copied().collect();
            if let Some(c) = rep.conversation(&k.id) {
                epochs.extend(c.membership.state().epochs.iter().map(|e| e.id));
            }
            for b in held(rep, &k.tag) {
                if let Ok(env) = Envelope::decode(&b)
                    && env.header().kind == Kind::Change
                {
                    epochs.insert(env.header().epoch);
                }
            }
            let mine: Key = *blake3::hash(b"a key of the adversary's").as_bytes();
            let mut keys: Vec<(EpochId, Key)> = epochs.into_iter().map(|e| (e, mine)).collect();
            keys.push((crypto::epoch_id(&mine), mine));
            for (i, to) in honest.iter().enumerate() {
                if let Some(e) =
                    k.invitation(who.me, to, k.creator, keys.clone(), now_ms, 0x80 | i as u8)
                {
                    out.push(all(e));
                }
            }
        }
        AttackKind::ResealedDuplicates => {
            let n = count.unwrap_or(16);
            for b in held(rep, &k.tag) {
                if out.len() >= n {
                    break;
                }
                let Ok(env) = Envelope::decode(&b) else {
                    continue;
                };
                let key = match env.header().kind {
                    Kind::Control => Some(k.control_key),
                    Kind::Change => k.keys.get(&env.header().epoch).copied(),
                    Kind::Invite => None,
                };
                if let Some(key) = key {
                    let salt = k.salt();
                    if let Some(copy) = reseal(&b, &key, &k.id, salt) {
                        out.push(all(copy));
                    }
                }
            }
        }
        AttackKind::SplitEquivocation => {
            let hlc = Hlc {
                ms: now_ms,
                counter: 0,
            };
            for (title, audience) in [("x", Audience::Even), ("y", Audience::Odd)] {
                let bytes = k.control(
                    who.me,
                    hlc,
                    heads.clone(),
                    Action::Title {
                        title: title.into(),
                    },
                );
                out.push(Forged { bytes, audience });
            }
        }
    }
    out
}

/// Every envelope (not tombstone) the store holds under `tag`, in id order.
pub fn held(rep: &Replica<MemoryStore>, tag: &Tag) -> Vec<Vec<u8>> {
    let st = rep.store();
    let mut ids = Vec::new();
    let _ = st.for_each_id(tag, &[0; 32], &mut |id| {
        ids.push(*id);
        true
    });
    ids.iter()
        .filter_map(|id| st.envelope(tag, id).ok().flatten())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The envelope re-encrypted under a new salt by anyone who holds its key: the inner
/// plaintext (signer, payload, signature) is copied unchanged, so the copy has a new id.
pub fn reseal(
    bytes: &[u8],
    key: &Key,
    conv: &ConversationId,
    salt: [u8; SALT_LEN],
) -> Option<Vec<u8>> {
    let env = Envelope::decode(bytes).ok()?;
    let mut w = Writer::new();
    env.header().encode(&mut w);
    let hl = w.len();
    let nonce_of = |s: &[u8]| {
        let mut n = [0u8; 24];
        n[..SALT_LEN].copy_from_slice(s);
        n
    };
    let mut ad = bytes.get(..hl)?.to_vec();
    ad.extend_from_slice(&conv.0);
    let inner = crypto::aead_open(
        key,
        &nonce_of(bytes.get(hl..hl + SALT_LEN)?),
        &ad,
        bytes.get(hl + SALT_LEN..)?,
    )
    .ok()?;
    let ct = crypto::aead_seal(key, &nonce_of(&salt), &ad, &inner);
    Some([&bytes[..hl], &salt[..], &ct[..]].concat())
}
