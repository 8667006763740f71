//! Organisation credentials on links (issue 12, docs/organisations.md): the chain this
//! device presents in its `Proof`, the roots it pinned and the revocations it knows, and
//! what it makes of the chain a peer presents.
//!
//! A peer's chain travels inside its `Proof`, signed with the rest of the proof by the
//! device key the chain names, so it can be neither stripped nor swapped by anyone else.
//! The judgement is pure (`judge`): the same chain, pins, revocations and time give the same
//! answer on every device.
//!
//! | the peer's chain | outcome |
//! |---|---|
//! | none | no credential: shown as an unenrolled device |
//! | verifies against a pinned root | [`PeerCredential::Verified`]: who, which unit, which organisation |
//! | well formed, the peer's own, but not vouched for here (root not pinned, expired, not yet valid, out of scope) | [`PeerCredential::Unverified`] with the reason; the link stays (a neighbouring organisation's officer is not an attacker) |
//! | malformed or forged (a record's signature fails) | fault, link cut |
//! | names another device than the one that proved itself | fault, link cut (someone else's credentials) |
//! | the device, its person or (for what it issued later) its registrar is revoked | fault, link cut and the peer banned |
//!
//! **Revocations spread** among the members of one organisation: once a peer's chain verified
//! against a root this device pinned, each side sends the other the revocations it holds (at
//! most [`MAX_REVOCATIONS_SENT`], newest first), and a revocation learnt from a link goes on to
//! every other such link at once (a flood within the organisation; `Frame::Revocations`). A
//! device takes in only revocations signed by a root it pinned or by a registrar that root
//! certified (the certificate attached), so a stranger cannot fill its set; each new one is
//! reported ([`crate::Event::RevocationsLearnt`], which the daemon saves) and every link is
//! judged again, cutting the revoked device wherever it is linked.

use vaarta_sync::ids::{DeviceId, OrgId};
use vaarta_sync::org::{
    Chain, CredError, DEFAULT_SKEW_MS, Record, Revocation, Revocations, Target, Verified,
    WipeOrder, kind_of, verify_wipe,
};
use vaarta_sync::store::Store;

use crate::wire::{Frame, Hello, MAX_REVOCATIONS_PER_FRAME};
use crate::{Engine, Event, Fault, LinkId};

/// Revocations a device sends a peer of its organisation when their link comes up (the
/// newest; older ones reach it from others or from the registrar's files).
pub const MAX_REVOCATIONS_SENT: usize = 256;

/// Wipe orders a device holds and passes on (one per device named, the first kept).
pub const MAX_WIPES: usize = 4096;
/// Wipe orders sent to a peer of the organisation when their link comes up (the newest).
pub const MAX_WIPES_SENT: usize = 64;

/// Peers' chains an engine keeps to tell which device keys a revocation of a person or a
/// registrar kills, or a registrar's revocation of a device it has authority over
/// ([`Engine::enforce_revocations`]). Past it, new chains are not kept.
pub const MAX_CHAINS_SEEN: usize = 4096;

/// What this device knows of organisations.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// This device's chain (its enrolment), presented in every `Proof`.
    pub own: Option<Chain>,
    /// Roots this device trusts.
    pub pinned: Vec<OrgId>,
    pub revocations: Revocations,
    /// Wipe orders held, by the device they name: passed on like revocations (each implies
    /// its revocation, which is in `revocations` too); only the named device acts on one.
    pub wipes: std::collections::BTreeMap<DeviceId, WipeOrder>,
    /// The signed directory: chains and role assignments verified here
    /// (`vaarta_sync::org::Directory`), spread among the organisation's devices
    /// (`crate::directory`).
    pub directory: vaarta_sync::org::Directory,
}

impl Credentials {
    /// Clock tolerance when judging a peer's chain (the organisation module's rule).
    pub const SKEW_MS: u64 = DEFAULT_SKEW_MS;

    /// Whether a revocation is one this device holds: signed by a pinned root, or by a
    /// registrar whose attached certificate a pinned root issued. (Whether it has authority
    /// over a given chain is judged when that chain is verified.)
    pub fn admits(&self, r: &Revocation) -> bool {
        match &r.issuer_cert {
            None => self.pinned.contains(&OrgId(r.issuer.0)),
            Some(c) => c.registrar == r.issuer && self.pinned.contains(&c.issuer),
        }
    }

    /// The device keys the revocations held kill at `now`: a device a pinned root revoked
    /// (a root has authority over everything of its organisation), and every device whose
    /// chain in `chains` no longer verifies because it, its person or (for what it issued
    /// after) its registrar is revoked — the authority and cascade rules of
    /// `vaarta_sync::org::verify`. A revocation effective later than `now` plus the clock
    /// tolerance kills nothing yet. Sorted, no repeats.
    pub fn revoked_devices(
        &self,
        chains: &std::collections::BTreeMap<DeviceId, Chain>,
        now: u64,
    ) -> Vec<DeviceId> {
        let horizon = now.saturating_add(Self::SKEW_MS);
        let mut out: std::collections::BTreeSet<DeviceId> = self
            .revocations
            .iter()
            .filter(|r| {
                r.issuer_cert.is_none()
                    && self.pinned.contains(&OrgId(r.issuer.0))
                    && r.effective_at <= horizon
            })
            .filter_map(|r| match r.target {
                Target::Device(d) => Some(d),
                _ => None,
            })
            .collect();
        for (d, chain) in chains {
            if matches!(
                vaarta_sync::org::verify_device(
                    chain,
                    &self.pinned,
                    &self.revocations,
                    now,
                    Self::SKEW_MS
                ),
                Err(CredError::DeviceRevoked { .. }
                    | CredError::PersonRevoked { .. }
                    | CredError::RegistrarRevoked { .. })
            ) {
                out.insert(*d);
            }
        }
        out.into_iter().collect()
    }

    /// The revocations held, newest first, at most `n`, encoded; then the wipe orders
    /// held, newest first, at most [`MAX_WIPES_SENT`].
    fn newest(&self, n: usize) -> Vec<Vec<u8>> {
        let mut all: Vec<&Revocation> = self.revocations.iter().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.issued_at));
        let mut wipes: Vec<&WipeOrder> = self.wipes.values().collect();
        wipes.sort_by_key(|o| std::cmp::Reverse(o.issued_at));
        all.into_iter()
            .take(n)
            .map(|r| r.encode())
            .chain(wipes.into_iter().take(MAX_WIPES_SENT).map(|o| o.encode()))
            .collect()
    }

    /// Holds a wipe order (its revocation must be admitted: [`Credentials::admits`]) and the
    /// revocation it implies. `Ok(true)` if the order is new here.
    pub fn hold_wipe(&mut self, o: WipeOrder) -> Result<bool, CredError> {
        self.revocations.insert(o.revocation.clone())?;
        let d = o.device();
        if self.wipes.contains_key(&d) || self.wipes.len() >= MAX_WIPES {
            return Ok(false);
        }
        self.wipes.insert(d, o);
        Ok(true)
    }
}

/// What a peer's chain says here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCredential {
    Verified(Box<Verified>),
    /// The chain is the peer's and well formed, but no pinned root vouches for it now: why.
    Unverified(String),
}

impl<S: Store> Engine<S> {
    /// Acts on a wipe order naming this device: once it verifies against this device's
    /// own chain and pinned roots ([`verify_wipe`]), [`Event::WipeOrdered`] (once); else
    /// [`Event::WipeRefused`] with the reason, and nothing changes.
    pub(crate) fn obey_wipe(&mut self, o: &WipeOrder) {
        if self.wipe_ordered {
            return;
        }
        let Some(own) = &self.credentials.own else {
            self.counters.wipes_refused += 1;
            return self.event(Event::WipeRefused {
                reason: "this device is enrolled nowhere: no root to verify a wipe order against"
                    .into(),
            });
        };
        match verify_wipe(
            o,
            own,
            &self.credentials.pinned,
            &self.credentials.revocations,
            self.now,
            Credentials::SKEW_MS,
        ) {
            Ok(()) => {
                self.wipe_ordered = true;
                self.event(Event::WipeOrdered {
                    issuer: o.issuer,
                    issued_at: o.issued_at,
                });
            }
            Err(e) => {
                self.counters.wipes_refused += 1;
                tracing::warn!(error = %e, "a wipe order for this device was refused");
                self.event(Event::WipeRefused {
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Cuts the link of a revoked `device` for `f`; the wipe order held for it, if any,
    /// leaves first (before the `Bye`), so that it hears it: it takes one naming itself
    /// from any peer.
    pub(crate) fn cut_revoked(&mut self, link: LinkId, device: &DeviceId, f: Fault) {
        self.fault(link, f);
        if let Some(o) = self.credentials.wipes.get(device)
            && let Some(l) = self.links.get_mut(&link)
        {
            l.frames_out.push_front(
                Frame::Revocations {
                    records: vec![o.encode()],
                }
                .encode(),
            );
        }
    }

    /// Keeps the chain a peer presented (its own, judged already), for
    /// [`Engine::enforce_revocations`].
    pub(crate) fn remember_chain(&mut self, h: &Hello) {
        if self.chains_seen.len() >= MAX_CHAINS_SEEN && !self.chains_seen.contains_key(&h.device) {
            return;
        }
        if let Ok(chain) = Chain::decode(&h.chain)
            && chain.device.device == h.device
        {
            self.chains_seen.insert(h.device, chain);
        }
    }

    /// Tells the replica which device keys the revocations held kill
    /// ([`Credentials::revoked_devices`]): from then on it refuses what they signed that it
    /// does not hold, and removes them (with a key rotation) from every conversation where
    /// this device is an admin (`vaarta_sync::replica::Replica::revoke_devices`). Called
    /// when credentials are set (at start, from the saved files), when revocations are
    /// learnt, and when a peer's chain is found revoked.
    pub(crate) fn enforce_revocations(&mut self) {
        let devices = self
            .credentials
            .revoked_devices(&self.chains_seen, self.now);
        if devices.is_empty() {
            return;
        }
        match self.replica.revoke_devices(&devices, self.now) {
            Ok(_) => self.note_sealed(),
            Err(e) => tracing::error!(error = %e, "cannot take in revoked devices"),
        }
    }

    /// Sends `records` to `link` in frames of at most [`MAX_REVOCATIONS_PER_FRAME`].
    fn send_revocation_records(&mut self, link: LinkId, records: &[Vec<u8>]) {
        for chunk in records.chunks(MAX_REVOCATIONS_PER_FRAME) {
            self.send(
                link,
                Frame::Revocations {
                    records: chunk.to_vec(),
                },
            );
        }
    }

    /// A peer's chain verified on `link`: it gets the revocations we hold.
    pub(crate) fn share_revocations(&mut self, link: LinkId) {
        let records = self.credentials.newest(MAX_REVOCATIONS_SENT);
        self.send_revocation_records(link, &records);
    }

    /// Links whose peer's chain verified here, but `except`.
    fn verified_links(&self, except: Option<LinkId>) -> Vec<LinkId> {
        self.links
            .iter()
            .filter(|(id, l)| {
                Some(**id) != except
                    && !l.closing
                    && matches!(l.credential, Some(PeerCredential::Verified(_)))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Revocations from a peer. Only a peer whose chain verified here may send them (from
    /// anyone else they are ignored, unread); a malformed or forged record is a fault; one
    /// this device does not admit (another organisation's, or signed by nobody it trusts) is
    /// passed over. New ones are reported, cut the devices they revoke, and go on to every
    /// other link of the organisation.
    pub(crate) fn on_revocations(&mut self, link: LinkId, records: Vec<Vec<u8>>) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let verified = matches!(l.credential, Some(PeerCredential::Verified(_)));
        let me = self.replica.device_id();
        let mut new = Vec::new();
        for bytes in records {
            if kind_of(&bytes) == Some(WipeOrder::KIND) {
                // A wipe order naming this device is judged whoever brings it (it is
                // verified against the root pinned here); others only from a verified peer.
                let o = match WipeOrder::decode(&bytes) {
                    Ok(o) => o,
                    Err(e) if verified => return self.fault(link, Fault::Credential(e)),
                    Err(_) => {
                        self.counters.revocations_ignored += 1;
                        continue;
                    }
                };
                if o.device() == me {
                    self.obey_wipe(&o);
                }
                if !verified || !self.credentials.admits(&o.revocation) {
                    self.counters.revocations_ignored += 1;
                    continue;
                }
                match self.credentials.hold_wipe(o) {
                    Ok(true) => new.push(bytes),
                    Ok(false) => {}
                    Err(CredError::RevocationsFull { max }) => {
                        tracing::warn!(max, "the revocation set is full: a wipe order is not held");
                    }
                    Err(e) => return self.fault(link, Fault::Credential(e)),
                }
                continue;
            }
            if !verified {
                self.counters.revocations_ignored += 1;
                continue;
            }
            let r = match Revocation::decode(&bytes) {
                Ok(r) => r,
                Err(e) => return self.fault(link, Fault::Credential(e)),
            };
            if !self.credentials.admits(&r) {
                self.counters.revocations_ignored += 1;
                continue;
            }
            match self.credentials.revocations.insert(r) {
                Ok(true) => new.push(bytes),
                Ok(false) => {}
                Err(CredError::RevocationsFull { max }) => {
                    tracing::warn!(
                        max,
                        "the revocation set is full: further revocations are not held"
                    );
                    break;
                }
                Err(e) => return self.fault(link, Fault::Credential(e)),
            }
        }
        if new.is_empty() {
            return;
        }
        self.event(Event::RevocationsLearnt {
            records: new.clone(),
        });
        self.rejudge_links();
        self.enforce_revocations();
        for other in self.verified_links(Some(link)) {
            self.send_revocation_records(other, &new);
        }
        // A revoked holder leaves its role conversations.
        let now = self.now;
        self.sync_role_conversations(now);
    }

    /// Judges every link's peer again (credentials or revocations changed): a revoked one is
    /// cut, the others' standing updated.
    pub(crate) fn rejudge_links(&mut self) {
        let now = self.now;
        for link in self.links.ids() {
            let Some(h) = self.links.get(&link).and_then(|l| l.device.clone()) else {
                continue;
            };
            match judge(&h, &self.credentials, now) {
                Ok(c) => {
                    self.vouch(&h.device, c.as_ref());
                    if let Some(l) = self.links.get_mut(&link) {
                        l.credential = c;
                    }
                }
                Err(f) => {
                    self.vouch(&h.device, None);
                    self.cut_revoked(link, &h.device, f)
                }
            }
        }
    }

    /// Tells the relay quotas what a peer's chain says: a chain verified against a root
    /// pinned here vouches for the device until its earliest expiry (what it pushes is
    /// carried in a share strangers never evict, `vaarta_sync::replica::Replica::vouch`);
    /// any other outcome (none, unverified, revoked) ends that. A store error loses only
    /// the vouch: the device counts as a stranger until its chain is judged again.
    pub(crate) fn vouch(
        &mut self,
        device: &vaarta_sync::ids::DeviceId,
        c: Option<&PeerCredential>,
    ) {
        let _ = match c {
            Some(PeerCredential::Verified(v)) => self.replica.vouch(device, v.expires),
            _ => self.replica.unvouch(device),
        };
    }

    /// After new credentials: every link of the organisation gets what we hold.
    pub(crate) fn share_revocations_with_all(&mut self) {
        for link in self.verified_links(None) {
            self.share_revocations(link);
        }
    }
}

/// Judges the chain in a peer's proven hello. `Ok(None)` when it presented none.
pub(crate) fn judge(
    h: &Hello,
    creds: &Credentials,
    now_ms: u64,
) -> Result<Option<PeerCredential>, Fault> {
    if h.chain.is_empty() {
        return Ok(None);
    }
    let chain = Chain::decode(&h.chain).map_err(Fault::Credential)?;
    if chain.device.device != h.device {
        return Err(Fault::CredentialOfAnotherDevice);
    }
    match vaarta_sync::org::verify_device(
        &chain,
        &creds.pinned,
        &creds.revocations,
        now_ms,
        Credentials::SKEW_MS,
    ) {
        Ok(v) => Ok(Some(PeerCredential::Verified(Box::new(v)))),
        Err(
            e @ (CredError::DeviceRevoked { .. }
            | CredError::PersonRevoked { .. }
            | CredError::RegistrarRevoked { .. }),
        ) => Err(Fault::Revoked(e)),
        Err(e) => Ok(Some(PeerCredential::Unverified(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{T0, TestOrg};
    use vaarta_sync::identity::Identity;
    use vaarta_sync::org::Record;

    fn hello(node: usize, chain: Vec<u8>) -> Hello {
        Hello {
            device: Identity::from_seed([node as u8 + 1; 32]).device_id(),
            name: format!("node{node}"),
            chain,
        }
    }

    fn setup() -> (TestOrg, Credentials, Vec<u8>) {
        let org = TestOrg::new(100, "Odisha State Disaster Management Authority");
        let mine = org.credentials(org.enrol(0, "Anita", "Tehsildar", "puri"));
        let theirs = org
            .enrol(1, "Bhavesh", "Sub-Inspector", "puri/konark")
            .encode();
        (org, mine, theirs)
    }

    #[test]
    fn no_chain_is_no_credential() {
        let (_, mine, _) = setup();
        assert_eq!(judge(&hello(1, vec![]), &mine, T0), Ok(None));
    }

    #[test]
    fn a_chain_to_a_pinned_root_says_who() {
        let (org, mine, theirs) = setup();
        let Ok(Some(PeerCredential::Verified(v))) = judge(&hello(1, theirs), &mine, T0) else {
            panic!("not verified")
        };
        assert_eq!(v.org, org.id());
        assert_eq!(v.names, vec![("en".into(), "Bhavesh".into())]);
        assert_eq!(v.designation, "Sub-Inspector");
        assert_eq!(v.unit.as_str(), "puri/konark");
    }

    #[test]
    fn another_devices_chain_or_an_altered_one_is_a_fault() {
        let (_, mine, theirs) = setup();
        // Node 2 presents node 1's chain.
        assert_eq!(
            judge(&hello(2, theirs.clone()), &mine, T0),
            Err(Fault::CredentialOfAnotherDevice)
        );
        // Any byte changed: a record no longer decodes or no longer verifies.
        for at in [0, 3, theirs.len() / 2, theirs.len() - 1] {
            let mut bad = theirs.clone();
            bad[at] ^= 1;
            assert!(
                matches!(judge(&hello(1, bad), &mine, T0), Err(Fault::Credential(_))),
                "byte {at}"
            );
        }
        assert!(matches!(
            judge(&hello(1, vec![1, 2, 3]), &mine, T0),
            Err(Fault::Credential(_))
        ));
    }

    #[test]
    fn an_unpinned_or_expired_chain_is_unverified_not_a_fault() {
        let (_, mine, _) = setup();
        let other = TestOrg::new(120, "Another State Police");
        let foreign = other.enrol(1, "Chitra", "Inspector", "").encode();
        let Ok(Some(PeerCredential::Unverified(why))) = judge(&hello(1, foreign), &mine, T0) else {
            panic!("not unverified")
        };
        assert!(why.contains("not one this device trusts"), "{why}");
        let (_, mine, theirs) = setup();
        let years_later = T0 + 3 * 365 * 86_400_000;
        let Ok(Some(PeerCredential::Unverified(why))) =
            judge(&hello(1, theirs), &mine, years_later)
        else {
            panic!("not unverified")
        };
        assert!(why.contains("expired"), "{why}");
    }

    #[test]
    fn a_revoked_device_is_a_fault() {
        let (org, mut mine, theirs) = setup();
        mine.revocations
            .insert(org.revoke_node(1, T0 - 1000))
            .unwrap();
        assert!(matches!(
            judge(&hello(1, theirs.clone()), &mine, T0),
            Err(Fault::Revoked(CredError::DeviceRevoked { .. }))
        ));
        // Revoked from a time still to come: valid until then.
        let (org, mut mine, _) = setup();
        mine.revocations
            .insert(org.revoke_node(1, T0 + 86_400_000 * 30))
            .unwrap();
        assert!(matches!(
            judge(&hello(1, theirs), &mine, T0),
            Ok(Some(PeerCredential::Verified(_)))
        ));
        let _ = org.registrar.cert.encode();
    }
}
