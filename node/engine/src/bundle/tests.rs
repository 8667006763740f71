use super::format::*;
use vaarta_sync::identity::Identity;

fn header(id: &Identity) -> Header {
    Header {
        exporter: id.device_id(),
        created_ms: 1_790_000_000_000,
        for_: For::Relay,
        since_ms: 0,
    }
}

fn bundle(id: &Identity, records: &[Vec<u8>]) -> Vec<u8> {
    let (mut w, mut out) = Writer::new(&header(id), MAX_BUNDLE_BYTES);
    for r in records {
        out.extend(w.record(r).unwrap());
    }
    out.extend(w.finish(id));
    out
}

/// Reads a whole bundle fed in pieces of `step` bytes.
fn read(bytes: &[u8], step: usize) -> Result<Vec<Item>, BundleError> {
    let mut r = Reader::new();
    let mut items = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        r.feed(piece, &mut items)?;
    }
    r.finish()?;
    Ok(items)
}

fn records() -> Vec<Vec<u8>> {
    vec![vec![1; 10], vec![2; 300], vec![3; 1]]
}

#[test]
fn round_trip_in_any_pieces() {
    let id = Identity::from_seed([7; 32]);
    let b = bundle(&id, &records());
    assert_eq!(
        b.len(),
        HEADER_LEN + records().iter().map(|r| 5 + r.len()).sum::<usize>() + TRAILER_LEN
    );
    for step in [1, 2, 7, 91, 4096] {
        let items = read(&b, step).unwrap();
        assert_eq!(items[0], Item::Header(header(&id)));
        let got: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|i| match i {
                Item::Envelope(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, records());
        assert!(matches!(items.last(), Some(Item::End { count: 3, .. })));
    }
}

#[test]
fn every_flipped_byte_is_refused_before_the_end() {
    let id = Identity::from_seed([7; 32]);
    let b = bundle(&id, &records());
    for i in 0..b.len() {
        let mut t = b.clone();
        t[i] ^= 0x01;
        let r = read(&t, 64);
        assert!(r.is_err(), "byte {i} flipped was accepted");
        // Nothing ends verified.
        if let Ok(items) = r {
            assert!(!items.iter().any(|x| matches!(x, Item::End { .. })));
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let id = Identity::from_seed([7; 32]);
    let b = bundle(&id, &records());
    for n in 0..b.len() {
        let e = read(&b[..n], 13).unwrap_err();
        if n == 0 {
            assert_eq!(e, BundleError::NotABundle);
        } else {
            assert_eq!(e, BundleError::Truncated, "cut at {n}");
        }
    }
}

#[test]
fn a_bundle_signed_by_another_key_than_its_header_names_is_refused() {
    let a = Identity::from_seed([7; 32]);
    let mallory = Identity::from_seed([8; 32]);
    let (mut w, mut out) = Writer::new(&header(&a), MAX_BUNDLE_BYTES);
    out.extend(w.record(&[1; 10]).unwrap());
    out.extend(w.finish(&mallory));
    assert_eq!(read(&out, 64).unwrap_err(), BundleError::BadSignature);
}

#[test]
fn foreign_files_versions_and_trailing_bytes_are_named() {
    let id = Identity::from_seed([7; 32]);
    assert_eq!(
        read(b"PK\x03\x04 a zip file, not a bundle", 5).unwrap_err(),
        BundleError::NotABundle
    );
    let mut b = bundle(&id, &records());
    b[9] = 2;
    assert_eq!(read(&b, 64).unwrap_err(), BundleError::Version(2));
    let mut b = bundle(&id, &records());
    b.push(0);
    assert_eq!(read(&b, 64).unwrap_err(), BundleError::TrailingBytes);
}

#[test]
fn a_record_over_the_envelope_limit_is_refused_before_it_is_read() {
    let id = Identity::from_seed([7; 32]);
    let mut b = header(&id).encode().to_vec();
    b.push(RECORD_ENVELOPE);
    b.extend_from_slice(&((MAX_ENVELOPE_BYTES + 1) as u32).to_be_bytes());
    // Only the length: the reader refuses without waiting for (or allocating) the body.
    let mut r = Reader::new();
    let mut items = Vec::new();
    assert_eq!(
        r.feed(&b, &mut items).unwrap_err(),
        BundleError::RecordTooLarge(MAX_ENVELOPE_BYTES as u64 + 1)
    );
    // A writer will not write one either.
    let (mut w, _) = Writer::new(&header(&id), MAX_BUNDLE_BYTES);
    assert!(matches!(
        w.record(&vec![0; MAX_ENVELOPE_BYTES + 1]),
        Err(BundleError::RecordTooLarge(_))
    ));
}

#[test]
fn chunk_records_are_reserved_and_refused_by_version_1() {
    let id = Identity::from_seed([7; 32]);
    let mut b = header(&id).encode().to_vec();
    b.push(RECORD_CHUNK);
    let mut r = Reader::new();
    assert_eq!(
        r.feed(&b, &mut Vec::new()).unwrap_err(),
        BundleError::UnknownRecord(RECORD_CHUNK)
    );
    // The error is final.
    assert!(r.feed(&[0], &mut Vec::new()).is_err());
}

#[test]
fn a_writer_stops_at_its_byte_budget_and_the_bundle_stays_valid() {
    let id = Identity::from_seed([7; 32]);
    let budget = (HEADER_LEN + TRAILER_LEN + 2 * (5 + 100)) as u64;
    let (mut w, mut out) = Writer::new(&header(&id), budget);
    out.extend(w.record(&[1; 100]).unwrap());
    out.extend(w.record(&[2; 100]).unwrap());
    assert_eq!(w.record(&[3; 100]).unwrap_err(), BundleError::Full(budget));
    assert_eq!(w.len_when_finished(), budget);
    out.extend(w.finish(&id));
    assert_eq!(out.len() as u64, budget);
    assert_eq!(read(&out, 64).unwrap().len(), 4);
}

#[test]
fn checkpoints_agree_between_two_reads_of_the_same_bytes_only() {
    let id = Identity::from_seed([7; 32]);
    let b = bundle(&id, &records());
    let checkpoints = |bytes: &[u8]| {
        let mut r = Reader::with_checkpoints(1);
        let mut items = Vec::new();
        for piece in bytes.chunks(3) {
            let _ = r.feed(piece, &mut items);
        }
        items
            .into_iter()
            .filter_map(|i| match i {
                Item::Checkpoint { records, hash } => Some((records, hash)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let h1 = checkpoints(&b);
    assert_eq!(h1.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(h1, checkpoints(&b));
    let mut t = b.clone();
    t[HEADER_LEN + 5 + 10 + 5 + 1] ^= 1; // inside the second record
    let h2 = checkpoints(&t);
    assert_eq!(h1[0], h2[0]);
    assert_ne!(h1[1], h2[1]);
}
