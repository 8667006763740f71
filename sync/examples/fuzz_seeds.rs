//! Rewrites the envelope fuzz target's valid change envelope
//! (`fuzz/seeds/envelope/change-envelope`) for the current envelope format. It is sealed with
//! the key, conversation and signer that `fuzz/fuzz_targets/envelope.rs` opens with, so
//! fuzzing starts past the AEAD and the signature; its payload is page 0 and the committed
//! wire-form change seed.
//!
//! `cargo run -p vaarta-sync --example fuzz_seeds`

use vaarta_sync::envelope::{self, Header, Kind, Precedence};
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::{ConversationId, EpochId, Tag};

fn main() {
    let dir = std::path::Path::new("fuzz/seeds/envelope");
    let wire = std::fs::read(dir.join("wire-change")).expect("fuzz/seeds/envelope/wire-change");
    let mut payload = vec![0u8]; // page 0
    payload.extend_from_slice(&wire);
    let header = Header {
        kind: Kind::Change,
        precedence: Precedence::Routine,
        tag: Tag([4; 16]),
        epoch: EpochId([1, 2, 3, 4]),
        expiry: Some(1_900_000_000),
    };
    let env = envelope::seal(
        &header,
        &[7; 32],
        &ConversationId([1; 16]),
        &Identity::from_seed([1; 32]),
        Hlc::default(),
        &payload,
        [3; 12],
    );
    std::fs::write(dir.join("change-envelope"), env.bytes()).expect("write the seed");
    println!("change-envelope: {} bytes", env.bytes().len());
}
