//! Per-link reconciliation: the session this side started (the dialler initiates), the one
//! the peer started, what the peer was found lacking (for receipt recovery), and when to
//! reconcile again (backing off while nothing is new).

use std::collections::BTreeSet;

use vaarta_sync::ids::EnvelopeId;
use vaarta_sync::recon;
use vaarta_sync::store::Store;

use crate::config::{
    MAX_SESSION_LACKS, RECON_START_EVERY_MS, RECON_STARTS_BURST, RECON_WORK_BASE,
    RECON_WORK_PER_ITEM, RESYNC_BACKOFF_MAX_FACTOR,
};
use crate::wire::{self, Frame};
use crate::{Engine, Event, Fault, LinkId};

/// One link's reconciliation state.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Ours (outbound links only): session id and state.
    pub(crate) initiator: Option<(u64, recon::Session)>,
    /// The peer's (inbound links only).
    pub(crate) responder: Option<(u64, recon::Session)>,
    /// What the current reconciliation found the peer lacking; when it ends, our own
    /// messages sealed before [`Self::started`] and not in here are known to be on the peer
    /// (receipts a dropped link lost are recovered so). `None` once more than
    /// [`MAX_SESSION_LACKS`].
    lacks: Option<BTreeSet<EnvelopeId>>,
    started: u64,
    /// Responder: we re-sent our hello because a session came on another tag list; not
    /// again until our tag list for this link changes (no ping-pong if the lists disagree).
    pub(crate) nudged: bool,
    next_session: u64,
    /// When to reconcile next (outbound links).
    pub(crate) resync_at: u64,
    /// Current resync interval: doubles while reconciliations find nothing (up to
    /// [`RESYNC_BACKOFF_MAX_FACTOR`] times the configured one), resets when one finds
    /// something.
    resync_every: u64,
    /// The peer's allowance of new sessions, in milliseconds of [`RECON_START_EVERY_MS`]
    /// each (at most [`RECON_STARTS_BURST`] of them), as of `credit_at`.
    start_credit: u64,
    credit_at: u64,
}

impl Sessions {
    /// The peer starts a session at `now`: false if its allowance is spent (ignore it).
    pub(crate) fn may_start(&mut self, now: u64) -> bool {
        let cap = RECON_STARTS_BURST * RECON_START_EVERY_MS;
        self.start_credit = (self.start_credit + now.saturating_sub(self.credit_at)).min(cap);
        self.credit_at = now;
        if self.start_credit < RECON_START_EVERY_MS {
            return false;
        }
        self.start_credit -= RECON_START_EVERY_MS;
        true
    }

    pub(crate) fn new(now: u64, resync_interval: u64) -> Self {
        Self {
            initiator: None,
            responder: None,
            lacks: Some(BTreeSet::new()),
            started: now,
            nudged: false,
            next_session: 1,
            resync_at: u64::MAX,
            resync_every: resync_interval,
            start_credit: RECON_STARTS_BURST * RECON_START_EVERY_MS,
            credit_at: now,
        }
    }

    /// Numbers a new session of ours and schedules the next one after the current interval.
    pub(crate) fn next_id(&mut self, now: u64) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.resync_at = now + self.resync_every;
        id
    }

    /// A reconciliation (ours or the peer's) starts at `now`: receipt recovery counts from
    /// here.
    pub(crate) fn begin(&mut self, now: u64) {
        self.lacks = Some(BTreeSet::new());
        self.started = now;
    }

    /// The peer lacks these (found by the running reconciliation).
    pub(crate) fn note_lacking(&mut self, ids: &[EnvelopeId]) {
        if let Some(lacks) = &mut self.lacks {
            lacks.extend(ids.iter().copied());
            if lacks.len() > MAX_SESSION_LACKS {
                self.lacks = None;
            }
        }
    }

    /// The reconciliation ended: what it found lacking and when it started, once (`None`
    /// if it found too much to tell, or was already taken).
    pub(crate) fn take_lacking(&mut self) -> Option<(BTreeSet<EnvelopeId>, u64)> {
        self.lacks.take().map(|l| (l, self.started))
    }

    /// Our session ended at `now`; `quiet` if it found nothing new either way. Backs off
    /// while quiet, resets otherwise.
    pub(crate) fn finished(&mut self, quiet: bool, base: u64, now: u64) {
        self.resync_every = if quiet {
            (self.resync_every * 2).min(base * RESYNC_BACKOFF_MAX_FACTOR)
        } else {
            base
        };
        self.resync_at = now + self.resync_every;
    }

    /// True if our session has been outstanding a whole interval past its resync time (the
    /// peer went silent): it is abandoned.
    pub(crate) fn stalled(&self, now: u64, interval: u64) -> bool {
        self.initiator.is_some() && self.resync_at + interval <= now
    }
}

impl<S: Store> Engine<S> {
    /// Starts our reconciliation on an outbound link over its session tags.
    pub(crate) fn start_recon(&mut self, link: LinkId) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.ready() || !l.outbound {
            return;
        }
        let id = l.sessions.next_id(now);
        let digest = wire::tags_digest(&l.tags);
        let budget = work_budget(self.replica.store(), &l.tags);
        match recon::Session::initiate(l.tags.clone(), self.replica.store()) {
            Ok(mut s) => {
                s.limit_work(budget);
                let mut frames = Vec::new();
                while let Some(m) = s.poll_transmit() {
                    frames.push(Frame::Recon {
                        session: id,
                        tags: digest,
                        message: m,
                    });
                }
                let l = self.links.get_mut(&link).expect("present");
                l.sessions.initiator = Some((id, s));
                l.sessions.begin(now);
                for f in frames {
                    l.frames_out.push_back(f.encode());
                }
            }
            Err(e) => tracing::error!(%link, error = %e, "cannot start reconciliation"),
        }
    }

    pub(crate) fn on_recon(&mut self, link: LinkId, session: u64, tags: [u8; 4], message: &[u8]) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let digest = wire::tags_digest(&l.tags);
        if digest != tags {
            tracing::debug!(%link, outbound = l.outbound, session, "reconciliation on another tag list: ignored");
            // Built on another tag list (an intro crossed it in flight): ignore it, and send our
            // intro again (once per tag list), which makes the initiator start over on the
            // tags both sides will then share. Otherwise it would wait for the stalled
            // session to expire (a minute), holding back whatever the peer lacks.
            if !l.outbound {
                l.sessions.responder = None;
                if !l.sessions.nudged {
                    l.sessions.nudged = true;
                    self.send_intro(link);
                }
            }
            return;
        }
        let is_initiator = l.outbound
            && l.sessions
                .initiator
                .as_ref()
                .is_some_and(|(id, _)| *id == session);
        let mut s = if is_initiator {
            l.sessions.initiator.take().map(|(_, s)| s)
        } else if l.outbound {
            // A reply to a session we already replaced: ignore it.
            return;
        } else {
            match l.sessions.responder.take() {
                Some((id, s)) if id == session => Some(s),
                other => {
                    if !l.sessions.may_start(now) {
                        // Too many new sessions: ignored (the one running, if any, stays).
                        l.sessions.responder = other;
                        self.counters.recon_starts_ignored += 1;
                        return;
                    }
                    l.sessions.begin(now);
                    let mut s = recon::Session::respond(l.tags.clone());
                    s.limit_work(work_budget(self.replica.store(), &l.tags));
                    Some(s)
                }
            }
        }
        .expect("session");
        let before = s.work_left();
        let r = s.handle_message(self.replica.store(), message);
        self.counters.recon_work += before - s.work_left();
        if let Err(e) = r {
            return self.fault(link, Fault::Recon(e));
        }
        let mut frames = Vec::new();
        while let Some(m) = s.poll_transmit() {
            frames.push(Frame::Recon {
                session,
                tags: digest,
                message: m,
            });
        }
        let mut haves = Vec::new();
        while let Some((_, id)) = s.poll_have() {
            haves.push(id);
        }
        let done = s.is_done();
        let stats = s.stats();
        let base = self.config.resync_interval_ms;
        let l = self.links.get_mut(&link).expect("present");
        for f in frames {
            l.frames_out.push_back(f.encode());
        }
        l.sessions.note_lacking(&haves);
        if !done {
            if is_initiator {
                l.sessions.initiator = Some((session, s));
            } else {
                l.sessions.responder = Some((session, s));
            }
        } else {
            if is_initiator {
                // Nothing new either way (one exchange, no pushes): back off; else reset.
                let quiet =
                    stats.messages_sent <= 2 && stats.messages_received == 1 && haves.is_empty();
                l.sessions.finished(quiet, base, now);
            }
            self.events.push_back(Event::Reconciled { link, stats });
            self.recover_receipts(link);
        }
        // Announce rather than push: a device reconciling with several peers at once (a
        // partition healing) then receives each missing envelope once, from whoever it asks.
        let max = self.config.max_push_queue;
        if let Some(l) = self.links.get_mut(&link) {
            for id in haves {
                l.push.announce(id, max);
            }
        }
    }
}

/// The store items a session over `tags` may visit ([`RECON_WORK_PER_ITEM`]).
fn work_budget<S: Store>(store: &S, tags: &[vaarta_sync::ids::Tag]) -> u64 {
    let held: u64 = tags.iter().map(|t| store.summary(t).count).sum();
    RECON_WORK_BASE + RECON_WORK_PER_ITEM * held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sessions_come_in_a_bounded_burst_then_at_a_bounded_rate() {
        let mut s = Sessions::new(0, 100);
        let burst = (0..10).filter(|_| s.may_start(0)).count() as u64;
        assert_eq!(burst, RECON_STARTS_BURST);
        assert!(!s.may_start(RECON_START_EVERY_MS - 1));
        assert!(s.may_start(RECON_START_EVERY_MS));
        assert!(!s.may_start(RECON_START_EVERY_MS));
    }

    #[test]
    fn quiet_reconciliations_back_off_up_to_a_bound_and_reset() {
        let mut s = Sessions::new(0, 100);
        let mut seen = Vec::new();
        for _ in 0..5 {
            s.finished(true, 100, 0);
            seen.push(s.resync_at);
        }
        assert_eq!(seen, vec![200, 400, 400, 400, 400]);
        s.finished(false, 100, 1000);
        assert_eq!(s.resync_at, 1100);
    }

    #[test]
    fn sessions_are_numbered_and_schedule_the_next() {
        let mut s = Sessions::new(0, 100);
        assert_eq!(s.resync_at, u64::MAX);
        assert_eq!(s.next_id(10), 1);
        assert_eq!(s.resync_at, 110);
        assert_eq!(s.next_id(20), 2);
    }

    #[test]
    fn lacking_list_is_bounded_and_taken_once() {
        let mut s = Sessions::new(5, 100);
        s.note_lacking(&[EnvelopeId([1; 32])]);
        let (l, started) = s.take_lacking().unwrap();
        assert_eq!((l.len(), started), (1, 5));
        assert!(s.take_lacking().is_none());
        s.begin(9);
        let many: Vec<EnvelopeId> = (0..=MAX_SESSION_LACKS as u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_be_bytes());
                EnvelopeId(b)
            })
            .collect();
        s.note_lacking(&many);
        assert!(s.take_lacking().is_none(), "too many to tell: given up");
    }

    #[test]
    fn a_session_stalls_one_interval_after_its_resync_time() {
        let mut s = Sessions::new(0, 100);
        s.next_id(0);
        s.initiator = Some((1, recon::Session::respond(Vec::new())));
        assert!(!s.stalled(199, 100));
        assert!(s.stalled(200, 100));
    }
}
