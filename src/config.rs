//! Broker configuration: built-in defaults, an optional TOML file, then flags.
//!
//! Everything is validated before the broker touches the disk, so a bad value
//! costs the user one clear message and nothing else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::group;
use crate::topic_config::{TopicConfig, TopicConfigError};

pub mod cluster;
pub mod listeners;
pub mod security;

pub use cluster::ClusterConfig;
pub use listeners::{ListenerConfig, SecurityProtocol};
pub use security::SecurityConfig;

// The broker's built-in defaults (Kafka's names where Kafka has the setting);
// the group settings' defaults are the coordinator's, in `group`.

/// Where clients connect (`listeners=PLAINTEXT://127.0.0.1:9092`).
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// `log.dirs`, relative to the working directory; resolved once at start-up.
pub const DATA_DIR_DEFAULT: &str = "./data";
/// `num.partitions`: partitions of an auto-created topic.
pub const DEFAULT_PARTITIONS_DEFAULT: i32 = 1;
/// `auto.create.topics.enable`
pub const AUTO_CREATE_TOPICS_DEFAULT: bool = true;
/// `log.retention.check.interval.ms`
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;
/// How long an opened partition may go unused before its log is closed
/// (0: never).
pub const PARTITION_IDLE_CLOSE_MS_DEFAULT: u64 = 600_000;
/// `log.cleaner.dedupe.buffer.size`, here per shard.
pub const LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT: u64 = 128 * 1024 * 1024;
/// `log.cleaner.backoff.ms`
pub const LOG_CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;
/// Kafka's `socket.request.max.bytes` default: the largest frame a client may send.
pub const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;
/// Per-shard batch cache for recent data.
pub const BATCH_CACHE_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;
/// Connections one shard keeps open at once unless `max_connections` says otherwise.
pub const MAX_CONNECTIONS_DEFAULT: usize = 100_000;
/// Where `/metrics` and the health endpoints are served (Redpanda's admin port).
pub const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:9644";
/// The `metrics_listen` value that turns the metrics listener off.
pub const METRICS_LISTEN_OFF: &str = "none";
/// Per-partition series (offsets, sizes, segments) are on unless turned off.
pub const METRICS_PER_PARTITION_DEFAULT: bool = true;
/// `producer.id.expiration.ms`: how long a partition keeps an idle producer's state.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 =
    crate::storage::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT;
/// Connections one shard keeps open at once from one IP address.
pub const MAX_CONNECTIONS_PER_IP_DEFAULT: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid listen address {0:?}: expected HOST:PORT, e.g. 127.0.0.1:9092")]
    Listen(String),
    #[error(
        "invalid metrics listen address {0:?}: expected HOST:PORT, e.g. 127.0.0.1:9644, or none"
    )]
    MetricsListen(String),
    #[error("invalid advertised listener {0:?}: expected NAME://HOST:PORT for a configured listener, or HOST:PORT")]
    AdvertisedListener(String),
    #[error(
        "invalid listener {0:?}: expected NAME://HOST:PORT, e.g. SASL_PLAINTEXT://127.0.0.1:9093"
    )]
    Listener(String),
    #[error("listener {0:?} is given twice")]
    DuplicateListener(String),
    #[error("listener {0:?} has no security protocol: name it PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, or map it with --listener-security-protocol-map")]
    ListenerProtocol(String),
    #[error("{0} listeners: at most {max} are supported", max = listeners::LISTENERS_MAX)]
    ListenerCount(usize),
    #[error("invalid listener security protocol map entry {0:?}: expected NAME:PROTOCOL with PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")]
    ProtocolMap(String),
    #[error("invalid SASL mechanism {0:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")]
    SaslMechanism(String),
    #[error("invalid --listener-sasl-mechanisms entry {0:?}: expected NAME:MECHANISM+MECHANISM with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")]
    ListenerSaslMechanisms(String),
    #[error("--listener-sasl-mechanisms names {0}, which is not a SASL listener")]
    ListenerSaslMechanismsListener(String),
    #[error("invalid --add-scram: {0}")]
    AddScram(String),
    #[error("invalid super user {0:?}: expected User:NAME")]
    SuperUser(String),
    #[error("invalid TLS settings: {0}")]
    Tls(String),
    #[error("listener {0} uses TLS: give --ssl-certificate and --ssl-key")]
    TlsMissing(String),
    #[error("invalid CPU list {0:?}: expected e.g. 0-3,6,8-9")]
    CpuList(String),
    #[error("invalid log format {0:?}: expected text or json")]
    LogFormat(String),
    #[error("--cpus and --numa-node cannot be used together")]
    CpusAndNumaNode,
    #[error("invalid --default-partitions {0}: must be at least 1")]
    DefaultPartitions(i32),
    #[error("invalid topic default: {0}")]
    TopicDefault(#[from] TopicConfigError),
    #[error("invalid topic default {0:?}: expected NAME=VALUE")]
    TopicDefaultSyntax(String),
    #[error("invalid cluster settings: {0}")]
    Cluster(String),
    #[error("invalid {name} {value}: {why}")]
    Value {
        name: &'static str,
        value: i64,
        why: &'static str,
    },
}

/// The settings a config file may hold. Every field is optional; flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    /// `NAME://HOST:PORT` listeners.
    pub listener: Option<Vec<String>>,
    pub listener_security_protocol_map: Option<String>,
    pub advertised_listener: Option<OneOrMany>,
    pub sasl_enabled_mechanisms: Option<String>,
    /// `NAME:MECHANISM+MECHANISM,...`: a listener's own mechanisms.
    pub listener_sasl_mechanisms: Option<String>,
    pub connection_failed_authentication_delay_ms: Option<u64>,
    /// KIP-368: longest SASL session before re-authentication (0: none).
    pub connections_max_reauth_ms: Option<u64>,
    /// `SCRAM-SHA-256=[name=admin,password=secret]` users made at start-up.
    pub add_scram: Option<Vec<String>>,
    pub super_users: Option<String>,
    pub authorizer: Option<bool>,
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    pub ssl_ca: Option<PathBuf>,
    /// `none`, `requested` or `required` (Kafka's `ssl.client.auth`).
    pub ssl_client_auth: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cpus: Option<String>,
    pub numa_node: Option<usize>,
    pub default_partitions: Option<i32>,
    pub auto_create_topics: Option<bool>,
    pub request_bytes_max: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub open_files_max: Option<u64>,
    pub batch_cache_bytes: Option<u64>,
    pub allow_buffered_io: Option<bool>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub group_initial_rebalance_delay_ms: Option<i32>,
    pub max_groups_per_shard: Option<usize>,
    pub offsets_retention_minutes: Option<i64>,
    pub retention_check_interval_ms: Option<u64>,
    pub partition_idle_close_ms: Option<u64>,
    pub producer_id_expiration_ms: Option<i64>,
    pub transaction_max_timeout_ms: Option<i32>,
    pub transactional_id_expiration_ms: Option<i64>,
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    pub log_cleaner_backoff_ms: Option<u64>,
    pub log_format: Option<String>,
    /// `HOST:PORT` of the metrics and health endpoints, or `none`.
    pub metrics_listen: Option<String>,
    pub metrics_per_partition: Option<bool>,
    /// Default topic configs with Kafka's names, e.g. `"retention.ms" = "86400000"`.
    pub topic_defaults: Option<BTreeMap<String, String>>,
    /// KRaft's `node.id`: this node in a cluster.
    pub node_id: Option<i32>,
    /// `1@HOST:PORT,2@HOST:PORT,...`: the controller quorum's inter-broker addresses.
    pub controller_quorum_voters: Option<String>,
    /// This node's inter-broker `HOST:PORT`.
    pub cluster_listen: Option<String>,
    pub default_replication_factor: Option<i16>,
    /// `offsets.topic.num.partitions`, used when the cluster forms.
    pub offsets_topic_num_partitions: Option<u32>,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: Option<i16>,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: Option<bool>,
}

/// A key that takes one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// How the log is written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<LogFormat, ConfigError> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::LogFormat(other.to_string())),
        }
    }
}

/// Where the executors run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSelection {
    AllOnline,
    List(Vec<usize>),
    NumaNode(usize),
}

/// The validated configuration of one broker process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every shard accepts on each; the first is the one `--listen` sets.
    pub listeners: Vec<ListenerConfig>,
    pub security: SecurityConfig,
    pub data_dir: PathBuf,
    pub cpus: CpuSelection,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub request_bytes_max: u32,
    /// Connections each shard keeps open at once (Kafka's `max.connections`,
    /// per shard here since each shard accepts on its own).
    pub max_connections: usize,
    /// Connections each shard keeps open at once from one IP address
    /// (Kafka's `max.connections.per.ip`, per shard like `max_connections`).
    pub max_connections_per_ip: usize,
    /// Open files the broker may hold (the soft RLIMIT_NOFILE); `None` means
    /// the hard limit. Start-up sets the limit and stores the value here.
    pub open_files_max: Option<u64>,
    pub batch_cache_bytes: u64,
    pub allow_buffered_io: bool,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_initial_rebalance_delay_ms: i32,
    /// Consumer groups each shard's coordinator holds at most.
    pub max_groups_per_shard: usize,
    pub offsets_retention_minutes: i64,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// How long an opened partition may go unused before its log closes,
    /// giving back its memory until its next use (0: never).
    pub partition_idle_close_ms: u64,
    /// How long a partition keeps an idle producer's state (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// The longest `transaction.timeout.ms` InitProducerId accepts (Kafka's
    /// `transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    /// How long the coordinator keeps a transactional id with no transaction
    /// open and no update (Kafka's `transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: i64,
    /// Bytes of each shard's cleaner offset map (`log.cleaner.dedupe.buffer.size`).
    pub log_cleaner_dedupe_buffer_size: u64,
    /// The cleaner's pause when nothing needs cleaning (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    pub log_format: LogFormat,
    /// Where `/metrics` and the health endpoints are served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `/metrics` has per-partition series (off for many partitions).
    pub metrics_per_partition: bool,
    /// Broker-wide topic config defaults; a topic's own configs override them.
    pub topic_defaults: TopicConfig,
    /// `None`: a single broker, as without cluster flags.
    pub cluster: Option<ClusterConfig>,
}

/// `HOST:PORT`, or `none` for no metrics listener.
fn metrics_listen(text: String) -> Result<Option<SocketAddr>, ConfigError> {
    if text.eq_ignore_ascii_case(METRICS_LISTEN_OFF) {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ConfigError::MetricsListen(text))
}

/// `--cpus` or `--numa-node` (not both), else every online CPU.
fn cpu_selection(
    cpus: Option<String>,
    numa_node: Option<usize>,
) -> Result<CpuSelection, ConfigError> {
    Ok(match (cpus, numa_node) {
        (Some(_), Some(_)) => return Err(ConfigError::CpusAndNumaNode),
        (Some(text), None) => CpuSelection::List(parse_cpu_list(&text)?),
        (None, Some(node)) => CpuSelection::NumaNode(node),
        (None, None) => CpuSelection::AllOnline,
    })
}

impl Config {
    /// Merges the file (if any) under the flags and validates the result.
    pub fn build(file: FileConfig, flags: FileConfig) -> Result<Config, ConfigError> {
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                flags
                    .$field
                    .clone()
                    .or(file.$field.clone())
                    .unwrap_or($default)
            };
        }
        let listeners = listeners::build_listeners(
            listeners::ListenerSettings {
                listen: flags.listen.clone().or(file.listen.clone()),
                listeners: pick!(listener, Vec::new()),
                protocol_map: flags
                    .listener_security_protocol_map
                    .clone()
                    .or(file.listener_security_protocol_map.clone()),
                advertised: flags
                    .advertised_listener
                    .clone()
                    .or(file.advertised_listener.clone())
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default(),
            },
            LISTEN_DEFAULT,
        )?;
        let security = security::build_security(security::SecuritySettings {
            sasl_enabled_mechanisms: flags
                .sasl_enabled_mechanisms
                .clone()
                .or(file.sasl_enabled_mechanisms.clone()),
            listener_sasl_mechanisms: flags
                .listener_sasl_mechanisms
                .clone()
                .or(file.listener_sasl_mechanisms.clone()),
            failed_authentication_delay_ms: flags
                .connection_failed_authentication_delay_ms
                .or(file.connection_failed_authentication_delay_ms),
            connections_max_reauth_ms: flags
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms),
            add_scram: pick!(add_scram, Vec::new()),
            super_users: flags.super_users.clone().or(file.super_users.clone()),
            authorizer: flags.authorizer.or(file.authorizer),
            ssl_certificate: flags
                .ssl_certificate
                .clone()
                .or(file.ssl_certificate.clone()),
            ssl_key: flags.ssl_key.clone().or(file.ssl_key.clone()),
            ssl_ca: flags.ssl_ca.clone().or(file.ssl_ca.clone()),
            ssl_client_auth: flags
                .ssl_client_auth
                .clone()
                .or(file.ssl_client_auth.clone()),
        })?;
        for name in security.listener_sasl_mechanisms.keys() {
            let sasl = listeners
                .iter()
                .any(|l| &l.name == name && l.protocol.uses_sasl());
            if !sasl {
                return Err(ConfigError::ListenerSaslMechanismsListener(name.clone()));
            }
        }
        if let Some(listener) = listeners.iter().find(|l| l.protocol.uses_tls()) {
            if security.tls.is_none() {
                return Err(ConfigError::TlsMissing(listener.name.clone()));
            }
        }
        let cpus = cpu_selection(
            flags.cpus.clone().or(file.cpus.clone()),
            flags.numa_node.or(file.numa_node),
        )?;
        let default_partitions = pick!(default_partitions, DEFAULT_PARTITIONS_DEFAULT);
        if default_partitions < 1 {
            return Err(ConfigError::DefaultPartitions(default_partitions));
        }
        let mut defaults = file.topic_defaults.clone().unwrap_or_default();
        defaults.extend(flags.topic_defaults.clone().unwrap_or_default());
        let topic_defaults = TopicConfig::defaults().with_overrides(&defaults)?;
        let config = Config {
            listeners,
            security,
            data_dir: pick!(data_dir, PathBuf::from(DATA_DIR_DEFAULT)),
            cpus,
            default_partitions,
            auto_create_topics: pick!(auto_create_topics, AUTO_CREATE_TOPICS_DEFAULT),
            request_bytes_max: pick!(request_bytes_max, REQUEST_BYTES_MAX_DEFAULT),
            max_connections: pick!(max_connections, MAX_CONNECTIONS_DEFAULT),
            max_connections_per_ip: pick!(max_connections_per_ip, MAX_CONNECTIONS_PER_IP_DEFAULT),
            open_files_max: flags.open_files_max.or(file.open_files_max),
            batch_cache_bytes: pick!(batch_cache_bytes, BATCH_CACHE_BYTES_DEFAULT),
            allow_buffered_io: pick!(allow_buffered_io, false),
            group_min_session_timeout_ms: pick!(
                group_min_session_timeout_ms,
                group::MIN_SESSION_TIMEOUT_MS_DEFAULT
            ),
            group_max_session_timeout_ms: pick!(
                group_max_session_timeout_ms,
                group::MAX_SESSION_TIMEOUT_MS_DEFAULT
            ),
            group_initial_rebalance_delay_ms: pick!(
                group_initial_rebalance_delay_ms,
                group::INITIAL_REBALANCE_DELAY_MS_DEFAULT
            ),
            max_groups_per_shard: pick!(max_groups_per_shard, group::MAX_GROUPS_PER_SHARD_DEFAULT),
            offsets_retention_minutes: pick!(
                offsets_retention_minutes,
                group::OFFSETS_RETENTION_MINUTES_DEFAULT
            ),
            retention_check_interval_ms: pick!(
                retention_check_interval_ms,
                RETENTION_CHECK_INTERVAL_MS_DEFAULT
            ),
            partition_idle_close_ms: pick!(
                partition_idle_close_ms,
                PARTITION_IDLE_CLOSE_MS_DEFAULT
            ),
            producer_id_expiration_ms: pick!(
                producer_id_expiration_ms,
                PRODUCER_ID_EXPIRATION_MS_DEFAULT
            ),
            transaction_max_timeout_ms: pick!(
                transaction_max_timeout_ms,
                crate::txn::coordinator::TRANSACTION_MAX_TIMEOUT_MS_DEFAULT
            ),
            transactional_id_expiration_ms: pick!(
                transactional_id_expiration_ms,
                crate::txn::coordinator::TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT
            ),
            log_cleaner_dedupe_buffer_size: pick!(
                log_cleaner_dedupe_buffer_size,
                LOG_CLEANER_DEDUPE_BUFFER_SIZE_DEFAULT
            ),
            log_cleaner_backoff_ms: pick!(log_cleaner_backoff_ms, LOG_CLEANER_BACKOFF_MS_DEFAULT),
            log_format: pick!(log_format, "text".to_string()).parse()?,
            metrics_listen: metrics_listen(pick!(
                metrics_listen,
                METRICS_LISTEN_DEFAULT.to_string()
            ))?,
            metrics_per_partition: pick!(metrics_per_partition, METRICS_PER_PARTITION_DEFAULT),
            topic_defaults,
            cluster: cluster::build_cluster(cluster::ClusterSettings {
                node_id: flags.node_id.or(file.node_id),
                voters: flags
                    .controller_quorum_voters
                    .clone()
                    .or(file.controller_quorum_voters.clone()),
                listen: flags.cluster_listen.clone().or(file.cluster_listen.clone()),
                default_replication_factor: flags
                    .default_replication_factor
                    .or(file.default_replication_factor),
                offsets_topic_num_partitions: flags
                    .offsets_topic_num_partitions
                    .or(file.offsets_topic_num_partitions),
                offsets_topic_replication_factor: flags
                    .offsets_topic_replication_factor
                    .or(file.offsets_topic_replication_factor),
                auto_leader_rebalance: flags
                    .auto_leader_rebalance_enable
                    .or(file.auto_leader_rebalance_enable),
            })?,
        };
        config.check_ranges()?;
        Ok(config)
    }

    fn check_ranges(&self) -> Result<(), ConfigError> {
        let check = |name: &'static str, value: i64, ok: bool, why: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Value { name, value, why })
            }
        };
        check(
            "request_bytes_max",
            self.request_bytes_max as i64,
            self.request_bytes_max >= 1024 && self.request_bytes_max <= i32::MAX as u32,
            "must be between 1024 and 2^31-1",
        )?;
        check(
            "max_connections",
            i64::try_from(self.max_connections).unwrap_or(i64::MAX),
            self.max_connections >= 1,
            "must be at least 1",
        )?;
        check(
            "max_connections_per_ip",
            i64::try_from(self.max_connections_per_ip).unwrap_or(i64::MAX),
            self.max_connections_per_ip >= 1,
            "must be at least 1",
        )?;
        check(
            "open_files_max",
            self.open_files_max
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            self.open_files_max.is_none_or(|n| n >= 256),
            "must be at least 256",
        )?;
        check(
            "group_min_session_timeout_ms",
            self.group_min_session_timeout_ms as i64,
            self.group_min_session_timeout_ms > 0
                && self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms,
            "must be positive and at most group_max_session_timeout_ms",
        )?;
        check(
            "group_initial_rebalance_delay_ms",
            self.group_initial_rebalance_delay_ms as i64,
            self.group_initial_rebalance_delay_ms >= 0,
            "must not be negative",
        )?;
        check(
            "max_groups_per_shard",
            i64::try_from(self.max_groups_per_shard).unwrap_or(i64::MAX),
            self.max_groups_per_shard >= 1,
            "must be at least 1",
        )?;
        check(
            "retention_check_interval_ms",
            self.retention_check_interval_ms as i64,
            self.retention_check_interval_ms >= 10,
            "must be at least 10",
        )?;
        check(
            "partition_idle_close_ms",
            i64::try_from(self.partition_idle_close_ms).unwrap_or(i64::MAX),
            self.partition_idle_close_ms == 0 || self.partition_idle_close_ms >= 10,
            "must be 0 (never) or at least 10",
        )?;
        check(
            "log_cleaner_backoff_ms",
            i64::try_from(self.log_cleaner_backoff_ms).unwrap_or(i64::MAX),
            self.log_cleaner_backoff_ms >= 10,
            "must be at least 10",
        )?;
        check(
            "offsets_retention_minutes",
            self.offsets_retention_minutes,
            self.offsets_retention_minutes > 0,
            "must be positive",
        )?;
        check(
            "producer_id_expiration_ms",
            self.producer_id_expiration_ms,
            self.producer_id_expiration_ms > 0,
            "must be positive",
        )?;
        check(
            "transaction_max_timeout_ms",
            i64::from(self.transaction_max_timeout_ms),
            self.transaction_max_timeout_ms > 0,
            "must be positive",
        )?;
        check(
            "transactional_id_expiration_ms",
            self.transactional_id_expiration_ms,
            self.transactional_id_expiration_ms > 0,
            "must be positive",
        )
    }
}

/// Parses `"0-3,6,8-9"` into sorted, distinct CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, ConfigError> {
    let bad = || ConfigError::CpuList(text.to_string());
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let cpu: usize = part.parse().map_err(|_| bad())?;
                (cpu, cpu)
            }
        };
        if first > last || last >= 4096 {
            return Err(bad());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err(bad());
    }
    Ok(cpus)
}

fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// Parses `NAME=VALUE` flags into a map.
pub fn parse_assignments(items: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| ConfigError::TopicDefaultSyntax(item.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn defaults_listen_on_localhost_9092_with_data_in_dot_data() {
        let config = Config::build(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:9092".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.listeners.len(), 1);
        assert!(!config.security.authorizer);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.cpus, CpuSelection::AllOnline);
        assert!(config.auto_create_topics);
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9644".parse::<SocketAddr>().unwrap())
        );
        assert!(config.metrics_per_partition);
    }

    #[test]
    fn metrics_listen_none_turns_the_endpoint_off_and_nonsense_is_refused() {
        let flags = FileConfig {
            metrics_listen: Some("none".into()),
            ..Default::default()
        };
        let config = Config::build(FileConfig::default(), flags).unwrap();
        assert_eq!(config.metrics_listen, None);
        let file: FileConfig =
            toml::from_str("metrics_listen = \"127.0.0.1:9700\"\nmetrics_per_partition = false")
                .unwrap();
        let config = Config::build(file, FileConfig::default()).unwrap();
        assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9700));
        assert!(!config.metrics_per_partition);
        let flags = FileConfig {
            metrics_listen: Some("localhost".into()),
            ..Default::default()
        };
        assert!(Config::build(FileConfig::default(), flags).is_err());
    }

    #[test]
    fn cpu_lists_parse_ranges_and_reject_nonsense() {
        assert_eq!(
            parse_cpu_list("0-3,6,8-9").unwrap(),
            vec![0, 1, 2, 3, 6, 8, 9]
        );
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn cluster_settings_come_from_the_file_too() {
        let file: FileConfig = toml::from_str(
            "node_id = 2\ncontroller_quorum_voters = \"1@127.0.0.1:9093,2@127.0.0.1:9193\"\n\
             cluster_listen = \"127.0.0.1:9193\"\ndefault_replication_factor = 2",
        )
        .unwrap();
        let config = Config::build(file, FileConfig::default()).unwrap();
        let cluster = config.cluster.expect("a cluster node");
        assert_eq!(cluster.node_id, 2);
        assert_eq!(cluster.voters.len(), 2);
        assert_eq!(cluster.listen.port(), 9193);
        assert_eq!(cluster.default_replication_factor, 2);
        let single = Config::build(FileConfig::default(), FileConfig::default()).unwrap();
        assert!(single.cluster.is_none());
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let flags = FileConfig {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let config = Config::build(file, flags).unwrap();
        assert_eq!(config.listeners[0].address.port(), 2);
    }

    #[test]
    fn transactional_id_expiration_comes_from_the_file_and_must_be_positive() {
        let defaults = Config::build(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(defaults.transactional_id_expiration_ms, 604_800_000);
        let file: FileConfig = toml::from_str("transactional_id_expiration_ms = 1500").unwrap();
        let config = Config::build(file, FileConfig::default()).unwrap();
        assert_eq!(config.transactional_id_expiration_ms, 1500);
        let file: FileConfig = toml::from_str("transactional_id_expiration_ms = 0").unwrap();
        assert!(Config::build(file, FileConfig::default()).is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        let flags = FileConfig {
            default_partitions: Some(0),
            ..Default::default()
        };
        assert!(Config::build(FileConfig::default(), flags).is_err());
        let flags = FileConfig {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        assert!(Config::build(FileConfig::default(), flags).is_err());
    }

    #[test]
    fn reauthentication_and_listener_mechanisms_come_from_the_file_too() {
        let file: FileConfig = toml::from_str(
            "listener = [\"SASL_PLAINTEXT://127.0.0.1:9093\"]\n\
             connections_max_reauth_ms = 600000\n\
             listener_sasl_mechanisms = \"SASL_PLAINTEXT:SCRAM-SHA-512\"",
        )
        .unwrap();
        let config = Config::build(file, FileConfig::default()).unwrap();
        assert_eq!(config.security.connections_max_reauth_ms, 600_000);
        assert_eq!(
            config.security.mechanisms_of("SASL_PLAINTEXT"),
            [crate::security::SaslMechanism::Scram(
                crate::security::ScramMechanism::Sha512
            )]
        );
        let flags = FileConfig {
            listener_sasl_mechanisms: Some("NOPE:PLAIN".into()),
            ..Default::default()
        };
        assert!(Config::build(FileConfig::default(), flags).is_err());
    }
}
