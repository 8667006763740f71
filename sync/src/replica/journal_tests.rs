//! The journal (`l/`), own messages kept with their pages (no `m/` records), stores written
//! before issue 11, crashes at every write of a checkpoint, and the global page bound.

use super::page_cache::{JOURNAL_MAX, decode_saved};
use super::*;
use crate::store::MemoryStore;
use crate::store::testing::Faulty;

const T0: u64 = 1_790_000_000_000;

fn me() -> Identity {
    Identity::from_seed([1; 32])
}

fn open(st: MemoryStore) -> Replica<MemoryStore> {
    Replica::open(me(), st, [1; 32]).unwrap()
}

fn draft(i: usize) -> Draft {
    Draft {
        body: format!("message {i}"),
        ..Draft::default()
    }
}

/// A conversation with `n` messages sent one by one (each flushed, as the node acknowledges
/// them): the replica and every (message, envelope) pair.
fn filled(
    n: usize,
) -> (
    Replica<MemoryStore>,
    ConversationId,
    Vec<(MessageId, EnvelopeId)>,
) {
    let mut r = open(MemoryStore::new());
    let (c, _) = r.create_conversation("t", History::Shared, T0).unwrap();
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(r.send_message(&c, draft(i), T0 + 1 + i as u64).unwrap());
        r.store_mut().flush().unwrap();
    }
    (r, c, sent)
}

/// Every message of `c` is there with the envelope that carried it.
fn assert_envelopes<S: Store>(
    r: &mut Replica<S>,
    c: &ConversationId,
    sent: &[(MessageId, EnvelopeId)],
    when: &str,
) {
    let shown = r.messages(c, 100_000).unwrap();
    let got: BTreeMap<MessageId, Option<EnvelopeId>> =
        shown.into_iter().map(|m| (m.view.id, m.envelope)).collect();
    assert_eq!(got.len(), sent.len(), "{when}: every message is shown");
    for (m, e) in sent {
        assert_eq!(got.get(m), Some(&Some(*e)), "{when}: envelope of {m}");
    }
}

fn count(st: &impl Store, prefix: &[u8]) -> usize {
    let mut n = 0;
    st.scan_prefix(prefix, &mut |_, _| {
        n += 1;
        true
    })
    .unwrap();
    n
}

#[test]
fn own_envelopes_hold_before_and_after_checkpoint_and_restart_with_no_m_records() {
    // Past JOURNAL_MAX: page 0 is saved whole by its journal, page 1 still journalled.
    let n = JOURNAL_MAX as usize + 40;
    let (mut r, c, sent) = filled(n);
    assert_eq!(
        count(r.store(), keys::OWN_MESSAGE),
        0,
        "no m/ record is written"
    );
    assert_envelopes(&mut r, &c, &sent, "before checkpoint");
    assert!(r.journal_len() > 0);
    assert_eq!(count(r.store(), keys::JOURNAL), r.journal_len());
    r.checkpoint().unwrap();
    assert_eq!(r.journal_len(), 0);
    assert_eq!(count(r.store(), keys::JOURNAL), 0);
    assert_envelopes(&mut r, &c, &sent, "after checkpoint");
    r.store_mut().flush().unwrap();
    let mut again = open(r.into_store());
    assert_envelopes(&mut again, &c, &sent, "after a restart");
    assert_eq!(count(again.store(), keys::OWN_MESSAGE), 0);
    assert_eq!(count(again.store(), keys::LEGACY_JOURNAL), 0);
}

#[test]
fn own_envelopes_come_back_from_the_journal_after_a_crash() {
    let (mut r, c, sent) = filled(30);
    // Not acknowledged: lost in the crash, and nothing else with them.
    r.send_message(&c, draft(99), T0 + 99).unwrap();
    assert!(r.store().unflushed() > 0);
    let mut st = r.into_store();
    st.crash();
    let mut again = open(st);
    assert_eq!(
        again.journal_len(),
        30,
        "the page was never saved: all journalled"
    );
    assert_envelopes(&mut again, &c, &sent, "after a crash before checkpoint");
    // And the next checkpoint saves the pairs with the page.
    again.checkpoint().unwrap();
    again.store_mut().flush().unwrap();
    let mut third = open(again.into_store());
    assert_eq!(third.journal_len(), 0);
    assert_envelopes(&mut third, &c, &sent, "after checkpoint and restart");
}

#[test]
fn the_journal_resumes_numbering_past_every_entry_and_keeps_other_pages() {
    let (r, c, sent) = filled(5);
    let mut st = r.store().clone();
    st.crash();
    let mut again = open(st);
    // New entries go after the old ones (replay order is application order).
    let (m, e) = again.send_message(&c, draft(5), T0 + 50).unwrap();
    let mut seqs = Vec::new();
    again
        .store()
        .scan_prefix(keys::JOURNAL, &mut |k, v| {
            seqs.push(keys::parse_journal(k, v).unwrap().0);
            true
        })
        .unwrap();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(seqs.len(), 6);
    let mut all = sent.clone();
    all.push((m, e));
    assert_envelopes(&mut again, &c, &all, "after resuming");
    drop(r);
}

/// Rewrites a store the way the version before issue 11 kept it: `m/` records for every own
/// message, journal entries under `j/` ‖ conversation ‖ page ‖ seq, saved pages without
/// their own list.
fn to_legacy(st: &mut MemoryStore, c: &ConversationId, sent: &[(MessageId, EnvelopeId)]) {
    for (m, e) in sent {
        st.put(&keys::own_message(c, m), &e.0).unwrap();
    }
    let mut journal = Vec::new();
    st.scan_prefix(keys::JOURNAL, &mut |k, v| {
        journal.push((k.to_vec(), keys::parse_journal(k, v).unwrap()));
        true
    })
    .unwrap();
    for (k, (seq, jc, p, e)) in journal {
        st.delete(&k).unwrap();
        st.put(&keys::legacy_journal(&jc, p, seq), &e.0).unwrap();
    }
    let mut pages = Vec::new();
    st.scan_prefix(&keys::pages_prefix(c), &mut |k, v| {
        pages.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    let actor = me().device_id().actor();
    for (k, v) in pages {
        let (own, doc) = decode_saved(&v, actor.to_bytes()).unwrap();
        assert!(own.is_some());
        st.put(&k, doc).unwrap();
    }
    st.flush().unwrap();
}

#[test]
fn a_store_written_before_issue_11_keeps_its_envelopes_and_sheds_its_m_records() {
    let n = JOURNAL_MAX as usize + 20;
    let (r, c, sent) = filled(n);
    let mut st = r.into_store();
    to_legacy(&mut st, &c, &sent);
    assert_eq!(count(&st, keys::OWN_MESSAGE), n);
    assert_eq!(count(&st, keys::LEGACY_JOURNAL), 20);
    assert_eq!(count(&st, keys::JOURNAL), 0);
    let mut old = open(st);
    // The journal moved at open, under the same seqs.
    assert_eq!(count(old.store(), keys::LEGACY_JOURNAL), 0);
    assert_eq!(count(old.store(), keys::JOURNAL), 20);
    assert_envelopes(&mut old, &c, &sent, "from a pre-change store");
    // A restart before any checkpoint reads the same.
    old.store_mut().flush().unwrap();
    let mut old = open(old.into_store());
    assert_envelopes(&mut old, &c, &sent, "from a pre-change store, restarted");
    // Saving the loaded pages folds the m/ records into them and deletes the records.
    old.checkpoint().unwrap();
    assert_eq!(count(old.store(), keys::OWN_MESSAGE), 0);
    assert_eq!(count(old.store(), keys::JOURNAL), 0);
    assert_envelopes(&mut old, &c, &sent, "after the checkpoint");
    old.store_mut().flush().unwrap();
    let mut new = open(old.into_store());
    assert_envelopes(&mut new, &c, &sent, "migrated and restarted");
}

/// Cuts the power after every number of writes a checkpoint of `st` makes, and checks that
/// the store that is left opens with every message and its envelope. Returns how many cuts
/// fell inside the checkpoint.
fn crash_every_write_of_a_checkpoint(
    st: &MemoryStore,
    c: &ConversationId,
    sent: &[(MessageId, EnvelopeId)],
) -> usize {
    for budget in 0..10_000 {
        let store = Faulty::new(st);
        let mut r = Replica::open(me(), store.clone(), [1; 32]).unwrap();
        // Load every page (as the API does), then cut the power `budget` writes into the
        // checkpoint.
        r.messages(c, 100_000).unwrap();
        r.store_mut().flush().unwrap();
        store.cut_power_after(Some(budget));
        let done = r.checkpoint().is_ok();
        drop(r);
        let mut again = open(store.left());
        assert_envelopes(&mut again, c, sent, &format!("cut after {budget} writes"));
        if done {
            assert_eq!(
                again.journal_len(),
                0,
                "a finished checkpoint leaves no journal"
            );
            assert_eq!(count(again.store(), keys::OWN_MESSAGE), 0);
            return budget;
        }
    }
    unreachable!("the checkpoint never finished")
}

#[test]
fn a_power_cut_at_any_write_of_a_checkpoint_loses_nothing() {
    let (r, c, sent) = filled(24);
    let st = r.into_store();
    // The page, then 24 journal deletions.
    assert_eq!(crash_every_write_of_a_checkpoint(&st, &c, &sent), 25);
    // A store from before issue 11: the page, 24 journal deletions, 24 m/ deletions (after
    // the open that moved its journal, flushed).
    let mut old = st.clone();
    to_legacy(&mut old, &c, &sent);
    let mut moved = open(old);
    moved.store_mut().flush().unwrap();
    let moved = moved.into_store();
    assert_eq!(crash_every_write_of_a_checkpoint(&moved, &c, &sent), 49);
}

#[test]
fn a_power_cut_while_the_journal_moves_loses_nothing() {
    let (r, c, sent) = filled(12);
    let mut old = r.into_store();
    to_legacy(&mut old, &c, &sent);
    // 12 entries moved, each a put and a delete.
    for budget in 0..=24 {
        let store = Faulty::new(&old);
        store.cut_power_after(Some(budget));
        // The open fails once writes fail; what it wrote before stays.
        let opened = Replica::open(me(), store.clone(), [1; 32]);
        assert_eq!(opened.is_ok(), budget == 24, "cut at {budget}");
        drop(opened);
        let mut again = open(store.left());
        assert_envelopes(
            &mut again,
            &c,
            &sent,
            &format!("journal move cut at {budget}"),
        );
        assert_eq!(count(again.store(), keys::LEGACY_JOURNAL), 0);
        assert_eq!(count(again.store(), keys::JOURNAL), 12);
    }
}

#[test]
fn the_global_page_bound_holds_across_conversations_and_evicted_pages_reload_whole() {
    const CAP: usize = 3;
    let config = Config {
        max_loaded_pages: CAP,
        ..Config::default()
    };
    let mut r = Replica::open_with_config(me(), MemoryStore::new(), [1; 32], config).unwrap();
    let mut convs = Vec::new();
    for i in 0..8u64 {
        let (c, _) = r.create_conversation("t", History::Shared, T0 + i).unwrap();
        let mut sent = Vec::new();
        for j in 0..5 {
            sent.push(
                r.send_message(&c, draft(j), T0 + 100 + i * 10 + j as u64)
                    .unwrap(),
            );
            assert!(r.loaded_pages() <= CAP, "{} pages loaded", r.loaded_pages());
        }
        convs.push((c, sent));
    }
    r.store_mut().flush().unwrap();
    // Read every conversation twice over: each read loads an evicted page again.
    for _ in 0..2 {
        for (c, sent) in &convs {
            assert_envelopes(&mut r, c, sent, "after eviction");
            assert!(r.loaded_pages() <= CAP);
        }
    }
    // Pages with staged ops stay loaded past the bound until they are sealed.
    for (j, (c, _)) in convs.iter().enumerate() {
        r.stage_message(c, draft(100 + j), T0 + 10_000 + j as u64)
            .unwrap();
    }
    assert_eq!(
        r.loaded_pages(),
        convs.len(),
        "staged pages are not evicted"
    );
    let sealed = r.seal_staged(T0 + 20_000).unwrap();
    assert_eq!(sealed.len(), convs.len());
    let (c0, _) = &convs[0];
    r.messages(c0, 10).unwrap();
    assert!(r.loaded_pages() <= CAP, "{} pages loaded", r.loaded_pages());
    // Everything, staged-then-sealed messages included, survives a restart.
    r.store_mut().flush().unwrap();
    let mut again = Replica::open_with_config(me(), r.into_store(), [1; 32], config).unwrap();
    for (c, sent) in &convs {
        assert_eq!(again.messages(c, 100).unwrap().len(), sent.len() + 1);
        assert_envelopes_subset(&mut again, c, sent);
    }
}

#[test]
fn pages_only_read_are_bounded_apart_from_the_pages_being_written() {
    let config = Config {
        max_read_pages: 2,
        ..Config::default()
    };
    let mut r = Replica::open_with_config(me(), MemoryStore::new(), [1; 32], config).unwrap();
    let mut convs = Vec::new();
    for i in 0..8u64 {
        let (c, _) = r.create_conversation("t", History::Shared, T0 + i).unwrap();
        convs.push((c, Vec::new()));
    }
    // Messages to each conversation in turn: the pages written stay loaded (none is saved
    // and reloaded per message), past the bound of the pages only read.
    for j in 0..3 {
        for (i, (c, sent)) in convs.iter_mut().enumerate() {
            sent.push(
                r.send_message(c, draft(j), T0 + 100 + (j * 8 + i) as u64)
                    .unwrap(),
            );
        }
    }
    assert_eq!(r.loaded_pages(), convs.len(), "the pages written stay");
    assert_eq!(r.journal_len(), 3 * convs.len(), "and none was saved whole");
    r.store_mut().flush().unwrap();
    // After a restart every page is only read: reading all eight keeps at most two.
    let mut again = Replica::open_with_config(me(), r.into_store(), [1; 32], config).unwrap();
    for _ in 0..2 {
        for (c, sent) in &convs {
            assert_envelopes(&mut again, c, sent, "read after restart");
            assert!(again.loaded_pages() <= 2, "{} loaded", again.loaded_pages());
        }
    }
    // A page read, then written to, leaves the read-only count: it stays beside two others.
    let (c0, sent0) = &mut convs[0];
    sent0.push(again.send_message(c0, draft(9), T0 + 1_000).unwrap());
    let (c1, sent1) = &convs[1];
    assert_envelopes(&mut again, c1, sent1, "read after a write");
    let (c2, sent2) = &convs[2];
    assert_envelopes(&mut again, c2, sent2, "read after a write");
    assert_eq!(again.loaded_pages(), 3);
    let (c0, sent0) = &convs[0];
    assert_envelopes(&mut again, c0, sent0, "the written page");
}

/// `sent` are among `c`'s messages with their envelopes (others may be there too).
fn assert_envelopes_subset<S: Store>(
    r: &mut Replica<S>,
    c: &ConversationId,
    sent: &[(MessageId, EnvelopeId)],
) {
    let got: BTreeMap<MessageId, Option<EnvelopeId>> = r
        .messages(c, 100_000)
        .unwrap()
        .into_iter()
        .map(|m| (m.view.id, m.envelope))
        .collect();
    for (m, e) in sent {
        assert_eq!(got.get(m), Some(&Some(*e)), "envelope of {m}");
    }
}
