//! A hostile peer sends garbage, oversize frames and floods streams: it is cut off, the node
//! keeps serving honest peers, and its memory stays bounded.

use std::time::Duration;

use futures::StreamExt;
use vaarta_mesh::libp2p::{self, Multiaddr, PeerId, multiaddr::Protocol};
use vaarta_mesh::{Command, Event};
use vaarta_tests::{Node, rss_kib, wait_for};

const T: Duration = Duration::from_secs(60);

async fn attacker() -> (vaarta_mesh::Handle, tokio::sync::mpsc::Receiver<Event>) {
    vaarta_mesh::start(vaarta_mesh::Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..vaarta_mesh::Config::default()
    })
    .await
    .unwrap()
}

async fn link_up(events: &mut tokio::sync::mpsc::Receiver<Event>) -> vaarta_mesh::LinkId {
    loop {
        match tokio::time::timeout(T, events.recv())
            .await
            .expect("link")
            .expect("mesh")
        {
            Event::LinkUp { link, .. } => return link,
            Event::DialFailed { error, .. } => panic!("dial failed: {error}"),
            _ => {}
        }
    }
}

async fn link_down(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    link: vaarta_mesh::LinkId,
) -> vaarta_mesh::LinkEnd {
    loop {
        match tokio::time::timeout(T, events.recv())
            .await
            .expect("the node should cut the link")
            .expect("mesh")
        {
            Event::LinkDown { link: l, reason } if l == link => return reason,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_cut_off_and_honest_ones_served() {
    let mut a = Node::init("a");
    a.up_loopback(&[]);
    let a_addr: Multiaddr = a.addr("/tcp/").parse().unwrap();
    let a_peer: PeerId = a.json(&["id"])["peer_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pid = a.pid().unwrap();
    let rss_before = rss_kib(pid);

    // 1. Garbage frames.
    let (m, mut ev) = attacker().await;
    m.command(Command::Dial {
        peer: None,
        addr: a_addr.clone(),
    })
    .await;
    let link = link_up(&mut ev).await;
    m.command(Command::Send {
        link,
        frame: vec![0xde, 0xad, 0xbe, 0xef],
    })
    .await;
    let why = link_down(&mut ev, link).await;
    println!("garbage: cut ({why})");

    // 2. An oversize frame (length prefix beyond the limit): refused unread.
    let (m, mut ev) = attacker().await;
    m.command(Command::Dial {
        peer: None,
        addr: a_addr.clone(),
    })
    .await;
    let link = link_up(&mut ev).await;
    m.command(Command::Send {
        link,
        frame: vec![3u8; vaarta_mesh::MAX_FRAME_BYTES + 1],
    })
    .await;
    let why = link_down(&mut ev, link).await;
    println!("oversize: cut ({why})");

    // 3. A stream flood: hundreds of sync streams over one connection.
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let mut control = swarm.behaviour().new_control();
    swarm
        .dial(a_addr.clone().with(Protocol::P2p(a_peer)))
        .unwrap();
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let mut opened = 0;
    let mut held = Vec::new();
    for _ in 0..300 {
        match tokio::time::timeout(
            Duration::from_secs(2),
            control.open_stream(a_peer, vaarta_mesh::PROTOCOL),
        )
        .await
        {
            Ok(Ok(s)) => {
                opened += 1;
                held.push(s);
            }
            _ => break,
        }
    }
    println!("stream flood: {opened} of 300 streams opened before refusal");
    assert!(
        opened < 300,
        "the node accepted an unbounded number of streams"
    );
    drop(held);
    driver.abort();

    // The node still serves an honest peer.
    let mut b = Node::init("b");
    b.accept(&a);
    let conv = a
        .ok(&["conv", "create", "still fine", "--member", &b.device_id()])
        .trim()
        .to_string();
    b.up_loopback(&[&a.addr("/tcp/")]);
    a.ok(&["send", &conv, "after the attacks"]);
    wait_for("honest delivery", T, || {
        (b.bodies(&conv) == vec!["after the attacks".to_string()]).then_some(())
    });
    let rss_after = rss_kib(pid);
    println!("node RSS: {rss_before} KiB before, {rss_after} KiB after");
    // A bound, not a speed goal: the attacks must not make memory run away.
    assert!(
        rss_after < rss_before + 256 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    let refused = a.json(&["id"])["traffic"]["refused"].as_u64().unwrap_or(0);
    assert!(refused >= 1, "the node should have counted refusals");
}
