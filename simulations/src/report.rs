//! Reports: JSON, CSV and SVG plots (delivery over time, latency CDF per router).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::metrics::{RouterResult, Summary, counted};
use crate::vaarta::Checks;
use crate::workload::Message;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    pub conversations: usize,
    pub messages: usize,
    pub contacts: usize,
    pub duration_s: u64,
    pub trace_hash: String,
    pub wall_time_s: f64,
    pub peak_rss_mib: f64,
    pub routers: Vec<Summary>,
    pub invariants: Invariants,
}

#[derive(Debug, Serialize)]
pub struct Invariants {
    pub passed: bool,
    pub failures: Vec<String>,
    pub linked_member_pairs_checked: usize,
    pub carried_envelopes_checked: usize,
    pub max_pending: usize,
    pub max_backlog: usize,
    pub flush_failures: usize,
    /// Scenarios with `[[adversary]]` entries (zero otherwise).
    pub honest_members_compared: usize,
    pub post_removal_envelopes_checked: usize,
    pub honest_envelopes_checked: usize,
    pub hostile_envelopes_handed: usize,
    pub hostile_envelopes_stored: usize,
}

impl Invariants {
    pub fn from(c: &Checks) -> Self {
        Self {
            passed: c.failures.is_empty(),
            failures: c.failures.clone(),
            linked_member_pairs_checked: c.linked_member_pairs_checked,
            carried_envelopes_checked: c.carried_envelopes_checked,
            max_pending: c.max_pending,
            max_backlog: c.max_backlog,
            flush_failures: c.flush_failures,
            honest_members_compared: c.honest_members_compared,
            post_removal_envelopes_checked: c.post_removal_envelopes_checked,
            honest_envelopes_checked: c.honest_envelopes_checked,
            hostile_envelopes_handed: c.hostile_envelopes_handed,
            hostile_envelopes_stored: c.hostile_envelopes_stored,
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

/// A Markdown table cell: `|` and newlines would end the cell or the row.
fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| router | delivery | flash delivery | latency p50 / p90 / p99 (s) | flash p50 / p90 (s) | transfers | overhead ratio | bytes per delivered | duplicates | peak storage max / mean (KiB) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for x in &r.routers {
        let _ = writeln!(
            s,
            "| {} | {:.1}% | {} | {} / {} / {} | {} / {} | {} | {} | {} | {} | {:.0} / {:.0} |",
            md_cell(&x.router),
            x.delivery_ratio * 100.0,
            x.delivery_ratio_by_precedence
                .get("flash")
                .map(|v| format!("{:.1}%", v * 100.0))
                .unwrap_or_else(|| "-".into()),
            opt(x.latency_p50_s),
            opt(x.latency_p90_s),
            opt(x.latency_p99_s),
            opt(x.flash_latency_p50_s),
            opt(x.flash_latency_p90_s),
            x.transfers,
            x.overhead_ratio
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            x.bytes_per_delivered
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
            x.duplicates,
            x.peak_storage_max_bytes as f64 / 1024.0,
            x.peak_storage_mean_bytes / 1024.0,
        );
    }
    s
}

/// `summary.csv`: one row per router. Written with the `csv` crate, so a name holding a
/// comma, a quote or a newline is quoted and reads back as the same field.
pub fn csv(r: &Report) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let header = [
        "scenario",
        "seed",
        "router",
        "messages",
        "destinations",
        "delivered",
        "delivery_ratio",
        "flash_delivery_ratio",
        "latency_p50_s",
        "latency_p90_s",
        "latency_p99_s",
        "flash_latency_p50_s",
        "transfers",
        "overhead_ratio",
        "bytes_per_delivered",
        "duplicates",
        "peak_storage_max_bytes",
        "trace_hash",
    ];
    // Writing to a Vec cannot fail; a record of the wrong length would be our bug.
    let _ = w.write_record(header);
    for x in &r.routers {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let _ = w.write_record([
            r.scenario.clone(),
            r.seed.to_string(),
            x.router.clone(),
            x.messages.to_string(),
            x.destinations.to_string(),
            x.delivered.to_string(),
            format!("{:.4}", x.delivery_ratio),
            f(x.delivery_ratio_by_precedence.get("flash").copied()),
            f(x.latency_p50_s),
            f(x.latency_p90_s),
            f(x.latency_p99_s),
            f(x.flash_latency_p50_s),
            x.transfers.to_string(),
            f(x.overhead_ratio),
            f(x.bytes_per_delivered),
            x.duplicates.to_string(),
            x.peak_storage_max_bytes.to_string(),
            r.trace_hash.clone(),
        ]);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

const COLORS: [(u8, u8, u8); 4] = [
    (0xd6, 0x27, 0x28),
    (0x1f, 0x77, 0xb4),
    (0x2c, 0xa0, 0x2c),
    (0x94, 0x67, 0xbd),
];

/// A line chart drawn with plotters' SVG backend: series of (x, y) with x in [0, xmax] and y
/// in [0, 1] (shown as a percentage). Every text (the title holds the scenario's name, the
/// legend the routers') is written as an SVG `<text>` element, escaped by the backend.
fn chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xmax: f64,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    use plotters::prelude::*;
    let xmax = if xmax <= 0.0 { 1.0 } else { xmax };
    let mut s = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut s, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..xmax, 0f64..1f64)?;
        c.configure_mesh()
            .x_desc(xlabel)
            .y_desc(ylabel)
            .x_labels(6)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let (r, g, b) = COLORS[i % COLORS.len()];
            let color = RGBColor(r, g, b);
            c.draw_series(LineSeries::new(
                pts.iter()
                    .map(|(x, y)| (x.clamp(0.0, xmax), y.clamp(0.0, 1.0))),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        // Drawing into a String fails only on a plotters bug: say so in the file.
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">{}</text></svg>\n",
            escape_xml(&format!("plot failed: {e}"))
        );
    }
    s
}

/// Escapes text for XML character data and attribute values.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Delivered fraction (of all message-destination pairs) over time, per router.
pub fn delivery_svg(
    scenario: &str,
    results: &[RouterResult],
    msgs: &[Message],
    total_pairs: usize,
    duration_s: u64,
) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| {
            let ok = counted(r, msgs);
            let mut pts = vec![(0.0, 0.0)];
            let step = (ok.len() / 400).max(1);
            for (i, d) in ok.iter().enumerate() {
                if i % step == 0 || i + 1 == ok.len() {
                    pts.push((
                        d.time_ms as f64 / 60_000.0,
                        (i + 1) as f64 / total_pairs.max(1) as f64,
                    ));
                }
            }
            (r.router.clone(), pts)
        })
        .collect();
    chart(
        &format!("{scenario}: delivered message-destination pairs over time"),
        "minutes",
        "delivered",
        duration_s as f64 / 60.0,
        &series,
    )
}

/// Cumulative distribution of delivery latency, per router.
pub fn latency_svg(scenario: &str, results: &[RouterResult], msgs: &[Message]) -> String {
    let mut xmax: f64 = 1.0;
    let series: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| {
            let mut lat: Vec<f64> = counted(r, msgs)
                .iter()
                .map(|d| (d.time_ms - msgs[d.msg].time_ms) as f64 / 60_000.0)
                .collect();
            lat.sort_by(|a, b| a.total_cmp(b));
            xmax = xmax.max(lat.last().copied().unwrap_or(0.0));
            let step = (lat.len() / 400).max(1);
            let pts = lat
                .iter()
                .enumerate()
                .filter(|(i, _)| i % step == 0 || i + 1 == lat.len())
                .map(|(i, x)| (*x, (i + 1) as f64 / lat.len() as f64))
                .collect();
            (r.router.clone(), pts)
        })
        .collect();
    chart(
        &format!("{scenario}: delivery latency (CDF of delivered pairs)"),
        "minutes after sending",
        "of delivered",
        xmax.ceil(),
        &series,
    )
}

pub fn write_all(
    dir: &Path,
    report: &Report,
    results: &[RouterResult],
    msgs: &[Message],
    total_pairs: usize,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(report).unwrap_or_default(),
    )?;
    std::fs::write(dir.join("summary.csv"), csv(report))?;
    std::fs::write(dir.join("summary.md"), table(report))?;
    std::fs::write(
        dir.join("delivery.svg"),
        delivery_svg(
            &report.scenario,
            results,
            msgs,
            total_pairs,
            report.duration_s,
        ),
    )?;
    std::fs::write(
        dir.join("latency.svg"),
        latency_svg(&report.scenario, results, msgs),
    )?;
    Ok(())
}
