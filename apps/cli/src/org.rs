//! `vaarta org`: organisation credentials, offline and file-based (docs/organisations.md).
//!
//! The root key and registrar keys are files (owner-only, 0600) that this command creates
//! and never puts in a device's home unless `--in-home` is given; records travel as text
//! (`VORG1:…`, base32 with a checksum, fit for a QR code). `enrol` writes the device's
//! pinned root and chain into `<home>/credentials/`, beside the store, not in it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgGroup, Subcommand};
use serde_json::{Value, json};
use vaarta_node::Home;
use vaarta_node::at_rest::Secret;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{DeviceId, OrgId, PersonId};
use vaarta_sync::org::{
    Chain, CredError, DEFAULT_SKEW_MS, OrgRoot, PersonCred, Record, Registrar, RegistrarCert,
    Revocation, Revocations, RoleAssignment, Target, Unit, Verified, WipeOrder, armor, dearmor,
    enrol, verify_device,
};

use crate::{emit, fmt, print_json};

const ROOT_HEADER: &str = "vaarta organisation root key v1";
const REGISTRAR_HEADER: &str = "vaarta organisation registrar key v1";
/// The longest validity a person types: 100 years.
const MAX_VALIDITY_MS: u64 = 100 * 366 * 86_400_000;

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organisation: its root key file (keep it offline) and root record; prints
    /// the organisation id
    Create {
        /// The organisation's display name, any script
        #[arg(long)]
        name: String,
        /// The root key file to create (refuses to overwrite one)
        #[arg(long, value_name = "ROOT.key")]
        out: PathBuf,
        /// How long the root is valid, e.g. 20y, 3650d
        #[arg(long, default_value = "20y", value_name = "DURATION")]
        expires: String,
        /// Allow the key file inside this device's home
        #[arg(long)]
        in_home: bool,
    },
    /// Certify a new registrar (nodal officer) for a scope: creates its key file with the
    /// certificate
    Registrar {
        /// The organisation's root key file
        #[arg(long, value_name = "ROOT.key")]
        root: PathBuf,
        /// The unit path it may enrol people in, e.g. bihar/darbhanga (`/`: the whole
        /// organisation); covers sub-units on whole segments
        #[arg(long)]
        scope: String,
        /// How long the certificate is valid, e.g. 365d
        #[arg(long, default_value = "365d", value_name = "DURATION")]
        expires: String,
        /// The registrar key file to create (refuses to overwrite one)
        #[arg(long, value_name = "REG.key")]
        out: PathBuf,
        /// Allow the key file inside this device's home
        #[arg(long)]
        in_home: bool,
    },
    /// Cross-certify another organisation's registrar (a joint operation): this root
    /// accepts what that registrar issues inside a scope and a period. Writes the
    /// certificate the registrar attaches to its bundles (`issue --cross FILE`)
    Cross {
        /// This organisation's root key file
        #[arg(long, value_name = "ROOT.key")]
        root: PathBuf,
        /// The other organisation's registrar (its id)
        #[arg(long, value_name = "REGISTRAR_ID")]
        registrar_id: String,
        /// The units (of the other organisation) accepted, e.g. bihar/darbhanga
        #[arg(long)]
        scope: String,
        /// How long the cross-certification holds, e.g. 30d
        #[arg(long, default_value = "30d", value_name = "DURATION")]
        expires: String,
        /// The cross-certificate file to write
        #[arg(long, value_name = "CROSS")]
        out: PathBuf,
    },
    /// Issue a person's credential and one device's: writes the enrolment bundle (a text
    /// file, also printable as a QR code). With --person, adds another device to a person
    /// this registrar issued before
    #[command(group(ArgGroup::new("who").required(true).args(["name", "person"])))]
    Issue {
        /// The registrar's key file
        #[arg(long, value_name = "REG.key")]
        registrar: PathBuf,
        /// The person's name in one script as TAG=TEXT, e.g. en=Anita Kumari, hi=अनीता
        /// कुमारी (repeatable)
        #[arg(long, value_name = "TAG=TEXT", conflicts_with = "person")]
        name: Vec<String>,
        /// Designation, e.g. "District Magistrate"
        #[arg(long, default_value = "")]
        designation: String,
        /// Unit path, inside the registrar's scope, e.g. bihar/darbhanga
        #[arg(long, requires = "name")]
        unit: Option<String>,
        /// A language the person reads (BCP-47 tag, repeatable, in order of preference)
        #[arg(long = "language", value_name = "TAG", requires = "name")]
        languages: Vec<String>,
        /// An existing person id (as printed by an earlier issue): add a device to them
        #[arg(long, value_name = "PERSON_ID")]
        person: Option<String>,
        /// The device's id (`vaarta id` on it)
        #[arg(long, value_name = "DEVICE_ID")]
        device: String,
        /// What the device is: phone, laptop, …
        #[arg(long, default_value = "phone")]
        label: String,
        /// How long the credentials are valid (never past the registrar's certificate)
        #[arg(long, default_value = "365d", value_name = "DURATION")]
        expires: String,
        /// A cross-certification of this registrar by another organisation (from `vaarta
        /// org cross`) to put in the bundle
        #[arg(long, value_name = "CROSS")]
        cross: Option<PathBuf>,
        /// The bundle file to write
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
    },
    /// Enrol this device with a bundle: pins the organisation's root and stores the chain
    /// in the home (refuses a bundle for another device)
    Enrol {
        /// The bundle file from `vaarta org issue`
        bundle: PathBuf,
    },
    /// Show what a credential chain says and whether it verifies (a bundle file, or this
    /// home's credentials when no file is given)
    Show {
        /// A bundle file (default: the home's enrolled credentials)
        bundle: Option<PathBuf>,
        /// A revocation file to take into account (repeatable)
        #[arg(long = "revocation", value_name = "FILE")]
        revocations: Vec<PathBuf>,
    },
    /// Revoke a device, a person or a registrar: writes a signed revocation file
    #[command(group(ArgGroup::new("issuer").required(true).args(["registrar", "root"])))]
    #[command(group(ArgGroup::new("target").required(true).args(["device", "person", "registrar_id"])))]
    Revoke {
        /// Sign as this registrar (its key file)
        #[arg(long, value_name = "REG.key")]
        registrar: Option<PathBuf>,
        /// Sign as the organisation's root (its key file)
        #[arg(long, value_name = "ROOT.key")]
        root: Option<PathBuf>,
        /// Revoke this device id
        #[arg(long, value_name = "DEVICE_ID")]
        device: Option<String>,
        /// Revoke this person id (all their devices)
        #[arg(long, value_name = "PERSON_ID")]
        person: Option<String>,
        /// Revoke this registrar (its id): what it issued from the effective time on
        #[arg(long, value_name = "REGISTRAR_ID")]
        registrar_id: Option<String>,
        /// When it takes effect (RFC 3339, e.g. 2026-12-01T10:00:00Z; default now): set it to
        /// when the key may have been lost
        #[arg(long, value_name = "TIME")]
        effective: Option<String>,
        /// The revocation file to write
        #[arg(long, value_name = "REVOCATION")]
        out: PathBuf,
    },
    /// Assign a role of a unit to a person (a registrar in scope, or the root): writes a
    /// signed role assignment, for the directory (`vaarta directory add FILE`). A later
    /// assignment of the same role (unit and key) hands it over
    Assign {
        /// The signing key: a registrar's key file or the organisation's root key file
        #[arg(long, value_name = "KEY_FILE")]
        key: PathBuf,
        /// The person who holds the role (their person id, as `issue` printed it)
        #[arg(long, value_name = "PERSON_ID")]
        person: String,
        /// The unit the role belongs to, e.g. bihar/darbhanga
        #[arg(long)]
        unit: String,
        /// The role's key within the unit: lower-case letters, digits, `-`, `_`, `.`
        /// (e.g. dm, sp, ndrf-team-7-leader)
        #[arg(long, value_name = "KEY")]
        role: String,
        /// The role's title in one script as TAG=TEXT, e.g. "en=DM Darbhanga",
        /// "hi=डीएम दरभंगा" (repeatable, at least one)
        #[arg(long, value_name = "TAG=TEXT", required = true)]
        title: Vec<String>,
        /// From when the person holds it (RFC 3339; default now): the handover time
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// How long the assignment is valid (never past the registrar's certificate)
        #[arg(long, default_value = "365d", value_name = "DURATION")]
        expires: String,
        /// The assignment file to write
        #[arg(long, value_name = "ASSIGNMENT")]
        out: PathBuf,
    },
    /// Order a device to erase its keys and store (remote wipe): writes a signed wipe order
    /// file, which also revokes the device. Hand it to any device of the organisation (copy
    /// it into `<home>/credentials/revocations/`): it travels like a revocation, and the
    /// named device, when it hears it, erases itself and stops
    Wipe {
        /// The device to wipe (its id)
        #[arg(long, value_name = "DEVICE_ID")]
        device: String,
        /// The signing key: a registrar's key file (`vaarta org registrar`) or the
        /// organisation's root key file (`vaarta org create`)
        #[arg(long, value_name = "KEY_FILE")]
        key: PathBuf,
        /// The wipe order file to write
        #[arg(long, value_name = "WIPE")]
        out: PathBuf,
    },
}

/// A duration a person types (humantime: 90d, 1y, "2y 6months"), 1 s to 100 years.
pub fn parse_validity(s: &str) -> Result<u64> {
    let ms = humantime::parse_duration(s.trim())
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| anyhow!("'{s}' is not a duration (use e.g. 365d, 2y)"))?;
    if !(1000..=MAX_VALIDITY_MS).contains(&ms) {
        bail!("'{s}': a validity must be between 1s and 100 years");
    }
    Ok(ms)
}

fn cred(e: CredError) -> anyhow::Error {
    anyhow!("{}", describe(&e))
}

/// A [`CredError`] for a person: times in the local zone instead of milliseconds.
pub fn describe(e: &CredError) -> String {
    let t = |ms: &u64| fmt::local(*ms);
    match e {
        CredError::DeviceRevoked { effective_at } => {
            format!("the device was revoked from {}", t(effective_at))
        }
        CredError::PersonRevoked { effective_at } => {
            format!("the person was revoked from {}", t(effective_at))
        }
        CredError::RegistrarRevoked { effective_at } => format!(
            "the registrar was revoked from {}, before it issued this credential",
            t(effective_at)
        ),
        CredError::Expired {
            record, expires, ..
        } => format!(
            "the {record} expired on {} (7 days of clock tolerance included)",
            t(expires)
        ),
        CredError::NotYetValid {
            record, issued_at, ..
        } => format!(
            "the {record} is valid only from {} (is this device's clock right?)",
            t(issued_at)
        ),
        CredError::RegistrarExpiredAtIssue {
            record,
            issued_at,
            expires,
        } => format!(
            "the {record} was issued on {}, after its registrar's certificate expired ({})",
            t(issued_at),
            t(expires)
        ),
        other => other.to_string(),
    }
}

fn random_seed() -> Result<[u8; 32]> {
    Ok(*Secret::random().map_err(|e| anyhow!(e))?.bytes())
}

fn new_key() -> Result<Identity> {
    loop {
        let k = Identity::from_seed(random_seed()?);
        if k.device_id().is_valid() {
            return Ok(k);
        }
    }
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// Refuses a secret key file inside the device's home unless asked for.
fn check_not_in_home(out: &Path, home: Option<&Home>, in_home: bool) -> Result<()> {
    if in_home {
        return Ok(());
    }
    let Some(home) = home else { return Ok(()) };
    let Ok(home_dir) = home.dir.canonicalize() else {
        return Ok(());
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(p) = parent.canonicalize()
        && p.starts_with(&home_dir)
    {
        bail!(
            "{} is inside this device's home {}: keep organisation keys off the devices (pass --in-home if you mean it)",
            out.display(),
            home_dir.display()
        );
    }
    Ok(())
}

/// Creates `path` owner-only (0600) with `text`; refuses to overwrite.
fn create_secret_file(path: &Path, text: &str) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} exists: refusing to overwrite a key file",
                path.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces `path` with `text` (owner-only, atomically).
fn write_file(path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let res = o
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("cannot write {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The `key value` lines of a key file after its header.
fn key_fields(path: &Path, header: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let text = zeroize::Zeroizing::new(read_text(path)?);
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(header) {
        bail!(
            "{} is not a {} file",
            path.display(),
            header.trim_end_matches(" v1")
        );
    }
    Ok(lines
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

fn field<'a>(
    f: &'a std::collections::BTreeMap<String, String>,
    k: &str,
    path: &Path,
) -> Result<&'a str> {
    f.get(k)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{} has no '{k}' line", path.display()))
}

fn secret(f: &std::collections::BTreeMap<String, String>, path: &Path) -> Result<Identity> {
    let b = data_encoding::HEXLOWER_PERMISSIVE
        .decode(field(f, "secret", path)?.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| anyhow!("{}: the secret is not 64 hex digits", path.display()))?;
    Ok(Identity::from_seed(b))
}

fn record<R: Record>(text: &str, what: &Path) -> Result<R> {
    let bytes = dearmor(text).map_err(|e| anyhow!("{}: {e}", what.display()))?;
    R::decode(&bytes).map_err(|e| anyhow!("{}: {e}", what.display()))
}

struct RootKey {
    key: Identity,
    rec: OrgRoot,
}

fn load_root(path: &Path) -> Result<RootKey> {
    let f = key_fields(path, ROOT_HEADER)?;
    let key = secret(&f, path)?;
    let rec: OrgRoot = record(field(&f, "root", path)?, path)?;
    if rec.org.0 != key.device_id().0 {
        bail!("{}: the root record is not this key's", path.display());
    }
    Ok(RootKey { key, rec })
}

fn load_registrar(path: &Path) -> Result<Registrar> {
    let f = key_fields(path, REGISTRAR_HEADER)?;
    let key = secret(&f, path)?;
    let cert: RegistrarCert = record(field(&f, "certificate", path)?, path)?;
    let root: OrgRoot = record(field(&f, "root", path)?, path)?;
    Registrar::new(key, cert, root).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Where a registrar keeps the person credentials it issued, for `issue --person`.
fn people_dir(registrar: &Path) -> PathBuf {
    let mut p = registrar.as_os_str().to_owned();
    p.push(".people");
    PathBuf::from(p)
}

fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot protect {}", dir.display()))?;
    }
    Ok(())
}

/// A bundle file: its text form, or the raw chain bytes.
fn load_chain(path: &Path) -> Result<Chain> {
    vaarta_node::credentials::read_chain(path)
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("cannot read {}: no such file", path.display()))
}

fn credentials_dir(home: &Home) -> PathBuf {
    vaarta_node::credentials::dir(&home.dir)
}

fn pinned_root(home: &Home) -> Result<Option<OrgRoot>> {
    vaarta_node::credentials::pinned_root(&home.dir).map_err(|e| anyhow!(e))
}

fn parse_names(names: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for n in names {
        let (tag, text) = n
            .split_once('=')
            .ok_or_else(|| anyhow!("--name {n}: give it as TAG=TEXT, e.g. en=Anita Kumari"))?;
        let tag = tag.trim();
        if !vaarta_sync::org::record::is_language_tag(tag) {
            bail!("--name {n}: '{tag}' is not a language tag (e.g. en, hi, hi-Latn)");
        }
        if out.iter().any(|(t, _)| t == tag) {
            bail!("--name: two names for '{tag}' (one per script)");
        }
        out.push((tag.to_string(), text.trim().to_string()));
    }
    Ok(out)
}

fn parse_unit(s: &str) -> Result<Unit> {
    let s = s.trim();
    Unit::parse(if s == "/" { "" } else { s }).map_err(|e| anyhow!("{e}"))
}

fn parse_id<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse::<T>()
        .map_err(|e| anyhow!("{flag} {s}: {e}"))
}

pub fn run(home_flag: Option<PathBuf>, c: OrgCommand, json: bool) -> Result<()> {
    // Key-making commands need no home, but refuse to write keys into one.
    let home = Home::resolve(home_flag).ok();
    let now = fmt::now_ms();
    match c {
        OrgCommand::Create {
            name,
            out,
            expires,
            in_home,
        } => {
            let valid = parse_validity(&expires)?;
            check_not_in_home(&out, home.as_ref(), in_home)?;
            let key = new_key()?;
            let rec = OrgRoot::new(&key, &name, now, now.saturating_add(valid)).map_err(cred)?;
            let text = zeroize::Zeroizing::new(format!(
                "{ROOT_HEADER}\nsecret {}\nroot {}\n",
                hex(&key.seed()),
                armor(&rec.encode())
            ));
            create_secret_file(&out, &text)?;
            if json {
                print_json(
                    &json!({"org": rec.org.to_string(), "name": rec.name, "expires": rec.expires, "key_file": out}),
                )
            } else {
                emit(&rec.org.to_string())?;
                eprintln!(
                    "Created organisation {} with its root key in {} (keep that file offline)",
                    fmt::clean(&rec.name),
                    out.display()
                );
                Ok(())
            }
        }
        OrgCommand::Registrar {
            root,
            scope,
            expires,
            out,
            in_home,
        } => {
            let valid = parse_validity(&expires)?;
            let scope = parse_unit(&scope)?;
            check_not_in_home(&out, home.as_ref(), in_home)?;
            let root = load_root(&root)?;
            if now > root.rec.expires {
                bail!(
                    "the organisation's root expired on {}",
                    fmt::local(root.rec.expires)
                );
            }
            let key = new_key()?;
            let until = now.saturating_add(valid).min(root.rec.expires);
            let cert =
                RegistrarCert::new(&root.key, key.device_id(), scope, now, until).map_err(cred)?;
            let text = zeroize::Zeroizing::new(format!(
                "{REGISTRAR_HEADER}\nsecret {}\ncertificate {}\nroot {}\n",
                hex(&key.seed()),
                armor(&cert.encode()),
                armor(&root.rec.encode())
            ));
            create_secret_file(&out, &text)?;
            if json {
                print_json(&json!({
                    "registrar": cert.registrar.to_string(),
                    "org": cert.issuer.to_string(),
                    "scope": cert.scope.as_str(),
                    "expires": cert.expires,
                    "key_file": out,
                }))
            } else {
                emit(&cert.registrar.to_string())?;
                eprintln!(
                    "Certified registrar for {} until {}; its key is in {}",
                    fmt::clean(&cert.scope.to_string()),
                    fmt::local(cert.expires),
                    out.display()
                );
                Ok(())
            }
        }
        OrgCommand::Cross {
            root,
            registrar_id,
            scope,
            expires,
            out,
        } => {
            let valid = parse_validity(&expires)?;
            let scope = parse_unit(&scope)?;
            let registrar: DeviceId = parse_id(&registrar_id, "--registrar-id")?;
            let root = load_root(&root)?;
            if registrar.0 == root.rec.org.0 {
                bail!("--registrar-id is this organisation's own root");
            }
            let until = now.saturating_add(valid).min(root.rec.expires);
            let x = RegistrarCert::new(&root.key, registrar, scope, now, until).map_err(cred)?;
            write_file(&out, &format!("{}\n", armor(&x.encode())))?;
            if json {
                print_json(&json!({
                    "cross": out,
                    "org": x.issuer.to_string(),
                    "registrar": x.registrar.to_string(),
                    "scope": x.scope.as_str(),
                    "issued_at": x.issued_at,
                    "expires": x.expires,
                }))
            } else {
                emit(&format!(
                    "{} accepts registrar {} for {} until {}: wrote {} (the registrar gives it to `vaarta org issue --cross`)",
                    fmt::clean(&root.rec.name),
                    x.registrar,
                    fmt::clean(&x.scope.to_string()),
                    fmt::local(x.expires),
                    out.display()
                ))
            }
        }
        OrgCommand::Issue {
            registrar,
            name,
            designation,
            unit,
            languages,
            person,
            device,
            label,
            expires,
            cross,
            out,
        } => {
            let valid = parse_validity(&expires)?;
            let cross: Option<RegistrarCert> = match &cross {
                Some(p) => Some(record(&read_text(p)?, p)?),
                None => None,
            };
            let device: DeviceId = parse_id(&device, "--device")?;
            if !device.is_valid() {
                bail!("--device {device}: not a usable device key");
            }
            let reg = load_registrar(&registrar)?;
            let people = people_dir(&registrar);
            let (person, new) = match person {
                Some(p) => {
                    let id: PersonId = parse_id(&p, "--person")?;
                    let path = people.join(id.to_string());
                    let t = std::fs::read_to_string(&path).map_err(|_| {
                        anyhow!(
                            "person {id} was not issued with {} (no {}): issue the person first",
                            registrar.display(),
                            path.display()
                        )
                    })?;
                    let known: PersonCred = record(&t, &path)?;
                    (known, false)
                }
                None => {
                    let names = parse_names(&name)?;
                    let unit = parse_unit(
                        unit.as_deref()
                            .ok_or_else(|| anyhow!("--unit is needed for a new person"))?,
                    )?;
                    for l in &languages {
                        if !vaarta_sync::org::record::is_language_tag(l) {
                            bail!("--language {l}: not a language tag (e.g. hi, en)");
                        }
                    }
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&random_seed()?[..16]);
                    let fresh = reg
                        .issue_person(
                            PersonId(id),
                            names,
                            &designation,
                            unit,
                            languages,
                            now,
                            valid,
                        )
                        .map_err(cred)?;
                    (fresh, true)
                }
            };
            let dev = reg
                .issue_device(&person, device, &label, now, valid)
                .map_err(cred)?;
            let mut chain = reg.bundle(person.clone(), dev);
            let v = verify_device(
                &chain,
                &[chain.root.org],
                &Revocations::new(),
                now,
                DEFAULT_SKEW_MS,
            )
            .map_err(cred)?;
            if let Some(x) = cross {
                let issuer = x.issuer;
                chain.cross = Some(x);
                verify_device(&chain, &[issuer], &Revocations::new(), now, DEFAULT_SKEW_MS)
                    .map_err(|e| {
                        anyhow!(
                            "the cross-certification does not cover this credential: {}",
                            describe(&e)
                        )
                    })?;
            }
            let text = armor(&chain.encode());
            write_file(&out, &format!("{text}\n"))?;
            if new {
                make_private_dir(&people)?;
                write_file(
                    &people.join(person.person.to_string()),
                    &format!("{}\n", armor(&person.encode())),
                )?;
            }
            if json {
                let mut j = verified_json(&v, &chain, true);
                j["bundle"] = json!(out);
                j["text"] = json!(text);
                print_json(&j)
            } else {
                emit(&format!("person {}", v.person))?;
                emit(&format!("device {} ({})", v.device, fmt::clean(&v.label)))?;
                eprintln!(
                    "Wrote the bundle to {} ({} characters as text); enrol it on the device with `vaarta org enrol {}`",
                    out.display(),
                    text.len(),
                    out.display()
                );
                Ok(())
            }
        }
        OrgCommand::Enrol { bundle } => {
            let home = home.ok_or_else(|| anyhow!("no home: set --home or VAARTA_HOME"))?;
            let info = home.info().map_err(|e| anyhow!("{e}"))?;
            let me: DeviceId = parse_id(&info.device_id, "home device id")?;
            let chain = load_chain(&bundle)?;
            let v = enrol(&chain, me, now, DEFAULT_SKEW_MS).map_err(cred)?;
            if let Some(pinned) = pinned_root(&home)?
                && pinned.org != chain.root.org
            {
                bail!(
                    "this device is enrolled in another organisation ({} {}): it keeps the root it pinned",
                    fmt::clean(&pinned.name),
                    pinned.org
                );
            }
            let dir = credentials_dir(&home);
            make_private_dir(&dir)?;
            write_file(
                &dir.join("root"),
                &format!("{}\n", armor(&chain.root.encode())),
            )?;
            write_file(&dir.join("chain"), &format!("{}\n", armor(&chain.encode())))?;
            if json {
                let mut j = verified_json(&v, &chain, true);
                j["enrolled"] = json!(dir);
                print_json(&j)
            } else {
                emit(&format!(
                    "enrolled {} ({}) as {} of {}, {}",
                    fmt::clean(v.names.first().map(|n| n.1.as_str()).unwrap_or("")),
                    fmt::clean(&v.label),
                    fmt::clean(&v.designation),
                    fmt::clean(&v.org_name),
                    fmt::clean(&v.unit.to_string())
                ))?;
                emit(&format!("pinned organisation root {}", v.org))
            }
        }
        OrgCommand::Show {
            bundle,
            revocations,
        } => {
            let pinned = match &home {
                Some(h) => pinned_root(h)?,
                None => None,
            };
            let chain = match &bundle {
                Some(b) => load_chain(b)?,
                None => {
                    let h = home.as_ref().ok_or_else(|| {
                        anyhow!("no home: set --home or VAARTA_HOME, or give a bundle file")
                    })?;
                    let p = credentials_dir(h).join("chain");
                    if !p.exists() {
                        bail!(
                            "{} is not enrolled in an organisation (`vaarta org enrol BUNDLE`)",
                            h.dir.display()
                        );
                    }
                    load_chain(&p)?
                }
            };
            let mut revs = Revocations::new();
            for p in &revocations {
                let r: Revocation = record(&read_text(p)?, p)?;
                revs.insert(r)
                    .map_err(|e| anyhow!("{}: {e}", p.display()))?;
            }
            let (roots, is_pinned): (Vec<OrgId>, bool) = match &pinned {
                Some(r) => (vec![r.org], true),
                None => (vec![chain.root.org], false),
            };
            let res = verify_device(&chain, &roots, &revs, now, DEFAULT_SKEW_MS);
            show(&chain, res, is_pinned, json)
        }
        OrgCommand::Revoke {
            registrar,
            root,
            device,
            person,
            registrar_id,
            effective,
            out,
        } => {
            let target = match (device, person, registrar_id) {
                (Some(d), _, _) => Target::Device(parse_id(&d, "--device")?),
                (_, Some(p), _) => Target::Person(parse_id(&p, "--person")?),
                (_, _, Some(r)) => Target::Registrar(parse_id(&r, "--registrar-id")?),
                _ => bail!("say what to revoke: --device, --person or --registrar-id"),
            };
            let effective_at = match effective {
                None => now,
                Some(t) => rfc3339_ms(&t, "--effective")?,
            };
            let rev = match (registrar, root) {
                (Some(r), _) => load_registrar(&r)?
                    .revoke(target, effective_at, now)
                    .map_err(cred)?,
                (_, Some(r)) => {
                    let root = load_root(&r)?;
                    Revocation::new(
                        &root.key,
                        target,
                        effective_at,
                        None,
                        now,
                        root.rec.expires.max(now),
                    )
                    .map_err(cred)?
                }
                _ => bail!("say who revokes: --registrar REG.key or --root ROOT.key"),
            };
            write_file(&out, &format!("{}\n", armor(&rev.encode())))?;
            if json {
                print_json(&json!({
                    "revocation": out,
                    "target": target_json(&rev.target),
                    "issuer": rev.issuer.to_string(),
                    "effective_at": rev.effective_at,
                    "issued_at": rev.issued_at,
                }))
            } else {
                emit(&format!(
                    "revoked {} from {}: wrote {} (hand it to any device of the organisation: it spreads from there)",
                    rev.target,
                    fmt::local(rev.effective_at),
                    out.display()
                ))
            }
        }
        OrgCommand::Assign {
            key,
            person,
            unit,
            role,
            title,
            from,
            expires,
            out,
        } => {
            let holder: PersonId = parse_id(&person, "--person")?;
            let unit = parse_unit(&unit)?;
            let role = role.trim().to_string();
            if !vaarta_sync::org::is_role_key(&role) {
                bail!(
                    "--role {role}: a role key is 1 to 64 lower-case letters, digits, '-', '_' or '.' (e.g. dm); put the name people read in --title"
                );
            }
            let titles = parse_names(&title).map_err(|e| {
                anyhow!(
                    "{}",
                    e.to_string()
                        .replace("--name", "--title")
                        .replace("names", "titles")
                )
            })?;
            let from = match from {
                None => now,
                Some(t) => rfc3339_ms(&t, "--from")?,
            };
            let valid_for = parse_validity(&expires)?;
            let a = match load_signer(&key)? {
                Ok(reg) => reg
                    .assign(unit, &role, titles, holder, from, now, valid_for)
                    .map_err(cred)?,
                Err(root) => RoleAssignment::new(
                    &root.key,
                    root.rec.org,
                    None,
                    unit,
                    &role,
                    titles,
                    holder,
                    from,
                    now,
                    now.saturating_add(valid_for).min(root.rec.expires),
                )
                .map_err(cred)?,
            };
            write_file(&out, &format!("{}\n", armor(&a.encode())))?;
            let role_path = if a.unit.as_str().is_empty() {
                a.role.clone()
            } else {
                format!("{}/{}", a.unit.as_str(), a.role)
            };
            if json {
                print_json(&json!({
                    "assignment": out,
                    "org": a.org.to_string(),
                    "role": a.role,
                    "unit": a.unit.to_string(),
                    "titles": a.titles.iter().map(|(l, t)| json!({"lang": l, "title": t})).collect::<Vec<_>>(),
                    "holder": a.holder.to_string(),
                    "from_ms": a.from,
                    "issuer": a.issuer.to_string(),
                    "expires_ms": a.expires,
                }))
            } else {
                emit(&format!(
                    "assigned {role_path} ({}) to person {} from {}: wrote {} (take it into a device's directory with `vaarta directory add {}`: it spreads from there)",
                    a.title_for("en"),
                    a.holder,
                    fmt::local(a.from),
                    out.display(),
                    out.display()
                ))
            }
        }
        OrgCommand::Wipe { device, key, out } => {
            let device: DeviceId = parse_id(&device, "--device")?;
            let order = match load_signer(&key)? {
                Ok(reg) => reg.wipe(device, now).map_err(cred)?,
                Err(root) => {
                    WipeOrder::new(&root.key, device, None, now, root.rec.expires.max(now))
                        .map_err(cred)?
                }
            };
            write_file(&out, &format!("{}\n", armor(&order.encode())))?;
            if json {
                print_json(&json!({
                    "wipe_order": out,
                    "device": device.to_string(),
                    "issuer": order.issuer.to_string(),
                    "issued_at": order.issued_at,
                }))
            } else {
                emit(&format!(
                    "ordered device {device} to erase itself (and revoked it) at {}: wrote {} (hand it to any device of the organisation)",
                    fmt::local(order.issued_at),
                    out.display()
                ))
            }
        }
    }
}

/// An RFC 3339 time in ms.
fn rfc3339_ms(t: &str, flag: &str) -> Result<u64> {
    let ts: jiff::Timestamp = t
        .trim()
        .parse()
        .map_err(|e| anyhow!("{flag} {t}: not an RFC 3339 time ({e})"))?;
    u64::try_from(ts.as_millisecond()).map_err(|_| anyhow!("{flag} {t}: before 1970"))
}

/// A registrar's or a root's key file, whichever `path` is.
fn load_signer(path: &Path) -> Result<std::result::Result<Registrar, RootKey>> {
    let text = read_text(path)?;
    if text.contains(REGISTRAR_HEADER) {
        return load_registrar(path).map(Ok);
    }
    if text.contains(ROOT_HEADER) {
        return load_root(path).map(Err);
    }
    bail!(
        "{}: not a registrar or organisation root key file",
        path.display()
    )
}

fn target_json(t: &Target) -> Value {
    match t {
        Target::Device(d) => json!({"device": d.to_string()}),
        Target::Person(p) => json!({"person": p.to_string()}),
        Target::Registrar(r) => json!({"registrar": r.to_string()}),
    }
}

fn chain_json(c: &Chain) -> Value {
    json!({
        "org": c.root.org.to_string(),
        "org_name": c.root.name,
        "registrar": c.registrar.registrar.to_string(),
        "registrar_scope": c.registrar.scope.as_str(),
        "cross_certified_by": c.cross.as_ref().map(|x| x.issuer.to_string()),
        "person": c.person.person.to_string(),
        "names": c.person.names.iter().map(|(t, n)| (t.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "designation": c.person.designation,
        "unit": c.person.unit.as_str(),
        "languages": c.person.languages,
        "device": c.device.device.to_string(),
        "label": c.device.label,
        "issued_at": c.device.issued_at,
        "expires": c.device.expires.min(c.person.expires).min(c.registrar.expires).min(c.root.expires),
    })
}

fn verified_json(v: &Verified, c: &Chain, pinned: bool) -> Value {
    let mut j = chain_json(c);
    j["verified"] = json!(true);
    j["problem"] = Value::Null;
    j["pinned"] = json!(pinned);
    j["via"] = json!(v.via.map(|o| o.to_string()));
    j["expires"] = json!(v.expires);
    j
}

fn show(c: &Chain, res: Result<Verified, CredError>, pinned: bool, json: bool) -> Result<()> {
    let problem = res.as_ref().err().map(describe);
    if json {
        let mut j = match &res {
            Ok(v) => verified_json(v, c, pinned),
            Err(_) => chain_json(c),
        };
        j["verified"] = json!(res.is_ok());
        j["problem"] = json!(problem);
        j["pinned"] = json!(pinned);
        print_json(&j)?;
    } else {
        let names: Vec<String> = c
            .person
            .names
            .iter()
            .map(|(t, n)| format!("{} ({t})", fmt::clean(n)))
            .collect();
        let lines = [
            format!("organisation: {} {}", fmt::clean(&c.root.name), c.root.org),
            format!("person:       {} {}", names.join(" · "), c.person.person),
            format!("designation:  {}", fmt::clean(&c.person.designation)),
            format!("unit:         {}", fmt::clean(&c.person.unit.to_string())),
            format!("languages:    {}", c.person.languages.join(", ")),
            format!(
                "device:       {} ({})",
                c.device.device,
                fmt::clean(&c.device.label)
            ),
            format!(
                "registrar:    {} for {}",
                c.registrar.registrar,
                fmt::clean(&c.registrar.scope.to_string())
            ),
            format!(
                "valid:        {} to {}",
                fmt::local(c.device.issued_at),
                fmt::local(chain_json(c)["expires"].as_u64().unwrap_or(0))
            ),
            match (&res, pinned) {
                (Ok(v), true) if v.via.is_some() => format!(
                    "status:       verified through the cross-certification by the pinned root {}",
                    v.via.map(|o| o.to_string()).unwrap_or_default()
                ),
                (Ok(_), true) => "status:       verified against the pinned root".to_string(),
                (Ok(_), false) => {
                    "status:       consistent, but its root is not pinned on this device"
                        .to_string()
                }
                (Err(e), _) => format!("status:       NOT VALID: {}", describe(e)),
            },
        ];
        for l in lines {
            emit(&l)?;
        }
    }
    match res {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow!("the credentials do not verify: {}", describe(&e))),
    }
}
