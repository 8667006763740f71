//! The baselines against The ONE on identical contacts and messages (issue 15): its reference
//! run (`simulations/scenarios/the-one/`), and the input parsers' errors.

use vaarta_sim::the_one::{
    MessageStats, OneInput, OneScenario, Router, parse_connectivity, parse_messages, simulate,
};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/the-one")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load() -> (OneScenario, OneInput) {
    let sc = OneScenario::parse(&read("chat126.toml")).unwrap();
    let input = OneInput::parse(
        &sc,
        &read(&sc.connectivity),
        &sc.connectivity,
        &read(&sc.messages),
        &sc.messages,
    )
    .unwrap();
    (sc, input)
}

fn reference(sc: &OneScenario, r: Router) -> MessageStats {
    let f = &sc.reference[r.name()];
    MessageStats::parse_report(&read(f), f).unwrap()
}

/// Delivery within ±3 points and overhead ratio within ±20% of The ONE's, per router.
fn check(r: Router) {
    let (sc, input) = load();
    let want = reference(&sc, r);
    let got = simulate(&sc, r, &input.contacts, &input.messages).stats;
    eprintln!(
        "{}: delivery {:.4} (The ONE {:.4}), overhead {:.3} ({:.3}), latency median {} ({}), relayed {} ({}), aborted {} ({})",
        r.name(),
        got.delivery_prob,
        want.delivery_prob,
        got.overhead_ratio,
        want.overhead_ratio,
        got.latency_med,
        want.latency_med,
        got.relayed,
        want.relayed,
        got.aborted,
        want.aborted
    );
    assert_eq!(got.created, want.created, "the same messages are created");
    assert!(
        (got.delivery_prob - want.delivery_prob).abs() <= 0.03,
        "{}: delivery {:.4} vs The ONE's {:.4}",
        r.name(),
        got.delivery_prob,
        want.delivery_prob
    );
    assert!(
        (got.overhead_ratio - want.overhead_ratio).abs() <= 0.2 * want.overhead_ratio,
        "{}: overhead ratio {:.3} vs The ONE's {:.3}",
        r.name(),
        got.overhead_ratio,
        want.overhead_ratio
    );
}

#[test]
fn epidemic_matches_the_one() {
    check(Router::Epidemic);
}

#[test]
fn prophet_matches_the_one() {
    check(Router::Prophet);
}

#[test]
fn spray_and_wait_matches_the_one() {
    check(Router::SprayAndWait);
}

#[test]
fn the_reference_inputs_parse_as_the_one_wrote_them() {
    let (sc, input) = load();
    assert_eq!(sc.host_count(), 126);
    assert_eq!(input.messages.len(), 486);
    let first = &input.messages[0];
    assert_eq!(
        (
            first.id.as_str(),
            first.time_s,
            first.size,
            first.from,
            first.to,
            first.ttl_min
        ),
        ("M1", 32.0, 1434, 42, 46, 120)
    );
    assert_eq!(sc.host_name(125), "t125");
    assert_eq!(sc.host_name(80), "w80");
    // Every contact is an up or a down; only trams 120 and 121 (Group4) share two
    // interfaces, so only they ever hold two connections at once, and the first of their
    // connections is on the 1 km interface.
    let names: Vec<&String> = sc.interfaces.keys().collect();
    let highspeed = names.iter().position(|n| *n == "highspeed").unwrap();
    let on_hs: Vec<_> = input
        .contacts
        .iter()
        .filter(|c| c.iface == highspeed)
        .collect();
    assert!(!on_hs.is_empty());
    assert!(on_hs.iter().all(|c| (c.a, c.b) == (120, 121)));
    assert_eq!((on_hs[0].time_s, on_hs[0].up), (1.0, true));
    let ups = input.contacts.iter().filter(|c| c.up).count();
    assert_eq!(ups, 10_594);
}

#[test]
fn the_one_replay_is_deterministic() {
    let (sc, input) = load();
    let a = simulate(&sc, Router::SprayAndWait, &input.contacts, &input.messages);
    let b = simulate(&sc, Router::SprayAndWait, &input.contacts, &input.messages);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.stats, b.stats);
    let mut other = sc.clone();
    other.seed += 1;
    let c = simulate(
        &other,
        Router::SprayAndWait,
        &input.contacts,
        &input.messages,
    );
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "another seed, another update order"
    );
}

/// A three-host line (0 — 1 — 2, never 0 — 2) where every rule can be checked by hand.
fn tiny(router: &str) -> OneScenario {
    OneScenario::parse(&format!(
        r#"
name = "tiny"
connectivity = "c"
messages = "m"
end_time_s = 100
routers = ["{router}"]
[interfaces.bt]
speed_bytes_s = 1000
range_m = 10
[[group]]
prefix = "p"
count = 3
interfaces = ["bt"]
buffer_bytes = 2500
"#
    ))
    .unwrap()
}

#[test]
fn transfers_take_size_over_speed_and_abort_when_the_link_drops_first() {
    let sc = tiny("epidemic");
    // 0–1 up for 3 s; a 2,500-byte message at 1,000 B/s needs 2.5 s: delivered at the first
    // update after 12.5 s, i.e. 13 s. Then 1–2 up for 2 s only: a relay of 2,500 B cannot
    // finish (the update at 22 s sees the link down): aborted.
    let contacts = parse_connectivity(
        &sc,
        "10.0 CONN 0 1 up\n13.0 CONN 0 1 down\n20.0 CONN 1 2 up\n22.0 CONN 1 2 down\n",
        "c",
    )
    .unwrap();
    let msgs = parse_messages(&sc, "10.0 C M1 p0 p2 2500\n", "m");
    assert!(msgs.is_err(), "external events need ttl_min");
    let mut sc = sc;
    sc.ttl_min = Some(60);
    let msgs = parse_messages(&sc, "10.0 C M1 p0 p2 2500\n", "m").unwrap();
    let r = simulate(&sc, Router::Epidemic, &contacts, &msgs);
    // The message is created in its event pass at 10 s, before that tick's connectivity;
    // 0→1 starts in the tick's pass (done at 12.5 s) and is finalized by p0's update at
    // 13 s although the link is reported down then: the transfer was over (The ONE checks
    // "transferred" before "link down"). 1→2 starts at 20 s and is not over at 22 s.
    assert_eq!(r.stats.started, 2, "{:?}", r.stats);
    assert_eq!(r.stats.relayed, 1);
    assert_eq!(r.stats.aborted, 1);
    assert_eq!(r.stats.delivered, 0);
    // A link long enough: delivered at 23 s (started at 20, done at 22.5, next update 23).
    let contacts = parse_connectivity(
        &sc,
        "10.0 CONN 0 1 up\n13.0 CONN 0 1 down\n20.0 CONN 1 2 up\n30.0 CONN 1 2 down\n",
        "c",
    )
    .unwrap();
    let r = simulate(&sc, Router::Epidemic, &contacts, &msgs);
    assert_eq!(r.stats.delivered, 1);
    assert_eq!(r.deliveries, vec![(0, 23.0)]);
    assert_eq!(r.stats.latency_med, 13.0);
    assert_eq!(r.stats.overhead_ratio, 1.0, "one relay, one delivery");
}

#[test]
fn a_full_buffer_drops_the_oldest_received_first() {
    let mut sc = tiny("epidemic");
    sc.ttl_min = Some(60);
    sc.groups[0].buffer_bytes = 2000;
    // p0 creates three 900-byte messages, then meets p1: the third creation drops M1.
    let msgs = parse_messages(
        &sc,
        "1.0 C M1 p0 p2 900\n2.0 C M2 p0 p2 900\n3.0 C M3 p0 p2 900\n",
        "m",
    )
    .unwrap();
    let contacts = parse_connectivity(&sc, "5.0 CONN 0 1 up\n50.0 CONN 0 1 down\n", "c").unwrap();
    let r = simulate(&sc, Router::Epidemic, &contacts, &msgs);
    assert_eq!(r.stats.dropped, 1);
    assert_eq!(r.stats.relayed, 2, "only M2 and M3 were left to relay");
}

#[test]
fn ttl_is_in_minutes_and_a_relay_refuses_an_expired_message() {
    let mut sc = tiny("epidemic");
    sc.ttl_min = Some(2);
    // Created at 0 with a 2-minute TTL: getTtl() reads 0 from 61 s on (whole minutes left,
    // truncated), so p1 refuses it at 70 s; at 50 s it takes it.
    let msgs = parse_messages(&sc, "0.0 C M1 p0 p2 100\n", "m").unwrap();
    let late = parse_connectivity(&sc, "70.0 CONN 0 1 up\n80.0 CONN 0 1 down\n", "c").unwrap();
    assert_eq!(
        simulate(&sc, Router::Epidemic, &late, &msgs).stats.started,
        0
    );
    let early = parse_connectivity(&sc, "50.0 CONN 0 1 up\n80.0 CONN 0 1 down\n", "c").unwrap();
    assert_eq!(
        simulate(&sc, Router::Epidemic, &early, &msgs).stats.relayed,
        1
    );
}

#[test]
fn spray_and_wait_hands_half_its_tokens_and_waits_with_one() {
    let mut sc = tiny("spray-and-wait");
    sc.ttl_min = Some(60);
    sc.spray_and_wait.copies = 2;
    sc.groups[0].count = 4;
    // p0 (2 tokens) meets p1: gives 1, keeps 1. Then p1 meets p3 (not the destination):
    // p1 has one token, waits. p0 meets p3: one token, waits. Only p2 gets it, from p1.
    let msgs = parse_messages(&sc, "1.0 C M1 p0 p2 100\n", "m").unwrap();
    let contacts = parse_connectivity(
        &sc,
        "2.0 CONN 0 1 up\n4.0 CONN 0 1 down\n5.0 CONN 1 3 up\n7.0 CONN 1 3 down\n\
         8.0 CONN 0 3 up\n10.0 CONN 0 3 down\n11.0 CONN 1 2 up\n13.0 CONN 1 2 down\n",
        "c",
    )
    .unwrap();
    let r = simulate(&sc, Router::SprayAndWait, &contacts, &msgs);
    assert_eq!(r.stats.relayed, 2, "{:?}", r.stats);
    assert_eq!(r.stats.delivered, 1);
    assert_eq!(r.stats.hopcount_med, 2);
}

#[test]
fn prophet_forwards_only_to_a_likelier_carrier() {
    let mut sc = tiny("prophet");
    sc.ttl_min = Some(60);
    sc.groups[0].count = 4;
    // p1 has met p2 (P(1,2) = 0.75); p3 never has. p0 meets p3 first (no forward: 0 > 0 is
    // false), then p1 (forward: P(1,2) > P(0,2)), then p1 meets p2: delivered in 2 hops.
    let msgs = parse_messages(&sc, "1.0 C M1 p0 p2 100\n", "m").unwrap();
    let contacts = parse_connectivity(
        &sc,
        "2.0 CONN 1 2 up\n3.0 CONN 1 2 down\n4.0 CONN 0 3 up\n6.0 CONN 0 3 down\n\
         7.0 CONN 0 1 up\n9.0 CONN 0 1 down\n10.0 CONN 1 2 up\n12.0 CONN 1 2 down\n",
        "c",
    )
    .unwrap();
    let r = simulate(&sc, Router::Prophet, &contacts, &msgs);
    assert_eq!(r.stats.relayed, 2, "{:?}", r.stats);
    assert_eq!(r.stats.delivered, 1);
    assert_eq!(r.deliveries, vec![(0, 11.0)]);
}

#[test]
fn malformed_inputs_name_the_file_and_line() {
    let mut sc = tiny("epidemic");
    sc.ttl_min = Some(60);
    let cases: &[(&str, &str, &str)] = &[
        (
            "m",
            "# header\n1.0 M1 100 p0 p2 120 N\n2.0 M2 1x0 p0 p2 120 N\n",
            "m:3: bad size '1x0'",
        ),
        (
            "m",
            "1.0 M1 100 p0 p9 120 N\n",
            "m:1: host 'p9': address 9 is past the last host",
        ),
        (
            "m",
            "1.0 M1 100 c0 p2 120 N\n",
            "m:1: host 'c0': address 0 belongs to group 'p', not 'c'",
        ),
        ("m", "1.0 M1 100 p0 p2 120\n", "m:1: expected 'time ID size"),
        (
            "m",
            "1.0 M1 100 p0 p2 120 Y\n",
            "m:1: responses are not modelled",
        ),
        ("m", "x M1 100 p0 p2 120 N\n", "m:1: bad time 'x'"),
        (
            "m",
            "5.0 M1 100 p0 p2 120 N\n4.0 M2 100 p0 p2 120 N\n",
            "m:2: time 4 is before",
        ),
        (
            "m",
            "1.0 M1 100 p0 p2 120 N\n2.0 M1 100 p0 p2 120 N\n",
            "m:2: duplicate message id M1",
        ),
        (
            "m",
            "1.0 M1 100 p0 p0 120 N\n",
            "m:1: a message from a host to itself",
        ),
        (
            "m",
            "1.0 C M1 p0 p2\n",
            "m:1: expected 'time C id from to size",
        ),
        ("m", "1.0 DE M1 p0\n", "m:1: expected 'time ID size"),
        (
            "c",
            "1.0 CONN 0 1 up\n2.0 CONN 0 1 sideways\n",
            "c:2: expected up or down",
        ),
        (
            "c",
            "1.0 CONN 0 1 up\n2.0 CONN 0 1 up\n",
            "c:2: 'up' for a pair already connected",
        ),
        (
            "c",
            "1.0 CONN 0 2 down\n",
            "c:1: 'down' for a pair that is not connected",
        ),
        (
            "c",
            "2.0 CONN 0 2 up\n1.0 CONN 0 2 down\n",
            "c:2: time 1.0 is before",
        ),
        (
            "c",
            "1.0 CONN 0 7 up\n",
            "c:1: host '7': address 7 is past the last host",
        ),
        ("c", "1.0 CONN 0 1\n", "c:1: expected '<time> CONN"),
    ];
    for (file, text, want) in cases {
        let err = if *file == "m" {
            parse_messages(&sc, text, file).map(|_| ()).unwrap_err()
        } else {
            parse_connectivity(&sc, text, file).map(|_| ()).unwrap_err()
        };
        assert!(
            err.starts_with(want),
            "{text:?}: got '{err}', want '{want}…'"
        );
    }
    // Scenario errors.
    let bad = read("chat126.toml").replace("\"bt\", \"highspeed\"", "\"bt\", \"wifi\"");
    assert!(
        OneScenario::parse(&bad)
            .unwrap_err()
            .contains("unknown interface wifi")
    );
    let bad = read("chat126.toml").replace("\"prophet\", \"spray", "\"maxprop\", \"spray");
    assert!(
        OneScenario::parse(&bad)
            .unwrap_err()
            .contains("unknown router maxprop")
    );
}
