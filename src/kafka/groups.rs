//! Consumer-group APIs: each request (or each group of a multi-group
//! request) is routed to the shard that owns the group, where its
//! `GroupCoordinator` answers. FindCoordinator is answered here: this broker
//! coordinates every group.

use std::ops::RangeInclusive;
use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Outcome, Request, NODE_ID};
use crate::decode_or_close;
use crate::group::{offset_fetch_request_groups, offset_fetch_response, ClientInfo, TopicCatalog};
use crate::shard::mesh::run_on;
use crate::shard::topics::TopicTable;
use crate::shard::Shard;

pub const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=6;
// The coordinator declares the versions it answers, and its tests encode
// every response at each of them; this layer advertises exactly those.
pub use crate::group::{
    DELETE_GROUPS_VERSIONS, DESCRIBE_GROUPS_VERSIONS, HEARTBEAT_VERSIONS, JOIN_GROUP_VERSIONS,
    LEAVE_GROUP_VERSIONS, LIST_GROUPS_VERSIONS, OFFSET_COMMIT_VERSIONS, OFFSET_DELETE_VERSIONS,
    OFFSET_FETCH_VERSIONS, SYNC_GROUP_VERSIONS,
};

/// FindCoordinator key type for consumer groups (1 is transactions).
const KEY_TYPE_GROUP: i8 = 0;

impl TopicCatalog for TopicTable {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.get(topic).map(|t| t.partition_count())
    }
}

/// Answers a request that a coordinator could not be reached for.
fn unreachable(request: &Request, what: &str, error: impl std::fmt::Display) -> Outcome {
    Outcome::Close(format!(
        "{what}: group coordinator unreachable: {error} (request {})",
        request.header.correlation_id
    ))
}

macro_rules! route_single_group {
    ($shard:expr, $request:expr, $ty:ty, |$coordinator:ident, $body:ident, $version:ident, $owner_shard:ident| $call:expr) => {{
        let $body = decode_or_close!($request, $ty);
        let $version = $request.version();
        let owner = $shard.shard_of_group($body.group_id.as_str());
        match run_on($shard, owner, move |$owner_shard| async move {
            let $coordinator = $owner_shard.groups.clone();
            $call.await
        })
        .await
        {
            Ok(response) => $request.respond(&response),
            Err(error) => unreachable($request, stringify!($ty), error),
        }
    }};
}

pub fn handle_find_coordinator(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, FindCoordinatorRequest);
    let host = StrBytes::from_string(shard.config.advertised_host.clone());
    let port = shard.config.advertised_port as i32;
    let answer = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key);
        if body.key_type == KEY_TYPE_GROUP {
            coordinator
                .with_node_id(BrokerId(NODE_ID))
                .with_host(host.clone())
                .with_port(port)
        } else {
            // No transaction coordinator (transactions are not implemented).
            coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "transactions are not supported",
                )))
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

pub async fn handle_join_group(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let client = ClientInfo {
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: request.client_host.to_string(),
    };
    route_single_group!(
        shard,
        request,
        JoinGroupRequest,
        |coordinator, body, version, owner| {
            async move { coordinator.join_group(body, version, &client).await }
        }
    )
}

pub async fn handle_sync_group(shard: &Rc<Shard>, request: &Request) -> Outcome {
    route_single_group!(
        shard,
        request,
        SyncGroupRequest,
        |coordinator, body, version, owner| coordinator.sync_group(body, version)
    )
}

pub async fn handle_heartbeat(shard: &Rc<Shard>, request: &Request) -> Outcome {
    route_single_group!(
        shard,
        request,
        HeartbeatRequest,
        |coordinator, body, version, owner| coordinator.heartbeat(body, version)
    )
}

pub async fn handle_leave_group(shard: &Rc<Shard>, request: &Request) -> Outcome {
    route_single_group!(
        shard,
        request,
        LeaveGroupRequest,
        |coordinator, body, version, owner| coordinator.leave_group(body, version)
    )
}

pub async fn handle_offset_commit(shard: &Rc<Shard>, request: &Request) -> Outcome {
    route_single_group!(
        shard,
        request,
        OffsetCommitRequest,
        |coordinator, body, version, owner| {
            async move {
                let topics = owner.topics();
                coordinator.offset_commit(body, version, &*topics).await
            }
        }
    )
}

pub async fn handle_offset_delete(shard: &Rc<Shard>, request: &Request) -> Outcome {
    route_single_group!(
        shard,
        request,
        OffsetDeleteRequest,
        |coordinator, body, version, owner| coordinator.offset_delete(body, version)
    )
}

/// Fetches each group's offsets on its owner shard, keeping the request order.
async fn fetch_groups(
    shard: &Rc<Shard>,
    groups: Vec<OffsetFetchRequestGroup>,
    require_stable: bool,
) -> Result<Vec<OffsetFetchResponseGroup>, String> {
    let calls = groups.into_iter().map(|group| {
        let owner = shard.shard_of_group(group.group_id.as_str());
        run_on(shard, owner, move |s| async move {
            s.groups.offset_fetch_group(&group, require_stable)
        })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

pub async fn handle_offset_fetch(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, OffsetFetchRequest);
    // v1-7 carry one group at the top level: converted to and from the v8 shape.
    let groups = offset_fetch_request_groups(&body, request.version());
    match fetch_groups(shard, groups, body.require_stable).await {
        Ok(groups) => request.respond(&offset_fetch_response(&body, groups, request.version())),
        Err(error) => unreachable(request, "OffsetFetch", error),
    }
}

pub async fn handle_describe_groups(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, DescribeGroupsRequest);
    let version = request.version();
    let calls = body.groups.into_iter().map(|group_id| {
        let owner = shard.shard_of_group(group_id.as_str());
        run_on(shard, owner, move |s| async move {
            s.groups.describe_group(group_id.as_str(), version)
        })
    });
    let mut groups: Vec<DescribedGroup> = Vec::new();
    for described in join_all(calls).await {
        match described {
            Ok(group) => groups.push(group),
            Err(error) => return unreachable(request, "DescribeGroups", error),
        }
    }
    request.respond(&DescribeGroupsResponse::default().with_groups(groups))
}

pub async fn handle_list_groups(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, ListGroupsRequest);
    let calls = (0..shard.shard_count()).map(|owner| {
        let (states, types) = (body.states_filter.clone(), body.types_filter.clone());
        run_on(shard, owner, move |s| async move {
            s.groups.list_groups(&states, &types)
        })
    });
    let mut groups = Vec::new();
    for listed in join_all(calls).await {
        match listed {
            Ok(listed) => groups.extend(listed),
            Err(error) => return unreachable(request, "ListGroups", error),
        }
    }
    request.respond(&ListGroupsResponse::default().with_groups(groups))
}

pub async fn handle_delete_groups(shard: &Rc<Shard>, request: &Request) -> Outcome {
    let body = decode_or_close!(request, DeleteGroupsRequest);
    let calls = body.groups_names.into_iter().map(|group_id| {
        let owner = shard.shard_of_group(group_id.as_str());
        async move {
            let id = group_id.clone();
            let code = run_on(shard, owner, move |s| async move {
                s.groups.delete_group(id.as_str()).await
            })
            .await;
            (group_id, code)
        }
    });
    let mut results = Vec::new();
    for (group_id, code) in join_all(calls).await {
        let code = code.unwrap_or(ResponseError::CoordinatorNotAvailable.code());
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code),
        );
    }
    request.respond(&DeleteGroupsResponse::default().with_results(results))
}
