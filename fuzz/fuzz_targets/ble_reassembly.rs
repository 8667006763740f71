//! Bluetooth link input from a hostile peer: raw fragments into the reassembler, then chunk
//! plaintexts sealed by a peer that completed a real handshake (so they reach the frame
//! layer). Memory must stay within the stated bounds and nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaarta_ble::frag::{Fragmenter, MAX_RECORD_BYTES, Reassembler};
use vaarta_ble::noise::{Channel, MAX_CHUNK_PLAINTEXT};
use vaarta_ble::{Config, Link, Role};
use vaarta_sync::identity::Identity;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mtu = [23u16, 185, 512][sel as usize % 3];

    // Raw fragments.
    let mut rx = Reassembler::new(mtu, 30_000).unwrap();
    for (t, f) in rest.split(|b| *b == 0xfe).enumerate() {
        if rx.handle_fragment(f, t as u64).is_err() {
            break;
        }
        assert!(rx.buffered() <= MAX_RECORD_BYTES);
    }

    // Chunks from an authenticated peer.
    let cfg = Config {
        mtu,
        ..Config::default()
    };
    let mut victim = Link::new(
        Role::Responder,
        &Identity::from_seed([2; 32]),
        None,
        cfg,
        [2; 32],
        0,
    )
    .unwrap();
    let mut peer = Channel::new(
        Role::Initiator,
        &Identity::from_seed([1; 32]),
        None,
        [1; 32],
    )
    .unwrap();
    let mut tx = Fragmenter::new(mtu).unwrap();
    let mut back = Reassembler::new(mtu, u64::MAX).unwrap();
    let send = |victim: &mut Link, tx: &mut Fragmenter, rec: Vec<u8>| -> bool {
        tx.start(rec);
        while let Some(f) = tx.next_fragment() {
            if victim.handle_packet(&f, 0).is_err() {
                return false;
            }
            assert!(victim.rx_buffered() <= victim.rx_bound());
        }
        true
    };
    for _ in 0..4 {
        while let Some(r) = peer.poll_record() {
            assert!(send(&mut victim, &mut tx, r));
        }
        while let Some(f) = victim.poll_transmit() {
            if let Ok(Some(rec)) = back.handle_fragment(&f, 0) {
                peer.handle_record(&rec).unwrap();
            }
        }
    }
    assert!(peer.established().is_some());
    for c in rest.split(|b| *b == 0xfe) {
        if c.len() > MAX_CHUNK_PLAINTEXT {
            break;
        }
        let rec = peer.encrypt(c).unwrap();
        if !send(&mut victim, &mut tx, rec) {
            break;
        }
        // Drain only sometimes: undelivered frames count against the budget too.
        if c.first().is_some_and(|b| b & 1 == 0) {
            while victim.poll_event().is_some() {}
        }
    }
});
