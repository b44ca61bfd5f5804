//! Coordinator tests on a real glommio executor and a real log in a temp dir,
//! driven with kafka-protocol request structs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, OffsetDeleteRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_VERSION: i16 = 7;
const SESSION_MS: i32 = 400;

fn run<G, F>(test: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .spawn(move || async move {
            let timed_out = async {
                glommio::timer::sleep(TEST_TIMEOUT).await;
                panic!("test did not finish within {TEST_TIMEOUT:?}");
            };
            futures_lite::future::or(test(), timed_out).await;
        })
        .expect("executor starts")
        .join()
        .expect("test executor thread");
}

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 20,
        min_session_timeout_ms: 10,
        offsets_retention_check_interval_ms: 3_600_000,
        ..GroupConfig::default()
    }
}

async fn open(dir: &Path) -> Rc<GroupCoordinator> {
    GroupCoordinator::open(dir.to_path_buf(), config())
        .await
        .expect("coordinator opens")
}

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
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(&["orders"])),
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(subscription(&["orders"])),
        ])
}

fn client() -> ClientInfo {
    ClientInfo {
        client_id: "test-client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// The KIP-394 round trip: the first JoinGroup returns the member id, the second joins.
async fn join_dynamic(c: &Rc<GroupCoordinator>, group: &str) -> JoinGroupResponse {
    let first = c
        .join_group(join_request(group, "", None), JOIN_VERSION, &client())
        .await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    c.join_group(
        join_request(group, &first.member_id, None),
        JOIN_VERSION,
        &client(),
    )
    .await
}

fn sync_request(
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a.as_bytes()))
                })
                .collect(),
        )
}

fn heartbeat_request(
    group: &str,
    generation: i32,
    member_id: &str,
    instance: Option<&str>,
) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
}

async fn heartbeat(c: &GroupCoordinator, group: &str, generation: i32, member_id: &str) -> i16 {
    c.heartbeat(heartbeat_request(group, generation, member_id, None), 4)
        .await
        .error_code
}

struct Topics;

impl TopicCatalog for Topics {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        match topic {
            "orders" => Some(4),
            "payments" => Some(2),
            _ => None,
        }
    }
}

fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    commits: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in commits {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(3)
            .with_committed_metadata(Some(s("meta")));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![part]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_retention_time_ms(-1)
        .with_topics(topics)
}

async fn commit(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member_id: &str,
    commits: &[(&str, i32, i64)],
) -> Vec<i16> {
    let response = c
        .offset_commit(
            commit_request(group, generation, member_id, commits),
            8,
            &Topics,
        )
        .await;
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offset of one partition, -1 when none.
fn fetch(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> i64 {
    let request = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition])]));
    let response = c.offset_fetch_group(&request, false);
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

/// Drops the coordinator without closing it, as a crash would, once its
/// background writes are done (a live flusher would race the reopen).
async fn crash(c: Rc<GroupCoordinator>) {
    c.log.wait_idle().await;
    drop(c);
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// One member joined and synced: (member id, generation).
async fn stable_single_member(c: &Rc<GroupCoordinator>, group: &str) -> (String, i32) {
    let joined = join_dynamic(c, group).await;
    assert_eq!(joined.error_code, 0);
    let member_id = joined.member_id.as_str().to_string();
    let synced = c
        .sync_group(
            sync_request(
                group,
                joined.generation_id,
                &member_id,
                &[(&member_id, "all")],
            ),
            5,
        )
        .await;
    assert_eq!(synced.error_code, 0);
    (member_id, joined.generation_id)
}

#[test]
fn join_requires_member_id_then_forms_a_generation_with_the_member_as_leader() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let joined = join_dynamic(&c, "g").await;
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(
            joined.protocol_name.as_ref().map(|p| p.as_str()),
            Some("range")
        );
        assert_eq!(joined.members.len(), 1);
        assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
        let member = joined.member_id.as_str();
        let synced = c
            .sync_group(sync_request("g", 1, member, &[(member, "p0-3")]), 5)
            .await;
        assert_eq!(synced.error_code, 0);
        assert_eq!(&synced.assignment[..], b"p0-3");
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        assert_eq!(heartbeat(&c, "g", 1, member).await, 0);
        let described = c.describe_group("g", 5);
        assert_eq!(described.group_state.as_str(), "Stable");
        assert_eq!(described.protocol_data.as_str(), "range");
        assert_eq!(described.members.len(), 1);
        assert_eq!(described.members[0].client_id.as_str(), "test-client");
        assert_eq!(&described.members[0].member_assignment[..], b"p0-3");
    });
}

#[test]
fn join_v3_without_member_id_joins_in_one_round_trip() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let joined = c
            .join_group(join_request("g", "", None), 3, &client())
            .await;
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.generation_id, 1);
        // v3 cannot carry a null protocol name.
        assert_eq!(
            joined.protocol_name.as_ref().map(|p| p.as_str()),
            Some("range")
        );
    });
}

#[test]
fn empty_group_id_is_invalid_for_membership_apis() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let joined = c
            .join_group(join_request("", "", None), JOIN_VERSION, &client())
            .await;
        assert_eq!(joined.error_code, ResponseError::InvalidGroupId.code());
        assert_eq!(
            heartbeat(&c, "", 1, "m").await,
            ResponseError::InvalidGroupId.code()
        );
        let synced = c.sync_group(sync_request("", 1, "m", &[]), 5).await;
        assert_eq!(synced.error_code, ResponseError::InvalidGroupId.code());
        let too_long = "g".repeat(GROUP_ID_BYTES_MAX + 1);
        assert_eq!(
            c.delete_group(&too_long).await,
            ResponseError::InvalidGroupId.code()
        );
    });
}

#[test]
fn session_timeout_outside_bounds_is_rejected() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let request = join_request("g", "", None).with_session_timeout_ms(1);
        let joined = c.join_group(request, JOIN_VERSION, &client()).await;
        assert_eq!(
            joined.error_code,
            ResponseError::InvalidSessionTimeout.code()
        );
    });
}

#[test]
fn two_members_join_together_and_the_leader_distributes_assignments() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let a = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        let b = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        let (a, b) = (a.await, b.await);
        assert_eq!((a.error_code, b.error_code), (0, 0));
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.generation_id, 1);
        assert_eq!(a.leader, b.leader);
        let (leader, follower) = if a.leader == a.member_id {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(leader.members.len(), 2);
        assert!(follower.members.is_empty());
        let follower_id = follower.member_id.as_str().to_string();
        let leader_id = leader.member_id.as_str().to_string();
        // The follower's SyncGroup waits for the leader's.
        let follower_sync = glommio::spawn_local({
            let c = c.clone();
            let follower_id = follower_id.clone();
            async move {
                c.sync_group(sync_request("g", 1, &follower_id, &[]), 5)
                    .await
            }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let leader_sync = c
            .sync_group(
                sync_request(
                    "g",
                    1,
                    &leader_id,
                    &[(&leader_id, "p0,p1"), (&follower_id, "p2,p3")],
                ),
                5,
            )
            .await;
        let follower_sync = follower_sync.await;
        assert_eq!(&leader_sync.assignment[..], b"p0,p1");
        assert_eq!(&follower_sync.assignment[..], b"p2,p3");
        assert_eq!(
            follower_sync.protocol_name.as_ref().map(|p| p.as_str()),
            Some("range")
        );
    });
}

#[test]
fn a_new_member_triggers_a_rebalance_that_bumps_the_generation() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (a, generation) = stable_single_member(&c, "g").await;
        let b = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        // Heartbeats during the rebalance tell the member to rejoin.
        assert_eq!(
            heartbeat(&c, "g", generation, &a).await,
            ResponseError::RebalanceInProgress.code()
        );
        let rejoined = c
            .join_group(join_request("g", &a, None), JOIN_VERSION, &client())
            .await;
        let b = b.await;
        assert_eq!(rejoined.error_code, 0);
        assert_eq!(rejoined.generation_id, generation + 1);
        assert_eq!(b.generation_id, generation + 1);
        // The old leader stays leader.
        assert_eq!(rejoined.leader.as_str(), a);
        assert_eq!(rejoined.members.len(), 2);
        // The previous generation is gone.
        assert_eq!(
            heartbeat(&c, "g", generation, &a).await,
            ResponseError::IllegalGeneration.code()
        );
    });
}

#[test]
fn heartbeat_reports_unknown_member_and_illegal_generation() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            heartbeat(&c, "missing", 1, "m").await,
            ResponseError::UnknownMemberId.code()
        );
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            heartbeat(&c, "g", generation, "stranger").await,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            heartbeat(&c, "g", generation + 5, &member).await,
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(heartbeat(&c, "g", generation, &member).await, 0);
        let synced = c
            .sync_group(sync_request("g", generation + 1, &member, &[]), 5)
            .await;
        assert_eq!(synced.error_code, ResponseError::IllegalGeneration.code());
    });
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let a = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        let b = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        let (a, b) = (a.await, b.await);
        let (a_id, b_id) = (
            a.member_id.as_str().to_string(),
            b.member_id.as_str().to_string(),
        );
        for id in [&a_id, &b_id] {
            let c = c.clone();
            let id = id.clone();
            glommio::spawn_local(
                async move { c.sync_group(sync_request("g", 1, &id, &[]), 5).await },
            )
            .detach();
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
        let leader = a.leader.as_str().to_string();
        c.sync_group(
            sync_request("g", 1, &leader, &[(&a_id, "a"), (&b_id, "b")]),
            5,
        )
        .await;
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        // Only A heartbeats; B falls silent.
        let started = std::time::Instant::now();
        let code = loop {
            let code = heartbeat(&c, "g", 1, &a_id).await;
            if code != 0 || started.elapsed() > Duration::from_secs(5) {
                break code;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code, ResponseError::RebalanceInProgress.code());
        assert!(started.elapsed() >= Duration::from_millis(SESSION_MS as u64 - 100));
        let rejoined = c
            .join_group(join_request("g", &a_id, None), JOIN_VERSION, &client())
            .await;
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert_eq!(
            heartbeat(&c, "g", 2, &b_id).await,
            ResponseError::UnknownMemberId.code()
        );
    });
}

#[test]
fn a_static_member_rejoining_replaces_the_old_member_without_a_rebalance() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        // Static members skip the member-id round trip.
        let a = glommio::spawn_local({
            let c = c.clone();
            async move {
                c.join_group(
                    join_request("g", "", Some("instance-a")),
                    JOIN_VERSION,
                    &client(),
                )
                .await
            }
        });
        let b = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        let (a, b) = (a.await, b.await);
        assert_eq!((a.error_code, b.error_code), (0, 0));
        let (a_id, b_id) = (
            a.member_id.as_str().to_string(),
            b.member_id.as_str().to_string(),
        );
        let follower = if a.leader.as_str() == a_id {
            b_id.clone()
        } else {
            a_id.clone()
        };
        let leader = a.leader.as_str().to_string();
        let pending = glommio::spawn_local({
            let c = c.clone();
            async move { c.sync_group(sync_request("g", 1, &follower, &[]), 5).await }
        });
        glommio::timer::sleep(Duration::from_millis(10)).await;
        c.sync_group(
            sync_request("g", 1, &leader, &[(&a_id, "for-a"), (&b_id, "for-b")]),
            5,
        )
        .await;
        pending.await;
        // A restarts: same instance id, no member id.
        let rejoined = c
            .join_group(
                join_request("g", "", Some("instance-a")),
                JOIN_VERSION,
                &client(),
            )
            .await;
        assert_eq!(rejoined.error_code, 0);
        assert_eq!(rejoined.generation_id, 1, "no rebalance");
        assert_ne!(rejoined.member_id.as_str(), a_id);
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        assert_eq!(heartbeat(&c, "g", 1, &b_id).await, 0);
        let new_a = rejoined.member_id.as_str().to_string();
        let synced = c
            .sync_group(
                sync_request("g", 1, &new_a, &[]).with_group_instance_id(Some(s("instance-a"))),
                5,
            )
            .await;
        assert_eq!(&synced.assignment[..], b"for-a");
        // The old incarnation is fenced.
        let old = c
            .heartbeat(heartbeat_request("g", 1, &a_id, Some("instance-a")), 4)
            .await;
        assert_eq!(old.error_code, ResponseError::FencedInstanceId.code());
        let old_commit = c
            .offset_commit(
                commit_request("g", 1, &a_id, &[("orders", 0, 5)])
                    .with_group_instance_id(Some(s("instance-a"))),
                8,
                &Topics,
            )
            .await;
        assert_eq!(
            old_commit.topics[0].partitions[0].error_code,
            ResponseError::FencedInstanceId.code()
        );
    });
}

#[test]
fn leave_group_by_instance_id_removes_the_static_member() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let a = c
            .join_group(
                join_request("g", "", Some("instance-a")),
                JOIN_VERSION,
                &client(),
            )
            .await;
        assert_eq!(a.error_code, 0);
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_members(vec![
                MemberIdentity::default().with_group_instance_id(Some(s("instance-a"))),
                MemberIdentity::default().with_member_id(s("unknown")),
            ]);
        let left = c.leave_group(request, 4).await;
        assert_eq!(left.error_code, 0);
        assert_eq!(left.members[0].error_code, 0);
        assert_eq!(
            left.members[1].error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(c.group_state("g"), Some(GroupState::Empty));
        // v0-2 answer with a top-level error.
        let old = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("unknown"));
        assert_eq!(
            c.leave_group(old, 1).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
    });
}

#[test]
fn simple_commits_are_fetched_and_bad_partitions_get_their_own_errors() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let codes = commit(
            &c,
            "simple",
            -1,
            "",
            &[("orders", 0, 10), ("orders", 9, 1), ("nope", 0, 1)],
        )
        .await;
        assert_eq!(
            codes,
            vec![
                0,
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
        assert_eq!(fetch(&c, "simple", "orders", 0), 10);
        assert_eq!(fetch(&c, "simple", "orders", 1), -1);
        assert_eq!(fetch(&c, "unknown-group", "orders", 0), -1);
        let all_request = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("simple")))
            .with_topics(None);
        let all = c.offset_fetch_group(&all_request, false);
        assert_eq!(all.topics.len(), 1);
        assert_eq!(
            all.topics[0].partitions[0]
                .metadata
                .as_ref()
                .map(|m| m.as_str()),
            Some("meta")
        );
        assert_eq!(all.topics[0].partitions[0].committed_leader_epoch, 3);
        let big = OffsetCommitRequestPartition::default()
            .with_committed_offset(1)
            .with_committed_metadata(Some(StrBytes::from_string("x".repeat(5000))));
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("simple")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![big])]);
        let response = c.offset_commit(request, 8, &Topics).await;
        assert_eq!(
            response.topics[0].partitions[0].error_code,
            ResponseError::OffsetMetadataTooLarge.code()
        );
        // A generation this coordinator never formed.
        assert_eq!(
            commit(&c, "other", 3, "m", &[("orders", 0, 1)]).await,
            vec![ResponseError::IllegalGeneration.code()]
        );
    });
}

#[test]
fn member_commits_are_checked_against_membership_and_generation() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            commit(&c, "g", generation, &member, &[("orders", 1, 7)]).await,
            vec![0]
        );
        assert_eq!(fetch(&c, "g", "orders", 1), 7);
        assert_eq!(
            commit(&c, "g", generation + 1, &member, &[("orders", 1, 8)]).await,
            vec![ResponseError::IllegalGeneration.code()]
        );
        assert_eq!(
            commit(&c, "g", generation, "stranger", &[("orders", 1, 8)]).await,
            vec![ResponseError::UnknownMemberId.code()]
        );
        // Non-members cannot commit to a group with members.
        assert_eq!(
            commit(&c, "g", -1, "", &[("orders", 1, 8)]).await,
            vec![ResponseError::UnknownMemberId.code()]
        );
        assert_eq!(fetch(&c, "g", "orders", 1), 7);
    });
}

#[test]
fn concurrent_commits_share_fdatasyncs() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let before = c.log_stats().flushes;
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let c = c.clone();
                glommio::spawn_local(async move {
                    commit(&c, "simple", -1, "", &[("orders", i % 4, i as i64)]).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await, vec![0]);
        }
        let flushes = c.log_stats().flushes - before;
        assert!(flushes < 32, "{flushes} flushes for 64 concurrent commits");
        // The last write of each partition wins.
        for partition in 0..4 {
            assert_eq!(
                fetch(&c, "simple", "orders", partition),
                60 + partition as i64
            );
        }
    });
}

#[test]
fn offsets_and_groups_survive_close_and_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            commit(
                &c,
                "g",
                generation,
                &member,
                &[("orders", 0, 42), ("payments", 1, 9)]
            )
            .await,
            vec![0, 0]
        );
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 2, 5)]).await,
            vec![0]
        );
        c.close().await.expect("close");
        assert_eq!(
            heartbeat(&c, "g", generation, &member).await,
            ResponseError::NotCoordinator.code()
        );
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(fetch(&c, "g", "orders", 0), 42);
        assert_eq!(fetch(&c, "g", "payments", 1), 9);
        assert_eq!(fetch(&c, "simple", "orders", 2), 5);
        let listed = c.list_groups(&[], &[]);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].group_id.0.as_str(), "g");
        assert_eq!(listed[0].protocol_type.as_str(), "consumer");
        assert_eq!(listed[0].group_state.as_str(), "Empty");
        // The group restarts Empty; a member rejoins into a later generation.
        let rejoined = join_dynamic(&c, "g").await;
        assert!(rejoined.generation_id > generation);
    });
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("groups.log")
}

fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(log_path(dir)).expect("log exists").len()
}

#[test]
fn a_torn_log_tail_is_truncated_on_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![0]
        );
        let good = log_len(&path);
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 2)]).await,
            vec![0]
        );
        crash(c).await;
        // Cut the last record in half, as a crash during a write would.
        let full = log_len(&path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(log_path(&path))
            .expect("open log");
        file.set_len(good + (full - good) / 2).expect("truncate");
        drop(file);
        let c = open(&path).await;
        assert_eq!(fetch(&c, "simple", "orders", 0), 1);
        assert_eq!(c.log_stats().truncated_bytes, (full - good) / 2);
        assert_eq!(log_len(&path), good);
        // And it appends cleanly after the cut.
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 3)]).await,
            vec![0]
        );
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(fetch(&c, "simple", "orders", 0), 3);
        assert_eq!(c.log_stats().truncated_bytes, 0);
    });
}

#[test]
fn a_corrupt_record_is_cut_from_the_tail() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![0]
        );
        let good = log_len(&path);
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 2)]).await,
            vec![0]
        );
        crash(c).await;
        let mut bytes = std::fs::read(log_path(&path)).expect("read log");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x55;
        std::fs::write(log_path(&path), &bytes).expect("write log");
        let c = open(&path).await;
        assert_eq!(fetch(&c, "simple", "orders", 0), 1);
        assert_eq!(log_len(&path), good);
    });
}

#[test]
fn compaction_keeps_the_log_and_reopen_bounded() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = GroupConfig {
            log_compact_bytes: 8 << 10,
            ..config()
        };
        let c = GroupCoordinator::open(path.clone(), config.clone())
            .await
            .expect("open");
        for i in 0..2_000i64 {
            assert_eq!(
                commit(&c, "simple", -1, "", &[("orders", (i % 4) as i32, i)]).await,
                vec![0]
            );
        }
        let stats = c.log_stats();
        assert!(stats.compactions > 0);
        assert!(
            stats.file_bytes < 16 << 10,
            "log is {} bytes",
            stats.file_bytes
        );
        assert_eq!(stats.live_records, 5, "one group record and four offsets");
        crash(c).await;
        let c = GroupCoordinator::open(path.clone(), config)
            .await
            .expect("reopen");
        for partition in 0..4 {
            assert_eq!(
                fetch(&c, "simple", "orders", partition),
                1996 + partition as i64
            );
        }
        c.close().await.expect("close");
        assert_eq!(c.log_stats().file_records, 5);
        assert!(!path.join("groups.log.compact").exists());
    });
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            commit(&c, "g", generation, &member, &[("orders", 0, 1)]).await,
            vec![0]
        );
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![0]
        );
        let retention = config().offsets_retention_ms;
        let later = coordinator::now_ms() + retention + 1_000;
        // The stable group's offsets stay: its members still consume them.
        assert_eq!(c.expire_offsets(later).await, 1);
        assert_eq!(fetch(&c, "simple", "orders", 0), -1);
        assert_eq!(
            c.group_state("simple"),
            None,
            "an empty group without offsets is removed"
        );
        assert_eq!(fetch(&c, "g", "orders", 0), 1);
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(&member));
        assert_eq!(c.leave_group(leave, 2).await.error_code, 0);
        assert_eq!(c.group_state("g"), Some(GroupState::Empty));
        assert_eq!(c.expire_offsets(coordinator::now_ms()).await, 0);
        assert_eq!(
            c.expire_offsets(coordinator::now_ms() + retention + 1_000)
                .await,
            1
        );
        assert_eq!(c.group_state("g"), None);
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

#[test]
fn delete_group_needs_an_existing_empty_group() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            c.delete_group("missing").await,
            ResponseError::GroupIdNotFound.code()
        );
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            commit(&c, "g", generation, &member, &[("orders", 0, 1)]).await,
            vec![0]
        );
        assert_eq!(
            c.delete_group("g").await,
            ResponseError::NonEmptyGroup.code()
        );
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
        assert_eq!(c.leave_group(leave, 3).await.members[0].error_code, 0);
        assert_eq!(c.delete_group("g").await, 0);
        assert_eq!(fetch(&c, "g", "orders", 0), -1);
        assert_eq!(c.describe_group("g", 5).group_state.as_str(), "Dead");
        assert_eq!(
            c.describe_group("g", 6).error_code,
            ResponseError::GroupIdNotFound.code()
        );
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

#[test]
fn list_groups_filters_by_state_and_type() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        stable_single_member(&c, "stable").await;
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 0, 1)]).await,
            vec![0]
        );
        let stable = c.list_groups(&[s("stable")], &[]);
        assert_eq!(stable.len(), 1);
        assert_eq!(stable[0].group_id.0.as_str(), "stable");
        assert_eq!(c.list_groups(&[s("Empty")], &[s("Classic")]).len(), 1);
        assert!(c.list_groups(&[], &[s("consumer")]).is_empty());
        assert_eq!(c.list_groups(&[], &[]).len(), 2);
    });
}

#[test]
fn offset_delete_refuses_subscribed_topics_and_removes_others() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (member, generation) = stable_single_member(&c, "g").await;
        assert_eq!(
            commit(
                &c,
                "g",
                generation,
                &member,
                &[("orders", 0, 1), ("payments", 0, 2)]
            )
            .await,
            vec![0, 0]
        );
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ]),
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("payments")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ]),
            ]);
        let response = c.offset_delete(request, 0).await;
        assert_eq!(response.error_code, 0);
        assert_eq!(
            response.topics[0].partitions[0].error_code,
            ResponseError::GroupSubscribedToTopic.code()
        );
        assert_eq!(response.topics[1].partitions[0].error_code, 0);
        assert_eq!(fetch(&c, "g", "orders", 0), 1);
        assert_eq!(fetch(&c, "g", "payments", 0), -1);
        let missing = OffsetDeleteRequest::default().with_group_id(GroupId(s("missing")));
        assert_eq!(
            c.offset_delete(missing, 0).await.error_code,
            ResponseError::GroupIdNotFound.code()
        );
    });
}

#[test]
fn removing_a_topic_drops_its_offsets_in_every_group() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(
            commit(&c, "a", -1, "", &[("orders", 0, 1), ("payments", 0, 1)]).await,
            vec![0, 0]
        );
        assert_eq!(commit(&c, "b", -1, "", &[("orders", 3, 1)]).await, vec![0]);
        c.remove_topic("orders").await;
        assert_eq!(fetch(&c, "a", "orders", 0), -1);
        assert_eq!(fetch(&c, "b", "orders", 3), -1);
        assert_eq!(fetch(&c, "a", "payments", 0), 1);
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(fetch(&c, "a", "orders", 0), -1);
        assert_eq!(fetch(&c, "a", "payments", 0), 1);
    });
}

#[test]
fn shard_for_group_is_stable_and_in_range() {
    assert_eq!(
        shard_for_group("orders-consumers", 8),
        shard_for_group("orders-consumers", 8)
    );
    for shards in 1..16 {
        assert!(shard_for_group("g", shards) < shards);
    }
}

fn encodes<T: Encodable>(message: &T, versions: std::ops::RangeInclusive<i16>, what: &str) {
    for version in versions {
        let mut buf = bytes::BytesMut::new();
        if let Err(error) = message.encode(&mut buf, version) {
            panic!("{what} does not encode at v{version}: {error}");
        }
    }
}

#[test]
fn responses_encode_at_every_version_of_their_api() {
    use kafka_protocol::messages::{
        DescribeGroupsResponse, ListGroupsResponse, OffsetFetchResponse,
    };
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        for version in JOIN_GROUP_VERSIONS {
            let error = c
                .join_group(join_request("", "", None), version, &client())
                .await;
            encodes(&error, version..=version, "JoinGroup error");
        }
        // A v0 join completes in one round trip; its response carries the member list.
        let joined = c
            .join_group(join_request("g", "", None), 0, &client())
            .await;
        encodes(&joined, 0..=5, "JoinGroup v0 success");
        let static_join = c
            .join_group(join_request("g", "", Some("i")), 9, &client())
            .await;
        eprintln!(
            "static {} gen {} / joined {} gen {}",
            static_join.error_code,
            static_join.generation_id,
            joined.error_code,
            joined.generation_id
        );
        encodes(&static_join, 9..=9, "JoinGroup v9");
        let member = joined.member_id.as_str().to_string();
        let rejoined = c
            .join_group(join_request("g", &member, None), 9, &client())
            .await;
        encodes(&rejoined, 9..=9, "JoinGroup v9 rejoin");
        let synced = c
            .sync_group(sync_request("g", rejoined.generation_id, &member, &[]), 5)
            .await;
        encodes(&synced, SYNC_GROUP_VERSIONS, "SyncGroup");
        encodes(
            &c.heartbeat(heartbeat_request("g", 1, &member, None), 4)
                .await,
            HEARTBEAT_VERSIONS,
            "Heartbeat",
        );
        let leave_v0 = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("nobody"));
        encodes(&c.leave_group(leave_v0, 0).await, 0..=2, "LeaveGroup v0-2");
        let leave_v3 = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))]);
        encodes(&c.leave_group(leave_v3, 5).await, 3..=5, "LeaveGroup v3-5");
        for version in DESCRIBE_GROUPS_VERSIONS {
            for group in ["g", "missing", ""] {
                let described = DescribeGroupsResponse::default()
                    .with_groups(vec![c.describe_group(group, version)]);
                encodes(&described, version..=version, "DescribeGroups");
            }
        }
        encodes(
            &ListGroupsResponse::default().with_groups(c.list_groups(&[], &[])),
            LIST_GROUPS_VERSIONS,
            "ListGroups",
        );
        let committed = c
            .offset_commit(commit_request("g", -1, "", &[("orders", 0, 1)]), 8, &Topics)
            .await;
        encodes(&committed, OFFSET_COMMIT_VERSIONS, "OffsetCommit");
        let fetch_group = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(None);
        let fetched = OffsetFetchResponse::default()
            .with_groups(vec![c.offset_fetch_group(&fetch_group, false)]);
        encodes(&fetched, 8..=9, "OffsetFetch");
        let deleted = c
            .offset_delete(
                OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))),
                0,
            )
            .await;
        encodes(&deleted, OFFSET_DELETE_VERSIONS, "OffsetDelete");
    });
}

#[test]
fn a_commit_whose_request_is_dropped_still_completes_and_does_not_stall_others() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        // Poll the commit once (it is now waiting on the disk) and drop it, as
        // the broker does when the client's connection closes.
        let dropped = futures_lite::future::poll_once(c.offset_commit(
            commit_request("simple", -1, "", &[("orders", 0, 11)]),
            8,
            &Topics,
        ))
        .await;
        assert!(
            dropped.is_none(),
            "the commit should still be waiting for fdatasync"
        );
        assert_eq!(
            commit(&c, "simple", -1, "", &[("orders", 1, 12)]).await,
            vec![0]
        );
        let visible = {
            let started = std::time::Instant::now();
            loop {
                if fetch(&c, "simple", "orders", 0) == 11
                    || started.elapsed() > Duration::from_secs(5)
                {
                    break fetch(&c, "simple", "orders", 0);
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        };
        assert_eq!(visible, 11);
        // A delete whose request is dropped does not leave the group Dead.
        let dropped = futures_lite::future::poll_once(c.delete_group("simple")).await;
        assert!(dropped.is_none());
        glommio::timer::sleep(Duration::from_millis(200)).await;
        assert_eq!(c.group_state("simple"), None);
        c.close().await.expect("close");
        crash(c).await;
        let c = open(&path).await;
        assert_eq!(c.group_count(), 0);
    });
}

/// Prints commit latency (one at a time and many in flight) and reopen time.
/// `cargo test --lib measure_group_log -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_group_log_commit_latency_and_reopen_time() {
    const SEQUENTIAL: usize = 500;
    const CONCURRENT: usize = 4_000;
    const IN_FLIGHT: usize = 256;
    const OFFSETS: usize = 100_000;
    let dir = tempfile::tempdir_in(std::env::var("MEASURE_DIR").unwrap_or_else(|_| "/tmp".into()))
        .expect("temp dir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        for i in 0..SEQUENTIAL {
            let started = std::time::Instant::now();
            assert_eq!(
                commit(&c, "seq", -1, "", &[("orders", (i % 4) as i32, i as i64)]).await,
                vec![0]
            );
            histogram
                .record(started.elapsed().as_micros() as u64)
                .expect("record");
        }
        println!(
            "sequential commits: {SEQUENTIAL}, latency us p50 {} p99 {} max {}",
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.max()
        );
        let flushes_before = c.log_stats().flushes;
        let started = std::time::Instant::now();
        let semaphore = Rc::new(glommio::sync::Semaphore::new(IN_FLIGHT as u64));
        let mut tasks = Vec::with_capacity(CONCURRENT);
        for i in 0..CONCURRENT {
            let permit = semaphore.acquire_static_permit(1).await.expect("permit");
            let c = c.clone();
            tasks.push(glommio::spawn_local(async move {
                let codes = commit(
                    &c,
                    &format!("group-{}", i % 64),
                    -1,
                    "",
                    &[("orders", (i % 4) as i32, i as i64)],
                )
                .await;
                drop(permit);
                codes
            }));
        }
        for task in tasks {
            assert_eq!(task.await, vec![0]);
        }
        let elapsed = started.elapsed();
        println!(
            "concurrent commits: {CONCURRENT} with {IN_FLIGHT} in flight in {elapsed:?} ({:.0}/s), {} fdatasyncs",
            CONCURRENT as f64 / elapsed.as_secs_f64(),
            c.log_stats().flushes - flushes_before
        );
        // Many distinct offsets: the live state a reopen must load.
        let mut requests = Vec::new();
        for i in 0..OFFSETS / 4 {
            requests.push(commit_request(
                &format!("many-{i}"),
                -1,
                "",
                &[
                    ("orders", 0, i as i64),
                    ("orders", 1, i as i64),
                    ("orders", 2, i as i64),
                    ("orders", 3, i as i64),
                ],
            ));
        }
        let mut pending = Vec::new();
        for (i, request) in requests.into_iter().enumerate() {
            let c = c.clone();
            pending.push(glommio::spawn_local(async move {
                c.offset_commit(request, 8, &Topics).await
            }));
            if i % IN_FLIGHT == 0 {
                for task in pending.drain(..) {
                    task.await;
                }
            }
        }
        for task in pending {
            task.await;
        }
        let stats = c.log_stats();
        println!("before close: {stats:?}");
        c.close().await.expect("close");
        crash(c).await;
        let started = std::time::Instant::now();
        let c = open(&path).await;
        println!(
            "reopen with {} live records ({} bytes): {:?}",
            c.log_stats().live_records,
            c.log_stats().file_bytes,
            started.elapsed()
        );
    });
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (leader, generation) = stable_single_member(&c, "g").await;
        let follower = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let rejoined = c
            .join_group(join_request("g", &leader, None), JOIN_VERSION, &client())
            .await;
        let follower = follower.await;
        assert_eq!(rejoined.generation_id, generation + 1);
        let follower_id = follower.member_id.as_str().to_string();
        let follower_sync = glommio::spawn_local({
            let c = c.clone();
            let follower_id = follower_id.clone();
            async move {
                c.sync_group(sync_request("g", generation + 1, &follower_id, &[]), 5)
                    .await
            }
        });
        glommio::timer::sleep(Duration::from_millis(10)).await;
        c.sync_group(sync_request("g", generation + 1, &leader, &[]), 5)
            .await;
        follower_sync.await;
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
        // The leader rejoins (a new rebalance); the follower keeps heartbeating but never rejoins.
        let started = std::time::Instant::now();
        let done = Rc::new(std::cell::Cell::new(false));
        let leader_join = glommio::spawn_local({
            let c = c.clone();
            let leader = leader.clone();
            let done = done.clone();
            async move {
                let response = c
                    .join_group(join_request("g", &leader, None), JOIN_VERSION, &client())
                    .await;
                done.set(true);
                response
            }
        });
        let mut saw_rebalance = false;
        while !done.get() && started.elapsed() < Duration::from_secs(10) {
            saw_rebalance |= heartbeat(&c, "g", generation + 1, &follower_id).await
                == ResponseError::RebalanceInProgress.code();
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let leader_join = leader_join.await;
        assert!(saw_rebalance);
        assert_eq!(leader_join.error_code, 0);
        assert_eq!(leader_join.generation_id, generation + 2);
        assert_eq!(
            leader_join.members.len(),
            1,
            "the follower was dropped from the generation"
        );
        // The group waited for the longest rebalance timeout among its members (2 s).
        assert!(
            started.elapsed() >= Duration::from_millis(1_900),
            "completed after {:?}",
            started.elapsed()
        );
        assert_eq!(
            heartbeat(&c, "g", generation + 2, &follower_id).await,
            ResponseError::UnknownMemberId.code()
        );
    });
}

#[test]
fn a_member_id_never_used_does_not_hold_up_the_rebalance_forever() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        let (a, _) = stable_single_member(&c, "g").await;
        // A client gets a member id and vanishes.
        let ghost = c
            .join_group(join_request("g", "", None), JOIN_VERSION, &client())
            .await;
        assert_eq!(ghost.error_code, ResponseError::MemberIdRequired.code());
        // The leader rejoins: the rebalance waits for the pending member until its session times out.
        let started = std::time::Instant::now();
        let rejoined = c
            .join_group(join_request("g", &a, None), JOIN_VERSION, &client())
            .await;
        assert_eq!(rejoined.error_code, 0);
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert!(started.elapsed() < Duration::from_millis(SESSION_MS as u64 + 1_000));
        let late = c
            .join_group(
                join_request("g", &ghost.member_id, None),
                JOIN_VERSION,
                &client(),
            )
            .await;
        assert_eq!(late.error_code, ResponseError::UnknownMemberId.code());
    });
}

#[test]
fn a_static_member_replaced_during_completing_rebalance_forces_a_new_rebalance() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        // B joins first and leads; A is a static follower.
        let b = glommio::spawn_local({
            let c = c.clone();
            async move { join_dynamic(&c, "g").await }
        });
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let a = c
            .join_group(
                join_request("g", "", Some("instance-a")),
                JOIN_VERSION,
                &client(),
            )
            .await;
        let b = b.await;
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.leader, b.member_id);
        assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
        let old_id = a.member_id.as_str().to_string();
        // The old incarnation of A waits on SyncGroup when the new one arrives.
        let old_sync = glommio::spawn_local({
            let c = c.clone();
            let old_id = old_id.clone();
            async move {
                let request = sync_request("g", 1, &old_id, &[])
                    .with_group_instance_id(Some(s("instance-a")));
                c.sync_group(request, 5).await
            }
        });
        glommio::timer::sleep(Duration::from_millis(10)).await;
        let new_a = glommio::spawn_local({
            let c = c.clone();
            async move {
                c.join_group(
                    join_request("g", "", Some("instance-a")),
                    JOIN_VERSION,
                    &client(),
                )
                .await
            }
        });
        assert_eq!(
            old_sync.await.error_code,
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
        let b_rejoined = c
            .join_group(
                join_request("g", &b.member_id, None),
                JOIN_VERSION,
                &client(),
            )
            .await;
        let new_a = new_a.await;
        assert_eq!(new_a.error_code, 0);
        assert_eq!(new_a.generation_id, 2);
        assert_eq!(b_rejoined.generation_id, 2);
        assert_ne!(new_a.member_id.as_str(), old_id);
    });
}

/// A small deterministic generator so a failing run can be repeated from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn the_log_matches_a_model_map_across_random_writes_compactions_and_reopens() {
    use super::log::{GroupLog, LogConfig};
    use std::collections::BTreeMap;
    let seed = std::env::var("GROUP_LOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("GROUP_LOG_SEED={seed}");
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut rng = XorShift(seed);
        let config = LogConfig {
            compact_bytes: 2 << 10,
            compact_records: 64,
        };
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut log = Rc::new(GroupLog::open(&path, config).await.expect("open"));
        let mut compactions = 0;
        for round in 0..2_000 {
            match rng.below(100) {
                0..=1 => {
                    // Reopen, sometimes cleanly.
                    if rng.below(2) == 0 {
                        log.close().await.expect("close");
                    }
                    log.wait_idle().await;
                    compactions += log.stats().compactions;
                    drop(log);
                    log = Rc::new(GroupLog::open(&path, config).await.expect("reopen"));
                    let live = log.with_live(|live| live.clone());
                    assert_eq!(
                        live, model,
                        "seed {seed}, round {round}: reopened state differs"
                    );
                }
                2..=20 => {
                    let key = format!("k{}", rng.below(40)).into_bytes();
                    let seq = log.enqueue(key.clone(), None).expect("enqueue");
                    log.sync(seq).await.expect("sync");
                    model.remove(&key);
                }
                _ => {
                    // A batch of concurrent puts, as concurrent commits would do.
                    let mut last = 0;
                    for _ in 0..=rng.below(8) {
                        let key = format!("k{}", rng.below(40)).into_bytes();
                        let value = vec![rng.below(256) as u8; rng.below(64) as usize];
                        last = log
                            .enqueue(key.clone(), Some(value.clone()))
                            .expect("enqueue");
                        model.insert(key, value);
                    }
                    log.sync(last).await.expect("sync");
                }
            }
            let live = log.with_live(|live| live.clone());
            assert_eq!(
                live, model,
                "seed {seed}, round {round}: live state differs"
            );
        }
        compactions += log.stats().compactions;
        assert!(compactions > 0, "seed {seed}: never compacted");
    });
}

proptest::proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let _ = super::record::Key::decode(&bytes);
        let _ = super::record::OffsetValue::decode(&bytes);
        let _ = super::record::GroupValue::decode(&bytes);
        let _ = super::log::scan_for_tests(&bytes);
    }
}

#[test]
fn offset_fetch_of_every_version_converts_to_and_from_the_group_shape() {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::OffsetFetchRequest;
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        assert_eq!(commit(&c, "g", -1, "", &[("orders", 2, 77)]).await, vec![0]);
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
                let answers = offset_fetch_request_groups(&request, version)
                    .iter()
                    .map(|g| c.offset_fetch_group(g, false))
                    .collect();
                let response = offset_fetch_response(&request, answers, version);
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
