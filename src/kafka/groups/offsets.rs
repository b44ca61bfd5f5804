//! OffsetCommit, OffsetFetch and OffsetDelete between the wire and the
//! coordinator's types. OffsetFetch v1-7 name one group at the top level;
//! v8+ a list of groups, each answered on its owner shard.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{error_code, non_empty, str_bytes};
use crate::group::{self, GroupError, NO_OFFSET};
use crate::ids::PartitionId;
use crate::storage::Offset;

/// KIP-211: OffsetCommit v5 dropped the request's own retention time.
const COMMIT_RETENTION_VERSION_MAX: i16 = 4;
/// `retention_time_ms` meaning "use the broker's retention" (OffsetCommit v2-4).
const DEFAULT_RETENTION: i64 = -1;
/// OffsetFetch v8 carries a list of groups.
const FETCH_GROUPS_VERSION: i16 = 8;
/// OffsetFetch v2 adds the top-level error code.
const FETCH_TOP_LEVEL_ERROR_VERSION: i16 = 2;

pub fn commit_request(body: OffsetCommitRequest, version: i16) -> group::CommitRequest {
    let retention_ms = (version <= COMMIT_RETENTION_VERSION_MAX
        && body.retention_time_ms != DEFAULT_RETENTION)
        .then_some(body.retention_time_ms);
    let topics = body
        .topics
        .into_iter()
        .map(|t| group::CommittedTopic {
            name: t.name.to_string(),
            partitions: t
                .partitions
                .into_iter()
                .map(|p| group::CommittedPartition {
                    partition: PartitionId(p.partition_index),
                    offset: Offset(p.committed_offset),
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.map(|m| m.to_string()),
                })
                .collect(),
        })
        .collect();
    group::CommitRequest {
        group_id: body.group_id.to_string(),
        // v9 (KIP-848) names it the member epoch; for classic groups it is the generation.
        generation_id: body.generation_id_or_member_epoch,
        member_id: body.member_id.to_string(),
        group_instance_id: non_empty(body.group_instance_id),
        retention_ms,
        topics,
    }
}

pub fn commit_response(outcomes: Vec<group::TopicOutcome>) -> OffsetCommitResponse {
    let topics = wire_topics(
        outcomes,
        |index, code| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        },
        |name, partitions| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    OffsetCommitResponse::default().with_topics(topics)
}

/// Per-partition outcomes in a response's own topic and partition types.
/// The partitions an OffsetCommit names, to answer each when the group's
/// coordinator cannot be reached.
pub fn committed_partitions(commit: &group::CommitRequest) -> Vec<group::TopicPartitions> {
    partitions_of(&commit.topics)
}

/// The partitions of committed topics, by topic.
pub fn partitions_of(topics: &[group::CommittedTopic]) -> Vec<group::TopicPartitions> {
    topics
        .iter()
        .map(|t| group::TopicPartitions {
            name: t.name.clone(),
            partitions: t.partitions.iter().map(|p| p.partition).collect(),
        })
        .collect()
}

/// `error` for every partition of `topics`.
pub fn every_partition(
    topics: Vec<group::TopicPartitions>,
    error: GroupError,
) -> Vec<group::TopicOutcome> {
    topics
        .into_iter()
        .map(|t| group::TopicOutcome {
            name: t.name,
            partitions: t
                .partitions
                .into_iter()
                .map(|partition| group::PartitionOutcome {
                    partition,
                    error: Some(error),
                })
                .collect(),
        })
        .collect()
}

fn wire_topics<T, P>(
    outcomes: Vec<group::TopicOutcome>,
    partition: impl Fn(i32, i16) -> P,
    topic: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    outcomes
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| partition(p.partition.get(), error_code(p.error)))
                .collect();
            topic(TopicName(StrBytes::from_string(t.name)), partitions)
        })
        .collect()
}

/// The groups of an OffsetFetch in the v8+ shape: v1-7 name one group at the
/// top level.
pub fn fetch_request_groups(
    request: &OffsetFetchRequest,
    version: i16,
) -> Vec<OffsetFetchRequestGroup> {
    if version >= FETCH_GROUPS_VERSION {
        return request.groups.clone();
    }
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| {
                OffsetFetchRequestTopics::default()
                    .with_name(t.name.clone())
                    .with_partition_indexes(t.partition_indexes.clone())
            })
            .collect()
    });
    vec![OffsetFetchRequestGroup::default()
        .with_group_id(request.group_id.clone())
        .with_topics(topics)]
}

pub fn fetch_request(wire: &OffsetFetchRequestGroup, require_stable: bool) -> group::FetchRequest {
    let topics = wire.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| group::TopicPartitions {
                name: t.name.to_string(),
                partitions: t
                    .partition_indexes
                    .iter()
                    .copied()
                    .map(PartitionId)
                    .collect(),
            })
            .collect()
    });
    group::FetchRequest {
        group_id: wire.group_id.to_string(),
        topics,
        require_stable,
    }
}

/// A group of an OffsetFetch split into the request with the topics
/// `allowed` admits and the named topics it does not.
pub fn split_fetch_topics(
    wire: &OffsetFetchRequestGroup,
    allowed: impl Fn(&str) -> bool,
) -> (OffsetFetchRequestGroup, Vec<OffsetFetchRequestTopics>) {
    let mut kept = wire.clone();
    let Some(topics) = kept.topics.take() else {
        return (kept, Vec::new());
    };
    let (admitted, refused) = topics.into_iter().partition(|t| allowed(t.name.as_str()));
    kept.topics = Some(admitted);
    (kept, refused)
}

/// TOPIC_AUTHORIZATION_FAILED for each partition of `topics`, with no offset.
pub fn unauthorized_fetch_topics(
    topics: &[OffsetFetchRequestTopics],
) -> Vec<OffsetFetchResponseTopics> {
    let code = super::response_error(GroupError::TopicAuthorizationFailed).code();
    topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(NO_OFFSET.get())
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(str_bytes("")))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect()
}

/// One group's answer in the v8+ shape; requested topics keep their topic ids.
pub fn fetch_response_group(
    wire: &OffsetFetchRequestGroup,
    answer: group::FetchedGroup,
) -> OffsetFetchResponseGroup {
    let requested = wire.topics.iter().flatten();
    let mut topic_ids = requested.map(|t| t.topic_id);
    let topics = answer
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p.partition.get())
                        .with_committed_offset(p.offset.get())
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(t.name)))
                .with_topic_id(topic_ids.next().unwrap_or_default())
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(answer.group_id)))
        .with_error_code(error_code(answer.error))
        .with_topics(topics)
}

/// The OffsetFetch response for `version` from the per-group answers (in request order).
pub fn fetch_response(
    request: &OffsetFetchRequest,
    groups: Vec<OffsetFetchResponseGroup>,
    version: i16,
) -> OffsetFetchResponse {
    if version >= FETCH_GROUPS_VERSION {
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let Some(group) = groups.into_iter().next() else {
        return OffsetFetchResponse::default();
    };
    let topics = if version < FETCH_TOP_LEVEL_ERROR_VERSION && group.error_code != 0 {
        // v0-1 have no top-level error: every requested partition carries it.
        refused_partitions(request, group.error_code)
    } else {
        group.topics.into_iter().map(single_group_topic).collect()
    };
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(group.error_code)
}

fn single_group_topic(topic: OffsetFetchResponseTopics) -> OffsetFetchResponseTopic {
    let partitions = topic
        .partitions
        .into_iter()
        .map(|p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_committed_offset(p.committed_offset)
                .with_committed_leader_epoch(p.committed_leader_epoch)
                .with_metadata(p.metadata)
                .with_error_code(p.error_code)
        })
        .collect();
    OffsetFetchResponseTopic::default()
        .with_name(topic.name)
        .with_partitions(partitions)
}

fn refused_partitions(
    request: &OffsetFetchRequest,
    error_code: i16,
) -> Vec<OffsetFetchResponseTopic> {
    request
        .topics
        .iter()
        .flatten()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(NO_OFFSET.get())
                        .with_metadata(Some(str_bytes("")))
                        .with_error_code(error_code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}

pub fn delete_request(body: OffsetDeleteRequest) -> group::DeleteOffsetsRequest {
    let topics = body
        .topics
        .into_iter()
        .map(|t| group::TopicPartitions {
            name: t.name.to_string(),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionId(p.partition_index))
                .collect(),
        })
        .collect();
    group::DeleteOffsetsRequest {
        group_id: body.group_id.to_string(),
        topics,
    }
}

pub fn delete_response(answer: group::DeleteOffsetsAnswer) -> OffsetDeleteResponse {
    let topics = wire_topics(
        answer.topics,
        |index, code| {
            OffsetDeleteResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        },
        |name, partitions| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    OffsetDeleteResponse::default()
        .with_error_code(error_code(answer.error))
        .with_topics(topics)
}
