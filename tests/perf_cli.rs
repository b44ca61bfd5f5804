//! ringlog-perf against a real ringlog broker process: produce, consume,
//! end-to-end and idle modes, and its JSON report.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;

/// Every command here must finish well within this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs ringlog-perf with `args`; returns (success, stdout, stderr).
fn perf(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringlog-perf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringlog-perf {args:?} ran past {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stdout, stderr)
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("some output"))
        .expect("last stdout line is JSON")
}

#[test]
fn produce_at_max_rate_reports_throughput_latency_and_cpu_as_json() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let (ok, out, err) = perf(&[
        "produce",
        "--bootstrap",
        &addr,
        "--topic",
        "t1",
        "--partitions",
        "3",
        "--duration",
        "1.5",
        "--json",
        "--batch-records",
        "100",
        "--in-flight",
        "4",
    ]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    assert!(j["records_per_sec"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["mb_per_sec"].as_f64().unwrap() > 0.0);
    assert!(j["cpu_percent"].as_f64().unwrap() > 0.0);
    assert_eq!(j["errors"], 0, "{err}");
    for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(j["latency_us"][p].as_f64().unwrap() > 0.0, "{p} in {j}");
    }
    assert!(err.contains("produced"), "progress line on stderr: {err}");
}

#[test]
fn e2e_at_a_fixed_rate_measures_every_record_end_to_end() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let (ok, out, err) = perf(&[
        "e2e",
        "--bootstrap",
        &addr,
        "--topic",
        "t2",
        "--partitions",
        "2",
        "--duration",
        "1",
        "--rate",
        "20000",
        "--record-size",
        "64",
        "--json",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--linger-ms",
        "1",
        "--acks",
        "-1",
    ]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    let produced = j["records"].as_u64().unwrap();
    // Open loop at 20k/s for 1 s: at most 20,000 records, and most of them
    // even on a loaded machine (with 5 requests in flight, slow acks hold
    // the generator back; the rate itself is measured by the suite, not here).
    assert!((10_000..=20_100).contains(&produced), "{j}");
    assert_eq!(j["latency_us"]["count"].as_u64().unwrap(), produced, "{j}");
    assert!(j["consumed_records_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn catch_up_consumer_reads_to_the_end_and_stops() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let (ok, _, err) = perf(&[
        "produce",
        "--bootstrap",
        &addr,
        "--topic",
        "t3",
        "--partitions",
        "2",
        "--records",
        "50000",
        "--duration",
        "30",
        "--stamp",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = perf(&[
        "consume",
        "--bootstrap",
        &addr,
        "--topic",
        "t3",
        "--to-end",
        "--duration",
        "30",
        "--json",
        "--fetch-wait-ms",
        "10",
    ]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    assert_eq!(j["records"].as_u64().unwrap(), 50_000, "{j}");
    assert_eq!(
        j["latency_us"]["count"].as_u64().unwrap(),
        50_000,
        "stamped values are measured: {j}"
    );
}

#[test]
fn idempotent_produce_is_accepted_plain_stamped_and_compressed() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    for (topic, extra) in [
        ("idempotent-plain", &["produce", "--records", "20000"][..]),
        (
            "idempotent-stamped",
            &["e2e", "--rate", "5000", "--duration", "0.5"][..],
        ),
        (
            "idempotent-zstd",
            &["produce", "--records", "5000", "--compression", "zstd"][..],
        ),
    ] {
        let mut args = extra.to_vec();
        args.extend([
            "--bootstrap",
            &addr,
            "--topic",
            topic,
            "--partitions",
            "2",
            "--producers",
            "2",
            "--batch-records",
            "100",
            "--idempotent",
            "--json",
        ]);
        let (ok, out, err) = perf(&args);
        assert!(ok, "{topic}: {err}");
        let j = last_json(&out);
        assert_eq!(j["errors"], 0, "{topic}: every sequence accepted: {err}");
        assert!(j["records"].as_u64().unwrap() > 0, "{topic}: {j}");
    }
    let (ok, _, err) = perf(&[
        "produce",
        "--bootstrap",
        &addr,
        "--idempotent",
        "--acks",
        "0",
    ]);
    assert!(!ok && err.contains("--idempotent needs"), "{err}");
}

#[test]
fn transactional_produce_and_catch_up_reads_at_both_isolation_levels() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let (ok, out, err) = perf(&[
        "produce",
        "--bootstrap",
        &addr,
        "--topic",
        "txn",
        "--partitions",
        "2",
        "--records",
        "10000",
        "--batch-records",
        "100",
        "--acks",
        "-1",
        "--transactional-id",
        "perf-cli",
        "--txn-records",
        "500",
        "--abort-every",
        "4",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["errors"], 0, "{err}");
    for isolation in ["read-uncommitted", "read-committed"] {
        let (ok, out, err) = perf(&[
            "consume",
            "--bootstrap",
            &addr,
            "--topic",
            "txn",
            "--no-create",
            "--to-end",
            "--isolation",
            isolation,
            "--duration",
            "30",
            "--json",
            "--fetch-wait-ms",
            "10",
        ]);
        assert!(ok, "{isolation}: {err}");
        // 100 batches in 20 transactions of 500 records, each ended by a
        // marker on both partitions; read_committed also returns the aborted
        // batches (with the list that lets a client skip them), as Kafka does.
        let j = last_json(&out);
        assert_eq!(j["records"].as_u64().unwrap(), 10_040, "{isolation}: {j}");
    }
    let (ok, _, err) = perf(&["produce", "--bootstrap", &addr, "--abort-every", "5"]);
    assert!(
        !ok && err.contains("--abort-every needs --transactional-id"),
        "{err}"
    );
}

#[test]
fn compressed_produce_is_accepted() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    for codec in ["gzip", "lz4", "zstd", "snappy"] {
        let (ok, out, err) = perf(&[
            "e2e",
            "--bootstrap",
            &addr,
            "--topic",
            codec,
            "--duration",
            "0.5",
            "--rate",
            "5000",
            "--compression",
            codec,
            "--json",
        ]);
        assert!(ok, "{codec}: {err}");
        let j = last_json(&out);
        assert_eq!(j["errors"], 0, "{codec}: {err}");
        assert!(
            j["latency_us"]["count"].as_u64().unwrap() > 0,
            "{codec}: {j}"
        );
    }
}

#[test]
fn unreachable_broker_fails_with_a_message() {
    let (ok, _, err) = perf(&["produce", "--bootstrap", "127.0.0.1:1", "--duration", "1"]);
    assert!(!ok);
    assert!(err.contains("connecting to 127.0.0.1:1"), "{err}");
}

#[test]
fn idle_mode_holds_the_requested_connections() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let (ok, out, err) = perf(&[
        "idle",
        "--bootstrap",
        &addr,
        "--connections",
        "50",
        "--duration",
        "0.2",
    ]);
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["connections"], 50);
}

#[test]
fn sink_mode_acknowledges_produce_requests() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut sink = Command::new(env!("CARGO_BIN_EXE_ringlog-perf"))
        .args(["sink", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "sink did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = perf(&[
        "produce",
        "--bootstrap",
        &addr,
        "--topic",
        "s",
        "--partitions",
        "2",
        "--records",
        "20000",
        "--duration",
        "10",
        "--json",
    ]);
    let _ = sink.kill();
    let _ = sink.wait();
    let (ok, out, err) = result;
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["records"], 20_000);
}
