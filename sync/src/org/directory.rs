//! The signed directory: the people, devices and roles of the organisations a device
//! pinned, as records it verified itself (docs/organisations.md, "The directory").
//!
//! A directory holds two kinds of record, each signed and verified offline:
//!
//! * a device's **chain** (`Chain`: root, registrar certificate, person credential, device
//!   credential): who the person is and one of their devices; one per device key, a newer
//!   chain (later device credential) replacing the one held;
//! * **role assignments** (`RoleAssignment`): role `dm` of unit `bihar/darbhanga`, titled
//!   "DM Darbhanga" / "डीएम दरभंगा", is this person's from this time.
//!
//! A record is taken in only when it verifies here ([`verify_device`], [`verify_role`]),
//! and judged again at every query against the revocations held then, so a revoked device,
//! person or registrar (for what it signed after) drops out of answers at once; [`prune`]
//! forgets what can never count again.
//!
//! **Handover.** The current holder of a role is, among its assignments that verify now and
//! whose `from` has come, the greatest by (`from`, issuer key, record id): a later
//! assignment hands the role over, and two concurrent ones resolve the same way on every
//! device whatever order they arrived in.
//!
//! **Bounds** (a registrar, even a rogue one in scope, can sign without limit): at most
//! [`MAX_DIRECTORY_RECORDS`] records in all, at most [`MAX_DIRECTORY_PER_ISSUER`] signed by
//! one registrar key (so one registrar's flood cannot fill the directory for the others),
//! and at most [`MAX_ASSIGNMENTS_PER_ROLE`] assignments of one role (the least in the
//! handover order is evicted: it can only matter again if every later one is revoked).
//! A full directory, or a full issuer quota, refuses new records rather than forget one it
//! holds (`DirectoryFull`, `IssuerQuotaFull`).
//!
//! **Search** normalises both sides with Unicode NFKC and lower-casing (Unicode's simple
//! case folding, as `char::to_lowercase`), then matches substrings: names in any script,
//! designations, units, the titles and keys of the roles a person holds now.
//!
//! [`prune`]: Directory::prune

use std::collections::{BTreeMap, BTreeSet};

use unicode_normalization::UnicodeNormalization;

use crate::ids::{DeviceId, OrgId, PersonId};

use super::record::{Record, RoleAssignment, Unit};
use super::verify::{Chain, Revocations, Verified, VerifiedRole, verify_device, verify_role};
use super::{CredError, MAX_ASSIGNMENTS_PER_ROLE, MAX_DIRECTORY_PER_ISSUER, MAX_DIRECTORY_RECORDS};

/// A directory record's id: the first 16 bytes of a keyed BLAKE3 of its encoding (what
/// `DirHave` frames list).
pub type DirId = [u8; 16];

const ID_CONTEXT: &str = "vaarta 2026 org directory record id v1";
/// The kind byte of an encoded chain (`verify::CHAIN_KIND`).
const CHAIN_KIND: u8 = 0x10;

/// The id of an encoded directory record.
pub fn record_id(bytes: &[u8]) -> DirId {
    let h = blake3::derive_key(ID_CONTEXT, bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

/// Unicode NFKC, lower-cased, NFKC again: what search compares. `"ＤＭ"` and `"dm"`
/// fold alike; Devanagari and Tamil (no case) only normalise.
pub fn fold(s: &str) -> String {
    s.nfkc().flat_map(char::to_lowercase).nfkc().collect()
}

/// Which role: an organisation, a unit of it and the role's key there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleId {
    pub org: OrgId,
    pub unit: Unit,
    pub role: String,
}

impl RoleId {
    pub fn of(a: &RoleAssignment) -> RoleId {
        RoleId {
            org: a.org,
            unit: a.unit.clone(),
            role: a.role.clone(),
        }
    }

    /// 16 hex digits naming the role (in the title of its conversation).
    pub fn short(&self) -> String {
        let mut w = crate::codec::Writer::new();
        w.raw(&self.org.0).str(self.unit.as_str()).str(&self.role);
        let h = blake3::derive_key("vaarta 2026 org role id v1", w.as_slice());
        h[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for RoleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unit.as_str().is_empty() {
            write!(f, "{}", self.role)
        } else {
            write!(f, "{}/{}", self.unit.as_str(), self.role)
        }
    }
}

/// A decoded directory record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRecord {
    Chain(Box<Chain>),
    Role(Box<RoleAssignment>),
}

impl DirRecord {
    /// Decodes a chain or a role assignment (by its kind byte), checking bounds and
    /// signatures.
    pub fn decode(bytes: &[u8]) -> Result<DirRecord, CredError> {
        match super::kind_of(bytes) {
            Some(CHAIN_KIND) => Ok(DirRecord::Chain(Box::new(Chain::decode(bytes)?))),
            Some(RoleAssignment::KIND) => {
                Ok(DirRecord::Role(Box::new(RoleAssignment::decode(bytes)?)))
            }
            found => Err(CredError::WrongKind {
                expected: "directory record (chain or role assignment)",
                found: found.unwrap_or(0),
            }),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            DirRecord::Chain(c) => c.encode(),
            DirRecord::Role(a) => a.encode(),
        }
    }

    /// The key that signed it (the registrar's; the root's for a root's assignment), the
    /// key its issuer quota is counted against.
    fn issuer(&self) -> DeviceId {
        match self {
            DirRecord::Chain(c) => c.device.issuer,
            DirRecord::Role(a) => a.issuer,
        }
    }
}

/// The handover order: greater wins.
fn order(id: &DirId, a: &RoleAssignment) -> (u64, DeviceId, DirId) {
    (a.from, a.issuer, *id)
}

/// Why a role has nobody to send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("no role matches '{0}' in the directory")]
    NoSuchRole(String),
    #[error("'{query}' matches several roles: {matches}")]
    Ambiguous { query: String, matches: String },
    #[error("the role {0} has no holder now (no assignment in force)")]
    Vacant(String),
    #[error(
        "the holder of {role} (person {holder}) has no device in the directory that verifies \
         for the role's organisation"
    )]
    NoDevices { role: String, holder: PersonId },
}

/// A person found by [`Directory::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub org: OrgId,
    pub org_name: String,
    pub person: PersonId,
    pub names: Vec<(String, String)>,
    pub designation: String,
    pub unit: Unit,
    /// The person's devices that verify now: (key, label).
    pub devices: Vec<(DeviceId, String)>,
    /// The roles the person holds now.
    pub roles: Vec<VerifiedRole>,
}

/// What a query is judged against: the roots pinned, the revocations held, the time and
/// the clock tolerance.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    pub pinned: &'a [OrgId],
    pub revocations: &'a Revocations,
    pub now: u64,
    pub skew: u64,
}

/// The directory (module docs).
#[derive(Debug, Clone)]
pub struct Directory {
    chains: BTreeMap<DeviceId, (DirId, Chain)>,
    /// Each role's assignments, ascending in the handover order.
    roles: BTreeMap<RoleId, Vec<(DirId, RoleAssignment)>>,
    ids: BTreeSet<DirId>,
    per_issuer: BTreeMap<DeviceId, usize>,
    max: usize,
    max_per_issuer: usize,
}

impl Default for Directory {
    fn default() -> Self {
        Self::with_limits(MAX_DIRECTORY_RECORDS, MAX_DIRECTORY_PER_ISSUER)
    }
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(max: usize, max_per_issuer: usize) -> Self {
        Directory {
            chains: BTreeMap::new(),
            roles: BTreeMap::new(),
            ids: BTreeSet::new(),
            per_issuer: BTreeMap::new(),
            max,
            max_per_issuer,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &DirId) -> bool {
        self.ids.contains(id)
    }

    /// The ids of every record held, ascending.
    pub fn ids(&self) -> impl Iterator<Item = &DirId> {
        self.ids.iter()
    }

    /// Every record held, encoded, with its id.
    pub fn records(&self) -> Vec<(DirId, Vec<u8>)> {
        let chains = self.chains.values().map(|(id, c)| (*id, c.encode()));
        let roles = self
            .roles
            .values()
            .flatten()
            .map(|(id, a)| (*id, a.encode()));
        chains.chain(roles).collect()
    }

    /// Takes in an encoded record once it verifies under `j`. `Ok(true)` if it is new here
    /// (and should go on to peers); `Ok(false)` if held already, superseded (an older chain
    /// of a device), or evicted at once (older than every assignment of a full role).
    pub fn insert(&mut self, bytes: &[u8], j: &Judge<'_>) -> Result<bool, CredError> {
        let id = record_id(bytes);
        if self.ids.contains(&id) {
            return Ok(false);
        }
        let rec = DirRecord::decode(bytes)?;
        let issuer = rec.issuer();
        match rec {
            DirRecord::Chain(c) => {
                verify_device(&c, j.pinned, j.revocations, j.now, j.skew)?;
                let device = c.device.device;
                let newer = |c: &Chain, id: &DirId| (c.device.issued_at, c.person.issued_at, *id);
                if let Some((held_id, held)) = self.chains.get(&device) {
                    if newer(held, held_id) >= newer(&c, &id) {
                        return Ok(false);
                    }
                    self.check_quota(issuer, held.device.issuer == issuer)?;
                    let (old_id, old) = self.chains.remove(&device).expect("held");
                    self.forget(old_id, old.device.issuer);
                } else {
                    self.check_room()?;
                    self.check_quota(issuer, false)?;
                }
                self.remember(id, issuer);
                self.chains.insert(device, (id, *c));
                Ok(true)
            }
            DirRecord::Role(a) => {
                verify_role(&a, j.pinned, j.revocations, j.now, j.skew)?;
                let key = RoleId::of(&a);
                let full = self
                    .roles
                    .get(&key)
                    .is_some_and(|l| l.len() >= MAX_ASSIGNMENTS_PER_ROLE);
                if full {
                    let list = &self.roles[&key];
                    if order(&list[0].0, &list[0].1) > order(&id, &a) {
                        return Ok(false);
                    }
                    self.check_quota(issuer, list[0].1.issuer == issuer)?;
                    let (old_id, old) = self.roles.get_mut(&key).expect("held").remove(0);
                    self.forget(old_id, old.issuer);
                } else {
                    self.check_room()?;
                    self.check_quota(issuer, false)?;
                }
                self.remember(id, issuer);
                let list = self.roles.entry(key).or_default();
                let at = list.partition_point(|(i, x)| order(i, x) < order(&id, &a));
                list.insert(at, (id, *a));
                Ok(true)
            }
        }
    }

    fn check_room(&self) -> Result<(), CredError> {
        if self.ids.len() >= self.max {
            return Err(CredError::DirectoryFull { max: self.max });
        }
        Ok(())
    }

    /// `freeing`: the insertion replaces a record of the same issuer.
    fn check_quota(&self, issuer: DeviceId, freeing: bool) -> Result<(), CredError> {
        let n = self.per_issuer.get(&issuer).copied().unwrap_or(0);
        if !freeing && n >= self.max_per_issuer {
            return Err(CredError::IssuerQuotaFull {
                issuer,
                max: self.max_per_issuer,
            });
        }
        Ok(())
    }

    fn remember(&mut self, id: DirId, issuer: DeviceId) {
        self.ids.insert(id);
        *self.per_issuer.entry(issuer).or_default() += 1;
    }

    fn forget(&mut self, id: DirId, issuer: DeviceId) {
        self.ids.remove(&id);
        if let Some(n) = self.per_issuer.get_mut(&issuer) {
            *n -= 1;
            if *n == 0 {
                self.per_issuer.remove(&issuer);
            }
        }
    }

    /// Forgets every record that can never count again: it fails verification now for a
    /// reason other than "not yet valid" (expired, revoked, its root no longer pinned).
    /// Returns how many were forgotten.
    pub fn prune(&mut self, j: &Judge<'_>) -> usize {
        let dead = |e: &CredError| !matches!(e, CredError::NotYetValid { .. });
        let mut gone = Vec::new();
        self.chains.retain(|_, (id, c)| {
            match verify_device(c, j.pinned, j.revocations, j.now, j.skew) {
                Err(e) if dead(&e) => {
                    gone.push((*id, c.device.issuer));
                    false
                }
                _ => true,
            }
        });
        for list in self.roles.values_mut() {
            list.retain(
                |(id, a)| match verify_role(a, j.pinned, j.revocations, j.now, j.skew) {
                    Err(e) if dead(&e) => {
                        gone.push((*id, a.issuer));
                        false
                    }
                    _ => true,
                },
            );
        }
        self.roles.retain(|_, l| !l.is_empty());
        let n = gone.len();
        for (id, issuer) in gone {
            self.forget(id, issuer);
        }
        n
    }

    /// The chains that verify now, with what they say.
    pub fn live_chains<'a>(
        &'a self,
        j: &'a Judge<'a>,
    ) -> impl Iterator<Item = (&'a Chain, Verified)> + 'a {
        self.chains.values().filter_map(move |(_, c)| {
            verify_device(c, j.pinned, j.revocations, j.now, j.skew)
                .ok()
                .map(|v| (c, v))
        })
    }

    /// The assignment of `role` in force now: among those that verify now and whose `from`
    /// has come, the greatest by (`from`, issuer, record id).
    pub fn holder(&self, role: &RoleId, j: &Judge<'_>) -> Option<VerifiedRole> {
        self.roles
            .get(role)?
            .iter()
            .rev()
            .filter(|(_, a)| a.from <= j.now)
            .find_map(|(_, a)| verify_role(a, j.pinned, j.revocations, j.now, j.skew).ok())
    }

    /// Every role the directory knows of.
    pub fn roles(&self) -> impl Iterator<Item = &RoleId> {
        self.roles.keys()
    }

    /// The titles of a role, from its greatest assignment held.
    pub fn titles(&self, role: &RoleId) -> Vec<(String, String)> {
        self.roles
            .get(role)
            .and_then(|l| l.last())
            .map(|(_, a)| a.titles.clone())
            .unwrap_or_default()
    }

    /// The role `query` names: a title in any script (folded, whole), its key, or
    /// `unit/key`. Refused when none or several match.
    pub fn find_role(&self, query: &str) -> Result<RoleId, RoleError> {
        let q = fold(query.trim());
        let hits: Vec<&RoleId> = self
            .roles
            .iter()
            .filter(|(id, list)| {
                q == id.role
                    || q == fold(&id.to_string())
                    || list
                        .iter()
                        .any(|(_, a)| a.titles.iter().any(|(_, t)| fold(t) == q))
            })
            .map(|(id, _)| id)
            .collect();
        match hits.as_slice() {
            [] => Err(RoleError::NoSuchRole(query.to_string())),
            [one] => Ok((*one).clone()),
            many => Err(RoleError::Ambiguous {
                query: query.to_string(),
                matches: many
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Who holds `role` now and their devices that verify now as persons of the role's
    /// own organisation (an assignment naming a person of another organisation, or a person
    /// nobody enrolled, reaches no device).
    pub fn holder_devices(
        &self,
        role: &RoleId,
        j: &Judge<'_>,
    ) -> Result<(VerifiedRole, Vec<DeviceId>), RoleError> {
        let held = self
            .holder(role, j)
            .ok_or_else(|| RoleError::Vacant(role.to_string()))?;
        let devices: Vec<DeviceId> = self
            .live_chains(j)
            .filter(|(_, v)| v.person == held.holder && v.org == role.org && v.via.is_none())
            .map(|(_, v)| v.device)
            .collect();
        if devices.is_empty() {
            return Err(RoleError::NoDevices {
                role: role.to_string(),
                holder: held.holder,
            });
        }
        Ok((held, devices))
    }

    /// The people whose names (any script), designation, unit, or roles held now contain
    /// `query`, folded (module docs). An empty query lists everyone. Sorted by first name.
    pub fn search(&self, query: &str, j: &Judge<'_>) -> Vec<Entry> {
        let q = fold(query.trim());
        // Roles held now, by person.
        let mut held: BTreeMap<PersonId, Vec<VerifiedRole>> = BTreeMap::new();
        for role in self.roles.keys() {
            if let Some(v) = self.holder(role, j) {
                held.entry(v.holder).or_default().push(v);
            }
        }
        let mut people: BTreeMap<(OrgId, PersonId), Entry> = BTreeMap::new();
        for (_, v) in self.live_chains(j) {
            let e = people.entry((v.org, v.person)).or_insert_with(|| Entry {
                org: v.org,
                org_name: v.org_name.clone(),
                person: v.person,
                names: v.names.clone(),
                designation: v.designation.clone(),
                unit: v.unit.clone(),
                devices: Vec::new(),
                roles: held
                    .get(&v.person)
                    .map(|rs| rs.iter().filter(|r| r.org == v.org).cloned().collect())
                    .unwrap_or_default(),
            });
            e.devices.push((v.device, v.label.clone()));
        }
        let matches = |e: &Entry| {
            q.is_empty()
                || e.names.iter().any(|(_, n)| fold(n).contains(&q))
                || fold(&e.designation).contains(&q)
                || fold(e.unit.as_str()).contains(&q)
                || e.roles.iter().any(|r| {
                    r.role.contains(&q)
                        || fold(r.unit.as_str()).contains(&q)
                        || r.titles.iter().any(|(_, t)| fold(t).contains(&q))
                })
        };
        let mut out: Vec<Entry> = people.into_values().filter(matches).collect();
        out.sort_by(|a, b| {
            let first = |e: &Entry| e.names.first().map(|(_, n)| fold(n)).unwrap_or_default();
            first(a).cmp(&first(b)).then(a.person.cmp(&b.person))
        });
        out
    }
}
