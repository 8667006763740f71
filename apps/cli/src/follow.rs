//! `vaarta log --follow`: a conversation as it changes.
//!
//! The follower remembers every message it has shown or could have shown — id → body, edit
//! time, deleted flag, reactions — from the page of the oldest message printed at start (the
//! *floor*) up. The event stream is opened before the first fetch, so nothing falls between
//! the two. Each `messages` event names a page; the events that arrived together are handled
//! in one go: the pages from the lowest one named (and at most the newest page seen) up are
//! fetched (`from_page`, so older pages are not read again), bounded by the API's 100,000,
//! and every difference from what was remembered is printed in log order: new messages,
//! edits, deletions, reactions. A burst of any size is therefore seen whole. When the node
//! says the stream lagged (it dropped events for this reader), or the stream had to be
//! opened again, the window reaches down to the floor: a full catch-up. When the node stops,
//! following fails with "the node stopped".
//!
//! Changes below the floor (to messages older than what `--limit` showed at start) are not
//! printed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use vaarta_node::Request;
use vaarta_node::client::Client;

use crate::{Conn, fmt};

/// The smallest window fetched per event: more than a full page (256 messages).
const FIRST_WINDOW: usize = 512;
/// The largest window (the API's own bound on `limit`).
const MAX_WINDOW: usize = 100_000;

const NODE_STOPPED: &str = "the node stopped";

/// The page of a message, from its id (`PAGE.KEY`).
pub fn page_of(m: &Value) -> Option<u32> {
    m["id"].as_str()?.split_once('.')?.0.parse().ok()
}

/// What the follower remembers of a message.
#[derive(Debug, Clone)]
struct Version {
    body: String,
    edited_at: Option<u64>,
    deleted: bool,
    /// Reaction objects as the API gives them, by their author (`by`).
    reactions: BTreeMap<String, Value>,
}

impl Version {
    fn of(m: &Value) -> Version {
        Version {
            body: m["body"].as_str().unwrap_or("").to_string(),
            edited_at: m["edited_at_ms"].as_u64(),
            deleted: m["deleted"] == true,
            reactions: m["reactions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r["by"].as_str()?.to_string(), r.clone())))
                .collect(),
        }
    }
}

/// How a message changed since the follower last saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    New,
    Edited,
    Deleted,
    /// A reaction added or changed (the reaction object).
    Reacted(Value),
    /// A reaction taken back (the reaction object as it was).
    Unreacted(Value),
}

impl Change {
    fn name(&self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Edited => "edited",
            Change::Deleted => "deleted",
            Change::Reacted(_) => "reacted",
            Change::Unreacted(_) => "unreacted",
        }
    }
}

/// What the follower has seen.
#[derive(Debug, Default)]
pub struct Seen {
    /// Pages below this one are not followed.
    floor: u32,
    /// The newest page of a message seen.
    top: Option<u32>,
    versions: HashMap<String, Version>,
}

/// The floor for a window whose newest `n` messages are shown: the lowest page among them
/// (the newest page if none is shown; 0 for an empty conversation).
fn floor_of(msgs: &[Value], n: usize) -> u32 {
    let shown = &msgs[msgs.len().saturating_sub(n)..];
    shown
        .iter()
        .filter_map(page_of)
        .min()
        .or_else(|| msgs.iter().filter_map(page_of).max())
        .unwrap_or(0)
}

impl Seen {
    /// Starts from a window: remembers all of it from the floor up, returns the newest `n`
    /// (the ones to print).
    pub fn start(msgs: &[Value], n: usize) -> (Seen, &[Value]) {
        let mut seen = Seen {
            floor: floor_of(msgs, n),
            ..Seen::default()
        };
        seen.update(msgs);
        (seen, &msgs[msgs.len().saturating_sub(n)..])
    }

    /// Remembers a window (messages from the floor up) and returns what changed, in the
    /// window's (log) order.
    pub fn update<'a>(&mut self, msgs: &'a [Value]) -> Vec<(&'a Value, Change)> {
        let mut out = Vec::new();
        for m in msgs {
            let (Some(id), Some(page)) = (m["id"].as_str(), page_of(m)) else {
                continue;
            };
            if page < self.floor {
                continue;
            }
            self.top = self.top.max(Some(page));
            let new = Version::of(m);
            let Some(old) = self.versions.insert(id.to_string(), new.clone()) else {
                out.push((m, Change::New));
                continue;
            };
            if new.deleted {
                if !old.deleted {
                    out.push((m, Change::Deleted));
                }
                continue;
            }
            if new.body != old.body || new.edited_at != old.edited_at {
                out.push((m, Change::Edited));
            }
            for (by, r) in &new.reactions {
                if old.reactions.get(by).map(|o| &o["emoji"]) != Some(&r["emoji"]) {
                    out.push((m, Change::Reacted(r.clone())));
                }
            }
            for (by, r) in &old.reactions {
                if !new.reactions.contains_key(by) {
                    out.push((m, Change::Unreacted(r.clone())));
                }
            }
        }
        out
    }

    /// The page a window must reach down to after `events`; `None` if nothing followed
    /// changed. Besides the pages named, it always reaches the newest page seen, so new
    /// messages there are not missed even if their event was.
    pub fn cover(&self, events: &Batch) -> Option<u32> {
        if events.lagged {
            return Some(self.floor);
        }
        let lowest = events.pages.iter().copied().find(|p| *p >= self.floor)?;
        Some(lowest.min(self.top.unwrap_or(lowest)).max(self.floor))
    }
}

/// Events that arrived together.
#[derive(Debug, Default)]
pub struct Batch {
    /// Pages of the followed conversation that changed.
    pub pages: BTreeSet<u32>,
    /// Events were lost: re-read everything followed.
    pub lagged: bool,
    /// The stream ended.
    pub closed: bool,
}

impl Batch {
    /// Adds one event of the stream.
    pub fn add(&mut self, conversation: &str, ev: &Value) {
        match ev["type"].as_str() {
            Some("lagged") => self.lagged = true,
            Some("messages") if ev["conversation"].as_str() == Some(conversation) => {
                match ev["page"].as_u64().and_then(|p| u32::try_from(p).ok()) {
                    Some(p) => {
                        self.pages.insert(p);
                    }
                    None => self.lagged = true,
                }
            }
            _ => {}
        }
    }
}

enum Item {
    Event(Value),
    Closed,
}

/// Opens the event stream (the node subscribes this reader before answering) and reads it on
/// a thread, so events that arrive during a fetch wait in the channel.
fn open_events(client: &Client) -> Result<mpsc::Receiver<Item>> {
    let events = client.events().map_err(|e| anyhow!(e.message))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for ev in events {
            if tx.send(Item::Event(ev)).is_err() {
                return;
            }
        }
        let _ = tx.send(Item::Closed);
    });
    Ok(rx)
}

/// Waits for an event, then takes every other one already there.
fn next_batch(rx: &mpsc::Receiver<Item>, conversation: &str) -> Batch {
    let mut b = Batch::default();
    let mut item = rx.recv().unwrap_or(Item::Closed);
    loop {
        match item {
            Item::Event(ev) => b.add(conversation, &ev),
            Item::Closed => {
                b.closed = true;
                return b;
            }
        }
        match rx.try_recv() {
            Ok(i) => item = i,
            Err(_) => return b,
        }
    }
}

/// The newest messages, at least `min` of them, and more until the window reaches below the
/// page `cover` gives for it (or holds the whole conversation, or reaches the bound).
fn fetch_window(
    conn: &Conn,
    conversation: &str,
    min: usize,
    cover: impl Fn(&[Value]) -> u32,
) -> Result<Vec<Value>> {
    let mut limit = min.clamp(FIRST_WINDOW, MAX_WINDOW);
    loop {
        let msgs = conn
            .request(Request::Messages {
                conversation: conversation.to_string(),
                limit,
                from_page: None,
                before: None,
            })?
            .as_array()
            .cloned()
            .unwrap_or_default();
        let page = cover(&msgs);
        let whole = msgs.len() < limit || msgs.iter().any(|m| page_of(m).is_some_and(|p| p < page));
        if whole {
            return Ok(msgs);
        }
        if limit >= MAX_WINDOW {
            eprintln!("(more than {MAX_WINDOW} messages changed at once: showing the newest)");
            return Ok(msgs);
        }
        limit = (limit * 4).min(MAX_WINDOW);
    }
}

/// The messages on `from_page` and the pages after it: only what the events named (and the
/// newest page seen), not a window of the newest messages each time.
fn fetch_pages(conn: &Conn, conversation: &str, from_page: u32) -> Result<Vec<Value>> {
    let msgs = conn
        .request(Request::Messages {
            conversation: conversation.to_string(),
            limit: MAX_WINDOW,
            from_page: Some(from_page),
            before: None,
        })?
        .as_array()
        .cloned()
        .unwrap_or_default();
    if msgs.len() >= MAX_WINDOW {
        eprintln!("(more than {MAX_WINDOW} messages changed at once: showing the newest)");
    }
    Ok(msgs)
}

fn print(m: &Value, change: Option<&Change>, authors: &fmt::Authors, json: bool) -> Result<()> {
    let now = vaarta_node::now_ms();
    if json {
        let mut v = m.clone();
        if let Some(c) = change {
            v["change"] = c.name().into();
            if let Change::Reacted(r) | Change::Unreacted(r) = c {
                v["reaction"] = r.clone();
            }
        }
        return crate::emit(&serde_json::to_string(&v).unwrap_or_default());
    }
    let line = match change {
        None | Some(Change::New) => fmt::message_line(m, authors),
        Some(Change::Edited) => fmt::edited_line(m, authors),
        Some(Change::Deleted) => fmt::deleted_line(m, authors, now),
        Some(Change::Reacted(r)) => fmt::reaction_line(m, r, r["emoji"].as_str(), authors, now),
        Some(Change::Unreacted(r)) => fmt::reaction_line(m, r, None, authors, now),
    };
    crate::emit(&line)
}

/// Prints the newest `limit` messages, then every change until the node stops (an error).
pub fn run(
    conn: &Conn,
    client: &Client,
    conversation: &str,
    limit: usize,
    json: bool,
) -> Result<()> {
    let n = limit.max(1);
    let mut events = open_events(client)?;
    let msgs = fetch_window(conn, conversation, n, |m| floor_of(m, n))?;
    let (mut seen, first) = Seen::start(&msgs, n);
    let authors_of = || -> Result<fmt::Authors> {
        let info = conn.request(Request::Conversation {
            conversation: conversation.to_string(),
        })?;
        Ok(fmt::Authors::of(&info))
    };
    let mut authors = authors_of()?;
    for m in first {
        print(m, None, &authors, json)?;
    }
    loop {
        let mut batch = next_batch(&events, conversation);
        if batch.closed {
            // The stream ends when the node does; if it still answers, open it again and
            // catch up on what passed meanwhile.
            if client.request(Request::Status).is_err() {
                bail!(NODE_STOPPED);
            }
            std::thread::sleep(Duration::from_millis(200));
            events = open_events(client).map_err(|_| anyhow!(NODE_STOPPED))?;
            batch.lagged = true;
        }
        let Some(page) = seen.cover(&batch) else {
            continue;
        };
        let msgs = match fetch_pages(conn, conversation, page) {
            Ok(m) => m,
            Err(_) if client.request(Request::Status).is_err() => bail!(NODE_STOPPED),
            Err(e) => return Err(e),
        };
        // Members (and so how authors are named) may have changed.
        if let Ok(a) = authors_of() {
            authors = a;
        }
        for (m, change) in seen.update(&msgs) {
            print(m, Some(&change), &authors, json)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(page: u32, key: &str, body: &str) -> Value {
        json!({"id": format!("{page}.{key}"), "author_name": "Asha", "sent_at_ms": 1000,
               "body": body, "edited_at_ms": null, "deleted": false, "reactions": []})
    }

    fn changes(seen: &mut Seen, msgs: &[Value]) -> Vec<(String, &'static str)> {
        seen.update(msgs)
            .into_iter()
            .map(|(m, c)| (m["body"].as_str().unwrap().to_string(), c.name()))
            .collect()
    }

    #[test]
    fn start_shows_the_newest_and_remembers_their_pages() {
        let msgs: Vec<Value> = (0..6)
            .map(|i| msg(i / 3 + 4, &format!("k{i}"), &format!("m{i}")))
            .collect();
        // Pages 4 (m0-m2) and 5 (m3-m5); the newest two are on page 5.
        let (mut seen, first) = Seen::start(&msgs, 2);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0]["body"], "m4");
        assert_eq!(seen.floor, 5);
        // m3 was not printed but is remembered: an edit of it is news, not a new message.
        let mut later = msgs.clone();
        later[3]["body"] = "m3 fixed".into();
        later[3]["edited_at_ms"] = 2000.into();
        later[0]["body"] = "m0 fixed".into(); // below the floor: not followed
        assert_eq!(changes(&mut seen, &later), [("m3 fixed".into(), "edited")]);
    }

    #[test]
    fn new_edited_deleted_and_reactions_in_log_order() {
        let mut msgs = vec![msg(0, "a", "one"), msg(0, "b", "two"), msg(0, "c", "three")];
        let (mut seen, _) = Seen::start(&msgs, 10);
        assert!(seen.update(&msgs).is_empty(), "nothing changed");
        msgs[0]["body"] = "one!".into();
        msgs[0]["edited_at_ms"] = 5.into();
        msgs[1]["deleted"] = true.into();
        msgs[1]["body"] = "".into();
        msgs[2]["reactions"] = json!([{"by": "ab12", "emoji": "👍", "name": "Bhavesh"}]);
        msgs.push(msg(1, "d", "four"));
        assert_eq!(
            changes(&mut seen, &msgs),
            [
                ("one!".into(), "edited"),
                ("".into(), "deleted"),
                ("three".into(), "reacted"),
                ("four".into(), "new"),
            ]
        );
        // A changed emoji is a new reaction; taking it back is reported; a deleted message
        // reports nothing more.
        msgs[2]["reactions"] = json!([{"by": "ab12", "emoji": "🙏", "name": "Bhavesh"}]);
        assert_eq!(changes(&mut seen, &msgs), [("three".into(), "reacted")]);
        msgs[2]["reactions"] = json!([]);
        msgs[1]["edited_at_ms"] = 9.into();
        assert_eq!(changes(&mut seen, &msgs), [("three".into(), "unreacted")]);
    }

    #[test]
    fn events_decide_how_far_back_to_read() {
        let msgs: Vec<Value> = (0..4).map(|i| msg(i + 2, "k", "m")).collect();
        let (seen, _) = Seen::start(&msgs, 3); // floor 3, top 5
        let batch = |pages: &[u32], lagged: bool| Batch {
            pages: pages.iter().copied().collect(),
            lagged,
            closed: false,
        };
        assert_eq!(seen.cover(&batch(&[], false)), None);
        assert_eq!(seen.cover(&batch(&[2], false)), None, "below the floor");
        assert_eq!(
            seen.cover(&batch(&[6], false)),
            Some(5),
            "reaches the newest page seen"
        );
        assert_eq!(seen.cover(&batch(&[4, 6], false)), Some(4));
        assert_eq!(seen.cover(&batch(&[2, 6], false)), Some(5));
        assert_eq!(
            seen.cover(&batch(&[], true)),
            Some(3),
            "a lag reads from the floor"
        );
        let mut b = Batch::default();
        b.add(
            "C",
            &json!({"type": "messages", "conversation": "C", "page": 7}),
        );
        b.add(
            "C",
            &json!({"type": "messages", "conversation": "D", "page": 1}),
        );
        b.add("C", &json!({"type": "delivered", "envelope": "x"}));
        assert_eq!(b.pages.iter().copied().collect::<Vec<_>>(), [7]);
        assert!(!b.lagged);
        b.add("C", &json!({"type": "lagged", "missed": 12}));
        assert!(b.lagged);
    }
}
