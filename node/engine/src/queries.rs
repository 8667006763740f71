//! What drivers and applications may ask the engine, and the calls that end its life.
//! Drivers never write to the replica behind the engine's back: state changes go through
//! commands, [`Engine::import`], and [`Engine::checkpoint`]/[`Engine::close`].

use vaarta_sync::ids::{ConversationId, DeviceId};
use vaarta_sync::replica::{
    CommandError, ConversationInfo, IngestError, Ingested, MessageInfo, Replica,
};
use vaarta_sync::store::{Store, StoreError};

use vaarta_sync::envelope::Envelope;
use vaarta_sync::page::MessageId;

use crate::{Engine, EngineError, Fresh, LinkInfo, PeerSeen, Source};

impl<S: Store> Engine<S> {
    /// The replica, read-only: for queries and for a simulator's invariant checks.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The store behind the replica, writable: for tests that plant a state (feature
    /// `testing` only; drivers never write behind the engine's back).
    #[cfg(any(test, feature = "testing"))]
    pub fn store_for_tests(&mut self) -> &mut S {
        self.replica.store_mut()
    }

    pub fn device_id(&self) -> DeviceId {
        self.replica.device_id()
    }

    pub fn conversations(&self) -> Vec<ConversationInfo> {
        self.replica
            .conversation_ids()
            .iter()
            .filter_map(|c| self.replica.info(c))
            .collect()
    }

    /// Newest `limit` messages of a conversation, each with the member devices that
    /// confirmed holding it (for messages written here).
    pub fn messages(
        &mut self,
        conv: &ConversationId,
        limit: usize,
    ) -> Result<Vec<(MessageInfo, Vec<DeviceId>)>, EngineError> {
        self.messages_from(conv, 0, limit)
    }

    /// [`Engine::messages`] of the pages from `from_page` up only.
    pub fn messages_from(
        &mut self,
        conv: &ConversationId,
        from_page: u32,
        limit: usize,
    ) -> Result<Vec<(MessageInfo, Vec<DeviceId>)>, EngineError> {
        let msgs = self.replica.messages_from(conv, from_page, limit)?;
        self.with_delivery(msgs)
    }

    /// The `limit` messages just older than `before` ([`Replica::messages_before`]).
    pub fn messages_before(
        &mut self,
        conv: &ConversationId,
        before: &MessageId,
        limit: usize,
    ) -> Result<Vec<(MessageInfo, Vec<DeviceId>)>, EngineError> {
        let msgs = self.replica.messages_before(conv, before, limit)?;
        self.with_delivery(msgs)
    }

    fn with_delivery(
        &self,
        msgs: Vec<MessageInfo>,
    ) -> Result<Vec<(MessageInfo, Vec<DeviceId>)>, EngineError> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let delivered = match m.envelope {
                Some(e) => self.delivered_to(&e)?,
                None => Vec::new(),
            };
            out.push((m, delivered));
        }
        Ok(out)
    }

    /// A signed export of a conversation (docs/export.md): the messages [`Engine::messages`]
    /// shows, in an Automerge document, with what their authors signed, signed by this
    /// device, verified before it is handed back ([`crate::export::verify`] checks one).
    pub fn export_conversation(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<vaarta_sync::replica::export::Exported, vaarta_sync::replica::export::ExportFailed>
    {
        self.replica.export_conversation(conv, now_ms)
    }

    /// A digest of a conversation's state (equal on two devices that hold the same).
    pub fn state_digest(&mut self, conv: &ConversationId) -> Result<[u8; 32], CommandError> {
        self.replica.state_digest(conv)
    }

    pub fn links(&self) -> Vec<LinkInfo> {
        self.links.iter().map(|(id, l)| l.info(*id)).collect()
    }

    pub fn peers_seen(&self) -> Vec<PeerSeen> {
        self.dialer.peers_seen()
    }

    /// Envelopes queued for pushing or pushed and not yet acknowledged, over all links.
    pub fn backlog(&self) -> usize {
        self.links.values().map(|l| l.push.backlog()).sum()
    }

    /// An envelope from outside any link (a provisioning step, a carried bundle), checked
    /// like any other. What it adds is announced to interested links at the next
    /// [`Engine::flush`], which also makes it durable.
    pub fn import(&mut self, bytes: &[u8], now_ms: u64) -> Result<Ingested, IngestError> {
        self.now = now_ms;
        let r = self.replica.ingest(bytes, now_ms)?;
        // Ingesting may seal messages staged here first: they spread as our own.
        self.note_sealed();
        if !matches!(r, Ingested::Duplicate | Ingested::NotWanted)
            && let Ok(env) = Envelope::decode(bytes)
        {
            self.fresh.push(Fresh {
                id: env.id(),
                tag: env.header().tag,
                route: None,
                source: Source::Import,
            });
        }
        if let Ingested::Invited(_) = r {
            self.tags_changed();
        }
        self.settle();
        Ok(r)
    }

    /// Saves loaded pages whole (so the next start replays no journal) and flushes.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.replica.checkpoint()?;
        self.replica.store_mut().flush()
    }

    /// A clean stop of the driver: checkpoints and closes the store ([`Store::close`]: the
    /// next open can skip its scans). The engine may still be used; a write undoes the close.
    pub fn stop(&mut self) -> Result<(), StoreError> {
        self.replica.checkpoint()?;
        self.replica.store_mut().close()
    }

    /// Ends the engine cleanly: checkpoints, closes the store, and hands it back.
    pub fn close(mut self) -> Result<S, StoreError> {
        self.stop()?;
        Ok(self.replica.into_store())
    }

    /// Ends the engine as a power cut would: nothing more is written or flushed. The store
    /// is handed back as it is, for a simulator to cut its unflushed writes and reopen.
    pub fn crash(self) -> S {
        self.replica.into_store()
    }
}
