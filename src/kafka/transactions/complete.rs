//! Finishing a decided transaction: its COMMIT or ABORT marker is written to
//! every partition (each on its owning shard) and every group is told, then
//! the coordinator records it complete. Failures are retried with a backoff
//! until every marker is written (Kafka's `TransactionMarkerChannelManager`);
//! a partition whose topic is gone is dropped, as Kafka does.
//!
//! Each shard's [`coordinator_loop`] first finishes the transactions a crash
//! left prepared, then aborts transactions past their timeout.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use crate::clock::now_ms;
use crate::kafka::txn_markers::write_txn_markers;
use crate::shard::mesh::run_on;
use crate::shard::{PartitionId, Shard};
use crate::storage::{TxnMarker, TxnResult};
use crate::txn::{Completion, TxnError};

/// The first wait before markers are written again, doubled up to the maximum.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Writes the markers of `completion` and completes it, as its own task (a
/// dropped request does not stop it). Returns the producer id and epoch the
/// producer continues with.
pub async fn finish(shard: &Rc<Shard>, completion: Completion) -> Result<(i64, i16), TxnError> {
    let shard = shard.clone();
    glommio::spawn_local(async move { drive(&shard, completion).await })
        .detach()
        .await
        .unwrap_or(Err(TxnError::NotCoordinator))
}

/// Starts finishing `completion` without waiting for it.
fn finish_soon(shard: &Rc<Shard>, completion: Completion) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let id = completion.transactional_id.clone();
        if let Err(error) = drive(&shard, completion).await {
            tracing::warn!(transactional_id = %id, %error, "transaction left prepared; finished at the next start");
        }
    })
    .detach();
}

async fn drive(shard: &Rc<Shard>, completion: Completion) -> Result<(i64, i16), TxnError> {
    let marker = TxnMarker {
        producer_id: completion.producer_id,
        producer_epoch: completion.producer_epoch,
        coordinator_epoch: completion.coordinator_epoch,
        result: if completion.commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    let mut partitions: Vec<(Arc<str>, PartitionId)> = completion.partitions.clone();
    let mut groups = completion.groups.clone();
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        if !partitions.is_empty() {
            let answers = write_txn_markers(shard, marker, &partitions).await;
            partitions = still_owed(&completion, partitions, answers);
        }
        if !groups.is_empty() {
            groups = tell_groups(shard, &completion, groups).await;
        }
        if partitions.is_empty() && groups.is_empty() {
            break;
        }
        if shard.shutdown.has_started() {
            return Err(TxnError::NotCoordinator);
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
    shard.transactions.complete(&completion).await
}

/// The partitions whose marker must be written again.
fn still_owed(
    completion: &Completion,
    partitions: Vec<(Arc<str>, PartitionId)>,
    answers: Vec<Result<(), ResponseError>>,
) -> Vec<(Arc<str>, PartitionId)> {
    let id = &completion.transactional_id;
    partitions
        .into_iter()
        .zip(answers)
        .filter_map(|(partition, answer)| match answer {
            Ok(()) => None,
            Err(ResponseError::UnknownTopicOrPartition) => {
                tracing::info!(transactional_id = %id, topic = %partition.0, partition = partition.1.get(), "marker skipped: the partition no longer exists");
                None
            }
            // The partition has seen a newer epoch or coordinator: a later
            // transaction of this producer already passed there.
            Err(error @ (ResponseError::InvalidProducerEpoch
            | ResponseError::TransactionCoordinatorFenced)) => {
                tracing::warn!(transactional_id = %id, topic = %partition.0, partition = partition.1.get(), %error, "marker refused");
                None
            }
            Err(error) => {
                tracing::debug!(transactional_id = %id, topic = %partition.0, partition = partition.1.get(), %error, "marker failed; retrying");
                Some(partition)
            }
        })
        .collect()
}

/// Tells each group's coordinator the outcome; returns the groups to tell again.
async fn tell_groups(
    shard: &Rc<Shard>,
    completion: &Completion,
    groups: Vec<String>,
) -> Vec<String> {
    let mut owed = Vec::new();
    for group in groups {
        let producer_id = completion.producer_id;
        let commit = completion.commit;
        let group_id = group.clone();
        let told = run_on(
            shard,
            shard.shard_of_group(&group),
            move |owner| async move {
                owner
                    .groups
                    .complete_txn(&group_id, producer_id, commit)
                    .await
                    .map_err(|error| error.to_string())
            },
        )
        .await;
        match told {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%group, error, "group offsets of a transaction not applied yet; retrying");
                owed.push(group);
            }
            Err(_) => owed.push(group),
        }
    }
    owed
}

/// One shard's transaction upkeep: finishes the transactions left prepared
/// by a crash, then aborts transactions past `transaction.timeout.ms` and
/// removes ids idle past `transactional.id.expiration.ms`.
pub async fn coordinator_loop(shard: Rc<Shard>) {
    for completion in shard.transactions.prepared() {
        tracing::info!(transactional_id = %completion.transactional_id, commit = completion.commit, "finishing a transaction prepared before the restart");
        finish_soon(&shard, completion);
    }
    let interval = Duration::from_millis(shard.transactions.config().abort_check_interval_ms);
    loop {
        glommio::timer::sleep(interval).await;
        if shard.shutdown.has_started() {
            return;
        }
        for transactional_id in shard.transactions.timed_out(now_ms()) {
            if let Some(completion) = shard.transactions.abort_timed_out(&transactional_id).await {
                tracing::info!(%transactional_id, "aborting a transaction past its timeout");
                finish_soon(&shard, completion);
            }
        }
        shard.transactions.expire_idle(now_ms()).await;
    }
}
