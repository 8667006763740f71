//! Envelopes carried for others (issue 9 item 14): a relay holds envelopes under tags that
//! are not its own, within quotas, and makes room by evicting the oldest.
//!
//! Every carried envelope has a record `r/` (arrival order, length, tag, and the device
//! that pushed it to us, when a peer did), loaded at open into an index by arrival order,
//! by tag, by origin and by class. An origin is a *stranger* if it is a peer device that
//! is not a contact ([`Replica::is_contact`]: a current member of a conversation held here,
//! a device the user accepted, or this device); the engine names a peer that has not shown
//! its device by the hash of its transport id, never a contact's. Every other origin is a
//! *contact*, including no origin (a file import, a record from before origins). Device keys
//! and transport ids cost nothing, so strangers are counted together: however many sybils
//! push, they never evict a contact's envelope. The class is not in the record: it is
//! evaluated at open, for the pusher on each arrival, and again for the devices whose
//! membership changes (an inserted membership operation names them; an accepted device;
//! a conversation added), so a stranger added to a conversation moves to the contacts with
//! its envelopes, and one removed moves back. The quotas, checked in this order before an
//! envelope is stored; each makes room by evicting, so that what is new is carried:
//! 1. **per origin** ([`RelayPolicy::max_origin_bytes`], 1/4 of the relay quota by
//!    default): what one peer device pushed; past it, that peer's own oldest goes;
//! 2. **per tag** ([`RelayPolicy::max_tag_bytes`], 1/8): one conversation's envelopes.
//!    Past it a contact evicts the tag's oldest stranger envelope, then its own oldest
//!    under the tag, then the tag's oldest; a stranger evicts only its own under the tag,
//!    and if that is not enough its envelope is refused (not carried);
//! 3. **strangers' pool** ([`RelayPolicy::max_stranger_bytes`] and
//!    [`RelayPolicy::max_stranger_envelopes`], 1/2 of the bytes and of the count), for a
//!    stranger's envelope: the oldest of the stranger origin that holds the most, the
//!    pusher's own if it holds as much (so a flooding stranger evicts its own, and a
//!    newcomer takes room from the largest);
//! 4. **in all** ([`RelayPolicy::max_bytes`] and [`RelayPolicy::max_envelopes`]): the
//!    oldest envelope of the stranger origin that holds the most (with or without an
//!    expiry); only when no stranger envelope is left, and only for a contact's envelope,
//!    the oldest of the vouched origin, then of the contact origin, that holds the most.
//!
//! A third class sits between the two (issue 9, C4): a stranger **vouched for** by an
//! organisation root pinned here (`vouched.rs`, told by the engine when the device's chain
//! verified on a link). It has a pool of its own ([`RelayPolicy::max_vouched_bytes`] and
//! [`RelayPolicy::max_vouched_envelopes`], 1/4) that makes room like the strangers' pool;
//! under a full tag it evicts the tag's oldest stranger envelope, then its own; in all,
//! strangers' envelopes only. A stranger never takes its room, and it never takes a
//! contact's: what would need that is refused before anything is evicted.
//!
//! A stranger's envelope that could only fit by evicting a contact's (under its tag or in
//! all) is refused before anything is evicted. A class change can leave the pool over its
//! share until the next stranger envelope arrives and evicts. An evicted envelope becomes
//! a tombstone (bounded like every tombstone), so reconciliation does not fetch it straight
//! back. Envelopes of the device's own conversations (and its inbox, and held invitations)
//! are never carried, so never evicted. Nor are the invitations this device sealed for
//! others, though they wait under the invitee's inbox tag, not ours: the sealer cannot open
//! one again to see that it signed it, so `invite` writes a record `s/` before it stores
//! the envelope, and the open skips what it names. They are not bounded by the relay
//! quotas but by this device's own commands: one per device named in an `Add` it signed
//! (at most [`MAX_MEMBERS`](crate::limits::MAX_MEMBERS) devices an operation, the
//! membership log bounded by [`MAX_CONTROL_OPS`](crate::limits::MAX_CONTROL_OPS), twice
//! for admins), per conversation held (at most [`MAX_CONVERSATIONS`]); nothing a peer
//! sends adds one. An envelope too large for a quota is not carried at
//! all. Each envelope is evicted at most once, and each step finds its victim in an index
//! (no scan), so the work of eviction is bounded by the envelopes carried; moving an origin
//! between classes costs the envelopes it holds, once per change of its membership.

use super::*;

/// One carried envelope, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    order: u64,
    len: u64,
    tag: Tag,
    origin: Option<DeviceId>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(61);
        v.extend_from_slice(&self.order.to_be_bytes());
        v.extend_from_slice(&(self.len as u32).to_be_bytes());
        v.extend_from_slice(&self.tag.0);
        match &self.origin {
            Some(d) => {
                v.push(1);
                v.extend_from_slice(&d.0);
            }
            None => {
                v.push(0);
                v.extend_from_slice(&[0; 32]);
            }
        }
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 61 {
            return None;
        }
        let origin = match v[28] {
            0 => None,
            1 => Some(DeviceId(v[29..61].try_into().ok()?)),
            _ => return None,
        };
        Some(Self {
            order: u64::from_be_bytes(v[..8].try_into().ok()?),
            len: u64::from(u32::from_be_bytes(v[8..12].try_into().ok()?)),
            tag: Tag(v[12..28].try_into().ok()?),
            origin,
        })
    }
}

/// Bytes and arrival orders of one tag's or one origin's carried envelopes.
#[derive(Debug, Default)]
struct Usage {
    bytes: u64,
    orders: BTreeSet<u64>,
}

/// Who pushed a carried envelope: a peer device, or nobody (a file, or carried before
/// origins were recorded).
type Origin = Option<DeviceId>;

/// Whether an origin is a stranger, as the replica last evaluated it (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// A contact, this device, or no peer (a file, an old record).
    Contact = 0,
    /// A stranger whose credential chain verified against a root pinned here (the engine
    /// says so, [`Replica::vouch`]): its own share, which strangers never evict.
    Vouched = 1,
    Stranger = 2,
}

const CLASSES: usize = 3;

/// Origins by (bytes, oldest first): the last is the largest (the oldest among equals).
type BySize = BTreeSet<(u64, std::cmp::Reverse<u64>, Origin)>;

/// What a relay carries and how much of each quota it uses.
#[derive(Debug, Default)]
pub(super) struct Carried {
    entries: BTreeMap<EnvelopeId, Entry>,
    by_order: BTreeMap<u64, EnvelopeId>,
    per_tag: BTreeMap<Tag, Usage>,
    per_origin: BTreeMap<Origin, Usage>,
    /// Each origin's envelopes under each tag.
    per_tag_origin: BTreeMap<(Tag, Origin), Usage>,
    /// Orders of strangers' envelopes under each tag.
    per_tag_stranger: BTreeMap<Tag, Usage>,
    /// The origins held that are not contacts, and their class (all others are contacts).
    strangers: BTreeMap<DeviceId, Class>,
    /// Origins of each class by size ([`Class`] as the index).
    by_size: [BySize; CLASSES],
    /// Bytes and envelopes of each class.
    class_bytes: [u64; CLASSES],
    class_len: [usize; CLASSES],
    bytes: u64,
    next_order: u64,
}

impl Carried {
    fn class_of(&self, o: &Origin) -> Class {
        match o {
            Some(d) => self.strangers.get(d).copied().unwrap_or(Class::Contact),
            None => Class::Contact,
        }
    }

    fn size_key(&self, o: &Origin) -> Option<(u64, std::cmp::Reverse<u64>, Origin)> {
        let u = self.per_origin.get(o)?;
        let first = *u.orders.iter().next()?;
        Some((u.bytes, std::cmp::Reverse(first), *o))
    }

    /// Takes `o` out of its class's size index (before its usage changes).
    fn unsize(&mut self, o: &Origin) {
        if let Some(k) = self.size_key(o) {
            let c = self.class_of(o) as usize;
            self.by_size[c].remove(&k);
        }
    }

    /// Puts `o` back in its class's size index (after its usage changed).
    fn resize(&mut self, o: &Origin) {
        if let Some(k) = self.size_key(o) {
            let c = self.class_of(o) as usize;
            self.by_size[c].insert(k);
        }
    }

    /// Indexes a carried envelope; `class` is its origin's class now (an origin already
    /// held in another class moves there first).
    fn insert(&mut self, id: EnvelopeId, e: Entry, class: Class) {
        self.set_class(&e.origin, class);
        if !self.per_origin.contains_key(&e.origin)
            && let Some(d) = e.origin
            && class != Class::Contact
        {
            self.strangers.insert(d, class);
        }
        let class = self.class_of(&e.origin);
        self.next_order = self.next_order.max(e.order + 1);
        self.by_order.insert(e.order, id);
        let t = self.per_tag.entry(e.tag).or_default();
        t.bytes += e.len;
        t.orders.insert(e.order);
        self.unsize(&e.origin);
        let u = self.per_origin.entry(e.origin).or_default();
        u.bytes += e.len;
        u.orders.insert(e.order);
        self.resize(&e.origin);
        let to = self.per_tag_origin.entry((e.tag, e.origin)).or_default();
        to.bytes += e.len;
        to.orders.insert(e.order);
        if class == Class::Stranger {
            let s = self.per_tag_stranger.entry(e.tag).or_default();
            s.bytes += e.len;
            s.orders.insert(e.order);
        }
        self.class_bytes[class as usize] += e.len;
        self.class_len[class as usize] += 1;
        self.bytes += e.len;
        self.entries.insert(id, e);
    }

    fn remove(&mut self, id: &EnvelopeId) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        let class = self.class_of(&e.origin);
        self.by_order.remove(&e.order);
        if let Some(t) = self.per_tag.get_mut(&e.tag) {
            t.bytes -= e.len;
            t.orders.remove(&e.order);
            if t.orders.is_empty() {
                self.per_tag.remove(&e.tag);
            }
        }
        self.unsize(&e.origin);
        if let Some(u) = self.per_origin.get_mut(&e.origin) {
            u.bytes -= e.len;
            u.orders.remove(&e.order);
            if u.orders.is_empty() {
                self.per_origin.remove(&e.origin);
                if let Some(d) = &e.origin {
                    self.strangers.remove(d);
                }
            }
        }
        self.resize(&e.origin);
        if let Some(s) = self.per_tag_origin.get_mut(&(e.tag, e.origin)) {
            s.bytes -= e.len;
            s.orders.remove(&e.order);
            if s.orders.is_empty() {
                self.per_tag_origin.remove(&(e.tag, e.origin));
            }
        }
        if class == Class::Stranger
            && let Some(s) = self.per_tag_stranger.get_mut(&e.tag)
        {
            s.bytes -= e.len;
            s.orders.remove(&e.order);
            if s.orders.is_empty() {
                self.per_tag_stranger.remove(&e.tag);
            }
        }
        self.class_bytes[class as usize] -= e.len;
        self.class_len[class as usize] -= 1;
        self.bytes -= e.len;
        Some(e)
    }

    /// Moves a held origin to `to`, if it is in another class: work in the envelopes it
    /// holds, done only when its class changes. An origin of no peer is always a contact's.
    fn set_class(&mut self, o: &Origin, to: Class) {
        let Some(d) = o else { return };
        let Some(u) = self.per_origin.get(o) else {
            return;
        };
        let from = self.class_of(o);
        if from == to {
            return;
        }
        let orders: Vec<u64> = u.orders.iter().copied().collect();
        let bytes = u.bytes;
        self.unsize(o);
        if to == Class::Contact {
            self.strangers.remove(d);
        } else {
            self.strangers.insert(*d, to);
        }
        self.resize(o);
        self.class_bytes[from as usize] -= bytes;
        self.class_bytes[to as usize] += bytes;
        self.class_len[from as usize] -= orders.len();
        self.class_len[to as usize] += orders.len();
        for order in orders {
            let Some((tag, len)) = self
                .by_order
                .get(&order)
                .and_then(|id| self.entries.get(id))
                .map(|e| (e.tag, e.len))
            else {
                continue;
            };
            if to == Class::Stranger {
                let s = self.per_tag_stranger.entry(tag).or_default();
                s.bytes += len;
                s.orders.insert(order);
            } else if from == Class::Stranger
                && let Some(s) = self.per_tag_stranger.get_mut(&tag)
            {
                s.bytes -= len;
                s.orders.remove(&order);
                if s.orders.is_empty() {
                    self.per_tag_stranger.remove(&tag);
                }
            }
        }
    }

    fn first_of(&self, orders: Option<&BTreeSet<u64>>) -> Option<EnvelopeId> {
        let o = orders?.iter().next()?;
        self.by_order.get(o).copied()
    }

    /// The oldest envelope `origin` pushed.
    fn oldest_of_origin(&self, origin: &Origin) -> Option<EnvelopeId> {
        self.first_of(self.per_origin.get(origin).map(|u| &u.orders))
    }

    /// The oldest envelope under `tag` that `origin` pushed.
    fn oldest_of_tag_origin(&self, tag: &Tag, origin: &Origin) -> Option<EnvelopeId> {
        self.first_of(self.per_tag_origin.get(&(*tag, *origin)).map(|u| &u.orders))
    }

    /// The oldest strangers' envelope under `tag`.
    fn oldest_stranger_of_tag(&self, tag: &Tag) -> Option<EnvelopeId> {
        self.first_of(self.per_tag_stranger.get(tag).map(|u| &u.orders))
    }

    /// The oldest envelope under `tag`.
    fn oldest_of_tag(&self, tag: &Tag) -> Option<EnvelopeId> {
        self.first_of(self.per_tag.get(tag).map(|u| &u.orders))
    }

    /// The oldest envelope of the origin of `class` that holds the most bytes (of those
    /// that hold the most, the one with the oldest envelope).
    fn oldest_of_largest(&self, class: Class) -> Option<EnvelopeId> {
        let (_, _, o) = self.by_size[class as usize].iter().next_back()?;
        self.oldest_of_origin(o)
    }

    /// The oldest envelope of the largest origin of `class`, `own`'s if it holds as much as
    /// the largest: what makes room in that class's pool for `own`.
    fn oldest_of_largest_or_own(&self, class: Class, own: &Origin) -> Option<EnvelopeId> {
        let largest = self.by_size[class as usize].iter().next_back()?.0;
        let mine = self.per_origin.get(own).map_or(0, |u| u.bytes);
        if mine > 0 && mine >= largest {
            self.oldest_of_origin(own)
        } else {
            self.oldest_of_largest(class)
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True if `o` pushed an envelope carried now.
    pub(super) fn holds(&self, o: &Origin) -> bool {
        self.per_origin.contains_key(o)
    }

    pub(super) fn contains(&self, id: &EnvelopeId) -> bool {
        self.entries.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn tag_bytes(&self, t: &Tag) -> u64 {
        self.per_tag.get(t).map_or(0, |u| u.bytes)
    }

    fn tag_origin_bytes(&self, t: &Tag, o: &Origin) -> u64 {
        self.per_tag_origin.get(&(*t, *o)).map_or(0, |u| u.bytes)
    }

    fn origin_bytes(&self, d: &DeviceId) -> u64 {
        self.per_origin.get(&Some(*d)).map_or(0, |u| u.bytes)
    }

    fn class_usage(&self, c: Class) -> (u64, usize) {
        (self.class_bytes[c as usize], self.class_len[c as usize])
    }
}

/// How much a relay carries, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedUsage {
    pub bytes: u64,
    pub envelopes: usize,
    /// Tags and origins with something carried.
    pub tags: usize,
    pub origins: usize,
    /// What strangers pushed (within [`RelayPolicy::max_stranger_bytes`] and
    /// [`RelayPolicy::max_stranger_envelopes`], checked as each arrives).
    pub stranger_bytes: u64,
    pub stranger_envelopes: usize,
    /// What vouched devices that are not contacts pushed (within
    /// [`RelayPolicy::max_vouched_bytes`] and [`RelayPolicy::max_vouched_envelopes`]).
    pub vouched_bytes: u64,
    pub vouched_envelopes: usize,
}

impl<S: Store> Replica<S> {
    /// How much this device carries for others now.
    pub fn carried_usage(&self) -> CarriedUsage {
        let (stranger_bytes, stranger_envelopes) = self.carried.class_usage(Class::Stranger);
        let (vouched_bytes, vouched_envelopes) = self.carried.class_usage(Class::Vouched);
        CarriedUsage {
            vouched_bytes,
            vouched_envelopes,
            bytes: self.carried.bytes(),
            envelopes: self.carried.len(),
            tags: self.carried.per_tag.len(),
            origins: self.carried.per_origin.len(),
            stranger_bytes,
            stranger_envelopes,
        }
    }

    /// Carried bytes under `tag`, and those pushed by `origin`.
    pub fn carried_bytes_of(&self, tag: &Tag, origin: &DeviceId) -> (u64, u64) {
        (
            self.carried.tag_bytes(tag),
            self.carried.origin_bytes(origin),
        )
    }

    /// The class of what `origin` pushes: a stranger's if it is a peer device that is not
    /// a contact ([`Replica::is_contact`]), unless it is vouched for now ([`Replica::vouch`]).
    /// No origin (a file, an old record) is local.
    fn class_for(&self, origin: &Origin) -> Class {
        match origin {
            Some(d) if !self.is_contact(d) => {
                if self.is_vouched(d) {
                    Class::Vouched
                } else {
                    Class::Stranger
                }
            }
            _ => Class::Contact,
        }
    }

    /// Evaluates again the class of those of `devices` that have carried envelopes (their
    /// membership may have changed).
    pub(super) fn reclassify_carried(&mut self, devices: &[DeviceId]) {
        for d in devices {
            let o = Some(*d);
            if self.carried.holds(&o) {
                let class = self.class_for(&o);
                self.carried.set_class(&o, class);
            }
        }
    }

    /// Carries an envelope for others (the caller checked it is not ours, relaying is on
    /// and it has not expired), evicting what the quotas require first (module docs). What
    /// would have to evict a contact's envelope for a stranger's is refused before anything
    /// is evicted.
    pub(super) fn carry(
        &mut self,
        env: &Envelope,
        origin: Option<DeviceId>,
    ) -> Result<Ingested, IngestError> {
        let len = env.bytes().len() as u64;
        let tag = env.header().tag;
        let p = self.relay;
        let (tag_q, origin_q) = (p.max_tag_bytes(), p.max_origin_bytes());
        let (pool_q, pool_n) = (p.max_stranger_bytes(), p.max_stranger_envelopes());
        if len > p.max_bytes.min(tag_q) || (origin.is_some() && len > origin_q) {
            return Ok(Ingested::NotWanted);
        }
        let class = self.class_for(&origin);
        let stranger = class == Class::Stranger;
        let vouched = class == Class::Vouched;
        let (vouched_q, vouched_n) = (p.max_vouched_bytes(), p.max_vouched_envelopes());
        self.carried.set_class(&origin, class);
        let c = &self.carried;
        if stranger || vouched {
            // Room a stranger may not take: others' under the tag (it evicts only its own
            // there), contacts' and vouched devices' in all, past the pool. A vouched
            // device may take strangers' room, never a contact's or another vouched one's.
            let (contact_bytes, contact_len) = c.class_usage(Class::Contact);
            let (v_bytes, v_len) = c.class_usage(Class::Vouched);
            let (kept_bytes, kept_len, under_tag) = if stranger {
                (
                    contact_bytes + v_bytes,
                    contact_len + v_len,
                    c.tag_bytes(&tag) - c.tag_origin_bytes(&tag, &origin),
                )
            } else {
                let strangers_under_tag = c.per_tag_stranger.get(&tag).map_or(0, |s| s.bytes);
                (
                    contact_bytes,
                    contact_len,
                    c.tag_bytes(&tag) - c.tag_origin_bytes(&tag, &origin) - strangers_under_tag,
                )
            };
            let (q, n) = if stranger {
                (pool_q, pool_n)
            } else {
                (vouched_q, vouched_n)
            };
            if len > q
                || n == 0
                || under_tag + len > tag_q
                || kept_bytes + len > p.max_bytes
                || kept_len >= p.max_envelopes
            {
                return Ok(Ingested::NotWanted);
            }
        }
        if let Some(o) = origin {
            while self.carried.origin_bytes(&o) + len > origin_q {
                let Some(id) = self.carried.oldest_of_origin(&origin) else {
                    break;
                };
                self.evict_carried(&id)?;
            }
        }
        while self.carried.tag_bytes(&tag) + len > tag_q {
            let c = &self.carried;
            let id = if stranger {
                c.oldest_of_tag_origin(&tag, &origin)
            } else if vouched {
                c.oldest_stranger_of_tag(&tag)
                    .or_else(|| c.oldest_of_tag_origin(&tag, &origin))
            } else {
                c.oldest_stranger_of_tag(&tag)
                    .or_else(|| c.oldest_of_tag_origin(&tag, &origin))
                    .or_else(|| c.oldest_of_tag(&tag))
            };
            let Some(id) = id else { break };
            self.evict_carried(&id)?;
        }
        if stranger || vouched {
            let (q, n) = if stranger {
                (pool_q, pool_n)
            } else {
                (vouched_q, vouched_n)
            };
            loop {
                let (b, k) = self.carried.class_usage(class);
                if b + len <= q && k < n {
                    break;
                }
                let Some(id) = self.carried.oldest_of_largest_or_own(class, &origin) else {
                    break;
                };
                self.evict_carried(&id)?;
            }
        }
        while self.carried.bytes() + len > p.max_bytes || self.carried.len() >= p.max_envelopes {
            let c = &self.carried;
            // Strangers' room first; a contact then takes vouched devices', then contacts'.
            let id = c.oldest_of_largest(Class::Stranger).or_else(|| {
                (class == Class::Contact)
                    .then(|| {
                        c.oldest_of_largest(Class::Vouched)
                            .or_else(|| c.oldest_of_largest(Class::Contact))
                    })
                    .flatten()
            });
            let Some(id) = id else { break };
            self.evict_carried(&id)?;
        }
        if self.carried.bytes() + len > p.max_bytes
            || self.carried.len() >= p.max_envelopes
            || self.carried.tag_bytes(&tag) + len > tag_q
        {
            return Ok(Ingested::NotWanted);
        }
        let id = env.id();
        self.store.put_envelope(&tag, &id, env.bytes())?;
        let e = Entry {
            order: self.carried.next_order,
            len,
            tag,
            origin,
        };
        self.store.put(&keys::carried(&id), &e.encode())?;
        self.carried.insert(id, e, class);
        self.stats.carried += 1;
        Ok(Ingested::Carried)
    }

    /// Evicts a carried envelope: deleted, remembered as a tombstone.
    fn evict_carried(&mut self, id: &EnvelopeId) -> Result<(), StoreError> {
        let Some(e) = self.forget_carried(id)? else {
            return Ok(());
        };
        self.store.remove_envelope(&e.tag, id)?;
        self.tombstone(&e.tag, id)?;
        self.stats.carried_evicted += 1;
        Ok(())
    }

    /// Drops the record of a carried envelope (the caller deals with the envelope itself:
    /// it expired, or it is ours now). True if it was carried.
    pub(super) fn uncarry(&mut self, id: &EnvelopeId) -> Result<bool, StoreError> {
        Ok(self.forget_carried(id)?.is_some())
    }

    fn forget_carried(&mut self, id: &EnvelopeId) -> Result<Option<Entry>, StoreError> {
        let Some(e) = self.carried.remove(id) else {
            return Ok(None);
        };
        self.store.delete(&keys::carried(id))?;
        Ok(Some(e))
    }

    /// The carried envelopes' ids and the tags they are stored under (for expiry).
    pub(super) fn carried_ids(&self) -> Vec<(EnvelopeId, Tag)> {
        self.carried
            .by_order
            .values()
            .filter_map(|id| self.carried.entries.get(id).map(|e| (*id, e.tag)))
            .collect()
    }

    /// Loads the carried index at open: the records that still name a carried envelope
    /// (others are deleted), then envelopes carried before records existed (under a tag
    /// that is neither a conversation's nor the inbox's, neither a held invitation nor one
    /// this device sealed), recorded with no origin, after the others.
    pub(super) fn load_carried(&mut self) -> Result<(), StoreError> {
        let mut records = Vec::new();
        self.store.scan_prefix(keys::CARRIED, &mut |k, v| {
            records.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let now = self.clock.last().ms;
        // Held invitations and the invitations this device sealed are never carried.
        let mut held: BTreeSet<EnvelopeId> =
            self.invitations().iter().map(|h| h.envelope).collect();
        self.store.scan_keys(keys::SENT_INVITATION, &mut |k| {
            if let Some(id) = k.get(2..).and_then(EnvelopeId::from_slice) {
                held.insert(id);
            }
            true
        })?;
        let mut c = Carried::default();
        // Each origin's class, evaluated once.
        let mut classes: BTreeMap<DeviceId, Class> = BTreeMap::new();
        for (k, v) in records {
            let id = k.get(2..).and_then(EnvelopeId::from_slice);
            let live = match (id, Entry::decode(&v)) {
                (Some(id), Some(e)) => {
                    // Held under the record's tag (a record naming another tag is stale).
                    let len = self.store.envelope_len(&e.tag, &id)?.unwrap_or(0) as u64;
                    let ok = len > 0 && !self.is_own_tag(&e.tag, now) && !held.contains(&id);
                    ok.then_some((id, Entry { len, ..e }))
                }
                _ => None,
            };
            match live {
                Some((id, e)) => {
                    let class = match e.origin {
                        Some(d) => *classes.entry(d).or_insert_with(|| self.class_for(&Some(d))),
                        None => Class::Contact,
                    };
                    c.insert(id, e, class)
                }
                None => self.store.delete(&k)?,
            }
        }
        for (tag, _) in self.store.tags() {
            if self.is_own_tag(&tag, now) {
                continue;
            }
            let mut ids = Vec::new();
            self.store.for_each_id(&tag, &[0; 32], &mut |id| {
                ids.push(*id);
                true
            })?;
            for id in ids {
                if c.entries.contains_key(&id) || held.contains(&id) {
                    continue;
                }
                let len = self.store.envelope_len(&tag, &id)?.unwrap_or(0) as u64;
                if len == 0 {
                    continue;
                }
                let e = Entry {
                    order: c.next_order,
                    len,
                    tag,
                    origin: None,
                };
                self.store.put(&keys::carried(&id), &e.encode())?;
                c.insert(id, e, Class::Contact);
            }
        }
        self.carried = c;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_odd_ones_are_refused() {
        for origin in [None, Some(DeviceId([7; 32]))] {
            let e = Entry {
                order: 42,
                len: 1234,
                tag: Tag([3; 16]),
                origin,
            };
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
        let mut bad = Entry {
            order: 1,
            len: 1,
            tag: Tag([0; 16]),
            origin: None,
        }
        .encode();
        bad[28] = 2;
        assert_eq!(Entry::decode(&bad), None);
        assert_eq!(Entry::decode(&bad[..60]), None);
    }

    #[test]
    fn the_index_counts_per_tag_and_origin_and_finds_the_oldest() {
        let mut c = Carried::default();
        let (t1, t2) = (Tag([1; 16]), Tag([2; 16]));
        let o = DeviceId([9; 32]);
        for (i, (tag, origin)) in [(t1, Some(o)), (t2, None), (t1, None), (t2, Some(o))]
            .into_iter()
            .enumerate()
        {
            let order = c.next_order;
            let e = Entry {
                order,
                len: 10 * (i as u64 + 1),
                tag,
                origin,
            };
            c.insert(EnvelopeId([i as u8; 32]), e, Class::Contact);
        }
        assert_eq!((c.bytes(), c.len()), (100, 4));
        assert_eq!((c.tag_bytes(&t1), c.tag_bytes(&t2)), (40, 60));
        assert_eq!(c.origin_bytes(&o), 50);
        assert_eq!(c.tag_origin_bytes(&t2, &Some(o)), 40);
        let id = |n: u8| Some(EnvelopeId([n; 32]));
        // Origins `o` and none hold 50 bytes each: `o` has the oldest envelope.
        assert_eq!(c.oldest_of_largest(Class::Contact), id(0));
        assert_eq!(c.oldest_of_largest(Class::Stranger), None);
        assert_eq!(c.oldest_of_tag_origin(&t2, &Some(o)), id(3), "o's own");
        assert_eq!(c.oldest_of_tag_origin(&t1, &Some(DeviceId([8; 32]))), None);
        assert_eq!(c.oldest_of_tag(&t1), id(0), "t1's oldest");
        c.remove(&EnvelopeId([0; 32]));
        assert_eq!(c.oldest_of_origin(&Some(o)), id(3));
        assert_eq!(
            c.oldest_of_largest(Class::Contact),
            id(1),
            "none holds more now"
        );
        assert_eq!(
            (c.bytes(), c.tag_bytes(&t1), c.origin_bytes(&o)),
            (90, 30, 40)
        );
        for i in 1..4 {
            c.remove(&EnvelopeId([i; 32]));
        }
        assert!(c.per_tag.is_empty() && c.per_origin.is_empty() && c.by_order.is_empty());
        assert!(c.by_size.iter().all(|s| s.is_empty()) && c.per_tag_origin.is_empty());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn an_origin_moves_between_classes_with_its_envelopes() {
        let mut c = Carried::default();
        let (t1, t2) = (Tag([1; 16]), Tag([2; 16]));
        let (s, k) = (DeviceId([5; 32]), DeviceId([6; 32]));
        for (i, (tag, origin, stranger)) in [
            (t1, Some(s), true),
            (t1, Some(k), false),
            (t2, Some(s), true),
            (t1, None, true),
        ]
        .into_iter()
        .enumerate()
        {
            let order = c.next_order;
            let e = Entry {
                order,
                len: 10,
                tag,
                origin,
            };
            c.insert(
                EnvelopeId([i as u8; 32]),
                e,
                if stranger {
                    Class::Stranger
                } else {
                    Class::Contact
                },
            );
        }
        let id = |n: u8| Some(EnvelopeId([n; 32]));
        // No origin is never a stranger's, whatever the caller says.
        assert_eq!(c.class_usage(Class::Stranger), (20, 2));
        assert_eq!(c.class_usage(Class::Contact), (20, 2));
        assert_eq!(c.oldest_stranger_of_tag(&t1), id(0));
        assert_eq!(c.oldest_of_largest(Class::Stranger), id(0));
        // `s` becomes a contact, `k` a stranger.
        c.set_class(&Some(s), Class::Contact);
        c.set_class(&Some(k), Class::Stranger);
        assert_eq!(c.class_usage(Class::Stranger), (10, 1));
        assert_eq!(c.class_usage(Class::Contact), (30, 3));
        assert_eq!(c.oldest_stranger_of_tag(&t1), id(1));
        assert_eq!(c.oldest_stranger_of_tag(&t2), None);
        assert_eq!(c.oldest_of_largest(Class::Stranger), id(1));
        assert_eq!(c.oldest_of_largest(Class::Contact), id(0));
        // An insert with the other class moves the origin first.
        let e = Entry {
            order: c.next_order,
            len: 10,
            tag: t2,
            origin: Some(s),
        };
        c.insert(EnvelopeId([9; 32]), e, Class::Stranger);
        assert_eq!(c.class_usage(Class::Stranger), (40, 4));
        assert_eq!(c.oldest_stranger_of_tag(&t2), id(2));
        for i in [0, 1, 2, 3, 9] {
            c.remove(&EnvelopeId([i; 32]));
        }
        assert!(c.strangers.is_empty() && c.per_tag_stranger.is_empty());
        assert!(c.by_size.iter().all(|s| s.is_empty()));
        assert_eq!(c.class_usage(Class::Stranger), (0, 0));
        assert_eq!(c.class_usage(Class::Contact), (0, 0));
    }
}
