//! The group APIs' wire mapping against a real coordinator: every response
//! encodes at every version served, and the version-dependent fields and
//! outcomes are those Kafka gives.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsResponse,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::group::tests::{client, commit, with_coordinator, Topics, SESSION_MS};
use crate::group::{GroupCoordinator, GROUP_ID_BYTES_MAX};
use crate::ids::PartitionId;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .encode(&mut out, 1)
        .expect("encode subscription");
    out.freeze()
}

fn join_request(group: &str, member_id: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(2_000)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(&["orders"]))])
}

async fn join(c: &Rc<GroupCoordinator>, body: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let answer = c
        .join_group(membership::join_request(body, version, client()))
        .await;
    membership::join_response(answer, version)
}

async fn leave(c: &GroupCoordinator, body: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leave = membership::leave_request(body, version);
    let answer = c.leave_group(leave.clone()).await;
    membership::leave_response(&leave, answer, version)
}

fn encodes<T: Encodable>(message: &T, versions: RangeInclusive<i16>, what: &str) {
    for version in versions {
        let mut buf = bytes::BytesMut::new();
        if let Err(error) = message.encode(&mut buf, version) {
            panic!("{what} does not encode at v{version}: {error}");
        }
    }
}

fn described(c: &GroupCoordinator, group: &str, version: i16) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default().with_groups(vec![admin::described_group(
        c.describe_group(group),
        version,
    )])
}

#[test]
fn responses_encode_at_every_version_of_their_api() {
    with_coordinator(|c| async move {
        membership_responses_encode(&c).await;
        admin_and_offset_responses_encode(&c).await;
    });
}

async fn membership_responses_encode(c: &Rc<GroupCoordinator>) {
    for version in JOIN_GROUP_VERSIONS {
        let error = join(c, join_request("", "", None), version).await;
        encodes(&error, version..=version, "JoinGroup error");
    }
    // A v0 join completes in one round trip; its response carries the member list.
    let joined = join(c, join_request("g", "", None), 0).await;
    encodes(&joined, 0..=5, "JoinGroup v0 success");
    let static_join = join(c, join_request("g", "", Some("i")), 9).await;
    encodes(&static_join, 9..=9, "JoinGroup v9");
    let member = joined.member_id.to_string();
    let rejoined = join(c, join_request("g", &member, None), 9).await;
    encodes(&rejoined, 9..=9, "JoinGroup v9 rejoin");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(rejoined.generation_id)
        .with_member_id(s(&member));
    let synced = c.sync_group(membership::sync_request(sync)).await;
    encodes(
        &membership::sync_response(synced),
        SYNC_GROUP_VERSIONS,
        "SyncGroup",
    );
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(s(&member));
    let beat = c.heartbeat(membership::heartbeat_request(heartbeat)).await;
    encodes(
        &membership::heartbeat_response(beat),
        HEARTBEAT_VERSIONS,
        "Heartbeat",
    );
    let leave_v0 = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("nobody"));
    encodes(&leave(c, leave_v0, 0).await, 0..=2, "LeaveGroup v0-2");
    let leave_v3 = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))]);
    encodes(&leave(c, leave_v3, 5).await, 3..=5, "LeaveGroup v3-5");
}

async fn admin_and_offset_responses_encode(c: &Rc<GroupCoordinator>) {
    for version in DESCRIBE_GROUPS_VERSIONS {
        for group in ["g", "missing", ""] {
            encodes(
                &described(c, group, version),
                version..=version,
                "DescribeGroups",
            );
        }
    }
    let listed = c.list_groups(&[], &[]).into_iter().map(admin::listed_group);
    encodes(
        &ListGroupsResponse::default().with_groups(listed.collect()),
        LIST_GROUPS_VERSIONS,
        "ListGroups",
    );
    let commit_body = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_committed_offset(1)
                .with_committed_metadata(Some(s("meta")))])]);
    let committed = c
        .offset_commit(offsets::commit_request(commit_body, 8), &Topics)
        .await;
    encodes(
        &offsets::commit_response(committed),
        OFFSET_COMMIT_VERSIONS,
        "OffsetCommit",
    );
    let fetch_group = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(None);
    let fetched = c.offset_fetch_group(&offsets::fetch_request(&fetch_group, false));
    let fetched = OffsetFetchResponse::default()
        .with_groups(vec![offsets::fetch_response_group(&fetch_group, fetched)]);
    encodes(&fetched, 8..=9, "OffsetFetch");
    let delete_body = OffsetDeleteRequest::default().with_group_id(GroupId(s("g")));
    let deleted = c.offset_delete(offsets::delete_request(delete_body)).await;
    encodes(
        &offsets::delete_response(deleted),
        OFFSET_DELETE_VERSIONS,
        "OffsetDelete",
    );
    let deleted = admin::deleted_group(GroupId(s("g")), c.delete_group("g").await);
    encodes(
        &DeleteGroupsResponse::default().with_results(vec![deleted]),
        DELETE_GROUPS_VERSIONS,
        "DeleteGroups",
    );
}

#[test]
fn version_dependent_fields_and_outcomes_follow_kafka() {
    with_coordinator(|c| async move {
        // v3 joins in one round trip and cannot carry a null protocol name.
        let joined = join(&c, join_request("g", "", None), 3).await;
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        // KIP-394: v4+ hands out the member id first; v4-6 errors carry an empty protocol name.
        let first = join(&c, join_request("h", "", None), 4).await;
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        assert_eq!(first.protocol_name.as_deref(), Some(""));
        let first = join(&c, join_request("h", "", None), 7).await;
        assert_eq!(first.protocol_name, None);
        // LeaveGroup v0-2 answer with a top-level error, v3+ per member.
        let old = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("unknown"));
        assert_eq!(
            leave(&c, old, 1).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
        let batch = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_members(vec![MemberIdentity::default().with_member_id(s("unknown"))]);
        let left = leave(&c, batch, 3).await;
        assert_eq!(left.error_code, 0);
        assert_eq!(
            left.members[0].error_code,
            ResponseError::UnknownMemberId.code()
        );
        // KIP-1043: only DescribeGroups v6 reports a missing group as an error.
        let v5 = &described(&c, "missing", 5).groups[0];
        assert_eq!((v5.group_state.as_str(), v5.error_code), ("Dead", 0));
        let v6 = &described(&c, "missing", 6).groups[0];
        assert_eq!(v6.error_code, ResponseError::GroupIdNotFound.code());
        assert!(v6.error_message.is_some());
    });
}

#[test]
fn consumer_subscriptions_are_decoded_from_protocol_metadata() {
    assert_eq!(
        membership::subscribed_topics(&subscription(&["orders", "payments"])),
        Some(vec!["orders".to_string(), "payments".to_string()])
    );
    assert_eq!(
        membership::subscribed_topics(&Bytes::from_static(b"\xff")),
        None
    );
    assert_eq!(
        membership::subscribed_topics(&Bytes::from_static(b"\xff\xff")),
        None
    );
    let joined = membership::join_request(join_request("g", "", None), 9, client());
    assert_eq!(
        joined.protocols[0].subscribed_topics,
        Some(vec!["orders".to_string()])
    );
    let other = join_request("g", "", None).with_protocol_type(s("connect"));
    let joined = membership::join_request(other, 9, client());
    assert_eq!(joined.protocols[0].subscribed_topics, None);
}

#[test]
fn offset_fetch_of_every_version_converts_to_and_from_the_group_shape() {
    with_coordinator(|c| async move {
        assert_eq!(
            commit(&c, "g", -1, "", &[("orders", 2, 77)]).await,
            vec![None]
        );
        for version in OFFSET_FETCH_VERSIONS {
            for group in ["g", &"x".repeat(GROUP_ID_BYTES_MAX + 1)] {
                let topics = vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![2, 3])];
                let request = if version >= 8 {
                    OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(s(group)))
                            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                                .with_name(TopicName(s("orders")))
                                .with_partition_indexes(vec![2, 3])])),
                    ])
                } else {
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(s(group)))
                        .with_topics(Some(topics))
                };
                let answers = offsets::fetch_request_groups(&request, version)
                    .iter()
                    .map(|g| {
                        let answer = c.offset_fetch_group(&offsets::fetch_request(g, false));
                        offsets::fetch_response_group(g, answer)
                    })
                    .collect();
                let response = offsets::fetch_response(&request, answers, version);
                encodes(&response, version..=version, "OffsetFetch");
                let (offset, code) = if version >= 8 {
                    let group = &response.groups[0];
                    (
                        group
                            .topics
                            .first()
                            .map(|t| t.partitions[0].committed_offset),
                        group.error_code,
                    )
                } else {
                    let first = response.topics.first().map(|t| &t.partitions[0]);
                    let code = if version >= 2 {
                        response.error_code
                    } else {
                        first.map_or(0, |p| p.error_code)
                    };
                    (first.map(|p| p.committed_offset), code)
                };
                if group == "g" {
                    assert_eq!((offset, code), (Some(77), 0), "v{version}");
                } else {
                    assert_eq!(code, ResponseError::InvalidGroupId.code(), "v{version}");
                }
            }
        }
    });
}

/// A shard whose inbox is full answers in the request's own error fields.
#[test]
fn an_unreachable_coordinator_is_answered_with_coordinator_not_available() {
    let unreachable = || Err::<(), _>(RouteError::InboxFull(ShardId(1)));
    let code = ResponseError::CoordinatorNotAvailable.code();

    let join = or_unavailable(unreachable().map(|_| unreachable_join()), |e| {
        JoinAnswer::refused(e, "member-1")
    });
    let join = membership::join_response(join, 9);
    assert_eq!(
        (join.error_code, join.member_id.as_str()),
        (code, "member-1")
    );

    let sync = membership::sync_response(or_unavailable(
        unreachable().map(|_| SyncAnswer::refused(GroupError::UnknownMemberId)),
        SyncAnswer::refused,
    ));
    assert_eq!(sync.error_code, code);

    let heartbeat = membership::heartbeat_response(or_unavailable(unreachable().map(Ok), Err));
    assert_eq!(heartbeat.error_code, code);

    let partitions = vec![crate::group::TopicPartitions {
        name: "orders".into(),
        partitions: vec![PartitionId(0), PartitionId(1)],
    }];
    let commit = offsets::commit_response(or_unavailable(unreachable().map(|_| Vec::new()), |e| {
        offsets::every_partition(partitions, e)
    }));
    let codes: Vec<i16> = commit.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [code, code], "every partition of the commit");

    let described = or_unavailable(
        unreachable().map(|_| GroupDescription::without_group("g", GroupError::UnknownMemberId)),
        |e| GroupDescription::without_group("g", e),
    );
    assert_eq!(admin::described_group(described, 5).error_code, code);
}

fn unreachable_join() -> JoinAnswer {
    JoinAnswer::refused(GroupError::UnknownMemberId, "")
}
