//! Goodput of the Bluetooth link layer over an in-memory link, and FLASH latency while a
//! 1 MB bulk transfer is under way.
//!
//! `cargo run --release -p vaarta-ble --example ble_goodput`
//!
//! Every byte on the air is counted: fragment headers, Noise tags, chunk headers, the
//! handshake, and the 3-byte ATT header of every write. Milliseconds assume the simulator's
//! Bluetooth radio (`simulations/scenarios/flood-relief.toml`: 50 kB/s, MTU 185,
//! `packet_overhead = 20`).

use std::time::Instant;

use vaarta_ble::frag::ATT_HEADER;
use vaarta_ble::{Config, Event, Link, Priority, Role};
use vaarta_sync::identity::Identity;

/// The simulator's BLE rate, bytes per second.
const RATE: f64 = 50_000.0;
const SIM_MTU: usize = 185;
const SIM_OVERHEAD: usize = 20;

struct Pair {
    a: Link,
    b: Link,
    air_ab: u64,
    packets_ab: u64,
    got: Vec<(Priority, usize)>,
}

impl Pair {
    fn new(mtu: u16) -> Self {
        let cfg = Config {
            mtu,
            ..Config::default()
        };
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        let a = Link::new(Role::Initiator, &ia, None, cfg.clone(), [3; 32], 0).unwrap();
        let b = Link::new(Role::Responder, &ib, None, cfg, [4; 32], 0).unwrap();
        let mut p = Pair {
            a,
            b,
            air_ab: 0,
            packets_ab: 0,
            got: Vec::new(),
        };
        while p.step(usize::MAX) {}
        assert!(p.a.remote_device().is_some() && p.b.remote_device().is_some());
        p
    }

    /// Moves at most `n` packets A→B (and everything B→A); false when nothing moved.
    fn step(&mut self, n: usize) -> bool {
        let mut moved = false;
        for _ in 0..n {
            let Some(f) = self.a.poll_transmit() else {
                break;
            };
            self.air_ab += (f.len() + ATT_HEADER) as u64;
            self.packets_ab += 1;
            self.b.handle_packet(&f, 0).unwrap();
            // The driver's contract: drain events after every packet.
            while let Some(e) = self.b.poll_event() {
                if let Event::Frame { priority, frame } = e {
                    self.got.push((priority, frame.len()));
                }
            }
            moved = true;
        }
        while let Some(f) = self.b.poll_transmit() {
            self.a.handle_packet(&f, 0).unwrap();
            moved = true;
        }
        while self.a.poll_event().is_some() {}
        moved
    }
}

fn sim_air(len: usize) -> usize {
    len + len.div_ceil(SIM_MTU) * SIM_OVERHEAD
}

fn main() {
    println!(
        "## goodput: 1,000,000 bytes of engine frames A→B (air = fragments + 3-byte ATT header)"
    );
    println!("| MTU | frame size | fragments | air bytes | goodput | state machine MB/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for mtu in [23u16, 185, 247, 512] {
        for frame in [4_096usize, 250_000] {
            let mut p = Pair::new(mtu);
            let (air0, pk0) = (p.air_ab, p.packets_ab);
            let n = 1_000_000 / frame;
            let total = n * frame;
            let t = Instant::now();
            for _ in 0..n {
                p.a.send(Priority::Bulk, vec![7; frame]).unwrap();
            }
            while p.step(usize::MAX) {}
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(p.got.len(), n);
            let air = p.air_ab - air0;
            println!(
                "| {mtu} | {frame} | {} | {air} | {:.1} % | {:.0} |",
                p.packets_ab - pk0,
                100.0 * total as f64 / air as f64,
                total as f64 / secs / 1e6
            );
        }
    }
    {
        let p = Pair::new(185);
        println!(
            "\nhandshake + both auth records at MTU 185: {} bytes A→B in {} packets",
            p.air_ab, p.packets_ab
        );
    }

    println!(
        "\n## per-frame overhead at MTU 185 vs the simulator model (len + ceil(len/185) × 20)"
    );
    println!(
        "| frame bytes | air bytes (measured) | air bytes (model) | implied packet_overhead |"
    );
    println!("|---:|---:|---:|---:|");
    for len in [100usize, 223, 1_000, 4_096, 65_536, 250_000] {
        let mut p = Pair::new(185);
        let air0 = p.air_ab;
        p.a.send(Priority::Routine, vec![1; len]).unwrap();
        while p.step(usize::MAX) {}
        let air = (p.air_ab - air0) as usize;
        let implied = (air - len) as f64 / len.div_ceil(SIM_MTU) as f64;
        println!("| {len} | {air} | {} | {implied:.1} |", sim_air(len));
    }

    println!("\n## FLASH (one 300-byte frame) queued while 1 MB of bulk is under way, MTU 185");
    println!("| queued after bulk fragment | waited fragments | waited air bytes | at 50 kB/s |");
    println!("|---:|---:|---:|---:|");
    let mut worst = (0, 0);
    for offset in (500..509).chain([1_000, 3_333]) {
        let mut p = Pair::new(185);
        for _ in 0..4 {
            p.a.send(Priority::Bulk, vec![7; 250_000]).unwrap();
        }
        p.step(offset);
        let (air0, pk0) = (p.air_ab, p.packets_ab);
        p.a.send(Priority::Flash, vec![9; 300]).unwrap();
        while !p.got.iter().any(|(pr, _)| *pr == Priority::Flash) {
            p.step(1);
        }
        let (pk, air) = (p.packets_ab - pk0, p.air_ab - air0);
        worst = worst.max((pk, air));
        println!(
            "| {offset} | {pk} | {air} | {:.1} ms |",
            air as f64 / RATE * 1e3
        );
        while p.step(usize::MAX) {}
        assert_eq!(p.got.len(), 5);
    }
    let bulk_air = sim_air(1_000_000) as f64;
    println!(
        "\nworst: {} fragments, {} bytes, {:.1} ms; without priority the FLASH frame would wait for \
         the whole bulk: ≈ {:.0} ms",
        worst.0,
        worst.1,
        worst.1 as f64 / RATE * 1e3,
        bulk_air / RATE * 1e3
    );
}
