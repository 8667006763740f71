//! Node.js for the test that loads a signed export with the standard `@automerge/automerge`
//! library (tests/js, installed with `npm ci`; tests/tests/export.rs).
//!
//! Without `node` or `tests/js/node_modules` such a test prints SKIPPED and passes, unless
//! `VAARTA_REQUIRE_NODE=1` (as `.ci/run` sets), where it fails naming what is missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `tests/js`: the package the Node test scripts live in.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Whether `node` runs here and `tests/js/node_modules` holds `@automerge/automerge`;
/// prints SKIPPED (or panics when `VAARTA_REQUIRE_NODE=1`) when not.
pub fn node_available() -> bool {
    let required = std::env::var("VAARTA_REQUIRE_NODE").is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    let node_runs = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_runs {
        missing.push("node (apt-get install nodejs npm)".to_string());
    }
    let module = js_dir().join("node_modules/@automerge/automerge/package.json");
    if !module.is_file() {
        missing.push(format!(
            "{} (cd tests/js && npm ci)",
            js_dir().join("node_modules").display()
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(" and ");
    if required {
        panic!("VAARTA_REQUIRE_NODE=1 but missing: {what}");
    }
    eprintln!("SKIPPED: needs {what}; set VAARTA_REQUIRE_NODE=1 to make this a failure");
    false
}
