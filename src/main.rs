//! The `ringlog` command: `ringlog [serve] [flags]` runs the broker;
//! `ringlog topic|group|cluster ...` administers any Kafka-compatible cluster.

mod cli;
mod dev_cluster;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringlog::config::{parse_assignments, Config, FileConfig, LogFormat, OneOrMany};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringlog",
    version,
    about = "A Kafka-compatible event streaming broker, thread-per-core on io_uring",
    // Broker flags before an admin subcommand would be silently ignored.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve(Box<ServeArgs>),
    /// Run a local cluster of NODES broker processes and print their addresses.
    DevCluster(dev_cluster::DevClusterArgs),
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the PLAINTEXT listener [default: 127.0.0.1:9092 when no --listener is given].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// A listener, e.g. SASL_PLAINTEXT://0.0.0.0:9093 (repeatable).
    #[arg(long = "listener", value_name = "NAME://HOST:PORT")]
    listeners: Vec<String>,
    /// Security protocol of each listener name, e.g. CLIENT:SASL_SSL,INTERNAL:PLAINTEXT [default: each protocol's own name].
    #[arg(long, value_name = "NAME:PROTOCOL,...")]
    listener_security_protocol_map: Option<String>,
    /// Address given in metadata to clients of a listener (repeatable; a bare HOST:PORT is for the first listener) [default: the listener's address].
    #[arg(long = "advertised-listener", value_name = "NAME://HOST:PORT")]
    advertised_listeners: Vec<String>,
    /// SASL mechanisms offered on SASL listeners [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, value_name = "LIST")]
    sasl_enabled_mechanisms: Option<String>,
    /// SASL mechanisms of one listener, e.g. CLIENT:SCRAM-SHA-512,INTERNAL:PLAIN+SCRAM-SHA-256 [default: --sasl-enabled-mechanisms].
    #[arg(long, value_name = "NAME:MECHANISM+...,...")]
    listener_sasl_mechanisms: Option<String>,
    /// Longest SASL session before the client must re-authenticate (KIP-368); 0 for no limit [default: 0].
    #[arg(long, value_name = "MS")]
    connections_max_reauth_ms: Option<u64>,
    /// Delay before a failed authentication is answered [default: 100].
    #[arg(long, value_name = "MS")]
    connection_failed_authentication_delay_ms: Option<u64>,
    /// A SCRAM user made at start-up if absent, e.g. 'SCRAM-SHA-256=[name=admin,password=secret]' (repeatable).
    #[arg(long = "add-scram", value_name = "CREDENTIAL")]
    add_scram: Vec<String>,
    /// Principals allowed everything, e.g. 'User:admin;User:ops'.
    #[arg(long, value_name = "PRINCIPALS")]
    super_users: Option<String>,
    /// Enforce ACLs; resources without ACLs are then denied [default: false].
    #[arg(long, value_name = "BOOL")]
    authorizer: Option<bool>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners.
    #[arg(long, value_name = "FILE")]
    ssl_certificate: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, value_name = "FILE")]
    ssl_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    ssl_ca: Option<PathBuf>,
    /// Client certificates: none, requested or required [default: none].
    #[arg(long, value_name = "MODE")]
    ssl_client_auth: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// CPUs to run shards on, e.g. 0-3,8 [default: all online CPUs].
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// Run one shard on each CPU of this NUMA node.
    #[arg(long, value_name = "N")]
    numa_node: Option<usize>,
    /// Partitions of auto-created topics (Kafka's num.partitions) [default: 1].
    #[arg(long, value_name = "N")]
    default_partitions: Option<i32>,
    /// Create topics on first use in Metadata requests [default: true].
    #[arg(long, value_name = "BOOL")]
    auto_create_topics: Option<bool>,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 104857600].
    #[arg(long, value_name = "BYTES")]
    request_bytes_max: Option<u32>,
    /// Connections each shard keeps open at once on each listener (max.connections) [default: 100000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Connections each shard keeps open at once from one IP address (max.connections.per.ip) [default: 100000].
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Open files the broker may hold; the soft RLIMIT_NOFILE is set to it [default: the hard limit].
    #[arg(long, value_name = "N")]
    open_files_max: Option<u64>,
    /// Per-shard cache of recent record batches [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    batch_cache_bytes: Option<u64>,
    /// Allow buffered I/O where O_DIRECT is unavailable (development only).
    #[arg(long)]
    allow_buffered_io: bool,
    /// Default topic config with Kafka's name, e.g. retention.ms=86400000 (repeatable).
    #[arg(long = "topic-default", value_name = "NAME=VALUE")]
    topic_defaults: Vec<String>,
    /// Smallest session timeout a consumer may ask for [default: 6000].
    #[arg(long, value_name = "MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a consumer may ask for [default: 1800000].
    #[arg(long, value_name = "MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// Delay before the first rebalance of a new group [default: 3000].
    #[arg(long, value_name = "MS")]
    group_initial_rebalance_delay_ms: Option<i32>,
    /// Consumer groups each shard's coordinator holds at most; a new group beyond is refused (GROUP_MAX_SIZE_REACHED) [default: 100000].
    #[arg(long, value_name = "N")]
    max_groups_per_shard: Option<usize>,
    /// How long offsets of an empty group are kept [default: 10080].
    #[arg(long, value_name = "MINUTES")]
    offsets_retention_minutes: Option<i64>,
    /// How often retention runs (log.retention.check.interval.ms) [default: 300000].
    #[arg(long, value_name = "MS")]
    retention_check_interval_ms: Option<u64>,
    /// Close an opened partition's log after this long unused, giving back its memory; its next read or write opens it again (0: never) [default: 600000].
    #[arg(long, value_name = "MS")]
    partition_idle_close_ms: Option<u64>,
    /// Serve /metrics and /health/{live,ready} here, or `none` [default: 127.0.0.1:9644].
    #[arg(long, value_name = "HOST:PORT|none")]
    metrics_listen: Option<String>,
    /// Export per-partition series (offsets, size, segments, traffic in and out) [default: true].
    #[arg(long, value_name = "BOOL")]
    metrics_per_partition: Option<bool>,
    /// How long a partition keeps an idle producer's state (producer.id.expiration.ms) [default: 86400000].
    #[arg(long, value_name = "MS")]
    producer_id_expiration_ms: Option<i64>,
    /// Longest transaction.timeout.ms a transactional producer may ask for
    /// (transaction.max.timeout.ms) [default: 900000].
    #[arg(long, value_name = "MS")]
    transaction_max_timeout_ms: Option<i32>,
    /// How long the transaction coordinator keeps a transactional id with no
    /// transaction open and no update (transactional.id.expiration.ms)
    /// [default: 604800000].
    #[arg(long, value_name = "MS")]
    transactional_id_expiration_ms: Option<i64>,
    /// Memory of each shard's log cleaner for its key -> offset map, in bytes
    /// (log.cleaner.dedupe.buffer.size) [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    log_cleaner_dedupe_buffer_size: Option<u64>,
    /// How long the log cleaner waits when no compacted partition needs
    /// cleaning (log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, value_name = "MS")]
    log_cleaner_backoff_ms: Option<u64>,
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line) [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// This node's id in a cluster (KRaft's node.id); needs the other two cluster flags.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// The controller quorum: each voter's id and inter-broker address, e.g. 1@127.0.0.1:9093,2@127.0.0.1:9193.
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum_voters: Option<String>,
    /// This node's inter-broker address (its own port).
    #[arg(long, value_name = "HOST:PORT")]
    cluster_listen: Option<String>,
    /// Replicas of a topic created without a replication factor (default.replication.factor) [default: 1].
    #[arg(long, value_name = "N")]
    default_replication_factor: Option<i16>,
    /// Partitions of the internal __consumer_offsets topic, fixed when the cluster forms (offsets.topic.num.partitions) [default: 8].
    #[arg(long, value_name = "N")]
    offsets_topic_num_partitions: Option<u32>,
    /// Replicas of __consumer_offsets, at most the voters (offsets.topic.replication.factor) [default: 3].
    #[arg(long, value_name = "N")]
    offsets_topic_replication_factor: Option<i16>,
    /// Preferred replicas take back the leadership of their partitions on their own (auto.leader.rebalance.enable) [default: true].
    #[arg(long, value_name = "BOOL")]
    auto_leader_rebalance_enable: Option<bool>,
}

/// Exit code for a configuration the broker refuses to start with.
const EXIT_INVALID_CONFIG: u8 = 2;

fn load(args: ServeArgs) -> Result<Config, String> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let topic_defaults = if args.topic_defaults.is_empty() {
        None
    } else {
        Some(parse_assignments(&args.topic_defaults).map_err(|e| e.to_string())?)
    };
    let flags = FileConfig {
        listen: args.listen,
        listener: (!args.listeners.is_empty()).then_some(args.listeners),
        listener_security_protocol_map: args.listener_security_protocol_map,
        advertised_listener: (!args.advertised_listeners.is_empty())
            .then_some(OneOrMany::Many(args.advertised_listeners)),
        sasl_enabled_mechanisms: args.sasl_enabled_mechanisms,
        listener_sasl_mechanisms: args.listener_sasl_mechanisms,
        connection_failed_authentication_delay_ms: args.connection_failed_authentication_delay_ms,
        connections_max_reauth_ms: args.connections_max_reauth_ms,
        add_scram: (!args.add_scram.is_empty()).then_some(args.add_scram),
        super_users: args.super_users,
        authorizer: args.authorizer,
        ssl_certificate: args.ssl_certificate,
        ssl_key: args.ssl_key,
        ssl_ca: args.ssl_ca,
        ssl_client_auth: args.ssl_client_auth,
        data_dir: args.data_dir,
        cpus: args.cpus,
        numa_node: args.numa_node,
        default_partitions: args.default_partitions,
        auto_create_topics: args.auto_create_topics,
        request_bytes_max: args.request_bytes_max,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        open_files_max: args.open_files_max,
        batch_cache_bytes: args.batch_cache_bytes,
        allow_buffered_io: args.allow_buffered_io.then_some(true),
        group_min_session_timeout_ms: args.group_min_session_timeout_ms,
        group_max_session_timeout_ms: args.group_max_session_timeout_ms,
        group_initial_rebalance_delay_ms: args.group_initial_rebalance_delay_ms,
        max_groups_per_shard: args.max_groups_per_shard,
        offsets_retention_minutes: args.offsets_retention_minutes,
        retention_check_interval_ms: args.retention_check_interval_ms,
        partition_idle_close_ms: args.partition_idle_close_ms,
        producer_id_expiration_ms: args.producer_id_expiration_ms,
        transaction_max_timeout_ms: args.transaction_max_timeout_ms,
        transactional_id_expiration_ms: args.transactional_id_expiration_ms,
        log_cleaner_dedupe_buffer_size: args.log_cleaner_dedupe_buffer_size,
        log_cleaner_backoff_ms: args.log_cleaner_backoff_ms,
        log_format: args.log_format,
        metrics_listen: args.metrics_listen,
        metrics_per_partition: args.metrics_per_partition,
        topic_defaults,
        node_id: args.node_id,
        controller_quorum_voters: args.controller_quorum_voters,
        cluster_listen: args.cluster_listen,
        default_replication_factor: args.default_replication_factor,
        offsets_topic_num_partitions: args.offsets_topic_num_partitions,
        offsets_topic_replication_factor: args.offsets_topic_replication_factor,
        auto_leader_rebalance_enable: args.auto_leader_rebalance_enable,
    };
    Config::build(file, flags).map_err(|e| e.to_string())
}

/// Logs to stderr at `RUST_LOG`'s level (default info), in `format`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour escapes only where a person reads them: a file or a
        // journal gets plain text (and NO_COLOR is honoured).
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Admin(command)) => return cli::run(command),
        Some(Command::DevCluster(args)) => return dev_cluster::run(args),
        None => cli.serve,
    };
    let config = match load(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ringlog: {message}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    init_logging(config.log_format);
    match ringlog::shard::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            error @ (ringlog::shard::runtime::StartError::Placement(_)
            | ringlog::shard::runtime::StartError::GroupShards { .. }),
        ) => {
            eprintln!("ringlog: {error}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
        Err(error) => {
            eprintln!("ringlog: {error}");
            ExitCode::FAILURE
        }
    }
}
