//! The partition log: Kafka RecordBatch v2 bytes in direct-I/O segment files.
//!
//! This module knows nothing of Kafka requests. It speaks offsets, batches and
//! bytes. Every `PartitionLog` is owned by one shard (it is `!Send`).
//!
//! # Layout
//!
//! - [`batch`]: the v2 batch header layout and view, validation, and the in-place edits
//!   (base offset, leader epoch, timestamps, LogAppendTime, CRC).
//! - [`control`]: transaction markers, the control batches Kafka writes when a
//!   transaction ends (KIP-98).
//! - [`config`]: `LogConfig` (Kafka topic config names and defaults), `Durability`,
//!   `StorageOptions`.
//! - [`descriptors`]: the shard's LRU of open segment files within its budget.
//! - [`file`]: O_DIRECT segment files (buffered only in development mode), the
//!   O_DIRECT probe, atomic small-file writes.
//! - [`records`]: the records inside a batch: codecs, bounded decompression,
//!   a walk over record offsets and timestamps.
//! - [`recompress`]: batches rebuilt with the topic's `compression.type`.
//! - [`segment`]: one `.log` with its `.index`/`.timeindex`; scanning and reading.
//! - [`index`]: sparse offset and time indexes, persisted as rkyv archives.
//! - [`cache`]: the per-shard batch cache (LRU by bytes).
//! - [`limit`]: `ReadLimit`, how many bytes of whole batches a read returns (KIP-74).
//! - [`segment_set`]: a partition's segments, the last one active.
//! - [`log`]: `PartitionLog`: the front (open, close, retention) over its
//!   appender (write pipeline, rolls), reader (cache and disk, timestamp
//!   queries) and flusher (flush.messages, flush.ms).
//! - [`group_commit`]: one fdatasync in flight covering every write before it,
//!   shared by the partition log and the group offset log.
//! - [`recovery`]: opening a directory: index loading, CRC scan, tail truncation.
//! - [`retention`]: which segments retention.ms / retention.bytes remove.
//! - [`cleaner`]: log compaction, one cleaner per shard (offset map, segment
//!   rewrite, `.cleaned`/`.swap` files and their recovery).
//! - [`txn_index`]: aborted transactions per segment (`.txnindex`, Kafka's layout)
//!   for read_committed fetches.
//! - [`types`]: `Offset`, `FilePosition`, `TimestampMs`, `TimestampOffset`.
//! - [`leader_epochs`]: each leader epoch of a log and the offset it began at
//!   (Kafka's leader-epoch cache), for OffsetForLeaderEpoch.
//! - [`meta`]: `partition.meta` (log start offset, recovery point, leader epoch).
//! - [`producer_state`]: idempotent producers' epochs and last sequences per
//!   partition (KIP-98, KIP-360), and their `.snapshot` files.

pub mod batch;
pub mod cache;
pub mod cleaner;
pub mod config;
pub mod control;
pub mod descriptors;
pub mod error;
pub mod file;
pub(crate) mod group_commit;
pub mod index;
pub mod leader_epochs;
pub mod limit;
pub mod log;
pub mod meta;
pub(crate) mod notify;
pub mod producer_state;
pub mod recompress;
pub mod records;
mod recovery;
mod retention;
pub mod segment;
mod segment_set;
pub mod txn_index;
pub mod types;

pub use batch::BatchHeader;
pub use cache::{BatchCache, CacheStats};
pub use config::{
    CleanupPolicy, CompressionType, Durability, LogConfig, Ratio, StorageOptions, TimestampType,
};
pub use control::{TxnMarker, TxnResult};
pub use error::{CorruptReason, Error};
pub use limit::ReadLimit;
pub use log::{
    AppendInfo, AppendLock, AppendTurn, BatchSpan, Isolation, LogStats, PartitionLog, Proposal,
    ReadResult,
};
pub use producer_state::ProducerError;
pub use recovery::segment_count;
pub use types::{FilePosition, Offset, TimestampMs, TimestampOffset};
