//! The shipped scenarios, run small: invariants hold, runs are deterministic, faults work.

use vaarta_sim::scenario::Scenario;

fn load(name: &str) -> (Scenario, Option<String>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let sc = Scenario::parse(&std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap())
        .unwrap();
    let trace = sc
        .contact_trace
        .as_ref()
        .map(|t| std::fs::read_to_string(dir.join(t)).unwrap());
    (sc, trace)
}

fn vaarta(o: &vaarta_sim::Outcome) -> &vaarta_sim::metrics::Summary {
    o.report
        .routers
        .iter()
        .find(|r| r.router == "vaarta")
        .expect("vaarta ran")
}

#[test]
fn every_shipped_scenario_parses_and_builds() {
    for name in [
        "office-lan",
        "partition-heal",
        "flood-relief",
        "contact-trace",
        "adversarial",
    ] {
        let (sc, trace) = load(name);
        assert!(sc.node_count() > 0, "{name}");
        if name != "flood-relief" {
            let w = vaarta_sim::world::World::build(&sc, trace.as_deref()).unwrap();
            assert!(!w.contacts.is_empty(), "{name} has contacts");
        }
    }
}

#[test]
fn same_seed_same_trace_hash_other_seed_other_hash() {
    let (mut sc, _) = load("office-lan");
    sc.duration_s = 600;
    let a = vaarta_sim::run(&sc, None, None).unwrap();
    let b = vaarta_sim::run(&sc, None, None).unwrap();
    assert_eq!(a.report.trace_hash, b.report.trace_hash);
    sc.seed = 2;
    let c = vaarta_sim::run(&sc, None, None).unwrap();
    assert_ne!(a.report.trace_hash, c.report.trace_hash);
    assert!(
        a.report.invariants.passed,
        "{:?}",
        a.report.invariants.failures
    );
    assert_eq!(
        vaarta(&a).delivery_ratio,
        1.0,
        "a static LAN delivers everything"
    );
}

#[test]
fn partition_heals_and_members_converge() {
    let (mut sc, _) = load("partition-heal");
    sc.duration_s = 1000;
    sc.routers = vec!["vaarta".into(), "epidemic".into()];
    let o = vaarta_sim::run(&sc, None, None).unwrap();
    assert!(
        o.report.invariants.passed,
        "{:?}",
        o.report.invariants.failures
    );
    assert!(o.report.invariants.linked_member_pairs_checked > 100);
    let v = vaarta(&o);
    assert_eq!(v.duplicates, 0);
    assert!(v.delivery_ratio > 0.99, "{}", v.delivery_ratio);
    let heal = v.convergence_after_heal_s[0].expect("convergence measured");
    assert!(heal < 300.0, "converged {heal} s after the heal");
}

#[test]
fn replayed_contact_trace_matches_epidemic_delivery() {
    let (sc, trace) = load("contact-trace");
    let o = vaarta_sim::run(&sc, trace.as_deref(), None).unwrap();
    assert!(
        o.report.invariants.passed,
        "{:?}",
        o.report.invariants.failures
    );
    let e = o
        .report
        .routers
        .iter()
        .find(|r| r.router == "epidemic")
        .unwrap();
    assert!(vaarta(&o).delivery_ratio >= e.delivery_ratio * 0.95);
    // The courier carried envelopes it could not read.
    assert!(o.report.invariants.carried_envelopes_checked > 0);
}

#[test]
fn crashes_and_churn_lose_nothing_acknowledged() {
    let text = r#"
name = "faults"
duration_s = 900
quiesce_s = 120
routers = ["vaarta"]
[radios.wifi]
range_m = 500
rate_kbytes_s = 1000
latency_ms = 2
[[group]]
name = "n"
count = 8
role = "field"
radios = ["wifi"]
[[conversation]]
name = "c"
members = ["n"]
[workload]
rate_per_member_hour = 30
size_min = 50
size_max = 150
ttl_s = 3600
stop_before_end_s = 100
[[fault]]
kind = "crash"
node = "n[3]"
at_s = 200
restart_s = 400
[[fault]]
kind = "churn"
every_s = 60
down_s = 20
"#;
    let sc = Scenario::parse(text).unwrap();
    let o = vaarta_sim::run(&sc, None, None).unwrap();
    assert!(
        o.report.invariants.passed,
        "{:?}",
        o.report.invariants.failures
    );
    let v = vaarta(&o);
    assert_eq!(v.duplicates, 0);
    // Messages written by a device that was down are never written; everything written
    // reaches everyone once the devices are back.
    assert!(v.delivery_ratio > 0.9, "{}", v.delivery_ratio);
}

#[test]
fn bad_scenarios_are_clear_errors() {
    for (bad, want) in [
        (
            "name = 'x'\nduration_s = 10\n[radios.r]\nrange_m = 1\nrate_kbytes_s = 1\n[[group]]\nname = 'g'\ncount = 1\nrole = 'field'\nradios = ['nope']\n",
            "unknown radio",
        ),
        (
            "name = 'x'\nduration_s = 10\nradios = {}\ngroup = []\n",
            "at least one",
        ),
        ("name = 'x'\nduration_s = 10\nbogus = 1\n", "unknown field"),
    ] {
        let e = Scenario::parse(bad).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let bad_trace = "0.0 CONN 0 1 up\n5 CONN 0 9 up\n";
    let e = vaarta_sim::world::parse_one_trace(bad_trace, 2).unwrap_err();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn adversarial_member_is_contained() {
    let (sc, _) = load("adversarial");
    let o = vaarta_sim::run(&sc, None, None).unwrap();
    let inv = &o.report.invariants;
    assert!(inv.passed, "{:?}", inv.failures);
    // The checks looked at something: every attack reached honest members (else a
    // failure), six honest members were compared with the admin, the rotation happened and
    // what was sealed after it was tried against every key the adversary ever held.
    assert_eq!(inv.flush_failures, 0);
    assert_eq!(inv.honest_members_compared, 6);
    assert!(inv.post_removal_envelopes_checked > 0);
    assert!(inv.honest_envelopes_checked > 0);
    assert!(
        inv.hostile_envelopes_handed > 500,
        "{}",
        inv.hostile_envelopes_handed
    );
    let v = vaarta(&o);
    assert_eq!(v.duplicates, 0);
    assert!(v.delivery_ratio > 0.99, "{}", v.delivery_ratio);
    // Deterministic.
    let again = vaarta_sim::run(&sc, None, None).unwrap();
    assert_eq!(o.report.trace_hash, again.report.trace_hash);
}

#[test]
fn the_checker_flags_a_leaked_epoch_key() {
    // A test-only world in which the removed device is handed the key of the epoch that
    // excludes it: the same run must fail, naming the leak.
    let (mut sc, _) = load("adversarial");
    sc.adversaries[0].attacks.truncate(1);
    let options = vaarta_sim::Options {
        leak_epoch_keys_to_adversaries: true,
    };
    let o = vaarta_sim::run_with(&sc, None, None, &options).unwrap();
    let inv = &o.report.invariants;
    assert!(!inv.passed);
    assert!(
        inv.failures
            .iter()
            .any(|f| f.contains("holds the key of epoch")),
        "{:?}",
        inv.failures
    );
    assert!(
        inv.failures
            .iter()
            .any(|f| f.contains("can read an envelope sealed after its removal")),
        "{:?}",
        inv.failures
    );
}

/// Shows a defect that is NOT fixed: a removed admin's backdated takeover (remove the admin,
/// add a second device as admin that removes a member), delivered to the side of a split
/// that has not yet learnt of the removal, leaves two honest members there with different
/// page heads from everyone else after the heal, though the membership converges. Run with
/// `--ignored` to see it fail.
#[test]
#[ignore = "backdated takeover across a split: honest members' messages diverge (not fixed)"]
fn adversarial_backdated_takeover_converges() {
    let (mut sc, _) = load("adversarial");
    sc.adversaries[0].attacks = vec![vaarta_sim::scenario::Attack {
        kind: vaarta_sim::scenario::AttackKind::BackdatedTakeover,
        at_s: 70,
        count: None,
    }];
    let o = vaarta_sim::run(&sc, None, None).unwrap();
    let inv = &o.report.invariants;
    assert!(inv.passed, "{:?}", inv.failures);
}
