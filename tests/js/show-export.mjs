// Loads the Automerge document of a Vaarta signed export (docs/export.md) with the standard
// @automerge/automerge library and prints its messages as JSON, one array on standard output.
// It checks no signature: `vaarta verify-export FILE` does that. tests/tests/export.rs runs it
// and compares what it prints with `vaarta log --json`.
//
//   node show-export.mjs FILE
//
// The document is the export's first record: after the 66-byte header, a type byte (1), a
// big-endian u32 length, then the document's bytes.
import { readFileSync } from "node:fs";
import * as Automerge from "@automerge/automerge";

const HEADER_LEN = 66;
const MAGIC = Buffer.from([0x89, 0x56, 0x45, 0x58, 0x50, 0x54, 0x0d, 0x0a]); // "\x89VEXPT\r\n"

function fail(msg) {
  process.stderr.write(`show-export: ${msg}\n`);
  process.exit(1);
}

const path = process.argv[2];
if (!path) fail("usage: node show-export.mjs FILE");
const file = readFileSync(path);
if (file.length < HEADER_LEN + 5 || !file.subarray(0, 8).equals(MAGIC)) {
  fail(`${path} is not a Vaarta export`);
}
if (file.readUInt16BE(8) !== 1) fail(`export version ${file.readUInt16BE(8)} is not read here`);
if (file[HEADER_LEN] !== 1) fail("the first record is not the document");
const len = file.readUInt32BE(HEADER_LEN + 1);
const start = HEADER_LEN + 5;
if (start + len > file.length) fail("the document is truncated");

const doc = Automerge.load(new Uint8Array(file.subarray(start, start + len)));
if (String(doc.format) !== "vaarta-export") fail("not a Vaarta export document");

// Strings are Automerge text (plain JavaScript strings); String() also takes an
// ImmutableString should a writer use scalar strings.
const str = (v) => (v === null || v === undefined ? null : String(v));
const messages = doc.messages.map((m) => ({
  id: str(m.id),
  author: str(m.author),
  author_name: str(m.author_name),
  sent_at_ms: m.sent_at_ms,
  body: str(m.body),
  reply_to: str(m.reply_to),
  precedence: str(m.precedence),
  expires_at_ms: m.expires_at_ms,
  edited_at_ms: m.edited_at_ms,
  deleted: m.deleted,
  reactions: m.reactions.map((r) => ({ by: str(r.by), emoji: str(r.emoji) })),
}));
process.stdout.write(
  JSON.stringify({
    conversation: str(doc.conversation),
    title: str(doc.title),
    exporter: str(doc.exporter),
    exported_at_ms: doc.exported_at_ms,
    messages,
  }) + "\n",
);
