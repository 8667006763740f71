//! The alert roll-call (issue 13): for a message, each member's answer — acknowledged (when),
//! read, delivered only, not yet delivered — and the commands behind it (acknowledge, read,
//! re-alert).
//!
//! *Acknowledged* and *read* come from the signed pages (`vaarta_sync::replica::receipts`:
//! an acknowledgement per member per alert, a read watermark per member per page); *delivered*
//! from the delivery receipts the engine keeps for its own envelopes (`receipts`, `d/`): a
//! member's device confirmed it holds the message's envelope. An answer implies the ones
//! below it (a member that read a message holds it).

use vaarta_sync::envelope::Precedence;
use vaarta_sync::hlc::Hlc;
use vaarta_sync::ids::{ConversationId, DeviceId};
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::replica::{CommandError, MessageInfo};
use vaarta_sync::store::Store;

use crate::{Engine, EngineError};

/// A member's answer to one message, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    /// "Received, acting", at this time (the member's clock).
    Acknowledged(Hlc),
    /// Its read watermark reaches the message.
    Read,
    /// Its device confirmed holding the message (known for messages written here only).
    Delivered,
    /// Nothing yet.
    NotDelivered,
}

impl Answer {
    /// The answer's name in the API and the CLI.
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Acknowledged(_) => "acknowledged",
            Answer::Read => "read",
            Answer::Delivered => "delivered",
            Answer::NotDelivered => "not_delivered",
        }
    }
}

/// One member in a roll-call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub device: DeviceId,
    pub name: Option<String>,
    pub answer: Answer,
}

/// The roll-call of one message.
#[derive(Debug, Clone)]
pub struct RollCall {
    pub message: MessageInfo,
    /// Every current member but the author, in device order.
    pub members: Vec<Member>,
}

impl RollCall {
    /// Members that have not acknowledged.
    pub fn pending(&self) -> Vec<DeviceId> {
        self.members
            .iter()
            .filter(|m| !matches!(m.answer, Answer::Acknowledged(_)))
            .map(|m| m.device)
            .collect()
    }

    /// How many members gave each answer: (acknowledged, read, delivered, not delivered).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for m in &self.members {
            match m.answer {
                Answer::Acknowledged(_) => c.0 += 1,
                Answer::Read => c.1 += 1,
                Answer::Delivered => c.2 += 1,
                Answer::NotDelivered => c.3 += 1,
            }
        }
        c
    }
}

impl<S: Store> Engine<S> {
    /// The roll-call of `msg` ([`RollCall`]).
    pub fn rollcall(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
    ) -> Result<RollCall, EngineError> {
        let (message, entries) = self.replica.rollcall(conv, msg)?;
        let delivered = match message.envelope {
            Some(e) => self.delivered_to(&e)?,
            None => Vec::new(),
        };
        let members = entries
            .into_iter()
            .map(|e| Member {
                device: e.device,
                name: e.name,
                answer: match (e.acknowledged, e.read) {
                    (Some(at), _) => Answer::Acknowledged(at),
                    (None, true) => Answer::Read,
                    _ if delivered.contains(&e.device) => Answer::Delivered,
                    _ => Answer::NotDelivered,
                },
            })
            .collect();
        Ok(RollCall { message, members })
    }

    /// Acknowledges a FLASH or IMMEDIATE message of another member; pushed at the next
    /// [`Engine::flush`] in the message's lane.
    pub fn acknowledge(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<(), EngineError> {
        self.replica.acknowledge(conv, msg, now_ms)?;
        self.note_sealed();
        Ok(())
    }

    /// Records that the user read `msg` (and what came before it). The read watermark is
    /// sealed at a flush once due (at most one per conversation per
    /// [`vaarta_sync::replica::receipts::READ_RECEIPT_INTERVAL_MS`], `Timer::Read`), or with
    /// this device's next message on that page. Returns whether one is now owed.
    pub fn mark_read(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
    ) -> Result<bool, EngineError> {
        let owed = self.replica.mark_read(conv, msg)?;
        self.settle_reads();
        Ok(owed)
    }

    /// Turns this device's read receipts in `conv` on or off (default on).
    pub fn set_read_receipts(
        &mut self,
        conv: &ConversationId,
        on: bool,
    ) -> Result<(), EngineError> {
        self.replica.set_read_receipts(conv, on)?;
        self.settle_reads();
        Ok(())
    }

    /// Alerts again those who have not acknowledged `msg` (a FLASH or IMMEDIATE message
    /// written here): a FLASH message replying to it, with its text. Returns the new message
    /// (sealed at the next flush) and who had not acknowledged; nothing is sent when everyone
    /// has.
    pub fn realert(
        &mut self,
        conv: &ConversationId,
        msg: &MessageId,
        now_ms: u64,
    ) -> Result<(Option<MessageId>, Vec<DeviceId>), EngineError> {
        let call = self.rollcall(conv, msg)?;
        let v = &call.message.view;
        if call.message.author != Some(self.device_id()) {
            return Err(CommandError::Rule(vaarta_sync::page::RuleError::Forbidden(
                "only the sender re-alerts",
            ))
            .into());
        }
        if v.precedence < Precedence::Immediate || v.deleted {
            return Err(CommandError::Rule(vaarta_sync::page::RuleError::Forbidden(
                "only FLASH and IMMEDIATE messages are re-alerted",
            ))
            .into());
        }
        let pending = call.pending();
        if pending.is_empty() {
            return Ok((None, pending));
        }
        let draft = Draft {
            body: v.body.clone(),
            reply_to: Some(msg.clone()),
            precedence: Precedence::Flash,
            expiry: v.expiry,
        };
        let id = self.replica.stage_message(conv, draft, now_ms)?;
        Ok((Some(id), pending))
    }

    /// Arms `Timer::Read` at the next read watermark due.
    pub(crate) fn settle_reads(&mut self) {
        self.timers.set(crate::Timer::Read, self.replica.read_due());
    }
}
