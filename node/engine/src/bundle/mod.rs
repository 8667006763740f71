//! Sneakernet bundles (issue 16): envelopes carried on a file between devices that never
//! share a network. A bundle imported on one device behaves like a link that was up for a
//! moment: what it brings is checked and taken exactly as a push is, and what the importer
//! owes back (receipts, its own envelopes) flows by the next link or bundle.
//!
//! * [`format`]: the file format, written and read with no I/O (docs/bundles.md).
//! * [`Engine::bundle_plan`] and [`Engine::bundle_envelope`]: what to export, in an order
//!   the importer can take without waiting (invitations, then membership operations, then
//!   changes, each by the time their author signed them where this device can read it).
//! * [`Engine::handle_bundle_records`]: import. The records go through the same batch
//!   ingest as pushes (`Replica::ingest_batch_from`), with the bundle's exporter as their
//!   origin: envelopes of conversations this device is not in are carried within the relay
//!   quotas, counted against the exporter's device as if it had pushed them on a link (a
//!   contact's quota if the exporter is a contact, the strangers' pool if not). The driver
//!   verifies the whole file's signature *before* it hands any record over, and calls
//!   [`Engine::flush`] before it reports a batch taken.

pub mod format;

use std::collections::BTreeMap;

use vaarta_sync::envelope::{Envelope, Kind};
use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId, Tag};
use vaarta_sync::replica::{self, Ingested};
use vaarta_sync::store::Store;

use crate::ack::Disposition;
use crate::{Engine, EngineError, Fresh, Source};

pub use format::{BundleError, For, Header, Item, Reader, Writer};

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Only these conversations (empty: every conversation, and everything carried).
    pub conversations: Vec<ConversationId>,
    /// Only envelopes signed at or after this time, where this device can read the time
    /// (it cannot in envelopes it carries for others, nor in those it cannot open yet:
    /// those are always included; importing them twice changes nothing).
    pub since_ms: u64,
    pub for_: For,
}

/// What an import of records did, counted per record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Taken: applied, held for later (pending, unreadable yet, an invitation held for the
    /// user) or carried for others.
    pub new: u64,
    /// Of `new`: held, not readable yet (carried, pending, unreadable, an invitation held).
    pub waiting: u64,
    /// Already held here before.
    pub already_held: u64,
    /// Not stored, with why (at most [`MAX_REASONS`] reasons; the rest under "other").
    pub refused: u64,
    pub reasons: BTreeMap<String, u64>,
}

/// Distinct refusal reasons a [`Tally`] keeps.
pub const MAX_REASONS: usize = 16;

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.new += other.new;
        self.waiting += other.waiting;
        self.already_held += other.already_held;
        self.refused += other.refused;
        for (r, n) in &other.reasons {
            self.refuse(r, *n);
        }
    }

    fn refuse(&mut self, reason: &str, n: u64) {
        let key = if self.reasons.contains_key(reason) || self.reasons.len() < MAX_REASONS {
            reason.to_string()
        } else {
            "other".to_string()
        };
        *self.reasons.entry(key).or_default() += n;
    }
}

/// Why an envelope of a bundle was not kept although it was taken in: the carry quotas
/// made room for later ones (or refused it), or the pending set did.
pub const REASON_QUOTA: &str = "not kept: over the carry quota for the bundle's exporter";
/// A refused envelope (tombstone) offered again.
pub const REASON_REFUSED_BEFORE: &str = "refused before (not carried or not valid)";
/// Relaying is off and the envelope is not for this device.
pub const REASON_NOT_WANTED: &str = "not for this device and relaying is off";

impl<S: Store> Engine<S> {
    /// The envelopes to export for `sel`, in the order to write them: invitations, then
    /// membership operations, then changes; each group by the time its author signed it
    /// (causal: a device's clock moves past what it has seen), where this device can open
    /// it, then the ones it cannot, by id. Tombstones are never listed. Unknown
    /// conversations in `sel` select nothing (the API checks names first).
    ///
    /// * [`For::Anyone`] and [`For::Relay`]: every conversation this device is in (or the
    ///   ones named), and — when none is named — every envelope it carries for others and
    ///   the invitations it sealed;
    /// * [`For::Device`]: the conversations that device is a member of here (or those of
    ///   the named ones), the envelopes under its inbox tags (invitations for it), and —
    ///   when no conversation is named — what this device carries (that device may carry
    ///   it on). A bundle for a device is not encrypted to it: every envelope inside is
    ///   already encrypted end to end.
    ///
    /// This device's own inbox (invitations held for its user) is never exported.
    pub fn bundle_plan(
        &self,
        sel: &Selection,
        now_ms: u64,
    ) -> Result<Vec<(Tag, EnvelopeId)>, EngineError> {
        let r = &self.replica;
        let inbox_of_target: Vec<Tag> = match sel.for_ {
            For::Device(d) => replica::inbox_window(&d, vaarta_sync::crypto::day_of(now_ms)),
            _ => Vec::new(),
        };
        // (group, signed ms, counter, id) -> tag
        let mut out: Vec<((u8, u64, u16, EnvelopeId), Tag)> = Vec::new();
        for (tag, _) in r.store().tags() {
            let own_conv = r.conversation_of_tag(&tag);
            let take = match own_conv {
                Some(c) => {
                    (sel.conversations.is_empty() || sel.conversations.contains(&c))
                        && match sel.for_ {
                            For::Device(d) => r
                                .info(&c)
                                .is_some_and(|i| i.members.iter().any(|m| m.device == d)),
                            _ => true,
                        }
                }
                // Our own inbox: invitations for this device's user.
                None if r.is_own_tag(&tag, now_ms) => false,
                None => sel.conversations.is_empty() || inbox_of_target.contains(&tag),
            };
            if !take {
                continue;
            }
            let mut ids = Vec::new();
            r.store().for_each_id(&tag, &[0; 32], &mut |id| {
                ids.push(*id);
                true
            })?;
            for id in ids {
                let Some(bytes) = r.store().envelope(&tag, &id)? else {
                    continue;
                };
                if bytes.is_empty() {
                    continue; // a tombstone
                }
                let Ok(env) = Envelope::decode(&bytes) else {
                    continue;
                };
                let group = match env.header().kind {
                    Kind::Invite => 0,
                    Kind::Control => 1,
                    Kind::Change => 2,
                };
                let signed = own_conv
                    .and_then(|_| replica::open_with(r, &env).ok())
                    .map(|o| (o.hlc.ms, o.hlc.counter));
                if let Some((ms, _)) = signed
                    && ms < sel.since_ms
                {
                    continue;
                }
                let (ms, counter) = signed.unwrap_or((u64::MAX, u16::MAX));
                out.push(((group, ms, counter, id), tag));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|((.., id), tag)| (tag, id)).collect())
    }

    /// The bytes of a stored envelope to export (`None`: gone, or a tombstone).
    pub fn bundle_envelope(
        &self,
        tag: &Tag,
        id: &EnvelopeId,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .replica
            .store()
            .envelope(tag, id)?
            .filter(|b| !b.is_empty()))
    }

    /// Takes records of a bundle whose signature the driver has verified, as one ingest
    /// batch through the same path as pushes, each counted against `exporter` (the bundle
    /// header's device) where it is carried. Invalid envelopes are refused and counted, not
    /// faults: the process and the other records go on. Nothing is durable until the next
    /// [`Engine::flush`], which the driver runs before it reports the records taken; what
    /// they add is announced to interested links at that flush, like relayed envelopes.
    /// Taking the same records again changes nothing (each is a duplicate, or a refusal
    /// already recorded), so an import cut halfway is finished by running it again.
    pub fn handle_bundle_records(
        &mut self,
        exporter: DeviceId,
        records: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<Tally, EngineError> {
        self.now = now_ms;
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let origins = vec![Some(exporter); refs.len()];
        let results = self.replica.ingest_batch_from(&refs, &origins, now_ms);
        let mut tally = Tally::default();
        let mut invited = false;
        for adm in &results {
            if let Some(id) = adm.id {
                self.requested.remove(&id);
            }
            let disposition = self.disposition(adm);
            match &adm.result {
                Err(replica::IngestError::Store(e)) => {
                    return Err(EngineError::Store(e.clone()));
                }
                Err(e) => {
                    tally.refused += 1;
                    tally.refuse(&e.to_string(), 1);
                }
                Ok(Ingested::NotWanted) => {
                    tally.refused += 1;
                    tally.refuse(REASON_NOT_WANTED, 1);
                }
                Ok(Ingested::Duplicate) => match disposition {
                    Disposition::Refused => {
                        tally.refused += 1;
                        tally.refuse(REASON_REFUSED_BEFORE, 1);
                    }
                    _ => tally.already_held += 1,
                },
                Ok(ing) => match disposition {
                    Disposition::Refused => {
                        tally.refused += 1;
                        tally.refuse(REASON_QUOTA, 1);
                    }
                    d => {
                        tally.new += 1;
                        if d == Disposition::Deferred {
                            tally.waiting += 1;
                        }
                        if let (Some(id), Some(tag)) = (adm.id, adm.tag) {
                            self.fresh.push(Fresh {
                                id,
                                tag,
                                route: None,
                                source: Source::Import,
                            });
                        }
                        invited |= matches!(ing, Ingested::Invited(_));
                    }
                },
            }
        }
        // Ingesting may seal messages staged here first: they spread as our own.
        self.note_sealed();
        if invited {
            self.tags_changed();
        }
        self.settle();
        Ok(tally)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub records: u64,
    /// The bundle's size.
    pub bytes: u64,
    /// The envelopes' own bytes (the rest is the format's framing).
    pub envelope_bytes: u64,
    /// Envelopes selected that did not fit within the byte budget (left for the next
    /// bundle: they come last in the order of [`Engine::bundle_plan`]).
    pub left_out: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError<E: std::fmt::Debug + std::fmt::Display> {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The driver's sink (a file) failed.
    #[error("{0}")]
    Sink(E),
}

/// Why an import failed: the bundle (nothing of it taken) or this device's storage.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Records handed to the engine at once by [`Engine::import_bundle`] (drivers use the same).
pub const IMPORT_BATCH: usize = 256;

impl<S: Store> Engine<S> {
    /// Writes a bundle of what `sel` selects, signed by this device, through `out` (the
    /// driver's file), within `max_bytes` (capped at [`format::MAX_BUNDLE_BYTES`]): it
    /// stops at the first envelope that does not fit and counts the rest as left out.
    pub fn export_bundle<E: std::fmt::Debug + std::fmt::Display>(
        &self,
        sel: &Selection,
        max_bytes: u64,
        now_ms: u64,
        out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Exported, ExportError<E>> {
        let plan = self.bundle_plan(sel, now_ms)?;
        let header = Header {
            exporter: self.device_id(),
            created_ms: now_ms,
            for_: sel.for_,
            since_ms: sel.since_ms,
        };
        let (mut w, head) = Writer::new(&header, max_bytes);
        out(&head).map_err(ExportError::Sink)?;
        let mut x = Exported::default();
        for (i, (tag, id)) in plan.iter().enumerate() {
            let Some(bytes) = self.bundle_envelope(tag, id)? else {
                continue;
            };
            match w.record(&bytes) {
                Ok(r) => {
                    out(&r).map_err(ExportError::Sink)?;
                    x.envelope_bytes += bytes.len() as u64;
                }
                Err(BundleError::Full(_) | BundleError::TooManyRecords) => {
                    x.left_out = (plan.len() - i) as u64;
                    break;
                }
                // An envelope over the limit is not held (the store refuses them): skip it.
                Err(_) => continue,
            }
        }
        x.records = w.count();
        x.bytes = w.len_when_finished();
        out(&w.finish(self.replica.identity())).map_err(ExportError::Sink)?;
        Ok(x)
    }

    /// Imports a whole bundle held in memory: verifies it end to end first (nothing is
    /// taken from a bundle that fails), then takes its records in batches of
    /// [`IMPORT_BATCH`]. The caller flushes before reporting it done. Drivers reading a
    /// file do the same in two streaming passes (`vaarta-node`'s `bundle.rs`).
    pub fn import_bundle(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(Header, Tally), ImportError> {
        let header = verify(bytes)?;
        let mut r = Reader::new();
        let mut items = Vec::new();
        r.feed(bytes, &mut items)?;
        let mut tally = Tally::default();
        let envelopes: Vec<Vec<u8>> = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Envelope(e) => Some(e),
                _ => None,
            })
            .collect();
        for batch in envelopes.chunks(IMPORT_BATCH) {
            tally.add(&self.handle_bundle_records(header.exporter, batch, now_ms)?);
        }
        Ok((header, tally))
    }
}

/// Checks a whole bundle (structure, bounds, the exporter's signature over every byte)
/// without keeping its records; returns its header.
pub fn verify(bytes: &[u8]) -> Result<Header, BundleError> {
    let mut r = Reader::new();
    let mut header = None;
    let mut items = Vec::new();
    for piece in bytes.chunks(64 * 1024) {
        r.feed(piece, &mut items)?;
        for i in items.drain(..) {
            if let Item::Header(h) = i {
                header = Some(h);
            }
        }
    }
    r.finish()?;
    header.ok_or(BundleError::Truncated)
}

#[cfg(test)]
mod tests;
