//! Which conversation tags a link carries: the blinded tag lists of the two intros, the
//! session tags two devices reconcile, tags a member asks a relay to carry, and, between
//! relays, the sets of tags each carries for others (reconciled like envelopes, announced
//! with `Carry`).
//!
//! **Blinding** (protocol 4). Each side lists what it would reconcile — its conversations,
//! its inbox window and, unless it relays, the tags it holds envelopes under (invitations it
//! sent) — as `BLAKE3-keyed(session key, use ‖ tag)[..8]`, the key derived from both
//! transport ids and both fresh nonces, `use` naming the direction and purpose
//! ([`wire::Blinder`]). The receiver computes, for each of its own tags, the blind the peer
//! would send and looks it up in the peer's list: a match is a tag both know (a reflected
//! list matches nothing). So a peer learns only
//! whether it shares a tag it already knew; a stranger learns how many tags we listed and
//! nothing else. Cost: one keyed hash per own tag per `Intro` we send (our own state, not
//! the peer's input), then `O(ours · log theirs)` lookups per intro received; at most
//! [`wire::MAX_HELLO_TAGS`] either way.
//!
//! A relay does not list what it carries (thousands of tags, on every contact): it blinds
//! its carried tags once per link and answers an intro with the peer's blinds it carries for
//! (`Held`), then with new ones as it starts carrying them.
//!
//! Session tags = the tags both listed, plus the peer's tags a relay holds (`Held`), plus
//! (when one side relays) the tags the other
//! asked it to carry (`Ask`, in the clear: a member asks only for tags it is about to hand
//! the relay envelopes under, which the relay sees in their headers anyway), plus (relay to
//! relay) everything either carries. Both sides compute the same list from the same frames.

use std::collections::BTreeSet;

use vaarta_sync::ids::{EnvelopeId, Tag};
use vaarta_sync::recon;
use vaarta_sync::replica::keys::awaiting_prefix;
use vaarta_sync::store::{MemoryStore, Store};

use crate::link::{Link, Sent, SentTag, TagKind};
use crate::wire::{self, Frame, Hello};
use crate::{Engine, Fault, LinkId};

/// Relays reconcile the *sets of tags* they carry with the same range-based reconciliation as
/// envelopes (tags padded to 32 bytes are the items), so two relays that already know each
/// other's tags spend ~25 bytes, not a list of thousands of tags, on each new link.
#[derive(Debug)]
pub(crate) struct TagSync {
    id: u64,
    session: recon::Session,
    set: MemoryStore,
    mine: BTreeSet<Tag>,
}

/// The one "tag" under which a tag set is reconciled.
const TAG_SET: Tag = Tag([0; 16]);

/// A carried tag set as a store of items the reconciliation can range over.
fn tag_set(tags: &[Tag]) -> MemoryStore {
    let mut st = MemoryStore::new();
    for t in tags {
        let _ = st.put_envelope(&TAG_SET, &tag_item(t), b"t");
    }
    st
}

fn tag_item(t: &Tag) -> EnvelopeId {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&t.0);
    EnvelopeId(id)
}

fn item_tag(id: &EnvelopeId) -> Tag {
    let mut t = [0u8; 16];
    t.copy_from_slice(&id.0[..16]);
    Tag(t)
}

/// One entry of our intro before it is blinded: a tag, how it counts, and the value
/// blinded (the tag itself, or for `Member` and `Lag` a conversation's presence).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    pub(crate) tag: Tag,
    pub(crate) kind: TagKind,
    pub(crate) value: Tag,
}

impl Item {
    fn plain(tag: Tag) -> Self {
        Self {
            tag,
            kind: TagKind::Plain,
            value: tag,
        }
    }
}

/// The tag an enrolled device lists for an organisation whose root it pinned: anyone who
/// knows the root's id can compute it (docs/security.md, "What a stranger learns from a
/// hello"). No envelope is ever stored under it.
pub(crate) fn org_tag(org: &vaarta_sync::ids::OrgId) -> Tag {
    let mut t = [0u8; 16];
    t.copy_from_slice(&blake3::derive_key("vaarta 2026 organisation presence v1", &org.0)[..16]);
    Tag(t)
}

/// Our intro's entries with their blinds for one session (in the order given).
pub(crate) fn blind_items(key: &wire::Blinder, items: &[Item]) -> Vec<SentTag> {
    items
        .iter()
        .map(|i| match i.kind {
            TagKind::Member => SentTag {
                tag: i.tag,
                kind: i.kind,
                ours: key.member_ours(&i.value),
                theirs: key.member_theirs(&i.value),
                held_theirs: key.held_theirs(&i.value),
                lag: None,
                ahead: Some(key.lag_theirs(&i.value)),
            },
            TagKind::Lag => SentTag {
                tag: i.tag,
                kind: i.kind,
                ours: key.lag_ours(&i.value),
                theirs: key.lag_theirs(&i.value),
                held_theirs: key.held_theirs(&i.value),
                lag: Some((
                    key.member_theirs(&i.value),
                    key.lag_theirs(&i.value),
                    key.held_ours(&i.value),
                )),
                ahead: None,
            },
            TagKind::Plain | TagKind::Offer => SentTag {
                tag: i.tag,
                kind: i.kind,
                ours: key.ours(&i.value),
                theirs: key.theirs(&i.value),
                held_theirs: key.held_theirs(&i.value),
                lag: None,
                ahead: None,
            },
        })
        .collect()
}

/// Plain tags with their blinds for one session (in the order given).
#[cfg(test)]
pub(crate) fn blinded(key: &wire::Blinder, tags: &[Tag]) -> Vec<SentTag> {
    let items: Vec<Item> = tags.iter().map(|t| Item::plain(*t)).collect();
    blind_items(key, &items)
}

/// Tags two devices reconcile on a link (see the module docs), and whether the peer
/// recognised any of ours (it knew a tag of ours: it may see our device). Empty until both
/// intros are known.
pub(crate) fn session_tags(l: &Link, my_carry: &[Tag]) -> (Vec<Tag>, bool) {
    let (Some(sent), Some(r)) = (&l.sent, &l.remote) else {
        return (Vec::new(), false);
    };
    let mut t: Vec<Tag> = sent
        .tags
        .iter()
        .filter(|s| matches!(s.kind, TagKind::Plain | TagKind::Member))
        .filter(|s| r.blinds.contains(&s.theirs))
        .map(|s| s.tag)
        .collect();
    t.extend(&l.held);
    t.extend(&l.remote_held);
    let recognised = !t.is_empty();
    if sent.relay && r.relay {
        t.extend(my_carry);
        t.extend(&l.remote_carry);
    }
    if r.relay {
        t.extend(&l.asked);
    }
    if sent.relay {
        t.extend(&l.remote_asked);
    }
    t.sort();
    t.dedup();
    (t, recognised)
}

impl<S: Store> Engine<S> {
    /// What this device lists (blinded) in an intro, at most [`wire::MAX_HELLO_TAGS`]
    /// entries, in this order of precedence: each conversation's presence under its current
    /// epoch (`Member`, what members recognise), its inbox window (`Plain`), each
    /// conversation's plain tag (`Offer`, for relays to offer what they carry) and, unless
    /// it relays, the other tags it holds envelopes under (invitations it sent, `Plain`).
    /// (A relay's carried tags could be thousands on every contact: it tells each peer
    /// which of the peer's blinds it carries instead, in `Held`.)
    pub(crate) fn my_tags(&self) -> Vec<Item> {
        let mut items: Vec<Item> = Vec::new();
        let convs = self.replica.hello_presences();
        for (tag, listed, _) in &convs {
            items.extend(listed.iter().map(|p| Item {
                tag: *tag,
                kind: TagKind::Member,
                value: *p,
            }));
        }
        if self.credentials.own.is_some() {
            // Enrolled: each organisation we pinned, so its enrolled devices recognise each
            // other and show their chains (a relay then carries for a verified one in the
            // vouched share; `Replica::vouch`).
            items.extend(
                self.credentials
                    .pinned
                    .iter()
                    .map(|o| Item::plain(org_tag(o))),
            );
        }
        items.extend(
            self.replica
                .inbox_tags(self.now)
                .into_iter()
                .map(Item::plain),
        );
        // The previous epoch's presence: a member that has not seen our latest rotation
        // lists it as its current, and one whose side of a split rotated apart lists it as
        // its previous (`retag`).
        items.extend(convs.iter().filter_map(|(tag, _, previous)| {
            previous.map(|p| Item {
                tag: *tag,
                kind: TagKind::Lag,
                value: p,
            })
        }));
        items.extend(convs.iter().map(|(tag, _, _)| Item {
            tag: *tag,
            kind: TagKind::Offer,
            value: *tag,
        }));
        if !self.replica.carries() {
            // A relay answers with `Held` instead of listing what it carries.
            let own: BTreeSet<Tag> = self
                .replica
                .tags_of_interest(self.now)
                .into_iter()
                .collect();
            let room = wire::MAX_HELLO_TAGS.saturating_sub(items.len());
            items.extend(
                self.replica
                    .store()
                    .tags()
                    .into_iter()
                    .map(|(t, _)| t)
                    .filter(|t| !own.contains(t))
                    .take(room)
                    .map(Item::plain),
            );
        }
        items.truncate(wire::MAX_HELLO_TAGS);
        items
    }

    /// Tags this relay carries for others (sent only to other relays).
    pub(crate) fn my_carry(&self) -> Vec<Tag> {
        if !self.replica.carries() {
            return Vec::new();
        }
        let own: BTreeSet<Tag> = self
            .replica
            .tags_of_interest(self.now)
            .into_iter()
            .collect();
        let mut t: Vec<Tag> = self
            .replica
            .store()
            .tags()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| !own.contains(t))
            .collect();
        t.truncate(wire::MAX_CARRY_TAGS);
        t
    }

    /// Sends our intro on a link whose session key is known: our tags, blinded.
    pub(crate) fn send_intro(&mut self, link: LinkId) {
        let tags = self.my_tags();
        self.announced = tags.iter().map(|i| i.tag).collect();
        self.announced_presence = tags
            .iter()
            .filter(|i| i.kind == TagKind::Member)
            .map(|i| i.value)
            .collect();
        self.hello_day = vaarta_sync::crypto::day_of(self.now);
        let relay = self.replica.carries();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(key) = l.key else { return };
        let sent = blind_items(&key, &tags);
        let mut blinds: Vec<wire::Blind> = sent.iter().map(|s| s.ours).collect();
        blinds.sort_unstable();
        blinds.dedup();
        l.sent = Some(Sent { relay, tags: sent });
        l.frames_out
            .push_back(Frame::Intro { relay, blinds }.encode());
        self.counters.hellos_out += 1;
    }

    /// Recomputes a link's session tags; restarts reconciliation (dialer side) if they
    /// changed. Shows our device to a peer that recognised one of our tags (or that we
    /// dialled as a static peer), once per link.
    pub(crate) fn retag(&mut self, link: LinkId) {
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.remote.is_none() {
            return;
        }
        // A conversation the peer listed under our previous epoch (it has not seen our
        // latest rotation, its side of a split rotated apart, or that rotation removed it):
        // we show our device, and share the conversation only once the peer's device is
        // proven a current member; then we tell it so (`Held` with that presence) and both
        // reconcile it, which brings it the rotation.
        let mut lagging = false;
        if let (Some(sent), Some(r)) = (&l.sent, &l.remote) {
            let d = l.device();
            let mut claims: Vec<wire::Blind> = Vec::new();
            for s in &sent.tags {
                if s.ahead.is_some_and(|b| r.blinds.contains(&b)) {
                    lagging = true;
                }
                if let Some((current, previous, claim)) = s.lag
                    && (r.blinds.contains(&current) || r.blinds.contains(&previous))
                {
                    lagging = true;
                    if let Some(d) = d
                        && !l.held.contains(&s.tag)
                        && self.replica.is_member_of_tag(&s.tag, &d)
                    {
                        claims.push(claim);
                        l.held.insert(s.tag);
                    }
                }
            }
            if !claims.is_empty() {
                claims.sort_unstable();
                l.frames_out
                    .push_back(Frame::Held { blinds: claims }.encode());
            }
        }
        let (tags, recognised) = session_tags(l, &carry);
        if tags != l.tags {
            l.tags = tags;
            l.sessions.nudged = false;
            if l.outbound {
                l.sessions.resync_at = 0;
                l.sessions.initiator = None;
            }
        }
        if !l.proved && (recognised || lagging || l.static_peer) {
            self.send_proof(link);
        }
    }

    /// Our device, proven over this session.
    fn send_proof(&mut self, link: LinkId) {
        let me = Hello {
            device: self.replica.device_id(),
            name: self.config.name.clone(),
            chain: self.own_chain.clone(),
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(theirs) = l.remote_nonce else { return };
        let f = Frame::proof(
            self.replica.identity(),
            me,
            (&l.local_tid, &l.nonce),
            (&l.remote_tid, &theirs),
        );
        l.proved = true;
        l.frames_out.push_back(f.encode());
    }

    /// Tags to ask a relay to carry when its intro arrives: our conversations with own
    /// envelopes still awaiting receipts and, if we do not relay ourselves, the other tags we
    /// hold envelopes under (invitations we sent); not those it already recognised.
    pub(crate) fn tags_to_ask(&self, link: LinkId) -> Vec<Tag> {
        let Some(l) = self.links.get(&link) else {
            return Vec::new();
        };
        let mut ask: Vec<Tag> = self
            .replica
            .conversation_tags()
            .into_iter()
            .filter(|t| {
                let mut any = false;
                let _ = self
                    .replica
                    .store()
                    .scan_keys(&awaiting_prefix(t), &mut |_| {
                        any = true;
                        false
                    });
                any
            })
            .collect();
        if !self.replica.carries() {
            let own: BTreeSet<Tag> = self
                .replica
                .tags_of_interest(self.now)
                .into_iter()
                .collect();
            ask.extend(
                self.replica
                    .store()
                    .tags()
                    .into_iter()
                    .map(|(t, _)| t)
                    .filter(|t| !own.contains(t)),
            );
        }
        ask.sort();
        ask.dedup();
        ask.retain(|t| l.tags.binary_search(t).is_err() && !l.asked.contains(t));
        ask.truncate(wire::MAX_HELLO_TAGS);
        ask
    }

    /// Asks a relay on `link` to carry `tags` for us (in the clear).
    pub(crate) fn ask(&mut self, link: LinkId, tags: Vec<Tag>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let room = wire::MAX_HELLO_TAGS.saturating_sub(l.asked.len());
        let tags: Vec<Tag> = tags
            .into_iter()
            .filter(|t| !l.asked.contains(t))
            .take(room)
            .collect();
        if tags.is_empty() {
            return;
        }
        l.asked.extend(tags.iter().copied());
        l.frames_out.push_back(Frame::Ask { tags }.encode());
        self.retag(link);
    }

    /// Relays: tells the peer which of the blinds in its intro name tags we carry for
    /// others (only the ones not told yet). Our carried tags are blinded once per link.
    pub(crate) fn send_held(&mut self, link: LinkId) {
        if !self.replica.carries() {
            return;
        }
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let (Some(key), Some(r)) = (l.key, &l.remote) else {
            return;
        };
        let cache = l
            .carried_blinds
            .get_or_insert_with(|| carry.iter().map(|t| (key.theirs(t), *t)).collect());
        let mut blinds: Vec<wire::Blind> = Vec::new();
        for b in &r.blinds {
            if let Some(t) = cache.get(b)
                && l.held.insert(*t)
            {
                // Claimed with a blind only a holder of the tag can compute (not the
                // peer's own blind, which anyone could echo back).
                blinds.push(key.held_ours(t));
            }
        }
        if !blinds.is_empty() {
            blinds.sort_unstable();
            blinds.dedup();
            blinds.truncate(wire::MAX_HELLO_TAGS);
            l.frames_out.push_back(Frame::Held { blinds }.encode());
        }
    }

    /// A relay says it carries some of the tags we listed.
    pub(crate) fn on_held(&mut self, link: LinkId, blinds: Vec<wire::Blind>) {
        if let Some(l) = self.links.get_mut(&link)
            && let Some(sent) = &l.sent
        {
            let said: BTreeSet<wire::Blind> = blinds.into_iter().collect();
            for s in &sent.tags {
                if said.contains(&s.held_theirs) {
                    l.remote_held.insert(s.tag);
                }
            }
        }
        self.retag(link);
    }

    /// A member asked us to carry tags for it: counted while we relay.
    pub(crate) fn on_ask(&mut self, link: LinkId, tags: Vec<Tag>) {
        if let Some(l) = self.links.get_mut(&link) {
            for t in tags {
                if l.remote_asked.len() >= wire::MAX_CARRY_TAGS {
                    break;
                }
                l.remote_asked.insert(t);
            }
        }
        self.retag(link);
    }

    /// Our tag set changed (a new conversation): tell every peer, which restarts reconciliation.
    pub(crate) fn tags_changed(&mut self) {
        for link in self.links.ids() {
            self.send_intro(link);
            self.retag(link);
        }
    }

    /// This relay carries a new tag: tell the relays it is linked with.
    pub(crate) fn carry_changed(&mut self) {
        let carry = self.my_carry();
        let new: Vec<Tag> = carry
            .iter()
            .filter(|t| !self.announced_carry.contains(t))
            .copied()
            .collect();
        self.announced_carry = carry.into_iter().collect();
        if new.is_empty() {
            return;
        }
        // Peers that listed a tag we now carry: tell them (links whose carried blinds exist).
        for link in self
            .links
            .select(|l| l.ready() && l.carried_blinds.is_some())
        {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            let (Some(key), Some(cache)) = (l.key, l.carried_blinds.as_mut()) else {
                continue;
            };
            for t in &new {
                if cache.len() < wire::MAX_CARRY_TAGS {
                    cache.insert(key.theirs(t), *t);
                }
            }
            self.send_held(link);
            self.retag(link);
        }
        for link in self.links.select(|l| l.ready() && l.is_relay()) {
            self.send(link, Frame::Carry { tags: new.clone() });
            self.retag(link);
        }
    }

    /// A relay told us of tags it carries.
    pub(crate) fn on_carry(&mut self, link: LinkId, tags: Vec<Tag>) {
        if let Some(l) = self.links.get_mut(&link) {
            let mut all: BTreeSet<Tag> = l.remote_carry.iter().copied().collect();
            all.extend(tags);
            l.remote_carry = all.into_iter().take(wire::MAX_CARRY_TAGS).collect();
        }
        self.retag(link);
    }

    /// Dialler of a relay-to-relay link: starts reconciling carried tag sets.
    pub(crate) fn start_tag_sync(&mut self, link: LinkId, carry: &[Tag]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let set = tag_set(carry);
        if let Ok(mut session) = recon::Session::initiate(vec![TAG_SET], &set) {
            while let Some(m) = session.poll_transmit() {
                l.frames_out.push_back(
                    Frame::TagSync {
                        session: 1,
                        message: m,
                    }
                    .encode(),
                );
            }
            l.tag_sync = Some(TagSync {
                id: 1,
                session,
                set,
                mine: carry.iter().copied().collect(),
            });
        }
    }

    pub(crate) fn on_tag_sync(&mut self, link: LinkId, session: u64, message: &[u8]) {
        if !self.replica.carries() {
            return;
        }
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.is_relay() {
            return self.fault(link, Fault::TagSyncNotRelay);
        }
        let mut sync = match l.tag_sync.take() {
            Some(t) if t.id == session => t,
            _ if l.outbound => return,
            _ => TagSync {
                id: session,
                session: recon::Session::respond(vec![TAG_SET]),
                set: tag_set(&carry),
                mine: carry.iter().copied().collect(),
            },
        };
        if let Err(e) = sync.session.handle_message(&sync.set, message) {
            return self.fault(link, Fault::TagSync(e));
        }
        while let Some(m) = sync.session.poll_transmit() {
            l.frames_out.push_back(
                Frame::TagSync {
                    session,
                    message: m,
                }
                .encode(),
            );
        }
        let mut haves: Vec<Tag> = Vec::new();
        while let Some((_, id)) = sync.session.poll_have() {
            haves.push(item_tag(&id));
        }
        if !haves.is_empty() {
            l.frames_out.push_back(
                Frame::Carry {
                    tags: haves.clone(),
                }
                .encode(),
            );
        }
        // Tags both of us carry are known to the peer; the rest arrive in its `Carry`.
        let missing: BTreeSet<Tag> = haves.into_iter().collect();
        let mut known: BTreeSet<Tag> = l.remote_carry.iter().copied().collect();
        known.extend(sync.mine.iter().filter(|t| !missing.contains(t)).copied());
        l.remote_carry = known.into_iter().take(wire::MAX_CARRY_TAGS).collect();
        let done = sync.session.is_done();
        let outbound = l.outbound;
        if !done {
            l.tag_sync = Some(sync);
        }
        self.retag(link);
        if done && outbound {
            // The peer's view of the tags changes when our `Carry` arrives: reconcile again,
            // after it (frames on a link stay in order).
            self.start_recon(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LinkUp, Remote};
    use crate::wire::Blinder;
    use proptest::prelude::*;

    fn link(outbound: bool) -> Link {
        let (me, you) = if outbound { ("a", "b") } else { ("b", "a") };
        Link::new(
            LinkUp {
                link: crate::LinkId(1),
                peer: you.into(),
                outbound,
                dialed: None,
                local_tid: me.as_bytes().to_vec(),
                remote_tid: you.as_bytes().to_vec(),
            },
            0,
            1,
            [u8::from(outbound); 32],
            false,
        )
    }

    fn tags(v: &[u8]) -> Vec<Tag> {
        let mut t: Vec<Tag> = v.iter().map(|x| Tag([*x; 16])).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Both ends of one link after their intros (and asks) crossed: (a's view, b's view).
    fn exchange(
        a: (&[u8], bool, &[u8]),
        b: (&[u8], bool, &[u8]),
        carry: (&[Tag], &[Tag]),
    ) -> ((Vec<Tag>, bool), (Vec<Tag>, bool)) {
        let ka = Blinder::new(b"a", &[1; 32], b"b", &[0; 32]).unwrap();
        let kb = Blinder::new(b"b", &[0; 32], b"a", &[1; 32]).unwrap();
        let (mut la, mut lb) = (link(true), link(false));
        for (l, key, other, (mine, relay, ask), (_, their_relay, their_ask), theirs) in [
            (&mut la, &ka, &kb, a, b, b.0),
            (&mut lb, &kb, &ka, b, a, a.0),
        ] {
            l.sent = Some(Sent {
                relay,
                tags: blinded(key, &tags(mine)),
            });
            // What the peer listed: its own blinds of its tags.
            l.remote = Some(Remote {
                relay: their_relay,
                blinds: tags(theirs).iter().map(|t| other.ours(t)).collect(),
            });
            l.asked = tags(ask).into_iter().collect();
            l.remote_asked = tags(their_ask).into_iter().collect();
        }
        la.remote_carry = carry.1.to_vec();
        lb.remote_carry = carry.0.to_vec();
        (session_tags(&la, carry.0), session_tags(&lb, carry.1))
    }

    #[test]
    fn members_reconcile_only_the_tags_both_know() {
        let (a, b) = exchange(
            (&[1, 2, 3], false, &[]),
            (&[2, 3, 4], false, &[]),
            (&[], &[]),
        );
        assert_eq!(a, (tags(&[2, 3]), true));
        assert_eq!(a, b, "both sides compute the same list");
        let (a, _) = exchange((&[1], false, &[]), (&[4], false, &[]), (&[], &[]));
        assert_eq!(a, (vec![], false), "strangers share nothing");
    }

    #[test]
    fn a_relay_reconciles_what_it_knows_and_what_it_was_asked_to_carry() {
        // Node a (member) asks relay b to carry 5; b's listed 2 it already carries.
        let (a, b) = exchange((&[1, 2, 5], false, &[5]), (&[2, 9], true, &[]), (&[], &[]));
        assert_eq!(a.0, tags(&[2, 5]));
        assert_eq!(a.0, b.0);
        // An ask to a peer that does not relay counts for nothing.
        let (a, b) = exchange((&[1], false, &[1]), (&[9], false, &[]), (&[], &[]));
        assert_eq!((a.0.len(), b.0.len()), (0, 0));
    }

    #[test]
    fn two_relays_reconcile_everything_either_carries() {
        let (ca, cb) = (tags(&[5]), tags(&[6, 1]));
        let (a, b) = exchange((&[1, 5], true, &[]), (&[2, 6], true, &[]), (&ca, &cb));
        assert_eq!(a.0, tags(&[1, 5, 6]));
        assert_eq!(a.0, b.0);
        assert!(!a.1, "carried tags are not recognition");
    }

    proptest! {
        #[test]
        fn both_ends_always_agree(
            a in proptest::collection::vec(0u8..40, 0..20),
            b in proptest::collection::vec(0u8..40, 0..20),
            ask_a in proptest::collection::vec(0u8..40, 0..5),
            ask_b in proptest::collection::vec(0u8..40, 0..5),
            relay_a: bool,
            relay_b: bool,
        ) {
            let (va, vb) = exchange((&a, relay_a, &ask_a), (&b, relay_b, &ask_b), (&[], &[]));
            prop_assert_eq!(&va, &vb);
            // Exactly the tags both listed, plus asks the other side carries.
            let mut want: Vec<Tag> = tags(&a).into_iter().filter(|t| tags(&b).contains(t)).collect();
            if relay_b { want.extend(tags(&ask_a)); }
            if relay_a { want.extend(tags(&ask_b)); }
            want.sort();
            want.dedup();
            prop_assert_eq!(va.0, want);
        }
    }

    #[test]
    fn tag_items_round_trip() {
        let t = Tag([0xab; 16]);
        assert_eq!(item_tag(&tag_item(&t)), t);
        let set = tag_set(&[t]);
        assert!(set.contains(&TAG_SET, &tag_item(&t)).unwrap());
        assert!(!set.contains(&TAG_SET, &tag_item(&Tag([1; 16]))).unwrap());
    }
}
