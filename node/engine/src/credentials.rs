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

use vaarta_sync::ids::OrgId;
use vaarta_sync::org::{Chain, CredError, DEFAULT_SKEW_MS, Revocations, Verified};

use crate::Fault;
use crate::wire::Hello;

/// What this device knows of organisations.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// This device's chain (its enrolment), presented in every `Proof`.
    pub own: Option<Chain>,
    /// Roots this device trusts.
    pub pinned: Vec<OrgId>,
    pub revocations: Revocations,
}

impl Credentials {
    /// Clock tolerance when judging a peer's chain (the organisation module's rule).
    pub const SKEW_MS: u64 = DEFAULT_SKEW_MS;
}

/// What a peer's chain says here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCredential {
    Verified(Box<Verified>),
    /// The chain is the peer's and well formed, but no pinned root vouches for it now: why.
    Unverified(String),
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
