//! One consumer connection: long-poll Fetch over its partitions, count
//! records and, when values are stamped, measure end-to-end latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, ensure, Result};
use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::records::RecordBatchDecoder;

use ringlog::client::decode_response;

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
    let mut conn = wire::connect(&plan.bootstrap)?;
    let topic = wire::topic_name(&plan.topic);
    let mut offsets = plan.offsets.clone();
    let mut request_buf = BytesMut::new();
    loop {
        if stop.load(Ordering::Relaxed) || clock.now_ns() >= plan.end_ns {
            break;
        }
        if let Some(end) = &plan.end_offsets {
            if caught_up(&offsets, end) {
                break;
            }
        }
        let request = wire::fetch_request(
            &topic,
            &offsets,
            plan.max_wait_ms,
            plan.partition_max_bytes,
            plan.max_bytes,
        );
        request_buf.clear();
        let correlation_id = conn.encode(&mut request_buf, &request, plan.version)?;
        conn.write_all(&request_buf)?;
        let frame = conn.read_frame()?;
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
        let measured = received_ns >= plan.measure_from_ns;
        for t in &response.responses {
            for p in &t.partitions {
                let Some(slot) = offsets
                    .iter_mut()
                    .find(|(partition, _)| *partition == p.partition_index)
                else {
                    continue;
                };
                if p.error_code == wire::ERROR_OFFSET_OUT_OF_RANGE && p.log_start_offset > slot.1 {
                    slot.1 = p.log_start_offset;
                    continue;
                }
                if p.error_code != wire::ERROR_NONE {
                    Progress::add(&progress.errors, 1);
                    result.error(format!(
                        "fetch partition {}: error {}",
                        p.partition_index, p.error_code
                    ));
                    continue;
                }
                let Some(records) = &p.records else { continue };
                let mut at = 0;
                while at < records.len() {
                    let Some(view) = batch::complete_batch(&records[at..])? else {
                        break;
                    };
                    let total_bytes = view.total_bytes();
                    let last_offset = view.last_offset();
                    let bytes = &records[at..at + total_bytes];
                    let from = slot.1;
                    at += total_bytes;
                    if last_offset < from {
                        continue;
                    }
                    // A batch may start before the fetch offset; count only the rest.
                    let counted = if view.base_offset >= from {
                        view.record_count as u64
                    } else {
                        (last_offset - from + 1) as u64
                    };
                    slot.1 = last_offset + 1;
                    Progress::add(&progress.consumed_records, counted);
                    Progress::add(&progress.consumed_bytes, total_bytes as u64);
                    if !measured {
                        continue;
                    }
                    result.records += counted;
                    result.bytes += total_bytes as u64;
                    result.last_ns = received_ns;
                    let Some(run_id) = plan.latency_run else {
                        continue;
                    };
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
                        let mut b = records.slice(at - total_bytes..at);
                        let set = RecordBatchDecoder::decode(&mut b)?;
                        for r in &set.records {
                            if let Some(v) = &r.value {
                                record(r.offset, v);
                            }
                        }
                    } else {
                        batch::for_each_value(bytes, |delta, value| {
                            record(view.base_offset + delta, value)
                        })?;
                    }
                }
            }
        }
        if offsets.iter().any(|(_, o)| *o < 0) {
            bail!("negative fetch offset");
        }
    }
    Ok(())
}
