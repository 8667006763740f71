//! Signed export of a conversation for the record (issue 17; docs/export.md draws the file
//! byte by byte and says what a verifier can and cannot check).
//!
//! ```text
//! header   magic "\x89VEXPT\r\n" (8) · version u16 (1) · exporter device key (32)
//!          · created-at ms u64 · conversation id (16)
//! records  type u8 · length u32 · bytes
//!          1 the Automerge document (first, exactly once)
//!          2 one signed change: what the author of a Change envelope signed
//! end      type u8 (0) · record count u64
//! trailer  BLAKE3 of every byte above (32) · Ed25519 of EXPORT_DOMAIN ‖ hash by the
//!          exporter (64)
//! ```
//! All integers are big-endian; nothing may follow the trailer. A signed change record is
//! `header length u8 · envelope header · salt (12) · signer key (32) · signature (64) ·
//! payload`: the envelope's own cleartext header and the plaintext its author signed
//! ([`SignedContent`]). Its signature verifies with nothing but the conversation id, so the
//! export carries no epoch key: it discloses the exported messages and nothing else of the
//! conversation.
//!
//! [`verify`] checks, with no store and no key: the structure and bounds, the exporter's
//! signature over every byte, every signed change's author signature, the page rules on
//! every change (the Automerge actor is the signer's, an author writes only its own
//! messages), then rebuilds the pages from the signed changes and requires every message of
//! the document to equal the rebuilt one — text, author, time, edits, deletion, reply,
//! precedence, expiry, reactions — in the order `vaarta log` shows them. So neither a
//! carrier nor the exporter can change what a message says or who wrote it without the
//! author's key.
//!
//! Bounds (checked before anything is allocated or parsed): a file holds at most
//! [`MAX_EXPORT_BYTES`] and [`MAX_RECORDS`] records; the document at most
//! [`MAX_DOCUMENT_BYTES`]; a signed change at most the envelope limit.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use thiserror::Error;

use crate::codec::Reader;
use crate::envelope::{Precedence, SALT_LEN, SignedContent};
use crate::hlc::Hlc;
use crate::identity::Identity;
use crate::ids::{ConversationId, DeviceId, actor_bytes};
use crate::limits::MAX_ENVELOPE_BYTES;
use crate::page::{self, MessageId, Page};

/// The first bytes of every export (a high byte and CR LF, as PNG and the bundle).
pub const MAGIC: [u8; 8] = *b"\x89VEXPT\r\n";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// The file signature's domain: an export signature verifies as nothing else (a bundle's,
/// an envelope's), nor anything else as one.
pub const EXPORT_DOMAIN: &[u8] = b"vaarta 2026 export signature v1";
/// The largest export file.
pub const MAX_EXPORT_BYTES: u64 = 256 * 1024 * 1024;
/// The largest Automerge document in one (a 10^5-message conversation is about 20 MB).
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The largest signed change record: the envelope limit.
pub const MAX_SIGNED_BYTES: u64 = MAX_ENVELOPE_BYTES as u64;
/// The most records in one export.
pub const MAX_RECORDS: u64 = 1 << 20;
/// Bytes of the header.
pub const HEADER_LEN: usize = 8 + 2 + 32 + 8 + 16;
/// Bytes a record adds before its content.
pub const RECORD_HEAD_LEN: usize = 1 + 4;
/// Bytes after the last record: end marker, count, hash, signature.
pub const TRAILER_LEN: usize = 1 + 8 + 32 + 64;
/// Where the document's bytes start (it is the first record): a tool that only wants the
/// document reads the length at `HEADER_LEN + 1` and the bytes from here.
pub const DOCUMENT_OFFSET: usize = HEADER_LEN + RECORD_HEAD_LEN;

pub const RECORD_END: u8 = 0;
pub const RECORD_DOCUMENT: u8 = 1;
pub const RECORD_SIGNED: u8 = 2;

/// The `format` field at the document's root.
pub const DOCUMENT_FORMAT: &str = "vaarta-export";

/// An export's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub exporter: DeviceId,
    pub created_ms: u64,
    pub conversation: ConversationId,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_be_bytes());
        h[10..42].copy_from_slice(&self.exporter.0);
        h[42..50].copy_from_slice(&self.created_ms.to_be_bytes());
        h[50..66].copy_from_slice(&self.conversation.0);
        h
    }

    fn decode(h: &[u8]) -> Result<Self, ExportError> {
        if h.len() < 8 || h[..8] != MAGIC {
            return Err(if MAGIC.starts_with(h) && !h.is_empty() {
                ExportError::Truncated
            } else {
                ExportError::NotAnExport
            });
        }
        if h.len() < 10 {
            return Err(ExportError::Truncated);
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(ExportError::Version(version));
        }
        if h.len() < HEADER_LEN {
            return Err(ExportError::Truncated);
        }
        let exporter = DeviceId(h[10..42].try_into().unwrap_or([0; 32]));
        if !exporter.is_valid() {
            return Err(ExportError::Malformed(
                "the exporter key is not a valid device key",
            ));
        }
        Ok(Self {
            exporter,
            created_ms: u64::from_be_bytes(h[42..50].try_into().unwrap_or([0; 8])),
            conversation: ConversationId(h[50..66].try_into().unwrap_or([0; 16])),
        })
    }
}

/// Why an export is refused (or cannot be written). Every one means: do not trust it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExportError {
    #[error("not a Vaarta export (the file does not start with the export magic)")]
    NotAnExport,
    #[error("export format version {0} is not read here: this program reads version {VERSION}")]
    Version(u16),
    #[error("the export is truncated (it ends before its signed trailer)")]
    Truncated,
    #[error("the export is malformed: {0}")]
    Malformed(&'static str),
    #[error("the export is over {MAX_EXPORT_BYTES} bytes")]
    TooLarge,
    #[error("the export holds over {MAX_RECORDS} records")]
    TooManyRecords,
    #[error("a {what} record of {len} bytes is over the limit of {max} bytes")]
    RecordTooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("record type {0} is not known here (a newer format?)")]
    UnknownRecord(u8),
    #[error("the trailer says {said} records but the export holds {found}")]
    Count { said: u64, found: u64 },
    #[error(
        "the exporter's signature does not verify: the file was changed after it was written, or signed by another key than its header names"
    )]
    BadSignature,
    #[error("bytes follow the export's trailer")]
    TrailingBytes,
    #[error("signed change {index} does not verify: {why}")]
    Signed { index: u64, why: String },
    #[error("the signed changes of page {page} cannot be put together: {why}")]
    Rebuild { page: u32, why: String },
    #[error("the Automerge document cannot be read: {0}")]
    Document(String),
    #[error(
        "message {message}: the document says {field} {document}, but the signed changes say {signed}"
    )]
    Mismatch {
        message: String,
        field: &'static str,
        document: String,
        signed: String,
    },
    #[error("message {0} of the document is in no signed change of the export")]
    NotSigned(String),
    #[error("the document's messages are not in the order of their authors' clocks (at {0})")]
    Order(String),
}

/// One message as the document holds it (and as `vaarta log --json` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMessage {
    /// `page.key`, as the API names messages.
    pub id: String,
    pub author: Option<DeviceId>,
    /// The name the exporter knew the author by (not signed by the author: shown, never
    /// checked).
    pub author_name: Option<String>,
    pub sent_at_ms: u64,
    pub body: String,
    pub reply_to: Option<String>,
    pub precedence: Precedence,
    pub expires_at_ms: Option<u64>,
    pub edited_at_ms: Option<u64>,
    pub deleted: bool,
    /// (reactor's actor prefix, emoji), sorted.
    pub reactions: Vec<(String, String)>,
}

/// The document's root fields besides the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocInfo {
    pub conversation: ConversationId,
    /// As the exporter knew it (not checked).
    pub title: String,
    pub exporter: DeviceId,
    pub exported_at_ms: u64,
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn put_text(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    s: &str,
) -> Result<(), automerge::AutomergeError> {
    let t = doc.put_object(obj, key, ObjType::Text)?;
    doc.splice_text(&t, 0, 0, s)?;
    Ok(())
}

/// An identifier or a fixed word: a scalar string (one op, where text is one per character).
fn put_str(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    s: &str,
) -> Result<(), automerge::AutomergeError> {
    doc.put(obj, key, s)
}

fn put_opt_str(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    s: Option<&str>,
) -> Result<(), automerge::AutomergeError> {
    match s {
        Some(s) => put_str(doc, obj, key, s),
        None => doc.put(obj, key, ScalarValue::Null),
    }
}

fn put_opt_text(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    s: Option<&str>,
) -> Result<(), automerge::AutomergeError> {
    match s {
        Some(s) => put_text(doc, obj, key, s),
        None => doc.put(obj, key, ScalarValue::Null),
    }
}

fn put_opt_ms(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    ms: Option<u64>,
) -> Result<(), automerge::AutomergeError> {
    match ms {
        Some(ms) => doc.put(obj, key, ms_i64(ms)),
        None => doc.put(obj, key, ScalarValue::Null),
    }
}

/// The export's Automerge document: `{format, version, conversation, title, exporter,
/// exported_at_ms, messages: [{id, author, author_name, sent_at_ms, body, reply_to,
/// precedence, expires_at_ms, edited_at_ms, deleted, reactions: [{by, emoji}]}]}`. What
/// people wrote (title, author_name, body, emoji) is Automerge text (a plain string in
/// JavaScript); identifiers and fixed words are scalar strings (one op each, where text costs
/// one per character; `ImmutableString` in JavaScript, a string in its JSON); times are
/// integers (ms since the Unix epoch), absent values null. One change by an actor derived
/// from the exporter's key.
pub fn build_document(info: &DocInfo, messages: &[DocMessage]) -> Vec<u8> {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(&actor_bytes(&info.exporter)[..]));
    let r = (|| -> Result<(), automerge::AutomergeError> {
        put_str(&mut doc, &ROOT, "format", DOCUMENT_FORMAT)?;
        doc.put(&ROOT, "version", i64::from(VERSION))?;
        put_str(
            &mut doc,
            &ROOT,
            "conversation",
            &info.conversation.to_string(),
        )?;
        put_text(&mut doc, &ROOT, "title", &info.title)?;
        put_str(&mut doc, &ROOT, "exporter", &info.exporter.to_string())?;
        doc.put(&ROOT, "exported_at_ms", ms_i64(info.exported_at_ms))?;
        let list = doc.put_object(&ROOT, "messages", ObjType::List)?;
        for (i, m) in messages.iter().enumerate() {
            let o = doc.insert_object(&list, i, ObjType::Map)?;
            put_str(&mut doc, &o, "id", &m.id)?;
            put_opt_str(
                &mut doc,
                &o,
                "author",
                m.author.map(|a| a.to_string()).as_deref(),
            )?;
            put_opt_text(&mut doc, &o, "author_name", m.author_name.as_deref())?;
            doc.put(&o, "sent_at_ms", ms_i64(m.sent_at_ms))?;
            put_text(&mut doc, &o, "body", &m.body)?;
            put_opt_str(&mut doc, &o, "reply_to", m.reply_to.as_deref())?;
            put_str(&mut doc, &o, "precedence", m.precedence.as_str())?;
            put_opt_ms(&mut doc, &o, "expires_at_ms", m.expires_at_ms)?;
            put_opt_ms(&mut doc, &o, "edited_at_ms", m.edited_at_ms)?;
            doc.put(&o, "deleted", m.deleted)?;
            let rs = doc.put_object(&o, "reactions", ObjType::List)?;
            for (j, (by, emoji)) in m.reactions.iter().enumerate() {
                let ro = doc.insert_object(&rs, j, ObjType::Map)?;
                put_str(&mut doc, &ro, "by", by)?;
                put_text(&mut doc, &ro, "emoji", emoji)?;
            }
        }
        Ok(())
    })();
    // Only bad object ids fail these calls, and every id above was just made.
    debug_assert!(r.is_ok(), "{r:?}");
    doc.commit_with(
        CommitOptions::default()
            .with_message("Vaarta signed export".to_string())
            .with_time(ms_i64(info.exported_at_ms / 1000)),
    );
    doc.save()
}

fn doc_err(what: impl std::fmt::Display) -> ExportError {
    ExportError::Document(what.to_string())
}

/// Reads fields of the document, naming what is wrong.
struct DocReader<'a> {
    doc: &'a AutoCommit,
}

impl DocReader<'_> {
    fn get(&self, obj: &ObjId, key: &str) -> Result<Option<(Value<'_>, ObjId)>, ExportError> {
        self.doc.get(obj, key).map_err(doc_err)
    }

    /// A text (or string) field; `None` for null.
    fn opt_str(&self, obj: &ObjId, key: &str) -> Result<Option<String>, ExportError> {
        match self.get(obj, key)? {
            Some((Value::Object(ObjType::Text), id)) => {
                Ok(Some(self.doc.text(&id).map_err(doc_err)?))
            }
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Ok(Some(s.to_string())),
                ScalarValue::Null => Ok(None),
                _ => Err(doc_err(format!("field '{key}' is not text"))),
            },
            _ => Err(doc_err(format!("field '{key}' is missing or not text"))),
        }
    }

    fn str(&self, obj: &ObjId, key: &str) -> Result<String, ExportError> {
        self.opt_str(obj, key)?
            .ok_or_else(|| doc_err(format!("field '{key}' is null")))
    }

    fn opt_ms(&self, obj: &ObjId, key: &str) -> Result<Option<u64>, ExportError> {
        match self.get(obj, key)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Int(i) if *i >= 0 => Ok(Some(*i as u64)),
                ScalarValue::Uint(u) => Ok(Some(*u)),
                ScalarValue::Null => Ok(None),
                _ => Err(doc_err(format!("field '{key}' is not a time"))),
            },
            _ => Err(doc_err(format!("field '{key}' is missing or not a time"))),
        }
    }

    fn ms(&self, obj: &ObjId, key: &str) -> Result<u64, ExportError> {
        self.opt_ms(obj, key)?
            .ok_or_else(|| doc_err(format!("field '{key}' is null")))
    }

    fn bool(&self, obj: &ObjId, key: &str) -> Result<bool, ExportError> {
        match self.get(obj, key)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Boolean(b) => Ok(*b),
                _ => Err(doc_err(format!("field '{key}' is not true or false"))),
            },
            _ => Err(doc_err(format!("field '{key}' is missing"))),
        }
    }

    fn list(&self, obj: &ObjId, key: &str) -> Result<ObjId, ExportError> {
        match self.get(obj, key)? {
            Some((Value::Object(ObjType::List), id)) => Ok(id),
            _ => Err(doc_err(format!("field '{key}' is missing or not a list"))),
        }
    }

    fn map_at(&self, list: &ObjId, i: usize) -> Result<ObjId, ExportError> {
        match self.doc.get(list, i).map_err(doc_err)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(doc_err(format!("item {i} of a list is not a map"))),
        }
    }
}

fn device_field(s: Option<String>, what: &str) -> Result<Option<DeviceId>, ExportError> {
    s.map(|s| {
        s.parse::<DeviceId>()
            .map_err(|_| doc_err(format!("{what} '{s}' is not a device id")))
    })
    .transpose()
}

/// Reads an export's document (behind the panic boundary: it is untrusted input).
pub fn read_document(bytes: &[u8]) -> Result<(DocInfo, Vec<DocMessage>), ExportError> {
    let loaded = std::panic::catch_unwind(|| AutoCommit::load(bytes))
        .map_err(|_| doc_err("Automerge panicked on it (caught)"))?;
    let doc = loaded.map_err(doc_err)?;
    let d = DocReader { doc: &doc };
    if d.opt_str(&ROOT, "format")?.as_deref() != Some(DOCUMENT_FORMAT) {
        return Err(doc_err("it is not a Vaarta export document (format)"));
    }
    if d.ms(&ROOT, "version")? != u64::from(VERSION) {
        return Err(doc_err("its version is not 1"));
    }
    let conversation = d
        .str(&ROOT, "conversation")?
        .parse::<ConversationId>()
        .map_err(|_| doc_err("the conversation is not a conversation id"))?;
    let exporter = device_field(Some(d.str(&ROOT, "exporter")?), "the exporter")?
        .ok_or_else(|| doc_err("no exporter"))?;
    let info = DocInfo {
        conversation,
        title: d.str(&ROOT, "title")?,
        exporter,
        exported_at_ms: d.ms(&ROOT, "exported_at_ms")?,
    };
    let list = d.list(&ROOT, "messages")?;
    let n = doc.length(&list);
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for i in 0..n {
        let o = d.map_at(&list, i)?;
        let precedence = d.str(&o, "precedence")?;
        let rl = d.list(&o, "reactions")?;
        let mut reactions = Vec::new();
        for j in 0..doc.length(&rl) {
            let ro = d.map_at(&rl, j)?;
            reactions.push((d.str(&ro, "by")?, d.str(&ro, "emoji")?));
        }
        out.push(DocMessage {
            id: d.str(&o, "id")?,
            author: device_field(d.opt_str(&o, "author")?, "the author")?,
            author_name: d.opt_str(&o, "author_name")?,
            sent_at_ms: d.ms(&o, "sent_at_ms")?,
            body: d.str(&o, "body")?,
            reply_to: d.opt_str(&o, "reply_to")?,
            precedence: precedence
                .parse()
                .map_err(|_| doc_err(format!("precedence '{precedence}' is not known")))?,
            expires_at_ms: d.opt_ms(&o, "expires_at_ms")?,
            edited_at_ms: d.opt_ms(&o, "edited_at_ms")?,
            deleted: d.bool(&o, "deleted")?,
            reactions,
        });
    }
    Ok((info, out))
}

/// A signed change record's bytes.
pub fn encode_signed(s: &SignedContent) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + s.header.len() + SALT_LEN + 32 + 64 + s.payload.len());
    out.push(s.header.len() as u8);
    out.extend_from_slice(&s.header);
    out.extend_from_slice(&s.salt);
    out.extend_from_slice(&s.signer.0);
    out.extend_from_slice(&s.signature);
    out.extend_from_slice(&s.payload);
    out
}

/// Parses a signed change record (not verified here: [`SignedContent::verify`]).
pub fn decode_signed(b: &[u8]) -> Result<SignedContent, &'static str> {
    let (&hl, rest) = b.split_first().ok_or("empty")?;
    let hl = hl as usize;
    if rest.len() < hl + SALT_LEN + 32 + 64 {
        return Err("shorter than its fixed fields");
    }
    let (header, rest) = rest.split_at(hl);
    let (salt, rest) = rest.split_at(SALT_LEN);
    let (signer, rest) = rest.split_at(32);
    let (signature, payload) = rest.split_at(64);
    Ok(SignedContent {
        header: header.to_vec(),
        salt: salt.try_into().map_err(|_| "salt")?,
        signer: DeviceId(signer.try_into().map_err(|_| "signer")?),
        payload: payload.to_vec(),
        signature: signature.try_into().map_err(|_| "signature")?,
    })
}

fn signed_message(hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(EXPORT_DOMAIN.len() + 32);
    m.extend_from_slice(EXPORT_DOMAIN);
    m.extend_from_slice(hash);
    m
}

/// Writes a whole export: header, the document, the signed changes, the trailer signed by
/// `identity` (which must be the header's exporter).
pub fn write(
    header: &Header,
    document: &[u8],
    signed: &[SignedContent],
    identity: &Identity,
) -> Result<Vec<u8>, ExportError> {
    if document.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ExportError::RecordTooLarge {
            what: "document",
            len: document.len() as u64,
            max: MAX_DOCUMENT_BYTES,
        });
    }
    if signed.len() as u64 + 1 > MAX_RECORDS {
        return Err(ExportError::TooManyRecords);
    }
    let mut out = header.encode().to_vec();
    let record = |out: &mut Vec<u8>, t: u8, b: &[u8]| -> Result<(), ExportError> {
        if (out.len() + RECORD_HEAD_LEN + b.len() + TRAILER_LEN) as u64 > MAX_EXPORT_BYTES {
            return Err(ExportError::TooLarge);
        }
        out.push(t);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
        Ok(())
    };
    record(&mut out, RECORD_DOCUMENT, document)?;
    for s in signed {
        let b = encode_signed(s);
        if b.len() as u64 > MAX_SIGNED_BYTES {
            return Err(ExportError::RecordTooLarge {
                what: "signed change",
                len: b.len() as u64,
                max: MAX_SIGNED_BYTES,
            });
        }
        record(&mut out, RECORD_SIGNED, &b)?;
    }
    out.push(RECORD_END);
    out.extend_from_slice(&(signed.len() as u64 + 1).to_be_bytes());
    let hash = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&hash);
    out.extend_from_slice(&identity.sign(&signed_message(&hash)));
    Ok(out)
}

/// An export's parts, its structure and the exporter's signature checked (nothing inside
/// is yet: [`verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub header: Header,
    pub document: &'a [u8],
    pub signed: Vec<&'a [u8]>,
    /// The BLAKE3 the exporter's signature covers.
    pub hash: [u8; 32],
}

/// Checks structure, bounds and the exporter's signature. Every length is checked against
/// its bound and against the bytes that are there before anything is taken.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ExportError> {
    if bytes.len() as u64 > MAX_EXPORT_BYTES {
        return Err(ExportError::TooLarge);
    }
    let header = Header::decode(bytes)?;
    let mut at = HEADER_LEN;
    let mut document = None;
    let mut signed = Vec::new();
    let mut count = 0u64;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], ExportError> {
        let end = at.checked_add(n).ok_or(ExportError::Truncated)?;
        let b = bytes.get(*at..end).ok_or(ExportError::Truncated)?;
        *at = end;
        Ok(b)
    };
    loop {
        let t = take(&mut at, 1)?[0];
        if t == RECORD_END {
            break;
        }
        let (what, max) = match t {
            RECORD_DOCUMENT => ("document", MAX_DOCUMENT_BYTES),
            RECORD_SIGNED => ("signed change", MAX_SIGNED_BYTES),
            t => return Err(ExportError::UnknownRecord(t)),
        };
        let len = u32::from_be_bytes(take(&mut at, 4)?.try_into().unwrap_or([0; 4])) as u64;
        if len == 0 {
            return Err(ExportError::Malformed("an empty record"));
        }
        if len > max {
            return Err(ExportError::RecordTooLarge { what, len, max });
        }
        if count >= MAX_RECORDS {
            return Err(ExportError::TooManyRecords);
        }
        match (t, count) {
            (RECORD_DOCUMENT, 0) => {}
            (RECORD_DOCUMENT, _) => {
                return Err(ExportError::Malformed(
                    "a second document (the document is the first record, once)",
                ));
            }
            (_, 0) => {
                return Err(ExportError::Malformed(
                    "the first record is not the document",
                ));
            }
            _ => {}
        }
        let body = take(&mut at, len as usize)?;
        count += 1;
        if t == RECORD_DOCUMENT {
            document = Some(body);
        } else {
            signed.push(body);
        }
    }
    let said = u64::from_be_bytes(take(&mut at, 8)?.try_into().unwrap_or([0; 8]));
    if said != count {
        return Err(ExportError::Count { said, found: count });
    }
    let hash = *blake3::hash(&bytes[..at]).as_bytes();
    let given = take(&mut at, 32)?;
    let sig: [u8; 64] = take(&mut at, 64)?.try_into().unwrap_or([0; 64]);
    if given != hash
        || header
            .exporter
            .verify(&signed_message(&hash), &sig)
            .is_err()
    {
        return Err(ExportError::BadSignature);
    }
    if at != bytes.len() {
        return Err(ExportError::TrailingBytes);
    }
    let document = document.ok_or(ExportError::Malformed("no document"))?;
    Ok(Parsed {
        header,
        document,
        signed,
        hash,
    })
}

/// What [`verify`] found: an export whose every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub header: Header,
    pub title: String,
    /// The document's messages, each equal to what its author signed, in log order.
    pub messages: Vec<DocMessage>,
    /// Signed change records.
    pub signed_changes: u64,
    /// Devices that signed at least one change, with how many.
    pub signers: BTreeMap<DeviceId, u64>,
    /// Messages in the signed changes that the document does not show (the exporter left
    /// them out, or did not show them: a removed member's late ones).
    pub not_shown: usize,
    pub hash: [u8; 32],
}

/// A message as the signed changes make it.
struct Rebuilt {
    author: DeviceId,
    sent_at: Hlc,
    id: MessageId,
    m: DocMessage,
}

fn show<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// Verifies an export with nothing but its bytes (no store, no key, no network): see the
/// module docs for what is checked.
pub fn verify(bytes: &[u8]) -> Result<Verified, ExportError> {
    let p = parse(bytes)?;
    let conv = p.header.conversation;
    let mut pages: BTreeMap<u32, Vec<Change>> = BTreeMap::new();
    let mut actors: BTreeMap<Vec<u8>, DeviceId> = BTreeMap::new();
    let mut signers: BTreeMap<DeviceId, u64> = BTreeMap::new();
    for (i, rec) in p.signed.iter().enumerate() {
        let bad = |why: String| ExportError::Signed {
            index: i as u64 + 1,
            why,
        };
        let s = decode_signed(rec).map_err(|w| bad(w.to_string()))?;
        s.verify(&conv).map_err(|e| bad(e.to_string()))?;
        let mut r = Reader::new(&s.payload);
        let page_no = r.u32_varint("page").map_err(|e| bad(e.to_string()))?;
        let actor = s.signer.actor();
        let changes =
            crate::replica::decode_changes(r.rest(), &actor).map_err(|e| bad(e.to_string()))?;
        for ch in &changes {
            page::check_change(ch, &actor).map_err(|e| bad(e.to_string()))?;
        }
        actors.insert(actor.to_bytes().to_vec(), s.signer);
        *signers.entry(s.signer).or_default() += 1;
        pages.entry(page_no).or_default().extend(changes);
    }
    let mut rebuilt: BTreeMap<String, Rebuilt> = BTreeMap::new();
    for (no, changes) in pages {
        let page = Page::from_changes(no, changes).map_err(|e| ExportError::Rebuild {
            page: no,
            why: e.to_string(),
        })?;
        for v in page.messages() {
            let Some(author) = actors.get(&v.actor).copied() else {
                continue;
            };
            let id = v.id.to_string();
            rebuilt.insert(
                id.clone(),
                Rebuilt {
                    author,
                    sent_at: v.sent_at,
                    id: v.id.clone(),
                    m: DocMessage {
                        id,
                        author: Some(author),
                        author_name: None,
                        sent_at_ms: v.sent_at.ms,
                        body: v.body.clone(),
                        reply_to: v.reply_to.as_ref().map(|r| r.to_string()),
                        precedence: v.precedence,
                        expires_at_ms: v.expiry.and_then(|x| x.checked_mul(1000)),
                        edited_at_ms: v.edited_at.map(|h| h.ms),
                        deleted: v.deleted,
                        reactions: v.reactions.clone(),
                    },
                },
            );
        }
    }
    let (info, messages) = read_document(p.document)?;
    let head = |field: &'static str, document: String, signed: String| ExportError::Mismatch {
        message: "(the document's header)".into(),
        field,
        document,
        signed,
    };
    if info.conversation != conv {
        return Err(head(
            "conversation",
            info.conversation.to_string(),
            conv.to_string(),
        ));
    }
    if info.exporter != p.header.exporter {
        return Err(head(
            "exporter",
            info.exporter.to_string(),
            p.header.exporter.to_string(),
        ));
    }
    if info.exported_at_ms != p.header.created_ms {
        return Err(head(
            "exported_at_ms",
            info.exported_at_ms.to_string(),
            p.header.created_ms.to_string(),
        ));
    }
    let mut last: Option<(Hlc, MessageId)> = None;
    let mut seen = std::collections::BTreeSet::new();
    for m in &messages {
        let r = rebuilt
            .get(&m.id)
            .ok_or_else(|| ExportError::NotSigned(m.id.clone()))?;
        if !seen.insert(m.id.clone()) {
            return Err(ExportError::Order(format!("{} twice", m.id)));
        }
        let mismatch = |field: &'static str, d: String, s: String| ExportError::Mismatch {
            message: m.id.clone(),
            field,
            document: d,
            signed: s,
        };
        let s = &r.m;
        if m.author != Some(r.author) {
            return Err(mismatch(
                "author",
                m.author.map_or("none".into(), |a| a.to_string()),
                r.author.to_string(),
            ));
        }
        if m.sent_at_ms != s.sent_at_ms {
            return Err(mismatch(
                "sent_at_ms",
                m.sent_at_ms.to_string(),
                s.sent_at_ms.to_string(),
            ));
        }
        if m.body != s.body {
            return Err(mismatch("body", show(&m.body), show(&s.body)));
        }
        if m.deleted != s.deleted {
            return Err(mismatch("deleted", show(&m.deleted), show(&s.deleted)));
        }
        if m.edited_at_ms != s.edited_at_ms {
            return Err(mismatch(
                "edited_at_ms",
                show(&m.edited_at_ms),
                show(&s.edited_at_ms),
            ));
        }
        if m.reply_to != s.reply_to {
            return Err(mismatch("reply_to", show(&m.reply_to), show(&s.reply_to)));
        }
        if m.precedence != s.precedence {
            return Err(mismatch(
                "precedence",
                m.precedence.to_string(),
                s.precedence.to_string(),
            ));
        }
        if m.expires_at_ms != s.expires_at_ms {
            return Err(mismatch(
                "expires_at_ms",
                show(&m.expires_at_ms),
                show(&s.expires_at_ms),
            ));
        }
        let mut reactions = m.reactions.clone();
        reactions.sort();
        if reactions != s.reactions {
            return Err(mismatch(
                "reactions",
                show(&m.reactions),
                show(&s.reactions),
            ));
        }
        let key = (r.sent_at, r.id.clone());
        if last.as_ref().is_some_and(|l| *l >= key) {
            return Err(ExportError::Order(m.id.clone()));
        }
        last = Some(key);
    }
    Ok(Verified {
        header: p.header,
        title: info.title,
        not_shown: rebuilt.len() - messages.len(),
        messages,
        signed_changes: p.signed.len() as u64,
        signers,
        hash: p.hash,
    })
}

#[cfg(test)]
mod tests;
