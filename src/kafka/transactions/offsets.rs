//! TxnOffsetCommit (KIP-98, KIP-447): offsets a transaction commits for a
//! group. The transaction coordinator first checks that the group is in the
//! producer's ongoing transaction (v5+, Transactions V2: adds it); the
//! group's coordinator then holds the offsets pending until the marker.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{check_id_and_group, on_coordinator, versioned_error};
use crate::group::{self, TxnCommitRequest};
use crate::kafka::authorize::topic_allowed;
use crate::kafka::groups::response_error as group_response_error;
use crate::kafka::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::run_on;
use crate::shard::{PartitionId, Shard};
use crate::storage::Offset;
use crate::txn::TxnError;

pub const VERSIONS: RangeInclusive<i16> = 0..=5;
/// KIP-588: PRODUCER_FENCED from v3.
const FENCED_SINCE_VERSION: i16 = 3;
/// KIP-890: Transactions V2 adds the group implicitly from v5.
const IMPLICIT_ADD_VERSION: i16 = 5;

fn commit_request(body: &TxnOffsetCommitRequest) -> TxnCommitRequest {
    let topics = body
        .topics
        .iter()
        .map(|t| group::CommittedTopic {
            name: t.name.to_string(),
            partitions: t
                .partitions
                .iter()
                .map(|p| group::CommittedPartition {
                    partition: PartitionId(p.partition_index),
                    offset: Offset(p.committed_offset),
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
                .collect(),
        })
        .collect();
    TxnCommitRequest {
        commit: group::CommitRequest {
            group_id: body.group_id.to_string(),
            generation_id: body.generation_id,
            member_id: body.member_id.to_string(),
            group_instance_id: body
                .group_instance_id
                .as_ref()
                .filter(|id| !id.is_empty())
                .map(|id| id.to_string()),
            retention_ms: None,
            topics,
        },
        producer_id: body.producer_id.0,
        producer_epoch: body.producer_epoch,
    }
}

/// Checks everything but the offsets themselves; an error goes to every partition.
async fn check(
    shard: &Rc<Shard>,
    request: &Request,
    body: &TxnOffsetCommitRequest,
) -> Result<(), ResponseError> {
    let transactional_id = body.transactional_id.to_string();
    let group_id = body.group_id.to_string();
    check_id_and_group(shard, request, &transactional_id, &group_id)?;
    let (producer_id, epoch) = (body.producer_id.0, body.producer_epoch);
    let implicit = request.version() >= IMPLICIT_ADD_VERSION;
    let id = transactional_id.clone();
    on_coordinator(shard, &transactional_id, move |owner| async move {
        let txns = &owner.transactions;
        if implicit {
            let groups = [group_id];
            return txns.add(&id, producer_id, epoch, &[], &groups, true).await;
        }
        match txns.verify_group(&id, producer_id, epoch, &group_id)? {
            true => Ok(()),
            false => Err(TxnError::InvalidTxnState),
        }
    })
    .await
    .map_err(|error| versioned_error(error, request.version(), FENCED_SINCE_VERSION))
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: TxnOffsetCommitRequest) -> Outcome {
    let checked = check(shard, request, &body).await;
    let mut commit = commit_request(&body);
    // Topics the principal may not read get TOPIC_AUTHORIZATION_FAILED and are not committed.
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut commit.commit.topics)
        .into_iter()
        .partition(|t| topic_allowed(shard, request, Operation::Read, &t.name));
    commit.commit.topics = allowed;
    let outcomes = match checked {
        Err(error) => Err(error),
        Ok(()) if commit.commit.topics.is_empty() => Ok(Vec::new()),
        Ok(()) => {
            let owner = shard.shard_of_group(&commit.commit.group_id);
            run_on(shard, owner, move |owner| async move {
                // In a cluster only the offsets partition's leader takes them.
                if let Some(error) = owner.groups.refusal(&commit.commit.group_id) {
                    return Err(crate::kafka::groups::response_error(error));
                }
                let topics = owner.topics();
                Ok(owner.groups.txn_offset_commit(commit, &*topics).await)
            })
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
        }
    };
    request.respond(&response(&body, outcomes, &refused))
}

/// The answer for every partition of the request, in request order.
fn response(
    body: &TxnOffsetCommitRequest,
    outcomes: Result<Vec<group::TopicOutcome>, ResponseError>,
    refused: &[group::CommittedTopic],
) -> TxnOffsetCommitResponse {
    let answered: HashMap<(&str, i32), i16> = match &outcomes {
        Ok(outcomes) => outcomes
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    let code = p.error.map_or(0, |e| group_response_error(e).code());
                    ((t.name.as_str(), p.partition.get()), code)
                })
            })
            .collect(),
        Err(_) => HashMap::new(),
    };
    let refused: HashSet<&str> = refused.iter().map(|t| t.name.as_str()).collect();
    let code_of = |topic: &str, index: i32| -> i16 {
        if refused.contains(topic) {
            return ResponseError::TopicAuthorizationFailed.code();
        }
        match &outcomes {
            Err(error) => error.code(),
            Ok(_) => answered
                .get(&(topic, index))
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code()),
        }
    };
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code_of(topic.name.as_str(), p.partition_index))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

kafka_api!(TxnOffsetCommit: TxnOffsetCommit, VERSIONS, TxnOffsetCommitRequest => handle);
