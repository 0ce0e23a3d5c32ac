//! Runs the browser end-to-end suite (`e2e/`, Node's test runner driving
//! Debian's Chromium through playwright-core) against the `talk` binary
//! Cargo built, so `cargo test --workspace` tests the widget in a real
//! browser too.
//!
//! Where node, `/usr/bin/chromium` or `e2e/node_modules/playwright-core` is
//! missing the test says so loudly and passes, except under CI (`CI` set),
//! where a missing piece is a failure: CI must never skip the browser tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `talk` binary Cargo built for these tests.
const TALK: &str = env!("CARGO_BIN_EXE_talk");

/// The browser the suite drives (Debian's `chromium` package).
const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/talk sits two folders below the workspace root")
        .to_path_buf()
}

/// What the suite needs that this machine lacks, if anything.
fn missing_pieces(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref output) if output.status.success()) {
        missing.push("node (Node.js 20 or later)".to_owned());
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (the Debian chromium package)"));
    }
    if !root.join("e2e/node_modules/playwright-core").is_dir() {
        missing.push("e2e/node_modules/playwright-core (run `npm ci` in e2e/)".to_owned());
    }
    missing
}

/// Writes past the test harness's output capture, so the line shows even
/// when the test passes.
fn say_loudly(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[test]
fn browser_end_to_end_suite_passes() {
    let root = workspace_root();
    let missing = missing_pieces(&root);
    if !missing.is_empty() {
        let line = format!("SKIPPED browser tests: {} missing", missing.join(", "));
        let in_ci =
            std::env::var_os("CI").is_some_and(|value| !value.is_empty() && value != "false");
        assert!(!in_ci, "{line}; CI must run the browser tests");
        say_loudly(&format!("\n!!!!! {line} !!!!!\n"));
        return;
    }
    let output = Command::new("node")
        .args(["--test", "e2e/"])
        .current_dir(&root)
        .env("TALK_BIN", TALK)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The runner's closing summary, shown whatever the outcome.
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.starts_with("# tests")
                || line.starts_with("# pass")
                || line.starts_with("# fail")
                || line.starts_with("# duration_ms")
        })
        .collect();
    say_loudly(&format!(
        "browser tests (node --test e2e/): {}",
        summary.join(", ")
    ));
    assert!(
        output.status.success(),
        "the browser tests failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
