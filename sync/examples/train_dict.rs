//! Regenerates the shared zstd dictionary for Automerge changes (`sync/dict/changes-v1.zdict`).
//!
//! The dictionary is a protocol constant: every node must have the same bytes. Changing it
//! means a new compression method number (see `compress.rs`), or comes with a new envelope
//! version (as this one did with envelope version 2), never an edit in place.
//!
//! Samples are single-message changes as `Page` writes them, in wire form (`wirechange`), from many authors, with text
//! from `sample::Chatter` (seed 1; benchmarks measure with other seeds).

use automerge::ActorId;
use vaarta_sync::hlc::Hlc;
use vaarta_sync::page::{Draft, Page};
use vaarta_sync::sample::Chatter;

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sync/dict/changes-v1.zdict".into());
    let mut chatter = Chatter::new(1);
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for author in 0..40u8 {
        let actor = *blake3::hash(&[author]).as_bytes();
        let mut page = Page::new(0, ActorId::from(&actor[..16]));
        for i in 0..100u64 {
            let draft = Draft {
                body: chatter.message(40 + (i as usize * 37) % 160),
                precedence: vaarta_sync::envelope::Precedence::from_u8((i % 4) as u8).unwrap(),
                expiry: (i % 3 == 0).then_some(1_790_000_000 + i * 60),
                ..Draft::default()
            };
            let hlc = Hlc {
                ms: 1_790_000_000_000 + i * 7919 + u64::from(author) * 13,
                counter: (i % 3) as u16,
            };
            page.add_message(hlc, &draft).unwrap();
            let change = page.commit().unwrap();
            // Envelopes carry changes in wire form (no header, no actor): train on that.
            let wire = vaarta_sync::wirechange::strip(change.raw_bytes(), &actor[..16]).unwrap();
            samples.push(wire);
        }
    }
    let dict = zstd::dict::from_samples(&samples, 8 * 1024).expect("training");
    std::fs::write(&out, &dict).expect("write dictionary");
    let raw: usize = samples.iter().map(|s| s.len()).sum();
    println!(
        "{} samples, {} bytes on average; dictionary {} bytes -> {out}",
        samples.len(),
        raw / samples.len(),
        dict.len()
    );
}
