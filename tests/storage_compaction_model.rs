//! Log compaction against a model: random keyed appends, updates and
//! tombstones, segment rolls, cleanings, crash reopens (some with a cleaning's
//! leftover `.cleaned` / `.swap` files) compared with a `BTreeMap` of each
//! key's latest record. Set COMPACTION_MODEL_SEED=<u64> to replay a run; the
//! seed is printed when it fails.

mod storage_support;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use ringlog::client::{BatchBuilder, BatchOptions};
use ringlog::storage::cleaner::Cleaner;
use ringlog::storage::{BatchCache, CleanupPolicy, Durability, LogConfig, Offset, PartitionLog};
use storage_support::*;

const CASES: u32 = 16;
const OPS_MAX: usize = 40;
const KEYS: u8 = 12;
/// delete.retention.ms, in the model's clock (one tick per step).
const DELETE_RETENTION_MS: i64 = 8;

#[derive(Clone, Debug)]
enum Op {
    /// One batch; each record is (key, value size or tombstone).
    Append {
        records: Vec<(u8, Option<u16>)>,
        compressed: bool,
    },
    Clean,
    CrashReopen,
    /// Crash with a committed `.swap` of the oldest segment and an
    /// unfinished `.cleaned` file beside the segments.
    CrashWithLeftovers,
    CleanReopen,
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        0..KEYS,
        prop_oneof![4 => (1u16..600).prop_map(Some), 1 => Just(None)],
    );
    prop_oneof![
        8 => (proptest::collection::vec(record, 1..6), any::<bool>())
            .prop_map(|(records, compressed)| Op::Append { records, compressed }),
        3 => Just(Op::Clean),
        1 => Just(Op::CrashReopen),
        1 => Just(Op::CrashWithLeftovers),
        1 => Just(Op::CleanReopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        delete_retention_ms: DELETE_RETENTION_MS,
        ..LogConfig::default()
    }
}

fn fail(what: impl ToString) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(fail(what()))
    }
}

/// The latest record of a key: its offset, its value (None: a tombstone) and
/// its timestamp.
type Latest = BTreeMap<Vec<u8>, (i64, Option<Bytes>, i64)>;

/// Every record the log holds, as (offset, key, value, timestamp).
async fn records(log: &PartitionLog) -> Vec<(i64, Vec<u8>, Option<Bytes>, i64)> {
    let mut out = Vec::new();
    for batch in read_all(log, log.log_start_offset().get()).await {
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf).expect("stored batch decodes");
        for r in set.records {
            out.push((
                r.offset,
                r.key.expect("keyed").to_vec(),
                r.value,
                r.timestamp,
            ));
        }
    }
    out
}

/// The log agrees with the model: offsets increase, every live key's latest
/// value is there at its offset, a deleted key has its tombstone or nothing,
/// no record is newer than the model's latest; after a cleaning, sealed
/// segments hold each key once.
async fn compare(
    log: &PartitionLog,
    model: &Latest,
    just_cleaned: bool,
    step: usize,
) -> Result<(), TestCaseError> {
    let stored = records(log).await;
    check(stored.windows(2).all(|w| w[0].0 < w[1].0), || {
        format!("step {step}: offsets do not increase")
    })?;
    let mut last_of: BTreeMap<&[u8], (i64, &Option<Bytes>)> = BTreeMap::new();
    for (offset, key, value, _) in &stored {
        last_of.insert(key, (*offset, value));
    }
    for (key, (offset, value, _)) in model {
        match (last_of.get(key.as_slice()), value) {
            (Some((o, v)), _) => check(o == offset && *v == value, || {
                format!("step {step}: key {key:?} latest ({o}, {v:?}), model ({offset}, {value:?})")
            })?,
            (None, None) => {}
            (None, Some(_)) => return Err(fail(format!("step {step}: live key {key:?} lost"))),
        }
    }
    check(last_of.len() <= model.len(), || {
        format!("step {step}: keys the model does not know")
    })?;
    if just_cleaned {
        let active_base = *log.segment_base_offsets().last().expect("a segment");
        let mut seen = BTreeSet::new();
        for (offset, key, _, _) in stored.iter().filter(|r| Offset(r.0) < active_base) {
            check(seen.insert(key.clone()), || {
                format!("step {step}: key {key:?} twice below the active segment (at {offset})")
            })?;
            let (latest, _, _) = model[key];
            check(*offset == latest || Offset(latest) >= active_base, || {
                format!("step {step}: superseded record {offset} of {key:?} survived")
            })?;
        }
    }
    // ListOffsets by time answers the first surviving record at or after it
    // (timestamps grow with offsets here).
    let newest = stored.iter().map(|r| r.3).max().unwrap_or(0);
    for timestamp in 0..=newest + 1 {
        let found = log.offset_for_timestamp(timestamp).await.map_err(fail)?;
        let expected = stored.iter().find(|r| r.3 >= timestamp).map(|r| (r.3, r.0));
        let found = found.map(|t| (t.timestamp.get(), t.offset.get()));
        check(found == expected, || {
            format!("step {step}: offset for time {timestamp} is {found:?}, expected {expected:?}")
        })?;
    }
    // A read from any offset starts at the first record at or after it.
    let high_watermark = log.high_watermark().get();
    for from in (log.log_start_offset().get()..high_watermark).step_by(7) {
        let read = log.read(Offset(from), 1 << 20).await.map_err(fail)?;
        let first = read
            .batches
            .first()
            .ok_or_else(|| fail(format!("step {step}: empty read at {from}")))?;
        let mut buf = first.clone();
        let set = RecordBatchDecoder::decode(&mut buf).map_err(fail)?;
        let first_at_or_after = set
            .records
            .iter()
            .find(|r| r.offset >= from)
            .map(|r| r.offset);
        let expected = stored.iter().find(|r| r.0 >= from).map(|r| r.0);
        check(first_at_or_after == expected, || {
            format!("step {step}: read at {from} starts at {first_at_or_after:?}, expected {expected:?}")
        })?;
    }
    Ok(())
}

fn encode(records: &[(u8, Option<u16>)], compressed: bool, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(BatchOptions {
        compression: if compressed {
            Compression::Zstd
        } else {
            Compression::None
        },
        ..BatchOptions::default()
    });
    for (key, value) in records {
        builder.push(
            Some(Bytes::from(vec![b'k', *key])),
            value.map(|size| Bytes::from(vec![*key; size as usize])),
            timestamp_ms,
        );
    }
    builder.encode().expect("encodes")
}

/// Leaves what a cleaning killed half-way leaves: a committed `.swap` (the
/// oldest segment's own bytes, so the model is unchanged by installing it)
/// and a `.cleaned` file of garbage.
fn leave_swap_files(dir: &std::path::Path, bases: &[Offset]) -> Result<(), TestCaseError> {
    let Some(first) = bases.first() else {
        return Ok(());
    };
    if bases.len() < 2 {
        return Ok(());
    }
    let log = dir.join(format!("{:020}.log", first.get()));
    let bytes = std::fs::read(&log).map_err(fail)?;
    std::fs::write(dir.join(format!("{:020}.log.swap", first.get())), bytes).map_err(fail)?;
    let last_sealed = bases[bases.len() - 2];
    std::fs::write(
        dir.join(format!("{:020}.log.cleaned", last_sealed.get())),
        b"half written",
    )
    .map_err(fail)?;
    Ok(())
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    run(move || async move {
        let dir = tempfile::tempdir().map_err(fail)?;
        let cache = BatchCache::new(16 * 1024);
        let cleaner = Cleaner::new(1 << 20);
        let mut log = open(dir.path(), config(), &cache).await;
        let mut model = Latest::new();
        for (step, op) in ops.into_iter().enumerate() {
            let now = step as i64;
            let mut just_cleaned = false;
            match op {
                Op::Append {
                    records,
                    compressed,
                } => {
                    let info = log
                        .append(encode(&records, compressed, now), Durability::Written)
                        .await
                        .map_err(fail)?;
                    for (i, (key, value)) in records.iter().enumerate() {
                        let value = value.map(|size| Bytes::from(vec![*key; size as usize]));
                        model.insert(
                            vec![b'k', *key],
                            (info.base_offset.get() + i as i64, value, now),
                        );
                    }
                }
                Op::Clean => {
                    cleaner.clean(&log, now).await.map_err(fail)?;
                    just_cleaned = true;
                }
                Op::CrashReopen | Op::CrashWithLeftovers | Op::CleanReopen => {
                    if matches!(op, Op::CleanReopen) {
                        log.close().await.map_err(fail)?;
                    }
                    let bases = log.segment_base_offsets();
                    drop(log);
                    if matches!(op, Op::CrashWithLeftovers) {
                        leave_swap_files(dir.path(), &bases)?;
                    }
                    log = open(dir.path(), config(), &cache).await;
                    let left: Vec<_> = std::fs::read_dir(dir.path())
                        .map_err(fail)?
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                        .collect();
                    check(left.is_empty(), || {
                        format!("step {step}: left after recovery: {left:?}")
                    })?;
                }
            }
            compare(&log, &model, just_cleaned, step).await?;
        }
        // A last cleaning far in the future removes every tombstone.
        let later = i64::MAX / 4;
        cleaner.clean(&log, later).await.map_err(fail)?;
        cleaner.clean(&log, later).await.map_err(fail)?;
        compare(&log, &model, true, usize::MAX).await?;
        log.close().await.map_err(fail)?;
        Ok(())
    })
}

#[test]
fn compaction_keeps_the_latest_record_of_every_key() {
    let seed = model_seed("COMPACTION_MODEL_SEED");
    println!("compaction model seed {seed} (replay with COMPACTION_MODEL_SEED={seed})");
    let mut runner = seeded_runner(seed, CASES);
    let result = runner.run(&proptest::collection::vec(op(), 1..OPS_MAX), run_case);
    if let Err(e) = result {
        panic!("compaction model test failed; replay with COMPACTION_MODEL_SEED={seed}\n{e}");
    }
}

#[test]
fn a_full_offset_map_cleans_in_several_passes() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(16 * 1024);
        let config = LogConfig {
            segment_bytes: 16 * 1024,
            ..config()
        };
        let log = open(dir.path(), config.clone(), &cache).await;
        // More keys than the smallest map holds, each written twice.
        let keys = 3000u32;
        for round in 0..2u8 {
            for chunk in (0..keys).collect::<Vec<_>>().chunks(50) {
                let mut builder = BatchBuilder::new(BatchOptions::default());
                for key in chunk {
                    builder.push(
                        Some(Bytes::from(key.to_be_bytes().to_vec())),
                        Some(Bytes::from(vec![round; 8])),
                        1,
                    );
                }
                log.append(builder.encode().expect("encodes"), Durability::Written)
                    .await
                    .expect("append");
            }
        }
        let cleaner = Cleaner::new(0);
        let stats = cleaner.clean(&log, 2).await.expect("clean");
        assert!(stats.passes >= 3, "{stats:?}");
        let stored = records(&log).await;
        let active_base = *log.segment_base_offsets().last().expect("a segment");
        let mut seen = BTreeSet::new();
        for (offset, key, value, _) in stored.iter().filter(|r| Offset(r.0) < active_base) {
            assert!(seen.insert(key.clone()), "key {key:?} twice (at {offset})");
            let superseded_in_active = stored
                .iter()
                .any(|r| &r.1 == key && r.0 > *offset && Offset(r.0) >= active_base);
            assert!(
                value.as_deref() == Some(&[1u8; 8][..]) || superseded_in_active,
                "{key:?} at {offset} is not its latest value"
            );
        }
        assert!(seen.len() as u32 > keys / 2);
        log.close().await.expect("close");
    })
}
