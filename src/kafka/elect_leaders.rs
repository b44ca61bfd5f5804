//! ElectLeaders (KIP-460): preferred leader elections, on any broker. In a
//! cluster each named partition (every partition when none is named) goes
//! to `cluster::elect`, which moves a replicated partition's leadership to
//! its first replica by Raft leadership transfer and waits for it within
//! the request's timeout. Raft has no unclean election: an UNCLEAN request
//! answers as KRaft does for a partition that has a leader
//! (ELECTION_NOT_NEEDED), and ELIGIBLE_LEADERS_NOT_AVAILABLE for one that
//! has none yet. A single broker leads all its partitions: no election is
//! ever needed.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authorize::require_cluster;
use super::metadata::topic_name;
use super::{Outcome, Request};
use crate::cluster::elect::{self, ElectionError};
use crate::cluster::{ClusterView, NodeId};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::{PartitionId, Shard};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

/// KIP-460's election types.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
/// The longest an election is waited for, whatever `timeout_ms` asks.
const ELECTION_WAIT_MAX: Duration = Duration::from_secs(60);

type Outcomes = Vec<(i32, Result<(), (ResponseError, String)>)>;

fn code(error: ElectionError) -> ResponseError {
    match error {
        ElectionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ElectionError::PreferredLeads | ElectionError::HasLeader => {
            ResponseError::ElectionNotNeeded
        }
        ElectionError::PreferredNotAvailable => ResponseError::PreferredLeaderNotAvailable,
        ElectionError::EligibleNotAvailable => ResponseError::EligibleLeadersNotAvailable,
        ElectionError::TimedOut => ResponseError::RequestTimedOut,
    }
}

/// The partitions asked for, by topic in request order; `None` for all.
fn asked(body: &ElectLeadersRequest) -> Option<Vec<(TopicName, Vec<i32>)>> {
    body.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.clone(), t.partitions.clone()))
            .collect()
    })
}

/// Every partition this broker knows, for a request naming none.
fn every_partition(shard: &Shard) -> Vec<(TopicName, Vec<i32>)> {
    match shard.cluster.as_ref() {
        Some(cluster) => cluster
            .view()
            .topics
            .iter()
            .map(|(name, t)| (topic_name(name), (0..t.partitions.len() as i32).collect()))
            .collect(),
        None => shard
            .topics()
            .iter()
            .map(|t| (topic_name(&t.name), (0..t.partition_count()).collect()))
            .collect(),
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: ElectLeadersRequest) -> Outcome {
    let version = request.version();
    let named = asked(&body);
    let all = named.is_none();
    let topics = named.unwrap_or_else(|| every_partition(shard));
    let refused = require_cluster(shard, request, Operation::Alter)
        .err()
        .map(|e| (e, "not authorized to alter the cluster".to_string()))
        .or_else(|| {
            (![PREFERRED, UNCLEAN].contains(&body.election_type)).then(|| {
                (
                    ResponseError::InvalidRequest,
                    format!("unknown election type {}", body.election_type),
                )
            })
        });
    if let Some((error, text)) = refused {
        let results = topics
            .iter()
            .map(|(topic, partitions)| {
                let outcomes = partitions
                    .iter()
                    .map(|&p| (p, Err((error, text.clone()))))
                    .collect();
                topic_result(topic.clone(), outcomes)
            })
            .collect();
        let mut response = ElectLeadersResponse::default().with_replica_election_results(results);
        if version >= 1 {
            response = response.with_error_code(error.code());
        }
        return request.respond(&response);
    }
    let wait = Duration::from_millis(body.timeout_ms.max(0) as u64).min(ELECTION_WAIT_MAX);
    let deadline = Instant::now() + wait;
    let view = shard.cluster.as_ref().map(|c| c.view());
    let mut seen = HashSet::new();
    let elections = topics.into_iter().map(|(topic, partitions)| {
        let checked: Vec<(i32, Result<NodeId, ElectionError>, bool)> = partitions
            .into_iter()
            .map(|p| {
                let fresh = seen.insert((topic.clone(), p));
                let check = check(shard, view.as_deref(), &topic, p, body.election_type);
                (p, check, fresh)
            })
            .collect();
        let shard = shard.clone();
        async move {
            let runs = checked.into_iter().map(|(p, check, fresh)| {
                let name = topic.to_string();
                let shard = shard.clone();
                async move {
                    if !fresh {
                        let text = format!("partition {p} of '{name}' is named twice");
                        return (p, Err((ResponseError::InvalidRequest, text)));
                    }
                    let outcome = match check {
                        Ok(preferred) => {
                            elect::elect_preferred(&shard, name, p as u32, preferred, deadline)
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    (p, outcome.map_err(|e| (code(e), e.to_string())))
                }
            });
            let outcomes: Outcomes = join_all(runs).await;
            (topic, outcomes)
        }
    });
    let results = join_all(elections)
        .await
        .into_iter()
        .filter_map(|(topic, mut outcomes)| {
            // Asked for every partition, Kafka lists only those it elected
            // or could not.
            if all {
                outcomes.retain(|(_, o)| !matches!(o, Err((ResponseError::ElectionNotNeeded, _))));
                if outcomes.is_empty() {
                    return None;
                }
            }
            Some(topic_result(topic, outcomes))
        })
        .collect();
    request.respond(&ElectLeadersResponse::default().with_replica_election_results(results))
}

/// The preferred replica to move the leadership of `topic`'s partition `p`
/// to, or the error that answers it (ELECTION_NOT_NEEDED among them).
fn check(
    shard: &Shard,
    view: Option<&ClusterView>,
    topic: &TopicName,
    p: i32,
    election_type: i8,
) -> Result<NodeId, ElectionError> {
    let index = usize::try_from(p).map_err(|_| ElectionError::UnknownTopicOrPartition)?;
    let Some(view) = view else {
        let known = shard
            .topics()
            .get(topic.as_str())
            .is_some_and(|t| t.shard_of(PartitionId(p)).is_some());
        return Err(if known {
            ElectionError::PreferredLeads
        } else {
            ElectionError::UnknownTopicOrPartition
        });
    };
    if election_type == UNCLEAN {
        return Err(elect::unclean_election(view, topic.as_str(), index));
    }
    elect::preferred_candidate(view, topic.as_str(), index)
}

fn topic_result(topic: TopicName, outcomes: Outcomes) -> ReplicaElectionResult {
    let partitions = outcomes
        .into_iter()
        .map(|(p, outcome)| {
            let result = PartitionResult::default().with_partition_id(p);
            match outcome {
                Ok(()) => result,
                Err((error, text)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(text))),
            }
        })
        .collect();
    ReplicaElectionResult::default()
        .with_topic(topic)
        .with_partition_result(partitions)
}

kafka_api!(ElectLeaders: ElectLeaders, VERSIONS, ElectLeadersRequest => handle);
