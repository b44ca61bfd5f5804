//! The `ringlog serve` command line: invalid configuration is refused with
//! one clear message and exit code 2, a missing data directory is created, a
//! config file works, and SIGINT/SIGTERM shut the broker down with exit code 0.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::clients::{consume_all, create_topic, produce_keyed};
use common::{broker_binary, free_port, unique_topic, wait_bounded, Broker};

/// How long an invalid configuration may take to be refused.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code for an invalid configuration.
const EXIT_CODE_INVALID_CONFIG: i32 = 2;

/// Runs `ringlog` with `args` in `dir` and returns its exit status (`None` if
/// it was still running after `REFUSAL_TIMEOUT`, then killed) and its stderr.
fn run_to_exit(dir: &Path, args: &[String]) -> (Option<ExitStatus>, String) {
    let run = common::run_bounded(
        Command::new(broker_binary()).args(args).current_dir(dir),
        REFUSAL_TIMEOUT,
    );
    (run.status, run.stderr)
}

/// `serve` with a free port, a data directory inside `dir` and CPU 0, then
/// `extra`; a flag named in `extra` replaces the default one (clap refuses a
/// repeated flag, which would hide the error under test).
fn serve_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let defaults = [
        ("--listen", format!("127.0.0.1:{}", free_port())),
        ("--data-dir", dir.join("data").display().to_string()),
        ("--cpus", "0".to_string()),
        // Tests run in parallel: none of them on the default metrics port.
        ("--metrics-listen", "none".to_string()),
    ];
    let mut args: Vec<String> = vec!["serve".into()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.push(flag.into());
            args.push(value);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn assert_refused(what: &str, args: &[String], dir: &Path, mentions: &[&str]) {
    let (status, stderr) = run_to_exit(dir, args);
    let status = status.unwrap_or_else(|| {
        panic!("{what}: still running after {REFUSAL_TIMEOUT:?}; stderr:\n{stderr}")
    });
    assert_eq!(
        status.code(),
        Some(EXIT_CODE_INVALID_CONFIG),
        "{what}: exit status {status}; stderr:\n{stderr}"
    );
    assert!(!stderr.trim().is_empty(), "{what}: a message on stderr");
    assert!(
        !stderr.contains("panicked"),
        "{what}: a message, not a panic:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        mentions.iter().any(|m| lower.contains(&m.to_lowercase())),
        "{what}: the message names one of {mentions:?}:\n{stderr}"
    );
}

#[test]
fn invalid_flags_are_refused_with_exit_code_2_and_a_message() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases: [(&str, &[&str], &[&str]); 10] = [
        (
            "unparsable listen address",
            &["--listen", "not-an-address"],
            &["listen", "not-an-address"],
        ),
        (
            "port out of range",
            &["--listen", "127.0.0.1:99999"],
            &["listen", "99999"],
        ),
        ("unparsable cpu list", &["--cpus", "abc"], &["cpus", "abc"]),
        (
            "unknown log format",
            &["--log-format", "xml"],
            &["log format", "xml"],
        ),
        (
            "no connections allowed",
            &["--max-connections", "0"],
            &["max_connections"],
        ),
        (
            "zero default partitions",
            &["--default-partitions", "0"],
            &["default-partitions", "default_partitions", "partitions"],
        ),
        (
            "non-boolean auto-create",
            &["--auto-create-topics", "maybe"],
            &["auto-create-topics", "auto_create_topics", "maybe"],
        ),
        ("unknown flag", &["--no-such-flag"], &["no-such-flag"]),
        (
            "advertised listener without a port",
            &["--advertised-listener", "nohostport"],
            &["advertised", "nohostport"],
        ),
        (
            "cpu the machine does not have",
            &["--cpus", "4096"],
            &["cpu", "4096"],
        ),
    ];
    for (what, extra, mentions) in cases {
        assert_refused(what, &serve_args(dir.path(), extra), dir.path(), mentions);
    }
    let data = dir.path().join("data");
    let written = std::fs::read_dir(&data)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(
        written,
        0,
        "a refused configuration writes nothing into {}",
        data.display()
    );
}

#[test]
fn invalid_config_files_are_refused_with_exit_code_2_and_a_message() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.toml");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "listen = \n[[[").expect("writing a broken config");
    let wrong_type = dir.path().join("wrong-type.toml");
    std::fs::write(&wrong_type, "default_partitions = \"three\"\n").expect("writing a config");
    let bad_address = dir.path().join("bad-address.toml");
    std::fs::write(&bad_address, "listen = \"nowhere\"\n").expect("writing a config");
    // A free port and a local data directory, so that a wrongly accepted file
    // cannot start a broker on the default port.
    let unknown_key = dir.path().join("unknown-key.toml");
    let unknown_key_text = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\nno_such_key = 1\n",
        free_port()
    );
    std::fs::write(&unknown_key, unknown_key_text).expect("writing a config");
    let cases = [
        ("missing config file", &missing, vec!["missing.toml"]),
        ("unknown key", &unknown_key, vec!["no_such_key"]),
        (
            "unparsable config file",
            &broken,
            vec!["broken.toml", "toml", "parse", "expected"],
        ),
        (
            "wrongly typed value",
            &wrong_type,
            vec!["default_partitions", "three", "wrong-type.toml"],
        ),
        (
            "invalid listen address in the file",
            &bad_address,
            vec!["listen", "nowhere"],
        ),
    ];
    for (what, path, mentions) in cases {
        let args = vec![
            "serve".to_string(),
            "--config".into(),
            path.display().to_string(),
        ];
        assert_refused(what, &args, dir.path(), &mentions);
    }
}

#[test]
fn help_names_the_serve_flags() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(broker_binary())
        .args(["serve", "--help"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("running ringlog serve --help");
    assert!(output.status.success(), "serve --help exits 0");
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--cpus",
        "--advertised-listener",
        "--default-partitions",
        "--auto-create-topics",
        "--config",
    ] {
        assert!(text.contains(flag), "serve --help mentions {flag}:\n{text}");
    }
}

#[test]
fn missing_data_directory_is_created_at_start() {
    let parent = tempfile::tempdir().expect("a temporary directory");
    let data_dir = parent.path().join("not").join("yet").join("there");
    let mut broker = Broker::builder().data_dir(&data_dir).start();
    assert!(data_dir.is_dir(), "the data directory was created");
    let topic = unique_topic("fresh-dir");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    produce_keyed(&broker.bootstrap(), &topic, 10, 2);
    broker.restart();
    consume_all(&broker.bootstrap(), &topic, 1, 10, Duration::from_secs(20)).expect_count(10);
}

#[test]
fn data_directory_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("writing a file");
    let args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--data-dir".into(),
        file.display().to_string(),
        "--cpus".into(),
        "0".into(),
    ];
    assert_start_fails(dir.path(), &args, &["directory", "a-file"]);
}

/// Runs `ringlog` with `args` and checks that it stops by itself with a failure
/// status and a message on stderr that names one of `mentions`.
fn assert_start_fails(dir: &Path, args: &[String], mentions: &[&str]) {
    let (status, stderr) = run_to_exit(dir, args);
    let status = status
        .unwrap_or_else(|| panic!("still running after {REFUSAL_TIMEOUT:?}; stderr:\n{stderr}"));
    assert!(!status.success(), "exit status {status}");
    assert!(!stderr.trim().is_empty(), "a message on stderr");
    assert!(
        !stderr.contains("panicked"),
        "a message, not a panic:\n{stderr}"
    );
    assert!(
        mentions.iter().any(|m| stderr.contains(m)),
        "the message names one of {mentions:?}:\n{stderr}"
    );
}

#[test]
fn a_second_broker_on_the_same_data_directory_or_port_is_refused() {
    let mut first = Broker::start();
    let topic = unique_topic("exclusive");
    create_topic(&first.bootstrap(), &topic, 1, &[]);
    produce_keyed(&first.bootstrap(), &topic, 10, 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = first.data_dir().display().to_string();
    let same_dir = serve_args(dir.path(), &["--data-dir", &data_dir]);
    assert_start_fails(dir.path(), &same_dir, &["in use by another broker"]);
    let same_port = serve_args(dir.path(), &["--listen", &first.bootstrap()]);
    assert_start_fails(dir.path(), &same_port, &["already accepting connections"]);
    // The first broker kept serving everything, and its lock goes with it.
    consume_all(&first.bootstrap(), &topic, 1, 10, Duration::from_secs(20)).expect_count(10);
    first.restart();
    consume_all(&first.bootstrap(), &topic, 1, 10, Duration::from_secs(20)).expect_count(10);
}

#[test]
fn config_file_supplies_listen_address_and_data_directory() {
    let mut broker = Broker::builder().use_config_file().start();
    let topic = unique_topic("from-config-file");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    produce_keyed(&broker.bootstrap(), &topic, 5, 1);
    assert!(
        broker.data_dir().is_dir(),
        "the data directory from the file is used"
    );
    broker.restart();
    consume_all(&broker.bootstrap(), &topic, 1, 5, Duration::from_secs(20)).expect_count(5);
}

#[test]
fn sigint_and_sigterm_shut_down_cleanly_with_exit_code_0() {
    let mut broker = Broker::start();
    let topic = unique_topic("signals");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    produce_keyed(&broker.bootstrap(), &topic, 5, 1);
    // An open client connection must not keep the broker from exiting.
    let _idle = std::net::TcpStream::connect(broker.addr()).expect("connecting");

    let status = broker.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status}");
    broker.start_again();
    consume_all(&broker.bootstrap(), &topic, 1, 5, Duration::from_secs(20)).expect_count(5);
    let status = broker.stop_with(libc::SIGTERM);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

#[test]
fn a_different_shard_count_over_existing_group_offsets_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Group logs as two shards leave them; this start asks for one shard.
    for shard in 0..2 {
        std::fs::create_dir_all(
            dir.path()
                .join("data")
                .join("__groups")
                .join(format!("shard-{shard}")),
        )
        .expect("creating group folders");
    }
    assert_refused(
        "one shard over two shards' groups",
        &serve_args(dir.path(), &[]),
        dir.path(),
        &["shard", "--cpus"],
    );
}

#[test]
fn a_data_directory_without_o_direct_is_refused_unless_buffered_io_is_allowed() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return common::skip::skip(
            "a_data_directory_without_o_direct_is_refused_unless_buffered_io_is_allowed",
            "no /dev/shm (tmpfs) on this machine",
        );
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = tempfile::tempdir_in(shm).expect("a directory on tmpfs");
    let data_dir = data.path().display().to_string();
    let (status, stderr) = run_to_exit(
        dir.path(),
        &serve_args(dir.path(), &["--data-dir", &data_dir]),
    );
    let status = status.unwrap_or_else(|| panic!("still running on tmpfs; stderr:\n{stderr}"));
    assert!(!status.success(), "started on tmpfs without O_DIRECT");
    assert!(
        stderr.contains("O_DIRECT"),
        "the message names O_DIRECT:\n{stderr}"
    );

    let (status, stderr) = run_to_exit(
        dir.path(),
        &serve_args(
            dir.path(),
            &["--data-dir", &data_dir, "--allow-buffered-io"],
        ),
    );
    assert!(
        status.is_none(),
        "with --allow-buffered-io the broker keeps running; stderr:\n{stderr}"
    );
}

#[test]
fn numa_node_selects_that_nodes_cpus_and_an_unknown_node_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let args = |node: &str| -> Vec<String> {
        [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--numa-node",
            node,
            "--metrics-listen",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert_refused(
        "an unknown NUMA node",
        &args("4095"),
        dir.path(),
        &["numa", "4095"],
    );
    if !Path::new("/sys/devices/system/node/node0").is_dir() {
        return common::skip::skip(
            "numa_node_selects_that_nodes_cpus_and_an_unknown_node_is_refused",
            "no NUMA topology exposed here: node 0 not checked",
        );
    }
    let mut child = Command::new(broker_binary())
        .args(args("0"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the broker binary");
    let serving = common::wait_until(REFUSAL_TIMEOUT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let _ = child.kill();
    let _ = wait_bounded(&mut child, REFUSAL_TIMEOUT);
    assert!(serving, "the broker serves on NUMA node 0's CPUs");
}

#[test]
fn a_relative_data_directory_from_a_flag_or_the_config_file_works_on_every_shard() {
    let test = "a_relative_data_directory_from_a_flag_or_the_config_file_works_on_every_shard";
    let Some(cpus) = common::two_cpus(test) else {
        return;
    };
    for use_config_file in [false, true] {
        let mut builder = Broker::builder().cpus(&cpus).relative_data_dir();
        if use_config_file {
            builder = builder.use_config_file();
        }
        let mut broker = builder.start();
        let bootstrap = broker.bootstrap();
        // Partitions on both shards, made through CreateTopics and by auto-creation.
        let created = unique_topic("relative-created");
        create_topic(&bootstrap, &created, 4, &[]);
        produce_keyed(&bootstrap, &created, 40, 8);
        let auto = unique_topic("relative-auto");
        produce_keyed(&bootstrap, &auto, 10, 2);
        broker.restart();
        consume_all(&bootstrap, &created, 4, 40, Duration::from_secs(20)).expect_count(40);
        consume_all(&bootstrap, &auto, 1, 10, Duration::from_secs(20)).expect_count(10);
        let resolved = broker
            .data_dir()
            .canonicalize()
            .expect("the data directory exists");
        assert!(
            broker
                .log()
                .contains(&format!("data_dir={}", resolved.display())),
            "the log names the absolute data directory (config file: {use_config_file})"
        );
    }
}

/// Starts `ringlog` with `extra` flags and stderr in a file (no NO_COLOR in
/// its environment), waits until it accepts, stops it with SIGTERM and
/// returns what it logged.
fn log_of_a_short_run(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args = serve_args(dir.path(), extra);
    let listen = args[args.iter().position(|a| a == "--listen").expect("--listen") + 1].clone();
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = Command::new(broker_binary())
        .args(&args)
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            File::create(&stderr_path).expect("stderr file"),
        ))
        .spawn()
        .expect("spawning the broker binary");
    let serving = common::wait_until(REFUSAL_TIMEOUT, || {
        std::net::TcpStream::connect(listen.as_str()).is_ok()
    });
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_bounded(&mut child, REFUSAL_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(serving, "the broker served; its log:\n{log}");
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop; its log:\n{log}"
    );
    log
}

#[test]
fn logs_to_a_file_have_no_colour_codes_and_json_logs_are_one_object_per_line() {
    let text = log_of_a_short_run(&[]);
    assert!(text.contains("accepting connections"), "text log:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escapes in a file:\n{text:?}"
    );

    let json = log_of_a_short_run(&["--log-format", "json"]);
    let lines: Vec<&str> = json.lines().collect();
    assert!(lines.len() >= 3, "start, accept and stop lines:\n{json}");
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(object["level"].is_string(), "a level: {line}");
        assert!(object["timestamp"].is_string(), "a timestamp: {line}");
        assert!(object["fields"]["message"].is_string(), "a message: {line}");
    }
    assert!(
        json.contains("\"message\":\"accepting connections\""),
        "json log:\n{json}"
    );
}
