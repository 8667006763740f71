//! Range-based set reconciliation of envelope ids (Meyer, "Range-Based Set Reconciliation",
//! SRDS 2023; the design of Negentropy and of iroh-docs' `ranger`).
//!
//! Two devices each hold a set of envelope ids under some tags. Items are ordered by
//! (tag index, id). A message is a list of consecutive ranges covering the whole order; each
//! range carries a *fingerprint* of the sender's items in it, an explicit *id list* when few,
//! or *need* bits answering the other side's id list. A receiver compares: equal fingerprints
//! end that range; unequal ones are split into [`FANOUT`] sub-ranges (or listed, when small).
//!
//! Cost follows the difference, not the history: when nothing is new the whole exchange is
//! one fingerprint (~25 bytes) and an empty reply, whatever the number of envelopes, because
//! each tag's count and sum are maintained incrementally by the store ([`crate::store::Summary`]).
//! With *d* differences among *n* items it takes about log_16(n/d) round trips.
//!
//! Each side learns which ids the other lacks and *pushes* those envelopes itself; nobody
//! requests by id. Fingerprints are BLAKE3(count ‖ sum of ids mod 2^256): ids are hashes of
//! envelope bytes, so sums are uniformly distributed; forging a collision would need a
//! subset-sum over hashes the attacker cannot freely choose within a range.
//!
//! Sans-IO: [`Session::handle_message`] takes bytes and a view of the local set, and leaves
//! the reply in [`Session::poll_transmit`] and the ids to push in [`Session::poll_have`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{EnvelopeId, Tag};
use crate::store::{Store, StoreError, Summary};

/// Sub-ranges a differing range is split into.
pub const FANOUT: usize = 16;
/// A range with at most this many items is sent as an explicit list.
pub const LIST_MAX: usize = 32;
/// Most ids accepted in one list from a peer.
const LIST_CAP: usize = 4096;
/// Most ranges in one message, most rounds in one session.
const MAX_RANGES: usize = 1 << 16;
pub const MAX_ROUNDS: u32 = 64;
/// Largest message accepted (all its parts together).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// A message leaves in parts of at most this many bytes (version, "more follows", a slice
/// of the message), so it fits any transport frame above this, whatever the difference
/// (an honest reply for 1,500 differences among 100k ids is ~560 KB: one frame would be
/// refused by the engine's frame limit, and the honest peer cut off at every retry).
pub const MAX_PART_BYTES: usize = 64 * 1024;
/// Bytes of a reply spent on expanding differing ranges (splitting, listing) before the
/// rest is deferred: echoed back as this side's fingerprint, for the peer to expand in the
/// next round. Keeps every honest reply within [`MAX_MESSAGE_BYTES`] (a reply is at most
/// this, plus answers to the peer's lists, plus echoes: a few times this), so an honest
/// peer is never refused; at least one range is expanded per round, so it converges.
const EXPAND_BUDGET: usize = MAX_MESSAGE_BYTES / 8;
/// Past this many reply bytes, deferred ranges are no longer echoed one by one but merged
/// into one fingerprint per run (between two lists the peer sent).
const ECHO_BUDGET: usize = MAX_MESSAGE_BYTES / 4;
/// 2: messages travel in parts ([`MAX_PART_BYTES`]); replies defer expansions past a
/// budget (2026-12).
const VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReconError {
    #[error("malformed reconciliation message: {0}")]
    Decode(#[from] DecodeError),
    #[error("ranges out of order or not covering the whole set")]
    BadRanges,
    #[error("need bits for a range we did not list")]
    UnexpectedNeed,
    #[error("more than {MAX_ROUNDS} rounds")]
    TooManyRounds,
    #[error("message after the session ended")]
    Finished,
    #[error("work budget of the session spent")]
    OverBudget,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A position in the order: the first item whose (tag index, id) is at or after
/// (`tag`, `prefix` padded with zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub tag: u32,
    pub prefix: Vec<u8>,
}

impl Bound {
    pub fn start() -> Self {
        Self {
            tag: 0,
            prefix: Vec::new(),
        }
    }

    pub fn end(tags: usize) -> Self {
        Self {
            tag: tags as u32,
            prefix: Vec::new(),
        }
    }

    fn padded(&self) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[..self.prefix.len()].copy_from_slice(&self.prefix);
        p
    }

    /// Compares an item with this bound.
    fn cmp_item(&self, tag: u32, id: &EnvelopeId) -> Ordering {
        tag.cmp(&self.tag).then_with(|| id.0.cmp(&self.padded()))
    }

    fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(self.tag)).bytes(&self.prefix);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.u32_varint("bound tag")?;
        let prefix = r.bytes("bound prefix", 32)?.to_vec();
        // Canonical: no trailing zero bytes (they would name the same position).
        if prefix.last() == Some(&0) {
            return Err(DecodeError::NonCanonical("bound prefix"));
        }
        Ok(Self { tag, prefix })
    }

    /// The shortest bound that is above `prev` and at or below `next` (both items).
    fn between(prev: (u32, &EnvelopeId), next: (u32, &EnvelopeId)) -> Self {
        if prev.0 != next.0 {
            return Self {
                tag: next.0,
                prefix: Vec::new(),
            };
        }
        let common = prev
            .1
            .0
            .iter()
            .zip(next.1.0.iter())
            .take_while(|(a, b)| a == b)
            .count();
        let mut prefix = next.1.0[..=common.min(31)].to_vec();
        while prefix.last() == Some(&0) {
            prefix.pop();
        }
        Self {
            tag: next.0,
            prefix,
        }
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.tag
            .cmp(&other.tag)
            .then_with(|| self.padded().cmp(&other.padded()))
    }
}

/// An item as it travels in lists: 16 bytes of a 32-byte hash are plenty to tell items
/// apart (a collision with an honest id would take ~2^128 work), and halve list sizes.
fn short(item: &(u32, EnvelopeId)) -> (u32, [u8; 16]) {
    let mut p = [0u8; 16];
    p.copy_from_slice(&item.1.0[..16]);
    (item.0, p)
}

fn fingerprint(s: &Summary) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("vaarta 2026 recon fingerprint v1");
    h.update(&s.count.to_le_bytes());
    h.update(&s.sum);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The local set, restricted to the session's tags.
#[allow(missing_debug_implementations)]
pub struct View<'a, S: Store + ?Sized> {
    store: &'a S,
    tags: &'a [Tag],
    /// Items visited so far, and how many may be.
    work: std::cell::Cell<u64>,
    limit: u64,
}

impl<'a, S: Store + ?Sized> View<'a, S> {
    pub fn new(store: &'a S, tags: &'a [Tag]) -> Self {
        Self::with_limit(store, tags, u64::MAX)
    }

    fn with_limit(store: &'a S, tags: &'a [Tag], limit: u64) -> Self {
        Self {
            store,
            tags,
            work: std::cell::Cell::new(0),
            limit,
        }
    }

    /// Counts one item visited; false once the limit is reached.
    fn visit(&self) -> bool {
        let w = self.work.get() + 1;
        self.work.set(w);
        w <= self.limit
    }

    fn check(&self) -> Result<(), ReconError> {
        if self.work.get() > self.limit {
            Err(ReconError::OverBudget)
        } else {
            Ok(())
        }
    }

    /// Items in [lo, hi), in order, at most `limit` of them.
    fn items(
        &self,
        lo: &Bound,
        hi: &Bound,
        limit: usize,
    ) -> Result<Vec<(u32, EnvelopeId)>, StoreError> {
        let mut out = Vec::new();
        let last_tag = (hi.tag as usize).min(self.tags.len().saturating_sub(1));
        for t in lo.tag as usize..=last_tag {
            if t >= self.tags.len() || out.len() >= limit {
                break;
            }
            let from = if t == lo.tag as usize {
                lo.padded()
            } else {
                [0; 32]
            };
            let mut err = None;
            self.store.for_each_id(&self.tags[t], &from, &mut |id| {
                if hi.cmp_item(t as u32, id) != Ordering::Less || !self.visit() {
                    return false;
                }
                out.push((t as u32, *id));
                if out.len() >= limit {
                    err = Some(());
                    return false;
                }
                true
            })?;
            let _ = err;
        }
        Ok(out)
    }

    fn summary(&self, lo: &Bound, hi: &Bound) -> Result<Summary, StoreError> {
        let mut s = Summary::default();
        // Whole tags come from the maintained summaries; partial ones are summed.
        for t in lo.tag as usize..self.tags.len() {
            let t32 = t as u32;
            if t32 > hi.tag || (t32 == hi.tag && hi.prefix.is_empty()) {
                break;
            }
            let whole_start = t32 > lo.tag || lo.prefix.is_empty();
            let whole_end = t32 < hi.tag;
            if whole_start && whole_end {
                s.merge(&self.store.summary(&self.tags[t]));
                continue;
            }
            let from = if t32 == lo.tag { lo.padded() } else { [0; 32] };
            self.store.for_each_id(&self.tags[t], &from, &mut |id| {
                if hi.cmp_item(t32, id) != Ordering::Less || !self.visit() {
                    return false;
                }
                s.add(id);
                true
            })?;
        }
        Ok(s)
    }
}

/// The encoded size of one range (for the reply budget).
fn encoded_len(b: &Bound, m: &Mode) -> usize {
    let bound = 1 + 1 + b.prefix.len() + usize::from(b.tag >= 128) * 4;
    bound
        + match m {
            Mode::Skip => 1,
            Mode::Fingerprint(_) => 17,
            Mode::List(items) => 1 + 3 + items.len() * 18,
            Mode::Need(bits) => 1 + 3 + bits.len(),
        }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Skip,
    Fingerprint([u8; 16]),
    /// Items as (tag index, first 16 bytes of the id).
    List(Vec<(u32, [u8; 16])>),
    Need(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// Traffic counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_sent: u32,
    pub messages_received: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// One reconciliation between two devices over an agreed, sorted list of tags.
#[derive(Debug)]
pub struct Session {
    role: Role,
    tags: Vec<Tag>,
    /// Lists we sent, by range, awaiting need bits.
    sent_lists: BTreeMap<(Bound, Bound), Vec<(u32, EnvelopeId)>>,
    transmit: VecDeque<Vec<u8>>,
    haves: VecDeque<(Tag, EnvelopeId)>,
    done: bool,
    rounds: u32,
    stats: Stats,
    /// The parts of the peer's message received so far (until its last part).
    partial: Vec<u8>,
    /// Items this session may still visit in the store (see [`Session::limit_work`]).
    budget: u64,
}

impl Session {
    /// Starts a session as initiator: the first message fingerprints everything.
    pub fn initiate<S: Store + ?Sized>(tags: Vec<Tag>, store: &S) -> Result<Self, ReconError> {
        let mut s = Self::new(Role::Initiator, tags);
        let view = View::new(store, &s.tags);
        let lo = Bound::start();
        let hi = Bound::end(s.tags.len());
        let sum = view.summary(&lo, &hi)?;
        let mode = if sum.count as usize <= LIST_MAX.min(4) {
            let items = view.items(&lo, &hi, LIST_MAX)?;
            let m = Mode::List(items.iter().map(short).collect());
            s.sent_lists.insert((lo, hi.clone()), items);
            m
        } else {
            Mode::Fingerprint(fingerprint(&sum))
        };
        s.queue(vec![(hi, mode)]);
        Ok(s)
    }

    pub fn respond(tags: Vec<Tag>) -> Self {
        Self::new(Role::Responder, tags)
    }

    fn new(role: Role, mut tags: Vec<Tag>) -> Self {
        tags.sort();
        tags.dedup();
        Self {
            role,
            tags,
            sent_lists: BTreeMap::new(),
            transmit: VecDeque::new(),
            haves: VecDeque::new(),
            done: false,
            rounds: 0,
            stats: Stats::default(),
            partial: Vec::new(),
            budget: u64::MAX,
        }
    }

    /// Bounds the store items this session visits from now on, over all its rounds; past
    /// it, [`Session::handle_message`] fails with [`ReconError::OverBudget`]. Unbounded by
    /// default. An honest session visits each item under its tags about once per level of
    /// the range tree that still differs (log_16 n levels), so a few times the number of
    /// items is a budget no honest peer reaches.
    pub fn limit_work(&mut self, items: u64) {
        self.budget = items;
    }

    /// Items this session may still visit.
    pub fn work_left(&self) -> u64 {
        self.budget
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    pub fn is_done(&self) -> bool {
        self.done && self.transmit.is_empty()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The next part of a message to send, if any (each at most [`MAX_PART_BYTES`]).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next envelope the peer lacks (push it).
    pub fn poll_have(&mut self) -> Option<(Tag, EnvelopeId)> {
        self.haves.pop_front()
    }

    fn queue(&mut self, ranges: Vec<(Bound, Mode)>) {
        let mut w = Writer::new();
        w.varint(ranges.len() as u64);
        for (b, m) in &ranges {
            b.encode(&mut w);
            match m {
                Mode::Skip => {
                    w.u8(0);
                }
                Mode::Fingerprint(f) => {
                    w.u8(1).raw(f);
                }
                Mode::List(items) => {
                    w.u8(2).varint(items.len() as u64);
                    for (t, p) in items {
                        w.varint(u64::from(*t)).raw(p);
                    }
                }
                Mode::Need(bits) => {
                    w.u8(3).bytes(bits);
                }
            }
        }
        let bytes = w.into_vec();
        self.stats.messages_sent += 1;
        let mut chunks = bytes.chunks(MAX_PART_BYTES - 2).peekable();
        while let Some(c) = chunks.next() {
            let mut part = Vec::with_capacity(c.len() + 2);
            part.push(VERSION);
            part.push(u8::from(chunks.peek().is_some()));
            part.extend_from_slice(c);
            self.stats.bytes_sent += part.len() as u64;
            self.transmit.push_back(part);
        }
    }

    fn decode(&self, msg: &[u8]) -> Result<Vec<(Bound, Mode)>, ReconError> {
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge {
                what: "reconciliation message",
                len: msg.len() as u64,
                max: MAX_MESSAGE_BYTES as u64,
            }
            .into());
        }
        let mut r = Reader::new(msg);
        let n = r.count("ranges", MAX_RANGES, 3)?;
        let mut out = Vec::with_capacity(n);
        let mut prev = Bound::start();
        for i in 0..n {
            let b = Bound::decode(&mut r)?;
            if b <= prev && !(i == 0 && b == prev && n == 1 && self.tags.is_empty()) {
                return Err(ReconError::BadRanges);
            }
            if b > Bound::end(self.tags.len()) {
                return Err(ReconError::BadRanges);
            }
            let mode = match r.u8("mode")? {
                0 => Mode::Skip,
                1 => Mode::Fingerprint(r.array("fingerprint")?),
                2 => {
                    let k = r.count("list", LIST_CAP, 17)?;
                    let mut items: Vec<(u32, [u8; 16])> = Vec::with_capacity(k);
                    for _ in 0..k {
                        let t = r.u32_varint("list tag")?;
                        let p: [u8; 16] = r.array("list id")?;
                        // The item lies somewhere in [p‖00…, p‖ff…]; it must overlap [lo, hi).
                        let mut low = [0u8; 32];
                        low[..16].copy_from_slice(&p);
                        let mut high = [0xffu8; 32];
                        high[..16].copy_from_slice(&p);
                        if t as usize >= self.tags.len()
                            || prev.cmp_item(t, &EnvelopeId(high)) == Ordering::Less
                            || b.cmp_item(t, &EnvelopeId(low)) != Ordering::Less
                        {
                            return Err(ReconError::BadRanges);
                        }
                        if let Some(last) = items.last()
                            && *last >= (t, p)
                        {
                            return Err(ReconError::BadRanges);
                        }
                        items.push((t, p));
                    }
                    Mode::List(items)
                }
                3 => Mode::Need(r.bytes("need", LIST_CAP / 8 + 1)?.to_vec()),
                _ => return Err(DecodeError::Invalid("mode").into()),
            };
            prev = b.clone();
            out.push((b, mode));
        }
        r.finish()?;
        if n > 0 && prev != Bound::end(self.tags.len()) {
            return Err(ReconError::BadRanges);
        }
        Ok(out)
    }

    /// Handles a part of a message from the peer; at its last part, the message. Replies
    /// and pushes are left to be polled.
    pub fn handle_message<S: Store + ?Sized>(
        &mut self,
        store: &S,
        part: &[u8],
    ) -> Result<(), ReconError> {
        if self.done {
            return Err(ReconError::Finished);
        }
        if part.len() > MAX_PART_BYTES {
            return Err(DecodeError::TooLarge {
                what: "reconciliation part",
                len: part.len() as u64,
                max: MAX_PART_BYTES as u64,
            }
            .into());
        }
        let mut r = Reader::new(part);
        let v = r.u8("version")?;
        if v != VERSION {
            return Err(DecodeError::UnknownVersion(v).into());
        }
        let more = r.bool("more parts")?;
        let chunk = r.rest();
        if more && chunk.is_empty() {
            return Err(DecodeError::Invalid("empty part").into());
        }
        if self.partial.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge {
                what: "reconciliation message",
                len: (self.partial.len() + chunk.len()) as u64,
                max: MAX_MESSAGE_BYTES as u64,
            }
            .into());
        }
        self.partial.extend_from_slice(chunk);
        if more {
            return Ok(());
        }
        let msg = std::mem::take(&mut self.partial);
        self.handle_whole(store, &msg)
    }

    fn handle_whole<S: Store + ?Sized>(&mut self, store: &S, msg: &[u8]) -> Result<(), ReconError> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(ReconError::TooManyRounds);
        }
        self.stats.messages_received += 1;
        self.stats.bytes_received += msg.len() as u64;
        let ranges = self.decode(msg)?;
        if ranges.is_empty() {
            // The peer has nothing more to say.
            self.done = true;
            return Ok(());
        }
        let tags = self.tags.clone();
        let view = View::with_limit(store, &tags, self.budget);
        let r = self.reply(&view, &tags, ranges);
        self.budget = self.budget.saturating_sub(view.work.get());
        view.check()?;
        r
    }

    fn reply<S: Store + ?Sized>(
        &mut self,
        view: &View<'_, S>,
        tags: &[Tag],
        ranges: Vec<(Bound, Mode)>,
    ) -> Result<(), ReconError> {
        let mut out: Vec<(Bound, Mode)> = Vec::new();
        // Reply bytes so far, whether a range was expanded, and the start of a run of
        // deferred ranges being merged into one fingerprint.
        let mut out_len = 0usize;
        let mut expanded = false;
        let mut run: Option<Bound> = None;
        let mut lo = Bound::start();
        for (hi, mode) in ranges {
            let before = out.len();
            match mode {
                Mode::Skip | Mode::Fingerprint(_) if run.is_some() => {}
                Mode::Skip => out.push((hi.clone(), Mode::Skip)),
                Mode::Fingerprint(theirs) => {
                    let mine = view.summary(&lo, &hi)?;
                    if fingerprint(&mine) == theirs {
                        out.push((hi.clone(), Mode::Skip));
                    } else if expanded && out_len >= ECHO_BUDGET {
                        run = Some(lo.clone());
                    } else if expanded && out_len >= EXPAND_BUDGET {
                        // Deferred: our fingerprint back, the peer expands it next round.
                        out.push((hi.clone(), Mode::Fingerprint(fingerprint(&mine))));
                    } else if mine.count as usize <= LIST_MAX {
                        expanded = true;
                        let items = view.items(&lo, &hi, LIST_MAX + 1)?;
                        out.push((hi.clone(), Mode::List(items.iter().map(short).collect())));
                        self.sent_lists.insert((lo.clone(), hi.clone()), items);
                    } else {
                        expanded = true;
                        self.split(view, &lo, &hi, mine.count as usize, &mut out)?;
                    }
                }
                Mode::List(_) | Mode::Need(_) if run.is_some() => {
                    let rlo = run.take().expect("run");
                    let sum = view.summary(&rlo, &lo)?;
                    out.push((lo.clone(), Mode::Fingerprint(fingerprint(&sum))));
                    // Then this range, as below.
                    self.answer(view, tags, &lo, &hi, mode, &mut out)?;
                }
                Mode::List(_) | Mode::Need(_) => {
                    self.answer(view, tags, &lo, &hi, mode, &mut out)?;
                }
            }
            out_len += out[before..]
                .iter()
                .map(|(b, m)| encoded_len(b, m))
                .sum::<usize>();
            lo = hi;
        }
        if let Some(rlo) = run.take() {
            let sum = view.summary(&rlo, &lo)?;
            out.push((lo.clone(), Mode::Fingerprint(fingerprint(&sum))));
        }
        // A scan cut short by the budget gives wrong sums: send nothing.
        view.check()?;
        if out.iter().all(|(_, m)| *m == Mode::Skip) {
            self.done = true;
            self.queue(Vec::new());
        } else {
            // Merge runs of skips into one range.
            let mut merged: Vec<(Bound, Mode)> = Vec::with_capacity(out.len());
            for (b, m) in out {
                if m == Mode::Skip && matches!(merged.last(), Some((_, Mode::Skip))) {
                    merged.pop();
                }
                merged.push((b, m));
            }
            self.queue(merged);
        }
        Ok(())
    }

    /// Answers a list (need bits, and what the peer lacks) or a need (what the peer lacks)
    /// for the range [lo, hi).
    fn answer<S: Store + ?Sized>(
        &mut self,
        view: &View<'_, S>,
        tags: &[Tag],
        lo: &Bound,
        hi: &Bound,
        mode: Mode,
        out: &mut Vec<(Bound, Mode)>,
    ) -> Result<(), ReconError> {
        {
            match mode {
                Mode::Skip | Mode::Fingerprint(_) => unreachable!("lists and needs only"),
                Mode::List(theirs) => {
                    let mine = view.items(lo, hi, usize::MAX)?;
                    let theirs_set: std::collections::BTreeSet<&(u32, [u8; 16])> =
                        theirs.iter().collect();
                    for item in &mine {
                        if !theirs_set.contains(&short(item)) {
                            self.haves.push_back((tags[item.0 as usize], item.1));
                        }
                    }
                    let mine_set: std::collections::BTreeSet<(u32, [u8; 16])> =
                        mine.iter().map(short).collect();
                    let mut bits = vec![0u8; theirs.len().div_ceil(8)];
                    let mut any = false;
                    for (i, item) in theirs.iter().enumerate() {
                        if !mine_set.contains(item) {
                            bits[i / 8] |= 1 << (i % 8);
                            any = true;
                        }
                    }
                    out.push((hi.clone(), if any { Mode::Need(bits) } else { Mode::Skip }));
                }
                Mode::Need(bits) => {
                    let listed = self
                        .sent_lists
                        .remove(&(lo.clone(), hi.clone()))
                        .ok_or(ReconError::UnexpectedNeed)?;
                    if bits.len() != listed.len().div_ceil(8) {
                        return Err(ReconError::UnexpectedNeed);
                    }
                    for (i, (t, id)) in listed.iter().enumerate() {
                        if bits[i / 8] & (1 << (i % 8)) != 0 {
                            self.haves.push_back((tags[*t as usize], *id));
                        }
                    }
                    out.push((hi.clone(), Mode::Skip));
                }
            }
        }
        Ok(())
    }

    fn split<S: Store + ?Sized>(
        &mut self,
        view: &View<'_, S>,
        lo: &Bound,
        hi: &Bound,
        count: usize,
        out: &mut Vec<(Bound, Mode)>,
    ) -> Result<(), ReconError> {
        let items = view.items(lo, hi, usize::MAX)?;
        let parts = FANOUT.min(items.len().max(1));
        let _ = count;
        let mut start = 0;
        let mut part_lo = lo.clone();
        for p in 0..parts {
            let end = if p + 1 == parts {
                items.len()
            } else {
                (items.len() * (p + 1)) / parts
            };
            let part_hi = if p + 1 == parts {
                hi.clone()
            } else {
                Bound::between(
                    (items[end - 1].0, &items[end - 1].1),
                    (items[end].0, &items[end].1),
                )
            };
            let chunk = &items[start..end];
            let mut sum = Summary::default();
            for (_, id) in chunk {
                sum.add(id);
            }
            out.push((part_hi.clone(), Mode::Fingerprint(fingerprint(&sum))));
            part_lo = part_hi;
            start = end;
        }
        let _ = part_lo;
        Ok(())
    }
}

/// Drives two sessions against each other in memory until both finish, for tests and
/// benchmarks. Returns (round trips, bytes a→b, bytes b→a) and the ids each side must push.
#[allow(clippy::type_complexity)]
pub fn run_pair<A: Store, B: Store>(
    tags: &[Tag],
    a: &A,
    b: &B,
) -> Result<(u32, u64, u64, Vec<EnvelopeId>, Vec<EnvelopeId>), ReconError> {
    let mut sa = Session::initiate(tags.to_vec(), a)?;
    let mut sb = Session::respond(tags.to_vec());
    let mut trips = 0;
    let (mut a_to_b, mut b_to_a) = (0u64, 0u64);
    loop {
        // Every part a has to send, then every part b has.
        let mut any = false;
        while let Some(m) = sa.poll_transmit() {
            if !any {
                trips += 1;
            }
            any = true;
            a_to_b += m.len() as u64;
            sb.handle_message(b, &m)?;
        }
        while let Some(r) = sb.poll_transmit() {
            any = true;
            b_to_a += r.len() as u64;
            sa.handle_message(a, &r)?;
        }
        if !any || sa.is_done() {
            break;
        }
    }
    let mut pa = Vec::new();
    while let Some((_, id)) = sa.poll_have() {
        pa.push(id);
    }
    let mut pb = Vec::new();
    while let Some((_, id)) = sb.poll_have() {
        pb.push(id);
    }
    Ok((trips, a_to_b, b_to_a, pa, pb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::store::testing::FindEnvelope;
    use proptest::prelude::*;

    fn id(seed: u64) -> EnvelopeId {
        EnvelopeId(*blake3::hash(&seed.to_le_bytes()).as_bytes())
    }

    fn fill(st: &mut MemoryStore, tag: Tag, ids: impl Iterator<Item = u64>) {
        for i in ids {
            st.put_envelope(&tag, &id(i), b"x").unwrap();
        }
    }

    fn converge(tags: &[Tag], a: &mut MemoryStore, b: &mut MemoryStore) -> (u32, u64, u64) {
        let (trips, ab, ba, pa, pb) = run_pair(tags, a, b).unwrap();
        for i in pa {
            let t = a.find_tag(&i).unwrap().unwrap();
            b.put_envelope(&t, &i, b"x").unwrap();
        }
        for i in pb {
            let t = b.find_tag(&i).unwrap().unwrap();
            a.put_envelope(&t, &i, b"x").unwrap();
        }
        (trips, ab, ba)
    }

    #[test]
    fn nothing_new_costs_one_small_round_trip() {
        let tag = Tag([1; 16]);
        let mut a = MemoryStore::new();
        fill(&mut a, tag, 0..20_000);
        let mut b = a.clone();
        let (trips, ab, ba) = converge(&[tag], &mut a, &mut b);
        assert_eq!(trips, 1);
        assert!(ab < 40 && ba < 10, "{ab} {ba}");
    }

    #[test]
    fn differences_found_both_ways() {
        let t1 = Tag([1; 16]);
        let t2 = Tag([2; 16]);
        let mut a = MemoryStore::new();
        fill(&mut a, t1, 0..5000);
        fill(&mut a, t2, 10_000..10_100);
        let mut b = a.clone();
        fill(&mut a, t1, 20_000..20_007);
        fill(&mut b, t2, 30_000..30_003);
        converge(&[t1, t2], &mut a, &mut b);
        assert_eq!(a.tags(), b.tags());
        // A tag outside the session is not touched.
        fill(&mut a, Tag([3; 16]), 0..10);
        let (trips, _, _) = converge(&[t1, t2], &mut a, &mut b);
        assert_eq!(trips, 1);
        assert_eq!(b.summary(&Tag([3; 16])).count, 0);
    }

    #[test]
    fn empty_and_one_sided() {
        let t = Tag([1; 16]);
        let mut a = MemoryStore::new();
        let mut b = MemoryStore::new();
        converge(&[t], &mut a, &mut b);
        fill(&mut a, t, 0..3000);
        let (trips, _, _) = converge(&[t], &mut a, &mut b);
        assert_eq!(b.summary(&t), a.summary(&t));
        assert!(trips <= 3, "{trips}");
        converge(&[t], &mut b, &mut a);
    }

    /// Issue 9, item 12: a reply for many differences among many shared ids is larger than
    /// a frame (≈ 560 KB for 1,500 among 100k; the engine's frame limit is ≈ 257 KiB). Every
    /// part of every message must fit the frame limit, and the sets still converge.
    #[test]
    fn honest_messages_fit_a_frame_whatever_the_difference() {
        const FRAME_LIMIT: usize = 256 * 1024;
        let t = Tag([1; 16]);
        let mut a = MemoryStore::new();
        fill(&mut a, t, 0..100_000);
        let mut b = a.clone();
        fill(&mut a, t, 1_000_000..1_001_500);
        let mut sa = Session::initiate(vec![t], &a).unwrap();
        let mut sb = Session::respond(vec![t]);
        let (mut largest, mut parts, mut total) = (0usize, 0u32, 0u64);
        let mut pushed = Vec::new();
        for _ in 0..2 * MAX_ROUNDS {
            let mut any = false;
            while let Some(m) = sa.poll_transmit() {
                any = true;
                (largest, parts, total) = (largest.max(m.len()), parts + 1, total + m.len() as u64);
                sb.handle_message(&b, &m).unwrap();
            }
            while let Some(m) = sb.poll_transmit() {
                any = true;
                (largest, parts, total) = (largest.max(m.len()), parts + 1, total + m.len() as u64);
                sa.handle_message(&a, &m).unwrap();
            }
            while let Some((_, id)) = sa.poll_have() {
                pushed.push(id);
            }
            if !any {
                break;
            }
        }
        assert!(largest <= FRAME_LIMIT, "a part of {largest} bytes");
        assert!(largest <= MAX_PART_BYTES);
        assert!(sa.is_done() && sb.is_done(), "finished");
        for id in &pushed {
            b.put_envelope(&t, id, b"x").unwrap();
        }
        assert_eq!(pushed.len(), 1_500);
        assert_eq!(a.summary(&t), b.summary(&t));
        // Deferring keeps the cost near the difference: well under 2 KB per missing id.
        assert!(total < 1_500 * 2_000, "{total} bytes in {parts} parts");
    }

    /// Issue 9, item 13: a 25-byte message (one fingerprint over everything) makes the
    /// responder scan every item to split the range. Work is counted and bounded per
    /// session: an honest session stays well within a few times the items, a budget below
    /// what a message needs stops it with an error and sends nothing.
    #[test]
    fn work_per_session_is_counted_and_bounded() {
        let t = Tag([1; 16]);
        let mut a = MemoryStore::new();
        fill(&mut a, t, 0..20_000);
        let mut b = a.clone();
        fill(&mut a, t, 100_000..100_300);
        fill(&mut b, t, 200_000..200_300);
        let n = 20_300u64;
        // Honest: within 8 items visited per item held, on both sides.
        let mut sa = Session::initiate(vec![t], &a).unwrap();
        sa.limit_work(8 * n);
        let mut sb = Session::respond(vec![t]);
        sb.limit_work(8 * n);
        for _ in 0..MAX_ROUNDS {
            let mut any = false;
            while let Some(m) = sa.poll_transmit() {
                any = true;
                sb.handle_message(&b, &m).unwrap();
            }
            while let Some(m) = sb.poll_transmit() {
                any = true;
                sa.handle_message(&a, &m).unwrap();
            }
            if !any {
                break;
            }
        }
        assert!(sa.is_done() && sb.is_done());
        assert!(sb.work_left() < 8 * n, "work was counted");
        assert!(
            8 * n - sb.work_left() <= 4 * n,
            "{}",
            8 * n - sb.work_left()
        );
        // One small fingerprint over everything, on a budget below one scan: refused, and
        // no reply.
        let first = Session::initiate(vec![t], &a)
            .unwrap()
            .poll_transmit()
            .unwrap();
        assert!(first.len() <= 25, "{} bytes", first.len());
        let mut s = Session::respond(vec![t]);
        s.limit_work(1_000);
        assert_eq!(s.handle_message(&b, &first), Err(ReconError::OverBudget));
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn a_message_in_parts_is_bounded_and_parts_are_not_empty() {
        let t = Tag([1; 16]);
        let store = MemoryStore::new();
        let mut s = Session::respond(vec![t]);
        // A non-final empty part.
        assert!(s.handle_message(&store, &[VERSION, 1]).is_err());
        let mut s = Session::respond(vec![t]);
        let mut part = vec![VERSION, 1];
        part.resize(MAX_PART_BYTES, 7);
        for _ in 0..MAX_MESSAGE_BYTES / (MAX_PART_BYTES - 2) {
            s.handle_message(&store, &part).unwrap();
        }
        assert!(
            s.handle_message(&store, &part).is_err(),
            "more than a message's worth of parts"
        );
        let mut s = Session::respond(vec![t]);
        let mut big = vec![VERSION, 1];
        big.resize(MAX_PART_BYTES + 1, 7);
        assert!(
            s.handle_message(&store, &big).is_err(),
            "a part over the bound"
        );
    }

    #[test]
    fn hostile_messages_are_errors() {
        let t = Tag([1; 16]);
        let store = MemoryStore::new();
        for bad in [
            &[][..],
            &[2],
            &[2, 0],
            &[1, 0, 0],
            &[2, 0, 1, 9, 0, 0],
            &[2, 0, 200, 200, 200, 200, 200, 200, 200, 200, 200, 2],
        ] {
            let mut s = Session::respond(vec![t]);
            assert!(s.handle_message(&store, bad).is_err(), "{bad:?}");
        }
        let mut s = Session::respond(vec![t]);
        // A need for a list we never sent.
        let mut w = Writer::new();
        w.u8(VERSION).u8(0).varint(1);
        Bound::end(1).encode(&mut w);
        w.u8(3).bytes(&[1]);
        assert_eq!(
            s.handle_message(&store, w.as_slice()),
            Err(ReconError::UnexpectedNeed)
        );
    }

    proptest! {
        #[test]
        fn any_two_sets_converge(common in 0u64..400, only_a in proptest::collection::vec(0u64..100_000, 0..60),
                                 only_b in proptest::collection::vec(100_000u64..200_000, 0..60), split in any::<bool>()) {
            let t1 = Tag([1; 16]);
            let t2 = Tag([2; 16]);
            let tags = [t1, t2];
            let mut a = MemoryStore::new();
            fill(&mut a, t1, 300_000..300_000 + common);
            let mut b = a.clone();
            fill(&mut a, if split { t2 } else { t1 }, only_a.iter().copied());
            fill(&mut b, t2, only_b.iter().copied());
            converge(&tags, &mut a, &mut b);
            prop_assert_eq!(a.summary(&t1), b.summary(&t1));
            prop_assert_eq!(a.summary(&t2), b.summary(&t2));
        }

        #[test]
        fn decoder_never_panics(bytes: Vec<u8>) {
            let store = MemoryStore::new();
            let mut s = Session::respond(vec![Tag([1; 16]), Tag([2; 16])]);
            let _ = s.handle_message(&store, &bytes);
        }
    }
}
