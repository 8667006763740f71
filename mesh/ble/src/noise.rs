//! The secure channel: Noise XX (`Noise_XX_25519_ChaChaPoly_BLAKE2s`, via `snow`), bound to
//! the device's Ed25519 key. Bluetooth pairing is not used or relied on.
//!
//! Each link uses a **fresh X25519 static key** (derived from the caller's seed), so the Noise
//! statics identify nothing beyond the link; they are the transport ids the engine binds its
//! hello proof to ([`Channel::local_static`], [`Channel::remote_static`]). After the three
//! handshake messages each side sends one *auth* record as its first transport message:
//!
//! ```text
//! auth = 0x07 ‖ device key (32, Ed25519) ‖ Ed25519(device, "vaarta-ble/1 auth" ‖ role ‖ h)
//! ```
//!
//! where `h` is the final handshake hash (it covers the prologue, both ephemerals and both
//! statics) and `role` is 0 for the initiator, 1 for the responder (no reflection). A relay
//! that splices two handshakes has two different `h`, so a signature it forwards does not
//! verify (`splicing_two_handshakes_is_refused`). Nothing but the auth record is accepted
//! before the peer's auth verified, and no frame is sent before it either.
//!
//! **Nonces** are snow's implicit 64-bit counters. Records travel over one ordered, reliable
//! channel (LE link-layer acknowledgements; ATT and L2CAP CoC keep order) and a session never
//! outlives its connection (a reconnect is a new handshake), so both sides always agree on
//! the counter: no explicit nonce bytes, no replay window. A replayed, dropped, reordered or
//! altered record fails Poly1305 and cuts the link. The counter cannot wrap: 2^64 records.
//!
//! Transport records carry at most [`MAX_CHUNK_PLAINTEXT`] bytes (+16-byte tag): an engine
//! frame is sent as several chunks ([`crate::sched`]).

use std::collections::VecDeque;

use thiserror::Error;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::DeviceId;

pub const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
pub const PROLOGUE: &[u8] = b"vaarta-ble/1";
/// Poly1305 tag on every transport record.
pub const TAG_BYTES: usize = 16;
/// Plaintext of one transport record, chunk header included.
pub const MAX_CHUNK_PLAINTEXT: usize = 4096;
/// The header byte of the auth record (a lane no frame uses).
pub const AUTH: u8 = 0x07;
const AUTH_CONTEXT: &[u8] = b"vaarta-ble/1 auth";
const AUTH_LEN: usize = 1 + 32 + 64;
/// The largest handshake message (XX message 2: e, s + tag, empty payload tag).
const MAX_HANDSHAKE: usize = 32 + 48 + 16;

/// Who dialled: the central (GATT client / L2CAP connector) initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }

    fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoiseError {
    #[error("Noise handshake message refused")]
    Handshake,
    #[error("record does not decrypt (tampered, replayed, reordered or lost)")]
    Decrypt,
    #[error("first transport record is not a well-formed auth record")]
    NotAuthenticated,
    #[error("device signature over the handshake does not verify")]
    BadSignature,
    #[error("peer is device {got}, expected {expected}")]
    WrongDevice { expected: DeviceId, got: DeviceId },
    #[error("chunk of {0} bytes over the record limit")]
    TooLarge(usize),
    #[error("channel not established")]
    NotEstablished,
}

/// snow's primitives with randomness from the caller's seed (sans-IO, reproducible).
fn builder(seed: [u8; 32]) -> snow::Builder<'static> {
    vaarta_sync::crypto::noise_builder(PATTERN, seed)
}

fn auth_message(role: Role, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(AUTH_CONTEXT.len() + 33);
    m.extend_from_slice(AUTH_CONTEXT);
    m.push(role.byte());
    m.extend_from_slice(hash);
    m
}

/// Tests: builds the auth plaintext from the handshake hash.
#[cfg(test)]
type Forge = Box<dyn Fn(&[u8; 32]) -> Vec<u8> + Send>;

/// One side of one link's secure channel.
pub struct Channel {
    role: Role,
    identity: Identity,
    expect: Option<DeviceId>,
    local_static: [u8; 32],
    remote_static: [u8; 32],
    hash: [u8; 32],
    hs: Option<Box<snow::HandshakeState>>,
    ts: Option<Box<snow::TransportState>>,
    peer: Option<DeviceId>,
    /// Handshake and auth records to send before anything else.
    out: VecDeque<Vec<u8>>,
    #[cfg(test)]
    peer_auth: Vec<u8>,
    /// Tests: what to send instead of the real auth record (given the handshake hash).
    #[cfg(test)]
    forge: Option<Forge>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("role", &self.role)
            .field("device", &self.identity.device_id())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// `seed` must be fresh randomness from the caller for every link: it becomes the link's
    /// X25519 static key and the ephemeral. `expect`: the device the caller dialled, if it
    /// knows it; any other device is refused.
    pub fn new(
        role: Role,
        identity: &Identity,
        expect: Option<DeviceId>,
        seed: [u8; 32],
    ) -> Result<Self, NoiseError> {
        let derive = |ctx: &str| blake3::derive_key(ctx, &seed);
        let keys = builder(derive("vaarta-ble/1 link static"))
            .generate_keypair()
            .map_err(|_| NoiseError::Handshake)?;
        let b = builder(derive("vaarta-ble/1 link ephemeral"))
            .local_private_key(&keys.private)
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(|_| NoiseError::Handshake)?;
        let hs = match role {
            Role::Initiator => b.build_initiator(),
            Role::Responder => b.build_responder(),
        }
        .map_err(|_| NoiseError::Handshake)?;
        let local_static =
            <[u8; 32]>::try_from(keys.public.as_slice()).map_err(|_| NoiseError::Handshake)?;
        let mut c = Self {
            role,
            identity: identity.clone(),
            expect,
            local_static,
            remote_static: [0; 32],
            hash: [0; 32],
            hs: Some(Box::new(hs)),
            ts: None,
            peer: None,
            out: VecDeque::new(),
            #[cfg(test)]
            peer_auth: Vec::new(),
            #[cfg(test)]
            forge: None,
        };
        if role == Role::Initiator {
            c.write_handshake()?;
        }
        Ok(c)
    }

    /// The peer's device, once its auth record verified.
    pub fn established(&self) -> Option<DeviceId> {
        self.peer
    }

    /// Our X25519 static for this link (our transport id).
    pub fn local_static(&self) -> [u8; 32] {
        self.local_static
    }

    /// The peer's X25519 static for this link, authenticated by the handshake.
    pub fn remote_static(&self) -> [u8; 32] {
        self.remote_static
    }

    /// The final handshake hash (all zero until the handshake finished).
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The next handshake or auth record to send.
    pub fn poll_record(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn has_records(&self) -> bool {
        !self.out.is_empty()
    }

    /// Encrypts one chunk (only once the peer is authenticated).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.peer.is_none() {
            return Err(NoiseError::NotEstablished);
        }
        self.seal(plaintext)
    }

    fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if plaintext.len() > MAX_CHUNK_PLAINTEXT {
            return Err(NoiseError::TooLarge(plaintext.len()));
        }
        let ts = self.ts.as_mut().ok_or(NoiseError::NotEstablished)?;
        let mut out = vec![0u8; plaintext.len() + TAG_BYTES];
        let n = ts
            .write_message(plaintext, &mut out)
            .map_err(|_| NoiseError::Handshake)?;
        out.truncate(n);
        Ok(out)
    }

    fn write_handshake(&mut self) -> Result<(), NoiseError> {
        let hs = self.hs.as_mut().ok_or(NoiseError::Handshake)?;
        let mut buf = vec![0u8; MAX_HANDSHAKE];
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|_| NoiseError::Handshake)?;
        buf.truncate(n);
        self.out.push_back(buf);
        if hs.is_handshake_finished() {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), NoiseError> {
        let hs = self.hs.take().ok_or(NoiseError::Handshake)?;
        self.hash =
            <[u8; 32]>::try_from(hs.get_handshake_hash()).map_err(|_| NoiseError::Handshake)?;
        self.remote_static = hs
            .get_remote_static()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or(NoiseError::Handshake)?;
        self.ts = Some(Box::new(
            hs.into_transport_mode()
                .map_err(|_| NoiseError::Handshake)?,
        ));
        #[cfg(test)]
        if let Some(forge) = self.forge.take() {
            let rec = self.seal(&forge(&self.hash))?;
            self.out.push_back(rec);
            return Ok(());
        }
        let sig = self.identity.sign(&auth_message(self.role, &self.hash));
        let mut auth = Vec::with_capacity(AUTH_LEN);
        auth.push(AUTH);
        auth.extend_from_slice(&self.identity.device_id().0);
        auth.extend_from_slice(&sig);
        let rec = self.seal(&auth)?;
        self.out.push_back(rec);
        Ok(())
    }

    /// One record in. Returns the plaintext of a chunk once the channel is established;
    /// handshake and auth records return `None` (and may queue records to send).
    pub fn handle_record(&mut self, rec: &[u8]) -> Result<Option<Vec<u8>>, NoiseError> {
        if let Some(hs) = self.hs.as_mut() {
            if rec.len() > MAX_HANDSHAKE {
                return Err(NoiseError::Handshake);
            }
            let mut buf = vec![0u8; MAX_HANDSHAKE];
            let n = hs
                .read_message(rec, &mut buf)
                .map_err(|_| NoiseError::Handshake)?;
            if n != 0 {
                return Err(NoiseError::Handshake);
            }
            if hs.is_handshake_finished() {
                self.finish()?;
            } else {
                self.write_handshake()?;
            }
            return Ok(None);
        }
        let ts = self.ts.as_mut().ok_or(NoiseError::Handshake)?;
        if rec.len() < TAG_BYTES || rec.len() > MAX_CHUNK_PLAINTEXT + TAG_BYTES {
            return Err(NoiseError::Decrypt);
        }
        let mut buf = vec![0u8; rec.len()];
        let n = ts
            .read_message(rec, &mut buf)
            .map_err(|_| NoiseError::Decrypt)?;
        buf.truncate(n);
        if self.peer.is_some() {
            return Ok(Some(buf));
        }
        if buf.len() != AUTH_LEN || buf[0] != AUTH {
            return Err(NoiseError::NotAuthenticated);
        }
        let device = DeviceId(
            buf[1..33]
                .try_into()
                .map_err(|_| NoiseError::NotAuthenticated)?,
        );
        let sig: [u8; 64] = buf[33..]
            .try_into()
            .map_err(|_| NoiseError::NotAuthenticated)?;
        device
            .verify(&auth_message(self.role.peer(), &self.hash), &sig)
            .map_err(|_| NoiseError::BadSignature)?;
        if let Some(expected) = self.expect
            && expected != device
        {
            return Err(NoiseError::WrongDevice {
                expected,
                got: device,
            });
        }
        #[cfg(test)]
        {
            self.peer_auth = buf;
        }
        self.peer = Some(device);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(n: u8) -> Identity {
        Identity::from_seed([n; 32])
    }

    /// Moves records between two channels until neither has any.
    fn pump(a: &mut Channel, b: &mut Channel) -> Result<(), NoiseError> {
        loop {
            let mut moved = false;
            while let Some(r) = a.poll_record() {
                b.handle_record(&r)?;
                moved = true;
            }
            while let Some(r) = b.poll_record() {
                a.handle_record(&r)?;
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn pair(expect_b: Option<DeviceId>) -> (Channel, Channel, Result<(), NoiseError>) {
        let mut a = Channel::new(Role::Initiator, &ident(1), expect_b, [10; 32]).unwrap();
        let mut b = Channel::new(Role::Responder, &ident(2), None, [20; 32]).unwrap();
        let r = pump(&mut a, &mut b);
        (a, b, r)
    }

    #[test]
    fn handshake_binds_both_devices_and_the_link_keys() {
        let (mut a, mut b, r) = pair(Some(ident(2).device_id()));
        r.unwrap();
        assert_eq!(a.established(), Some(ident(2).device_id()));
        assert_eq!(b.established(), Some(ident(1).device_id()));
        assert_eq!(a.remote_static(), b.local_static());
        assert_eq!(b.remote_static(), a.local_static());
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        // Fresh statics per link, never the device's own X25519 key.
        assert_ne!(Some(a.local_static()), ident(1).device_id().x25519_public());
        let c = Channel::new(Role::Initiator, &ident(1), None, [11; 32]).unwrap();
        assert_ne!(a.local_static(), c.local_static());
        let rec = a.encrypt(b"hello").unwrap();
        assert_eq!(rec.len(), 5 + TAG_BYTES);
        assert_eq!(b.handle_record(&rec).unwrap().unwrap(), b"hello");
    }

    #[test]
    fn a_wrong_device_is_refused_when_one_is_expected() {
        let (_, _, r) = pair(Some(ident(3).device_id()));
        assert_eq!(
            r,
            Err(NoiseError::WrongDevice {
                expected: ident(3).device_id(),
                got: ident(2).device_id()
            })
        );
    }

    #[test]
    fn splicing_two_handshakes_is_refused() {
        // I dials M believing it is R; M dials R and forwards R's auth to I.
        let mut i = Channel::new(Role::Initiator, &ident(1), None, [1; 32]).unwrap();
        let mut m_resp = Channel::new(Role::Responder, &ident(9), None, [2; 32]).unwrap();
        let mut m_init = Channel::new(Role::Initiator, &ident(9), None, [3; 32]).unwrap();
        let mut r = Channel::new(Role::Responder, &ident(2), None, [4; 32]).unwrap();
        pump(&mut m_init, &mut r).unwrap();
        assert_eq!(m_init.established(), Some(ident(2).device_id()));
        let stolen = m_init.peer_auth.clone();
        // Handshake I <-> M, with M's own auth replaced by R's.
        m_resp.forge = Some(Box::new(move |_| stolen.clone()));
        assert_eq!(pump(&mut i, &mut m_resp), Err(NoiseError::BadSignature));
        assert_eq!(i.established(), None);
    }

    #[test]
    fn tampered_replayed_and_unauthenticated_records_are_refused() {
        let (mut a, mut b, r) = pair(None);
        r.unwrap();
        let rec = a.encrypt(b"one").unwrap();
        let mut bad = rec.clone();
        bad[0] ^= 1;
        assert_eq!(b.handle_record(&bad), Err(NoiseError::Decrypt));
        let (mut a, mut b, _) = pair(None);
        let rec = a.encrypt(b"one").unwrap();
        b.handle_record(&rec).unwrap();
        assert_eq!(b.handle_record(&rec), Err(NoiseError::Decrypt), "replay");
        // A chunk before the auth record.
        let mut a = Channel::new(Role::Initiator, &ident(1), None, [10; 32]).unwrap();
        let mut b = Channel::new(Role::Responder, &ident(2), None, [20; 32]).unwrap();
        a.forge = Some(Box::new(|_| vec![0, 1, 2]));
        assert_eq!(pump(&mut a, &mut b), Err(NoiseError::NotAuthenticated));
        assert_eq!(a.encrypt(b"x"), Err(NoiseError::NotEstablished));
        // Garbage handshake.
        let mut b = Channel::new(Role::Responder, &ident(2), None, [20; 32]).unwrap();
        assert_eq!(b.handle_record(&[1; 200]), Err(NoiseError::Handshake));
    }

    #[test]
    fn a_reflected_auth_is_refused() {
        // B's own auth sent back to it does not verify: the role byte differs.
        let mut a = Channel::new(Role::Initiator, &ident(1), None, [10; 32]).unwrap();
        let mut b = Channel::new(Role::Responder, &ident(1), None, [20; 32]).unwrap();
        a.forge = Some(Box::new(|h| {
            let mut auth = vec![AUTH];
            auth.extend_from_slice(&ident(1).device_id().0);
            auth.extend_from_slice(&ident(1).sign(&auth_message(Role::Responder, h)));
            auth
        }));
        assert_eq!(pump(&mut a, &mut b), Err(NoiseError::BadSignature));
        // The same record with the right role verifies (the test can fail).
        let mut a = Channel::new(Role::Initiator, &ident(1), None, [10; 32]).unwrap();
        let mut b = Channel::new(Role::Responder, &ident(1), None, [20; 32]).unwrap();
        a.forge = Some(Box::new(|h| {
            let mut auth = vec![AUTH];
            auth.extend_from_slice(&ident(1).device_id().0);
            auth.extend_from_slice(&ident(1).sign(&auth_message(Role::Initiator, h)));
            auth
        }));
        assert_eq!(pump(&mut a, &mut b), Ok(()));
        assert_eq!(b.established(), Some(ident(1).device_id()));
    }
}
