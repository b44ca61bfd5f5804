//! ListOffsets: earliest, latest, max timestamp, and first offset at or after
//! a timestamp, answered by each partition's owner shard. read_committed
//! (v2+, KIP-98) answers within the last stable offset.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::authorize::topic_allowed;
use super::partitioned::PartitionPlan;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::partitions::{
    OffsetQuery, EARLIEST_LOCAL_TIMESTAMP, LATEST_TIERED_TIMESTAMP, MAX_TIMESTAMP,
    NO_LEADER_EPOCH_CHECK,
};
use crate::shard::{PartitionId, Shard};

/// v10 adds a timeout for remote-storage lookups, which ringlog has none of.
pub const VERSIONS: RangeInclusive<i16> = 1..=9;

/// The oldest version that may ask for each special timestamp (KIP-734, KIP-405, KIP-1005).
fn special_timestamp_allowed(timestamp: i64, version: i16) -> bool {
    match timestamp {
        MAX_TIMESTAMP => version >= 7,
        EARLIEST_LOCAL_TIMESTAMP => version >= 8,
        LATEST_TIERED_TIMESTAMP => version >= 9,
        t => t >= -2,
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: ListOffsetsRequest) -> Outcome {
    let version = request.version();
    let isolation = super::fetch::isolation(body.isolation_level);
    let topics = body.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter();
        // KIP-320: the leader epoch the client knows, from v4.
        let queries = partitions.map(|p| {
            let epoch = if version >= 4 {
                p.current_leader_epoch
            } else {
                NO_LEADER_EPOCH_CHECK
            };
            (PartitionId(p.partition_index), (p.timestamp, epoch))
        });
        (topic.name.as_str(), queries)
    });
    let plan = PartitionPlan::named_topics(
        shard,
        |topic| topic_allowed(shard, request, Operation::Describe, topic),
        topics,
        |_, &(timestamp, _)| {
            (!special_timestamp_allowed(timestamp, version))
                .then_some(ResponseError::UnsupportedVersion)
        },
        |info, partition, (timestamp, current_leader_epoch)| OffsetQuery {
            topic: info.name.clone(),
            partition,
            timestamp,
            isolation,
            current_leader_epoch,
        },
    );
    let answers = plan
        .gather(shard, |owner, queries| owner.list_offsets_local(queries))
        .await;
    let topics = answers.zip_topics(
        &body.topics,
        |topic| &topic.partitions,
        |p, answer| {
            let response =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            match answer {
                Ok((found, epoch)) => {
                    let (timestamp, offset) = (found.timestamp.get(), found.offset.get());
                    // The leader epoch exists from v4.
                    let epoch = if version >= 4 { epoch } else { -1 };
                    response
                        .with_timestamp(timestamp)
                        .with_offset(offset)
                        .with_leader_epoch(epoch)
                }
                Err(error) => response
                    .with_error_code(error.code())
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1),
            }
        },
        |topic, partitions| {
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        },
    );
    request.respond(&ListOffsetsResponse::default().with_topics(topics))
}

kafka_api!(ListOffsets: ListOffsets, VERSIONS, ListOffsetsRequest => handle);
