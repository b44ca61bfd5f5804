//! Why the transaction coordinator refused a request, named after Kafka's
//! error codes for the transactional APIs; the broker maps each to its code
//! (and, for old request versions, PRODUCER_FENCED to INVALID_PRODUCER_EPOCH).

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transaction coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("this broker does not coordinate the transactional id")]
    NotCoordinator,
    /// Another transition of this transactional id is being written, or
    /// markers are still being written: retry shortly.
    #[error("a transition of this transactional id is in progress")]
    ConcurrentTransactions,
    #[error("the producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    #[error("a newer producer with the same transactional id fenced this one")]
    ProducerFenced,
    #[error("the producer epoch is not the current one")]
    InvalidProducerEpoch,
    #[error("the operation is invalid in the transaction's state")]
    InvalidTxnState,
    #[error("the transaction timeout is larger than the broker allows")]
    InvalidTransactionTimeout,
    #[error("the transactional id is not known")]
    TransactionalIdNotFound,
    #[error("the request is invalid")]
    InvalidRequest,
    #[error("the transaction log failed")]
    StorageError,
    #[error("the transaction log is backlogged")]
    RequestTimedOut,
}
