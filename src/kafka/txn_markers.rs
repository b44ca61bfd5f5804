//! Transaction markers on partitions (KIP-98): the one entry point the
//! transaction coordinator calls when a transaction ends, and WriteTxnMarkers
//! (API key 27), the inter-broker request Kafka's coordinators send, served
//! on top of it.
//!
//! Each partition's marker is appended on the shard that owns it and
//! answered once it is durable, with its own error code.

use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::authorize::require_cluster;
use super::partitioned::PartitionPlan;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::partitions::MarkerPart;
use crate::shard::{PartitionId, Shard};
use crate::storage::{TxnMarker, TxnResult};

/// Kafka 4.0 serves WriteTxnMarkers from v1, its first flexible version
/// (KIP-896 removed v0); v2 (KIP-890's transaction version) is not decoded
/// by kafka-protocol 0.18.
pub const VERSIONS: RangeInclusive<i16> = 1..=1;

/// Writes `marker` to every partition of `partitions`, each on its owning
/// shard, and answers once each is durable: one answer per partition, in
/// order. There is no authorization here: the caller is the broker itself.
///
/// A partition not in the topic table gets UNKNOWN_TOPIC_OR_PARTITION; a
/// marker older than the partition's producer epoch INVALID_PRODUCER_EPOCH,
/// one from an older coordinator epoch TRANSACTION_COORDINATOR_FENCED.
pub async fn write_txn_markers(
    shard: &Rc<Shard>,
    marker: TxnMarker,
    partitions: &[(Arc<str>, PartitionId)],
) -> Vec<Result<(), ResponseError>> {
    let table = shard.topics();
    let mut plan = PartitionPlan::new(shard);
    for (topic, partition) in partitions {
        plan.add_topic(
            table.get(topic),
            ResponseError::UnknownTopicOrPartition,
            [(*partition, ())],
            |_, _| None,
            |info, partition, ()| MarkerPart {
                topic: info.name.clone(),
                partition,
                marker,
            },
        );
    }
    plan.gather(shard, |owner, parts| owner.write_markers_local(parts))
        .await
        .into_flat()
        .map(|answer| answer.map(|_| ()))
        .collect()
}

fn marker_of(request: &WritableTxnMarker) -> TxnMarker {
    TxnMarker {
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        coordinator_epoch: request.coordinator_epoch,
        result: if request.transaction_result {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    }
}

/// The request's partitions of one marker, in request order.
fn partitions_of(request: &WritableTxnMarker) -> Vec<(Arc<str>, PartitionId)> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            let name: Arc<str> = Arc::from(topic.name.as_str());
            topic
                .partition_indexes
                .iter()
                .map(move |&index| (name.clone(), PartitionId(index)))
        })
        .collect()
}

/// One marker's answers laid out as its request's topics.
fn marker_result(
    request: &WritableTxnMarker,
    mut answers: impl Iterator<Item = Result<(), ResponseError>>,
) -> WritableTxnMarkerResult {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let code = match answers.next() {
                        Some(Ok(())) => 0,
                        Some(Err(error)) => error.code(),
                        None => ResponseError::UnknownServerError.code(),
                    };
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            WritableTxnMarkerTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    WritableTxnMarkerResult::default()
        .with_producer_id(request.producer_id)
        .with_topics(topics)
}

/// WriteTxnMarkers is a cluster action: with the authorizer on, every
/// partition of a caller without CLUSTER_ACTION on the cluster gets
/// CLUSTER_AUTHORIZATION_FAILED, as Kafka answers.
pub async fn handle(shard: &Rc<Shard>, request: &Request, body: WriteTxnMarkersRequest) -> Outcome {
    let allowed = require_cluster(shard, request, Operation::ClusterAction);
    let writes = body.markers.iter().map(|marker| async {
        let partitions = partitions_of(marker);
        let answers = match allowed {
            Ok(()) => write_txn_markers(shard, marker_of(marker), &partitions).await,
            Err(error) => vec![Err(error); partitions.len()],
        };
        marker_result(marker, answers.into_iter())
    });
    let markers = join_all(writes).await;
    request.respond(&WriteTxnMarkersResponse::default().with_markers(markers))
}

kafka_api!(WriteTxnMarkers: WriteTxnMarkers, VERSIONS, WriteTxnMarkersRequest => handle);
