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

pub fn message_line(m: &Value) -> String {
    let who = m["author_name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| m["author"].as_str().map(|a| short(a).to_string()))
        .unwrap_or_else(|| "?".into());
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
