//! ringlog-perf: a Kafka-protocol load generator for ringlog or any
//! Kafka-compatible broker.
//!
//! # Layout
//!
//! - `main.rs`: command line, topic set-up, thread placement, progress and the report.
//! - [`batch`]: RecordBatch v2 encoded once and patched per send (values, timestamps, CRC-32C).
//! - [`wire`]: connecting with the shared client, control-plane requests, the Produce template.
//! - [`producer`]: one producer connection, open loop or max rate, pipelined.
//! - [`consumer`]: one consumer connection, long-poll Fetch, end-to-end latency from stamped values.
//! - [`stats`]: clock, histograms, CPU accounting, the report.
//! - [`sink`]: an endpoint that acknowledges and discards produce requests (the generator's ceiling).
//!
//! Latency is measured from when a batch (produce) or record (e2e) was due
//! to be sent by the schedule, not from when it was sent, so a slow broker
//! cannot hide its stalls by slowing the generator down (no coordinated
//! omission).

mod batch;
mod consumer;
mod producer;
mod sink;
mod stats;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::records::Compression;

use crate::stats::{Clock, LatencyUs, Progress, Report, WorkerResult};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections of one kind this tool will open.
const CONNECTIONS_MAX: usize = 1024;
const PARTITIONS_MAX: i32 = 100_000;
const IDLE_CONNECTIONS_MAX: usize = 100_000;
/// How long producers wait for outstanding acks, and consumers for the last
/// produced records, after the run ends.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a newly created topic may take to show up in Metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// A process using at least this share of its cores is reported as saturated.
const SATURATION_SHARE: f64 = 0.9;

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    name = "ringlog-perf",
    version,
    about = "Kafka-protocol load generator: produce, consume, end-to-end latency"
)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    /// Broker address (all requests go here: single-broker clusters).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "ringlog-perf")]
    topic: String,
    /// Partitions to create the topic with if it is missing.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Value bytes per record (keys are null). e2e needs at least 16.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch (one batch per Produce request).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// Alternative to --batch-records: records per batch = this / record size.
    #[arg(long)]
    batch_bytes: Option<usize>,
    /// With a target rate, a batch is sent when full or this long after its first record was due.
    #[arg(long, default_value_t = 5.0)]
    linger_ms: f64,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections (partitions are split between them).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Produce requests in flight per connection (1 = wait for each ack).
    #[arg(long, default_value_t = 5)]
    in_flight: usize,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    acks: i16,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Seconds of measurement (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds at the start that are run but not counted.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Stop producing after this many records (over all producers).
    #[arg(long)]
    records: Option<u64>,
    /// `max` or records per second over all producers (open loop).
    #[arg(long, default_value = "max")]
    rate: String,
    /// Cores for the generator's threads, e.g. `1` or `2-5,8`; threads are pinned round-robin.
    #[arg(long)]
    cpus: Option<String>,
    /// Print one JSON object as the last stdout line.
    #[arg(long)]
    json: bool,
    /// Where consume mode starts.
    #[arg(long, value_enum, default_value_t = From::Earliest)]
    from: From,
    /// Consume mode: stop when the end offsets seen at start are reached (catch-up read).
    #[arg(long)]
    to_end: bool,
    /// Produce mode: stamp due times into values so a separate consumer can measure latency.
    #[arg(long)]
    stamp: bool,
    /// Fetch long-poll wait.
    #[arg(long, default_value_t = 100)]
    fetch_wait_ms: i32,
    #[arg(long, default_value_t = 1 << 20)]
    fetch_partition_bytes: i32,
    #[arg(long, default_value_t = 64 << 20)]
    fetch_max_bytes: i32,
    /// Produce request timeout sent to the broker.
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: i32,
    /// Skip CreateTopics.
    #[arg(long)]
    no_create: bool,
    /// Sink mode: address to listen on.
    #[arg(long, default_value = "127.0.0.1:19093")]
    listen: String,
    /// Idle mode: connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
enum Mode {
    Produce,
    Consume,
    E2e,
    /// Open --connections connections, send one ApiVersions on each, hold them for --duration.
    Idle,
    /// Listen on --listen and acknowledge produce requests without storing them:
    /// measures the generator's own ceiling.
    Sink,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
enum From {
    Earliest,
    Latest,
}

impl CompressionArg {
    fn codec(self) -> Compression {
        match self {
            Self::None => Compression::None,
            Self::Gzip => Compression::Gzip,
            Self::Snappy => Compression::Snappy,
            Self::Lz4 => Compression::Lz4,
            Self::Zstd => Compression::Zstd,
        }
    }
}

fn parse_rate(s: &str) -> Result<Option<f64>> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let r: f64 = s
        .parse()
        .with_context(|| format!("--rate must be `max` or records per second, got {s:?}"))?;
    ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
    Ok(Some(r))
}

/// `1`, `0-3`, `1,3,5-7` → core ids.
fn parse_cpus(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
                ensure!(a <= b, "bad cpu range {part}");
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(|| format!("bad cpu {part:?}"))?),
        }
    }
    ensure!(!out.is_empty(), "--cpus is empty");
    Ok(out)
}

fn pin(cpus: &[usize], slot: usize) {
    if cpus.is_empty() {
        return;
    }
    let id = cpus[slot % cpus.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
        eprintln!("warning: could not pin a thread to cpu {id}");
    }
}

/// Records per batch given a target rate: a batch never waits longer than
/// linger for its last record, as a Kafka producer's linger.ms would cut it.
fn effective_batch_records(
    batch_records: usize,
    per_connection_rate: Option<f64>,
    linger_ms: f64,
) -> usize {
    match per_connection_rate {
        None => batch_records,
        Some(r) => {
            let by_linger = (r * linger_ms / 1000.0).ceil().max(1.0) as usize;
            batch_records.min(by_linger).max(1)
        }
    }
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("ringlog-perf: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let rate = parse_rate(&args.rate)?;
    let cpus = match &args.cpus {
        Some(s) => parse_cpus(s)?,
        None => Vec::new(),
    };
    ensure!(
        args.producers >= 1 && args.producers <= CONNECTIONS_MAX,
        "--producers must be 1..={CONNECTIONS_MAX}"
    );
    ensure!(
        args.consumers >= 1 && args.consumers <= CONNECTIONS_MAX,
        "--consumers must be 1..={CONNECTIONS_MAX}"
    );
    ensure!(
        args.in_flight >= 1 && args.in_flight <= 1024,
        "--in-flight must be 1..=1024"
    );
    ensure!(
        args.partitions >= 1 && args.partitions <= PARTITIONS_MAX,
        "--partitions must be 1..={PARTITIONS_MAX}"
    );
    ensure!(matches!(args.acks, -1..=1), "--acks must be 0, 1 or -1");
    ensure!(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be positive"
    );
    if args.mode == Mode::E2e {
        ensure!(
            args.record_size >= batch::STAMP_BYTES,
            "e2e needs --record-size >= {}",
            batch::STAMP_BYTES
        );
        ensure!(
            args.acks != 0,
            "e2e needs acks 1 or -1 to know how many records to wait for"
        );
    }
    let batch_records = match args.batch_bytes {
        Some(b) => (b / args.record_size.max(1)).max(1),
        None => args.batch_records,
    };
    pin(&cpus, 0);
    if args.mode == Mode::Idle {
        return run_idle(&args);
    }
    if args.mode == Mode::Sink {
        return sink::run(&args.listen);
    }

    let clock = Clock::new();
    let run_id = batch::RUN_ID_MAGIC
        | (u64::from(std::process::id()) ^ (clock.now_ns() >> 10)) & 0xFFFF_FFFF;

    // Control plane: versions, topic, offsets.
    let mut control = wire::connect_control(&args.bootstrap)?;
    let mut existing = wire::topic_partitions(&mut control, &args.topic)?;
    if existing.is_none() && !args.no_create {
        wire::create_topic(&mut control, &args.topic, args.partitions)?;
        let deadline = std::time::Instant::now() + TOPIC_READY_TIMEOUT;
        while existing.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            existing = wire::topic_partitions(&mut control, &args.topic)?;
        }
    }
    let Some((partition_count, many_leaders)) = existing else {
        bail!(
            "topic {} not found{}",
            args.topic,
            if args.no_create {
                ""
            } else {
                " after CreateTopics"
            }
        );
    };
    if partition_count != args.partitions {
        eprintln!(
            "note: topic {} has {partition_count} partitions; using them all",
            args.topic
        );
    }
    if many_leaders {
        eprintln!(
            "warning: partitions have several leaders; this tool sends everything to {}",
            args.bootstrap
        );
    }
    let partitions: Vec<i32> = (0..partition_count).collect();
    let versions = control.versions();
    let produce_version = versions.pick::<ProduceRequest>(wire::PRODUCE_VERSIONS)?;
    let wants_producers = matches!(args.mode, Mode::Produce | Mode::E2e);
    let wants_consumers = matches!(args.mode, Mode::Consume | Mode::E2e);
    let fetch_version = if wants_consumers {
        versions.pick::<FetchRequest>(wire::FETCH_VERSIONS)?
    } else {
        0
    };
    let start_offsets: HashMap<i32, i64> = if wants_consumers {
        let ts = if args.mode == Mode::E2e || args.from == From::Latest {
            -1
        } else {
            -2
        };
        wire::list_offsets(&mut control, &args.topic, &partitions, ts)?
    } else {
        HashMap::new()
    };
    let end_offsets = if args.mode == Mode::Consume && args.to_end {
        Some(wire::list_offsets(
            &mut control,
            &args.topic,
            &partitions,
            -1,
        )?)
    } else {
        None
    };
    drop(control);

    let per_connection_rate = rate.map(|r| r / args.producers as f64);
    let batch_records = effective_batch_records(batch_records, per_connection_rate, args.linger_ms);
    let start_ns = clock.now_ns() + 20_000_000; // let every thread connect first
    let measure_from_ns = start_ns + (args.warmup * 1e9) as u64;
    let end_ns = measure_from_ns + (args.duration * 1e9) as u64;
    let drain_ns = end_ns + DRAIN.as_nanos() as u64;

    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = stats::process_cpu_seconds();
    let mut slot = 0usize;

    let mut producer_handles = Vec::new();
    if wants_producers {
        for index in 0..args.producers {
            let records_limit = args.records.map(|n| {
                n / args.producers as u64 + u64::from((index as u64) < n % args.producers as u64)
            });
            let plan = producer::ProducerPlan {
                index,
                bootstrap: args.bootstrap.clone(),
                topic: args.topic.clone(),
                partitions: partitions.clone(),
                version: produce_version,
                acks: args.acks,
                timeout_ms: args.request_timeout_ms,
                in_flight: args.in_flight,
                batch_records,
                record_bytes: args.record_size,
                compression: args.compression.codec(),
                rate: per_connection_rate,
                phase_ns: per_connection_rate.map_or(0, |r| {
                    (batch_records as f64 / r * 1e9 * index as f64 / args.producers as f64) as u64
                }),
                stamp: args.mode == Mode::E2e || args.stamp,
                run_id,
                records_limit,
                start_ns,
                measure_from_ns,
                end_ns,
                drain_ns,
            };
            let (progress, cpus, pin_slot) = (progress.clone(), cpus.clone(), slot);
            slot += 1;
            producer_handles.push(
                std::thread::Builder::new()
                    .name(format!("producer-{index}"))
                    .spawn(move || {
                        pin(&cpus, pin_slot);
                        clock.sleep_until(start_ns);
                        producer::run(plan, clock, &progress)
                    })?,
            );
        }
    }
    let mut consumer_handles = Vec::new();
    if wants_consumers {
        for index in 0..args.consumers {
            let offsets: Vec<(i32, i64)> = partitions
                .iter()
                .filter(|p| **p as usize % args.consumers == index)
                .map(|p| (*p, start_offsets.get(p).copied().unwrap_or(0)))
                .collect();
            let plan = consumer::ConsumerPlan {
                index,
                bootstrap: args.bootstrap.clone(),
                topic: args.topic.clone(),
                offsets,
                end_offsets: end_offsets.clone(),
                version: fetch_version,
                max_wait_ms: args.fetch_wait_ms,
                partition_max_bytes: args.fetch_partition_bytes,
                max_bytes: args.fetch_max_bytes,
                latency_run: match args.mode {
                    Mode::E2e => Some(Some(run_id)),
                    _ => Some(None),
                },
                measure_from_ns,
                // e2e consumers are stopped by `stop` once all produced records arrived.
                end_ns: if args.mode == Mode::E2e {
                    drain_ns
                } else {
                    end_ns
                },
            };
            let (progress, stop, cpus, pin_slot) =
                (progress.clone(), stop.clone(), cpus.clone(), slot);
            slot += 1;
            consumer_handles.push(
                std::thread::Builder::new()
                    .name(format!("consumer-{index}"))
                    .spawn(move || {
                        pin(&cpus, pin_slot);
                        clock.sleep_until(start_ns);
                        consumer::run(plan, clock, &progress, &stop)
                    })?,
            );
        }
    }
    let threads = slot;
    let cores = if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cpus.len()
    };
    let progress_cores = cores.min(threads.max(1));

    // Progress once a second until every worker is done.
    let mut last = (
        0u64,
        0u64,
        0u64,
        clock.now_ns(),
        stats::process_cpu_seconds(),
    );
    let mut next_tick = start_ns + 1_000_000_000;
    let mut producers_done_at: Option<u64> = None;
    loop {
        let all_producers_done = producer_handles.iter().all(|h| h.is_finished());
        let all_consumers_done = consumer_handles.iter().all(|h| h.is_finished());
        if all_producers_done && all_consumers_done {
            break;
        }
        if args.mode == Mode::E2e && all_producers_done {
            let done_at = *producers_done_at.get_or_insert(clock.now_ns());
            let produced = progress.produced_records.load(Ordering::Relaxed);
            let consumed = progress.consumed_records.load(Ordering::Relaxed);
            if consumed >= produced || clock.now_ns() > done_at + DRAIN.as_nanos() as u64 {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let now = clock.now_ns();
        if now >= next_tick {
            next_tick += 1_000_000_000;
            let p = progress.produced_records.load(Ordering::Relaxed);
            let pb = progress.produced_bytes.load(Ordering::Relaxed);
            let c = progress.consumed_records.load(Ordering::Relaxed);
            let cpu = stats::process_cpu_seconds();
            let dt = (now - last.3) as f64 / 1e9;
            let mut line = format!("[{:>5.0}s]", (now.saturating_sub(start_ns)) as f64 / 1e9);
            if wants_producers {
                line += &format!(
                    " produced {:>10.0} rec/s {:>8.1} MB/s",
                    (p - last.0) as f64 / dt,
                    (pb - last.1) as f64 / dt / 1e6
                );
            }
            if wants_consumers {
                line += &format!(" | consumed {:>10.0} rec/s", (c - last.2) as f64 / dt);
            }
            let cpu_percent = (cpu - last.4) / dt * 100.0;
            line += &format!(
                " | errors {} | cpu {cpu_percent:.0}%",
                progress.errors.load(Ordering::Relaxed)
            );
            if cpu_percent >= SATURATION_SHARE * 100.0 * progress_cores as f64 {
                line += " SATURATED";
            }
            eprintln!("{line}");
            last = (p, pb, c, now, cpu);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall_s = (clock.now_ns().saturating_sub(start_ns)) as f64 / 1e9;
    let cpu_percent = (stats::process_cpu_seconds() - cpu_before) / wall_s.max(1e-9) * 100.0;

    let mut produced = WorkerResult::new();
    for h in producer_handles {
        produced.merge(
            h.join()
                .map_err(|_| anyhow::anyhow!("producer thread panicked"))?,
        );
    }
    let mut consumed = WorkerResult::new();
    for h in consumer_handles {
        consumed.merge(
            h.join()
                .map_err(|_| anyhow::anyhow!("consumer thread panicked"))?,
        );
    }

    let usable = progress_cores;
    let saturated = cpu_percent >= SATURATION_SHARE * 100.0 * usable as f64;
    let elapsed = |r: &WorkerResult| (r.last_ns.saturating_sub(measure_from_ns)) as f64 / 1e9;
    let (main, latency, kind, consumed_rate) = match args.mode {
        Mode::Produce => (
            &produced,
            LatencyUs::from_histogram(&produced.latency_ns),
            if args.acks == 0 {
                "send lateness vs schedule per batch (acks=0)"
            } else {
                "produce: due -> ack per batch"
            },
            None,
        ),
        Mode::Consume | Mode::Idle | Mode::Sink => (
            &consumed,
            LatencyUs::from_histogram(&consumed.latency_ns),
            "due -> received per stamped record",
            None,
        ),
        Mode::E2e => (
            &produced,
            LatencyUs::from_histogram(&consumed.latency_ns),
            "e2e: due -> consumed per record",
            Some(consumed.records as f64 / elapsed(&consumed).max(1e-9)),
        ),
    };
    let elapsed_s = elapsed(main).max(1e-9);
    let errors = produced.errors + consumed.errors;
    let mut config = serde_json::to_value(&args)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert("effective_batch_records".into(), batch_records.into());
        obj.insert("produce_version".into(), produce_version.into());
    }
    let report = Report {
        mode: format!("{:?}", args.mode).to_lowercase(),
        records: main.records,
        bytes: main.bytes,
        elapsed_s,
        records_per_sec: main.records as f64 / elapsed_s,
        mb_per_sec: main.bytes as f64 / elapsed_s / 1e6,
        consumed_records_per_sec: consumed_rate,
        ack_latency_us: (args.mode == Mode::E2e)
            .then(|| LatencyUs::from_histogram(&produced.latency_ns)),
        cpu_percent,
        cpu_cores: usable,
        saturated,
        errors,
        latency_us: latency,
        latency_kind: kind.to_owned(),
        config,
    };
    if let Some(e) = produced
        .first_error
        .as_ref()
        .or(consumed.first_error.as_ref())
    {
        eprintln!("first error: {e}");
    }
    if saturated {
        eprintln!("warning: the generator used {cpu_percent:.0}% of {usable} core(s): it is saturated, the broker may be faster than measured");
    }
    report.print_table();
    if args.json {
        println!("{}", report.json_line()?);
    }
    if main.records == 0 {
        bail!(
            "no records were {}",
            if args.mode == Mode::Consume {
                "consumed"
            } else {
                "acknowledged"
            }
        );
    }
    Ok(())
}

/// Raises the open-file soft limit to the hard limit (idle mode holds many sockets).
fn raise_nofile_limit() {
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn run_idle(args: &Args) -> Result<()> {
    ensure!(
        args.connections <= IDLE_CONNECTIONS_MAX,
        "--connections must be at most {IDLE_CONNECTIONS_MAX}"
    );
    raise_nofile_limit();
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let conn =
            wire::connect_control(&args.bootstrap).with_context(|| format!("connection {i}"))?;
        held.push(conn);
    }
    eprintln!(
        "holding {} idle connections for {} s",
        held.len(),
        args.duration
    );
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    let report = serde_json::json!({ "mode": "idle", "connections": held.len(), "duration_s": args.duration });
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_accept_singles_ranges_and_mixes() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpus("1,3,5-6").unwrap(), vec![1, 3, 5, 6]);
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("3-1").is_err());
    }

    #[test]
    fn rate_is_max_or_a_positive_number() {
        assert_eq!(parse_rate("max").unwrap(), None);
        assert_eq!(parse_rate("1000").unwrap(), Some(1000.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn linger_caps_batch_size_at_low_rates() {
        assert_eq!(effective_batch_records(1000, None, 5.0), 1000);
        assert_eq!(effective_batch_records(1000, Some(1_000_000.0), 5.0), 1000);
        assert_eq!(effective_batch_records(1000, Some(10_000.0), 5.0), 50);
        assert_eq!(effective_batch_records(1000, Some(10.0), 5.0), 1);
    }
}
