//! The Python interpreter with the Kafka clients the tests drive
//! (confluent-kafka, aiokafka): `.ci/run` makes it as `.venv` in the
//! repository; `RINGLOG_TEST_PYTHON` names another one.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::skip::skip;
use super::wait_bounded;

/// Environment variable naming a Python interpreter that has the clients.
pub const PYTHON_VAR: &str = "RINGLOG_TEST_PYTHON";
/// How long one Python client script may run.
pub const PYTHON_SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The interpreter, if it can import every module in `modules`; otherwise
/// the test is recorded as skipped (a failure under strict mode) and `None`.
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os(PYTHON_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
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
                "{} cannot import {modules:?} (make it with `python3 -m venv .venv && \
                 .venv/bin/pip install confluent-kafka aiokafka`, or set {PYTHON_VAR})",
                python.display()
            ),
        );
        None
    }
}

/// Runs `script` with `python`, bounded by [`PYTHON_SCRIPT_TIMEOUT`], with
/// `args` as `sys.argv[1:]`. Panics with its output if it fails.
pub fn run_script(python: &PathBuf, script: &str, args: &[&str]) -> String {
    let out_dir = tempfile::tempdir().expect("creating a temporary directory must work");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("creating a file must work"))
        .stderr(std::fs::File::create(&stderr_path).expect("creating a file must work"))
        .spawn()
        .expect("starting Python must work");
    let status = wait_bounded(&mut child, PYTHON_SCRIPT_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("a killed child can be reaped")),
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read(&stderr_path).unwrap_or_default(),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "Python script failed ({:?}, timeout {PYTHON_SCRIPT_TIMEOUT:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
