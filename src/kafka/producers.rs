//! Idempotent producers: InitProducerId (KIP-98, KIP-360) and
//! DescribeProducers (KIP-664).
//!
//! A producer without a `transactional.id` gets a fresh producer id at
//! epoch 0. One that names the id and epoch it has (v3+, KIP-360) gets the
//! same id at the next epoch: the partitions then fence the old epoch's
//! batches and take the new one from sequence 0. At the last epoch it gets
//! a fresh id instead. One with a `transactional.id` is served by its
//! transaction coordinator (`kafka::transactions::init`).

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};

use super::authorize::{idempotent_write_allowed, topic_allowed};
use super::partitioned::PartitionPlan;
use super::transactions::init::init_transactional;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::run_on;
use crate::shard::{PartitionId, Shard, METADATA_SHARD};
use crate::storage::producer_state::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use crate::txn::producer_ids::striped;
use crate::txn::ProducerIdBlock;

pub const INIT_PRODUCER_ID_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const DESCRIBE_PRODUCERS_VERSIONS: RangeInclusive<i16> = 0..=0;

/// What the request asks for, after Kafka's checks.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    NewId,
    /// KIP-360: the same id at the next epoch.
    BumpEpoch {
        producer_id: i64,
        epoch: i16,
    },
}

/// What an idempotent (not transactional) producer asks for.
fn ask(body: &InitProducerIdRequest) -> Result<Ask, ResponseError> {
    let producer_id = body.producer_id.0;
    let epoch = body.producer_epoch;
    match (producer_id, epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(Ask::NewId),
        (id, epoch) if id >= 0 && (0..i16::MAX - 1).contains(&epoch) => Ok(Ask::BumpEpoch {
            producer_id: id,
            epoch: epoch + 1,
        }),
        // The epoch is exhausted: a fresh id, as Kafka gives.
        (id, epoch) if id >= 0 && epoch >= 0 => Ok(Ask::NewId),
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// A fresh id from this shard's block, refilled from the metadata shard's counter.
pub(crate) async fn new_producer_id(shard: &Rc<Shard>) -> Result<i64, ResponseError> {
    let fetch_block = || async {
        let block = run_on(shard, METADATA_SHARD, |owner| async move {
            let block = match &owner.producer_id_store {
                Some(store) => store
                    .allocate_block()
                    .await
                    .map_err(|error| error.to_string())?,
                None => return Err("no producer id store on the metadata shard".to_string()),
            };
            // In a cluster, nodes give out disjoint blocks.
            match &owner.config.cluster {
                None => Ok(block),
                Some(cluster) => {
                    let index = cluster
                        .voters
                        .iter()
                        .position(|v| v.node_id == cluster.node_id)
                        .unwrap_or(0);
                    striped(block, index, cluster.voters.len())
                        .ok_or_else(|| "producer ids exhausted".to_string())
                }
            }
        })
        .await;
        match block {
            Ok(Ok(block)) => Ok::<ProducerIdBlock, ResponseError>(block),
            Ok(Err(error)) => {
                tracing::error!(%error, "allocating a producer id block failed");
                Err(ResponseError::KafkaStorageError)
            }
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    };
    shard.producer_ids.next_id(fetch_block).await
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: InitProducerIdRequest) -> Outcome {
    let transactional_id = body.transactional_id.as_deref().map(|id| id.to_string());
    let answer = if let Some(id) = &transactional_id {
        // Transactional producers are authorized by their transactional id instead.
        init_transactional(shard, request, id, &body).await
    } else {
        match ask(&body) {
            _ if !idempotent_write_allowed(shard, request) => {
                Err(ResponseError::ClusterAuthorizationFailed)
            }
            Ok(Ask::NewId) => new_producer_id(shard).await.map(|id| (id, 0)),
            Ok(Ask::BumpEpoch { producer_id, epoch }) => Ok((producer_id, epoch)),
            Err(error) => Err(error),
        }
    };
    let response = match answer {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(error) => InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_PRODUCER_EPOCH),
    };
    request.respond(&response)
}

/// KIP-664: the producers each partition tracks, with their last sequence.
pub async fn handle_describe_producers(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeProducersRequest,
) -> Outcome {
    let topics = body.topics.iter().map(|topic| {
        let partitions = topic.partition_indexes.iter();
        (
            topic.name.as_str(),
            partitions.map(|&p| (PartitionId(p), ())),
        )
    });
    // KIP-664: describing a partition's producers needs READ on its topic.
    let plan = PartitionPlan::named_topics(
        shard,
        |topic| topic_allowed(shard, request, Operation::Read, topic),
        topics,
        |_, _| None,
        |info, partition, ()| (info.name.clone(), partition),
    );
    let answers = plan
        .gather(shard, |owner, parts| owner.describe_producers_local(parts))
        .await;
    let topics = answers.zip_topics(
        &body.topics,
        |topic| &topic.partition_indexes,
        |&index, answer| {
            let response = PartitionResponse::default().with_partition_index(index);
            match answer {
                Ok(producers) => response.with_active_producers(
                    producers
                        .into_iter()
                        .map(|(id, entry)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(i32::from(entry.epoch))
                                .with_last_sequence(entry.last_batch().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(entry.last_timestamp_ms)
                                .with_coordinator_epoch(entry.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    entry.current_txn_first_offset.map_or(-1, |o| o.get()),
                                )
                        })
                        .collect(),
                ),
                Err(error) => response.with_error_code(error.code()),
            }
        },
        |topic, partitions| {
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        },
    );
    request.respond(&DescribeProducersResponse::default().with_topics(topics))
}

kafka_api!(InitProducerId: InitProducerId, INIT_PRODUCER_ID_VERSIONS, InitProducerIdRequest => handle);

kafka_api!(DescribeProducers: DescribeProducers, DESCRIBE_PRODUCERS_VERSIONS, DescribeProducersRequest => handle_describe_producers);

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    fn request(
        transactional_id: Option<&'static str>,
        id: i64,
        epoch: i16,
    ) -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(
                transactional_id.map(|t| TransactionalId(StrBytes::from_static_str(t))),
            )
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }

    #[test]
    fn an_idempotent_producer_gets_a_new_id_or_its_next_epoch() {
        assert_eq!(ask(&request(None, -1, -1)), Ok(Ask::NewId));
        assert_eq!(
            ask(&request(None, 42, 3)),
            Ok(Ask::BumpEpoch {
                producer_id: 42,
                epoch: 4
            })
        );
        assert_eq!(ask(&request(None, 42, i16::MAX - 1)), Ok(Ask::NewId));
        assert_eq!(
            ask(&request(None, 42, -1)),
            Err(ResponseError::InvalidRequest)
        );
    }
}
