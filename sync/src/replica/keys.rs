//! Every key of the store's metadata space, in one table.
//!
//! The replica and the node engine share one [`Store`](crate::store::Store); its metadata
//! space is a flat ordered map, and each kind of record lives under its own prefix:
//!
//! | prefix | key (‖ = concatenation) | meaning | value |
//! |--------|-------------------------|---------|-------|
//! | `c/` | `c/` ‖ conversation id | a conversation this device holds | secret (32) ‖ creator device id (32) |
//! | `k/` | `k/` ‖ conversation id ‖ epoch id | an epoch key this device holds | the key (32) |
//! | `e/` | `e/` ‖ conversation id ‖ page u32 BE ‖ epoch id | an epoch whose envelopes wrote into the page | empty |
//! | `p/` | `p/` ‖ conversation id ‖ page u32 BE | a page document, saved whole, with the envelope ids of its own messages | `vpo1` ‖ own messages ‖ [`Page::save`](crate::page::Page::save) bytes (before issue 11: the bare save bytes) |
//! | `l/` | `l/` ‖ seq u64 BE | the journal: an envelope applied to a page since the page was last saved (seq: application order, one counter for the replica) | conversation id (16) ‖ page u32 BE ‖ envelope id (32) |
//! | `j/` | `j/` ‖ conversation id ‖ page u32 BE ‖ seq u64 BE | before issue 11: the journal, one key range per page; moved to `l/` at open, never written | envelope id (32) |
//! | `o/` | `o/` ‖ conversation id ‖ envelope id | a control (membership) envelope of the conversation, replayed at open | empty |
//! | `q/` | `q/` ‖ envelope id | a pending envelope (retried at open) | conversation id (16) |
//! | `m/` | `m/` ‖ conversation id ‖ page u32 BE ‖ message key (UTF-8) | before issue 11: a message written on this device (now in its saved page, `p/`); read when a page saved without the list loads, deleted when it is saved again, never written | envelope id (32) that carried it |
//! | `u/` | `u/` ‖ conversation id ‖ envelope id | an envelope held unreadable (its epoch key not granted here), read again when the key arrives | epoch id (4) ‖ order u64 BE |
//! | `t/` | `t/` ‖ tag ‖ order u64 BE | a tombstone, in the order it was made (for the bounds) | envelope id (32) |
//! | `v/` | `v/` ‖ conversation id ‖ device id | a device found equivocating in one of the conversation's pages (B3) | empty |
//! | `x/` | `x/` ‖ conversation id ‖ epoch id | the key of a voided epoch was shared with the members ([`Replica::maintain`](crate::replica::Replica::maintain)) | empty |
//! | `h` | `h` (the whole key) | a bound above every timestamp the clock issued, rewritten once per [`CLOCK_LEASE_MS`](crate::replica::CLOCK_LEASE_MS) at most, so the clock never runs backwards | packed [`Hlc`](crate::hlc::Hlc) u64 BE |
//! | `d/` | `d/` ‖ envelope id ‖ device id | engine: a delivery receipt for an own envelope from one member device (empty), or a note that is not one: `refused`, `deferred`, `sent` (receipts.rs) | empty or a note |
//! | `w/` | `w/` ‖ tag ‖ envelope id | engine: an own message envelope still awaiting receipts | sealed-at ms u64 BE ‖ members still to confirm u32 BE |
//! | `i/` | `i/` ‖ envelope id | an invitation from a stranger, held until accepted or declined | order u64 BE ‖ received ms u64 BE ‖ inviter device id (32) ‖ conversation id (16) |
//! | `a/` | `a/` ‖ device id | a device the user accepted: its invitations are taken | empty |
//! | `r/` | `r/` ‖ envelope id | an envelope carried for others (relay quotas and eviction) | order u64 BE ‖ length u32 BE ‖ tag (16) ‖ origin flag (1) ‖ origin device id or zeros (32) |
//! | `n/` | `n/` ‖ author device id ‖ envelope id | a receipt owed to the author: the envelope was applied here and its author's own push did not bring it (it waited, or came by another device); the engine sends it in a `Receipt` frame and deletes it (bounded per author and in all: `owed`) | order u64 BE |
//! | `s/` | `s/` ‖ envelope id | an invitation this device sealed for another device (under its inbox tag): ours, never carried; deleted once the invitee joined, after 30 days, or past 4,096 (`sent`) | conversation id (16) ‖ invitee (32) ‖ sealed-at ms u64 BE ‖ tag (16) (before: conversation id alone) |
//! | `z/` | `z/` ‖ device id | a device its organisation revoked (`revoked`, [`Replica::revoke_devices`](crate::replica::Replica::revoke_devices)): what it signed and this replica does not hold is refused; an admin removes it | empty |
//! | `b/` | `b/` ‖ conversation id | this device sends no read receipts in the conversation (`receipts`: on unless this is present) | empty |
//! | `y/` | `y/` ‖ device id | a device the user verified by its safety number or QR code (`verified`) | verified-at ms u64 BE |
//!
//! Sizes: conversation id and tag 16 bytes, envelope and device id 32, epoch id 4.
//! No prefix is a prefix of another (a unit test checks it), so a scan of one kind never
//! visits another.
//!
//! Envelopes are not metadata: they live in the store's envelope space, keyed by (tag, id).
//! There an envelope with *empty bytes* is a **tombstone** (refused, or carried and expired):
//! held for reconciliation, never sent. Envelopes stored under a tag that is not one of ours
//! are **carried** for others.

use crate::ids::{ConversationId, DeviceId, EnvelopeId, EpochId, Tag};
#[cfg(test)]
use crate::page::MessageId;

/// `c/`: conversations held.
pub const CONVERSATION: &[u8] = b"c/";
/// `k/`: epoch keys held.
pub const EPOCH_KEY: &[u8] = b"k/";
/// `e/`: epochs that wrote into each page.
pub const PAGE_EPOCH: &[u8] = b"e/";
/// `p/`: saved pages.
pub const PAGE: &[u8] = b"p/";
/// `l/`: the journal, in application order.
pub const JOURNAL: &[u8] = b"l/";
/// `j/`: page journals before issue 11 (moved to `l/` at open).
pub const LEGACY_JOURNAL: &[u8] = b"j/";
/// `o/`: control envelopes per conversation.
pub const CONTROL: &[u8] = b"o/";
/// `q/`: pending envelopes.
pub const PENDING: &[u8] = b"q/";
/// `m/`: messages written on this device, before issue 11 (read, then deleted).
pub const OWN_MESSAGE: &[u8] = b"m/";
/// `u/`: envelopes held unreadable.
pub const UNREADABLE: &[u8] = b"u/";
/// `t/`: tombstones in the order they were made.
pub const TOMBSTONE: &[u8] = b"t/";
/// `v/`: devices found equivocating.
pub const EQUIVOCATOR: &[u8] = b"v/";
/// `x/`: keys of voided epochs shared.
pub const VOIDED_SHARED: &[u8] = b"x/";
/// `h`: the clock (a single key).
pub const HLC: &[u8] = b"h";
/// `d/`: delivery receipts (node engine).
pub const DELIVERY: &[u8] = b"d/";
/// `w/`: own envelopes awaiting receipts (node engine).
pub const AWAITING: &[u8] = b"w/";
/// `i/`: invitations from strangers, held.
pub const HELD_INVITATION: &[u8] = b"i/";
/// `a/`: devices the user accepted.
pub const ACCEPTED_DEVICE: &[u8] = b"a/";
/// `r/`: envelopes carried for others.
pub const CARRIED: &[u8] = b"r/";
/// `n/`: receipts owed to the authors of envelopes applied here that their own push did not bring.
pub const OWED_RECEIPT: &[u8] = b"n/";
/// `s/`: invitations this device sealed for others.
pub const SENT_INVITATION: &[u8] = b"s/";
/// `g/`: devices vouched for by a pinned organisation, with the expiry of their chain.
pub const VOUCHED: &[u8] = b"g/";
/// `z/`: devices revoked by their organisation.
pub const REVOKED: &[u8] = b"z/";
/// `b/` ‖ conversation id → empty: this device sends no read receipts there (a local
/// setting, `receipts`).
pub const READ_OFF: &[u8] = b"b/";
/// `y/` ‖ device id → verified-at ms: a device the user verified (`verified`).
pub const VERIFIED: &[u8] = b"y/";

/// Every prefix above (the table's rows, in order).
pub const ALL: &[&[u8]] = &[
    CONVERSATION,
    EPOCH_KEY,
    PAGE_EPOCH,
    PAGE,
    JOURNAL,
    LEGACY_JOURNAL,
    CONTROL,
    PENDING,
    OWN_MESSAGE,
    UNREADABLE,
    TOMBSTONE,
    EQUIVOCATOR,
    VOIDED_SHARED,
    HLC,
    DELIVERY,
    AWAITING,
    HELD_INVITATION,
    ACCEPTED_DEVICE,
    CARRIED,
    OWED_RECEIPT,
    SENT_INVITATION,
    VOUCHED,
    REVOKED,
    READ_OFF,
    VERIFIED,
];

pub(crate) fn verified(d: &DeviceId) -> Vec<u8> {
    [VERIFIED, &d.0[..]].concat()
}

pub(crate) fn read_off(c: &ConversationId) -> Vec<u8> {
    [READ_OFF, &c.0[..]].concat()
}

pub(crate) fn conv(c: &ConversationId) -> Vec<u8> {
    [CONVERSATION, &c.0].concat()
}

pub(crate) fn epoch_prefix(c: &ConversationId) -> Vec<u8> {
    [EPOCH_KEY, &c.0].concat()
}

pub(crate) fn epoch_key(c: &ConversationId, e: &EpochId) -> Vec<u8> {
    [EPOCH_KEY, &c.0, &e.0].concat()
}

pub(crate) fn page_epoch_prefix(c: &ConversationId) -> Vec<u8> {
    [PAGE_EPOCH, &c.0].concat()
}

pub(crate) fn page_epoch(c: &ConversationId, page: u32, e: &EpochId) -> Vec<u8> {
    [PAGE_EPOCH, &c.0, &page.to_be_bytes(), &e.0].concat()
}

/// Saved pages of one conversation.
pub(crate) fn pages_prefix(c: &ConversationId) -> Vec<u8> {
    [PAGE, &c.0].concat()
}

pub(crate) fn page(c: &ConversationId, page: u32) -> Vec<u8> {
    [PAGE, &c.0, &page.to_be_bytes()].concat()
}

/// `l/` ‖ seq: one journal entry.
pub(crate) fn journal(seq: u64) -> Vec<u8> {
    [JOURNAL, &seq.to_be_bytes()].concat()
}

/// The value under [`journal`]: conversation ‖ page ‖ envelope id.
pub(crate) fn journal_value(c: &ConversationId, page: u32, env: &EnvelopeId) -> Vec<u8> {
    [&c.0[..], &page.to_be_bytes(), &env.0].concat()
}

/// Reads a journal entry: (seq, conversation, page, envelope), or `None` if it is not one.
pub(crate) fn parse_journal(k: &[u8], v: &[u8]) -> Option<(u64, ConversationId, u32, EnvelopeId)> {
    let seq = u64::from_be_bytes(k.strip_prefix(JOURNAL)?.try_into().ok()?);
    if v.len() != 52 {
        return None;
    }
    let c = ConversationId(v[..16].try_into().ok()?);
    let page = u32::from_be_bytes(v[16..20].try_into().ok()?);
    let e = EnvelopeId(v[20..].try_into().ok()?);
    Some((seq, c, page, e))
}

/// Reads a journal entry written before issue 11 (`j/` ‖ conversation ‖ page ‖ seq →
/// envelope id): (seq, conversation, page, envelope), or `None` if it is not one.
pub(crate) fn parse_legacy_journal(
    k: &[u8],
    v: &[u8],
) -> Option<(u64, ConversationId, u32, EnvelopeId)> {
    let k = k.strip_prefix(LEGACY_JOURNAL)?;
    if k.len() != 28 {
        return None;
    }
    let c = ConversationId(k[..16].try_into().ok()?);
    let page = u32::from_be_bytes(k[16..20].try_into().ok()?);
    let seq = u64::from_be_bytes(k[20..28].try_into().ok()?);
    Some((seq, c, page, EnvelopeId::from_slice(v)?))
}

/// A journal key of before issue 11 (for the tests that make such a store).
#[cfg(test)]
pub(crate) fn legacy_journal(c: &ConversationId, page: u32, seq: u64) -> Vec<u8> {
    [
        LEGACY_JOURNAL,
        &c.0,
        &page.to_be_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

pub(crate) fn control_prefix(c: &ConversationId) -> Vec<u8> {
    [CONTROL, &c.0].concat()
}

pub(crate) fn control(c: &ConversationId, env: &EnvelopeId) -> Vec<u8> {
    [CONTROL, &c.0, &env.0].concat()
}

pub(crate) fn equivocators_prefix(c: &ConversationId) -> Vec<u8> {
    [EQUIVOCATOR, &c.0].concat()
}

pub(crate) fn equivocator(c: &ConversationId, d: &DeviceId) -> Vec<u8> {
    [EQUIVOCATOR, &c.0, &d.0].concat()
}

pub(crate) fn voided_shared(c: &ConversationId, e: &EpochId) -> Vec<u8> {
    [VOIDED_SHARED, &c.0, &e.0].concat()
}

pub(crate) fn pending(env: &EnvelopeId) -> Vec<u8> {
    [PENDING, &env.0].concat()
}

pub(crate) fn unreadable(c: &ConversationId, env: &EnvelopeId) -> Vec<u8> {
    [UNREADABLE, &c.0, &env.0].concat()
}

pub(crate) fn held_invitation(e: &EnvelopeId) -> Vec<u8> {
    [HELD_INVITATION, &e.0].concat()
}

pub(crate) fn carried(e: &EnvelopeId) -> Vec<u8> {
    [CARRIED, &e.0].concat()
}

pub(crate) fn sent_invitation(e: &EnvelopeId) -> Vec<u8> {
    [SENT_INVITATION, &e.0].concat()
}

pub(crate) fn revoked(d: &DeviceId) -> Vec<u8> {
    [REVOKED, &d.0].concat()
}

pub(crate) fn vouched(d: &DeviceId) -> Vec<u8> {
    [VOUCHED, &d.0].concat()
}

pub(crate) fn accepted_device(d: &DeviceId) -> Vec<u8> {
    [ACCEPTED_DEVICE, &d.0].concat()
}

/// `n/` ‖ author ‖ envelope id.
pub(crate) fn owed_receipt(author: &DeviceId, e: &EnvelopeId) -> Vec<u8> {
    [OWED_RECEIPT, &author.0, &e.0].concat()
}

pub(crate) fn tombstone(tag: &Tag, order: u64) -> Vec<u8> {
    [TOMBSTONE, &tag.0, &order.to_be_bytes()].concat()
}

/// `m/` records of one page (before issue 11).
pub(crate) fn own_messages_prefix(c: &ConversationId, page: u32) -> Vec<u8> {
    [OWN_MESSAGE, &c.0, &page.to_be_bytes()].concat()
}

/// An `m/` record's key (before issue 11: written no more; the tests make such stores).
#[cfg(test)]
pub(crate) fn own_message(c: &ConversationId, msg: &MessageId) -> Vec<u8> {
    [
        OWN_MESSAGE,
        &c.0,
        &msg.page.to_be_bytes(),
        msg.key.as_bytes(),
    ]
    .concat()
}

/// Delivery receipts of one envelope: `d/` ‖ envelope id.
pub fn delivery_prefix(e: &EnvelopeId) -> Vec<u8> {
    [DELIVERY, &e.0].concat()
}

/// The receipt of envelope `e` from device `d`: `d/` ‖ envelope id ‖ device id.
pub fn delivery_key(e: &EnvelopeId, d: &DeviceId) -> Vec<u8> {
    [delivery_prefix(e).as_slice(), &d.0].concat()
}

/// Own message envelopes of one tag not yet confirmed by every member: `w/` ‖ tag.
pub fn awaiting_prefix(tag: &Tag) -> Vec<u8> {
    [AWAITING, &tag.0].concat()
}

/// `w/` ‖ tag ‖ envelope id.
pub fn awaiting_key(tag: &Tag, e: &EnvelopeId) -> Vec<u8> {
    [awaiting_prefix(tag).as_slice(), &e.0].concat()
}

/// The value under [`awaiting_key`]: sealed-at (ms) ‖ members still to confirm, both
/// big-endian.
pub fn awaiting_value(sealed_at: u64, left: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&sealed_at.to_be_bytes());
    v[8..].copy_from_slice(&left.to_be_bytes());
    v
}

/// Reads an [`awaiting_value`]: (sealed-at, left), or `None` if it is too short.
pub fn parse_awaiting(v: &[u8]) -> Option<(u64, u32)> {
    let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let left = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
    Some((at, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prefix_is_a_prefix_of_another() {
        assert_eq!(ALL.len(), 25);
        for (i, a) in ALL.iter().enumerate() {
            assert!(!a.is_empty());
            for (j, b) in ALL.iter().enumerate() {
                if i != j {
                    assert!(
                        !b.starts_with(a),
                        "{:?} is a prefix of {:?}",
                        String::from_utf8_lossy(a),
                        String::from_utf8_lossy(b)
                    );
                }
            }
        }
    }

    #[test]
    fn every_key_starts_with_its_prefix_and_has_its_layout() {
        let c = ConversationId([1; 16]);
        let e = EpochId([2; 4]);
        let env = EnvelopeId([3; 32]);
        let m = MessageId {
            page: 5,
            key: "k".into(),
        };
        let cases: [(&[u8], Vec<u8>, usize); 21] = [
            (READ_OFF, read_off(&c), 18),
            (VERIFIED, verified(&DeviceId([6; 32])), 34),
            (OWED_RECEIPT, owed_receipt(&DeviceId([6; 32]), &env), 66),
            (VOIDED_SHARED, voided_shared(&c, &e), 22),
            (EQUIVOCATOR, equivocator(&c, &DeviceId([6; 32])), 50),
            (UNREADABLE, unreadable(&c, &env), 50),
            (TOMBSTONE, tombstone(&Tag([4; 16]), 9), 26),
            (CONVERSATION, conv(&c), 18),
            (EPOCH_KEY, epoch_prefix(&c), 18),
            (EPOCH_KEY, epoch_key(&c, &e), 22),
            (PAGE_EPOCH, page_epoch_prefix(&c), 18),
            (PAGE_EPOCH, page_epoch(&c, 5, &e), 26),
            (PAGE, pages_prefix(&c), 18),
            (PAGE, page(&c, 5), 22),
            (JOURNAL, journal(7), 10),
            (LEGACY_JOURNAL, legacy_journal(&c, 5, 7), 30),
            (OWN_MESSAGE, own_messages_prefix(&c, 5), 22),
            (CONTROL, control(&c, &env), 50),
            (PENDING, pending(&env), 34),
            (OWN_MESSAGE, own_message(&c, &m), 23),
            (CONTROL, control_prefix(&c), 18),
        ];
        for (p, k, len) in cases {
            assert!(k.starts_with(p));
            assert_eq!(k.len(), len, "{k:?}");
        }
        assert_eq!(&page(&c, 5)[18..], &5u32.to_be_bytes());
        assert_eq!(&journal(7)[2..], &7u64.to_be_bytes());
        assert_eq!(
            parse_journal(&journal(7), &journal_value(&c, 5, &env)),
            Some((7, c, 5, env))
        );
        assert_eq!(parse_journal(&journal(7), &[0; 51]), None);
        assert_eq!(
            parse_legacy_journal(&legacy_journal(&c, 5, 7), &env.0),
            Some((7, c, 5, env))
        );
        assert!(own_message(&c, &m).starts_with(&own_messages_prefix(&c, 5)));
    }

    #[test]
    fn engine_receipt_keys_keep_their_layout() {
        let e = EnvelopeId([3; 32]);
        let d = DeviceId([4; 32]);
        let t = Tag([5; 16]);
        let mut want = b"d/".to_vec();
        want.extend([3; 32]);
        assert_eq!(delivery_prefix(&e), want);
        want.extend([4; 32]);
        assert_eq!(delivery_key(&e, &d), want);
        let mut want = b"w/".to_vec();
        want.extend([5; 16]);
        assert_eq!(awaiting_prefix(&t), want);
        want.extend([3; 32]);
        assert_eq!(awaiting_key(&t, &e), want);
        let v = awaiting_value(0x0102_0304_0506_0708, 0x0a0b_0c0d);
        assert_eq!(v, [1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(
            parse_awaiting(&v),
            Some((0x0102_0304_0506_0708, 0x0a0b_0c0d))
        );
        assert_eq!(parse_awaiting(&v[..11]), None);
        // Longer values read their first 12 bytes, as the engine's copy does.
        assert_eq!(
            parse_awaiting(&[v.as_slice(), &[9]].concat()),
            Some((0x0102_0304_0506_0708, 0x0a0b_0c0d))
        );
    }
}
