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
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
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
            x.router,
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

pub fn csv(r: &Report) -> String {
    let mut s = String::from(
        "scenario,seed,router,messages,destinations,delivered,delivery_ratio,flash_delivery_ratio,latency_p50_s,latency_p90_s,latency_p99_s,flash_latency_p50_s,transfers,overhead_ratio,bytes_per_delivered,duplicates,peak_storage_max_bytes,trace_hash\n",
    );
    for x in &r.routers {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.4},{},{},{},{},{},{},{},{},{},{},{}",
            r.scenario,
            r.seed,
            x.router,
            x.messages,
            x.destinations,
            x.delivered,
            x.delivery_ratio,
            f(x.delivery_ratio_by_precedence.get("flash").copied()),
            f(x.latency_p50_s),
            f(x.latency_p90_s),
            f(x.latency_p99_s),
            f(x.flash_latency_p50_s),
            x.transfers,
            f(x.overhead_ratio),
            f(x.bytes_per_delivered),
            x.duplicates,
            x.peak_storage_max_bytes,
            r.trace_hash
        );
    }
    s
}

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// A minimal line chart: series of (x, y) with x and y in [0, max].
fn chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xmax: f64,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (w, h, l, r, t, b) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let xmax = if xmax <= 0.0 { 1.0 } else { xmax };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#,
        w / 2.0
    );
    for i in 0..=5 {
        let y = t + ph - ph * i as f64 / 5.0;
        let x = l + pw * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            l + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{:.0}%</text>"#,
            l - 6.0,
            y + 4.0,
            i as f64 * 20.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{:.0}</text>"#,
            t + ph + 18.0,
            xmax * i as f64 / 5.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{xlabel}</text>"#,
        l + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{ylabel}</text>"#,
        t + ph / 2.0,
        t + ph / 2.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut d = String::new();
        for (x, y) in pts {
            let px = l + pw * (x / xmax).clamp(0.0, 1.0);
            let py = t + ph - ph * y.clamp(0.0, 1.0);
            let _ = write!(d, "{px:.1},{py:.1} ");
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{d}"/>"#
        );
        let ly = t + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            l + 12.0,
            l + 36.0,
            l + 42.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Delivered fraction (of all message-destination pairs) over time, per router.
pub fn delivery_svg(
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
        "Delivered message-destination pairs over time",
        "minutes",
        "delivered",
        duration_s as f64 / 60.0,
        &series,
    )
}

/// Cumulative distribution of delivery latency, per router.
pub fn latency_svg(results: &[RouterResult], msgs: &[Message]) -> String {
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
        "Delivery latency (CDF of delivered pairs)",
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
        delivery_svg(results, msgs, total_pairs, report.duration_s),
    )?;
    std::fs::write(dir.join("latency.svg"), latency_svg(results, msgs))?;
    Ok(())
}
