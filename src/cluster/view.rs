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

/// Who leads a partition, and at which epoch (KIP-320's leader epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// `-1` when no replica is live.
    pub leader: NodeId,
    pub epoch: i32,
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

    /// Who leads partition `index` of `topic`, at which epoch: every such
    /// read in a cluster goes through here.
    pub fn leadership(&self, topic: &str, index: usize) -> Option<Leadership> {
        let partition = self.topics.get(topic)?.partitions.get(index)?;
        Some(Leadership {
            leader: partition.leader,
            epoch: partition.leader_epoch,
        })
    }

    /// Whether partition `index` of `topic` has more than one replica (it
    /// is then served through its Raft group alone).
    pub fn is_replicated(&self, topic: &str, index: usize) -> bool {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(index))
            .is_some_and(|p| p.replicas.len() > 1)
    }

    pub fn live_brokers(&self) -> usize {
        self.brokers.len()
    }
}
