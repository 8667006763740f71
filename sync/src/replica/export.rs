//! The exporter's side of a signed export (`crate::export`, docs/export.md): the messages
//! as `vaarta log` shows them, in an Automerge document, and what their authors signed, taken
//! out of the envelopes this device holds. The file is verified here before it is handed
//! back, so a device never writes an export a verifier would refuse.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};

use automerge::ChangeHash;
use thiserror::Error;

use crate::codec::Reader;
use crate::envelope::{self, Envelope, Kind, SignedContent};
use crate::export::{self, DocInfo, DocMessage, ExportError, Header};
use crate::ids::ConversationId;
use crate::replica::{CommandError, Replica, decode_changes};
use crate::store::{Store, StoreError};

/// Why an export was not written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExportFailed {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The file would not pass [`export::verify`] (or is over a bound): not written.
    #[error("this conversation cannot be exported as it stands here: {0}")]
    Unverifiable(ExportError),
}

/// What [`Replica::export_conversation`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub bytes: Vec<u8>,
    pub verified: export::Verified,
}

impl<S: Store> Replica<S> {
    /// A signed export of conversation `id` at `now_ms`: every message `vaarta log` shows,
    /// and the signed content of every change envelope of the conversation this device can
    /// open. Verified before it is returned.
    pub fn export_conversation(
        &mut self,
        id: &ConversationId,
        now_ms: u64,
    ) -> Result<Exported, ExportFailed> {
        let t0 = std::time::Instant::now();
        let msgs = self.messages(id, usize::MAX)?;
        eprintln!("messages {:?}", t0.elapsed());
        let info = self.info(id).ok_or(CommandError::NoSuchConversation)?;
        let c = self.convs.get(id).ok_or(CommandError::NoSuchConversation)?;
        let messages: Vec<DocMessage> = msgs
            .into_iter()
            .map(|m| {
                let v = m.view;
                DocMessage {
                    id: v.id.to_string(),
                    author: m.author,
                    author_name: m.author_name,
                    sent_at_ms: v.sent_at.ms,
                    body: v.body,
                    reply_to: v.reply_to.map(|r| r.to_string()),
                    precedence: v.precedence,
                    expires_at_ms: v.expiry.and_then(|x| x.checked_mul(1000)),
                    edited_at_ms: v.edited_at.map(|h| h.ms),
                    deleted: v.deleted,
                    reactions: v.reactions,
                }
            })
            .collect();
        let mut ids = Vec::new();
        self.store.for_each_id(&c.tag, &[0; 32], &mut |e| {
            ids.push(*e);
            true
        })?;
        let mut signed: Vec<SignedContent> = Vec::new();
        for e in ids {
            let Some(bytes) = self.store.envelope(&c.tag, &e)? else {
                continue;
            };
            // Tombstones (refused envelopes) are empty; membership operations carry no message.
            let Ok(env) = Envelope::decode(&bytes) else {
                continue;
            };
            if env.header().kind != Kind::Change {
                continue;
            }
            let Some(key) = c.read_key(&env.header().epoch) else {
                continue; // not readable here: nothing of it is shown either
            };
            if let Ok(s) = envelope::open_signed(&env, key, &c.id, &mut |h| c.signers(h)) {
                signed.push(s);
            }
        }
        eprintln!("opened {:?}", t0.elapsed());
        let signed = self.shown_only(id, signed)?;
        eprintln!("shown_only {:?}", t0.elapsed());
        let me = self.me.device_id();
        let header = Header {
            exporter: me,
            created_ms: now_ms,
            conversation: *id,
        };
        let document = export::build_document(
            &DocInfo {
                conversation: *id,
                title: info.title,
                exporter: me,
                exported_at_ms: now_ms,
            },
            &messages,
        );
        eprintln!("doc {:?}", t0.elapsed());
        let bytes = export::write(&header, &document, &signed, &self.me)
            .map_err(ExportFailed::Unverifiable)?;
        let verified = export::verify(&bytes).map_err(ExportFailed::Unverifiable)?;
        Ok(Exported { bytes, verified })
    }

    /// The signed changes whose changes make what the pages show, so that a verifier who
    /// rebuilds the pages from them alone sees what `log` shows: an envelope none of whose
    /// changes is in its page's document is left out (a fork that lost an equivocation, and
    /// what was built on it; one still waiting for a dependency), and so is one whose every
    /// change is past its author's cut (a removed member's late writes, which `log` does not
    /// show either).
    fn shown_only(
        &mut self,
        id: &ConversationId,
        signed: Vec<SignedContent>,
    ) -> Result<Vec<SignedContent>, ExportFailed> {
        let mut out = Vec::with_capacity(signed.len());
        let mut in_doc: BTreeMap<u32, HashSet<ChangeHash>> = BTreeMap::new();
        for s in signed {
            let mut r = Reader::new(&s.payload);
            let Ok(page_no) = r.u32_varint("page") else {
                continue;
            };
            let Ok(changes) = decode_changes(r.rest(), &s.signer.actor()) else {
                continue;
            };
            let cut = self
                .convs
                .get(id)
                .ok_or(CommandError::NoSuchConversation)?
                .membership
                .state()
                .cut(&s.signer, page_no);
            if cut.is_some_and(|cut| changes.iter().all(|ch| ch.seq() > cut.seq)) {
                continue;
            }
            let hashes = match in_doc.entry(page_no) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    self.ensure_page(id, page_no)?;
                    let Some(page) = self.pages.get_mut(id, page_no) else {
                        continue;
                    };
                    e.insert(page.change_hashes())
                }
            };
            if changes.iter().any(|ch| hashes.contains(&ch.hash())) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Every key of a conversation (epoch keys and the control key), for tests that check
    /// none is disclosed.
    #[cfg(test)]
    pub(crate) fn conversation_keys_for_tests(
        &self,
        id: &ConversationId,
    ) -> Vec<crate::crypto::Key> {
        let c = &self.convs[id];
        c.keys
            .values()
            .copied()
            .chain(std::iter::once(c.control_key))
            .collect()
    }
}
