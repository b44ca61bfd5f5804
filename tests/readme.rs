//! What README.md tells a newcomer to run, run exactly as printed: the two
//! commands at the top, the kcat lines and the Python example, against a
//! broker started with no flags at all in a fresh working directory.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::clients::{committed_offsets, create_topic};
use common::python::{python_with, run_script};
use common::skip::skip;
use common::{run_bounded, Broker};

/// How long one example command line may run.
const EXAMPLE_LINE_TIMEOUT: Duration = Duration::from_secs(30);

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The fenced code blocks of `markdown`: (info string, body), in order.
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(block), Some(_)) => blocks.push(block),
            (Some((info, mut body)), None) => {
                body.push_str(line);
                body.push('\n');
                open = Some((info, body));
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    blocks
}

/// The command lines of a shell block (comments and blank lines dropped,
/// a trailing comment kept: the shell ignores it).
fn command_lines(body: &str) -> Vec<&str> {
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// Runs one line with `sh -c` in `dir`, bounded; panics unless it exits 0.
fn run_line(line: &str, dir: &Path) -> String {
    let run = run_bounded(
        Command::new("sh").args(["-c", line]).current_dir(dir),
        EXAMPLE_LINE_TIMEOUT,
    );
    assert!(
        run.succeeded(),
        "README line failed ({:?}, limit {EXAMPLE_LINE_TIMEOUT:?}): {line}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run.stdout
}

#[test]
fn the_readme_opens_with_the_two_commands_and_ci_runs_its_test_command() {
    let blocks = code_blocks(&readme());
    let (info, body) = blocks.first().expect("README.md has code blocks");
    assert_eq!(info, "sh", "the first block is a shell block");
    let lines = command_lines(body);
    let commands: Vec<&str> = lines
        .iter()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(commands.len(), 2, "two commands: {lines:?}");
    assert_eq!(
        commands[0], "cargo run --release",
        "the first starts the broker"
    );
    assert!(
        commands[1].starts_with("cargo test"),
        "the second runs the tests"
    );
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"))
        .expect("reading .ci/run");
    assert!(
        ci.lines()
            .any(|line| line.trim_start().starts_with(commands[1])),
        ".ci/run runs the README's test command `{}`",
        commands[1]
    );
    // `cargo run` with no --bin starts the broker, which is what the other
    // tests start as `ringlog` with no flags.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("reading Cargo.toml");
    assert!(
        manifest.contains("default-run = \"ringlog\""),
        "cargo run starts ringlog"
    );
}

/// The group the Python example's consumer commits with, and its topic.
const EXAMPLE_GROUP: &str = "billing";
const EXAMPLE_TOPIC: &str = "orders";

/// Offsets the example's group has committed, summed over the topic's partitions.
fn committed_total(bootstrap: &str, partitions: i32) -> i64 {
    committed_offsets(bootstrap, EXAMPLE_GROUP, EXAMPLE_TOPIC, partitions)
        .into_iter()
        .map(|offset| offset.max(0))
        .sum()
}

#[test]
fn the_readme_examples_run_as_printed_against_a_broker_started_with_no_flags() {
    let test = "the_readme_examples_run_as_printed_against_a_broker_started_with_no_flags";
    let blocks = code_blocks(&readme());
    let kcat_lines: Vec<String> = blocks
        .iter()
        .filter(|(info, body)| info == "sh" && body.contains("kcat "))
        .flat_map(|(_, body)| command_lines(body))
        .map(str::to_string)
        .collect();
    let python_example = blocks
        .iter()
        .find(|(info, _)| info == "python")
        .map(|(_, body)| body.clone())
        .expect("README.md has a Python example");
    assert_eq!(kcat_lines.len(), 3, "the kcat block: {kcat_lines:?}");
    let kcat = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let python = python_with(test, &["confluent_kafka"]);

    let mut broker = Broker::builder().no_flags().start();
    assert!(
        broker
            .log()
            .contains(&format!("data_dir={}", broker.data_dir().display())),
        "the broker logs the absolute data directory it resolved ./data to"
    );
    let shell_dir = tempfile::tempdir().expect("a temporary directory");
    if kcat {
        let outputs: Vec<String> = kcat_lines
            .iter()
            .map(|line| run_line(line, shell_dir.path()))
            .collect();
        assert!(outputs[0].contains("1 brokers"), "kcat -L: {}", outputs[0]);
        assert!(
            outputs[2].contains("hello"),
            "the consumed record: {}",
            outputs[2]
        );
    } else {
        skip(
            test,
            "kcat is not installed (apt-get install kcat): its lines were not run",
        );
    }
    if let Some(python) = &python {
        let printed = run_script(python, &python_example, &[]);
        assert_eq!(printed.trim(), "b'{...}'", "what the example prints");
    }

    // The same data after a restart: topics, records and committed offsets.
    broker.restart();
    let bootstrap = broker.bootstrap();
    if kcat {
        let consumed = run_line(&kcat_lines[2], shell_dir.path());
        assert!(consumed.contains("hello"), "after a restart: {consumed}");
    }
    if python.is_some() {
        assert_eq!(
            committed_total(&bootstrap, 3),
            1,
            "the example's commit after a restart"
        );
    }
    // CreateTopics on a broker started with no flags, whatever the examples ran.
    create_topic(&bootstrap, "after-restart", 4, &[]);
}
