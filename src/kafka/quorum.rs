//! DescribeQuorum (KIP-595, KIP-836): the controller quorum's Raft state,
//! as this broker's voter sees it: leader, epoch (the Raft term), high
//! watermark (entries committed) and each voter's log end where known
//! (the leader tracks every voter; a follower knows only its own). A
//! single broker is its own quorum of one, with an empty metadata log.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::authorize::require_cluster;
use super::{Outcome, Request, NODE_ID};
use crate::cluster::consensus::{QuorumState, Voter};
use crate::cluster::CONTROLLER_DIR;
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::run_on;
use crate::shard::{Shard, METADATA_SHARD};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

/// KRaft's metadata log: the one topic partition DescribeQuorum describes.
const METADATA_PARTITION: i32 = 0;
/// Kafka's "not known" for offsets and timestamps.
const UNKNOWN: i64 = -1;

/// The quorum from the controller on the metadata shard; `None` while it
/// has not started.
async fn quorum(shard: &Rc<Shard>) -> Option<QuorumState> {
    if shard.cluster.is_none() {
        return Some(QuorumState {
            leader: Some(NODE_ID),
            term: 0,
            high_watermark: 0,
            voters: vec![Voter {
                node: NODE_ID,
                log_end: Some(0),
            }],
        });
    }
    run_on(shard, METADATA_SHARD, |s| async move {
        let controller = s.cluster.as_ref().and_then(|c| c.controller())?;
        Some(controller.quorum())
    })
    .await
    .ok()
    .flatten()
}

fn described(index: i32, quorum: &QuorumState) -> PartitionData {
    let voters = quorum
        .voters
        .iter()
        .map(|v| {
            ReplicaState::default()
                .with_replica_id(BrokerId(v.node))
                .with_log_end_offset(v.log_end.map_or(UNKNOWN, |end| end as i64))
                .with_last_fetch_timestamp(UNKNOWN)
                .with_last_caught_up_timestamp(UNKNOWN)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(quorum.leader.unwrap_or(-1)))
        .with_leader_epoch(i32::try_from(quorum.term).unwrap_or(i32::MAX))
        .with_high_watermark(quorum.high_watermark as i64)
        .with_current_voters(voters)
}

fn partition_error(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_leader_id(BrokerId(-1))
        .with_leader_epoch(-1)
        .with_high_watermark(UNKNOWN)
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: DescribeQuorumRequest) -> Outcome {
    if let Err(error) = require_cluster(shard, request, Operation::Describe) {
        return request.respond(&DescribeQuorumResponse::default().with_error_code(error.code()));
    }
    let asks_quorum = body
        .topics
        .iter()
        .any(|t| t.topic_name.as_str() == CONTROLLER_DIR);
    let state = if asks_quorum {
        quorum(shard).await
    } else {
        None
    };
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let metadata = topic.topic_name.as_str() == CONTROLLER_DIR;
            let partitions = topic.partitions.iter().map(|p| {
                let index = p.partition_index;
                match (&state, metadata && index == METADATA_PARTITION) {
                    (Some(state), true) => described(index, state),
                    (None, true) => partition_error(index, ResponseError::NotLeaderOrFollower),
                    (_, false) => partition_error(index, ResponseError::UnknownTopicOrPartition),
                }
            });
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(partitions.collect())
        })
        .collect();
    request.respond(&DescribeQuorumResponse::default().with_topics(topics))
}

kafka_api!(DescribeQuorum: DescribeQuorum, VERSIONS, DescribeQuorumRequest => handle);
