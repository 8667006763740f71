//! Sneakernet bundles between engines that never link (issue 16): export, carry, re-export,
//! import; refusal of tampered, truncated, foreign-signed and oversized bundles with nothing
//! stored; idempotence; resuming a cut import; the carry quota for a bundle's exporter.

mod common;

use common::*;
use vaarta_engine::Config;
use vaarta_engine::bundle::format::{self, BundleError, HEADER_LEN, MAX_BUNDLE_BYTES};
use vaarta_engine::bundle::{For, ImportError, Selection, Tally};
use vaarta_engine::testing::Network;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::store::Store;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn everything() -> Selection {
    Selection {
        conversations: Vec::new(),
        since_ms: 0,
        for_: For::Anyone,
    }
}

fn export(e: &Engine, sel: &Selection, now: u64) -> Vec<u8> {
    let mut out = Vec::new();
    e.export_bundle::<std::convert::Infallible>(sel, MAX_BUNDLE_BYTES, now, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

fn import(e: &mut Engine, bytes: &[u8], now: u64) -> Result<Tally, ImportError> {
    let r = e.import_bundle(bytes, now).map(|(_, t)| t);
    e.flush(now).unwrap();
    r
}

/// Three devices of one team; A and C share a conversation with `n` messages from A in it
/// (C has not received anything); B is in no conversation. Nobody is linked, ever.
fn three(n: usize) -> (Network, ConversationId, Vec<String>) {
    let mut net = Network::new(3);
    let c = invite(&mut net, A, C, "camp");
    let now = net.now;
    let mut sent = Vec::new();
    for i in 0..n {
        let body = format!("embankment breach report {i}");
        net.nodes[A].send_message(&c, text(&body), now).unwrap();
        sent.push(body);
        if i.is_multiple_of(7) {
            net.nodes[A].flush(now).unwrap();
        }
    }
    net.nodes[A].flush(now).unwrap();
    (net, c, sent)
}

/// What a device holds, for "nothing changed" checks: every tag's set of ids (envelopes
/// and tombstones, as the reconciliation summary of the set), and what it carries.
type Held = (Vec<(vaarta_sync::ids::Tag, u64, [u8; 32])>, u64, usize);

fn held(e: &Engine) -> Held {
    let s = e.replica().store();
    let sets = s
        .tags()
        .iter()
        .map(|(t, sum)| (*t, sum.count, sum.sum))
        .collect();
    let u = e.replica().carried_usage();
    (sets, u.bytes, u.envelopes)
}

/// The message bodies a device shows in `c` (none if it does not hold `c`).
fn shown(e: &mut Engine, c: &ConversationId) -> Vec<String> {
    if e.replica().conversation(c).is_none() {
        return Vec::new();
    }
    bodies(e, c)
}

/// Every envelope `from` holds under `c`'s tag is held by `to` too.
fn holds_all_of(net: &Network, to: usize, from: usize, c: &ConversationId) -> bool {
    let tag = conversation_tag(net, from, c);
    let mut all = true;
    net.nodes[from]
        .replica()
        .store()
        .for_each_id(&tag, &[0; 32], &mut |id| {
            all &= matches!(net.nodes[to].replica().store().envelope_len(&tag, id), Ok(Some(n)) if n > 0);
            true
        })
        .unwrap();
    all
}

#[test]
fn three_devices_that_never_link_pass_messages_by_a_carrier() {
    let (mut net, c, sent) = three(20);
    let now = net.now;
    // A exports everything it holds.
    let a_bundle = export(&net.nodes[A], &everything(), now);
    // B, not a member, imports: it carries what it cannot read.
    let t = import(&mut net.nodes[B], &a_bundle, now).unwrap();
    assert!(t.new > 0 && t.refused == 0, "{t:?}");
    assert_eq!(t.new, t.waiting, "B reads nothing: {t:?}");
    assert!(net.nodes[B].conversations().is_empty());
    assert_eq!(
        net.nodes[B].replica().carried_usage().envelopes as u64,
        t.new
    );
    // B re-exports for a relay (everything it carries); C imports and reads A's messages.
    let relay = Selection {
        for_: For::Relay,
        ..everything()
    };
    let b_bundle = export(&net.nodes[B], &relay, now + 1);
    let t = import(&mut net.nodes[C], &b_bundle, now + 2).unwrap();
    assert_eq!(t.refused, 0, "{t:?}");
    assert_eq!(bodies(&mut net.nodes[C], &c), sent);
    assert!(holds_all_of(&net, C, A, &c));
    // And back: C answers, exports for A's device; A imports and shows the answer.
    net.nodes[C]
        .send_message(&c, text("received, sending boats"), now + 3)
        .unwrap();
    net.nodes[C].flush(now + 3).unwrap();
    let for_a = Selection {
        for_: For::Device(net.nodes[A].device_id()),
        ..everything()
    };
    let c_bundle = export(&net.nodes[C], &for_a, now + 4);
    import(&mut net.nodes[A], &c_bundle, now + 5).unwrap();
    assert_eq!(
        bodies(&mut net.nodes[A], &c).last().map(String::as_str),
        Some("received, sending boats")
    );
    // No link was ever up.
    assert!(net.nodes.iter().all(|e| e.links().is_empty()));
    assert_eq!(net.frames_delivered, 0);
}

#[test]
fn a_bundle_for_a_device_holds_only_what_it_may_read_or_carry() {
    let (mut net, c, _) = three(3);
    let now = net.now;
    // A second conversation A is in without B or C.
    let other = net.nodes[A]
        .create_conversation("admins", vaarta_sync::membership::History::Shared, now)
        .unwrap()
        .0;
    net.nodes[A]
        .send_message(&other, text("private"), now)
        .unwrap();
    net.nodes[A].flush(now).unwrap();
    let for_c = Selection {
        for_: For::Device(net.nodes[C].device_id()),
        ..everything()
    };
    let plan = net.nodes[A].bundle_plan(&for_c, now).unwrap();
    let tag_c = conversation_tag(&net, A, &c);
    let tag_other = conversation_tag(&net, A, &other);
    assert!(plan.iter().any(|(t, _)| *t == tag_c));
    assert!(!plan.iter().any(|(t, _)| *t == tag_other));
    // --conversation narrows; --since drops what A can tell is older.
    let only = Selection {
        conversations: vec![other],
        ..everything()
    };
    let plan = net.nodes[A].bundle_plan(&only, now).unwrap();
    assert!(!plan.is_empty() && plan.iter().all(|(t, _)| *t == tag_other));
    let later = Selection {
        since_ms: now + 1,
        ..only
    };
    assert!(net.nodes[A].bundle_plan(&later, now).unwrap().is_empty());
}

#[test]
fn tampered_truncated_foreign_signed_and_oversized_bundles_are_refused_and_nothing_is_stored() {
    let (mut net, c, sent) = three(10);
    let now = net.now;
    let good = export(&net.nodes[A], &everything(), now);
    let before = held(&net.nodes[C]);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let truncated = good[..good.len() - 30].to_vec();
    // The same records, signed by B while the header names A.
    let forged = {
        let mut rest = good[..good.len() - 64].to_vec();
        let hash: [u8; 32] = rest[rest.len() - 32..].try_into().unwrap();
        let mut m = format::BUNDLE_DOMAIN.to_vec();
        m.extend_from_slice(&hash);
        rest.extend_from_slice(&Identity::from_seed([B as u8 + 1; 32]).sign(&m));
        rest
    };
    let oversized = {
        let mut b = good[..HEADER_LEN].to_vec();
        b.push(format::RECORD_ENVELOPE);
        b.extend_from_slice(&((format::MAX_ENVELOPE_BYTES + 1) as u32).to_be_bytes());
        b.extend(std::iter::repeat_n(0u8, format::MAX_ENVELOPE_BYTES + 1));
        b
    };
    for (name, bad, want) in [
        ("flipped", &flipped, None),
        ("truncated", &truncated, Some(BundleError::Truncated)),
        ("forged", &forged, Some(BundleError::BadSignature)),
        (
            "oversized",
            &oversized,
            Some(BundleError::RecordTooLarge(
                format::MAX_ENVELOPE_BYTES as u64 + 1,
            )),
        ),
        (
            "foreign",
            &b"%PDF-1.7 relief list".to_vec(),
            Some(BundleError::NotABundle),
        ),
    ] {
        match import(&mut net.nodes[C], bad, now) {
            Err(ImportError::Bundle(e)) => {
                if let Some(w) = want {
                    assert_eq!(e, w, "{name}");
                }
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(held(&net.nodes[C]), before, "{name} stored something");
        assert!(shown(&mut net.nodes[C], &c).is_empty(), "{name}");
    }
    // The engine goes on: the good bundle is taken.
    import(&mut net.nodes[C], &good, now).unwrap();
    assert_eq!(bodies(&mut net.nodes[C], &c), sent);
}

#[test]
fn importing_twice_changes_nothing() {
    let (mut net, c, sent) = three(30);
    let now = net.now;
    let bundle = export(&net.nodes[A], &everything(), now);
    for node in [B, C] {
        let first = import(&mut net.nodes[node], &bundle, now).unwrap();
        let after = held(&net.nodes[node]);
        let second = import(&mut net.nodes[node], &bundle, now + 1).unwrap();
        assert_eq!(held(&net.nodes[node]), after, "node {node}");
        assert_eq!(second.new, 0, "{second:?}");
        assert_eq!(second.already_held, first.new, "{first:?} then {second:?}");
    }
    assert_eq!(bodies(&mut net.nodes[C], &c), sent);
}

#[test]
fn an_import_cut_halfway_and_run_again_ends_in_the_same_state() {
    let (mut net, c, sent) = three(40);
    let now = net.now;
    let bundle = export(&net.nodes[A], &everything(), now);
    // Half the records taken and flushed, then a power cut before the rest.
    let mut records = Vec::new();
    let mut r = format::Reader::new();
    let mut items = Vec::new();
    r.feed(&bundle, &mut items).unwrap();
    for i in items {
        if let format::Item::Envelope(e) = i {
            records.push(e);
        }
    }
    let exporter = net.nodes[A].device_id();
    let half = records.len() / 2;
    net.nodes[C]
        .handle_bundle_records(exporter, &records[..half], now)
        .unwrap();
    net.nodes[C].flush(now).unwrap();
    net.nodes[C]
        .handle_bundle_records(exporter, &records[half..], now)
        .unwrap();
    // Not flushed: the power goes.
    restart_after_crash(&mut net, C);
    import(&mut net.nodes[C], &bundle, now + 1).unwrap();
    assert_eq!(bodies(&mut net.nodes[C], &c), sent);
    assert!(holds_all_of(&net, C, A, &c));
}

#[test]
fn a_carriers_import_over_the_relay_quota_refuses_and_counts_the_excess() {
    // B carries at most 40 KB, of which one origin (the bundle's exporter) a quarter.
    let mut net = Network::with(3, |i| Config {
        relay_max_bytes: if i == B {
            40_000
        } else {
            Config::default().relay_max_bytes
        },
        ..named(i)
    });
    let c = invite(&mut net, A, C, "camp");
    let now = net.now;
    for i in 0..60 {
        // ~600-byte messages, one envelope each.
        let body = format!("{i:03} {}", "x".repeat(600));
        net.nodes[A].send_message(&c, text(&body), now).unwrap();
        net.nodes[A].flush(now).unwrap();
    }
    let bundle = export(&net.nodes[A], &everything(), now);
    let t = import(&mut net.nodes[B], &bundle, now).unwrap();
    let usage = net.nodes[B].replica().carried_usage();
    assert!(t.refused > 0, "{t:?}");
    assert_eq!(
        t.reasons.get(vaarta_engine::bundle::REASON_QUOTA).copied(),
        Some(t.refused),
        "{t:?}"
    );
    assert_eq!(t.new, usage.envelopes as u64, "{t:?} {usage:?}");
    assert!(usage.bytes <= 40_000 / 4, "{usage:?}");
    // The refused ones are not stored: B's store holds exactly what it reports.
    let held_envelopes: usize = net.nodes[B]
        .replica()
        .store()
        .tags()
        .iter()
        .map(|(t, _)| {
            let mut n = 0;
            net.nodes[B]
                .replica()
                .store()
                .for_each_id(t, &[0; 32], &mut |id| {
                    n += usize::from(
                        net.nodes[B]
                            .replica()
                            .store()
                            .envelope_len(t, id)
                            .unwrap()
                            .unwrap_or(0)
                            > 0,
                    );
                    true
                })
                .unwrap();
            n
        })
        .sum();
    assert_eq!(held_envelopes as u64, t.new);
    // Again: nothing changes, the excess is refused again.
    let again = import(&mut net.nodes[B], &bundle, now + 1).unwrap();
    assert_eq!(again.new, 0, "{again:?}");
    assert_eq!(net.nodes[B].replica().carried_usage(), usage);
}
