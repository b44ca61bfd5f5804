//! The command line, and checking it before anything connects.

use std::fmt::Display;
use std::ops::RangeInclusive;

use anyhow::{ensure, Context, Result};
use clap::{Parser, ValueEnum};
use kafka_protocol::records::Compression;

use crate::batch;
use crate::cpus;

/// Connections of one kind this tool will open.
const CONNECTIONS_MAX: usize = 1024;
/// Produce requests one connection may have in flight.
const IN_FLIGHT_MAX: usize = 1024;
const PARTITIONS_MAX: i32 = 100_000;
/// Kafka's `max.in.flight.requests.per.connection` limit with idempotence.
const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    name = "ringlog-perf",
    version,
    about = "Kafka-protocol load generator: produce, consume, end-to-end latency"
)]
pub struct Args {
    #[arg(value_enum)]
    pub mode: Mode,
    /// Broker address (all requests go here: single-broker clusters).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "ringlog-perf")]
    pub topic: String,
    /// Partitions to create the topic with if it is missing.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Value bytes per record (keys are null). e2e needs at least 16.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per batch (one batch per Produce request).
    #[arg(long, default_value_t = 1000)]
    pub batch_records: usize,
    /// Alternative to --batch-records: records per batch = this / record size.
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// With a target rate, a batch is sent when full or this long after its first record was due.
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections (partitions are split between them).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Produce requests in flight per connection (1 = wait for each ack).
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub acks: i16,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Seconds of measurement (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at the start that are run but not counted.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Stop producing after this many records (over all producers).
    #[arg(long)]
    pub records: Option<u64>,
    /// `max` or records per second over all producers (open loop).
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Cores for the generator's threads, e.g. `1` or `2-5,8`; threads are pinned round-robin.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Print one JSON object as the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Where consume mode starts.
    #[arg(long, value_enum, default_value_t = StartFrom::Earliest)]
    pub from: StartFrom,
    /// Consume mode: stop when the end offsets seen at start are reached (catch-up read).
    #[arg(long)]
    pub to_end: bool,
    /// Produce mode: stamp due times into values so a separate consumer can measure latency.
    #[arg(long)]
    pub stamp: bool,
    /// Produce as idempotent producers (InitProducerId, then a sequence per partition).
    #[arg(long)]
    pub idempotent: bool,
    /// Produce as transactional producers `PREFIX-<n>` (KIP-98): each
    /// transaction adds the producer's partitions, writes `--txn-records`
    /// records and commits.
    #[arg(long, value_name = "PREFIX")]
    pub transactional_id: Option<String>,
    /// Records per transaction with `--transactional-id`.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub txn_records: u64,
    /// With --transactional-id: end every this many-th transaction with an
    /// abort instead of a commit (100: 1% aborted).
    #[arg(long, value_name = "K")]
    pub abort_every: Option<u64>,
    /// Fetch isolation level (and, for --to-end, which end: the last stable
    /// offset for read-committed).
    #[arg(long, value_enum, default_value_t = IsolationArg::ReadUncommitted)]
    pub isolation: IsolationArg,
    /// Fetch long-poll wait.
    #[arg(long, default_value_t = 100)]
    pub fetch_wait_ms: i32,
    #[arg(long, default_value_t = 1 << 20)]
    pub fetch_partition_bytes: i32,
    #[arg(long, default_value_t = 64 << 20)]
    pub fetch_max_bytes: i32,
    /// Produce request timeout sent to the broker.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: i32,
    /// Skip CreateTopics.
    #[arg(long)]
    pub no_create: bool,
    /// Sink mode: address to listen on.
    #[arg(long, default_value = "127.0.0.1:19093")]
    pub listen: String,
    /// Idle mode: connections to open and hold; accept mode: open connections that ping.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// A Kafka client setting for every connection (repeatable):
    /// security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    #[serde(skip)] // holds sasl.password
    pub settings: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    Produce,
    Consume,
    E2e,
    /// Open --connections connections, send one ApiVersions on each, hold them for --duration.
    Idle,
    /// Open, negotiate, log in (TLS and SASL as -X says) and close
    /// connections on --producers threads for --duration: new connections per second.
    Handshakes,
    /// Listen on --listen and acknowledge produce requests without storing them:
    /// measures the generator's own ceiling.
    Sink,
    /// Time Metadata for every topic (request to whole answer), then decode it.
    Metadata,
    /// Open --rate new connections a second for --duration, each negotiating
    /// versions and closing, while --connections open ones ping (ApiVersions
    /// every 10 ms); their latency before and during.
    Accept,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IsolationArg {
    ReadUncommitted,
    ReadCommitted,
}

impl IsolationArg {
    /// Kafka's `isolation_level` on the wire.
    pub fn level(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl CompressionArg {
    pub fn codec(self) -> Compression {
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

impl Mode {
    /// Produce and e2e runs open producer connections.
    pub fn sends(self) -> bool {
        matches!(self, Self::Produce | Self::E2e)
    }

    /// Consume and e2e runs open consumer connections.
    pub fn fetches(self) -> bool {
        matches!(self, Self::Consume | Self::E2e)
    }

    /// The mode as the command line spells it, for the report.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// What the command line asks for once checked.
pub struct Settings {
    /// Each producer connection's share of `--rate`; None = as fast as acks allow.
    pub per_connection_rate: Option<f64>,
    /// Cores to pin threads to; empty = no pinning.
    pub cpus: Vec<usize>,
    /// Records per batch after `--batch-bytes` and the linger cap.
    pub batch_records: usize,
}

impl Args {
    /// Refuses values this tool cannot run with, before any connection.
    pub fn check(&self) -> Result<Settings> {
        let rate = parse_rate(&self.rate)?;
        let cpus = match &self.cpus {
            Some(s) => cpus::parse_cpus(s)?,
            None => Vec::new(),
        };
        self.check_counts()?;
        if self.mode == Mode::E2e {
            self.check_e2e()?;
        }
        let batch_records = match self.batch_bytes {
            Some(b) => (b / self.record_size.max(1)).max(1),
            None => self.batch_records,
        };
        let per_connection_rate = rate.map(|r| r / self.producers as f64);
        Ok(Settings {
            per_connection_rate,
            cpus,
            batch_records: effective_batch_records(
                batch_records,
                per_connection_rate,
                self.linger_ms,
            ),
        })
    }

    fn check_counts(&self) -> Result<()> {
        ensure_within("producers", self.producers, 1..=CONNECTIONS_MAX)?;
        ensure_within("consumers", self.consumers, 1..=CONNECTIONS_MAX)?;
        ensure_within("in-flight", self.in_flight, 1..=IN_FLIGHT_MAX)?;
        ensure_within("partitions", self.partitions, 1..=PARTITIONS_MAX)?;
        ensure!(matches!(self.acks, -1..=1), "--acks must be 0, 1 or -1");
        if let Some(prefix) = &self.transactional_id {
            ensure!(!prefix.is_empty(), "--transactional-id needs a prefix");
            ensure!(self.acks == -1, "--transactional-id needs --acks -1");
            ensure!(self.txn_records > 0, "--txn-records must be positive");
            ensure!(
                matches!(self.mode, Mode::Produce | Mode::E2e),
                "--transactional-id is for produce and e2e modes"
            );
        }
        ensure!(
            self.abort_every.is_none() || self.transactional_id.is_some(),
            "--abort-every needs --transactional-id"
        );
        ensure!(
            self.abort_every != Some(0),
            "--abort-every must be positive"
        );
        if self.idempotent || self.transactional_id.is_some() {
            // Kafka's limits for idempotence: acknowledged sends, at most
            // five requests in flight (what the broker deduplicates).
            ensure!(self.acks != 0, "--idempotent needs --acks 1 or -1");
            ensure_within("in-flight", self.in_flight, 1..=IDEMPOTENT_IN_FLIGHT_MAX)?;
        }
        ensure!(
            self.duration > 0.0 && self.warmup >= 0.0,
            "--duration must be positive"
        );
        Ok(())
    }

    /// e2e reads the due time back from each value and counts acked records.
    fn check_e2e(&self) -> Result<()> {
        ensure!(
            self.record_size >= batch::STAMP_BYTES,
            "e2e needs --record-size >= {}",
            batch::STAMP_BYTES
        );
        ensure!(
            self.acks != 0,
            "e2e needs acks 1 or -1 to know how many records to wait for"
        );
        Ok(())
    }
}

/// Refuses `--{flag}` outside `range`, naming the range.
fn ensure_within<T: PartialOrd + Display>(
    flag: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<()> {
    ensure!(
        range.contains(&value),
        "--{flag} must be {}..={}",
        range.start(),
        range.end()
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_their_range_are_refused_with_the_range() {
        assert!(ensure_within("producers", 1, 1..=CONNECTIONS_MAX).is_ok());
        let error = ensure_within("producers", 0, 1..=CONNECTIONS_MAX).unwrap_err();
        assert_eq!(error.to_string(), "--producers must be 1..=1024");
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
