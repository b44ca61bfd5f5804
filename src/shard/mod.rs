//! A shard: one pinned executor, the partitions it owns and its view of the
//! topic table. Everything here runs on the shard's own thread; other shards
//! reach it only through [`mesh::run_on`].

pub mod admin;
mod background;
pub mod exclusive;

pub mod mesh;
pub mod open_files;
mod opening;
pub mod partitions;
pub mod placement;
pub mod runtime;
pub mod sample;
pub mod scatter;
pub mod security;
mod signals;
pub mod startup;
pub mod topics;
pub mod uring_probe;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;

use crate::config::Config;
use crate::group::GroupCoordinator;
pub use crate::net::Shutdown;
use crate::storage::BatchCache;
use crate::txn::{ProducerIdStore, ProducerIds, TxnCoordinator};
use mesh::Mesh;
use topics::{TopicRegistry, TopicTable};

pub use crate::ids::{PartitionId, ShardId};

/// The shard that writes the topic table and answers admin requests.
pub const METADATA_SHARD: ShardId = ShardId(0);

pub struct Shard {
    pub id: ShardId,
    pub config: Arc<Config>,
    pub mesh: Mesh,
    /// The newest topic table this shard has applied.
    topics: RefCell<Arc<TopicTable>>,
    /// The partitions this shard owns, open or idle, by topic then partition.
    logs: RefCell<opening::PartitionSlots>,
    /// Moves when a first opening of a partition finishes.
    opened: crate::storage::notify::Notify,
    /// First openings and closings of unused logs in flight.
    openings: std::cell::Cell<usize>,
    /// Bounds the first openings in flight.
    open_permits: Semaphore,
    cache: Rc<BatchCache>,
    /// Only on [`METADATA_SHARD`]: the persisted writer of the topic table.
    registry: Option<RefCell<TopicRegistry>>,
    /// Serialises topic changes on the metadata shard (one admin change at a time).
    admin_permit: Semaphore,
    pub shutdown: Rc<Shutdown>,
    pub groups: Rc<GroupCoordinator>,
    /// The transaction coordinator of the transactional ids this shard owns.
    pub transactions: Rc<TxnCoordinator>,
    /// Credentials (and the store that changes them, on the metadata shard).
    pub security: security::ShardSecurity,
    /// This shard's block of producer ids (InitProducerId).
    pub producer_ids: ProducerIds,
    /// Only on [`METADATA_SHARD`]: the durable counter blocks come from.
    pub producer_id_store: Option<ProducerIdStore>,
    /// In a cluster: this node's view and (on the metadata shard) the controller.
    pub cluster: Option<crate::cluster::ShardCluster>,
}

impl Shard {
    pub fn topics(&self) -> Arc<TopicTable> {
        self.topics.borrow().clone()
    }

    /// This broker's id: its `--node-id` in a cluster, else node 0.
    pub fn node_id(&self) -> i32 {
        self.cluster
            .as_ref()
            .map_or(crate::kafka::NODE_ID, |c| c.node)
    }

    pub fn shard_count(&self) -> usize {
        self.mesh.shard_count()
    }

    /// The group coordinator's shard for `group_id` (stable across restarts
    /// with the same shard count). In a cluster: the shard owning the
    /// group's offsets partition.
    pub fn shard_of_group(&self, group_id: &str) -> ShardId {
        if self.cluster.is_some() {
            if let Some(topic) = self.topics().get(crate::group::OFFSETS_TOPIC) {
                let partitions = topic.partition_shards.len() as u32;
                let partition = crate::group::partition_for_group(group_id, partitions);
                if let Some(owner) = topic.partition_shards.get(partition as usize) {
                    return *owner;
                }
            }
        }
        ShardId(crate::group::shard_for_group(group_id, self.shard_count()))
    }

    /// The transaction coordinator's shard for `transactional_id`.
    pub fn shard_of_transactional_id(&self, transactional_id: &str) -> ShardId {
        ShardId(crate::txn::shard_for_transactional_id(
            transactional_id,
            self.shard_count(),
        ))
    }
}
