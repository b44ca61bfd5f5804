//! KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER (Produce v10+,
//! Fetch v12+) or FENCED_LEADER_EPOCH (Fetch) carries its current leader
//! and epoch, and the response the endpoints of those leaders, so a client
//! moves to the new leader without waiting for a Metadata refresh. Leaders
//! come from the cluster view's leadership; a single broker has no other
//! leader to point at, so it gives none.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use crate::cluster::view::{BrokerEndpoint, Leadership};
use crate::cluster::{ClusterView, NodeId};
use crate::shard::Shard;

/// The leaders named in one response, gathered as partitions are answered.
pub struct LeaderHints {
    view: Option<Arc<ClusterView>>,
    named: BTreeSet<NodeId>,
}

impl LeaderHints {
    pub fn new(shard: &Shard) -> LeaderHints {
        LeaderHints {
            view: shard.cluster.as_ref().map(|c| c.view()),
            named: BTreeSet::new(),
        }
    }

    /// The leader to name for a partition answered with `error_code`, if
    /// the error is one of `hinted` and a live leader is known.
    pub fn hint(
        &mut self,
        topic: &str,
        index: i32,
        error_code: i16,
        hinted: &[ResponseError],
    ) -> Option<Leadership> {
        if !hinted.iter().any(|e| e.code() == error_code) {
            return None;
        }
        let view = self.view.as_ref()?;
        let leadership = view.leadership(topic, usize::try_from(index).ok()?)?;
        if !view.brokers.iter().any(|b| b.node == leadership.leader) {
            return None;
        }
        self.named.insert(leadership.leader);
        Some(leadership)
    }

    /// The endpoints of every leader named, ascending ids.
    pub fn endpoints(&self) -> Vec<BrokerEndpoint> {
        let Some(view) = self.view.as_ref() else {
            return Vec::new();
        };
        let named = view.brokers.iter().filter(|b| self.named.contains(&b.node));
        named.cloned().collect()
    }
}
