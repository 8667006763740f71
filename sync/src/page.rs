//! Pages: a conversation is a sequence of bounded Automerge documents.
//!
//! One Automerge document per conversation would make every append slower as history grows
//! (a list: 1.4 ms per append at 100k messages; docs/performance.md) and keep the whole
//! history in memory.
//! Instead a conversation is split into *pages* of about [`PAGE_CAPACITY`] messages. A device
//! appends to the newest page it knows; when that page is full it starts the next one. Two
//! disconnected devices may both start page *n+1*: they simply write into the same page
//! document, which merges like any other. An edit, deletion or reaction goes into the page of
//! the message it targets, so it merges with it. Appends cost the same at 10^3 or 10^6
//! messages, and only the pages in use are held in memory.
//!
//! # Schema (one page)
//! Root map keys:
//! * `<message key>` → map `{b: body, r?: reply-to, p?: precedence, x?: expiry, e?: edited-at,
//!   d?: deleted}`. The key is the author's HLC (fixed-width base36, so keys sort by time) and
//!   the first 8 bytes of the author's actor in hex, so keys of different authors never collide.
//! * `~<message key><reactor actor hex>` → the reactor's emoji (deleted to withdraw it).
//! * `!<message key><acknowledger actor hex>` → when the acknowledger acknowledged a FLASH or
//!   IMMEDIATE message ("received, acting"; its HLC, packed). Set once, never changed or
//!   withdrawn, only for a message of another author that the acknowledger's change builds
//!   on ([`Page::check_acks`]).
//! * `^<reader actor hex>` → the key of the newest message of this page the reader has read
//!   (its *read watermark*: one per member per page, moved forward, never deleted; a
//!   watermark on a later page means everything before it was read too).
//!
//! # Rules (checked on every remote change before Automerge sees it)
//! A change by actor *A* may only: create a message map at a root key carrying *A*'s actor
//! prefix; set or delete reaction keys carrying *A*'s prefix; and set the fields above inside
//! maps *A* created. Anything else — writing into another author's message, nested objects,
//! lists, text, counters, commit messages, extra bytes — rejects the whole change. With the
//! actor bound to the signing key (see `conversation`), nobody can write as someone else.
//!
//! # Equivocation
//! A device that signs two different changes with one sequence number (a cloned device, or
//! a hostile member writing one fork to each half of the group) cannot have both in one
//! Automerge document. Every page decides with the same function of the changes it has
//! ([`Page::resolve`]): the fork with the lower hash is kept, the other and everything built
//! on it are *held out* (kept as evidence and saved with the page, not shown), and a page
//! whose document held the loser is rebuilt. So replicas that have the same changes hold the
//! same document whatever order they came in, and nothing waits for a loser for ever.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value,
};
use thiserror::Error;

use crate::envelope::Precedence;
use crate::hlc::Hlc;
use crate::ids::{hex, hex_decode};
use crate::limits::{MAX_BODY_BYTES, MAX_OPS_PER_CHANGE, MAX_REACTION_BYTES};

pub use crate::limits::PAGE_CAPACITY;

const KEY_TIME: usize = 10;
const KEY_COUNTER: usize = 4;
const KEY_ACTOR: usize = 16;
/// Length of a message key.
pub const KEY_LEN: usize = KEY_TIME + KEY_COUNTER + KEY_ACTOR;

/// A message within a conversation: its page and its key in that page.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub page: u32,
    pub key: String,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.page, self.key)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl std::str::FromStr for MessageId {
    type Err = crate::ids::ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = crate::ids::ParseIdError("message id");
        let (page, key) = s.split_once('.').ok_or(err.clone())?;
        let page: u32 = page.parse().map_err(|_| err.clone())?;
        if parse_key(key).is_none() {
            return Err(err);
        }
        Ok(Self {
            page,
            key: key.to_string(),
        })
    }
}

fn base36(mut v: u64, width: usize) -> String {
    const D: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = D[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn unbase36(s: &str) -> Option<u64> {
    if !s
        .bytes()
        .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    {
        return None;
    }
    u64::from_str_radix(s, 36).ok()
}

pub(crate) fn actor_prefix(actor: &[u8]) -> String {
    hex(&actor[..8.min(actor.len())])
}

/// The key of a message written at `hlc` by `actor`.
pub fn message_key(hlc: Hlc, actor: &[u8]) -> String {
    let mut k = base36(hlc.ms, KEY_TIME);
    k.push_str(&base36(u64::from(hlc.counter), KEY_COUNTER));
    k.push_str(&actor_prefix(actor));
    k
}

/// Parses a message key into its time and author prefix.
pub fn parse_key(k: &str) -> Option<(Hlc, &str)> {
    if k.len() != KEY_LEN || !k.is_ascii() {
        return None;
    }
    let ms = unbase36(&k[..KEY_TIME])?;
    let counter = unbase36(&k[KEY_TIME..KEY_TIME + KEY_COUNTER])?;
    let actor = &k[KEY_TIME + KEY_COUNTER..];
    if ms > Hlc::MAX_MS
        || counter > u64::from(u16::MAX)
        || hex_decode(actor).is_none()
        || actor.bytes().any(|c| c.is_ascii_uppercase())
    {
        return None;
    }
    // Canonical: re-encoding gives the same text.
    let hlc = Hlc {
        ms,
        counter: counter as u16,
    };
    Some((hlc, actor))
}

fn reaction_key(message_key: &str, actor: &[u8]) -> String {
    format!("~{message_key}{}", actor_prefix(actor))
}

fn ack_key(message_key: &str, actor: &[u8]) -> String {
    format!("!{message_key}{}", actor_prefix(actor))
}

fn read_key(actor: &[u8]) -> String {
    format!("^{}", actor_prefix(actor))
}

/// The actor prefix of a read watermark key.
fn parse_read_key(k: &str) -> Option<&str> {
    let who = k.strip_prefix('^')?;
    (who.len() == KEY_ACTOR
        && who.is_ascii()
        && hex_decode(who).is_some()
        && !who.bytes().any(|c| c.is_ascii_uppercase()))
    .then_some(who)
}

fn parse_reaction_key(k: &str) -> Option<(&str, &str)> {
    parse_pair_key(k, '~')
}

/// (message key, acknowledger prefix) of an acknowledgement key.
fn parse_ack_key(k: &str) -> Option<(&str, &str)> {
    parse_pair_key(k, '!')
}

fn parse_pair_key(k: &str, mark: char) -> Option<(&str, &str)> {
    let rest = k.strip_prefix(mark)?;
    if rest.len() != KEY_LEN + KEY_ACTOR || !rest.is_ascii() {
        return None;
    }
    let (msg, actor) = rest.split_at(KEY_LEN);
    parse_key(msg)?;
    if hex_decode(actor).is_none() || actor.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    Some((msg, actor))
}

/// Why a change was refused by the page rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("change actor is not the actor of the key that signed it")]
    ActorMismatch,
    #[error("change has {0} operations, more than allowed")]
    TooManyOps(usize),
    #[error("operation not allowed: {0}")]
    Forbidden(&'static str),
    #[error("value not allowed for field '{0}'")]
    BadValue(String),
    #[error("malformed Automerge change: {0}")]
    Malformed(String),
    #[error("a second, different change for the same actor and sequence number (equivocation)")]
    Equivocation,
    #[error("sequence number {got} where {expected} was expected")]
    OutOfSequence { expected: u64, got: u64 },
    #[error("Automerge failed: {0}")]
    Automerge(String),
    #[error("Automerge panicked on this input (caught)")]
    Panicked,
}

/// Runs Automerge code behind a panic boundary: a panic inside Automerge on hostile input
/// becomes an error, never a crashed node (docs/security.md, A3).
fn guarded<T>(f: impl FnOnce() -> Result<T, RuleError>) -> Result<T, RuleError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(RuleError::Panicked),
    }
}

/// Parses change bytes. Refuses anything Automerge refuses, behind the panic boundary.
pub fn parse_change(bytes: &[u8]) -> Result<Change, RuleError> {
    guarded(|| Change::try_from(bytes).map_err(|e| RuleError::Malformed(e.to_string())))
}

fn field_ok(field: &str, v: &automerge::legacy::OpType) -> Result<(), RuleError> {
    use automerge::legacy::OpType;
    let bad = || RuleError::BadValue(field.to_string());
    match (field, v) {
        ("b", OpType::Put(ScalarValue::Str(s))) if s.len() <= MAX_BODY_BYTES => Ok(()),
        ("r", OpType::Put(ScalarValue::Str(s))) if s.len() <= 64 => Ok(()),
        ("p", OpType::Put(ScalarValue::Uint(p))) if *p <= 3 => Ok(()),
        ("x" | "e", OpType::Put(ScalarValue::Uint(_))) => Ok(()),
        ("d", OpType::Put(ScalarValue::Boolean(true))) => Ok(()),
        ("b" | "r", OpType::Delete) => Ok(()),
        _ => Err(bad()),
    }
}

/// Checks a remote change against the page rules. Returns how many messages it creates.
pub fn check_change(change: &Change, author: &ActorId) -> Result<u32, RuleError> {
    check_change_timed(change, author).map(|(created, _)| created)
}

/// [`check_change`], also returning the newest clock among the messages it creates: the
/// message keys are the author's clock readings, so a change needs no separate timestamp.
pub fn check_change_timed(change: &Change, author: &ActorId) -> Result<(u32, Hlc), RuleError> {
    check_change_full(change, author).map(|c| (c.created, c.newest))
}

/// What [`check_change_full`] found in a change that passed the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedChange {
    /// Messages it creates.
    pub created: u32,
    /// The newest clock among the messages it creates.
    pub newest: Hlc,
    /// The message keys it acknowledges: each must be checked against the page
    /// ([`Page::check_acks`]) before the change is applied.
    pub acks: Vec<String>,
}

/// [`check_change`], with everything the rules found ([`CheckedChange`]).
pub fn check_change_full(change: &Change, author: &ActorId) -> Result<CheckedChange, RuleError> {
    use automerge::legacy::{Key, ObjectId, OpType};
    if change.actor_id() != author {
        return Err(RuleError::ActorMismatch);
    }
    if change.len() > MAX_OPS_PER_CHANGE {
        return Err(RuleError::TooManyOps(change.len()));
    }
    if change.message().is_some() || !change.extra_bytes().is_empty() || change.author().is_some() {
        return Err(RuleError::Forbidden(
            "commit message, author or extra bytes",
        ));
    }
    let prefix = actor_prefix(author.to_bytes());
    let expanded = guarded(|| Ok(change.decode()))?;
    let mut created = 0;
    let mut newest = Hlc::default();
    let mut acks = Vec::new();
    for op in &expanded.operations {
        if op.insert {
            return Err(RuleError::Forbidden("sequence insert"));
        }
        let Key::Map(key) = &op.key else {
            return Err(RuleError::Forbidden("sequence key"));
        };
        match &op.obj {
            ObjectId::Root => {
                if let Some((at, who)) = parse_key(key) {
                    if who != prefix {
                        return Err(RuleError::Forbidden("message key of another author"));
                    }
                    if op.action != OpType::Make(ObjType::Map) || !op.pred.is_empty() {
                        return Err(RuleError::Forbidden("message must be a new map"));
                    }
                    created += 1;
                    newest = newest.max(at);
                } else if let Some((_, who)) = parse_reaction_key(key) {
                    if who != prefix {
                        return Err(RuleError::Forbidden("reaction of another author"));
                    }
                    match &op.action {
                        OpType::Put(ScalarValue::Str(s)) if s.len() <= MAX_REACTION_BYTES => {}
                        OpType::Delete => {}
                        _ => return Err(RuleError::BadValue("reaction".into())),
                    }
                } else if let Some((msg, who)) = parse_ack_key(key) {
                    if who != prefix {
                        return Err(RuleError::Forbidden("acknowledgement of another author"));
                    }
                    // Set once: a put over nothing (an acknowledgement is never changed or
                    // withdrawn, so one member's acknowledgement of one message is one op).
                    match &op.action {
                        OpType::Put(ScalarValue::Uint(_)) if op.pred.is_empty() => {}
                        _ => return Err(RuleError::BadValue("acknowledgement".into())),
                    }
                    if acks.iter().any(|a| a == msg) {
                        return Err(RuleError::Forbidden("acknowledgement given twice"));
                    }
                    acks.push(msg.to_string());
                } else if let Some(who) = parse_read_key(key) {
                    if who != prefix {
                        return Err(RuleError::Forbidden("read watermark of another author"));
                    }
                    match &op.action {
                        OpType::Put(ScalarValue::Str(s)) if parse_key(s).is_some() => {}
                        _ => return Err(RuleError::BadValue("read watermark".into())),
                    }
                } else {
                    return Err(RuleError::Forbidden("unknown root key"));
                }
            }
            ObjectId::Id(id) => {
                if id.actor() != author {
                    return Err(RuleError::Forbidden("write into another author's message"));
                }
                field_ok(key, &op.action)?;
            }
        }
    }
    Ok(CheckedChange {
        created,
        newest,
        acks,
    })
}

/// A message as an application shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: MessageId,
    /// The author's actor (16 bytes); map it to a device through the conversation.
    pub actor: Vec<u8>,
    pub sent_at: Hlc,
    pub body: String,
    pub reply_to: Option<MessageId>,
    pub precedence: Precedence,
    pub expiry: Option<u64>,
    pub edited_at: Option<Hlc>,
    pub deleted: bool,
    /// (reactor actor prefix, emoji), sorted by actor.
    pub reactions: Vec<(String, String)>,
    /// The op counter that created the message (for membership cut-offs).
    pub created_op: u64,
}

/// Per-actor progress in one page: last sequence number and last op counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActorProgress {
    pub seq: u64,
    pub max_op: u64,
    pub last_hash: [u8; 32],
}

/// A message to add.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub body: String,
    pub reply_to: Option<MessageId>,
    pub precedence: Precedence,
    /// Seconds since the Unix epoch.
    pub expiry: Option<u64>,
}

/// One page document.
pub struct Page {
    number: u32,
    doc: AutoCommit,
    messages: u32,
    progress: BTreeMap<Vec<u8>, ActorProgress>,
    staged: u32,
    /// Changes kept out of the document ([`Page::resolve`]): each lost an equivocation or
    /// depends on one that did. Kept as evidence and to decide again when more arrives; at
    /// most [`MAX_HELD_OUT_PER_PAGE`].
    held_out: BTreeMap<ChangeHash, Change>,
    /// Where held-out changes stop, once some were dropped ([`trim_held_out`]); saved with
    /// the page.
    held_cutoff: Option<HeldCutoff>,
    /// Actors found signing two different changes with one sequence number here.
    equivocators: BTreeSet<Vec<u8>>,
    /// Removed devices' actors and the highest sequence number of theirs the page takes
    /// ([`Page::set_late_ceilings`]): a change past it is not part of the page.
    late_ceilings: LateCeilings,
}

/// Per actor (its bytes), the highest sequence number the page takes from it: set for
/// removed devices only (their pin for the page plus
/// [`crate::limits::MAX_LATE_CHANGES_PER_PAGE`]).
pub type LateCeilings = BTreeMap<Vec<u8>, u64>;

/// Changes a page keeps out of its document (lost equivocations and what depends on them);
/// past this (or past [`MAX_HELD_OUT_BYTES_PER_PAGE`]) the held-out changes with the highest
/// hashes are dropped ([`trim_held_out`]). A guess: an equivocator gains nothing by more, and
/// honest changes built on a losing fork are few.
pub const MAX_HELD_OUT_PER_PAGE: usize = 256;
/// Bytes of held-out changes a page keeps (their encoded size): a change may be 256 KiB, so
/// the count alone would let one page hold 64 MiB of evidence in memory. A guess: 8 KiB per
/// held-out change on average, far above an honest message.
pub const MAX_HELD_OUT_BYTES_PER_PAGE: usize = 2 * 1024 * 1024;

/// Where a page's held-out changes stop: (start op, hash) of the first contested change that
/// did not fit. Nothing at or past it is held out again, so forgetting what was dropped never
/// lets a later change take its place ([`trim_held_out`]).
pub type HeldCutoff = (u64, ChangeHash);

/// The held-out changes a page keeps, out of `candidates` (every change of `all` the document
/// does not keep), and the cutoff from now on. Candidates are taken in (start op, hash) order
/// — an order of the changes alone, parents before children (a change's start op is past its
/// dependencies') — up to `cutoff`: a candidate with a dependency neither kept in the
/// document nor taken before it is skipped (it counts for nothing); the others are taken
/// while they fit [`MAX_HELD_OUT_PER_PAGE`] and [`MAX_HELD_OUT_BYTES_PER_PAGE`], and the first
/// that does not fit becomes the cutoff (it and all after it are dropped).
///
/// So the result is a function of the set of changes the page was ever given, whatever their
/// order: more candidates only move the cutoff earlier (a dropped change is never needed
/// back), what is dropped is at or past the cutoff (the walk stops there anyway) or skipped
/// (it counted for nothing), and a change whose dependency was dropped waits in the pending
/// set where it arrives after the drop and is skipped where it came before — out of the page
/// either way. What is dropped is forgotten by the page (its envelope stays stored, spreads,
/// and a reload decides the same).
fn trim_held_out(
    candidates: BTreeMap<ChangeHash, Change>,
    kept: &BTreeSet<ChangeHash>,
    cutoff: Option<HeldCutoff>,
) -> (BTreeMap<ChangeHash, Change>, Option<HeldCutoff>) {
    let mut order: Vec<(HeldCutoff, Change)> = candidates
        .into_iter()
        .map(|(h, c)| ((c.start_op().get(), h), c))
        .collect();
    order.sort_by_key(|a| a.0);
    let mut bytes = 0usize;
    let mut held: BTreeMap<ChangeHash, Change> = BTreeMap::new();
    for (key, c) in order {
        if cutoff.is_some_and(|cut| key >= cut) {
            return (held, cutoff);
        }
        if c.deps()
            .iter()
            .any(|d| !kept.contains(d) && !held.contains_key(d))
        {
            continue;
        }
        let len = c.raw_bytes().len();
        if held.len() >= MAX_HELD_OUT_PER_PAGE
            || bytes.saturating_add(len) > MAX_HELD_OUT_BYTES_PER_PAGE
        {
            return (held, Some(key));
        }
        bytes += len;
        held.insert(key.1, c);
    }
    (held, cutoff)
}

/// What [`Page::resolve`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Changes that left the document (a fork that lost to one arriving now, and what was
    /// built on it).
    pub removed: Vec<ChangeHash>,
    /// The same changes, whole (some may be dropped rather than held out).
    pub left: Vec<Change>,
    /// Actors newly found equivocating.
    pub new_equivocators: Vec<Vec<u8>>,
}

/// Magic of a saved page that carries held-out changes after its document.
const HELD_MAGIC: &[u8; 4] = b"vhp1";
/// Magic of a saved page that also carries its held-out cutoff (8-byte start op, 32-byte
/// hash) before its document: written only by a page that dropped held-out changes.
const CUTOFF_MAGIC: &[u8; 4] = b"vhp2";

/// The changes of `all` a page holds in its document, and the actors found equivocating —
/// a function of the set alone, so every replica holding the same changes keeps the same
/// ones whatever order they came in. In causal order (ties by hash), a change is kept when
/// every dependency is kept, its actor's previous sequence number is kept, and no other
/// change of its actor with its sequence number whose dependencies are kept has a lower
/// hash — except that a change removals pinned (`pinned`), or one it depends on, always
/// wins; a kept change that loses to a later one in this walk is banned and the walk starts
/// again (each restart bans one more change, so this ends). Returns the kept changes in the
/// walk's order.
fn resolve_set(
    all: &BTreeMap<ChangeHash, Change>,
    pinned: &BTreeSet<ChangeHash>,
) -> (Vec<ChangeHash>, BTreeSet<Vec<u8>>) {
    // What removals pinned, and everything those changes depend on, is kept: a fork of it
    // never wins, whatever its hash.
    let mut protected: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut stack: Vec<ChangeHash> = pinned.iter().copied().collect();
    while let Some(h) = stack.pop() {
        if let Some(c) = all.get(&h)
            && protected.insert(h)
        {
            stack.extend(c.deps().iter().copied());
        }
    }
    let mut children: BTreeMap<ChangeHash, Vec<ChangeHash>> = BTreeMap::new();
    let mut indegree: BTreeMap<ChangeHash, usize> = BTreeMap::new();
    for (h, c) in all {
        let mut n = 0;
        for d in c.deps() {
            // A dependency outside the set never arrives here: the change is never ready.
            n += 1;
            if all.contains_key(d) {
                children.entry(*d).or_default().push(*h);
            }
        }
        indegree.insert(*h, n);
    }
    let mut ready: BTreeSet<ChangeHash> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(h, _)| *h)
        .collect();
    let mut order = Vec::with_capacity(all.len());
    while let Some(h) = ready.pop_first() {
        order.push(h);
        for c in children.get(&h).into_iter().flatten() {
            if let Some(n) = indegree.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(*c);
                }
            }
        }
    }
    let mut banned: BTreeSet<ChangeHash> = BTreeSet::new();
    'walk: loop {
        let mut kept: BTreeSet<ChangeHash> = BTreeSet::new();
        let mut kept_order = Vec::with_capacity(order.len());
        let mut slots: BTreeMap<(&[u8], u64), ChangeHash> = BTreeMap::new();
        let mut equivocators: BTreeSet<Vec<u8>> = BTreeSet::new();
        for h in &order {
            let c = &all[h];
            if !c.deps().iter().all(|d| kept.contains(d)) {
                continue;
            }
            let actor = c.actor_id().to_bytes();
            if c.seq() > 1 && !slots.contains_key(&(actor, c.seq() - 1)) {
                continue;
            }
            if banned.contains(h) {
                equivocators.insert(actor.to_vec());
                continue;
            }
            match slots.get(&(actor, c.seq())) {
                None => {
                    slots.insert((actor, c.seq()), *h);
                    kept.insert(*h);
                    kept_order.push(*h);
                }
                Some(w) => {
                    equivocators.insert(actor.to_vec());
                    let wins = if protected.contains(w) {
                        false
                    } else {
                        protected.contains(h) || h < w
                    };
                    if wins {
                        banned.insert(*w);
                        continue 'walk;
                    }
                }
            }
        }
        return (kept_order, equivocators);
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("number", &self.number)
            .field("messages", &self.messages)
            .finish()
    }
}

fn am<T>(r: Result<T, automerge::AutomergeError>) -> Result<T, RuleError> {
    r.map_err(|e| RuleError::Automerge(e.to_string()))
}

impl Page {
    pub fn new(number: u32, actor: ActorId) -> Self {
        Self {
            number,
            doc: AutoCommit::new().with_actor(actor),
            messages: 0,
            progress: BTreeMap::new(),
            staged: 0,
            held_out: BTreeMap::new(),
            held_cutoff: None,
            equivocators: BTreeSet::new(),
            late_ceilings: LateCeilings::new(),
        }
    }

    /// A page rebuilt from changes alone (a verifier's view: `crate::export`), in any
    /// order; changes whose dependencies are not among them are left out, as Automerge
    /// leaves them. The caller has checked each against the page rules. Parsed behind the
    /// panic boundary.
    pub fn from_changes(number: u32, changes: Vec<Change>) -> Result<Self, RuleError> {
        let mut page = Self::new(number, ActorId::from(&[0u8; 16][..]));
        guarded(|| am(page.doc.apply_changes(changes)))?;
        page.recount();
        Ok(page)
    }

    /// Loads a page saved with [`Page::save`]. Saved pages come from our own store, but are
    /// still parsed behind the panic boundary.
    pub fn load(number: u32, bytes: &[u8], actor: ActorId) -> Result<Self, RuleError> {
        let mut cutoff = None;
        let held_parts = match bytes.strip_prefix(CUTOFF_MAGIC.as_slice()) {
            Some(rest) => {
                let (op, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or(RuleError::Malformed("saved page".into()))?;
                let (hash, rest) = rest
                    .split_first_chunk::<32>()
                    .ok_or(RuleError::Malformed("saved page".into()))?;
                cutoff = Some((u64::from_be_bytes(*op), ChangeHash(*hash)));
                Some(rest)
            }
            None => bytes.strip_prefix(HELD_MAGIC.as_slice()),
        };
        let (doc_bytes, held) = match held_parts {
            None => (bytes, Vec::new()),
            Some(rest) => {
                let mut parts = Vec::new();
                let mut rest = rest;
                while !rest.is_empty() {
                    let (len, tail) = rest
                        .split_first_chunk::<4>()
                        .ok_or(RuleError::Malformed("saved page".into()))?;
                    let len = u32::from_be_bytes(*len) as usize;
                    if tail.len() < len {
                        return Err(RuleError::Malformed("saved page".into()));
                    }
                    parts.push(&tail[..len]);
                    rest = &tail[len..];
                }
                let Some((doc, held)) = parts.split_first() else {
                    return Err(RuleError::Malformed("saved page".into()));
                };
                let held: Result<Vec<Change>, RuleError> =
                    held.iter().map(|b| parse_change(b)).collect();
                (*doc, held?)
            }
        };
        let doc = guarded(|| am(AutoCommit::load(doc_bytes)))?.with_actor(actor);
        let mut page = Self {
            number,
            doc,
            messages: 0,
            progress: BTreeMap::new(),
            staged: 0,
            held_out: BTreeMap::new(),
            held_cutoff: None,
            equivocators: BTreeSet::new(),
            late_ceilings: LateCeilings::new(),
        };
        page.recount();
        // Saved with its document in one record, so the two agree; the caller decides again
        // with what removals pin now ([`Page::resolve`]).
        page.held_out = held.into_iter().map(|c| (c.hash(), c)).collect();
        page.held_cutoff = cutoff;
        Ok(page)
    }

    /// Counts messages and per-actor progress from the document.
    fn recount(&mut self) {
        let page = self;
        page.progress.clear();
        page.messages = page
            .doc
            .map_range(automerge::ROOT, ..)
            .filter(|i| !i.key.starts_with('~'))
            .count() as u32;
        let metas: Vec<(Vec<u8>, ActorProgress)> = page
            .doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| {
                (
                    m.actor.to_bytes().to_vec(),
                    ActorProgress {
                        seq: m.seq,
                        max_op: m.max_op,
                        last_hash: m.hash.0,
                    },
                )
            })
            .collect();
        for (actor, p) in metas {
            let e = page.progress.entry(actor).or_default();
            if p.seq > e.seq {
                *e = p;
            }
        }
    }

    /// Actors found signing two different changes with one sequence number in this page.
    pub fn equivocators(&self) -> impl Iterator<Item = &[u8]> {
        self.equivocators.iter().map(Vec::as_slice)
    }

    /// Whether some change is held out of the document.
    pub fn has_held_out(&self) -> bool {
        !self.held_out.is_empty()
    }

    /// Whether this change is held out of the document ([`Page::resolve`]).
    pub fn is_held_out(&self, hash: &ChangeHash) -> bool {
        self.held_out.contains_key(hash)
    }

    /// The hashes of the held-out changes, in hash order.
    pub fn held_out_hashes(&self) -> impl Iterator<Item = &ChangeHash> {
        self.held_out.keys()
    }

    /// A held-out change.
    pub fn held_out_change(&self, hash: &ChangeHash) -> Option<&Change> {
        self.held_out.get(hash)
    }

    /// Sets which removed devices' changes the page takes, up to which sequence number
    /// ([`LateCeilings`]; from the membership: the caller sets them whenever it loads the
    /// page and when membership changes, then [`Page::resolve`]s if
    /// [`Page::over_ceiling`]).
    pub fn set_late_ceilings(&mut self, ceilings: LateCeilings) {
        self.late_ceilings = ceilings;
    }

    /// Whether `c` is past its actor's ceiling: a removed device's change the page does not
    /// take, whenever it came.
    fn past_ceiling(&self, c: &Change) -> bool {
        self.late_ceilings
            .get(c.actor_id().to_bytes())
            .is_some_and(|max| c.seq() > *max)
    }

    /// Whether the document holds a change past its actor's ceiling (taken before the
    /// removal was known here): [`Page::resolve`] takes it out.
    pub fn over_ceiling(&self) -> bool {
        self.late_ceilings
            .iter()
            .any(|(a, max)| self.progress.get(a).is_some_and(|p| p.seq > *max))
    }

    /// Whether the page has this change, in its document or held out.
    pub fn holds(&mut self, hash: &ChangeHash) -> bool {
        self.is_held_out(hash) || self.has_change(hash)
    }

    /// Whether `changes` (their dependencies present, in the document or held out) must go
    /// through [`Page::resolve`] rather than [`Page::apply`]: one is held out already, takes
    /// a sequence number its actor has used here, shares one with another of the batch, or
    /// depends on a held-out change.
    pub fn contested(&mut self, changes: &[Change]) -> bool {
        let mut slots: BTreeSet<(Vec<u8>, u64)> = BTreeSet::new();
        for c in changes {
            let h = c.hash();
            if self.held_out.contains_key(&h) || self.past_ceiling(c) {
                return true;
            }
            if self.has_change(&h) {
                continue;
            }
            let actor = c.actor_id().to_bytes();
            if self.progress.get(actor).is_some_and(|p| c.seq() <= p.seq)
                || !slots.insert((actor.to_vec(), c.seq()))
                || c.deps().iter().any(|d| self.held_out.contains_key(d))
            {
                return true;
            }
        }
        false
    }

    /// Decides again which changes the document holds, with `new` added (each passed
    /// [`check_change`], dependencies present in the document, the held-out set or `new`):
    /// the result is [`resolve_set`] of every change the page has, so it is the same on every
    /// replica that has the same changes, whatever order they came in. Equivocation — two
    /// changes of one actor with one sequence number — keeps the one with the lower hash; the
    /// other and everything built on it are held out (kept, not shown). When a change the
    /// document held loses, the document is rebuilt from the kept changes. What removals
    /// pinned (`pinned`, hashes) and its ancestors are always kept: a removed device cannot
    /// fork what it wrote before its removal. Past [`MAX_HELD_OUT_PER_PAGE`] or
    /// [`MAX_HELD_OUT_BYTES_PER_PAGE`] the held-out changes are trimmed ([`trim_held_out`]):
    /// which ones a page holds out is a function of the changes it was given too, never of
    /// their order. A removed device's changes past its ceiling ([`Page::set_late_ceilings`])
    /// leave the page (neither kept nor held out), and so does what is built on them: a
    /// replica that took them before it knew of the removal ends as one that never did.
    pub fn resolve(
        &mut self,
        new: Vec<Change>,
        pinned: &BTreeSet<ChangeHash>,
    ) -> Result<Resolved, RuleError> {
        debug_assert!(
            !self.has_staged(),
            "seal staged ops before applying remote changes"
        );
        let mut all: BTreeMap<ChangeHash, Change> = BTreeMap::new();
        for c in self.doc.get_changes(&[]) {
            all.insert(c.hash(), c.clone());
        }
        let before: BTreeSet<ChangeHash> = all.keys().copied().collect();
        for (h, c) in &self.held_out {
            all.entry(*h).or_insert_with(|| c.clone());
        }
        for c in new {
            all.entry(c.hash()).or_insert(c);
        }
        // A removed device's changes past its ceiling are no part of the page, whenever
        // they came: not kept, not held out; what is built on them is skipped too.
        let admitted: BTreeMap<ChangeHash, Change> = all
            .iter()
            .filter(|(_, c)| !self.past_ceiling(c))
            .map(|(h, c)| (*h, c.clone()))
            .collect();
        let (kept, equivocators) = resolve_set(&admitted, pinned);
        let kept_set: BTreeSet<ChangeHash> = kept.iter().copied().collect();
        let candidates: BTreeMap<ChangeHash, Change> = admitted
            .iter()
            .filter(|(h, _)| !kept_set.contains(h))
            .map(|(h, c)| (*h, c.clone()))
            .collect();
        let (held, cutoff) = trim_held_out(candidates, &kept_set, self.held_cutoff);
        let removed: Vec<ChangeHash> = before.difference(&kept_set).copied().collect();
        let left: Vec<Change> = removed.iter().map(|h| all[h].clone()).collect();
        let added: Vec<Change> = kept
            .iter()
            .filter(|h| !before.contains(h))
            .map(|h| all[h].clone())
            .collect();
        if removed.is_empty() {
            if !added.is_empty() {
                guarded(|| am(self.doc.apply_changes(added)))?;
            }
        } else {
            let actor = self.doc.get_actor().clone();
            let mut doc = AutoCommit::new().with_actor(actor);
            let changes: Vec<Change> = kept.iter().map(|h| all[h].clone()).collect();
            guarded(|| am(doc.apply_changes(changes)))?;
            self.doc = doc;
        }
        let new_equivocators = equivocators
            .difference(&self.equivocators)
            .cloned()
            .collect();
        self.held_out = held;
        self.held_cutoff = cutoff;
        self.equivocators = equivocators;
        self.recount();
        Ok(Resolved {
            removed,
            left,
            new_equivocators,
        })
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    /// Messages in this page (as far as this device knows).
    pub fn len(&self) -> u32 {
        self.messages + self.staged
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.len() >= PAGE_CAPACITY
    }

    pub fn has_staged(&self) -> bool {
        self.doc.pending_ops() > 0
    }

    pub fn progress(&self, actor: &[u8]) -> Option<ActorProgress> {
        self.progress.get(actor).copied()
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Stages a new message (committed by [`Page::commit`]).
    pub fn add_message(&mut self, hlc: Hlc, draft: &Draft) -> Result<MessageId, RuleError> {
        if draft.body.len() > MAX_BODY_BYTES {
            return Err(RuleError::BadValue("b".into()));
        }
        let key = message_key(hlc, self.doc.get_actor().to_bytes());
        let obj = am(self.doc.put_object(automerge::ROOT, &key, ObjType::Map))?;
        am(self.doc.put(&obj, "b", draft.body.as_str()))?;
        if let Some(r) = &draft.reply_to {
            am(self.doc.put(&obj, "r", r.to_string()))?;
        }
        if draft.precedence != Precedence::Routine {
            am(self.doc.put(&obj, "p", draft.precedence as u64))?;
        }
        if let Some(x) = draft.expiry {
            am(self.doc.put(&obj, "x", x))?;
        }
        self.staged += 1;
        Ok(MessageId {
            page: self.number,
            key,
        })
    }

    fn own_message(&self, key: &str) -> Result<ObjId, RuleError> {
        match self.doc.get(automerge::ROOT, key) {
            Ok(Some((Value::Object(ObjType::Map), id))) => {
                if let ObjId::Id(_, actor, _) = &id
                    && actor == self.doc.get_actor()
                {
                    return Ok(id);
                }
                Err(RuleError::Forbidden("only the author may change a message"))
            }
            _ => Err(RuleError::Forbidden("no such message")),
        }
    }

    pub fn edit_message(&mut self, key: &str, body: &str, hlc: Hlc) -> Result<(), RuleError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(RuleError::BadValue("b".into()));
        }
        let obj = self.own_message(key)?;
        am(self.doc.put(&obj, "b", body))?;
        am(self.doc.put(&obj, "e", hlc.pack()))?;
        Ok(())
    }

    pub fn delete_message(&mut self, key: &str, hlc: Hlc) -> Result<(), RuleError> {
        let obj = self.own_message(key)?;
        am(self.doc.put(&obj, "d", true))?;
        am(self.doc.put(&obj, "e", hlc.pack()))?;
        if self.doc.get(&obj, "b").ok().flatten().is_some() {
            am(self.doc.delete(&obj, "b"))?;
        }
        Ok(())
    }

    /// Sets (or with `None` withdraws) this device's reaction to a message.
    pub fn react(&mut self, key: &str, emoji: Option<&str>) -> Result<(), RuleError> {
        if parse_key(key).is_none() {
            return Err(RuleError::Forbidden("no such message"));
        }
        let rk = reaction_key(key, self.doc.get_actor().to_bytes());
        match emoji {
            Some(e) if e.len() <= MAX_REACTION_BYTES && !e.is_empty() => {
                am(self.doc.put(automerge::ROOT, rk, e))?
            }
            Some(_) => return Err(RuleError::BadValue("reaction".into())),
            None => am(self.doc.delete(automerge::ROOT, rk))?,
        }
        Ok(())
    }

    /// The precedence of the message at `key` as the document stood at `heads` (now with
    /// `None`), if it exists there.
    fn precedence_at(&self, key: &str, heads: Option<&[ChangeHash]>) -> Option<Precedence> {
        let got = match heads {
            None => self.doc.get(automerge::ROOT, key),
            Some(h) => self.doc.get_at(automerge::ROOT, key, h),
        };
        let Ok(Some((Value::Object(ObjType::Map), obj))) = got else {
            return None;
        };
        let p = match heads {
            None => self.doc.get(&obj, "p"),
            Some(h) => self.doc.get_at(&obj, "p", h),
        };
        Some(match p {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Uint(p) => Precedence::from_u8(*p as u8).unwrap_or_default(),
                _ => Precedence::Routine,
            },
            _ => Precedence::Routine,
        })
    }

    /// Stages this device's acknowledgement of the FLASH or IMMEDIATE message at `key`
    /// ("received, acting") at `hlc`. Refused for a message that is not here, of lower
    /// precedence, this device's own, or acknowledged by it already.
    pub fn acknowledge(&mut self, key: &str, hlc: Hlc) -> Result<(), RuleError> {
        let me = self.doc.get_actor().to_bytes().to_vec();
        let Some((_, author)) = parse_key(key) else {
            return Err(RuleError::Forbidden("no such message"));
        };
        if author == actor_prefix(&me) {
            return Err(RuleError::Forbidden(
                "one's own message needs no acknowledgement",
            ));
        }
        match self.precedence_at(key, None) {
            None => return Err(RuleError::Forbidden("no such message")),
            Some(p) if p < Precedence::Immediate => {
                return Err(RuleError::Forbidden(
                    "only FLASH and IMMEDIATE messages are acknowledged",
                ));
            }
            Some(_) => {}
        }
        let ak = ack_key(key, &me);
        if self.doc.get(automerge::ROOT, &ak).ok().flatten().is_some() {
            return Err(RuleError::Forbidden("acknowledged already"));
        }
        am(self.doc.put(automerge::ROOT, ak, hlc.pack()))?;
        Ok(())
    }

    /// Moves this device's read watermark on this page up to `key` (staged; committed by
    /// [`Page::commit`]). Returns `false`, staging nothing, when it is there already.
    pub fn mark_read(&mut self, key: &str) -> Result<bool, RuleError> {
        if parse_key(key).is_none() {
            return Err(RuleError::Forbidden("no such message"));
        }
        let me = self.doc.get_actor().to_bytes().to_vec();
        let rk = read_key(&me);
        if self
            .read_marks()
            .get(&actor_prefix(&me))
            .is_some_and(|k| k.as_str() >= key)
        {
            return Ok(false);
        }
        am(self.doc.put(automerge::ROOT, rk, key))?;
        Ok(true)
    }

    /// Checks the acknowledgements a remote change carries (`acks`, from
    /// [`check_change_full`]) against the document as the change's author saw it (at the
    /// change's dependencies, which must be present): each must name a FLASH or IMMEDIATE
    /// message of another author that existed there, not acknowledged by this author before.
    /// A function of the change and its causal past only, so every replica decides alike
    /// whatever else it holds.
    pub fn check_acks(&mut self, change: &Change, acks: &[String]) -> Result<(), RuleError> {
        if acks.is_empty() {
            return Ok(());
        }
        let author = change.actor_id().to_bytes().to_vec();
        let prefix = actor_prefix(&author);
        let heads: Vec<ChangeHash> = change.deps().to_vec();
        if heads.iter().any(|h| !self.has_change(h)) {
            return Err(RuleError::Forbidden(
                "acknowledgement of a message not in its past",
            ));
        }
        guarded(|| {
            for key in acks {
                let Some((_, by)) = parse_key(key) else {
                    return Err(RuleError::Forbidden("acknowledgement of no message"));
                };
                if by == prefix {
                    return Err(RuleError::Forbidden("acknowledgement of one's own message"));
                }
                match self.precedence_at(key, Some(&heads)) {
                    Some(p) if p >= Precedence::Immediate => {}
                    Some(_) => {
                        return Err(RuleError::Forbidden(
                            "acknowledgement of a message below IMMEDIATE",
                        ));
                    }
                    None => {
                        return Err(RuleError::Forbidden(
                            "acknowledgement of a message not in its past",
                        ));
                    }
                }
                // Only its author writes this key, and its author's earlier changes are all
                // applied before this one (sequence order), so the document now tells alike
                // on every replica whether it acknowledged before, even in a change that
                // does not build on that one.
                let ak = ack_key(key, &author);
                if self.doc.get(automerge::ROOT, &ak).ok().flatten().is_some()
                    || self
                        .doc
                        .get_at(automerge::ROOT, &ak, &heads)
                        .ok()
                        .flatten()
                        .is_some()
                {
                    return Err(RuleError::Forbidden("acknowledgement given twice"));
                }
            }
            Ok(())
        })
    }

    /// Acknowledgements of the message at `key`: (acknowledger actor prefix, when), by prefix.
    pub fn acks_of(&self, key: &str) -> Vec<(String, Hlc)> {
        let start = format!("!{key}");
        let mut out = Vec::new();
        for item in self.doc.map_range(automerge::ROOT, start.clone()..) {
            if !item.key.starts_with(&start) {
                break;
            }
            let Some((msg, who)) = parse_ack_key(&item.key) else {
                continue;
            };
            if msg != key {
                continue;
            }
            if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Uint(at)) = &item.value {
                out.push((who.to_string(), Hlc::unpack(*at)));
            }
        }
        out
    }

    /// Every member's read watermark on this page: actor prefix → message key.
    pub fn read_marks(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for item in self.doc.map_range(automerge::ROOT, "^".to_string()..) {
            let Some(who) = parse_read_key(&item.key) else {
                if !item.key.starts_with('^') {
                    break;
                }
                continue;
            };
            if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) = &item.value {
                out.insert(who.to_string(), s.to_string());
            }
        }
        out
    }

    /// Commits staged operations into one change (time 0: the HLC lives in the keys).
    pub fn commit(&mut self) -> Option<Change> {
        self.doc
            .commit_with(CommitOptions::default().with_time(0))?;
        let change = self.doc.get_last_local_change()?;
        self.messages += self.staged;
        self.staged = 0;
        self.note(&change);
        Some(change)
    }

    fn note(&mut self, change: &Change) {
        let e = self
            .progress
            .entry(change.actor_id().to_bytes().to_vec())
            .or_default();
        if change.seq() > e.seq {
            *e = ActorProgress {
                seq: change.seq(),
                max_op: change.max_op(),
                last_hash: change.hash().0,
            };
        }
    }

    /// Whether the document already has this change.
    /// The hashes of every change in the document (one pass over the history: for many
    /// lookups, where [`Page::has_change`] costs a search each).
    pub fn change_hashes(&mut self) -> std::collections::HashSet<ChangeHash> {
        self.doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| m.hash)
            .collect()
    }

    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    /// Dependencies of `changes` that neither the page nor the batch itself contains.
    pub fn missing_deps(&mut self, changes: &[Change]) -> Vec<ChangeHash> {
        let batch: std::collections::BTreeSet<ChangeHash> =
            changes.iter().map(|c| c.hash()).collect();
        let mut missing = Vec::new();
        for c in changes {
            for d in c.deps() {
                if !batch.contains(d)
                    && !self.held_out.contains_key(d)
                    && !self.has_change(d)
                    && !missing.contains(d)
                {
                    missing.push(*d);
                }
            }
        }
        missing
    }

    /// Applies remote changes that passed [`check_change`] and whose deps are present.
    /// Changes already present are skipped; a different change for a known (actor, seq), or
    /// one built on a held-out change, is refused here ([`RuleError::Equivocation`]) and
    /// decided by [`Page::resolve`] ([`Page::contested`] tells which).
    pub fn apply(&mut self, changes: Vec<(Change, u32)>) -> Result<usize, RuleError> {
        debug_assert!(
            !self.has_staged(),
            "seal staged ops before applying remote changes"
        );
        let mut fresh = Vec::with_capacity(changes.len());
        let mut created = 0;
        let mut expect: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (c, n) in changes {
            if self.has_change(&c.hash()) {
                continue;
            }
            let actor = c.actor_id().to_bytes().to_vec();
            let next = expect
                .get(&actor)
                .copied()
                .unwrap_or_else(|| self.progress.get(&actor).map_or(0, |p| p.seq))
                + 1;
            // A used sequence number, or a change built on a held-out one: for
            // [`Page::resolve`].
            if c.seq() < next
                || self.past_ceiling(&c)
                || self.held_out.contains_key(&c.hash())
                || c.deps().iter().any(|d| self.held_out.contains_key(d))
            {
                return Err(RuleError::Equivocation);
            }
            if c.seq() > next {
                return Err(RuleError::OutOfSequence {
                    expected: next,
                    got: c.seq(),
                });
            }
            expect.insert(actor, c.seq());
            created += n;
            fresh.push(c);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let count = fresh.len();
        let notes = fresh.clone();
        guarded(|| am(self.doc.apply_changes(fresh)))?;
        for c in &notes {
            self.note(c);
        }
        self.messages += created;
        Ok(count)
    }

    /// The page's bytes: the Automerge document, followed (when some are held out) by the
    /// held-out changes, each with its length; a page that dropped held-out changes puts its
    /// cutoff first.
    pub fn save(&mut self) -> Vec<u8> {
        let doc = self.doc.save();
        let mut out = match self.held_cutoff {
            Some((op, hash)) => {
                let mut out = CUTOFF_MAGIC.to_vec();
                out.extend_from_slice(&op.to_be_bytes());
                out.extend_from_slice(&hash.0);
                out
            }
            None if self.held_out.is_empty() => return doc,
            None => HELD_MAGIC.to_vec(),
        };
        for part in
            std::iter::once(doc.as_slice()).chain(self.held_out.values().map(|c| c.raw_bytes()))
        {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// All changes (for tests and replay).
    pub fn changes(&mut self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// Messages in key (time) order, with reactions.
    pub fn messages(&self) -> Vec<MessageView> {
        let mut out: Vec<MessageView> = Vec::new();
        let mut reactions: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for item in self.doc.map_range(automerge::ROOT, ..) {
            if let Some((msg, who)) = parse_reaction_key(&item.key) {
                if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) = &item.value
                {
                    reactions
                        .entry(msg.to_string())
                        .or_default()
                        .push((who.to_string(), s.to_string()));
                }
                continue;
            }
            let obj = item.id();
            if let Some(v) = self.read_message(&item.key, &obj, None) {
                out.push(v);
            }
        }
        for m in &mut out {
            if let Some(r) = reactions.remove(&m.id.key) {
                m.reactions = r;
            }
        }
        out
    }

    /// [`Page::messages`] with some authors *cut*: for an actor where `cut` gives
    /// `Some(cut)`, only what it wrote in its changes up to sequence number `cut.seq` (op
    /// counters up to `cut.max_op`) is shown — its messages created later are left out, and
    /// its edits, deletions and reactions read as they stood after change `cut.seq` (none at
    /// all when `cut.seq` is 0). The result depends only on the changes up to the cut, never
    /// on whether later ones are in the document, so replicas that applied a removed member's
    /// late changes and replicas that did not yet show the same thing.
    ///
    /// Cost: one pass over the change metadata per cut actor that wrote past its cut, then
    /// one historical read per field of its messages and per reaction of its.
    pub fn messages_cut(&mut self, cut: impl Fn(&[u8]) -> Option<Cut>) -> Vec<MessageView> {
        // actor prefix -> (cut, heads to read its writes at: None = shows nothing of it)
        let mut cuts: BTreeMap<String, (Cut, Option<Vec<ChangeHash>>)> = BTreeMap::new();
        let actors: Vec<(Vec<u8>, ActorProgress)> =
            self.progress.iter().map(|(a, p)| (a.clone(), *p)).collect();
        for (actor, pr) in actors {
            let Some(c) = cut(&actor) else { continue };
            let heads = if pr.seq <= c.seq {
                // Nothing past the cut: the current values are the values at the cut.
                Some(Vec::new())
            } else if c.seq == 0 {
                None
            } else {
                self.doc
                    .get_changes_meta(&[])
                    .into_iter()
                    .find(|m| m.actor.to_bytes() == actor.as_slice() && m.seq == c.seq)
                    .map(|m| vec![m.hash])
            };
            cuts.insert(actor_prefix(&actor), (c, heads));
        }
        if cuts.is_empty() {
            return self.messages();
        }
        // Authors cut with nothing past the cut read as now; the others are skipped here and
        // read at their cut below (or not at all).
        let now = |prefix: &str| {
            cuts.get(prefix)
                .is_none_or(|(_, h)| h.as_ref().is_some_and(Vec::is_empty))
        };
        let mut out: Vec<MessageView> = Vec::new();
        let mut reactions: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut take = |out: &mut Vec<MessageView>,
                        key: &str,
                        value: &automerge::ValueRef<'_>,
                        obj: ObjId,
                        heads: Option<&[ChangeHash]>,
                        wanted: &dyn Fn(&str) -> bool| {
            if let Some((msg, who)) = parse_reaction_key(key) {
                if wanted(who)
                    && let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) = value
                {
                    reactions
                        .entry(msg.to_string())
                        .or_default()
                        .push((who.to_string(), s.to_string()));
                }
                return;
            }
            let Some((_, who)) = parse_key(key) else {
                return;
            };
            if !wanted(who) {
                return;
            }
            if let (Some((c, _)), ObjId::Id(counter, _, _)) = (cuts.get(who), &obj)
                && *counter > c.max_op
            {
                return;
            }
            if let Some(v) = self.read_message(key, &obj, heads) {
                out.push(v);
            }
        };
        for item in self.doc.map_range(automerge::ROOT, ..) {
            take(&mut out, &item.key, &item.value, item.id(), None, &now);
        }
        for (prefix, (_, heads)) in &cuts {
            let Some(heads) = heads.as_deref().filter(|h| !h.is_empty()) else {
                continue;
            };
            let mine = |who: &str| who == prefix;
            for item in self.doc.map_range_at(automerge::ROOT, .., heads) {
                take(
                    &mut out,
                    &item.key,
                    &item.value,
                    item.id(),
                    Some(heads),
                    &mine,
                );
            }
        }
        out.sort_by(|a, b| a.id.key.cmp(&b.id.key));
        for m in &mut out {
            if let Some(mut r) = reactions.remove(&m.id.key) {
                r.sort();
                m.reactions = r;
            }
        }
        out
    }

    /// The message at root key `key` (object `obj`), read now or, with `heads`, as it stood
    /// at those heads. Reactions are left empty.
    fn read_message(
        &self,
        key: &str,
        obj: &ObjId,
        heads: Option<&[ChangeHash]>,
    ) -> Option<MessageView> {
        let (sent_at, _) = parse_key(key)?;
        let ObjId::Id(counter, actor, _) = obj else {
            return None;
        };
        let get = |f: &str| match heads {
            None => self.doc.get(obj, f).ok().flatten().map(|(v, _)| v),
            Some(h) => self.doc.get_at(obj, f, h).ok().flatten().map(|(v, _)| v),
        };
        let str_of = |v: Option<Value<'_>>| match v {
            Some(Value::Scalar(s)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        };
        let uint_of = |v: Option<Value<'_>>| match v {
            Some(Value::Scalar(s)) => match s.as_ref() {
                ScalarValue::Uint(u) => Some(*u),
                _ => None,
            },
            _ => None,
        };
        let deleted = matches!(get("d"), Some(Value::Scalar(s)) if matches!(s.as_ref(), ScalarValue::Boolean(true)));
        Some(MessageView {
            id: MessageId {
                page: self.number,
                key: key.to_string(),
            },
            actor: actor.to_bytes().to_vec(),
            sent_at,
            body: if deleted {
                String::new()
            } else {
                str_of(get("b")).unwrap_or_default()
            },
            reply_to: str_of(get("r")).and_then(|r| r.parse().ok()),
            precedence: uint_of(get("p"))
                .and_then(|p| Precedence::from_u8(p as u8))
                .unwrap_or_default(),
            expiry: uint_of(get("x")),
            edited_at: uint_of(get("e")).map(Hlc::unpack),
            deleted,
            reactions: Vec::new(),
            created_op: *counter,
        })
    }
}

/// Where an author's writes stop being shown in one page ([`Page::messages_cut`]): its
/// changes up to sequence number `seq`, whose op counters are at most `max_op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cut {
    pub seq: u64,
    pub max_op: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 16][..])
    }

    /// A page of Alice (actor 1) with a FLASH and a ROUTINE message, and Bhavesh's copy
    /// (actor 2).
    fn alert_pages() -> (Page, Page, String, String) {
        let mut alice = Page::new(0, actor(1));
        let flash = alice
            .add_message(
                Hlc { ms: 10, counter: 0 },
                &Draft {
                    body: "flood at the bridge".into(),
                    precedence: Precedence::Flash,
                    ..Draft::default()
                },
            )
            .unwrap();
        let routine = alice
            .add_message(
                Hlc { ms: 11, counter: 0 },
                &Draft {
                    body: "tea at four".into(),
                    ..Draft::default()
                },
            )
            .unwrap();
        let c = alice.commit().unwrap();
        let mut bhavesh = Page::new(0, actor(2));
        bhavesh.apply(vec![(c, 2)]).unwrap();
        (alice, bhavesh, flash.key, routine.key)
    }

    /// A change by `who` on a copy of `page`, made by `f` on the raw document (what a
    /// hostile member can sign: anything Automerge can express).
    fn raw_change(page: &mut Page, who: ActorId, f: impl FnOnce(&mut AutoCommit)) -> Change {
        let mut doc = AutoCommit::load(&page.save()).unwrap().with_actor(who);
        f(&mut doc);
        doc.commit_with(CommitOptions::default().with_time(0));
        doc.get_last_local_change().unwrap().clone()
    }

    /// What ingest decides of a change: the rules, then its acknowledgements on the page.
    fn judged(page: &mut Page, c: &Change, who: &ActorId) -> Result<(), RuleError> {
        let found = check_change_full(c, who)?;
        page.check_acks(c, &found.acks)
    }

    #[test]
    fn acknowledgements_are_bound_to_their_author_alerts_that_exist_and_once() {
        let (mut alice, mut bhavesh, flash, routine) = alert_pages();
        // The honest path: Bhavesh acknowledges the FLASH message, Alice takes it.
        bhavesh
            .acknowledge(&flash, Hlc { ms: 20, counter: 0 })
            .unwrap();
        let ack = bhavesh.commit().unwrap();
        assert_eq!(
            check_change_full(&ack, &actor(2)).unwrap().acks,
            vec![flash.clone()]
        );
        judged(&mut alice, &ack, &actor(2)).unwrap();
        alice.apply(vec![(ack.clone(), 0)]).unwrap();
        assert_eq!(
            alice.acks_of(&flash),
            vec![(actor_prefix(&[2; 16]), Hlc { ms: 20, counter: 0 })]
        );
        assert!(alice.acks_of(&routine).is_empty());
        // Once applied, the same acknowledgement again is refused (the document has it).
        assert_eq!(
            alice.check_acks(&ack, std::slice::from_ref(&flash)),
            Err(RuleError::Forbidden("acknowledgement given twice"))
        );
        // The commands refuse what the rules refuse.
        let later = Hlc { ms: 21, counter: 0 };
        assert!(bhavesh.acknowledge(&flash, later).is_err(), "twice");
        assert!(bhavesh.acknowledge(&routine, later).is_err(), "routine");
        assert!(alice.acknowledge(&flash, later).is_err(), "own message");
        let nowhere = message_key(Hlc { ms: 5, counter: 0 }, &[1; 16]);
        assert!(bhavesh.acknowledge(&nowhere, later).is_err(), "no message");

        // Hostile changes Bhavesh signs himself, each refused before Automerge sees it:
        let (mut alice, mut bhavesh, flash, routine) = alert_pages();
        let at = ScalarValue::Uint(Hlc { ms: 30, counter: 0 }.pack());
        // for someone else (Chitra's prefix);
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.put(automerge::ROOT, ack_key(&flash, &[3; 16]), at.clone())
                .unwrap();
        });
        assert_eq!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::Forbidden("acknowledgement of another author"))
        );
        // of a ROUTINE message;
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.put(automerge::ROOT, ack_key(&routine, &[2; 16]), at.clone())
                .unwrap();
        });
        assert!(check_change_full(&c, &actor(2)).is_ok());
        assert_eq!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::Forbidden(
                "acknowledgement of a message below IMMEDIATE"
            ))
        );
        // of messages that do not exist (store growth by made-up keys);
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            for n in 0..3u64 {
                let made_up = message_key(
                    Hlc {
                        ms: 100 + n,
                        counter: 0,
                    },
                    &[1; 16],
                );
                d.put(automerge::ROOT, ack_key(&made_up, &[2; 16]), at.clone())
                    .unwrap();
            }
        });
        assert_eq!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::Forbidden(
                "acknowledgement of a message not in its past"
            ))
        );
        // of a message that exists on Alice's page but not in the change's past;
        let mut empty = Page::new(0, actor(2));
        let c = raw_change(&mut empty, actor(2), |d| {
            d.put(automerge::ROOT, ack_key(&flash, &[2; 16]), at.clone())
                .unwrap();
        });
        assert!(judged(&mut alice, &c, &actor(2)).is_err());
        // not a time; withdrawn; changed after it was given.
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.put(automerge::ROOT, ack_key(&flash, &[2; 16]), "yes")
                .unwrap();
        });
        assert!(matches!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::BadValue(_))
        ));
        bhavesh
            .acknowledge(&flash, Hlc { ms: 40, counter: 0 })
            .unwrap();
        let first = bhavesh.commit().unwrap();
        judged(&mut alice, &first, &actor(2)).unwrap();
        alice.apply(vec![(first, 0)]).unwrap();
        for withdraw in [false, true] {
            let c = raw_change(&mut bhavesh, actor(2), |d| {
                let k = ack_key(&flash, &[2; 16]);
                if withdraw {
                    d.delete(automerge::ROOT, k).unwrap();
                } else {
                    d.put(automerge::ROOT, k, at.clone()).unwrap();
                }
            });
            assert!(
                matches!(
                    judged(&mut alice, &c, &actor(2)),
                    Err(RuleError::BadValue(_))
                ),
                "withdraw {withdraw}"
            );
        }
        // An IMMEDIATE message is acknowledged like a FLASH one.
        let mut alice = Page::new(0, actor(1));
        let imm = alice
            .add_message(
                Hlc { ms: 10, counter: 0 },
                &Draft {
                    body: "road closed".into(),
                    precedence: Precedence::Immediate,
                    ..Draft::default()
                },
            )
            .unwrap();
        let c = alice.commit().unwrap();
        let mut bhavesh = Page::new(0, actor(2));
        bhavesh.apply(vec![(c, 1)]).unwrap();
        bhavesh
            .acknowledge(&imm.key, Hlc { ms: 20, counter: 0 })
            .unwrap();
        let ack = bhavesh.commit().unwrap();
        judged(&mut alice, &ack, &actor(2)).unwrap();
    }

    #[test]
    fn read_watermarks_are_one_per_member_forward_only_and_bound_to_their_author() {
        let (mut alice, mut bhavesh, flash, routine) = alert_pages();
        assert!(bhavesh.mark_read(&flash).unwrap());
        assert!(bhavesh.mark_read(&routine).unwrap());
        // Not backwards, not twice: nothing staged.
        assert!(!bhavesh.mark_read(&flash).unwrap());
        assert!(!bhavesh.mark_read(&routine).unwrap());
        let c = bhavesh.commit().unwrap();
        judged(&mut alice, &c, &actor(2)).unwrap();
        alice.apply(vec![(c, 0)]).unwrap();
        let marks = alice.read_marks();
        assert_eq!(marks.len(), 1, "one watermark per member: {marks:?}");
        assert_eq!(marks.get(&actor_prefix(&[2; 16])), Some(&routine));
        // Hostile: for someone else, a value that is not a message key, a withdrawal.
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.put(automerge::ROOT, read_key(&[1; 16]), flash.as_str())
                .unwrap();
        });
        assert_eq!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::Forbidden("read watermark of another author"))
        );
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.put(automerge::ROOT, read_key(&[2; 16]), "everything")
                .unwrap();
        });
        assert!(matches!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::BadValue(_))
        ));
        let c = raw_change(&mut bhavesh, actor(2), |d| {
            d.delete(automerge::ROOT, read_key(&[2; 16])).unwrap();
        });
        assert!(matches!(
            judged(&mut alice, &c, &actor(2)),
            Err(RuleError::BadValue(_))
        ));
        // Receipts are not messages.
        assert_eq!(alice.messages().len(), 2);
    }

    #[test]
    fn keys_sort_by_time_and_parse_back() {
        let a = message_key(
            Hlc {
                ms: 1_700_000_000_000,
                counter: 2,
            },
            &[0xab; 16],
        );
        let b = message_key(
            Hlc {
                ms: 1_700_000_000_001,
                counter: 0,
            },
            &[0x01; 16],
        );
        assert_eq!(a.len(), KEY_LEN);
        assert!(a < b);
        assert_eq!(
            parse_key(&a).unwrap().0,
            Hlc {
                ms: 1_700_000_000_000,
                counter: 2
            }
        );
        assert!(parse_key(&a.to_uppercase()).is_none());
        let id = MessageId { page: 3, key: a };
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
    }

    #[test]
    fn author_can_write_others_cannot() {
        let mut alice = Page::new(0, actor(1));
        let id = alice
            .add_message(
                Hlc { ms: 10, counter: 0 },
                &Draft {
                    body: "नमस्ते".into(),
                    ..Draft::default()
                },
            )
            .unwrap();
        let c1 = alice.commit().unwrap();
        assert_eq!(check_change(&c1, &actor(1)).unwrap(), 1);
        assert_eq!(check_change(&c1, &actor(2)), Err(RuleError::ActorMismatch));

        // Mallory applies Alice's change, then tries to edit Alice's message.
        let mut mallory = Page::new(0, actor(2));
        mallory.apply(vec![(c1.clone(), 1)]).unwrap();
        let obj = match mallory.doc.get(automerge::ROOT, &id.key).unwrap() {
            Some((_, obj)) => obj,
            None => panic!("message missing"),
        };
        mallory.doc.put(&obj, "b", "forged").unwrap();
        let forged = mallory.commit().unwrap();
        assert!(matches!(
            check_change(&forged, &actor(2)),
            Err(RuleError::Forbidden(_))
        ));

        // Mallory writing a message under Alice's key prefix is refused too.
        let mut m2 = Page::new(0, actor(2));
        let k = message_key(Hlc { ms: 11, counter: 0 }, &[1; 16]);
        let o = m2
            .doc
            .put_object(automerge::ROOT, &k, ObjType::Map)
            .unwrap();
        m2.doc.put(&o, "b", "x").unwrap();
        let c = m2.commit().unwrap();
        assert!(matches!(
            check_change(&c, &actor(2)),
            Err(RuleError::Forbidden(_))
        ));
    }

    #[test]
    fn edit_delete_react_converge() {
        let mut a = Page::new(0, actor(1));
        let mut b = Page::new(0, actor(2));
        let id = a
            .add_message(
                Hlc { ms: 1, counter: 0 },
                &Draft {
                    body: "hello".into(),
                    ..Draft::default()
                },
            )
            .unwrap();
        let c1 = a.commit().unwrap();
        b.apply(vec![(c1.clone(), 1)]).unwrap();
        // Concurrently: A edits, B reacts.
        a.edit_message(&id.key, "hello, team", Hlc { ms: 2, counter: 0 })
            .unwrap();
        let c2 = a.commit().unwrap();
        b.react(&id.key, Some("👍")).unwrap();
        let c3 = b.commit().unwrap();
        check_change(&c2, &actor(1)).unwrap();
        check_change(&c3, &actor(2)).unwrap();
        a.apply(vec![(c3, 0)]).unwrap();
        b.apply(vec![(c2, 0)]).unwrap();
        assert_eq!(a.messages(), b.messages());
        let m = &a.messages()[0];
        assert_eq!(m.body, "hello, team");
        assert_eq!(m.reactions.len(), 1);
        assert!(m.edited_at.is_some());
        a.delete_message(&id.key, Hlc { ms: 3, counter: 0 })
            .unwrap();
        let c4 = a.commit().unwrap();
        check_change(&c4, &actor(1)).unwrap();
        b.apply(vec![(c4, 0)]).unwrap();
        assert!(b.messages()[0].deleted);
        assert_eq!(b.messages()[0].body, "");
        // B cannot edit A's message through the API either.
        assert!(b.edit_message(&id.key, "x", Hlc::default()).is_err());
    }

    #[test]
    fn sequence_and_equivocation() {
        let mut a = Page::new(0, actor(1));
        a.add_message(Hlc { ms: 1, counter: 0 }, &Draft::default())
            .unwrap();
        let c1 = a.commit().unwrap();
        a.add_message(Hlc { ms: 2, counter: 0 }, &Draft::default())
            .unwrap();
        let c2 = a.commit().unwrap();
        // A fork of A's history: a different change with seq 2.
        let mut fork = Page::new(0, actor(1));
        fork.apply(vec![(c1.clone(), 1)]).unwrap();
        fork.add_message(Hlc { ms: 3, counter: 0 }, &Draft::default())
            .unwrap();
        let c2b = fork.commit().unwrap();
        let mut b = Page::new(0, actor(2));
        b.apply(vec![(c1, 1), (c2, 1)]).unwrap();
        assert_eq!(b.apply(vec![(c2b, 1)]), Err(RuleError::Equivocation));
        assert_eq!(b.len(), 2);
    }

    /// Two forks of one actor's seq 2, with a change of another actor built on each, in any
    /// order: every page ends with the same document (the lower-hash fork and what is built
    /// on it), holds the rest out, names the equivocator, and saves and loads to the same.
    #[test]
    fn equivocation_is_resolved_alike_in_any_order() {
        let mut a = Page::new(0, actor(1));
        a.add_message(Hlc { ms: 1, counter: 0 }, &Draft::default())
            .unwrap();
        let c1 = a.commit().unwrap();
        let mut fork = Page::new(0, actor(1));
        fork.apply(vec![(c1.clone(), 1)]).unwrap();
        a.add_message(Hlc { ms: 2, counter: 0 }, &Draft::default())
            .unwrap();
        let x = a.commit().unwrap();
        fork.add_message(Hlc { ms: 3, counter: 0 }, &Draft::default())
            .unwrap();
        let y = fork.commit().unwrap();
        let on = |c: &Change, who: u8, ms: u64| {
            let mut p = Page::new(0, actor(who));
            p.apply(vec![(c1.clone(), 1), (c.clone(), 1)]).unwrap();
            p.add_message(Hlc { ms, counter: 0 }, &Draft::default())
                .unwrap();
            p.commit().unwrap()
        };
        let (hx, hy) = (on(&x, 2, 4), on(&y, 3, 5));
        let orders = [
            vec![&x, &hx, &y, &hy],
            vec![&y, &hy, &x, &hx],
            vec![&hy, &y, &hx, &x],
        ];
        let mut seen = None;
        for order in orders {
            let mut p = Page::new(0, actor(9));
            p.apply(vec![(c1.clone(), 1)]).unwrap();
            for c in order {
                let cs = vec![c.clone()];
                if !p.missing_deps(&cs).is_empty() {
                    continue;
                }
                if p.contested(&cs) {
                    p.resolve(cs, &BTreeSet::new()).unwrap();
                } else {
                    p.apply(vec![(c.clone(), 1)]).unwrap();
                }
            }
            // What was skipped for a missing dependency comes again.
            for c in [&x, &y, &hx, &hy] {
                let cs = vec![c.clone()];
                if !p.holds(&c.hash()) {
                    p.resolve(cs, &BTreeSet::new()).unwrap();
                }
            }
            let mut heads = p.heads();
            heads.sort();
            let eq: Vec<Vec<u8>> = p.equivocators().map(<[u8]>::to_vec).collect();
            assert_eq!(eq, vec![vec![1u8; 16]]);
            let mut loaded = Page::load(0, &p.save(), actor(9)).unwrap();
            let mut lh = loaded.heads();
            lh.sort();
            assert_eq!(lh, heads);
            assert_eq!(loaded.messages(), p.messages());
            let got = (heads, p.messages().len());
            match &seen {
                None => seen = Some(got),
                Some(s) => assert_eq!(s, &got),
            }
        }
        // The first message, the winning fork and the change built on it.
        assert_eq!(seen.unwrap().1, 3);
    }

    /// Past the bound, what a page holds out and where it stops are the same whatever order
    /// the forks come in, and a saved page keeps its cutoff: a fork that was dropped before
    /// the save is not taken back after it.
    #[test]
    fn held_out_trim_is_a_function_of_the_set_and_survives_a_save() {
        let mut a = Page::new(0, actor(1));
        a.add_message(Hlc { ms: 1, counter: 0 }, &Draft::default())
            .unwrap();
        let c1 = a.commit().unwrap();
        let forks: Vec<Change> = (0..MAX_HELD_OUT_PER_PAGE as u64 + 40)
            .map(|i| {
                let mut f = Page::new(0, actor(1));
                f.apply(vec![(c1.clone(), 1)]).unwrap();
                f.add_message(
                    Hlc {
                        ms: 2 + i,
                        counter: 0,
                    },
                    &Draft::default(),
                )
                .unwrap();
                f.commit().unwrap()
            })
            .collect();
        let run = |order: &mut dyn Iterator<Item = &Change>, save_after: usize| {
            let mut p = Page::new(0, actor(9));
            p.apply(vec![(c1.clone(), 1)]).unwrap();
            for (i, c) in order.enumerate() {
                if i == save_after {
                    p = Page::load(0, &p.save(), actor(9)).unwrap();
                    p.resolve(Vec::new(), &BTreeSet::new()).unwrap();
                }
                p.resolve(vec![c.clone()], &BTreeSet::new()).unwrap();
            }
            let held: Vec<ChangeHash> = p.held_out_hashes().copied().collect();
            (held, p.held_cutoff, p.heads())
        };
        let forward = run(&mut forks.iter(), usize::MAX);
        assert_eq!(forward.0.len(), MAX_HELD_OUT_PER_PAGE);
        assert!(forward.1.is_some());
        assert_eq!(run(&mut forks.iter().rev(), usize::MAX), forward);
        // Saved and loaded past the bound, then the lowest-hash forks last.
        let mut by_hash: Vec<&Change> = forks.iter().collect();
        by_hash.sort_by_key(|c| std::cmp::Reverse(c.hash()));
        assert_eq!(
            run(&mut by_hash.into_iter(), MAX_HELD_OUT_PER_PAGE + 10),
            forward
        );
    }

    /// The bytes bound, with large and small forks mixed: the small ones past the first that
    /// did not fit stay out, in every order and across saves (the cutoff is saved with the
    /// page; without it a reloaded page would take small forks the others dropped).
    #[test]
    fn held_out_bytes_bound_holds_alike_in_every_order_and_across_saves() {
        let mut a = Page::new(0, actor(1));
        a.add_message(Hlc { ms: 1, counter: 0 }, &Draft::default())
            .unwrap();
        let c1 = a.commit().unwrap();
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let forks: Vec<Change> = (0..120u64)
            .map(|i| {
                let mut body = String::new();
                if i % 2 == 0 {
                    let mut h = blake3::hash(&i.to_le_bytes());
                    while body.len() < 60_000 {
                        body.extend(
                            h.as_bytes()
                                .iter()
                                .map(|b| ALPHABET[*b as usize % 64] as char),
                        );
                        h = blake3::hash(h.as_bytes());
                    }
                }
                let mut f = Page::new(0, actor(1));
                f.apply(vec![(c1.clone(), 1)]).unwrap();
                f.add_message(
                    Hlc {
                        ms: 2 + i,
                        counter: 0,
                    },
                    &Draft {
                        body,
                        ..Draft::default()
                    },
                )
                .unwrap();
                f.commit().unwrap()
            })
            .collect();
        let run = |order: &[&Change], save_at: &[usize]| {
            let mut p = Page::new(0, actor(9));
            p.apply(vec![(c1.clone(), 1)]).unwrap();
            for (i, c) in order.iter().enumerate() {
                if save_at.contains(&i) {
                    p = Page::load(0, &p.save(), actor(9)).unwrap();
                }
                p.resolve(vec![(*c).clone()], &BTreeSet::new()).unwrap();
            }
            let bytes: usize = p.held_out.values().map(|c| c.raw_bytes().len()).sum();
            assert!(bytes <= MAX_HELD_OUT_BYTES_PER_PAGE);
            let held: Vec<ChangeHash> = p.held_out_hashes().copied().collect();
            (held, p.held_cutoff, p.heads())
        };
        let forward: Vec<&Change> = forks.iter().collect();
        let mut by_hash = forward.clone();
        by_hash.sort_by_key(|c| std::cmp::Reverse(c.hash()));
        let first = run(&forward, &[]);
        assert!(first.0.len() < forks.len() - 1, "the bytes bound binds");
        assert!(first.1.is_some());
        let reverse: Vec<&Change> = forward.iter().rev().copied().collect();
        // Lowest hash first: after the cutoff is set, everything else arrives past it.
        let ascending: Vec<&Change> = by_hash.iter().rev().copied().collect();
        for order in [&forward, &reverse, &by_hash, &ascending] {
            assert_eq!(run(order, &[]), first);
            assert_eq!(run(order, &[30, 60, 90, 100, 105, 110, 115]), first);
        }
    }

    #[test]
    fn save_load_keeps_progress() {
        let mut a = Page::new(4, actor(1));
        for i in 0..5 {
            a.add_message(Hlc { ms: i, counter: 0 }, &Draft::default())
                .unwrap();
            a.commit().unwrap();
        }
        let bytes = a.save();
        let mut b = Page::load(4, &bytes, actor(1)).unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(b.progress(&[1; 16]).unwrap().seq, 5);
        b.add_message(Hlc { ms: 9, counter: 0 }, &Draft::default())
            .unwrap();
        assert_eq!(b.commit().unwrap().seq(), 6);
        assert!(Page::load(0, b"garbage", actor(1)).is_err());
    }
}
