//! One consumer connection: long-poll Fetch over its partitions, count
//! records and, when values are stamped, measure end-to-end latency.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, ensure, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};
use kafka_protocol::messages::TopicName;
use kafka_protocol::records::RecordBatchDecoder;

use ringlog::client::{decode_response, Connection};
use ringlog::storage::batch::BatchHeader;

use crate::batch;
use crate::stats::{Clock, Progress, WorkerResult};
use crate::wire;

#[derive(Clone)]
pub struct ConsumerPlan {
    pub index: usize,
    pub bootstrap: String,
    pub topic: String,
    /// (partition, first offset to read).
    pub offsets: Vec<(i32, i64)>,
    /// Stop once every partition reached these offsets (catch-up runs).
    pub end_offsets: Option<HashMap<i32, i64>>,
    pub version: i16,
    pub max_wait_ms: i32,
    pub partition_max_bytes: i32,
    pub max_bytes: i32,
    /// Kafka's `isolation_level` (1: read_committed).
    pub isolation_level: i8,
    /// None: no latency. Some(None): any stamped value. Some(Some(id)): this run only.
    pub latency_run: Option<Option<u64>>,
    pub measure_from_ns: u64,
    pub end_ns: u64,
}

pub fn run(
    plan: ConsumerPlan,
    clock: Clock,
    progress: &Progress,
    stop: &AtomicBool,
) -> WorkerResult {
    let mut result = WorkerResult::new();
    if let Err(e) = run_inner(&plan, clock, progress, stop, &mut result) {
        result.error(format!("consumer {}: {e:#}", plan.index));
        Progress::add(&progress.errors, 1);
    }
    result
}

fn caught_up(offsets: &[(i32, i64)], end: &HashMap<i32, i64>) -> bool {
    offsets
        .iter()
        .all(|(p, o)| end.get(p).is_none_or(|e| o >= e))
}

fn run_inner(
    plan: &ConsumerPlan,
    clock: Clock,
    progress: &Progress,
    stop: &AtomicBool,
    result: &mut WorkerResult,
) -> Result<()> {
    if plan.offsets.is_empty() {
        return Ok(());
    }
    let mut consumer = Consumer {
        plan,
        progress,
        result,
        conn: wire::connect(&plan.bootstrap)?,
        topic: wire::topic_name(&plan.topic),
        offsets: plan.offsets.clone(),
        request_buf: BytesMut::new(),
    };
    while !stop.load(Ordering::Relaxed) && clock.now_ns() < plan.end_ns {
        if let Some(end) = &plan.end_offsets {
            if caught_up(&consumer.offsets, end) {
                break;
            }
        }
        let (response, received_ns) = consumer.fetch(clock)?;
        consumer.take_response(&response, received_ns)?;
        if consumer.offsets.iter().any(|(_, o)| *o < 0) {
            bail!("negative fetch offset");
        }
    }
    Ok(())
}

struct Consumer<'a> {
    plan: &'a ConsumerPlan,
    progress: &'a Progress,
    result: &'a mut WorkerResult,
    conn: Connection,
    topic: TopicName,
    /// (partition, next offset to read).
    offsets: Vec<(i32, i64)>,
    request_buf: BytesMut,
}

impl Consumer<'_> {
    /// One long-poll Fetch from every partition's next offset; the response
    /// with when it arrived (before decoding, which is not latency).
    fn fetch(&mut self, clock: Clock) -> Result<(FetchResponse, u64)> {
        let plan = self.plan;
        let request = wire::fetch_request(
            &self.topic,
            &self.offsets,
            plan.max_wait_ms,
            plan.partition_max_bytes,
            plan.max_bytes,
            plan.isolation_level,
        );
        self.request_buf.clear();
        let correlation_id = self
            .conn
            .encode(&mut self.request_buf, &request, plan.version)?;
        self.conn.write_all(&self.request_buf)?;
        let frame = self.conn.read_frame()?;
        let received_ns = clock.now_ns();
        let (got, response) = decode_response::<FetchRequest>(frame, plan.version)?;
        ensure!(
            got == correlation_id,
            "correlation id {got}, expected {correlation_id}"
        );
        ensure!(
            response.error_code == wire::ERROR_NONE,
            "fetch failed with error {}",
            response.error_code
        );
        Ok((response, received_ns))
    }

    fn take_response(&mut self, response: &FetchResponse, received_ns: u64) -> Result<()> {
        for t in &response.responses {
            for p in &t.partitions {
                self.take_partition(p, received_ns)?;
            }
        }
        Ok(())
    }

    /// Moves the partition's offset past what it returned and counts it.
    fn take_partition(&mut self, p: &PartitionData, received_ns: u64) -> Result<()> {
        let Some(slot) = self
            .offsets
            .iter()
            .position(|(partition, _)| *partition == p.partition_index)
        else {
            return Ok(());
        };
        // Retention moved the log start past us: continue from there.
        if p.error_code == wire::ERROR_OFFSET_OUT_OF_RANGE
            && p.log_start_offset > self.offsets[slot].1
        {
            self.offsets[slot].1 = p.log_start_offset;
            return Ok(());
        }
        if p.error_code != wire::ERROR_NONE {
            Progress::add(&self.progress.errors, 1);
            self.result.error(format!(
                "fetch partition {}: error {}",
                p.partition_index, p.error_code
            ));
            return Ok(());
        }
        let Some(records) = &p.records else {
            return Ok(());
        };
        let mut at = 0;
        while at < records.len() {
            let Some(view) = batch::complete_batch(&records[at..])? else {
                break;
            };
            let batch_bytes = at..at + view.total_bytes();
            at = batch_bytes.end;
            self.take_batch(slot, records, batch_bytes, &view, received_ns)?;
        }
        Ok(())
    }

    /// Counts the records of one batch at or after the partition's offset.
    fn take_batch(
        &mut self,
        slot: usize,
        records: &Bytes,
        batch_bytes: Range<usize>,
        view: &BatchHeader,
        received_ns: u64,
    ) -> Result<()> {
        let from = self.offsets[slot].1;
        let last_offset = view.last_offset();
        if last_offset < from {
            return Ok(());
        }
        // A batch may start before the fetch offset; count only the rest.
        let counted = if view.base_offset >= from {
            view.record_count as u64
        } else {
            (last_offset - from + 1) as u64
        };
        self.offsets[slot].1 = last_offset + 1;
        let total_bytes = batch_bytes.len() as u64;
        Progress::add(&self.progress.consumed_records, counted);
        Progress::add(&self.progress.consumed_bytes, total_bytes);
        if received_ns < self.plan.measure_from_ns {
            return Ok(());
        }
        self.result.records += counted;
        self.result.bytes += total_bytes;
        self.result.last_ns = received_ns;
        let Some(run_id) = self.plan.latency_run else {
            return Ok(());
        };
        let batch = records.slice(batch_bytes);
        record_latencies(self.result, &batch, view, from, run_id, received_ns)
    }
}

/// Records due → received for every stamped value at or after `from`.
fn record_latencies(
    result: &mut WorkerResult,
    batch: &Bytes,
    view: &BatchHeader,
    from: i64,
    run_id: Option<u64>,
    received_ns: u64,
) -> Result<()> {
    let mut record = |offset: i64, value: &[u8]| {
        if offset < from {
            return;
        }
        if let Some(due) = batch::stamped_due_ns(value, run_id) {
            let _ = result
                .latency_ns
                .record(received_ns.saturating_sub(due).max(1));
        }
    };
    if view.compression_code() != 0 {
        let set = RecordBatchDecoder::decode(&mut batch.clone())?;
        for r in &set.records {
            if let Some(v) = &r.value {
                record(r.offset, v);
            }
        }
    } else {
        batch::for_each_value(batch, |delta, value| {
            record(view.base_offset + delta, value)
        })?;
    }
    Ok(())
}
