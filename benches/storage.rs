//! Storage engine throughput: appends of ~64 KiB batches of 1 KiB records
//! (no flush; per-batch durability with 1 and 64 appenders sharing fdatasyncs),
//! reads from the batch cache and from disk, and the cost of a topic
//! `compression.type` that differs from the producer's codec.
//!
//! The data directory is `RINGLOG_BENCH_DIR` (default: the system temp dir),
//! which must support O_DIRECT.

#[path = "../tests/storage_support/mod.rs"]
mod storage_support;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::records::Compression;
use ringlog::storage::{
    BatchCache, CompressionType, Durability, LogConfig, Offset, PartitionLog, StorageOptions,
};

// The broker's allocator: freed buffers are reused instead of faulted in afresh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 63; // ~64 KiB per batch with record overhead
const IO_MEMORY_BYTES: usize = 512 * 1024;
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// One ~64 KiB batch of 1 KiB records, built as the storage tests build theirs.
fn batch() -> Bytes {
    storage_support::make_batch(
        RECORDS_PER_BATCH,
        RECORD_BYTES,
        1_700_000_000_000,
        Compression::None,
    )
}

/// The same records, compressed by the producer with gzip.
fn gzip_batch() -> Bytes {
    storage_support::make_batch(
        RECORDS_PER_BATCH,
        RECORD_BYTES,
        1_700_000_000_000,
        Compression::Gzip,
    )
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("RINGLOG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).expect("bench dir"),
        Err(_) => tempfile::tempdir().expect("temp dir"),
    }
}

fn on_executor<F, Fut>(f: F) -> Duration
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Duration> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(f)
        .expect("executor")
        .join()
        .expect("bench run")
}

async fn open(dir: &std::path::Path, cache: Rc<BatchCache>) -> Rc<PartitionLog> {
    open_with(dir, cache, LogConfig::default()).await
}

async fn open_with(
    dir: &std::path::Path,
    cache: Rc<BatchCache>,
    config: LogConfig,
) -> Rc<PartitionLog> {
    PartitionLog::open(
        dir.join("bench-0"),
        config,
        cache,
        StorageOptions::default(),
    )
    .await
    .expect("open")
}

/// Appends `iters` batches with `appenders` concurrent tasks; returns the time taken.
fn append(iters: u64, appenders: u64, durability: Durability) -> Duration {
    append_to(
        iters,
        appenders,
        durability,
        CompressionType::Producer,
        batch,
    )
}

/// Appends `iters` copies of `make()`'s batch to a log with `compression_type`.
fn append_to(
    iters: u64,
    appenders: u64,
    durability: Durability,
    compression_type: CompressionType,
    make: fn() -> Bytes,
) -> Duration {
    on_executor(move || async move {
        let dir = bench_dir();
        let config = LogConfig {
            compression_type,
            ..LogConfig::default()
        };
        let log = open_with(dir.path(), BatchCache::new(CACHE_BYTES), config).await;
        let b = make();
        let start = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|t| {
                let (log, b) = (log.clone(), b.clone());
                let share = iters / appenders + u64::from(t < iters % appenders);
                glommio::spawn_local(async move {
                    for _ in 0..share {
                        log.append(b.clone(), durability).await.expect("append");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let elapsed = start.elapsed();
        if std::env::var_os("RINGLOG_BENCH_STATS").is_some() {
            eprintln!("{appenders} appenders {durability:?}: {:?}", log.stats());
        }
        log.delete().await.expect("delete");
        elapsed
    })
}

fn read(iters: u64, cache_bytes: usize) -> Duration {
    on_executor(move || async move {
        let dir = bench_dir();
        let log = open(dir.path(), BatchCache::new(cache_bytes)).await;
        let b = batch();
        let batches = iters.min(2048);
        for _ in 0..batches {
            log.append(b.clone(), Durability::Written)
                .await
                .expect("append");
        }
        let hw = log.high_watermark();
        let start = Instant::now();
        let mut next = Offset(0);
        for _ in 0..iters {
            if next >= hw {
                next = Offset(0);
            }
            let r = log.read(next, b.len()).await.expect("read");
            next += RECORDS_PER_BATCH as i64 * r.batches.len() as i64;
        }
        let elapsed = start.elapsed();
        log.delete().await.expect("delete");
        elapsed
    })
}

fn storage(c: &mut Criterion) {
    let batch_bytes = batch().len() as u64;
    let mut group = c.benchmark_group("storage");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(batch_bytes));
    group.bench_function("append_64k_batches_no_flush", |bch| {
        bch.iter_custom(|n| append(n, 1, Durability::Written))
    });
    group.bench_function("append_64k_batches_no_flush_64_appenders", |bch| {
        bch.iter_custom(|n| append(n, 64, Durability::Written))
    });
    group.bench_function("append_64k_batches_durable_1_appender", |bch| {
        bch.iter_custom(|n| append(n, 1, Durability::Durable))
    });
    group.bench_function("append_64k_batches_durable_64_appenders", |bch| {
        bch.iter_custom(|n| append(n, 64, Durability::Durable))
    });
    group.bench_function("read_64k_batches_from_cache", |bch| {
        bch.iter_custom(|n| read(n, CACHE_BYTES))
    });
    group.bench_function("read_64k_batches_from_disk", |bch| {
        bch.iter_custom(|n| read(n, 0))
    });
    group.finish();
}

/// A gzip batch appended to a `producer` topic (stored as sent, no decoding)
/// and to an `lz4` topic (decompressed, checked and recompressed on append).
fn compression_type(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression_type");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    for (name, compression_type) in [
        (
            "append_gzip_batch_to_producer_topic",
            CompressionType::Producer,
        ),
        ("append_gzip_batch_to_lz4_topic", CompressionType::Lz4),
        (
            "append_gzip_batch_to_uncompressed_topic",
            CompressionType::Uncompressed,
        ),
    ] {
        group.bench_function(name, |bch| {
            bch.iter_custom(|n| append_to(n, 1, Durability::Written, compression_type, gzip_batch))
        });
    }
    group.finish();
}

criterion_group!(benches, storage, compression_type);
criterion_main!(benches);
