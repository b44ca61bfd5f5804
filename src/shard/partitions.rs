//! Partition work on the owning shard: append, read, offset lookups, waits,
//! retention and closing (the slots and first openings are in `opening`).
//!
//! Requests arrive here already split by owner; every type that crosses
//! shards is `Send` and carries record data as `Bytes` (moved, never copied).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join_all, select_all, FutureExt};

use super::topics::ReplicaRole;
use super::{PartitionId, Shard};
use crate::cluster::replica::ReplicaError;
use crate::storage::producer_state::ProducerEntry;
use crate::storage::{
    self, AppendInfo, Durability, Isolation, Offset, PartitionLog, ReadLimit, ReadResult,
    TimestampOffset, TxnMarker,
};

/// Why a partition's part of a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The table this shard holds does not give it the partition (yet).
    #[error("partition is not open yet")]
    NotReady,
    /// In a cluster: another broker leads the partition.
    #[error("this broker is not the partition's leader")]
    NotLeader,
    /// acks=all with fewer caught-up replicas than `min.insync.replicas`.
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
    /// A new leader whose high watermark is not known yet (no entry of its
    /// term committed).
    #[error("the new leader does not know its high watermark yet")]
    OffsetNotAvailable,
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Route(#[from] super::mesh::RouteError),
}

pub struct ProducePart {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub records: Bytes,
}

/// A transaction marker for one partition.
pub struct MarkerPart {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub marker: TxnMarker,
}

pub struct FetchPart {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub offset: Offset,
    pub max_bytes: usize,
    pub isolation: Isolation,
}

/// What ListOffsets asks of one partition: a timestamp or one of Kafka's
/// special values (-1 latest, -2 earliest, -3 max timestamp, ...).
pub struct OffsetQuery {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub timestamp: i64,
    /// read_committed answers "latest" with the last stable offset and finds
    /// no timestamp at or past it (Kafka's `fetchOffsetForTimestamp`).
    pub isolation: Isolation,
}

/// DeleteRecords' offset for "up to the high watermark".
pub const HIGH_WATERMARK: Offset = Offset(-1);

/// KIP-79/KIP-734 special timestamps of ListOffsets.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

impl Shard {
    /// The log a client may read or write: in a cluster, only where this
    /// broker leads the partition (single node: no check at all).
    async fn served_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        if self.cluster.is_some() && !self.leads(topic, partition) {
            return Err(PartitionError::NotLeader);
        }
        self.owned_log(topic, partition).await
    }

    /// In a cluster: (leader, leader epoch) of a partition, the one place
    /// leadership is read from. The partition's own Raft group when it runs
    /// on this shard (its term is the epoch), else the controller's view
    /// (leaders report themselves there). `None` on a single broker or for
    /// an unknown partition; leader `-1` while none is known.
    pub fn leadership(&self, topic: &str, partition: PartitionId) -> Option<(i32, i32)> {
        let cluster = self.cluster.as_ref()?;
        let index = partition.index()?;
        if let Some((leader, term)) = cluster.replication.leadership(topic, index as u32) {
            let epoch = i32::try_from(term).unwrap_or(i32::MAX);
            return Some((leader.unwrap_or(-1), epoch));
        }
        cluster.view().leadership(topic, index)
    }

    /// A replica's log for its Raft group (in a cluster), whoever leads.
    pub async fn replica_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        self.owned_log(topic, partition).await
    }

    /// In a cluster: whether this broker leads the partition (an unknown
    /// partition counts as led, so that it is answered as unknown). A
    /// replicated partition's Raft group says; a leader serves once an
    /// entry of its term is committed.
    fn leads(&self, topic: &str, partition: PartitionId) -> bool {
        if let (Some(cluster), Some(index)) = (self.cluster.as_ref(), partition.index()) {
            if let Some(serving) = cluster.replication.serves(topic, index as u32) {
                return serving;
            }
        }
        let topics = self.topics();
        match (topics.get(topic), partition.index()) {
            (Some(t), Some(index)) => t.role(index) == ReplicaRole::Leader,
            _ => true,
        }
    }

    pub async fn produce_local(
        self: Rc<Self>,
        parts: Vec<ProducePart>,
        durability: Durability,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let appends = parts.into_iter().map(|part| {
            let shard = self.clone();
            async move {
                if shard.is_replicated_here(&part.topic, part.partition) {
                    return shard.produce_replicated(part, durability).await;
                }
                let log = shard.served_log(&part.topic, part.partition).await?;
                Ok(log.append(part.records, durability).await?)
            }
        });
        join_all(appends).await
    }

    /// In a cluster: a produce to a replicated partition goes through its
    /// Raft group (`None` for any other partition).
    async fn produce_replicated(
        &self,
        part: ProducePart,
        durability: Durability,
    ) -> Result<AppendInfo, PartitionError> {
        let index = part.partition.index().ok_or(PartitionError::NotReady)? as u32;
        let Some(cluster) = self.cluster.as_ref() else {
            return Err(PartitionError::NotReady);
        };
        let min_insync = match durability {
            Durability::Durable => self
                .topics()
                .get(&part.topic)
                .map_or(1, |t| t.config.min_insync_replicas()),
            Durability::Written => 1,
        };
        let answer = cluster
            .replication
            .produce(&part.topic, index, part.records, durability, min_insync)
            .await
            .ok_or(PartitionError::NotLeader)?;
        answer.map_err(|error| match error {
            ReplicaError::Storage(error) => PartitionError::Storage(error),
            ReplicaError::NotLeader => PartitionError::NotLeader,
            ReplicaError::NotEnoughReplicas => PartitionError::NotEnoughReplicas,
            // A leadership transfer in progress drops proposals: the client retries.
            ReplicaError::Raft(_) | ReplicaError::Busy => PartitionError::NotLeader,
            other => {
                tracing::warn!(topic = %part.topic, partition = index, error = %other, "a replicated produce failed");
                PartitionError::NotLeader
            }
        })
    }

    /// In a cluster: whether this broker was just elected leader of the
    /// partition and has not committed an entry of its term yet.
    fn is_new_leader(&self, topic: &str, partition: PartitionId) -> bool {
        match (self.cluster.as_ref(), partition.index()) {
            (Some(cluster), Some(index)) => cluster.replication.is_new_leader(topic, index as u32),
            _ => false,
        }
    }

    /// In a cluster: whether the partition has a Raft group on this shard.
    fn is_replicated_here(&self, topic: &str, partition: PartitionId) -> bool {
        match (self.cluster.as_ref(), partition.index()) {
            (Some(cluster), Some(index)) => {
                cluster.replication.serves(topic, index as u32).is_some()
            }
            _ => false,
        }
    }

    /// Writes each part's transaction marker, durably (see
    /// [`PartitionLog::append_marker`]).
    pub async fn write_markers_local(
        self: Rc<Self>,
        parts: Vec<MarkerPart>,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let appends = parts.into_iter().map(|part| {
            let shard = self.clone();
            async move {
                if shard.is_replicated_here(&part.topic, part.partition) {
                    // Through the Raft group like any batch, answered once committed.
                    let records =
                        crate::storage::control::marker_batch(&part.marker, crate::clock::now_ms());
                    let produce = ProducePart {
                        topic: part.topic,
                        partition: part.partition,
                        records,
                    };
                    return shard.produce_replicated(produce, Durability::Durable).await;
                }
                let log = shard.served_log(&part.topic, part.partition).await?;
                Ok(log.append_marker(part.marker).await?)
            }
        });
        join_all(appends).await
    }

    /// Reads each part in order within `max_bytes` in all and each part's own
    /// limit, as Kafka's ReplicaManager does (KIP-74): only the first part that
    /// returns data may exceed them, by its first batch.
    pub async fn fetch_local(
        self: Rc<Self>,
        parts: Vec<FetchPart>,
        max_bytes: usize,
    ) -> Vec<Result<ReadResult, PartitionError>> {
        let mut remaining = max_bytes;
        let mut first_batch_whole = true;
        let mut results = Vec::with_capacity(parts.len());
        for part in parts {
            let limit = ReadLimit {
                max_bytes: part.max_bytes.min(remaining),
                first_batch_whole,
            };
            let result = match self.served_log(&part.topic, part.partition).await {
                Ok(log) => log
                    .read_isolated(part.offset, limit, part.isolation)
                    .await
                    .map_err(PartitionError::from),
                Err(error) => Err(error),
            };
            if let Ok(read) = &result {
                let bytes = read.total_bytes();
                if bytes > 0 {
                    first_batch_whole = false;
                }
                remaining = remaining.saturating_sub(bytes);
            }
            results.push(result);
        }
        results
    }

    /// Resolves when any part's log grows past its offset, or after `timeout`.
    pub async fn wait_for_data_local(
        self: Rc<Self>,
        parts: Vec<(Arc<str>, PartitionId, Offset)>,
        timeout: Duration,
    ) {
        let waits: Vec<_> = parts
            .iter()
            .filter_map(|(topic, partition, offset)| {
                let log = self.log(topic, *partition)?;
                let offset = *offset;
                Some(async move { log.wait_for_offset(offset).await }.boxed_local())
            })
            .collect();
        let sleep = glommio::timer::sleep(timeout);
        if waits.is_empty() {
            sleep.await;
            return;
        }
        futures_lite::future::or(
            async {
                select_all(waits).await;
            },
            sleep,
        )
        .await;
    }

    pub async fn list_offsets_local(
        self: Rc<Self>,
        queries: Vec<OffsetQuery>,
    ) -> Vec<Result<TimestampOffset, PartitionError>> {
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            let answer = async {
                if self.is_new_leader(&query.topic, query.partition) {
                    return Err(PartitionError::OffsetNotAvailable);
                }
                let log = self.served_log(&query.topic, query.partition).await?;
                let fetchable_end = match query.isolation {
                    Isolation::ReadUncommitted => log.high_watermark(),
                    Isolation::ReadCommitted => log.last_stable_offset(),
                };
                let before_end =
                    |found: Option<TimestampOffset>| found.filter(|f| f.offset < fetchable_end);
                // -1 for either where Kafka answers -1.
                Ok(match query.timestamp {
                    LATEST_TIMESTAMP => TimestampOffset::new(-1, fetchable_end.get()),
                    EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                        TimestampOffset::new(-1, log.log_start_offset().get())
                    }
                    LATEST_TIERED_TIMESTAMP => TimestampOffset::UNKNOWN,
                    MAX_TIMESTAMP => {
                        before_end(log.max_timestamp().await?).unwrap_or(TimestampOffset::UNKNOWN)
                    }
                    timestamp => before_end(log.offset_for_timestamp(timestamp).await?)
                        .unwrap_or(TimestampOffset::UNKNOWN),
                })
            }
            .await;
            answers.push(answer);
        }
        answers
    }

    /// DeleteRecords: `offset` -1 means "up to the high watermark".
    pub async fn delete_records_local(
        self: Rc<Self>,
        parts: Vec<(Arc<str>, PartitionId, Offset)>,
    ) -> Vec<Result<Offset, PartitionError>> {
        let mut answers = Vec::with_capacity(parts.len());
        for (topic, partition, offset) in parts {
            let answer = async {
                let log = self.served_log(&topic, partition).await?;
                let before = if offset == HIGH_WATERMARK {
                    log.high_watermark()
                } else {
                    offset
                };
                Ok(log.delete_records(before).await?)
            }
            .await;
            answers.push(answer);
        }
        answers
    }

    /// DescribeProducers: the producers each partition tracks.
    pub async fn describe_producers_local(
        self: Rc<Self>,
        parts: Vec<(Arc<str>, PartitionId)>,
    ) -> Vec<Result<Vec<(i64, ProducerEntry)>, PartitionError>> {
        let mut answers = Vec::with_capacity(parts.len());
        for (topic, partition) in parts {
            let log = self.served_log(&topic, partition).await;
            answers.push(log.map(|log| log.producers()));
        }
        answers
    }

    /// Runs retention on every owned log (a background, low-priority pass).
    pub async fn enforce_retention(&self, now_ms: i64) {
        // Idle partitions with sealed segments open first, to be enforced too.
        self.open_idle_with_sealed_segments().await;
        for log in self.open_logs() {
            if let Err(error) = log.enforce_retention(now_ms).await {
                tracing::error!(shard = self.id.index(), %error, "retention failed");
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Flushes and checkpoints every owned log (clean shutdown).
    pub async fn close_logs(&self) {
        self.settle_openings().await;
        let logs: Vec<Rc<PartitionLog>> = self.open_logs();
        self.logs.borrow_mut().clear();
        // Each close syncs its files: many at once share the disk's flushes.
        let closes = futures::stream::iter(logs);
        let close = |log: Rc<PartitionLog>| async move {
            if let Err(error) = log.close().await {
                tracing::error!(shard = self.id.index(), %error, "closing a partition log failed");
            }
        };
        futures::StreamExt::for_each_concurrent(
            closes,
            super::opening::CLOSES_IN_FLIGHT_MAX,
            close,
        )
        .await;
    }
}
