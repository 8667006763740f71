//! Vaarta's network simulator: a deterministic discrete-event simulation in virtual time that
//! drives the *same* engine code the daemon runs (`vaarta-engine`) on thousands of devices,
//! beside Epidemic and Spray-and-Wait baselines on identical contacts and workload.
//!
//! Determinism: one seed drives every random choice (mobility, workload, node keys), all
//! iteration that reaches outputs uses ordered maps, and every processed event feeds a BLAKE3
//! trace hash. The same scenario and seed give the same hash; print it to compare runs.
//!
//! No I/O crate is a dependency (checked in CI): reading scenario files and writing reports is
//! the binary's job.

pub mod adversary;
pub mod baseline;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod the_one;
pub mod vaarta;
pub mod workload;
pub mod world;

use metrics::{RouterResult, summarize};
use report::{Invariants, Report};
use scenario::Scenario;

/// Everything a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub results: Vec<RouterResult>,
    pub messages: Vec<workload::Message>,
    pub total_pairs: usize,
}

/// Runs a scenario with every router it lists. `trace` is the contact trace text when the
/// scenario replays one. `progress` gets the Vaarta run's virtual time in ms.
pub fn run(
    sc: &Scenario,
    trace: Option<&str>,
    progress: Option<&dyn Fn(u64)>,
) -> Result<Outcome, String> {
    run_with(sc, trace, progress, &Options::default())
}

/// How to run, beyond the scenario.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Test-only: hand every adversary the key it must never hold (see
    /// [`vaarta::Runner::leak_epoch_keys_to_adversaries`]), to show the checker catches it.
    pub leak_epoch_keys_to_adversaries: bool,
}

/// [`run`] with [`Options`].
pub fn run_with(
    sc: &Scenario,
    trace: Option<&str>,
    progress: Option<&dyn Fn(u64)>,
    options: &Options,
) -> Result<Outcome, String> {
    let world = world::World::build(sc, trace)?;
    let convs = workload::conversations(sc, &world)?;
    let msgs = workload::messages(sc, &world, &convs)?;
    let total_pairs: usize = msgs
        .iter()
        .map(|m| workload::destinations(m, &convs).len())
        .sum();
    let mut hasher = blake3::Hasher::new();
    hasher.update(world.to_one_trace().as_bytes());
    let mut results = Vec::new();
    let mut checks = vaarta::Checks::default();
    for r in &sc.routers {
        match r.as_str() {
            "vaarta" => {
                let mut runner = vaarta::Runner::new(sc, &world, &convs, &msgs)?;
                if let Some(p) = progress {
                    runner = runner.with_progress(p);
                }
                if options.leak_epoch_keys_to_adversaries {
                    runner = runner.leak_epoch_keys_to_adversaries();
                }
                let (res, c, h) = runner.run()?;
                hasher.update(&h);
                checks = c;
                results.push(res);
            }
            "epidemic" => results.push(baseline::run(
                baseline::Kind::Epidemic,
                sc,
                &world,
                &convs,
                &msgs,
                &mut hasher,
            )),
            "spray-and-wait" => results.push(baseline::run(
                baseline::Kind::SprayAndWait,
                sc,
                &world,
                &convs,
                &msgs,
                &mut hasher,
            )),
            other => return Err(format!("unknown router {other}")),
        }
    }
    let summaries = results
        .iter()
        .map(|r| summarize(r, &msgs, &convs, &world.heals_ms))
        .collect();
    let report = Report {
        scenario: sc.name.clone(),
        seed: sc.seed,
        nodes: world.nodes.len(),
        conversations: convs.len(),
        messages: msgs.len(),
        contacts: world.contacts.iter().filter(|c| c.up).count(),
        duration_s: sc.duration_s,
        trace_hash: hasher.finalize().to_hex().to_string(),
        wall_time_s: 0.0,
        peak_rss_mib: 0.0,
        routers: summaries,
        invariants: Invariants::from(&checks),
    };
    Ok(Outcome {
        report,
        results,
        messages: msgs,
        total_pairs,
    })
}
