//! The Vaarta daemon: drives the sans-IO engine (`vaarta-engine`) with real I/O.
//!
//! * one **engine thread** owns the [`Engine`] and its sled store. It takes inputs (mesh
//!   events, API calls) in batches, runs them, calls [`Engine::flush`] once per batch (group
//!   commit: one fsync for everything in the batch), and only then answers API calls and lets
//!   acknowledgements out;
//! * a **tokio runtime** runs the libp2p mesh (`vaarta-mesh`) and the HTTP API (`api`).
//!
//! No protocol decision is made here: this crate moves inputs into the engine and outputs out.

pub mod api;
pub mod at_rest;
pub mod ble;
pub mod bundle;
pub mod client;
pub mod config;
pub mod credentials;
pub mod envlog;
pub mod export;
pub mod journal;
pub mod pages;
pub mod peers;
pub mod store;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};
use vaarta_engine::{Action, Config, Engine, Event, LinkUp, PeerKey};
use vaarta_mesh::libp2p::Multiaddr;
use vaarta_sync::identity::Identity;
use vaarta_sync::store::StoreError;

pub use api::{ApiError, NodeFacts, Request};
pub use ble::BleOptions;
pub use store::SledStore;

/// Milliseconds since the Unix epoch (the daemon is the one place that reads the clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Home(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("network: {0}")]
    Mesh(#[from] vaarta_mesh::Error),
    #[error("API: {0}")]
    Api(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What `vaarta init` writes besides the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub device_id: String,
}

/// Where the running node's API can be reached (written by `up`, removed at clean exit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    pub addr: String,
    pub pid: u32,
}

/// A node's home directory: 0700, every file in it 0600.
///
/// It holds the identity key (`identity.key`), the storage key (`storage.key`, see
/// [`at_rest`]) and the database (`db/`, every value sealed under the storage key). With a
/// passphrase ([`Home::with_passphrase`], `$VAARTA_PASSPHRASE`, `vaarta up --passphrase-file`)
/// both keys are wrapped by it (Argon2id), so a copy of the whole home reveals nothing.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
    passphrase: Option<at_rest::Passphrase>,
}

/// The environment variable a passphrase may come from.
pub const PASSPHRASE_ENV: &str = "VAARTA_PASSPHRASE";
/// The line `identity.key` starts with once it is wrapped by a passphrase (hex follows).
const WRAPPED_IDENTITY: &str = "wrapped ";

/// Neither `--home`, `$VAARTA_HOME` nor `$HOME` says where the home is.
fn no_home() -> NodeError {
    NodeError::Home("no home directory: set --home or VAARTA_HOME (HOME is not set)".into())
}

/// An OS error on `p`, naming the path.
fn at(p: &Path, e: std::io::Error) -> NodeError {
    NodeError::Home(format!("{}: {e}", p.display()))
}

/// Makes `dir` (created if need be) owner-only (0700), and every file directly in it 0600.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for e in std::fs::read_dir(dir)?.flatten() {
            tighten(&e.path())?;
        }
    }
    Ok(())
}

/// Makes a file in the home 0600. A file that vanished since the directory was listed (the
/// temporary file of another process creating a key at the same moment) is no error: that
/// race made concurrent commands on a fresh home fail with "No such file or directory".
#[cfg(unix)]
fn tighten(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    };
    gone((|| {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    })())
}

/// A temporary file next to `path`, unique to this call, written 0600 and synced.
fn write_tmp(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(tmp)
}

/// Syncs the directory holding `path`, so a rename or link into it survives a power cut.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces `path` atomically and durably with `data` (owner-only).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = write_tmp(path, data)?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Creates `path` with `data` (owner-only, durably) unless it exists: `false` if another
/// process created it first, whose file is left as it is.
fn create_private(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    let tmp = write_tmp(path, data)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            passphrase: None,
        }
    }

    /// `--home`, else `$VAARTA_HOME`, else `$HOME/.vaarta`; the passphrase from
    /// `$VAARTA_PASSPHRASE` if set.
    ///
    /// With none of the three (`$HOME` unset or empty, as under some service managers) it
    /// refuses rather than guess: a relative `./.vaarta` would change with the working
    /// directory, and the password database's home may belong to a service account.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self, NodeError> {
        let home = if let Some(d) = flag {
            Self::new(d)
        } else if let Some(d) = std::env::var_os("VAARTA_HOME").filter(|d| !d.is_empty()) {
            Self::new(d)
        } else if std::env::var_os("HOME").is_some_and(|h| !h.is_empty()) {
            // `directories` reads $HOME first (and knows other platforms' conventions).
            let base = directories::BaseDirs::new()
                .map(|d| d.home_dir().to_path_buf())
                .ok_or_else(no_home)?;
            Self::new(base.join(".vaarta"))
        } else {
            return Err(no_home());
        };
        Ok(match std::env::var(PASSPHRASE_ENV) {
            Ok(p) if !p.is_empty() => home.with_passphrase(at_rest::Passphrase::new(p)),
            _ => home,
        })
    }

    /// Uses `p` to unwrap the keys (and wraps keys that are not wrapped yet).
    pub fn with_passphrase(mut self, p: at_rest::Passphrase) -> Self {
        self.passphrase = Some(p).filter(|p| !p.is_empty());
        self
    }

    /// [`Home::with_passphrase`] with the first line of a file.
    pub fn with_passphrase_file(self, path: &Path) -> Result<Self, NodeError> {
        let p = at_rest::Passphrase::from_file(path).map_err(|e| {
            NodeError::Home(format!(
                "cannot read the passphrase file {}: {e}",
                path.display()
            ))
        })?;
        Ok(self.with_passphrase(p))
    }

    pub fn storage_key_path(&self) -> PathBuf {
        self.dir.join("storage.key")
    }

    /// The key the database is sealed under ([`at_rest`]). Created with the database (by
    /// whichever process gets there first: two commands starting at once on a fresh home
    /// agree on one key); wrapped by the passphrase in [`Home::wrap_keys`]. Refuses to
    /// invent a key for a database that exists already.
    pub fn storage_key(&self) -> Result<at_rest::Secret, NodeError> {
        make_private_dir(&self.dir).map_err(|e| at(&self.dir, e))?;
        let path = self.storage_key_path();
        let pass = self.passphrase.as_ref();
        let file = match std::fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.db_path().exists() {
                    return Err(NodeError::Home(format!(
                        "{} is missing but the database {} exists: without its key the database cannot be read (restore the key file, or move the database away to start afresh)",
                        path.display(),
                        self.db_path().display()
                    )));
                }
                let key = at_rest::Secret::random().map_err(NodeError::Home)?;
                let file = at_rest::encode(&key, pass).map_err(NodeError::Home)?;
                if create_private(&path, &file).map_err(|e| at(&path, e))? {
                    return Ok(key);
                }
                // Another process created it a moment ago: use that one.
                std::fs::read(&path).map_err(|e| at(&path, e))?
            }
            Err(e) => return Err(at(&path, e)),
        };
        at_rest::decode(&file, pass)
            .map_err(|e| NodeError::Home(format!("{}: {e}", path.display())))
    }

    /// With a passphrase, wraps whichever of the two key files is still plain, both in one
    /// place. Called with the database open (its lock held), so no other process of this
    /// home reads the keys half-converted.
    fn wrap_keys(&self, identity: &Identity, storage: &at_rest::Secret) -> Result<(), NodeError> {
        let Some(pass) = self.passphrase.as_ref() else {
            return Ok(());
        };
        let id_file =
            std::fs::read_to_string(self.key_path()).map_err(|e| at(&self.key_path(), e))?;
        if !id_file.trim().starts_with(WRAPPED_IDENTITY) {
            self.write_identity(&at_rest::Secret::new(identity.seed()))?;
        }
        let path = self.storage_key_path();
        let file = std::fs::read(&path).map_err(|e| at(&path, e))?;
        if !at_rest::is_wrapped(&file) {
            write_private(
                &path,
                &at_rest::encode(storage, Some(pass)).map_err(NodeError::Home)?,
            )
            .map_err(|e| at(&path, e))?;
        }
        Ok(())
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    /// Remote wipe (issue 12): overwrites the two key files with zeros and deletes them,
    /// then deletes the database, the credentials and the API files; leaves a `WIPED` note
    /// saying why. Without the keys nothing left of the database could be read, even if a
    /// deletion failed; every failure is returned (the caller reports it and stops anyway).
    pub fn wipe(&self, note: &str) -> Vec<String> {
        use std::io::Write;
        let mut failed = Vec::new();
        for p in [self.key_path(), self.storage_key_path()] {
            let r = (|| -> std::io::Result<()> {
                let len = match std::fs::metadata(&p) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                let mut f = std::fs::OpenOptions::new().write(true).open(&p)?;
                f.write_all(&vec![0u8; len as usize])?;
                f.sync_all()?;
                std::fs::remove_file(&p)
            })();
            if let Err(e) = r {
                failed.push(format!("{}: {e}", p.display()));
            }
        }
        for d in [self.db_path(), credentials::dir(&self.dir)] {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push(format!("{}: {e}", d.display())),
            }
        }
        for p in [self.api_path(), self.token_path(), self.info_path()] {
            let _ = std::fs::remove_file(p);
        }
        if let Err(e) = write_private(&self.dir.join("WIPED"), note.as_bytes()) {
            failed.push(format!("WIPED note: {e}"));
        }
        failed
    }
    pub fn info_path(&self) -> PathBuf {
        self.dir.join("node.json")
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("db")
    }
    pub fn api_path(&self) -> PathBuf {
        self.dir.join("api.json")
    }
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("api-token")
    }

    /// Whether the home holds an identity. A key file that cannot be looked at (an
    /// unreadable home, a file in place of the directory) counts as there, so that
    /// [`Home::load`] reports the real error with its path instead of "run init".
    pub fn is_initialised(&self) -> bool {
        !matches!(std::fs::symlink_metadata(self.key_path()), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// Creates this device's identity from the OS CSPRNG. Refuses to overwrite one.
    pub fn init(&self, name: &str) -> Result<Identity, NodeError> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(NodeError::Home(format!(
                "{} exists and is not a directory: give another --home",
                self.dir.display()
            )));
        }
        if self.is_initialised() {
            // An identity that cannot be read is reported as such, with its path.
            let (_, info) = self.load()?;
            return Err(NodeError::Home(format!(
                "{} already has an identity (device {}); refusing to overwrite it",
                self.dir.display(),
                info.device_id
            )));
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(NodeError::Home("the name must be 1 to 64 bytes".into()));
        }
        make_private_dir(&self.dir).map_err(|e| at(&self.dir, e))?;
        let seed = at_rest::Secret::random().map_err(NodeError::Home)?;
        let id = Identity::from_seed(*seed.bytes());
        if !id.device_id().is_valid() {
            return Err(NodeError::Home(
                "generated an unusable key; try again".into(),
            ));
        }
        self.write_identity(&seed)?;
        let info = NodeInfo {
            name: name.to_string(),
            device_id: id.device_id().to_string(),
        };
        write_private(
            &self.info_path(),
            &serde_json::to_vec_pretty(&info).unwrap_or_default(),
        )
        .map_err(|e| at(&self.info_path(), e))?;
        Ok(id)
    }

    /// Writes the identity seed: hex, or wrapped by the passphrase if there is one.
    fn write_identity(&self, seed: &at_rest::Secret) -> Result<(), NodeError> {
        let text = match &self.passphrase {
            Some(p) => {
                let f = at_rest::encode(seed, Some(p)).map_err(NodeError::Home)?;
                zeroize::Zeroizing::new(format!("{WRAPPED_IDENTITY}{}", hex(&f)))
            }
            None => zeroize::Zeroizing::new(hex(seed.bytes())),
        };
        write_private(&self.key_path(), text.as_bytes())?;
        Ok(())
    }

    /// The key file's text; "run init" if there is none, else an error naming its path.
    fn read_key_file(&self) -> Result<zeroize::Zeroizing<String>, NodeError> {
        if self.dir.exists() {
            make_private_dir(&self.dir).map_err(|e| at(&self.dir, e))?;
        }
        std::fs::read_to_string(self.key_path())
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    NodeError::Home(format!(
                        "no identity in {}: run `vaarta init --name NAME` first",
                        self.dir.display()
                    ))
                } else {
                    at(&self.key_path(), e)
                }
            })
    }

    /// This home's name and device id, without unwrapping the identity key (so commands
    /// that talk to a running node need no passphrase): from `node.json`, or from the key
    /// itself if that file is missing or unreadable.
    pub fn info(&self) -> Result<NodeInfo, NodeError> {
        self.read_key_file()?;
        match std::fs::read(self.info_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<NodeInfo>(&b).ok())
        {
            Some(info) => Ok(info),
            None => self.load().map(|(_, info)| info),
        }
    }

    pub fn load(&self) -> Result<(Identity, NodeInfo), NodeError> {
        let key = self.read_key_file()?;
        let bad = || {
            NodeError::Home(format!(
                "{} is not a valid key file",
                self.key_path().display()
            ))
        };
        let seed = match key.trim().strip_prefix(WRAPPED_IDENTITY) {
            Some(w) => {
                let file = zeroize::Zeroizing::new(unhex(w.trim()).ok_or_else(bad)?);
                at_rest::decode(&file, self.passphrase.as_ref())
                    .map_err(|e| NodeError::Home(format!("{}: {e}", self.key_path().display())))?
            }
            None => {
                let b = zeroize::Zeroizing::new(unhex(key.trim()).ok_or_else(bad)?);
                at_rest::Secret::new(b.as_slice().try_into().map_err(|_| bad())?)
            }
        };
        let id = Identity::from_seed(*seed.bytes());
        let info: NodeInfo = std::fs::read(self.info_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(NodeInfo {
                name: "device".into(),
                device_id: id.device_id().to_string(),
            });
        if info.device_id != id.device_id().to_string() {
            return Err(NodeError::Home(format!(
                "{} does not match the key file",
                self.info_path().display()
            )));
        }
        Ok((id, info))
    }

    /// The running node's API address and token, if one is running: `api.json` is trusted
    /// only while its process lives and (where `/proc` shows it) holds the listening socket,
    /// so after a crash the token and message text are not sent to whatever listens on that
    /// port now. A stale `api.json` is removed. Callers still check the node's identity
    /// ([`Home::verify_api`]).
    pub fn running_api(&self) -> Option<(ApiInfo, String)> {
        let raw = std::fs::read(self.api_path()).ok()?;
        let info: ApiInfo = serde_json::from_slice(&raw).ok()?;
        match api_owner(&info) {
            Owner::Yes | Owner::Unknown => {}
            Owner::Dead => {
                // Only the file judged stale: a node starting meanwhile writes a new one.
                if std::fs::read(self.api_path()).is_ok_and(|now| now == raw) {
                    tracing::info!(pid = info.pid, "removing a stale api.json");
                    let _ = std::fs::remove_file(self.api_path());
                }
                return None;
            }
            Owner::NotListening => return None,
        }
        let token = std::fs::read_to_string(self.token_path()).ok()?;
        Some((info, token.trim().to_string()))
    }

    /// Checks that a node's status answer is this home's device, `me` from
    /// [`Home::info`] (not another program or another node that now has the port).
    pub fn verify_api(&self, me: &NodeInfo, status: &serde_json::Value) -> Result<(), NodeError> {
        let expected = &me.device_id;
        match status["device_id"].as_str() {
            Some(d) if d == expected => Ok(()),
            other => Err(NodeError::Home(format!(
                "the API named in {} answers as device {}, not this home's {expected}: refusing to use it (remove the file if no node of this home runs)",
                self.api_path().display(),
                other.unwrap_or("(none)")
            ))),
        }
    }
}

/// Whether the process named in `api.json` serves its address.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Yes,
    /// The process is gone (a crash, or a kill -9).
    Dead,
    /// The process lives but does not hold a socket listening there (its pid was reused).
    NotListening,
    /// This system does not say (no `/proc`, or another user's process).
    Unknown,
}

fn api_owner(info: &ApiInfo) -> Owner {
    let proc = PathBuf::from(format!("/proc/{}", info.pid));
    if !Path::new("/proc/self").exists() {
        return Owner::Unknown;
    }
    if !proc.exists() {
        return Owner::Dead;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Another user's process (a reused pid, or someone who took the port after a
        // crash) is never this home's node, whatever it answers.
        let uid = |p: &Path| std::fs::metadata(p).map(|m| m.uid()).ok();
        if uid(&proc) != uid(Path::new("/proc/self")) {
            return Owner::NotListening;
        }
    }
    let Ok(addr) = info.addr.parse::<SocketAddr>() else {
        return Owner::NotListening;
    };
    let Some(inodes) = listening_inodes(addr) else {
        return Owner::Unknown;
    };
    let Ok(fds) = std::fs::read_dir(proc.join("fd")) else {
        return Owner::Unknown;
    };
    let held = fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|l| {
            let l = l.to_string_lossy();
            inodes
                .iter()
                .any(|i| l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) == Some(i))
        })
    });
    if held {
        Owner::Yes
    } else {
        Owner::NotListening
    }
}

/// Socket inodes listening on `addr` (from /proc/net/tcp or tcp6).
fn listening_inodes(addr: SocketAddr) -> Option<Vec<String>> {
    let (file, local) = match addr {
        SocketAddr::V4(a) => (
            "/proc/net/tcp",
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(a.ip().octets()),
                a.port()
            ),
        ),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let words: String = o
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            ("/proc/net/tcp6", format!("{words}:{:04X}", a.port()))
        }
    };
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // local_address, state 0A = LISTEN, inode is the tenth field.
                (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
            })
            .collect(),
    )
}

/// The transport may share a TCP port with another socket that allows it (port reuse), so
/// a second node on the same `--listen` address would be accepted and incoming dials split
/// between the two. A plain bind first tells whether the port is free.
fn refuse_taken_port(addr: &Multiaddr) -> Result<(), NodeError> {
    use vaarta_mesh::libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NodeError::Home(format!(
            "cannot listen on {addr}: the port is already in use (another node or program holds it); choose another --listen"
        ))),
        Err(e) => Err(NodeError::Home(format!("cannot listen on {addr}: {e}"))),
    }
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    pub api: SocketAddr,
    pub relay: bool,
    /// Write api.json (off for nodes embedded in tests or the demo that should not be found
    /// by CLI commands).
    pub publish_api: bool,
    /// Bluetooth LE links too (`--ble`; a build with the `ble` feature).
    pub ble: Option<BleOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: vaarta_mesh::Config::default().listen,
            peers: Vec::new(),
            mdns: true,
            api: "127.0.0.1:0".parse().expect("valid"),
            relay: true,
            publish_api: true,
            ble: None,
        }
    }
}

/// Inputs of the engine thread.
#[derive(Debug)]
pub enum Input {
    Mesh(vaarta_mesh::Event),
    /// From the Bluetooth driver (none in a build without it).
    Ble(ble::Event),
    Api(api::Call),
    Shutdown(oneshot::Sender<Result<(), String>>),
}

/// Opens the engine over the home's store, without network (for commands run while no node
/// is up, and for the node itself).
pub fn open_engine(
    home: &Home,
    config_tweak: impl FnOnce(&mut Config),
) -> Result<(Engine<SledStore>, Vec<String>), NodeError> {
    let (identity, info) = home.load()?;
    let storage_key = home.storage_key()?;
    let now = now_ms();
    // Another short-lived command (or a node starting or stopping) may hold the database for
    // a moment: wait for it rather than fail.
    let started = std::time::Instant::now();
    let (store, opened) = loop {
        match store::open_or_quarantine(&home.db_path(), &storage_key, now) {
            Err(StoreError::Io(m))
                if m.contains("in use by another process")
                    && started.elapsed() < Duration::from_secs(15) =>
            {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => break other?,
        }
    };
    // The database lock is held now: convert plain key files to wrapped ones here only.
    home.wrap_keys(&identity, &storage_key)?;
    let mut warnings = Vec::new();
    if let store::Opened::Quarantined(p) = opened {
        warnings.push(format!(
            "the database was corrupt and was moved to {}; starting empty. Peers resend the envelopes of shared conversations they still hold, but invitations older than {} days and anything only this device held are only in the moved copy: keep it",
            p.display(),
            vaarta_sync::replica::INBOX_DAYS_BACK
        ));
    }
    let mut config = Config {
        name: info.name,
        ..Config::default()
    };
    config_tweak(&mut config);
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| NodeError::Home(format!("no OS randomness: {e}")))?;
    let mut engine = Engine::new(identity, store, config, seed, now)?;
    let (creds, mut left_out) = credentials::load(&home.dir);
    warnings.append(&mut left_out);
    if let Err(e) = engine.set_credentials(creds, now) {
        warnings.push(format!(
            "this device's credentials were left out: {e} (enrol again with `vaarta org enrol`)"
        ));
    }
    Ok((engine, warnings))
}

/// A home's engine opened to answer requests without a running node (the CLI when no
/// node is up); every request is flushed and checkpointed before its answer.
///
/// Open it once per process and keep it for every request: sled 0.34 lets go of its
/// database lock from background threads some time after the store is dropped
/// (spacejam/sled#1234), so opening the same home again in the same process can now and
/// then find it still locked ("in use by another process").
pub struct Offline {
    engine: Engine<SledStore>,
    facts: NodeFacts,
}

impl std::fmt::Debug for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offline").finish_non_exhaustive()
    }
}

impl Offline {
    pub fn open(home: &Home) -> Result<Offline, ApiError> {
        let (engine, warnings) =
            open_engine(home, |_| {}).map_err(|e| ApiError::internal(e.to_string()))?;
        let facts = NodeFacts {
            warnings,
            credentials_dir: Some(credentials::dir(&home.dir)),
            ..NodeFacts::default()
        };
        Ok(Offline { engine, facts })
    }

    /// The engine, to read.
    pub fn engine(&self) -> &Engine<SledStore> {
        &self.engine
    }

    /// Imports a bundle file with no node running (the same two passes as
    /// `POST /v1/bundles/import`; each batch flushed before the next).
    pub fn import_bundle(
        &mut self,
        path: &str,
        progress: bundle::Progress<'_>,
    ) -> Result<serde_json::Value, ApiError> {
        let mut take =
            |exporter, records| self.execute(Request::BundleRecords { exporter, records });
        bundle::import_path(path, &mut take, progress)
    }

    /// Runs one request, then flushes and checkpoints.
    pub fn execute(&mut self, request: Request) -> Result<serde_json::Value, ApiError> {
        let now = now_ms();
        let r = api::execute(&mut self.engine, request, now, &self.facts);
        self.engine
            .flush(now)
            .map_err(|e| ApiError::internal(format!("storage: {e}")))?;
        self.engine
            .checkpoint()
            .map_err(|e| ApiError::internal(format!("storage: {e}")))?;
        r
    }
}

/// Runs one request without a running node (opens the store, executes, flushes, closes).
/// A process that makes more than one keeps an [`Offline`] instead.
pub fn execute_offline(home: &Home, request: Request) -> Result<serde_json::Value, ApiError> {
    Offline::open(home)?.execute(request)
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    inputs: mpsc::Sender<Input>,
    pub api_addr: SocketAddr,
    pub token: String,
    pub listen: Vec<Multiaddr>,
    pub device_id: String,
    pub events: broadcast::Sender<String>,
    home: Home,
    publish_api: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Starts a node from its home on the current tokio runtime. Returns once it listens.
    pub async fn start(home: &Home, opts: Options) -> Result<Node, NodeError> {
        ble::check(opts.ble.as_ref())?;
        let statics: Vec<String> = opts.peers.iter().map(|m| m.to_string()).collect();
        let book = peers::PeerBook::new(&statics);
        let relay = opts.relay;
        let (mut engine, warnings) = open_engine(home, |c| {
            c.static_peers = statics;
            c.relay = relay;
        })?;
        let device_id = engine.device_id().to_string();
        let mesh_cfg = vaarta_mesh::Config {
            listen: opts.listen.clone(),
            mdns: opts.mdns,
            ban: Duration::from_millis(engine.config().ban_ms),
            ..vaarta_mesh::Config::default()
        };
        for a in &opts.listen {
            refuse_taken_port(a)?;
        }
        let (mesh, mut mesh_events) = vaarta_mesh::start(mesh_cfg).await?;
        // Wait (briefly) for the listeners so we can print them.
        let mut listen = Vec::new();
        let mut early = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while listen.len() < opts.listen.len() {
            match tokio::time::timeout_at(deadline, mesh_events.recv()).await {
                Ok(Some(vaarta_mesh::Event::Listening(a))) => listen.push(a),
                Ok(Some(other)) => early.push(other),
                _ => break,
            }
        }
        let (inputs_tx, mut inputs_rx) = mpsc::channel::<Input>(4096);
        for e in early {
            let _ = inputs_tx.send(Input::Mesh(e)).await;
        }
        let radio = match &opts.ble {
            Some(b) => {
                let (identity, _) = home.load()?;
                Some(ble::start(identity, b, mesh.link_ids(), inputs_tx.clone()).await?)
            }
            None => None,
        };
        let fwd = inputs_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = mesh_events.recv().await {
                if fwd.send(Input::Mesh(e)).await.is_err() {
                    return;
                }
            }
        });
        let mut token_bytes = [0u8; 32];
        getrandom::fill(&mut token_bytes)
            .map_err(|e| NodeError::Home(format!("no OS randomness: {e}")))?;
        let token = hex(&token_bytes);
        let (events_tx, _) = broadcast::channel(1024);
        let (api_addr, _server) = api::serve(
            opts.api,
            inputs_tx.clone(),
            token.clone(),
            events_tx.clone(),
        )
        .await
        .map_err(|e| NodeError::Api(format!("cannot listen on {}: {e}", opts.api)))?;
        if opts.publish_api {
            let at =
                |p: PathBuf, e: std::io::Error| NodeError::Home(format!("{}: {e}", p.display()));
            write_private(&home.token_path(), token.as_bytes())
                .map_err(|e| at(home.token_path(), e))?;
            let info = ApiInfo {
                addr: api_addr.to_string(),
                pid: std::process::id(),
            };
            write_private(
                &home.api_path(),
                &serde_json::to_vec(&info).unwrap_or_default(),
            )
            .map_err(|e| at(home.api_path(), e))?;
        }
        let facts = NodeFacts {
            listen: listen.iter().map(|a| a.to_string()).collect(),
            api: Some(api_addr.to_string()),
            peer_id: Some(mesh.local_peer_id.to_string()),
            warnings,
            online: true,
            peers: book,
            credentials_dir: Some(credentials::dir(&home.dir)),
            transports: Default::default(),
        };
        let events = events_tx.clone();
        let thread = std::thread::Builder::new()
            .name("vaarta-engine".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the engine thread");
                        return;
                    }
                };
                let out = Outputs {
                    mesh: &mesh,
                    radio: radio.as_ref(),
                };
                engine_loop(&mut engine, &rt, &mut inputs_rx, out, facts, &events);
            })?;
        Ok(Node {
            inputs: inputs_tx,
            api_addr,
            token,
            listen,
            device_id,
            events: events_tx,
            home: home.clone(),
            publish_api: opts.publish_api,
            thread: Some(thread),
        })
    }

    /// Runs a request in-process (as the HTTP API would).
    pub async fn call(&self, request: Request) -> Result<serde_json::Value, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.inputs
            .send(Input::Api(api::Call { request, reply: tx }))
            .await
            .map_err(|_| ApiError::internal("the node has stopped"))?;
        rx.await
            .map_err(|_| ApiError::internal("the node stopped before answering"))?
    }

    /// Stops the node: finishes the batch in hand, saves pages, flushes, stops the engine.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inputs.send(Input::Shutdown(tx)).await;
        let r = rx.await.unwrap_or(Ok(()));
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        if self.publish_api {
            let _ = std::fs::remove_file(self.home.api_path());
        }
        r.map_err(NodeError::Home)
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    use vaarta_sync::replica::Event as S;
    match e {
        Event::Sync(S::ConversationAdded(c)) => {
            json!({"type": "conversation_added", "conversation": c.to_string()})
        }
        Event::Sync(S::InvitationHeld {
            conversation,
            inviter,
        }) => {
            json!({"type": "invitation", "conversation": conversation.to_string(), "inviter": inviter.to_string()})
        }
        Event::Sync(S::MembershipChanged(c)) => {
            json!({"type": "membership_changed", "conversation": c.to_string()})
        }
        Event::Sync(S::Applied {
            conversation,
            envelope,
        }) => {
            json!({"type": "applied", "conversation": conversation.to_string(), "envelope": envelope.to_string()})
        }
        Event::Sync(S::MessagesChanged { conversation, page }) => {
            json!({"type": "messages", "conversation": conversation.to_string(), "page": page})
        }
        Event::LinkReady { link, device, name } => {
            json!({"type": "peer_up", "link": link.0, "device": device.to_string(), "name": name})
        }
        Event::LinkClosed { link, device } => {
            json!({"type": "peer_down", "link": link.0, "device": device.map(|d| d.to_string())})
        }
        Event::Delivered { envelope, device } => {
            json!({"type": "delivered", "envelope": envelope.to_string(), "device": device.to_string()})
        }
        Event::Refused { link, reason, cut } => {
            json!({"type": "refused", "link": link.0, "reason": reason.to_string(), "cut": cut})
        }
        Event::Created { envelope } => json!({"type": "created", "envelope": envelope.to_string()}),
        Event::RevocationsLearnt { records } => {
            json!({"type": "revocations_learnt", "count": records.len()})
        }
        Event::DirectoryLearnt { records } => {
            json!({"type": "directory_learnt", "count": records.len()})
        }
        Event::WipeOrdered { issuer, issued_at } => {
            json!({"type": "wipe_ordered", "issuer": issuer.to_string(), "issued_at": issued_at})
        }
        Event::WipeRefused { reason } => json!({"type": "wipe_refused", "reason": reason}),
        Event::Reconciled { link, stats } => {
            json!({"type": "reconciled", "link": link.0, "rounds": stats.messages_sent + stats.messages_received,
            "bytes_sent": stats.bytes_sent, "bytes_received": stats.bytes_received})
        }
    }
}

/// A valid wipe order named this device: erase the home ([`Home::wipe`]) and stop the
/// process at once (nothing more is written: no flush, no checkpoint), with a clear message
/// and exit status [`WIPED_EXIT_CODE`].
fn obey_wipe(home: &std::path::Path, issuer: &vaarta_sync::ids::DeviceId, issued_at: u64) -> ! {
    let note = format!(
        "this device was wiped by order of {issuer} (issued at {issued_at} ms since 1970): its identity keys, messages and credentials are erased\n"
    );
    let failed = Home::new(home.to_path_buf()).wipe(&note);
    eprintln!("vaarta: {}", note.trim_end());
    for f in &failed {
        eprintln!("vaarta: could not erase {f}");
    }
    tracing::error!(%issuer, issued_at, "wiped by order of the organisation; stopping");
    std::process::exit(WIPED_EXIT_CODE)
}

/// Exit status of a node that obeyed a wipe order.
pub const WIPED_EXIT_CODE: i32 = 3;

fn engine_loop(
    engine: &mut Engine<SledStore>,
    rt: &tokio::runtime::Runtime,
    inputs: &mut mpsc::Receiver<Input>,
    out: Outputs<'_>,
    mut facts: NodeFacts,
    events: &broadcast::Sender<String>,
) {
    type Reply = Result<serde_json::Value, ApiError>;
    let mut replies: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::new();
    let mut stop: Option<oneshot::Sender<Result<(), String>>> = None;
    let local_tid = out.mesh.local_peer_id.to_bytes();
    loop {
        let now = now_ms();
        let wait = engine
            .poll_timeout()
            .map(|t| t.saturating_sub(now))
            .unwrap_or(1_000)
            .clamp(1, 1_000);
        let mut batch = Vec::new();
        match rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(wait), inputs.recv()).await
        }) {
            Ok(Some(i)) => batch.push(i),
            Ok(None) => break,
            Err(_) => {}
        }
        while batch.len() < 512 {
            match inputs.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let now = now_ms();
        let mut news = Vec::new();
        let mut closed = Vec::new();
        for input in batch {
            match input {
                Input::Mesh(ev) => {
                    if let vaarta_mesh::Event::LinkDown { link, .. } = &ev {
                        closed.push(link.0);
                    }
                    news.extend(on_mesh(engine, ev, &local_tid, &mut facts, now));
                }
                Input::Ble(ev) => {
                    closed.extend(ble::link_down_of(&ev));
                    news.extend(ble::on_event(engine, ev, &mut facts, now));
                }
                Input::Api(call) => {
                    let r = api::execute(engine, call.request, now, &facts);
                    replies.push((call.reply, r));
                }
                Input::Shutdown(tx) => stop = Some(tx),
            }
        }
        if engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
        }
        let flushed = engine.flush(now);
        if let Err(e) = &flushed {
            // Nothing in this batch is acknowledged; callers get the error; the node goes on.
            tracing::error!(error = %e, "flush failed");
            facts.warnings.push(format!("storage error: {e}"));
            facts.warnings.truncate(16);
        }
        for (tx, r) in replies.drain(..) {
            let r = match &flushed {
                Ok(()) => r,
                Err(e) => Err(ApiError::internal(format!("not saved: {e}"))),
            };
            let _ = tx.send(r);
        }
        for e in pump(engine, &out) {
            if let (Event::WipeOrdered { issuer, issued_at }, Some(dir)) =
                (&e, &facts.credentials_dir)
                && let Some(home) = dir.parent()
            {
                obey_wipe(home, issuer, *issued_at);
            }
            if let Event::WipeRefused { reason } = &e {
                tracing::warn!(%reason, "refused a wipe order for this device");
                facts
                    .warnings
                    .push(format!("refused a wipe order for this device: {reason}"));
                facts.warnings.truncate(16);
            }
            if let (Event::RevocationsLearnt { records }, Some(dir)) = (&e, &facts.credentials_dir)
                && let Err(err) = credentials::save_revocations(dir, records)
            {
                tracing::error!(error = %err, "cannot save revocations learnt from peers");
                facts.warnings.push(err);
                facts.warnings.truncate(16);
            }
            if let (Event::DirectoryLearnt { records }, Some(dir)) = (&e, &facts.credentials_dir)
                && let Err(err) = credentials::save_directory(dir, records)
            {
                tracing::error!(error = %err, "cannot save directory records");
                facts.warnings.push(err);
                facts.warnings.truncate(16);
            }
            let mut v = event_json(&e);
            facts.peers.enrich(&mut v, now);
            let _ = events.send(v.to_string());
        }
        // After the engine's peer_down events, which the book names.
        for link in closed {
            facts.peers.link_down(link, now);
            facts.transports.remove(&link);
        }
        for v in news {
            let _ = events.send(v.to_string());
        }
        if let Some(tx) = stop.take() {
            let r = engine.stop().map_err(|e| e.to_string());
            let _ = tx.send(r);
            return;
        }
    }
}

fn on_mesh(
    engine: &mut Engine<SledStore>,
    ev: vaarta_mesh::Event,
    local_tid: &[u8],
    facts: &mut NodeFacts,
    now: u64,
) -> Option<serde_json::Value> {
    use vaarta_mesh::Event as M;
    match ev {
        M::Listening(a) => {
            let s = a.to_string();
            if !facts.listen.contains(&s) {
                facts.listen.push(s);
            }
        }
        M::LinkUp {
            link,
            peer,
            outbound,
            dialed,
            remote,
        } => {
            let quic = remote
                .iter()
                .any(|p| matches!(p, vaarta_mesh::libp2p::multiaddr::Protocol::QuicV1));
            facts
                .transports
                .insert(link.0, if quic { "quic" } else { "tcp" }.into());
            facts.peers.link_up(
                link.0,
                &peer.to_string(),
                &remote.to_string(),
                dialed.as_ref().map(|d| d.to_string()).as_deref(),
                now,
            );
            engine.handle_link_up(
                LinkUp {
                    link,
                    peer: PeerKey::new(peer.to_string()),
                    outbound,
                    dialed: dialed.map(|d| d.to_string()),
                    local_tid: local_tid.to_vec(),
                    remote_tid: peer.to_bytes(),
                },
                now,
            )
        }
        M::Frame { link, bytes } => engine.handle_frame(link, &bytes, now),
        M::LinkDown { link, reason } => {
            tracing::info!(%link, %reason, "link down");
            engine.handle_link_down(link, now)
        }
        M::Discovered { peer, addrs } => engine.handle_discovered(
            PeerKey::new(peer.to_string()),
            addrs.iter().map(|a| a.to_string()).collect(),
            now,
        ),
        M::DialFailed { peer, addr, error } => {
            tracing::debug!(?peer, ?addr, %error, "dial failed");
            let addr = addr.map(|a| a.to_string()).unwrap_or_default();
            let news = facts.peers.dial_failed(&addr, &error, now);
            if news.is_some() {
                tracing::info!(%addr, %error, "static peer unreachable");
            }
            engine.handle_dial_failed(peer.map(|p| PeerKey::new(p.to_string())), addr, now);
            return news;
        }
    }
    None
}

/// Hands the engine's outputs to the mesh (the engine's poll order, [`vaarta_engine::drive`]):
/// frames first, so a link's last frames (a bye) leave before it is closed; then dials and
/// closes. Returns the events for the application.
fn pump(engine: &mut Engine<SledStore>, to: &Outputs<'_>) -> Vec<Event> {
    use vaarta_mesh::Command as C;
    let mesh = to.mesh;
    let out = vaarta_engine::drive::drain(engine);
    for (link, frame) in out.frames {
        match to.radio_of(link) {
            Some(r) => r.send(link, frame),
            None => send(mesh, C::Send { link, frame }),
        }
    }
    for a in out.actions {
        let cmd = match a {
            Action::Dial { peer, addr } => match addr.parse::<Multiaddr>() {
                Ok(addr) => C::Dial {
                    peer: peer.and_then(|p| p.as_str().parse().ok()),
                    addr,
                },
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "not a multiaddr");
                    continue;
                }
            },
            Action::Close { link, reason, ban } => {
                tracing::info!(%link, %reason, ban, "closing link");
                if let Some(r) = to.radio_of(link) {
                    // A Bluetooth peer has no stable address to ban: the link is cut.
                    r.close(link);
                    continue;
                }
                C::Close { link, ban }
            }
        };
        send(mesh, cmd);
    }
    out.events
}

/// Where the engine's outputs go: the mesh, or the Bluetooth driver for its links.
#[derive(Debug, Clone, Copy)]
struct Outputs<'a> {
    mesh: &'a vaarta_mesh::Handle,
    radio: Option<&'a ble::Radio>,
}

impl<'a> Outputs<'a> {
    fn radio_of(&self, link: vaarta_engine::LinkId) -> Option<&'a ble::Radio> {
        self.radio.filter(|r| r.owns(link))
    }
}

fn send(mesh: &vaarta_mesh::Handle, c: vaarta_mesh::Command) {
    // The engine thread is not inside the runtime, so a blocking send is allowed and gives
    // backpressure when the mesh is busy.
    if !mesh.blocking_command(c) {
        tracing::debug!("mesh stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_once_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("storage.key");
        assert!(create_private(&p, b"first").unwrap());
        assert!(!create_private(&p, b"second").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        // No temporary file is left behind either way.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// The race behind the flaky test below, made deterministic: a file listed in the home
    /// and gone before its mode is read (another process's temporary key file).
    #[cfg(unix)]
    #[test]
    fn a_file_gone_since_the_listing_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        tighten(&dir.path().join(".storage.key.1.0.tmp")).unwrap();
    }

    /// Commands starting together on a fresh home (`vaarta up &` and an offline command)
    /// agree on one storage key: the database is never sealed under a key that then loses.
    #[test]
    fn processes_racing_for_the_storage_key_agree_on_one() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let home = Home::new(dir.path().join("home"));
            let barrier = std::sync::Barrier::new(6);
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..6)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            *home.storage_key().unwrap().bytes()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let on_disk = *home.storage_key().unwrap().bytes();
            assert!(keys.iter().all(|k| *k == on_disk));
        }
    }
}
