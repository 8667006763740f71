//! Envelopes carried for others (issue 9 item 14): a relay holds envelopes under tags that
//! are not its own, within quotas, and makes room by evicting the oldest.
//!
//! Every carried envelope has a record `r/` (arrival order, length, tag, and the device
//! that pushed it to us, when a peer did), loaded at open into an index by arrival order,
//! by tag and by origin. Three quotas hold, checked in this order before an envelope is
//! stored; each makes room by evicting, so that what is new is carried:
//! 1. **per origin** ([`RelayPolicy::max_origin_bytes`], 1/4 of the relay quota by
//!    default): what one peer device pushed; past it, that peer's own oldest goes;
//! 2. **per tag** ([`RelayPolicy::max_tag_bytes`], 1/8): one conversation's envelopes;
//!    past it, the oldest this peer pushed under the tag goes, or if it pushed none there,
//!    the tag's oldest (so a stranger who pushes junk under a tag it knows displaces its own
//!    junk, not what honest peers asked us to carry there);
//! 3. **in all** ([`RelayPolicy::max_bytes`] and [`RelayPolicy::max_envelopes`]): the
//!    oldest envelope of the origin that holds the most (with or without an expiry), so a
//!    peer at its quota evicts its own before anyone else's.
//!
//! An evicted envelope becomes a tombstone (bounded like every tombstone), so reconciliation
//! does not fetch it straight back. Envelopes of the device's own conversations (and its
//! inbox, and held invitations) are never carried, so never evicted. An envelope too large
//! for a quota is not carried at all. Each envelope is evicted at most once, so the work of
//! eviction is bounded by the envelopes carried.

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

/// What a relay carries and how much of each quota it uses.
#[derive(Debug, Default)]
pub(super) struct Carried {
    entries: BTreeMap<EnvelopeId, Entry>,
    by_order: BTreeMap<u64, EnvelopeId>,
    per_tag: BTreeMap<Tag, Usage>,
    per_origin: BTreeMap<Origin, Usage>,
    /// Orders of each origin's envelopes under each tag.
    per_tag_origin: BTreeMap<(Tag, Origin), BTreeSet<u64>>,
    /// Origins by (bytes, oldest first): the last is the largest (the oldest among equals).
    by_size: BTreeSet<(u64, std::cmp::Reverse<u64>, Origin)>,
    bytes: u64,
    next_order: u64,
}

impl Carried {
    fn size_key(&self, o: &Origin) -> Option<(u64, std::cmp::Reverse<u64>, Origin)> {
        let u = self.per_origin.get(o)?;
        let first = *u.orders.iter().next()?;
        Some((u.bytes, std::cmp::Reverse(first), *o))
    }

    fn insert(&mut self, id: EnvelopeId, e: Entry) {
        self.next_order = self.next_order.max(e.order + 1);
        self.by_order.insert(e.order, id);
        let t = self.per_tag.entry(e.tag).or_default();
        t.bytes += e.len;
        t.orders.insert(e.order);
        if let Some(k) = self.size_key(&e.origin) {
            self.by_size.remove(&k);
        }
        let u = self.per_origin.entry(e.origin).or_default();
        u.bytes += e.len;
        u.orders.insert(e.order);
        if let Some(k) = self.size_key(&e.origin) {
            self.by_size.insert(k);
        }
        self.per_tag_origin
            .entry((e.tag, e.origin))
            .or_default()
            .insert(e.order);
        self.bytes += e.len;
        self.entries.insert(id, e);
    }

    fn remove(&mut self, id: &EnvelopeId) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        self.by_order.remove(&e.order);
        if let Some(t) = self.per_tag.get_mut(&e.tag) {
            t.bytes -= e.len;
            t.orders.remove(&e.order);
            if t.orders.is_empty() {
                self.per_tag.remove(&e.tag);
            }
        }
        if let Some(k) = self.size_key(&e.origin) {
            self.by_size.remove(&k);
        }
        if let Some(u) = self.per_origin.get_mut(&e.origin) {
            u.bytes -= e.len;
            u.orders.remove(&e.order);
            if u.orders.is_empty() {
                self.per_origin.remove(&e.origin);
            }
        }
        if let Some(k) = self.size_key(&e.origin) {
            self.by_size.insert(k);
        }
        if let Some(s) = self.per_tag_origin.get_mut(&(e.tag, e.origin)) {
            s.remove(&e.order);
            if s.is_empty() {
                self.per_tag_origin.remove(&(e.tag, e.origin));
            }
        }
        self.bytes -= e.len;
        Some(e)
    }

    fn first_of(&self, orders: Option<&BTreeSet<u64>>) -> Option<EnvelopeId> {
        let o = orders?.iter().next()?;
        self.by_order.get(o).copied()
    }

    /// The oldest envelope `origin` pushed.
    fn oldest_of_origin(&self, origin: &Origin) -> Option<EnvelopeId> {
        self.first_of(self.per_origin.get(origin).map(|u| &u.orders))
    }

    /// The oldest envelope under `tag` that `origin` pushed, or else the tag's oldest.
    fn oldest_of_tag(&self, tag: &Tag, origin: &Origin) -> Option<EnvelopeId> {
        self.first_of(self.per_tag_origin.get(&(*tag, *origin)))
            .or_else(|| self.first_of(self.per_tag.get(tag).map(|u| &u.orders)))
    }

    /// The oldest envelope of the origin that holds the most bytes (of those that hold
    /// the most, the one with the oldest envelope).
    fn oldest_of_largest(&self) -> Option<EnvelopeId> {
        let (_, _, o) = self.by_size.iter().next_back()?;
        self.oldest_of_origin(o)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn tag_bytes(&self, t: &Tag) -> u64 {
        self.per_tag.get(t).map_or(0, |u| u.bytes)
    }

    fn origin_bytes(&self, d: &DeviceId) -> u64 {
        self.per_origin.get(&Some(*d)).map_or(0, |u| u.bytes)
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
}

impl<S: Store> Replica<S> {
    /// How much this device carries for others now.
    pub fn carried_usage(&self) -> CarriedUsage {
        CarriedUsage {
            bytes: self.carried.bytes(),
            envelopes: self.carried.len(),
            tags: self.carried.per_tag.len(),
            origins: self.carried.per_origin.len(),
        }
    }

    /// Carried bytes under `tag`, and those pushed by `origin`.
    pub fn carried_bytes_of(&self, tag: &Tag, origin: &DeviceId) -> (u64, u64) {
        (
            self.carried.tag_bytes(tag),
            self.carried.origin_bytes(origin),
        )
    }

    /// Carries an envelope for others (the caller checked it is not ours, relaying is on
    /// and it has not expired), evicting what the quotas require first (module docs).
    pub(super) fn carry(
        &mut self,
        env: &Envelope,
        origin: Option<DeviceId>,
    ) -> Result<Ingested, IngestError> {
        let len = env.bytes().len() as u64;
        let tag = env.header().tag;
        let p = self.relay;
        let (tag_q, origin_q) = (p.max_tag_bytes(), p.max_origin_bytes());
        if len > p.max_bytes.min(tag_q) || (origin.is_some() && len > origin_q) {
            return Ok(Ingested::NotWanted);
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
            let Some(id) = self.carried.oldest_of_tag(&tag, &origin) else {
                break;
            };
            self.evict_carried(&id)?;
        }
        while self.carried.bytes() + len > p.max_bytes || self.carried.len() >= p.max_envelopes {
            let Some(id) = self.carried.oldest_of_largest() else {
                break;
            };
            self.evict_carried(&id)?;
        }
        if self.carried.len() >= p.max_envelopes {
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
        self.carried.insert(id, e);
        self.stats.carried += 1;
        Ok(Ingested::Carried)
    }

    /// Evicts a carried envelope: deleted, remembered as a tombstone.
    fn evict_carried(&mut self, id: &EnvelopeId) -> Result<(), StoreError> {
        let Some(e) = self.forget_carried(id)? else {
            return Ok(());
        };
        self.store.remove_envelope(id)?;
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

    /// The carried envelopes' ids (for expiry).
    pub(super) fn carried_ids(&self) -> Vec<EnvelopeId> {
        self.carried.by_order.values().copied().collect()
    }

    /// Loads the carried index at open: the records that still name a carried envelope
    /// (others are deleted), then envelopes carried before records existed (under a tag
    /// that is neither a conversation's nor the inbox's, not a held invitation), recorded
    /// with no origin, after the others.
    pub(super) fn load_carried(&mut self) -> Result<(), StoreError> {
        let mut records = Vec::new();
        self.store.scan_prefix(keys::CARRIED, &mut |k, v| {
            records.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let now = self.clock.last().ms;
        let held: BTreeSet<EnvelopeId> = self.invitations().iter().map(|h| h.envelope).collect();
        let mut c = Carried::default();
        for (k, v) in records {
            let id = k.get(2..).and_then(EnvelopeId::from_slice);
            let live = match (id, Entry::decode(&v)) {
                (Some(id), Some(e)) => {
                    let len = self.store.envelope_len(&id)?.unwrap_or(0) as u64;
                    let ok = len > 0
                        && !self.is_own_tag(&e.tag, now)
                        && !held.contains(&id)
                        && self.store.tag_of(&id)? == Some(e.tag);
                    ok.then_some((id, Entry { len, ..e }))
                }
                _ => None,
            };
            match live {
                Some((id, e)) => c.insert(id, e),
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
                let len = self.store.envelope_len(&id)?.unwrap_or(0) as u64;
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
                c.insert(id, e);
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
            c.insert(
                EnvelopeId([i as u8; 32]),
                Entry {
                    order,
                    len: 10 * (i as u64 + 1),
                    tag,
                    origin,
                },
            );
        }
        assert_eq!((c.bytes(), c.len()), (100, 4));
        assert_eq!((c.tag_bytes(&t1), c.tag_bytes(&t2)), (40, 60));
        assert_eq!(c.origin_bytes(&o), 50);
        let id = |n: u8| Some(EnvelopeId([n; 32]));
        // Origins `o` and none hold 50 bytes each: `o` has the oldest envelope.
        assert_eq!(c.oldest_of_largest(), id(0));
        assert_eq!(c.oldest_of_tag(&t2, &Some(o)), id(3), "o's own under t2");
        assert_eq!(
            c.oldest_of_tag(&t1, &Some(DeviceId([8; 32]))),
            id(0),
            "t1's oldest"
        );
        c.remove(&EnvelopeId([0; 32]));
        assert_eq!(c.oldest_of_origin(&Some(o)), id(3));
        assert_eq!(c.oldest_of_largest(), id(1), "none holds more now");
        assert_eq!(
            (c.bytes(), c.tag_bytes(&t1), c.origin_bytes(&o)),
            (90, 30, 40)
        );
        for i in 1..4 {
            c.remove(&EnvelopeId([i; 32]));
        }
        assert!(c.per_tag.is_empty() && c.per_origin.is_empty() && c.by_order.is_empty());
        assert!(c.by_size.is_empty() && c.per_tag_origin.is_empty());
        assert_eq!(c.bytes(), 0);
    }
}
