//! The partition log: Kafka RecordBatch v2 bytes in direct-I/O segment files.
//!
//! This module knows nothing of Kafka requests. It speaks offsets, batches and
//! bytes. Every `PartitionLog` is owned by one shard (it is `!Send`).
//!
//! API used by the broker (the contract; see ARCHITECTURE.md):
//!
//! ```ignore
//! PartitionLog::open(dir, LogConfig, Rc<BatchCache>, StorageOptions) -> Result<Rc<PartitionLog>, Error>
//! log.append(records: Bytes, Durability) -> Result<AppendInfo, Error>     // one or more v2 batches
//! log.read(from_offset, max_bytes) -> Result<ReadResult, Error>           // whole stored batches as Bytes slices
//! log.high_watermark() / log.log_start_offset()
//! log.wait_for_offset(offset) -> future resolving once high_watermark() > offset (or the log closes)
//! log.offset_for_timestamp(ts_ms) -> Result<Option<TimestampOffset>, Error>
//! log.max_timestamp() -> Option<TimestampOffset>
//! log.delete_records(before_offset) -> Result<i64, Error>
//! log.enforce_retention(now_ms) -> Result<(), Error>
//! log.set_config(LogConfig)
//! log.close() -> Result<(), Error>     // flush, persist indexes and partition.meta
//! log.delete() -> Result<(), Error>    // close and remove the directory
//! ```
