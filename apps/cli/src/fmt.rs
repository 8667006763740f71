//! Human-readable output.

use serde_json::Value;

/// "2026-11-27 03:04:05" (UTC) from milliseconds since the epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn short(s: &str) -> &str {
    &s[..s.len().min(8)]
}

/// The author's name, else the start of their device id.
fn author(m: &Value) -> String {
    m["author_name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| m["author"].as_str().map(|a| short(a).to_string()))
        .unwrap_or_else(|| "?".into())
}

/// The start of a message's text, for a line that refers to it.
fn excerpt(m: &Value) -> String {
    if m["deleted"] == true {
        return "a deleted message".into();
    }
    let body = m["body"].as_str().unwrap_or("");
    let mut s: String = body.chars().take(40).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    format!("\"{s}\"")
}

pub fn message_line(m: &Value) -> String {
    let who = author(m);
    let when = utc(m["sent_at_ms"].as_u64().unwrap_or(0));
    let prec = match m["precedence"].as_str() {
        Some("routine") | None => String::new(),
        Some(p) => format!("[{}] ", p.to_uppercase()),
    };
    let body = if m["deleted"].as_bool() == Some(true) {
        "(deleted)".to_string()
    } else {
        m["body"].as_str().unwrap_or("").to_string()
    };
    let edited = if m["edited_at_ms"].is_u64() && m["deleted"] != true {
        " (edited)"
    } else {
        ""
    };
    let reactions: Vec<&str> = m["reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["emoji"].as_str())
        .collect();
    let reactions = if reactions.is_empty() {
        String::new()
    } else {
        format!(" {}", reactions.join(""))
    };
    let state = if m["mine"] == true {
        format!("  · {}", m["state"].as_str().unwrap_or(""))
    } else {
        String::new()
    };
    format!("{when}  {who}: {prec}{body}{edited}{reactions}{state}")
}

/// A message edited after it was shown: "… Asha (edited): new text".
pub fn edited_line(m: &Value) -> String {
    let when = utc(m["edited_at_ms"]
        .as_u64()
        .or(m["sent_at_ms"].as_u64())
        .unwrap_or(0));
    let body = m["body"].as_str().unwrap_or("");
    format!("{when}  {} (edited): {body}", author(m))
}

/// A message deleted after it was shown (its text is not repeated).
pub fn deleted_line(m: &Value, now_ms: u64) -> String {
    let when = utc(m["edited_at_ms"].as_u64().unwrap_or(now_ms));
    let sent = utc(m["sent_at_ms"].as_u64().unwrap_or(0));
    format!("{when}  {} deleted a message (sent {sent})", author(m))
}

/// A reaction added (`emoji` set) or taken back (`None`) on a shown message.
pub fn reaction_line(m: &Value, reaction: &Value, emoji: Option<&str>, now_ms: u64) -> String {
    let who = reaction["name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| reaction["by"].as_str().map(|b| short(b).to_string()))
        .unwrap_or_else(|| "?".into());
    let when = utc(now_ms);
    match emoji {
        Some(e) => format!("{when}  {who} reacted {e} to {}", excerpt(m)),
        None => format!(
            "{when}  {who} took back {} from {}",
            reaction["emoji"].as_str().unwrap_or(""),
            excerpt(m)
        ),
    }
}

pub fn print_peers(p: &Value, online: bool) {
    if !online {
        println!("The node is not running (start it with `vaarta up`).");
        return;
    }
    let connected = p["connected"].as_array().cloned().unwrap_or_default();
    if connected.is_empty() {
        println!("No peers connected.");
    }
    for c in &connected {
        println!(
            "connected  {:<12} {}  {} in / {} out bytes",
            c["name"].as_str().unwrap_or("?"),
            c["device"].as_str().unwrap_or("(handshaking)"),
            c["bytes_in"],
            c["bytes_out"]
        );
    }
    for s in p["seen"].as_array().into_iter().flatten() {
        let last = utc(s["last_seen_ms"].as_u64().unwrap_or(0));
        println!(
            "seen       {:<12} {}  last {last}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["device"].as_str().unwrap_or("(unknown device)"),
            s["addrs"][0].as_str().unwrap_or("")
        );
    }
}

pub fn print_conversations(r: &Value) {
    let list = r.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!(
            "No conversations yet. Create one with `vaarta conv create TITLE --member DEVICE_ID`."
        );
    }
    for c in list {
        let role = if c["admin"] == true {
            "admin"
        } else if c["member"] == true {
            "member"
        } else {
            "invited"
        };
        println!(
            "{}  {}  ({} members, {role})",
            c["id"].as_str().unwrap_or(""),
            c["title"].as_str().unwrap_or(""),
            c["members"].as_array().map(|m| m.len()).unwrap_or(0)
        );
    }
}

pub fn print_conversation(c: &Value) {
    println!(
        "{}  {}",
        c["id"].as_str().unwrap_or(""),
        c["title"].as_str().unwrap_or("")
    );
    for m in c["members"].as_array().into_iter().flatten() {
        println!(
            "  {}{:<12} {}",
            if m["admin"] == true { "★ " } else { "  " },
            m["name"].as_str().unwrap_or("?"),
            m["device"].as_str().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_790_000_000_000), "2026-09-21 14:13:20");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
