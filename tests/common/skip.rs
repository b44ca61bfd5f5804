//! Tests that cannot check what they are for say so instead of passing.
//!
//! A skipped test records one line in the skip log (`RINGLOG_SKIP_LOG`, which
//! `.ci/run` sets and counts) and prints it. With `RINGLOG_TESTS_STRICT=1`
//! (set by `.ci/run`, which installs everything the tests need) a skip is a
//! failure instead: on CI a green run means every counted test checked something.

use std::io::Write;

/// Environment variable naming the file skipped tests are appended to.
pub const SKIP_LOG_VAR: &str = "RINGLOG_SKIP_LOG";
/// Environment variable that turns every skip into a failure.
pub const STRICT_VAR: &str = "RINGLOG_TESTS_STRICT";

/// Marks the calling test as not run because of `reason`. Returns normally
/// (the caller then returns) unless strict mode is on, where it panics.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIP {test}: {reason}");
    if std::env::var(STRICT_VAR).is_ok_and(|v| v == "1") {
        panic!("{line} ({STRICT_VAR}=1: every test must run here)");
    }
    eprintln!("{line}");
    if let Ok(path) = std::env::var(SKIP_LOG_VAR) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = appended {
            panic!("{line}; and the skip could not be recorded in {path}: {error}");
        }
    }
}
