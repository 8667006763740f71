//! Which conversation tags a link carries: the hello's tags, the session tags two devices
//! reconcile, and, between relays, the sets of tags each carries for others (reconciled like
//! envelopes, announced with `Carry`).

use std::collections::BTreeSet;

use vaarta_sync::ids::{EnvelopeId, Tag};
use vaarta_sync::recon;
use vaarta_sync::replica;
use vaarta_sync::store::{MemoryStore, Store};

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

/// Tags two devices reconcile: what both are willing to hold. Members hold their own
/// conversations; a relay holds anything, so two relays reconcile everything either carries
/// (`*_carry`, exchanged in `Carry` frames), and a relay and a member reconcile the member's.
pub fn session_tags(a: &Hello, a_carry: &[Tag], b: &Hello, b_carry: &[Tag]) -> Vec<Tag> {
    // What each device wants: its conversations and its inbox window (derived, not sent).
    let want = |h: &Hello| -> Vec<Tag> {
        let mut t = h.tags.clone();
        t.extend(replica::inbox_window(&h.device, h.day));
        t
    };
    let (wa, wb) = (want(a), want(b));
    let mut t: Vec<Tag> = match (a.relay, b.relay) {
        (true, true) => wa
            .iter()
            .chain(wb.iter())
            .chain(a_carry)
            .chain(b_carry)
            .copied()
            .collect(),
        (true, false) => wb,
        (false, true) => wa,
        (false, false) => {
            let bs: BTreeSet<&Tag> = wb.iter().collect();
            wa.iter().filter(|t| bs.contains(t)).copied().collect()
        }
    };
    t.sort();
    t.dedup();
    t
}

impl<S: Store> Engine<S> {
    pub(crate) fn my_hello(&self) -> Hello {
        let mut tags = self.replica.conversation_tags();
        tags.truncate(wire::MAX_HELLO_TAGS);
        Hello {
            device: self.replica.device_id(),
            name: self.config.name.clone(),
            // A relay whose quota is used up stops offering to carry.
            relay: self.replica.carries(),
            day: vaarta_sync::crypto::day_of(self.now),
            tags,
        }
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

    pub(crate) fn send_hello(&mut self, link: LinkId) {
        let hello = self.my_hello();
        self.announced = hello.tags.iter().copied().collect();
        self.hello_day = hello.day;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let f = Frame::hello(self.replica.identity(), hello, &l.local_tid, &l.remote_tid);
        self.counters.hellos_out += 1;
        self.send(link, f);
    }

    /// Recomputes a link's session tags; restarts reconciliation (dialer side) if they changed.
    pub(crate) fn retag(&mut self, link: LinkId) {
        let mine = self.my_hello();
        let carry = self.my_carry();
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(r) = &l.remote else { return };
        let tags = session_tags(&mine, &carry, r, &l.remote_carry);
        if tags != l.tags {
            l.tags = tags;
            l.sessions.nudged = false;
            if l.outbound {
                l.sessions.resync_at = 0;
                l.sessions.initiator = None;
            }
        }
    }

    /// Our tag set changed (a new conversation): tell every peer, which restarts reconciliation.
    pub(crate) fn tags_changed(&mut self) {
        for link in self.links.ids() {
            self.send_hello(link);
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
    use vaarta_sync::ids::DeviceId;

    fn hello(device: u8, relay: bool, tags: &[u8]) -> Hello {
        Hello {
            device: DeviceId([device; 32]),
            name: String::new(),
            relay,
            day: 20_000,
            tags: tags.iter().map(|t| Tag([*t; 16])).collect(),
        }
    }

    fn inbox(h: &Hello) -> Vec<Tag> {
        replica::inbox_window(&h.device, h.day)
    }

    #[test]
    fn members_reconcile_only_what_both_hold() {
        let (a, b) = (hello(1, false, &[1, 2, 3]), hello(2, false, &[2, 3, 4]));
        let t = session_tags(&a, &[], &b, &[]);
        assert_eq!(t, vec![Tag([2; 16]), Tag([3; 16])]);
        // Symmetric, so both sides compute the same list.
        assert_eq!(t, session_tags(&b, &[], &a, &[]));
    }

    #[test]
    fn a_relay_reconciles_the_members_tags_and_inbox() {
        let (r, m) = (hello(1, true, &[9]), hello(2, false, &[2]));
        let t = session_tags(&r, &[Tag([7; 16])], &m, &[]);
        let mut want = vec![Tag([2; 16])];
        want.extend(inbox(&m));
        want.sort();
        assert_eq!(t, want);
        assert_eq!(t, session_tags(&m, &[], &r, &[Tag([7; 16])]));
    }

    #[test]
    fn two_relays_reconcile_everything_either_carries() {
        let (a, b) = (hello(1, true, &[1]), hello(2, true, &[2]));
        let t = session_tags(&a, &[Tag([5; 16])], &b, &[Tag([6; 16]), Tag([1; 16])]);
        for x in [1u8, 2, 5, 6] {
            assert!(t.contains(&Tag([x; 16])), "{x}");
        }
        assert!(t.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    #[test]
    fn tag_items_round_trip() {
        let t = Tag([0xab; 16]);
        assert_eq!(item_tag(&tag_item(&t)), t);
        let set = tag_set(&[t]);
        assert!(set.contains(&tag_item(&t)).unwrap());
        assert!(!set.contains(&tag_item(&Tag([1; 16]))).unwrap());
    }
}
