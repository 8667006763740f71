//! The export format: round trip, every kind of tamper refused (by a carrier, and by a
//! dishonest exporter who re-signs the file), bounds refused before allocation.

use super::*;
use crate::identity::Identity;
use crate::page::Draft;
use crate::replica::Replica;
use crate::replica::testing::joined_pair;
use crate::store::MemoryStore;
use crate::store::testing::FindEnvelope;

const T0: u64 = 1_764_000_000_000;

fn alice() -> Identity {
    Identity::from_seed([1; 32])
}

fn pass<S: Store, T: Store>(
    from: &Replica<S>,
    to: &mut Replica<T>,
    ids: &[crate::ids::EnvelopeId],
    now: u64,
) {
    for e in ids {
        let bytes = from.store().find_envelope(e).unwrap().unwrap();
        to.ingest(&bytes, now).unwrap();
    }
}

use crate::store::Store;

fn draft(body: &str) -> Draft {
    Draft {
        body: body.into(),
        ..Draft::default()
    }
}

/// A conversation of two members with messages both ways, an edit, a deletion and a
/// reaction; the export `a` makes of it and `a`'s own view.
fn exported() -> (Vec<u8>, Vec<DocMessage>, ConversationId) {
    let (mut a, mut b, c) = joined_pair(MemoryStore::new(), T0);
    let mut t = T0 + 1000;
    let mut to_b = Vec::new();
    let mut to_a = Vec::new();
    for body in ["boat 1 leaves at dawn", "पानी का स्तर बढ़ रहा है", "third"]
    {
        t += 1000;
        to_b.push(a.send_message(&c, draft(body), t).unwrap().1);
    }
    pass(&a, &mut b, &to_b, t);
    let (m1, e) = b.send_message(&c, draft("ack from b"), t + 1).unwrap();
    to_a.push(e);
    let (m2, e) = b.send_message(&c, draft("typo"), t + 2).unwrap();
    to_a.push(e);
    to_a.push(b.edit_message(&c, &m2, "fixed", t + 3).unwrap());
    let (m3, e) = b.send_message(&c, draft("to delete"), t + 4).unwrap();
    to_a.push(e);
    to_a.push(b.delete_message(&c, &m3, t + 5).unwrap());
    pass(&b, &mut a, &to_a, t + 6);
    a.react(&c, &m1, Some("👍"), t + 7).unwrap();
    let x = a.export_conversation(&c, t + 10).unwrap();
    let view = x.verified.messages.clone();
    assert_eq!(view.len(), 6, "{view:#?}");
    (x.bytes, view, c)
}

/// The file with its document replaced and re-signed by the exporter (a dishonest exporter).
fn resigned(bytes: &[u8], edit: impl FnOnce(&mut DocInfo, &mut Vec<DocMessage>)) -> Vec<u8> {
    let p = parse(bytes).unwrap();
    let (mut info, mut msgs) = read_document(p.document).unwrap();
    edit(&mut info, &mut msgs);
    let signed: Vec<SignedContent> = p.signed.iter().map(|s| decode_signed(s).unwrap()).collect();
    write(&p.header, &build_document(&info, &msgs), &signed, &alice()).unwrap()
}

/// The file with its signed changes edited and re-signed by the exporter.
fn resigned_changes(bytes: &[u8], edit: impl FnOnce(&mut Vec<SignedContent>)) -> Vec<u8> {
    let p = parse(bytes).unwrap();
    let mut signed: Vec<SignedContent> =
        p.signed.iter().map(|s| decode_signed(s).unwrap()).collect();
    edit(&mut signed);
    write(&p.header, p.document, &signed, &alice()).unwrap()
}

#[test]
fn an_export_verifies_and_shows_what_the_log_shows() {
    let (mut a, mut b, c) = joined_pair(MemoryStore::new(), T0);
    let e = a.send_message(&c, draft("hello"), T0 + 10).unwrap().1;
    pass(&a, &mut b, &[e], T0 + 10);
    let e = b.send_message(&c, draft("hi back"), T0 + 20).unwrap().1;
    pass(&b, &mut a, &[e], T0 + 20);
    let x = a.export_conversation(&c, T0 + 30).unwrap();
    let v = verify(&x.bytes).unwrap();
    assert_eq!(v, x.verified);
    assert_eq!(v.header.exporter, a.device_id());
    assert_eq!(v.header.conversation, c);
    assert_eq!(v.header.created_ms, T0 + 30);
    let log = a.messages(&c, usize::MAX).unwrap();
    let got: Vec<(String, Option<DeviceId>, u64, String)> = v
        .messages
        .iter()
        .map(|m| (m.id.clone(), m.author, m.sent_at_ms, m.body.clone()))
        .collect();
    let want: Vec<(String, Option<DeviceId>, u64, String)> = log
        .iter()
        .map(|m| {
            (
                m.view.id.to_string(),
                m.author,
                m.view.sent_at.ms,
                m.view.body.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].1, Some(a.device_id()));
    assert_eq!(got[1].1, Some(b.device_id()));
    assert_eq!(v.signers.keys().copied().collect::<Vec<_>>().len(), 2);
    assert_eq!(v.not_shown, 0);
    // The same export made by the other member shows the same messages.
    let y = b.export_conversation(&c, T0 + 40).unwrap();
    assert_eq!(
        y.verified
            .messages
            .iter()
            .map(|m| &m.body)
            .collect::<Vec<_>>(),
        v.messages.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
}

#[test]
fn edits_deletions_and_reactions_are_exported_and_verified() {
    let (bytes, view, _) = exported();
    let v = verify(&bytes).unwrap();
    assert_eq!(v.messages, view);
    let fixed = v.messages.iter().find(|m| m.body == "fixed").unwrap();
    assert!(fixed.edited_at_ms.is_some());
    assert!(v.messages.iter().any(|m| m.deleted && m.body.is_empty()));
    assert!(
        v.messages
            .iter()
            .any(|m| m.reactions.len() == 1 && m.reactions[0].1 == "👍")
    );
}

#[test]
fn no_epoch_key_is_in_the_file() {
    let (mut a, _b, c) = joined_pair(MemoryStore::new(), T0);
    a.send_message(&c, draft("secret-ish"), T0 + 10).unwrap();
    let bytes = a.export_conversation(&c, T0 + 30).unwrap().bytes;
    let keys = a.conversation_keys_for_tests(&c);
    assert!(keys.len() >= 2);
    for k in &keys {
        assert!(
            !bytes.windows(32).any(|w| w == k),
            "a conversation key is in the export"
        );
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let (bytes, _, _) = exported();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= bit;
            assert!(
                verify(&t).is_err(),
                "flip {bit:#x} at {i} of {} verified",
                bytes.len()
            );
        }
    }
}

#[test]
fn every_truncation_and_appended_byte_is_refused() {
    let (bytes, _, _) = exported();
    for n in 0..bytes.len() {
        let e = verify(&bytes[..n]).unwrap_err();
        assert!(
            matches!(e, ExportError::Truncated | ExportError::NotAnExport),
            "cut at {n}: {e}"
        );
    }
    let mut t = bytes.clone();
    t.push(0);
    assert_eq!(verify(&t).unwrap_err(), ExportError::TrailingBytes);
}

#[test]
fn a_file_signed_by_another_key_than_its_header_names_is_refused() {
    let (bytes, _, _) = exported();
    let p = parse(&bytes).unwrap();
    let signed: Vec<SignedContent> = p.signed.iter().map(|s| decode_signed(s).unwrap()).collect();
    let other = Identity::from_seed([2; 32]);
    let t = write(&p.header, p.document, &signed, &other).unwrap();
    assert_eq!(verify(&t).unwrap_err(), ExportError::BadSignature);
}

#[test]
fn a_dishonest_exporter_cannot_change_a_message_and_re_sign() {
    let (bytes, view, _) = exported();
    let b_dev = Identity::from_seed([2; 32]).device_id();
    let a_dev = alice().device_id();
    // The author of a message swapped to the other member.
    let t = resigned(&bytes, |_, m| {
        let i = m.iter().position(|x| x.author == Some(a_dev)).unwrap();
        m[i].author = Some(b_dev);
    });
    let e = verify(&t).unwrap_err();
    assert!(
        matches!(
            e,
            ExportError::Mismatch {
                field: "author",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("says author"), "{e}");
    // The text.
    let t = resigned(&bytes, |_, m| m[0].body.push('!'));
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch { field: "body", .. }
    ));
    // The time.
    let t = resigned(&bytes, |_, m| m[0].sent_at_ms += 1);
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch {
            field: "sent_at_ms",
            ..
        }
    ));
    // An edit hidden, a deletion undone, a reaction added.
    let t = resigned(&bytes, |_, m| {
        let f = m.iter_mut().find(|x| x.edited_at_ms.is_some()).unwrap();
        f.edited_at_ms = None;
    });
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch {
            field: "edited_at_ms",
            ..
        }
    ));
    let t = resigned(&bytes, |_, m| {
        let f = m.iter_mut().find(|x| x.deleted).unwrap();
        f.deleted = false;
    });
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch {
            field: "deleted",
            ..
        }
    ));
    let t = resigned(&bytes, |_, m| {
        m[0].reactions.push(("00".into(), "😀".into()))
    });
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch {
            field: "reactions",
            ..
        }
    ));
    // A message nobody signed.
    let t = resigned(&bytes, |_, m| {
        let mut x = m[0].clone();
        x.id = format!("0.{}", "0".repeat(14) + &x.id[x.id.len() - 16..]);
        m.insert(0, x);
    });
    assert!(matches!(verify(&t).unwrap_err(), ExportError::NotSigned(_)));
    // Reordered, or shown twice.
    let t = resigned(&bytes, |_, m| m.swap(0, 1));
    assert!(matches!(verify(&t).unwrap_err(), ExportError::Order(_)));
    let t = resigned(&bytes, |_, m| {
        let x = m[0].clone();
        m.push(x);
    });
    assert!(matches!(verify(&t).unwrap_err(), ExportError::Order(_)));
    // The header's conversation and exporter are the document's.
    let t = resigned(&bytes, |i, _| i.exported_at_ms += 1);
    assert!(matches!(
        verify(&t).unwrap_err(),
        ExportError::Mismatch { .. }
    ));
    // Leaving messages out is the exporter's choice: it verifies and says so.
    let t = resigned(&bytes, |_, m| {
        m.pop();
    });
    let v = verify(&t).unwrap();
    assert_eq!(v.not_shown, 1);
    assert_eq!(v.messages.len(), view.len() - 1);
}

#[test]
fn a_dishonest_exporter_cannot_forge_or_reattribute_a_signed_change() {
    let (bytes, _, _) = exported();
    let b_dev = Identity::from_seed([2; 32]).device_id();
    let a_dev = alice().device_id();
    // Payload, salt, header, signature, signer: each refused by the author's signature.
    type Edit = fn(&mut SignedContent, DeviceId);
    let edits: [(&str, Edit); 5] = [
        ("payload", |s, _| {
            let n = s.payload.len();
            s.payload[n - 1] ^= 1
        }),
        ("salt", |s, _| s.salt[0] ^= 1),
        ("header", |s, _| s.header[1] ^= 1 << 2),
        ("signature", |s, _| s.signature[5] ^= 1),
        ("signer", |s, other| s.signer = other),
    ];
    for (what, edit) in edits {
        let t = resigned_changes(&bytes, |v| {
            let s = v.iter_mut().find(|s| s.signer == a_dev).unwrap();
            edit(s, b_dev);
        });
        let e = verify(&t).unwrap_err();
        assert!(matches!(e, ExportError::Signed { .. }), "{what}: {e}");
    }
    // A signed change dropped: the messages it made are in no signed change.
    let t = resigned_changes(&bytes, |v| {
        v.remove(v.len() - 1);
    });
    assert!(verify(&t).is_err());
}

fn with_records(records: &[(u8, u32, &[u8])], count: u64) -> Vec<u8> {
    let h = Header {
        exporter: alice().device_id(),
        created_ms: 1,
        conversation: ConversationId([7; 16]),
    };
    let mut out = h.encode().to_vec();
    for (t, len, body) in records {
        out.push(*t);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
    }
    out.push(RECORD_END);
    out.extend_from_slice(&count.to_be_bytes());
    let hash = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&hash);
    out.extend_from_slice(&alice().sign(&signed_message(&hash)));
    out
}

#[test]
fn oversized_claims_are_refused_before_anything_is_read() {
    // A document claiming 4 GiB, in a file of a hundred bytes.
    let t = with_records(&[(RECORD_DOCUMENT, u32::MAX, b"")], 1);
    assert_eq!(
        parse(&t).unwrap_err(),
        ExportError::RecordTooLarge {
            what: "document",
            len: u32::MAX as u64,
            max: MAX_DOCUMENT_BYTES
        }
    );
    let t = with_records(
        &[
            (RECORD_DOCUMENT, 1, b"x"),
            (RECORD_SIGNED, MAX_SIGNED_BYTES as u32 + 1, b""),
        ],
        2,
    );
    assert!(matches!(
        parse(&t).unwrap_err(),
        ExportError::RecordTooLarge {
            what: "signed change",
            ..
        }
    ));
    // A claim within the bound but past the end of the file.
    let t = with_records(&[(RECORD_DOCUMENT, 1 << 20, b"")], 1);
    assert_eq!(parse(&t).unwrap_err(), ExportError::Truncated);
    // A file over the whole bound is refused by its length alone.
    let big = vec![0u8; MAX_EXPORT_BYTES as usize + 1];
    assert_eq!(parse(&big).unwrap_err(), ExportError::TooLarge);
}

#[test]
fn structure_errors_are_named() {
    let t = with_records(&[(RECORD_DOCUMENT, 1, b"x")], 2);
    assert_eq!(
        parse(&t).unwrap_err(),
        ExportError::Count { said: 2, found: 1 }
    );
    let t = with_records(&[(9, 1, b"x")], 1);
    assert_eq!(parse(&t).unwrap_err(), ExportError::UnknownRecord(9));
    let t = with_records(&[(RECORD_SIGNED, 1, b"x")], 1);
    assert!(matches!(parse(&t).unwrap_err(), ExportError::Malformed(_)));
    let t = with_records(&[(RECORD_DOCUMENT, 1, b"x"), (RECORD_DOCUMENT, 1, b"y")], 2);
    assert!(matches!(parse(&t).unwrap_err(), ExportError::Malformed(_)));
    let t = with_records(&[(RECORD_DOCUMENT, 0, b"")], 1);
    assert_eq!(
        parse(&t).unwrap_err(),
        ExportError::Malformed("an empty record")
    );
    let t = with_records(&[], 0);
    assert_eq!(
        parse(&t).unwrap_err(),
        ExportError::Malformed("no document")
    );
    // Structure fine, document not Automerge: named.
    let t = with_records(&[(RECORD_DOCUMENT, 3, b"abc")], 1);
    assert!(matches!(verify(&t).unwrap_err(), ExportError::Document(_)));
    // A foreign file, another version, a bundle.
    assert_eq!(
        parse(b"%PDF-1.7 and more bytes").unwrap_err(),
        ExportError::NotAnExport
    );
    let mut v = with_records(&[(RECORD_DOCUMENT, 1, b"x")], 1);
    v[9] = 2;
    assert_eq!(parse(&v).unwrap_err(), ExportError::Version(2));
    let mut bundle = b"\x89VBNDL\r\n".to_vec();
    bundle.extend_from_slice(&[0; 200]);
    assert_eq!(parse(&bundle).unwrap_err(), ExportError::NotAnExport);
}

/// Every envelope `from` holds under the conversation's tag, for `to`.
fn pass_all<S: Store, T: Store>(
    from: &Replica<S>,
    to: &mut Replica<T>,
    c: &ConversationId,
    now: u64,
) {
    let tag = from.conversation(c).unwrap().tag;
    let mut ids = Vec::new();
    from.store()
        .for_each_id(&tag, &[0; 32], &mut |e| {
            ids.push(*e);
            true
        })
        .unwrap();
    for e in ids {
        if let Some(b) = from
            .store()
            .envelope(&tag, &e)
            .unwrap()
            .filter(|b| !b.is_empty())
        {
            let _ = to.ingest(&b, now);
        }
    }
}

#[test]
fn a_conversation_with_an_equivocating_member_exports_what_the_log_shows() {
    let (mut a, mut b, c) = joined_pair(MemoryStore::new(), T0);
    let e = b.send_message(&c, draft("before"), T0 + 100).unwrap().1;
    pass(&b, &mut a, &[e], T0 + 100);
    // The same device state twice: one sequence number, two changes.
    let mut twin =
        Replica::open(Identity::from_seed([2; 32]), b.store().clone(), [77; 32]).unwrap();
    let x = b.send_message(&c, draft("fork x"), T0 + 200).unwrap().1;
    let y = twin.send_message(&c, draft("fork y"), T0 + 200).unwrap().1;
    pass(&b, &mut a, &[x], T0 + 300);
    pass(&twin, &mut a, &[y], T0 + 300);
    assert_eq!(a.info(&c).unwrap().equivocators, vec![b.device_id()]);
    let shown: Vec<String> = a
        .messages(&c, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.view.body)
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    let x = a.export_conversation(&c, T0 + 400).unwrap();
    let bodies: Vec<String> = x.verified.messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, shown);
    // Both forks in one export (B's own and its twin's signed changes together, re-signed by
    // the exporter): the page cannot be put together, and the verifier says so.
    let mut both: Vec<SignedContent> = Vec::new();
    for r in [&mut b, &mut twin] {
        let e = r.export_conversation(&c, T0 + 400).unwrap().bytes;
        for s in parse(&e).unwrap().signed {
            let s = decode_signed(s).unwrap();
            if !both.contains(&s) {
                both.push(s);
            }
        }
    }
    let p = parse(&x.bytes).unwrap();
    let t = write(&p.header, p.document, &both, &alice()).unwrap();
    let e = verify(&t).unwrap_err();
    assert!(matches!(e, ExportError::Rebuild { page: 0, .. }), "{e}");
}

#[test]
fn a_removed_members_late_edit_is_exported_as_the_log_shows_it() {
    let (mut a, mut b, c) = joined_pair(MemoryStore::new(), T0);
    let (m, e) = b.send_message(&c, draft("from b"), T0 + 100).unwrap();
    pass(&b, &mut a, &[e], T0 + 100);
    // B edits and reacts after A removed it, before it learns of it.
    a.remove_member(&c, b.device_id(), T0 + 200).unwrap();
    let late = [
        b.edit_message(&c, &m, "rewritten", T0 + 210).unwrap(),
        b.react(&c, &m, Some("👍"), T0 + 220).unwrap(),
    ];
    pass(&b, &mut a, &late, T0 + 300);
    let shown = a.messages(&c, 10).unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].view.body, "from b");
    let x = a.export_conversation(&c, T0 + 400).unwrap();
    assert_eq!(x.verified.messages.len(), 1);
    assert_eq!(x.verified.messages[0].body, "from b");
    assert_eq!(x.verified.messages[0].edited_at_ms, None);
    assert!(x.verified.messages[0].reactions.is_empty());
    // B's own export still shows its edit: each device exports what it shows.
    pass_all(&a, &mut b, &c, T0 + 500);
    let y = b.export_conversation(&c, T0 + 600);
    assert!(y.is_ok(), "{y:?}");
}
