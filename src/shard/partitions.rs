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

use super::{PartitionId, Shard};
use crate::cluster::replica::ReplicaError;
use crate::cluster::view::Leadership;
use crate::cluster::SINGLE_NODE_ID;
use crate::storage::leader_epochs::{EpochEnd, UNDEFINED_EPOCH};
use crate::storage::producer_state::ProducerEntry;
use crate::storage::{
    self, AppendInfo, AppendTurn, Durability, Isolation, Offset, PartitionLog, ReadLimit,
    ReadResult, TimestampOffset, TxnMarker,
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
    /// KIP-320: the client's leader epoch is older than the leader's.
    #[error("the client's leader epoch is older than the leader's")]
    FencedLeaderEpoch,
    /// KIP-320: the client's leader epoch is newer than the leader's.
    #[error("the client's leader epoch is newer than the leader's")]
    UnknownLeaderEpoch,
    /// acks=all with fewer caught-up replicas than `min.insync.replicas`.
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
    /// A new leader whose high watermark is not known yet (no entry of its
    /// term committed).
    #[error("the new leader does not know its high watermark yet")]
    OffsetNotAvailable,
    /// The request's timeout ran out before its change was committed.
    #[error("the request timed out")]
    TimedOut,
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
    /// KIP-320; [`NO_LEADER_EPOCH_CHECK`] for none.
    pub current_leader_epoch: i32,
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
    /// KIP-320; [`NO_LEADER_EPOCH_CHECK`] for none.
    pub current_leader_epoch: i32,
}

/// OffsetForLeaderEpoch asks where `leader_epoch` ended in one partition.
pub struct EpochQuery {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    /// KIP-320; [`NO_LEADER_EPOCH_CHECK`] for none.
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// DeleteRecords' offset for "up to the high watermark".
pub const HIGH_WATERMARK: Offset = Offset(-1);

/// KIP-79/KIP-734 special timestamps of ListOffsets.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// KIP-320: a `current_leader_epoch` of -1 asks for no check.
pub const NO_LEADER_EPOCH_CHECK: i32 = -1;

/// KIP-320: a client's `current_leader_epoch` against the leader's.
pub fn check_leader_epoch(current: i32, leader: i32) -> Result<(), PartitionError> {
    if current == NO_LEADER_EPOCH_CHECK || current == leader {
        Ok(())
    } else if current < leader {
        Err(PartitionError::FencedLeaderEpoch)
    } else {
        Err(PartitionError::UnknownLeaderEpoch)
    }
}

impl Shard {
    /// Who leads a partition this shard owns, and at which epoch: in a
    /// cluster, its Raft group's answer where it has one here, else the
    /// view's; a single node leads every partition, at
    /// the epoch its log stamps on appended batches.
    pub fn leadership(
        &self,
        topic: &str,
        partition: PartitionId,
        log: &PartitionLog,
    ) -> Option<Leadership> {
        match &self.cluster {
            Some(cluster) => {
                let index = partition.index()?;
                // A replicated partition's own Raft group knows best: its term
                // is the epoch.
                if let Some((leader, term)) = cluster.replication.leadership(topic, index as u32) {
                    return Some(Leadership {
                        leader: leader.unwrap_or(-1),
                        epoch: i32::try_from(term).unwrap_or(i32::MAX),
                    });
                }
                cluster.view().leadership(topic, index)
            }
            None => Some(Leadership {
                leader: SINGLE_NODE_ID,
                epoch: log.leader_epoch(),
            }),
        }
    }

    /// The log a client may read or write: in a cluster, only where this
    /// broker leads the partition; its log then stamps the leader's epoch.
    async fn served_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        Ok(self.served_log_to_append(topic, partition, false).await?.0)
    }

    /// [`served_log`](Self::served_log) for an append, with the turn it took
    /// if it waited for the log to open (see [`Shard::owned_log_to_append`]).
    async fn served_log_to_append(
        &self,
        topic: &str,
        partition: PartitionId,
        in_turn: bool,
    ) -> Result<(Rc<PartitionLog>, Option<AppendTurn>), PartitionError> {
        let Some(cluster) = self.cluster.as_ref() else {
            return self.owned_log_to_append(topic, partition, in_turn).await;
        };
        // A replicated partition's Raft group says; its leader serves once
        // an entry of its term is committed, and stamps its term itself.
        if let Some(serving) = partition
            .index()
            .and_then(|index| cluster.replication.serves(topic, index as u32))
        {
            if !serving {
                return Err(PartitionError::NotLeader);
            }
            return self.owned_log_to_append(topic, partition, in_turn).await;
        }
        let view = cluster.view();
        // A replicated partition whose group is not open here (yet): the
        // view's leader may be this broker before a restart, and its log
        // must not take or serve anything outside Raft.
        if partition
            .index()
            .is_some_and(|index| view.is_replicated(topic, index))
        {
            return Err(PartitionError::NotLeader);
        }
        let leadership = partition
            .index()
            .and_then(|index| view.leadership(topic, index));
        match leadership {
            Some(l) if l.leader == cluster.node => {
                let (log, turn) = self.owned_log_to_append(topic, partition, in_turn).await?;
                log.raise_leader_epoch(l.epoch);
                Ok((log, turn))
            }
            Some(_) => Err(PartitionError::NotLeader),
            // In the topic table but not yet in the view: a moment away.
            None if self.knows(topic, partition) => Err(PartitionError::NotLeader),
            // Unknown: answered as such.
            None => self.owned_log_to_append(topic, partition, in_turn).await,
        }
    }

    /// [`served_log`](Self::served_log), fenced by the client's
    /// `current_leader_epoch` (KIP-320).
    async fn served_log_at(
        &self,
        topic: &str,
        partition: PartitionId,
        current_leader_epoch: i32,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        let log = self.served_log(topic, partition).await?;
        if current_leader_epoch != NO_LEADER_EPOCH_CHECK {
            let leader = self.leadership(topic, partition, &log);
            let epoch = leader.map_or(log.leader_epoch(), |l| l.epoch);
            check_leader_epoch(current_leader_epoch, epoch)?;
        }
        Ok(log)
    }

    /// A replica's log for its Raft group (in a cluster), whoever leads.
    pub async fn replica_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        self.owned_log(topic, partition).await
    }

    fn knows(&self, topic: &str, partition: PartitionId) -> bool {
        let topics = self.topics();
        match (topics.get(topic), partition.index()) {
            (Some(t), Some(index)) => index < t.partition_count().max(0) as usize,
            _ => false,
        }
    }

    /// Appends `parts`; on a replicated partition the answer waits for
    /// `durability` until `timeout` (none: until it comes).
    pub async fn produce_local(
        self: Rc<Self>,
        parts: Vec<ProducePart>,
        durability: Durability,
        timeout: Option<std::time::Duration>,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let appends = parts.into_iter().map(|part| {
            let shard = self.clone();
            // Pipelined requests of one producer must reach the log in the
            // order they arrived: nothing here awaits before the append has
            // its place in the partition's queue.
            async move {
                if shard.is_replicated_here(&part.topic, part.partition) {
                    // The proposal takes its place on the first poll; past
                    // the deadline the client is told REQUEST_TIMED_OUT (the
                    // batch may still commit, and a retry is a duplicate).
                    return until(deadline, shard.produce_replicated(part, durability)).await;
                }
                let (log, turn) = shard
                    .served_log_to_append(&part.topic, part.partition, true)
                    .await?;
                Ok(log.append_in_turn(part.records, durability, turn).await?)
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
            let served = self.served_log_at(&part.topic, part.partition, part.current_leader_epoch);
            let result = match served.await {
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

    /// Each answer carries the leader epoch its offset was written in, or
    /// the current one for the log end (Kafka's `fetchOffsetForTimestamp`).
    pub async fn list_offsets_local(
        self: Rc<Self>,
        queries: Vec<OffsetQuery>,
    ) -> Vec<Result<(TimestampOffset, i32), PartitionError>> {
        let mut answers = Vec::with_capacity(queries.len());
        for query in queries {
            let answer = async {
                if self.is_new_leader(&query.topic, query.partition) {
                    return Err(PartitionError::OffsetNotAvailable);
                }
                let log = self
                    .served_log_at(&query.topic, query.partition, query.current_leader_epoch)
                    .await?;
                let fetchable_end = match query.isolation {
                    Isolation::ReadUncommitted => log.high_watermark(),
                    Isolation::ReadCommitted => log.last_stable_offset(),
                };
                let before_end =
                    |found: Option<TimestampOffset>| found.filter(|f| f.offset < fetchable_end);
                // -1 for either where Kafka answers -1.
                let found = match query.timestamp {
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
                };
                let epoch = match found.offset {
                    offset if offset.get() < 0 => UNDEFINED_EPOCH,
                    offset if offset >= fetchable_end => log.leader_epoch(),
                    offset => log.epoch_for_offset(offset).unwrap_or(UNDEFINED_EPOCH),
                };
                Ok((found, epoch))
            }
            .await;
            answers.push(answer);
        }
        answers
    }

    /// OffsetForLeaderEpoch: where each asked epoch ended (KIP-101, KIP-320).
    pub async fn epoch_end_offsets_local(
        self: Rc<Self>,
        queries: Vec<EpochQuery>,
    ) -> Vec<Result<EpochEnd, PartitionError>> {
        let mut answers = Vec::with_capacity(queries.len());
        for q in queries {
            let log = self
                .served_log_at(&q.topic, q.partition, q.current_leader_epoch)
                .await;
            answers.push(log.map(|log| log.end_offset_for_epoch(q.leader_epoch)));
        }
        answers
    }

    /// DeleteRecords of `parts` (`offset` -1 means "up to the high
    /// watermark"); on a replicated partition the answer waits for the
    /// commit until `timeout` (none: until it comes).
    pub async fn delete_records_local(
        self: Rc<Self>,
        parts: Vec<(Arc<str>, PartitionId, Offset)>,
        timeout: Option<std::time::Duration>,
    ) -> Vec<Result<Offset, PartitionError>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut answers = Vec::with_capacity(parts.len());
        for (topic, partition, offset) in parts {
            let answer = async {
                let log = self.served_log(&topic, partition).await?;
                let before = if offset == HIGH_WATERMARK {
                    log.high_watermark()
                } else {
                    offset
                };
                if self.is_replicated_here(&topic, partition) {
                    // Past the deadline the entry may still commit, and every
                    // replica then moves its log start.
                    return until(
                        deadline,
                        self.delete_records_replicated(&topic, partition, before),
                    )
                    .await;
                }
                Ok(log.delete_records(before).await?)
            }
            .await;
            answers.push(answer);
        }
        answers
    }

    /// DeleteRecords on a replicated partition this broker leads (served_log
    /// let only the leader through): through its Raft group.
    async fn delete_records_replicated(
        &self,
        topic: &str,
        partition: PartitionId,
        before: Offset,
    ) -> Result<Offset, PartitionError> {
        let index = partition.index().ok_or(PartitionError::NotReady)? as u32;
        let cluster = self.cluster.as_ref().ok_or(PartitionError::NotReady)?;
        let answer = cluster
            .replication
            .delete_records(topic, index, before)
            .await
            .ok_or(PartitionError::NotLeader)?;
        answer.map_err(|error| match error {
            ReplicaError::Storage(error) => PartitionError::Storage(error),
            ReplicaError::NotEnoughReplicas => PartitionError::NotEnoughReplicas,
            other => {
                tracing::info!(topic, partition = index, error = %other, "a replicated DeleteRecords failed");
                PartitionError::NotLeader
            }
        })
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
        // Replicated partitions: their Raft groups remove what they may.
        if let Some(cluster) = self.cluster.as_ref() {
            cluster.replication.enforce_retention(now_ms).await;
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

/// `answer`, or `TimedOut` once `deadline` (if any) passes first. `answer`
/// is polled first, so whatever it does before its first wait is done.
async fn until<T>(
    deadline: Option<std::time::Instant>,
    answer: impl std::future::Future<Output = Result<T, PartitionError>>,
) -> Result<T, PartitionError> {
    let Some(deadline) = deadline else {
        return answer.await;
    };
    let timer = async {
        glommio::timer::sleep(deadline.saturating_duration_since(std::time::Instant::now())).await;
        Err(PartitionError::TimedOut)
    };
    futures_lite::future::or(answer, timer).await
}
