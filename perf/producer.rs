//! One producer connection: open-loop (or max-rate) batches, pipelined.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::records::Compression;

use ringlog::client::{decode_response, Connection};

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
    /// Send as an idempotent producer (`--idempotent`).
    pub idempotent: bool,
    /// `--transactional-id`: send as this transactional producer.
    pub transaction: Option<TxnPlan>,
    pub run_id: u64,
    pub records_limit: Option<u64>,
    pub start_ns: u64,
    pub measure_from_ns: u64,
    pub end_ns: u64,
    pub drain_ns: u64,
}

/// A transactional producer's plan: its id and the records per transaction.
#[derive(Clone)]
pub struct TxnPlan {
    pub transactional_id: String,
    pub records: u64,
    /// `--abort-every`: every this many-th transaction ends with an abort.
    pub abort_every: Option<u64>,
}

/// The open transaction of a transactional producer.
struct Txn {
    plan: TxnPlan,
    producer: (i64, i16),
    open: bool,
    /// Records sent in the open transaction.
    records: u64,
    /// Transactions ended so far.
    ended: u64,
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
    let mut producer = Producer::connect(plan, clock, progress, result)?;
    loop {
        producer.send_due_batches()?;
        if producer.draining {
            if producer.inflight.is_empty() {
                break;
            }
            if clock.now_ns() >= plan.drain_ns {
                let unanswered = producer.inflight.len();
                producer.result.error(format!(
                    "producer {}: {unanswered} requests unanswered at the end",
                    plan.index
                ));
                break;
            }
        }
        producer.wait_for_acks_or_next_due()?;
    }
    Ok(())
}

/// When each record is due under the open-loop schedule.
#[derive(Clone, Copy)]
struct RecordSchedule {
    /// The schedule's origin: the run's start plus this connection's phase.
    origin_ns: u64,
    /// None: max rate, batches are due as soon as they can be sent.
    record_interval_ns: Option<f64>,
}

impl RecordSchedule {
    fn is_open_loop(self) -> bool {
        self.record_interval_ns.is_some()
    }

    /// Due time of record `n` (counted from 0 over this connection); 0 at max rate.
    fn due_of_record(self, n: u64) -> u64 {
        match self.record_interval_ns {
            Some(iv) => self.origin_ns + ((n + 1) as f64 * iv) as u64,
            None => 0,
        }
    }
}

/// The batch sent each time: pre-encoded and patched, or (compressed)
/// re-encoded per stamped send.
struct Payload {
    template: BatchTemplate,
    frame: ProduceTemplate,
    compressed: bool,
    run_id: Option<u64>,
    /// Record-batch bytes per send, counted as produced bytes.
    batch_wire_bytes: u64,
}

impl Payload {
    fn build(plan: &ProducerPlan, clock: Clock) -> Result<Self> {
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
        let transactional_id = plan
            .transaction
            .as_ref()
            .map(|t| t.transactional_id.as_str());
        let mut frame = ProduceTemplate::for_producer(
            &plan.topic,
            first,
            plan.acks,
            plan.timeout_ms,
            plan.version,
            transactional_id,
        )?;
        if transactional_id.is_some() {
            // The sequencer rewrites the CRC before every send.
            batch::set_transactional(frame.batch_mut());
        }
        let batch_wire_bytes = frame.batch_len as u64;
        Ok(Self {
            template,
            frame,
            compressed,
            run_id,
            batch_wire_bytes,
        })
    }
}

struct Producer<'a> {
    plan: &'a ProducerPlan,
    clock: Clock,
    progress: &'a Progress,
    result: &'a mut WorkerResult,
    conn: Connection,
    payload: Payload,
    schedule: RecordSchedule,
    records_per_batch: u64,
    inflight: VecDeque<InFlight>,
    /// `--idempotent`: the producer id and each partition's next sequence.
    sequencer: Option<batch::Sequencer>,
    /// `--transactional-id`: the producer's transaction.
    txn: Option<Txn>,
    batches_sent: u64,
    /// Set once the run's end, or the records limit, is reached: nothing
    /// more is sent, outstanding acks are awaited until `drain_ns`.
    draining: bool,
}

impl<'a> Producer<'a> {
    fn connect(
        plan: &'a ProducerPlan,
        clock: Clock,
        progress: &'a Progress,
        result: &'a mut WorkerResult,
    ) -> Result<Self> {
        let mut conn = wire::connect(&plan.bootstrap)?;
        let payload = Payload::build(plan, clock)?;
        let txn = match &plan.transaction {
            Some(txn_plan) => Some(Txn {
                producer: wire::init_transactional(&mut conn, &txn_plan.transactional_id)?,
                plan: txn_plan.clone(),
                open: false,
                records: 0,
                ended: 0,
            }),
            None => None,
        };
        let sequencer = if plan.idempotent {
            let (producer_id, epoch) = match &txn {
                Some(txn) => txn.producer,
                None => wire::init_producer_id(&mut conn)?,
            };
            Some(batch::Sequencer::new(
                producer_id,
                epoch,
                plan.partitions.len(),
            ))
        } else {
            None
        };
        Ok(Self {
            plan,
            clock,
            progress,
            result,
            conn,
            payload,
            schedule: RecordSchedule {
                origin_ns: plan.start_ns + plan.phase_ns,
                record_interval_ns: plan.rate.map(|r| 1e9 / r),
            },
            records_per_batch: plan.batch_records as u64,
            inflight: VecDeque::with_capacity(plan.in_flight),
            sequencer,
            txn,
            batches_sent: 0,
            draining: false,
        })
    }

    fn records_limit_reached(&self) -> bool {
        let sent = self.batches_sent * self.records_per_batch;
        self.plan.records_limit.is_some_and(|l| sent >= l)
    }

    /// Sends every batch that is due, as far as the in-flight limit allows.
    fn send_due_batches(&mut self) -> Result<()> {
        let plan = self.plan;
        if !self.draining && (self.clock.now_ns() >= plan.end_ns || self.records_limit_reached()) {
            self.draining = true;
        }
        while !self.draining && (plan.acks == 0 || self.inflight.len() < plan.in_flight) {
            if self.records_limit_reached() {
                self.draining = true;
                break;
            }
            let first_record = self.batches_sent * self.records_per_batch;
            // Open loop: a batch is due when its last record is due.
            let intended_ns = if self.schedule.is_open_loop() {
                self.schedule
                    .due_of_record(first_record + self.records_per_batch - 1)
            } else {
                self.clock.now_ns()
            };
            if intended_ns > self.clock.now_ns() {
                break;
            }
            if intended_ns >= plan.end_ns {
                self.draining = true;
                break;
            }
            if !self.transaction_ready()? {
                break;
            }
            self.send_batch(first_record, intended_ns)?;
        }
        if self.draining && self.inflight.is_empty() {
            self.commit_if_open()?;
        }
        Ok(())
    }

    /// `--transactional-id`: whether the next batch may go out now. A full
    /// transaction is committed once its batches are acknowledged; a new
    /// one adds the producer's partitions first.
    fn transaction_ready(&mut self) -> Result<bool> {
        let Some(txn) = &self.txn else {
            return Ok(true);
        };
        if txn.open && txn.records >= txn.plan.records {
            if !self.inflight.is_empty() {
                return Ok(false);
            }
            self.commit_if_open()?;
        }
        let plan = self.plan;
        if let Some(txn) = &mut self.txn {
            if !txn.open {
                wire::add_partitions_to_txn(
                    &mut self.conn,
                    &txn.plan.transactional_id,
                    txn.producer,
                    &plan.topic,
                    &plan.partitions,
                )?;
                txn.open = true;
                txn.records = 0;
            }
            txn.records += self.records_per_batch;
        }
        Ok(true)
    }

    /// Commits the open transaction (every batch of it acknowledged) and
    /// counts the commit's latency.
    fn commit_if_open(&mut self) -> Result<()> {
        let Some(txn) = self.txn.as_mut().filter(|t| t.open) else {
            return Ok(());
        };
        debug_assert!(self.inflight.is_empty());
        let started = self.clock.now_ns();
        txn.ended += 1;
        let commit = txn
            .plan
            .abort_every
            .is_none_or(|k| !txn.ended.is_multiple_of(k));
        wire::end_txn(
            &mut self.conn,
            &txn.plan.transactional_id,
            txn.producer,
            commit,
        )?;
        let done = self.clock.now_ns();
        txn.open = false;
        if started >= self.plan.measure_from_ns {
            self.result.commits += 1;
            let _ = self
                .result
                .commit_latency_ns
                .record(done.saturating_sub(started).max(1));
        }
        Ok(())
    }

    fn send_batch(&mut self, first_record: u64, intended_ns: u64) -> Result<()> {
        let plan = self.plan;
        let slot = (self.batches_sent as usize + plan.index) % plan.partitions.len();
        let partition = plan.partitions[slot];
        let correlation_id = self.conn.next_correlation_id();
        if plan.stamp {
            self.stamp_batch(first_record, intended_ns)?;
        }
        if let Some(sequencer) = &mut self.sequencer {
            // After stamping, which may re-encode the batch.
            sequencer.set_next(self.payload.frame.batch_mut(), slot);
        }
        self.payload.frame.set_ids(correlation_id, partition);
        self.conn.write_all(&self.payload.frame.frame)?;
        self.batches_sent += 1;
        if plan.acks == 0 {
            // No ack will come: the send itself is what is measured.
            let sent_ns = self.clock.now_ns();
            self.count_delivered(self.records_per_batch, intended_ns, sent_ns);
        } else {
            self.inflight.push_back(InFlight {
                correlation_id,
                intended_ns,
                records: self.records_per_batch,
            });
        }
        Ok(())
    }

    /// Writes each record's due time into the batch: patched in place, or
    /// re-encoded when compressed (a compressed batch cannot be patched).
    fn stamp_batch(&mut self, first_record: u64, intended_ns: u64) -> Result<()> {
        let plan = self.plan;
        let schedule = self.schedule;
        let timestamp_ms = (intended_ns / 1_000_000) as i64;
        let due = |i: usize| {
            if schedule.is_open_loop() {
                schedule.due_of_record(first_record + i as u64)
            } else {
                intended_ns
            }
        };
        let payload = &mut self.payload;
        if payload.compressed {
            let records = batch::encode_batch(
                plan.batch_records,
                plan.record_bytes,
                plan.compression,
                timestamp_ms,
                payload.run_id,
                due,
            )?;
            payload.frame = ProduceTemplate::for_producer(
                &plan.topic,
                records,
                plan.acks,
                plan.timeout_ms,
                plan.version,
                plan.transaction
                    .as_ref()
                    .map(|t| t.transactional_id.as_str()),
            )?;
            if plan.transaction.is_some() {
                batch::set_transactional(payload.frame.batch_mut());
            }
        } else {
            batch::stamp(
                payload.frame.batch_mut(),
                &payload.template.value_positions,
                timestamp_ms,
                due,
            );
        }
        Ok(())
    }

    /// Waits for acks, but no longer than until the next batch is due.
    fn wait_for_acks_or_next_due(&mut self) -> Result<()> {
        let plan = self.plan;
        let now = self.clock.now_ns();
        let next_due = self
            .schedule
            .due_of_record((self.batches_sent + 1) * self.records_per_batch - 1);
        if self.inflight.is_empty() {
            // acks=0 or nothing outstanding: wait for the next due batch.
            if self.schedule.is_open_loop() {
                self.clock.sleep_until(next_due.min(plan.end_ns));
            }
            return Ok(());
        }
        let can_send =
            !self.draining && self.inflight.len() < plan.in_flight && self.schedule.is_open_loop();
        let wait = if can_send {
            Duration::from_nanos(next_due.saturating_sub(now)).min(POLL_SLICE)
        } else {
            POLL_SLICE
        };
        if !self.conn.poll_readable(wait)? {
            return Ok(());
        }
        self.conn.fill()?;
        self.read_acks()
    }

    /// Matches every complete response to the oldest request in flight.
    fn read_acks(&mut self) -> Result<()> {
        while let Some(response) = self.conn.next_frame()? {
            let acked_at = self.clock.now_ns();
            let Some(sent) = self.inflight.pop_front() else {
                anyhow::bail!("response without a request in flight");
            };
            let (correlation_id, decoded) =
                decode_response::<ProduceRequest>(response, self.plan.version)?;
            ensure!(
                correlation_id == sent.correlation_id,
                "correlation id {correlation_id}, expected {}",
                sent.correlation_id
            );
            if self.count_partition_errors(&decoded) == 0 {
                self.count_delivered(sent.records, sent.intended_ns, acked_at);
            }
        }
        Ok(())
    }

    /// Counts (and reports) every partition that answered with an error.
    fn count_partition_errors(&mut self, response: &ProduceResponse) -> usize {
        let mut failed = 0;
        for topic in &response.responses {
            for p in &topic.partition_responses {
                if p.error_code != wire::ERROR_NONE {
                    failed += 1;
                    Progress::add(&self.progress.errors, 1);
                    self.result.error(format!(
                        "produce partition {}: error {}",
                        p.index, p.error_code
                    ));
                }
            }
        }
        failed
    }

    /// Counts a batch as produced; inside the measurement window also its
    /// latency from when it was due to `done_ns` (sent or acked).
    fn count_delivered(&mut self, records: u64, intended_ns: u64, done_ns: u64) {
        let batch_wire_bytes = self.payload.batch_wire_bytes;
        Progress::add(&self.progress.produced_records, records);
        Progress::add(&self.progress.produced_bytes, batch_wire_bytes);
        if intended_ns >= self.plan.measure_from_ns {
            let result = &mut *self.result;
            result.records += records;
            result.bytes += batch_wire_bytes;
            result.last_ns = done_ns;
            let _ = result
                .latency_ns
                .record(done_ns.saturating_sub(intended_ns).max(1));
        }
    }
}
