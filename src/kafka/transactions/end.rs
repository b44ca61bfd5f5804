//! EndTxn (KIP-98; KIP-890 from v5): the commit or abort decision is made
//! durable (PrepareCommit / PrepareAbort), the markers are written, and the
//! answer comes once the transaction is complete. With Transactions V2 the
//! producer epoch is bumped at every commit and abort, and the answer
//! carries the producer id and epoch for the next transaction.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::complete::finish;
use super::{fresh_producer_id, on_coordinator, transactional_id_allowed, versioned_error};
use crate::kafka::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::Shard;
use crate::txn::state::{NO_EPOCH, NO_PRODUCER_ID};
use crate::txn::EndOutcome;

pub const VERSIONS: RangeInclusive<i16> = 0..=5;
/// KIP-588: PRODUCER_FENCED from v2.
const FENCED_SINCE_VERSION: i16 = 2;
/// KIP-890: Transactions V2 clients send EndTxn v5.
pub const TRANSACTIONS_V2_VERSION: i16 = 5;

async fn end_txn(
    shard: &Rc<Shard>,
    request: &Request,
    body: &EndTxnRequest,
) -> Result<(i64, i16), ResponseError> {
    let transactional_id = body.transactional_id.to_string();
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    if !transactional_id_allowed(shard, request, Operation::Write, &transactional_id) {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let producer_id = body.producer_id.0;
    let epoch = body.producer_epoch;
    let commit = body.committed;
    let v2 = request.version() >= TRANSACTIONS_V2_VERSION;
    let id = transactional_id.clone();
    let answer = on_coordinator(shard, &transactional_id, move |owner| async move {
        let outcome = owner
            .transactions
            .end_txn(&id, producer_id, epoch, commit, v2, || {
                fresh_producer_id(&owner)
            })
            .await?;
        match outcome {
            EndOutcome::Done {
                producer_id,
                producer_epoch,
            } => Ok((producer_id, producer_epoch)),
            EndOutcome::Prepared(completion) => {
                let continued = (completion.producer_id, completion.producer_epoch);
                match finish(&owner, completion).await {
                    Ok(next) => Ok(next),
                    // Decided and durable: the markers follow (at the latest
                    // after a restart), so the outcome stands.
                    Err(error) => {
                        tracing::warn!(transactional_id = %id, %error, "markers not written yet");
                        Ok(continued)
                    }
                }
            }
        }
    })
    .await;
    answer.map_err(|error| versioned_error(error, request.version(), FENCED_SINCE_VERSION))
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: EndTxnRequest) -> Outcome {
    let response = match end_txn(shard, request, &body).await {
        Ok((producer_id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(error) => EndTxnResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_EPOCH),
    };
    request.respond(&response)
}

kafka_api!(EndTxn: EndTxn, VERSIONS, EndTxnRequest => handle);
