//! Frames exchanged on a link. The transport delimits frames (libp2p: a varint length before
//! each; the simulator: one message per frame); a frame is a type byte and a payload.
//!
//! ```text
//! Hello = 1 version:u8 device:[32] name:str relay:bool day:varint tags:count*[16] proof:[64]
//!         tags: the sender's conversations; its inbox tags follow from device and day
//!         proof = Ed25519(device, "vaarta 2026 hello v1" ‖ sender transport id ‖ receiver transport id ‖ body)
//! Recon = 2 session:varint tags:[4] message      (tags: digest of the session's tag list)
//! Push  = 3 seq:varint envelope
//! Ack   = 4 up_to:varint count:varint refused:varint*
//!         (every push up to `up_to` was handled durably by the receiver; the pushes whose
//!         sequence is in `refused`, strictly increasing and at most `up_to`, were *not*
//!         stored: refused, or not wanted. Only the others are delivered)
//! Bye   = 5 reason:str
//! Have  = 6 count:varint ids:[32]*    (I hold these; ask if you lack them)
//! Want  = 7 count:varint ids:[32]*    (please push these)
//! Carry = 8 count:varint tags:[16]*   (relay to relay: tags I carry that you did not know of)
//! TagSync = 9 session:varint message   (relay to relay: reconciliation of carried tag sets)
//! ```
//! Envelopes written here, and FLASH ones, are pushed at once; envelopes relayed from another
//! link are announced with `Have` and sent on `Want` (gossipsub's lazy push), so a dense mesh
//! does not carry every envelope once per link.
//! The proof binds the device identity to the transport session (both transport ids are
//! authenticated by the transport's own handshake), so a hello cannot be replayed on another
//! link. The device key is shown only inside the encrypted transport.

use vaarta_sync::codec::{DecodeError, Reader, Writer};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{DeviceId, EnvelopeId, Tag};
use vaarta_sync::limits::MAX_ENVELOPE_BYTES;

/// 2: hellos name the day (inbox tags are derived, not sent) (2026-11).
/// 3: acknowledgements list the pushes the receiver refused (a cumulative acknowledgement
///    made the sender record receipts for envelopes the receiver never stored) (2026-12).
pub const VERSION: u8 = 3;
/// Largest frame: an envelope plus a little framing. Anything larger is refused unread.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + 64;
/// Tags one hello may list.
pub const MAX_HELLO_TAGS: usize = 8192;
const HELLO_DOMAIN: &[u8] = b"vaarta 2026 hello v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub device: DeviceId,
    pub name: String,
    pub relay: bool,
    /// The sender's current day (days since the Unix epoch), which fixes its inbox tags.
    pub day: u64,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello, [u8; 64]),
    Recon {
        session: u64,
        tags: [u8; 4],
        message: Vec<u8>,
    },
    Push {
        seq: u64,
        envelope: Vec<u8>,
    },
    Ack {
        up_to: u64,
        /// Pushes up to `up_to` that were not stored (sorted, strictly increasing).
        refused: Vec<u64>,
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

/// Tags in one `Carry` frame.
pub const MAX_CARRY_TAGS: usize = 16_000;

/// Ids in one `Have` or `Want` frame.
pub const MAX_IDS_PER_FRAME: usize = 1024;

fn hello_body(h: &Hello) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION)
        .raw(&h.device.0)
        .str(&h.name)
        .bool(h.relay)
        .varint(h.day);
    w.varint(h.tags.len() as u64);
    for t in &h.tags {
        w.raw(&t.0);
    }
    w.into_vec()
}

fn hello_signed(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut m = HELLO_DOMAIN.to_vec();
    let mut w = Writer::new();
    w.bytes(from).bytes(to);
    m.extend_from_slice(w.as_slice());
    m.extend_from_slice(body);
    m
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
}

impl FrameType {
    const ALL: [FrameType; 9] = [
        FrameType::Hello,
        FrameType::Recon,
        FrameType::Push,
        FrameType::Ack,
        FrameType::Bye,
        FrameType::Have,
        FrameType::Want,
        FrameType::Carry,
        FrameType::TagSync,
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
        }
    }
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(..) => FrameType::Hello,
            Frame::Recon { .. } => FrameType::Recon,
            Frame::Push { .. } => FrameType::Push,
            Frame::Ack { .. } => FrameType::Ack,
            Frame::Bye { .. } => FrameType::Bye,
            Frame::Have { .. } => FrameType::Have,
            Frame::Want { .. } => FrameType::Want,
            Frame::Carry { .. } => FrameType::Carry,
            Frame::TagSync { .. } => FrameType::TagSync,
        }
    }

    pub fn hello(me: &Identity, h: Hello, local_tid: &[u8], remote_tid: &[u8]) -> Frame {
        let sig = me.sign(&hello_signed(&hello_body(&h), local_tid, remote_tid));
        Frame::Hello(h, sig)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.frame_type() as u8);
        match self {
            Frame::Hello(h, sig) => {
                w.raw(&hello_body(h)).raw(sig);
            }
            Frame::Recon {
                session,
                tags,
                message,
            } => {
                w.varint(*session).raw(tags).raw(message);
            }
            Frame::Push { seq, envelope } => {
                w.varint(*seq).raw(envelope);
            }
            Frame::Ack { up_to, refused } => {
                w.varint(*up_to).varint(refused.len() as u64);
                for r in refused {
                    w.varint(*r);
                }
            }
            Frame::Bye { reason } => {
                w.str(reason);
            }
            Frame::TagSync { session, message } => {
                w.varint(*session).raw(message);
            }
            Frame::Carry { tags } => {
                w.varint(tags.len() as u64);
                for t in tags {
                    w.raw(&t.0);
                }
            }
            Frame::Have { ids } | Frame::Want { ids } => {
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
                let device = DeviceId(r.array("device")?);
                let name = r
                    .str("name", vaarta_sync::limits::MAX_NAME_BYTES)?
                    .to_string();
                let relay = r.bool("relay")?;
                let day = r.varint("day")?;
                let n = r.count("tags", MAX_HELLO_TAGS, 16)?;
                let mut tags = Vec::with_capacity(n);
                for _ in 0..n {
                    tags.push(Tag(r.array("tag")?));
                }
                if !tags.windows(2).all(|w| w[0] < w[1]) {
                    return Err(DecodeError::NonCanonical("tags order"));
                }
                let sig = r.array("proof")?;
                Frame::Hello(
                    Hello {
                        device,
                        name,
                        relay,
                        day,
                        tags,
                    },
                    sig,
                )
            }
            FrameType::Recon => Frame::Recon {
                session: r.varint("session")?,
                tags: r.array("tags digest")?,
                message: r.rest().to_vec(),
            },
            FrameType::Push => Frame::Push {
                seq: r.varint("seq")?,
                envelope: r.rest().to_vec(),
            },
            FrameType::Ack => {
                let up_to = r.varint("ack")?;
                let n = r.count("refused", MAX_IDS_PER_FRAME, 1)?;
                let mut refused = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = r.varint("refused")?;
                    if s > up_to || refused.last().is_some_and(|l| *l >= s) {
                        return Err(DecodeError::NonCanonical("refused pushes"));
                    }
                    refused.push(s);
                }
                Frame::Ack { up_to, refused }
            }
            FrameType::Bye => Frame::Bye {
                reason: r.str("reason", 256)?.to_string(),
            },
            FrameType::TagSync => Frame::TagSync {
                session: r.varint("session")?,
                message: r.rest().to_vec(),
            },
            FrameType::Carry => {
                let n = r.count("tags", MAX_CARRY_TAGS, 16)?;
                let mut tags = Vec::with_capacity(n);
                for _ in 0..n {
                    tags.push(Tag(r.array("tag")?));
                }
                if !tags.windows(2).all(|w| w[0] < w[1]) {
                    return Err(DecodeError::NonCanonical("tags order"));
                }
                Frame::Carry { tags }
            }
            FrameType::Have | FrameType::Want => {
                let n = r.count("ids", MAX_IDS_PER_FRAME, 32)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(EnvelopeId(r.array("id")?));
                }
                if t == FrameType::Have {
                    Frame::Have { ids }
                } else {
                    Frame::Want { ids }
                }
            }
        };
        r.finish()?;
        Ok(f)
    }
}

/// A short digest of a session's tag list: both sides must reconcile the same list, and a
/// reconciliation message built on another list (a hello crossed it in flight) is ignored.
pub fn tags_digest(tags: &[Tag]) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    for t in tags {
        h.update(&t.0);
    }
    let mut d = [0u8; 4];
    d.copy_from_slice(&h.finalize().as_bytes()[..4]);
    d
}

/// Checks a hello's proof: signed by its device for (their transport id → our transport id).
pub fn verify_hello(
    h: &Hello,
    sig: &[u8; 64],
    remote_tid: &[u8],
    local_tid: &[u8],
    keys: &mut vaarta_sync::identity::KeyCache,
) -> bool {
    keys.verify(
        &h.device,
        &hello_signed(&hello_body(h), remote_tid, local_tid),
        sig,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_binds_transport_ids() {
        let me = Identity::from_seed([1; 32]);
        let h = Hello {
            device: me.device_id(),
            name: "अनु".into(),
            relay: true,
            day: 20_000,
            tags: vec![Tag([1; 16]), Tag([2; 16])],
        };
        let f = Frame::hello(&me, h.clone(), b"me", b"you");
        let back = Frame::decode(&f.encode()).unwrap();
        assert_eq!(back, f);
        let Frame::Hello(h2, sig) = back else {
            panic!()
        };
        let mut k = vaarta_sync::identity::KeyCache::default();
        assert!(verify_hello(&h2, &sig, b"me", b"you", &mut k));
        assert!(!verify_hello(&h2, &sig, b"me", b"mallory", &mut k));
        assert!(!verify_hello(&h2, &sig, b"you", b"me", &mut k));
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Recon {
                session: 9,
                tags: [1, 2, 3, 4],
                message: vec![1, 2, 3],
            },
            Frame::Push {
                seq: 1 << 40,
                envelope: vec![7; 300],
            },
            Frame::Ack {
                up_to: 77,
                refused: vec![],
            },
            Frame::Ack {
                up_to: 77,
                refused: vec![3, 70, 77],
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
        assert_eq!(FrameType::of(10), None);
        assert!(Frame::decode(&[]).is_err());
        assert!(Frame::decode(&[9]).is_err());
        assert!(Frame::decode(&[4, 1, 0, 0]).is_err());
        // Refused pushes beyond the acknowledgement, or out of order.
        assert!(Frame::decode(&[4, 5, 1, 6]).is_err());
        assert!(Frame::decode(&[4, 5, 2, 3, 3]).is_err());
        assert!(Frame::decode(&[4, 5, 2, 3, 4]).is_ok());
        assert!(Frame::decode(&vec![3; MAX_FRAME_BYTES + 1]).is_err());
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
