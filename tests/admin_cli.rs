//! The admin subcommands (`ringlog topic|group|cluster`) run as the built
//! binary against a real broker process, each checked against what a
//! librdkafka client (rdkafka) sees: topics it creates are in rdkafka's
//! metadata, lines it produces are what rdkafka consumes and the other way
//! round, a group's lag is what an rdkafka consumer left, and a reset moves
//! where an rdkafka consumer resumes. Wrong arguments, unknown topics and an
//! unreachable broker give one message and a non-zero exit.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::clients::{
    committed_offsets, consume_all, create_topic, flush, key_text, partition_count, payload_text,
    produce_keyed, producer, send, topic_names, watermarks, Delivered, METADATA_TIMEOUT,
};
use common::{
    broker_binary, free_port, run_bounded_with_input, unique_topic, wait_bounded, Broker, Finished,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// How long one run of the CLI may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long rdkafka consumers may take to get their records.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a group may take to settle after a join.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(20);
/// session.timeout.ms of the group consumers (the broker's minimum is lowered to allow it).
const SESSION_TIMEOUT_MS: &str = "3000";
/// The exit code for a command line the tool refuses.
const EXIT_USAGE: i32 = 2;
/// The exit code for a failed command.
const EXIT_FAILED: i32 = 1;

/// A broker whose groups form without the initial rebalance delay.
fn broker() -> Broker {
    Broker::builder()
        .arg("--group-initial-rebalance-delay-ms")
        .arg("0")
        .arg("--group-min-session-timeout-ms")
        .arg("1000")
        .start()
}

/// A broker, and a topic of `partitions` holding `records` records that
/// rdkafka produced with `keys` distinct keys: the broker, its bootstrap
/// address, the topic and rdkafka's delivery reports.
fn broker_with_records(
    prefix: &str,
    partitions: i32,
    records: usize,
    keys: usize,
) -> (Broker, String, String, Vec<Delivered>) {
    let (broker, bootstrap, topic) = broker_with_topic(prefix, partitions);
    let delivered = produce_keyed(&bootstrap, &topic, records, keys);
    (broker, bootstrap, topic, delivered)
}

/// A broker and an empty topic of `partitions` on it: the broker, its
/// bootstrap address and the topic.
fn broker_with_topic(prefix: &str, partitions: i32) -> (Broker, String, String) {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(prefix);
    create_topic(&bootstrap, &topic, partitions, &[]);
    (broker, bootstrap, topic)
}

/// Runs `ringlog ARGS --bootstrap BOOTSTRAP` with `input` on stdin, bounded.
fn run_cli(bootstrap: &str, args: &[&str], input: &str) -> Finished {
    run_bounded_with_input(
        Command::new(broker_binary())
            .args(args)
            .args(["--bootstrap", bootstrap])
            // A panic would print a backtrace: the tool must never get there.
            .env("RUST_BACKTRACE", "1"),
        Some(input),
        CLI_TIMEOUT,
    )
}

/// Runs the CLI with stderr on a new pseudo-terminal and stdout to a file,
/// as an operator runs `ringlog ... > file` in a terminal: (stdout, what
/// the terminal showed).
fn run_with_terminal_stderr(bootstrap: &str, args: &[&str]) -> (String, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the two ints; the name,
    // termios and window size may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just opened both descriptors; nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let out = tempfile::tempdir().expect("a temporary directory");
    let stdout_path = out.path().join("stdout");
    let mut command = Command::new(broker_binary());
    command
        .args(args)
        .args(["--bootstrap", bootstrap])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("creating a file"))
        .stderr(Stdio::from(slave));
    let mut child = command.spawn().expect("starting the CLI");
    // Our copy of the terminal's other end closes, so reads end with the child.
    drop(command);
    let reader = thread::spawn(move || {
        let mut shown = Vec::new();
        // The read ends with EIO once the child has closed the terminal.
        let _ = std::fs::File::from(master).read_to_end(&mut shown);
        String::from_utf8_lossy(&shown).into_owned()
    });
    let status = wait_bounded(&mut child, CLI_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let shown = reader.join().expect("the terminal reader");
    assert!(
        status.is_some_and(|s| s.success()),
        "ringlog {args:?}: {status:?}\n{shown}"
    );
    (
        std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        shown,
    )
}

/// Runs the CLI and returns its stdout; panics unless it exits 0.
fn cli(bootstrap: &str, args: &[&str]) -> String {
    cli_with_input(bootstrap, args, "")
}

fn cli_with_input(bootstrap: &str, args: &[&str], input: &str) -> String {
    let run = run_cli(bootstrap, args, input);
    assert!(
        run.succeeded(),
        "ringlog {args:?} failed ({:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Runs the CLI with `--format json` and parses what it printed.
fn cli_json(bootstrap: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let stdout = cli(bootstrap, &args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ringlog {args:?}: {e}:\n{stdout}"))
}

/// One JSON object per line, as `topic consume --format json` prints them.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Panics unless the run failed with `code` and one message naming `mentions`.
fn assert_fails(run: &Finished, code: i32, mentions: &str, what: &str) {
    let status = run
        .status
        .unwrap_or_else(|| panic!("{what}: still running after {CLI_TIMEOUT:?}"));
    assert_eq!(
        status.code(),
        Some(code),
        "{what}: exit status; stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains(&mentions.to_lowercase()),
        "{what}: the message names {mentions:?}:\n{}",
        run.stderr
    );
    for marker in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(
            !run.stderr.contains(marker),
            "{what}: a message, not a panic:\n{}",
            run.stderr
        );
    }
}

/// A consumer in `group`, subscribed to `topic`, committing only when asked.
fn group_consumer(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "300")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer configuration must be valid");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Polls until `count` messages arrived; returns (partition, offset) of each.
fn poll_messages(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut messages = Vec::new();
    while messages.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            messages.push((message.partition(), message.offset()));
        }
    }
    assert_eq!(
        messages.len(),
        count,
        "messages polled within {CONSUME_TIMEOUT:?}"
    );
    messages
}

/// Commits, for each of `partitions`, the offset after the last of
/// `messages` from it (0 where none came from it).
fn commit_after(consumer: &BaseConsumer, topic: &str, partitions: i32, messages: &[(i32, i64)]) {
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for &(partition, offset) in messages {
        let entry = next.entry(partition).or_insert(0);
        *entry = (*entry).max(offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a valid offset");
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .expect("commit what was consumed");
}

/// The group's partitions as `group describe --format json` shows them:
/// (partition, committed offset, log end offset, lag) for `topic`.
fn described_partitions(bootstrap: &str, group: &str, topic: &str) -> Vec<(i64, i64, i64, i64)> {
    let described = cli_json(bootstrap, &["group", "describe", group]);
    described[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == topic)
        .map(|p| {
            (
                p["partition"].as_i64().expect("partition"),
                p["committed_offset"].as_i64().unwrap_or(-1),
                p["log_end_offset"].as_i64().expect("end offset"),
                p["lag"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn waits_for(what: &str, mut condition: impl FnMut() -> bool) {
    assert!(
        common::wait_until(REBALANCE_TIMEOUT, &mut condition),
        "{what} within {REBALANCE_TIMEOUT:?}"
    );
}

#[test]
fn topic_commands_change_what_rdkafka_sees_in_metadata() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("cli-topic");
    let out = cli(
        &bootstrap,
        &[
            "topic",
            "create",
            &topic,
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
    );
    assert!(out.contains(&topic) && out.contains("OK"), "create: {out}");
    let rdkafka = common::clients::consumer(&bootstrap, &[]);
    assert_eq!(
        partition_count(&rdkafka, &topic),
        Some(3),
        "rdkafka sees 3 partitions"
    );

    let listed = cli_json(&bootstrap, &["topic", "list"]);
    let entry = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|t| t["name"] == topic.as_str())
        .unwrap_or_else(|| panic!("{topic} listed: {listed}"));
    assert_eq!(entry["partitions"], 3);

    let config = |bootstrap: &str| {
        let described = cli_json(bootstrap, &["topic", "describe", &topic]);
        described[0]["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|c| c["name"] == "retention.ms")
            .map(|c| (c["value"].clone(), c["source"].clone()))
            .expect("retention.ms is described")
    };
    assert_eq!(config(&bootstrap), ("3600000".into(), "topic".into()));
    cli(
        &bootstrap,
        &[
            "topic",
            "alter-config",
            &topic,
            "--set",
            "retention.ms=7200000",
        ],
    );
    assert_eq!(config(&bootstrap).0, "7200000");
    cli(
        &bootstrap,
        &["topic", "alter-config", &topic, "--delete", "retention.ms"],
    );
    assert_eq!(
        config(&bootstrap).1,
        "default",
        "a deleted config is the default again"
    );

    cli(&bootstrap, &["topic", "add-partitions", &topic, "-n", "2"]);
    waits_for("rdkafka sees 5 partitions", || {
        partition_count(&rdkafka, &topic) == Some(5)
    });
    let described = cli_json(&bootstrap, &["topic", "describe", &topic]);
    assert_eq!(described[0]["partitions"].as_array().map(Vec::len), Some(5));

    let table = cli(&bootstrap, &["topic", "describe", &topic]);
    assert!(
        table.contains("HIGH-WATERMARK") && table.contains("retention.ms"),
        "the table shows partitions and configs:\n{table}"
    );
    cli(&bootstrap, &["topic", "delete", &topic]);
    waits_for("rdkafka no longer lists the topic", || {
        !topic_names(&bootstrap).contains(&topic)
    });
}

#[test]
fn lines_the_cli_produces_are_what_rdkafka_consumes() {
    let (_broker, bootstrap, topic) = broker_with_topic("cli-produce", 3);
    let lines: Vec<String> = (0..60)
        .map(|i| format!("key-{}:value-{i}:x", i % 7))
        .collect();
    let input = lines.join("\n") + "\n";
    let produced = cli_with_input(
        &bootstrap,
        &[
            "topic",
            "produce",
            &topic,
            "--key-sep",
            ":",
            "--format",
            "json",
        ],
        &input,
    );
    let produced: Value = serde_json::from_str(&produced).expect("JSON summary");
    assert_eq!(produced["records"], 60);

    let consumed = consume_all(&bootstrap, &topic, 3, 60, CONSUME_TIMEOUT);
    consumed.expect_count(60);
    let mut seen: Vec<(String, String)> = consumed
        .messages
        .iter()
        .map(|m| {
            (
                key_text(m).expect("a key"),
                payload_text(m).expect("a value"),
            )
        })
        .collect();
    seen.sort();
    let mut expected: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            let (key, value) = line.split_once(':').expect("a separator");
            (key.to_string(), value.to_string())
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "every line, split at the first separator");
    for key in 0..7 {
        let partitions: BTreeSet<i32> = consumed
            .messages
            .iter()
            .filter(|m| key_text(*m).as_deref() == Some(&format!("key-{key}")))
            .map(|m| m.partition())
            .collect();
        assert_eq!(partitions.len(), 1, "key-{key} goes to one partition");
    }

    let single = unique_topic("cli-produce-one");
    create_topic(&bootstrap, &single, 2, &[]);
    cli_with_input(
        &bootstrap,
        &["topic", "produce", &single, "-p", "1"],
        "a\nb\n",
    );
    assert_eq!(
        watermarks(&bootstrap, &single, 1),
        (0, 2),
        "both lines on partition 1"
    );
    assert_eq!(watermarks(&bootstrap, &single, 0), (0, 0));
}

#[test]
fn records_rdkafka_produces_are_what_the_cli_consumes() {
    let (_broker, bootstrap, topic, delivered) = broker_with_records("cli-consume", 3, 90, 5);

    let stdout = cli(
        &bootstrap,
        &[
            "topic",
            "consume",
            &topic,
            "--exit-at-end",
            "--format",
            "json",
        ],
    );
    let mut consumed: Vec<(i64, i64, String, String)> = json_lines(&stdout)
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().expect("partition"),
                r["offset"].as_i64().expect("offset"),
                r["key"].as_str().expect("key").to_string(),
                r["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    consumed.sort();
    let mut expected: Vec<(i64, i64, String, String)> = delivered
        .iter()
        .map(|d| {
            (
                i64::from(d.partition),
                d.offset,
                String::from_utf8(d.key.clone().expect("a key")).expect("text"),
                String::from_utf8(d.payload.clone().expect("a value")).expect("text"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        consumed, expected,
        "every record rdkafka delivered, where it went"
    );

    let five = cli(&bootstrap, &["topic", "consume", &topic, "-n", "5"]);
    assert_eq!(five.lines().count(), 5, "-n 5: {five}");
    let at_end = cli(
        &bootstrap,
        &["topic", "consume", &topic, "--from", "end", "-e"],
    );
    assert_eq!(at_end, "", "nothing after the end");
    let partition_zero = delivered.iter().filter(|d| d.partition == 0).count() as i64;
    let from_offset = cli(
        &bootstrap,
        &[
            "topic", "consume", &topic, "-p", "0", "--from", "2", "-e", "--format", "%p:%o",
        ],
    );
    let expected: Vec<String> = (2..partition_zero).map(|o| format!("0:{o}")).collect();
    assert_eq!(
        from_offset.lines().collect::<Vec<_>>(),
        expected,
        "from offset 2 of partition 0"
    );
}

#[test]
fn consume_from_a_time_starts_at_the_first_record_at_or_after_it() {
    let (_broker, bootstrap, topic) = broker_with_topic("cli-time", 1);
    let (producer, _log) = producer(&bootstrap, &[]);
    let base_ms = 1_700_000_000_000i64;
    for i in 0..10i64 {
        let value = format!("at-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .payload(value.as_bytes())
                .timestamp(base_ms + i * 1000),
        );
    }
    flush(&producer);
    let at = format!("@{}", base_ms + 6500);
    let stdout = cli(
        &bootstrap,
        &[
            "topic", "consume", &topic, "--from", &at, "-e", "--format", "%o %T %v",
        ],
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            format!("7 {} at-7", base_ms + 7000),
            format!("8 {} at-8", base_ms + 8000),
            format!("9 {} at-9", base_ms + 9000)
        ]
    );
    // The same instant as an RFC 3339 time: 2023-11-14T22:13:26.5Z.
    let rfc3339 = cli(
        &bootstrap,
        &[
            "topic",
            "consume",
            &topic,
            "--from",
            "2023-11-14T22:13:26.500Z",
            "-e",
        ],
    );
    assert_eq!(rfc3339, "at-7\nat-8\nat-9\n");
}

#[test]
fn group_describe_shows_the_lag_an_rdkafka_consumer_left() {
    let (_broker, bootstrap, topic, _) = broker_with_records("cli-lag", 2, 40, 40);
    let group = unique_topic("cli-lag-group");

    let consumer = group_consumer(&bootstrap, &group, &topic);
    let polled = poll_messages(&consumer, 15);
    commit_after(&consumer, &topic, 2, &polled);
    let committed = committed_offsets(&bootstrap, &group, &topic, 2);

    // While the consumer is in the group, it owns both partitions.
    let described = cli_json(&bootstrap, &["group", "describe", &group]);
    assert_eq!(described[0]["state"], "Stable", "{described}");
    assert_eq!(described[0]["members"].as_array().map(Vec::len), Some(1));
    let owners: Vec<&Value> = described[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| &p["member_id"])
        .collect();
    assert!(
        owners
            .iter()
            .all(|o| *o == &described[0]["members"][0]["member_id"]),
        "every partition is the member's: {described}"
    );

    let partitions = described_partitions(&bootstrap, &group, &topic);
    let total_lag: i64 = partitions.iter().map(|p| p.3).sum();
    assert_eq!(
        total_lag,
        40 - 15,
        "lag is what the consumer left unconsumed: polled {polled:?}, committed {committed:?}, described {partitions:?}"
    );
    for (partition, committed_offset, end, lag) in &partitions {
        assert_eq!(
            *committed_offset, committed[*partition as usize],
            "rdkafka's committed offset"
        );
        assert_eq!(
            *end,
            watermarks(&bootstrap, &topic, *partition as i32).1,
            "log end offset"
        );
        assert_eq!(*lag, end - committed_offset);
    }
    let listed = cli_json(&bootstrap, &["group", "list"]);
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|g| g["group"] == group.as_str()),
        "group list names the group: {listed}"
    );
    let table = cli(&bootstrap, &["group", "describe", &group]);
    assert!(
        table.contains("LAG") && table.contains(&format!("total lag {}", 40 - 15)),
        "{table}"
    );
    drop(consumer);
}

#[test]
fn reset_offsets_dry_run_changes_nothing_and_a_real_reset_moves_rdkafka() {
    let (_broker, bootstrap, topic, _) = broker_with_records("cli-reset", 1, 30, 1);
    let group = unique_topic("cli-reset-group");
    let reset_to_five = [
        "group",
        "reset-offsets",
        &group,
        "--topic",
        &topic,
        "--to-offset",
        "5",
    ];
    {
        let consumer = group_consumer(&bootstrap, &group, &topic);
        commit_after(&consumer, &topic, 1, &poll_messages(&consumer, 20));
        let refused = run_cli(&bootstrap, &reset_to_five, "");
        assert_fails(
            &refused,
            EXIT_FAILED,
            "members",
            "a reset of an active group",
        );
        consumer.unsubscribe();
    }
    waits_for("the group is empty", || {
        cli_json(&bootstrap, &["group", "describe", &group])[0]["state"] == "Empty"
    });
    assert_eq!(committed_offsets(&bootstrap, &group, &topic, 1), vec![20]);

    let dry_run = |target: &[&str]| {
        let mut args = vec![
            "group",
            "reset-offsets",
            group.as_str(),
            "--topic",
            topic.as_str(),
        ];
        args.extend(target);
        args.push("--dry-run");
        let planned = cli_json(&bootstrap, &args);
        assert_eq!(planned["dry_run"], true);
        assert_eq!(planned["partitions"][0]["current_offset"], 20);
        planned["partitions"][0]["new_offset"]
            .as_i64()
            .expect("a new offset")
    };
    assert_eq!(dry_run(&["--to-offset", "5"]), 5);
    assert_eq!(dry_run(&["--to-earliest"]), 0);
    assert_eq!(dry_run(&["--to-latest"]), 30);
    assert_eq!(
        dry_run(&["--to-offset", "1000"]),
        30,
        "an offset is kept within the log"
    );
    assert_eq!(dry_run(&["--to-datetime", "2000-01-01T00:00:00Z"]), 0);
    assert_eq!(
        committed_offsets(&bootstrap, &group, &topic, 1),
        vec![20],
        "a dry run commits nothing"
    );

    let table = cli(&bootstrap, &reset_to_five);
    assert!(table.contains("NEW-OFFSET"), "{table}");
    assert_eq!(committed_offsets(&bootstrap, &group, &topic, 1), vec![5]);
    let consumer = group_consumer(&bootstrap, &group, &topic);
    let resumed = poll_messages(&consumer, 1);
    assert_eq!(resumed[0], (0, 5), "rdkafka resumes at the new offset");
    drop(consumer);
    waits_for("the group is empty again", || {
        cli_json(&bootstrap, &["group", "describe", &group])[0]["state"] == "Empty"
    });

    cli(
        &bootstrap,
        &[
            "group",
            "reset-offsets",
            &group,
            "--all-topics",
            "--to-latest",
        ],
    );
    assert_eq!(
        described_partitions(&bootstrap, &group, &topic),
        vec![(0, 30, 30, 0)]
    );
}

#[test]
fn consume_with_a_group_resumes_where_it_committed_and_group_delete_removes_it() {
    let (_broker, bootstrap, topic, _) = broker_with_records("cli-group-read", 1, 10, 1);
    let group = unique_topic("cli-reader");
    let first = cli(
        &bootstrap,
        &["topic", "consume", &topic, "-g", &group, "-n", "4"],
    );
    assert_eq!(first.lines().count(), 4);
    assert_eq!(
        committed_offsets(&bootstrap, &group, &topic, 1),
        vec![4],
        "what was printed"
    );
    let rest = cli(
        &bootstrap,
        &[
            "topic", "consume", &topic, "-g", &group, "-e", "--format", "%o",
        ],
    );
    let offsets: Vec<&str> = rest.lines().collect();
    assert_eq!(
        offsets,
        vec!["4", "5", "6", "7", "8", "9"],
        "resumed at the commit"
    );

    cli(&bootstrap, &["group", "delete", &group]);
    assert_eq!(
        committed_offsets(&bootstrap, &group, &topic, 1),
        vec![-1],
        "no offsets left"
    );
    let listed = cli_json(&bootstrap, &["group", "list"]);
    assert!(
        !listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|g| g["group"] == group.as_str()),
        "{listed}"
    );
    let gone = run_cli(&bootstrap, &["group", "describe", &group], "");
    assert_fails(
        &gone,
        EXIT_FAILED,
        "does not exist",
        "describing a deleted group",
    );
}

#[test]
fn cluster_info_names_the_brokers_rdkafka_sees() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, &unique_topic("cli-cluster"), 1, &[]);
    create_topic(&bootstrap, &unique_topic("cli-cluster"), 1, &[]);
    let info = cli_json(&bootstrap, &["cluster", "info"]);
    let rdkafka = common::clients::consumer(&bootstrap, &[]);
    let metadata = rdkafka
        .fetch_metadata(None, METADATA_TIMEOUT)
        .expect("Metadata");
    let brokers = info["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), metadata.brokers().len());
    for (ours, theirs) in brokers.iter().zip(metadata.brokers()) {
        assert_eq!(ours["id"], theirs.id());
        assert_eq!(ours["host"], theirs.host());
        assert_eq!(ours["port"], theirs.port());
    }
    assert_eq!(info["topics"], metadata.topics().len());
    assert_eq!(info["controller"], 0);
    let table = cli(&bootstrap, &["cluster", "info"]);
    assert!(
        table.contains("CONTROLLER") && table.contains(&broker.port().to_string()),
        "{table}"
    );
}

#[test]
fn errors_are_one_message_and_a_nonzero_exit() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let nowhere = format!("127.0.0.1:{}", free_port());
    for args in [
        &["topic", "list"][..],
        &["group", "list"],
        &["cluster", "info"],
    ] {
        let run = run_cli(&nowhere, args, "");
        assert_fails(
            &run,
            EXIT_FAILED,
            "cannot connect to broker",
            "an unreachable broker",
        );
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "one line: {}",
            run.stderr
        );
    }
    let usage: [(&[&str], &str); 6] = [
        (&["topic", "frobnicate"], "frobnicate"),
        (
            &["topic", "consume", "t", "--from", "yesterday"],
            "yesterday",
        ),
        (&["group", "reset-offsets", "g", "--topic", "t"], "--to-"),
        (&["topic", "list", "--format", "yaml"], "yaml"),
        (&["topic", "list", "--format", "%v"], "consume only"),
        (&["topic", "alter-config", "t"], "--set"),
    ];
    for (args, mentions) in usage {
        assert_fails(
            &run_cli(&bootstrap, args, ""),
            EXIT_USAGE,
            mentions,
            &format!("{args:?}"),
        );
    }
    let unknown = unique_topic("cli-missing");
    for args in [
        &["topic", "describe", unknown.as_str()][..],
        &["topic", "consume", unknown.as_str(), "-e"],
        &["topic", "produce", unknown.as_str()],
        &["topic", "add-partitions", unknown.as_str(), "-n", "1"],
    ] {
        let run = run_cli(&bootstrap, args, "a line\n");
        assert_fails(&run, EXIT_FAILED, "does not exist", &format!("{args:?}"));
    }
    assert!(
        !topic_names(&bootstrap).contains(&unknown),
        "the CLI never creates a topic by asking for it"
    );
    let deleted = run_cli(&bootstrap, &["topic", "delete", &unknown], "");
    assert_fails(
        &deleted,
        EXIT_FAILED,
        "UnknownTopicOrPartition",
        "deleting an unknown topic",
    );
}

#[test]
fn the_broker_still_starts_without_a_subcommand() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("broker.log")).expect("a log file");
    let mut child = Command::new(broker_binary())
        .args(["--listen", &listen, "--data-dir"])
        .arg(Path::new(&data))
        .args(["--cpus", &common::allowed_cpus()[0].to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting the broker");
    let answered = common::wait_until(common::BROKER_START_TIMEOUT, || {
        run_cli(&listen, &["cluster", "info"], "").succeeded()
    });
    let _ = child.kill();
    let _ = wait_bounded(&mut child, CLI_TIMEOUT);
    assert!(
        answered,
        "`ringlog --listen ...` runs the broker:\n{}",
        std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default()
    );
}

#[test]
fn a_catch_up_read_shows_progress_on_a_terminal_and_nothing_in_a_pipe() {
    let (_broker, bootstrap, topic) = broker_with_topic("cli-progress", 1);
    // Several times the bytes one fetch returns for a partition.
    let records = 4_000;
    let value = vec![b'x'; 1024];
    let (producer, _log) = producer(&bootstrap, &[]);
    for _ in 0..records {
        send(&producer, BaseRecord::to(&topic).payload(&value[..]));
    }
    flush(&producer);
    let (stdout, shown) = run_with_terminal_stderr(&bootstrap, &["topic", "consume", &topic, "-e"]);
    assert_eq!(
        stdout.lines().count(),
        records,
        "every record went to stdout"
    );
    assert!(
        shown.contains("records read") && shown.contains("behind the end"),
        "the terminal shows progress: {shown:?}"
    );
    let piped = run_cli(&bootstrap, &["topic", "consume", &topic, "-e"], "");
    assert!(piped.succeeded(), "{}", piped.stderr);
    assert_eq!(piped.stderr, "", "no progress where stderr is no terminal");
}

#[test]
fn produce_sends_each_line_as_it_comes_not_only_at_the_end_of_input() {
    let (_broker, bootstrap, topic) = broker_with_topic("cli-trickle", 1);
    let mut child = Command::new(broker_binary())
        .args(["topic", "produce", &topic, "--bootstrap", &bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the CLI");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    for (line, count) in [("first\n", 1), ("second\n", 2)] {
        stdin.write_all(line.as_bytes()).expect("writing a line");
        stdin.flush().expect("flushing stdin");
        waits_for("the line is in the log while stdin is still open", || {
            watermarks(&bootstrap, &topic, 0).1 == count
        });
    }
    drop(stdin);
    let status = wait_bounded(&mut child, CLI_TIMEOUT);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let consumed = consume_all(&bootstrap, &topic, 1, 2, CONSUME_TIMEOUT);
    consumed.expect_count(2);
    let values: Vec<Option<String>> = consumed.messages.iter().map(payload_text).collect();
    assert_eq!(values, vec![Some("first".into()), Some("second".into())]);
}

#[test]
fn consume_with_a_group_shares_the_partitions_with_an_rdkafka_member_and_commits_its_own() {
    let (_broker, bootstrap, topic, delivered) = broker_with_records("cli-member", 2, 40, 8);
    let group = unique_topic("cli-member-group");
    let consumer = group_consumer(&bootstrap, &group, &topic);
    let assigned = |consumer: &BaseConsumer| -> Vec<i32> {
        let mut partitions: Vec<i32> = consumer
            .assignment()
            .map(|list| list.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        partitions.sort_unstable();
        partitions
    };
    waits_for("rdkafka alone owns both partitions", || {
        let _ = consumer.poll(Duration::from_millis(100));
        assigned(&consumer) == vec![0, 1]
    });

    // The CLI joins; rdkafka keeps polling so the group can rebalance.
    let reader = {
        let (bootstrap, topic, group) = (bootstrap.clone(), topic.clone(), group.clone());
        std::thread::spawn(move || {
            run_cli(
                &bootstrap,
                &[
                    "topic", "consume", &topic, "--group", &group, "-e", "--format", "%p %o",
                ],
                "",
            )
        })
    };
    let mut seen = Vec::new();
    while !reader.is_finished() {
        let _ = consumer.poll(Duration::from_millis(50));
        let now = assigned(&consumer);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    let run = reader.join().expect("the CLI thread");
    assert!(run.succeeded(), "consume --group failed:\n{}", run.stderr);
    let printed: Vec<(i32, i64)> = run
        .stdout
        .lines()
        .map(|line| {
            let (p, o) = line.split_once(' ').expect("partition and offset");
            (
                p.parse().expect("a partition"),
                o.parse().expect("an offset"),
            )
        })
        .collect();
    // The range assignor gave the CLI one partition, all of it from the start.
    let mine = printed.first().expect("the CLI printed records").0;
    let in_mine = delivered.iter().filter(|d| d.partition == mine).count() as i64;
    assert_eq!(
        printed,
        (0..in_mine).map(|o| (mine, o)).collect::<Vec<_>>(),
        "the CLI read its partition {mine} once, in order"
    );
    assert!(
        seen.contains(&vec![1 - mine]),
        "rdkafka held only the other partition while the CLI was a member: {seen:?}"
    );
    let committed = committed_offsets(&bootstrap, &group, &topic, 2);
    assert_eq!(
        committed[mine as usize], in_mine,
        "the CLI committed what it printed"
    );
    // It left: rdkafka gets both partitions back.
    waits_for("rdkafka owns both partitions again", || {
        let _ = consumer.poll(Duration::from_millis(100));
        assigned(&consumer) == vec![0, 1]
    });
}

#[test]
fn a_group_reader_stopped_by_sigint_commits_and_leaves_the_group_at_once() {
    let (_broker, bootstrap, topic, _) = broker_with_records("cli-sigint", 1, 10, 1);
    let group = unique_topic("cli-sigint-group");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stdout = std::fs::File::create(dir.path().join("out")).expect("an output file");
    // No -n and no -e: it waits for more records until it is told to stop.
    let mut child = Command::new(broker_binary())
        .args([
            "topic", "consume", &topic, "--group", &group, "--format", "%o",
        ])
        .args(["--bootstrap", &bootstrap])
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the CLI");
    waits_for("the CLI is the group's member and read everything", || {
        // Until its first join the group does not exist.
        let run = run_cli(
            &bootstrap,
            &["group", "describe", &group, "--format", "json"],
            "",
        );
        let described: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
        described[0]["members"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
            && committed_offsets(&bootstrap, &group, &topic, 1) == vec![10]
    });
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = wait_bounded(&mut child, CLI_TIMEOUT).expect("the CLI stops on SIGINT");
    assert!(
        status.success(),
        "a stop signal is a clean exit: {status:?}"
    );
    // Left, not timed out: the session timeout (10 s) has not passed.
    let described = cli_json(&bootstrap, &["group", "describe", &group]);
    assert_eq!(described[0]["state"], "Empty", "{described}");
    let printed = std::fs::read_to_string(dir.path().join("out")).expect("the output");
    assert_eq!(printed.lines().count(), 10);
}

#[test]
fn the_cli_logs_in_over_sasl_ssl_with_kafka_client_settings() {
    let pki = common::pki::make_pki();
    let port = free_port();
    let _broker = Broker::builder()
        .arg("--listener")
        .arg(&format!("SASL_SSL://127.0.0.1:{port}"))
        .arg("--ssl-certificate")
        .arg(&pki.arg("server.pem"))
        .arg("--ssl-key")
        .arg(&pki.arg("server.key"))
        .arg("--authorizer")
        .arg("true")
        .arg("--super-users")
        .arg("User:admin")
        .arg("--add-scram")
        .arg("SCRAM-SHA-512=[name=admin,password=admin-secret]")
        .start();
    let bootstrap = format!("127.0.0.1:{port}");
    let ca = format!("ssl.ca.location={}", pki.arg("ca.pem"));
    let settings = |password: &str| {
        [
            "-X".to_string(),
            "security.protocol=SASL_SSL".to_string(),
            "-X".to_string(),
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            "-X".to_string(),
            "sasl.username=admin".to_string(),
            "-X".to_string(),
            format!("sasl.password={password}"),
            "-X".to_string(),
            ca.clone(),
        ]
    };
    let with = |args: &[&str], password: &str| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(settings(password));
        all
    };
    let args = with(&["topic", "create", "secured", "-p", "1"], "admin-secret");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(&bootstrap, &args);
    let args = with(&["topic", "produce", "secured"], "admin-secret");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli_with_input(&bootstrap, &args, "one\ntwo\n");
    let args = with(
        &["topic", "consume", "secured", "-n", "2", "--format", "%v"],
        "admin-secret",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(cli(&bootstrap, &args), "one\ntwo\n");

    // A wrong password, and no security settings at all, are refused.
    let args = with(&["topic", "list"], "wrong");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run_cli(&bootstrap, &args, "");
    assert!(!refused.succeeded());
    assert!(
        refused.stderr.contains("SASL authentication failed"),
        "{}",
        refused.stderr
    );
    assert!(!run_cli(&bootstrap, &["topic", "list"], "").succeeded());
    let unknown = run_cli(
        &bootstrap,
        &["topic", "list", "-X", "sasl.kerberos.principal=x"],
        "",
    );
    assert_eq!(
        unknown.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        unknown.stderr
    );
}
