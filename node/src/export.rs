//! Signed exports (docs/export.md): the node's side of `vaarta export` and
//! `vaarta verify-export`. The format, the document and every check live in `vaarta-sync`
//! (re-exported as `vaarta_engine::export`); this module moves bytes between them and files.
//!
//! * Export runs on the engine thread: the engine builds the file and verifies it, then it is
//!   written to a temporary file beside the target (owner-only: it holds the messages in
//!   the clear), fsynced, renamed into place and the directory fsynced.
//! * Verification needs no node and no store ([`verify_file`]): the file is read whole, its
//!   size checked against the format's bound first.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vaarta_engine::Engine;
use vaarta_engine::export::{self, ExportFailed, Verified};
use vaarta_sync::store::Store;

use crate::ApiError;

/// What `vaarta export` asks for (`POST /v1/export`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportArgs {
    /// The conversation id or a unique prefix.
    pub conversation: String,
    /// Absolute path of the file to write (replaced atomically if it exists).
    pub path: String,
}

/// Writes a signed export on the engine thread (see the module docs).
pub fn export<S: Store>(
    engine: &mut Engine<S>,
    args: &ExportArgs,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let path = PathBuf::from(&args.path);
    if !path.is_absolute() {
        return Err(ApiError::bad(format!(
            "the export path must be absolute (the node's working directory is not yours): {}",
            args.path
        )));
    }
    if !path.parent().is_some_and(Path::is_dir) || path.file_name().is_none() {
        return Err(ApiError::bad(format!(
            "no such directory for {}",
            path.display()
        )));
    }
    let id = crate::api::conv(engine, &args.conversation)?;
    let x = engine
        .export_conversation(&id, now_ms)
        .map_err(|e| match e {
            ExportFailed::Command(c) => ApiError::from(c),
            ExportFailed::Store(s) => ApiError::internal(format!("storage: {s}")),
            ExportFailed::Unverifiable(e) => ApiError {
                status: 409,
                message: format!("this conversation cannot be exported as it stands here: {e}"),
            },
        })?;
    crate::write_private(&path, &x.bytes)
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let mut report = verified_json(&x.verified);
    report["path"] = json!(path.display().to_string());
    report["bytes"] = json!(x.bytes.len());
    Ok(report)
}

/// A verified export as the API and `vaarta verify-export --json` show it.
pub fn verified_json(v: &Verified) -> Value {
    json!({
        "ok": true,
        "conversation": v.header.conversation.to_string(),
        "title": v.title,
        "exporter": v.header.exporter.to_string(),
        "exported_at_ms": v.header.created_ms,
        "hash": data_encoding::HEXLOWER.encode(&v.hash),
        "signed_changes": v.signed_changes,
        "signers": v.signers.iter().map(|(d, n)| json!({"device": d.to_string(), "changes": n})).collect::<Vec<_>>(),
        "not_shown": v.not_shown,
        "messages": v.messages.iter().map(|m| json!({
            "id": m.id,
            "author": m.author.map(|a| a.to_string()),
            "author_name": m.author_name,
            "sent_at_ms": m.sent_at_ms,
            "body": m.body,
            "reply_to": m.reply_to,
            "precedence": m.precedence.as_str(),
            "expires_at_ms": m.expires_at_ms,
            "edited_at_ms": m.edited_at_ms,
            "deleted": m.deleted,
            "reactions": m.reactions.iter().map(|(by, e)| json!({"by": by, "emoji": e})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Why a file was not verified: it could not be read, or it is not a valid export.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFileError {
    #[error("cannot read {path}: {e}")]
    Io { path: String, e: std::io::Error },
    #[error("{path}: NOT VERIFIED: {e}")]
    Invalid {
        path: String,
        e: export::ExportError,
    },
}

/// Reads and verifies an export file with no node and no store. The size is checked
/// against [`export::MAX_EXPORT_BYTES`] before the file is read, and the read is bounded
/// too (a file that grows meanwhile).
pub fn verify_file(path: &Path) -> Result<Verified, VerifyFileError> {
    let shown = path.display().to_string();
    let io = |e| VerifyFileError::Io {
        path: shown.clone(),
        e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let invalid = |e| VerifyFileError::Invalid {
        path: shown.clone(),
        e,
    };
    if size > export::MAX_EXPORT_BYTES {
        return Err(invalid(export::ExportError::TooLarge));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(export::MAX_EXPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    export::verify(&bytes).map_err(invalid)
}
