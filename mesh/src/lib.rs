//! The libp2p layer of a Vaarta node. It moves frames and reports what it sees; every
//! decision (whom to dial, what to send, whom to cut off) belongs to the engine.
//!
//! * Transports: TCP and QUIC, each authenticated and encrypted (Noise XX on TCP, TLS 1.3 in
//!   QUIC), TCP multiplexed with Yamux.
//! * Discovery: mDNS. Its answers are *hints* ([`Event::Discovered`]); the engine caps the
//!   table and the dial rate (docs/security.md, "Bound everything a peer can grow").
//! * identify and ping keep connections honest and alive.
//! * Limits: pending and established connections (total, per direction, per peer), process
//!   memory, Yamux and QUIC stream counts (docs/security.md, "Bound everything a peer can
//!   grow"; CVE-2022-23486).
//! * Links: on each connection the dialer opens one `/vaarta/sync/1` stream. Frames on it are
//!   length-prefixed (unsigned varint, at most [`MAX_FRAME_BYTES`]); a longer length cuts the
//!   link before anything is allocated. Extra inbound streams from a peer that already has a
//!   link are refused.
//!
//! The transport key is fresh for every run: it is not the device identity (which is proven
//! only inside the encrypted link: docs/security.md, "the device key is the peer's" and C1/C5),
//! so mDNS announcements do not track a device across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, mdns,
    memory_connection_limits, noise, ping, tcp, yamux,
};
use thiserror::Error;
use tokio::sync::mpsc;

pub use libp2p;

/// The protocol name of the sync stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/vaarta/sync/1");
/// Largest frame accepted or sent: the engine's limit (an envelope of 256 KiB plus framing).
pub use vaarta_engine::MAX_FRAME_BYTES;
/// Frames waiting to be written on one link before the link counts as stuck and is closed.
pub const LINK_QUEUE: usize = 4096;

/// A link id: the engine's own type, so the daemon passes it through unchanged.
pub use vaarta_engine::LinkId;

/// Why a link ended, as the mesh saw it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkEnd {
    #[error("peer closed the link")]
    PeerClosed,
    #[error("peer too slow (send queue full)")]
    SendQueueFull,
    #[error("read failed: {0}")]
    Read(String),
    #[error("write failed: {0}")]
    Write(String),
    #[error("node stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Announce and look for peers with mDNS.
    pub mdns: bool,
    /// Connections at most, and per peer (docs/security.md, "Bound everything a peer can grow";
    /// a phone mesh rarely needs more).
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending: u32,
    /// Refuse new connections above this share of system memory.
    pub max_memory_fraction: f64,
    /// Streams per connection (Yamux, QUIC): we need one; a few for identify and ping.
    pub max_streams: u32,
    /// Close a connection with no open stream after this long.
    pub idle_timeout: Duration,
    /// How long a peer the engine banned (or that floods streams) is refused at the
    /// connection level: the engine's `Config::ban_ms`.
    pub ban: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("valid"),
            ],
            mdns: true,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending: 32,
            max_memory_fraction: 0.9,
            max_streams: 16,
            idle_timeout: Duration::from_secs(60),
            ban: Duration::from_millis(vaarta_engine::Config::default().ban_ms),
        }
    }
}

/// What the mesh reports.
#[derive(Debug, Clone)]
pub enum Event {
    Listening(Multiaddr),
    LinkUp {
        link: LinkId,
        peer: PeerId,
        outbound: bool,
        /// The address we dialled, for outbound links.
        dialed: Option<Multiaddr>,
        remote: Multiaddr,
    },
    Frame {
        link: LinkId,
        bytes: Vec<u8>,
    },
    LinkDown {
        link: LinkId,
        reason: LinkEnd,
    },
    Discovered {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    DialFailed {
        peer: Option<PeerId>,
        addr: Option<Multiaddr>,
        error: String,
    },
}

/// What the mesh is asked to do.
#[derive(Debug)]
pub enum Command {
    Dial {
        peer: Option<PeerId>,
        addr: Multiaddr,
    },
    Send {
        link: LinkId,
        frame: Vec<u8>,
    },
    /// Close a link. With `ban`, also drop the peer's connections and refuse it for
    /// [`Config::ban`] (it misbehaved).
    Close {
        link: LinkId,
        ban: bool,
    },
}

/// Sync streams a peer may open beyond its links before it counts as flooding.
const STREAM_STRIKES: u32 = 4;

#[derive(Debug, Error)]
pub enum Error {
    #[error("transport setup: {0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: Multiaddr, error: String },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
    stream: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A running mesh: send it commands, receive its events.
#[derive(Debug, Clone)]
pub struct Handle {
    pub local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    link_ids: LinkIds,
}

/// The node's one link id space: libp2p links and any other transport's (Bluetooth) take
/// their ids from here, so no two links ever share one.
#[derive(Debug, Clone)]
pub struct LinkIds(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Default for LinkIds {
    fn default() -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)))
    }
}

impl LinkIds {
    /// A fresh id, never handed out before.
    pub fn next(&self) -> LinkId {
        LinkId(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Handle {
    pub async fn command(&self, c: Command) -> bool {
        self.commands.send(c).await.is_ok()
    }

    /// For callers outside the async runtime (the engine thread): waits for room.
    pub fn blocking_command(&self, c: Command) -> bool {
        self.commands.blocking_send(c).is_ok()
    }

    /// The allocator this mesh takes its link ids from, for other transports.
    pub fn link_ids(&self) -> LinkIds {
        self.link_ids.clone()
    }
}

/// Writes one length-prefixed frame in a single write (one Yamux frame, one Noise message
/// when flushed alone: a separate write for the prefix would cost ~30 bytes more per frame).
pub async fn write_frame<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(frame.len() + 5);
    let mut n = frame.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(b);
            break;
        }
        buf.push(b | 0x80);
    }
    buf.extend_from_slice(frame);
    w.write_all(&buf).await
}

/// Reads one length-prefixed frame; refuses lengths above `max` before allocating.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b).await? {
            0 if i == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            if b[0] == 0 && i > 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "non-canonical frame length",
                ));
            }
            if len as usize > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("frame of {len} bytes exceeds the limit of {max}"),
                ));
            }
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf).await?;
            return Ok(Some(buf));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "frame length overflows",
    ))
}

/// Starts the mesh on the current tokio runtime. Events arrive on the returned receiver
/// (bounded: when the consumer is slow, link readers wait, which slows the peers down).
pub async fn start(config: Config) -> Result<(Handle, mpsc::Receiver<Event>), Error> {
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let local_peer_id = keypair.public().to_peer_id();
    let mut yamux_cfg = yamux::Config::default();
    yamux_cfg.set_max_num_streams(config.max_streams as usize);
    let max_streams = config.max_streams;
    let mdns_on = config.mdns;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(config.max_pending))
        .with_max_pending_outgoing(Some(config.max_pending))
        .with_max_established_incoming(Some(config.max_connections / 2))
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer));
    let fraction = config.max_memory_fraction;
    let mut swarm: Swarm<Behaviour> = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            move || yamux_cfg.clone(),
        )
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_quic_config(|mut q| {
            q.max_concurrent_stream_limit = max_streams;
            q
        })
        .with_behaviour(|key| {
            let mdns = if mdns_on {
                match mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                ) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "mDNS unavailable; continuing without it");
                        None
                    }
                }
            } else {
                None
            };
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                memory: memory_connection_limits::Behaviour::with_max_percentage(fraction),
                stream: libp2p_stream::Behaviour::new(),
                mdns: Toggle::from(mdns),
                identify: identify::Behaviour::new(
                    identify::Config::new("/vaarta/1".into(), key.public())
                        .with_agent_version(format!("vaarta/{}", env!("CARGO_PKG_VERSION")))
                        .with_cache_size(0),
                ),
                ping: ping::Behaviour::default(),
            })
        })
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            error: e.to_string(),
        })?;
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let link_ids = LinkIds::default();
    tokio::spawn(run(swarm, cmd_rx, ev_tx, config.ban, link_ids.clone()));
    Ok((
        Handle {
            local_peer_id,
            commands: cmd_tx,
            link_ids,
        },
        ev_rx,
    ))
}

struct LinkState {
    peer: PeerId,
    tx: mpsc::Sender<Vec<u8>>,
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    ban_for: Duration,
    link_ids: LinkIds,
) {
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = match control.accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept sync streams");
            return;
        }
    };
    let mut links: BTreeMap<LinkId, LinkState> = BTreeMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(LinkId, LinkEnd)>(256);
    // Streams opened or accepted by helper tasks, to be registered here.
    let (new_tx, mut new_rx) =
        mpsc::channel::<(PeerId, libp2p::Stream, bool, Option<Multiaddr>, Multiaddr)>(64);
    // Per connected peer (pruned when its last connection closes).
    let mut remote_addr: BTreeMap<PeerId, Multiaddr> = BTreeMap::new();
    let mut pending_dials: BTreeSet<(Option<PeerId>, Multiaddr)> = BTreeSet::new();
    let mut banned: BTreeMap<PeerId, tokio::time::Instant> = BTreeMap::new();
    let mut strikes: BTreeMap<PeerId, u32> = BTreeMap::new();
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    Command::Dial { peer, addr } => {
                        let mut target = addr.clone();
                        if let Some(p) = peer
                            && !addr.iter().any(|x| matches!(x, Protocol::P2p(_)))
                        {
                            target.push(Protocol::P2p(p));
                        }
                        if let Err(e) = swarm.dial(target.clone()) {
                            let _ = events.send(Event::DialFailed { peer, addr: Some(addr), error: e.to_string() }).await;
                        } else {
                            pending_dials.insert((peer, addr));
                        }
                    }
                    Command::Send { link, frame } => {
                        if let Some(l) = links.get(&link)
                            && l.tx.try_send(frame).is_err()
                        {
                            // The peer does not read: cut it off rather than buffer without end.
                            links.remove(&link);
                            let _ = events.send(Event::LinkDown { link, reason: LinkEnd::SendQueueFull }).await;
                        }
                    }
                    Command::Close { link, ban } => {
                        // Dropping the sender lets the writer flush what is queued, then close.
                        if let Some(l) = links.remove(&link)
                            && ban
                        {
                            banned.insert(l.peer, tokio::time::Instant::now() + ban_for);
                            let peer = l.peer;
                            // Give the bye a moment to leave, then drop the connection.
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                    }
                }
            }
            Some((link, reason)) = done_rx.recv() => {
                if links.remove(&link).is_some() {
                    let _ = events.send(Event::LinkDown { link, reason }).await;
                }
            }
            Some((peer, stream, outbound, dialed, remote)) = new_rx.recv() => {
                if banned.get(&peer).is_some_and(|t| *t > tokio::time::Instant::now()) {
                    drop(stream);
                    let _ = swarm.disconnect_peer_id(peer);
                    continue;
                }
                if !outbound && links.values().filter(|l| l.peer == peer).count() >= 2 {
                    // More streams than connections warrant: refuse, and cut off a peer that
                    // keeps trying (docs/security.md, F2; CVE-2022-23486 class).
                    drop(stream);
                    let s = strikes.entry(peer).or_insert(0);
                    *s += 1;
                    if *s >= STREAM_STRIKES {
                        tracing::warn!(%peer, "stream flood: disconnecting and banning the peer");
                        banned.insert(peer, tokio::time::Instant::now() + ban_for);
                        strikes.remove(&peer);
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                    continue;
                }
                let link = link_ids.next();
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                links.insert(link, LinkState { peer, tx });
                let _ = events.send(Event::LinkUp { link, peer, outbound, dialed, remote }).await;
                tokio::spawn(serve_link(link, stream, rx, events.clone(), done_tx.clone()));
            }
            Some((peer, stream)) = incoming.next() => {
                let remote = remote_addr.get(&peer).cloned().unwrap_or_else(Multiaddr::empty);
                let _ = new_tx.send((peer, stream, false, None, remote)).await;
            }
            ev = swarm.select_next_some() => {
                match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let _ = events.send(Event::Listening(address)).await;
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        if banned.get(&peer_id).is_some_and(|t| *t > tokio::time::Instant::now()) {
                            let _ = swarm.disconnect_peer_id(peer_id);
                            continue;
                        }
                        banned.retain(|_, t| *t > tokio::time::Instant::now());
                        let remote = endpoint.get_remote_address().clone();
                        remote_addr.insert(peer_id, remote.clone());
                        if let ConnectedPoint::Dialer { address, .. } = endpoint {
                            let dialed = pending_dials
                                .iter()
                                .find(|(p, a)| *p == Some(peer_id) || same_endpoint(a, &address))
                                .cloned();
                            if let Some(d) = &dialed {
                                pending_dials.remove(d);
                            }
                            let dialed_addr = dialed.map(|(_, a)| a).or(Some(address.clone()));
                            let mut control = control.clone();
                            let new_tx = new_tx.clone();
                            let events = events.clone();
                            tokio::spawn(async move {
                                match control.open_stream(peer_id, PROTOCOL).await {
                                    Ok(s) => {
                                        let _ = new_tx.send((peer_id, s, true, dialed_addr, remote)).await;
                                    }
                                    Err(e) => {
                                        let _ = events.send(Event::DialFailed { peer: Some(peer_id), addr: dialed_addr, error: e.to_string() }).await;
                                    }
                                }
                            });
                        }
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        // Nothing per peer outlives its connections (but bans, which expire).
                        remote_addr.remove(&peer_id);
                        strikes.remove(&peer_id);
                    }
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        let failed: Vec<(Option<PeerId>, Multiaddr)> = pending_dials
                            .iter()
                            .filter(|(p, _)| peer_id.is_none() || *p == peer_id || p.is_none())
                            .cloned()
                            .collect();
                        // Without a peer id we cannot tell which address failed; report the
                        // address libp2p names in the error when it names one.
                        let text = error.to_string();
                        let mut reported = false;
                        for (p, a) in failed {
                            if p.is_some() && p == peer_id || text.contains(&a.to_string()) {
                                pending_dials.remove(&(p, a.clone()));
                                let _ = events.send(Event::DialFailed { peer: p, addr: Some(a), error: text.clone() }).await;
                                reported = true;
                            }
                        }
                        if !reported {
                            let _ = events.send(Event::DialFailed { peer: peer_id, addr: None, error: text }).await;
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                        let mut by_peer: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
                        for (p, a) in list {
                            by_peer.entry(p).or_default().push(a);
                        }
                        for (peer, addrs) in by_peer {
                            let _ = events.send(Event::Discovered { peer, addrs }).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether two addresses name the same transport endpoint (ignoring /p2p suffixes).
fn same_endpoint(a: &Multiaddr, b: &Multiaddr) -> bool {
    let strip = |m: &Multiaddr| -> Multiaddr {
        m.iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect()
    };
    strip(a) == strip(b)
}

async fn serve_link(
    link: LinkId,
    stream: libp2p::Stream,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
    done: mpsc::Sender<(LinkId, LinkEnd)>,
) {
    let (mut reader, mut writer) = stream.split();
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if let Err(e) = write_frame(&mut writer, &frame).await {
                return LinkEnd::Write(e.to_string());
            }
            // Coalesce: only flush when nothing else is queued.
            if outgoing.is_empty()
                && let Err(e) = writer.flush().await
            {
                return LinkEnd::Write(e.to_string());
            }
        }
        let _ = writer.close().await;
        LinkEnd::Stopped
    });
    let reason = loop {
        match read_frame(&mut reader, MAX_FRAME_BYTES).await {
            Ok(Some(bytes)) => {
                if events.send(Event::Frame { link, bytes }).await.is_err() {
                    break LinkEnd::Stopped;
                }
            }
            Ok(None) => break LinkEnd::PeerClosed,
            Err(e) => break LinkEnd::Read(e.to_string()),
        }
    };
    writer_task.abort();
    let _ = done.send((link, reason)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_lying_lengths_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").await.unwrap();
        write_frame(&mut buf, &[]).await.unwrap();
        let mut r = futures::io::Cursor::new(buf);
        assert_eq!(read_frame(&mut r, 100).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 100).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut r, 100).await.unwrap().is_none());
        // A length of 2^32 is refused without allocating it.
        let mut big = Vec::new();
        let mut n: u64 = 1 << 32;
        while n >= 0x80 {
            big.push((n as u8) | 0x80);
            n >>= 7;
        }
        big.push(n as u8);
        let mut r = futures::io::Cursor::new(big);
        assert!(read_frame(&mut r, MAX_FRAME_BYTES).await.is_err());
        // Padded length.
        let mut r = futures::io::Cursor::new(vec![0x85, 0x00, 1, 2, 3, 4, 5]);
        assert!(read_frame(&mut r, 100).await.is_err());
    }

    /// Bluetooth links take their ids from the mesh's allocator: one id space, no repeats
    /// across clones and threads.
    #[test]
    fn link_ids_are_one_space_shared_by_every_transport() {
        let ids = LinkIds::default();
        let other = ids.clone();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..1000).map(|_| ids.next().0).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.push(other.next().0);
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an id was handed out twice");
        assert!(all[0] >= 1, "0 is never a link id");
    }

    #[tokio::test]
    async fn two_meshes_link_over_loopback() {
        let cfg = Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..Config::default()
        };
        let (a, mut ea) = start(cfg.clone()).await.unwrap();
        let (b, mut eb) = start(cfg).await.unwrap();
        let addr = loop {
            if let Some(Event::Listening(addr)) = eb.recv().await {
                break addr;
            }
        };
        assert!(a.command(Command::Dial { peer: None, addr }).await);
        let la = loop {
            match tokio::time::timeout(Duration::from_secs(10), ea.recv())
                .await
                .unwrap()
                .unwrap()
            {
                Event::LinkUp { link, outbound, .. } => {
                    assert!(outbound);
                    break link;
                }
                _ => continue,
            }
        };
        assert!(
            a.command(Command::Send {
                link: la,
                frame: b"ping".to_vec()
            })
            .await
        );
        loop {
            match tokio::time::timeout(Duration::from_secs(10), eb.recv())
                .await
                .unwrap()
                .unwrap()
            {
                Event::Frame { bytes, .. } => {
                    assert_eq!(bytes, b"ping");
                    break;
                }
                _ => continue,
            }
        }
        let _ = b;
    }
}
