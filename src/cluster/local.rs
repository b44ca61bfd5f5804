//! Committed metadata applied to this broker: its topic table gets every
//! topic of the cluster, with this broker's role per partition (leader,
//! follower or no replica), through the same registry and per-shard
//! application as a single broker's topic changes; then every shard gets
//! the new [`ClusterView`] for Metadata.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use super::state::{ClusterState, TopicRecord};
use super::view::ClusterView;
use super::NodeId;
use crate::shard::mesh::run_on;
use crate::shard::topics::{ReplicaRole, TopicTable};
use crate::shard::{Shard, ShardId};

/// What was applied last, so an unchanged topic set is not applied again.
#[derive(Default)]
pub struct Applied {
    topics: Option<BTreeMap<String, TopicRecord>>,
}

/// Applies `state` on this broker (topics first, so a client that sees a
/// topic in Metadata finds its partitions open), then publishes the view.
pub async fn apply(
    shard: &Rc<Shard>,
    applied: &mut Applied,
    state: &ClusterState,
    controller: Option<NodeId>,
) {
    let Some(cluster) = shard.cluster.as_ref() else {
        return;
    };
    let node = cluster.node;
    if applied.topics.as_ref() != Some(&state.topics) {
        let defaults = shard.config.topic_defaults.clone();
        let topics = state.topics.clone();
        let outcome = shard
            .replace_topics(move |registry| {
                TopicTable::from_topics(topics.iter().map(|(name, record)| {
                    let config = defaults.with_overrides(&record.configs).unwrap_or_else(|error| {
                        tracing::warn!(topic = %name, %error, "a topic's configs do not apply here; using the defaults");
                        defaults.clone()
                    });
                    let roles: Arc<[ReplicaRole]> =
                        record.partitions.iter().map(|p| role(node, p.leader, &p.replicas)).collect();
                    registry.placed(name, record.id, record.partitions.len(), config, Some(roles))
                }))
            })
            .await;
        match outcome {
            Ok(()) => applied.topics = Some(state.topics.clone()),
            Err(error) => tracing::error!(%error, "applying the cluster's topics failed"),
        }
    }
    let view = Arc::new(ClusterView::of(node, controller, state));
    for target in ShardId::all(shard.shard_count()) {
        let view = view.clone();
        let published = run_on(shard, target, move |s| async move {
            if let Some(cluster) = s.cluster.as_ref() {
                cluster.set_view(view.clone());
                // Detached: opening groups must not hold up the controller.
                let replication = cluster.replication.clone();
                let shard = s.clone();
                glommio::spawn_local(async move { replication.sync(&shard, &view).await }).detach();
            }
        })
        .await;
        if let Err(error) = published {
            tracing::warn!(shard = target.index(), %error, "publishing the cluster view failed");
        }
    }
}

fn role(node: NodeId, leader: NodeId, replicas: &[NodeId]) -> ReplicaRole {
    if leader == node {
        ReplicaRole::Leader
    } else if replicas.contains(&node) {
        ReplicaRole::Follower
    } else {
        ReplicaRole::Absent
    }
}
