//! Measurements of the broker's control plane:
//! - `ringlog-perf metadata`: Metadata for every topic, timed from the
//!   request's first byte to the answer's last, then decoded to count the
//!   partitions (the decoding is the client's cost, reported apart);
//! - `ringlog-perf accept`: `--rate` new connections a second (each
//!   negotiates versions and closes, opened by four threads) while
//!   `--connections` open ones keep asking ApiVersions; their latency
//!   before and during the churn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use ringlog::client::{decode_response, Connection};

use crate::args::Args;
use crate::stats::{new_histogram, LatencyUs};
use crate::wire;

/// Metadata requests timed in metadata mode.
const METADATA_ROUNDS: usize = 7;
/// Pause between one open connection's pings in accept mode.
const PING_INTERVAL: Duration = Duration::from_millis(10);
/// New connections a second accept mode may be asked for.
const ACCEPT_RATE_MAX: f64 = 100_000.0;
/// Threads opening new connections, each on its share of the schedule (one
/// thread's connect and ApiVersions round trips cannot keep up with 1,000 a
/// second on a loaded machine).
const OPENERS: usize = 4;

pub fn metadata(args: &Args) -> Result<()> {
    let mut conn = wire::connect_control(&args.bootstrap)?;
    let version = conn
        .versions()
        .pick::<MetadataRequest>(wire::METADATA_VERSIONS)?;
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let mut answer_ms = Vec::with_capacity(METADATA_ROUNDS);
    let mut decode_ms = Vec::with_capacity(METADATA_ROUNDS);
    let (mut topics, mut partitions, mut bytes) = (0, 0, 0);
    for _ in 0..METADATA_ROUNDS {
        let mut buf = BytesMut::new();
        let started = Instant::now();
        let correlation_id = conn.encode(&mut buf, &request, version)?;
        conn.write_all(&buf)?;
        let frame = conn.read_frame()?;
        answer_ms.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = frame.len();
        let decoding = Instant::now();
        let (got, response) = decode_response::<MetadataRequest>(frame, version)?;
        decode_ms.push(decoding.elapsed().as_secs_f64() * 1e3);
        ensure!(got == correlation_id, "answer to another request");
        topics = response.topics.len();
        partitions = response.topics.iter().map(|t| t.partitions.len()).sum();
    }
    let report = serde_json::json!({
        "mode": "metadata",
        "topics": topics,
        "partitions": partitions,
        "response_bytes": bytes,
        "answer_ms_first": answer_ms.first().copied().unwrap_or(0.0),
        "answer_ms_min": min(&answer_ms),
        "answer_ms_max": answer_ms.iter().copied().fold(0.0, f64::max),
        "answer_ms_median": median(&mut answer_ms),
        "decode_ms_median": median(&mut decode_ms),
    });
    println!("{report}");
    Ok(())
}

pub fn accept(args: &Args) -> Result<()> {
    let rate = args
        .rate
        .parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0 && *r <= ACCEPT_RATE_MAX)
        .context("accept mode needs --rate N new connections a second (1..=100000)")?;
    let phase = Duration::from_secs_f64(args.duration);
    let quiet = ping_phase(args, phase, None)?;
    let churn = ping_phase(args, phase, Some(rate))?;
    let report = serde_json::json!({
        "mode": "accept",
        "open_connections": args.connections,
        "asked_rate": rate,
        "achieved_rate": churn.accepted as f64 / churn.seconds,
        "new_connections": churn.accepted,
        "failed_connections": churn.failed,
        "connect_and_api_versions_us": LatencyUs::from_histogram(&churn.connect),
        "open_ping_us_before": LatencyUs::from_histogram(&quiet.ping),
        "open_ping_us_during": LatencyUs::from_histogram(&churn.ping),
    });
    println!("{report}");
    Ok(())
}

struct Phase {
    ping: Histogram<u64>,
    connect: Histogram<u64>,
    accepted: u64,
    failed: u64,
    seconds: f64,
}

/// Pings on `--connections` open connections for `length`, with new
/// connections at `rate` a second meanwhile when given.
fn ping_phase(args: &Args, length: Duration, rate: Option<f64>) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pingers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let conn = wire::connect_control(&args.bootstrap)?;
        let stop = stop.clone();
        pingers.push(std::thread::spawn(move || ping_until(conn, &stop)));
    }
    let started = Instant::now();
    let mut connect = new_histogram();
    let (mut accepted, mut failed) = (0, 0);
    match rate {
        Some(rate) => {
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    let addr = args.bootstrap.clone();
                    std::thread::spawn(move || open_and_close(&addr, rate / OPENERS as f64, length))
                })
                .collect();
            for opener in openers {
                let (histogram, ok, failures) = opener
                    .join()
                    .map_err(|_| anyhow::anyhow!("an opening thread panicked"))?;
                connect.add(&histogram)?;
                accepted += ok;
                failed += failures;
            }
        }
        None => std::thread::sleep(length),
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut ping = new_histogram();
    for pinger in pingers {
        let histogram = pinger
            .join()
            .map_err(|_| anyhow::anyhow!("a ping thread panicked"))??;
        ping.add(&histogram)?;
    }
    Ok(Phase {
        ping,
        connect,
        accepted,
        failed,
        seconds,
    })
}

fn ping_until(mut conn: Connection, stop: &AtomicBool) -> Result<Histogram<u64>> {
    let mut histogram = new_histogram();
    let request = ApiVersionsRequest::default();
    let version = conn
        .versions()
        .pick::<ApiVersionsRequest>((0, 3))
        .unwrap_or(0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        conn.call(&request, version)?;
        histogram.saturating_record(started.elapsed().as_nanos() as u64);
        std::thread::sleep(PING_INTERVAL);
    }
    Ok(histogram)
}

/// Opens connections on an open-loop schedule of `rate` a second for
/// `length`: each negotiates versions, then closes. Returns the latency of
/// each (connect and ApiVersions), how many succeeded and how many failed.
fn open_and_close(addr: &str, rate: f64, length: Duration) -> (Histogram<u64>, u64, u64) {
    let mut histogram = new_histogram();
    let (mut accepted, mut failed) = (0u64, 0u64);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut due = started;
    while due.duration_since(started) < length {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match wire::connect_control(addr) {
            Ok(conn) => {
                // Measured from when it was due, so a slow accept shows.
                histogram.saturating_record(due.elapsed().as_nanos() as u64);
                accepted += 1;
                drop(conn);
            }
            Err(_) => failed += 1,
        }
        due += interval;
    }
    (histogram, accepted, failed)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
