//! The Python interpreter with the Kafka clients the tests drive
//! (confluent-kafka, aiokafka): `.ci/run` makes it as `.venv` in the
//! repository; `RINGLOG_TEST_PYTHON` names another one.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::run_bounded;
use super::skip::skip;

/// Environment variable naming a Python interpreter that has the clients.
pub const PYTHON_VAR: &str = "RINGLOG_TEST_PYTHON";
/// How long one Python client script may run.
pub const PYTHON_SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The interpreter, if it can import every module in `modules`; otherwise
/// the test is recorded as skipped (a failure under strict mode) and `None`.
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    python_in(test, PYTHON_VAR, ".venv", modules)
}

/// Environment variable naming a Python interpreter that has quixstreams.
pub const QUIXSTREAMS_PYTHON_VAR: &str = "RINGLOG_TEST_QUIXSTREAMS_PYTHON";

/// The interpreter of `.venv-quixstreams` (or `QUIXSTREAMS_PYTHON_VAR`):
/// quixstreams pins an older confluent-kafka than `.venv` has, so `.ci/run`
/// gives it a venv of its own.
pub fn python_with_quixstreams(test: &str) -> Option<PathBuf> {
    python_in(
        test,
        QUIXSTREAMS_PYTHON_VAR,
        ".venv-quixstreams",
        &["quixstreams", "confluent_kafka"],
    )
}

/// The interpreter named by `var`, else the one in the repository's `venv`,
/// if it can import every module in `modules`; otherwise the test is
/// recorded as skipped (a failure under strict mode) and `None`.
fn python_in(test: &str, var: &str, venv: &str, modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(venv)
            .join("bin/python3")
    });
    let imports = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let usable = Command::new(&python)
        .args(["-c", &imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if usable {
        Some(python)
    } else {
        skip(
            test,
            &format!(
                "{} cannot import {modules:?} (make it as `.ci/run` does, or set {var})",
                python.display()
            ),
        );
        None
    }
}

/// Runs `script` with `python`, bounded by [`PYTHON_SCRIPT_TIMEOUT`], with
/// `args` as `sys.argv[1:]`. Panics with its output if it fails.
pub fn run_script(python: &PathBuf, script: &str, args: &[&str]) -> String {
    let run = run_bounded(
        Command::new(python).arg("-c").arg(script).args(args),
        PYTHON_SCRIPT_TIMEOUT,
    );
    assert!(
        run.succeeded(),
        "Python script failed ({:?}, timeout {PYTHON_SCRIPT_TIMEOUT:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run.stdout
}
