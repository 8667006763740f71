//! `vaarta bundle export|import`: sneakernet bundles (docs/bundles.md), through the running
//! node (`POST /v1/bundles/export`, `POST /v1/bundles/import`) or, with no node running,
//! on the store directly. Progress goes to standard error.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::Value;
use vaarta_node::Home;
use vaarta_node::api::Request;
use vaarta_node::bundle::ExportArgs;

use crate::{Conn, emit, print_json};

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write a signed bundle of envelopes to FILE (replaced atomically), to carry to devices
    /// that share no network with this one. Its contents stay end-to-end encrypted
    Export {
        /// Only this conversation (id or unique prefix; repeatable). Default: every
        /// conversation, and everything this device carries for others
        #[arg(long = "conversation", value_name = "C")]
        conversations: Vec<String>,
        /// Only what was written since: an RFC 3339 time (2026-12-01T08:00:00Z), or a
        /// duration back from now (2h, 3d). Envelopes carried for others have no time this
        /// device can read and are always included
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only what this device may read or carry (its conversations, invitations for it,
        /// and what this device carries)
        #[arg(long = "for", value_name = "DEVICE", conflicts_with = "for_relay")]
        for_device: Option<String>,
        /// Everything a relay may carry
        #[arg(long)]
        for_relay: bool,
        /// Stop before the bundle passes N bytes (default and most: 256 MiB)
        #[arg(long, value_name = "N")]
        max_bytes: Option<u64>,
        /// The bundle file to write
        file: PathBuf,
    },
    /// Take in a bundle as if a peer had pushed its envelopes: every one is checked as
    /// usual; a tampered, truncated or foreign file is refused with nothing taken.
    /// Importing twice changes nothing; an import cut short finishes when run again
    Import {
        /// The bundle file to read
        file: PathBuf,
    },
}

pub(crate) fn absolute(p: &Path) -> Result<String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| anyhow!("cannot tell the current directory: {e}"))?
            .join(p)
    };
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", abs.display()))
}

/// `--since`: an RFC 3339 time, a duration back from now, or milliseconds since the epoch.
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| anyhow!("--since {s}: out of range"));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_millisecond()).map_err(|_| anyhow!("--since {s}: before 1970"));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => bail!(
            "--since {s}: give a time (2026-12-01T08:00:00Z) or a duration back from now (2h, 3d)"
        ),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One line on standard error per percent verified, and per batch imported.
fn progress_line(phase: &str, done: u64, of: u64) {
    if phase == "verify" {
        let pct = (done * 100).checked_div(of).unwrap_or(100);
        eprintln!("verifying: {pct}% ({done} of {of} bytes)");
    } else {
        eprintln!("importing: {done} of {of} records");
    }
}

fn report_line(r: &Value) -> String {
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut s = format!(
        "{} new, {} already held, {} refused",
        n("new"),
        n("already_held"),
        n("refused")
    );
    if let Some(reasons) = r.get("reasons").and_then(Value::as_object)
        && !reasons.is_empty()
    {
        let why: Vec<String> = reasons
            .iter()
            .map(|(k, v)| format!("{} {k}", v.as_u64().unwrap_or(0)))
            .collect();
        s.push_str(&format!(" ({})", why.join("; ")));
    }
    if n("waiting") > 0 {
        s.push_str(&format!(
            "; {} of the new held for others or waiting for something",
            n("waiting")
        ));
    }
    s
}

pub fn run(home: &Home, c: BundleCommand, json: bool) -> Result<()> {
    let conn = Conn::open(home)?;
    match c {
        BundleCommand::Export {
            conversations,
            since,
            for_device,
            for_relay,
            max_bytes,
            file,
        } => {
            let since_ms = since
                .as_deref()
                .map(|s| parse_since(s, now_ms()))
                .transpose()?;
            let r = conn.request(Request::BundleExport(ExportArgs {
                path: absolute(&file)?,
                conversations,
                since_ms,
                for_device,
                for_relay,
                max_bytes,
            }))?;
            if json {
                return print_json(&r);
            }
            let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
            emit(&format!(
                "wrote {}: {} envelopes, {} bytes",
                r["path"].as_str().unwrap_or_default(),
                n("records"),
                n("bytes")
            ))?;
            if n("left_out") > 0 {
                eprintln!(
                    "the bundle is full at --max-bytes {}: {} more envelopes did not fit (export them into another bundle, e.g. with --since)",
                    n("max_bytes"),
                    n("left_out")
                );
            }
            Ok(())
        }
        BundleCommand::Import { file } => {
            let path = absolute(&file)?;
            let r = match &conn {
                Conn::Online(client) => client
                    .import_bundle(&path, &mut |p| {
                        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
                        progress_line(p["phase"].as_str().unwrap_or_default(), n("done"), n("of"))
                    })
                    .map_err(|e| anyhow!(e.message))?,
                Conn::Offline(h, _) => {
                    let mut last = (String::new(), u64::MAX);
                    let mut progress = |phase: &str, done: u64, of: u64| {
                        let pct = (done * 100).checked_div(of).unwrap_or(100);
                        if phase == "import" || (phase, pct) != (last.0.as_str(), last.1) {
                            last = (phase.to_string(), pct);
                            progress_line(phase, done, of);
                        }
                    };
                    vaarta_node::Offline::open(h)
                        .and_then(|mut o| o.import_bundle(&path, &mut progress))
                        .map_err(|e| anyhow!(e.message))?
                }
            };
            if json {
                return print_json(&r);
            }
            emit(&format!(
                "imported {} from device {}: {}",
                r["path"].as_str().unwrap_or_default(),
                r["exporter"].as_str().unwrap_or_default(),
                report_line(&r)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_duration_or_milliseconds() {
        let now = 1_790_000_000_000;
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_since("1700000000000", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_since("2026-12-01T08:00:00Z", now).unwrap(),
            1_796_112_000_000
        );
        assert!(parse_since("yesterday-ish", now).is_err());
    }
}
