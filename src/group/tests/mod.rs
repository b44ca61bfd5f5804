//! Coordinator tests on a real glommio executor and a real log in a temp dir,
//! driven with the coordinator's own request types. The helpers here are
//! shared with the broker's group API tests.
//!
//! - `membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, session and rebalance timeouts.
//! - `static_members`: KIP-345 static membership.
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete, expiry and topic removal.
//! - `admin`: DescribeGroups, ListGroups, DeleteGroups and group placement.
//! - `log`: durability: reopen, torn and corrupt tails, compaction, the log against a model.

mod admin;
mod log;
mod membership;
mod offsets;
mod static_members;

use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};

use super::*;
pub(crate) use crate::ids::PartitionId;
pub(crate) use crate::storage::Offset;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const SESSION_MS: i32 = 400;

pub(crate) fn run<G, F>(test: G)
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

/// Runs `test` with a coordinator opened on a fresh directory.
pub(crate) fn with_coordinator<G, F>(test: G)
where
    G: FnOnce(Rc<GroupCoordinator>) -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let c = open(&path).await;
        test(c).await;
    });
}

pub(crate) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 20,
        min_session_timeout_ms: 10,
        offsets_retention_check_interval_ms: 3_600_000,
        ..GroupConfig::default()
    }
}

pub(crate) async fn open(dir: &Path) -> Rc<GroupCoordinator> {
    GroupCoordinator::open(dir.to_path_buf(), config())
        .await
        .expect("coordinator opens")
}

pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A consumer protocol subscribed to `topics` (the broker decodes the
/// subscription from the metadata; here the metadata is opaque).
fn protocol(name: &str, topics: &[&str]) -> Protocol {
    Protocol {
        name: name.to_string(),
        metadata: Bytes::from(topics.join(",")),
        subscribed_topics: Some(strings(topics)),
    }
}

pub(crate) fn client() -> ClientInfo {
    ClientInfo {
        client_id: "test-client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

/// A JoinGroup as a current client sends it (member ids are handed out first, KIP-394).
fn join_request(group: &str, member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: Some(2_000),
        protocol_type: "consumer".to_string(),
        protocols: vec![
            protocol("range", &["orders"]),
            protocol("roundrobin", &["orders"]),
        ],
        member_id_required: true,
        client: client(),
    }
}

/// The KIP-394 round trip: the first JoinGroup returns the member id, the second joins.
async fn join_dynamic(c: &Rc<GroupCoordinator>, group: &str) -> JoinAnswer {
    let first = c.join_group(join_request(group, "", None)).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    c.join_group(join_request(group, &first.member_id, None))
        .await
}

/// [`join_dynamic`] as its own task, for members joining together.
fn spawn_join_dynamic(c: &Rc<GroupCoordinator>, group: &'static str) -> glommio::Task<JoinAnswer> {
    let c = c.clone();
    glommio::spawn_local(async move { join_dynamic(&c, group).await })
}

fn sync_request(
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| MemberAssignment {
                member_id: m.to_string(),
                assignment: Bytes::copy_from_slice(a.as_bytes()),
            })
            .collect(),
    }
}

fn heartbeat_request(
    group: &str,
    generation: i32,
    member_id: &str,
    instance: Option<&str>,
) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        generation_id: generation,
    }
}

async fn heartbeat(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member_id: &str,
) -> Option<GroupError> {
    c.heartbeat(heartbeat_request(group, generation, member_id, None))
        .await
        .err()
}

fn leave_request(group: &str, members: &[(&str, Option<&str>)]) -> LeaveRequest {
    LeaveRequest {
        group_id: group.to_string(),
        members: members
            .iter()
            .map(|(member_id, instance)| LeavingMember {
                member_id: member_id.to_string(),
                group_instance_id: instance.map(str::to_string),
            })
            .collect(),
    }
}

pub(crate) struct Topics;

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
) -> CommitRequest {
    let mut topics: Vec<CommittedTopic> = Vec::new();
    for (topic, partition, offset) in commits {
        let part = CommittedPartition {
            partition: PartitionId(*partition),
            offset: Offset(*offset),
            leader_epoch: 3,
            metadata: Some("meta".to_string()),
        };
        match topics.iter_mut().find(|t| t.name == *topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(CommittedTopic {
                name: topic.to_string(),
                partitions: vec![part],
            }),
        }
    }
    CommitRequest {
        group_id: group.to_string(),
        generation_id: generation,
        member_id: member_id.to_string(),
        group_instance_id: None,
        retention_ms: None,
        topics,
    }
}

/// Each partition's outcome, in request order.
pub(crate) async fn commit(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member_id: &str,
    commits: &[(&str, i32, i64)],
) -> Vec<Option<GroupError>> {
    let outcomes = c
        .offset_commit(
            commit_request(group, generation, member_id, commits),
            &Topics,
        )
        .await;
    outcomes
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error))
        .collect()
}

fn fetch_request(group: &str, topics: Option<&[(&str, &[i32])]>) -> FetchRequest {
    FetchRequest {
        group_id: group.to_string(),
        topics: topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| TopicPartitions {
                    name: name.to_string(),
                    partitions: partitions.iter().copied().map(PartitionId).collect(),
                })
                .collect()
        }),
        require_stable: false,
    }
}

/// Committed offset of one partition, -1 when none.
fn fetch(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> i64 {
    let fetched = c.offset_fetch_group(&fetch_request(group, Some(&[(topic, &[partition])])));
    assert_eq!(fetched.error, None);
    fetched.topics[0].partitions[0].offset.get()
}

/// Drops the coordinator without closing it, as a crash would, once its
/// background writes are done (a live flusher would race the reopen).
async fn crash(c: Rc<GroupCoordinator>) {
    c.log.wait_idle().await;
    drop(c);
}

/// One member joined and synced: (member id, generation).
/// A stable single-member group `group` whose member committed `offsets`
/// (topic, partition, offset), each accepted; returns (member id, generation).
pub(crate) async fn member_with_commits(
    c: &Rc<GroupCoordinator>,
    group: &str,
    offsets: &[(&str, i32, i64)],
) -> (String, i32) {
    let (member, generation) = stable_single_member(c, group).await;
    assert_eq!(
        commit(c, group, generation, &member, offsets).await,
        vec![None; offsets.len()],
        "commits of a stable member"
    );
    (member, generation)
}

async fn stable_single_member(c: &Rc<GroupCoordinator>, group: &str) -> (String, i32) {
    let joined = join_dynamic(c, group).await;
    assert_eq!(joined.error, None);
    let member_id = joined.member_id.clone();
    let synced = c
        .sync_group(sync_request(
            group,
            joined.generation_id,
            &member_id,
            &[(&member_id, "all")],
        ))
        .await;
    assert_eq!(synced.error, None);
    (member_id, joined.generation_id)
}

fn s(value: &str) -> String {
    value.to_string()
}
