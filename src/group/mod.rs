//! The consumer-group coordinator (classic protocol) and the committed-offset store.
//!
//! Each group lives on one shard, `shard_for_group(group_id, shards)`; the
//! broker routes every group request there. A [`GroupCoordinator`] is owned
//! by that shard's executor (`!Send`, shared as `Rc`), keeps its groups in
//! memory and persists offsets and group facts in a durable log in its own
//! directory (`<data>/__groups/shard-<n>`).
//!
//! The broker decodes requests with `kafka-protocol`, fills the requests of
//! [`api`] from them (each flag and field as the request's version has it),
//! and maps the answers back to the wire. Nothing here knows a protocol
//! version or a wire type:
//!
//! ```ignore
//! GroupCoordinator::open(dir, GroupConfig) -> Result<Rc<GroupCoordinator>, GroupLogError>
//! c.join_group(JoinRequest) -> JoinAnswer                     // held until the rebalance completes
//! c.sync_group(SyncRequest) -> SyncAnswer                     // followers wait for the leader
//! c.heartbeat(HeartbeatRequest) -> Result<(), GroupError>
//! c.leave_group(LeaveRequest) -> LeaveAnswer                  // an outcome per member
//! c.offset_commit(CommitRequest, &dyn TopicCatalog) -> Vec<TopicOutcome>  // answered once durable
//! c.offset_delete(DeleteOffsetsRequest) -> DeleteOffsetsAnswer
//! c.txn_offset_commit(TxnCommitRequest, &dyn TopicCatalog) -> Vec<TopicOutcome>  // pending until the marker
//! c.complete_txn(group_id, producer_id, commit) -> Result<(), GroupLogError>      // the marker
//! // multi-group APIs: the broker splits by owning shard and merges the answers
//! c.describe_group(group_id) -> GroupDescription
//! c.delete_group(group_id) -> Result<(), GroupError>
//! c.list_groups(states_filter, types_filter) -> Vec<ListedGroup>
//! c.offset_fetch_group(&FetchRequest) -> FetchedGroup
//! c.remove_topic(topic)                                       // topic deleted: drop its offsets
//! c.expire_offsets(now_ms) -> usize                           // also run by a timer
//! c.close() -> Result<(), GroupLogError>                              // flush and compact the log
//! c.group_state(id) / c.group_count() / c.log_stats()         // for metrics and tests
//! shard_for_group(group_id, shards) -> usize                  // which shard owns a group
//! GroupLogError::group_error() -> GroupError                          // what a failed request gets
//! ```
//!
//! Every async method may be dropped half-way (a closed connection): writes
//! already ordered still become durable and memory still follows them. A
//! member whose held JoinGroup or SyncGroup was dropped stays in the group
//! until the rebalance completes and its session then times out, as in Kafka.
//!
//! `join_group` takes the request header's client id and the peer address
//! ([`ClientInfo`]) because DescribeGroups reports them and Kafka derives the
//! member id from the client id.
//!
//! FindCoordinator is answered by the broker itself: alone it coordinates
//! every group; in a cluster the leader of the group's offsets partition does.
//!
//! In a cluster the log is the internal offsets topic
//! ([`GroupCoordinator::in_partitions`]): each shard's coordinator holds the
//! groups of the offsets partitions it leads, loaded by
//! [`GroupCoordinator::load_partition`] from the partition's committed
//! records and dropped by [`GroupCoordinator::unload_partition`]; requests
//! for other groups are refused ([`GroupCoordinator::refusal`]).
//!
//! # Layout
//!
//! - `api`: the requests and answers of the APIs above.
//! - `coordinator`: the membership and admin APIs, the state machine's transitions and timers.
//! - `offsets`: OffsetCommit/Fetch/Delete, topic removal and expiry.
//! - `txn_offsets`: TxnOffsetCommit's pending offsets, applied or dropped
//!   when their transaction's marker reaches the group.
//! - `state`: a group's members, states and protocol selection.
//! - `log`: the durable key/value log with group commit and compaction; in a
//!   cluster its records go to the offsets topic (`log::partition`).
//! - `record`: the binary encoding of the log's keys and values.
//! - `error`: the module's error types: refusals ([`GroupError`]) and failures ([`GroupLogError`]).

pub mod api;
mod coordinator;
mod error;
pub(crate) mod log;
mod offsets;
pub(crate) mod record;
mod state;
mod txn_offsets;

#[cfg(test)]
pub(crate) mod tests;

pub use api::*;
pub use coordinator::{GroupCoordinator, Load};
pub use error::{GroupError, GroupLogError};
pub use log::{GroupLogStats, OffsetsPartitions};
pub use offsets::NO_OFFSET;
pub use state::GroupState;

/// Longest group id accepted; longer ones get INVALID_GROUP_ID.
pub const GROUP_ID_BYTES_MAX: usize = 4096;
/// Longest OffsetCommit metadata that may be configured.
pub const OFFSET_METADATA_BYTES_LIMIT: usize = 64 << 10;
/// Most members (including those completing the member-id round trip) a
/// group may be configured to hold.
pub const GROUP_SIZE_LIMIT: usize = 100_000;

const _: () =
    assert!(GROUP_ID_BYTES_MAX + OFFSET_METADATA_BYTES_LIMIT + 1024 < log::RECORD_BYTES_MAX);

/// Kafka's defaults for the group settings a broker operator may change.
pub const INITIAL_REBALANCE_DELAY_MS_DEFAULT: i32 = 3_000;
pub const MIN_SESSION_TIMEOUT_MS_DEFAULT: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS_DEFAULT: i32 = 1_800_000;
pub const OFFSETS_RETENTION_MINUTES_DEFAULT: i64 = 10_080;
/// Groups one shard's coordinator holds at most (`--max-groups-per-shard`).
pub const MAX_GROUPS_PER_SHARD_DEFAULT: usize = 100_000;

/// The coordinator's settings (Kafka's names in the comments).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// group.initial.rebalance.delay.ms: how long the first rebalance of an
    /// empty group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// group.min.session.timeout.ms
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub max_session_timeout_ms: i32,
    /// group.max.size
    pub max_group_size: usize,
    /// Groups this coordinator holds at most; a new one beyond is refused.
    pub max_groups: usize,
    /// offsets.retention.minutes, in milliseconds.
    pub offsets_retention_ms: i64,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_interval_ms: u64,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: usize,
    /// Compact the log once it holds this many bytes (and at least half is dead).
    pub log_compact_bytes: u64,
    /// ... or this many records.
    pub log_compact_records: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: INITIAL_REBALANCE_DELAY_MS_DEFAULT as u64,
            min_session_timeout_ms: MIN_SESSION_TIMEOUT_MS_DEFAULT,
            max_session_timeout_ms: MAX_SESSION_TIMEOUT_MS_DEFAULT,
            max_group_size: 1_000,
            max_groups: MAX_GROUPS_PER_SHARD_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MINUTES_DEFAULT * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            log_compact_bytes: 16 << 20,
            log_compact_records: 100_000,
        }
    }
}

impl GroupConfig {
    pub fn validate(&self) -> Result<(), GroupLogError> {
        let fail = |what: &str| Err(GroupLogError::Config(what.to_string()));
        if self.min_session_timeout_ms <= 0
            || self.min_session_timeout_ms > self.max_session_timeout_ms
        {
            return fail("need 0 < min_session_timeout_ms <= max_session_timeout_ms");
        }
        if self.max_group_size == 0 || self.max_group_size > GROUP_SIZE_LIMIT {
            return fail("max_group_size must be in 1..=GROUP_SIZE_LIMIT");
        }
        if self.offsets_retention_ms <= 0 {
            return fail("offsets_retention_ms must be positive");
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return fail("offsets_retention_check_interval_ms must be positive");
        }
        if self.offset_metadata_max_bytes > OFFSET_METADATA_BYTES_LIMIT {
            return fail("offset_metadata_max_bytes is above OFFSET_METADATA_BYTES_LIMIT");
        }
        if self.log_compact_bytes == 0 || self.log_compact_records == 0 {
            return fail("log compaction thresholds must be positive");
        }
        Ok(())
    }
}

/// What the coordinator needs to know of topics: OffsetCommit to an unknown
/// topic or partition gets UNKNOWN_TOPIC_OR_PARTITION.
pub trait TopicCatalog {
    fn partition_count(&self, topic: &str) -> Option<i32>;
}

/// The request header's client id and the peer's address.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

/// The shard that owns `group_id`. Stable across restarts and builds (CRC-32C,
/// not a seeded hasher): each shard's log holds only its own groups, so the
/// shard count must not change between runs over the same data directory.
pub fn shard_for_group(group_id: &str, shards: usize) -> usize {
    debug_assert!(shards > 0);
    crc32c::crc32c(group_id.as_bytes()) as usize % shards.max(1)
}

/// The internal topic that holds committed offsets and group facts in a
/// cluster (Kafka's name).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The offsets partition of `group_id`, Kafka's `abs(hash(group)) % partitions`
/// with CRC-32C as the hash (stable across builds and restarts; the
/// partition count is fixed when the cluster forms).
pub fn partition_for_group(group_id: &str, partitions: u32) -> u32 {
    crc32c::crc32c(group_id.as_bytes()) % partitions.max(1)
}

/// Group ids of the membership APIs (JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup) must be non-empty; the offset and admin APIs accept the empty
/// id, as Kafka does. Either way the length is bounded.
pub fn validate_group_id(group_id: &str, membership: bool) -> Result<(), GroupError> {
    if (membership && group_id.is_empty()) || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(())
}
