//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup between the wire and the
//! coordinator's types: which fields and behaviours exist at which version.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::{error_code, non_empty, str_bytes};
use crate::group::{self, ClientInfo, GroupError};

/// KIP-394: from JoinGroup v4 a new dynamic member first gets its member id.
const JOIN_MEMBER_ID_REQUIRED_VERSION: i16 = 4;
/// JoinGroup v7 makes protocol_name nullable; older clients expect a string.
const JOIN_NULLABLE_PROTOCOL_NAME_VERSION: i16 = 7;
/// KIP-814: skip_assignment exists from JoinGroup v9.
const JOIN_SKIP_ASSIGNMENT_VERSION: i16 = 9;
/// KIP-345: LeaveGroup v3+ leaves a batch of members, each with an outcome.
const LEAVE_BATCH_VERSION: i16 = 3;
/// The newest ConsumerProtocolSubscription version this code decodes; newer
/// versions only add fields, so they are read as this one.
const SUBSCRIPTION_VERSION_MAX: i16 = 3;
/// The protocol type whose metadata is a ConsumerProtocolSubscription.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

pub fn join_request(
    body: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
) -> group::JoinRequest {
    let consumer = body.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
    let protocols = body
        .protocols
        .into_iter()
        .map(|p| group::Protocol {
            subscribed_topics: consumer.then(|| subscribed_topics(&p.metadata)).flatten(),
            name: p.name.to_string(),
            metadata: p.metadata,
        })
        .collect();
    group::JoinRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: non_empty(body.group_instance_id),
        session_timeout_ms: body.session_timeout_ms,
        // JoinGroup v0 has no rebalance timeout.
        rebalance_timeout_ms: (version > 0).then_some(body.rebalance_timeout_ms),
        protocol_type: body.protocol_type.to_string(),
        protocols,
        member_id_required: version >= JOIN_MEMBER_ID_REQUIRED_VERSION,
        client,
    }
}

pub fn join_response(answer: group::JoinAnswer, version: i16) -> JoinGroupResponse {
    let protocol_name = match answer.protocol_name {
        None if version < JOIN_NULLABLE_PROTOCOL_NAME_VERSION => Some(StrBytes::new()),
        name => name.map(StrBytes::from_string),
    };
    let members = answer
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(error_code(answer.error))
        .with_generation_id(answer.generation_id)
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(answer.leader))
        .with_skip_assignment(answer.skip_assignment && version >= JOIN_SKIP_ASSIGNMENT_VERSION)
        .with_member_id(StrBytes::from_string(answer.member_id))
        .with_members(members)
}

/// The topics of a ConsumerProtocolSubscription (a version, then the
/// subscription); `None` when the metadata is not one.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return None;
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    let subscription =
        ConsumerProtocolSubscription::decode(&mut buf, version.min(SUBSCRIPTION_VERSION_MAX))
            .ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

pub fn sync_request(body: SyncGroupRequest) -> group::SyncRequest {
    let assignments = body
        .assignments
        .into_iter()
        .map(|a| group::MemberAssignment {
            member_id: a.member_id.to_string(),
            assignment: a.assignment,
        })
        .collect();
    group::SyncRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: non_empty(body.group_instance_id),
        generation_id: body.generation_id,
        // v5+: the protocol the client expects (absent before).
        protocol_type: body.protocol_type.map(|t| t.to_string()),
        protocol_name: body.protocol_name.map(|n| n.to_string()),
        assignments,
    }
}

pub fn sync_response(answer: group::SyncAnswer) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(error_code(answer.error))
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(answer.protocol_name.map(StrBytes::from_string))
        .with_assignment(answer.assignment)
}

pub fn heartbeat_request(body: HeartbeatRequest) -> group::HeartbeatRequest {
    group::HeartbeatRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: non_empty(body.group_instance_id),
        generation_id: body.generation_id,
    }
}

pub fn heartbeat_response(outcome: Result<(), GroupError>) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(error_code(outcome.err()))
}

pub fn leave_request(body: LeaveGroupRequest, version: i16) -> group::LeaveRequest {
    let members = if version >= LEAVE_BATCH_VERSION {
        body.members
            .into_iter()
            .map(|m| group::LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: non_empty(m.group_instance_id),
            })
            .collect()
    } else {
        vec![group::LeavingMember {
            member_id: body.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    group::LeaveRequest {
        group_id: body.group_id.to_string(),
        members,
    }
}

/// v0-2 carry one member's outcome at the top level; v3+ one per member.
pub fn leave_response(
    request: &group::LeaveRequest,
    answer: group::LeaveAnswer,
    version: i16,
) -> LeaveGroupResponse {
    if version < LEAVE_BATCH_VERSION {
        let error = answer
            .error
            .or_else(|| answer.members.first().copied().flatten());
        return LeaveGroupResponse::default().with_error_code(error_code(error));
    }
    let members = request
        .members
        .iter()
        .zip(answer.members)
        .map(|(member, error)| {
            MemberResponse::default()
                .with_member_id(str_bytes(&member.member_id))
                .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                .with_error_code(error_code(error))
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(error_code(answer.error))
        .with_members(members)
}
