//! What a scrape reads of one shard's partitions and groups: plain numbers
//! copied out on the shard's own thread, `Send` so they can travel back.

use std::sync::Arc;

use super::opening::Slot;
use super::{PartitionId, Shard};
use crate::storage::CacheStats;

/// One owned partition's log, as the metrics show it.
#[derive(Clone, Debug)]
pub struct PartitionSample {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub log_start_offset: i64,
    /// The high watermark: the offset the next record gets.
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Records and bytes appended since the log was opened.
    pub records_in: u64,
    pub bytes_in: u64,
    pub fsyncs: u64,
}

impl Shard {
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Every open partition this shard owns, by topic then partition.
    pub fn partition_samples(&self) -> Vec<PartitionSample> {
        let logs = self.logs.borrow();
        let mut samples = Vec::new();
        for (topic, partitions) in logs.iter() {
            for (index, slot) in partitions.iter().enumerate() {
                // Idle partitions are not sampled: their logs are not open.
                let Some(Slot::Open { log, .. }) = slot else {
                    continue;
                };
                let stats = log.stats();
                samples.push(PartitionSample {
                    topic: topic.clone(),
                    partition: PartitionId::from_index(index),
                    log_start_offset: log.log_start_offset().get(),
                    log_end_offset: log.high_watermark().get(),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    records_in: stats.appended_records,
                    bytes_in: stats.appended_bytes,
                    fsyncs: stats.fdatasyncs,
                });
            }
        }
        samples
    }
}
