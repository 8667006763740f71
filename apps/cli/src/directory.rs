//! `vaarta directory`: the signed directory of the organisations this device pinned
//! (docs/organisations.md, "The directory"): search people by name in any script, by
//! designation, unit or role; list the roles and who holds each now; take records in.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::Value;
use vaarta_node::Home;
use vaarta_node::api::Request;

use crate::{Conn, emit, emit_all, fmt, print_json};

#[derive(Subcommand, Debug)]
pub enum DirectoryCommand {
    /// Find people: by name in any script, designation, unit or a role they hold now
    /// (normalised: NFKC, case folded; a part of a word is enough)
    Search {
        /// What to look for, e.g. anita, कुमारी, "district magistrate", "DM Darbhanga"
        query: String,
    },
    /// The roles the directory knows, who holds each now, and everyone in it
    Show,
    /// Take directory records in (a role assignment from `vaarta org assign`, or a
    /// bundle): each must verify here; they spread to the organisation's devices
    Add {
        /// Record files (text `VORG1:…`)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn names(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["name"].as_str().or(n["title"].as_str()))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default()
}

fn person_line(p: &Value) -> String {
    let roles: Vec<String> = p["roles"]
        .as_array()
        .map(|a| a.iter().map(|r| names(&r["titles"])).collect())
        .unwrap_or_default();
    let devices: Vec<String> = p["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{} {}",
                        d["label"].as_str().unwrap_or(""),
                        d["device"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{}, {}, {} ({}) person {}",
        names(&p["names"]),
        p["designation"].as_str().unwrap_or(""),
        p["unit"].as_str().unwrap_or(""),
        p["org_name"].as_str().unwrap_or(""),
        p["person"].as_str().unwrap_or("")
    );
    if !roles.is_empty() {
        line.push_str(&format!("; holds {}", roles.join(", ")));
    }
    line.push_str(&format!("; devices: {}", devices.join(", ")));
    line
}

pub fn run(home: &Home, c: DirectoryCommand, json: bool) -> Result<()> {
    let conn = Conn::open(home)?;
    match c {
        DirectoryCommand::Search { query } => {
            let r = conn.request(Request::Directory { query })?;
            if json {
                return print_json(&r);
            }
            let people = r["people"].as_array().cloned().unwrap_or_default();
            if people.is_empty() {
                return emit("nobody in the directory matches");
            }
            emit_all(&people.iter().map(person_line).collect::<Vec<_>>())
        }
        DirectoryCommand::Show => {
            let roles = conn.request(Request::Roles)?;
            let people = conn.request(Request::Directory {
                query: String::new(),
            })?;
            if json {
                return print_json(&serde_json::json!({
                    "roles": roles["roles"],
                    "people": people["people"],
                    "records": people["records"],
                }));
            }
            let mut lines = vec![format!(
                "{} records in the directory",
                people["records"].as_u64().unwrap_or(0)
            )];
            for r in roles["roles"].as_array().cloned().unwrap_or_default() {
                let path = match r["unit"].as_str().unwrap_or("") {
                    "" => r["role"].as_str().unwrap_or("").to_string(),
                    u => format!("{u}/{}", r["role"].as_str().unwrap_or("")),
                };
                let holder = match &r["holder"] {
                    Value::Null => "vacant".to_string(),
                    h => format!(
                        "held by {} (person {}) since {}",
                        names(&r["holder_names"]),
                        h["holder"].as_str().unwrap_or(""),
                        fmt::local(h["from_ms"].as_u64().unwrap_or(0))
                    ),
                };
                lines.push(format!("role {} [{path}]: {holder}", names(&r["titles"])));
            }
            for p in people["people"].as_array().cloned().unwrap_or_default() {
                lines.push(person_line(&p));
            }
            emit_all(&lines)
        }
        DirectoryCommand::Add { files } => {
            let mut records = Vec::with_capacity(files.len());
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| anyhow!("cannot read {}: {e}", f.display()))?;
                if !text.trim_start().to_ascii_uppercase().starts_with("VORG1:") {
                    bail!("{} is not a record text (VORG1:…)", f.display());
                }
                records.push(text.trim().to_string());
            }
            let r = conn.request(Request::DirectoryAdd { records })?;
            if json {
                return print_json(&r);
            }
            emit(&format!(
                "{} new record(s); {} in the directory{}",
                r["new"].as_u64().unwrap_or(0),
                r["records"].as_u64().unwrap_or(0),
                if conn.online() {
                    " (spreading to the organisation's devices in reach)"
                } else {
                    " (no node running: they spread with the next `vaarta up`)"
                }
            ))
        }
    }
}
