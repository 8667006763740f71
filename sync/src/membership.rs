//! Membership: who is in a conversation, who administers it, and who holds which key.
//!
//! Membership is data in its own right (docs/security.md: "membership is data"): a set of
//! signed operations, each naming the operations it follows (its *parents*), evaluated the
//! same way on every replica. No relay, server or transport decides it. The evaluation is a
//! deterministic linearisation (Kahn's topological sort, ties broken by (HLC, operation hash))
//! followed by a fold that checks each operation against the state produced by the operations
//! before it:
//!
//! * `Create` — only the creator can sign it (the conversation id binds the creator's key);
//!   the creator is the first admin and holds the first key.
//! * `Add` / role change — admins only.
//! * `Remove` — admins, or a member removing itself (leaving). The last admin cannot be
//!   removed. A removal records *pins*: for each page, the last sequence number of the
//!   removed member's changes that the remover had seen. Later changes from that member are
//!   refused or hidden on every replica (the Keyhive "pinned heads" rule).
//! * `Keys` — admins only. Either starts a new epoch (a fresh key sealed to each member with
//!   Noise `X`; a rotation) or shares an existing epoch key with members who lack it.
//! * `Profile` — a member names itself. `Title` — admins rename the conversation.
//!
//! "Remove wins": an operation whose author was removed earlier in the linear order is
//! rejected, even if it was valid where its author wrote it. Concurrent mutual removals of two
//! admins therefore keep exactly one of them. Every replica that holds the same operations
//! computes the same state.
//!
//! Removal excludes a member from *future* keys. It cannot take back what the member already
//! read (no post-removal secrecy for old epochs; see docs/security.md).

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{self, ConversationSecret, Key};
use crate::hlc::Hlc;
use crate::identity::Identity;
use crate::ids::{ConversationId, DeviceId, EpochId, OpHash};
use crate::limits::{
    MAX_CONTROL_OPS, MAX_CONTROL_OPS_PER_MEMBER, MAX_EPOCHS, MAX_LATE_CHANGES_PER_PAGE,
    MAX_MEMBERS, MAX_NAME_BYTES, MAX_OP_PARENTS,
};
use crate::page::Cut;

/// Whether members added later can read what was written before they joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// Newcomers receive every earlier key (field teams need the context).
    #[default]
    Shared,
    /// Adding a member rotates the key; newcomers read only what follows.
    FromJoin,
}

/// The last change of a removed member, per page, that stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pin {
    pub page: u32,
    pub seq: u64,
    pub max_op: u64,
    /// The hash of that change (removals since 2026-12-02 record it): it and its ancestors
    /// are what the page keeps of the removed device at those sequence numbers, so a fork
    /// signed after the removal never displaces them ([`crate::page::Page::resolve`]).
    pub hash: Option<[u8; 32]>,
}

/// A key sealed to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub device: DeviceId,
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        title: String,
        history: History,
    },
    /// Adds devices (or changes their role), granting them the listed epoch keys.
    Add {
        devices: Vec<DeviceId>,
        admin: bool,
        epochs: Vec<EpochId>,
    },
    Remove {
        device: DeviceId,
        pins: Vec<Pin>,
    },
    Keys {
        epoch: EpochId,
        rotate: bool,
        /// [`key_check`] of the epoch's key: 32 bytes that no one can grind a second key
        /// for (the 4-byte epoch id only routes). A key from any source is used only if it
        /// matches the check of the admin who started the epoch.
        check: [u8; 32],
        slots: Vec<Slot>,
    },
    Profile {
        name: String,
    },
    Title {
        title: String,
    },
}

/// A membership operation as signed (the signer and time come from the envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOp {
    pub parents: Vec<OpHash>,
    pub action: Action,
}

const MAX_SLOT_BYTES: usize = 32 + crypto::NOISE_X_OVERHEAD;

impl ControlOp {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(self.parents.len() as u64);
        for p in &self.parents {
            w.raw(&p.0);
        }
        match &self.action {
            Action::Create { title, history } => {
                w.u8(0).str(title).u8(*history as u8);
            }
            Action::Add {
                devices,
                admin,
                epochs,
            } => {
                w.u8(1).varint(devices.len() as u64);
                for d in devices {
                    w.raw(&d.0);
                }
                w.bool(*admin).varint(epochs.len() as u64);
                for e in epochs {
                    w.raw(&e.0);
                }
            }
            Action::Remove { device, pins } => {
                // Tag 6: every pin names its change's hash; tag 2 (older): none does.
                let hashed = !pins.is_empty() && pins.iter().all(|p| p.hash.is_some());
                w.u8(if hashed { 6 } else { 2 })
                    .raw(&device.0)
                    .varint(pins.len() as u64);
                for p in pins {
                    w.varint(u64::from(p.page)).varint(p.seq).varint(p.max_op);
                    if let (true, Some(h)) = (hashed, &p.hash) {
                        w.raw(h);
                    }
                }
            }
            Action::Keys {
                epoch,
                rotate,
                check,
                slots,
            } => {
                w.u8(3)
                    .raw(&epoch.0)
                    .bool(*rotate)
                    .raw(check)
                    .varint(slots.len() as u64);
                for s in slots {
                    w.raw(&s.device.0).bytes(&s.sealed);
                }
            }
            Action::Profile { name } => {
                w.u8(4).str(name);
            }
            Action::Title { title } => {
                w.u8(5).str(title);
            }
        }
        w.into_vec()
    }

    /// Strict decoding: sorted unique lists, known tags, bounded sizes, nothing trailing.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.count("parents", MAX_OP_PARENTS, 32)?;
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            parents.push(OpHash(r.array("parent")?));
        }
        if !parents.windows(2).all(|w| w[0] < w[1]) {
            return Err(DecodeError::NonCanonical("parents order"));
        }
        let action = match r.u8("action")? {
            0 => {
                let title = r.str("title", MAX_NAME_BYTES)?.to_string();
                let history = match r.u8("history")? {
                    0 => History::Shared,
                    1 => History::FromJoin,
                    _ => return Err(DecodeError::Invalid("history")),
                };
                Action::Create { title, history }
            }
            1 => {
                let n = r.count("devices", MAX_MEMBERS, 32)?;
                let mut devices = Vec::with_capacity(n);
                for _ in 0..n {
                    devices.push(DeviceId(r.array("device")?));
                }
                if devices.is_empty() || !devices.windows(2).all(|w| w[0] < w[1]) {
                    return Err(DecodeError::NonCanonical("devices order"));
                }
                let admin = r.bool("admin")?;
                let n = r.count("epochs", MAX_EPOCHS, 4)?;
                let mut epochs = Vec::with_capacity(n);
                for _ in 0..n {
                    epochs.push(EpochId(r.array("epoch")?));
                }
                if !epochs.windows(2).all(|w| w[0] < w[1]) {
                    return Err(DecodeError::NonCanonical("epochs order"));
                }
                Action::Add {
                    devices,
                    admin,
                    epochs,
                }
            }
            tag @ (2 | 6) => {
                let hashed = tag == 6;
                let device = DeviceId(r.array("device")?);
                let n = r.count("pins", 1 << 20, if hashed { 35 } else { 3 })?;
                if hashed && n == 0 {
                    return Err(DecodeError::NonCanonical("hashed removal without pins"));
                }
                let mut pins = Vec::with_capacity(n);
                for _ in 0..n {
                    pins.push(Pin {
                        page: r.u32_varint("pin page")?,
                        seq: r.varint("pin seq")?,
                        max_op: r.varint("pin op")?,
                        hash: if hashed {
                            Some(r.array("pin hash")?)
                        } else {
                            None
                        },
                    });
                }
                if !pins.windows(2).all(|w| w[0].page < w[1].page) {
                    return Err(DecodeError::NonCanonical("pins order"));
                }
                Action::Remove { device, pins }
            }
            3 => {
                let epoch = EpochId(r.array("epoch")?);
                let rotate = r.bool("rotate")?;
                let check = r.array("key check")?;
                let n = r.count("slots", MAX_MEMBERS, 33)?;
                let mut slots = Vec::with_capacity(n);
                for _ in 0..n {
                    let device = DeviceId(r.array("slot device")?);
                    let sealed = r.bytes("slot", MAX_SLOT_BYTES)?.to_vec();
                    slots.push(Slot { device, sealed });
                }
                if !slots.windows(2).all(|w| w[0].device < w[1].device) {
                    return Err(DecodeError::NonCanonical("slots order"));
                }
                Action::Keys {
                    epoch,
                    rotate,
                    check,
                    slots,
                }
            }
            4 => Action::Profile {
                name: r.str("name", MAX_NAME_BYTES)?.to_string(),
            },
            5 => Action::Title {
                title: r.str("title", MAX_NAME_BYTES)?.to_string(),
            },
            _ => return Err(DecodeError::Invalid("action")),
        };
        r.finish()?;
        Ok(Self { parents, action })
    }
}

/// The 32-byte check of an epoch key that membership records (see [`Action::Keys`]).
pub fn key_check(key: &Key) -> [u8; 32] {
    blake3::derive_key("vaarta 2026 epoch key check v1", key)
}

fn slot_prologue(conversation: &ConversationId, epoch: &EpochId) -> Vec<u8> {
    let mut p = b"vaarta 2026 epoch key v1".to_vec();
    p.extend_from_slice(&conversation.0);
    p.extend_from_slice(&epoch.0);
    p
}

/// Seals `key` to each device (sorted, one slot each).
pub fn seal_slots(
    admin: &Identity,
    conversation: &ConversationId,
    key: &Key,
    devices: &BTreeSet<DeviceId>,
    mut seed: impl FnMut() -> [u8; 32],
) -> Vec<Slot> {
    let epoch = crypto::epoch_id(key);
    let prologue = slot_prologue(conversation, &epoch);
    devices
        .iter()
        .filter_map(|d| {
            let sealed = crypto::noise_seal(admin, d, &prologue, key, seed()).ok()?;
            Some(Slot { device: *d, sealed })
        })
        .collect()
}

/// Opens my slot; checks the sender is the signer and the key matches the epoch id.
pub fn open_slot(
    me: &Identity,
    conversation: &ConversationId,
    epoch: &EpochId,
    signer: &DeviceId,
    slot: &Slot,
) -> Option<Key> {
    let (from, key) =
        crypto::noise_open(me, &slot_prologue(conversation, epoch), &slot.sealed).ok()?;
    let key: Key = key.try_into().ok()?;
    (signer.x25519_public() == Some(from) && crypto::epoch_id(&key) == *epoch).then_some(key)
}

/// A verified operation with its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub signer: DeviceId,
    pub hlc: Hlc,
    pub op: ControlOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    pub admin: bool,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub id: EpochId,
    /// [`key_check`] of its key.
    pub check: [u8; 32],
    /// The operation that started it (`None` for the first epoch).
    pub started_by: Option<OpHash>,
    /// Devices that were given this key.
    pub holders: BTreeSet<DeviceId>,
}

/// Why an operation had no effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpRejected {
    #[error("only the creator can create the conversation")]
    NotCreator,
    #[error("the conversation was already created")]
    DuplicateCreate,
    #[error("the author is not a member")]
    NotMember,
    #[error("the author is not an admin")]
    NotAdmin,
    #[error("the last admin cannot be removed")]
    LastAdmin,
    #[error("the device is not a member")]
    NoSuchMember,
    #[error("too many members")]
    TooManyMembers,
    #[error("too many epochs")]
    TooManyEpochs,
    #[error("unknown epoch")]
    UnknownEpoch,
    #[error("not a valid device key")]
    BadDevice,
    #[error("the operation came before the conversation was created")]
    BeforeCreate,
    #[error("the operation is concurrent with its author's removal (removal wins)")]
    Superseded,
    #[error("the key check differs from the epoch's")]
    KeyMismatch,
}

/// The evaluated membership of one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub creator: Option<DeviceId>,
    pub title: String,
    pub history: History,
    pub members: BTreeMap<DeviceId, Member>,
    pub removed: BTreeMap<DeviceId, Vec<Pin>>,
    /// In the order they started; the last one is current.
    pub epochs: Vec<Epoch>,
    /// Applied operations in linear order.
    pub order: Vec<OpHash>,
    pub rejected: BTreeMap<OpHash, OpRejected>,
    /// Admin seniority: the position in `order` of the operation that last made each device
    /// an admin (the creator: 0). Kept after a removal; decides concurrent mutual removals.
    pub admin_since: BTreeMap<DeviceId, usize>,
    /// Epochs this conversation may have ([`Membership::with_max_epochs`]; [`MAX_EPOCHS`]
    /// unless lowered).
    pub max_epochs: usize,
}

impl State {
    pub fn is_member(&self, d: &DeviceId) -> bool {
        self.members.contains_key(d)
    }

    pub fn is_admin(&self, d: &DeviceId) -> bool {
        self.members.get(d).is_some_and(|m| m.admin)
    }

    pub fn current_epoch(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    pub fn epoch(&self, id: &EpochId) -> Option<&Epoch> {
        self.epochs.iter().find(|e| e.id == *id)
    }

    /// Whether `key` is the key of epoch `id` as its admin recorded it (`None`: the epoch is
    /// not known yet).
    pub fn key_matches(&self, id: &EpochId, key: &Key) -> Option<bool> {
        self.epoch(id).map(|e| e.check == key_check(key))
    }

    /// A holder of the current key is no longer a member: the key must rotate.
    pub fn needs_rotation(&self) -> bool {
        self.current_epoch()
            .is_some_and(|e| e.holders.iter().any(|h| !self.members.contains_key(h)))
    }

    /// Every epoch is used ([`State::max_epochs`]): no rotation can start another.
    pub fn epochs_full(&self) -> bool {
        self.epochs.len() >= self.max_epochs
    }

    /// The key must rotate and cannot: every epoch is used ([`State::max_epochs`]). Nothing
    /// new may be sealed under the current key then (a removed device holds it).
    pub fn rotation_exhausted(&self) -> bool {
        self.epochs_full() && self.needs_rotation()
    }

    /// Members that do not hold the current key.
    pub fn missing_current_key(&self) -> BTreeSet<DeviceId> {
        match self.current_epoch() {
            Some(e) => self
                .members
                .keys()
                .filter(|m| !e.holders.contains(m))
                .copied()
                .collect(),
            None => BTreeSet::new(),
        }
    }

    /// Whether a change by `author` with (page, seq) is taken (`None`: the author is not
    /// known yet). A member's always are. A removed device's are taken up to
    /// [`MAX_LATE_CHANGES_PER_PAGE`] past its pin for the page (0 where it has none), so that
    /// every replica holds the same changes whether it learnt of the removal before or after
    /// they arrived (honest changes built on them then never wait for ever); what lies past
    /// the pin is taken but not shown ([`State::cut`]).
    pub fn change_allowed(&self, author: &DeviceId, page: u32, seq: u64) -> Option<bool> {
        if self.members.contains_key(author) {
            return Some(true);
        }
        self.removed.get(author)?;
        Some(self.late_ceiling(author, page).is_none_or(|max| seq <= max))
    }

    /// The highest sequence number of a removed device's changes that page `page` takes:
    /// its pin there (0 where it has none) plus [`MAX_LATE_CHANGES_PER_PAGE`]; `None` for a
    /// member or a device the log does not name. A page leaves out the removed device's
    /// changes past it, and what is built on them, whenever they came
    /// ([`crate::page::Page::set_late_ceilings`]), so a replica that took them before it
    /// learnt of the removal ends with the document of one that learnt of it first.
    pub fn late_ceiling(&self, author: &DeviceId, page: u32) -> Option<u64> {
        if self.members.contains_key(author) {
            return None;
        }
        let pins = self.removed.get(author)?;
        let pinned = pins
            .iter()
            .filter(|p| p.page == page)
            .map(|p| p.seq)
            .max()
            .unwrap_or(0);
        Some(pinned.saturating_add(MAX_LATE_CHANGES_PER_PAGE))
    }

    /// What of `author`'s writes in `page` is shown: everything (`None`) for a member and for
    /// a device the log does not name; up to its pin for the page for a removed device
    /// (nothing where it has no pin).
    pub fn cut(&self, author: &DeviceId, page: u32) -> Option<Cut> {
        if self.members.contains_key(author) {
            return None;
        }
        let pins = self.removed.get(author)?;
        Some(
            pins.iter()
                .filter(|p| p.page == page)
                .max_by_key(|p| p.seq)
                .map_or(Cut::default(), |p| Cut {
                    seq: p.seq,
                    max_op: p.max_op,
                }),
        )
    }

    /// The changes removals pinned in `page` (their hashes), whatever device they name.
    pub fn pinned_hashes(&self, page: u32) -> Vec<[u8; 32]> {
        self.removed
            .values()
            .flatten()
            .filter(|p| p.page == page)
            .filter_map(|p| p.hash)
            .collect()
    }

    /// Whether a message created by `author` at op counter `op` in `page` is shown.
    pub fn message_visible(&self, author: &DeviceId, page: u32, op: u64) -> bool {
        if self.members.contains_key(author) {
            return true;
        }
        match self.removed.get(author) {
            Some(pins) => pins.iter().any(|p| p.page == page && op <= p.max_op),
            None => false,
        }
    }
}

/// All operations of one conversation and their evaluation.
#[derive(Debug, Clone)]
pub struct Membership {
    conversation: ConversationId,
    secret: ConversationSecret,
    ops: BTreeMap<OpHash, Entry>,
    state: State,
    heads: BTreeSet<OpHash>,
    /// Operations held per quota holder (the per-member quota): an operation is charged to
    /// its signer, or, when the signer is named only by rejected `Add`s, to whom the
    /// earliest-by-hash of those `Add`s was charged ([`Membership::charge_of`]).
    by_signer: BTreeMap<DeviceId, usize>,
    /// To whom each held operation was charged.
    charged: BTreeMap<OpHash, DeviceId>,
    /// Epochs the conversation may have (part of the protocol: every replica of a
    /// conversation must use the same value).
    max_epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InsertError {
    #[error("too many membership operations")]
    Full,
    /// A parent has not arrived: the caller keeps the operation aside (bounded) and offers it
    /// again later. It is not counted, so operations that never find their parents cannot
    /// fill the log.
    #[error("a parent operation has not arrived")]
    Early,
    /// The signer was never a member where it signed (not the creator, and no `Add` among the
    /// operation's ancestors names it), or the operation has no causal position (a root other
    /// than the creator's `Create`). Never counted, never stored.
    #[error("the signer was never a member where it signed")]
    Outsider,
}

impl Membership {
    pub fn new(conversation: ConversationId, secret: ConversationSecret) -> Self {
        let mut m = Self {
            conversation,
            secret,
            ops: BTreeMap::new(),
            state: State::default(),
            heads: BTreeSet::new(),
            by_signer: BTreeMap::new(),
            charged: BTreeMap::new(),
            max_epochs: MAX_EPOCHS,
        };
        m.recompute();
        m
    }

    /// The same log with a lower epoch bound, clamped to `1..=`[`MAX_EPOCHS`] (decoders are
    /// bounded by [`MAX_EPOCHS`]). For tests and simulations that need to reach the bound
    /// quickly: every replica of a conversation must use the same value, or they disagree on
    /// which rotations hold.
    pub fn with_max_epochs(mut self, n: usize) -> Self {
        self.max_epochs = n.clamp(1, MAX_EPOCHS);
        self.recompute();
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn contains(&self, h: &OpHash) -> bool {
        self.ops.contains_key(h)
    }

    pub fn entry(&self, h: &OpHash) -> Option<&Entry> {
        self.ops.get(h)
    }

    /// Whether a held rotation that is not applied started `epoch` with key check `check`:
    /// one voided when its admin's removal won, or signed by a device whose admin rights came
    /// from a voided operation (a backdated takeover). Such an epoch is in no state, but where
    /// the rotation held until the heal of a split, members wrote under its key: the key
    /// still reads those envelopes ([`crate::conversation::Conversation::read_key`]), and is
    /// never used to seal. What such envelopes may carry is judged as any other's (signer,
    /// page rules, [`State::change_allowed`]).
    pub fn records_check(&self, epoch: &EpochId, check: &[u8; 32]) -> bool {
        self.ops.iter().any(|(h, e)| {
            matches!(&e.op.action, Action::Keys { epoch: ep, rotate: true, check: ck, .. }
                if ep == epoch && ck == check)
                && self.state.rejected.contains_key(h)
        })
    }

    /// Devices that got `epoch`'s key from a held `Keys` operation (its slots and signer).
    pub fn key_holders(&self, epoch: &EpochId) -> BTreeSet<DeviceId> {
        let mut out = BTreeSet::new();
        for e in self.ops.values() {
            if let Action::Keys {
                epoch: ep, slots, ..
            } = &e.op.action
                && ep == epoch
            {
                out.insert(e.signer);
                out.extend(slots.iter().map(|s| s.device));
            }
        }
        out
    }

    /// Whether a held `Keys` operation shares `epoch` without rotating (for a voided epoch:
    /// someone has shared its key already).
    pub fn has_share(&self, epoch: &EpochId) -> bool {
        self.ops.values().any(|e| {
            matches!(&e.op.action, Action::Keys { epoch: ep, rotate: false, .. } if ep == epoch)
        })
    }

    /// Parents for a new operation: the current heads, at most [`MAX_OP_PARENTS`] of them
    /// (concurrent junk can make many heads; an operation with more parents would not
    /// decode anywhere). Applied heads come first, then rejected ones, each in hash order.
    pub fn heads(&self) -> Vec<OpHash> {
        let mut hs: Vec<OpHash> = self.heads.iter().copied().collect();
        if hs.len() > MAX_OP_PARENTS {
            hs.sort_by_key(|h| (self.state.rejected.contains_key(h), *h));
            hs.truncate(MAX_OP_PARENTS);
            hs.sort();
        }
        hs
    }

    /// Adds a verified operation and re-evaluates. Returns false if it was known.
    ///
    /// Only operations that can take a place in the log count toward its bounds: the
    /// creator's `Create` (no parents), or an operation whose parents are all held and whose
    /// signer is the creator or named by an `Add` among its ancestors (a current or past
    /// member where it signed). Anything else is [`InsertError::Early`] (kept aside by the
    /// caller) or [`InsertError::Outsider`] (refused). Past [`MAX_CONTROL_OPS`] only the
    /// current admins may add operations (up to twice the bound), so junk from members can
    /// never stop a removal or a rotation; a signer that is not an admin holds at most
    /// [`MAX_CONTROL_OPS_PER_MEMBER`], and keys named only in rejected `Add`s share the
    /// quota of that `Add`'s signer ([`Membership::charge_of`]).
    pub fn insert(&mut self, hash: OpHash, entry: Entry) -> Result<bool, InsertError> {
        if self.ops.contains_key(&hash) {
            return Ok(false);
        }
        let charge = if matches!(entry.op.action, Action::Create { .. }) {
            if !entry.op.parents.is_empty()
                || self.secret.conversation_id(&entry.signer) != self.conversation
            {
                return Err(InsertError::Outsider);
            }
            entry.signer
        } else {
            if entry.op.parents.is_empty() {
                return Err(InsertError::Outsider);
            }
            if entry.op.parents.iter().any(|p| !self.ops.contains_key(p)) {
                return Err(InsertError::Early);
            }
            self.charge_of(&entry).ok_or(InsertError::Outsider)?
        };
        let admin = self.state.is_admin(&entry.signer);
        let own = self.by_signer.get(&charge).copied().unwrap_or(0);
        if self.ops.len() >= 2 * MAX_CONTROL_OPS
            || (!admin && (self.ops.len() >= MAX_CONTROL_OPS || own >= MAX_CONTROL_OPS_PER_MEMBER))
        {
            return Err(InsertError::Full);
        }
        *self.by_signer.entry(charge).or_default() += 1;
        self.charged.insert(hash, charge);
        // Fast path: an operation that follows every current head (the usual case: ops
        // arrive in causal order) comes last in the linear order and is concurrent with
        // nothing, so it can be applied to the current state; the full evaluation would give
        // the same result.
        let parents: BTreeSet<OpHash> = entry.op.parents.iter().copied().collect();
        let fast = parents == self.heads;
        self.ops.insert(hash, entry);
        if fast {
            let mut st = std::mem::take(&mut self.state);
            match self.apply(&mut st, hash, &self.ops[&hash]) {
                Ok(()) => st.order.push(hash),
                Err(why) => {
                    st.rejected.insert(hash, why);
                }
            }
            self.state = st;
            self.heads = BTreeSet::from([hash]);
        } else {
            self.recompute();
        }
        Ok(true)
    }

    /// Whom an operation is charged to, or `None` if its signer may not add operations at
    /// all. The creator, and a signer named by an applied `Add` among the operation's
    /// ancestors, are charged themselves. A signer named only by rejected `Add`s (a member
    /// naming keys it holds in an `Add` it may not make) is charged to whom the first of
    /// those `Add`s by hash was charged, so such keys share that quota instead of each having
    /// one. A signer no `Add` among the ancestors names is an outsider.
    fn charge_of(&self, e: &Entry) -> Option<DeviceId> {
        if self.secret.conversation_id(&e.signer) == self.conversation {
            return Some(e.signer);
        }
        let mut seen: BTreeSet<OpHash> = BTreeSet::new();
        let mut stack: Vec<OpHash> = e.op.parents.clone();
        let mut rejected: Option<OpHash> = None;
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            let Some(a) = self.ops.get(&h) else {
                continue;
            };
            if let Action::Add { devices, .. } = &a.op.action
                && devices.binary_search(&e.signer).is_ok()
            {
                if !self.state.rejected.contains_key(&h) {
                    return Some(e.signer);
                }
                rejected = Some(rejected.map_or(h, |r| r.min(h)));
            }
            stack.extend(a.op.parents.iter().copied());
        }
        rejected.map(|r| self.charged.get(&r).copied().unwrap_or(self.ops[&r].signer))
    }

    /// Operations held but neither applied nor rejected (none: early ones are not held).
    pub fn waiting(&self) -> usize {
        self.ops.len() - self.state.order.len() - self.state.rejected.len()
    }

    /// Every operation reachable from `from` by `next` (not `from` itself).
    fn reach(&self, from: OpHash, next: impl Fn(&OpHash) -> Vec<OpHash>) -> BTreeSet<OpHash> {
        let mut seen = BTreeSet::new();
        let mut stack = next(&from);
        while let Some(h) = stack.pop() {
            if seen.insert(h) {
                stack.extend(next(&h));
            }
        }
        seen
    }

    /// The linear order: Kahn's topological sort, ties broken by operation hash alone. The
    /// signer-chosen time plays no part (a backdated operation gains nothing), and the rules
    /// that decide conflicts ([`Membership::superseded`]) do not depend on this order.
    fn linear_order(&self, children: &BTreeMap<OpHash, Vec<OpHash>>) -> Vec<OpHash> {
        let mut indegree: BTreeMap<OpHash, usize> = self
            .ops
            .iter()
            .map(|(h, e)| (*h, e.op.parents.len()))
            .collect();
        let mut ready: BTreeSet<OpHash> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(h, _)| *h)
            .collect();
        let mut order = Vec::with_capacity(self.ops.len());
        while let Some(h) = ready.pop_first() {
            order.push(h);
            for c in children.get(&h).into_iter().flatten() {
                if let Some(d) = indegree.get_mut(c) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(*c);
                    }
                }
            }
        }
        order
    }

    fn fold(&self, order: &[OpHash], excluded: &BTreeSet<OpHash>) -> State {
        let mut st = State {
            epochs: vec![Epoch {
                id: crypto::epoch_id(&self.secret.first_epoch_key()),
                check: key_check(&self.secret.first_epoch_key()),
                started_by: None,
                holders: BTreeSet::new(),
            }],
            max_epochs: self.max_epochs,
            ..State::default()
        };
        for h in order {
            if excluded.contains(h) {
                st.rejected.insert(*h, OpRejected::Superseded);
                continue;
            }
            match self.apply(&mut st, *h, &self.ops[h]) {
                Ok(()) => st.order.push(*h),
                Err(why) => {
                    st.rejected.insert(*h, why);
                }
            }
        }
        st
    }

    /// "Removal wins": for the first applied removal (of T, by S) that leaves applied
    /// operations of T concurrent with it, those operations (to be voided). Except when T
    /// concurrently removed S and T is the senior admin ([`State::admin_since`]): then the
    /// removal itself is voided. Empty when nothing is left to void.
    fn superseded(
        &self,
        st: &State,
        excluded: &BTreeSet<OpHash>,
        children: &BTreeMap<OpHash, Vec<OpHash>>,
    ) -> Vec<OpHash> {
        let applied: BTreeSet<OpHash> = st.order.iter().copied().collect();
        for r in &st.order {
            let e = &self.ops[r];
            let Action::Remove { device: target, .. } = &e.op.action else {
                continue;
            };
            let remover = e.signer;
            let by_target: Vec<OpHash> = self
                .ops
                .iter()
                .filter(|(h, o)| o.signer == *target && *h != r && !excluded.contains(*h))
                .map(|(h, _)| *h)
                .collect();
            if by_target.is_empty() {
                continue;
            }
            let before = self.reach(*r, |h| self.ops[h].op.parents.clone());
            let after = self.reach(*r, |h| children.get(h).cloned().unwrap_or_default());
            let concurrent: Vec<OpHash> = by_target
                .into_iter()
                .filter(|h| !before.contains(h) && !after.contains(h))
                .collect();
            let counter = concurrent.iter().any(|h| {
                matches!(&self.ops[h].op.action, Action::Remove { device, .. } if *device == remover)
            });
            let rank = |d: &DeviceId| st.admin_since.get(d).copied().unwrap_or(usize::MAX);
            if remover != *target && counter && rank(target) < rank(&remover) {
                return vec![*r];
            }
            let void: Vec<OpHash> = concurrent
                .into_iter()
                .filter(|h| applied.contains(h))
                .collect();
            if !void.is_empty() {
                return void;
            }
        }
        Vec::new()
    }

    fn recompute(&mut self) {
        let mut children: BTreeMap<OpHash, Vec<OpHash>> = BTreeMap::new();
        for (h, e) in &self.ops {
            for p in &e.op.parents {
                children.entry(*p).or_default().push(*h);
            }
        }
        let order = self.linear_order(&children);
        // Fold, void what a removal supersedes, fold again, until nothing changes. Each round
        // voids at least one applied operation, so this ends.
        let mut excluded: BTreeSet<OpHash> = BTreeSet::new();
        let st = loop {
            let st = self.fold(&order, &excluded);
            let more = self.superseded(&st, &excluded, &children);
            if more.is_empty() {
                break st;
            }
            excluded.extend(more);
        };
        self.heads = self
            .ops
            .keys()
            .filter(|h| !children.contains_key(*h))
            .copied()
            .collect();
        self.state = st;
    }

    fn apply(&self, st: &mut State, hash: OpHash, e: &Entry) -> Result<(), OpRejected> {
        let author = &e.signer;
        if let Action::Create { title, history } = &e.op.action {
            if self.secret.conversation_id(author) != self.conversation {
                return Err(OpRejected::NotCreator);
            }
            if st.creator.is_some() {
                return Err(OpRejected::DuplicateCreate);
            }
            st.creator = Some(*author);
            st.admin_since.insert(*author, st.order.len());
            st.title = title.clone();
            st.history = *history;
            st.members.insert(
                *author,
                Member {
                    admin: true,
                    name: None,
                },
            );
            st.epochs[0].holders.insert(*author);
            return Ok(());
        }
        if st.creator.is_none() {
            return Err(OpRejected::BeforeCreate);
        }
        let is_member = st.members.contains_key(author);
        let is_admin = st.is_admin(author);
        match &e.op.action {
            Action::Create { .. } => unreachable!("handled above"),
            Action::Add {
                devices,
                admin,
                epochs,
            } => {
                if !is_admin {
                    return Err(if is_member {
                        OpRejected::NotAdmin
                    } else {
                        OpRejected::NotMember
                    });
                }
                if devices.iter().any(|d| !d.is_valid()) {
                    return Err(OpRejected::BadDevice);
                }
                let new = devices
                    .iter()
                    .filter(|d| !st.members.contains_key(d))
                    .count();
                if st.members.len() + new > MAX_MEMBERS {
                    return Err(OpRejected::TooManyMembers);
                }
                // A role change must not demote the last admin.
                let demoted = devices.iter().filter(|d| !admin && st.is_admin(d)).count();
                if demoted > 0 && st.members.values().filter(|m| m.admin).count() <= demoted {
                    return Err(OpRejected::LastAdmin);
                }
                for device in devices {
                    if *admin && !st.is_admin(device) {
                        st.admin_since.insert(*device, st.order.len());
                    }
                    match st.members.get_mut(device) {
                        Some(m) => m.admin = *admin,
                        None => {
                            st.removed.remove(device);
                            st.members.insert(
                                *device,
                                Member {
                                    admin: *admin,
                                    name: None,
                                },
                            );
                        }
                    }
                    for ep in &mut st.epochs {
                        if epochs.contains(&ep.id) {
                            ep.holders.insert(*device);
                        }
                    }
                }
            }
            Action::Remove { device, pins } => {
                if !(is_admin || (is_member && author == device)) {
                    return Err(if is_member {
                        OpRejected::NotAdmin
                    } else {
                        OpRejected::NotMember
                    });
                }
                let Some(target) = st.members.get(device) else {
                    return Err(OpRejected::NoSuchMember);
                };
                if target.admin && st.members.values().filter(|m| m.admin).count() == 1 {
                    return Err(OpRejected::LastAdmin);
                }
                st.members.remove(device);
                st.removed.insert(*device, pins.clone());
            }
            Action::Keys {
                epoch,
                rotate,
                check,
                slots,
            } => {
                if !is_admin {
                    return Err(if is_member {
                        OpRejected::NotAdmin
                    } else {
                        OpRejected::NotMember
                    });
                }
                let holders = slots.iter().map(|s| s.device).chain([*author]);
                let known = st.epochs.iter_mut().find(|ep| ep.id == *epoch);
                if let Some(ep) = known {
                    // A repeated id (a replayed key) moves nothing backwards: just share. A
                    // share must name the key the epoch started with.
                    if ep.check != *check {
                        return Err(OpRejected::KeyMismatch);
                    }
                    ep.holders.extend(holders);
                } else if *rotate {
                    if st.epochs_full() {
                        return Err(OpRejected::TooManyEpochs);
                    }
                    st.epochs.push(Epoch {
                        id: *epoch,
                        check: *check,
                        started_by: Some(hash),
                        holders: holders.collect(),
                    });
                } else {
                    return Err(OpRejected::UnknownEpoch);
                }
            }
            Action::Profile { name } => {
                let m = st.members.get_mut(author).ok_or(OpRejected::NotMember)?;
                m.name = Some(name.clone());
            }
            Action::Title { title } => {
                if !is_admin {
                    return Err(if is_member {
                        OpRejected::NotAdmin
                    } else {
                        OpRejected::NotMember
                    });
                }
                st.title = title.clone();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Fixture {
        cs: ConversationSecret,
        conv: ConversationId,
        ids: Vec<Identity>,
    }

    fn fixture() -> Fixture {
        let ids: Vec<Identity> = (1..=5u8).map(|i| Identity::from_seed([i; 32])).collect();
        let cs = ConversationSecret([42; 32]);
        let conv = cs.conversation_id(&ids[0].device_id());
        Fixture { cs, conv, ids }
    }

    fn op(signer: &Identity, ms: u64, parents: Vec<OpHash>, action: Action) -> (OpHash, Entry) {
        let mut parents = parents;
        parents.sort();
        let e = Entry {
            signer: signer.device_id(),
            hlc: Hlc { ms, counter: 0 },
            op: ControlOp { parents, action },
        };
        let h = OpHash(
            *blake3::hash(
                &[
                    e.op.encode(),
                    signer.device_id().0.to_vec(),
                    ms.to_le_bytes().to_vec(),
                ]
                .concat(),
            )
            .as_bytes(),
        );
        (h, e)
    }

    #[test]
    fn encode_decode_round_trip() {
        let f = fixture();
        let ops = [
            Action::Create {
                title: "बाढ़ राहत".into(),
                history: History::FromJoin,
            },
            Action::Add {
                devices: vec![f.ids[1].device_id()],
                admin: true,
                epochs: vec![EpochId([1; 4]), EpochId([2; 4])],
            },
            Action::Remove {
                device: f.ids[1].device_id(),
                pins: vec![
                    Pin {
                        page: 0,
                        seq: 3,
                        max_op: 20,
                        hash: None,
                    },
                    Pin {
                        page: 2,
                        seq: 1,
                        max_op: 7,
                        hash: None,
                    },
                ],
            },
            Action::Remove {
                device: f.ids[1].device_id(),
                pins: vec![
                    Pin {
                        page: 0,
                        seq: 3,
                        max_op: 20,
                        hash: Some([7; 32]),
                    },
                    Pin {
                        page: 2,
                        seq: 1,
                        max_op: 7,
                        hash: Some([8; 32]),
                    },
                ],
            },
            Action::Keys {
                epoch: EpochId([9; 4]),
                rotate: true,
                check: [3; 32],
                slots: vec![Slot {
                    device: DeviceId([1; 32]),
                    sealed: vec![5; 128],
                }],
            },
            Action::Profile {
                name: "Asha".into(),
            },
            Action::Title { title: "t".into() },
        ];
        for a in ops {
            let op = ControlOp {
                parents: vec![OpHash([1; 32]), OpHash([2; 32])],
                action: a,
            };
            assert_eq!(ControlOp::decode(&op.encode()).unwrap(), op);
        }
        let bad = ControlOp {
            parents: vec![OpHash([2; 32]), OpHash([1; 32])],
            action: Action::Profile { name: "x".into() },
        };
        assert_eq!(
            ControlOp::decode(&bad.encode()),
            Err(DecodeError::NonCanonical("parents order"))
        );
        let mut trailing = ControlOp {
            parents: vec![],
            action: Action::Profile { name: "x".into() },
        }
        .encode();
        trailing.push(0);
        assert_eq!(ControlOp::decode(&trailing), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn only_creator_creates_and_only_admins_add() {
        let f = fixture();
        let mut m = Membership::new(f.conv, f.cs.clone());
        // Someone else signing the genesis is refused.
        let (fake, e) = op(
            &f.ids[1],
            1,
            vec![],
            Action::Create {
                title: "x".into(),
                history: History::Shared,
            },
        );
        // Refused outright: it has no place in the log and does not count.
        assert_eq!(m.insert(fake, e), Err(InsertError::Outsider));
        assert!(!m.contains(&fake));
        let (c, e) = op(
            &f.ids[0],
            2,
            vec![],
            Action::Create {
                title: "ops".into(),
                history: History::Shared,
            },
        );
        m.insert(c, e).unwrap();
        assert_eq!(m.state().creator, Some(f.ids[0].device_id()));
        // Non-member cannot add.
        let (a1, e) = op(
            &f.ids[2],
            3,
            vec![c],
            Action::Add {
                devices: vec![f.ids[3].device_id()],
                admin: false,
                epochs: vec![],
            },
        );
        assert_eq!(m.insert(a1, e), Err(InsertError::Outsider));
        let (a2, e) = op(
            &f.ids[0],
            4,
            vec![c],
            Action::Add {
                devices: vec![f.ids[1].device_id()],
                admin: false,
                epochs: vec![],
            },
        );
        m.insert(a2, e).unwrap();
        assert!(m.state().is_member(&f.ids[1].device_id()));
        // A plain member cannot add either.
        let (a3, e) = op(
            &f.ids[1],
            5,
            vec![a2],
            Action::Add {
                devices: vec![f.ids[4].device_id()],
                admin: false,
                epochs: vec![],
            },
        );
        m.insert(a3, e).unwrap();
        assert_eq!(m.state().rejected.get(&a3), Some(&OpRejected::NotAdmin));
        assert!(!m.state().is_member(&f.ids[4].device_id()));
        // The last admin cannot be removed; a member can leave.
        let (r1, e) = op(
            &f.ids[0],
            6,
            vec![a3],
            Action::Remove {
                device: f.ids[0].device_id(),
                pins: vec![],
            },
        );
        m.insert(r1, e).unwrap();
        assert_eq!(m.state().rejected.get(&r1), Some(&OpRejected::LastAdmin));
        let (r2, e) = op(
            &f.ids[1],
            7,
            vec![r1],
            Action::Remove {
                device: f.ids[1].device_id(),
                pins: vec![],
            },
        );
        m.insert(r2, e).unwrap();
        assert!(!m.state().is_member(&f.ids[1].device_id()));
        assert!(m.heads().contains(&r2) && !m.heads().contains(&r1));
    }

    #[test]
    fn mutual_removal_keeps_exactly_one_admin() {
        let f = fixture();
        let mut m = Membership::new(f.conv, f.cs.clone());
        let (c, e) = op(
            &f.ids[0],
            1,
            vec![],
            Action::Create {
                title: "x".into(),
                history: History::Shared,
            },
        );
        m.insert(c, e).unwrap();
        let (a, e) = op(
            &f.ids[0],
            2,
            vec![c],
            Action::Add {
                devices: vec![f.ids[1].device_id()],
                admin: true,
                epochs: vec![],
            },
        );
        m.insert(a, e).unwrap();
        let (r0, e0) = op(
            &f.ids[0],
            3,
            vec![a],
            Action::Remove {
                device: f.ids[1].device_id(),
                pins: vec![],
            },
        );
        let (r1, e1) = op(
            &f.ids[1],
            3,
            vec![a],
            Action::Remove {
                device: f.ids[0].device_id(),
                pins: vec![],
            },
        );
        let mut m2 = m.clone();
        m.insert(r0, e0.clone()).unwrap();
        m.insert(r1, e1.clone()).unwrap();
        m2.insert(r1, e1).unwrap();
        m2.insert(r0, e0).unwrap();
        assert_eq!(m.state(), m2.state());
        assert_eq!(m.state().members.values().filter(|m| m.admin).count(), 1);
    }

    #[test]
    fn slots_open_only_for_their_device() {
        let f = fixture();
        let key = [7u8; 32];
        let epoch = crypto::epoch_id(&key);
        let devices: BTreeSet<DeviceId> = [f.ids[1].device_id(), f.ids[2].device_id()].into();
        let mut n = 0u8;
        let slots = seal_slots(&f.ids[0], &f.conv, &key, &devices, || {
            n += 1;
            [n; 32]
        });
        assert_eq!(slots.len(), 2);
        let mine = slots
            .iter()
            .find(|s| s.device == f.ids[1].device_id())
            .unwrap();
        assert_eq!(
            open_slot(&f.ids[1], &f.conv, &epoch, &f.ids[0].device_id(), mine),
            Some(key)
        );
        // Wrong claimed signer, wrong reader, wrong epoch.
        assert_eq!(
            open_slot(&f.ids[1], &f.conv, &epoch, &f.ids[3].device_id(), mine),
            None
        );
        assert_eq!(
            open_slot(&f.ids[2], &f.conv, &epoch, &f.ids[0].device_id(), mine),
            None
        );
        assert_eq!(
            open_slot(
                &f.ids[1],
                &f.conv,
                &EpochId([0; 4]),
                &f.ids[0].device_id(),
                mine
            ),
            None
        );
    }

    proptest! {
        /// Any delivery order of the same operations gives the same state.
        #[test]
        fn order_does_not_matter(seed in any::<u64>(), perm in proptest::collection::vec(any::<u32>(), 12)) {
            let f = fixture();
            let d = |i: usize| f.ids[i].device_id();
            let mut ops = Vec::new();
            let (c, e) = op(&f.ids[0], 1, vec![], Action::Create { title: "x".into(), history: History::Shared });
            ops.push((c, e));
            let mut heads = vec![c];
            // Build a small DAG with concurrent branches from a seeded schedule.
            let mut x = seed;
            for i in 0..10u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let signer = &f.ids[(x >> 33) as usize % 3];
                let target = d(1 + (x >> 40) as usize % 4);
                let action = match (x >> 50) % 4 {
                    0 => Action::Add { devices: vec![target], admin: (x >> 20) % 2 == 0, epochs: vec![] },
                    1 => Action::Remove { device: target, pins: vec![] },
                    2 => Action::Title { title: format!("t{i}") },
                    _ => Action::Profile { name: format!("n{i}") },
                };
                let parents = if (x >> 10) % 3 == 0 { vec![heads[0]] } else { heads.clone() };
                let (h, e) = op(signer, 2 + i, parents, action);
                heads = vec![h];
                ops.push((h, e));
            }
            // In creation order most inserts take the incremental fast path; shuffled, most
            // take the full evaluation. Both must agree.
            let mut a = Membership::new(f.conv, f.cs.clone());
            for (h, e) in &ops {
                match a.insert(*h, e.clone()) {
                    // Descendants of a refused operation wait for ever.
                    Ok(_) | Err(InsertError::Outsider) | Err(InsertError::Early) => {}
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
            }
            let mut full = a.clone();
            full.recompute();
            prop_assert_eq!(a.state(), full.state());
            let mut shuffled = ops.clone();
            for (i, p) in perm.iter().enumerate() {
                let n = shuffled.len();
                shuffled.swap(i % n, *p as usize % n);
            }
            // Early operations are offered again later (as the replica's pending set does).
            let mut b = Membership::new(f.conv, f.cs.clone());
            let mut left = shuffled.clone();
            while !left.is_empty() {
                let before = left.len();
                left.retain(|(h, e)| b.insert(*h, e.clone()) == Err(InsertError::Early));
                if left.len() == before {
                    break;
                }
            }
            prop_assert_eq!(a.state(), b.state());
            // A non-admin's operations never take effect: every applied Add/Remove/Title was by an admin at that point.
            prop_assert!(a.state().members.values().any(|m| m.admin));
        }
    }
}
