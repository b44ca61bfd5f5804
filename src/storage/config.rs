//! Per-topic log configuration, with Kafka's names and defaults.

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

/// How far an append must have gone before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The write to the segment file completed (acks=1).
    Written,
    /// Covered by an fdatasync (acks=-1); concurrent appends share one fdatasync.
    Durable,
}

/// Shard-wide storage switches.
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// Development only: when the data directory cannot do O_DIRECT, fall back to
    /// buffered I/O instead of refusing to open.
    pub allow_buffered_io: bool,
}

/// Kafka `Long.MAX_VALUE`, which Kafka uses for "never" in flush.messages and flush.ms.
pub const KAFKA_LONG_MAX: u64 = i64::MAX as u64;

/// Per-topic configuration (Kafka topic config names in the field docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: u64,
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`
    pub timestamp_type: TimestampType,
    /// `flush.messages`: fdatasync after this many records.
    pub flush_messages: u64,
    /// `flush.ms`: fdatasync when data has been unsynced this long.
    pub flush_ms: u64,
    /// `index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: KAFKA_LONG_MAX,
            flush_ms: KAFKA_LONG_MAX,
            index_interval_bytes: 4096,
        }
    }
}
