//! Bluetooth LE links beside the libp2p mesh (cargo feature `ble`; `vaarta up --ble`).
//!
//! The driver (`vaarta_ble::driver`) reports links that completed its Noise handshake; here
//! they become engine links exactly like libp2p ones: `handle_link_up` with a fresh
//! [`vaarta_engine::LinkId`] from the mesh's own allocator ([`vaarta_mesh::LinkIds`]), the
//! link's two Noise statics as transport ids, every frame to `handle_frame`, and
//! `handle_link_down`. The engine's frames for a Bluetooth link go to the driver instead of
//! the mesh ([`Radio::owns`]). Without the feature the types are empty and `--ble` is refused
//! with [`NOT_BUILT`].

use serde_json::Value;
use tokio::sync::mpsc;
use vaarta_engine::Engine;
#[cfg(not(feature = "ble"))]
use vaarta_engine::LinkId;
use vaarta_sync::identity::Identity;

use crate::{Input, NodeError, NodeFacts, SledStore};

/// The error of `--ble` in a build without the feature.
pub const NOT_BUILT: &str = "built without Bluetooth: rebuild with --features ble";

/// `vaarta up --ble` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleOptions {
    /// The adapter (`hci0`); `None`: BlueZ's default.
    pub adapter: Option<String>,
    /// `false`: GATT only (no L2CAP listener, no L2CAP dials).
    pub l2cap: bool,
}

impl Default for BleOptions {
    fn default() -> Self {
        Self {
            adapter: None,
            l2cap: true,
        }
    }
}

#[cfg(feature = "ble")]
pub use vaarta_ble::driver::{DriverEvent as Event, Handle as Radio};

/// Nothing happens on Bluetooth in a build without it.
#[cfg(not(feature = "ble"))]
#[derive(Debug)]
pub enum Event {}

/// No radio in a build without Bluetooth (cannot be made).
#[cfg(not(feature = "ble"))]
#[derive(Debug, Clone)]
pub struct Radio(std::convert::Infallible);

#[cfg(not(feature = "ble"))]
impl Radio {
    pub fn owns(&self, _: LinkId) -> bool {
        match self.0 {}
    }
    pub fn send(&self, _: LinkId, _: Vec<u8>) {
        match self.0 {}
    }
    pub fn close(&self, _: LinkId) {
        match self.0 {}
    }
}

/// Refuses `--ble` early in a build without Bluetooth.
pub fn check(opts: Option<&BleOptions>) -> Result<(), NodeError> {
    if opts.is_some() && !cfg!(feature = "ble") {
        return Err(NodeError::Home(NOT_BUILT.into()));
    }
    Ok(())
}

/// Starts the driver; its events arrive as [`Input::Ble`].
#[cfg(feature = "ble")]
pub async fn start(
    identity: Identity,
    opts: &BleOptions,
    ids: vaarta_mesh::LinkIds,
    inputs: mpsc::Sender<Input>,
) -> Result<Radio, NodeError> {
    let (tx, mut rx) = mpsc::channel(4096);
    let config = vaarta_ble::driver::DriverConfig {
        adapter: opts.adapter.clone(),
        l2cap: opts.l2cap,
        ..Default::default()
    };
    let radio = vaarta_ble::driver::start(identity, config, Box::new(move || ids.next()), tx)
        .await
        .map_err(|e| NodeError::Home(format!("Bluetooth: {e}")))?;
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if inputs.send(Input::Ble(e)).await.is_err() {
                return;
            }
        }
    });
    Ok(radio)
}

#[cfg(not(feature = "ble"))]
pub async fn start(
    _identity: Identity,
    _opts: &BleOptions,
    _ids: vaarta_mesh::LinkIds,
    _inputs: mpsc::Sender<Input>,
) -> Result<Radio, NodeError> {
    Err(NodeError::Home(NOT_BUILT.into()))
}

/// The link a `LinkDown` names (the book forgets it after the engine's events).
pub fn link_down_of(ev: &Event) -> Option<u64> {
    #[cfg(feature = "ble")]
    {
        if let Event::LinkDown { link, .. } = ev {
            return Some(link.0);
        }
        None
    }
    #[cfg(not(feature = "ble"))]
    match *ev {}
}

/// Feeds one driver event to the engine.
pub fn on_event(
    engine: &mut Engine<SledStore>,
    ev: Event,
    facts: &mut NodeFacts,
    now: u64,
) -> Option<Value> {
    #[cfg(feature = "ble")]
    {
        match ev {
            Event::LinkUp {
                link,
                outbound,
                transport,
                remote,
                device: _,
                local_tid,
                remote_tid,
            } => {
                // The Bluetooth address rotates: the peer key names this link's address.
                let peer = format!("ble:{remote}");
                facts.peers.link_up(link.0, &peer, &peer, None, now);
                facts.transports.insert(link.0, transport.name().into());
                engine.handle_link_up(
                    vaarta_engine::LinkUp {
                        link,
                        peer: vaarta_engine::PeerKey::new(peer),
                        outbound,
                        dialed: None,
                        local_tid,
                        remote_tid,
                    },
                    now,
                );
            }
            Event::Frame { link, bytes } => engine.handle_frame(link, &bytes, now),
            Event::LinkDown { link, reason } => {
                tracing::info!(%link, %reason, "Bluetooth link down");
                engine.handle_link_down(link, now);
            }
        }
        None
    }
    #[cfg(not(feature = "ble"))]
    {
        let _ = (engine, facts, now);
        match ev {}
    }
}
