//! Delivery receipts: which member devices hold and read which of our envelopes, durably.
//!
//! A receipt is recorded only from what the member's device says of itself: when it
//! acknowledges a push as stored (it flushed the envelope, and can read it, before
//! acknowledging), or when it sends a `Receipt` for an envelope of ours it read without
//! having acknowledged it to us as stored (it had acknowledged it as *deferred* — held but
//! not readable yet: pending, unreadable, an invitation held, carried — or it came by
//! another device, a relay, or the acknowledgement was lost with a link). Reconciliation
//! never records one: it tells that the peer *holds* an envelope, not that it can read it.
//! Our own envelopes stay on an *awaiting* list, per conversation, with the count of
//! members still to confirm; the list is bounded by [`MAX_AWAITING_RECEIPTS`].
//!
//! When a link drops with pushes unacknowledged, each is noted `sent` for the link's device
//! (no receipt). After the next reconciliation with that device, those it holds (not found
//! lacking) are pushed again: the acknowledgement of the duplicate says stored, deferred or
//! refused, as for any push. So a lost acknowledgement is recovered without a false
//! "delivered".
//!
//! The receiving side: every envelope applied here that its author's own push did not bring
//! (and have acknowledged as stored) is listed as owed to its author
//! ([`vaarta_sync::replica::Replica::owed_receipts`], bounded per author and in all); the
//! owed ids go in `Receipt` frames to the author's own authenticated device when a link to
//! it is ready (at its proof, and after each flush), and are forgotten once queued. A frame
//! lost with a dropped link costs its author a receipt (the message shows as sent), never a
//! message.
//!
//! What a peer can do with `Receipt`: ids are looked up only within the link's budget
//! ([`crate::config::RECEIPT_IDS_BURST`], refilled at [`crate::config::RECEIPT_IDS_PER_S`]);
//! past it they are counted and dropped unread. A receipt counts only from the proven
//! device of the link, for that device, if it is a current member of the envelope's
//! conversation, for our own envelope still awaiting receipts and not already confirmed by
//! it. A stranger (no proven device), a removed member or an id that is not ours changes
//! nothing; the same receipt sent again changes nothing.
//!
//! Store keys (in the replica's store, in its one table of prefixes,
//! [`vaarta_sync::replica::keys`]):
//! * `d/` ‖ envelope id ‖ device id → empty: a receipt; `refused`: the device acknowledged
//!   the push without storing it (no receipt); `deferred`: the device holds it but could
//!   not read it yet (no receipt until its `Receipt`); `sent`: pushed, and the link dropped
//!   before the acknowledgement (pushed again after the next reconciliation);
//! * `w/` ‖ tag ‖ envelope id → sealed-at ms (u64 BE) ‖ members still to confirm (u32 BE);
//! * `n/` ‖ author ‖ envelope id: a receipt this device owes (written by the replica).

use std::collections::BTreeSet;

use vaarta_sync::ids::{DeviceId, EnvelopeId, Tag};
use vaarta_sync::replica::Sealed;
use vaarta_sync::replica::keys::{
    awaiting_key, awaiting_prefix, awaiting_value, delivery_key, delivery_prefix, parse_awaiting,
};
use vaarta_sync::store::{Store, StoreError};

use crate::config::MAX_AWAITING_RECEIPTS;

/// The value of a `d/` key that records a refusal: the device acknowledged the push but
/// did not store it (no receipt). A receipt is the empty value.
const REFUSED: &[u8] = b"refused";
/// The value of a `d/` key that records a deferral: the device holds the envelope but could
/// not read it yet (no receipt until it says so in a `Receipt`).
const DEFERRED: &[u8] = b"deferred";
/// The value of a `d/` key for a push in flight when its link dropped: its acknowledgement
/// never came (no receipt; pushed again after the next reconciliation that finds it held).
const SENT: &[u8] = b"sent";
use crate::ack::Disposition;
use crate::wire::{Frame, MAX_IDS_PER_FRAME};
use crate::{Engine, Event, LinkId};

/// What to do after a finished reconciliation, given the awaiting list (sealed-at, id, the
/// peer device's note), when the session started and what it found lacking: the envelopes
/// to push again (noted `sent`: their acknowledgement was lost with a link, and the peer
/// holds them; at most [`MAX_AWAITING_RECEIPTS`]), and those given up (the older half, when
/// the list is full, so that a member that never confirms does not pin it; their receipts
/// can still come with acknowledgements). Nothing here records a receipt: holding is not
/// reading.
pub(crate) fn plan_recovery(
    mut awaiting: Vec<(u64, EnvelopeId, Option<Vec<u8>>)>,
    started: u64,
    lacks: &BTreeSet<EnvelopeId>,
) -> (Vec<EnvelopeId>, Vec<EnvelopeId>) {
    awaiting.sort_unstable();
    let give_up = if awaiting.len() >= MAX_AWAITING_RECEIPTS {
        MAX_AWAITING_RECEIPTS / 2
    } else {
        0
    };
    let mut again = Vec::new();
    let mut dropped = Vec::new();
    for (i, (sealed_at, e, note)) in awaiting.into_iter().enumerate() {
        if sealed_at < started
            && !lacks.contains(&e)
            && note.as_deref() == Some(SENT)
            && again.len() < MAX_AWAITING_RECEIPTS
        {
            again.push(e);
        }
        if i < give_up {
            dropped.push(e);
        }
    }
    (again, dropped)
}

impl<S: Store> Engine<S> {
    fn is_member_of_tag(&self, tag: &Tag, device: &DeviceId) -> bool {
        self.replica
            .conversation_of_tag(tag)
            .and_then(|c| self.replica.conversation(&c))
            .is_some_and(|c| c.membership.state().is_member(device))
    }

    /// Lists a message envelope we just sealed as awaiting receipts from the other members.
    pub(crate) fn await_receipts(&mut self, s: &Sealed, now_ms: u64) -> Result<(), StoreError> {
        let (id, tag) = (s.id, s.tag);
        let me = self.replica.device_id();
        let others = self
            .replica
            .conversation(&s.conversation)
            .map(|c| {
                let st = c.membership.state();
                st.members.len() - usize::from(st.is_member(&me))
            })
            .unwrap_or(0);
        if others > 0 {
            let left = u32::try_from(others).unwrap_or(u32::MAX);
            self.replica
                .store_mut()
                .put(&awaiting_key(&tag, &id), &awaiting_value(now_ms, left))?;
        }
        Ok(())
    }

    /// `device` acknowledged our push of `e`, and says what became of it: a receipt if it
    /// stored it and is a member of its conversation; else a refusal or a deferral is noted,
    /// which receipt recovery does not override (a refused envelope leaves a tombstone, and a
    /// deferred one is stored, so reconciliation counts both as held).
    pub(crate) fn acknowledged(
        &mut self,
        e: EnvelopeId,
        tag: Tag,
        device: DeviceId,
        d: Disposition,
    ) {
        if !matches!(self.replica.store().contains(&tag, &e), Ok(true))
            || !self.is_member_of_tag(&tag, &device)
        {
            return;
        }
        let note = match d {
            Disposition::Stored => return self.record_delivery(e, tag, device),
            Disposition::Refused => REFUSED,
            Disposition::Deferred => DEFERRED,
        };
        let key = delivery_key(&e, &device);
        match self.replica.store().get(&key) {
            // A receipt stands.
            Ok(Some(v)) if v.is_empty() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let _ = self.replica.store_mut().put(&key, note);
    }

    /// The link to `device` dropped with these pushes unacknowledged: each of our own
    /// envelopes among them still awaiting receipts, with nothing noted for the device, is
    /// noted `sent` (pushed again after the next reconciliation that finds it held).
    pub(crate) fn unacknowledged(&mut self, device: DeviceId, ids: &[(EnvelopeId, Tag)]) {
        for (e, tag) in ids {
            if !matches!(self.replica.store().get(&awaiting_key(tag, e)), Ok(Some(_)))
                || !self.is_member_of_tag(tag, &device)
            {
                continue;
            }
            let key = delivery_key(e, &device);
            if matches!(self.replica.store().get(&key), Ok(None)) {
                let _ = self.replica.store_mut().put(&key, SENT);
            }
        }
    }

    /// The peer on `link` read these envelopes of ours without having acknowledged them to
    /// us as stored. Recorded only for a peer whose device is proven on this link and is a
    /// current member of the envelope's conversation, and only for our own envelopes still
    /// awaiting receipts (a `w/` entry): anything else (a stranger, a removed member, an id
    /// we did not author, one unknown or no longer awaited, one confirmed already) is
    /// ignored, not a fault. Ids past the link's budget are counted and dropped unread; each
    /// id within it costs a few store reads.
    pub(crate) fn on_receipt(&mut self, link: LinkId, ids: &[EnvelopeId], now_ms: u64) {
        let n = ids.len() as u64;
        self.counters.receipt_ids_in += n;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(device) = l.device() else {
            self.counters.receipt_ids_ignored += n;
            return;
        };
        let allowed = l.receipt_budget.take(n, now_ms) as usize;
        self.counters.receipt_ids_ignored += n - allowed as u64;
        // Receipts name no tag: an envelope of ours awaiting receipts has a `w/` entry
        // under its conversation's tag, which a member's link reconciles (a session tag).
        let tags = l.tags.clone();
        for e in &ids[..allowed] {
            self.counters.receipt_ids_checked += 1;
            let awaited = tags
                .iter()
                .find(|t| matches!(self.replica.store().get(&awaiting_key(t, e)), Ok(Some(_))));
            if let Some(tag) = awaited.copied()
                && self.is_member_of_tag(&tag, &device)
            {
                self.record_delivery(*e, tag, device);
            }
        }
    }

    /// Queues `Receipt` frames for what this device owes the authenticated devices of its
    /// links (`only`: that link alone), and forgets them as sent.
    pub(crate) fn send_owed_receipts(&mut self, only: Option<LinkId>) {
        if self.replica.owed_receipt_count() == 0 {
            return;
        }
        let links: Vec<(LinkId, DeviceId)> = self
            .links
            .iter()
            .filter(|(id, l)| only.is_none_or(|o| o == **id) && !l.closing)
            .filter_map(|(id, l)| Some((*id, l.device()?)))
            .collect();
        for (link, device) in links {
            loop {
                let ids = self.replica.owed_receipts(&device, MAX_IDS_PER_FRAME);
                if ids.is_empty() {
                    break;
                }
                if self.replica.receipts_sent(&device, &ids).is_err() {
                    break;
                }
                self.counters.receipt_ids_out += ids.len() as u64;
                self.send(link, Frame::Receipt { ids });
            }
        }
    }

    /// Records that `device` holds and read `e` (it said so: an acknowledgement as stored,
    /// or a `Receipt`), over any note (refused, deferred, sent); once only.
    fn record_delivery(&mut self, e: EnvelopeId, tag: Tag, device: DeviceId) {
        let key = delivery_key(&e, &device);
        match self.replica.store().get(&key) {
            Ok(Some(v)) if v.is_empty() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let _ = self.replica.store_mut().put(&key, &[]);
        self.event(Event::Delivered {
            envelope: e,
            device,
        });
        // One member fewer to hear from.
        let k = awaiting_key(&tag, &e);
        if let Ok(Some(v)) = self.replica.store().get(&k) {
            let _ = match parse_awaiting(&v) {
                Some((at, left)) if left > 1 => self
                    .replica
                    .store_mut()
                    .put(&k, &awaiting_value(at, left - 1)),
                _ => self.replica.store_mut().delete(&k),
            };
        }
    }

    /// A reconciliation with `link` ended: our own messages noted `sent` for the peer (their
    /// acknowledgement was lost with a link) that it was not found lacking are pushed again,
    /// so that its acknowledgement says what became of them (those found lacking are pushed
    /// by the reconciliation itself). Holding is not reading: nothing is recorded delivered
    /// here. A full awaiting list gives up its older half ([`plan_recovery`]).
    pub(crate) fn recover_receipts(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(device) = l.device() else {
            return;
        };
        let Some((lacks, started)) = l.sessions.take_lacking() else {
            return;
        };
        for tag in l.tags.clone() {
            if !self.is_member_of_tag(&tag, &device) {
                continue;
            }
            let prefix = awaiting_prefix(&tag);
            let mut awaiting: Vec<(u64, EnvelopeId)> = Vec::new();
            let _ = self.replica.store().scan_prefix(&prefix, &mut |k, v| {
                let id = k
                    .get(prefix.len()..)
                    .and_then(|x| <[u8; 32]>::try_from(x).ok());
                if let (Some(id), Some((at, _))) = (id, parse_awaiting(v)) {
                    awaiting.push((at, EnvelopeId(id)));
                }
                awaiting.len() < MAX_AWAITING_RECEIPTS
            });
            let noted: Vec<(u64, EnvelopeId, Option<Vec<u8>>)> = awaiting
                .into_iter()
                .map(|(at, e)| {
                    let note = self
                        .replica
                        .store()
                        .get(&delivery_key(&e, &device))
                        .ok()
                        .flatten();
                    (at, e, note)
                })
                .collect();
            let (again, dropped) = plan_recovery(noted, started, &lacks);
            for e in again {
                self.enqueue(link, tag, e);
            }
            for e in dropped {
                let _ = self.replica.store_mut().delete(&awaiting_key(&tag, &e));
            }
        }
    }

    /// Member devices that hold envelope `e` (receipts recorded).
    pub(crate) fn delivered_to(&self, e: &EnvelopeId) -> Result<Vec<DeviceId>, StoreError> {
        let mut delivered = Vec::new();
        self.replica
            .store()
            .scan_prefix(&delivery_prefix(e), &mut |k, v| {
                if v.is_empty()
                    && let Some(d) = DeviceId::from_slice(&k[k.len() - 32..])
                {
                    delivered.push(d);
                }
                true
            })?;
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EnvelopeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        EnvelopeId(b)
    }

    #[test]
    fn recovery_pushes_again_only_what_was_in_flight_and_is_held() {
        let sent = || Some(SENT.to_vec());
        let awaiting = vec![
            (30, id(3), sent()),
            (10, id(1), sent()),
            (20, id(2), sent()),
            (40, id(4), sent()),
            (5, id(5), None),
            (6, id(6), Some(DEFERRED.to_vec())),
            (7, id(7), Some(Vec::new())),
        ];
        let lacks: BTreeSet<EnvelopeId> = [id(2)].into();
        let (again, dropped) = plan_recovery(awaiting, 35, &lacks);
        // 4 was sealed after the session started; 2 was lacking (the reconciliation pushes
        // it); 5, 6 and 7 were not in flight at a drop: nothing is recorded for any of them.
        assert_eq!(again, vec![id(1), id(3)]);
        assert!(dropped.is_empty(), "list not full: nothing given up");
    }

    #[test]
    fn a_full_list_gives_up_its_older_half() {
        let awaiting: Vec<(u64, EnvelopeId, Option<Vec<u8>>)> = (0..MAX_AWAITING_RECEIPTS as u32)
            .map(|i| (u64::from(i), id(i), None))
            .collect();
        let (again, dropped) = plan_recovery(awaiting, 0, &BTreeSet::new());
        assert!(again.is_empty());
        assert_eq!(dropped.len(), MAX_AWAITING_RECEIPTS / 2);
        assert_eq!(dropped[0], id(0), "oldest first");
    }
}
