//! A scrape's gathering: each shard copies its own numbers on its own
//! thread (a job over the cross-shard channels, like any other), and the
//! copies come back to the shard serving the scrape.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;

use super::local::{
    self, ConnectionCounts, CrossShardCounts, FetchedTraffic, LatencySample, StorageWork,
};
use crate::cluster::replication::LeadershipCounts;
use crate::group::api::CommittedOffset;
use crate::shard::mesh::run_on;
use crate::shard::sample::PartitionSample;
use crate::shard::{Shard, ShardId};
use crate::storage::CacheStats;

/// The executor's own counters, summed since start (glommio hands them out
/// as deltas since the last read).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RuntimeCounts {
    /// Time spent running tasks (glommio's executor runtime): the shard's busy time.
    pub busy: Duration,
    pub tasks_executed: u64,
    pub file_reads: u64,
    pub file_read_bytes: u64,
    pub file_writes: u64,
    pub file_write_bytes: u64,
}

thread_local! {
    static RUNTIME: Cell<RuntimeCounts> = Cell::new(RuntimeCounts::default());
}

/// One shard's numbers at one scrape.
#[derive(Clone, Debug)]
pub struct ShardSample {
    pub shard: ShardId,
    /// Request latency by API key.
    pub requests: Vec<(i16, LatencySample)>,
    /// Errors by (API key, error code).
    pub errors: Vec<((i16, i16), u64)>,
    pub connections: ConnectionCounts,
    pub cross_shard: CrossShardCounts,
    pub fsync: LatencySample,
    pub storage_work: StorageWork,
    pub cache: CacheStats,
    pub cache_capacity_bytes: usize,
    pub runtime: RuntimeCounts,
    /// Traffic fetched through this shard's connections, by topic (and
    /// partition, with per-partition series on).
    pub fetched: Vec<FetchedTraffic>,
    pub partitions: Vec<PartitionSample>,
    pub committed: Vec<CommittedOffset>,
    /// The shard's replicated partitions it leads (zero without a cluster).
    pub leadership: LeadershipCounts,
    /// Raft groups of replicated partitions on this shard: (awake, all).
    pub raft_groups: (usize, usize),
}

/// Copies this shard's numbers (runs on the shard itself).
pub fn sample(shard: &Shard) -> ShardSample {
    let topics = shard.topics();
    let (requests, errors, connections, cross_shard, fsync, storage_work, fetched) =
        local::with(|counters| {
            (
                counters.request_latencies(),
                counters.errors(),
                counters.connections(),
                counters.cross_shard(),
                counters.fsync_latency(),
                counters.storage_work(),
                counters.fetched(|id| topics.get_by_id(id).is_some()),
            )
        });
    ShardSample {
        shard: shard.id,
        requests,
        errors,
        connections,
        cross_shard,
        fsync,
        storage_work,
        cache: shard.cache_stats(),
        cache_capacity_bytes: shard.config.batch_cache_bytes as usize,
        runtime: runtime_counts(),
        fetched,
        partitions: shard.partition_samples(),
        committed: shard.groups.committed_offsets(),
        leadership: shard
            .cluster
            .as_ref()
            .map(|c| c.replication.leadership_counts())
            .unwrap_or_default(),
        raft_groups: shard
            .cluster
            .as_ref()
            .map_or((0, 0), |c| c.replication.group_counts()),
    }
}

/// Adds what glommio counted since the last read to this shard's totals.
fn runtime_counts() -> RuntimeCounts {
    let executor = glommio::executor();
    let stats = executor.executor_stats();
    let io = executor.io_stats().all_rings();
    let (reads, read_bytes) = io.file_reads();
    let (writes, write_bytes) = io.file_writes();
    RUNTIME.with(|total| {
        let mut counts = total.get();
        counts.busy += stats.executor_runtime();
        counts.tasks_executed += stats.tasks_executed();
        counts.file_reads += reads;
        counts.file_read_bytes += read_bytes;
        counts.file_writes += writes;
        counts.file_write_bytes += write_bytes;
        total.set(counts);
        counts
    })
}

/// Every shard's sample, in shard order. A shard whose inbox is full right
/// now is left out of this scrape (the next one will have it).
pub async fn gather(shard: &Rc<Shard>) -> Vec<ShardSample> {
    let calls = ShardId::all(shard.shard_count())
        .map(|target| run_on(shard, target, |owner| async move { sample(&owner) }));
    join_all(calls)
        .await
        .into_iter()
        .filter_map(|answer| match answer {
            Ok(sample) => Some(sample),
            Err(error) => {
                tracing::debug!(%error, "a shard is missing from this scrape");
                None
            }
        })
        .collect()
}
