//! Consumer-group APIs. Every handler has the same shape: decode, map the
//! wire request (at its version) to the coordinator's types, route it to the
//! shard that owns the group, map the answer back to the wire at that
//! version, encode. Multi-group requests are split by owner shard and the
//! answers merged in request order. FindCoordinator is answered here: this
//! broker coordinates every group and every transactional id.
//!
//! - `membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup mapping.
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete mapping.
//! - `admin`: DescribeGroups, ListGroups, DeleteGroups mapping.

mod admin;
mod membership;
mod offsets;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::ops::RangeInclusive;
use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::{cluster_allowed, group_allowed, topic_allowed};
use super::transactions::transactional_id_allowed;
use super::{Outcome, Request};
use crate::cluster::coordinators::coordinator_of;
use crate::group::{
    ClientInfo, DeleteOffsetsAnswer, FetchedGroup, GroupDescription, GroupError, JoinAnswer,
    LeaveAnswer, SyncAnswer, TopicCatalog,
};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::{run_on, RouteError};
use crate::shard::topics::TopicTable;
use crate::shard::{Shard, ShardId};

pub const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=6;
/// Versions served of each group API; the tests encode every response at
/// each of them. OffsetCommit v9 and OffsetFetch v9 also carry KIP-848
/// member epochs; for classic groups the epoch field is the generation and
/// the member fields are those of the classic protocol.
pub const JOIN_GROUP_VERSIONS: RangeInclusive<i16> = 0..=9;
pub const SYNC_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 0..=4;
pub const LEAVE_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const DESCRIBE_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=6;
pub const LIST_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=5;
pub const DELETE_GROUPS_VERSIONS: RangeInclusive<i16> = 0..=2;
pub const OFFSET_COMMIT_VERSIONS: RangeInclusive<i16> = 2..=9;
/// v10 names topics by id only (KIP-848 consumers); names are served through v9.
pub const OFFSET_FETCH_VERSIONS: RangeInclusive<i16> = 1..=9;
pub const OFFSET_DELETE_VERSIONS: RangeInclusive<i16> = 0..=0;

/// FindCoordinator key types: consumer groups and transactional ids.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

impl TopicCatalog for TopicTable {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.get(topic).map(|t| t.partition_count())
    }
}

/// The Kafka error code of each refusal, in one exhaustive `match`: a new
/// refusal must choose its code here.
pub fn response_error(error: GroupError) -> ResponseError {
    match error {
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::RequestTimedOut => ResponseError::RequestTimedOut,
        GroupError::UnknownServerError => ResponseError::UnknownServerError,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        GroupError::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        GroupError::UnstableOffsetCommit => ResponseError::UnstableOffsetCommit,
    }
}

/// 0 for no error.
fn error_code(error: Option<GroupError>) -> i16 {
    error.map_or(0, |e| response_error(e).code())
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// An absent or empty string is no value (group.instance.id).
fn non_empty(s: Option<StrBytes>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(|s| s.to_string())
}

/// The coordinator's answer, or `refused(COORDINATOR_NOT_AVAILABLE)` when
/// the shard that owns the group could not be reached (its inbox is full):
/// the client finds the coordinator again and retries, as after a
/// coordinator move in Kafka. The connection stays open.
fn or_unavailable<T>(routed: Result<T, RouteError>, refused: impl FnOnce(GroupError) -> T) -> T {
    routed.unwrap_or_else(|error| {
        tracing::debug!(%error, "group coordinator unreachable; answered COORDINATOR_NOT_AVAILABLE");
        refused(GroupError::CoordinatorNotAvailable)
    })
}

/// Runs `call` on the group's owner when the principal may do `operation`
/// on the group; otherwise answers `refused(GROUP_AUTHORIZATION_FAILED)`
/// without routing. An unreachable owner is answered as in `or_unavailable`.
async fn on_owner_authorized<T, F, Fut>(
    shard: &Rc<Shard>,
    request: &Request,
    operation: Operation,
    group_id: &str,
    call: F,
    refused: impl FnOnce(GroupError) -> T,
) -> T
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    if !group_allowed(shard, request, operation, group_id) {
        return refused(GroupError::GroupAuthorizationFailed);
    }
    match on_owner(shard, group_id, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => refused(error),
        Err(routed) => or_unavailable(Err(routed), refused),
    }
}

/// Whether this broker coordinates a transactional id: a single broker
/// coordinates all of them; in a cluster, one broker each (see
/// [`ShardCluster::coordinator_of`](crate::cluster::ShardCluster::coordinator_of)).
/// Groups follow their offsets partition's leader instead (see
/// [`coordinators`](crate::cluster::coordinators)).
pub fn coordinates_here(shard: &Shard, key: &str) -> bool {
    shard.cluster.as_ref().is_none_or(|c| c.coordinates(key))
}

/// Where a transaction coordinator is, as FindCoordinator answers: (node,
/// host, port), or COORDINATOR_NOT_AVAILABLE while its broker is not live.
fn coordinator_endpoint(
    shard: &Shard,
    request: &Request,
    key: &str,
) -> Result<(i32, StrBytes, i32), ResponseError> {
    let here = || {
        let listener = crate::kafka::session::listener_of(shard, request.session.listener);
        let host = StrBytes::from_string(listener.advertised_host.clone());
        (shard.node_id(), host, listener.advertised_port as i32)
    };
    let Some(cluster) = shard.cluster.as_ref() else {
        return Ok(here());
    };
    let node = cluster.coordinator_of(key);
    if node == cluster.node {
        return Ok(here());
    }
    let view = cluster.view();
    let broker = view.brokers.iter().find(|b| b.node == node);
    broker
        .map(|b| {
            (
                node,
                StrBytes::from_string(b.host.clone()),
                i32::from(b.port),
            )
        })
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// Runs `call` on the shard that owns `group_id`, unless its coordinator
/// does not serve the group now (in a cluster: NOT_COORDINATOR on a broker
/// that does not lead the group's offsets partition,
/// COORDINATOR_LOAD_IN_PROGRESS while it replays it).
async fn on_owner<T, F, Fut>(
    shard: &Rc<Shard>,
    group_id: &str,
    call: F,
) -> Result<Result<T, GroupError>, RouteError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let owner = shard.shard_of_group(group_id);
    let group_id = group_id.to_string();
    run_on(shard, owner, move |owner| async move {
        match owner.groups.refusal(&group_id) {
            Some(error) => Err(loading_if_named(&owner, &group_id, error)),
            None => Ok(call(owner).await),
        }
    })
    .await
}

/// A broker the cluster already names as the group's coordinator (its
/// offsets partition's leader) that has not loaded the group yet is still
/// becoming its coordinator: COORDINATOR_LOAD_IN_PROGRESS, which clients
/// retry here, rather than NOT_COORDINATOR.
fn loading_if_named(shard: &Shard, group_id: &str, error: GroupError) -> GroupError {
    let named = shard
        .cluster
        .as_ref()
        .is_some_and(|c| crate::cluster::coordinators::coordinates(&c.view(), group_id));
    if error == GroupError::NotCoordinator && named {
        GroupError::CoordinatorLoadInProgress
    } else {
        error
    }
}

fn client_info(request: &Request) -> ClientInfo {
    ClientInfo {
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: request.client_host.to_string(),
    }
}

pub async fn handle_find_coordinator(
    shard: &Rc<Shard>,
    request: &Request,
    body: FindCoordinatorRequest,
) -> Outcome {
    let answer = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key.clone());
        let refused = |error: ResponseError| {
            coordinator
                .clone()
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code())
        };
        match body.key_type {
            KEY_TYPE_GROUP if !group_allowed(shard, request, Operation::Describe, key.as_str()) => {
                refused(ResponseError::GroupAuthorizationFailed)
            }
            KEY_TYPE_TRANSACTION if key.is_empty() => refused(ResponseError::InvalidRequest),
            KEY_TYPE_TRANSACTION
                if !transactional_id_allowed(shard, request, Operation::Describe, key.as_str()) =>
            {
                refused(ResponseError::TransactionalIdAuthorizationFailed)
            }
            // In a cluster: the leader of the group's offsets partition.
            KEY_TYPE_GROUP if shard.cluster.is_some() => {
                let view = shard.cluster.as_ref().map(|c| c.view());
                match view
                    .as_deref()
                    .and_then(|v| coordinator_of(v, key.as_str()))
                {
                    Some(broker) => coordinator
                        .with_node_id(BrokerId(broker.node))
                        .with_host(StrBytes::from_string(broker.host.clone()))
                        .with_port(broker.port as i32),
                    None => refused(ResponseError::CoordinatorNotAvailable),
                }
            }
            KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {
                match coordinator_endpoint(shard, request, key.as_str()) {
                    Ok((node, host, port)) => coordinator
                        .with_node_id(BrokerId(node))
                        .with_host(host)
                        .with_port(port),
                    Err(error) => refused(error),
                }
            }
            _ => refused(ResponseError::InvalidRequest),
        }
    };
    let response = if request.version() >= 4 {
        FindCoordinatorResponse::default()
            .with_coordinators(body.coordinator_keys.iter().cloned().map(answer).collect())
    } else {
        let one = answer(body.key.clone());
        FindCoordinatorResponse::default()
            .with_error_code(one.error_code)
            .with_error_message(one.error_message.clone())
            .with_node_id(one.node_id)
            .with_host(one.host.clone())
            .with_port(one.port)
    };
    request.respond(&response)
}

pub async fn handle_join_group(
    shard: &Rc<Shard>,
    request: &Request,
    body: JoinGroupRequest,
) -> Outcome {
    let version = request.version();
    let join = membership::join_request(body, version, client_info(request));
    let (group_id, member_id) = (join.group_id.clone(), join.member_id.clone());
    let answer = on_owner_authorized(
        shard,
        request,
        Operation::Read,
        &group_id,
        move |owner| async move { owner.groups.join_group(join).await },
        |e| JoinAnswer::refused(e, &member_id),
    )
    .await;
    request.respond(&membership::join_response(answer, version))
}

pub async fn handle_sync_group(
    shard: &Rc<Shard>,
    request: &Request,
    body: SyncGroupRequest,
) -> Outcome {
    let sync = membership::sync_request(body);
    let group_id = sync.group_id.clone();
    let answer = on_owner_authorized(
        shard,
        request,
        Operation::Read,
        &group_id,
        move |owner| async move { owner.groups.sync_group(sync).await },
        SyncAnswer::refused,
    )
    .await;
    request.respond(&membership::sync_response(answer))
}

pub async fn handle_heartbeat(
    shard: &Rc<Shard>,
    request: &Request,
    body: HeartbeatRequest,
) -> Outcome {
    let heartbeat = membership::heartbeat_request(body);
    let group_id = heartbeat.group_id.clone();
    let outcome = on_owner_authorized(
        shard,
        request,
        Operation::Read,
        &group_id,
        move |owner| async move { owner.groups.heartbeat(heartbeat).await },
        Err,
    )
    .await;
    request.respond(&membership::heartbeat_response(outcome))
}

pub async fn handle_leave_group(
    shard: &Rc<Shard>,
    request: &Request,
    body: LeaveGroupRequest,
) -> Outcome {
    let version = request.version();
    let leave = membership::leave_request(body, version);
    let routed = leave.clone();
    let answer = on_owner_authorized(
        shard,
        request,
        Operation::Read,
        &leave.group_id,
        move |owner| async move { owner.groups.leave_group(routed).await },
        |e| LeaveAnswer {
            error: Some(e),
            members: Vec::new(),
        },
    )
    .await;
    request.respond(&membership::leave_response(&leave, answer, version))
}

pub async fn handle_offset_commit(
    shard: &Rc<Shard>,
    request: &Request,
    body: OffsetCommitRequest,
) -> Outcome {
    let mut commit = offsets::commit_request(body, request.version());
    let group_id = commit.group_id.clone();
    if !group_allowed(shard, request, Operation::Read, &group_id) {
        let every = offsets::committed_partitions(&commit);
        let refused = offsets::every_partition(every, GroupError::GroupAuthorizationFailed);
        return request.respond(&offsets::commit_response(refused));
    }
    // Kafka's authorization table: committing needs READ on each topic too;
    // the others are answered TOPIC_AUTHORIZATION_FAILED per partition.
    let (allowed, unauthorized): (Vec<_>, Vec<_>) = std::mem::take(&mut commit.topics)
        .into_iter()
        .partition(|t| topic_allowed(shard, request, Operation::Read, &t.name));
    commit.topics = allowed;
    let unauthorized = offsets::every_partition(
        offsets::partitions_of(&unauthorized),
        GroupError::TopicAuthorizationFailed,
    );
    let partitions = offsets::committed_partitions(&commit);
    let mut outcomes = on_owner_authorized(
        shard,
        request,
        Operation::Read,
        &group_id,
        move |owner| async move {
            let topics = owner.topics();
            owner.groups.offset_commit(commit, &*topics).await
        },
        |e| offsets::every_partition(partitions, e),
    )
    .await;
    outcomes.extend(unauthorized);
    request.respond(&offsets::commit_response(outcomes))
}

pub async fn handle_offset_delete(
    shard: &Rc<Shard>,
    request: &Request,
    body: OffsetDeleteRequest,
) -> Outcome {
    let delete = offsets::delete_request(body);
    let group_id = delete.group_id.clone();
    let answer = on_owner_authorized(
        shard,
        request,
        Operation::Delete,
        &group_id,
        move |owner| async move { owner.groups.offset_delete(delete).await },
        DeleteOffsetsAnswer::refused,
    )
    .await;
    request.respond(&offsets::delete_response(answer))
}

pub async fn handle_offset_fetch(
    shard: &Rc<Shard>,
    request: &Request,
    body: OffsetFetchRequest,
) -> Outcome {
    let version = request.version();
    // v1-7 carry one group at the top level: converted to and from the v8 shape.
    let wire_groups = offsets::fetch_request_groups(&body, version);
    // Kafka's authorization table: a named topic without DESCRIBE is
    // answered TOPIC_AUTHORIZATION_FAILED per partition; when all of the
    // group's offsets are asked for, such topics are left out.
    let may_describe = |topic: &str| topic_allowed(shard, request, Operation::Describe, topic);
    let split: Vec<_> = wire_groups
        .iter()
        .map(|wire| offsets::split_fetch_topics(wire, may_describe))
        .collect();
    let calls = split.iter().map(|(wire, _)| {
        let fetch = offsets::fetch_request(wire, body.require_stable);
        let group_id = fetch.group_id.clone();
        async move {
            let id = group_id.clone();
            let mut answer = on_owner_authorized(
                shard,
                request,
                Operation::Describe,
                &id,
                move |owner| async move { owner.groups.offset_fetch_group(&fetch) },
                |e| FetchedGroup {
                    group_id,
                    error: Some(e),
                    topics: Vec::new(),
                },
            )
            .await;
            if wire.topics.is_none() {
                answer.topics.retain(|t| may_describe(&t.name));
            }
            answer
        }
    });
    let groups = split
        .iter()
        .zip(join_all(calls).await)
        .map(|((wire, unauthorized), answer)| {
            let refused = answer.error.is_some();
            let mut group = offsets::fetch_response_group(wire, answer);
            if !refused {
                group
                    .topics
                    .extend(offsets::unauthorized_fetch_topics(unauthorized));
            }
            group
        })
        .collect();
    request.respond(&offsets::fetch_response(&body, groups, version))
}

pub async fn handle_describe_groups(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeGroupsRequest,
) -> Outcome {
    let version = request.version();
    let calls = body.groups.into_iter().map(|group_id| async move {
        let id = group_id.to_string();
        on_owner_authorized(
            shard,
            request,
            Operation::Describe,
            &group_id,
            move |owner| async move { owner.groups.describe_group(&id) },
            |e| GroupDescription::without_group(&group_id, e),
        )
        .await
    });
    let groups = join_all(calls)
        .await
        .into_iter()
        .map(|group| admin::described_group(group, version))
        .collect();
    request.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

pub async fn handle_list_groups(
    shard: &Rc<Shard>,
    request: &Request,
    body: ListGroupsRequest,
) -> Outcome {
    let states: Vec<String> = body.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = body.types_filter.iter().map(|t| t.to_string()).collect();
    let calls = ShardId::all(shard.shard_count()).map(|owner| {
        let (states, types) = (states.clone(), types.clone());
        run_on(shard, owner, move |s| async move {
            s.groups.list_groups(&states, &types)
        })
    });
    let mut groups = Vec::new();
    let mut error = None;
    for listed in join_all(calls).await {
        // A shard that cannot be reached fails the listing, as a coordinator
        // that cannot answer does in Kafka; the others' groups still come back.
        let listed = or_unavailable(listed.map(Ok), Err);
        match listed {
            Ok(listed) => groups.extend(listed.into_iter().map(admin::listed_group)),
            Err(e) => error = Some(e),
        }
    }
    // Without DESCRIBE on the cluster, only the groups the principal may describe.
    if !cluster_allowed(shard, request, Operation::Describe) {
        groups.retain(|g| group_allowed(shard, request, Operation::Describe, g.group_id.as_str()));
    }
    request.respond(
        &ListGroupsResponse::default()
            .with_error_code(error_code(error))
            .with_groups(groups),
    )
}

pub async fn handle_delete_groups(
    shard: &Rc<Shard>,
    request: &Request,
    body: DeleteGroupsRequest,
) -> Outcome {
    let calls = body.groups_names.into_iter().map(|group_id| async move {
        let id = group_id.to_string();
        let outcome = on_owner_authorized(
            shard,
            request,
            Operation::Delete,
            &group_id,
            move |owner| async move { owner.groups.delete_group(&id).await },
            Err,
        )
        .await;
        admin::deleted_group(group_id, outcome)
    });
    let results = join_all(calls).await;
    request.respond(&DeleteGroupsResponse::default().with_results(results))
}

kafka_api!(FindCoordinator: FindCoordinator, FIND_COORDINATOR_VERSIONS, FindCoordinatorRequest => handle_find_coordinator);

kafka_api!(JoinGroup: JoinGroup, JOIN_GROUP_VERSIONS, JoinGroupRequest => handle_join_group);

kafka_api!(SyncGroup: SyncGroup, SYNC_GROUP_VERSIONS, SyncGroupRequest => handle_sync_group);

kafka_api!(Heartbeat: Heartbeat, HEARTBEAT_VERSIONS, HeartbeatRequest => handle_heartbeat);

kafka_api!(LeaveGroup: LeaveGroup, LEAVE_GROUP_VERSIONS, LeaveGroupRequest => handle_leave_group);

kafka_api!(OffsetCommit: OffsetCommit, OFFSET_COMMIT_VERSIONS, OffsetCommitRequest => handle_offset_commit);

kafka_api!(OffsetFetch: OffsetFetch, OFFSET_FETCH_VERSIONS, OffsetFetchRequest => handle_offset_fetch);

kafka_api!(OffsetDelete: OffsetDelete, OFFSET_DELETE_VERSIONS, OffsetDeleteRequest => handle_offset_delete);

kafka_api!(DescribeGroups: DescribeGroups, DESCRIBE_GROUPS_VERSIONS, DescribeGroupsRequest => handle_describe_groups);

kafka_api!(ListGroups: ListGroups, LIST_GROUPS_VERSIONS, ListGroupsRequest => handle_list_groups);

kafka_api!(DeleteGroups: DeleteGroups, DELETE_GROUPS_VERSIONS, DeleteGroupsRequest => handle_delete_groups);
