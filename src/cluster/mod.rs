//! Running as one node of a cluster: the controller (a Raft group of the
//! voters on shard 0 of each, KRaft's role) and what every broker does with
//! its committed metadata. Without cluster flags none of this runs.
//!
//! # Layout
//!
//! - [`admin`]: topic changes from clients, checked and proposed to the controller.
//! - [`consensus`]: the `Consensus` contract and its implementation on raft-rs.
//! - [`raft_log`]: the controller's durable Raft log (entries and hard state).
//! - [`logger`]: raft-rs's slog records into `tracing`.
//! - [`frame`]: inter-broker frames, bounded before allocation.
//! - [`transport`]: inter-broker TCP: a listener and one writer per peer.
//! - [`state`]: the replicated state machine (brokers, topics, replica sets).
//! - [`placement`]: spreading replicas and preferred leaders over brokers.
//! - [`controller`]: the loop on shard 0 that drives consensus, leases and proposals.
//! - [`coordinators`]: group coordinators on the leaders of the offsets topic's partitions.
//! - [`elect`]: ElectLeaders: preferred leaders by Raft leadership transfer.
//! - [`local`]: committed metadata applied to this broker's topic table.
//! - [`view`]: the snapshot every shard answers Metadata from.
//! - [`replica`]: one replicated partition's Raft group over its log.
//! - [`replication`]: a shard's partition groups and the turn driving them.
//!
//! A partition with one replica has no Raft group: that replica serves it.

pub mod admin;
pub mod consensus;
pub mod controller;
pub mod coordinators;
pub mod elect;
pub mod frame;
pub mod local;
pub mod logger;
pub mod placement;
pub mod raft_log;
pub mod replica;
pub mod replication;
pub mod state;
pub mod transport;
pub mod view;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use controller::Controller;
pub use replication::Replication;
pub use view::ClusterView;

/// A broker's id (KRaft's `node.id`), as Kafka's wire carries it.
pub type NodeId = i32;

/// A single broker's id, without cluster flags.
pub const SINGLE_NODE_ID: NodeId = 0;

/// The controller's files under the data directory.
pub const CONTROLLER_DIR: &str = "__cluster_metadata";

/// A shard's part in the cluster: the newest view, its partition groups,
/// and on shard 0 the controller.
pub struct ShardCluster {
    pub node: NodeId,
    /// The controller's voters, ascending: the same list on every broker.
    voters: Vec<NodeId>,
    view: RefCell<Arc<ClusterView>>,
    controller: RefCell<Option<Rc<Controller>>>,
    pub replication: Rc<Replication>,
}

impl ShardCluster {
    pub fn new(
        config: &crate::config::ClusterConfig,
        data_dir: &std::path::Path,
        shard: crate::shard::ShardId,
    ) -> ShardCluster {
        let node = config.node_id;
        let mut voters: Vec<NodeId> = config.voters.iter().map(|v| v.node_id).collect();
        voters.sort_unstable();
        voters.dedup();
        ShardCluster {
            node,
            voters,
            view: RefCell::new(Arc::new(ClusterView::empty(node))),
            controller: RefCell::new(None),
            replication: Rc::new(Replication::new(config, data_dir, shard)),
        }
    }

    /// The broker that coordinates a consumer group or transactional id:
    /// one of the voters by the key's CRC-32C, the same on every broker and
    /// across restarts. It takes the hash's high bits (`hash * n >> 32`)
    /// while the shard within that broker takes `hash % shards`, so the
    /// groups of one broker still spread over all its shards.
    pub fn coordinator_of(&self, key: &str) -> NodeId {
        let hash = u64::from(crc32c::crc32c(key.as_bytes()));
        let index = (hash * self.voters.len() as u64) >> 32;
        self.voters
            .get(index as usize)
            .copied()
            .unwrap_or(self.node)
    }

    /// Whether this broker coordinates `key` (see [`coordinator_of`](Self::coordinator_of)).
    pub fn coordinates(&self, key: &str) -> bool {
        self.coordinator_of(key) == self.node
    }

    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    pub fn set_view(&self, view: Arc<ClusterView>) {
        *self.view.borrow_mut() = view;
    }

    /// Only on shard 0, once started.
    pub fn controller(&self) -> Option<Rc<Controller>> {
        self.controller.borrow().clone()
    }

    pub fn set_controller(&self, controller: Rc<Controller>) {
        *self.controller.borrow_mut() = Some(controller);
    }
}
