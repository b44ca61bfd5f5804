//! The partition log against a plain in-memory model (`BTreeMap<offset, batch>`)
//! under random appends, rolls, clean and crash reopens, torn tails, retention
//! and DeleteRecords. Set STORAGE_MODEL_SEED=<u64> to replay a failing run; the
//! seed is printed on failure.

mod storage_support;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use ringlog::storage::{BatchCache, BatchHeader, Durability, LogConfig, Offset};
use storage_support::*;

/// Keeps the whole run well under a minute on two cores.
const CASES: u32 = 24;
const OPS_MAX: usize = 30;

#[derive(Clone, Debug)]
enum Op {
    Append {
        batches: u8,
        records: u8,
        value_bytes: u16,
        compressed: bool,
    },
    CleanReopen,
    CrashReopen,
    /// Crash, then cut this many bytes off the end of the active segment's data.
    TornTail {
        cut: u16,
    },
    RetainBytes {
        keep_fraction: u8,
    },
    DeleteRecords {
        fraction: u8,
    },
    Read {
        fraction: u8,
        max_bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..4, 1u8..6, 0u16..1500, any::<bool>())
            .prop_map(|(batches, records, value_bytes, compressed)| Op::Append { batches, records, value_bytes, compressed }),
        1 => Just(Op::CleanReopen),
        1 => Just(Op::CrashReopen),
        1 => (1u16..3000).prop_map(|cut| Op::TornTail { cut }),
        1 => (0u8..=100).prop_map(|keep_fraction| Op::RetainBytes { keep_fraction }),
        1 => (0u8..=100).prop_map(|fraction| Op::DeleteRecords { fraction }),
        3 => (0u8..=100, 1u16..20000).prop_map(|(fraction, max_bytes)| Op::Read { fraction, max_bytes }),
    ]
}

#[derive(Default)]
struct Model {
    /// base offset -> (last offset, bytes as sent)
    batches: BTreeMap<i64, (i64, Bytes)>,
    log_start_offset: i64,
    high_watermark: i64,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn check(cond: bool, what: String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what))
    }
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    run(move || async move {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cache = BatchCache::new(8 * 1024);
        let mut log = open(dir.path(), config(), &cache).await;
        let mut model = Model::default();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append {
                    batches,
                    records,
                    value_bytes,
                    compressed,
                } => {
                    let codec = if compressed {
                        Compression::Lz4
                    } else {
                        Compression::None
                    };
                    let mut payload = Vec::new();
                    let mut sent = Vec::new();
                    for b in 0..batches {
                        let batch = make_batch(
                            records as usize,
                            value_bytes as usize,
                            step as i64 * 10 + b as i64,
                            codec,
                        );
                        payload.extend_from_slice(&batch);
                        sent.push(batch);
                    }
                    let durability = if step % 2 == 0 {
                        Durability::Durable
                    } else {
                        Durability::Written
                    };
                    let info = log
                        .append(Bytes::from(payload), durability)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    check(
                        info.base_offset.get() == model.high_watermark,
                        format!(
                            "step {step}: base {} != {}",
                            info.base_offset, model.high_watermark
                        ),
                    )?;
                    let mut offset = info.base_offset.get();
                    for batch in sent {
                        let last = offset + records as i64 - 1;
                        model.batches.insert(offset, (last, batch));
                        offset = last + 1;
                    }
                    model.high_watermark = offset;
                }
                Op::CleanReopen => {
                    log.close()
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    drop(log);
                    log = open(dir.path(), config(), &cache).await;
                }
                Op::CrashReopen => {
                    // Everything acknowledged as written reached the file; dropping
                    // without close leaves the unclean state a crash would.
                    drop(log);
                    log = open(dir.path(), config(), &cache).await;
                }
                Op::TornTail { cut } => {
                    let sizes = log.segment_sizes();
                    let (active_base, active_bytes) = *sizes.last().expect("a segment");
                    let active_base = active_base.get();
                    drop(log);
                    let cut = (cut as u64).min(active_bytes);
                    let new_len = active_bytes - cut;
                    let path = dir.path().join(format!("{active_base:020}.log"));
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    f.set_len(new_len)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    // The model loses every batch of the active segment not wholly below the cut.
                    let mut end = 0u64;
                    let mut keep_until = active_base;
                    for (&base, (last, bytes)) in model.batches.range(active_base..) {
                        end += bytes.len() as u64;
                        if end > new_len {
                            break;
                        }
                        debug_assert!(base >= active_base);
                        keep_until = last + 1;
                    }
                    model.batches.retain(|&base, _| base < keep_until);
                    // A log that lost everything above its start offset starts
                    // again there (Kafka's LogLoader): offsets are never reused.
                    model.high_watermark = keep_until.max(model.log_start_offset);
                    log = open(dir.path(), config(), &cache).await;
                }
                Op::RetainBytes { keep_fraction } => {
                    let mut c = config();
                    c.retention_bytes = (log.size_bytes() * keep_fraction as u64 / 100) as i64;
                    log.set_config(c);
                    log.enforce_retention(0)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    log.set_config(config());
                    model.log_start_offset =
                        model.log_start_offset.max(log.log_start_offset().get());
                    check(
                        log.log_start_offset().get() == model.log_start_offset,
                        format!("step {step}: lso after retention"),
                    )?;
                    check(
                        log.segment_base_offsets()[0] == log.log_start_offset()
                            || log.segment_count() == 1
                            || log.log_start_offset() > log.segment_base_offsets()[0],
                        format!("step {step}: first segment"),
                    )?;
                }
                Op::DeleteRecords { fraction } => {
                    let span = model.high_watermark - model.log_start_offset;
                    let before = model.log_start_offset + span * fraction as i64 / 100;
                    let lso = log
                        .delete_records(Offset(before))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?
                        .get();
                    model.log_start_offset = model.log_start_offset.max(before);
                    check(
                        lso == model.log_start_offset,
                        format!(
                            "step {step}: delete_records gave {lso}, model {}",
                            model.log_start_offset
                        ),
                    )?;
                }
                Op::Read {
                    fraction,
                    max_bytes,
                } => {
                    let span = model.high_watermark - model.log_start_offset;
                    let from = model.log_start_offset + span * fraction as i64 / 100;
                    let result = log
                        .read(Offset(from), max_bytes as usize)
                        .await
                        .map_err(|e| {
                            TestCaseError::fail(format!("step {step}: read {from}: {e}"))
                        })?;
                    if from == model.high_watermark {
                        check(
                            result.batches.is_empty(),
                            format!("step {step}: read at hw not empty"),
                        )?;
                    } else {
                        check(
                            !result.batches.is_empty(),
                            format!("step {step}: empty read at {from}"),
                        )?;
                        let (&first_base, _) = model
                            .batches
                            .range(..=from)
                            .next_back()
                            .expect("model has the batch");
                        let mut expected = model.batches.range(first_base..);
                        let mut total = 0;
                        for (i, stored) in result.batches.iter().enumerate() {
                            let (&base, (last, sent)) = expected.next().expect("model has more");
                            let h = BatchHeader::parse(stored)
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            check(
                                h.base_offset == base && h.last_offset() == *last,
                                format!(
                                    "step {step}: batch {i} offsets {} != {base}",
                                    h.base_offset
                                ),
                            )?;
                            check(
                                same_except_assigned(stored, sent),
                                format!("step {step}: batch at {base} differs"),
                            )?;
                            total += stored.len();
                            check(
                                i == 0 || total <= max_bytes as usize,
                                format!("step {step}: read over max_bytes"),
                            )?;
                        }
                    }
                }
            }
            check(
                log.high_watermark().get() == model.high_watermark,
                format!(
                    "step {step} ({:?}): hw {} != model {}",
                    "op",
                    log.high_watermark(),
                    model.high_watermark
                ),
            )?;
            check(
                log.log_start_offset().get() == model.log_start_offset,
                format!(
                    "step {step}: lso {} != model {}",
                    log.log_start_offset(),
                    model.log_start_offset
                ),
            )?;
        }
        // Finally everything the model holds reads back.
        let stored = read_all(&log, model.log_start_offset).await;
        let expected: Vec<_> = model
            .batches
            .range(..)
            .filter(|(_, (last, _))| *last >= model.log_start_offset)
            .collect();
        check(
            stored.len() == expected.len(),
            format!("final: {} batches, model {}", stored.len(), expected.len()),
        )?;
        for (s, (_, (_, sent))) in stored.iter().zip(expected) {
            check(same_except_assigned(s, sent), "final: batch differs".into())?;
        }
        log.close()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        Ok(())
    })
}

#[test]
fn log_matches_an_in_memory_model() {
    let seed = model_seed("STORAGE_MODEL_SEED");
    let mut runner = seeded_runner(seed, CASES);
    let result = runner.run(&proptest::collection::vec(op(), 1..OPS_MAX), run_case);
    if let Err(e) = result {
        panic!("model test failed; replay with STORAGE_MODEL_SEED={seed}\n{e}");
    }
}
