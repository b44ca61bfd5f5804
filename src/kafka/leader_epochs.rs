//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): per partition, where a
//! leader epoch ended in the leader's log, so a consumer or follower that
//! saw an older leader can find where its log diverged. Each partition's
//! owner answers from its log's epoch cache, fenced by
//! `current_leader_epoch` like Fetch.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::authorize::{cluster_allowed, topic_allowed};
use super::partitioned::PartitionPlan;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::partitions::EpochQuery;
use crate::shard::{PartitionId, Shard};
use crate::storage::leader_epochs::EpochEnd;

/// v2 carries `current_leader_epoch` (librdkafka), v3 `replica_id`, v4 is
/// flexible (the Java client); older ones predate KIP-320.
pub const VERSIONS: RangeInclusive<i16> = 2..=4;

/// Kafka's `CONSUMER_REPLICA_ID`: the request comes from a client.
const CONSUMER_REPLICA_ID: i32 = -1;

pub async fn handle(
    shard: &Rc<Shard>,
    request: &Request,
    body: OffsetForLeaderEpochRequest,
) -> Outcome {
    let replica_id = if request.version() >= 3 {
        body.replica_id.0
    } else {
        CONSUMER_REPLICA_ID
    };
    // Followers need CLUSTER_ACTION; clients DESCRIBE on the topic (KIP-320),
    // which CLUSTER_ACTION also grants, as in Kafka.
    let cluster_action = cluster_allowed(shard, request, Operation::ClusterAction);
    let follower_refused = replica_id >= 0 && !cluster_action;
    let topics = body.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            let epochs = (p.current_leader_epoch, p.leader_epoch);
            (PartitionId(p.partition), epochs)
        });
        (topic.topic.as_str(), partitions)
    });
    let plan = PartitionPlan::named_topics(
        shard,
        |topic| cluster_action || topic_allowed(shard, request, Operation::Describe, topic),
        topics,
        |_, _| follower_refused.then_some(ResponseError::ClusterAuthorizationFailed),
        |info, partition, (current_leader_epoch, leader_epoch)| EpochQuery {
            topic: info.name.clone(),
            partition,
            current_leader_epoch,
            leader_epoch,
        },
    );
    let answers = plan
        .gather(shard, |owner, queries| {
            owner.epoch_end_offsets_local(queries)
        })
        .await;
    let topics = answers.zip_topics(
        &body.topics,
        |topic| &topic.partitions,
        |p, answer| {
            let (error, end) = match answer {
                Ok(end) => (0, end),
                Err(error) => (error.code(), EpochEnd::UNDEFINED),
            };
            EpochEndOffset::default()
                .with_error_code(error)
                .with_partition(p.partition)
                .with_leader_epoch(end.epoch)
                .with_end_offset(end.end_offset)
        },
        |topic, partitions| {
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        },
    );
    request.respond(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}

kafka_api!(OffsetForLeaderEpoch: OffsetForLeaderEpoch, VERSIONS, OffsetForLeaderEpochRequest => handle);
