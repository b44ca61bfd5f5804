//! Helpers shared by the storage integration tests: a glommio executor, real
//! encoded record batches, and byte comparisons that ignore the fields the log
//! assigns.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::records::Compression;
use ringlog::client::{BatchBuilder, BatchOptions};
use ringlog::storage::{BatchCache, LogConfig, Offset, PartitionLog, StorageOptions};

/// Locked memory per test executor; the machine allows 8 MiB in total.
pub const TEST_IO_MEMORY_BYTES: usize = 256 * 1024;

/// Runs `f` on a fresh single-threaded glommio executor.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("ringlog=debug")
        .try_init();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(TEST_IO_MEMORY_BYTES)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor finishes")
}

/// One v2 batch of `count` records with values of `value_bytes` bytes and
/// timestamps starting at `timestamp_ms`.
pub fn make_batch(
    count: usize,
    value_bytes: usize,
    timestamp_ms: i64,
    compression: Compression,
) -> Bytes {
    let options = BatchOptions {
        compression,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, count);
    for i in 0..count {
        builder.push(
            Some(Bytes::from(format!("key-{i}"))),
            Some(Bytes::from(vec![(i % 251) as u8; value_bytes])),
            timestamp_ms + i as i64,
        );
    }
    builder.encode().expect("encodes")
}

/// Compares a stored batch with what was sent, skipping baseOffset and
/// partitionLeaderEpoch, which the log assigns.
pub fn same_except_assigned(stored: &[u8], sent: &[u8]) -> bool {
    use ringlog::storage::batch::{
        BATCH_LENGTH_OFFSET, MAGIC_OFFSET, PARTITION_LEADER_EPOCH_OFFSET,
    };
    let length = BATCH_LENGTH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET;
    stored.len() == sent.len()
        && stored[length.clone()] == sent[length]
        && stored[MAGIC_OFFSET..] == sent[MAGIC_OFFSET..]
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

pub async fn open(dir: &Path, config: LogConfig, cache: &Rc<BatchCache>) -> Rc<PartitionLog> {
    PartitionLog::open(
        dir.to_path_buf(),
        config,
        cache.clone(),
        StorageOptions::default(),
    )
    .await
    .expect("log opens")
}

/// Every batch from `from` to the high watermark, one read at a time.
pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.high_watermark().get() {
        let r = log
            .read(Offset(next), 1 << 20)
            .await
            .expect("read in range");
        assert!(
            !r.batches.is_empty(),
            "read at {next} below hw returned nothing"
        );
        for b in r.batches {
            let h = ringlog::storage::BatchHeader::parse(&b).expect("stored header");
            next = h.last_offset() + 1;
            out.push(b);
        }
    }
    out
}

/// The seed of a randomized model test: the value of `var` when it is set
/// (to replay a run), else one taken from the clock.
pub fn model_seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A proptest runner of `cases` cases drawn from `seed`, persisting nothing.
pub fn seeded_runner(seed: u64, cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    )
}
