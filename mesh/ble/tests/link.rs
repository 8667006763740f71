//! Two links over a simulated Bluetooth link in memory: MTU 23, 185 and 512, with loss,
//! reordering and duplication injected from a seeded generator; hostile peers that speak
//! the protocol but lie.

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use vaarta_ble::frag::{self, FragError, Fragmenter};
use vaarta_ble::noise::{self, Channel};
use vaarta_ble::{Config, Error, Event, FrameError, Link, NoiseError, Priority, Role, SendError};
use vaarta_sync::identity::Identity;

fn ident(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    loss: f64,
    dup: f64,
    reorder: f64,
}

struct Pair {
    a: Link,
    b: Link,
    now: u64,
    from_a: Vec<Event>,
    from_b: Vec<Event>,
    rng: ChaCha8Rng,
    faults: Faults,
    /// Packets each direction writes per step (the connection-event budget).
    burst: usize,
    packets: u64,
    /// Bytes on the air: every fragment plus its 3-byte ATT header.
    air_bytes: u64,
}

fn config(mtu: u16) -> Config {
    Config {
        mtu,
        ..Config::default()
    }
}

impl Pair {
    fn new(cfg: Config, seed: u64) -> Self {
        let a = Link::new(
            Role::Initiator,
            &ident(1),
            Some(ident(2).device_id()),
            cfg.clone(),
            [seed as u8; 32],
            0,
        )
        .unwrap();
        let b = Link::new(
            Role::Responder,
            &ident(2),
            None,
            cfg,
            [seed as u8 ^ 0x55; 32],
            0,
        )
        .unwrap();
        Self {
            a,
            b,
            now: 0,
            from_a: Vec::new(),
            from_b: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults: Faults::default(),
            burst: 4,
            packets: 0,
            air_bytes: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    fn carry(&mut self, batch: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in batch {
            self.packets += 1;
            self.air_bytes += (p.len() + frag::ATT_HEADER) as u64;
            if self.chance(self.faults.loss) {
                continue;
            }
            if self.chance(self.faults.dup) {
                out.push(p.clone());
            }
            out.push(p);
            let n = out.len();
            if n >= 2 && self.chance(self.faults.reorder) {
                out.swap(n - 1, n - 2);
            }
        }
        out
    }

    /// One step: each side writes up to `burst` packets, the other reads them.
    fn step(&mut self) -> bool {
        self.now += 10;
        let batch: Vec<Vec<u8>> = (0..self.burst)
            .map_while(|_| self.a.poll_transmit())
            .collect();
        let mut moved = !batch.is_empty();
        let batch = self.carry(batch);
        deliver(&mut self.b, batch, self.now);
        let batch: Vec<Vec<u8>> = (0..self.burst)
            .map_while(|_| self.b.poll_transmit())
            .collect();
        moved |= !batch.is_empty();
        let batch = self.carry(batch);
        deliver(&mut self.a, batch, self.now);
        while let Some(e) = self.a.poll_event() {
            self.from_b.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.from_a.push(e);
        }
        moved
    }

    fn dead(&self) -> bool {
        self.a.error().is_some() || self.b.error().is_some()
    }

    fn run(&mut self) {
        for _ in 0..10_000_000 {
            if self.dead() || !self.step() && !self.a.wants_transmit() && !self.b.wants_transmit() {
                return;
            }
        }
        panic!("did not settle");
    }

    fn established(&mut self) {
        self.run();
        assert!(
            matches!(self.from_b.first(), Some(Event::Established { .. })),
            "{:?}",
            self.a.error()
        );
        assert!(
            matches!(self.from_a.first(), Some(Event::Established { .. })),
            "{:?}",
            self.b.error()
        );
    }
}

fn deliver(rx: &mut Link, batch: Vec<Vec<u8>>, now: u64) {
    for p in batch {
        if rx.handle_packet(&p, now).is_err() {
            return;
        }
        assert!(rx.rx_buffered() <= rx.rx_bound());
    }
}

fn frames(events: &[Event]) -> [Vec<Vec<u8>>; 5] {
    let mut out: [Vec<Vec<u8>>; 5] = Default::default();
    for e in events {
        if let Event::Frame { priority, frame } = e {
            out[priority.lane()].push(frame.clone());
        }
    }
    out
}

const FENCE: &[u8] = b"fence!!";

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[test]
fn the_link_comes_up_with_matching_devices_and_transport_ids() {
    let mut p = Pair::new(config(185), 1);
    p.established();
    let (
        Event::Established {
            device: da,
            local_tid: la,
            remote_tid: ra,
        },
        Event::Established {
            device: db,
            local_tid: lb,
            remote_tid: rb,
        },
    ) = (&p.from_b[0], &p.from_a[0])
    else {
        unreachable!()
    };
    assert_eq!(*da, ident(2).device_id());
    assert_eq!(*db, ident(1).device_id());
    assert_eq!((la, ra), (rb, lb));
    assert_eq!(la.len(), 32);
    assert!(p.packets <= 6, "handshake in {} packets", p.packets);
}

#[test]
fn frames_up_to_the_engine_limit_arrive_intact_at_mtu_23_185_512() {
    for mtu in [23u16, 185, 512] {
        let cfg = Config {
            lane_budget: [1 << 20; 5],
            ..config(mtu)
        };
        let mut p = Pair::new(cfg, 2);
        p.burst = 64;
        p.established();
        let sizes = [1, 2, 100, 4096, 10_000, vaarta_engine::MAX_FRAME_BYTES];
        for (i, &n) in sizes.iter().enumerate() {
            p.a.send(Priority::Routine, frame(i, n)).unwrap();
            p.b.send(Priority::Bulk, frame(i + 100, n)).unwrap();
        }
        p.run();
        assert_eq!(p.a.error(), None);
        assert_eq!(p.b.error(), None);
        let want: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| frame(i, n))
            .collect();
        assert_eq!(
            frames(&p.from_a)[Priority::Routine.lane()],
            want,
            "mtu {mtu}"
        );
        let want: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| frame(i + 100, n))
            .collect();
        assert_eq!(frames(&p.from_b)[Priority::Bulk.lane()], want, "mtu {mtu}");
    }
}

#[test]
fn flash_overtakes_a_1mb_bulk_transfer_within_a_few_fragments() {
    let mut p = Pair::new(config(185), 3);
    p.burst = 1;
    p.established();
    for i in 0..4 {
        p.a.send(Priority::Bulk, frame(i, 250_000)).unwrap();
    }
    for _ in 0..1_000 {
        p.step();
    }
    assert!(p.from_a.iter().all(|e| !matches!(e, Event::Frame { .. })));
    let before = p.a.packets_out;
    p.a.send(Priority::Flash, frame(9, 200)).unwrap();
    let mut waited = None;
    for _ in 0..100 {
        p.step();
        if p.from_a.iter().any(|e| {
            matches!(
                e,
                Event::Frame {
                    priority: Priority::Flash,
                    ..
                }
            )
        }) {
            waited = Some(p.a.packets_out - before);
            break;
        }
    }
    let waited = waited.expect("FLASH frame never arrived");
    // At most the rest of one bulk chunk (8 fragments) and the FLASH frame's own 2.
    assert!(waited <= 10, "FLASH waited {waited} fragments");
    p.run();
    assert_eq!(
        frames(&p.from_a)[Priority::Flash.lane()],
        vec![frame(9, 200)]
    );
    assert_eq!(frames(&p.from_a)[Priority::Bulk.lane()].len(), 4);
}

#[test]
fn back_pressure_hands_the_frame_back_until_the_lane_drains() {
    let cfg = Config {
        lane_budget: [1_000; 5],
        ..config(185)
    };
    let mut p = Pair::new(cfg, 4);
    p.established();
    p.a.send(Priority::Routine, frame(0, 600)).unwrap();
    p.a.send(Priority::Routine, frame(1, 400)).unwrap();
    assert!(!p.a.has_room(Priority::Routine, 1));
    assert_eq!(
        p.a.send(Priority::Routine, frame(2, 1)),
        Err(SendError::Full(frame(2, 1)))
    );
    assert_eq!(
        p.a.send(
            Priority::Routine,
            vec![0; vaarta_engine::MAX_FRAME_BYTES + 1]
        ),
        Err(SendError::TooLarge(vaarta_engine::MAX_FRAME_BYTES + 1))
    );
    assert_eq!(p.a.send(Priority::Routine, vec![]), Err(SendError::Empty));
    p.run();
    assert!(p.a.has_room(Priority::Routine, 1_000));
    p.a.send(Priority::Routine, frame(2, 1)).unwrap();
    p.run();
    assert_eq!(
        frames(&p.from_a)[Priority::Routine.lane()],
        vec![frame(0, 600), frame(1, 400), frame(2, 1)]
    );
}

#[test]
fn the_mtu_exchange_between_records_works_and_mid_message_cuts_the_link() {
    let mut p = Pair::new(config(23), 5);
    p.established();
    p.a.set_mtu(185).unwrap();
    p.b.set_mtu(185).unwrap();
    p.a.send(Priority::Routine, frame(0, 5_000)).unwrap();
    p.run();
    assert_eq!(
        frames(&p.from_a)[Priority::Routine.lane()],
        vec![frame(0, 5_000)]
    );
    // Half a record sent, then a new MTU.
    p.a.send(Priority::Routine, frame(1, 5_000)).unwrap();
    assert!(p.a.poll_transmit().is_some());
    assert_eq!(
        p.a.set_mtu(247),
        Err(Error::Frag(FragError::MtuChangedMidMessage))
    );
    assert!(p.a.poll_transmit().is_none());
    assert_eq!(
        p.a.send(Priority::Routine, frame(2, 1)),
        Err(SendError::Closed)
    );
    assert_eq!(p.a.handle_packet(&[0], 0), Err(Error::Closed));
}

#[test]
fn a_silent_peer_times_out_and_so_does_a_stalled_record() {
    let mut a = Link::new(
        Role::Initiator,
        &ident(1),
        None,
        config(185),
        [1; 32],
        1_000,
    )
    .unwrap();
    assert_eq!(a.poll_timeout(), Some(11_000));
    a.handle_timeout(10_999).unwrap();
    assert_eq!(
        a.handle_timeout(11_000),
        Err(Error::HandshakeTimeout(10_000))
    );
    assert_eq!(a.poll_timeout(), None);

    let mut p = Pair::new(config(185), 6);
    p.established();
    assert_eq!(p.b.poll_timeout(), None);
    p.a.send(Priority::Routine, frame(0, 3_000)).unwrap();
    let f = p.a.poll_transmit().unwrap();
    p.b.handle_packet(&f, 50_000).unwrap();
    assert_eq!(p.b.poll_timeout(), Some(80_000));
    assert_eq!(
        p.b.handle_timeout(80_000),
        Err(Error::Frag(FragError::Timeout(30_000)))
    );
}

#[test]
fn a_wrong_device_cuts_the_link() {
    let cfg = config(185);
    let mut p = Pair::new(cfg.clone(), 7);
    p.a = Link::new(
        Role::Initiator,
        &ident(1),
        Some(ident(3).device_id()),
        cfg,
        [7; 32],
        0,
    )
    .unwrap();
    p.run();
    assert_eq!(
        p.a.error(),
        Some(&Error::Noise(NoiseError::WrongDevice {
            expected: ident(3).device_id(),
            got: ident(2).device_id()
        }))
    );
    assert!(
        p.from_b.is_empty(),
        "nothing reported from the wrong device"
    );
    assert!(p.a.send(Priority::Flash, vec![1]).is_err());
}

#[test]
fn tampered_and_replayed_records_cut_the_link() {
    // Tampered: one data byte flipped on the air.
    let mut p = Pair::new(config(185), 8);
    p.established();
    p.a.send(Priority::Routine, frame(0, 100)).unwrap();
    let mut f = p.a.poll_transmit().unwrap();
    let last = f.len() - 1;
    f[last] ^= 0x40;
    assert_eq!(
        p.b.handle_packet(&f, 1),
        Err(Error::Noise(NoiseError::Decrypt))
    );

    // Replayed: a whole record sent again with the sequence numbers rewritten to fit.
    let mut p = Pair::new(config(185), 9);
    p.established();
    let seen = (p.packets_seen_by_b(), 0);
    p.a.send(Priority::Routine, frame(0, 100)).unwrap();
    let f = p.a.poll_transmit().unwrap();
    assert!(p.a.poll_transmit().is_none(), "one fragment");
    p.b.handle_packet(&f, 1).unwrap();
    let mut again = f.clone();
    again[0] = (again[0] & 0x80) | ((seen.0 + 1) & 0x7f);
    assert_eq!(
        p.b.handle_packet(&again, 2),
        Err(Error::Noise(NoiseError::Decrypt))
    );
    assert_eq!(
        frames(&collect(&mut p.b))[Priority::Routine.lane()],
        vec![frame(0, 100)]
    );

    // Duplicated on the air: the sequence number catches it first.
    let mut p = Pair::new(config(185), 10);
    p.established();
    p.a.send(Priority::Routine, frame(0, 100)).unwrap();
    let f = p.a.poll_transmit().unwrap();
    p.b.handle_packet(&f, 1).unwrap();
    assert!(matches!(
        p.b.handle_packet(&f, 1),
        Err(Error::Frag(FragError::Duplicate { .. }))
    ));
}

fn collect(l: &mut Link) -> Vec<Event> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

impl Pair {
    /// Fragments A has written so far (B has read all of them).
    fn packets_seen_by_b(&self) -> u8 {
        (self.a.packets_out % 128) as u8
    }
}

/// A peer that completes a real handshake and then sends whatever chunk plaintexts it likes.
struct Hostile {
    noise: Channel,
    tx: Fragmenter,
    rx: frag::Reassembler,
}

impl Hostile {
    fn connect(victim: &mut Link, mtu: u16) -> Self {
        let mut h = Hostile {
            noise: Channel::new(Role::Initiator, &ident(66), None, [66; 32]).unwrap(),
            tx: Fragmenter::new(mtu).unwrap(),
            rx: frag::Reassembler::new(mtu, u64::MAX).unwrap(),
        };
        for _ in 0..10 {
            while let Some(r) = h.noise.poll_record() {
                h.send_record(victim, r).unwrap();
            }
            while let Some(f) = victim.poll_transmit() {
                if let Some(rec) = h.rx.handle_fragment(&f, 0).unwrap() {
                    h.noise.handle_record(&rec).unwrap();
                }
            }
        }
        assert!(h.noise.established().is_some());
        h
    }

    fn send_record(&mut self, victim: &mut Link, r: Vec<u8>) -> Result<(), Error> {
        self.tx.start(r);
        while let Some(f) = self.tx.next_fragment() {
            victim.handle_packet(&f, 0)?;
            assert!(victim.rx_buffered() <= victim.rx_bound());
        }
        Ok(())
    }

    fn send_chunk(&mut self, victim: &mut Link, pt: &[u8]) -> Result<(), Error> {
        let r = self.noise.encrypt(pt).unwrap();
        self.send_record(victim, r)
    }
}

fn victim(mtu: u16) -> Link {
    let cfg = Config {
        mtu,
        max_rx_bytes: 300_000,
        ..Config::default()
    };
    Link::new(Role::Responder, &ident(2), None, cfg, [2; 32], 0).unwrap()
}

fn chunk(h: u8, total: Option<u64>, data_len: usize) -> Vec<u8> {
    let mut c = vec![h];
    if let Some(t) = total {
        let mut v = t;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                c.push(b);
                break;
            }
            c.push(b | 0x80);
        }
    }
    c.extend(std::iter::repeat_n(0xab, data_len));
    c
}

#[test]
fn a_hostile_peer_claiming_4_gib_or_too_many_partial_frames_is_cut_off() {
    let mut v = victim(512);
    let mut h = Hostile::connect(&mut v, 512);
    assert!(matches!(
        collect(&mut v).first(),
        Some(Event::Established { .. })
    ));
    let e = h
        .send_chunk(&mut v, &chunk(0x80, Some(1 << 32), 10))
        .unwrap_err();
    assert_eq!(
        e,
        Error::Frame(FrameError::TooLarge {
            claimed: 1 << 32,
            max: vaarta_engine::MAX_FRAME_BYTES
        })
    );

    // Partial frames on every lane: the receive budget (300,000) refuses the second large one.
    let mut v = victim(512);
    let mut h = Hostile::connect(&mut v, 512);
    h.send_chunk(&mut v, &chunk(0x84, Some(200_000), 10))
        .unwrap();
    h.send_chunk(&mut v, &chunk(0x80, Some(50_000), 10))
        .unwrap();
    let e = h
        .send_chunk(&mut v, &chunk(0x81, Some(200_000), 10))
        .unwrap_err();
    assert!(
        matches!(e, Error::Frame(FrameError::BufferFull { .. })),
        "{e:?}"
    );
    assert!(v.rx_buffered() <= v.rx_bound());

    // A lane no frame uses, and a second auth.
    let mut v = victim(512);
    let mut h = Hostile::connect(&mut v, 512);
    let e = h
        .send_chunk(&mut v, &chunk(noise::AUTH, None, 96))
        .unwrap_err();
    assert_eq!(e, Error::Frame(FrameError::BadHeader(noise::AUTH)));
}

#[test]
fn undrained_frames_count_against_the_receive_budget() {
    let mut v = victim(512);
    let mut h = Hostile::connect(&mut v, 512);
    collect(&mut v);
    let mut sent = 0;
    let err = loop {
        match h.send_chunk(&mut v, &chunk(0xc3, Some(3_000), 3_000)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1000);
    };
    assert_eq!(sent, 100);
    assert!(matches!(err, Error::Frame(FrameError::BufferFull { .. })));
    assert_eq!(
        collect(&mut v).len(),
        100,
        "what arrived whole is still delivered"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_frames_arrive_intact_and_in_order_per_priority(
        mtu in prop::sample::select(vec![23u16, 185, 512]),
        chunk_fragments in 1usize..12,
        sends in prop::collection::vec((0usize..5, 1usize..6_000, any::<bool>()), 0..24),
        seed in any::<u64>(),
    ) {
        let cfg = Config { mtu, chunk_fragments, ..Config::default() };
        let mut p = Pair::new(cfg, seed);
        p.burst = 16;
        p.established();
        let mut want_ab: [Vec<Vec<u8>>; 5] = Default::default();
        let mut want_ba: [Vec<Vec<u8>>; 5] = Default::default();
        for (i, &(lane, len, from_a)) in sends.iter().enumerate() {
            let f = frame(i, len);
            let pr = Priority::from_lane(lane as u8).unwrap();
            if from_a {
                p.a.send(pr, f.clone()).unwrap();
                want_ab[lane].push(f);
            } else {
                p.b.send(pr, f.clone()).unwrap();
                want_ba[lane].push(f);
            }
            // Interleave sending with the link running.
            if i % 3 == 0 {
                p.step();
            }
        }
        p.run();
        prop_assert_eq!(p.a.error(), None);
        prop_assert_eq!(p.b.error(), None);
        prop_assert_eq!(frames(&p.from_a), want_ab);
        prop_assert_eq!(frames(&p.from_b), want_ba);
    }

    #[test]
    fn a_faulty_link_ends_in_the_right_frames_or_a_clean_error(
        mtu in prop::sample::select(vec![23u16, 185, 512]),
        loss in prop::sample::select(vec![0.0, 0.001, 0.02]),
        dup in prop::sample::select(vec![0.0, 0.001, 0.02]),
        reorder in prop::sample::select(vec![0.0, 0.001, 0.02]),
        sizes in prop::collection::vec(1usize..20_000, 1..8),
        seed in any::<u64>(),
    ) {
        let mut p = Pair::new(config(mtu), seed);
        p.faults = Faults { loss, dup, reorder };
        p.burst = 8;
        for (i, &n) in sizes.iter().enumerate() {
            p.a.send(Priority::ALL[i % 5], frame(i, n)).unwrap();
        }
        p.run();
        // A lost tail shows on the next fragment: send one more frame over a clean air, then
        // let every timer fire (a lost handshake message, a stalled record).
        p.faults = Faults::default();
        if !p.dead() && p.a.remote_device().is_some() {
            p.a.send(Priority::Bulk, FENCE.to_vec()).unwrap();
            p.run();
        }
        p.now += 60_000;
        let _ = p.a.handle_timeout(p.now);
        let _ = p.b.handle_timeout(p.now);
        let mut got = frames(&p.from_a);
        if got[4].last().is_some_and(|f| f == FENCE) {
            got[4].pop();
        }
        if p.dead() {
            // Whatever arrived before the cut is a prefix of what was sent, byte for byte.
            for (lane, frames) in got.iter().enumerate() {
                let sent: Vec<Vec<u8>> = sizes.iter().enumerate()
                    .filter(|(i, _)| i % 5 == lane).map(|(i, &n)| frame(i, n)).collect();
                prop_assert!(frames.len() <= sent.len());
                prop_assert_eq!(&sent[..frames.len()], &frames[..]);
            }
        } else {
            let mut want: [Vec<Vec<u8>>; 5] = Default::default();
            for (i, &n) in sizes.iter().enumerate() {
                want[i % 5].push(frame(i, n));
            }
            prop_assert_eq!(got, want);
        }
        if loss == 0.0 && dup == 0.0 && reorder == 0.0 {
            prop_assert!(!p.dead());
        }
    }

    #[test]
    fn random_bytes_never_panic_and_never_pass_the_bound(
        mtu in prop::sample::select(vec![23u16, 185, 512]),
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..520), 1..64),
    ) {
        let mut v = victim(mtu);
        let mut failed = false;
        for (t, pk) in packets.iter().enumerate() {
            let r = v.handle_packet(pk, t as u64);
            prop_assert!(v.rx_buffered() <= v.rx_bound());
            if failed {
                prop_assert_eq!(&r, &Err(Error::Closed));
            }
            failed |= r.is_err();
        }
        prop_assert!(v.poll_timeout().is_none() || !failed);
    }

    #[test]
    fn a_hostile_chunk_stream_ends_in_frames_or_a_clean_error(
        chunks in prop::collection::vec(
            (any::<u8>(), prop::option::of(prop::sample::select(vec![0u64, 1, 100, 4_000, 250_000, 300_001, 1 << 32])), 0usize..4_000),
            1..40),
    ) {
        let mut v = victim(512);
        let mut h = Hostile::connect(&mut v, 512);
        for (hdr, total, len) in chunks {
            let r = h.send_chunk(&mut v, &chunk(hdr, total, len));
            prop_assert!(v.rx_buffered() <= v.rx_bound());
            if r.is_err() {
                prop_assert!(v.error().is_some());
                break;
            }
        }
        for e in collect(&mut v) {
            if let Event::Frame { frame, .. } = e {
                prop_assert!(!frame.is_empty() && frame.iter().all(|&b| b == 0xab));
            }
        }
    }
}

/// Moves everything `from` has to send into `to` at `now`.
fn flush(from: &mut Link, to: &mut Link, now: u64) -> usize {
    let mut n = 0;
    while let Some(p) = from.poll_transmit() {
        to.handle_packet(&p, now).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_slow_handshake_that_makes_progress_completes_and_a_stalled_one_is_cut() {
    // Every hop 4.5 s (an emulated CPU, a busy phone): each round trip within the 10 s step,
    // the whole handshake (four hops) well past it, and still up.
    let mut a = Link::new(Role::Initiator, &ident(1), None, config(185), [1; 32], 0).unwrap();
    let mut b = Link::new(Role::Responder, &ident(2), None, config(185), [2; 32], 0).unwrap();
    let mut now = 0;
    let mut hops = 0;
    while a.remote_device().is_none() || b.remote_device().is_none() {
        now += 4_500;
        a.handle_timeout(now).unwrap();
        b.handle_timeout(now).unwrap();
        // What each side had to send before this hop arrives at the other now.
        let from_a: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let from_b: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert!(
            !from_a.is_empty() || !from_b.is_empty(),
            "stuck after {hops} hops"
        );
        for p in from_a {
            b.handle_packet(&p, now).unwrap();
        }
        for p in from_b {
            a.handle_packet(&p, now).unwrap();
        }
        hops += 1;
        assert!(hops < 10);
    }
    assert!(now > 10_000, "the handshake took {now} ms");
    assert_eq!(a.remote_device(), Some(ident(2).device_id()));
    assert_eq!(b.remote_device(), Some(ident(1).device_id()));
    assert_eq!(a.poll_timeout(), None);

    // A peer that answers once and then goes silent: cut one step after its last record.
    let mut a = Link::new(Role::Initiator, &ident(1), None, config(185), [3; 32], 0).unwrap();
    let mut b = Link::new(Role::Responder, &ident(2), None, config(185), [4; 32], 0).unwrap();
    flush(&mut a, &mut b, 5_000);
    flush(&mut b, &mut a, 8_000);
    assert_eq!(a.poll_timeout(), Some(18_000));
    a.handle_timeout(17_999).unwrap();
    assert_eq!(
        a.handle_timeout(18_000),
        Err(Error::HandshakeTimeout(10_000))
    );
    // b heard message 1 at 5 s and nothing since.
    assert_eq!(b.poll_timeout(), Some(15_000));
    assert!(b.handle_timeout(15_000).is_err());
}

#[test]
fn the_whole_handshake_is_bounded_by_its_steps() {
    let mut a = Link::new(
        Role::Initiator,
        &ident(1),
        None,
        config(185),
        [5; 32],
        1_000,
    )
    .unwrap();
    let mut b = Link::new(
        Role::Responder,
        &ident(2),
        None,
        config(185),
        [6; 32],
        1_000,
    )
    .unwrap();
    // Each record lands just before the step ends; no deadline ever passes the cap.
    let cap = 1_000 + vaarta_ble::HANDSHAKE_STEPS * 10_000;
    let mut now = 1_000;
    for _ in 0..4 {
        now += 9_999;
        flush(&mut a, &mut b, now);
        flush(&mut b, &mut a, now);
        for l in [&a, &b] {
            if let Some(t) = l.poll_timeout() {
                assert!(t <= cap, "deadline {t} past the cap {cap}");
            }
        }
    }
}
