//! The local API: requests an app (the CLI, a UI) can make, their execution against the
//! engine, and the HTTP+JSON server on 127.0.0.1 that carries them. Reference: docs/api.md.
//!
//! Every request runs on the engine thread; its reply is sent only after the engine's next
//! flush, so "sent" always means "durable on this device".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use vaarta_engine::{Engine, EngineError};
use vaarta_sync::envelope::Precedence;
use vaarta_sync::ids::{ConversationId, DeviceId, actor_bytes};
use vaarta_sync::membership::History;
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::replica::{CommandError, ConversationInfo, MemberInfo};
use vaarta_sync::store::Store;

/// A request to the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Peers,
    Conversations,
    CreateConversation {
        title: String,
        #[serde(default)]
        members: Vec<String>,
        #[serde(default)]
        history_from_join: bool,
    },
    Conversation {
        conversation: String,
    },
    /// A new title (admins only).
    Rename {
        conversation: String,
        title: String,
    },
    AddMember {
        conversation: String,
        device: String,
        /// `Some(true)` admin, `Some(false)` plain member; `None`: a new member is a plain
        /// member and an existing one keeps their role.
        #[serde(default)]
        admin: Option<bool>,
    },
    RemoveMember {
        conversation: String,
        device: String,
    },
    Messages {
        conversation: String,
        #[serde(default = "default_limit")]
        limit: usize,
        /// Only messages on this page and later ones (the page is the part of a message id
        /// before the dot); `None`: every page.
        #[serde(default)]
        from_page: Option<u32>,
        /// Only the messages just older than this message id (paging back); not with
        /// `from_page`.
        #[serde(default)]
        before: Option<String>,
    },
    Send {
        conversation: String,
        messages: Vec<OutgoingMessage>,
    },
    Edit {
        conversation: String,
        message: String,
        body: String,
    },
    Delete {
        conversation: String,
        message: String,
    },
    React {
        conversation: String,
        message: String,
        emoji: Option<String>,
    },
    /// Acknowledges a FLASH or IMMEDIATE message of another member ("received, acting").
    Ack {
        conversation: String,
        message: String,
    },
    /// The user read this message (and what came before it): a read watermark is owed.
    Read {
        conversation: String,
        message: String,
    },
    /// Per member: acknowledged (when), read, delivered, not delivered.
    Rollcall {
        conversation: String,
        message: String,
    },
    /// A FLASH reply to an own alert for the members who have not acknowledged it.
    Realert {
        conversation: String,
        message: String,
    },
    /// Turns this device's read receipts in a conversation on or off (default on).
    ReadReceipts {
        conversation: String,
        on: bool,
    },
    /// Invitations from strangers held for the user.
    Invitations,
    /// The people of the signed directory whose names (any script), designation, unit or
    /// roles held now contain `query` (NFKC, case folded); empty: everyone.
    Directory {
        #[serde(default)]
        query: String,
    },
    /// The roles the directory knows, and who holds each now.
    Roles,
    /// Takes directory records in (role assignments or chains, each in its text form
    /// `VORG1:…` or hex); each must verify here. They spread to the organisation's devices.
    DirectoryAdd {
        records: Vec<String>,
    },
    /// Sends to whoever holds a role now (its title in any script, key, or `unit/key`):
    /// in the role's own conversation, created on first use, its members the holder's
    /// devices.
    SendToRole {
        role: String,
        messages: Vec<OutgoingMessage>,
    },
    /// Accepts a held invitation (`id`: its conversation id or a unique prefix), or a device
    /// (`id`: a device id): its held invitations and all later ones are taken.
    AcceptInvitation {
        id: String,
    },
    /// Declines a held invitation (it is not fetched again).
    DeclineInvitation {
        id: String,
    },
    /// Writes a bundle file (docs/bundles.md; `POST /v1/bundles/export`, token only).
    BundleExport(crate::bundle::ExportArgs),
    /// Writes a signed export of a conversation (docs/export.md; `POST /v1/export`, token
    /// only).
    Export(crate::export::ExportArgs),
    /// Records of a bundle whose signature was verified, from the import task (no endpoint
    /// of its own: `POST /v1/bundles/import` reads the file and sends these).
    #[serde(skip)]
    BundleRecords {
        exporter: DeviceId,
        records: Vec<Vec<u8>>,
    },
}

fn default_limit() -> usize {
    50
}

/// The largest `limit` of a messages request.
pub const MAX_LIMIT: usize = 100_000;

/// The longest `expires_in_ms`: 366 days.
pub const MAX_EXPIRES_MS: u64 = 366 * 86_400_000;

/// The expiry (seconds since the epoch, as envelopes carry it: rounded up to the second) of
/// a message sent at `now_ms` that relays carry for `expires_in_ms` milliseconds: at least
/// 1 ms, at most [`MAX_EXPIRES_MS`].
pub fn expiry_of(now_ms: u64, expires_in_ms: u64) -> Result<u64, ApiError> {
    if expires_in_ms == 0 || expires_in_ms > MAX_EXPIRES_MS {
        return Err(ApiError::bad(format!(
            "expires_in_ms must be 1 to {MAX_EXPIRES_MS} milliseconds (366 days); got {expires_in_ms}"
        )));
    }
    now_ms
        .checked_add(expires_in_ms)
        .map(|at| at.div_ceil(1000))
        .ok_or_else(|| ApiError::bad("expires_in_ms is out of range"))
}

/// A message text: not blank, at most 64 KiB.
fn check_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::bad("the message is empty"));
    }
    let max = vaarta_sync::limits::MAX_BODY_BYTES;
    if body.len() > max {
        return Err(ApiError::bad(format!(
            "the message is {} bytes; the limit is {max} bytes (64 KiB)",
            body.len()
        )));
    }
    Ok(())
}

/// A reaction: one emoji (a sequence of pictographs, joiners, variation selectors, skin
/// tones, flags or a keycap), at most 64 bytes. Letters, digits and spaces are refused.
pub fn check_emoji(e: &str) -> Result<(), ApiError> {
    let pictographic = |c: char| {
        matches!(c as u32,
            0xA9 | 0xAE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x21AA | 0x231A..=0x23FF
            | 0x24C2 | 0x25AA..=0x27BF | 0x2934 | 0x2935 | 0x2B05..=0x2B55 | 0x3030 | 0x303D
            | 0x3297 | 0x3299 | 0x1F000..=0x1FAFF)
    };
    let modifier = |c: char| {
        matches!(
            c as u32,
            0x200D | 0xFE0E | 0xFE0F | 0x20E3 | 0xE0020..=0xE007F
        )
    };
    let keycap = e.contains('\u{20E3}');
    let ok = !e.is_empty()
        && e.len() <= vaarta_sync::limits::MAX_REACTION_BYTES
        && e.chars().any(|c| pictographic(c) || keycap)
        && e.chars().all(|c| {
            pictographic(c) || modifier(c) || (keycap && matches!(c, '0'..='9' | '#' | '*'))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!("'{e}' is not an emoji")))
    }
}

/// A message of a conversation, if it is there (and shown to this device). Reads the newest
/// messages, in a window that grows until it holds the message or the whole conversation
/// (so an absent id costs a read of the conversation; edits, replies and reactions are rare).
/// Every message checked before any is staged (all or nothing); a reply needs `conv`.
fn drafts<S: Store>(
    engine: &mut Engine<S>,
    conv: Option<&ConversationId>,
    messages: Vec<OutgoingMessage>,
    now_ms: u64,
) -> Result<Vec<Draft>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad("no messages to send"));
    }
    let mut drafts = Vec::with_capacity(messages.len());
    for m in messages {
        check_body(&m.body)?;
        let precedence = match &m.precedence {
            Some(p) => p.parse::<Precedence>().map_err(ApiError::bad)?,
            None => Precedence::Routine,
        };
        let reply_to = m.reply_to.as_deref().map(message_id).transpose()?;
        if let Some(r) = &reply_to {
            let Some(id) = conv else {
                return Err(ApiError::bad(
                    "a message to a role cannot reply to a message (send it in the conversation)",
                ));
            };
            if find_message(engine, id, r)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "no message {r} in this conversation to reply to"
                )));
            }
        }
        if m.removed_expires_in_s.is_some() {
            return Err(ApiError::bad(
                "expires_in_s was replaced by expires_in_ms (milliseconds, like every time of the API)",
            ));
        }
        let expiry = m
            .expires_in_ms
            .map(|ms| expiry_of(now_ms, ms))
            .transpose()?;
        drafts.push(Draft {
            body: m.body,
            reply_to,
            precedence,
            expiry,
        });
    }
    Ok(drafts)
}

/// A directory entry, for `/v1/directory`.
fn entry_json(e: &vaarta_sync::org::Entry) -> Value {
    json!({
        "org": e.org.to_string(),
        "org_name": e.org_name,
        "person": e.person.to_string(),
        "names": e.names.iter().map(|(l, n)| json!({"lang": l, "name": n})).collect::<Vec<_>>(),
        "designation": e.designation,
        "unit": e.unit.to_string(),
        "devices": e.devices.iter().map(|(d, l)| json!({"device": d.to_string(), "label": l})).collect::<Vec<_>>(),
        "roles": e.roles.iter().map(role_json).collect::<Vec<_>>(),
    })
}

fn role_json(r: &vaarta_sync::org::VerifiedRole) -> Value {
    json!({
        "role": r.role,
        "unit": r.unit.to_string(),
        "titles": r.titles.iter().map(|(l, t)| json!({"lang": l, "title": t})).collect::<Vec<_>>(),
        "holder": r.holder.to_string(),
        "from_ms": r.from,
        "issuer": r.issuer.to_string(),
        "expires_ms": r.expires,
    })
}

/// A directory record from its text form (`VORG1:…`) or hex.
fn directory_record(s: &str) -> Result<Vec<u8>, ApiError> {
    let t = s.trim();
    if t.to_ascii_uppercase().starts_with("VORG1:") {
        return vaarta_sync::org::dearmor(t).map_err(|e| ApiError::bad(e.to_string()));
    }
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(t.as_bytes())
        .map_err(|_| ApiError::bad("a directory record is its VORG1: text or hex"))
}

impl From<vaarta_sync::org::RoleError> for ApiError {
    fn from(e: vaarta_sync::org::RoleError) -> Self {
        use vaarta_sync::org::RoleError;
        match e {
            RoleError::NoSuchRole(_) => ApiError::not_found(e.to_string()),
            RoleError::Ambiguous { .. } => ApiError::bad(e.to_string()),
            RoleError::Vacant(_) | RoleError::NoDevices { .. } => ApiError {
                status: 409,
                message: e.to_string(),
            },
        }
    }
}

fn find_message<S: Store>(
    engine: &mut Engine<S>,
    id: &ConversationId,
    msg: &MessageId,
) -> Result<Option<vaarta_sync::replica::MessageInfo>, ApiError> {
    let mut window = 512usize;
    loop {
        let msgs = engine.messages(id, window)?;
        let whole = msgs.len() < window;
        if let Some((m, _)) = msgs.into_iter().find(|(m, _)| m.view.id == *msg) {
            return Ok(Some(m));
        }
        if whole {
            return Ok(None);
        }
        window = window.saturating_mul(4);
    }
}

/// A message this device may change: there, not deleted, and (for `own`) written here.
fn changeable<S: Store>(
    engine: &mut Engine<S>,
    id: &ConversationId,
    msg: &MessageId,
    own: bool,
) -> Result<(), ApiError> {
    let m = find_message(engine, id, msg)?
        .ok_or_else(|| ApiError::not_found(format!("no message {msg} in this conversation")))?;
    if m.view.deleted {
        return Err(ApiError::bad(format!("message {msg} was deleted")));
    }
    if own && m.author != Some(engine.device_id()) {
        return Err(ApiError {
            status: 403,
            message: "only the author may change a message".into(),
        });
    }
    Ok(())
}

/// A message to send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutgoingMessage {
    pub body: String,
    #[serde(default)]
    pub precedence: Option<String>,
    /// Milliseconds from now after which relays stop carrying it (kept to the second,
    /// rounded up).
    #[serde(default)]
    pub expires_in_ms: Option<u64>,
    /// `expires_in_s`, replaced by `expires_in_ms`: a message that still gives it is
    /// refused, not sent without an expiry.
    #[serde(
        default,
        rename = "expires_in_s",
        skip_serializing_if = "Option::is_none"
    )]
    pub removed_expires_in_s: Option<Value>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// An error with an HTTP status and one clear line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: msg.into(),
        }
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: msg.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Command(c) => c.into(),
            EngineError::Role(r) => r.into(),
            EngineError::Store(s) => ApiError::internal(format!("storage: {s}")),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(c: CommandError) -> Self {
        match c {
            CommandError::NoSuchConversation => ApiError::not_found("no such conversation"),
            CommandError::TooManyConversations
            | CommandError::TooManyAccepted
            | CommandError::InvitationRefused(_) => ApiError {
                status: 409,
                message: c.to_string(),
            },
            CommandError::NoSuchMessage(_) => ApiError::not_found(c.to_string()),
            CommandError::NoSuchInvitation => {
                ApiError::not_found("no such invitation (`vaarta invites` lists them)")
            }
            CommandError::Store(s) => ApiError::internal(format!("storage: {s}")),
            CommandError::NotAdmin | CommandError::NotMember => ApiError {
                status: 403,
                message: c.to_string(),
            },
            other => ApiError::bad(other.to_string()),
        }
    }
}

/// Node facts the engine does not know (filled in by the daemon).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFacts {
    pub listen: Vec<String>,
    pub api: Option<String>,
    pub peer_id: Option<String>,
    pub warnings: Vec<String>,
    pub online: bool,
    /// Static peers, link addresses and recently linked peers ([`crate::peers`]).
    #[serde(skip)]
    pub peers: crate::peers::PeerBook,
    /// The home's credentials directory, where revocations and directory records learnt
    /// from peers are saved (by the running node), and directory records taken in by
    /// `DirectoryAdd` (running or offline).
    #[serde(skip)]
    pub credentials_dir: Option<std::path::PathBuf>,
    /// Each link's transport (tcp, quic, ble-l2cap, ble-gatt), by link id.
    #[serde(skip)]
    pub transports: std::collections::BTreeMap<u64, String>,
}

/// The answer to an empty conversation id (the client gives it too: an empty path segment
/// cannot be sent).
pub const EMPTY_CONVERSATION: &str = "no conversation id given";

/// A conversation by its id or a unique prefix of it: no match is 404, several are 400.
pub(crate) fn conv<S: Store>(engine: &Engine<S>, s: &str) -> Result<ConversationId, ApiError> {
    if let Ok(id) = s.parse::<ConversationId>()
        && engine.replica().conversation(&id).is_some()
    {
        return Ok(id);
    }
    let prefix = s.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        return Err(ApiError::bad(EMPTY_CONVERSATION));
    }
    let hits: Vec<ConversationId> = engine
        .replica()
        .conversation_ids()
        .into_iter()
        .filter(|c| c.to_string().starts_with(&prefix))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError::not_found(format!(
            "no conversation matches '{s}'"
        ))),
        many => Err(ApiError::bad(format!(
            "'{s}' matches {} conversations: give more characters of the id (`vaarta conv list`)",
            many.len()
        ))),
    }
}

pub(crate) fn device(s: &str) -> Result<DeviceId, ApiError> {
    let d: DeviceId = s.parse().map_err(|_| {
        ApiError::bad(format!(
            "'{s}' is not a device id (52 base32 characters, as `vaarta id` prints)"
        ))
    })?;
    if !d.is_valid() {
        return Err(ApiError::bad(format!("'{s}' is not a valid device key")));
    }
    Ok(d)
}

fn message_id(s: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad(format!("'{s}' is not a message id")))
}

fn member_json(m: &MemberInfo) -> Value {
    json!({"device": m.device.to_string(), "name": m.name, "admin": m.admin})
}

/// How a page names the author of a reaction: the first 8 bytes of the device's Automerge
/// actor, in hex.
fn actor_hint(d: &DeviceId) -> String {
    data_encoding::HEXLOWER.encode(&actor_bytes(d)[..8])
}

/// A conversation as `GET /v1/conversations` lists it and `GET /v1/conversations/{id}` shows it.
/// `read_receipts`: whether this device sends read receipts there.
fn conversation_json(c: &ConversationInfo, read_receipts: bool) -> Value {
    json!({"id": c.id.to_string(), "title": c.title, "members": c.members.iter().map(member_json).collect::<Vec<_>>(),
           "admin": c.me_admin, "member": c.me_member, "removed": c.me_removed, "epochs": c.epochs, "pages": c.pages,
           "equivocators": c.equivocators.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
           "read_receipts": read_receipts})
}

/// A held invitation named by its conversation id or a unique prefix of it.
fn held_invitation<S: Store>(engine: &Engine<S>, s: &str) -> Result<ConversationId, ApiError> {
    let prefix = s.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        return Err(ApiError::bad("give the invitation's id (`vaarta invites`)"));
    }
    let hits: Vec<ConversationId> = engine
        .invitations()
        .into_iter()
        .map(|h| h.conversation)
        .filter(|c| c.to_string().starts_with(&prefix))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError::not_found(format!(
            "no invitation matches '{s}' (`vaarta invites` lists them)"
        ))),
        many => Err(ApiError::bad(format!(
            "'{s}' matches {} invitations: give more characters of the id",
            many.len()
        ))),
    }
}

/// Runs a request against the engine. Changes become durable at the caller's next flush.
pub fn execute<S: Store>(
    engine: &mut Engine<S>,
    req: Request,
    now_ms: u64,
    facts: &NodeFacts,
) -> Result<Value, ApiError> {
    match req {
        Request::Status => {
            let me = engine.device_id();
            Ok(json!({
                "device_id": me.to_string(),
                "name": engine.config().name,
                "safety_number": me.safety_number(),
                "listen": facts.listen,
                "api": facts.api,
                "peer_id": facts.peer_id,
                "online": facts.online,
                "links": engine.links().len(),
                "conversations": engine.conversations().len(),
                "pending": engine.replica().pending_len(),
                "stored_bytes": engine.replica().store().bytes_used(),
                "warnings": facts.warnings,
                "unreachable": facts.peers.unreachable_json(),
                "traffic": {
                    "frames_in": engine.counters().frames_in,
                    "frames_out": engine.counters().frames_out,
                    "bytes_in": engine.counters().bytes_in,
                    "bytes_out": engine.counters().bytes_out,
                    "pushes_out": engine.counters().pushes_out,
                    "envelopes_in": engine.counters().envelopes_in,
                    "refused": engine.counters().refused,
                },
            }))
        }
        Request::Peers => {
            let connected: Vec<Value> = engine
                .links()
                .into_iter()
                .map(|l| {
                    json!({"link": l.link.0, "peer": l.peer.as_str(), "device": l.device.map(|d| d.to_string()),
                           "name": l.name, "outbound": l.outbound, "ready": l.ready, "since_ms": l.since_ms,
                           "bytes_in": l.bytes_in, "bytes_out": l.bytes_out,
                           "addr": facts.peers.link_addr(l.link.0),
                           "transport": facts.transports.get(&l.link.0).map_or("tcp", |t| t.as_str()),
                           "credential": credential_json(l.credential.as_ref())})
                })
                .collect();
            let linked: Vec<String> = engine
                .links()
                .iter()
                .map(|l| l.peer.as_str().to_string())
                .collect();
            // Linked recently (any way: dialled, static, inbound), then discovered ones.
            let mut seen = facts.peers.recent_json();
            for p in engine.peers_seen() {
                if linked.iter().any(|l| l == p.peer.as_str())
                    || seen.iter().any(|s| s["peer"] == p.peer.as_str())
                {
                    continue;
                }
                let is_static = p.addrs.iter().any(|a| facts.peers.is_static(a));
                seen.push(json!({"peer": p.peer.as_str(), "device": p.device.map(|d| d.to_string()), "name": p.name,
                                 "addrs": p.addrs, "last_seen_ms": p.last_seen_ms, "static": is_static}));
            }
            Ok(json!({"connected": connected, "seen": seen, "static": facts.peers.statics_json()}))
        }
        Request::Conversations => Ok(Value::Array(
            engine
                .conversations()
                .iter()
                .map(|c| conversation_json(c, engine.replica().read_receipts(&c.id)))
                .collect(),
        )),
        Request::Conversation { conversation } => {
            let id = conv(engine, &conversation)?;
            let c = engine
                .replica()
                .info(&id)
                .ok_or_else(|| ApiError::not_found("no such conversation"))?;
            Ok(conversation_json(&c, engine.replica().read_receipts(&id)))
        }
        Request::Rename {
            conversation,
            title,
        } => {
            let id = conv(engine, &conversation)?;
            let title = title.trim();
            if title.is_empty() {
                return Err(ApiError::bad("the title is empty"));
            }
            let max = vaarta_sync::limits::MAX_NAME_BYTES;
            if title.len() > max {
                return Err(ApiError::bad(format!(
                    "the title is {} bytes; the limit is {max} bytes",
                    title.len()
                )));
            }
            engine.rename_conversation(&id, title, now_ms)?;
            Ok(json!({"ok": true, "title": title}))
        }
        Request::CreateConversation {
            title,
            members,
            history_from_join,
        } => {
            let devices = members
                .iter()
                .map(|m| device(m))
                .collect::<Result<Vec<_>, _>>()?;
            if title.trim().is_empty() {
                return Err(ApiError::bad("the title is empty"));
            }
            let history = if history_from_join {
                History::FromJoin
            } else {
                History::Shared
            };
            let (id, _) = engine.create_conversation(title.trim(), history, now_ms)?;
            let me = engine.device_id();
            let others: Vec<_> = devices.into_iter().filter(|d| *d != me).collect();
            engine.add_members(&id, &others, false, now_ms)?;
            Ok(json!({"id": id.to_string()}))
        }
        Request::AddMember {
            conversation,
            device: d,
            admin,
        } => {
            let id = conv(engine, &conversation)?;
            let d = device(&d)?;
            let current = engine
                .replica()
                .info(&id)
                .and_then(|i| i.members.into_iter().find(|m| m.device == d));
            if let Some(m) = current
                && admin.is_none_or(|a| a == m.admin)
            {
                // Already a member in that role: nothing to do (and no silent demotion).
                return Ok(json!({"ok": true, "changed": false, "admin": m.admin}));
            }
            let admin = admin.unwrap_or(false);
            engine.add_member(&id, d, admin, now_ms)?;
            Ok(json!({"ok": true, "changed": true, "admin": admin}))
        }
        Request::RemoveMember {
            conversation,
            device: d,
        } => {
            let id = conv(engine, &conversation)?;
            let d = device(&d)?;
            let me = engine.device_id();
            if d == me
                && let Some(info) = engine.replica().info(&id)
                && info.me_admin
                && !info.members.iter().any(|m| m.admin && m.device != me)
            {
                return Err(ApiError::bad(
                    "you are the last admin of this conversation: make another member an admin first (`vaarta conv add CONV DEVICE --admin`)",
                ));
            }
            engine.remove_member(&id, d, now_ms)?;
            Ok(json!({"ok": true, "left": d == me}))
        }
        Request::Messages {
            conversation,
            limit,
            from_page,
            before,
        } => {
            if limit == 0 || limit > MAX_LIMIT {
                return Err(ApiError::bad(format!(
                    "limit must be 1 to {MAX_LIMIT}; got {limit}"
                )));
            }
            if from_page.is_some() && before.is_some() {
                return Err(ApiError::bad(
                    "from_page and before cannot be used together: from_page reads newer pages, before pages back",
                ));
            }
            let before = before.as_deref().map(message_id).transpose()?;
            let id = conv(engine, &conversation)?;
            let me = engine.device_id();
            let info = engine.replica().info(&id);
            let members = info.as_ref().map(|i| i.members.len()).unwrap_or(0);
            let reactors: BTreeMap<String, &MemberInfo> = info
                .iter()
                .flat_map(|i| &i.members)
                .map(|m| (actor_hint(&m.device), m))
                .collect();
            let reaction = |(by, emoji): &(String, String)| {
                let who = reactors.get(by);
                json!({"by": by, "emoji": emoji, "device": who.map(|m| m.device.to_string()),
                       "name": who.and_then(|m| m.name.clone())})
            };
            let msgs = match &before {
                Some(b) => engine.messages_before(&id, b, limit)?,
                None => engine.messages_from(&id, from_page.unwrap_or(0), limit)?,
            };
            Ok(Value::Array(
                msgs.into_iter()
                    .map(|(m, delivered)| {
                        let v = &m.view;
                        let mine = m.author == Some(me);
                        let state = if !mine {
                            "received".to_string()
                        } else if delivered.is_empty() {
                            "sent".to_string()
                        } else if delivered.len() + 1 >= members {
                            "delivered".to_string()
                        } else {
                            format!("delivered to {} of {}", delivered.len(), members.saturating_sub(1))
                        };
                        json!({
                            "id": v.id.to_string(),
                            "author": m.author.map(|a| a.to_string()),
                            "author_name": m.author_name,
                            "sent_at_ms": v.sent_at.ms,
                            "body": v.body,
                            "reply_to": v.reply_to.as_ref().map(|r| r.to_string()),
                            "precedence": v.precedence.as_str(),
                            "expires_at_ms": v.expiry.and_then(|x| x.checked_mul(1000)),
                            "edited_at_ms": v.edited_at.map(|h| h.ms),
                            "deleted": v.deleted,
                            "reactions": v.reactions.iter().map(reaction).collect::<Vec<_>>(),
                            "mine": mine,
                            "state": state,
                            "delivered_to": delivered.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ))
        }
        Request::Send {
            conversation,
            messages,
        } => {
            let id = conv(engine, &conversation)?;
            let drafts = drafts(engine, Some(&id), messages, now_ms)?;
            let mut ids = Vec::with_capacity(drafts.len());
            for draft in drafts {
                ids.push(engine.send_message(&id, draft, now_ms)?.to_string());
            }
            Ok(json!({"ids": ids}))
        }
        Request::Edit {
            conversation,
            message,
            body,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            check_body(&body)?;
            changeable(engine, &id, &msg, true)?;
            engine.edit_message(&id, &msg, &body, now_ms)?;
            Ok(json!({"ok": true}))
        }
        Request::Delete {
            conversation,
            message,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            changeable(engine, &id, &msg, true)?;
            engine.delete_message(&id, &msg, now_ms)?;
            Ok(json!({"ok": true}))
        }
        Request::React {
            conversation,
            message,
            emoji,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            if let Some(e) = &emoji {
                check_emoji(e)?;
            }
            changeable(engine, &id, &msg, false)?;
            engine.react(&id, &msg, emoji.as_deref(), now_ms)?;
            Ok(json!({"ok": true}))
        }
        Request::Ack {
            conversation,
            message,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            changeable(engine, &id, &msg, false)?;
            engine.acknowledge(&id, &msg, now_ms)?;
            Ok(json!({"ok": true}))
        }
        Request::Read {
            conversation,
            message,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            let owed = engine.mark_read(&id, &msg)?;
            Ok(json!({"ok": true, "owed": owed}))
        }
        Request::Rollcall {
            conversation,
            message,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            Ok(rollcall_json(&engine.rollcall(&id, &msg)?))
        }
        Request::Realert {
            conversation,
            message,
        } => {
            let id = conv(engine, &conversation)?;
            let msg = message_id(&message)?;
            let (sent, pending) = engine.realert(&id, &msg, now_ms)?;
            Ok(json!({
                "id": sent.map(|m| m.to_string()),
                "pending": pending.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            }))
        }
        Request::ReadReceipts { conversation, on } => {
            let id = conv(engine, &conversation)?;
            engine.set_read_receipts(&id, on)?;
            Ok(json!({"ok": true, "read_receipts": on}))
        }
        Request::Directory { query } => {
            let j = engine.directory_judge(now_ms);
            let found = engine.directory().search(&query, &j);
            Ok(json!({
                "people": found.iter().map(entry_json).collect::<Vec<_>>(),
                "records": engine.directory().len(),
            }))
        }
        Request::Roles => {
            let j = engine.directory_judge(now_ms);
            let d = engine.directory();
            let roles: Vec<Value> = d
                .roles()
                .map(|r| {
                    let held = d.holder(r, &j);
                    let names = held.as_ref().and_then(|h| {
                        d.search("", &j)
                            .into_iter()
                            .find(|e| e.person == h.holder && e.org == r.org)
                            .map(|e| e.names)
                    });
                    json!({
                        "role": r.role,
                        "unit": r.unit.to_string(),
                        "org": r.org.to_string(),
                        "titles": d.titles(r).iter().map(|(l, t)| json!({"lang": l, "title": t})).collect::<Vec<_>>(),
                        "holder": held.as_ref().map(role_json),
                        "holder_names": names.map(|n| n.iter().map(|(l, x)| json!({"lang": l, "name": x})).collect::<Vec<_>>()),
                        "conversation": engine.find_role_conversation(r).map(|c| c.to_string()),
                    })
                })
                .collect();
            Ok(json!({"roles": roles}))
        }
        Request::DirectoryAdd { records } => {
            if records.is_empty() {
                return Err(ApiError::bad("no directory records given"));
            }
            if records.len() > 1024 {
                return Err(ApiError::bad("at most 1,024 directory records at once"));
            }
            let bytes = records
                .iter()
                .map(|r| directory_record(r))
                .collect::<Result<Vec<_>, _>>()?;
            let new = engine
                .add_directory_records(&bytes, now_ms)
                .map_err(|e| ApiError::bad(format!("not taken in: {e}")))?;
            // Saved here too (a command run offline has no node to save what it learns).
            if let Some(dir) = &facts.credentials_dir {
                crate::credentials::save_directory(dir, &bytes).map_err(ApiError::internal)?;
            }
            Ok(json!({"new": new, "records": engine.directory().len()}))
        }
        Request::SendToRole { role, messages } => {
            let drafts = drafts(engine, None, messages, now_ms)?;
            let r = engine.directory().find_role(&role)?;
            let c = engine.role_conversation(&r, now_ms)?;
            let mut ids = Vec::with_capacity(drafts.len());
            for draft in drafts {
                ids.push(engine.send_message(&c, draft, now_ms)?.to_string());
            }
            let members: Vec<String> = engine
                .replica()
                .conversation(&c)
                .map(|x| {
                    x.membership
                        .state()
                        .members
                        .keys()
                        .filter(|d| **d != engine.device_id())
                        .map(|d| d.to_string())
                        .collect()
                })
                .unwrap_or_default();
            Ok(
                json!({"conversation": c.to_string(), "role": r.to_string(), "ids": ids, "to": members}),
            )
        }
        Request::Invitations => Ok(Value::Array(
            engine
                .invitations()
                .iter()
                .map(|h| {
                    json!({"id": h.conversation.to_string(), "inviter": h.inviter.to_string(),
                           "received_ms": h.received_ms})
                })
                .collect(),
        )),
        Request::AcceptInvitation { id } => {
            if let Ok(d) = id.trim().parse::<DeviceId>() {
                let d = device(&d.to_string())?;
                let accepted = engine.accept_device(&d, now_ms)?;
                return Ok(json!({"ok": true, "device": d.to_string(),
                                 "conversations": accepted.iter().map(|c| c.to_string()).collect::<Vec<_>>()}));
            }
            let c = held_invitation(engine, &id)?;
            engine.accept_invitation(&c, now_ms)?;
            Ok(json!({"ok": true, "conversations": [c.to_string()]}))
        }
        Request::DeclineInvitation { id } => {
            let c = held_invitation(engine, &id)?;
            engine.decline_invitation(&c)?;
            Ok(json!({"ok": true, "conversation": c.to_string()}))
        }
        Request::BundleExport(args) => crate::bundle::export(engine, &args, now_ms),
        Request::Export(args) => crate::export::export(engine, &args, now_ms),
        Request::BundleRecords { exporter, records } => {
            let t = engine
                .handle_bundle_records(exporter, &records, now_ms)
                .map_err(|e| ApiError::internal(format!("storage: {e}")))?;
            Ok(crate::bundle::tally_json(&t))
        }
    }
}

/// A request on its way to the engine thread, with where to send the answer.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Result<Value, ApiError>>,
}

#[derive(Clone)]
struct AppState {
    calls: mpsc::Sender<crate::Input>,
    token: Arc<String>,
    events: broadcast::Sender<String>,
    /// Sign-in codes and page sessions (web.rs).
    sessions: Arc<std::sync::Mutex<crate::web::Sessions>>,
    /// The bound address (`127.0.0.1:PORT`): sign-in links point there.
    addr: SocketAddr,
    /// The origins of the app's own page (`http://127.0.0.1:PORT`, `http://localhost:PORT`).
    own_origins: Arc<Vec<String>>,
}

/// Who a request to `/v1/` comes from, as the guard found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// It carries the API token.
    Program,
    /// It carries a session cookie of the app's page (web.rs).
    Page,
}

/// 32 bytes from the OS generator for a code or a session id (a failure refuses the
/// request: a secret is never made of anything weaker).
fn random32() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no OS randomness: {e}")))?;
    Ok(b)
}

fn sessions(s: &AppState) -> std::sync::MutexGuard<'_, crate::web::Sessions> {
    s.sessions.lock().unwrap_or_else(|e| e.into_inner())
}

/// The caller of a `/v1/` request: the token (programs), or the session cookie of the app's
/// own page (same origin; a request that changes something must carry its `Origin`).
fn caller(s: &AppState, req: &axum::extract::Request) -> Result<Caller, ApiError> {
    let h = req.headers();
    if h.get("authorization").is_some() {
        return if authorized(h, &s.token) {
            Ok(Caller::Program)
        } else {
            Err(ApiError {
                status: 401,
                message: "missing or wrong API token (see the api-token file in the node's home)"
                    .into(),
            })
        };
    }
    let name = crate::web::cookie_name(s.addr.port());
    let session = h
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| crate::web::cookie(v, &name));
    let Some(session) = session else {
        return Err(ApiError {
            status: 401,
            message: "missing or wrong API token (see the api-token file in the node's home), \
                      or sign in to the app with `vaarta open`"
                .into(),
        });
    };
    if !sessions(s).check(session, std::time::Instant::now()) {
        return Err(ApiError {
            status: 401,
            message: "this sign-in has ended (run `vaarta open` to sign in again)".into(),
        });
    }
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    crate::web::page_request(
        req.method().as_str(),
        text("origin"),
        text("sec-fetch-site"),
        &s.own_origins,
    )
    .map_err(|message| ApiError {
        status: 403,
        message,
    })?;
    Ok(Caller::Page)
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = v.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

/// Whether a `Host` header names this device: `localhost`, a loopback address, with or
/// without a port. Anything else is a page that re-pointed its own name at 127.0.0.1 (DNS
/// rebinding) or a request meant for another host.
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || tail.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a peer's organisation credentials say, for `/v1/peers`: `null` (none presented),
/// `{"verified": true, ...who}` or `{"verified": false, "reason": ...}`.
fn credential_json(c: Option<&vaarta_engine::PeerCredential>) -> Value {
    match c {
        None => Value::Null,
        Some(vaarta_engine::PeerCredential::Verified(v)) => json!({
            "verified": true,
            "org": v.org.to_string(),
            "org_name": v.org_name,
            "via": v.via.map(|o| o.to_string()),
            "person": v.person.to_string(),
            "names": v.names.iter().map(|(l, n)| json!({"lang": l, "name": n})).collect::<Vec<_>>(),
            "designation": v.designation,
            "unit": v.unit.to_string(),
            "label": v.label,
            "expires_ms": v.expires,
        }),
        Some(vaarta_engine::PeerCredential::Unverified(why)) => {
            json!({"verified": false, "reason": why})
        }
    }
}

/// Whether an `Origin` header is a page served from this device (`http://localhost:…`,
/// `http://127.0.0.1:…`); `null` and every other origin are foreign.
pub fn loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|h| !h.contains('/') && loopback_host(h))
}

/// Runs before any extractor reads the request: a foreign `Host` or `Origin` is refused
/// (403), then a missing or wrong token (401), so nothing about the body (its type, size or
/// JSON) is looked at for a caller that may not call. Afterwards, an error answer the
/// framework wrote as text (a body that is not JSON, 413, 405) is rewritten as
/// `{"error": ...}` with its status.
async fn guard(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let h = req.headers();
    let header = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string())
    };
    if let Some(host) = header("host")
        && !loopback_host(&host)
    {
        return error_response(ApiError {
            status: 403,
            message: format!(
                "refused: Host '{host}' is not this device (the API answers loopback names only)"
            ),
        });
    }
    if let Some(origin) = header("origin")
        && !loopback_origin(&origin)
    {
        return error_response(ApiError {
            status: 403,
            message: format!("refused: requests from the web origin '{origin}' are not allowed"),
        });
    }
    let mut req = req;
    let api = req.uri().path() == "/v1" || req.uri().path().starts_with("/v1/");
    if api {
        match caller(&s, &req) {
            Ok(c) => {
                req.extensions_mut().insert(c);
            }
            Err(e) => return error_response(e),
        }
    }
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    error_response(ApiError {
        status: status.as_u16(),
        message,
    })
}

fn error_response(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({"error": e.message}))).into_response()
}

/// The handler of a route whose one path parameter `{id}` is all its request needs.
fn by_id(
    make: fn(String) -> Request,
) -> impl Fn(
    State<AppState>,
    Path<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |State(s): State<AppState>, Path(id): Path<String>| {
        Box::pin(async move { call(&s, make(id)).await })
    }
}

/// Runs a request on the engine thread. Only routes under `/v1/` call it, and the guard let
/// them through only for a caller with the token or a page session.
async fn call(state: &AppState, request: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    if state
        .calls
        .send(crate::Input::Api(Call { request, reply: tx }))
        .await
        .is_err()
    {
        return error_response(ApiError {
            status: 503,
            message: "the node is shutting down".into(),
        });
    }
    match rx.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(_) => error_response(ApiError::internal("the node stopped before answering")),
    }
}

#[derive(Deserialize)]
struct DirectoryQuery {
    q: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryAddBody {
    records: Vec<String>,
}

#[derive(Deserialize)]
struct RoleMessageBody {
    role: String,
    messages: Vec<OutgoingMessage>,
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
    from_page: Option<u32>,
    before: Option<String>,
}

#[derive(Deserialize)]
struct CreateBody {
    title: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    history_from_join: bool,
}

#[derive(Deserialize)]
struct MemberBody {
    device: String,
    #[serde(default)]
    admin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SendBody {
    Many { messages: Vec<OutgoingMessage> },
    One(OutgoingMessage),
}

#[derive(Deserialize)]
struct EditBody {
    body: String,
}

#[derive(Deserialize)]
struct RenameBody {
    title: String,
}

#[derive(Deserialize)]
struct ReactBody {
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct ReadReceiptsBody {
    on: bool,
}

/// A roll-call as the API shows it (docs/api.md).
pub fn rollcall_json(call: &vaarta_engine::rollcall::RollCall) -> Value {
    use vaarta_engine::rollcall::Answer;
    let (acknowledged, read, delivered, not_delivered) = call.counts();
    let v = &call.message.view;
    json!({
        "message": v.id.to_string(),
        "precedence": v.precedence.as_str(),
        "body": v.body,
        "author": call.message.author.map(|a| a.to_string()),
        "counts": {
            "acknowledged": acknowledged,
            "read": read,
            "delivered": delivered,
            "not_delivered": not_delivered,
        },
        "members": call.members.iter().map(|m| json!({
            "device": m.device.to_string(),
            "name": m.name,
            "state": m.answer.as_str(),
            "acknowledged_at_ms": match m.answer {
                Answer::Acknowledged(at) => Some(at.ms),
                _ => None,
            },
        })).collect::<Vec<_>>(),
    })
}

/// What a route handler returns: the API's answer, later.
type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// A handler for one message of one conversation (`{id}`, `{msg}`): calls `make`.
fn message_call(
    make: fn(String, String) -> Request,
) -> impl Fn(State<AppState>, Path<(String, String)>) -> Answer + Clone + Send + Sync + 'static {
    move |State(s): State<AppState>, Path((id, msg)): Path<(String, String)>| {
        Box::pin(async move { call(&s, make(id, msg)).await })
    }
}

/// Serves the API on `addr` until the process ends. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    calls: mpsc::Sender<crate::Input>,
    token: String,
    events: broadcast::Sender<String>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "the API listens on loopback only (127.0.0.1 or ::1), not {addr}"
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let state = AppState {
        calls,
        token: Arc::new(token),
        events,
        sessions: Arc::default(),
        addr: bound,
        own_origins: Arc::new(vec![
            format!("http://{bound}"),
            format!("http://localhost:{}", bound.port()),
        ]),
    };
    let app = Router::new()
        .route("/v1/login-codes", post(login_code))
        .route("/v1/logout", post(logout))
        .route("/login", get(login))
        .route(
            "/v1/status",
            get(|State(s): State<AppState>| async move {
                call(&s, Request::Status).await
            }),
        )
        .route(
            "/v1/peers",
            get(|State(s): State<AppState>| async move {
                call(&s, Request::Peers).await
            }),
        )
        .route(
            "/v1/conversations",
            get(|State(s): State<AppState>| async move {
                call(&s, Request::Conversations).await
            })
            .post(
                |State(s): State<AppState>, Json(b): Json<CreateBody>| async move {
                    call(
                        &s,
                        Request::CreateConversation {
                            title: b.title,
                            members: b.members,
                            history_from_join: b.history_from_join,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}",
            get(by_id(|conversation| Request::Conversation { conversation })).patch(
                |State(s): State<AppState>,
                 Path(id): Path<String>,
                 Json(b): Json<RenameBody>| async move {
                    call(
                        &s,
                        Request::Rename {
                            conversation: id,
                            title: b.title,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/members",
            post(
                |State(s): State<AppState>,
                 Path(id): Path<String>,
                 Json(b): Json<MemberBody>| async move {
                    call(
                        &s,
                        Request::AddMember {
                            conversation: id,
                            device: b.device,
                            admin: b.admin,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/members/{device}",
            delete(
                |State(s): State<AppState>,
                 Path((id, device)): Path<(String, String)>| async move {
                    call(
                        &s,
                        Request::RemoveMember {
                            conversation: id,
                            device,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/messages",
            get(
                |State(s): State<AppState>,
                 Path(id): Path<String>,
                 Query(q): Query<LimitQuery>| async move {
                    call(
                        &s,
                        Request::Messages {
                            conversation: id,
                            limit: q.limit.unwrap_or_else(default_limit),
                            from_page: q.from_page,
                            before: q.before,
                        },
                    )
                    .await
                },
            )
            .post(
                |State(s): State<AppState>,
                 Path(id): Path<String>,
                 Json(b): Json<SendBody>| async move {
                    let messages = match b {
                        SendBody::Many { messages } => messages,
                        SendBody::One(m) => vec![m],
                    };
                    call(
                        &s,
                        Request::Send {
                            conversation: id,
                            messages,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}",
            delete(
                |State(s): State<AppState>,
                 Path((id, msg)): Path<(String, String)>| async move {
                    call(
                        &s,
                        Request::Delete {
                            conversation: id,
                            message: msg,
                        },
                    )
                    .await
                },
            )
            .patch(
                |State(s): State<AppState>,
                 Path((id, msg)): Path<(String, String)>,
                 Json(b): Json<EditBody>| async move {
                    call(
                        &s,
                        Request::Edit {
                            conversation: id,
                            message: msg,
                            body: b.body,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}/reaction",
            post(
                |State(s): State<AppState>,
                 Path((id, msg)): Path<(String, String)>,
                 Json(b): Json<ReactBody>| async move {
                    call(
                        &s,
                        Request::React {
                            conversation: id,
                            message: msg,
                            emoji: b.emoji,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}/ack",
            post(message_call(|conversation, message| Request::Ack {
                conversation,
                message,
            })),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}/read",
            post(message_call(|conversation, message| Request::Read {
                conversation,
                message,
            })),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}/rollcall",
            get(message_call(|conversation, message| Request::Rollcall {
                conversation,
                message,
            })),
        )
        .route(
            "/v1/conversations/{id}/messages/{msg}/realert",
            post(message_call(|conversation, message| Request::Realert {
                conversation,
                message,
            })),
        )
        .route(
            "/v1/conversations/{id}/read-receipts",
            put(
                |State(s): State<AppState>,
                 Path(id): Path<String>,
                 Json(b): Json<ReadReceiptsBody>| async move {
                    call(
                        &s,
                        Request::ReadReceipts {
                            conversation: id,
                            on: b.on,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/directory",
            get(
                |State(s): State<AppState>, Query(q): Query<DirectoryQuery>| async move {
                    call(
                        &s,
                        Request::Directory {
                            query: q.q.unwrap_or_default(),
                        },
                    )
                    .await
                },
            )
            .post(
                |State(s): State<AppState>, Json(b): Json<DirectoryAddBody>| async move {
                    call(&s, Request::DirectoryAdd { records: b.records }).await
                },
            ),
        )
        .route(
            "/v1/roles",
            get(|State(s): State<AppState>| async move { call(&s, Request::Roles).await }),
        )
        .route(
            "/v1/roles/messages",
            post(
                |State(s): State<AppState>, Json(b): Json<RoleMessageBody>| async move {
                    call(
                        &s,
                        Request::SendToRole {
                            role: b.role,
                            messages: b.messages,
                        },
                    )
                    .await
                },
            ),
        )
        .route(
            "/v1/invitations",
            get(|State(s): State<AppState>| async move {
                call(&s, Request::Invitations).await
            }),
        )
        .route(
            "/v1/invitations/{id}/accept",
            post(by_id(|id| Request::AcceptInvitation { id })),
        )
        .route(
            "/v1/invitations/{id}/decline",
            post(by_id(|id| Request::DeclineInvitation { id })),
        )
        .route("/v1/bundles/export", post(bundle_export))
        .route("/v1/bundles/import", post(bundle_import))
        .route("/v1/export", post(conversation_export))
        .route("/v1/events", get(events_stream))
        .fallback(static_asset)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok((bound, task))
}

/// The headers every page and asset of the app is served with (docs/web.md).
fn asset_headers(content_type: &str) -> [(axum::http::HeaderName, String); 6] {
    use axum::http::header;
    [
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CONTENT_SECURITY_POLICY, crate::web::CSP.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        (header::REFERRER_POLICY, "no-referrer".into()),
        (header::X_FRAME_OPTIONS, "DENY".into()),
        // The service worker keeps the shell for offline use; the browser asks each time.
        (header::CACHE_CONTROL, "no-cache".into()),
    ]
}

/// `GET` of a file of the app (`/` is its page); anything else is a JSON 404 (or 405).
async fn static_asset(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let api = path == "/v1" || path.starts_with("/v1/");
    match crate::web::asset(path) {
        Some(a)
            if !api
                && (method == axum::http::Method::GET || method == axum::http::Method::HEAD) =>
        {
            (asset_headers(a.content_type), a.body).into_response()
        }
        Some(_) if !api => error_response(ApiError {
            status: 405,
            message: "the app's files are read with GET".into(),
        }),
        _ => error_response(ApiError::not_found("no such endpoint (see docs/api.md)")),
    }
}

/// Bundles name files on this machine: only a program with the token may have the node
/// read or write one, never a page.
fn program_only(who: Caller) -> Result<(), ApiError> {
    if who != Caller::Program {
        return Err(ApiError {
            status: 403,
            message: "bundles are exported and imported with the API token (`vaarta bundle`)"
                .into(),
        });
    }
    Ok(())
}

/// `POST /v1/bundles/export`: writes a bundle file (docs/api.md).
async fn bundle_export(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    Json(args): Json<crate::bundle::ExportArgs>,
) -> Response {
    if let Err(e) = program_only(who) {
        return error_response(e);
    }
    call(&s, Request::BundleExport(args)).await
}

/// `POST /v1/export`: writes a signed export of a conversation (docs/api.md, docs/export.md).
async fn conversation_export(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    Json(args): Json<crate::export::ExportArgs>,
) -> Response {
    if who != Caller::Program {
        return error_response(ApiError {
            status: 403,
            message: "exports are written with the API token (`vaarta export`)".into(),
        });
    }
    call(&s, Request::Export(args)).await
}

#[derive(Deserialize)]
struct ImportBody {
    path: String,
}

/// `POST /v1/bundles/import`: imports a bundle file, answering a stream of JSON lines:
/// `{"progress": {"phase", "done", "of"}}` while it runs, then `{"done": report}` or
/// `{"error": message, "status": code}` (docs/api.md).
async fn bundle_import(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    Json(b): Json<ImportBody>,
) -> Response {
    if let Err(e) = program_only(who) {
        return error_response(e);
    }
    let (tx, rx) = mpsc::channel::<String>(64);
    let calls = s.calls.clone();
    tokio::task::spawn_blocking(move || {
        let line = |v: Value| {
            let _ = tx.blocking_send(format!("{v}\n"));
        };
        // At most one progress line per percent (verify) or batch (import).
        let mut last = (String::new(), u64::MAX);
        let mut progress = |phase: &str, done: u64, of: u64| {
            let pct = (done * 100).checked_div(of).unwrap_or(100);
            if (phase, pct) != (last.0.as_str(), last.1) || phase == "import" {
                last = (phase.to_string(), pct);
                line(json!({"progress": {"phase": phase, "done": done, "of": of}}));
            }
        };
        let mut take = |exporter: DeviceId, records: Vec<Vec<u8>>| {
            let (rtx, rrx) = oneshot::channel();
            calls
                .blocking_send(crate::Input::Api(Call {
                    request: Request::BundleRecords { exporter, records },
                    reply: rtx,
                }))
                .map_err(|_| ApiError {
                    status: 503,
                    message: "the node is shutting down".into(),
                })?;
            rrx.blocking_recv()
                .map_err(|_| ApiError::internal("the node stopped before answering"))?
        };
        match crate::bundle::import_path(&b.path, &mut take, &mut progress) {
            Ok(report) => line(json!({"done": report})),
            Err(e) => line(json!({"error": e.message, "status": e.status})),
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let l = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(l), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// `POST /v1/login-codes`: a one-time sign-in code and its link, for a program holding the
/// token (`vaarta open`); a page cannot make one for itself.
async fn login_code(
    State(s): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
) -> Response {
    if who != Caller::Program {
        return error_response(ApiError {
            status: 403,
            message: "sign-in links are made with the API token (`vaarta open`)".into(),
        });
    }
    let random = match random32() {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let code = sessions(&s).issue_code(random, std::time::Instant::now());
    Json(json!({
        "code": code,
        "url": format!("http://{}/login?code={code}", s.addr),
        "expires_in_ms": crate::web::CODE_TTL.as_millis() as u64,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

/// `GET /login?code=…`: takes the code (once) and answers `303 /` with the session cookie;
/// a used, expired or unknown code answers `303 /#signin-failed` with no cookie (the page
/// says so in the user's language).
async fn login(State(s): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    use axum::http::header;
    let random = match random32() {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let taken = q
        .code
        .as_deref()
        .map_or(Err(crate::web::LoginError::Unknown), |c| {
            sessions(&s).redeem(c, random, std::time::Instant::now())
        });
    let no_store = (header::CACHE_CONTROL, "no-store".to_string());
    let no_referrer = (header::REFERRER_POLICY, "no-referrer".to_string());
    match taken {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (
                    header::SET_COOKIE,
                    crate::web::session_cookie(s.addr.port(), &id),
                ),
                no_store,
                no_referrer,
            ],
        )
            .into_response(),
        Err(e) => {
            tracing::info!(error = %e, "sign-in refused");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/#signin-failed".to_string()),
                    no_store,
                    no_referrer,
                ],
            )
                .into_response()
        }
    }
}

/// `POST /v1/logout`: ends the page's session and removes its cookie.
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let name = crate::web::cookie_name(s.addr.port());
    for v in headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        if let Some(id) = crate::web::cookie(v, &name) {
            sessions(&s).end(id);
        }
    }
    (
        [(
            axum::http::header::SET_COOKIE,
            crate::web::clear_cookie(s.addr.port()),
        )],
        Json(json!({"ok": true})),
    )
        .into_response()
}

/// The next event for one subscriber of the stream, as (SSE event name, JSON data). A
/// subscriber that fell behind the channel (a slow reader, or a burst larger than the
/// channel) gets `{"type": "lagged", "missed": n}` under the event name `lagged` instead of
/// the events it lost, so it knows to re-read. `None` once the node is gone.
async fn next_event(
    rx: &mut broadcast::Receiver<String>,
) -> Option<(Option<&'static str>, String)> {
    match rx.recv().await {
        Ok(line) => Some((None, line)),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            tracing::debug!(missed = n, "event stream lagged");
            Some((
                Some("lagged"),
                json!({"type": "lagged", "missed": n}).to_string(),
            ))
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

async fn events_stream(State(s): State<AppState>) -> Response {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let (name, data) = next_event(&mut rx).await?;
        let mut e = SseEvent::default().data(data);
        if let Some(name) = name {
            e = e.event(name);
        }
        Some((Ok::<_, std::convert::Infallible>(e), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaarta_engine::Config;
    use vaarta_sync::identity::Identity;
    use vaarta_sync::store::MemoryStore;

    const NOW: u64 = 1_790_000_000_000;

    fn engine(seed: u8, name: &str) -> Engine<MemoryStore> {
        let config = Config {
            name: name.into(),
            ..Config::default()
        };
        Engine::new(
            Identity::from_seed([seed; 32]),
            MemoryStore::new(),
            config,
            [seed; 32],
            NOW,
        )
        .unwrap()
    }

    fn run(e: &mut Engine<MemoryStore>, r: Request) -> Value {
        let v = execute(e, r, NOW, &NodeFacts::default()).unwrap();
        e.flush(NOW).unwrap();
        v
    }

    #[test]
    fn a_conversation_is_listed_as_it_is_shown() {
        let mut e = engine(1, "Asha");
        let other = Identity::from_seed([2; 32]).device_id().to_string();
        let id = run(
            &mut e,
            Request::CreateConversation {
                title: "Relief".into(),
                members: vec![other.clone()],
                history_from_join: false,
            },
        )["id"]
            .as_str()
            .unwrap()
            .to_string();
        let listed = run(&mut e, Request::Conversations);
        let shown = run(
            &mut e,
            Request::Conversation {
                conversation: id[..6].into(),
            },
        );
        assert_eq!(listed, Value::Array(vec![shown.clone()]));
        let keys: Vec<&str> = shown
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "admin",
                "epochs",
                "equivocators",
                "id",
                "member",
                "members",
                "pages",
                "read_receipts",
                "removed",
                "title"
            ]
        );
        assert_eq!(shown["equivocators"], json!([]));
        assert_eq!(shown["id"], id.as_str());
        assert_eq!(shown["title"], "Relief");
        assert_eq!(shown["admin"], true);
        assert_eq!(shown["member"], true);
        let members = shown["members"].as_array().unwrap();
        assert_eq!(members.len(), 2);
        assert!(
            members
                .iter()
                .any(|m| m["device"] == other.as_str() && m["admin"] == false)
        );
    }

    /// A device found equivocating is named as `members` names devices, so a client can
    /// match the two.
    #[test]
    fn equivocators_are_named_as_members_are() {
        let mallory = Identity::from_seed([3; 32]).device_id();
        let info = ConversationInfo {
            id: ConversationId([1; 16]),
            title: "t".into(),
            members: vec![MemberInfo {
                device: mallory,
                name: Some("Mallory".into()),
                admin: false,
            }],
            me_admin: true,
            me_member: true,
            me_removed: false,
            epochs: 1,
            pages: 1,
            equivocators: vec![mallory],
        };
        let shown = conversation_json(&info, true);
        assert_eq!(shown["equivocators"], json!([mallory.to_string()]));
        assert_eq!(shown["equivocators"][0], shown["members"][0]["device"]);
    }

    /// The roll-call endpoints on one device (the two-device flow is the engine's
    /// `tests/rollcall.rs` and the process test): shapes, refusals, the setting.
    #[test]
    fn rollcall_ack_and_realert_answer_and_refuse_clearly() {
        let mut e = engine(1, "Asha");
        let other = Identity::from_seed([2; 32]).device_id().to_string();
        let id = run(
            &mut e,
            Request::CreateConversation {
                title: "district control".into(),
                members: vec![other.clone()],
                history_from_join: false,
            },
        )["id"]
            .as_str()
            .unwrap()
            .to_string();
        let send = |e: &mut Engine<MemoryStore>, body: &str, p: Option<&str>| {
            run(
                e,
                Request::Send {
                    conversation: id.clone(),
                    messages: vec![OutgoingMessage {
                        body: body.into(),
                        precedence: p.map(str::to_string),
                        expires_in_ms: None,
                        removed_expires_in_s: None,
                        reply_to: None,
                    }],
                },
            )["ids"][0]
                .as_str()
                .unwrap()
                .to_string()
        };
        let flash = send(&mut e, "flood at the bridge", Some("flash"));
        let routine = send(&mut e, "tea at four", None);
        let call = run(
            &mut e,
            Request::Rollcall {
                conversation: id.clone(),
                message: flash.clone(),
            },
        );
        assert_eq!(call["precedence"], "flash");
        assert_eq!(call["counts"]["not_delivered"], 1);
        assert_eq!(call["members"][0]["device"], other.as_str());
        assert_eq!(call["members"][0]["state"], "not_delivered");
        assert_eq!(call["members"][0]["acknowledged_at_ms"], Value::Null);
        let err = |e: &mut Engine<MemoryStore>, r: Request| {
            execute(e, r, NOW, &NodeFacts::default()).unwrap_err()
        };
        // One's own alert needs no acknowledgement; a routine message takes none.
        for m in [&flash, &routine] {
            let x = err(
                &mut e,
                Request::Ack {
                    conversation: id.clone(),
                    message: m.clone(),
                },
            );
            assert_eq!(x.status, 400, "{}", x.message);
        }
        let x = err(
            &mut e,
            Request::Rollcall {
                conversation: id.clone(),
                message: "0.nonsense".into(),
            },
        );
        assert_eq!(x.status, 400, "{}", x.message);
        // Re-alert: the member who has not acknowledged, and a FLASH reply.
        let r = run(
            &mut e,
            Request::Realert {
                conversation: id.clone(),
                message: flash.clone(),
            },
        );
        assert_eq!(r["pending"], json!([other]));
        let again = r["id"].as_str().unwrap().to_string();
        let msgs = run(
            &mut e,
            Request::Messages {
                conversation: id.clone(),
                limit: 10,
                from_page: None,
                before: None,
            },
        );
        let nudge = msgs
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == again.as_str())
            .unwrap();
        assert_eq!(nudge["reply_to"], flash.as_str());
        assert_eq!(nudge["precedence"], "flash");
        let x = err(
            &mut e,
            Request::Realert {
                conversation: id.clone(),
                message: routine,
            },
        );
        assert_eq!(x.status, 400, "{}", x.message);
        // Read receipts: on by default, off per conversation.
        let conv_json = |e: &mut Engine<MemoryStore>| {
            run(
                e,
                Request::Conversation {
                    conversation: id.clone(),
                },
            )
        };
        assert_eq!(conv_json(&mut e)["read_receipts"], true);
        run(
            &mut e,
            Request::ReadReceipts {
                conversation: id.clone(),
                on: false,
            },
        );
        assert_eq!(conv_json(&mut e)["read_receipts"], false);
        let r = run(
            &mut e,
            Request::Read {
                conversation: id.clone(),
                message: flash,
            },
        );
        assert_eq!(r["owed"], false);
    }

    #[test]
    fn reactions_name_their_author() {
        let mut e = engine(3, "Asha");
        let id = run(
            &mut e,
            Request::CreateConversation {
                title: "x".into(),
                members: vec![],
                history_from_join: false,
            },
        )["id"]
            .as_str()
            .unwrap()
            .to_string();
        let sent = run(
            &mut e,
            Request::Send {
                conversation: id.clone(),
                messages: vec![OutgoingMessage {
                    body: "boats at ghat 3".into(),
                    precedence: None,
                    expires_in_ms: None,
                    removed_expires_in_s: None,
                    reply_to: None,
                }],
            },
        );
        let msg = sent["ids"][0].as_str().unwrap().to_string();
        run(
            &mut e,
            Request::React {
                conversation: id.clone(),
                message: msg,
                emoji: Some("👍".into()),
            },
        );
        let msgs = run(
            &mut e,
            Request::Messages {
                conversation: id,
                limit: 10,
                from_page: None,
                before: None,
            },
        );
        let r = &msgs[0]["reactions"][0];
        assert_eq!(r["emoji"], "👍");
        assert_eq!(r["name"], "Asha");
        assert_eq!(r["device"], e.device_id().to_string().as_str());
        assert_eq!(r["by"], actor_hint(&e.device_id()).as_str());
    }

    fn create(e: &mut Engine<MemoryStore>, title: &str) -> String {
        run(
            e,
            Request::CreateConversation {
                title: title.into(),
                members: vec![],
                history_from_join: false,
            },
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn try_run(e: &mut Engine<MemoryStore>, r: Request) -> Result<Value, ApiError> {
        let v = execute(e, r, NOW, &NodeFacts::default());
        e.flush(NOW).unwrap();
        v
    }

    /// Bug 6: a prefix of several conversations is "ambiguous" (400), not "no match".
    #[test]
    fn an_ambiguous_prefix_says_so() {
        let mut e = engine(4, "Asha");
        // 33 ids in a 32-letter alphabet: two start alike.
        let ids: Vec<String> = (0..33).map(|i| create(&mut e, &format!("c{i}"))).collect();
        let shared = ids
            .iter()
            .find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1)
            .unwrap()[..1]
            .to_string();
        let show = |e: &mut Engine<MemoryStore>, c: &str| {
            try_run(
                e,
                Request::Conversation {
                    conversation: c.into(),
                },
            )
        };
        let err = show(&mut e, &shared).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains("matches") && err.message.contains("conversations"),
            "{err}"
        );
        assert_eq!(show(&mut e, &ids[0]).unwrap()["id"], ids[0].as_str());
        assert_eq!(show(&mut e, "a/b?c d").unwrap_err().status, 404);
        assert_eq!(show(&mut e, " ").unwrap_err().message, EMPTY_CONVERSATION);
    }

    fn send(
        e: &mut Engine<MemoryStore>,
        conv: &str,
        m: OutgoingMessage,
    ) -> Result<Value, ApiError> {
        try_run(
            e,
            Request::Send {
                conversation: conv.into(),
                messages: vec![m],
            },
        )
    }

    fn text(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            precedence: None,
            expires_in_ms: None,
            removed_expires_in_s: None,
            reply_to: None,
        }
    }

    /// Bug 4: expiries are checked (no overflow into the past), 0 and more than a year refused.
    #[test]
    fn expiry_is_checked() {
        let mut e = engine(5, "Asha");
        let c = create(&mut e, "x");
        for bad in [0, MAX_EXPIRES_MS + 1, u64::MAX] {
            let err = send(
                &mut e,
                &c,
                OutgoingMessage {
                    expires_in_ms: Some(bad),
                    ..text("hi")
                },
            )
            .unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains("expires_in_ms must be 1 to"), "{err}");
        }
        assert_eq!(expiry_of(NOW, 1), Ok((NOW + 1).div_ceil(1000)));
        assert_eq!(expiry_of(u64::MAX - 5, 10).unwrap_err().status, 400);
        // The old field is refused, not ignored (which would send without an expiry).
        let old: OutgoingMessage =
            serde_json::from_value(json!({"body": "hi", "expires_in_s": 60})).unwrap();
        let err = send(&mut e, &c, old).unwrap_err();
        assert!(err.message.contains("replaced by expires_in_ms"), "{err}");
        send(
            &mut e,
            &c,
            OutgoingMessage {
                expires_in_ms: Some(3_600_000),
                ..text("hi")
            },
        )
        .unwrap();
        let m = &run(
            &mut e,
            Request::Messages {
                conversation: c,
                limit: 1,
                from_page: None,
                before: None,
            },
        )[0];
        assert_eq!(m["expires"], Value::Null, "one unit: no seconds field");
        assert_eq!(m["expires_at_ms"], (NOW + 3_600_000).div_ceil(1000) * 1000);
    }

    /// A follower that knows which pages changed reads only those: `from_page` leaves the
    /// pages below it unread (bug 5: `log --follow` re-read the newest 200 per event).
    #[test]
    fn messages_from_a_page_leave_the_older_pages_out() {
        let mut e = engine(7, "Asha");
        let c = create(&mut e, "x");
        let batch: Vec<OutgoingMessage> = (0..300).map(|i| text(&format!("m{i}"))).collect();
        for chunk in batch.chunks(10) {
            run(
                &mut e,
                Request::Send {
                    conversation: c.clone(),
                    messages: chunk.to_vec(),
                },
            );
        }
        let page = |m: &Value| -> u32 {
            m["id"]
                .as_str()
                .unwrap()
                .split_once('.')
                .unwrap()
                .0
                .parse()
                .unwrap()
        };
        let all = run(
            &mut e,
            Request::Messages {
                conversation: c.clone(),
                limit: MAX_LIMIT,
                from_page: None,
                before: None,
            },
        );
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), 300);
        let top = all.iter().map(page).max().unwrap();
        assert!(
            all.iter().any(|m| page(m) < top),
            "300 messages fill more than one page"
        );
        let newest = run(
            &mut e,
            Request::Messages {
                conversation: c,
                limit: MAX_LIMIT,
                from_page: Some(top),
                before: None,
            },
        );
        let newest = newest.as_array().unwrap();
        let on_top = all.iter().filter(|m| page(m) == top).count();
        assert_eq!(newest.len(), on_top, "only the top page");
        assert!(newest.iter().all(|m| page(m) == top));
    }

    /// Bugs 9 and 10: limit 0, the body limit, blank bodies, replies to absent messages,
    /// non-emoji reactions and changes to deleted messages are refused with a clear line.
    #[test]
    fn bad_input_is_refused_clearly() {
        let mut e = engine(6, "Asha");
        let c = create(&mut e, "x");
        let err = |r: Result<Value, ApiError>| r.unwrap_err().message;
        for limit in [0, MAX_LIMIT + 1] {
            let m = err(try_run(
                &mut e,
                Request::Messages {
                    conversation: c.clone(),
                    limit,
                    from_page: None,
                    before: None,
                },
            ));
            assert!(m.starts_with("limit must be 1 to 100000"), "{m}");
        }
        let big = "x".repeat(64 * 1024 + 1);
        assert_eq!(
            err(send(&mut e, &c, text(&big))),
            "the message is 65537 bytes; the limit is 65536 bytes (64 KiB)"
        );
        assert_eq!(
            err(send(&mut e, &c, text(" \n\t "))),
            "the message is empty"
        );
        let id = send(&mut e, &c, text("boats")).unwrap()["ids"][0]
            .as_str()
            .unwrap()
            .to_string();
        // Same page, same form, another key.
        let mut absent = id.clone();
        let last = absent.pop().unwrap();
        absent.push(if last == '0' { '1' } else { '0' });
        message_id(&absent).unwrap();
        let r = OutgoingMessage {
            reply_to: Some(absent.clone()),
            ..text("re")
        };
        assert!(err(send(&mut e, &c, r)).contains("to reply to"));
        let r = OutgoingMessage {
            reply_to: Some(id.clone()),
            ..text("re")
        };
        send(&mut e, &c, r).unwrap();
        let react = |e: &mut Engine<MemoryStore>, emoji: &str| {
            try_run(
                e,
                Request::React {
                    conversation: c.clone(),
                    message: id.clone(),
                    emoji: Some(emoji.into()),
                },
            )
        };
        for bad in ["abc", "", " ", "👍 ok", "1"] {
            assert!(
                err(react(&mut e, bad)).contains("is not an emoji"),
                "{bad:?}"
            );
        }
        for good in ["👍", "🙏🏽", "❤️", "🇮🇳", "👩‍🚒", "1️⃣"] {
            react(&mut e, good).unwrap_or_else(|x| panic!("{good}: {x}"));
        }
        try_run(
            &mut e,
            Request::Delete {
                conversation: c.clone(),
                message: id.clone(),
            },
        )
        .unwrap();
        let m = err(try_run(
            &mut e,
            Request::Edit {
                conversation: c.clone(),
                message: id.clone(),
                body: "new".into(),
            },
        ));
        assert!(m.contains("was deleted"), "{m}");
        assert!(err(react(&mut e, "👍")).contains("was deleted"));
        let m = err(try_run(
            &mut e,
            Request::Edit {
                conversation: c.clone(),
                message: absent,
                body: "new".into(),
            },
        ));
        assert!(m.contains("no message"), "{m}");
    }

    /// Bug 7: the last admin cannot leave (it did nothing while saying it did); adding an
    /// admin again without a role keeps them admin.
    #[test]
    fn membership_changes_say_what_happens() {
        let mut e = engine(7, "Asha");
        let other = Identity::from_seed([8; 32]).device_id().to_string();
        let c = create(&mut e, "x");
        let add = |e: &mut Engine<MemoryStore>, admin: Option<bool>| {
            try_run(
                e,
                Request::AddMember {
                    conversation: c.clone(),
                    device: other.clone(),
                    admin,
                },
            )
        };
        assert_eq!(add(&mut e, Some(true)).unwrap()["changed"], true);
        let again = add(&mut e, None).unwrap();
        assert_eq!(
            (again["changed"].clone(), again["admin"].clone()),
            (json!(false), json!(true))
        );
        let shown = run(
            &mut e,
            Request::Conversation {
                conversation: c.clone(),
            },
        );
        assert!(
            shown["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["device"] == other.as_str() && m["admin"] == true)
        );
        assert_eq!(add(&mut e, Some(false)).unwrap()["admin"], false);
        let me = e.device_id().to_string();
        let m = try_run(
            &mut e,
            Request::RemoveMember {
                conversation: c.clone(),
                device: me,
            },
        )
        .unwrap_err();
        assert!(m.message.contains("last admin"), "{m}");
    }

    #[test]
    fn only_loopback_hosts_and_origins() {
        for h in [
            "127.0.0.1:7000",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "127.5.6.7",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:7000",
            "127.0.0.1.evil.example",
            "10.0.0.1:80",
            "[::1]x",
            "localhost:x",
            "",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
        assert!(loopback_origin("http://localhost:8080"));
        for o in [
            "null",
            "http://evil.example",
            "http://127.0.0.1.evil.example",
            "http://localhost/x",
            "file://",
        ] {
            assert!(!loopback_origin(o), "{o}");
        }
    }

    #[tokio::test]
    async fn the_server_refuses_a_non_loopback_address() {
        let (calls, _rx) = mpsc::channel(1);
        let (events, _) = broadcast::channel(1);
        let e = serve("0.0.0.0:0".parse().unwrap(), calls, "t".into(), events)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("loopback only"), "{e}");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_so_in_json() {
        let (tx, mut rx) = broadcast::channel(2);
        for i in 0..5 {
            tx.send(format!("{{\"n\": {i}}}")).unwrap();
        }
        let (name, data) = next_event(&mut rx).await.unwrap();
        assert_eq!(name, Some("lagged"));
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v, json!({"type": "lagged", "missed": 3}));
        assert_eq!(
            next_event(&mut rx).await.unwrap(),
            (None, "{\"n\": 3}".to_string())
        );
        assert_eq!(
            next_event(&mut rx).await.unwrap(),
            (None, "{\"n\": 4}".to_string())
        );
        drop(tx);
        assert_eq!(next_event(&mut rx).await, None);
    }
}
