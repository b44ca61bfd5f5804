//! KIP-890 on Produce: a transactional batch is appended only to a partition
//! of its producer's ongoing transaction. Below Produce v12 (Transactions
//! V1) the client added the partition with AddPartitionsToTxn, and the
//! coordinator is asked to confirm it; from v12 (V2) the partition is added
//! implicitly. Non-transactional produces pay one header read per partition.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ProduceRequest;

use super::{on_coordinator, transactional_id_allowed};
use crate::kafka::authorize::topic_allowed;
use crate::kafka::Request;
use crate::security::acl::Operation;
use crate::shard::{PartitionId, Shard};
use crate::storage::batch::{BatchHeader, ATTRIBUTE_CONTROL_BIT, ATTRIBUTE_TRANSACTIONAL_BIT};
use crate::txn::{TxnError, TxnPartition};

/// KIP-890: Produce v12 adds a transactional batch's partition implicitly.
pub const IMPLICIT_ADD_PRODUCE_VERSION: i16 = 12;

/// The producer id and epoch of `records`' first batch, if it is a
/// transactional data batch.
pub fn transactional_producer(records: Option<&[u8]>) -> Option<(i64, i16)> {
    let header = BatchHeader::parse(records?).ok()?;
    let transactional = header.attributes & ATTRIBUTE_TRANSACTIONAL_BIT != 0
        && header.attributes & ATTRIBUTE_CONTROL_BIT == 0;
    transactional.then_some((header.producer_id, header.producer_epoch))
}

/// What a produce gets when its transaction could not be confirmed.
fn produce_error(error: TxnError) -> ResponseError {
    match error {
        TxnError::ProducerFenced | TxnError::InvalidProducerEpoch => {
            ResponseError::InvalidProducerEpoch
        }
        // Retriable for a producer: Kafka answers a verification that could
        // not complete with NOT_ENOUGH_REPLICAS.
        TxnError::ConcurrentTransactions
        | TxnError::CoordinatorNotAvailable
        | TxnError::NotCoordinator
        | TxnError::StorageError
        | TxnError::RequestTimedOut => ResponseError::NotEnoughReplicas,
        TxnError::InvalidProducerIdMapping
        | TxnError::InvalidTxnState
        | TxnError::InvalidTransactionTimeout
        | TxnError::TransactionalIdNotFound
        | TxnError::InvalidRequest => ResponseError::InvalidTxnState,
    }
}

/// One producer's transactional partitions in the request, with their
/// positions among the request's partitions.
struct ProducerParts {
    producer: (i64, i16),
    positions: Vec<usize>,
    partitions: Vec<TxnPartition>,
}

/// For each partition of `body`, in request order, the refusal of its
/// transactional batch; empty when the request has none.
pub async fn check_produce(
    shard: &Rc<Shard>,
    request: &Request,
    body: &ProduceRequest,
) -> Vec<Option<ResponseError>> {
    let table = shard.topics();
    let mut producers: Vec<ProducerParts> = Vec::new();
    let mut count = 0;
    for topic in &body.topic_data {
        let info = table.get(topic.name.as_str());
        for data in &topic.partition_data {
            let position = count;
            count += 1;
            let Some(producer) = transactional_producer(data.records.as_deref()) else {
                continue;
            };
            // Unknown partitions and refused topics keep the plan's own answer.
            let Some(info) = info.filter(|i| (0..i.partition_count()).contains(&data.index)) else {
                continue;
            };
            if !topic_allowed(shard, request, Operation::Write, topic.name.as_str()) {
                continue;
            }
            let partition = (info.name.clone(), PartitionId(data.index));
            match producers.iter_mut().find(|p| p.producer == producer) {
                Some(parts) => {
                    parts.positions.push(position);
                    parts.partitions.push(partition);
                }
                None => producers.push(ProducerParts {
                    producer,
                    positions: vec![position],
                    partitions: vec![partition],
                }),
            }
        }
    }
    if producers.is_empty() {
        return Vec::new();
    }
    let mut verdicts = vec![None; count];
    let transactional_id = body.transactional_id.as_deref().map(|id| id.to_string());
    for parts in producers {
        let answers = verify(shard, request, transactional_id.as_deref(), &parts).await;
        for (position, answer) in parts.positions.into_iter().zip(answers) {
            verdicts[position] = answer;
        }
    }
    verdicts
}

async fn verify(
    shard: &Rc<Shard>,
    request: &Request,
    transactional_id: Option<&str>,
    parts: &ProducerParts,
) -> Vec<Option<ResponseError>> {
    let every = |error: ResponseError| vec![Some(error); parts.partitions.len()];
    // Kafka: transactional records need WRITE on the request's transactional id.
    let Some(transactional_id) = transactional_id.filter(|id| !id.is_empty()) else {
        return every(ResponseError::TransactionalIdAuthorizationFailed);
    };
    if !transactional_id_allowed(shard, request, Operation::Write, transactional_id) {
        return every(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let implicit = request.version() >= IMPLICIT_ADD_PRODUCE_VERSION;
    let (producer_id, epoch) = parts.producer;
    let partitions = parts.partitions.clone();
    let id = transactional_id.to_string();
    let answer = on_coordinator(shard, transactional_id, move |owner| async move {
        let txns = &owner.transactions;
        if implicit {
            txns.add(&id, producer_id, epoch, &partitions, &[], true)
                .await
                .map(|()| vec![true; partitions.len()])
        } else {
            txns.verify(&id, producer_id, epoch, &partitions)
        }
    })
    .await;
    match answer {
        Ok(in_txn) => in_txn
            .into_iter()
            .map(|ok| (!ok).then_some(ResponseError::InvalidTxnState))
            .collect(),
        Err(error) => every(produce_error(error)),
    }
}
