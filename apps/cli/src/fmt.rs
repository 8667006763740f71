//! Human-readable output.
//!
//! Everything shown here that came from the network (message bodies, member names, titles,
//! emoji) is untrusted: [`clean`] escapes control characters (so no escape sequence reaches
//! the terminal and no text can start a line of its own) and the Unicode controls that
//! reorder text; a body of several lines is printed with every line after the first
//! indented under its header ([`CONTINUATION`]), so a line that starts at column 0 is always
//! one this program wrote; authors are named by [`Authors`], which adds the start of the
//! device id whenever a name could be mistaken for another member's.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

static COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns colour on standard output on or off (`--color`, decided once at start; off by
/// default, so tests and pipes see plain text).
pub fn set_color(on: bool) {
    COLOR.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `s` in an SGR style (e.g. "1;31" bold red) when colour is on. Only this program's own
/// text is painted: what came from the network is [`clean`]ed first, so it holds no escape.
pub fn paint(s: &str, sgr: &str) -> String {
    if COLOR.load(std::sync::atomic::Ordering::Relaxed) {
        format!("\x1b[{sgr}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// What starts every line of a message body after its first.
pub const CONTINUATION: &str = "    | ";

/// Characters that must not reach a terminal raw: control characters (C0 including newline
/// and tab, DEL, C1) and the bidirectional embeddings, overrides and isolates and line and
/// paragraph separators, which can make text look like it is somewhere else. Joiners (ZWJ,
/// ZWNJ), needed by Indic scripts and emoji, are kept.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// One line of untrusted text for a terminal: unsafe characters as escapes (`\n`, `\t`, `\r`,
/// `\u{1b}`), and a backslash as `\\` so an escape cannot be faked.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A message body for a terminal: its first line, then each further line on its own line
/// starting with [`CONTINUATION`]. Each line is [`clean`]ed (a `\r` shows as `\r`).
pub fn body_text(body: &str) -> String {
    let mut lines = body.split('\n');
    let mut out = clean(lines.next().unwrap_or(""));
    for l in lines {
        out.push('\n');
        out.push_str(CONTINUATION);
        out.push_str(&clean(l));
    }
    out
}

/// A name (or title) on one line: [`clean`]ed, and quoted when it holds a character this
/// program uses to separate or mark things (`:` `"` `,` `(` `)` `[` `]` `~` `·` `|` `+`) or
/// starts or ends with a space, so it cannot pass for a name followed by text, another list
/// entry, an edit mark or a device id.
pub fn name(s: &str) -> String {
    let c = clean(s);
    if c.is_empty()
        || c.contains([':', '"', ',', '(', ')', '[', ']', '~', '·', '|', '+'])
        || c.trim() != c
    {
        format!("\"{}\"", c.replace('"', "\\\""))
    } else {
        c
    }
}

/// A reaction as shown: an emoji as it is; anything else (a peer's page holds whatever
/// its writer put there) [`clean`]ed and in quotes, so it reads as one odd reaction and not
/// as text of this program.
pub fn emoji(e: &str) -> String {
    if vaarta_node::api::check_emoji(e).is_ok() {
        e.to_string()
    } else {
        format!("\"{}\"", clean(e).replace('"', "\\\""))
    }
}

/// How a conversation's authors are named on screen: their name, and `~` with the first 8
/// characters of the device id when another member has the same name (ignoring case and
/// surrounding spaces) or the author is not a current member (so nobody can pass for them).
#[derive(Debug, Default, Clone)]
pub struct Authors {
    labels: HashMap<String, String>,
}

impl Authors {
    /// From a conversation as `GET /v1/conversations/{id}` shows it.
    pub fn of(conversation: &Value) -> Authors {
        let members: Vec<(&str, &str)> = conversation["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some((m["device"].as_str()?, m["name"].as_str().unwrap_or(""))))
            .collect();
        let key = |n: &str| n.trim().to_lowercase();
        let mut count: HashMap<String, usize> = HashMap::new();
        for (_, n) in &members {
            *count.entry(key(n)).or_default() += 1;
        }
        let labels = members
            .iter()
            .map(|(d, n)| {
                let label = if n.trim().is_empty() {
                    format!("~{}", short(d))
                } else if count[&key(n)] > 1 {
                    format!("{} ~{}", name(n), short(d))
                } else {
                    name(n)
                };
                (d.to_string(), label)
            })
            .collect();
        Authors { labels }
    }

    /// The label for a device (and the name the API gave with it).
    pub fn label(&self, device: Option<&str>, given: Option<&str>) -> String {
        match (device, given) {
            (Some(d), _) if self.labels.contains_key(d) => self.labels[d].clone(),
            (Some(d), Some(n)) if !n.trim().is_empty() => format!("{} ~{}", name(n), short(d)),
            (Some(d), _) => format!("~{}", short(d)),
            (None, _) => "(unknown author)".into(),
        }
    }

    fn author(&self, m: &Value) -> String {
        self.label(m["author"].as_str(), m["author_name"].as_str())
    }
}

/// The zone times are shown in: $TZ, else the system's (UTC in unit tests, so they do not
/// depend on the machine).
pub fn zone() -> &'static jiff::tz::TimeZone {
    static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        if cfg!(test) {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::system()
        }
    })
}

/// "2026-11-27 08:34:05 IST": milliseconds since the epoch in `tz`, with the zone's
/// abbreviation (or offset).
pub fn time_in(ms: u64, tz: &jiff::tz::TimeZone) -> String {
    match i64::try_from(ms).map(jiff::Timestamp::from_millisecond) {
        Ok(Ok(ts)) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        _ => format!("(time {ms} ms out of range)"),
    }
}

/// [`time_in`] the local [`zone`].
pub fn local(ms: u64) -> String {
    time_in(ms, zone())
}

/// How long before `now_ms` `ms` was, for a person: "just now", "40 s ago", "2 min ago",
/// "3 h ago", "5 days ago" (or "in 2 min" for a clock ahead of ours).
pub fn ago(ms: u64, now_ms: u64) -> String {
    let (d, future) = if ms <= now_ms {
        ((now_ms - ms) / 1000, false)
    } else {
        ((ms - now_ms) / 1000, true)
    };
    let span = match d {
        0..5 => return "just now".into(),
        5..60 => format!("{d} s"),
        60..3600 => format!("{} min", d / 60),
        3600..86_400 => format!("{} h", d / 3600),
        _ if d / 86_400 == 1 => "1 day".to_string(),
        _ => format!("{} days", d / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn short(s: &str) -> String {
    s.chars().take(8).collect()
}

/// The start of a message's text, for a line that refers to it (one line, cleaned).
fn excerpt(m: &Value) -> String {
    if m["deleted"] == true {
        return "a deleted message".into();
    }
    let body = m["body"].as_str().unwrap_or("");
    let mut s: String = body.chars().take(40).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    format!("\"{}\"", clean(&s))
}

/// What starts a line this program adds under a message (a reply link, reactions): unlike
/// [`CONTINUATION`], never the start of a body line, so a body cannot forge one.
pub const NOTE: &str = "    + ";

/// What a `log` line may say besides the message itself.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// Show each message's id first (for `edit`, `delete`, `react`, `send --reply-to`).
    pub ids: bool,
    /// Messages shown with this one, by id: a reply names the author and the start of the
    /// message it answers when it is here.
    pub shown: HashMap<String, Value>,
}

impl Context {
    /// A context that knows the messages `msgs` (an array as the API gives it).
    pub fn of(msgs: &Value, ids: bool) -> Context {
        let shown = msgs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some((m["id"].as_str()?.to_string(), m.clone())))
            .collect();
        Context { ids, shown }
    }
}

/// A message as `vaarta log` shows it: time, precedence (unless routine), author, body (one
/// line per body line, see [`body_text`]), edit mark, reactions, reply link, delivery state.
pub fn message_line(m: &Value, authors: &Authors) -> String {
    message_lines(m, authors, &Context::default())
}

/// [`message_line`] with a [`Context`]: the header line (with the id first when asked),
/// the body's further lines under [`CONTINUATION`], then [`NOTE`] lines for the message it
/// replies to and for its reactions (each with who reacted).
pub fn message_lines(m: &Value, authors: &Authors, ctx: &Context) -> String {
    let who = authors.author(m);
    let when = local(m["sent_at_ms"].as_u64().unwrap_or(0));
    let prec = match m["precedence"].as_str() {
        Some("routine") | None => String::new(),
        Some(p) => {
            let style = match p {
                "flash" => "1;31",
                "immediate" => "1;33",
                _ => "1",
            };
            format!(
                "{} ",
                paint(&format!("[{}]", clean(&p.to_uppercase())), style)
            )
        }
    };
    let deleted = m["deleted"].as_bool() == Some(true);
    let body = if deleted {
        "(deleted)".to_string()
    } else {
        body_text(m["body"].as_str().unwrap_or(""))
    };
    let id = if ctx.ids {
        format!("{}  ", clean(m["id"].as_str().unwrap_or("?")))
    } else {
        String::new()
    };
    let edited = match m["edited_at_ms"].as_u64() {
        Some(at) if !deleted => format!(" (edited {})", local(at)),
        _ => String::new(),
    };
    let state = if m["mine"] == true {
        format!("  · {}", clean(m["state"].as_str().unwrap_or("")))
    } else {
        String::new()
    };
    // The edit mark sits before the colon, where no body can put one.
    let mut out = format!("{id}{when}  {prec}{who}{edited}: {body}{state}");
    if let Some(r) = m["reply_to"].as_str() {
        let _ = match ctx.shown.get(r) {
            Some(orig) => write!(
                out,
                "\n{NOTE}reply to {}: {}",
                authors.author(orig),
                excerpt(orig)
            ),
            None => write!(out, "\n{NOTE}reply to message {}", clean(r)),
        };
    }
    let reactions: Vec<String> = m["reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let e = emoji(r["emoji"].as_str()?);
            let by = match r["device"].as_str() {
                Some(d) => authors.label(Some(d), r["name"].as_str()),
                None => format!("~{}", short(r["by"].as_str().unwrap_or("?"))),
            };
            Some(format!("{e} {by}"))
        })
        .collect();
    if !reactions.is_empty() {
        let _ = write!(out, "\n{NOTE}reactions: {}", reactions.join(", "));
    }
    out
}

/// A message edited after it was shown: "… Asha (edited): new text".
pub fn edited_line(m: &Value, authors: &Authors) -> String {
    let when = local(
        m["edited_at_ms"]
            .as_u64()
            .or(m["sent_at_ms"].as_u64())
            .unwrap_or(0),
    );
    let body = body_text(m["body"].as_str().unwrap_or(""));
    format!("{when}  {} (edited): {body}", authors.author(m))
}

/// A message deleted after it was shown (its text is not repeated).
pub fn deleted_line(m: &Value, authors: &Authors, now_ms: u64) -> String {
    let when = local(m["edited_at_ms"].as_u64().unwrap_or(now_ms));
    let sent = local(m["sent_at_ms"].as_u64().unwrap_or(0));
    format!(
        "{when}  {} deleted a message (sent {sent})",
        authors.author(m)
    )
}

/// A reaction added (`emoji` set) or taken back (`None`) on a shown message.
pub fn reaction_line(
    m: &Value,
    reaction: &Value,
    emoji: Option<&str>,
    authors: &Authors,
    now_ms: u64,
) -> String {
    let who = match reaction["device"].as_str() {
        Some(d) => authors.label(Some(d), reaction["name"].as_str()),
        None => format!("~{}", short(reaction["by"].as_str().unwrap_or("?"))),
    };
    let when = local(now_ms);
    match emoji {
        Some(e) => format!("{when}  {who} reacted {} to {}", self::emoji(e), excerpt(m)),
        None => format!(
            "{when}  {who} took back {} from {}",
            self::emoji(reaction["emoji"].as_str().unwrap_or("")),
            excerpt(m)
        ),
    }
}

/// `vaarta peers`: the connected peers, then those seen recently.
pub fn peers_lines(p: &Value, online: bool, now_ms: u64) -> Vec<String> {
    let mut out = Vec::new();
    if !online {
        out.push("The node is not running (start it with `vaarta up`).".to_string());
        return out;
    }
    let connected = p["connected"].as_array().cloned().unwrap_or_default();
    if connected.is_empty() {
        out.push("No peers connected.".to_string());
    }
    for c in &connected {
        out.push(format!(
            "connected  {} {} {}  {} in / {} out bytes",
            pad(&name(c["name"].as_str().unwrap_or("?")), 12),
            pad(&clean(c["transport"].as_str().unwrap_or("?")), 9),
            clean(c["device"].as_str().unwrap_or(if c["ready"] == true {
                "(device not shown: no shared tag)"
            } else {
                "(handshaking)"
            })),
            c["bytes_in"],
            c["bytes_out"]
        ));
        if let Some(line) = credential_line(&c["credential"]) {
            out.push(line);
        }
    }
    for s in p["seen"].as_array().into_iter().flatten() {
        let last = ago(s["last_seen_ms"].as_u64().unwrap_or(0), now_ms);
        out.push(format!(
            "seen       {} {}  last seen {last}  {}{}",
            pad(&name(s["name"].as_str().unwrap_or("?")), 12),
            clean(s["device"].as_str().unwrap_or("(unknown device)")),
            clean(s["addrs"][0].as_str().unwrap_or("")),
            if s["static"] == true {
                "  (static)"
            } else {
                ""
            }
        ));
    }
    for s in p["static"].as_array().into_iter().flatten() {
        if s["connected"] == true {
            continue;
        }
        out.push(static_line(s));
    }
    out
}

/// What a connected peer's organisation credentials say, under its line (nothing when it
/// presented none). Every field is the peer's text: cleaned like any other.
pub fn credential_line(c: &Value) -> Option<String> {
    match c["verified"].as_bool()? {
        true => {
            let name = c["names"][0]["name"].as_str().unwrap_or("?");
            Some(format!(
                "           verified: {}, {}, {} ({}{})",
                clean(name),
                clean(c["designation"].as_str().unwrap_or("")),
                clean(c["unit"].as_str().unwrap_or("")),
                clean(c["org_name"].as_str().unwrap_or("")),
                if c["via"].is_string() {
                    ", through a cross-certification"
                } else {
                    ""
                }
            ))
        }
        false => Some(format!(
            "           NOT verified: {}",
            clean(c["reason"].as_str().unwrap_or("?"))
        )),
    }
}

/// A static peer (`--peer`) that is not connected: unreachable (with the last error) or
/// still being dialled.
pub fn static_line(s: &Value) -> String {
    let addr = clean(s["addr"].as_str().unwrap_or(""));
    let failures = s["failures"].as_u64().unwrap_or(0);
    let error = clean(s["last_error"].as_str().unwrap_or(""));
    if s["unreachable"] == true {
        format!("unreachable static peer {addr}: {failures} failed dials, last error: {error}")
    } else if failures > 0 {
        format!("dialling   static peer {addr} ({failures} failed dials: {error})")
    } else {
        format!("dialling   static peer {addr}")
    }
}

/// A line of `vaarta up` for a node event worth telling: a peer linked or left, a static
/// peer unreachable. `None` for the others.
pub fn up_event_line(ev: &Value) -> Option<String> {
    let who = || {
        format!(
            "{} ({})",
            name(ev["name"].as_str().unwrap_or("?")),
            clean(ev["device"].as_str().unwrap_or("unknown device"))
        )
    };
    let addr = clean(ev["addr"].as_str().unwrap_or("?"));
    let st = if ev["static"] == true { ", static" } else { "" };
    match ev["type"].as_str()? {
        "peer_up" => Some(format!("peer linked: {} at {addr}{st}", who())),
        "peer_down" if ev["device"].is_string() => {
            Some(format!("peer left:   {} at {addr}{st}", who()))
        }
        "peer_unreachable" => Some(format!(
            "warning: static peer {addr} is unreachable ({} failed dials; last error: {}); still trying",
            ev["failures"],
            clean(ev["error"].as_str().unwrap_or(""))
        )),
        _ => None,
    }
}

/// Columns `s` takes on a terminal.
pub fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` followed by spaces up to `width` columns of a terminal (display width: a Devanagari
/// vowel sign takes none, a CJK character or an emoji two).
pub fn pad(s: &str, width: usize) -> String {
    let n = self::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// `vaarta config`: the file, then each setting with its value and source.
pub fn config_lines(c: &Value) -> Vec<String> {
    let found = if c["file_found"] == true {
        ""
    } else {
        " (not there: nothing from a file)"
    };
    let mut out = vec![format!(
        "file:       {}{found}",
        clean(c["file"].as_str().unwrap_or(""))
    )];
    for key in [
        "listen",
        "peers",
        "mdns",
        "relay",
        "api",
        "log_level",
        "ble",
        "ble_l2cap",
        "ble_adapter",
    ] {
        let s = &c["settings"][key];
        let value = match &s["value"] {
            Value::Array(a) if a.is_empty() => "(none)".to_string(),
            Value::Array(a) => a
                .iter()
                .map(|v| clean(v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(" "),
            Value::Bool(true) => "on".into(),
            Value::Bool(false) => "off".into(),
            Value::String(v) => clean(v),
            v => v.to_string(),
        };
        out.push(format!(
            "{}{value}  ({})",
            pad(&format!("{key}:"), 12),
            clean(s["from"].as_str().unwrap_or(""))
        ));
    }
    out
}

/// What this device is in a conversation.
pub fn role(c: &Value) -> &'static str {
    if c["admin"] == true {
        "admin"
    } else if c["member"] == true {
        "member"
    } else if c["removed"] == true {
        "you left or were removed"
    } else {
        "not a member"
    }
}

/// `vaarta conv list`.
pub fn conversations_lines(r: &Value) -> Vec<String> {
    let list = r.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return vec![
            "No conversations yet. Create one with `vaarta conv create TITLE --member DEVICE_ID`."
                .to_string(),
        ];
    }
    let titles: Vec<String> = list
        .iter()
        .map(|c| clean(c["title"].as_str().unwrap_or("")))
        .collect();
    let w = titles.iter().map(|t| width(t)).max().unwrap_or(0);
    list.iter()
        .zip(&titles)
        .map(|(c, title)| {
            format!(
                "{}  {}  ({} members, {})",
                clean(c["id"].as_str().unwrap_or("")),
                pad(title, w),
                c["members"].as_array().map(|m| m.len()).unwrap_or(0),
                role(c)
            )
        })
        .collect()
}

/// `vaarta conv show`.
pub fn conversation_lines(c: &Value) -> Vec<String> {
    let authors = Authors::of(c);
    let mut out = vec![format!(
        "{}  {}  ({})",
        clean(c["id"].as_str().unwrap_or("")),
        clean(c["title"].as_str().unwrap_or("")),
        role(c)
    )];
    let members: Vec<(&Value, String)> = c["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m, authors.label(m["device"].as_str(), m["name"].as_str())))
        .collect();
    let w = members
        .iter()
        .map(|(_, l)| width(l))
        .max()
        .unwrap_or(0)
        .max(12);
    for (m, label) in &members {
        out.push(format!(
            "  {}{} {}",
            if m["admin"] == true { "★ " } else { "  " },
            pad(label, w),
            clean(m["device"].as_str().unwrap_or(""))
        ));
    }
    let forked: Vec<&str> = c["equivocators"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !forked.is_empty() {
        out.push(
            "equivocation: signed two different changes with one sequence number (one fork is kept):"
                .into(),
        );
        for d in forked {
            out.push(format!(
                "    {} {}",
                pad(&authors.label(Some(d), None), w),
                clean(d)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_show_their_zone() {
        assert_eq!(local(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(local(1_790_000_000_000), "2026-09-21 14:13:20 UTC");
        assert_eq!(local(951_782_400_000), "2000-02-29 00:00:00 UTC");
        let kolkata = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            time_in(1_790_000_000_000, &kolkata),
            "2026-09-21 19:43:20 IST"
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            time_in(1_790_000_000_000, &berlin),
            "2026-09-21 16:13:20 CEST"
        );
        assert!(time_in(u64::MAX, &kolkata).contains("out of range"));
        let now = 1_790_000_000_000;
        assert_eq!(ago(now - 2_000, now), "just now");
        assert_eq!(ago(now - 40_000, now), "40 s ago");
        assert_eq!(ago(now - 150_000, now), "2 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 86_400_000, now), "1 day ago");
        assert_eq!(ago(now - 5 * 86_400_000, now), "5 days ago");
        assert_eq!(ago(now + 120_000, now), "in 2 min");
    }

    const ASHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BHAVESH: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn conv(members: &[(&str, &str)]) -> Value {
        json!({"id": "c", "title": "t", "admin": true, "member": true,
               "members": members.iter().map(|(d, n)| json!({"device": d, "name": n, "admin": false})).collect::<Vec<_>>()})
    }

    fn msg(author: &str, name: &str, body: &str) -> Value {
        json!({"id": "0.k", "author": author, "author_name": name, "sent_at_ms": 1_790_000_000_000u64,
               "body": body, "precedence": "routine", "reactions": [], "mine": false})
    }

    /// Every line a message prints either is its header (time, then the real author) or
    /// starts with the continuation mark; no control character survives.
    #[test]
    fn a_body_cannot_forge_a_line_an_author_or_an_escape() {
        let authors = Authors::of(&conv(&[(ASHA, "Asha"), (BHAVESH, "Bhavesh")]));
        let evil = "ok\n2026-12-01 20:28:30  Asha: [FLASH] Cancel the evacuation\r\n\
                    \u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}txet\\u{1b}";
        let shown = message_line(&msg(BHAVESH, "Bhavesh", evil), &authors);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert_eq!(lines[0], "2026-09-21 14:13:20 UTC  Bhavesh: ok");
        assert_eq!(
            lines[1],
            "    | 2026-12-01 20:28:30  Asha: [FLASH] Cancel the evacuation\\r"
        );
        assert_eq!(
            lines[2],
            "    | \\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{9b}31m\\u{202e}txet\\\\u{1b}"
        );
        assert!(
            !shown.chars().any(|c| c != '\n' && unsafe_char(c)),
            "{shown:?}"
        );
        // Edits go through the same path.
        let edited = edited_line(&msg(BHAVESH, "Bhavesh", evil), &authors);
        assert_eq!(edited.lines().count(), 3);
        assert!(edited.lines().skip(1).all(|l| l.starts_with(CONTINUATION)));
    }

    /// Replies and reactions are lines of their own under the message, marked [`NOTE`],
    /// which no body line can start with; the id comes first when asked for.
    #[test]
    fn replies_reactions_and_ids_are_lines_a_body_cannot_forge() {
        let authors = Authors::of(&conv(&[(ASHA, "Asha"), (BHAVESH, "Bhavesh")]));
        let mut first = msg(ASHA, "Asha", "Boats at ghat 3");
        first["id"] = json!("0.a");
        let mut reply = msg(BHAVESH, "Bhavesh", "on my way\n    + reactions: 👍 Asha");
        reply["id"] = json!("0.b");
        reply["reply_to"] = json!("0.a");
        reply["edited_at_ms"] = json!(1_790_000_060_000u64);
        reply["reactions"] = json!([{"by": "x", "emoji": "🙏", "device": ASHA, "name": "Asha"}]);
        let mut orphan = msg(BHAVESH, "Bhavesh", "and this");
        orphan["reply_to"] = json!("7.zz");
        orphan["deleted"] = json!(true);
        let msgs = json!([first, reply, orphan]);
        let ctx = Context::of(&msgs, true);
        let shown = message_lines(&msgs[1], &authors, &ctx);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "0.b  2026-09-21 14:13:20 UTC  Bhavesh (edited 2026-09-21 14:14:20 UTC): on my way",
                "    |     + reactions: 👍 Asha",
                "    + reply to Asha: \"Boats at ghat 3\"",
                "    + reactions: 🙏 Asha",
            ]
        );
        let shown = message_lines(&msgs[2], &authors, &Context::of(&msgs, false));
        assert_eq!(
            shown,
            "2026-09-21 14:13:20 UTC  Bhavesh: (deleted)\n    + reply to message 7.zz"
        );
    }

    /// `conv show` names the devices found equivocating (members by their name, others by
    /// their id), and says nothing of it when there are none.
    #[test]
    fn conversation_names_its_equivocators() {
        const GONE: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccc";
        let mut c = conv(&[(ASHA, "Asha"), (BHAVESH, "Bhavesh")]);
        let plain = conversation_lines(&c);
        assert!(
            !plain.iter().any(|l| l.contains("equivocation")),
            "{plain:#?}"
        );
        c["equivocators"] = json!([BHAVESH, GONE]);
        let lines = conversation_lines(&c);
        assert_eq!(lines.len(), plain.len() + 3, "{lines:#?}");
        assert_eq!(lines[..plain.len()], plain[..]);
        assert!(
            lines[plain.len()].starts_with("equivocation:"),
            "{lines:#?}"
        );
        let named = &lines[plain.len() + 1];
        assert!(
            named.contains("Bhavesh") && named.ends_with(BHAVESH),
            "{named}"
        );
        let other = &lines[plain.len() + 2];
        assert!(
            other.contains(&format!("~{}", short(GONE))) && other.ends_with(GONE),
            "{other}"
        );
    }

    /// Columns line up by display width, whatever the script: the device ids of `conv
    /// show` and the member counts of `conv list` start at one column.
    #[test]
    fn tables_line_up_in_any_script() {
        let names = ["Asha", "आशा देवी", "கார்த்திக்", "عائشہ", "王芳", "🙏 Ravi"];
        let members: Vec<(String, &str)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (((b'a' + i as u8) as char).to_string().repeat(52), *n))
            .collect();
        let refs: Vec<(&str, &str)> = members.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        let lines = conversation_lines(&conv(&refs));
        let cols: Vec<usize> = lines[1..]
            .iter()
            .map(|l| {
                let at = l.find(&l.trim_end()[l.trim_end().len() - 52..]).unwrap();
                unicode_width::UnicodeWidthStr::width(&l[..at])
            })
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{lines:#?} {cols:?}");
        let list = conversations_lines(&json!(
            names
                .iter()
                .map(|n| json!({"id": "c", "title": n, "members": [], "admin": true}))
                .collect::<Vec<_>>()
        ));
        let cols: Vec<usize> = list
            .iter()
            .map(|l| unicode_width::UnicodeWidthStr::width(&l[..l.find("  (").unwrap()]))
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{list:#?} {cols:?}");
    }

    /// A reaction that is not an emoji (a peer's page holds whatever it wrote), a name with
    /// a comma, and a member named "Asha (edited)" cannot forge a reaction, a reactions list
    /// or an edit by Asha.
    #[test]
    fn reactions_and_names_cannot_forge_reactions_or_edits() {
        const EDITED: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
        let authors = Authors::of(&conv(&[
            (ASHA, "Asha"),
            (BHAVESH, "Bhavesh, 👍 Asha"),
            (EDITED, "Asha (edited)"),
        ]));
        let mut m = msg(ASHA, "Asha", "Hold at ghat 3");
        m["reactions"] = json!([
            {"by": "x", "emoji": "👍 to \"Hold\" · Asha reacted ✅", "device": BHAVESH, "name": "Bhavesh, 👍 Asha"},
            {"by": "y", "emoji": "🙏", "device": ASHA, "name": "Asha"},
        ]);
        let shown = message_lines(&m, &authors, &Context::default());
        assert_eq!(
            shown.lines().nth(1).unwrap(),
            "    + reactions: \"👍 to \\\"Hold\\\" · Asha reacted ✅\" \"Bhavesh, 👍 Asha\", 🙏 Asha"
        );
        let r = &m["reactions"][0];
        let line = reaction_line(&m, r, r["emoji"].as_str(), &authors, 0);
        assert!(
            line.contains("\"Bhavesh, 👍 Asha\" reacted \"👍 to \\\"Hold"),
            "{line}"
        );
        // "Asha (edited)" writes: shown quoted, unlike Asha's own edit.
        let fake = message_line(&msg(EDITED, "Asha (edited)", "Cancel"), &authors);
        assert!(fake.contains("  \"Asha (edited)\": Cancel"), "{fake}");
        let mut real = msg(ASHA, "Asha", "Cancel");
        real["edited_at_ms"] = json!(1_790_000_000_000u64);
        assert!(edited_line(&real, &authors).contains("  Asha (edited): Cancel"));
        assert!(
            edited_line(&msg(EDITED, "x", "Cancel"), &authors)
                .contains("  \"Asha (edited)\" (edited): Cancel")
        );
        // Real emoji stay as they are.
        assert_eq!(emoji("👍🏽"), "👍🏽");
        assert_eq!(emoji("abc"), "\"abc\"");
    }

    #[test]
    fn names_cannot_pass_for_another_member_or_hold_text() {
        // Bhavesh calls himself "asha " and Chitra "Asha: [FLASH] go": neither reads as Asha.
        let c = conv(&[
            (ASHA, "Asha"),
            (BHAVESH, "asha "),
            (
                "cccccccccccccccccccccccccccccccccccccccccccccccccccc",
                "Asha: [FLASH] go",
            ),
        ]);
        let authors = Authors::of(&c);
        assert_eq!(authors.label(Some(ASHA), None), "Asha ~aaaaaaaa");
        assert_eq!(authors.label(Some(BHAVESH), None), "\"asha \" ~bbbbbbbb");
        let line = message_line(
            &msg(
                "cccccccccccccccccccccccccccccccccccccccccccccccccccc",
                "x",
                "hi",
            ),
            &authors,
        );
        assert_eq!(line, "2026-09-21 14:13:20 UTC  \"Asha: [FLASH] go\": hi");
        // Someone who is not (or no longer) a member is shown with their id.
        assert_eq!(
            authors.label(
                Some("dddddddddddddddddddddddddddddddddddddddddddddddddddd"),
                Some("Asha")
            ),
            "Asha ~dddddddd"
        );
        assert_eq!(clean("नाव\u{200d}घाट"), "नाव\u{200d}घाट", "joiners stay");
        let title = conversations_lines(
            &json!([{"id": "c", "title": "a\n2026 b\u{1b}[2J", "members": [], "admin": false, "member": false}]),
        );
        assert_eq!(
            title,
            ["c  a\\n2026 b\\u{1b}[2J  (0 members, not a member)"]
        );
    }
}
