//! Every bound a peer could otherwise push past, in one place.
//!
//! The numbers start from the threat model's suggested default caps (docs/security.md,
//! "Bound everything a peer can grow") unless a comment says otherwise.

/// Largest envelope accepted from anyone (a change ≤ 256 KiB, plus headers: docs/security.md).
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024 + 1024;
/// Largest decompressed batch of Automerge changes in one envelope.
pub const MAX_CHANGES_BYTES: usize = 256 * 1024;
/// Automerge changes in one envelope.
pub const MAX_CHANGES_PER_ENVELOPE: usize = 1024;
/// Operations in one Automerge change (a 1,000-message batch needs ~4,000).
pub const MAX_OPS_PER_CHANGE: usize = 8192;
/// A message body, in bytes of UTF-8 (about 21,000 Devanagari characters).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A reaction (one emoji, possibly with modifiers).
pub const MAX_REACTION_BYTES: usize = 64;
/// A conversation title or a member's display name.
pub const MAX_NAME_BYTES: usize = 256;
/// Membership operations per conversation (each is rare: an add, a removal, a rename).
/// Only operations of current or past members in a valid causal position count; past this
/// bound only current admins may add operations, up to twice it (docs/security.md,
/// "Control plane against members and ex-members").
pub const MAX_CONTROL_OPS: usize = 4096;
/// Membership operations one signer that is not an admin may have in a conversation (a
/// member writes a profile now and then, and leaves once).
pub const MAX_CONTROL_OPS_PER_MEMBER: usize = 256;
/// Changes a removed device may still have taken per page past its pin (what it wrote before
/// it learnt of its removal; a device writes about one change per envelope). Taken alike by
/// every replica, shown by none (docs/security.md, "Control plane against members and
/// ex-members"). A guess: a removal reaches the removed device within a few dozen of its
/// envelopes.
pub const MAX_LATE_CHANGES_PER_PAGE: u64 = 64;
/// How long an invitation this device sealed is kept for its invitee (from when it was
/// sealed, by the local clock). The invitee looks for invitations under its inbox tags of
/// the last week ([`crate::crypto::inbox_tag`]; the engine's inbox window), so past that only
/// a relay that carries it can still bring it; 30 days leaves room for clocks weeks off and
/// for invitees long offline that a relay reaches.
pub const SENT_INVITATION_TTL_MS: u64 = 30 * 86_400_000;
/// Invitations this device sealed and keeps for their invitees; past it the oldest goes.
/// One per device named in an `Add` this device signed; a guess: 4 × a full conversation.
pub const MAX_SENT_INVITATIONS: usize = 4096;
/// Parents of one membership operation.
pub const MAX_OP_PARENTS: usize = 32;
/// Members of one conversation (WhatsApp allows 1,024, Signal 1,000: docs/performance.md).
pub const MAX_MEMBERS: usize = 1024;
/// Epoch keys one conversation may accumulate.
pub const MAX_EPOCHS: usize = 1024;
/// Messages per page (bounded Automerge document). Applying one change costs time in
/// proportion to the page (measured with `examples/apply_cost.rs`: 49 µs at 100 messages,
/// 65 µs at 250, 139 µs at 1,000), so pages stay small; appends are then flat in history.
pub const PAGE_CAPACITY: u32 = 256;
/// Decrypted, verified envelopes waiting for a dependency, per replica. Past this the
/// oldest are dropped *and deleted from the store* so that reconciliation fetches them again
/// once their dependencies are here (nothing acknowledged is lost: members never discard
/// their own conversations' envelopes, so a copy remains with the sender).
pub const MAX_PENDING: usize = 10_000;
/// Ids of envelopes rejected per tag, kept so reconciliation does not fetch them again.
/// Past it (or past [`MAX_TOMBSTONES`]) the oldest tombstone of the tag is forgotten: the
/// worst that follows is that the bad envelope is fetched and refused once more.
pub const MAX_TOMBSTONES_PER_TAG: usize = 10_000;
/// Tombstones per replica, every tag together.
pub const MAX_TOMBSTONES: usize = 100_000;
/// Envelopes parked *unverified* — waiting for an epoch key this device has never heard of,
/// so nobody has checked who sealed them — per conversation, and their bytes. Anyone who
/// knows a tag can make these, so they are bounded tightly; past the bound the oldest
/// of the conversation goes (deleted, not refused: reconciliation fetches it again).
pub const MAX_UNVERIFIED_PER_TAG: usize = 256;
pub const MAX_UNVERIFIED_BYTES_PER_TAG: u64 = 8 * 1024 * 1024;
/// Unverified parked bytes per replica, every conversation together.
pub const MAX_UNVERIFIED_BYTES: u64 = 64 * 1024 * 1024;
/// Envelopes held unreadable (their epoch is known, its key not granted to this device) per
/// conversation, and per replica. They are kept to pass on to the other members and to be
/// read if the key arrives later; past the bound the oldest go (deleted, fetched again later).
pub const MAX_UNREADABLE_PER_TAG: usize = 4096;
pub const MAX_UNREADABLE: usize = 65_536;
/// Receipts this device owes other members, every author together: envelopes applied here
/// that their author's own push did not bring (they waited, or came by another device),
/// each to be confirmed to its author's device the next time it is linked. Past the bound
/// the oldest of the author owed the most is dropped (its author misses one receipt, never
/// a message). A guess: a few days of one busy conversation.
pub const MAX_OWED_RECEIPTS: usize = 4096;
/// Receipts owed to one author at most (past it, that author's own oldest is dropped): one
/// author's flood cannot crowd out the others' receipts.
pub const MAX_OWED_RECEIPTS_PER_AUTHOR: usize = 1024;
/// Page documents kept in memory per conversation (others are saved and reloaded on demand).
pub const MAX_LOADED_PAGES: usize = 4;
/// Page documents kept in memory, every conversation together (least recently used out
/// first; pages with staged ops stay until sealed). Measured: a loaded page costs about
/// 175 KB of RSS (corpus bench, 100,000 messages in 100 conversations: +17.5 MB for the
/// newest page of each, docs/performance.md), so this bounds pages to about 180 MB instead of
/// `MAX_CONVERSATIONS` × `MAX_LOADED_PAGES` (16,384 pages, ~2.8 GB). It stays above the
/// 1,000 conversations of issue 11's corpus: below the number of conversations written in
/// turn, every message would save one page whole and load another.
pub const MAX_LOADED_PAGES_TOTAL: usize = 1024;
/// Of [`MAX_LOADED_PAGES_TOTAL`], pages only read since they were loaded (least recently used
/// out first). Dropping one costs a reload when it is next read, never a save, so this can be
/// small: 64 pages (~11 MB) hold the newest page of the conversations a user moves between,
/// and scrolling one conversation back needs at most [`MAX_LOADED_PAGES`]. Without it,
/// reading the newest 50 of each of 1,000 conversations after a restart kept 1,000 pages
/// (+175 MB of RSS, issue 11).
pub const MAX_READ_PAGES_TOTAL: usize = 64;
/// Invitations from devices that are not contacts (share no conversation with us and were
/// never accepted) held until the user accepts or declines them; past it the oldest is
/// dropped (and remembered as a tombstone). A guess: more than a screenful of strangers is
/// a flood, not an introduction.
pub const MAX_HELD_INVITATIONS: usize = 64;
/// Held invitations per inviter device: one stranger cannot fill the inbox (past it, its own
/// oldest goes). A guess: nobody honest invites a stranger to more than a few at once.
pub const MAX_HELD_PER_INVITER: usize = 4;
/// Held invitations per conversation (from different signers: the first to arrive does not
/// decide who invited).
pub const MAX_HELD_PER_CONVERSATION: usize = 4;
/// Devices the user accepted (invitations from them are taken like a member's).
pub const MAX_ACCEPTED_DEVICES: usize = 4096;
/// Devices the user verified by safety number (`replica/verified.rs`; 42 bytes each): a user
/// action, refused past the bound rather than forgetting one.
pub const MAX_VERIFIED_DEVICES: usize = 4096;
/// Events waiting to be polled before the oldest are dropped.
pub const MAX_QUEUED_EVENTS: usize = 4096;
/// Bytes a relay carries for conversations it is not in, by default (a phone can spare
/// 256 MiB; a control-room laptop raises it).
pub const DEFAULT_RELAY_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// One tag (conversation) holds at most 1/8 of the relay quota: a relay serves at least
/// eight conversations, and one busy or flooded conversation cannot take it all.
pub const RELAY_TAG_SHARE: u64 = 8;
/// What one peer device pushed holds at most 1/4 of the relay quota: one flooding peer
/// evicts only its own envelopes past that (a guess: a relay serves a few teams at once).
pub const RELAY_ORIGIN_SHARE: u64 = 4;
/// What all strangers (peers that are not contacts, each a free key or transport id)
/// pushed holds at most 1/2 of the relay quota, bytes and envelopes: however many sybils
/// push, contacts keep at least the other half (a guess: half is still room to carry for
/// the strangers a relay exists to serve).
pub const RELAY_STRANGER_SHARE: u64 = 2;
/// Devices an organisation pinned here vouches for (their credential chain verified on a
/// link), when they are not contacts, hold at most 1/4 of the relay quota together, bytes
/// and envelopes, which strangers never evict: sybils cost nothing, credentials cost an
/// enrolment by a registrar (a guess: a quarter still leaves contacts at least a quarter
/// and strangers their half).
pub const RELAY_VOUCHED_SHARE: u64 = 4;
/// Devices remembered as vouched for (an entry is 40 bytes; the one expiring first goes).
pub const MAX_VOUCHED_DEVICES: usize = 4_096;
/// Carried envelopes held at most (their index costs about 250 bytes each in memory, so
/// 16 MiB at most; 4 KiB on average at the default byte quota).
pub const MAX_CARRIED_ENVELOPES: usize = 65_536;
