//! Local commands: what the user of this device asks for. Each writes through the replica;
//! what it seals is pushed at the next [`Engine::flush`] (staged messages are sealed there).

use vaarta_sync::ids::{ConversationId, DeviceId, EnvelopeId};
use vaarta_sync::membership::History;
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::store::Store;

use vaarta_sync::org::CredError;

use crate::{Credentials, Engine, EngineError};

impl<S: Store> Engine<S> {
    /// Creates a conversation with this device as its admin; returns it and the envelope
    /// that founds it.
    pub fn create_conversation(
        &mut self,
        title: &str,
        history: History,
        now_ms: u64,
    ) -> Result<(ConversationId, EnvelopeId), EngineError> {
        let (id, env) = self.replica.create_conversation(title, history, now_ms)?;
        self.note_sealed();
        self.tags_changed();
        self.settle();
        Ok((id, env))
    }

    /// Adds a member (see [`Self::add_members`]).
    pub fn add_member(
        &mut self,
        conv: &ConversationId,
        device: DeviceId,
        admin: bool,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, EngineError> {
        self.add_members(conv, &[device], admin, now_ms)
    }

    /// Adds members with one operation and seals an invitation to each; returns what it
    /// sealed.
    pub fn add_members(
        &mut self,
        conv: &ConversationId,
        devices: &[DeviceId],
        admin: bool,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, EngineError> {
        let sealed = self.replica.add_members(conv, devices, admin, now_ms)?;
        self.note_sealed();
        Ok(sealed)
    }

    /// Removes a member (and rotates the key at the next admin duty); returns what it
    /// sealed.
    pub fn remove_member(
        &mut self,
        conv: &ConversationId,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<Vec<EnvelopeId>, EngineError> {
        let sealed = self.replica.remove_member(conv, device, now_ms)?;
        self.note_sealed();
        Ok(sealed)
    }

    /// Renames a conversation (admins only).
    pub fn rename_conversation(
        &mut self,
        conv: &ConversationId,
        title: &str,
        now_ms: u64,
    ) -> Result<EnvelopeId, EngineError> {
        let env = self.replica.set_title(conv, title, now_ms)?;
        self.note_sealed();
        Ok(env)
    }

    /// Stages a message; it is sealed and made durable by the next [`Engine::flush`], with
    /// any other messages staged before it (one envelope per page).
    pub fn send_message(
        &mut self,
        conv: &ConversationId,
        draft: Draft,
        now_ms: u64,
    ) -> Result<MessageId, EngineError> {
        Ok(self.replica.stage_message(conv, draft, now_ms)?)
    }

    pub fn edit_message(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        body: &str,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        self.replica.edit_message(conv, msg, body, now_ms)?;
        self.note_sealed();
        Ok(())
    }

    pub fn delete_message(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        self.replica.delete_message(conv, msg, now_ms)?;
        self.note_sealed();
        Ok(())
    }

    pub fn react(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        emoji: Option<&str>,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        self.replica.react(conv, msg, emoji, now_ms)?;
        self.note_sealed();
        Ok(())
    }

    /// Invitations from strangers held for the user, oldest first.
    pub fn invitations(&self) -> Vec<vaarta_sync::replica::HeldInvitation> {
        self.replica.invitations()
    }

    /// Accepts a held invitation: the conversation is added and its tag goes in a new hello.
    pub fn accept_invitation(
        &mut self,
        conv: &ConversationId,
        now_ms: u64,
    ) -> Result<ConversationId, EngineError> {
        let c = self.replica.accept_invitation(conv, now_ms)?;
        self.note_sealed();
        self.tags_changed();
        self.settle();
        Ok(c)
    }

    /// Accepts a device: its invitations are taken from now on, and those held are accepted
    /// (returned).
    pub fn accept_device(
        &mut self,
        device: &DeviceId,
        now_ms: u64,
    ) -> Result<Vec<ConversationId>, EngineError> {
        let cs = self.replica.accept_device(device, now_ms)?;
        self.note_sealed();
        if !cs.is_empty() {
            self.tags_changed();
        }
        self.settle();
        Ok(cs)
    }

    /// Sets this device's organisation credentials: the chain it presents in its proofs
    /// from now on (refused if it is not this device's), the roots it trusts and the
    /// revocations it knows. Links already up are judged again at once: a peer whose
    /// credentials are now revoked is cut (and banned); the others' standing is updated.
    pub fn set_credentials(&mut self, c: Credentials, now_ms: u64) -> Result<(), CredError> {
        self.now = now_ms;
        let me = self.replica.device_id();
        if let Some(own) = &c.own
            && own.device.device != me
        {
            return Err(CredError::NotMyDevice {
                bundle_for: own.device.device,
                me,
            });
        }
        self.own_chain = c.own.as_ref().map(|ch| ch.encode()).unwrap_or_default();
        self.credentials = c;
        // Wipe orders imply their revocations; only admitted ones are held and passed on.
        let wipes = std::mem::take(&mut self.credentials.wipes);
        let mine = wipes.get(&me).cloned();
        for o in wipes.into_values() {
            if self.credentials.admits(&o.revocation) {
                let _ = self.credentials.hold_wipe(o);
            }
        }
        if let Some(o) = mine {
            self.obey_wipe(&o);
        }
        // Our own chain is in our directory (peers get it in our proof too).
        if let Some(own) = self.credentials.own.as_ref().map(|c| c.encode()) {
            let c = &mut self.credentials;
            let j = vaarta_sync::org::Judge {
                pinned: &c.pinned,
                revocations: &c.revocations,
                now: now_ms,
                skew: Credentials::SKEW_MS,
            };
            let _ = c.directory.insert(&own, &j);
        }
        self.rejudge_links();
        self.enforce_revocations();
        self.share_revocations_with_all();
        self.share_directory_with_all();
        self.sync_role_conversations(now_ms);
        // Our intro lists the organisations we are enrolled with (`tags::org_tag`).
        self.tags_changed();
        self.settle();
        Ok(())
    }

    /// Declines a held invitation (it is not fetched again).
    pub fn decline_invitation(&mut self, conv: &ConversationId) -> Result<(), EngineError> {
        Ok(self.replica.decline_invitation(conv)?)
    }

    /// Posts this device's name in conversations where it is a member without one.
    pub(crate) fn publish_profiles(&mut self, now_ms: u64) -> Result<(), EngineError> {
        let me = self.replica.device_id();
        let name = self.config.name.clone();
        if name.is_empty() || self.profiled.len() == self.replica.conversation_ids().len() {
            return Ok(());
        }
        for id in self.replica.conversation_ids() {
            if self.profiled.contains(&id) {
                continue;
            }
            let Some(c) = self.replica.conversation(&id) else {
                continue;
            };
            let st = c.membership.state();
            let Some(m) = st.members.get(&me) else {
                continue;
            };
            if m.name.as_deref() != Some(name.as_str()) {
                match self.replica.set_profile(&id, &name, now_ms) {
                    Ok(_) => self.note_sealed(),
                    // A full membership log must never fail the flush: no profile then.
                    Err(vaarta_sync::replica::CommandError::ControlFull) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.profiled.insert(id);
        }
        Ok(())
    }
}
