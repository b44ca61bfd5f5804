//! The log's producer state (KIP-98): idempotent producers and open
//! transactions, with the transaction index of aborted ones. Rebuilt on
//! open from the newest snapshot and `.txnindex` files plus the batches
//! after them, checked by the appender, snapshotted at every roll and at a
//! clean close, and expired by the retention pass after
//! `producer.id.expiration.ms`.

use std::path::Path;

use super::super::control;
use super::super::control::TxnResult;
use super::super::error::Error;
use super::super::producer_state::{snapshot, CompletedTxn, ProducerEntry, ProducerStateTable};
use super::super::segment;
use super::super::segment_set::SegmentSet;
use super::super::txn_index::{self, AbortedTxn, TxnIndex};
use super::super::types::Offset;
use super::PartitionLog;

/// What a log's transactions look like after recovery.
pub(super) struct Rebuilt {
    pub producers: ProducerStateTable,
    pub txn_index: TxnIndex,
    /// Sealed segments whose `.txnindex` was missing or unusable and is
    /// now rebuilt: their files are written again.
    pub rewrite_txn_indexes: Vec<Offset>,
}

/// The producer state and transaction index of a log recovered up to
/// `end_offset`: the newest snapshot and the `.txnindex` files of the
/// segments it covers, then a replay of the batches after it. When a
/// covered segment's `.txnindex` is missing, the whole log is replayed from
/// its start (its aborted transactions are known only from the log then).
/// Every sealed segment's missing file is written again afterwards.
pub(super) async fn rebuild(
    dir: &Path,
    segments: &SegmentSet,
    end_offset: Offset,
) -> Result<Rebuilt, Error> {
    let (mut from, mut table) = snapshot::load_latest(dir, end_offset)
        .await?
        .unwrap_or((Offset::MIN, ProducerStateTable::default()));
    let mut index = TxnIndex::default();
    let mut missing = Vec::new();
    let active_base = segments.active()?.base_offset();
    for segment in segments.iter() {
        let base = segment.base_offset();
        if base >= from && base >= active_base {
            continue;
        }
        match txn_index::load(dir, base).await? {
            Some(mut entries) => {
                entries.retain(|entry| entry.last_offset < from);
                index.set_segment(base, entries);
            }
            None => missing.push(base),
        }
    }
    if missing.iter().any(|base| *base < from) {
        tracing::info!(dir = %dir.display(), segments = missing.len(), "transaction index missing; replaying the log from its start");
        from = Offset::MIN;
        table = ProducerStateTable::default();
        index = TxnIndex::default();
    }
    let replayed = replay(segments, from, &mut table, &mut index).await?;
    if replayed > 0 || from == Offset::MIN {
        tracing::debug!(dir = %dir.display(), snapshot = from.get(), replayed, producers = table.len(), aborted = index.len(), "producer state rebuilt");
    }
    missing.retain(|base| *base < active_base);
    Ok(Rebuilt {
        producers: table,
        txn_index: index,
        rewrite_txn_indexes: missing,
    })
}

/// Replays every batch at or after `from` into `table`, recording each
/// aborted transaction in `index`. Returns how many batches it replayed.
async fn replay(
    segments: &SegmentSet,
    from: Offset,
    table: &mut ProducerStateTable,
    index: &mut TxnIndex,
) -> Result<u64, Error> {
    let mut replayed = 0u64;
    for segment in segments.iter() {
        if segment.next_offset() <= from {
            continue;
        }
        let base = segment.base_offset();
        segment::scan_batches(segment.file(), segment.written_bytes(), |header, bytes| {
            if Offset(header.base_offset) < from {
                return;
            }
            let marker = control::is_control(header)
                .then(|| control::read_marker(header, bytes).ok().flatten())
                .flatten();
            if let Some(completed) = table.replay(header, marker) {
                record_completed(index, table, base, completed);
            }
            replayed += 1;
        })
        .await?;
    }
    Ok(replayed)
}

/// Adds an ended transaction to the index if it was aborted, with the last
/// stable offset right after it (Kafka's `lastStableOffset(completedTxn)`).
pub(super) fn record_completed(
    index: &mut TxnIndex,
    table: &ProducerStateTable,
    segment_base: Offset,
    completed: CompletedTxn,
) {
    if completed.result != TxnResult::Abort {
        return;
    }
    let last_stable_offset = table
        .first_unstable_offset()
        .unwrap_or(completed.last_offset + 1);
    index.push(
        segment_base,
        AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset,
        },
    );
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

impl PartitionLog {
    /// The first offset of `producer_id`'s open transaction on this
    /// partition, if it has one (KIP-890 verification, DescribeProducers).
    pub fn ongoing_txn_first_offset(&self, producer_id: i64) -> Option<Offset> {
        self.state
            .borrow()
            .producers
            .get(producer_id)
            .and_then(|entry| entry.current_txn_first_offset)
    }

    /// Kafka's last stable offset: the first offset of the oldest open
    /// transaction, or the high watermark when that is lower, never below
    /// the log start offset. read_committed consumers read up to it.
    pub fn last_stable_offset(&self) -> Offset {
        self.state.borrow().last_stable_offset()
    }

    /// Every aborted transaction the log holds markers for, oldest first.
    pub fn aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.state.borrow().txn_index.iter().copied().collect()
    }

    /// Writes the `.txnindex` of the sealed segment at `base`.
    pub(super) async fn write_txn_index(&self, base: Offset) -> Result<(), Error> {
        let entries = self.state.borrow().txn_index.segment(base).to_vec();
        txn_index::write(&self.dir, base, &entries).await
    }
}

impl super::State {
    pub(super) fn last_stable_offset(&self) -> Offset {
        let first_unstable = self.producers.first_unstable_offset();
        first_unstable
            .map_or(self.visible_end(), |first| first.min(self.visible_end()))
            .max(self.log_start_offset)
    }
}
