//! ElectLeaders (KIP-460) in a cluster. A preferred election moves a
//! replicated partition's leadership to its first replica by Raft
//! leadership transfer: the broker that got the request checks the
//! partition in its view, asks the preferred replica's broker (over the
//! inter-broker channel), whose group asks its leader to hand over, and
//! waits until its view names the preferred replica as leader. Raft never
//! elects a replica that lacks committed entries, so an unclean election
//! has nothing to do: a partition with a leader does not need one, and one
//! without has no eligible leader until its group elects one.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::frame::Control;
use super::view::ClusterView;
use super::NodeId;
use crate::shard::mesh::run_on;
use crate::shard::{Shard, METADATA_SHARD};

/// How often the preferred replica is asked again while the transfer has
/// not happened (a leader gives a transfer up after an election timeout).
const ASK_INTERVAL: Duration = Duration::from_millis(1000);
/// How often the view is looked at while an election is waited for.
const VIEW_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Why a partition gets no election; each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    #[error("no such topic or partition")]
    UnknownTopicOrPartition,
    #[error("the preferred replica already leads")]
    PreferredLeads,
    #[error("the partition has a leader")]
    HasLeader,
    #[error("the preferred replica is not live or not in sync")]
    PreferredNotAvailable,
    #[error("no in-sync replica may lead: the partition's Raft group elects one of its own")]
    EligibleNotAvailable,
    #[error("the leadership did not move in time")]
    TimedOut,
}

/// The preferred replica of `topic`'s `partition` if an election would
/// move the leadership to it: live and in the ISR, and not leading yet.
pub fn preferred_candidate(
    view: &ClusterView,
    topic: &str,
    partition: usize,
) -> Result<NodeId, ElectionError> {
    let record = view
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(partition))
        .ok_or(ElectionError::UnknownTopicOrPartition)?;
    let preferred = *record
        .replicas
        .first()
        .ok_or(ElectionError::UnknownTopicOrPartition)?;
    if record.leader == preferred {
        return Err(ElectionError::PreferredLeads);
    }
    let live = view.brokers.iter().any(|b| b.node == preferred);
    if !live || !record.in_sync().contains(&preferred) {
        return Err(ElectionError::PreferredNotAvailable);
    }
    Ok(preferred)
}

/// What an unclean election of `topic`'s `partition` answers (KRaft's:
/// not needed while a leader is known).
pub fn unclean_election(view: &ClusterView, topic: &str, partition: usize) -> ElectionError {
    match view.leadership(topic, partition) {
        None => ElectionError::UnknownTopicOrPartition,
        Some(l) if l.leader >= 0 => ElectionError::HasLeader,
        Some(_) => ElectionError::EligibleNotAvailable,
    }
}

/// Moves the leadership of `topic`'s `partition` to `preferred` and waits
/// until this broker's view shows it, until `deadline`.
pub async fn elect_preferred(
    shard: &Rc<Shard>,
    topic: String,
    partition: u32,
    preferred: NodeId,
    deadline: Instant,
) -> Result<(), ElectionError> {
    let Some(cluster) = shard.cluster.as_ref() else {
        return Err(ElectionError::UnknownTopicOrPartition);
    };
    let leads = || {
        cluster
            .view()
            .leadership(&topic, partition as usize)
            .is_some_and(|l| l.leader == preferred)
    };
    loop {
        ask(shard, topic.clone(), partition, preferred).await;
        let next_ask = Instant::now() + ASK_INTERVAL;
        while Instant::now() < next_ask.min(deadline) {
            glommio::timer::sleep(VIEW_POLL_INTERVAL).await;
            if leads() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ElectionError::TimedOut);
        }
    }
}

/// Asks `preferred`'s broker to claim the partition's leadership (through
/// the controller's channel on the metadata shard).
async fn ask(shard: &Rc<Shard>, topic: String, partition: u32, preferred: NodeId) {
    let asked = run_on(shard, METADATA_SHARD, move |s| async move {
        let Some(cluster) = s.cluster.as_ref() else {
            return;
        };
        if preferred == cluster.node {
            claim_here(&s, topic, partition).await;
        } else if let Some(controller) = cluster.controller() {
            controller.send_control(preferred, Control::ElectPreferred { topic, partition });
        }
    })
    .await;
    if let Err(error) = asked {
        tracing::debug!(%error, "asking for a preferred leader election failed");
    }
}

/// On this broker's metadata shard: the partition's owning shard has its
/// group claim the leadership.
pub async fn claim_here(shard: &Rc<Shard>, topic: String, partition: u32) {
    let owner = shard
        .topics()
        .get(&topic)
        .and_then(|t| t.partition_shards.get(partition as usize).copied());
    let Some(owner) = owner else {
        return;
    };
    let claimed = run_on(shard, owner, move |s| async move {
        if let Some(cluster) = s.cluster.as_ref() {
            cluster.replication.claim_leadership(&topic, partition);
        }
    })
    .await;
    if let Err(error) = claimed {
        tracing::debug!(%error, "a preferred leader election did not reach its shard");
    }
}
