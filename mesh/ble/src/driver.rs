//! Linux radio drivers for [`crate::Link`] (cargo feature `ble`): BlueZ through `bluer` for the
//! peripheral role (advert with the rotating [`crate::advert`] data, a GATT service, an L2CAP
//! CoC listener) and `btleplug` for the central role (scan, connect, GATT).
//!
//! * **L2CAP CoC** (preferred): a `SOCK_SEQPACKET` channel on the fixed PSM [`PSM`] (LE
//!   dynamic range). Each fragment is one SDU. The link uses a fixed ATT-equivalent MTU of
//!   [`L2CAP_MTU`] (509-byte fragments, the largest [`crate::frag`] takes), clamped to the
//!   channel's send and receive MTUs when they are smaller.
//! * **GATT fallback**: the central writes fragments without response to [`RX_UUID`] and
//!   receives them as notifications of [`TX_UUID`]. The MTU is the one BlueZ negotiated
//!   (`btleplug::Peripheral::mtu` on the central, the acquired socket's MTU on the
//!   peripheral), given to [`crate::Link::set_mtu`] before the first fragment.
//! * The dialer (central) is the Noise initiator. Of two devices that see each other, only
//!   the one whose advert is lower dials ([`crate::advert::should_dial`]); the link limit and
//!   the scan duty cycle are [`crate::manager::Manager`]'s.
//! * A peer to dial stays in [`crate::manager::Dials`] while it was seen recently: a dial
//!   that failed (the channel refused, a handshake that stalled) or a link that ended is
//!   retried with backoff from the driver's tick, not only when another advert arrives (a
//!   scanner reports a known device once, and a connected peripheral may stop advertising).
//!   L2CAP is given up for GATT only after [`DialConfig::l2cap_tries`] failures in a row
//!   spanning [`DialConfig::l2cap_grace_ms`].
//!
//! Every link runs in its own task: frames from the engine go into one queue per lane
//! ([`frame_priority`] picks it), and from there into [`crate::Link::send`] while the link's
//! lane has room, so a FLASH frame never waits behind bulk frames in the driver. A link is
//! reported up ([`DriverEvent::LinkUp`]) only once the peer proved its device key.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluer::adv::{Advertisement, AdvertisementHandle};
use bluer::gatt::local::{
    Application, Characteristic, CharacteristicControlEvent, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicWrite, CharacteristicWriteMethod, Service,
    characteristic_control,
};
use bluer::gatt::{CharacteristicReader, CharacteristicWriter};
use bluer::l2cap::{SeqPacket, SeqPacketListener, Socket, SocketAddr};
use bluer::{Address, AddressType};
use btleplug::api::{Central, CentralEvent, Manager as _, Peripheral as _, ScanFilter, WriteType};
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::mpsc;
use uuid::Uuid;
use vaarta_engine::link::LinkId;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::DeviceId;

use crate::advert::{self, AdvertData, Advertiser};
use crate::manager::{Devices, DialConfig, Dials, Manager, ManagerConfig, Outcome, Path, Scan};
use crate::{Config, Event, Link, Priority, Role};

/// Vaarta's GATT service (random, version 1).
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0x5a6e_7461_0001_4b1e_9c3a_6d61_6172_7461);
/// Central → peripheral: write without response.
pub const RX_UUID: Uuid = Uuid::from_u128(0x5a6e_7461_0002_4b1e_9c3a_6d61_6172_7461);
/// Peripheral → central: notify.
pub const TX_UUID: Uuid = Uuid::from_u128(0x5a6e_7461_0003_4b1e_9c3a_6d61_6172_7461);
/// The L2CAP CoC PSM, fixed, in the LE dynamic range (0x80..=0xff).
pub const PSM: u16 = 0x00c5;
/// The MTU a [`Link`] over L2CAP uses (fragments of 509 bytes, one SDU each).
pub const L2CAP_MTU: u16 = 512;
/// Frames queued for one link before it counts as stuck and is closed (as `vaarta-mesh`).
pub const LINK_QUEUE: usize = 4096;
/// Packets handed to a link's writer task ahead of the radio.
const WRITE_AHEAD: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The lane an engine frame goes on ([`crate::sched::lane_of`]: the engine numbers pushes
/// per precedence lane, so a FLASH push may overtake routine ones on the air).
pub fn frame_priority(frame: &[u8]) -> Priority {
    crate::sched::lane_of(frame)
}

/// Which Bluetooth path a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    L2cap,
    Gatt,
}

impl Transport {
    /// As `vaarta peers` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::L2cap => "ble-l2cap",
            Transport::Gatt => "ble-gatt",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The adapter (`hci0`); `None`: BlueZ's default.
    pub adapter: Option<String>,
    /// Listen on and dial L2CAP; `false` forces the GATT path both ways.
    pub l2cap: bool,
    pub manager: ManagerConfig,
    pub dials: DialConfig,
    pub link: Config,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            adapter: None,
            l2cap: true,
            manager: ManagerConfig::default(),
            dials: DialConfig::default(),
            link: Config::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("BlueZ: {0}")]
    Bluez(#[from] bluer::Error),
    #[error("btleplug: {0}")]
    Central(#[from] btleplug::Error),
    #[error("no Bluetooth adapter {0}")]
    NoAdapter(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the driver reports (the node turns it into engine calls).
#[derive(Debug, Clone)]
pub enum DriverEvent {
    /// The peer proved its device key over a new link.
    LinkUp {
        link: LinkId,
        outbound: bool,
        transport: Transport,
        /// The peer's Bluetooth address (display only: it rotates).
        remote: String,
        device: DeviceId,
        local_tid: Vec<u8>,
        remote_tid: Vec<u8>,
    },
    Frame {
        link: LinkId,
        bytes: Vec<u8>,
    },
    LinkDown {
        link: LinkId,
        reason: String,
    },
}

struct Shared {
    identity: Identity,
    config: DriverConfig,
    local: Address,
    next_id: Box<dyn Fn() -> LinkId + Send + Sync>,
    events: mpsc::Sender<DriverEvent>,
    links: Mutex<BTreeMap<LinkId, mpsc::Sender<Vec<u8>>>>,
    manager: Mutex<Manager>,
    /// Peer addresses with a link or a dial under way.
    busy: Mutex<BTreeSet<Address>>,
    /// The link each peer device is on (a device that rotated its address keeps its newest).
    devices: Mutex<Devices<DeviceId, Address>>,
    /// Peers this device dials, with their backoff.
    dials: Mutex<Dials<Address, Target>>,
    epoch: Instant,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A running driver. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Whether `link` is one of this driver's.
    pub fn owns(&self, link: LinkId) -> bool {
        self.shared.links.lock().unwrap().contains_key(&link)
    }

    /// Queues an engine frame (non-blocking). A link whose queue is full is closed.
    pub fn send(&self, link: LinkId, frame: Vec<u8>) {
        let mut links = self.shared.links.lock().unwrap();
        if let Some(tx) = links.get(&link)
            && tx.try_send(frame).is_err()
        {
            tracing::warn!(%link, "Bluetooth link send queue full: closing it");
            links.remove(&link);
        }
    }

    /// Closes a link once what is queued on it has been sent.
    pub fn close(&self, link: LinkId) {
        self.shared.links.lock().unwrap().remove(&link);
    }

    /// The adapter's address.
    pub fn local_address(&self) -> String {
        self.shared.local.to_string()
    }

    /// Fraction of the time spent scanning (a battery proxy).
    pub fn scan_fraction(&self) -> f64 {
        let now = self.shared.now();
        self.shared.manager.lock().unwrap().active_fraction(now)
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS CSPRNG failing is not recoverable for key material: a zero seed would be
    // refused by nobody, so fail loudly.
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

/// Starts the driver on the current tokio runtime. `next_id` hands out link ids from the
/// node's one id space (shared with `vaarta-mesh`).
pub async fn start(
    identity: Identity,
    config: DriverConfig,
    next_id: Box<dyn Fn() -> LinkId + Send + Sync>,
    events: mpsc::Sender<DriverEvent>,
) -> Result<Handle, DriverError> {
    let session = bluer::Session::new().await?;
    let adapter = match &config.adapter {
        Some(n) => session.adapter(n)?,
        None => session.default_adapter().await?,
    };
    adapter.set_powered(true).await?;
    let local = adapter.address().await?;
    let name = adapter.name().to_string();
    let now0 = Instant::now();
    let shared = Arc::new(Shared {
        manager: Mutex::new(Manager::new(config.manager.clone(), 0)),
        dials: Mutex::new(Dials::new(config.dials.clone())),
        devices: Mutex::new(Devices::default()),
        identity,
        config,
        local,
        next_id,
        events,
        links: Mutex::new(BTreeMap::new()),
        busy: Mutex::new(BTreeSet::new()),
        epoch: now0,
    });

    // GATT server: one write-without-response and one notify characteristic.
    let (rx_ctl, rx_handle) = characteristic_control();
    let (tx_ctl, tx_handle) = characteristic_control();
    let app = Application {
        services: vec![Service {
            uuid: SERVICE_UUID,
            primary: true,
            characteristics: vec![
                Characteristic {
                    uuid: RX_UUID,
                    write: Some(CharacteristicWrite {
                        write_without_response: true,
                        method: CharacteristicWriteMethod::Io,
                        ..Default::default()
                    }),
                    control_handle: rx_handle,
                    ..Default::default()
                },
                Characteristic {
                    uuid: TX_UUID,
                    notify: Some(CharacteristicNotify {
                        notify: true,
                        method: CharacteristicNotifyMethod::Io,
                        ..Default::default()
                    }),
                    control_handle: tx_handle,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let app_handle = adapter.serve_gatt_application(app).await?;

    if shared.config.l2cap {
        let listener =
            SeqPacketListener::bind(SocketAddr::new(local, AddressType::LePublic, PSM)).await?;
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, peer)) => {
                        let s = s.clone();
                        tokio::spawn(async move {
                            if !s.busy.lock().unwrap().insert(peer.addr) {
                                tracing::debug!(peer = %peer.addr, "second L2CAP channel from a peer: refused");
                                return;
                            }
                            let mtu = l2cap_mtu(&conn);
                            tracing::debug!(peer = %peer.addr, mtu, "L2CAP channel accepted");
                            let io = Io::L2cap(Arc::new(conn));
                            run_link(
                                s.clone(),
                                Role::Responder,
                                io,
                                Transport::L2cap,
                                mtu,
                                peer.addr,
                                false,
                            )
                            .await;
                            s.busy.lock().unwrap().remove(&peer.addr);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "L2CAP accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    // Central: btleplug on the same adapter.
    let manager = btleplug::platform::Manager::new().await?;
    let mut central = None;
    for a in manager.adapters().await? {
        let info = a.adapter_info().await.unwrap_or_default();
        if info.split_whitespace().next() == Some(name.as_str()) {
            central = Some(a);
        }
    }
    let central = central.ok_or_else(|| DriverError::NoAdapter(name.clone()))?;
    let central_events = central.events().await?;

    let mut boot = random32();
    let advertiser = Advertiser::new(&shared.identity.seed(), boot);
    boot.fill(0);
    let s = shared.clone();
    tokio::spawn(async move {
        let _app = app_handle;
        main_loop(
            s,
            adapter,
            advertiser,
            central,
            central_events,
            rx_ctl,
            tx_ctl,
        )
        .await;
    });
    tracing::info!(adapter = %name, address = %local, l2cap = shared.config.l2cap, "Bluetooth LE up");
    Ok(Handle { shared })
}

fn l2cap_mtu(conn: &SeqPacket) -> u16 {
    let send = conn.send_mtu().unwrap_or(L2CAP_MTU as usize);
    let recv = conn.recv_mtu().unwrap_or(L2CAP_MTU as usize);
    let m = send.min(recv).saturating_add(crate::frag::ATT_HEADER);
    (m.min(L2CAP_MTU as usize) as u16).max(crate::frag::MIN_MTU)
}

async fn advertise(adapter: &bluer::Adapter, data: AdvertData) -> Option<AdvertisementHandle> {
    let full = Advertisement {
        advertisement_type: bluer::adv::Type::Peripheral,
        service_uuids: [SERVICE_UUID].into_iter().collect(),
        service_data: [(SERVICE_UUID, data.to_vec())].into_iter().collect(),
        discoverable: Some(true),
        ..Default::default()
    };
    match adapter.advertise(full).await {
        Ok(h) => return Some(h),
        Err(e) => {
            tracing::debug!(error = %e, "advert with the UUID list refused; trying service data only")
        }
    }
    // A legacy advert (31 bytes) holds the service data alone (30 bytes with the 128-bit
    // UUID): no flags, no UUID list.
    let small = Advertisement {
        advertisement_type: bluer::adv::Type::Peripheral,
        service_data: [(SERVICE_UUID, data.to_vec())].into_iter().collect(),
        ..Default::default()
    };
    match adapter.advertise(small).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot advertise");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn main_loop(
    s: Arc<Shared>,
    adapter: bluer::Adapter,
    advertiser: Advertiser,
    central: btleplug::platform::Adapter,
    mut central_events: std::pin::Pin<Box<dyn futures::Stream<Item = CentralEvent> + Send>>,
    mut rx_ctl: bluer::gatt::local::CharacteristicControl,
    mut tx_ctl: bluer::gatt::local::CharacteristicControl,
) {
    // Wall-clock windows for the advert (both devices must agree on the window).
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    let mut ours = advertiser.service_data(wall());
    let mut adv = advertise(&adapter, ours).await;
    let mut rotate_at = advert::Advertiser::next_rotation(wall());
    // GATT peripheral sessions half set up, per central.
    let mut readers: HashMap<Address, CharacteristicReader> = HashMap::new();
    let mut writers: HashMap<Address, CharacteristicWriter> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = s.now();
                let cmd = s.manager.lock().unwrap().poll_command(now);
                match cmd {
                    Some(Scan::Start) => {
                        if let Err(e) = central.start_scan(ScanFilter::default()).await {
                            tracing::warn!(error = %e, "cannot start scanning");
                        }
                    }
                    Some(Scan::Stop) => { let _ = central.stop_scan().await; }
                    None => {}
                }
                if wall() >= rotate_at {
                    drop(adv.take());
                    ours = advertiser.service_data(wall());
                    adv = advertise(&adapter, ours).await;
                    rotate_at = advert::Advertiser::next_rotation(wall());
                }
                dial_due(&s, &ours);
            }
            ev = central_events.next() => {
                let Some(ev) = ev else { break };
                let id = match ev {
                    CentralEvent::DeviceDiscovered(id)
                    | CentralEvent::DeviceUpdated(id)
                    | CentralEvent::ServiceDataAdvertisement { id, .. } => id,
                    _ => continue,
                };
                let Ok(p) = central.peripheral(&id).await else { continue };
                let Ok(Some(props)) = p.properties().await else { continue };
                let Some(theirs) = props.service_data.get(&SERVICE_UUID) else { continue };
                let Ok(theirs) = <AdvertData>::try_from(theirs.as_slice()) else { continue };
                let addr = Address(props.address.into_inner());
                if !advert::should_dial(&ours, &theirs) {
                    s.dials.lock().unwrap().forget(&addr);
                    continue;
                }
                let addr_type = match props.address_type {
                    Some(btleplug::api::AddressType::Random) => AddressType::LeRandom,
                    _ => AddressType::LePublic,
                };
                let target = Target { peripheral: p, addr_type, theirs };
                s.dials.lock().unwrap().seen(addr, target, s.now());
                dial_due(&s, &ours);
            }
            ev = rx_ctl.next() => {
                let Some(CharacteristicControlEvent::Write(req)) = ev else { continue };
                let addr = req.device_address();
                match req.accept() {
                    Ok(r) => { readers.insert(addr, r); }
                    Err(e) => { tracing::debug!(error = %e, "GATT write accept failed"); continue; }
                }
                start_peripheral(&s, addr, &mut readers, &mut writers);
            }
            ev = tx_ctl.next() => {
                let Some(CharacteristicControlEvent::Notify(w)) = ev else { continue };
                let addr = w.device_address();
                writers.insert(addr, w);
                start_peripheral(&s, addr, &mut readers, &mut writers);
            }
        }
    }
}

/// A central subscribed and wrote: both halves are there, run the link.
fn start_peripheral(
    s: &Arc<Shared>,
    addr: Address,
    readers: &mut HashMap<Address, CharacteristicReader>,
    writers: &mut HashMap<Address, CharacteristicWriter>,
) {
    if !(readers.contains_key(&addr) && writers.contains_key(&addr)) {
        return;
    }
    let (Some(r), Some(w)) = (readers.remove(&addr), writers.remove(&addr)) else {
        return;
    };
    let mtu = r
        .mtu()
        .min(w.mtu())
        .clamp(crate::frag::MIN_MTU as usize, crate::frag::MAX_MTU as usize) as u16;
    let s = s.clone();
    tokio::spawn(async move {
        // No dial of our own to this peer while its link runs.
        let mine = s.busy.lock().unwrap().insert(addr);
        tracing::debug!(peer = %addr, mtu, "GATT central subscribed and wrote");
        let io = Io::GattPeripheral(Arc::new(w), r);
        run_link(
            s.clone(),
            Role::Responder,
            io,
            Transport::Gatt,
            mtu,
            addr,
            false,
        )
        .await;
        if mine {
            s.busy.lock().unwrap().remove(&addr);
        }
    });
}

/// What a dial needs: the central's handle, the address type and the advert it was seen with.
#[derive(Debug, Clone)]
struct Target {
    peripheral: btleplug::platform::Peripheral,
    addr_type: AddressType,
    theirs: AdvertData,
}

/// Starts the dials that are due (within the link limit, one per peer).
fn dial_due(s: &Arc<Shared>, ours: &AdvertData) {
    let now = s.now();
    let due = s.dials.lock().unwrap().due(now);
    for addr in due {
        if s.manager.lock().unwrap().is_full() {
            return;
        }
        let started = {
            let mut dials = s.dials.lock().unwrap();
            let Some(t) = dials.get(&addr) else { continue };
            if !advert::should_dial(ours, &t.theirs) {
                // Our advert rotated since: the rule now says the peer dials.
                dials.forget(&addr);
                continue;
            }
            // A link with it is up already (it dialled us, or we are its peripheral).
            if !s.busy.lock().unwrap().insert(addr) {
                continue;
            }
            dials
                .start(&addr, s.config.l2cap, now)
                .map(|(p, t)| (p, t.clone()))
        };
        let Some((path, target)) = started else {
            s.busy.lock().unwrap().remove(&addr);
            continue;
        };
        let s2 = s.clone();
        tokio::spawn(async move {
            let outcome = dial(s2.clone(), target, addr, path).await;
            s2.busy.lock().unwrap().remove(&addr);
            tracing::debug!(peer = %addr, ?outcome, "dial ended");
            s2.dials.lock().unwrap().finished(&addr, outcome, s2.now());
        });
    }
}

/// Dials a peer over one path ([`Dials::start`] picks it); whether a link came up.
async fn dial(s: Arc<Shared>, target: Target, addr: Address, path: Path) -> Outcome {
    let Target {
        peripheral: p,
        addr_type,
        ..
    } = target;
    let t0 = Instant::now();
    if path == Path::L2cap {
        let conn = async {
            let sock = Socket::<SeqPacket>::new_seq_packet()?;
            sock.bind(SocketAddr::new(s.local, AddressType::LePublic, 0))?;
            sock.connect(SocketAddr::new(addr, addr_type, PSM)).await
        };
        return match tokio::time::timeout(CONNECT_TIMEOUT, conn).await {
            Ok(Ok(conn)) => {
                let mtu = l2cap_mtu(&conn);
                tracing::debug!(peer = %addr, mtu, ms = t0.elapsed().as_millis() as u64, "L2CAP channel connected");
                let io = Io::L2cap(Arc::new(conn));
                if run_link(s, Role::Initiator, io, Transport::L2cap, mtu, addr, true).await {
                    Outcome::Linked(Path::L2cap)
                } else {
                    Outcome::Failed(Path::L2cap)
                }
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %addr, error = %e, ms = t0.elapsed().as_millis() as u64, "L2CAP connect failed");
                Outcome::Failed(Path::L2cap)
            }
            Err(_) => {
                tracing::info!(peer = %addr, "L2CAP connect timed out");
                Outcome::Failed(Path::L2cap)
            }
        };
    }
    let setup = async {
        if !p.is_connected().await? {
            p.connect().await?;
        }
        p.discover_services().await?;
        let chars = p.characteristics();
        let rx = chars.iter().find(|c| c.uuid == RX_UUID).cloned();
        let tx = chars.iter().find(|c| c.uuid == TX_UUID).cloned();
        let (Some(rx), Some(tx)) = (rx, tx) else {
            return Err(btleplug::Error::NotSupported(
                "no Vaarta characteristics".into(),
            ));
        };
        let notes = p.notifications().await?;
        p.subscribe(&tx).await?;
        Ok((rx, notes))
    };
    let outcome = match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
        Ok(Ok((rx, notes))) => {
            let mtu = p.mtu().clamp(crate::frag::MIN_MTU, crate::frag::MAX_MTU);
            tracing::debug!(peer = %addr, mtu, ms = t0.elapsed().as_millis() as u64, "GATT subscribed");
            let p = Arc::new(p.clone());
            let io = Io::GattCentral(p, rx, notes);
            if run_link(s, Role::Initiator, io, Transport::Gatt, mtu, addr, true).await {
                Outcome::Linked(Path::Gatt)
            } else {
                Outcome::Failed(Path::Gatt)
            }
        }
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, error = %e, "GATT connect failed");
            Outcome::Failed(Path::Gatt)
        }
        Err(_) => {
            tracing::info!(peer = %addr, "GATT connect timed out");
            Outcome::Failed(Path::Gatt)
        }
    };
    let _ = p.disconnect().await;
    outcome
}

type Notes =
    std::pin::Pin<Box<dyn futures::Stream<Item = btleplug::api::ValueNotification> + Send>>;

/// One link's packet I/O.
enum Io {
    L2cap(Arc<SeqPacket>),
    GattPeripheral(Arc<CharacteristicWriter>, CharacteristicReader),
    GattCentral(
        Arc<btleplug::platform::Peripheral>,
        btleplug::api::Characteristic,
        Notes,
    ),
}

/// The sending half, moved into the writer task.
enum Tx {
    L2cap(Arc<SeqPacket>),
    GattPeripheral(Arc<CharacteristicWriter>),
    GattCentral(
        Arc<btleplug::platform::Peripheral>,
        btleplug::api::Characteristic,
    ),
}

impl Tx {
    async fn send(&self, pkt: &[u8]) -> Result<(), String> {
        match self {
            Tx::L2cap(c) => c.send(pkt).await.map(|_| ()).map_err(|e| e.to_string()),
            Tx::GattPeripheral(w) => w.send(pkt).await.map_err(|e| e.to_string()),
            Tx::GattCentral(p, c) => p
                .write(c, pkt, WriteType::WithoutResponse)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

enum Rx {
    L2cap(Arc<SeqPacket>, Vec<u8>),
    GattPeripheral(CharacteristicReader),
    GattCentral(Notes),
}

impl Rx {
    /// The next packet; `Ok(None)` when the peer closed.
    async fn recv(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Rx::L2cap(c, buf) => match c.recv(buf).await {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(e) => Err(e.to_string()),
            },
            Rx::GattPeripheral(r) => match r.recv().await {
                Ok(v) if v.is_empty() => Ok(None),
                Ok(v) => Ok(Some(v)),
                Err(e) => Err(e.to_string()),
            },
            Rx::GattCentral(n) => loop {
                match n.next().await {
                    Some(v) if v.uuid == TX_UUID => return Ok(Some(v.value)),
                    Some(_) => continue,
                    None => return Ok(None),
                }
            },
        }
    }
}

impl Io {
    fn split(self) -> (Tx, Rx) {
        match self {
            Io::L2cap(c) => (Tx::L2cap(c.clone()), Rx::L2cap(c, vec![0u8; 1024])),
            Io::GattPeripheral(w, r) => (Tx::GattPeripheral(w), Rx::GattPeripheral(r)),
            Io::GattCentral(p, c, n) => (Tx::GattCentral(p, c), Rx::GattCentral(n)),
        }
    }
}

/// Runs one link until either side ends it; whether it had come up (the peer proved its
/// key).
async fn run_link(
    s: Arc<Shared>,
    role: Role,
    io: Io,
    transport: Transport,
    mtu: u16,
    peer: Address,
    outbound: bool,
) -> bool {
    let id = (s.next_id)();
    let now = s.now();
    if let Err(e) = s.manager.lock().unwrap().add_link(id, now) {
        tracing::info!(%peer, error = %e, "Bluetooth link refused");
        return false;
    }
    let (frames_tx, frames_rx) = mpsc::channel(LINK_QUEUE);
    s.links.lock().unwrap().insert(id, frames_tx);
    let reason = drive_link(&s, id, role, io, transport, mtu, peer, outbound, frames_rx).await;
    s.links.lock().unwrap().remove(&id);
    s.devices.lock().unwrap().link_down(id);
    let now = s.now();
    s.manager.lock().unwrap().remove_link(id, now);
    let was_up = reason.is_some();
    if let Some(reason) = reason {
        let _ = s
            .events
            .send(DriverEvent::LinkDown { link: id, reason })
            .await;
    }
    was_up
}

/// Returns `Some(reason)` if the link had been reported up.
#[allow(clippy::too_many_arguments)]
async fn drive_link(
    s: &Arc<Shared>,
    id: LinkId,
    role: Role,
    io: Io,
    transport: Transport,
    mtu: u16,
    peer: Address,
    outbound: bool,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> Option<String> {
    let mut link = match Link::new(
        role,
        &s.identity,
        None,
        s.config.link.clone(),
        random32(),
        s.now(),
    )
    .and_then(|mut l| l.set_mtu(mtu).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot start a Bluetooth link");
            return None;
        }
    };
    tracing::info!(%id, %peer, transport = transport.name(), mtu, ?role, "Bluetooth connection");
    let (tx, mut rx) = io.split();
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(WRITE_AHEAD);
    let mut writer = tokio::spawn(async move {
        while let Some(p) = wrx.recv().await {
            tx.send(&p).await?;
        }
        Ok::<(), String>(())
    });
    let mut lanes: [VecDeque<Vec<u8>>; crate::sched::LANES] = Default::default();
    let mut up = false;
    let mut engine_closed = false;
    // Diagnostics (`RUST_LOG=vaarta_ble=debug`): how far and how fast a handshake got.
    let t0 = Instant::now();
    let (mut pkts_in, mut pkts_out) = (0u64, 0u64);
    let end = loop {
        // Lanes → link, highest first, while the link takes them.
        for p in Priority::ALL {
            let q = &mut lanes[p.lane()];
            while let Some(f) = q.front() {
                if !link.has_room(p, f.len()) {
                    break;
                }
                let f = q.pop_front().unwrap_or_default();
                if let Err(e) = link.send(p, f) {
                    tracing::debug!(%id, error = ?e, "frame not queued");
                }
            }
        }
        while let Some(ev) = link.poll_event() {
            match ev {
                Event::Established {
                    device,
                    local_tid,
                    remote_tid,
                } => {
                    up = true;
                    let old = s.devices.lock().unwrap().established(device, id, peer);
                    if let Some(old) = old {
                        tracing::info!(%id, %old, %device, "the device is back from a new address: its older link is closed");
                        s.links.lock().unwrap().remove(&old);
                    }
                    tracing::info!(%id, %peer, %device, ms = t0.elapsed().as_millis() as u64, pkts_in, pkts_out, "Bluetooth link authenticated");
                    let _ = s
                        .events
                        .send(DriverEvent::LinkUp {
                            link: id,
                            outbound,
                            transport,
                            remote: peer.to_string(),
                            device,
                            local_tid,
                            remote_tid,
                        })
                        .await;
                }
                Event::Frame { frame, .. } => {
                    let _ = s
                        .events
                        .send(DriverEvent::Frame {
                            link: id,
                            bytes: frame,
                        })
                        .await;
                }
            }
        }
        if let Some(e) = link.error() {
            break format!("{e}");
        }
        if engine_closed && !link.wants_transmit() && lanes.iter().all(|q| q.is_empty()) {
            // Give the writer a moment to put the last packets (a bye) on the air.
            drop(wtx);
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            break "closed".into();
        }
        let deadline = link.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => {
                    tokio::time::sleep(Duration::from_millis(t.saturating_sub(s.now()))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            permit = wtx.reserve(), if link.wants_transmit() => {
                let Ok(permit) = permit else { break "writer stopped".into() };
                if let Some(p) = link.poll_transmit() {
                    pkts_out += 1;
                    if !up {
                        tracing::debug!(%id, len = p.len(), ms = t0.elapsed().as_millis() as u64, "handshake packet out");
                    }
                    permit.send(p);
                }
            }
            r = rx.recv() => match r {
                Ok(Some(pkt)) => {
                    pkts_in += 1;
                    if !up {
                        tracing::debug!(%id, len = pkt.len(), ms = t0.elapsed().as_millis() as u64, "handshake packet in");
                    }
                    if let Err(e) = link.handle_packet(&pkt, s.now()) {
                        tracing::info!(%id, %peer, error = %e, "Bluetooth link cut");
                    }
                }
                Ok(None) => break "peer closed".into(),
                Err(e) => break format!("read failed: {e}"),
            },
            f = frames.recv(), if !engine_closed => match f {
                Some(f) => {
                    lanes[frame_priority(&f).lane()].push_back(f);
                    while let Ok(f) = frames.try_recv() {
                        lanes[frame_priority(&f).lane()].push_back(f);
                    }
                }
                None => engine_closed = true,
            },
            w = &mut writer => {
                break match w {
                    Ok(Err(e)) => format!("write failed: {e}"),
                    _ => "writer stopped".into(),
                };
            }
            _ = sleep => {
                if let Err(e) = link.handle_timeout(s.now()) {
                    tracing::info!(%id, %peer, error = %e, "Bluetooth link timed out");
                }
            }
        }
    };
    writer.abort();
    tracing::info!(%id, %peer, reason = %end, up, pkts_in, pkts_out, secs = t0.elapsed().as_secs(), "Bluetooth link down");
    up.then_some(end)
}
