//! Helpers the sync integration tests share (each test file includes this module).
#![allow(dead_code)]

use vaarta_sync::identity::Identity;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::page::Draft;
use vaarta_sync::replica::Replica;
use vaarta_sync::store::testing::FindEnvelope;
use vaarta_sync::store::{MemoryStore, Store};

/// A replica over an in-memory store whose identity and storage seed are `[n; 32]`.
pub fn replica(n: u8) -> Replica<MemoryStore> {
    Replica::open(Identity::from_seed([n; 32]), MemoryStore::new(), [n; 32]).unwrap()
}

/// A plain message with `s` as its body.
pub fn text(s: &str) -> Draft {
    Draft {
        body: s.into(),
        ..Draft::default()
    }
}

/// Every non-tombstone envelope a replica holds, in store order.
pub fn envelopes(r: &Replica<MemoryStore>) -> Vec<Vec<u8>> {
    let st = r.store();
    let mut out = Vec::new();
    for (tag, _) in st.tags() {
        let mut ids = Vec::new();
        st.for_each_id(&tag, &[0; 32], &mut |id| {
            ids.push(*id);
            true
        })
        .unwrap();
        for id in ids {
            let b = st.find_envelope(&id).unwrap().unwrap();
            if !b.is_empty() {
                out.push(b);
            }
        }
    }
    out
}

/// The bodies of the newest 1,000 messages of `c`, oldest first.
pub fn bodies(r: &mut Replica<MemoryStore>, c: &ConversationId) -> Vec<String> {
    r.messages(c, 1000)
        .unwrap()
        .into_iter()
        .map(|m| m.view.body)
        .collect()
}
