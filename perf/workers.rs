//! The producer and consumer threads of a measured run: their time window,
//! their plans, starting them pinned, and collecting what they measured.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::args::{Args, Mode, Settings};
use crate::consumer::{self, ConsumerPlan};
use crate::cpus;
use crate::producer::TxnPlan;
use crate::producer::{self, ProducerPlan};
use crate::setup::TopicSetup;
use crate::stats::{Clock, Progress, WorkerResult};

/// How long producers wait for outstanding acks, and consumers for the last
/// produced records, after the run ends.
pub const DRAIN: Duration = Duration::from_secs(10);
/// Time every thread gets to connect before the schedule starts.
const CONNECT_GRACE_NS: u64 = 20_000_000;

/// When the run starts, when counting starts (after warm-up), when sending
/// ends and when waiting for the last answers ends (unix ns).
#[derive(Clone, Copy)]
pub struct Window {
    pub start_ns: u64,
    pub measure_from_ns: u64,
    pub end_ns: u64,
    pub drain_ns: u64,
}

impl Window {
    pub fn new(now_ns: u64, warmup_s: f64, duration_s: f64) -> Self {
        let start_ns = now_ns + CONNECT_GRACE_NS;
        let measure_from_ns = start_ns + (warmup_s * 1e9) as u64;
        let end_ns = measure_from_ns + (duration_s * 1e9) as u64;
        let window = Self {
            start_ns,
            measure_from_ns,
            end_ns,
            drain_ns: end_ns + DRAIN.as_nanos() as u64,
        };
        debug_assert!(window.measure_from_ns <= window.end_ns && window.end_ns <= window.drain_ns);
        window
    }
}

/// Everything the worker threads of one run share.
pub struct Launch<'a> {
    pub args: &'a Args,
    pub settings: &'a Settings,
    pub setup: &'a TopicSetup,
    /// Marks this run's stamped values, so e2e ignores older records.
    pub run_id: u64,
    pub window: Window,
    pub clock: Clock,
    pub progress: Arc<Progress>,
    /// Set when e2e consumers have seen every produced record.
    pub stop: Arc<AtomicBool>,
}

pub struct Workers {
    producers: Vec<JoinHandle<WorkerResult>>,
    consumers: Vec<JoinHandle<WorkerResult>>,
}

impl Workers {
    /// Starts the mode's producers, then its consumers; thread `n` is
    /// pinned to the `n`-th core of `--cpus`.
    pub fn start(launch: &Launch) -> Result<Self> {
        let args = launch.args;
        let mut producers = Vec::new();
        if args.mode.sends() {
            for index in 0..args.producers {
                let plan = producer_plan(launch, index);
                let progress = launch.progress.clone();
                let clock = launch.clock;
                let work = move || producer::run(plan, clock, &progress);
                producers.push(spawn_pinned(launch, "producer", index, index, work)?);
            }
        }
        let mut consumers = Vec::new();
        if args.mode.fetches() {
            for index in 0..args.consumers {
                let plan = consumer_plan(launch, index);
                let (progress, stop) = (launch.progress.clone(), launch.stop.clone());
                let clock = launch.clock;
                let work = move || consumer::run(plan, clock, &progress, &stop);
                let slot = producers.len() + index;
                consumers.push(spawn_pinned(launch, "consumer", index, slot, work)?);
            }
        }
        Ok(Self {
            producers,
            consumers,
        })
    }

    pub fn threads(&self) -> usize {
        self.producers.len() + self.consumers.len()
    }

    pub fn producers_done(&self) -> bool {
        self.producers.iter().all(JoinHandle::is_finished)
    }

    pub fn all_done(&self) -> bool {
        self.producers_done() && self.consumers.iter().all(JoinHandle::is_finished)
    }

    /// (what the producers measured, what the consumers measured).
    pub fn join(self) -> Result<(WorkerResult, WorkerResult)> {
        Ok((
            join_all(self.producers, "producer")?,
            join_all(self.consumers, "consumer")?,
        ))
    }
}

fn producer_plan(launch: &Launch, index: usize) -> ProducerPlan {
    let (args, window) = (launch.args, launch.window);
    let rate = launch.settings.per_connection_rate;
    let batch_records = launch.settings.batch_records;
    let producers = args.producers as u64;
    // Split --records evenly; the first `n % producers` take one more.
    let records_limit = args
        .records
        .map(|n| n / producers + u64::from((index as u64) < n % producers));
    ProducerPlan {
        index,
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions: launch.setup.partitions.clone(),
        version: launch.setup.produce_version,
        acks: args.acks,
        timeout_ms: args.request_timeout_ms,
        in_flight: args.in_flight,
        batch_records,
        record_bytes: args.record_size,
        compression: args.compression.codec(),
        rate,
        phase_ns: rate.map_or(0, |r| {
            (batch_records as f64 / r * 1e9 * index as f64 / args.producers as f64) as u64
        }),
        stamp: args.mode == Mode::E2e || args.stamp,
        idempotent: args.idempotent || args.transactional_id.is_some(),
        transaction: args.transactional_id.as_ref().map(|prefix| TxnPlan {
            transactional_id: format!("{prefix}-{index}"),
            records: args.txn_records,
            abort_every: args.abort_every,
        }),
        run_id: launch.run_id,
        records_limit,
        start_ns: window.start_ns,
        measure_from_ns: window.measure_from_ns,
        end_ns: window.end_ns,
        drain_ns: window.drain_ns,
    }
}

fn consumer_plan(launch: &Launch, index: usize) -> ConsumerPlan {
    let (args, setup, window) = (launch.args, launch.setup, launch.window);
    // Partition p goes to consumer p % consumers.
    let offsets: Vec<(i32, i64)> = setup
        .partitions
        .iter()
        .filter(|p| **p as usize % args.consumers == index)
        .map(|p| (*p, setup.start_offsets.get(p).copied().unwrap_or(0)))
        .collect();
    ConsumerPlan {
        index,
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        offsets,
        end_offsets: setup.end_offsets.clone(),
        version: setup.fetch_version,
        max_wait_ms: args.fetch_wait_ms,
        partition_max_bytes: args.fetch_partition_bytes,
        max_bytes: args.fetch_max_bytes,
        isolation_level: args.isolation.level(),
        latency_run: match args.mode {
            Mode::E2e => Some(Some(launch.run_id)),
            _ => Some(None),
        },
        measure_from_ns: window.measure_from_ns,
        // e2e consumers are stopped by `stop` once all produced records arrived.
        end_ns: if args.mode == Mode::E2e {
            window.drain_ns
        } else {
            window.end_ns
        },
    }
}

/// Starts `work` on a thread named `{role}-{index}`, pinned to core slot
/// `slot`, once the window's start time has come.
fn spawn_pinned(
    launch: &Launch,
    role: &str,
    index: usize,
    slot: usize,
    work: impl FnOnce() -> WorkerResult + Send + 'static,
) -> Result<JoinHandle<WorkerResult>> {
    let cpus = launch.settings.cpus.clone();
    let (clock, start_ns) = (launch.clock, launch.window.start_ns);
    Ok(std::thread::Builder::new()
        .name(format!("{role}-{index}"))
        .spawn(move || {
            cpus::pin(&cpus, slot);
            clock.sleep_until(start_ns);
            work()
        })?)
}

fn join_all(handles: Vec<JoinHandle<WorkerResult>>, role: &str) -> Result<WorkerResult> {
    let mut total = WorkerResult::new();
    for handle in handles {
        total.merge(
            handle
                .join()
                .map_err(|_| anyhow!("{role} thread panicked"))?,
        );
    }
    Ok(total)
}
