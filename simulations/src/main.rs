//! `vaarta-sim`: run scenarios, export contact traces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use vaarta_sim::scenario::Scenario;

#[derive(Parser, Debug)]
#[command(
    name = "vaarta-sim",
    version,
    about = "Deterministic discrete-event simulation of Vaarta networks, with Epidemic and Spray-and-Wait baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario and write report.json, summary.csv, summary.md, delivery.svg, latency.svg
    Run {
        scenario: PathBuf,
        /// Override the scenario's seed
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: simulations/out/<scenario name>)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Routers to run, comma-separated (vaarta, epidemic, spray-and-wait)
        #[arg(long, value_delimiter = ',')]
        routers: Option<Vec<String>>,
        /// Virtual seconds to simulate (overrides the scenario)
        #[arg(long)]
        duration: Option<u64>,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Replay The ONE's contacts and messages (a `the-one` scenario file) with its baselines
    /// modelled as it models them, beside its own MessageStatsReports
    TheOne {
        scenario: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        /// Routers to run, comma-separated (epidemic, prophet, spray-and-wait)
        #[arg(long, value_delimiter = ',')]
        routers: Option<Vec<String>>,
        /// Also run Vaarta's own router (real engines) on the same input
        #[arg(long)]
        vaarta: bool,
    },
    /// Print the scenario's contact trace in The ONE's connectivity format
    Contacts {
        scenario: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn load(path: &PathBuf, seed: Option<u64>) -> Result<(Scenario, Option<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut sc = Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(s) = seed {
        sc.seed = s;
    }
    let trace = match &sc.contact_trace {
        Some(t) => {
            let p = path.parent().unwrap_or(std::path::Path::new(".")).join(t);
            Some(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read contact trace {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    Ok((sc, trace))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn the_one(
    path: &PathBuf,
    seed: Option<u64>,
    routers: Option<Vec<String>>,
    with_vaarta: bool,
) -> Result<ExitCode, String> {
    use vaarta_sim::the_one::{MessageStats, OneInput, OneScenario, Router};
    let read = |name: &str| {
        let p = path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut sc = OneScenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(s) = seed {
        sc.seed = s;
    }
    if let Some(r) = routers {
        for x in &r {
            Router::from_name(x)?;
        }
        sc.routers = r;
    }
    let input = OneInput::parse(
        &sc,
        &read(&sc.connectivity)?,
        &sc.connectivity,
        &read(&sc.messages)?,
        &sc.messages,
    )?;
    println!(
        "scenario {} (seed {}): {} hosts, {} messages, {} contacts, {} s, update interval {} s",
        sc.name,
        sc.seed,
        sc.host_count(),
        input.messages.len(),
        input.contacts.iter().filter(|c| c.up).count(),
        sc.end_time_s,
        sc.update_interval_s
    );
    println!();
    println!(
        "| router | delivery (The ONE) | overhead ratio (The ONE) | latency median s (The ONE) | latency mean s (The ONE) | relayed (The ONE) | aborted (The ONE) | hops median (The ONE) | wall s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &sc.routers {
        let router = Router::from_name(r)?;
        let started = Instant::now();
        let got = vaarta_sim::the_one::simulate(&sc, router, &input.contacts, &input.messages);
        let wall = started.elapsed().as_secs_f64();
        let want = match sc.reference.get(r) {
            Some(f) => Some(MessageStats::parse_report(&read(f)?, f)?),
            None => None,
        };
        let w = |f: &dyn Fn(&MessageStats) -> String| want.as_ref().map_or("–".to_string(), f);
        let g = &got.stats;
        println!(
            "| {r} | {:.1}% ({}) | {:.2} ({}) | {:.0} ({}) | {:.0} ({}) | {} ({}) | {} ({}) | {} ({}) | {wall:.1} |",
            g.delivery_prob * 100.0,
            w(&|s| format!("{:.1}%", s.delivery_prob * 100.0)),
            g.overhead_ratio,
            w(&|s| format!("{:.2}", s.overhead_ratio)),
            g.latency_med,
            w(&|s| format!("{:.0}", s.latency_med)),
            g.latency_avg,
            w(&|s| format!("{:.0}", s.latency_avg)),
            g.relayed,
            w(&|s| s.relayed.to_string()),
            g.aborted,
            w(&|s| s.aborted.to_string()),
            g.hopcount_med,
            w(&|s| s.hopcount_med.to_string()),
        );
        eprintln!(
            "{r}: trace hash {}, {} update passes",
            got.trace_hash, got.passes
        );
    }
    if with_vaarta {
        let started = Instant::now();
        let (g, hash) = vaarta_sim::the_one::vaarta(&sc, &input)?;
        println!(
            "| vaarta | {:.1}% | {:.2} | {:.0} | {:.0} | {} | – | – | {:.1} |",
            g.delivery_prob * 100.0,
            g.overhead_ratio,
            g.latency_med,
            g.latency_avg,
            g.relayed,
            started.elapsed().as_secs_f64()
        );
        eprintln!(
            "vaarta: trace hash {hash}, peak memory {:.0} MiB",
            peak_rss_mib()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::TheOne {
            scenario,
            seed,
            routers,
            vaarta,
        } => the_one(&scenario, seed, routers, vaarta),
        Command::Contacts { scenario, seed } => {
            let (sc, trace) = load(&scenario, seed)?;
            let world = vaarta_sim::world::World::build(&sc, trace.as_deref())?;
            print!("{}", world.to_one_trace());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            seed,
            out,
            routers,
            duration,
            quiet,
        } => {
            let (mut sc, trace) = load(&scenario, seed)?;
            if let Some(r) = routers {
                sc.routers = r;
            }
            if let Some(d) = duration {
                sc.duration_s = d;
            }
            let total_ms = (sc.duration_s + sc.quiesce_s) * 1000;
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                let b = indicatif::ProgressBar::new(total_ms / 1000);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} virtual s (eta {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(format!("{} (vaarta)", sc.name));
                b
            };
            let progress = |ms: u64| bar.set_position(ms / 1000);
            let started = Instant::now();
            let mut outcome = vaarta_sim::run(&sc, trace.as_deref(), Some(&progress))?;
            bar.finish_and_clear();
            outcome.report.wall_time_s = started.elapsed().as_secs_f64();
            outcome.report.peak_rss_mib = peak_rss_mib();
            let dir = out.unwrap_or_else(|| PathBuf::from("simulations/out").join(&sc.name));
            vaarta_sim::report::write_all(
                &dir,
                &outcome.report,
                &outcome.results,
                &outcome.messages,
                outcome.total_pairs,
            )
            .map_err(|e| format!("cannot write the report to {}: {e}", dir.display()))?;
            let r = &outcome.report;
            println!(
                "scenario {} (seed {}): {} nodes, {} conversations, {} messages, {} contacts, {} virtual s",
                r.scenario, r.seed, r.nodes, r.conversations, r.messages, r.contacts, r.duration_s
            );
            println!(
                "wall time {:.1} s, peak memory {:.0} MiB",
                r.wall_time_s, r.peak_rss_mib
            );
            println!("trace hash {}", r.trace_hash);
            println!();
            print!("{}", vaarta_sim::report::table(r));
            for x in &r.routers {
                if !x.bytes_by_kind.is_empty() {
                    let parts: Vec<String> = x
                        .bytes_by_kind
                        .iter()
                        .map(|(k, v)| format!("{k} {:.1} MB", *v as f64 / 1e6))
                        .collect();
                    println!("{} bytes by frame type: {}", x.router, parts.join(", "));
                }
            }
            println!();
            let inv = &r.invariants;
            println!(
                "invariants: {} ({} linked member pairs compared, {} carried envelopes tried against every key, max pending {}, max backlog {})",
                if inv.passed { "passed" } else { "FAILED" },
                inv.linked_member_pairs_checked,
                inv.carried_envelopes_checked,
                inv.max_pending,
                inv.max_backlog
            );
            for f in &inv.failures {
                println!("  - {f}");
            }
            println!("report written to {}", dir.display());
            Ok(if inv.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
