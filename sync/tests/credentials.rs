//! Organisation credentials (issue 12, part 1): the chain rule, the time rule, revocations
//! and their cascade, cross-certification, and decoding that refuses anything altered.

use proptest::prelude::*;
use vaarta_sync::codec::DecodeError;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{OrgId, PersonId};
use vaarta_sync::org::{
    Chain, CredError, DEFAULT_SKEW_MS, DeviceCred, OrgRoot, PersonCred, Record, Registrar,
    RegistrarCert, Revocation, Revocations, Target, Unit, armor, dearmor, enrol, verify_device,
};

const DAY: u64 = 86_400_000;
/// 2026-05-28 in ms: any fixed time.
const T0: u64 = 1_780_000_000_000;
const SKEW: u64 = DEFAULT_SKEW_MS;

fn key(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

struct Org {
    key: Identity,
    rec: OrgRoot,
}

impl Org {
    fn new(seed: u8, name: &str) -> Org {
        let key = key(seed);
        let rec = OrgRoot::new(&key, name, T0 - 100 * DAY, T0 + 3650 * DAY).unwrap();
        Org { key, rec }
    }

    fn id(&self) -> OrgId {
        self.rec.org
    }

    /// A registrar of this organisation for `scope`, certified for [from, until].
    fn registrar(&self, seed: u8, scope: &str, from: u64, until: u64) -> Registrar {
        let k = key(seed);
        let cert = RegistrarCert::new(&self.key, k.device_id(), unit(scope), from, until).unwrap();
        Registrar::new(k, cert, self.rec.clone()).unwrap()
    }

    fn revoke(&self, target: Target, effective_at: u64) -> Revocation {
        Revocation::new(
            &self.key,
            target,
            effective_at,
            None,
            effective_at,
            T0 + 3650 * DAY,
        )
        .unwrap()
    }
}

fn unit(s: &str) -> Unit {
    Unit::parse(s).unwrap()
}

fn names() -> Vec<(String, String)> {
    vec![
        ("hi".into(), "अनीता कुमारी".into()),
        ("en".into(), "Anita Kumari".into()),
    ]
}

/// Person (seed `p`) in `unit`, with one device (seed `d`), issued at `at` for 90 days,
/// without the registrar's own policy checks (so tests can build what a rogue signs).
fn raw_chain(reg: &Registrar, p: u8, d: u8, unit_path: &str, at: u64) -> Chain {
    let person = PersonCred::new(
        &reg.key,
        PersonId([p; 16]),
        names(),
        "District Magistrate",
        unit(unit_path),
        vec!["hi".into(), "en".into()],
        at,
        at + 90 * DAY,
    )
    .unwrap();
    let device = DeviceCred::new(
        &reg.key,
        person.person,
        key(d).device_id(),
        "phone",
        at,
        at + 90 * DAY,
    )
    .unwrap();
    reg.bundle(person, device)
}

fn verify(
    c: &Chain,
    pinned: &[OrgId],
    revs: &Revocations,
    now: u64,
) -> Result<vaarta_sync::org::Verified, CredError> {
    verify_device(c, pinned, revs, now, SKEW)
}

fn none() -> Revocations {
    Revocations::new()
}

#[test]
fn a_chain_to_the_pinned_root_verifies_and_says_who() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar/darbhanga", T0 - DAY, T0 + 365 * DAY);
    let person = reg
        .issue_person(
            PersonId([9; 16]),
            names(),
            "District Magistrate",
            unit("bihar/darbhanga/sadar"),
            vec!["hi".into()],
            T0,
            400 * DAY,
        )
        .unwrap();
    let device = reg
        .issue_device(&person, key(10).device_id(), "phone", T0, 400 * DAY)
        .unwrap();
    let c = reg.bundle(person, device);
    let v = verify(&c, &[org.id()], &none(), T0 + DAY).unwrap();
    assert_eq!(v.org, org.id());
    assert_eq!(v.org_name, "Bihar Police");
    assert_eq!(v.via, None);
    assert_eq!(v.person, PersonId([9; 16]));
    assert_eq!(v.device, key(10).device_id());
    assert_eq!(v.unit, unit("bihar/darbhanga/sadar"));
    assert_eq!(
        v.names[0],
        ("en".to_string(), "Anita Kumari".to_string()),
        "names in tag order"
    );
    // Asked for 400 days; a credential never outlives its registrar's certificate.
    assert_eq!(v.expires, T0 + 365 * DAY);
    // The encoding round-trips exactly.
    let bytes = c.encode();
    assert_eq!(Chain::decode(&bytes).unwrap(), c);
    assert_eq!(Chain::decode(&bytes).unwrap().encode(), bytes);
}

#[test]
fn expired_and_not_yet_valid_are_refused() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let c = raw_chain(&reg, 3, 4, "bihar/darbhanga", T0);
    let end = T0 + 90 * DAY;
    assert!(verify(&c, &[org.id()], &none(), end).is_ok());
    assert!(matches!(
        verify(&c, &[org.id()], &none(), end + SKEW + 1),
        Err(CredError::Expired {
            record: "person credential",
            ..
        })
    ));
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0 - SKEW - 1),
        Err(CredError::NotYetValid { .. })
    ));
    // With no tolerance, one millisecond either side is enough.
    assert!(matches!(
        verify_device(&c, &[org.id()], &none(), end + 1, 0),
        Err(CredError::Expired { .. })
    ));
    assert!(matches!(
        verify_device(&c, &[org.id()], &none(), T0 - 1, 0),
        Err(CredError::NotYetValid { .. })
    ));
    // An expired registrar certificate takes its credentials with it.
    let short = org.registrar(5, "bihar", T0 - DAY, T0 + 10 * DAY);
    let c = raw_chain(&short, 3, 4, "bihar", T0);
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0 + 10 * DAY + SKEW + 1),
        Err(CredError::Expired {
            record: "registrar certificate",
            ..
        })
    ));
}

#[test]
fn clocks_seven_days_off_either_way_still_verify_a_credential_valid_now() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    // Issued just now by the registrar's clock; the verifier's clock is 7 days slow.
    let c = raw_chain(&reg, 3, 4, "bihar", T0);
    assert!(verify(&c, &[org.id()], &none(), T0 - 7 * DAY).is_ok());
    // About to expire by the true time; the verifier's clock is 7 days fast.
    let end = T0 + 90 * DAY;
    assert!(verify(&c, &[org.id()], &none(), end + 7 * DAY).is_ok());
    // Beyond the tolerance it is refused.
    assert!(verify(&c, &[org.id()], &none(), T0 - 7 * DAY - 1).is_err());
    assert!(verify(&c, &[org.id()], &none(), end + 7 * DAY + 1).is_err());
    // The tolerance is the caller's to set.
    assert!(verify_device(&c, &[org.id()], &none(), T0 - 7 * DAY, DAY).is_err());
}

#[test]
fn credentials_of_another_organisation_are_refused() {
    let police = Org::new(1, "Bihar Police");
    let ndrf = Org::new(20, "NDRF");
    let reg = ndrf.registrar(21, "", T0 - DAY, T0 + 365 * DAY);
    let c = raw_chain(&reg, 3, 4, "bn7", T0);
    assert_eq!(
        verify(&c, &[police.id()], &none(), T0),
        Err(CredError::UnknownRoot(ndrf.id()))
    );
    // Swapping in the pinned root's record does not help: the registrar is not its.
    let mut swapped = c.clone();
    swapped.root = police.rec.clone();
    assert_eq!(
        verify(&swapped, &[police.id()], &none(), T0),
        Err(CredError::NotIssuedByRoot)
    );
    assert!(verify(&c, &[ndrf.id()], &none(), T0).is_ok());
}

#[test]
fn only_a_certified_registrar_issues() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let good = raw_chain(&reg, 3, 4, "bihar", T0);
    // An enrolled person's own device key signs a credential for a second device.
    let person_key = key(4);
    let rogue_dev = DeviceCred::new(
        &person_key,
        good.person.person,
        key(5).device_id(),
        "laptop",
        T0,
        T0 + DAY,
    )
    .unwrap();
    let mut c = good.clone();
    c.device = rogue_dev;
    assert_eq!(
        verify(&c, &[org.id()], &none(), T0),
        Err(CredError::NotARegistrar {
            issuer: person_key.device_id()
        })
    );
    // A key that makes its own "registrar certificate" is not certified by the root.
    let fake_root = key(66);
    let mut c = good.clone();
    c.registrar =
        RegistrarCert::new(&fake_root, key(2).device_id(), unit(""), T0 - DAY, T0 + DAY).unwrap();
    assert_eq!(
        verify(&c, &[org.id()], &none(), T0),
        Err(CredError::NotIssuedByRoot)
    );
    // A person credential from one registrar, a device credential from another.
    let other = org.registrar(7, "bihar", T0 - DAY, T0 + 365 * DAY);
    let mut c = good.clone();
    c.device = DeviceCred::new(
        &other.key,
        good.person.person,
        key(4).device_id(),
        "phone",
        T0,
        T0 + DAY,
    )
    .unwrap();
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0),
        Err(CredError::NotARegistrar { .. })
    ));
    // A device credential for another person.
    let mut c = good;
    c.device = DeviceCred::new(
        &reg.key,
        PersonId([8; 16]),
        key(4).device_id(),
        "phone",
        T0,
        T0 + DAY,
    )
    .unwrap();
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0),
        Err(CredError::PersonMismatch { .. })
    ));
}

#[test]
fn a_registrar_cannot_issue_outside_its_scope_on_whole_segments() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    assert!(
        verify(
            &raw_chain(&reg, 3, 4, "bihar/darbhanga", T0),
            &[org.id()],
            &none(),
            T0
        )
        .is_ok()
    );
    // The prefix trap: `bihar` is a prefix of `biharsharif` but not a segment of it.
    let trap = raw_chain(&reg, 3, 4, "biharsharif", T0);
    assert_eq!(
        verify(&trap, &[org.id()], &none(), T0),
        Err(CredError::OutsideScope {
            unit: "biharsharif".into(),
            scope: "bihar".into()
        })
    );
    let narrow = org.registrar(5, "bihar/darbhanga", T0 - DAY, T0 + 365 * DAY);
    for outside in [
        "bihar/patna",
        "bihar",
        "bihar/darbhangax",
        "odisha/darbhanga",
    ] {
        assert!(
            matches!(
                verify(
                    &raw_chain(&narrow, 3, 4, outside, T0),
                    &[org.id()],
                    &none(),
                    T0
                ),
                Err(CredError::OutsideScope { .. })
            ),
            "{outside}"
        );
    }
    // The issuing helper refuses it before signing.
    assert!(matches!(
        narrow.issue_person(
            PersonId([1; 16]),
            names(),
            "SP",
            unit("bihar/patna"),
            vec![],
            T0,
            DAY
        ),
        Err(CredError::OutsideScope { .. })
    ));
}

#[test]
fn a_registrar_certificate_must_be_valid_when_it_issues() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 10 * DAY);
    // Issued the day after the certificate ran out (and checked while everything else is
    // in range for the verifier).
    let c = raw_chain(&reg, 3, 4, "bihar", T0 + 11 * DAY);
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0 + 11 * DAY),
        Err(CredError::RegistrarExpiredAtIssue { .. })
    ));
    // Issued long before the registrar was certified (a backdated credential).
    let c = raw_chain(&reg, 3, 4, "bihar", T0 - 30 * DAY);
    assert!(matches!(
        verify(&c, &[org.id()], &none(), T0),
        Err(CredError::IssuedBeforeIssuer { .. })
    ));
    // The helper will not issue with an expired certificate.
    assert!(matches!(
        reg.issue_person(
            PersonId([1; 16]),
            names(),
            "SP",
            unit("bihar"),
            vec![],
            T0 + 11 * DAY,
            DAY
        ),
        Err(CredError::RegistrarExpiredAtIssue { .. })
    ));
}

#[test]
fn revoked_devices_and_persons_are_refused_and_other_devices_stay() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let phone = raw_chain(&reg, 3, 4, "bihar", T0);
    let laptop_cred = reg
        .issue_device(&phone.person, key(5).device_id(), "laptop", T0, 30 * DAY)
        .unwrap();
    let laptop = reg.bundle(phone.person.clone(), laptop_cred);
    let mut revs = Revocations::new();
    assert!(
        revs.insert(
            reg.revoke(
                Target::Device(key(4).device_id()),
                T0 + 2 * DAY,
                T0 + 2 * DAY
            )
            .unwrap()
        )
        .unwrap()
    );
    // Before it takes effect (beyond the tolerance) the phone still verifies.
    assert!(verify(&phone, &[org.id()], &revs, T0 + 2 * DAY - SKEW - 1).is_ok());
    assert_eq!(
        verify(&phone, &[org.id()], &revs, T0 + 3 * DAY),
        Err(CredError::DeviceRevoked {
            effective_at: T0 + 2 * DAY
        })
    );
    assert!(
        verify(&laptop, &[org.id()], &revs, T0 + 3 * DAY).is_ok(),
        "each device is revoked on its own"
    );
    // The root revokes the person: every device goes.
    revs.insert(org.revoke(Target::Person(phone.person.person), T0 + 4 * DAY))
        .unwrap();
    assert_eq!(
        verify(&laptop, &[org.id()], &revs, T0 + 5 * DAY),
        Err(CredError::PersonRevoked {
            effective_at: T0 + 4 * DAY
        })
    );
}

#[test]
fn a_revocation_needs_authority_over_its_target() {
    let org = Org::new(1, "Bihar Police");
    let other_org = Org::new(20, "NDRF");
    let darbhanga = org.registrar(2, "bihar/darbhanga", T0 - DAY, T0 + 365 * DAY);
    let patna = org.registrar(3, "bihar/patna", T0 - DAY, T0 + 365 * DAY);
    let c = raw_chain(&darbhanga, 4, 5, "bihar/darbhanga", T0);
    let target = Target::Device(key(5).device_id());
    let mut revs = Revocations::new();
    // A registrar of another unit, another organisation's root, a random key: ignored.
    revs.insert(patna.revoke(target, T0, T0).unwrap()).unwrap();
    revs.insert(other_org.revoke(target, T0)).unwrap();
    revs.insert(Revocation::new(&key(99), target, T0, None, T0, T0 + DAY).unwrap())
        .unwrap();
    assert!(verify(&c, &[org.id()], &revs, T0 + DAY).is_ok());
    // A registrar whose scope covers the unit may.
    let bihar = org.registrar(6, "bihar", T0 - DAY, T0 + 365 * DAY);
    revs.insert(bihar.revoke(target, T0, T0).unwrap()).unwrap();
    assert!(matches!(
        verify(&c, &[org.id()], &revs, T0 + DAY),
        Err(CredError::DeviceRevoked { .. })
    ));
}

#[test]
fn a_revoked_registrars_later_issuance_is_refused_and_earlier_stays_valid() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let before = raw_chain(&reg, 3, 4, "bihar", T0 + DAY);
    let after = raw_chain(&reg, 5, 6, "bihar", T0 + 6 * DAY);
    // A device added after the revocation to a person enrolled before.
    let late_dev = DeviceCred::new(
        &reg.key,
        before.person.person,
        key(7).device_id(),
        "laptop",
        T0 + 6 * DAY,
        T0 + 60 * DAY,
    )
    .unwrap();
    let late = reg.bundle(before.person.clone(), late_dev);
    let mut revs = Revocations::new();
    revs.insert(org.revoke(Target::Registrar(reg.key.device_id()), T0 + 5 * DAY))
        .unwrap();
    let now = T0 + 10 * DAY;
    assert!(
        verify(&before, &[org.id()], &revs, now).is_ok(),
        "issued before the revocation"
    );
    assert_eq!(
        verify(&after, &[org.id()], &revs, now),
        Err(CredError::RegistrarRevoked {
            effective_at: T0 + 5 * DAY
        })
    );
    assert!(matches!(
        verify(&late, &[org.id()], &revs, now),
        Err(CredError::RegistrarRevoked { .. })
    ));
    // And its revocations signed after that are void: it cannot take down honest devices.
    let honest = org.registrar(8, "bihar", T0 - DAY, T0 + 365 * DAY);
    let victim = raw_chain(&honest, 9, 10, "bihar", T0);
    revs.insert(
        reg.revoke(
            Target::Device(key(10).device_id()),
            T0 + 7 * DAY,
            T0 + 7 * DAY,
        )
        .unwrap(),
    )
    .unwrap();
    revs.insert(
        reg.revoke(
            Target::Registrar(honest.key.device_id()),
            T0 + 7 * DAY,
            T0 + 7 * DAY,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(verify(&victim, &[org.id()], &revs, now).is_ok());
}

/// Two registrars of the same scope revoke each other at about the same time, in two
/// partitions. The rule: revocations by registrars do not void each other, so both are
/// revoked from their effective times; what each issued before stays valid. Every order of
/// arrival gives the same answers.
#[test]
fn concurrent_cross_revocations_of_two_registrars_converge_whatever_the_order() {
    let org = Org::new(1, "Bihar Police");
    let r1 = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let r2 = org.registrar(3, "bihar", T0 - DAY, T0 + 365 * DAY);
    let t1 = T0 + 5 * DAY;
    let t2 = T0 + 5 * DAY + 60_000;
    let by_r1 = r1
        .revoke(Target::Registrar(r2.key.device_id()), t1, t1)
        .unwrap();
    let by_r2 = r2
        .revoke(Target::Registrar(r1.key.device_id()), t2, t2)
        .unwrap();
    let chains = [
        raw_chain(&r1, 10, 11, "bihar", T0),           // r1, before
        raw_chain(&r1, 12, 13, "bihar", T0 + 6 * DAY), // r1, after
        raw_chain(&r2, 14, 15, "bihar", T0),
        raw_chain(&r2, 16, 17, "bihar", T0 + 6 * DAY),
    ];
    let now = T0 + 10 * DAY;
    let outcome = |order: &[&Revocation]| {
        let mut revs = Revocations::new();
        for r in order {
            revs.insert((*r).clone()).unwrap();
        }
        chains
            .iter()
            .map(|c| verify(c, &[org.id()], &revs, now))
            .collect::<Vec<_>>()
    };
    let a = outcome(&[&by_r1, &by_r2]);
    let b = outcome(&[&by_r2, &by_r1]);
    assert_eq!(a, b);
    assert!(a[0].is_ok() && a[2].is_ok(), "{a:?}");
    assert_eq!(a[1], Err(CredError::RegistrarRevoked { effective_at: t2 }));
    assert_eq!(a[3], Err(CredError::RegistrarRevoked { effective_at: t1 }));
    // Equal times give the same symmetric answer.
    let e1 = r1
        .revoke(Target::Registrar(r2.key.device_id()), t1, t1)
        .unwrap();
    let e2 = r2
        .revoke(Target::Registrar(r1.key.device_id()), t1, t1)
        .unwrap();
    assert_eq!(outcome(&[&e1, &e2]), outcome(&[&e2, &e1]));
}

#[test]
fn cross_certification_holds_only_within_its_scope_and_period() {
    let police = Org::new(1, "Bihar Police");
    let ndrf = Org::new(20, "NDRF");
    let reg = police.registrar(2, "bihar", T0 - 10 * DAY, T0 + 365 * DAY);
    let from = T0;
    let until = T0 + 30 * DAY;
    let cross = RegistrarCert::new(
        &ndrf.key,
        reg.key.device_id(),
        unit("bihar/darbhanga"),
        from,
        until,
    )
    .unwrap();
    let with = |mut c: Chain, x: &RegistrarCert| {
        c.cross = Some(x.clone());
        c
    };
    // An NDRF device (pins only NDRF) accepts a police officer of Darbhanga in the period.
    let c = with(raw_chain(&reg, 3, 4, "bihar/darbhanga", T0 + DAY), &cross);
    let v = verify(&c, &[ndrf.id()], &none(), T0 + 2 * DAY).unwrap();
    assert_eq!(v.org, police.id());
    assert_eq!(v.via, Some(ndrf.id()));
    assert_eq!(Chain::decode(&c.encode()).unwrap(), c);
    // Without the cross-certification: not trusted.
    let mut bare = c.clone();
    bare.cross = None;
    assert_eq!(
        verify(&bare, &[ndrf.id()], &none(), T0 + 2 * DAY),
        Err(CredError::UnknownRoot(police.id()))
    );
    // Inside the registrar's scope but outside the cross-certification's.
    let patna = with(raw_chain(&reg, 3, 4, "bihar/patna", T0 + DAY), &cross);
    assert!(
        verify(&patna, &[police.id()], &none(), T0 + 2 * DAY).is_ok(),
        "its own organisation accepts it"
    );
    assert!(matches!(
        verify(&patna, &[ndrf.id()], &none(), T0 + 2 * DAY),
        Err(CredError::CrossOutsideScope { .. })
    ));
    // Issued before or after the joint operation.
    for at in [T0 - 9 * DAY, T0 + 31 * DAY] {
        let c = with(raw_chain(&reg, 3, 4, "bihar/darbhanga", at), &cross);
        assert!(
            matches!(
                verify(&c, &[ndrf.id()], &none(), at),
                Err(CredError::CrossOutsidePeriod { .. })
            ),
            "{at}"
        );
    }
    // After the period (beyond the tolerance) even earlier credentials lapse for NDRF.
    assert!(matches!(
        verify(&c, &[ndrf.id()], &none(), until + SKEW + 1),
        Err(CredError::Expired {
            record: "cross-certification",
            ..
        })
    ));
    // A cross-certification of another registrar does not lend its trust.
    let other = police.registrar(9, "bihar", T0 - DAY, T0 + 365 * DAY);
    let x_other =
        RegistrarCert::new(&ndrf.key, other.key.device_id(), unit("bihar"), from, until).unwrap();
    let c2 = with(raw_chain(&reg, 3, 4, "bihar/darbhanga", T0 + DAY), &x_other);
    assert!(matches!(
        verify(&c2, &[ndrf.id()], &none(), T0 + 2 * DAY),
        Err(CredError::CrossSubjectMismatch { .. })
    ));
    // NDRF's root withdraws it: later issuance is refused for NDRF, not for the police.
    let mut revs = Revocations::new();
    revs.insert(ndrf.revoke(Target::Registrar(reg.key.device_id()), T0 + 10 * DAY))
        .unwrap();
    let late = with(
        raw_chain(&reg, 5, 6, "bihar/darbhanga", T0 + 11 * DAY),
        &cross,
    );
    assert!(matches!(
        verify(&late, &[ndrf.id()], &revs, T0 + 12 * DAY),
        Err(CredError::RegistrarRevoked { .. })
    ));
    assert!(verify(&late, &[police.id()], &revs, T0 + 12 * DAY).is_ok());
}

#[test]
fn enrolment_refuses_a_bundle_for_another_device_and_survives_the_text_form() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let c = raw_chain(&reg, 3, 4, "bihar", T0);
    let text = armor(&c.encode());
    let back = Chain::decode(&dearmor(&text).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(enrol(&back, key(4).device_id(), T0, SKEW).is_ok());
    assert_eq!(
        enrol(&back, key(5).device_id(), T0, SKEW),
        Err(CredError::NotMyDevice {
            bundle_for: key(4).device_id(),
            me: key(5).device_id()
        })
    );
}

#[test]
fn trailing_bytes_and_unknown_versions_are_refused() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let c = raw_chain(&reg, 3, 4, "bihar", T0);
    let mut b = c.encode();
    b.push(0);
    assert_eq!(
        Chain::decode(&b),
        Err(CredError::Decode(DecodeError::Trailing(1)))
    );
    let mut rec = c.person.encode();
    rec.push(0);
    assert!(matches!(
        PersonCred::decode(&rec),
        Err(CredError::Decode(DecodeError::Trailing(_)))
    ));
    let mut v2 = c.device.encode();
    v2[0] = 2;
    assert_eq!(
        DeviceCred::decode(&v2),
        Err(CredError::Decode(DecodeError::UnknownVersion(2)))
    );
    // A record of one kind is not read as another.
    assert!(matches!(
        DeviceCred::decode(&c.person.encode()),
        Err(CredError::WrongKind { .. })
    ));
}

#[test]
fn oversized_fields_are_refused() {
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let person = |names: Vec<(String, String)>, designation: &str, langs: Vec<String>| {
        PersonCred::new(
            &reg.key,
            PersonId([1; 16]),
            names,
            designation,
            unit("bihar"),
            langs,
            T0,
            T0 + DAY,
        )
    };
    let too_long = "क".repeat(86); // 258 bytes
    assert!(matches!(
        person(vec![("hi".into(), too_long.clone())], "", vec![]),
        Err(CredError::Decode(DecodeError::TooLarge { .. }))
    ));
    assert!(matches!(
        person(names(), &too_long, vec![]),
        Err(CredError::Decode(DecodeError::TooLarge { .. }))
    ));
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("x{i}"), "n".to_string())).collect();
    assert!(matches!(
        person(nine, "", vec![]),
        Err(CredError::Decode(DecodeError::TooLarge { .. }))
    ));
    let langs: Vec<String> = (0..9).map(|i| format!("l{i}")).collect();
    assert!(matches!(
        person(names(), "", langs),
        Err(CredError::Decode(DecodeError::TooLarge { .. }))
    ));
    // Two names in one script, no name at all, a control character, a bad tag.
    assert!(
        person(
            vec![("hi".into(), "a".into()), ("hi".into(), "b".into())],
            "",
            vec![]
        )
        .is_err()
    );
    assert!(person(vec![], "", vec![]).is_err());
    assert!(person(vec![("en".into(), "Anita\u{1b}[2J".into())], "", vec![]).is_err());
    assert!(
        person(
            vec![("english language".into(), "Anita".into())],
            "",
            vec![]
        )
        .is_err()
    );
    assert!(
        DeviceCred::new(
            &reg.key,
            PersonId([1; 16]),
            key(4).device_id(),
            &"l".repeat(65),
            T0,
            T0 + DAY
        )
        .is_err()
    );
    assert!(OrgRoot::new(&key(1), &"n".repeat(257), T0, T0 + DAY).is_err());
    assert!(Unit::parse(&["aa"; 8].join("/")).is_ok());
    assert!(Unit::parse(&["a"; 9].join("/")).is_err());
    // A chain that claims a record longer than the limit is refused before reading it.
    let mut w = vaarta_sync::codec::Writer::new();
    w.u8(1).u8(0x10).varint(1 << 20);
    assert!(matches!(
        Chain::decode(w.as_slice()),
        Err(CredError::Decode(DecodeError::TooLarge { .. }))
    ));
    // Expiry before issue.
    assert!(matches!(
        DeviceCred::new(
            &reg.key,
            PersonId([1; 16]),
            key(4).device_id(),
            "phone",
            T0,
            T0 - 1
        ),
        Err(CredError::ExpiresBeforeIssue { .. })
    ));
}

#[test]
fn a_full_revocation_set_refuses_new_entries_and_keeps_what_it_holds() {
    let org = Org::new(1, "Bihar Police");
    let mut revs = Revocations::with_limit(2);
    let r = |p: u8, at: u64| org.revoke(Target::Person(PersonId([p; 16])), at);
    assert!(revs.insert(r(1, T0)).unwrap());
    assert!(
        !revs.insert(r(1, T0 + 1)).unwrap(),
        "a later duplicate changes nothing"
    );
    assert!(
        revs.insert(r(1, T0 - 1)).unwrap(),
        "an earlier one replaces it"
    );
    assert!(revs.insert(r(2, T0)).unwrap());
    assert_eq!(
        revs.insert(r(3, T0)),
        Err(CredError::RevocationsFull { max: 2 })
    );
    assert_eq!(revs.len(), 2);
    // A revocation with a bad signature is refused.
    let mut bad = r(4, T0);
    bad.effective_at += 1;
    assert_eq!(
        Revocations::new().insert(bad),
        Err(CredError::BadSignature("revocation"))
    );
}

fn sample_chain() -> (Chain, OrgId, Revocations, u64) {
    let police = Org::new(1, "Bihar Police");
    let ndrf = Org::new(20, "NDRF");
    let reg = police.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
    let mut c = raw_chain(&reg, 3, 4, "bihar/darbhanga", T0);
    c.cross = Some(
        RegistrarCert::new(
            &ndrf.key,
            reg.key.device_id(),
            unit("bihar"),
            T0 - DAY,
            T0 + 30 * DAY,
        )
        .unwrap(),
    );
    (c, ndrf.id(), Revocations::new(), T0 + DAY)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any byte of any record in the chain, changed in any way: decoding or verification
    /// refuses it; nothing panics; no altered chain verifies.
    #[test]
    fn a_tampered_byte_anywhere_is_refused(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let (c, pin, revs, now) = sample_chain();
        prop_assert!(verify(&c, &[pin], &revs, now).is_ok());
        let mut b = c.encode();
        let i = pos.index(b.len());
        b[i] ^= mask;
        let r = Chain::decode(&b).and_then(|c| verify(&c, &[pin], &revs, now));
        prop_assert!(r.is_err(), "byte {} ^ {:#x} still verifies", i, mask);
    }

    /// The same for a revocation on its own.
    #[test]
    fn a_tampered_revocation_is_refused(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let org = Org::new(1, "Bihar Police");
        let reg = org.registrar(2, "bihar", T0 - DAY, T0 + 365 * DAY);
        let r = reg.revoke(Target::Device(key(4).device_id()), T0, T0).unwrap();
        let mut b = r.encode();
        let i = pos.index(b.len());
        b[i] ^= mask;
        prop_assert!(Revocation::decode(&b).is_err());
    }

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Chain::decode(&bytes);
        let _ = Revocation::decode(&bytes);
        let _ = PersonCred::decode(&bytes);
        let _ = dearmor(&String::from_utf8_lossy(&bytes));
    }
}

/// Issue 12, remote wipe: the named device obeys an order from its root or a registrar in
/// scope; an order from anyone else, for another device, by a registrar out of scope or one
/// its root revoked, altered, or from another organisation is refused.
#[test]
fn a_wipe_order_is_obeyed_only_from_an_authority_over_the_device() {
    use vaarta_sync::org::{WipeOrder, verify_wipe};
    let org = Org::new(1, "Bihar Police");
    let reg = org.registrar(2, "bihar", T0 - 10 * DAY, T0 + 365 * DAY);
    let other_reg = org.registrar(3, "odisha", T0 - 10 * DAY, T0 + 365 * DAY);
    let chain = raw_chain(&reg, 7, 8, "bihar/darbhanga", T0 - DAY);
    let me = chain.device.device;
    let pinned = [org.id()];
    let check = |o: &WipeOrder, held: &Revocations| verify_wipe(o, &chain, &pinned, held, T0, SKEW);
    // Its registrar, and its root.
    let by_reg = reg.wipe(me, T0).unwrap();
    assert_eq!(check(&by_reg, &none()), Ok(()));
    let by_root = WipeOrder::new(&org.key, me, None, T0, T0 + 365 * DAY).unwrap();
    assert_eq!(check(&by_root, &none()), Ok(()));
    // Round trip through the canonical encoding and the text form.
    let back = WipeOrder::decode(&dearmor(&armor(&by_reg.encode())).unwrap()).unwrap();
    assert_eq!(back, by_reg);
    // The implied revocation kills the device's chain.
    let mut revs = none();
    revs.insert(by_reg.revocation.clone()).unwrap();
    assert!(matches!(
        verify(&chain, &pinned, &revs, T0),
        Err(CredError::DeviceRevoked { .. })
    ));
    // A key that is no registrar (wrong signer), and one posing with a stolen certificate.
    let nobody = key(99);
    let forged = WipeOrder::new(&nobody, me, None, T0, T0 + DAY).unwrap();
    assert!(matches!(
        check(&forged, &none()),
        Err(CredError::WipeNotAuthorised { .. })
    ));
    assert!(matches!(
        WipeOrder::new(&nobody, me, Some(reg.cert.clone()), T0, T0 + DAY).map(|_| ()),
        Err(CredError::RevokerCertMismatch { .. })
    ));
    // A registrar of the organisation, out of scope.
    let out_of_scope = other_reg.wipe(me, T0).unwrap();
    assert!(matches!(
        check(&out_of_scope, &none()),
        Err(CredError::WipeNotAuthorised { .. })
    ));
    // Another organisation's root.
    let other = Org::new(50, "Another State Police");
    let foreign = WipeOrder::new(&other.key, me, None, T0, T0 + DAY).unwrap();
    assert!(check(&foreign, &none()).is_err());
    // For another device.
    let not_me = reg.wipe(key(9).device_id(), T0).unwrap();
    assert!(matches!(
        check(&not_me, &none()),
        Err(CredError::WipeForAnotherDevice { .. })
    ));
    // A registrar its root revoked before it signed.
    let reg_revoked = {
        let mut h = none();
        // After it enrolled this device (which stays valid), before it signed the order.
        h.insert(org.revoke(Target::Registrar(reg.key.device_id()), T0 - DAY / 2))
            .unwrap();
        h
    };
    assert!(matches!(
        check(&by_reg, &reg_revoked),
        Err(CredError::WipeNotAuthorised { .. })
    ));
    // Revoked already (honestly): a forged order is still refused.
    let mut held = none();
    held.insert(org.revoke(Target::Device(me), T0 - DAY))
        .unwrap();
    assert!(check(&forged, &held).is_err());
    // Any byte altered: refused at decoding.
    let bytes = by_reg.encode();
    for at in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        assert!(WipeOrder::decode(&bad).is_err(), "byte {at}");
    }
    // A revocation is not a wipe order, nor the reverse.
    assert!(WipeOrder::decode(&by_reg.revocation.encode()).is_err());
    assert!(Revocation::decode(&bytes).is_err());
}
