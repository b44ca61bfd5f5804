//! AddPartitionsToTxn (v0-3 one transaction; v4+ batched, with KIP-890's
//! verify-only checks, sent by brokers) and AddOffsetsToTxn.
//!
//! As Kafka answers them: a partition that may not be written or does not
//! exist gets its error and every other partition OPERATION_NOT_ATTEMPTED;
//! otherwise the coordinator's answer goes to every partition.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, TransactionalId,
};

use super::{check_id_and_group, code, on_coordinator, transactional_id_allowed, versioned_error};
use crate::kafka::authorize::{cluster_allowed, topic_allowed};
use crate::kafka::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::{PartitionId, Shard};
use crate::txn::TxnPartition;

pub const ADD_PARTITIONS_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const ADD_OFFSETS_VERSIONS: RangeInclusive<i16> = 0..=4;
/// KIP-588: PRODUCER_FENCED from v2 of both.
const FENCED_SINCE_VERSION: i16 = 2;
/// From v4 the request is batched and comes from brokers (KIP-890).
const BATCHED_SINCE_VERSION: i16 = 4;

/// One transaction's part of the request.
struct TxnAdd<'a> {
    transactional_id: &'a str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &'a [AddPartitionsToTxnTopic],
}

/// The partitions to add, or each partition's answer when some are refused
/// before the coordinator is asked.
fn check_partitions(
    shard: &Rc<Shard>,
    request: &Request,
    topics: &[AddPartitionsToTxnTopic],
) -> Result<Vec<TxnPartition>, Vec<Vec<ResponseError>>> {
    let table = shard.topics();
    let mut partitions = Vec::new();
    let mut refusals = Vec::with_capacity(topics.len());
    let mut refused = false;
    for topic in topics {
        let info = table.get(topic.name.as_str());
        let allowed = topic_allowed(shard, request, Operation::Write, topic.name.as_str());
        let answers = topic
            .partitions
            .iter()
            .map(|&index| {
                let error = match info {
                    _ if !allowed => Some(ResponseError::TopicAuthorizationFailed),
                    Some(info) if (0..info.partition_count()).contains(&index) => {
                        partitions.push((info.name.clone(), PartitionId(index)));
                        None
                    }
                    _ => Some(ResponseError::UnknownTopicOrPartition),
                };
                refused |= error.is_some();
                error.unwrap_or(ResponseError::OperationNotAttempted)
            })
            .collect();
        refusals.push(answers);
    }
    if refused {
        Err(refusals)
    } else {
        Ok(partitions)
    }
}

/// Every partition's answer, in request order.
async fn add_partitions(
    shard: &Rc<Shard>,
    request: &Request,
    add: TxnAdd<'_>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let answers = add_partitions_answers(shard, request, &add).await;
    add.topics
        .iter()
        .zip(answers)
        .map(|(topic, answers)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(answers)
                .map(|(&index, answer)| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(index)
                        .with_partition_error_code(code(&answer))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect()
}

async fn add_partitions_answers(
    shard: &Rc<Shard>,
    request: &Request,
    add: &TxnAdd<'_>,
) -> Vec<Vec<Result<(), ResponseError>>> {
    let same_for_all = |error: Option<ResponseError>| -> Vec<Vec<Result<(), ResponseError>>> {
        add.topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|_| error.map_or(Ok(()), Err))
                    .collect()
            })
            .collect()
    };
    if add.transactional_id.is_empty() {
        return same_for_all(Some(ResponseError::InvalidRequest));
    }
    if !transactional_id_allowed(shard, request, Operation::Write, add.transactional_id) {
        return same_for_all(Some(ResponseError::TransactionalIdAuthorizationFailed));
    }
    let partitions = match check_partitions(shard, request, add.topics) {
        Ok(partitions) => partitions,
        Err(refusals) => {
            return refusals
                .into_iter()
                .map(|t| t.into_iter().map(Err).collect())
                .collect()
        }
    };
    let (id, producer_id, epoch, verify_only) = (
        add.transactional_id.to_string(),
        add.producer_id,
        add.epoch,
        add.verify_only,
    );
    let asked = partitions.clone();
    let answer = on_coordinator(shard, add.transactional_id, move |owner| async move {
        if verify_only {
            owner.transactions.verify(&id, producer_id, epoch, &asked)
        } else {
            owner
                .transactions
                .add(&id, producer_id, epoch, &asked, &[], false)
                .await
                .map(|()| vec![true; asked.len()])
        }
    })
    .await;
    match answer {
        // KIP-890: a partition outside the ongoing transaction.
        Ok(in_txn) => {
            let mut in_txn = in_txn.into_iter();
            add.topics
                .iter()
                .map(|t| {
                    t.partitions
                        .iter()
                        .map(|_| match in_txn.next() {
                            Some(true) => Ok(()),
                            _ => Err(ResponseError::InvalidTxnState),
                        })
                        .collect()
                })
                .collect()
        }
        Err(error) => same_for_all(Some(versioned_error(
            error,
            request.version(),
            FENCED_SINCE_VERSION,
        ))),
    }
}

pub async fn handle_add_partitions(
    shard: &Rc<Shard>,
    request: &Request,
    body: AddPartitionsToTxnRequest,
) -> Outcome {
    if request.version() < BATCHED_SINCE_VERSION {
        let add = TxnAdd {
            transactional_id: body.v3_and_below_transactional_id.as_str(),
            producer_id: body.v3_and_below_producer_id.0,
            epoch: body.v3_and_below_producer_epoch,
            verify_only: false,
            topics: &body.v3_and_below_topics,
        };
        let results = add_partitions(shard, request, add).await;
        return request.respond(
            &AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
        );
    }
    // KIP-890: the batched form is an inter-broker request.
    if !cluster_allowed(shard, request, Operation::ClusterAction) {
        return request.respond(
            &AddPartitionsToTxnResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let mut results = Vec::with_capacity(body.transactions.len());
    for txn in &body.transactions {
        let add = TxnAdd {
            transactional_id: txn.transactional_id.as_str(),
            producer_id: txn.producer_id.0,
            epoch: txn.producer_epoch,
            verify_only: txn.verify_only,
            topics: &txn.topics,
        };
        let topic_results = add_partitions(shard, request, add).await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(TransactionalId(txn.transactional_id.0.clone()))
                .with_topic_results(topic_results),
        );
    }
    request.respond(&AddPartitionsToTxnResponse::default().with_results_by_transaction(results))
}

/// AddOffsetsToTxn: the group's offsets will be committed by the transaction
/// (Kafka adds the group's `__consumer_offsets` partition; here, the group).
async fn add_offsets(
    shard: &Rc<Shard>,
    request: &Request,
    body: &AddOffsetsToTxnRequest,
) -> Result<(), ResponseError> {
    let transactional_id = body.transactional_id.to_string();
    let group = body.group_id.to_string();
    check_id_and_group(shard, request, &transactional_id, &group)?;
    if crate::group::validate_group_id(&group, false).is_err() {
        return Err(ResponseError::InvalidGroupId);
    }
    let (producer_id, epoch) = (body.producer_id.0, body.producer_epoch);
    let id = transactional_id.clone();
    on_coordinator(shard, &transactional_id, move |owner| async move {
        owner
            .transactions
            .add(&id, producer_id, epoch, &[], &[group], false)
            .await
    })
    .await
    .map_err(|error| versioned_error(error, request.version(), FENCED_SINCE_VERSION))
}

pub async fn handle_add_offsets(
    shard: &Rc<Shard>,
    request: &Request,
    body: AddOffsetsToTxnRequest,
) -> Outcome {
    let answer = add_offsets(shard, request, &body).await;
    request.respond(&AddOffsetsToTxnResponse::default().with_error_code(code(&answer)))
}

kafka_api!(AddPartitionsToTxn: AddPartitionsToTxn, ADD_PARTITIONS_VERSIONS, AddPartitionsToTxnRequest => handle_add_partitions);

kafka_api!(AddOffsetsToTxn: AddOffsetsToTxn, ADD_OFFSETS_VERSIONS, AddOffsetsToTxnRequest => handle_add_offsets);
