//! Reports survive hostile names: scenario and router names come from scenario files (and
//! may hold any text), so the CSV must be read back to the same fields and the SVGs must be
//! well-formed XML whose text is the name itself.

use vaarta_sim::scenario::Scenario;

/// A name with everything a hand-written CSV or SVG gets wrong.
const NASTY: &str = "ops, \"north\" <b>&amp; co</b>\nline two & 'more'";

fn small_run() -> vaarta_sim::Outcome {
    let text = format!(
        r#"
name = {NASTY:?}
duration_s = 300
quiesce_s = 30
routers = ["vaarta", "epidemic"]
area = {{ width_m = 50, height_m = 50 }}
[radios.wifi]
range_m = 200
rate_kbytes_s = 1000
latency_ms = 2
[[group]]
name = "n"
count = 4
role = "field"
radios = ["wifi"]
[[conversation]]
name = "c"
members = ["n"]
[workload]
rate_per_member_hour = 60
size_min = 40
size_max = 100
ttl_s = 3600
"#
    );
    let sc = Scenario::parse(&text).unwrap();
    assert_eq!(sc.name, NASTY);
    let mut o = vaarta_sim::run(&sc, None, None).unwrap();
    // Router names are checked against a fixed list today; the report must not rely on it.
    o.report.routers[1].router = NASTY.to_string();
    o.results[1].router = NASTY.to_string();
    o
}

#[test]
fn hostile_names_round_trip_through_the_csv() {
    let o = small_run();
    let text = vaarta_sim::report::csv(&o.report);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let headers = rd.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "one row per router");
    for (row, sum) in rows.iter().zip(&o.report.routers) {
        assert_eq!(row.len(), headers.len());
        assert_eq!(&row[col("scenario")], NASTY);
        assert_eq!(&row[col("router")], sum.router);
        assert_eq!(&row[col("trace_hash")], o.report.trace_hash);
        assert_eq!(
            row[col("delivered")].parse::<usize>().unwrap(),
            sum.delivered
        );
    }
    assert_eq!(&rows[1][col("router")], NASTY);
}

fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "text")
        .map(|n| {
            let t: String = n
                .descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect();
            // plotters puts each text on a line of its own.
            let t = t.strip_prefix('\n').unwrap_or(&t);
            t.strip_suffix('\n').unwrap_or(t).to_string()
        })
        .collect()
}

#[test]
fn hostile_names_give_well_formed_svgs() {
    let o = small_run();
    let delivery = vaarta_sim::report::delivery_svg(
        &o.report.scenario,
        &o.results,
        &o.messages,
        o.total_pairs,
        o.report.duration_s,
    );
    let latency = vaarta_sim::report::latency_svg(&o.report.scenario, &o.results, &o.messages);
    for svg in [delivery, latency] {
        let t = texts(&svg);
        assert!(t.iter().any(|t| t == "vaarta"), "{t:?}");
        assert!(
            t.iter().any(|t| t == NASTY),
            "the legend names the router: {t:?}"
        );
        assert!(
            t.iter().any(|t| t.starts_with(&format!("{NASTY}: "))),
            "the title names the scenario: {t:?}"
        );
    }
}
