//! Produce: split by owner shard, append the client's batches as they are,
//! answer after the durability that `acks` asks for. A partition sent to a
//! broker that does not lead it names its leader (KIP-951, v10+).

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorize::topic_allowed;
use super::leader_hints::LeaderHints;
use super::partitioned::PartitionPlan;
use super::transactions::verify;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::partitions::ProducePart;
use crate::shard::{PartitionId, Shard};
use crate::storage::{records, AppendInfo, Durability};

/// v13 addresses topics by id only (KIP-516); names are served through v12.
pub const VERSIONS: RangeInclusive<i16> = 3..=12;
/// KIP-951: from v10 a NOT_LEADER_OR_FOLLOWER answer names the leader.
const LEADER_HINTS_VERSION: i16 = 10;

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: ProduceRequest) -> Outcome {
    let durability = match body.acks {
        0 | 1 => Some(Durability::Written),
        -1 => Some(Durability::Durable),
        _ => None,
    };
    // KIP-890: transactional batches only to partitions of their ongoing transaction.
    let mut txn_refusals = verify::check_produce(shard, request, &body)
        .await
        .into_iter();
    let topics = body.topic_data.iter().map(|topic| {
        let partitions = topic.partition_data.iter();
        (
            topic.name.as_str(),
            partitions.map(|data| (PartitionId(data.index), data)),
        )
    });
    let plan = PartitionPlan::named_topics(
        shard,
        |topic| topic_allowed(shard, request, Operation::Write, topic),
        topics,
        |topic, data| {
            let txn_refusal = txn_refusals.next().flatten();
            if durability.is_none() {
                return Some(ResponseError::InvalidRequiredAcks);
            }
            if txn_refusal.is_some() {
                return txn_refusal;
            }
            let compacted = topic.is_some_and(|t| t.config.is_compacted());
            refuse_keyless(compacted, data.records.as_deref())
        },
        |info, partition, data| ProducePart {
            topic: info.name.clone(),
            partition,
            records: data.records.clone().unwrap_or_default(),
        },
    );
    let durability = durability.unwrap_or(Durability::Written);
    // A timeout of 0 or less asks for no bound.
    let timeout =
        (body.timeout_ms > 0).then(|| std::time::Duration::from_millis(body.timeout_ms as u64));
    let answers = plan
        .gather(shard, move |owner, parts| {
            owner.produce_local(parts, durability, timeout)
        })
        .await;
    if body.acks == 0 {
        return Outcome::NoResponse;
    }
    let version = request.version();
    let mut hints = LeaderHints::new(shard);
    let responses = answers.zip_topics(
        &body.topic_data,
        |topic| &topic.partition_data,
        |data, answer| partition_response(data.index, answer, version),
        |topic, mut partitions| {
            if version >= LEADER_HINTS_VERSION {
                for p in &mut partitions {
                    let hinted = [ResponseError::NotLeaderOrFollower];
                    if let Some(l) = hints.hint(topic.name.as_str(), p.index, p.error_code, &hinted)
                    {
                        p.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(l.leader))
                            .with_leader_epoch(l.epoch);
                    }
                }
            }
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions)
        },
    );
    let endpoints = hints.endpoints().into_iter().map(|b| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(b.node))
            .with_host(StrBytes::from_string(b.host))
            .with_port(i32::from(b.port))
    });
    let response = ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(endpoints.collect());
    request.respond(&response)
}

/// A compacted topic refuses a batch holding a record without a key, with
/// INVALID_RECORD for that partition (Kafka's LogValidator). Only compacted
/// topics pay for the walk over the records. Batches that do not parse are
/// left to the append, which answers them as corrupt.
fn refuse_keyless(compacted: bool, records: Option<&[u8]>) -> Option<ResponseError> {
    let records = records.filter(|_| compacted)?;
    records::has_null_key(records)
        .is_ok_and(|keyless| keyless)
        .then_some(ResponseError::InvalidRecord)
}

fn partition_response(
    index: i32,
    answer: Result<AppendInfo, ResponseError>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match answer {
        Ok(info) => response
            .with_base_offset(info.base_offset.get())
            .with_log_append_time_ms(info.log_append_time_ms.unwrap_or(-1))
            // v5+ only; older versions must leave it at its default.
            .with_log_start_offset(if version >= 5 {
                info.log_start_offset.get()
            } else {
                -1
            }),
        Err(error) => response
            .with_error_code(error.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1),
    }
}

kafka_api!(Produce: Produce, VERSIONS, ProduceRequest => handle);
