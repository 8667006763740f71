//! Bundle files (docs/bundles.md): the node's side of `vaarta bundle export|import`. The
//! format and every decision live in the engine (`vaarta_engine::bundle`); this module
//! moves bytes between it and files.
//!
//! * Export runs on the engine thread: the engine selects and frames the envelopes, this
//!   module writes them to a temporary file beside the target, fsyncs it, renames it into
//!   place and fsyncs the directory, so the target is either the old file or the whole new
//!   bundle, never a part.
//! * Import runs on a thread of its own in two streaming passes. The first reads the whole
//!   file and checks its structure, bounds and the exporter's signature over every byte,
//!   keeping only a BLAKE3 checkpoint every [`IMPORT_BATCH`] records; nothing is taken from
//!   a file that fails. The second reads it again and hands each batch to the engine thread
//!   (the same ingest as pushes) only once its checkpoint equals the first pass's, so only
//!   verified bytes are taken even if the file changes in between. The engine thread
//!   flushes before it answers each batch, so a batch reported is durable, and an import cut
//!   at any point (even SIGKILL) is finished by running it again: what was taken is
//!   "already held".

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vaarta_engine::Engine;
use vaarta_engine::bundle::format::{self, BundleError, Item, Reader};
use vaarta_engine::bundle::{ExportError, For, IMPORT_BATCH, Selection, Tally};
use vaarta_sync::ids::DeviceId;
use vaarta_sync::store::Store;

use crate::ApiError;

/// Bytes read from a bundle file at once.
const READ_CHUNK: usize = 1 << 20;

/// A progress report: phase ("verify" counts bytes, "import" records), done, of.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// What `vaarta bundle export` asks for (`POST /v1/bundles/export`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportArgs {
    /// Absolute path of the bundle to write (replaced atomically if it exists).
    pub path: String,
    /// Conversation ids or unique prefixes (empty: all, and everything carried).
    #[serde(default)]
    pub conversations: Vec<String>,
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// A device id: what that device may read or carry.
    #[serde(default)]
    pub for_device: Option<String>,
    /// Everything a relay may carry.
    #[serde(default)]
    pub for_relay: bool,
    /// Stop before the bundle would pass this size (at most 256 MiB, the default).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn absolute(path: &str) -> Result<PathBuf, ApiError> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(ApiError::bad(format!(
            "the bundle path must be absolute (the node's working directory is not yours): {path}"
        )));
    }
    Ok(p)
}

/// Writes a bundle on the engine thread (see the module docs).
pub fn export<S: Store>(
    engine: &Engine<S>,
    args: &ExportArgs,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let path = absolute(&args.path)?;
    if args.for_relay && args.for_device.is_some() {
        return Err(ApiError::bad("give --for DEVICE or --for-relay, not both"));
    }
    let mut conversations = Vec::new();
    for c in &args.conversations {
        conversations.push(crate::api::conv(engine, c)?);
    }
    let for_ = match (&args.for_device, args.for_relay) {
        (Some(d), _) => For::Device(crate::api::device(d)?),
        (None, true) => For::Relay,
        (None, false) => For::Anyone,
    };
    let max_bytes = args
        .max_bytes
        .unwrap_or(format::MAX_BUNDLE_BYTES)
        .min(format::MAX_BUNDLE_BYTES);
    if max_bytes < (format::HEADER_LEN + format::TRAILER_LEN) as u64 {
        return Err(ApiError::bad(format!(
            "--max-bytes {max_bytes} is too small for a bundle's header and trailer"
        )));
    }
    let sel = Selection {
        conversations,
        since_ms: args.since_ms.unwrap_or(0),
        for_,
    };
    let dir = path
        .parent()
        .filter(|d| d.is_dir())
        .ok_or_else(|| ApiError::bad(format!("no such directory for {}", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| ApiError::bad(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |what: &str, e: std::io::Error| {
        ApiError::internal(format!("cannot {what} {}: {e}", tmp.display()))
    };
    let file = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    let mut w = std::io::BufWriter::new(file);
    let written = engine.export_bundle(&sel, max_bytes, now_ms, &mut |b| w.write_all(b));
    let finished = match written {
        Ok(x) => w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map(|()| x)
            .map_err(|e| io("write", e)),
        Err(ExportError::Sink(e)) => Err(io("write", e)),
        Err(ExportError::Engine(e)) => Err(ApiError::internal(format!("storage: {e}"))),
    };
    let x = match finished {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(json!({
        "path": path.display().to_string(),
        "records": x.records,
        "bytes": x.bytes,
        "envelope_bytes": x.envelope_bytes,
        "left_out": x.left_out,
        "full": x.left_out > 0,
        "max_bytes": max_bytes,
    }))
}

/// A tally as the API shows it.
pub fn tally_json(t: &Tally) -> Value {
    json!({
        "new": t.new,
        "waiting": t.waiting,
        "already_held": t.already_held,
        "refused": t.refused,
        "reasons": t.reasons,
    })
}

fn tally_of(v: &Value) -> Tally {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Tally {
        new: n("new"),
        waiting: n("waiting"),
        already_held: n("already_held"),
        refused: n("refused"),
        reasons: v
            .get("reasons")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn refused(path: &Path, e: BundleError) -> ApiError {
    ApiError {
        status: 422,
        message: format!("{} refused, nothing taken: {e}", path.display()),
    }
}

/// Reads `path` through a reader, in chunks; `on` sees every item.
fn pass(
    path: &Path,
    reader: &mut Reader,
    progress: Progress<'_>,
    phase: &str,
    on: &mut dyn FnMut(Item) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| ApiError::bad(format!("cannot open {}: {e}", path.display())))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if size > format::MAX_BUNDLE_BYTES {
        return Err(refused(path, BundleError::TooLarge));
    }
    let mut buf = vec![0u8; READ_CHUNK];
    let mut items = Vec::new();
    let mut done = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        done += n as u64;
        reader
            .feed(&buf[..n], &mut items)
            .map_err(|e| refused(path, e))?;
        for i in items.drain(..) {
            on(i)?;
        }
        if phase == "verify" {
            progress(phase, done, size);
        }
    }
    reader.finish().map_err(|e| refused(path, e))
}

/// Imports a bundle file: verifies it whole, then hands its records to `take` in batches
/// (see the module docs). `take` runs one batch through the engine and flushes; it answers
/// the batch's tally as JSON ([`tally_json`]).
pub fn import_file(
    path: &Path,
    take: &mut dyn FnMut(DeviceId, Vec<Vec<u8>>) -> Result<Value, ApiError>,
    progress: Progress<'_>,
) -> Result<Value, ApiError> {
    let every = IMPORT_BATCH as u64;
    // Pass 1: verify, keep the checkpoints.
    let mut header = None;
    let mut checkpoints = Vec::new();
    let mut count = 0;
    let mut end_hash = None;
    pass(
        path,
        &mut Reader::with_checkpoints(every),
        progress,
        "verify",
        &mut |i| {
            match i {
                Item::Header(h) => header = Some(h),
                Item::Checkpoint { hash, .. } => checkpoints.push(hash),
                Item::End { count: n, hash } => {
                    count = n;
                    end_hash = Some(hash);
                }
                Item::Envelope(_) => {}
            }
            Ok(())
        },
    )?;
    let (Some(header), Some(end_hash)) = (header, end_hash) else {
        return Err(refused(path, BundleError::Truncated));
    };
    // Pass 2: take the verified bytes.
    let changed = || ApiError {
        status: 409,
        message: format!(
            "{} changed while it was imported: stopped; what was taken before is kept (run the import again)",
            path.display()
        ),
    };
    let mut tally = Tally::default();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut taken = 0u64;
    let mut k = 0usize;
    // A verified batch goes in (and is flushed) before it is counted.
    let mut take_batch = |batch: &mut Vec<Vec<u8>>| -> Result<(), ApiError> {
        if !batch.is_empty() {
            taken += batch.len() as u64;
            tally.add(&tally_of(&take(header.exporter, std::mem::take(batch))?));
        }
        progress("import", taken, count);
        Ok(())
    };
    pass(
        path,
        &mut Reader::with_checkpoints(every),
        &mut |_, _, _| {},
        "import",
        &mut |i| {
            match i {
                Item::Header(h) if h != header => return Err(changed()),
                Item::Header(_) => {}
                Item::Envelope(e) => batch.push(e),
                Item::Checkpoint { hash, .. } => {
                    if checkpoints.get(k) != Some(&hash) {
                        return Err(changed());
                    }
                    k += 1;
                    take_batch(&mut batch)?;
                }
                // The end verified again: the last records are covered by its signature.
                Item::End { hash, .. } => {
                    if hash != end_hash {
                        return Err(changed());
                    }
                    take_batch(&mut batch)?;
                }
            }
            Ok(())
        },
    )?;
    let mut report = tally_json(&tally);
    report["records"] = json!(count);
    report["exporter"] = json!(header.exporter.to_string());
    report["created_ms"] = json!(header.created_ms);
    report["for"] = match header.for_ {
        For::Anyone => json!("anyone"),
        For::Relay => json!("relay"),
        For::Device(d) => json!(d.to_string()),
    };
    report["path"] = json!(path.display().to_string());
    Ok(report)
}

/// [`import_file`] for a path the API was given (absolute only).
pub fn import_path(
    path: &str,
    take: &mut dyn FnMut(DeviceId, Vec<Vec<u8>>) -> Result<Value, ApiError>,
    progress: Progress<'_>,
) -> Result<Value, ApiError> {
    import_file(&absolute(path)?, take, progress)
}
