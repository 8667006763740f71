//! Malformed content *behind a valid signature* (THREATS A3): a member seals arbitrary bytes
//! as a change envelope of a real conversation; the receiving replica must refuse it with an
//! error (decompression, Automerge parsing, page rules) and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vaarta_sync::envelope::{self, Header, Kind, Precedence};
use vaarta_sync::hlc::Hlc;
use vaarta_sync::identity::Identity;
use vaarta_sync::membership::History;
use vaarta_sync::replica::Replica;
use vaarta_sync::store::{MemoryStore, Store};
use vaarta_sync::store::testing::FindEnvelope;

const T0: u64 = 1_790_000_000_000;

struct Fixture {
    envelopes: Vec<Vec<u8>>,
    conv: vaarta_sync::ids::ConversationId,
    tag: vaarta_sync::ids::Tag,
    epoch: vaarta_sync::ids::EpochId,
    key: [u8; 32],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut a =
            Replica::open(Identity::from_seed([1; 32]), MemoryStore::new(), [1; 32]).unwrap();
        let (conv, _) = a.create_conversation("fuzz", History::Shared, T0).unwrap();
        a.add_member(&conv, Identity::from_seed([2; 32]).device_id(), false, T0)
            .unwrap();
        let mut envelopes = Vec::new();
        for (t, _) in a.store().tags() {
            let mut ids = Vec::new();
            a.store()
                .for_each_id(&t, &[0; 32], &mut |i| {
                    ids.push(*i);
                    true
                })
                .unwrap();
            for i in ids {
                envelopes.push(a.store().find_envelope(&i).unwrap().unwrap());
            }
        }
        let c = a.conversation(&conv).unwrap();
        let (epoch, key) = c.sending_epoch().unwrap();
        Fixture {
            envelopes,
            conv,
            tag: c.tag,
            epoch,
            key,
        }
    })
}

/// Panics that our code catches on purpose (the Automerge panic boundary) are handled
/// errors, not crashes: silence the abort-on-panic hook so only *uncaught* panics (which
/// libfuzzer-sys still turns into aborts) count as findings.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let f = fixture();
    let mut b = Replica::open(Identity::from_seed([2; 32]), MemoryStore::new(), [2; 32]).unwrap();
    for e in &f.envelopes {
        let _ = b.ingest(e, T0);
    }
    let alice = Identity::from_seed([1; 32]);
    let header = Header {
        kind: Kind::Change,
        precedence: Precedence::Routine,
        tag: f.tag,
        epoch: f.epoch,
        expiry: None,
    };
    let env = envelope::seal(
        &header,
        &f.key,
        &f.conv,
        &alice,
        Hlc {
            ms: T0 + 1,
            counter: 0,
        },
        data,
        [3; vaarta_sync::envelope::SALT_LEN],
    );
    let _ = b.ingest(env.bytes(), T0 + 2);
    let _ = b.ingest_batch(&[env.bytes()], T0 + 3);
    let _ = b.messages(&f.conv, 10);
});
