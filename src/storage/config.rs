//! Per-topic log configuration, with Kafka's names and defaults.

use super::records::Codec;

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

/// `compression.type`: the codec of stored batches. `producer` keeps each
/// batch as the producer compressed it; any other value has the broker
/// recompress batches with another codec (Kafka's `BrokerCompressionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CompressionType {
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// Every value with its Kafka name (case-sensitive, as Kafka's validator is).
    pub const ALL: [(CompressionType, &'static str); 6] = [
        (CompressionType::Producer, "producer"),
        (CompressionType::Uncompressed, "uncompressed"),
        (CompressionType::Gzip, "gzip"),
        (CompressionType::Snappy, "snappy"),
        (CompressionType::Lz4, "lz4"),
        (CompressionType::Zstd, "zstd"),
    ];

    pub fn from_kafka_name(name: &str) -> Option<CompressionType> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// The codec stored batches must have; `None` keeps the producer's.
    pub fn codec(self) -> Option<Codec> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(Codec::None),
            CompressionType::Gzip => Some(Codec::Gzip),
            CompressionType::Snappy => Some(Codec::Snappy),
            CompressionType::Lz4 => Some(Codec::Lz4),
            CompressionType::Zstd => Some(Codec::Zstd),
        }
    }
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
    /// `compression.type`
    pub compression_type: CompressionType,
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
            compression_type: CompressionType::Producer,
        }
    }
}
