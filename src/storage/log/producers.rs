//! The log's idempotent-producer state (KIP-98): rebuilt on open from the
//! newest snapshot plus the batch headers after it, checked by the appender,
//! snapshotted at every roll and at a clean close, and expired by the
//! retention pass after `producer.id.expiration.ms`.

use std::path::Path;

use super::super::error::Error;
use super::super::producer_state::{snapshot, ProducerEntry, ProducerStateTable};
use super::super::segment;
use super::super::segment_set::SegmentSet;
use super::super::types::Offset;
use super::PartitionLog;

/// The producer state of a log recovered up to `end_offset`.
pub(super) async fn rebuild(
    dir: &Path,
    segments: &SegmentSet,
    end_offset: Offset,
) -> Result<ProducerStateTable, Error> {
    let (from, mut table) = snapshot::load_latest(dir, end_offset)
        .await?
        .unwrap_or((Offset::MIN, ProducerStateTable::default()));
    let mut replayed = 0u64;
    for segment in segments.iter() {
        if segment.next_offset() <= from {
            continue;
        }
        segment::scan_headers(segment.file(), segment.written_bytes(), |header| {
            if Offset(header.base_offset) >= from {
                table.replay(header);
                replayed += 1;
            }
        })
        .await?;
    }
    if replayed > 0 || from == Offset::MIN {
        tracing::debug!(dir = %dir.display(), snapshot = from.get(), replayed, producers = table.len(), "producer state rebuilt");
    }
    Ok(table)
}

impl PartitionLog {
    /// What this partition knows of `producer_id` (DescribeProducers, tests).
    pub fn producer(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.state.borrow().producers.get(producer_id).copied()
    }

    /// Every producer this partition tracks, by id.
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        let state = self.state.borrow();
        let mut producers: Vec<_> = state.producers.iter().map(|(id, e)| (id, *e)).collect();
        producers.sort_unstable_by_key(|(id, _)| *id);
        producers
    }

    /// Writes the producer state as of `offset`; the caller holds the append
    /// lock and every batch below `offset` is staged.
    pub(super) async fn write_producer_snapshot(&self, offset: Offset) -> Result<(), Error> {
        let bytes = snapshot::encode(&self.state.borrow().producers);
        snapshot::write_bytes(&self.dir, offset, &bytes).await
    }

    /// Forgets producers idle for `producer.id.expiration.ms`.
    pub(super) fn expire_producers(&self, now_ms: i64) {
        let expired = self
            .state
            .borrow_mut()
            .producers
            .expire(now_ms, self.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(dir = %self.dir.display(), expired, "producer ids expired");
        }
    }

    /// Removes snapshots of state below the first segment: the log no longer
    /// holds what they describe.
    pub(super) fn remove_snapshots_below(&self, first_base: Offset) -> Result<(), Error> {
        for offset in snapshot::list(&self.dir)? {
            if offset < first_base {
                snapshot::remove(&self.dir, offset)?;
            }
        }
        Ok(())
    }
}
