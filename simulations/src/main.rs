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

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
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
