//! `vaarta export` and `vaarta verify-export` (docs/export.md): a signed export of a
//! conversation for the record, written through the running node (`POST /v1/export`) or,
//! with no node running, on the store directly; and its check, which needs no home, no
//! store and no node.

use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::Value;
use vaarta_node::Home;
use vaarta_node::api::Request;
use vaarta_node::export::ExportArgs;

use crate::{Conn, emit, fmt, print_json};

/// `vaarta export CONV --out FILE`.
pub fn export(home: &Home, conv: String, out: &Path, json: bool) -> Result<()> {
    let conn = Conn::open(home)?;
    let r = conn.request(Request::Export(ExportArgs {
        conversation: conv,
        path: crate::bundle::absolute(out)?,
    }))?;
    if json {
        return print_json(&r);
    }
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    let messages = r["messages"].as_array().map_or(0, Vec::len);
    emit(&format!(
        "wrote {}: {messages} messages, {} signed changes, {} bytes, signed by this device (check it anywhere with `vaarta verify-export FILE`; it holds the messages in the clear)",
        r["path"].as_str().unwrap_or_default(),
        n("signed_changes"),
        n("bytes"),
    ))
}

/// The lines `verify-export` prints for a verified export (its JSON as
/// `vaarta_node::export::verified_json` gives it). Everything from the file is cleaned
/// for the terminal.
pub fn verified_lines(v: &Value) -> Vec<String> {
    let utc = jiff::tz::TimeZone::UTC;
    let s = |v: &Value| fmt::clean(v.as_str().unwrap_or_default());
    let mut lines = vec![format!(
        "export of \"{}\" (conversation {}) by device {}, written {}",
        s(&v["title"]),
        s(&v["conversation"]),
        s(&v["exporter"]),
        fmt::time_in(v["exported_at_ms"].as_u64().unwrap_or(0), &utc),
    )];
    for m in v["messages"].as_array().into_iter().flatten() {
        let name = m["author_name"]
            .as_str()
            .map(|n| format!(" ({})", fmt::clean(n)))
            .unwrap_or_default();
        let mut notes = Vec::new();
        if m["deleted"] == true {
            notes.push("deleted".to_string());
        }
        if let Some(e) = m["edited_at_ms"].as_u64() {
            notes.push(format!("edited {}", fmt::time_in(e, &utc)));
        }
        for r in m["reactions"].as_array().into_iter().flatten() {
            notes.push(format!("reaction {}", s(&r["emoji"])));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", notes.join(", "))
        };
        lines.push(format!(
            "{}  {}{name}: {}{notes}",
            fmt::time_in(m["sent_at_ms"].as_u64().unwrap_or(0), &utc),
            s(&m["author"]),
            s(&m["body"]),
        ));
    }
    let signers = v["signers"].as_array().map_or(0, Vec::len);
    let messages = v["messages"].as_array().map_or(0, Vec::len);
    lines.push(format!(
        "OK: {messages} messages, each exactly as its author's device signed it ({} signed changes by {signers} devices); the file is signed by its exporter (hash {})",
        v["signed_changes"].as_u64().unwrap_or(0),
        s(&v["hash"]),
    ));
    if let Some(n) = v["not_shown"].as_u64().filter(|n| *n > 0) {
        lines.push(format!(
            "note: the signed changes hold {n} more messages that the document does not show"
        ));
    }
    lines.push(
        "not checked (docs/export.md): that the devices belong to the people named (names are the exporter's), that the authors' clocks were right, that nothing was left out"
            .into(),
    );
    lines
}

/// `vaarta verify-export FILE`: exit 0 only when every check passes.
pub fn verify(file: &Path, json: bool) -> Result<()> {
    let v = vaarta_node::export::verify_file(file).map_err(|e| anyhow!("{e}"))?;
    let j = vaarta_node::export::verified_json(&v);
    if json {
        return print_json(&j);
    }
    crate::emit_all(&verified_lines(&j))
}
