//! Topic configs under Kafka's names: validation, defaults and the storage
//! settings they resolve to.

use std::collections::BTreeMap;

use const_format::concatcp;

use crate::storage::config as storage;
use crate::storage::{CleanupPolicy, CompressionType, LogConfig, Ratio, TimestampType};
use TopicConfigKey as Key;

/// The value type of a config, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Every topic config ringlog understands, by Kafka's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicConfigKey {
    CleanupPolicy,
    CompressionType,
    DeleteRetentionMs,
    FlushMessages,
    FlushMs,
    IndexIntervalBytes,
    MaxCompactionLagMs,
    MaxMessageBytes,
    MessageTimestampType,
    MinCleanableDirtyRatio,
    MinCompactionLagMs,
    MinInsyncReplicas,
    RetentionBytes,
    RetentionMs,
    SegmentBytes,
    SegmentMs,
}

impl TopicConfigKey {
    /// The key's definition: its name, default, type and check.
    pub fn def(self) -> &'static ConfigDef {
        &CONFIG_DEFS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The key of a config named on the wire or in a file.
    pub fn from_name(name: &str) -> Option<TopicConfigKey> {
        CONFIG_DEFS.iter().find(|d| d.name == name).map(|d| d.key)
    }
}

/// One topic config ringlog understands.
pub struct ConfigDef {
    pub key: TopicConfigKey,
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    check: fn(&str) -> bool,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> bool {
    move |v| v.parse::<i64>().is_ok_and(|n| n >= min)
}

macro_rules! def {
    ($key:ident, $name:expr, $default:expr, $kind:expr, $check:expr) => {
        ConfigDef {
            key: TopicConfigKey::$key,
            name: $name,
            default: $default,
            kind: $kind,
            check: $check,
        }
    };
}

/// Every supported topic config with Kafka's default.
pub const CONFIG_DEFS: &[ConfigDef] = &[
    def!(
        CleanupPolicy,
        "cleanup.policy",
        "delete",
        ConfigType::List,
        |v| CleanupPolicy::from_kafka_list(v).is_some()
    ),
    def!(
        CompressionType,
        "compression.type",
        CompressionType::Producer.kafka_name(),
        ConfigType::String,
        |v| CompressionType::from_kafka_name(v).is_some()
    ),
    def!(
        DeleteRetentionMs,
        "delete.retention.ms",
        concatcp!(storage::DELETE_RETENTION_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(0)(v)
    ),
    def!(
        FlushMessages,
        "flush.messages",
        concatcp!(storage::FLUSH_MESSAGES_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(1)(v)
    ),
    def!(
        FlushMs,
        "flush.ms",
        concatcp!(storage::FLUSH_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(0)(v)
    ),
    def!(
        IndexIntervalBytes,
        "index.interval.bytes",
        concatcp!(storage::INDEX_INTERVAL_BYTES_DEFAULT),
        ConfigType::Int,
        |v| v.parse::<i32>().is_ok_and(|n| n >= 0)
    ),
    def!(
        MaxCompactionLagMs,
        "max.compaction.lag.ms",
        concatcp!(storage::MAX_COMPACTION_LAG_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(1)(v)
    ),
    def!(
        MaxMessageBytes,
        "max.message.bytes",
        concatcp!(storage::MAX_MESSAGE_BYTES_DEFAULT),
        ConfigType::Int,
        |v| v.parse::<i32>().is_ok_and(|n| n >= 0)
    ),
    def!(
        MessageTimestampType,
        "message.timestamp.type",
        TimestampType::CreateTime.kafka_name(),
        ConfigType::String,
        |v| TimestampType::from_kafka_name(v).is_some()
    ),
    def!(
        MinCleanableDirtyRatio,
        "min.cleanable.dirty.ratio",
        storage::MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
        ConfigType::Double,
        |v| Ratio::parse(v).is_some()
    ),
    def!(
        MinCompactionLagMs,
        "min.compaction.lag.ms",
        concatcp!(storage::MIN_COMPACTION_LAG_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(0)(v)
    ),
    def!(
        MinInsyncReplicas,
        "min.insync.replicas",
        "1",
        ConfigType::Int,
        |v| long_at_least(1)(v) && v.parse::<i32>().is_ok()
    ),
    def!(
        RetentionBytes,
        "retention.bytes",
        concatcp!(storage::RETENTION_BYTES_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(-1)(v)
    ),
    def!(
        RetentionMs,
        "retention.ms",
        concatcp!(storage::RETENTION_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(-1)(v)
    ),
    def!(
        SegmentBytes,
        "segment.bytes",
        concatcp!(storage::SEGMENT_BYTES_DEFAULT),
        ConfigType::Int,
        |v| v.parse::<i32>().is_ok_and(|n| n >= 4096)
    ),
    def!(
        SegmentMs,
        "segment.ms",
        concatcp!(storage::SEGMENT_MS_DEFAULT),
        ConfigType::Long,
        |v| long_at_least(1)(v)
    ),
];

// `TopicConfigKey::def` indexes CONFIG_DEFS by key: their orders agree.
const _: () = {
    let mut i = 0;
    while i < CONFIG_DEFS.len() {
        assert!(CONFIG_DEFS[i].key as usize == i);
        i += 1;
    }
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicConfigError {
    #[error("unknown topic config {0:?}")]
    Unknown(String),
    #[error("invalid value {value:?} for topic config {name}")]
    InvalidValue { name: String, value: String },
}

pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    TopicConfigKey::from_name(name).map(TopicConfigKey::def)
}

/// Where a config's effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (DescribeConfigs `DYNAMIC_TOPIC_CONFIG`).
    Topic = 1,
    /// Set as a broker default (`STATIC_BROKER_CONFIG`).
    Broker = 4,
    /// Kafka's built-in default (`DEFAULT_CONFIG`).
    Default = 5,
}

/// A validated set of topic configs: the explicitly set entries plus the
/// defaults they sit on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Values set on this level (topic, or broker defaults).
    overrides: BTreeMap<String, String>,
    /// Broker defaults below this level (empty for the broker defaults themselves).
    inherited: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Kafka's built-in defaults with nothing overridden.
    pub fn defaults() -> TopicConfig {
        TopicConfig {
            overrides: BTreeMap::new(),
            inherited: BTreeMap::new(),
        }
    }

    /// Validates `entries` and layers them over `self`'s effective values.
    pub fn with_overrides(
        &self,
        entries: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, TopicConfigError> {
        for (name, value) in entries {
            let def = definition(name).ok_or_else(|| TopicConfigError::Unknown(name.clone()))?;
            if !(def.check)(value) {
                return Err(TopicConfigError::InvalidValue {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        let mut inherited = self.inherited.clone();
        inherited.extend(self.overrides.clone());
        Ok(TopicConfig {
            overrides: entries.clone(),
            inherited,
        })
    }

    /// The topic's own settings (what is persisted with the topic).
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The effective value of `key` and where it comes from.
    pub fn value(&self, key: TopicConfigKey) -> (&str, ConfigSource) {
        let name = key.name();
        if let Some(v) = self.overrides.get(name) {
            return (v, ConfigSource::Topic);
        }
        if let Some(v) = self.inherited.get(name) {
            return (v, ConfigSource::Broker);
        }
        (key.def().default, ConfigSource::Default)
    }

    fn number(&self, key: TopicConfigKey) -> i64 {
        // Every value was checked by its definition, so it parses.
        self.value(key).0.parse().unwrap_or(i64::MAX)
    }

    /// Whether `cleanup.policy` includes `compact`.
    /// `min.insync.replicas`: the replicas an acks=all produce needs caught up.
    pub fn min_insync_replicas(&self) -> usize {
        let (value, _) = self.value(TopicConfigKey::MinInsyncReplicas);
        value.parse::<usize>().map_or(1, |n| n.max(1))
    }

    pub fn is_compacted(&self) -> bool {
        CleanupPolicy::from_kafka_list(self.value(Key::CleanupPolicy).0).is_some_and(|p| p.compact)
    }

    /// The storage settings these configs resolve to.
    pub fn log_config(&self) -> LogConfig {
        let timestamp_type =
            TimestampType::from_kafka_name(self.value(Key::MessageTimestampType).0)
                .unwrap_or_default();
        LogConfig {
            segment_bytes: self.number(Key::SegmentBytes).max(0) as u64,
            segment_ms: self.number(Key::SegmentMs).max(1) as u64,
            retention_ms: self.number(Key::RetentionMs),
            retention_bytes: self.number(Key::RetentionBytes),
            max_message_bytes: self.number(Key::MaxMessageBytes).clamp(0, u32::MAX as i64) as u32,
            timestamp_type,
            flush_messages: self.number(Key::FlushMessages).max(1) as u64,
            flush_ms: self.number(Key::FlushMs).max(0) as u64,
            index_interval_bytes: self
                .number(Key::IndexIntervalBytes)
                .clamp(0, u32::MAX as i64) as u32,
            compression_type: CompressionType::from_kafka_name(self.value(Key::CompressionType).0)
                .unwrap_or_default(),
            cleanup_policy: CleanupPolicy::from_kafka_list(self.value(Key::CleanupPolicy).0)
                .unwrap_or_default(),
            min_cleanable_dirty_ratio: Ratio::parse(self.value(Key::MinCleanableDirtyRatio).0)
                .unwrap_or(LogConfig::default().min_cleanable_dirty_ratio),
            min_compaction_lag_ms: self.number(Key::MinCompactionLagMs),
            max_compaction_lag_ms: self.number(Key::MaxCompactionLagMs),
            delete_retention_ms: self.number(Key::DeleteRetentionMs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_defaults_resolve_to_the_storage_defaults() {
        assert_eq!(TopicConfig::defaults().log_config(), LogConfig::default());
    }

    #[test]
    fn topic_values_override_broker_defaults_which_override_kafka_defaults() {
        let broker = TopicConfig::defaults()
            .with_overrides(&map(&[("retention.ms", "1000")]))
            .unwrap();
        let topic = broker
            .with_overrides(&map(&[("segment.bytes", "8192")]))
            .unwrap();
        assert_eq!(
            topic.value(Key::SegmentBytes),
            ("8192", ConfigSource::Topic)
        );
        assert_eq!(
            topic.value(Key::RetentionMs),
            ("1000", ConfigSource::Broker)
        );
        assert_eq!(
            topic.value(Key::RetentionBytes),
            ("-1", ConfigSource::Default)
        );
        assert_eq!(topic.log_config().segment_bytes, 8192);
        assert_eq!(topic.log_config().retention_ms, 1000);
    }

    #[test]
    fn unknown_names_and_bad_values_are_rejected() {
        let d = TopicConfig::defaults();
        assert!(matches!(
            d.with_overrides(&map(&[("no.such", "1")])),
            Err(TopicConfigError::Unknown(_))
        ));
        assert!(d.with_overrides(&map(&[("retention.ms", "soon")])).is_err());
        for bad in ["", "compacted", "delete,", "Compact"] {
            assert!(
                d.with_overrides(&map(&[("cleanup.policy", bad)])).is_err(),
                "{bad:?}"
            );
        }
        assert!(d
            .with_overrides(&map(&[("min.cleanable.dirty.ratio", "1.5")]))
            .is_err());
        assert!(d
            .with_overrides(&map(&[("message.timestamp.type", "LogAppendTime")]))
            .is_ok());
    }

    #[test]
    fn cleanup_policy_takes_delete_compact_or_both() {
        let d = TopicConfig::defaults();
        assert_eq!(d.log_config().cleanup_policy, CleanupPolicy::DELETE);
        for (value, delete, compact) in [
            ("delete", true, false),
            ("compact", false, true),
            ("compact,delete", true, true),
            ("delete, compact", true, true),
        ] {
            let config = d
                .with_overrides(&map(&[("cleanup.policy", value)]))
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(
                config.log_config().cleanup_policy,
                CleanupPolicy { delete, compact },
                "{value}"
            );
        }
    }

    #[test]
    fn compaction_settings_resolve_with_kafka_defaults() {
        let d = TopicConfig::defaults().log_config();
        assert_eq!(d.min_cleanable_dirty_ratio.as_f64(), 0.5);
        assert_eq!(d.delete_retention_ms, 86_400_000);
        assert_eq!(d.min_compaction_lag_ms, 0);
        assert_eq!(d.max_compaction_lag_ms, i64::MAX);
        let set = TopicConfig::defaults()
            .with_overrides(&map(&[
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "100"),
                ("min.compaction.lag.ms", "5"),
                ("max.compaction.lag.ms", "60000"),
            ]))
            .expect("valid")
            .log_config();
        assert_eq!(set.min_cleanable_dirty_ratio, Ratio::of(1, 100));
        assert_eq!(
            (
                set.delete_retention_ms,
                set.min_compaction_lag_ms,
                set.max_compaction_lag_ms
            ),
            (100, 5, 60000)
        );
    }

    #[test]
    fn compression_type_takes_kafka_values_only() {
        let d = TopicConfig::defaults();
        assert_eq!(d.log_config().compression_type, CompressionType::Producer);
        for (expected, name) in CompressionType::ALL {
            let config = d
                .with_overrides(&map(&[("compression.type", name)]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.log_config().compression_type, expected);
        }
        for bad in ["none", "LZ4", "brotli", ""] {
            assert!(
                d.with_overrides(&map(&[("compression.type", bad)]))
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
