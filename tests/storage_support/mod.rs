//! Helpers shared by the storage integration tests: a glommio executor, real
//! encoded record batches, and byte comparisons that ignore the fields the log
//! assigns.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use ringlog::storage::{BatchCache, LogConfig, PartitionLog, StorageOptions};

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
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: timestamp_ms + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![(i % 251) as u8; value_bytes])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encodes");
    buf.freeze()
}

/// Compares a stored batch with what was sent, skipping baseOffset (0..8) and
/// partitionLeaderEpoch (12..16), which the log assigns.
pub fn same_except_assigned(stored: &[u8], sent: &[u8]) -> bool {
    stored.len() == sent.len() && stored[8..12] == sent[8..12] && stored[16..] == sent[16..]
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
    while next < log.high_watermark() {
        let r = log.read(next, 1 << 20).await.expect("read in range");
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
