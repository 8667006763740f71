//! Frames exchanged on a link. The transport delimits frames (libp2p: a varint length before
//! each; the simulator: one message per frame); a frame is a type byte and a payload.
//!
//! ```text
//! Hello = 1 version:u8 nonce:[32]          (first, both ways, at link up: fresh randomness)
//! Intro = 10 relay:bool count:varint blinds:[8]*   (after the peer's Hello, and whenever
//!         the sender's tags change; strictly increasing: its conversations, inbox window
//!         and, unless it relays, the tags it holds envelopes under)
//!         blind(tag) = BLAKE3-keyed(session key, use ‖ tag)[..8], use = 0 (intro from
//!                       the lesser side), 1 (intro from the greater), 2, 3 (held, likewise)
//!         session key = BLAKE3-derive("vaarta 2026 tag blinding v4",
//!                       lesser (tid, nonce) pair ‖ greater pair)   (each len-prefixed)
//! Proof = 11 device:[32] name:str proof:[64] chain:bytes   (only to a peer that recognised
//!         one of our tags, or to a static peer we dialled)
//!         proof = Ed25519(device, "vaarta 2026 proof v6" ‖ sender tid ‖ receiver tid ‖
//!                 sender nonce ‖ receiver nonce ‖ device ‖ name ‖ chain)
//!         chain: the device's organisation credentials (`vaarta_sync::org::Chain`
//!         encoding, at most `MAX_CHAIN_BYTES`), or empty for a device enrolled nowhere
//! Ask   = 12 count:varint tags:[16]*      (member to relay: carry these for me; in the clear,
//!         only tags the sender is about to hand the relay envelopes under)
//! Held  = 13 count:varint blinds:[8]*    (relay to peer: I hold envelopes for others under
//!         these tags you listed, each as its held blind (use 2/3); strictly increasing)
//! Recon = 2 session:varint tags:[4] message      (tags: digest of the session's tag list)
//! Push  = 3 lane:u8 seq:varint envelope
//!         (lane: the envelope's precedence, 0 routine .. 3 FLASH; each lane numbers its
//!         pushes 1, 2, 3, ... on its own, so a link that schedules by priority may let a
//!         FLASH push overtake routine ones: see [`frame_priority`])
//! Ack   = 4 lane:u8 up_to:varint count:varint refused:varint* count:varint deferred:varint*
//!         (every push of `lane` up to `up_to` was handled durably by the receiver; the pushes whose
//!         sequence is in `refused` were *not* stored: refused, or not wanted; those in
//!         `deferred` are stored but not readable yet: pending (a dependency, an author, a
//!         key, a parent), held unreadable, or an invitation held for the user. Each list
//!         strictly increasing, at most `up_to`, the two disjoint. Only the others are
//!         delivered; a deferred one is confirmed later by a `Receipt`)
//! Bye   = 5 reason:str
//! Have  = 6 count:varint ids:[32]*    (I hold these; ask if you lack them)
//! Want  = 7 count:varint ids:[32]*    (please push these)
//! Carry = 8 count:varint tags:[16]*   (relay to relay: tags I carry that you did not know of)
//! TagSync = 9 session:varint message   (relay to relay: reconciliation of carried tag sets)
//! Revocations = 15 count:varint records:bytes*   (organisation revocations and wipe orders,
//!         to a peer whose credentials verified against a root this device pinned, and a
//!         wipe order to the device it names before cutting it: at most
//!         `MAX_REVOCATIONS_PER_FRAME`, each at most `vaarta_sync::org::MAX_RECORD_BYTES`;
//!         a record's kind byte tells a revocation (5) from a wipe order (6))
//! DirHave = 16 last:u8 count:varint ids:[16]*   (organisation directory: the ids of the
//!         directory records I hold, to a peer whose credentials verified against a root
//!         this device pinned, in frames of at most `MAX_IDS_PER_FRAME`; `last` = 1 on the
//!         final one, after which the peer sends what it holds and I lack)
//! Directory = 17 count:varint records:bytes*   (directory records: credential chains
//!         (kind 0x10) and role assignments (kind 7), at most `MAX_DIR_RECORDS_PER_FRAME`,
//!         each at most `MAX_CHAIN_BYTES`)
//! Receipt = 14 count:varint ids:[32]*  (to the author's own device: I now hold and have read
//!         these envelopes of yours, which I did not acknowledge to you as stored: they
//!         waited here, or came by another device; sent once, best effort. The receiver
//!         looks up at most a budget of ids per link and counts only its own envelopes
//!         awaiting receipts, from a current member, for that member)
//! ```
//! Envelopes written here, and FLASH ones, are pushed at once; envelopes relayed from another
//! link are announced with `Have` and sent on `Want` (gossipsub's lazy push), so a dense mesh
//! does not carry every envelope once per link.
//!
//! **Blinding.** Tags never travel in a hello: each side lists its tags blinded under a key
//! that both sides' fresh nonces and transport ids determine, so a peer recognises only the
//! tags it already knows (it blinds each of its own and looks them up), a blinded list from
//! one session says nothing in another, and a replayed `Hello`/`Intro` matches nothing. The
//! device key is shown (`Proof`) only to a peer that recognised one of our tags (it knew a
//! conversation or inbox tag of ours, so it knew of us) or that we dialled as a static peer.
//! The proof binds the device identity to this transport session and these nonces (both
//! transport ids are authenticated by the transport's own handshake), so it cannot be
//! replayed on another link or in another session.

use vaarta_sync::codec::{DecodeError, Reader, Writer};
use vaarta_sync::envelope::Precedence;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{DeviceId, EnvelopeId, Tag};
use vaarta_sync::limits::MAX_ENVELOPE_BYTES;

/// 2: hellos name the day (inbox tags are derived, not sent) (2026-11).
/// 3: acknowledgements list the pushes the receiver refused (a cumulative acknowledgement
///    made the sender record receipts for envelopes the receiver never stored) (2026-12).
/// 4: tags blinded per session (`Hello` nonce, `Intro`, `Proof`, `Ask`); the device id only
///    to peers that recognised a tag of ours (issue 9 item 17, 2026-12).
/// 5: acknowledgements list the pushes the receiver holds but cannot read yet (`deferred`),
///    and `Receipt` confirms them once read (a pending push showed as delivered, issue 9
///    rule 4, 2026-12). Later the same month a `Receipt` also confirms envelopes that came
///    by another device, and a push whose acknowledgement a link lost is pushed again
///    rather than taken as read: same frames, same version (a version-5 peer of before
///    that sends fewer receipts is still understood, and understands ours).
/// 6: pushes and acknowledgements name a lane (the precedence), numbered apart, so a FLASH
///    push may overtake routine pushes on a link that schedules by priority (Bluetooth LE)
///    and is not held back by a window full of routine pushes (issue 14, 2026-12); the
///    `Proof` carries the device's organisation credentials, signed with it (issue 12).
/// 7: a conversation is recognised by its *presence* (its tag under its current epoch's
///    key, blinded for `Member`), so the device a rotation removed no longer recognises
///    it; the plain tag is still listed, for relays only (issue 9, C5, 2026-12).
/// 8: a `Revocations` frame may carry wipe orders (organisation record kind 6) beside
///    revocations, and a wipe order naming the receiver is read from any peer (a version-7
///    peer would take one for a forged revocation and cut the link) (issue 12); and pages
///    take read watermarks and alert acknowledgements (`^reader`, `!message‖acker`, issue
///    13), which a version-7 member would refuse by its page rules (and what builds on them
///    would wait for ever). Both in one version, 2026-12: the two do not link.
/// 9: the signed directory (`DirHave`, `Directory`, issue 12): a version-8 peer would
///    take either frame for garbage and cut the link (2026-12).
pub const VERSION: u8 = 9;
/// Largest frame: an envelope plus a little framing. Anything larger is refused unread.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + 64;
/// Tags one `Intro` may list (blinded), and one `Ask`.
pub const MAX_HELLO_TAGS: usize = 8192;
/// Bytes of a hello nonce.
pub const NONCE_BYTES: usize = 32;
const PROOF_DOMAIN: &[u8] = b"vaarta 2026 proof v6";
const BLIND_CONTEXT: &str = "vaarta 2026 tag blinding v4";

/// Bytes of a blinded tag. 8 are plenty: a chance match between two different tags is
/// about n·m/2^64 per session (under 2^-38 for 8,192 tags each way), and costs at most one
/// session whose two ends disagree until the next; nobody can search tags through it (a
/// tag has 128 bits, and each session has its own key).
pub const BLIND_BYTES: usize = 8;

/// A tag as one session shows it: `BLAKE3-keyed(session key, use ‖ tag)[..8]` ([`Blinder`]).
pub type Blind = [u8; BLIND_BYTES];

/// The key one session's tags are blinded under, from both sides' transport ids and nonces
/// (in a fixed order, so both sides derive the same key whoever dialled).
pub fn session_key(a_tid: &[u8], a_nonce: &[u8; 32], b_tid: &[u8], b_nonce: &[u8; 32]) -> [u8; 32] {
    let (a, b) = ((a_tid, a_nonce), (b_tid, b_nonce));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut w = Writer::new();
    w.bytes(lo.0).raw(lo.1).bytes(hi.0).raw(hi.1);
    blake3::derive_key(BLIND_CONTEXT, w.as_slice())
}

/// What a blind is for: listed in an `Intro`, or claimed in a `Held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Intro = 0,
    Held = 2,
    /// A conversation's presence (its tag under its current epoch's key), listed in an
    /// `Intro`: what only a current member can compute.
    Member = 4,
    /// A conversation's presence under the sender's previous epoch.
    Lag = 6,
}

/// One side's blinding for one session. Blinds are separated by direction (which side sends
/// them) and by use, so a peer that reflects our own `Intro` or echoes our blinds in a `Held`
/// matches nothing: each value it must send can only be computed from the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blinder {
    key: [u8; 32],
    /// Our (transport id, nonce) sorts first.
    lo: bool,
}

impl Blinder {
    /// `None` if both sides' (transport id, nonce) are equal (a link to itself, or a nonce
    /// reflected on a transport that does not authenticate ids).
    pub fn new(
        local_tid: &[u8],
        local_nonce: &[u8; 32],
        remote_tid: &[u8],
        remote_nonce: &[u8; 32],
    ) -> Option<Self> {
        let (me, them) = ((local_tid, local_nonce), (remote_tid, remote_nonce));
        (me != them).then(|| Self {
            key: session_key(local_tid, local_nonce, remote_tid, remote_nonce),
            lo: me < them,
        })
    }

    fn blind(&self, sender_lo: bool, u: Use, tag: &Tag) -> Blind {
        let mut m = [0u8; 17];
        m[0] = u as u8 + u8::from(sender_lo);
        m[1..].copy_from_slice(&tag.0);
        let mut b = [0u8; BLIND_BYTES];
        b.copy_from_slice(&blake3::keyed_hash(&self.key, &m).as_bytes()[..BLIND_BYTES]);
        b
    }

    /// How we list `tag` in our intro.
    pub fn ours(&self, tag: &Tag) -> Blind {
        self.blind(self.lo, Use::Intro, tag)
    }

    /// How the peer lists `tag` in its intro (if it knows it).
    pub fn theirs(&self, tag: &Tag) -> Blind {
        self.blind(!self.lo, Use::Intro, tag)
    }

    /// How we list a conversation's presence in our intro
    /// ([`vaarta_sync::conversation::presence`]).
    pub fn member_ours(&self, presence: &Tag) -> Blind {
        self.blind(self.lo, Use::Member, presence)
    }

    /// How the peer lists a conversation's presence in its intro (if it can compute it).
    pub fn member_theirs(&self, presence: &Tag) -> Blind {
        self.blind(!self.lo, Use::Member, presence)
    }

    /// How we list a conversation's presence under our previous epoch.
    pub fn lag_ours(&self, presence: &Tag) -> Blind {
        self.blind(self.lo, Use::Lag, presence)
    }

    /// How the peer lists a conversation's presence under its previous epoch.
    pub fn lag_theirs(&self, presence: &Tag) -> Blind {
        self.blind(!self.lo, Use::Lag, presence)
    }

    /// How we claim, in a `Held`, to carry the peer's `tag`.
    pub fn held_ours(&self, tag: &Tag) -> Blind {
        self.blind(self.lo, Use::Held, tag)
    }

    /// How the peer claims, in a `Held`, to carry our `tag`.
    pub fn held_theirs(&self, tag: &Tag) -> Blind {
        self.blind(!self.lo, Use::Held, tag)
    }
}

/// The device behind a link, shown only to peers that recognised one of our tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub device: DeviceId,
    pub name: String,
    /// Its organisation credentials as encoded (`vaarta_sync::org::Chain::encode`), or
    /// empty. The receiver decodes and verifies them against the roots it pinned.
    pub chain: Vec<u8>,
}

/// Largest credential chain a `Proof` carries: five records of at most
/// `vaarta_sync::org::MAX_RECORD_BYTES` and their framing.
pub const MAX_CHAIN_BYTES: usize = 5 * (vaarta_sync::org::MAX_RECORD_BYTES + 4) + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first frame each way: the version and fresh randomness for this session.
    Hello {
        nonce: [u8; 32],
    },
    /// What the sender would reconcile, blinded for this session.
    Intro {
        relay: bool,
        /// Strictly increasing.
        blinds: Vec<Blind>,
    },
    /// The sender's device, proven over this session.
    Proof(Hello, [u8; 64]),
    /// Member to relay: please carry these tags for me.
    Ask {
        tags: Vec<Tag>,
    },
    /// Relay to peer: blinds from the peer's intro that name tags the relay carries.
    Held {
        blinds: Vec<Blind>,
    },
    Recon {
        session: u64,
        tags: [u8; 4],
        message: Vec<u8>,
    },
    Push {
        /// The envelope's precedence: the lane whose numbering `seq` follows.
        lane: Precedence,
        seq: u64,
        envelope: Vec<u8>,
    },
    Ack {
        lane: Precedence,
        up_to: u64,
        /// Pushes up to `up_to` that were not stored (sorted, strictly increasing).
        refused: Vec<u64>,
        /// Pushes up to `up_to` stored but not readable yet (sorted, strictly increasing,
        /// none in `refused`).
        deferred: Vec<u64>,
    },
    /// To an envelope's author: these envelopes of yours, which waited here or came by
    /// another device, are read now.
    Receipt {
        ids: Vec<EnvelopeId>,
    },
    /// Organisation revocation records (`vaarta_sync::org::Revocation::encode`), spread
    /// among the members of one organisation.
    Revocations {
        records: Vec<Vec<u8>>,
    },
    /// The ids of the directory records the sender holds (`vaarta_sync::org::DirId`);
    /// `last` on the final frame of the list.
    DirHave {
        last: bool,
        ids: Vec<[u8; 16]>,
    },
    /// Directory records (`vaarta_sync::org::DirRecord::encode`).
    Directory {
        records: Vec<Vec<u8>>,
    },
    Bye {
        reason: String,
    },
    Have {
        ids: Vec<EnvelopeId>,
    },
    Want {
        ids: Vec<EnvelopeId>,
    },
    Carry {
        tags: Vec<Tag>,
    },
    TagSync {
        session: u64,
        message: Vec<u8>,
    },
}

/// The reason every `Bye` sent for a fault gives (the same whatever the fault, so a peer
/// learns nothing from it about this device's keys or state).
pub const BYE_REFUSED: &str = "refused";

/// The `Bye` reason for a hello of another protocol version (nothing secret in it, so it
/// says what is wrong).
pub fn bye_version(theirs: u8) -> String {
    format!("protocol version {theirs} is not spoken here: this device speaks version {VERSION}")
}

/// Revocation records in one `Revocations` frame.
pub const MAX_REVOCATIONS_PER_FRAME: usize = 64;

/// Records in one `Directory` frame (chains are at most [`MAX_CHAIN_BYTES`], so a full
/// frame stays well under [`MAX_FRAME_BYTES`]).
pub const MAX_DIR_RECORDS_PER_FRAME: usize = 8;

/// Tags in one `Carry` frame.
pub const MAX_CARRY_TAGS: usize = 16_000;

/// Ids in one `Have`, `Want` or `Receipt` frame, and sequence numbers in each list of an
/// `Ack`.
pub const MAX_IDS_PER_FRAME: usize = 1024;

/// What a proof signs: domain ‖ sender tid ‖ receiver tid ‖ sender nonce ‖ receiver nonce ‖
/// device ‖ name.
fn proof_signed(h: &Hello, from: (&[u8], &[u8; 32]), to: (&[u8], &[u8; 32])) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(PROOF_DOMAIN)
        .bytes(from.0)
        .bytes(to.0)
        .raw(from.1)
        .raw(to.1)
        .raw(&h.device.0)
        .str(&h.name)
        .bytes(&h.chain);
    w.into_vec()
}

/// Frame type bytes: the one table that encoding, decoding and traffic reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    Recon = 2,
    Push = 3,
    Ack = 4,
    Bye = 5,
    Have = 6,
    Want = 7,
    Carry = 8,
    TagSync = 9,
    Intro = 10,
    Proof = 11,
    Ask = 12,
    Held = 13,
    Receipt = 14,
    Revocations = 15,
    DirHave = 16,
    Directory = 17,
}

impl FrameType {
    const ALL: [FrameType; 17] = [
        FrameType::Hello,
        FrameType::Recon,
        FrameType::Push,
        FrameType::Ack,
        FrameType::Bye,
        FrameType::Have,
        FrameType::Want,
        FrameType::Carry,
        FrameType::TagSync,
        FrameType::Intro,
        FrameType::Proof,
        FrameType::Ask,
        FrameType::Held,
        FrameType::Receipt,
        FrameType::Revocations,
        FrameType::DirHave,
        FrameType::Directory,
    ];

    /// The type a frame's first byte names, if any.
    pub fn of(b: u8) -> Option<FrameType> {
        Self::ALL.into_iter().find(|t| *t as u8 == b)
    }

    /// For reports.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::Recon => "reconcile",
            FrameType::Push => "push",
            FrameType::Ack => "ack",
            FrameType::Bye => "bye",
            FrameType::Have => "have",
            FrameType::Want => "want",
            FrameType::Carry => "carry",
            FrameType::TagSync => "tag-sync",
            FrameType::Intro => "intro",
            FrameType::Proof => "proof",
            FrameType::Ask => "ask",
            FrameType::Held => "held",
            FrameType::Receipt => "receipt",
            FrameType::Revocations => "revocations",
            FrameType::DirHave => "directory-have",
            FrameType::Directory => "directory",
        }
    }
}

fn put_tags(w: &mut Writer, tags: &[Tag]) {
    w.varint(tags.len() as u64);
    for t in tags {
        w.raw(&t.0);
    }
}

fn take_tags(r: &mut Reader, max: usize) -> Result<Vec<Tag>, DecodeError> {
    let n = r.count("tags", max, 16)?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(Tag(r.array("tag")?));
    }
    if !tags.windows(2).all(|w| w[0] < w[1]) {
        return Err(DecodeError::NonCanonical("tags order"));
    }
    Ok(tags)
}

fn put_blinds(w: &mut Writer, blinds: &[Blind]) {
    w.varint(blinds.len() as u64);
    for b in blinds {
        w.raw(b);
    }
}

fn take_blinds(r: &mut Reader) -> Result<Vec<Blind>, DecodeError> {
    let n = r.count("blinded tags", MAX_HELLO_TAGS, BLIND_BYTES)?;
    let mut blinds: Vec<Blind> = Vec::with_capacity(n);
    for _ in 0..n {
        blinds.push(r.array("blinded tag")?);
    }
    if !blinds.windows(2).all(|w| w[0] < w[1]) {
        return Err(DecodeError::NonCanonical("blinded tags order"));
    }
    Ok(blinds)
}

/// One list of push sequence numbers of an `Ack`: at most [`MAX_IDS_PER_FRAME`], strictly
/// increasing, none above `up_to`.
fn take_seqs(r: &mut Reader, up_to: u64, what: &'static str) -> Result<Vec<u64>, DecodeError> {
    let n = r.count(what, MAX_IDS_PER_FRAME, 1)?;
    let mut seqs: Vec<u64> = Vec::with_capacity(n);
    for _ in 0..n {
        let s = r.varint(what)?;
        if s > up_to || seqs.last().is_some_and(|l| *l >= s) {
            return Err(DecodeError::NonCanonical(what));
        }
        seqs.push(s);
    }
    Ok(seqs)
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Intro { .. } => FrameType::Intro,
            Frame::Proof(..) => FrameType::Proof,
            Frame::Ask { .. } => FrameType::Ask,
            Frame::Held { .. } => FrameType::Held,
            Frame::Recon { .. } => FrameType::Recon,
            Frame::Push { .. } => FrameType::Push,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Bye { .. } => FrameType::Bye,
            Frame::Have { .. } => FrameType::Have,
            Frame::Want { .. } => FrameType::Want,
            Frame::Carry { .. } => FrameType::Carry,
            Frame::TagSync { .. } => FrameType::TagSync,
            Frame::Receipt { .. } => FrameType::Receipt,
            Frame::Revocations { .. } => FrameType::Revocations,
            Frame::DirHave { .. } => FrameType::DirHave,
            Frame::Directory { .. } => FrameType::Directory,
        }
    }

    /// Our proof for this session: `local` is our (transport id, nonce), `remote` the peer's.
    pub fn proof(
        me: &Identity,
        h: Hello,
        local: (&[u8], &[u8; 32]),
        remote: (&[u8], &[u8; 32]),
    ) -> Frame {
        let sig = me.sign(&proof_signed(&h, local, remote));
        Frame::Proof(h, sig)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.frame_type() as u8);
        match self {
            Frame::Hello { nonce } => {
                w.u8(VERSION).raw(nonce);
            }
            Frame::Intro { relay, blinds } => {
                w.bool(*relay);
                put_blinds(&mut w, blinds);
            }
            Frame::Held { blinds } => put_blinds(&mut w, blinds),
            Frame::Proof(h, sig) => {
                w.raw(&h.device.0).str(&h.name).raw(sig).bytes(&h.chain);
            }
            Frame::Ask { tags } | Frame::Carry { tags } => put_tags(&mut w, tags),
            Frame::Recon {
                session,
                tags,
                message,
            } => {
                w.varint(*session).raw(tags).raw(message);
            }
            Frame::Push {
                lane,
                seq,
                envelope,
            } => {
                w.u8(*lane as u8).varint(*seq).raw(envelope);
            }
            Frame::Ack {
                lane,
                up_to,
                refused,
                deferred,
            } => {
                w.u8(*lane as u8).varint(*up_to);
                for list in [refused, deferred] {
                    w.varint(list.len() as u64);
                    for s in list {
                        w.varint(*s);
                    }
                }
            }
            Frame::Bye { reason } => {
                w.str(reason);
            }
            Frame::DirHave { last, ids } => {
                w.u8(u8::from(*last)).varint(ids.len() as u64);
                for id in ids {
                    w.raw(id);
                }
            }
            Frame::Revocations { records } | Frame::Directory { records } => {
                w.varint(records.len() as u64);
                for r in records {
                    w.bytes(r);
                }
            }
            Frame::TagSync { session, message } => {
                w.varint(*session).raw(message);
            }
            Frame::Have { ids } | Frame::Want { ids } | Frame::Receipt { ids } => {
                w.varint(ids.len() as u64);
                for id in ids {
                    w.raw(&id.0);
                }
            }
        }
        w.into_vec()
    }

    pub fn decode(b: &[u8]) -> Result<Frame, DecodeError> {
        if b.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::TooLarge {
                what: "frame",
                len: b.len() as u64,
                max: MAX_FRAME_BYTES as u64,
            });
        }
        let mut r = Reader::new(b);
        let t = FrameType::of(r.u8("frame type")?).ok_or(DecodeError::Invalid("frame type"))?;
        let f = match t {
            FrameType::Hello => {
                let v = r.u8("hello version")?;
                if v != VERSION {
                    return Err(DecodeError::UnknownVersion(v));
                }
                Frame::Hello {
                    nonce: r.array("nonce")?,
                }
            }
            FrameType::Intro => Frame::Intro {
                relay: r.bool("relay")?,
                blinds: take_blinds(&mut r)?,
            },
            FrameType::Held => Frame::Held {
                blinds: take_blinds(&mut r)?,
            },
            FrameType::Proof => {
                let device = DeviceId(r.array("device")?);
                let name = r
                    .str("name", vaarta_sync::limits::MAX_NAME_BYTES)?
                    .to_string();
                let sig = r.array("proof")?;
                let chain = r.bytes("credential chain", MAX_CHAIN_BYTES)?.to_vec();
                Frame::Proof(
                    Hello {
                        device,
                        name,
                        chain,
                    },
                    sig,
                )
            }
            FrameType::Ask => Frame::Ask {
                tags: take_tags(&mut r, MAX_HELLO_TAGS)?,
            },
            FrameType::Recon => Frame::Recon {
                session: r.varint("session")?,
                tags: r.array("tags digest")?,
                message: r.rest().to_vec(),
            },
            FrameType::Push => Frame::Push {
                lane: take_lane(&mut r)?,
                seq: r.varint("seq")?,
                envelope: r.rest().to_vec(),
            },
            FrameType::Ack => {
                let lane = take_lane(&mut r)?;
                let up_to = r.varint("ack")?;
                let refused = take_seqs(&mut r, up_to, "refused pushes")?;
                let deferred = take_seqs(&mut r, up_to, "deferred pushes")?;
                if deferred.iter().any(|d| refused.binary_search(d).is_ok()) {
                    return Err(DecodeError::NonCanonical("push both refused and deferred"));
                }
                Frame::Ack {
                    lane,
                    up_to,
                    refused,
                    deferred,
                }
            }
            FrameType::Revocations => {
                let n = r.count("revocations", MAX_REVOCATIONS_PER_FRAME, 1)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let rec = r.bytes("revocation", vaarta_sync::org::MAX_RECORD_BYTES)?;
                    records.push(rec.to_vec());
                }
                Frame::Revocations { records }
            }
            FrameType::DirHave => {
                let last = match r.u8("last")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::NonCanonical("directory-have last flag")),
                };
                let n = r.count("directory ids", MAX_IDS_PER_FRAME, 16)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.array::<16>("directory id")?);
                }
                Frame::DirHave { last, ids }
            }
            FrameType::Directory => {
                let n = r.count("directory records", MAX_DIR_RECORDS_PER_FRAME, 1)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    records.push(r.bytes("directory record", MAX_CHAIN_BYTES)?.to_vec());
                }
                Frame::Directory { records }
            }
            FrameType::Bye => Frame::Bye {
                reason: r.str("reason", 256)?.to_string(),
            },
            FrameType::TagSync => Frame::TagSync {
                session: r.varint("session")?,
                message: r.rest().to_vec(),
            },
            FrameType::Carry => Frame::Carry {
                tags: take_tags(&mut r, MAX_CARRY_TAGS)?,
            },
            FrameType::Have | FrameType::Want | FrameType::Receipt => {
                let n = r.count("ids", MAX_IDS_PER_FRAME, 32)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(EnvelopeId(r.array("id")?));
                }
                match t {
                    FrameType::Have => Frame::Have { ids },
                    FrameType::Want => Frame::Want { ids },
                    _ => Frame::Receipt { ids },
                }
            }
        };
        r.finish()?;
        Ok(f)
    }
}

fn take_lane(r: &mut Reader) -> Result<Precedence, DecodeError> {
    Precedence::from_u8(r.u8("lane")?).ok_or(DecodeError::Invalid("lane"))
}

/// Which queue a frame belongs in on a link that schedules by priority (the Bluetooth
/// link's lanes): smaller first. Frames of one priority must stay in order; frames of
/// different priorities may overtake one another, and the engine is built for that:
/// pushes and their acknowledgements are numbered per lane, handshake frames go before
/// anything that depends on them, and a reconciliation message that an intro overtook is
/// ignored and started again (`session.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FramePriority {
    /// Hello, intro, proof, ask, held, bye, acknowledgements and receipts: small, and what
    /// everything else waits on.
    Control,
    /// A push, by its lane: FLASH before IMMEDIATE before PRIORITY before ROUTINE.
    Push(std::cmp::Reverse<Precedence>),
    /// Reconciliation, announcements and relay bookkeeping: anything that may wait.
    Bulk,
}

impl FramePriority {
    /// A push frame of this precedence.
    pub fn push(p: Precedence) -> Self {
        FramePriority::Push(std::cmp::Reverse(p))
    }
}

/// The priority of an encoded frame, read from its first two bytes (no decoding). A frame
/// that is not well formed counts as [`FramePriority::Bulk`]: a driver classifies what the
/// engine made, and the receiving engine judges what arrives.
pub fn frame_priority(frame: &[u8]) -> FramePriority {
    let Some(t) = frame.first().and_then(|b| FrameType::of(*b)) else {
        return FramePriority::Bulk;
    };
    match t {
        FrameType::Hello
        | FrameType::Intro
        | FrameType::Proof
        | FrameType::Ask
        | FrameType::Held
        | FrameType::Bye
        | FrameType::Ack
        | FrameType::Receipt
        | FrameType::Revocations => FramePriority::Control,
        // The directory may wait behind messages.
        FrameType::DirHave | FrameType::Directory => FramePriority::Bulk,
        FrameType::Push => match frame.get(1).and_then(|l| Precedence::from_u8(*l)) {
            Some(p) if frame.len() > 2 => FramePriority::push(p),
            _ => FramePriority::Bulk,
        },
        FrameType::Recon
        | FrameType::Have
        | FrameType::Want
        | FrameType::Carry
        | FrameType::TagSync => FramePriority::Bulk,
    }
}

/// The protocol version a frame names if it is a hello of another version than ours.
pub fn foreign_hello_version(b: &[u8]) -> Option<u8> {
    match b {
        [t, v, ..] if *t == FrameType::Hello as u8 && *v != VERSION => Some(*v),
        _ => None,
    }
}

/// A short digest of a session's tag list: both sides must reconcile the same list, and a
/// reconciliation message built on another list (an intro crossed it in flight) is ignored.
pub fn tags_digest(tags: &[Tag]) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    for t in tags {
        h.update(&t.0);
    }
    let mut d = [0u8; 4];
    d.copy_from_slice(&h.finalize().as_bytes()[..4]);
    d
}

/// Checks a proof: signed by its device for (their transport id and nonce → ours).
pub fn verify_proof(
    h: &Hello,
    sig: &[u8; 64],
    remote: (&[u8], &[u8; 32]),
    local: (&[u8], &[u8; 32]),
    keys: &mut vaarta_sync::identity::KeyCache,
) -> bool {
    keys.verify(&h.device, &proof_signed(h, remote, local), sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proof_binds_transport_ids_and_nonces() {
        let me = Identity::from_seed([1; 32]);
        let h = Hello {
            device: me.device_id(),
            name: "अनु".into(),
            chain: vec![7; 40],
        };
        let (n1, n2, n3) = ([1; 32], [2; 32], [3; 32]);
        let f = Frame::proof(&me, h.clone(), (b"me", &n1), (b"you", &n2));
        let back = Frame::decode(&f.encode()).unwrap();
        assert_eq!(back, f);
        let Frame::Proof(h2, sig) = back else {
            panic!()
        };
        let mut k = vaarta_sync::identity::KeyCache::default();
        assert!(verify_proof(&h2, &sig, (b"me", &n1), (b"you", &n2), &mut k));
        assert!(!verify_proof(
            &h2,
            &sig,
            (b"me", &n1),
            (b"mallory", &n2),
            &mut k
        ));
        assert!(!verify_proof(
            &h2,
            &sig,
            (b"you", &n2),
            (b"me", &n1),
            &mut k
        ));
        // Another session (another nonce on either side): the proof does not carry over.
        assert!(!verify_proof(
            &h2,
            &sig,
            (b"me", &n1),
            (b"you", &n3),
            &mut k
        ));
        assert!(!verify_proof(
            &h2,
            &sig,
            (b"me", &n3),
            (b"you", &n2),
            &mut k
        ));
        // The chain is signed with the rest: another one (a stripped or swapped chain) does
        // not verify.
        for chain in [vec![], vec![8; 40]] {
            let swapped = Hello {
                chain,
                ..h2.clone()
            };
            assert!(!verify_proof(
                &swapped,
                &sig,
                (b"me", &n1),
                (b"you", &n2),
                &mut k
            ));
        }
        // A chain over the bound is refused unread.
        let mut w = Writer::new();
        w.u8(FrameType::Proof as u8)
            .raw(&h.device.0)
            .str("x")
            .raw(&[0; 64])
            .varint(MAX_CHAIN_BYTES as u64 + 1);
        assert!(Frame::decode(w.as_slice()).is_err());
    }

    #[test]
    fn blinding_is_per_session_per_direction_and_per_use() {
        let t = Tag([7; 16]);
        let (n1, n2, n3) = ([1; 32], [2; 32], [3; 32]);
        let k = session_key(b"a", &n1, b"b", &n2);
        assert_eq!(k, session_key(b"b", &n2, b"a", &n1), "both sides derive it");
        assert_ne!(k, session_key(b"a", &n1, b"b", &n3));
        assert_ne!(k, session_key(b"a", &n3, b"b", &n2));
        assert_ne!(k, session_key(b"a", &n1, b"c", &n2));
        let a = Blinder::new(b"a", &n1, b"b", &n2).unwrap();
        let b = Blinder::new(b"b", &n2, b"a", &n1).unwrap();
        // What one side sends is what the other expects, per use.
        assert_eq!(a.ours(&t), b.theirs(&t));
        assert_eq!(a.held_ours(&t), b.held_theirs(&t));
        // Directions and uses differ: a reflected intro or an echoed blind matches nothing.
        let all = [a.ours(&t), a.theirs(&t), a.held_ours(&t), a.held_theirs(&t)];
        for i in 0..4 {
            for j in 0..i {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        // Another session, another blind; another tag, another blind.
        let c = Blinder::new(b"a", &n1, b"b", &n3).unwrap();
        assert_ne!(a.ours(&t), c.ours(&t));
        assert_ne!(a.ours(&t), a.ours(&Tag([8; 16])));
        assert!(
            Blinder::new(b"a", &n1, b"a", &n1).is_none(),
            "a link to itself"
        );
    }

    #[test]
    fn a_hello_of_another_version_is_named() {
        assert_eq!(foreign_hello_version(&[1, 3, 0]), Some(3));
        assert_eq!(
            foreign_hello_version(&Frame::Hello { nonce: [0; 32] }.encode()),
            None
        );
        assert_eq!(foreign_hello_version(&[2, 3]), None);
        assert!(matches!(
            Frame::decode(&[1, 3]),
            Err(DecodeError::UnknownVersion(3))
        ));
        assert!(bye_version(3).contains(&format!("version {VERSION}")));
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Hello { nonce: [9; 32] },
            Frame::Intro {
                relay: true,
                blinds: vec![[1; 8], [2; 8]],
            },
            Frame::Intro {
                relay: false,
                blinds: vec![],
            },
            Frame::Ask {
                tags: vec![Tag([1; 16]), Tag([3; 16])],
            },
            Frame::Held {
                blinds: vec![[3; 8]],
            },
            Frame::Recon {
                session: 9,
                tags: [1, 2, 3, 4],
                message: vec![1, 2, 3],
            },
            Frame::Push {
                lane: Precedence::Flash,
                seq: 1 << 40,
                envelope: vec![7; 300],
            },
            Frame::Ack {
                lane: Precedence::Routine,
                up_to: 77,
                refused: vec![],
                deferred: vec![],
            },
            Frame::Ack {
                lane: Precedence::Routine,
                up_to: 77,
                refused: vec![3, 70, 77],
                deferred: vec![],
            },
            Frame::Ack {
                lane: Precedence::Routine,
                up_to: 77,
                refused: vec![3],
                deferred: vec![4, 76],
            },
            Frame::Receipt {
                ids: vec![EnvelopeId([1; 32]), EnvelopeId([2; 32])],
            },
            Frame::Revocations {
                records: vec![vec![1, 2, 3], vec![]],
            },
            Frame::Receipt { ids: vec![] },
            Frame::DirHave {
                last: true,
                ids: vec![[1; 16], [2; 16]],
            },
            Frame::DirHave {
                last: false,
                ids: vec![],
            },
            Frame::Directory {
                records: vec![vec![0x10, 2], vec![]],
            },
            Frame::Bye {
                reason: "bye".into(),
            },
            Frame::Have {
                ids: vec![EnvelopeId([1; 32]), EnvelopeId([2; 32])],
            },
            Frame::Want { ids: vec![] },
            Frame::Carry {
                tags: vec![Tag([1; 16]), Tag([3; 16])],
            },
        ] {
            let bytes = f.encode();
            assert_eq!(FrameType::of(bytes[0]), Some(f.frame_type()));
            assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }
        for t in FrameType::ALL {
            assert_eq!(FrameType::of(t as u8), Some(t));
        }
        assert_eq!(FrameType::of(0), None);
        assert_eq!(FrameType::of(18), None);
        assert!(Frame::decode(&[]).is_err());
        assert!(Frame::decode(&[9]).is_err());
        assert!(Frame::decode(&[4, 0, 1, 0, 0, 0]).is_err(), "trailing byte");
        // Blinded tags out of order.
        let mut intro = vec![10, 0, 2];
        intro.extend([2; 8]);
        intro.extend([1; 8]);
        assert!(Frame::decode(&intro).is_err());
        // Refused pushes beyond the acknowledgement, or out of order.
        assert!(Frame::decode(&[4, 0, 5, 1, 6, 0]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 2, 3, 3, 0]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 2, 3, 4, 0]).is_ok());
        // Without its deferred list (a version 4 acknowledgement): malformed.
        assert!(Frame::decode(&[4, 0, 5, 2, 3, 4]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 0]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 0, 0]).is_ok());
        // Deferred pushes: the same rules, and none also refused.
        assert!(Frame::decode(&[4, 0, 5, 0, 1, 6]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 0, 2, 4, 4]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 0, 2, 4, 3]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 1, 3, 1, 3]).is_err());
        assert!(Frame::decode(&[4, 0, 5, 1, 3, 2, 2, 4]).is_ok());
        assert!(Frame::decode(&vec![3; MAX_FRAME_BYTES + 1]).is_err());
        // Lanes are the four precedences, nothing else.
        assert!(Frame::decode(&[4, 4, 5, 0, 0]).is_err());
        assert!(Frame::decode(&[4, 3, 5, 0, 0]).is_ok());
        assert!(Frame::decode(&[3, 4, 1, 9]).is_err());
        assert!(Frame::decode(&[3, 3, 1, 9]).is_ok());
        assert!(Frame::decode(&[3, 3]).is_err(), "no sequence");
    }

    #[test]
    fn lists_over_one_frame_are_refused() {
        let max = MAX_IDS_PER_FRAME as u64;
        // An acknowledgement listing one sequence too many, in either list.
        let mut w = Writer::new();
        w.u8(FrameType::Ack as u8)
            .u8(0)
            .varint(max + 1)
            .varint(max + 1);
        for s in 0..=max {
            w.varint(s);
        }
        w.varint(0);
        assert!(Frame::decode(w.as_slice()).is_err());
        let mut w = Writer::new();
        w.u8(FrameType::Ack as u8)
            .u8(0)
            .varint(max + 1)
            .varint(0)
            .varint(max + 1);
        for s in 0..=max {
            w.varint(s);
        }
        assert!(Frame::decode(w.as_slice()).is_err());
        // Exactly one frame's worth in each is fine.
        let full = Frame::Ack {
            lane: Precedence::Routine,
            up_to: 2 * max,
            refused: (0..max).collect(),
            deferred: (max..2 * max).collect(),
        };
        assert_eq!(Frame::decode(&full.encode()).unwrap(), full);
        // A receipt for one id too many.
        let ids: Vec<EnvelopeId> = (0..=max).map(|i| EnvelopeId([i as u8; 32])).collect();
        let over = Frame::Receipt { ids: ids.clone() }.encode();
        assert!(Frame::decode(&over).is_err());
        let ok = Frame::Receipt {
            ids: ids[..MAX_IDS_PER_FRAME].to_vec(),
        };
        assert_eq!(Frame::decode(&ok.encode()).unwrap(), ok);
        // A count that promises more ids than the frame holds.
        assert!(Frame::decode(&[14, 2, 0]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b: Vec<u8>) {
            if let Ok(f) = Frame::decode(&b) {
                prop_assert_eq!(f.encode(), b);
            }
        }
    }
}
