//! One producer connection: open-loop (or max-rate) batches, pipelined.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::records::Compression;

use ringlog::client::decode_response;

use crate::batch::{self, BatchTemplate};
use crate::stats::{Clock, Progress, WorkerResult};
use crate::wire::{self, ProduceTemplate};

/// Longest single wait for responses, so the end of the run is noticed.
const POLL_SLICE: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct ProducerPlan {
    pub index: usize,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    pub version: i16,
    pub acks: i16,
    pub timeout_ms: i32,
    pub in_flight: usize,
    pub batch_records: usize,
    pub record_bytes: usize,
    pub compression: Compression,
    /// Records per second for this connection; None = as fast as acks allow.
    pub rate: Option<f64>,
    /// Offset of this connection's schedule, so connections do not send in lockstep.
    pub phase_ns: u64,
    /// Write due times into values (e2e, or `--stamp`).
    pub stamp: bool,
    pub run_id: u64,
    pub records_limit: Option<u64>,
    pub start_ns: u64,
    pub measure_from_ns: u64,
    pub end_ns: u64,
    pub drain_ns: u64,
}

struct InFlight {
    correlation_id: i32,
    intended_ns: u64,
    records: u64,
}

pub fn run(plan: ProducerPlan, clock: Clock, progress: &Progress) -> WorkerResult {
    let mut result = WorkerResult::new();
    if let Err(e) = run_inner(&plan, clock, progress, &mut result) {
        result.error(format!("producer {}: {e:#}", plan.index));
        Progress::add(&progress.errors, 1);
    }
    result
}

fn run_inner(
    plan: &ProducerPlan,
    clock: Clock,
    progress: &Progress,
    result: &mut WorkerResult,
) -> Result<()> {
    ensure!(!plan.partitions.is_empty(), "no partitions");
    let mut conn = wire::connect(&plan.bootstrap)?;
    let now_ms = (clock.now_ns() / 1_000_000) as i64;
    let run_id = plan.stamp.then_some(plan.run_id);
    let compressed = plan.compression != Compression::None;
    let template = BatchTemplate::build(plan.batch_records, plan.record_bytes, run_id, now_ms)?;
    let first = if compressed {
        batch::encode_batch(
            plan.batch_records,
            plan.record_bytes,
            plan.compression,
            now_ms,
            run_id,
            |_| clock.now_ns(),
        )?
    } else {
        Bytes::from(template.bytes.clone())
    };
    let mut frame =
        ProduceTemplate::new(&plan.topic, first, plan.acks, plan.timeout_ms, plan.version)?;
    let batch_wire_bytes = frame.batch_len as u64;

    let record_interval_ns = plan.rate.map(|r| 1e9 / r);
    let due_of_record = |n: u64| -> u64 {
        match record_interval_ns {
            Some(iv) => plan.start_ns + plan.phase_ns + ((n + 1) as f64 * iv) as u64,
            None => 0,
        }
    };
    let records_per_batch = plan.batch_records as u64;
    let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(plan.in_flight);
    let mut batches_sent: u64 = 0;
    let mut draining = false;

    loop {
        let now = clock.now_ns();
        let limit_reached = plan
            .records_limit
            .is_some_and(|l| batches_sent * records_per_batch >= l);
        if !draining && (now >= plan.end_ns || limit_reached) {
            draining = true;
        }
        // Send every batch that is due, as far as the in-flight limit allows.
        while !draining && (plan.acks == 0 || inflight.len() < plan.in_flight) {
            if plan
                .records_limit
                .is_some_and(|l| batches_sent * records_per_batch >= l)
            {
                draining = true;
                break;
            }
            let first_record = batches_sent * records_per_batch;
            // Open loop: a batch is due when its last record is due.
            let intended = if record_interval_ns.is_some() {
                due_of_record(first_record + records_per_batch - 1)
            } else {
                clock.now_ns()
            };
            if intended > clock.now_ns() {
                break;
            }
            if intended >= plan.end_ns {
                draining = true;
                break;
            }
            let partition =
                plan.partitions[(batches_sent as usize + plan.index) % plan.partitions.len()];
            let correlation_id = conn.next_correlation_id();
            let timestamp_ms = (intended / 1_000_000) as i64;
            if plan.stamp {
                let due = |i: usize| {
                    if record_interval_ns.is_some() {
                        due_of_record(first_record + i as u64)
                    } else {
                        intended
                    }
                };
                if compressed {
                    let records = batch::encode_batch(
                        plan.batch_records,
                        plan.record_bytes,
                        plan.compression,
                        timestamp_ms,
                        run_id,
                        due,
                    )?;
                    frame = ProduceTemplate::new(
                        &plan.topic,
                        records,
                        plan.acks,
                        plan.timeout_ms,
                        plan.version,
                    )?;
                } else {
                    batch::stamp(
                        frame.batch_mut(),
                        &template.value_positions,
                        timestamp_ms,
                        due,
                    );
                }
            }
            frame.set_ids(correlation_id, partition);
            conn.write_all(&frame.frame)?;
            batches_sent += 1;
            if plan.acks == 0 {
                let sent = clock.now_ns();
                Progress::add(&progress.produced_records, records_per_batch);
                Progress::add(&progress.produced_bytes, batch_wire_bytes);
                if intended >= plan.measure_from_ns {
                    result.records += records_per_batch;
                    result.bytes += batch_wire_bytes;
                    result.last_ns = sent;
                    let _ = result
                        .latency_ns
                        .record(sent.saturating_sub(intended).max(1));
                }
            } else {
                inflight.push_back(InFlight {
                    correlation_id,
                    intended_ns: intended,
                    records: records_per_batch,
                });
            }
        }
        if draining && inflight.is_empty() {
            break;
        }
        let now = clock.now_ns();
        if draining && now >= plan.drain_ns {
            result.error(format!(
                "producer {}: {} requests unanswered at the end",
                plan.index,
                inflight.len()
            ));
            break;
        }
        let next_due = due_of_record((batches_sent + 1) * records_per_batch - 1);
        if inflight.is_empty() {
            // acks=0 or nothing outstanding: wait for the next due batch.
            if record_interval_ns.is_some() {
                clock.sleep_until(next_due.min(plan.end_ns));
            }
            continue;
        }
        let can_send = !draining && inflight.len() < plan.in_flight && record_interval_ns.is_some();
        let wait = if can_send {
            Duration::from_nanos(next_due.saturating_sub(now)).min(POLL_SLICE)
        } else {
            POLL_SLICE
        };
        if !conn.poll_readable(wait)? {
            continue;
        }
        conn.fill()?;
        while let Some(response) = conn.next_frame()? {
            let acked_at = clock.now_ns();
            let Some(sent) = inflight.pop_front() else {
                anyhow::bail!("response without a request in flight");
            };
            let (correlation_id, decoded) =
                decode_response::<ProduceRequest>(response, plan.version)?;
            ensure!(
                correlation_id == sent.correlation_id,
                "correlation id {correlation_id}, expected {}",
                sent.correlation_id
            );
            let mut ok = true;
            for topic in &decoded.responses {
                for p in &topic.partition_responses {
                    if p.error_code != wire::ERROR_NONE {
                        ok = false;
                        Progress::add(&progress.errors, 1);
                        result.error(format!(
                            "produce partition {}: error {}",
                            p.index, p.error_code
                        ));
                    }
                }
            }
            if !ok {
                continue;
            }
            Progress::add(&progress.produced_records, sent.records);
            Progress::add(&progress.produced_bytes, batch_wire_bytes);
            if sent.intended_ns >= plan.measure_from_ns {
                result.records += sent.records;
                result.bytes += batch_wire_bytes;
                result.last_ns = acked_at;
                let _ = result
                    .latency_ns
                    .record(acked_at.saturating_sub(sent.intended_ns).max(1));
            }
        }
    }
    Ok(())
}
