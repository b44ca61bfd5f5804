//! Storage and routing errors mapped to Kafka error codes, in one exhaustive
//! `match` so a new error variant forces a decision here.

use kafka_protocol::error::ResponseError;

use crate::shard::mesh::RouteError;
use crate::shard::partitions::PartitionError;
use crate::storage;

pub fn partition_error(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        PartitionError::NotReady => ResponseError::LeaderNotAvailable,
        PartitionError::NotLeader => ResponseError::NotLeaderOrFollower,
        PartitionError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        PartitionError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        PartitionError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        PartitionError::OffsetNotAvailable => ResponseError::OffsetNotAvailable,
        PartitionError::TimedOut => ResponseError::RequestTimedOut,
        PartitionError::Route(RouteError::InboxFull(_)) => ResponseError::RequestTimedOut,
        PartitionError::Route(RouteError::ShardGone(_)) => ResponseError::NotLeaderOrFollower,
        PartitionError::Storage(error) => storage_error(error),
    }
}

pub fn storage_error(error: &storage::Error) -> ResponseError {
    use storage::Error as E;
    match error {
        E::CorruptBatch(_) | E::Truncated { .. } | E::EmptyAppend => ResponseError::CorruptMessage,
        E::InvalidMagic(_) => ResponseError::UnsupportedForMessageFormat,
        E::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        E::Io { .. }
        | E::OpenFilesExhausted { .. }
        | E::Stopped(_)
        | E::DirectIoUnavailable { .. }
        | E::InvalidLayout(..) => ResponseError::KafkaStorageError,
        E::Closed => ResponseError::NotLeaderOrFollower,
        E::CompressionFailed(_) => ResponseError::UnknownServerError,
        E::Producer(error) => producer_error(error),
        E::ControlBatchFromClient => ResponseError::InvalidRecord,
    }
}

fn producer_error(error: &storage::ProducerError) -> ResponseError {
    use storage::ProducerError as P;
    match error {
        P::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        P::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        P::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
        P::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
        P::InvalidSequence { .. } => ResponseError::InvalidRecord,
        P::NotTransactional { .. } => ResponseError::InvalidTxnState,
        P::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
    }
}

/// Takes the answer a scattered request got for `slot`, as a Kafka error on failure.
pub fn take_answer<R>(
    answers: &mut [Option<Result<R, PartitionError>>],
    slot: usize,
) -> Result<R, ResponseError> {
    match answers.get_mut(slot).and_then(Option::take) {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(error)) => Err(partition_error(&error)),
        None => Err(ResponseError::UnknownServerError),
    }
}
