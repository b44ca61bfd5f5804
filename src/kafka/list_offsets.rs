//! ListOffsets: earliest, latest, max timestamp, and first offset at or after
//! a timestamp, answered by each partition's owner shard.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::errors::take_answer;
use super::{Outcome, Request};
use crate::decode_or_close;
use crate::shard::partitions::{
    OffsetQuery, EARLIEST_LOCAL_TIMESTAMP, LATEST_TIERED_TIMESTAMP, MAX_TIMESTAMP,
};
use crate::shard::scatter::Scatter;
use crate::shard::Shard;

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

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, ListOffsetsRequest);
    let version = request.version();
    let table = shard.topics();
    let mut scatter = Scatter::new(shard.shard_count());
    let mut plan = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let info = table.get(topic.name.as_str());
        let slots: Vec<(i32, Result<usize, ResponseError>)> = topic
            .partitions
            .iter()
            .map(|p| {
                let owner = info.and_then(|t| Some((t, t.shard_of(p.partition_index)?)));
                let slot = match owner {
                    _ if !special_timestamp_allowed(p.timestamp, version) => {
                        Err(ResponseError::UnsupportedVersion)
                    }
                    Some((info, owner)) => Ok(scatter.push(
                        owner,
                        OffsetQuery {
                            topic: info.name.clone(),
                            partition: p.partition_index,
                            timestamp: p.timestamp,
                        },
                    )),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                };
                (p.partition_index, slot)
            })
            .collect();
        plan.push(slots);
    }
    let mut answers = scatter
        .gather(shard, |owner, queries| owner.list_offsets_local(queries))
        .await;
    let topics = body
        .topics
        .iter()
        .zip(plan)
        .map(|(topic, slots)| {
            let partitions = slots
                .into_iter()
                .map(|(index, slot)| {
                    let answer = slot.and_then(|slot| take_answer(&mut answers, slot));
                    let response =
                        ListOffsetsPartitionResponse::default().with_partition_index(index);
                    match answer {
                        Ok(found) => {
                            let (timestamp, offset) = (found.timestamp.get(), found.offset.get());
                            // The leader epoch exists from v4.
                            let epoch = if offset >= 0 && version >= 4 { 0 } else { -1 };
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
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    request.respond(&ListOffsetsResponse::default().with_topics(topics))
}
