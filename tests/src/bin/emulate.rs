//! `cargo run -p vaarta-tests --bin vaarta-emulate -- [--nodes N] [--messages M] [--delay MS] [--loss PCT] [--no-cut]`
//!
//! Runs real `vaarta` nodes in network namespaces (root needed) and prints the metrics as JSON.
//! Everything it creates is removed when it ends.
fn main() -> std::process::ExitCode {
    let mut cfg = vaarta_tests::emulate::Config::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = |i: usize| args.get(i + 1).and_then(|x| x.parse::<u64>().ok());
        match args[i].as_str() {
            "--nodes" => cfg.nodes = v(i).unwrap_or(5) as usize,
            "--messages" => cfg.messages_per_node = v(i).unwrap_or(6) as usize,
            "--delay" => cfg.delay_ms = v(i).unwrap_or(10) as u32,
            "--loss" => cfg.loss_pct = v(i).unwrap_or(1) as u32,
            "--no-cut" => {
                cfg.cut = None;
                i += 1;
                continue;
            }
            other => {
                eprintln!("error: unknown argument {other}");
                return std::process::ExitCode::FAILURE;
            }
        }
        i += 2;
    }
    if cfg.cut.is_some() {
        cfg.cut = Some(cfg.nodes - 1);
    }
    if !vaarta_tests::netns_available() {
        eprintln!("error: network namespaces need root");
        return std::process::ExitCode::FAILURE;
    }
    let r = vaarta_tests::emulate::run(&cfg);
    println!(
        "{}",
        serde_json::to_string_pretty(&r.json()).unwrap_or_default()
    );
    if r.converged && r.duplicates == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
