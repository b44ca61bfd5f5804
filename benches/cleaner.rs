//! Log cleaner throughput: MB/s of sealed log cleaned, for 1 KiB records of
//! which 10% or 90% are superseded by later records of the same key.
//! Each measured cleaning starts from a freshly written, uncleaned log; the
//! writing is not timed.
//!
//! The data directory is `RINGLOG_BENCH_DIR` (default: the system temp dir),
//! which must support O_DIRECT.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use ringlog::client::{BatchBuilder, BatchOptions};
use ringlog::storage::cleaner::Cleaner;
use ringlog::storage::{
    BatchCache, CleanupPolicy, Durability, LogConfig, PartitionLog, StorageOptions,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// Records per measured log: 16 MiB of values.
const RECORDS: usize = 16 * 1024;
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const IO_MEMORY_BYTES: usize = 512 * 1024;
const DEDUPE_BUFFER_BYTES: u64 = 128 * 1024 * 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("RINGLOG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).expect("bench dir"),
        Err(_) => tempfile::tempdir().expect("temp dir"),
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    }
}

/// Writes `RECORDS` records whose keys repeat so that `superseded_percent`
/// of them have a later record with the same key. Returns the log.
async fn write_log(dir: &std::path::Path, superseded_percent: usize) -> std::rc::Rc<PartitionLog> {
    let log = PartitionLog::open(
        dir.join("bench-0"),
        config(),
        BatchCache::new(1024 * 1024),
        StorageOptions::default(),
    )
    .await
    .expect("open");
    let distinct = RECORDS * (100 - superseded_percent) / 100;
    let value = Bytes::from(vec![7u8; RECORD_BYTES]);
    for start in (0..RECORDS).step_by(RECORDS_PER_BATCH) {
        let mut builder = BatchBuilder::with_capacity(BatchOptions::default(), RECORDS_PER_BATCH);
        for i in start..start + RECORDS_PER_BATCH {
            let key = format!("key-{:08}", i % distinct);
            builder.push(
                Some(Bytes::from(key)),
                Some(value.clone()),
                1_700_000_000_000,
            );
        }
        log.append(builder.encode().expect("encodes"), Durability::Written)
            .await
            .expect("append");
    }
    log.flush().await.expect("flush");
    log
}

/// Total time of `iters` cleanings, each of a freshly written log.
fn clean(iters: u64, superseded_percent: usize) -> Duration {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir();
                let log = write_log(dir.path(), superseded_percent).await;
                let cleaner = Cleaner::new(DEDUPE_BUFFER_BYTES);
                let start = Instant::now();
                let stats = cleaner.clean(&log, 1_800_000_000_000).await.expect("clean");
                total += start.elapsed();
                assert!(stats.records_after < stats.records_before);
                log.close().await.expect("close");
            }
            total
        })
        .expect("executor")
        .join()
        .expect("bench run")
}

/// Bytes of sealed segments a cleaning reads: what throughput is counted in.
fn sealed_bytes(superseded_percent: usize) -> u64 {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            let dir = bench_dir();
            let log = write_log(dir.path(), superseded_percent).await;
            let bytes = log.sealed_segments().iter().map(|s| s.bytes).sum();
            log.close().await.expect("close");
            bytes
        })
        .expect("executor")
        .join()
        .expect("sizing run")
}

fn cleaner(c: &mut Criterion) {
    let mut group = c.benchmark_group("cleaner");
    // Each iteration writes a fresh log first (not timed): flat sampling keeps
    // the number of those writes, and so the run, bounded.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for superseded_percent in [10, 90] {
        group.throughput(Throughput::Bytes(sealed_bytes(superseded_percent)));
        group.bench_function(
            format!("clean_1KiB_records_{superseded_percent}pct_superseded"),
            |b| b.iter_custom(|iters| clean(iters, superseded_percent)),
        );
    }
    group.finish();
}

criterion_group!(benches, cleaner);
criterion_main!(benches);
