//! What a router achieved, and the summary numbers every report shows.

use std::collections::BTreeMap;

use serde::Serialize;
use vaarta_sync::envelope::Precedence;

use crate::workload::{Conv, Message, destinations};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub msg: usize,
    pub node: usize,
    /// Virtual time of delivery, from the start.
    pub time_ms: u64,
}

#[derive(Debug, Clone)]
pub struct RouterResult {
    pub router: String,
    pub deliveries: Vec<Delivery>,
    pub duplicates: u64,
    /// Copies moved between devices (pushed envelopes / completed message transfers).
    pub transfers: u64,
    /// Bytes moved between devices (frames for Vaarta, messages + framing for baselines).
    pub bytes: u64,
    pub peak_storage: Vec<u64>,
    pub events: u64,
    /// Bytes by frame type (Vaarta only).
    pub bytes_by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub router: String,
    pub messages: usize,
    pub destinations: usize,
    pub delivered: usize,
    pub delivery_ratio: f64,
    pub delivery_ratio_by_precedence: BTreeMap<String, f64>,
    pub latency_p50_s: Option<f64>,
    pub latency_p90_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
    pub flash_latency_p50_s: Option<f64>,
    pub flash_latency_p90_s: Option<f64>,
    pub transfers: u64,
    pub overhead_ratio: Option<f64>,
    pub bytes_per_delivered: Option<f64>,
    pub duplicates: u64,
    pub peak_storage_max_bytes: u64,
    pub peak_storage_mean_bytes: f64,
    /// After each partition heals: time until every message written before the heal (and
    /// still within its TTL) reached every destination it ever reached.
    pub convergence_after_heal_s: Vec<Option<f64>>,
    pub bytes_by_kind: BTreeMap<String, u64>,
}

/// The `p` quantile of latencies in milliseconds, in seconds: nearest rank (the smallest
/// value that at least `p` of the samples are at or below, rank `ceil(p·n)`), read from an
/// HDR histogram with 3 significant figures, so at most 0.1% above the exact sample.
fn pct(ms: &[u64], p: f64) -> Option<f64> {
    if ms.is_empty() {
        return None;
    }
    // Auto-resizing: any u64 can be recorded.
    let mut h = hdrhistogram::Histogram::<u64>::new(3).ok()?;
    for &v in ms {
        h.record(v).ok()?;
    }
    Some(h.value_at_quantile(p) as f64 / 1000.0)
}

/// Deliveries that count: first delivery of a message to a destination, within its TTL.
pub fn counted(r: &RouterResult, msgs: &[Message]) -> Vec<Delivery> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<Delivery> = r
        .deliveries
        .iter()
        .filter(|d| {
            let m = &msgs[d.msg];
            d.time_ms >= m.time_ms
                && d.time_ms - m.time_ms <= m.ttl_ms
                && seen.insert((d.msg, d.node))
        })
        .copied()
        .collect();
    out.sort_by_key(|d| (d.time_ms, d.msg, d.node));
    out
}

pub fn summarize(r: &RouterResult, msgs: &[Message], convs: &[Conv], heals_ms: &[u64]) -> Summary {
    let dests: usize = msgs.iter().map(|m| destinations(m, convs).len()).sum();
    let ok = counted(r, msgs);
    let lat: Vec<u64> = ok.iter().map(|d| d.time_ms - msgs[d.msg].time_ms).collect();
    let flash: Vec<u64> = ok
        .iter()
        .filter(|d| msgs[d.msg].precedence == Precedence::Flash)
        .map(|d| d.time_ms - msgs[d.msg].time_ms)
        .collect();
    let mut by_prec = BTreeMap::new();
    for p in Precedence::ALL {
        let total: usize = msgs
            .iter()
            .filter(|m| m.precedence == p)
            .map(|m| destinations(m, convs).len())
            .sum();
        if total > 0 {
            let got = ok.iter().filter(|d| msgs[d.msg].precedence == p).count();
            by_prec.insert(p.as_str().to_string(), got as f64 / total as f64);
        }
    }
    let delivered = ok.len();
    let convergence = heals_ms
        .iter()
        .map(|&h| {
            // Latest delivery (of messages created before the heal) that happened after it.
            let late = ok
                .iter()
                .filter(|d| msgs[d.msg].time_ms < h && d.time_ms >= h)
                .map(|d| d.time_ms)
                .max();
            late.map(|t| (t - h) as f64 / 1000.0).or(Some(0.0))
        })
        .collect();
    Summary {
        router: r.router.clone(),
        messages: msgs.len(),
        destinations: dests,
        delivered,
        delivery_ratio: if dests == 0 {
            0.0
        } else {
            delivered as f64 / dests as f64
        },
        delivery_ratio_by_precedence: by_prec,
        latency_p50_s: pct(&lat, 0.5),
        latency_p90_s: pct(&lat, 0.9),
        latency_p99_s: pct(&lat, 0.99),
        flash_latency_p50_s: pct(&flash, 0.5),
        flash_latency_p90_s: pct(&flash, 0.9),
        transfers: r.transfers,
        overhead_ratio: (delivered > 0)
            .then(|| (r.transfers as f64 - delivered as f64) / delivered as f64),
        bytes_per_delivered: (delivered > 0).then(|| r.bytes as f64 / delivered as f64),
        duplicates: r.duplicates,
        peak_storage_max_bytes: r.peak_storage.iter().copied().max().unwrap_or(0),
        peak_storage_mean_bytes: if r.peak_storage.is_empty() {
            0.0
        } else {
            r.peak_storage.iter().sum::<u64>() as f64 / r.peak_storage.len() as f64
        },
        convergence_after_heal_s: convergence,
        bytes_by_kind: r.bytes_by_kind.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::pct;

    /// Exact nearest rank: the sample at rank `ceil(p·n)` (at least 1) of the sorted samples.
    fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_are_nearest_rank_within_the_histograms_precision() {
        // Latencies from 2 ms to about 14 hours, spread over every order of magnitude, in a
        // scrambled order (the histogram must not care).
        let mut samples: Vec<u64> = (0..5_000u64)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761) % 5_000;
                // 1 ms · 10^(x/700): 1 ms … about 14 hours
                (10f64.powf(x as f64 / 700.0)) as u64 + 1
            })
            .collect();
        let unsorted = samples.clone();
        samples.sort_unstable();
        for p in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = nearest_rank(&samples, p);
            let got = (pct(&unsorted, p).unwrap() * 1000.0).round() as u64;
            assert!(
                got >= exact && got <= exact + exact / 1000 + 1,
                "p{p}: histogram {got} ms, exact {exact} ms"
            );
        }
        // Small samples, where the definition shows (below 2,048 ms the histogram is exact):
        // p90 of ten values is the ninth, p50 the fifth.
        let ten: Vec<u64> = (1..=10).map(|s| s * 100).collect();
        assert_eq!(pct(&ten, 0.9), Some(0.9));
        assert_eq!(pct(&ten, 0.5), Some(0.5));
        assert_eq!(pct(&ten, 0.99), Some(1.0));
        // Above it, the highest value of the sample's bucket: 9,000 ms reads as 9,007 ms.
        assert_eq!(pct(&[9_000], 0.5), Some(9.007));
        assert_eq!(pct(&[], 0.5), None);
    }
}
