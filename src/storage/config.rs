//! Per-topic log configuration, with Kafka's names and defaults.

use super::records::Codec;

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// The value's name in Kafka's topic config.
    pub const fn kafka_name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    pub fn from_kafka_name(name: &str) -> Option<TimestampType> {
        [TimestampType::CreateTime, TimestampType::LogAppendTime]
            .into_iter()
            .find(|t| t.kafka_name() == name)
    }
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

    /// The value's name in Kafka's topic config.
    pub const fn kafka_name(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
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

/// `cleanup.policy`: what removes old data. `delete` drops whole segments by
/// retention.ms / retention.bytes; `compact` keeps the latest record of each
/// key; both may be on (Kafka's `compact,delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy::DELETE
    }
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Parses Kafka's list value (`delete`, `compact`, `compact,delete`, any
    /// order, spaces allowed); `None` for anything else or an empty list.
    pub fn from_kafka_list(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for item in value.split(',').map(str::trim) {
            match item {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        (policy.delete || policy.compact).then_some(policy)
    }
}

/// A fraction between 0 and 1 kept in millionths, so configs compare exactly
/// (`min.cleanable.dirty.ratio`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ratio(u32);

impl Ratio {
    pub const ONE_MILLIONTHS: u32 = 1_000_000;

    /// Parses a decimal between 0 and 1 inclusive.
    pub fn parse(value: &str) -> Option<Ratio> {
        let v: f64 = value.trim().parse().ok()?;
        (0.0..=1.0)
            .contains(&v)
            .then(|| Ratio((v * f64::from(Self::ONE_MILLIONTHS)).round() as u32))
    }

    pub fn of(part: u64, whole: u64) -> Ratio {
        if whole == 0 {
            return Ratio(0);
        }
        let millionths =
            u128::from(part.min(whole)) * u128::from(Self::ONE_MILLIONTHS) / u128::from(whole);
        Ratio(millionths as u32)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::ONE_MILLIONTHS)
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
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Development only: when the data directory cannot do O_DIRECT, fall back to
    /// buffered I/O instead of refusing to open.
    pub allow_buffered_io: bool,
    /// How long a producer's state outlives its last batch
    /// (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            allow_buffered_io: false,
            producer_id_expiration_ms: super::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// Kafka `Long.MAX_VALUE`, which Kafka uses for "never" in flush.messages and flush.ms.
pub const KAFKA_LONG_MAX: u64 = i64::MAX as u64;

// Kafka's defaults for the topic configs the log honours. They are written
// down only here: `topic_config` shows them under Kafka's names.
const WEEK_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// `segment.bytes`
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// `segment.ms`
pub const SEGMENT_MS_DEFAULT: u64 = WEEK_MS;
/// `retention.ms`
pub const RETENTION_MS_DEFAULT: i64 = WEEK_MS as i64;
/// `retention.bytes`: no size limit.
pub const RETENTION_BYTES_DEFAULT: i64 = -1;
/// `max.message.bytes`
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;
/// `flush.messages`: never, by count.
pub const FLUSH_MESSAGES_DEFAULT: u64 = KAFKA_LONG_MAX;
/// `flush.ms`: never, by age.
pub const FLUSH_MS_DEFAULT: u64 = KAFKA_LONG_MAX;
/// `index.interval.bytes`
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// `min.cleanable.dirty.ratio`, as Kafka writes it.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: &str = "0.5";
/// `min.compaction.lag.ms`: records may be compacted at once.
pub const MIN_COMPACTION_LAG_MS_DEFAULT: i64 = 0;
/// `max.compaction.lag.ms`: no deadline.
pub const MAX_COMPACTION_LAG_MS_DEFAULT: i64 = i64::MAX;
/// `delete.retention.ms`: tombstones stay a day.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;

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
    /// `cleanup.policy`
    pub cleanup_policy: CleanupPolicy,
    /// `min.cleanable.dirty.ratio`: the share of dirty bytes that makes a
    /// compacted log worth cleaning.
    pub min_cleanable_dirty_ratio: Ratio,
    /// `min.compaction.lag.ms`: records younger than this stay uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this get cleaned
    /// whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: RETENTION_BYTES_DEFAULT,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: FLUSH_MESSAGES_DEFAULT,
            flush_ms: FLUSH_MS_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            compression_type: CompressionType::Producer,
            cleanup_policy: CleanupPolicy::DELETE,
            min_cleanable_dirty_ratio: Ratio::parse(MIN_CLEANABLE_DIRTY_RATIO_DEFAULT)
                .unwrap_or(Ratio(Ratio::ONE_MILLIONTHS / 2)),
            min_compaction_lag_ms: MIN_COMPACTION_LAG_MS_DEFAULT,
            max_compaction_lag_ms: MAX_COMPACTION_LAG_MS_DEFAULT,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
        }
    }
}
