//! InitProducerId with a transactional id (KIP-98, KIP-360): the producer
//! id of the transactional id at its next epoch. An open transaction of an
//! older producer is fenced and aborted first (its markers written), then
//! the new producer gets the epoch after the fence.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::InitProducerIdRequest;

use super::complete::finish;
use super::{fresh_producer_id, on_coordinator, transactional_id_allowed, versioned_error};
use crate::kafka::Request;
use crate::security::acl::Operation;
use crate::shard::Shard;
use crate::txn::state::{NO_EPOCH, NO_PRODUCER_ID};
use crate::txn::{InitOutcome, TxnError};

/// InitProducerId v4 (KIP-588) is the first to know PRODUCER_FENCED.
const FENCED_SINCE_VERSION: i16 = 4;
/// An abort of the fenced producer's transaction, then the init: two rounds.
const INIT_ROUNDS_MAX: usize = 2;

/// The producer id and epoch for `transactional_id`, or the error to answer.
pub async fn init_transactional(
    shard: &Rc<Shard>,
    request: &Request,
    transactional_id: &str,
    body: &InitProducerIdRequest,
) -> Result<(i64, i16), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    // Kafka: InitProducerId with a transactional id needs WRITE on it.
    if !transactional_id_allowed(shard, request, Operation::Write, transactional_id) {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let expected = match (body.producer_id.0, body.producer_epoch) {
        (NO_PRODUCER_ID, NO_EPOCH) => None,
        (id, epoch) if id >= 0 && epoch >= 0 => Some((id, epoch)),
        _ => return Err(ResponseError::InvalidRequest),
    };
    let timeout_ms = body.transaction_timeout_ms;
    let id = transactional_id.to_string();
    let answer = on_coordinator(shard, transactional_id, move |owner| async move {
        for _ in 0..INIT_ROUNDS_MAX {
            let outcome = owner
                .transactions
                .init_producer_id(&id, timeout_ms, expected, || fresh_producer_id(&owner))
                .await?;
            match outcome {
                InitOutcome::Ready {
                    producer_id,
                    producer_epoch,
                } => return Ok((producer_id, producer_epoch)),
                InitOutcome::AbortFirst(completion) => {
                    tracing::info!(transactional_id = %id, "fencing the previous producer and aborting its transaction");
                    finish(&owner, completion).await?;
                }
            }
        }
        Err(TxnError::ConcurrentTransactions)
    })
    .await;
    answer.map_err(|error| versioned_error(error, request.version(), FENCED_SINCE_VERSION))
}
