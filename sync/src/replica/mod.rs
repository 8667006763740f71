//! A device's replica: its conversations, its envelopes and the rules that connect them.
//!
//! Everything that enters goes through [`Replica::ingest`]: decode strictly, route by tag,
//! decrypt, verify the signature, check the actor binding and the page rules, check
//! membership, check dependencies, apply. Whatever fails is refused with a typed error and,
//! when it was under one of our tags, remembered as a *tombstone* so reconciliation does not
//! fetch it again. Envelopes that are fine but early (a dependency, an author or a key has not
//! arrived) wait in a bounded *pending* set and are retried when what they wait for arrives.
//! Envelopes under tags we are not a member of are *carried* for others when relaying is on.
//!
//! Time and randomness come from the caller (`now_ms`, a seed): the replica does no I/O except
//! through its [`Store`], and it never flushes: the caller flushes (group commit) before it
//! acknowledges anything.
//!
//! The parts, each an `impl Replica` block over the fields declared here:
//! * `load` — the state from the store at open; pages on demand (saved page + journal);
//! * `query` — read-only views: conversations, tags, messages, digests;
//! * `compose` — local writes: conversations, members, profiles, messages;
//! * `admin` — key rotation, key shares, expiry of carried envelopes;
//! * `ingest` — envelopes from elsewhere: one by one or in batches, through one
//!   verification of change envelopes ([`Replica::ingest`], [`Replica::ingest_batch`]);
//! * `pending` — the bounded pending set and the retries;
//! * `owed` — receipts owed to the authors of envelopes applied here that their author's
//!   own push did not bring (bounded per author and in all);
//! * `page_cache` — loaded pages, their eviction and their journal;
//! * `sent` — invitations this device sealed: kept until their invitee joins, bounded;
//! * [`keys`] — every store key, in one table.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::{ActorId, Change, ChangeHash};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::compress::{CompressError, with_codec};
use crate::conversation::{Conversation, Invitation, Staged};
use crate::crypto::{self, ConversationSecret, Key};
use crate::envelope::{self, Envelope, Header, Kind, OpenError, Opened, Precedence};
use crate::hlc::{Clock, Hlc};
use crate::identity::Identity;
use crate::ids::{ConversationId, DeviceId, EnvelopeId, EpochId, OpHash, Tag, actor_bytes};
use crate::limits::{
    MAX_CHANGES_PER_ENVELOPE, MAX_LOADED_PAGES, MAX_LOADED_PAGES_TOTAL, MAX_PENDING,
    MAX_QUEUED_EVENTS, MAX_READ_PAGES_TOTAL, MAX_TOMBSTONES, MAX_TOMBSTONES_PER_TAG,
    MAX_UNREADABLE, MAX_UNREADABLE_PER_TAG, MAX_UNVERIFIED_BYTES, MAX_UNVERIFIED_BYTES_PER_TAG,
    MAX_UNVERIFIED_PER_TAG, PAGE_CAPACITY,
};
use crate::membership::{self, Action, ControlOp, Entry, History, Pin};
use crate::page::{self, Draft, MessageId, MessageView, Page, RuleError};
use crate::store::{Store, StoreError};
use crate::wirechange::StripError;
pub use carry::CarriedUsage;
pub use invites::{HeldInvitation, InvitePolicy};
use page_cache::PageCache;
use pending::{Held, Pending};
pub use revoked::MAX_REVOKED_DEVICES;

mod admin;
mod carry;
mod compose;
pub mod export;
mod ingest;
mod invites;
#[cfg(test)]
mod journal_tests;
pub mod keys;
mod load;
mod owed;
mod page_cache;
mod pending;
mod query;
pub mod receipts;
mod revoked;
mod sent;
mod verified;
mod vouched;

/// How far ahead of the newest timestamp issued the stored clock bound is written
/// ([`Replica::tick`]): one store write per second of sending at most, and a restart resumes
/// at most this far ahead.
pub const CLOCK_LEASE_MS: u64 = 1_000;

/// Days of inbox tags a device listens on (before today, and one ahead for clock skew).
pub const INBOX_DAYS_BACK: u64 = 7;
/// Conversations one device may hold (invites beyond this are refused).
pub const MAX_CONVERSATIONS: usize = 4096;
/// How often an admin re-checks key duties for one conversation.
const DUTY_INTERVAL_MS: u64 = 10_000;

/// What happened to an ingested envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Already held (or refused before).
    Duplicate,
    /// Verified and applied to a conversation.
    Applied(ConversationId),
    /// Verified as far as possible, stored, waiting for something.
    Pending(ConversationId, Waiting),
    /// Stored, but this device has no key for it and will not get one.
    Unreadable(ConversationId),
    /// An invitation opened: a conversation was added (or got new keys).
    Invited(ConversationId),
    /// An invitation from a stranger, held until the user accepts or declines it.
    InvitationHeld(ConversationId),
    /// Carried for other devices (not one of our conversations).
    Carried,
    /// Not stored: not ours, and not carried (relaying off, or expired).
    NotWanted,
}

/// What a pending envelope waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    Dependencies(Vec<ChangeHash>),
    Author(DeviceId),
    /// An author known only by the first bytes of its key.
    Signer([u8; envelope::SIGNER_HINT_LEN]),
    Epoch(EpochId),
    Parents,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IngestError {
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("refused change: {0}")]
    Rule(#[from] RuleError),
    #[error("bad compressed payload: {0}")]
    Compress(#[from] CompressError),
    #[error("the author was removed from the conversation before this change")]
    AuthorRemoved,
    #[error(
        "the author's device was revoked by its organisation: what it signed is refused until a removal pins what it wrote"
    )]
    AuthorRevoked,
    #[error("the conversation holds too many membership operations")]
    ControlFull,
    #[error("a membership operation by a device that was never a member where it signed")]
    ControlOutsider,
    #[error("an invitation for another conversation than it claims")]
    BadInvitation,
    #[error("too many conversations")]
    TooManyConversations,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// True if the peer that sent it misbehaved (as opposed to our storage failing).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, IngestError::Store(_))
    }

    /// True if the refusal is remembered (a tombstone): every peer fault but a revoked
    /// author's envelope, which a removal may later let in (`revoked`).
    pub fn tombstones(&self) -> bool {
        self.is_peer_fault() && !matches!(self, IngestError::AuthorRevoked)
    }
}

/// Errors of local commands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("no such conversation")]
    NoSuchConversation,
    #[error("this device is not a member of the conversation")]
    NotMember,
    #[error("only an admin can do that")]
    NotAdmin,
    #[error("{0} is not a member")]
    NoSuchMember(String),
    #[error("{0} is not a valid device id")]
    BadDevice(String),
    #[error("no key to write with yet (waiting for the conversation key)")]
    NoKey,
    #[error("{0}")]
    Rule(#[from] RuleError),
    #[error("the message body is empty")]
    EmptyBody,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(#[from] crypto::CryptoError),
    #[error("too many membership operations")]
    ControlFull,
    #[error("messages are staged and not sealed yet (flush first)")]
    Staged,
    #[error(
        "the conversation has used all its epochs: the key cannot rotate, and a removed device holds the current one"
    )]
    EpochsExhausted,
    #[error("no such invitation")]
    NoSuchInvitation,
    #[error("no message {0} in this conversation")]
    NoSuchMessage(String),
    #[error("too many accepted devices")]
    TooManyAccepted,
    #[error("too many conversations")]
    TooManyConversations,
    #[error("the invitation cannot be taken: {0}")]
    InvitationRefused(String),
    #[error("{0}")]
    Safety(String),
    #[error("too many verified devices: remove one first")]
    TooManyVerified,
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A conversation was created here or an invitation arrived.
    ConversationAdded(ConversationId),
    /// An invitation from a stranger is held for the user to accept or decline.
    InvitationHeld {
        conversation: ConversationId,
        inviter: DeviceId,
    },
    /// Membership, title or keys changed.
    MembershipChanged(ConversationId),
    /// Messages of one page changed (new, edited, deleted, reacted).
    MessagesChanged {
        conversation: ConversationId,
        page: u32,
    },
    /// An envelope that came from elsewhere was verified and applied.
    Applied {
        conversation: ConversationId,
        envelope: EnvelopeId,
    },
}

/// Relay behaviour for tags that are not ours (quotas and eviction: the `carry` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPolicy {
    /// Carry envelopes of conversations this device is not in.
    pub carry: bool,
    /// Largest total of carried bytes.
    pub max_bytes: u64,
    /// One tag holds at most `max_bytes / tag_share` (0 counts as 1).
    pub tag_share: u64,
    /// What one peer device pushed holds at most `max_bytes / origin_share` (0 counts as 1).
    pub origin_share: u64,
    /// What strangers (origins that are not contacts) pushed holds at most
    /// `max_bytes / stranger_share` bytes and `max_envelopes / stranger_share` envelopes
    /// together (0 counts as 1).
    pub stranger_share: u64,
    /// What devices vouched for by a pinned organisation ([`Replica::vouch`]) pushed, when
    /// they are not contacts, holds at most `max_bytes / vouched_share` bytes and
    /// `max_envelopes / vouched_share` envelopes together (0 counts as 1); strangers never
    /// evict it.
    pub vouched_share: u64,
    /// Largest number of carried envelopes.
    pub max_envelopes: usize,
}

impl RelayPolicy {
    /// Carrying on or off within `max_bytes`, with the default shares and count.
    pub fn new(carry: bool, max_bytes: u64) -> Self {
        Self {
            carry,
            max_bytes,
            tag_share: crate::limits::RELAY_TAG_SHARE,
            origin_share: crate::limits::RELAY_ORIGIN_SHARE,
            stranger_share: crate::limits::RELAY_STRANGER_SHARE,
            vouched_share: crate::limits::RELAY_VOUCHED_SHARE,
            max_envelopes: crate::limits::MAX_CARRIED_ENVELOPES,
        }
    }

    pub fn max_tag_bytes(&self) -> u64 {
        self.max_bytes / self.tag_share.max(1)
    }

    pub fn max_origin_bytes(&self) -> u64 {
        self.max_bytes / self.origin_share.max(1)
    }

    pub fn max_stranger_bytes(&self) -> u64 {
        self.max_bytes / self.stranger_share.max(1)
    }

    pub fn max_stranger_envelopes(&self) -> usize {
        self.max_envelopes / self.stranger_share.max(1) as usize
    }

    pub fn max_vouched_bytes(&self) -> u64 {
        self.max_bytes / self.vouched_share.max(1)
    }

    pub fn max_vouched_envelopes(&self) -> usize {
        self.max_envelopes / self.vouched_share.max(1) as usize
    }
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self::new(true, crate::limits::DEFAULT_RELAY_MAX_BYTES)
    }
}

/// Protocol parameters a replica is opened with. Every replica of a conversation must use
/// the same values; [`Config::default`] is what devices use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Epochs one conversation may have, at most [`crate::limits::MAX_EPOCHS`] (the default).
    /// Lowered only by tests and simulations that must reach the bound without a thousand
    /// rotations.
    pub max_epochs: usize,
    /// Page documents loaded at most, every conversation together
    /// ([`crate::limits::MAX_LOADED_PAGES_TOTAL`], the default). Not a protocol parameter
    /// (replicas may differ); lowered by tests that push past it.
    pub max_loaded_pages: usize,
    /// Of those, pages only read since they were loaded
    /// ([`crate::limits::MAX_READ_PAGES_TOTAL`], the default). Not a protocol parameter.
    pub max_read_pages: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_epochs: crate::limits::MAX_EPOCHS,
            max_loaded_pages: MAX_LOADED_PAGES_TOTAL,
            max_read_pages: MAX_READ_PAGES_TOTAL,
        }
    }
}

/// A conversation as listed to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationInfo {
    pub id: ConversationId,
    pub title: String,
    pub members: Vec<MemberInfo>,
    pub me_admin: bool,
    pub me_member: bool,
    /// This device left or was removed (the membership log records its removal).
    pub me_removed: bool,
    pub epochs: usize,
    pub pages: usize,
    /// Devices found signing two different changes with one sequence number in a page
    /// (equivocation, docs/security.md B3), in id order.
    pub equivocators: Vec<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub device: DeviceId,
    pub name: Option<String>,
    pub admin: bool,
}

/// A message with its author resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub view: MessageView,
    pub author: Option<DeviceId>,
    pub author_name: Option<String>,
    /// For messages written on this device: the envelope that carried it.
    pub envelope: Option<EnvelopeId>,
}

/// An envelope this device sealed, as [`Replica::take_sealed`] reports it: everything a
/// caller needs to route it without reading it back or hashing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub id: EnvelopeId,
    pub tag: Tag,
    pub precedence: Precedence,
    pub kind: Kind,
    pub conversation: ConversationId,
    /// Messages the envelope created (new messages; empty for edits, deletions, reactions
    /// and control operations).
    pub messages: Vec<MessageId>,
}

impl Sealed {
    pub(super) fn of(
        id: EnvelopeId,
        header: &Header,
        conversation: ConversationId,
        messages: Vec<MessageId>,
    ) -> Self {
        Self {
            id,
            tag: header.tag,
            precedence: header.precedence,
            kind: header.kind,
            conversation,
            messages,
        }
    }
}

/// What [`Replica::ingest_batch`] learnt of one input: its id and tag when it decoded, and
/// the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub id: Option<EnvelopeId>,
    pub tag: Option<Tag>,
    pub result: Result<Ingested, IngestError>,
}

/// A device's replica. See the module docs.
#[derive(Debug)]
pub struct Replica<S: Store> {
    /// Every envelope sealed here since the last [`Replica::take_sealed`], when the caller
    /// asked for them ([`Replica::report_sealed`]); otherwise nothing is kept.
    sealed: Option<Vec<Sealed>>,
    /// Envelopes sealed on the way (staged messages sealed before a remote change of the same
    /// conversation is applied, or because the page's staged batch reached its bound) that
    /// [`Replica::seal_staged`] has not reported yet: the caller must learn of them to push
    /// them.
    sealed_unreported: Vec<EnvelopeId>,
    me: Identity,
    clock: Clock,
    /// The clock bound the store holds (every timestamp issued is below it): see
    /// [`Replica::tick`].
    clock_bound_ms: u64,
    rng: ChaCha20Rng,
    keys: crate::identity::KeyCache,
    store: S,
    convs: BTreeMap<ConversationId, Conversation>,
    by_tag: BTreeMap<Tag, ConversationId>,
    pending: Pending,
    /// Tombstones and unreadable envelopes, bounded (see `pending`).
    held: Held,
    /// (envelope, pusher) for the envelopes of the ingest call in progress that a peer
    /// device pushed: applying one of them owes no receipt to its author if the author
    /// pushed it itself (the acknowledgement of that push, judged after the batch, tells it).
    /// Applying anything else owes its author a receipt (see `owed`).
    pushed_by: BTreeSet<(EnvelopeId, DeviceId)>,
    owed: owed::Owed,
    pages: PageCache,
    events: VecDeque<Event>,
    relay: RelayPolicy,
    carried: carry::Carried,
    /// Devices an organisation pinned here vouches for ([`Replica::vouch`]), until when.
    vouched: BTreeMap<DeviceId, u64>,
    /// Devices their organisation revoked ([`Replica::revoke_devices`]).
    revoked: BTreeSet<DeviceId>,
    invites: invites::Invites,
    /// Invitations this device sealed for others, oldest first (`sent`).
    sent: sent::SentIndex,
    config: Config,
    /// Read watermarks owed ([`Replica::mark_read`]).
    reads: receipts::ReadsOwed,
    /// Counters for reports.
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub applied: u64,
    pub refused: u64,
    pub pending_evicted: u64,
    pub carried: u64,
    /// Carried envelopes evicted to make room (quotas).
    pub carried_evicted: u64,
}

/// Decompresses an envelope's change list and restores each change under its signer's actor
/// (see [`crate::wirechange`]).
pub(crate) fn decode_changes(blob: &[u8], actor: &ActorId) -> Result<Vec<Change>, IngestError> {
    let raw = with_codec(|c| c.decompress(blob))?;
    let mut r = Reader::new(&raw);
    let n = r.count("changes", MAX_CHANGES_PER_ENVELOPE, 1)?;
    if n == 0 {
        return Err(DecodeError::Invalid("empty change list").into());
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let b = r.bytes("change", crate::limits::MAX_CHANGES_BYTES)?;
        let restored = crate::wirechange::restore(b, actor.to_bytes())?;
        out.push(page::parse_change(&restored)?);
    }
    r.finish()?;
    Ok(out)
}

/// The change list of an envelope, before compression: our own changes, without what the
/// receiver knows (see [`crate::wirechange`]).
fn encode_changes(changes: &[Change], actor: &ActorId) -> Result<Vec<u8>, StripError> {
    let mut w = Writer::new();
    w.varint(changes.len() as u64);
    for c in changes {
        w.bytes(&crate::wirechange::strip(c.raw_bytes(), actor.to_bytes())?);
    }
    Ok(w.into_vec())
}

impl<S: Store> Replica<S> {
    /// Opens a replica over `store`, loading what it holds. `seed` seeds the replica's
    /// generator (salts, ephemeral keys, new secrets): the daemon passes OS randomness, the
    /// simulator a seeded value.
    pub fn open(me: Identity, store: S, seed: [u8; 32]) -> Result<Self, StoreError> {
        Self::open_with_config(me, store, seed, Config::default())
    }

    /// [`Replica::open`] with protocol parameters other than the defaults (tests and
    /// simulations; see [`Config`]).
    pub fn open_with_config(
        me: Identity,
        store: S,
        seed: [u8; 32],
        config: Config,
    ) -> Result<Self, StoreError> {
        let mut r = Self {
            me,
            clock: Clock::new(),
            clock_bound_ms: 0,
            rng: ChaCha20Rng::from_seed(seed),
            keys: Default::default(),
            store,
            convs: BTreeMap::new(),
            by_tag: BTreeMap::new(),
            pending: Pending::default(),
            held: Held::default(),
            pushed_by: BTreeSet::new(),
            owed: Default::default(),
            pages: PageCache::new(config.max_loaded_pages, config.max_read_pages),
            sealed_unreported: Vec::new(),
            sealed: None,
            events: VecDeque::new(),
            relay: RelayPolicy::default(),
            carried: Default::default(),
            vouched: Default::default(),
            revoked: Default::default(),
            invites: Default::default(),
            sent: Default::default(),
            config,
            reads: Default::default(),
            stats: Stats::default(),
        };
        r.load()?;
        Ok(r)
    }

    /// From now on, keep a record of every envelope sealed here for [`Self::take_sealed`]
    /// (the engine drains it after every call, so it stays small).
    pub fn report_sealed(&mut self) {
        self.sealed.get_or_insert_with(Vec::new);
    }

    /// The envelopes sealed since the last call, in sealing order.
    pub fn take_sealed(&mut self) -> Vec<Sealed> {
        self.sealed.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub(super) fn record_sealed(&mut self, s: Sealed) {
        if let Some(v) = &mut self.sealed {
            v.push(s);
        }
    }

    pub fn set_relay_policy(&mut self, p: RelayPolicy) {
        self.relay = p;
    }

    pub fn identity(&self) -> &Identity {
        &self.me
    }

    pub fn device_id(&self) -> DeviceId {
        self.me.device_id()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn into_store(self) -> S {
        self.store
    }

    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// A conversation record under this replica's [`Config`].
    pub(super) fn new_conversation(
        &self,
        secret: ConversationSecret,
        creator: DeviceId,
    ) -> Conversation {
        Conversation::new(secret, creator).with_max_epochs(self.config.max_epochs)
    }

    pub(super) fn seed32(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    pub(super) fn emit(&mut self, e: Event) {
        if self.events.back() == Some(&e) {
            return;
        }
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Tombstones recorded under `tag`, and in all (for tests and reports).
    pub fn tombstone_count(&self, tag: &Tag) -> (usize, usize) {
        self.held.tombstones(tag)
    }

    /// Unreadable envelopes held for `conv`, and in all (for tests and reports).
    pub fn unreadable_count(&self, conv: &ConversationId) -> (usize, usize) {
        self.held.unreadable(conv)
    }

    /// Envelopes parked for `conv` because their epoch is unknown (count, bytes), and the
    /// bytes parked for every conversation (for tests and reports).
    pub fn parked_count(&self, conv: &ConversationId) -> (usize, u64, u64) {
        self.pending.unverified(conv)
    }

    /// Envelopes pending, every conversation together (for tests and reports).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is held here but not read yet: pending, unreadable, an invitation
    /// held for the user, or carried for others (what an acknowledgement calls *deferred*:
    /// a member's device that carries its conversation's envelopes before it accepted the
    /// invitation holds them but cannot read them).
    pub fn is_waiting(&self, id: &EnvelopeId) -> bool {
        self.pending.contains(id)
            || self.held.is_unreadable(id)
            || self.invites.is_held(id)
            || self.carried.contains(id)
    }
}

/// The inbox tags a device listens on when its clock says `day`: a week back and one day
/// ahead. Anyone who knows the device id can compute them (a peer derives them from the
/// hello rather than receiving them).
pub fn inbox_window(device: &DeviceId, day: u64) -> Vec<Tag> {
    (day.saturating_sub(INBOX_DAYS_BACK)..=day.saturating_add(1))
        .map(|d| crypto::inbox_tag(device, d))
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

/// Message ids a local change created.
fn own_created(change: &Change, page: u32) -> Vec<MessageId> {
    use automerge::legacy::{Key as AmKey, ObjectId, OpType};
    change
        .decode()
        .operations
        .iter()
        .filter_map(|op| match (&op.obj, &op.key, &op.action) {
            (ObjectId::Root, AmKey::Map(k), OpType::Make(_)) if page::parse_key(k).is_some() => {
                Some(MessageId {
                    page,
                    key: k.to_string(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Opens an envelope of a conversation this replica holds (for tests and tools).
pub fn open_with<S: Store>(r: &Replica<S>, env: &Envelope) -> Result<Opened, OpenError> {
    let conv = r
        .by_tag
        .get(&env.header().tag)
        .and_then(|c| r.convs.get(c))
        .ok_or(OpenError::Decrypt)?;
    let key = match env.header().kind {
        Kind::Control => conv.control_key,
        _ => *conv.key(&env.header().epoch).ok_or(OpenError::Decrypt)?,
    };
    envelope::open(env, &key, &conv.id, &mut |h| conv.signers(h))
}

/// Test setup the replica's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::FindEnvelope;

    /// Device 1 (over a memory store) creates a shared conversation at `t0` and adds device
    /// 2 (over `b_store`), which ingests the creation and the addition.
    pub(crate) fn joined_pair<S: Store>(
        b_store: S,
        t0: u64,
    ) -> (Replica<MemoryStore>, Replica<S>, ConversationId) {
        let mut a =
            Replica::open(Identity::from_seed([1; 32]), MemoryStore::new(), [1; 32]).unwrap();
        let mut b = Replica::open(Identity::from_seed([2; 32]), b_store, [2; 32]).unwrap();
        let (c, created) = a.create_conversation("t", History::Shared, t0).unwrap();
        let mut setup = vec![created];
        setup.extend(a.add_member(&c, b.device_id(), false, t0).unwrap());
        for e in setup {
            let bytes = a.store().find_envelope(&e).unwrap().unwrap();
            b.ingest(&bytes, t0).unwrap();
        }
        (a, b, c)
    }
}
