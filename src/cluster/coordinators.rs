//! Group coordinators in a cluster. Committed offsets and group facts live
//! in the internal topic `__consumer_offsets` (a fixed partition count
//! chosen when the cluster forms, replicated like any topic); the
//! coordinator of a group is the leader of its partition,
//! [`partition_for_group`]. Its writes are record batches appended through
//! that partition's Raft group and acknowledged once committed; a broker
//! that becomes leader replays the partition (answering
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile) and one that loses leadership
//! unloads the groups.
//!
//! [`partition_for_group`]: crate::group::partition_for_group

use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use super::replication::Replication;
use super::view::{BrokerEndpoint, ClusterView};
use crate::group::{partition_for_group, Load, OffsetsPartitions, OFFSETS_TOPIC};
use crate::shard::{PartitionId, Shard};
use crate::storage::{Durability, Offset};

/// How often a shard compares its offsets partitions' leadership with the
/// groups its coordinator has loaded.
const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes read per step of a replay.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The broker coordinating `group_id`: the leader of its offsets partition,
/// if the topic exists and that leader is live.
pub fn coordinator_of<'v>(view: &'v ClusterView, group_id: &str) -> Option<&'v BrokerEndpoint> {
    let topic = view.topics.get(OFFSETS_TOPIC)?;
    let partition = partition_for_group(group_id, topic.partitions.len() as u32);
    let leader = topic.partitions.get(partition as usize)?.leader;
    view.brokers.iter().find(|b| b.node == leader)
}

/// Whether this broker coordinates `group_id` by the view.
pub fn coordinates(view: &ClusterView, group_id: &str) -> bool {
    coordinator_of(view, group_id).is_some_and(|b| b.node == view.node)
}

/// The offsets topic's replication factor: the configured one, at most
/// the voters.
pub fn offsets_replication_factor(configured: i16, voters: usize) -> i16 {
    configured.min(i16::try_from(voters.max(1)).unwrap_or(i16::MAX))
}

/// The topic's configs: offsets stay until the coordinator deletes them
/// (offset expiry writes deletes), never by time or size.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    [("retention.ms", "-1"), ("retention.bytes", "-1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The coordinator's log in a cluster: appends to the offsets partitions
/// this shard owns, through their Raft groups (committed, acks=all), or to
/// the one local log of an unreplicated partition (one broker).
pub struct ShardOffsets {
    pub replication: Rc<Replication>,
    pub shard: std::cell::RefCell<Weak<Shard>>,
    /// `offsets.topic.num.partitions`.
    pub configured_partitions: u32,
}

impl OffsetsPartitions for ShardOffsets {
    /// The topic's own count once it exists (the configured one is only
    /// used to create it), else the configured one.
    fn partitions(&self) -> u32 {
        self.shard
            .borrow()
            .upgrade()
            .and_then(|s| s.topics().get(OFFSETS_TOPIC).map(|t| t.partition_count()))
            .map_or(self.configured_partitions, |count| count.max(1) as u32)
    }

    fn append(&self, partition: u32, batch: Bytes) -> LocalBoxFuture<'static, Result<(), String>> {
        let replication = self.replication.clone();
        let shard = self.shard.borrow().upgrade();
        Box::pin(async move {
            // Committed means a Raft majority has it; no further floor of
            // caught-up replicas (the topic's default min.insync.replicas).
            if let Some(answer) = replication
                .produce(
                    OFFSETS_TOPIC,
                    partition,
                    batch.clone(),
                    Durability::Durable,
                    1,
                )
                .await
            {
                return answer.map(|_| ()).map_err(|e| e.to_string());
            }
            let shard = shard.ok_or("the shard is closing")?;
            let log = shard
                .replica_log(OFFSETS_TOPIC, PartitionId(partition as i32))
                .await
                .map_err(|e| e.to_string())?;
            log.append(batch, Durability::Durable)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Whether this broker leads offsets partition `partition` and may serve
/// its groups: a replicated partition's Raft group says (a leader serves
/// once an entry of its term is committed, so its high watermark is the
/// commit index); an unreplicated one is led by its only replica.
fn leads(shard: &Shard, view: &ClusterView, partition: u32) -> bool {
    let Some(cluster) = shard.cluster.as_ref() else {
        return false;
    };
    if let Some(serving) = cluster.replication.serves(OFFSETS_TOPIC, partition) {
        return serving;
    }
    view.topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(partition as usize))
        .is_some_and(|p| p.replicas == [view.node] && p.leader == view.node)
}

/// On every shard of a cluster broker: loads the groups of each offsets
/// partition this shard owns once this broker leads it, and unloads them
/// when it no longer does.
pub async fn watch_leadership(shard: Rc<Shard>) {
    // The Raft term each loaded partition was loaded in: leadership lost
    // and regained between two checks is a new term, and a fresh replay
    // (another leader may have committed records meanwhile).
    let mut loaded_terms = HashMap::new();
    loop {
        glommio::timer::sleep(LEADERSHIP_CHECK_INTERVAL).await;
        if shard.shutdown.has_started() {
            return;
        }
        check_leadership(&shard, &mut loaded_terms);
    }
}

fn check_leadership(shard: &Rc<Shard>, loaded_terms: &mut HashMap<u32, u64>) {
    let Some(cluster) = shard.cluster.as_ref() else {
        return;
    };
    let view = cluster.view();
    let topics = shard.topics();
    let Some(info) = topics.get(OFFSETS_TOPIC) else {
        return;
    };
    for (index, owner) in info.partition_shards.iter().enumerate() {
        let partition = index as u32;
        if *owner != shard.id {
            continue;
        }
        let leads = leads(shard, &view, partition);
        let term = cluster
            .replication
            .leadership(OFFSETS_TOPIC, partition)
            .map_or(0, |(_, term)| term);
        let state = shard.groups.load_state(partition);
        let stale = state.is_some() && loaded_terms.get(&partition) != Some(&term);
        if state.is_some() && (!leads || stale) {
            shard.groups.unload_partition(partition);
            loaded_terms.remove(&partition);
        }
        if leads && (state.is_none() || stale) {
            shard.groups.begin_load(partition);
            loaded_terms.insert(partition, term);
            glommio::spawn_local(replay(shard.clone(), partition)).detach();
        }
    }
}

/// Reads offsets partition `partition` up to its high watermark and
/// loads its groups; a failed replay unloads, to be tried again.
async fn replay(shard: Rc<Shard>, partition: u32) {
    let loaded = async {
        let log = shard
            .replica_log(OFFSETS_TOPIC, PartitionId(partition as i32))
            .await
            .map_err(|e| e.to_string())?;
        let end = log.high_watermark();
        let mut from = log.log_start_offset();
        let mut ops = Vec::new();
        while from < end {
            let read = log
                .read(from, REPLAY_READ_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            let Some(next) = read.batches.last().and_then(next_offset) else {
                break;
            };
            ops.extend(
                crate::group::log::partition::decode_batches(&read.batches)
                    .map_err(|e| e.to_string())?,
            );
            from = next;
        }
        Ok::<_, String>(ops)
    }
    .await;
    if shard.groups.load_state(partition) != Some(Load::Loading) {
        return;
    }
    let loaded = loaded.and_then(|ops| {
        shard
            .groups
            .load_partition(partition, ops)
            .map_err(|e| e.to_string())
    });
    if let Err(error) = loaded {
        tracing::warn!(partition, %error, "replaying an offsets partition failed; trying again");
        shard.groups.unload_partition(partition);
    }
}

/// The offset after a stored batch's last record (base offset + last offset delta + 1).
fn next_offset(batch: &Bytes) -> Option<Offset> {
    let base = i64::from_be_bytes(batch.get(0..8)?.try_into().ok()?);
    let delta = i32::from_be_bytes(batch.get(23..27)?.try_into().ok()?);
    Some(Offset(base + delta as i64 + 1))
}

/// Whether the controller's leader creates the offsets topic now: once,
/// when enough brokers are live for its replication factor.
pub fn should_create_offsets_topic(
    is_leader: bool,
    has_topic: bool,
    live: usize,
    replication_factor: i16,
) -> bool {
    is_leader && !has_topic && live >= replication_factor.max(1) as usize
}
