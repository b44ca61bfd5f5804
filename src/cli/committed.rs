//! A group's committed offsets: OffsetFetch to read them and OffsetCommit
//! to write them, as a member (its generation and id) or as a standalone
//! client (generation -1, no member id), which Kafka accepts only while the
//! group has no members.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestTopic};
use kafka_protocol::protocol::StrBytes;

use super::error::{check, CliError};
use super::session::{group_id, topic_name, versions, Session, Target};

/// OffsetFetch's "nothing committed" and OffsetCommit's "no generation".
pub const NO_OFFSET: i64 = -1;
const NO_GENERATION: i32 = -1;
/// OffsetCommit v2-v4: keep the offsets as long as the broker's retention says.
const RETENTION_BROKER_DEFAULT: i64 = -1;
const NO_LEADER_EPOCH: i32 = -1;

/// (topic, partition) -> offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// What `group` has committed: for `topics` (topic -> partitions), or
/// every partition it has an offset for when `None`. Partitions without an
/// offset are left out.
pub fn fetch(
    session: &mut Session,
    coordinator: i32,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<Offsets, CliError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        }));
    let response = session.call(Target::Node(coordinator), versions::OFFSET_FETCH, |_| {
        request
    })?;
    check(response.error_code, None, || {
        format!("committed offsets of group {group}")
    })?;
    let mut offsets = Offsets::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(partition.error_code, None, || {
                format!(
                    "committed offset of group {group} on {}/{}",
                    topic.name.0, partition.partition_index
                )
            })?;
            if partition.committed_offset != NO_OFFSET {
                offsets.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// Who commits: a member's generation and id, or a client outside the group.
#[derive(Debug, Clone, Copy)]
pub struct Generation<'a> {
    pub id: i32,
    pub member_id: &'a str,
}

/// Commits `offsets` for `group` as a client outside the group.
pub fn commit(
    session: &mut Session,
    coordinator: i32,
    group: &str,
    offsets: &Offsets,
) -> Result<(), CliError> {
    let outside = Generation {
        id: NO_GENERATION,
        member_id: "",
    };
    commit_as(session, coordinator, group, offsets, outside)
}

/// Commits `offsets` for `group` under `generation`.
pub fn commit_as(
    session: &mut Session,
    coordinator: i32,
    group: &str,
    offsets: &Offsets,
    generation: Generation<'_>,
) -> Result<(), CliError> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(NO_LEADER_EPOCH)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation.id)
        .with_member_id(StrBytes::from_string(generation.member_id.to_string()))
        .with_retention_time_ms(RETENTION_BROKER_DEFAULT)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = session.call(Target::Node(coordinator), versions::OFFSET_COMMIT, |_| {
        request
    })?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(partition.error_code, None, || {
                format!(
                    "committing group {group}'s offset on {}/{}",
                    topic.name.0, partition.partition_index
                )
            })?;
        }
    }
    Ok(())
}
