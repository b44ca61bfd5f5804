//! The cluster as Metadata shows it: live brokers, the controller, topics
//! with their partitions' leaders and replicas. An immutable snapshot,
//! published to every shard after each change.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::state::{ClusterState, TopicRecord};
use super::NodeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub node: NodeId,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This broker.
    pub node: NodeId,
    /// The controller's Raft leader, if one is known.
    pub controller: Option<NodeId>,
    /// Live brokers, ascending ids.
    pub brokers: Vec<BrokerEndpoint>,
    pub topics: Arc<BTreeMap<String, TopicRecord>>,
}

impl ClusterView {
    pub fn empty(node: NodeId) -> ClusterView {
        ClusterView {
            node,
            controller: None,
            brokers: Vec::new(),
            topics: Arc::new(BTreeMap::new()),
        }
    }

    pub fn of(node: NodeId, controller: Option<NodeId>, state: &ClusterState) -> ClusterView {
        let brokers = state
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(&node, b)| BrokerEndpoint {
                node,
                host: b.host.clone(),
                port: b.port,
            })
            .collect();
        ClusterView {
            node,
            controller,
            brokers,
            topics: Arc::new(state.topics.clone()),
        }
    }

    pub fn live_brokers(&self) -> usize {
        self.brokers.len()
    }

    /// (leader, leader epoch) of `topic`'s `partition` as the controller last
    /// heard it; `None` for an unknown partition, leader `-1` when none is
    /// known. A replica of the partition knows better: see
    /// [`Shard::leadership`](crate::shard::Shard::leadership).
    pub fn leadership(&self, topic: &str, partition: usize) -> Option<(NodeId, i32)> {
        let record = self.topics.get(topic)?.partitions.get(partition)?;
        Some((record.leader, record.leader_epoch))
    }
}
