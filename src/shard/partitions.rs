//! Partition work on the owning shard: append, read, offset lookups, waits,
//! and opening or dropping logs as the topic table changes.
//!
//! Requests arrive here already split by owner; every type that crosses
//! shards is `Send` and carries record data as `Bytes` (moved, never copied).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join_all, select_all, FutureExt};

use super::topics::TopicTable;
use super::{PartitionId, Shard};
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
    /// The table names the partition but its owner has not opened it yet.
    #[error("partition is not open yet")]
    NotReady,
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
    fn owned_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        self.log(topic, partition).ok_or(PartitionError::NotReady)
    }

    pub async fn produce_local(
        self: Rc<Self>,
        parts: Vec<ProducePart>,
        durability: Durability,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let appends = parts.into_iter().map(|part| {
            let log = self.owned_log(&part.topic, part.partition);
            async move { Ok(log?.append(part.records, durability).await?) }
        });
        join_all(appends).await
    }

    /// Writes each part's transaction marker, durably (see
    /// [`PartitionLog::append_marker`]).
    pub async fn write_markers_local(
        self: Rc<Self>,
        parts: Vec<MarkerPart>,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let appends = parts.into_iter().map(|part| {
            let log = self.owned_log(&part.topic, part.partition);
            async move { Ok(log?.append_marker(part.marker).await?) }
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
            let result = match self.owned_log(&part.topic, part.partition) {
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
                let log = self.owned_log(&query.topic, query.partition)?;
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
                let log = self.owned_log(&topic, partition)?;
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
        parts
            .into_iter()
            .map(|(topic, partition)| Ok(self.owned_log(&topic, partition)?.producers()))
            .collect()
    }

    /// Brings this shard's open logs in line with `table`: opens partitions it
    /// now owns, applies changed configs, deletes logs of removed topics.
    pub async fn apply_topics(
        self: Rc<Self>,
        table: Arc<TopicTable>,
    ) -> Result<(), storage::Error> {
        let old = self.topics();
        // Deleted topics first, so a re-created topic starts from an empty directory.
        let removed: Vec<Arc<str>> = old
            .iter()
            .filter(|t| table.get(&t.name).is_none_or(|new| new.id != t.id))
            .map(|t| t.name.clone())
            .collect();
        for name in removed {
            let logs = self.logs.borrow_mut().remove(&name).unwrap_or_default();
            for log in logs.into_iter().flatten() {
                log.delete().await?;
            }
            self.groups.remove_topic(&name).await;
        }
        let mut opening = Vec::new();
        for topic in table.iter() {
            let config = topic.config.log_config();
            let changed = old
                .get(&topic.name)
                .is_none_or(|o| o.config != topic.config);
            for (index, &owner) in topic.partition_shards.iter().enumerate() {
                if owner != self.id {
                    continue;
                }
                match self.log(&topic.name, PartitionId::from_index(index)) {
                    Some(log) if changed => log.set_config(config.clone()),
                    Some(_) => {}
                    None => opening.push((topic.name.clone(), index, config.clone())),
                }
            }
        }
        let opened = super::opening::open_logs(&self, opening).await?;
        for (name, index, log) in opened {
            let mut logs = self.logs.borrow_mut();
            let slots = logs.entry(name).or_default();
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            slots[index] = Some(log);
        }
        *self.topics.borrow_mut() = table;
        Ok(())
    }

    /// Runs retention on every owned log (a background, low-priority pass).
    pub async fn enforce_retention(&self, now_ms: i64) {
        let logs: Vec<Rc<PartitionLog>> = self
            .logs
            .borrow()
            .values()
            .flatten()
            .flatten()
            .cloned()
            .collect();
        for log in logs {
            if let Err(error) = log.enforce_retention(now_ms).await {
                tracing::error!(shard = self.id.index(), %error, "retention failed");
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Flushes and checkpoints every owned log (clean shutdown).
    pub async fn close_logs(&self) {
        let logs: Vec<Rc<PartitionLog>> = self
            .logs
            .borrow_mut()
            .drain()
            .flat_map(|(_, v)| v)
            .flatten()
            .collect();
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
