//! The transactional APIs (KIP-98, KIP-360, KIP-890): every handler maps the
//! wire to the transaction coordinator's types, routes to the shard that owns
//! the transactional id, and maps the answer back at the request's version.
//!
//! - `init`: InitProducerId with a transactional id.
//! - `add`: AddPartitionsToTxn (v4+ batched and verify-only) and AddOffsetsToTxn.
//! - `end`: EndTxn.
//! - `offsets`: TxnOffsetCommit, to the group's coordinator.
//! - `describe`: DescribeTransactions and ListTransactions.
//! - `verify`: KIP-890's check of a transactional Produce.
//! - `complete`: writing a decided transaction's markers and finishing it;
//!   the per-shard loop that finishes prepared and timed-out transactions.

mod add;
mod complete;
mod describe;
mod end;
pub mod init;
mod offsets;
pub mod verify;

use std::future::Future;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use super::authorize::{allowed, group_allowed};
use super::Request;
use crate::security::acl::{Operation, ResourceType};
use crate::shard::mesh::run_on;
use crate::shard::Shard;
use crate::txn::TxnError;

pub use add::{AddOffsetsToTxn, AddPartitionsToTxn};
pub use complete::coordinator_loop;
pub use describe::{DescribeTransactions, ListTransactions};
pub use end::EndTxn;
pub use offsets::TxnOffsetCommit;

/// The Kafka error code of each refusal, in one exhaustive `match`.
pub fn response_error(error: TxnError) -> ResponseError {
    match error {
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::InvalidRequest => ResponseError::InvalidRequest,
        // The client looks for the coordinator again and retries.
        TxnError::StorageError | TxnError::RequestTimedOut => {
            ResponseError::CoordinatorNotAvailable
        }
    }
}

/// KIP-588: versions before `fenced_since` know INVALID_PRODUCER_EPOCH, not
/// PRODUCER_FENCED.
pub fn versioned_error(error: TxnError, version: i16, fenced_since: i16) -> ResponseError {
    match response_error(error) {
        ResponseError::ProducerFenced if version < fenced_since => {
            ResponseError::InvalidProducerEpoch
        }
        other => other,
    }
}

/// The wire code for a result (0 for success).
pub fn code<T>(result: &Result<T, ResponseError>) -> i16 {
    result.as_ref().err().map_or(0, |e| e.code())
}

/// Whether the principal may do `operation` on the transactional id.
pub fn transactional_id_allowed(
    shard: &Shard,
    request: &Request,
    operation: Operation,
    transactional_id: &str,
) -> bool {
    allowed(
        shard,
        request,
        operation,
        ResourceType::TransactionalId,
        transactional_id,
    )
}

/// The checks of a request that names a transactional id and a group
/// (AddOffsetsToTxn, TxnOffsetCommit): a non-empty id the principal may
/// write, and a group it may read.
pub fn check_id_and_group(
    shard: &Shard,
    request: &Request,
    transactional_id: &str,
    group_id: &str,
) -> Result<(), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    if !transactional_id_allowed(shard, request, Operation::Write, transactional_id) {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !group_allowed(shard, request, Operation::Read, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    Ok(())
}

/// Runs `call` on the shard that coordinates `transactional_id`; an
/// unreachable shard answers COORDINATOR_NOT_AVAILABLE (the client retries).
pub async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    transactional_id: &str,
    call: F,
) -> Result<T, TxnError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, TxnError>> + 'static,
{
    if !crate::kafka::groups::coordinates_here(shard, transactional_id) {
        return Err(TxnError::NotCoordinator);
    }
    let owner = shard.shard_of_transactional_id(transactional_id);
    match run_on(shard, owner, call).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::debug!(%error, "transaction coordinator unreachable");
            Err(TxnError::CoordinatorNotAvailable)
        }
    }
}

/// A fresh producer id for the coordinator (a new transactional id, or one
/// whose epochs ran out).
async fn fresh_producer_id(shard: &Rc<Shard>) -> Result<i64, TxnError> {
    super::producers::new_producer_id(shard)
        .await
        .map_err(|error| match error {
            ResponseError::CoordinatorNotAvailable => TxnError::CoordinatorNotAvailable,
            _ => TxnError::StorageError,
        })
}
