//! Vaarta's Bluetooth LE link layer, sans-IO: everything about a Bluetooth link that does
//! not touch a radio. A radio adapter (bluer peripheral, btleplug central: the later `ble`
//! feature) is a thin driver: it hands every GATT write/notification value or L2CAP SDU to
//! [`Link::handle_packet`], writes out what [`Link::poll_transmit`] gives it, and passes the
//! engine frames of [`Event::Frame`] to `vaarta_engine::Engine::handle_frame` — the engine
//! sees a Bluetooth link like any other link.
//!
//! Layers, bottom up, one module each:
//!
//! * [`frag`]: a *fragment* is one ATT payload (`MTU − 3` bytes); fragments carry *records*
//!   one at a time; bounded reassembly.
//! * [`noise`]: a record is a Noise XX message; the channel is bound to the device key.
//! * *chunks* (here): a transport record's plaintext is one chunk of an engine frame:
//!
//!   ```text
//!   chunk  = header:u8 [frame_len:varint if FIRST] data:1..
//!   header = FIRST(bit 7) | LAST(bit 6) | lane (bits 0..2: 0 FLASH .. 4 bulk; 7 = auth)
//!   ```
//!
//!   At most one partial frame per lane (five), all partial and undelivered frames within
//!   [`Config::max_rx_bytes`], reserved from the declared length before any byte arrives.
//! * [`sched`]: which lane supplies the next chunk (FLASH first).
//! * [`advert`], [`manager`]: rotating advert data, the dial tie-break, link limits and the
//!   scan duty cycle.
//!
//! **Ordering.** Frames on one lane arrive in the order sent; frames on different lanes may
//! overtake each other (that is the point of the lanes). The engine is built for that
//! (protocol 6): pushes and acknowledgements are numbered per precedence lane, so a FLASH push
//! that overtook routine ones is taken and each lane is acknowledged on its own. A driver puts
//! each engine frame on the lane [`sched::lane_of`] names (the engine's
//! `wire::frame_priority`: handshake and acknowledgements first, pushes by precedence,
//! reconciliation last) and keeps one pending queue per lane, so a FLASH frame never waits
//! behind bulk in the driver either.
//!
//! **Driving a [`Link`]** (quinn's order): after every `handle_packet` / `handle_timeout` /
//! `send`, drain [`Link::poll_event`] then [`Link::poll_transmit`], and arm one timer at
//! [`Link::poll_timeout`]. Any error is final: the link is dead, every later call returns
//! [`Error::Closed`], and the driver disconnects and reports the link down to the engine.
//! Frames that arrived whole before the error are still delivered by `poll_event`.

pub mod advert;
#[cfg(feature = "ble")]
pub mod driver;
pub mod frag;
pub mod manager;
pub mod noise;
pub mod sched;

use std::collections::VecDeque;

use thiserror::Error;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::DeviceId;

pub use frag::FragError;
pub use noise::{NoiseError, Role};
pub use sched::Priority;

const FIRST: u8 = 0x80;
const LAST: u8 = 0x40;
const LANE_MASK: u8 = 0x07;
/// Bytes a first chunk reserves for its frame-length varint (frames ≤ 2 MiB).
const LEN_RESERVE: usize = 3;

/// Per-link limits. Defaults and where they come from are on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The ATT MTU until the driver reports the negotiated one ([`Link::set_mtu`]). 23 is
    /// the LE default before an MTU exchange.
    pub mtu: u16,
    /// Fragments per chunk (record): the longest a FLASH frame waits behind a bulk chunk
    /// already on the air. 8 at MTU 185 costs 1.2 % in tags and headers (measured,
    /// `examples/ble_goodput.rs`).
    pub chunk_fragments: usize,
    /// Largest frame accepted or sent: the engine's frame limit.
    pub max_frame_bytes: usize,
    /// Received bytes held: partial frames (reserved at their declared length) plus whole
    /// frames not yet taken by [`Link::poll_event`]. Two largest frames: a FLASH frame can
    /// arrive while a bulk frame is half received.
    pub max_rx_bytes: usize,
    /// Send budget per lane (FLASH .. bulk); past it [`Link::send`] pushes back. A lane also
    /// takes one frame when empty. A guess: 64 KiB of FLASH is hundreds of alerts; the
    /// others hold about one largest frame, bulk four.
    pub lane_budget: [usize; sched::LANES],
    /// A record must arrive within this (bitchat's reassembly timeout).
    pub reassembly_timeout_ms: u64,
    /// Each step of the handshake (the first record, then every next one until the peer's
    /// auth record) must arrive within this of the last one received (one round trip), and the whole handshake within
    /// [`HANDSHAKE_STEPS`] times it. Per step, not in total: a slow phone (or an emulated
    /// one, `tests/ble-vm`) that makes progress is not cut off, one that stalls is. A guess:
    /// three round trips at ~30 ms on a good link, seconds on a poor one.
    pub handshake_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        let max = vaarta_engine::MAX_FRAME_BYTES;
        Self {
            mtu: frag::MIN_MTU,
            chunk_fragments: 8,
            max_frame_bytes: max,
            max_rx_bytes: 2 * max,
            lane_budget: [64 << 10, max, max, max, 4 * max],
            reassembly_timeout_ms: frag::DEFAULT_REASSEMBLY_TIMEOUT_MS,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Records a side receives until its link is up (the responder: XX messages 1 and 3 and
/// the initiator's auth; the initiator: message 2 and the responder's auth), plus the wait
/// for the first: the handshake's whole budget is this many [`Config::handshake_timeout_ms`].
pub const HANDSHAKE_STEPS: u64 = 4;

/// A malformed chunk (after decryption: the peer completed a handshake, and is still not
/// trusted).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("chunk header {0:#04x} has reserved bits or an unknown lane")]
    BadHeader(u8),
    #[error("empty chunk")]
    Empty,
    #[error("frame claims {claimed} bytes, over the {max}-byte frame limit")]
    TooLarge { claimed: u64, max: usize },
    #[error("bad frame length")]
    BadLength,
    #[error("a new frame started on lane {0} before the last one ended")]
    Interrupted(u8),
    #[error("continuation chunk on lane {0} with no frame under way")]
    Orphan(u8),
    #[error("chunk data past the frame's declared length")]
    Overrun,
    #[error("frame ended short of its declared length")]
    Short,
    #[error("receive buffer full: {held} + {claimed} bytes over {max}")]
    BufferFull {
        held: usize,
        claimed: usize,
        max: usize,
    },
}

/// Why a link was cut.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("fragment: {0}")]
    Frag(#[from] FragError),
    #[error("secure channel: {0}")]
    Noise(#[from] NoiseError),
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handshake not complete within {0} ms")]
    HandshakeTimeout(u64),
    #[error("bad link configuration: {0}")]
    Config(&'static str),
    #[error("link closed")]
    Closed,
}

/// Why [`Link::send`] did not queue a frame.
#[derive(Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// Back-pressure: the lane is over budget. The frame is handed back; send it again
    /// after [`Link::poll_transmit`] has drained some ([`Link::has_room`]).
    #[error("lane full")]
    Full(Vec<u8>),
    #[error("frame of {0} bytes over the frame limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("link closed")]
    Closed,
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(frame) => write!(f, "Full({} bytes)", frame.len()),
            SendError::TooLarge(n) => write!(f, "TooLarge({n})"),
            SendError::Empty => f.write_str("Empty"),
            SendError::Closed => f.write_str("Closed"),
        }
    }
}

/// What the link tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer proved its device key: report the link up to the engine with these
    /// transport ids (`LinkUp::local_tid`, `remote_tid`), the link's Noise statics.
    Established {
        device: DeviceId,
        local_tid: Vec<u8>,
        remote_tid: Vec<u8>,
    },
    /// One engine frame, whole, for `Engine::handle_frame`.
    Frame { priority: Priority, frame: Vec<u8> },
}

#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    total: usize,
}

/// Frame reassembly from chunks, one partial frame per lane.
#[derive(Debug)]
struct RxFrames {
    partial: [Option<Partial>; sched::LANES],
    /// Declared lengths of partial frames plus lengths of undelivered ones.
    held: usize,
    max_rx: usize,
    max_frame: usize,
}

impl RxFrames {
    fn handle_chunk(&mut self, pt: &[u8]) -> Result<Option<(Priority, Vec<u8>)>, FrameError> {
        let (&h, rest) = pt.split_first().ok_or(FrameError::Empty)?;
        let lane = h & LANE_MASK;
        let priority = match Priority::from_lane(lane) {
            Some(p) if h & !(FIRST | LAST | LANE_MASK) == 0 => p,
            _ => return Err(FrameError::BadHeader(h)),
        };
        let slot = &mut self.partial[priority.lane()];
        let data = if h & FIRST != 0 {
            if slot.is_some() {
                return Err(FrameError::Interrupted(lane));
            }
            let (total, used) = frag::get_varint(rest).ok_or(FrameError::BadLength)?;
            if total > self.max_frame as u64 {
                return Err(FrameError::TooLarge {
                    claimed: total,
                    max: self.max_frame,
                });
            }
            if total == 0 {
                return Err(FrameError::BadLength);
            }
            let total = total as usize;
            if self.held + total > self.max_rx {
                return Err(FrameError::BufferFull {
                    held: self.held,
                    claimed: total,
                    max: self.max_rx,
                });
            }
            self.held += total;
            *slot = Some(Partial {
                buf: Vec::with_capacity(total),
                total,
            });
            &rest[used..]
        } else {
            if slot.is_none() {
                return Err(FrameError::Orphan(lane));
            }
            rest
        };
        if data.is_empty() {
            return Err(FrameError::Empty);
        }
        let p = slot.as_mut().ok_or(FrameError::Orphan(lane))?;
        if p.buf.len() + data.len() > p.total {
            return Err(FrameError::Overrun);
        }
        p.buf.extend_from_slice(data);
        if h & LAST != 0 {
            if p.buf.len() != p.total {
                return Err(FrameError::Short);
            }
            return Ok(slot.take().map(|p| (priority, p.buf)));
        }
        Ok(None)
    }
}

/// One Bluetooth link, either role, over GATT or L2CAP (the same bytes on both).
#[derive(Debug)]
pub struct Link {
    config: Config,
    noise: noise::Channel,
    tx: frag::Fragmenter,
    rx: frag::Reassembler,
    sched: sched::Scheduler,
    frames: RxFrames,
    events: VecDeque<Event>,
    announced: bool,
    handshake_deadline: u64,
    /// The handshake's last possible deadline ([`HANDSHAKE_STEPS`] steps).
    handshake_cap: u64,
    dead: Option<Error>,
    /// Fragments and bytes handed to the driver (before the ATT header).
    pub packets_out: u64,
    pub bytes_out: u64,
}

impl Link {
    /// A new link. `seed`: fresh randomness for this link's Noise keys. `expect`: the device
    /// the caller dialled, if it knows it (any other is refused).
    pub fn new(
        role: Role,
        identity: &Identity,
        expect: Option<DeviceId>,
        config: Config,
        seed: [u8; 32],
        now_ms: u64,
    ) -> Result<Self, Error> {
        if config.chunk_fragments == 0 {
            return Err(Error::Config("chunk_fragments must be at least 1"));
        }
        if config.max_frame_bytes > config.max_rx_bytes {
            return Err(Error::Config("max_rx_bytes must hold one largest frame"));
        }
        Ok(Self {
            noise: noise::Channel::new(role, identity, expect, seed)?,
            tx: frag::Fragmenter::new(config.mtu)?,
            rx: frag::Reassembler::new(config.mtu, config.reassembly_timeout_ms)?,
            sched: sched::Scheduler::new(config.lane_budget),
            frames: RxFrames {
                partial: Default::default(),
                held: 0,
                max_rx: config.max_rx_bytes,
                max_frame: config.max_frame_bytes,
            },
            events: VecDeque::new(),
            announced: false,
            handshake_deadline: now_ms.saturating_add(config.handshake_timeout_ms),
            handshake_cap: now_ms
                .saturating_add(config.handshake_timeout_ms.saturating_mul(HANDSHAKE_STEPS)),
            dead: None,
            packets_out: 0,
            bytes_out: 0,
            config,
        })
    }

    /// Why the link died, if it did.
    pub fn error(&self) -> Option<&Error> {
        self.dead.as_ref()
    }

    /// The peer's device, once it proved it.
    pub fn remote_device(&self) -> Option<DeviceId> {
        self.noise.established()
    }

    /// Received bytes held: at most [`frag::MAX_RECORD_BYTES`] + [`Config::max_rx_bytes`].
    pub fn rx_buffered(&self) -> usize {
        self.rx.buffered() + self.frames.held
    }

    /// The memory bound [`Self::rx_buffered`] never passes.
    pub fn rx_bound(&self) -> usize {
        frag::MAX_RECORD_BYTES + self.config.max_rx_bytes
    }

    /// The ATT payload size now in use.
    pub fn payload(&self) -> usize {
        self.tx.payload()
    }

    fn fail(&mut self, e: Error) -> Error {
        if self.dead.is_none() {
            self.dead = Some(e.clone());
        }
        e
    }

    fn alive(&self) -> Result<(), Error> {
        if self.dead.is_some() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The MTU the stack negotiated. Refused (the link cut) while a record is half sent or
    /// half received: the ATT MTU exchange happens once, at connection start.
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), Error> {
        self.alive()?;
        let r = self.tx.set_mtu(mtu).and_then(|()| self.rx.set_mtu(mtu));
        r.map_err(|e| self.fail(e.into()))
    }

    /// Queues an engine frame on a lane.
    pub fn send(&mut self, priority: Priority, frame: Vec<u8>) -> Result<(), SendError> {
        if self.dead.is_some() {
            return Err(SendError::Closed);
        }
        if frame.is_empty() {
            return Err(SendError::Empty);
        }
        if frame.len() > self.config.max_frame_bytes {
            return Err(SendError::TooLarge(frame.len()));
        }
        self.sched.push(priority, frame).map_err(SendError::Full)
    }

    /// Whether [`Self::send`] would take a frame of `len` bytes on `priority` now.
    pub fn has_room(&self, priority: Priority, len: usize) -> bool {
        self.sched.has_room(priority, len)
    }

    /// Bytes queued on a lane and not yet on the air.
    pub fn queued(&self, priority: Priority) -> usize {
        self.sched.queued(priority)
    }

    /// One GATT write/notification value or L2CAP SDU from the peer.
    pub fn handle_packet(&mut self, packet: &[u8], now_ms: u64) -> Result<(), Error> {
        self.alive()?;
        self.on_packet(packet, now_ms).map_err(|e| self.fail(e))
    }

    fn on_packet(&mut self, packet: &[u8], now_ms: u64) -> Result<(), Error> {
        let Some(record) = self.rx.handle_fragment(packet, now_ms)? else {
            return Ok(());
        };
        let chunk = self.noise.handle_record(&record)?;
        if !self.announced {
            // Progress: the next step gets a full step's time, within the whole budget.
            self.handshake_deadline = now_ms
                .saturating_add(self.config.handshake_timeout_ms)
                .min(self.handshake_cap);
        }
        if !self.announced
            && let Some(device) = self.noise.established()
        {
            self.announced = true;
            self.events.push_back(Event::Established {
                device,
                local_tid: self.noise.local_static().to_vec(),
                remote_tid: self.noise.remote_static().to_vec(),
            });
        }
        if let Some(pt) = chunk
            && let Some((priority, frame)) = self.frames.handle_chunk(&pt)?
        {
            self.events.push_back(Event::Frame { priority, frame });
        }
        Ok(())
    }

    /// The next event. Taking a frame frees its bytes in the receive budget.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        if let Event::Frame { frame, .. } = &e {
            self.frames.held -= frame.len();
        }
        Some(e)
    }

    /// The next ATT payload / L2CAP SDU to write, at most [`Self::payload`] bytes.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.dead.is_some() {
            return None;
        }
        if self.tx.idle() {
            let record = if let Some(r) = self.noise.poll_record() {
                r
            } else if self.noise.established().is_some() {
                match self.next_record()? {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail(e);
                        return None;
                    }
                }
            } else {
                return None;
            };
            self.tx.start(record);
        }
        let f = self.tx.next_fragment()?;
        self.packets_out += 1;
        self.bytes_out += f.len() as u64;
        Some(f)
    }

    /// Seals the scheduler's next chunk.
    fn next_record(&mut self) -> Option<Result<Vec<u8>, Error>> {
        let cap = self.tx.record_capacity(self.config.chunk_fragments);
        let plain = cap
            .saturating_sub(noise::TAG_BYTES)
            .clamp(32, noise::MAX_CHUNK_PLAINTEXT);
        let c = self.sched.next_chunk(plain - 1 - LEN_RESERVE, plain - 1)?;
        let mut pt = Vec::with_capacity(plain);
        let mut h = c.priority.lane() as u8;
        if c.total.is_some() {
            h |= FIRST;
        }
        if c.last {
            h |= LAST;
        }
        pt.push(h);
        if let Some(total) = c.total {
            frag::put_varint(&mut pt, total as u64);
        }
        pt.extend_from_slice(&c.data);
        Some(self.noise.encrypt(&pt).map_err(Error::from))
    }

    /// Whether anything waits to be sent.
    pub fn wants_transmit(&self) -> bool {
        self.dead.is_none()
            && (!self.tx.idle()
                || self.noise.has_records()
                || (self.noise.established().is_some() && !self.sched.is_empty()))
    }

    /// The one deadline the driver arms a timer for.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.dead.is_some() {
            return None;
        }
        let hs = (!self.announced).then_some(self.handshake_deadline);
        match (hs, self.rx.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), Error> {
        self.alive()?;
        if !self.announced && now_ms >= self.handshake_deadline {
            let e = Error::HandshakeTimeout(self.config.handshake_timeout_ms);
            return Err(self.fail(e));
        }
        self.rx
            .handle_timeout(now_ms)
            .map_err(|e| self.fail(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx() -> RxFrames {
        RxFrames {
            partial: Default::default(),
            held: 0,
            max_rx: 1000,
            max_frame: 600,
        }
    }

    fn chunk(h: u8, total: Option<u64>, data: &[u8]) -> Vec<u8> {
        let mut c = vec![h];
        if let Some(t) = total {
            frag::put_varint(&mut c, t);
        }
        c.extend_from_slice(data);
        c
    }

    #[test]
    fn chunks_build_frames_per_lane_and_lies_are_refused() {
        let mut r = rx();
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | 4, Some(4), &[1, 2])),
            Ok(None)
        );
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | LAST, Some(1), &[9])),
            Ok(Some((Priority::Flash, vec![9])))
        );
        assert_eq!(
            r.handle_chunk(&chunk(LAST | 4, None, &[3, 4])),
            Ok(Some((Priority::Bulk, vec![1, 2, 3, 4])))
        );
        assert_eq!(r.held, 5, "delivered frames stay counted until taken");
        let mut r = rx();
        assert_eq!(
            r.handle_chunk(&chunk(0x08, None, &[1])),
            Err(FrameError::BadHeader(0x08))
        );
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | 5, Some(1), &[1])),
            Err(FrameError::BadHeader(0x85))
        );
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | AUTH_LANE, Some(1), &[1])),
            Err(FrameError::BadHeader(0x87))
        );
        assert_eq!(
            r.handle_chunk(&chunk(3, None, &[1])),
            Err(FrameError::Orphan(3))
        );
        assert_eq!(r.handle_chunk(&[]), Err(FrameError::Empty));
        assert_eq!(
            r.handle_chunk(&chunk(FIRST, Some(1 << 32), &[1])),
            Err(FrameError::TooLarge {
                claimed: 1 << 32,
                max: 600
            })
        );
        assert_eq!(
            r.handle_chunk(&chunk(FIRST, Some(0), &[1])),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | LAST, Some(3), &[1])),
            Err(FrameError::Short)
        );
        let mut r = rx();
        assert_eq!(
            r.handle_chunk(&chunk(FIRST, Some(2), &[1, 2, 3])),
            Err(FrameError::Overrun)
        );
        let mut r = rx();
        r.handle_chunk(&chunk(FIRST, Some(10), &[1])).unwrap();
        assert_eq!(
            r.handle_chunk(&chunk(FIRST, Some(10), &[1])),
            Err(FrameError::Interrupted(0))
        );
        assert_eq!(r.handle_chunk(&chunk(0, None, &[])), Err(FrameError::Empty));
    }

    #[test]
    fn partial_frames_on_all_lanes_stay_within_the_receive_budget() {
        let mut r = rx();
        r.handle_chunk(&chunk(FIRST, Some(600), &[1])).unwrap();
        r.handle_chunk(&chunk(FIRST | 1, Some(400), &[1])).unwrap();
        assert_eq!(
            r.handle_chunk(&chunk(FIRST | 2, Some(1), &[1])),
            Err(FrameError::BufferFull {
                held: 1000,
                claimed: 1,
                max: 1000
            })
        );
    }

    const AUTH_LANE: u8 = noise::AUTH;
}
