//! The signed directory (issue 12, part 3): role assignments and who may sign them, the
//! handover order, the directory's bounds, revocations applied, and search in any script.

use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{OrgId, PersonId};
use vaarta_sync::org::{
    Chain, CredError, DEFAULT_SKEW_MS, Directory, Judge, MAX_ASSIGNMENTS_PER_ROLE, OrgRoot, Record,
    Registrar, RegistrarCert, Revocation, Revocations, RoleAssignment, RoleError, RoleId, Target,
    Unit, fold, verify_role,
};

const DAY: u64 = 86_400_000;
const T0: u64 = 1_780_000_000_000;
const SKEW: u64 = DEFAULT_SKEW_MS;

fn key(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

fn unit(s: &str) -> Unit {
    Unit::parse(s).unwrap()
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
    fn registrar(&self, seed: u8, scope: &str) -> Registrar {
        let k = key(seed);
        let cert = RegistrarCert::new(
            &self.key,
            k.device_id(),
            unit(scope),
            T0 - 10 * DAY,
            T0 + 365 * DAY,
        )
        .unwrap();
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

fn titles() -> Vec<(String, String)> {
    vec![
        ("en".into(), "DM Darbhanga".into()),
        ("hi".into(), "डीएम दरभंगा".into()),
    ]
}

/// A person (seed `p`) with names `names` in `unit`, one device (seed `d`), issued at T0.
fn person(
    reg: &Registrar,
    p: u8,
    d: u8,
    names: &[(&str, &str)],
    designation: &str,
    u: &str,
) -> Chain {
    let names = names
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
    let pc = reg
        .issue_person(
            PersonId([p; 16]),
            names,
            designation,
            unit(u),
            vec![],
            T0,
            90 * DAY,
        )
        .unwrap();
    let dc = reg
        .issue_device(&pc, key(d).device_id(), "phone", T0, 90 * DAY)
        .unwrap();
    reg.bundle(pc, dc)
}

/// `reg` assigns role `dm` of bihar/darbhanga to person `p` from `from`.
fn assign(reg: &Registrar, p: u8, from: u64) -> RoleAssignment {
    reg.assign(
        unit("bihar/darbhanga"),
        "dm",
        titles(),
        PersonId([p; 16]),
        from,
        T0,
        90 * DAY,
    )
    .unwrap()
}

fn judge<'a>(pinned: &'a [OrgId], revs: &'a Revocations, now: u64) -> Judge<'a> {
    Judge {
        pinned,
        revocations: revs,
        now,
        skew: SKEW,
    }
}

fn dm(org: &Org) -> RoleId {
    RoleId {
        org: org.id(),
        unit: unit("bihar/darbhanga"),
        role: "dm".into(),
    }
}

#[test]
fn a_registrar_in_scope_or_the_root_assigns_a_role_and_it_round_trips() {
    let org = Org::new(1, "Bihar");
    let reg = org.registrar(2, "bihar");
    let a = assign(&reg, 9, T0);
    let back = RoleAssignment::decode(&a.encode()).unwrap();
    assert_eq!(back, a);
    let v = verify_role(&a, &[org.id()], &Revocations::new(), T0, SKEW).unwrap();
    assert_eq!(v.holder, PersonId([9; 16]));
    assert_eq!(v.titles, titles());
    assert_eq!(a.title_for("hi"), "डीएम दरभंगा");
    // The root itself, no certificate.
    let by_root = RoleAssignment::new(
        &org.key,
        org.id(),
        None,
        unit("bihar/darbhanga"),
        "dm",
        titles(),
        PersonId([9; 16]),
        T0,
        T0,
        T0 + DAY,
    )
    .unwrap();
    assert!(verify_role(&by_root, &[org.id()], &Revocations::new(), T0, SKEW).is_ok());
    // Not pinned here: refused.
    let other = Org::new(50, "Odisha");
    assert_eq!(
        verify_role(&a, &[other.id()], &Revocations::new(), T0, SKEW),
        Err(CredError::UnknownRoot(org.id()))
    );
}

#[test]
fn strangers_members_and_out_of_scope_registrars_cannot_assign() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let none = Revocations::new();
    let darbhanga = org.registrar(2, "bihar/darbhanga");
    let cuttack = org.registrar(3, "odisha/cuttack");
    // A registrar of another unit: refused by the helper and, signed raw, by verification.
    assert!(matches!(
        cuttack.assign(
            unit("bihar/darbhanga"),
            "dm",
            titles(),
            PersonId([9; 16]),
            T0,
            T0,
            DAY
        ),
        Err(CredError::OutsideScope { .. })
    ));
    let raw = RoleAssignment::new(
        &cuttack.key,
        org.id(),
        Some(cuttack.cert.clone()),
        unit("bihar/darbhanga"),
        "dm",
        titles(),
        PersonId([9; 16]),
        T0,
        T0,
        T0 + DAY,
    )
    .unwrap();
    assert!(matches!(
        verify_role(&raw, &pinned, &none, T0, SKEW),
        Err(CredError::OutsideScope { .. })
    ));
    // A member (an enrolled device's own key) or a stranger, with no certificate: it is not
    // the root, so not a registrar.
    let member = key(40);
    assert!(matches!(
        RoleAssignment::new(
            &member,
            org.id(),
            None,
            unit("bihar/darbhanga"),
            "dm",
            titles(),
            PersonId([40; 16]),
            T0,
            T0,
            T0 + DAY,
        ),
        Err(CredError::NotARegistrar { .. })
    ));
    // The same record signed by hand (what a modified client sends): refused at decoding
    // and by verification of the value.
    let mut fake = assign(&darbhanga, 40, T0);
    fake.issuer = member.device_id();
    fake.issuer_cert = None;
    let mut msg = RoleAssignment::CONTEXT.to_vec();
    msg.extend_from_slice(&fake.signed_part());
    fake.sig = member.sign(&msg);
    assert!(
        fake.check_signature().is_ok(),
        "a valid signature by the member"
    );
    assert!(matches!(
        RoleAssignment::decode(&fake.encode()),
        Err(CredError::NotARegistrar { .. })
    ));
    assert!(matches!(
        verify_role(&fake, &pinned, &none, T0, SKEW),
        Err(CredError::NotARegistrar { .. })
    ));
    // A stranger attaching a real registrar's certificate: the certificate is not theirs.
    let mut stolen_cert = assign(&darbhanga, 40, T0);
    stolen_cert.issuer = member.device_id();
    let mut msg = RoleAssignment::CONTEXT.to_vec();
    msg.extend_from_slice(&stolen_cert.signed_part());
    stolen_cert.sig = member.sign(&msg);
    assert!(matches!(
        RoleAssignment::decode(&stolen_cert.encode()),
        Err(CredError::NotARegistrar { .. })
    ));
    assert!(matches!(
        verify_role(&stolen_cert, &pinned, &none, T0, SKEW),
        Err(CredError::NotARegistrar { .. })
    ));
    // A registrar of another organisation claiming this one.
    let other = Org::new(50, "Odisha");
    let foreign = other.registrar(51, "");
    assert_eq!(
        RoleAssignment::new(
            &foreign.key,
            org.id(),
            Some(foreign.cert.clone()),
            unit("bihar/darbhanga"),
            "dm",
            titles(),
            PersonId([40; 16]),
            T0,
            T0,
            T0 + DAY,
        ),
        Err(CredError::NotIssuedByRoot)
    );
    // Signed for its own organisation, it is not one this device pinned.
    let own = foreign
        .assign(
            unit("bihar/darbhanga"),
            "dm",
            titles(),
            PersonId([40; 16]),
            T0,
            T0,
            DAY,
        )
        .unwrap();
    assert_eq!(
        verify_role(&own, &pinned, &none, T0, SKEW),
        Err(CredError::UnknownRoot(other.id()))
    );
    // A forged signature (one byte of the title changed after signing).
    let good = assign(&darbhanga, 9, T0);
    let mut bytes = good.encode();
    let at = bytes
        .windows(b"DM Darbhanga".len())
        .position(|w| w == b"DM Darbhanga")
        .unwrap();
    bytes[at] = b'X';
    assert!(matches!(
        RoleAssignment::decode(&bytes),
        Err(CredError::BadSignature(_))
    ));
    // A bad role key.
    assert!(
        darbhanga
            .assign(
                unit("bihar/darbhanga"),
                "DM Darbhanga",
                titles(),
                PersonId([9; 16]),
                T0,
                T0,
                DAY
            )
            .is_err()
    );
}

#[test]
fn expired_and_revoked_registrars_assignments_are_refused() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let reg = org.registrar(2, "bihar");
    let a = assign(&reg, 9, T0);
    // Expired (90 days, plus the tolerance).
    assert!(matches!(
        verify_role(&a, &pinned, &Revocations::new(), T0 + 98 * DAY, SKEW),
        Err(CredError::Expired { .. })
    ));
    // The registrar revoked after it signed: the assignment stands; revoked before: refused.
    let mut revs = Revocations::new();
    revs.insert(org.revoke(Target::Registrar(reg.key.device_id()), T0 + DAY))
        .unwrap();
    assert!(verify_role(&a, &pinned, &revs, T0 + 2 * DAY, SKEW).is_ok());
    let late = reg
        .assign(
            unit("bihar/darbhanga"),
            "dm",
            titles(),
            PersonId([8; 16]),
            T0 + 2 * DAY,
            T0 + 2 * DAY,
            DAY,
        )
        .unwrap();
    assert_eq!(
        verify_role(&late, &pinned, &revs, T0 + 2 * DAY, SKEW),
        Err(CredError::RegistrarRevoked {
            effective_at: T0 + DAY
        })
    );
    // A revocation by someone without authority (another unit's registrar) does nothing.
    let mut weak = Revocations::new();
    let other = org.registrar(3, "odisha");
    weak.insert(
        other
            .revoke(Target::Registrar(reg.key.device_id()), T0 - DAY, T0)
            .unwrap(),
    )
    .unwrap();
    assert!(verify_role(&a, &pinned, &weak, T0, SKEW).is_ok());
}

#[test]
fn a_later_assignment_hands_the_role_over_and_concurrent_ones_resolve_alike_in_both_orders() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let none = Revocations::new();
    let r1 = org.registrar(2, "bihar");
    let r2 = org.registrar(3, "bihar/darbhanga");
    let anita = assign(&r1, 9, T0);
    let ravi = assign(&r1, 8, T0 + DAY);
    // Concurrent: the same `from`, two registrars.
    let c1 = assign(&r1, 7, T0 + 2 * DAY);
    let c2 = assign(&r2, 6, T0 + 2 * DAY);
    let all = [anita.encode(), ravi.encode(), c1.encode(), c2.encode()];
    let mut winners = Vec::new();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let mut d = Directory::new();
        for i in order {
            assert!(d.insert(&all[i], &judge(&pinned, &none, T0)).unwrap());
        }
        let at = |now| {
            d.holder(&dm(&org), &judge(&pinned, &none, now))
                .unwrap()
                .holder
        };
        assert_eq!(at(T0), PersonId([9; 16]));
        assert_eq!(at(T0 + DAY), PersonId([8; 16]), "the handover");
        winners.push(at(T0 + 2 * DAY));
    }
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "{winners:?}");
    let expect = if r1.key.device_id() > r2.key.device_id() {
        7
    } else {
        6
    };
    assert_eq!(winners[0], PersonId([expect; 16]));
    // Before any `from`: vacant.
    let mut d = Directory::new();
    d.insert(&ravi.encode(), &judge(&pinned, &none, T0))
        .unwrap();
    assert_eq!(d.holder(&dm(&org), &judge(&pinned, &none, T0)), None);
}

#[test]
fn a_revoked_registrars_handover_falls_back_to_the_previous_holder() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let r1 = org.registrar(2, "bihar");
    let r2 = org.registrar(3, "bihar");
    let mut d = Directory::new();
    let none = Revocations::new();
    d.insert(&assign(&r1, 9, T0).encode(), &judge(&pinned, &none, T0))
        .unwrap();
    d.insert(
        &assign(&r2, 8, T0 + DAY).encode(),
        &judge(&pinned, &none, T0),
    )
    .unwrap();
    let mut revs = Revocations::new();
    // r2 revoked from before it signed.
    revs.insert(org.revoke(Target::Registrar(r2.key.device_id()), T0 - DAY))
        .unwrap();
    let j = judge(&pinned, &revs, T0 + 2 * DAY);
    assert_eq!(d.holder(&dm(&org), &j).unwrap().holder, PersonId([9; 16]));
    assert_eq!(d.prune(&j), 1);
    assert_eq!(d.len(), 1);
}

#[test]
fn an_assignment_to_a_person_of_another_organisation_reaches_no_device() {
    let bihar = Org::new(1, "Bihar");
    let odisha = Org::new(50, "Odisha");
    let pinned = [bihar.id(), odisha.id()];
    let none = Revocations::new();
    let breg = bihar.registrar(2, "bihar");
    let oreg = odisha.registrar(51, "odisha");
    let mut d = Directory::new();
    let j = judge(&pinned, &none, T0);
    // Person 9 is Odisha's; Bihar's registrar names that person id as its DM.
    d.insert(
        &person(&oreg, 9, 20, &[("en", "Bhavesh Rao")], "SI", "odisha/puri").encode(),
        &j,
    )
    .unwrap();
    d.insert(&assign(&breg, 9, T0).encode(), &j).unwrap();
    assert_eq!(
        d.holder_devices(&dm(&bihar), &j),
        Err(RoleError::NoDevices {
            role: "bihar/darbhanga/dm".into(),
            holder: PersonId([9; 16])
        })
    );
    // Bihar's own person 8 with two devices; the role handed to them reaches both.
    let p8 = person(
        &breg,
        8,
        21,
        &[("en", "Anita Kumari")],
        "District Magistrate",
        "bihar/darbhanga",
    );
    let mut laptop = p8.clone();
    laptop.device = breg
        .issue_device(&p8.person, key(22).device_id(), "laptop", T0, DAY)
        .unwrap();
    d.insert(&p8.encode(), &j).unwrap();
    d.insert(&laptop.encode(), &j).unwrap();
    d.insert(&assign(&breg, 8, T0).encode(), &j).unwrap();
    let (v, mut devices) = d.holder_devices(&dm(&bihar), &j).unwrap();
    devices.sort();
    let mut want = vec![key(21).device_id(), key(22).device_id()];
    want.sort();
    assert_eq!((v.holder, devices), (PersonId([8; 16]), want));
}

#[test]
fn a_flood_of_records_from_one_registrar_is_bounded_and_others_still_get_in() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let none = Revocations::new();
    let j = judge(&pinned, &none, T0);
    let rogue = org.registrar(2, "bihar");
    let honest = org.registrar(3, "bihar");
    let mut d = Directory::with_limits(64, 16);
    // Many roles from one registrar: its quota, then refused.
    let mut refused = 0;
    for i in 0..40u32 {
        let a = rogue
            .assign(
                unit("bihar"),
                &format!("r{i}"),
                titles(),
                PersonId([1; 16]),
                T0,
                T0,
                DAY,
            )
            .unwrap();
        match d.insert(&a.encode(), &j) {
            Ok(true) => {}
            Err(CredError::IssuerQuotaFull { .. }) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((d.len(), refused), (16, 24));
    // Many assignments of one role: at most MAX_ASSIGNMENTS_PER_ROLE kept, the latest.
    for i in 0..10u64 {
        let a = honest
            .assign(
                unit("bihar"),
                "dm",
                titles(),
                PersonId([i as u8; 16]),
                T0 + i,
                T0,
                DAY,
            )
            .unwrap();
        d.insert(&a.encode(), &j).unwrap();
    }
    assert_eq!(d.len(), 16 + MAX_ASSIGNMENTS_PER_ROLE);
    let role = RoleId {
        org: org.id(),
        unit: unit("bihar"),
        role: "dm".into(),
    };
    assert_eq!(
        d.holder(&role, &judge(&pinned, &none, T0 + 9))
            .unwrap()
            .holder,
        PersonId([9; 16])
    );
    // An old one sent again is dropped, not taken.
    let old = honest
        .assign(
            unit("bihar"),
            "dm",
            titles(),
            PersonId([0; 16]),
            T0,
            T0,
            DAY,
        )
        .unwrap();
    assert_eq!(d.insert(&old.encode(), &j), Ok(false));
    // The whole directory: refused past its limit, nothing held is forgotten.
    let other = org.registrar(4, "bihar");
    let mut full = false;
    for i in 0..64u32 {
        let a = other
            .assign(
                unit("bihar"),
                &format!("x{i}"),
                titles(),
                PersonId([1; 16]),
                T0,
                T0,
                DAY,
            )
            .unwrap();
        if let Err(e) = d.insert(&a.encode(), &j) {
            assert!(matches!(
                e,
                CredError::IssuerQuotaFull { .. } | CredError::DirectoryFull { .. }
            ));
            full = true;
        }
    }
    assert!(full && d.len() <= 64);
    let mut small = Directory::with_limits(2, 16);
    for i in 0..2u32 {
        let a = other
            .assign(
                unit("bihar"),
                &format!("y{i}"),
                titles(),
                PersonId([1; 16]),
                T0,
                T0,
                DAY,
            )
            .unwrap();
        assert!(small.insert(&a.encode(), &j).unwrap());
    }
    let third = other
        .assign(
            unit("bihar"),
            "y2",
            titles(),
            PersonId([1; 16]),
            T0,
            T0,
            DAY,
        )
        .unwrap();
    assert_eq!(
        small.insert(&third.encode(), &j),
        Err(CredError::DirectoryFull { max: 2 })
    );
    assert_eq!(small.len(), 2);
    // Garbage and wrong kinds: typed errors.
    assert!(matches!(
        d.insert(b"nonsense", &j),
        Err(CredError::WrongKind { .. })
    ));
    let rev = org.revoke(Target::Person(PersonId([1; 16])), T0).encode();
    assert!(matches!(
        d.insert(&rev, &j),
        Err(CredError::WrongKind { .. })
    ));
}

#[test]
fn search_finds_names_in_any_script_designations_units_and_roles() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let none = Revocations::new();
    let j = judge(&pinned, &none, T0);
    let reg = org.registrar(2, "");
    let mut d = Directory::new();
    let anita = person(
        &reg,
        1,
        11,
        &[("en", "Anita Kumari"), ("hi", "अनीता कुमारी")],
        "District Magistrate",
        "bihar/darbhanga",
    );
    let murugan = person(
        &reg,
        2,
        12,
        &[("en", "Murugan S"), ("ta", "முருகன் சு")],
        "Superintendent of Police",
        "tamilnadu/madurai",
    );
    for c in [&anita, &murugan] {
        assert!(d.insert(&c.encode(), &j).unwrap());
    }
    // Held already: not new.
    assert!(!d.insert(&anita.encode(), &j).unwrap());
    d.insert(&assign(&reg, 1, T0).encode(), &j).unwrap();
    let who = |q: &str| -> Vec<PersonId> { d.search(q, &j).iter().map(|e| e.person).collect() };
    let a = PersonId([1; 16]);
    let m = PersonId([2; 16]);
    assert_eq!(who("anita"), vec![a]);
    assert_eq!(who("ANITA KUM"), vec![a]);
    assert_eq!(who("ＡＮＩＴＡ"), vec![a], "full-width Latin folds (NFKC)");
    assert_eq!(who("कुमारी"), vec![a], "Devanagari");
    assert_eq!(who("முருகன்"), vec![m], "Tamil");
    assert_eq!(who("superintendent"), vec![m]);
    assert_eq!(who("madurai"), vec![m]);
    assert_eq!(who("dm darbhanga"), vec![a], "by role title");
    assert_eq!(who("डीएम"), vec![a], "by role title in Devanagari");
    assert_eq!(who("nobody"), Vec::<PersonId>::new());
    assert_eq!(who("").len(), 2);
    // Devanagari with a nukta written as two code points or one (NFKC composes).
    assert_eq!(fold("\u{0921}\u{093C}"), fold("\u{095C}"));
    // Roles by title, key or path.
    for q in [
        "DM Darbhanga",
        "dm darbhanga",
        "डीएम दरभंगा",
        "bihar/darbhanga/dm",
        "dm",
    ] {
        assert_eq!(d.find_role(q), Ok(dm(&org)), "{q}");
    }
    assert!(matches!(
        d.find_role("SP Cuttack"),
        Err(RoleError::NoSuchRole(_))
    ));
    let e = &d.search("anita", &j)[0];
    assert_eq!(e.devices, vec![(key(11).device_id(), "phone".to_string())]);
    assert_eq!(e.roles.len(), 1);
    // A revoked person drops out of answers at once.
    let mut revs = Revocations::new();
    revs.insert(org.revoke(Target::Person(a), T0)).unwrap();
    assert!(d.search("anita", &judge(&pinned, &revs, T0)).is_empty());
    assert!(matches!(
        d.holder_devices(&dm(&org), &judge(&pinned, &revs, T0)),
        Err(RoleError::NoDevices { .. })
    ));
}

#[test]
fn a_newer_chain_of_a_device_replaces_the_older() {
    let org = Org::new(1, "Bihar");
    let pinned = [org.id()];
    let none = Revocations::new();
    let reg = org.registrar(2, "");
    let old = person(&reg, 1, 11, &[("en", "Anita")], "DM", "bihar/darbhanga");
    let mut new = old.clone();
    new.device = reg
        .issue_device(&old.person, key(11).device_id(), "new phone", T0 + 1, DAY)
        .unwrap();
    let mut d = Directory::new();
    let j = judge(&pinned, &none, T0 + 1);
    assert!(d.insert(&new.encode(), &j).unwrap());
    assert!(!d.insert(&old.encode(), &j).unwrap(), "older: not taken");
    assert_eq!(d.len(), 1);
    let mut d2 = Directory::new();
    d2.insert(&old.encode(), &j).unwrap();
    assert!(d2.insert(&new.encode(), &j).unwrap());
    assert_eq!(d2.len(), 1);
    assert_eq!(d.records(), d2.records());
    // A chain that does not verify here (unpinned root) is refused.
    assert!(matches!(
        Directory::new().insert(&old.encode(), &judge(&[], &none, T0)),
        Err(CredError::UnknownRoot(_))
    ));
}
