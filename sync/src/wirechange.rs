//! Automerge changes on the wire, without what the receiver already knows.
//!
//! An Automerge change chunk is `magic:[4] checksum:[4] type:u8 length:uleb body`, and its
//! body starts `deps actor:(uleb len, bytes) …`. In a Vaarta envelope the actor is always
//! the signer's (the rules refuse anything else), and the magic, checksum, type and length
//! follow from the body. So an envelope carries only
//!
//! ```text
//! wire change = deps body-after-actor
//! ```
//!
//! and the receiver puts the signer's actor and the chunk header back before Automerge sees
//! the bytes. The restored bytes are exactly the ones the author's Automerge produced, so
//! change hashes (and with them dependencies and convergence) are unaffected. This saves
//! about 25 bytes per change before compression — 20 after, as the actor and checksum are
//! random — which is 7% of a short chat message's envelope.

use sha2::{Digest, Sha256};

use crate::codec::DecodeError;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const HASH_LEN: usize = 32;

/// Why a change cannot be stripped (only ever our own, freshly committed changes are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripError {
    #[error("not an uncompressed Automerge change chunk")]
    NotAChange,
    #[error("the change's actor is not the signer's")]
    OtherActor,
}

fn uleb(b: &[u8], at: &mut usize, what: &'static str) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*at).ok_or(DecodeError::Truncated(what))?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return Err(DecodeError::Invalid(what));
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Invalid(what))
}

fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Where the dependency list ends in a change body (or a wire change).
fn deps_end(body: &[u8]) -> Result<usize, DecodeError> {
    let mut at = 0;
    let n = uleb(body, &mut at, "change dependencies")?;
    let len = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(HASH_LEN))
        .ok_or(DecodeError::Invalid("change dependencies"))?;
    let end = at
        .checked_add(len)
        .filter(|e| *e <= body.len())
        .ok_or(DecodeError::Truncated("change dependencies"))?;
    Ok(end)
}

/// The wire form of a change chunk whose actor is `actor`.
pub fn strip(raw: &[u8], actor: &[u8]) -> Result<Vec<u8>, StripError> {
    if raw.len() < 9 || raw[..4] != MAGIC || raw[8] != CHUNK_CHANGE {
        return Err(StripError::NotAChange);
    }
    let mut at = 9;
    let len = uleb(raw, &mut at, "chunk length").map_err(|_| StripError::NotAChange)?;
    let body = &raw[at..];
    if usize::try_from(len).ok() != Some(body.len()) {
        return Err(StripError::NotAChange);
    }
    let deps = deps_end(body).map_err(|_| StripError::NotAChange)?;
    let mut a = deps;
    let actor_len = uleb(body, &mut a, "actor").map_err(|_| StripError::NotAChange)?;
    let actor_end = usize::try_from(actor_len)
        .ok()
        .and_then(|l| a.checked_add(l))
        .filter(|e| *e <= body.len())
        .ok_or(StripError::NotAChange)?;
    if &body[a..actor_end] != actor {
        return Err(StripError::OtherActor);
    }
    let mut out = Vec::with_capacity(body.len() - (actor_end - deps));
    out.extend_from_slice(&body[..deps]);
    out.extend_from_slice(&body[actor_end..]);
    Ok(out)
}

/// The change chunk a wire change came from, given its signer's actor. Deterministic: every
/// receiver restores the same bytes, so they agree on the change hash.
pub fn restore(wire: &[u8], actor: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let deps = deps_end(wire)?;
    let mut body = Vec::with_capacity(wire.len() + actor.len() + 1);
    body.extend_from_slice(&wire[..deps]);
    write_uleb(&mut body, actor.len() as u64);
    body.extend_from_slice(actor);
    body.extend_from_slice(&wire[deps..]);
    let mut len = Vec::with_capacity(5);
    write_uleb(&mut len, body.len() as u64);
    let mut h = Sha256::new();
    h.update([CHUNK_CHANGE]);
    h.update(&len);
    h.update(&body);
    let hash = h.finalize();
    let mut out = Vec::with_capacity(9 + len.len() + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&hash[..4]);
    out.push(CHUNK_CHANGE);
    out.extend_from_slice(&len);
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, AutoCommit, Change, ROOT};

    fn change(actor: &ActorId, deps_from: Option<&mut AutoCommit>) -> (AutoCommit, Change) {
        let mut doc = match deps_from {
            Some(d) => d.fork().with_actor(actor.clone()),
            None => AutoCommit::new().with_actor(actor.clone()),
        };
        let v = format!("पानी का स्तर {}", doc.get_heads().len());
        doc.put(ROOT, "k", v).unwrap();
        let hash = doc
            .commit_with(CommitOptions::default().with_time(0))
            .unwrap();
        let c = doc.get_change_by_hash(&hash).unwrap().clone();
        (doc, c)
    }

    #[test]
    fn round_trips_with_and_without_dependencies() {
        let a = ActorId::from([7u8; 16]);
        let b = ActorId::from([9u8; 16]);
        let (mut d1, c1) = change(&a, None);
        let (_, c2) = change(&b, Some(&mut d1));
        for c in [c1, c2] {
            let actor = c.actor_id().to_bytes().to_vec();
            let wire = strip(c.raw_bytes(), &actor).unwrap();
            assert!(wire.len() + 25 <= c.raw_bytes().len());
            let back = restore(&wire, &actor).unwrap();
            assert_eq!(back, c.raw_bytes());
            let parsed = Change::try_from(back.as_slice()).unwrap();
            assert_eq!(parsed.hash(), c.hash());
        }
    }

    #[test]
    fn another_actor_is_not_stripped_and_restores_to_a_different_change() {
        let a = ActorId::from([7u8; 16]);
        let (_, c) = change(&a, None);
        assert_eq!(
            strip(c.raw_bytes(), &[8u8; 16]),
            Err(StripError::OtherActor)
        );
        let wire = strip(c.raw_bytes(), a.to_bytes()).unwrap();
        // Restored under someone else's actor the bytes (and so the hash) differ: a change
        // cannot be passed off as another author's.
        let other = restore(&wire, &[8u8; 16]).unwrap();
        let parsed = Change::try_from(other.as_slice()).unwrap();
        assert_ne!(parsed.hash(), c.hash());
        assert_eq!(parsed.actor_id().to_bytes(), &[8u8; 16]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(strip(b"", &[1]), Err(StripError::NotAChange));
        assert_eq!(strip(&[0u8; 40], &[1]), Err(StripError::NotAChange));
        assert!(restore(&[], &[1]).is_err());
        // A dependency count far beyond the bytes present.
        assert!(restore(&[0xff, 0xff, 0xff, 0xff, 0x0f], &[1]).is_err());
        assert!(restore(&[0xff; 11], &[1]).is_err());
        // Two dependencies announced, one present.
        let mut w = vec![2u8];
        w.extend_from_slice(&[0u8; 32]);
        assert!(restore(&w, &[1]).is_err());
        // Anything that restores is still parsed (and refused) by Automerge, not trusted.
        let r = restore(&[0, 1, 2, 3], &[1; 16]).unwrap();
        assert!(Change::try_from(r.as_slice()).is_err());
    }
}
