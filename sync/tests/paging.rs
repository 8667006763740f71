//! Paging back through a conversation: `Replica::messages_before` from the newest message
//! down to an empty answer, across pages, two authors, an edit and a deletion, and a reopen.

mod common;
use common::{envelopes, replica, text};
use vaarta_sync::identity::Identity;
use vaarta_sync::ids::ConversationId;
use vaarta_sync::limits::PAGE_CAPACITY;
use vaarta_sync::membership::History;
use vaarta_sync::page::MessageId;
use vaarta_sync::replica::{CommandError, MessageInfo, Replica};
use vaarta_sync::store::{MemoryStore, Store};

const T0: u64 = 1_790_000_000_000;

fn sync(from: &Replica<MemoryStore>, to: &mut Replica<MemoryStore>, now: u64) {
    for b in envelopes(from) {
        let _ = to.ingest(&b, now);
    }
}

/// Two members writing in turns, 50 messages a batch, until the conversation spans more
/// than two pages; one message edited and one deleted. Returns (writer, reader, conv).
fn spread() -> (Replica<MemoryStore>, Replica<MemoryStore>, ConversationId) {
    let mut a = replica(1);
    let mut b = replica(2);
    let (c, _) = a
        .create_conversation("paging", History::Shared, T0)
        .unwrap();
    a.add_member(&c, b.device_id(), false, T0 + 1).unwrap();
    sync(&a, &mut b, T0 + 2);
    let n = u64::from(PAGE_CAPACITY) * 3;
    let mut first = None;
    let mut t = T0 + 10;
    for batch in 0..n / 50 {
        let w = if batch % 2 == 0 { &mut a } else { &mut b };
        for i in 0..50 {
            t += 1;
            let m = w
                .stage_message(&c, text(&format!("b{batch} m{i}")), t)
                .unwrap();
            first.get_or_insert(m);
        }
        w.seal_staged(t).unwrap();
        sync(&a, &mut b, t);
        sync(&b, &mut a, t);
    }
    let first = first.unwrap();
    let newest = a.messages(&c, 1).unwrap().pop().unwrap().view.id;
    a.edit_message(&c, &first, "edited", t + 1).unwrap();
    a.delete_message(&c, &newest, t + 2).unwrap();
    sync(&a, &mut b, t + 3);
    let pages = b.info(&c).unwrap().pages;
    assert!(pages >= 3, "the test needs several pages, got {pages}");
    (a, b, c)
}

/// Pages back in steps of `step` from the newest `step` until an empty answer.
fn page_back(r: &mut Replica<MemoryStore>, c: &ConversationId, step: usize) -> Vec<MessageInfo> {
    let mut got = r.messages(c, step).unwrap();
    loop {
        let oldest = got[0].view.id.clone();
        let older = r.messages_before(c, &oldest, step).unwrap();
        if older.is_empty() {
            return got;
        }
        assert!(older.len() <= step);
        got.splice(0..0, older);
    }
}

fn check_paging(r: &mut Replica<MemoryStore>, c: &ConversationId) {
    let all = r.messages(c, 5000).unwrap();
    assert!(all.len() > 2 * PAGE_CAPACITY as usize);
    // Every message once, in order, with the same views (names, envelope ids, edits, deletions).
    assert_eq!(page_back(r, c, 7), all);
    assert!(all.iter().any(|m| m.view.body == "edited"));
    assert!(all.last().unwrap().view.deleted);
    // A step that divides nothing evenly and one larger than a page.
    assert_eq!(page_back(r, c, 300), all);
    // Each answer is exactly the `limit` messages just before `before`.
    let i = all.len() - 100;
    let before = r.messages_before(c, &all[i].view.id, 40).unwrap();
    assert_eq!(before, all[i - 40..i]);
    assert!(r.messages_before(c, &all[0].view.id, 7).unwrap().is_empty());
    assert!(r.messages_before(c, &all[i].view.id, 0).unwrap().is_empty());
}

#[test]
fn paging_back_in_steps_of_seven_yields_every_message_once_in_order() {
    let (mut a, mut b, c) = spread();
    check_paging(&mut a, &c);
    check_paging(&mut b, &c);
}

#[test]
fn paging_back_is_the_same_after_a_reopen() {
    let (_a, mut b, c) = spread();
    let before_reopen = page_back(&mut b, &c, 7);
    b.store_mut().flush().unwrap();
    let store = b.into_store();
    let mut b = Replica::open(Identity::from_seed([2; 32]), store, [2; 32]).unwrap();
    assert_eq!(page_back(&mut b, &c, 7), before_reopen);
    check_paging(&mut b, &c);
}

#[test]
fn before_an_unknown_message_is_an_error_not_an_empty_page() {
    let (mut a, _b, c) = spread();
    let real = a.messages(&c, 1).unwrap().pop().unwrap().view.id;
    let top = a.info(&c).unwrap().pages;
    let mut other_key = real.key.clone();
    // A well-formed key nobody wrote: the same author, another time.
    other_key.replace_range(0..1, if other_key.starts_with('0') { "1" } else { "0" });
    let unknown = [
        MessageId {
            page: real.page,
            key: other_key,
        },
        MessageId {
            page: top as u32 + 5,
            key: real.key.clone(),
        },
        MessageId {
            page: u32::MAX,
            key: real.key.clone(),
        },
    ];
    for id in &unknown {
        assert_eq!(
            a.messages_before(&c, id, 10),
            Err(CommandError::NoSuchMessage(id.to_string())),
            "{id}"
        );
    }
    // A message of another conversation is not one of this conversation's.
    let (d, _) = a
        .create_conversation("other", History::Shared, T0 + 1)
        .unwrap();
    let (elsewhere, _) = a.send_message(&d, text("elsewhere"), T0 + 2).unwrap();
    assert!(matches!(
        a.messages_before(&c, &elsewhere, 10),
        Err(CommandError::NoSuchMessage(_))
    ));
    assert_eq!(
        a.messages_before(&ConversationId([9; 16]), &real, 10),
        Err(CommandError::NoSuchConversation)
    );
}
