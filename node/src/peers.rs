//! What the daemon remembers about peers beyond the engine: the address of each link, the
//! state of every static peer (`--peer`: connected, failed dials in a row, the last error),
//! and the peers linked recently (device, name, address, when last seen, whether static).
//! It turns the engine's `peer_up`/`peer_down` into events that name the address, and says
//! `peer_unreachable` once a static peer has failed [`UNREACHABLE_AFTER`] dials in a row.
//!
//! Bounded: one entry per static peer, per link (the engine bounds links), and at most
//! [`MAX_RECENT`] recent peers (the one seen longest ago goes first); errors are cut to
//! [`MAX_ERROR_CHARS`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Failed dials in a row after which a static peer is reported unreachable.
pub const UNREACHABLE_AFTER: u32 = 3;
/// Recent peers remembered (a guess: more than a field team in reach at once).
pub const MAX_RECENT: usize = 64;
/// The longest dial error kept.
pub const MAX_ERROR_CHARS: usize = 300;

#[derive(Debug, Clone, Default)]
struct Static {
    addr: String,
    link: Option<u64>,
    failures: u32,
    last_error: Option<String>,
    last_failed_ms: Option<u64>,
    last_connected_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct LinkRec {
    peer: String,
    addr: String,
    static_addr: Option<String>,
    device: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Clone)]
struct Recent {
    device: Option<String>,
    name: Option<String>,
    addr: String,
    last_seen_ms: u64,
    is_static: bool,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct PeerBook {
    statics: Vec<Static>,
    links: BTreeMap<u64, LinkRec>,
    /// By libp2p peer id.
    recent: BTreeMap<String, Recent>,
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

impl PeerBook {
    pub fn new(statics: &[String]) -> PeerBook {
        PeerBook {
            statics: statics
                .iter()
                .map(|a| Static {
                    addr: a.clone(),
                    ..Static::default()
                })
                .collect(),
            ..PeerBook::default()
        }
    }

    /// A transport link opened (before any hello).
    pub fn link_up(&mut self, link: u64, peer: &str, remote: &str, dialed: Option<&str>, now: u64) {
        let st = dialed.and_then(|d| self.statics.iter_mut().find(|s| s.addr == d));
        let static_addr = st.map(|s| {
            s.link = Some(link);
            s.failures = 0;
            s.last_connected_ms = Some(now);
            s.addr.clone()
        });
        let addr = if remote.is_empty() {
            dialed.unwrap_or("").to_string()
        } else {
            remote.to_string()
        };
        self.links.insert(
            link,
            LinkRec {
                peer: peer.to_string(),
                addr,
                static_addr,
                device: None,
                name: None,
            },
        );
    }

    /// A dial failed. Returns a `peer_unreachable` event when a static peer has just failed
    /// [`UNREACHABLE_AFTER`] dials in a row.
    pub fn dial_failed(&mut self, addr: &str, error: &str, now: u64) -> Option<Value> {
        let s = self.statics.iter_mut().find(|s| s.addr == addr)?;
        s.failures = s.failures.saturating_add(1);
        s.last_error = Some(cut(error));
        s.last_failed_ms = Some(now);
        (s.failures == UNREACHABLE_AFTER).then(|| {
            json!({"type": "peer_unreachable", "addr": s.addr, "failures": s.failures,
                   "error": s.last_error})
        })
    }

    /// Adds what the book knows to an engine event (`peer_up`: the address and whether it
    /// is a static peer; `peer_down` the same and the name), and remembers the peer.
    pub fn enrich(&mut self, event: &mut Value, now: u64) {
        let Some(link) = event["link"].as_u64() else {
            return;
        };
        match event["type"].as_str() {
            Some("peer_up") => {
                let Some(rec) = self.links.get_mut(&link) else {
                    return;
                };
                rec.device = event["device"].as_str().map(str::to_string);
                rec.name = event["name"].as_str().map(str::to_string);
                event["addr"] = rec.addr.clone().into();
                event["static"] = rec.static_addr.is_some().into();
                let entry = Recent {
                    device: rec.device.clone(),
                    name: rec.name.clone(),
                    addr: rec.addr.clone(),
                    last_seen_ms: now,
                    is_static: rec.static_addr.is_some(),
                };
                let peer = rec.peer.clone();
                self.remember(peer, entry);
            }
            Some("peer_down") => {
                if let Some(rec) = self.links.get(&link) {
                    event["addr"] = rec.addr.clone().into();
                    event["name"] = rec.name.clone().into();
                    event["static"] = rec.static_addr.is_some().into();
                }
            }
            _ => {}
        }
    }

    /// A transport link closed.
    /// The remote address of a link (a multiaddr; empty if the transport gave none).
    pub fn link_addr(&self, link: u64) -> Option<&str> {
        self.links.get(&link).map(|r| r.addr.as_str())
    }

    pub fn link_down(&mut self, link: u64, now: u64) {
        let Some(rec) = self.links.remove(&link) else {
            return;
        };
        if let Some(s) = self.statics.iter_mut().find(|s| s.link == Some(link)) {
            s.link = None;
        }
        if let Some(r) = self.recent.get_mut(&rec.peer) {
            r.last_seen_ms = now;
        }
    }

    fn remember(&mut self, peer: String, entry: Recent) {
        if !self.recent.contains_key(&peer) && self.recent.len() >= MAX_RECENT {
            let oldest = self
                .recent
                .iter()
                .min_by_key(|(_, r)| r.last_seen_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.recent.remove(&k);
            }
        }
        self.recent.insert(peer, entry);
    }

    /// Static peers: `[{addr, connected, unreachable, failures, last_error, last_failed_ms,
    /// last_connected_ms}]`.
    pub fn statics_json(&self) -> Vec<Value> {
        self.statics
            .iter()
            .map(|s| {
                json!({"addr": s.addr, "connected": s.link.is_some(),
                       "unreachable": s.link.is_none() && s.failures >= UNREACHABLE_AFTER,
                       "failures": s.failures, "last_error": s.last_error,
                       "last_failed_ms": s.last_failed_ms, "last_connected_ms": s.last_connected_ms})
            })
            .collect()
    }

    /// The static peers reported unreachable (as in [`Self::statics_json`]).
    pub fn unreachable_json(&self) -> Vec<Value> {
        self.statics_json()
            .into_iter()
            .filter(|s| s["unreachable"] == true)
            .collect()
    }

    /// Peers linked recently and not linked now: `[{peer, device, name, addrs, last_seen_ms,
    /// static}]` (the shape of the engine's `seen`), newest first.
    pub fn recent_json(&self) -> Vec<Value> {
        let linked: Vec<&str> = self.links.values().map(|l| l.peer.as_str()).collect();
        let mut out: Vec<(&String, &Recent)> = self
            .recent
            .iter()
            .filter(|(k, _)| !linked.contains(&k.as_str()))
            .collect();
        out.sort_by_key(|(_, r)| std::cmp::Reverse(r.last_seen_ms));
        out.into_iter()
            .map(|(k, r)| {
                json!({"peer": k, "device": r.device, "name": r.name, "addrs": [r.addr],
                       "last_seen_ms": r.last_seen_ms, "static": r.is_static})
            })
            .collect()
    }

    /// Whether `addr` is a static peer's address.
    pub fn is_static(&self, addr: &str) -> bool {
        self.statics.iter().any(|s| s.addr == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "/ip4/127.0.0.1/tcp/9";

    #[test]
    fn a_static_peer_is_unreachable_after_failed_dials_and_reachable_once_linked() {
        let mut b = PeerBook::new(&[ADDR.to_string()]);
        assert_eq!(b.dial_failed(ADDR, "refused", 1), None);
        assert_eq!(b.dial_failed(ADDR, "refused", 2), None);
        assert!(
            b.unreachable_json().is_empty(),
            "two failures are not yet news"
        );
        let ev = b.dial_failed(ADDR, "Connection refused", 3).unwrap();
        assert_eq!(ev["type"], "peer_unreachable");
        assert_eq!(ev["error"], "Connection refused");
        assert_eq!(b.dial_failed(ADDR, "refused", 4), None, "said once");
        assert_eq!(b.unreachable_json().len(), 1);
        assert_eq!(b.statics_json()[0]["failures"], 4);
        assert_eq!(b.dial_failed("/other", "x", 5), None, "not a static peer");
        b.link_up(7, "P", "/ip4/127.0.0.1/tcp/9", Some(ADDR), 6);
        assert_eq!(
            b.link_addr(7),
            Some("/ip4/127.0.0.1/tcp/9"),
            "the remote address"
        );
        assert!(b.unreachable_json().is_empty());
        assert_eq!(b.statics_json()[0]["connected"], true);
        let mut ev = json!({"type": "peer_up", "link": 7, "device": "dev", "name": "Asha"});
        b.enrich(&mut ev, 6);
        assert_eq!(
            (ev["addr"].as_str(), ev["static"].as_bool()),
            (Some(ADDR), Some(true))
        );
        assert!(
            b.recent_json().is_empty(),
            "linked now: not in the recent list"
        );
        let mut down = json!({"type": "peer_down", "link": 7, "device": "dev"});
        b.enrich(&mut down, 9);
        assert_eq!(down["name"], "Asha");
        b.link_down(7, 9);
        assert_eq!(b.link_addr(7), None);
        let recent = b.recent_json();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0]["last_seen_ms"], 9);
        assert_eq!(recent[0]["static"], true);
        assert_eq!(recent[0]["addrs"][0], ADDR);
        let long = "e".repeat(10_000);
        b.dial_failed(ADDR, &long, 10);
        assert_eq!(
            b.statics_json()[0]["last_error"].as_str().unwrap().len(),
            MAX_ERROR_CHARS
        );
    }

    #[test]
    fn recent_peers_are_bounded() {
        let mut b = PeerBook::new(&[]);
        for i in 0..(MAX_RECENT as u64 + 10) {
            b.link_up(i, &format!("p{i}"), "/a", None, i);
            let mut ev = json!({"type": "peer_up", "link": i, "device": "d", "name": "n"});
            b.enrich(&mut ev, i);
            b.link_down(i, i);
        }
        let r = b.recent_json();
        assert_eq!(r.len(), MAX_RECENT);
        assert_eq!(r[0]["peer"], format!("p{}", MAX_RECENT + 9));
        assert!(b.links.is_empty());
    }
}
