//! Log compaction (`cleanup.policy=compact`): one cleaner per shard keeps,
//! for every key, only its latest record in the sealed segments of the
//! shard's compacted partitions, with the records' original offsets.
//!
//! A cleaning of one log goes in passes. Each pass fills a bounded
//! [`offset_map`] (key hash -> latest offset) from the dirty part of the log
//! (from the [`checkpoint`] up to the active segment, less what
//! `min.compaction.lag.ms` holds back) until the map is full, then
//! [`rewrite`]s every sealed segment up to where the map reached and
//! [`swap`]s each rewritten one in. The checkpoint then moves to where the
//! map reached; when the map could not hold every dirty key, the next pass
//! goes on from there.
//!
//! # Layout
//!
//! - [`offset_map`]: the bounded key hash -> offset table.
//! - [`rewrite`]: batches filled into the map and filtered (batch bytes in,
//!   batch bytes out).
//! - [`swap`]: `.cleaned` and `.swap` files, and their recovery on open.
//! - [`checkpoint`]: the cleaned-to offset of each partition.
//! - [`hook`]: a debug-only pause at each step, for crash tests.

pub mod checkpoint;
pub mod hook;
pub mod offset_map;
pub mod rewrite;
pub mod swap;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::error::Error;
use super::limit::ReadLimit;
use super::log::{PartitionLog, SealedSegment};
use super::segment;
use super::txn_index::AbortedTxn;
use super::types::{FilePosition, Offset};
use offset_map::OffsetMap;
use rewrite::{BatchOutcome, Rules};

/// Bytes of a segment read per I/O while cleaning.
const READ_CHUNK_BYTES: usize = 1024 * 1024;
/// The fewest bytes a record takes: sizes the map's first estimate.
const RECORD_BYTES_MIN_ESTIMATE: u64 = 64;

/// What one cleaning of a log did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub passes: u32,
    pub segments_rewritten: u32,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    pub records_after: u64,
}

/// What the cleaner remembers of one log between cleanings.
#[derive(Clone, Copy, Debug)]
struct LogState {
    /// Offsets from here on are dirty.
    cleaned_to: Offset,
    /// When a kept tombstone passes delete.retention.ms.
    tombstone_due_ms: Option<i64>,
}

/// How dirty a log is now.
struct Dirt {
    ratio: f64,
    due: bool,
}

/// The cleaner of one shard.
pub struct Cleaner {
    dedupe_buffer_bytes: usize,
    /// By the log's opening id: a log opened again starts from its
    /// checkpoint file.
    logs: RefCell<HashMap<u64, LogState>>,
}

impl Cleaner {
    pub fn new(dedupe_buffer_bytes: u64) -> Cleaner {
        Cleaner {
            dedupe_buffer_bytes: usize::try_from(dedupe_buffer_bytes).unwrap_or(usize::MAX),
            logs: RefCell::default(),
        }
    }

    async fn state_of(&self, log: &PartitionLog) -> Result<LogState, Error> {
        if let Some(state) = self.logs.borrow().get(&log.opening_id()) {
            return Ok(*state);
        }
        let cleaned_to = checkpoint::load(log.dir()).await?.unwrap_or(Offset(0));
        let state = LogState {
            cleaned_to,
            tombstone_due_ms: None,
        };
        self.logs.borrow_mut().insert(log.opening_id(), state);
        Ok(state)
    }

    /// Cleans the dirtiest of `logs` whose dirty ratio reaches its
    /// `min.cleanable.dirty.ratio` (or whose dirty records passed
    /// `max.compaction.lag.ms`, or whose tombstones are due), if any.
    pub async fn clean_dirtiest(
        &self,
        logs: &[Rc<PartitionLog>],
        now_ms: i64,
    ) -> Result<Option<(Rc<PartitionLog>, CleanStats)>, Error> {
        // Logs closed or deleted since are forgotten.
        self.logs
            .borrow_mut()
            .retain(|id, _| logs.iter().any(|log| log.opening_id() == *id));
        let mut best: Option<(f64, &Rc<PartitionLog>)> = None;
        for log in logs {
            if !log.config().cleanup_policy.compact {
                continue;
            }
            let state = self.state_of(log).await?;
            let dirt = dirt(log, state, now_ms);
            if dirt.due && best.is_none_or(|(ratio, _)| dirt.ratio > ratio) {
                best = Some((dirt.ratio, log));
            }
        }
        let Some((_, log)) = best else {
            return Ok(None);
        };
        let stats = self.clean(log, now_ms).await?;
        Ok(Some((log.clone(), stats)))
    }

    /// Cleans `log` now, whatever its dirty ratio: passes until the dirty
    /// part is cleaned. Logs one line with what it did.
    pub async fn clean(&self, log: &PartitionLog, now_ms: i64) -> Result<CleanStats, Error> {
        let started = Instant::now();
        let mut stats = CleanStats {
            bytes_before: log.sealed_segments().iter().map(|s| s.bytes).sum(),
            ..CleanStats::default()
        };
        let segments_max = log.sealed_segments().len() as u32 + 1;
        loop {
            let state = self.state_of(log).await?;
            let segments = log.sealed_segments();
            let config = log.config();
            let first_dirty = state.cleaned_to.max(log.log_start_offset());
            let end = cleanable_end(&segments, config.min_compaction_lag_ms, now_ms)
                .min(stable_end(&segments, log.last_stable_offset()));
            let aborted = log.aborted_transactions();
            // The first pass always runs: it also removes due tombstones.
            if stats.passes > 0 && first_dirty >= end {
                break;
            }
            let mut map = OffsetMap::new(
                self.dedupe_buffer_bytes,
                expected_keys(&segments, first_dirty, end),
            );
            let reached = fill_map(&segments, first_dirty, end, &aborted, &mut map).await?;
            if reached == first_dirty && first_dirty < end {
                tracing::warn!(dir = %log.dir().display(), "the cleaner's offset map cannot hold one record; raise log.cleaner.dedupe.buffer.size");
                break;
            }
            let rules = Rules {
                map: &map,
                tombstones_cleaned_below: first_dirty.get(),
                tombstone_horizon_ms: now_ms.saturating_sub(config.delete_retention_ms),
                delete_retention_ms: config.delete_retention_ms,
                aborted: &aborted,
            };
            let mut tombstone_due_ms = None;
            let upto = reached.max(first_dirty);
            for segment in segments.iter().filter(|s| s.base_offset < upto) {
                let outcome = rewrite_segment(log, segment, &rules).await?;
                stats.records_before += outcome.records_before;
                stats.records_after += outcome.records_after;
                if outcome.records_after != outcome.records_before {
                    stats.segments_rewritten += 1;
                }
                tombstone_due_ms = earliest(tombstone_due_ms, outcome.tombstone_due_ms);
            }
            checkpoint::store(log.dir(), upto).await?;
            self.logs.borrow_mut().insert(
                log.opening_id(),
                LogState {
                    cleaned_to: upto,
                    tombstone_due_ms,
                },
            );
            stats.passes += 1;
            if upto >= end || stats.passes > segments_max {
                break;
            }
        }
        stats.bytes_after = log.sealed_segments().iter().map(|s| s.bytes).sum();
        crate::metrics::local::log_cleaned(
            stats.bytes_before,
            stats.bytes_before.saturating_sub(stats.bytes_after),
            stats.records_before.saturating_sub(stats.records_after),
        );
        tracing::info!(
            dir = %log.dir().display(),
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            records_before = stats.records_before,
            records_after = stats.records_after,
            passes = stats.passes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cleaned partition log"
        );
        Ok(stats)
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where the cleanable part of the log ends: the end of the sealed segments,
/// or earlier at the first segment holding a record younger than
/// `min.compaction.lag.ms` (whole segments only, as Kafka does).
fn cleanable_end(segments: &[SealedSegment], min_lag_ms: i64, now_ms: i64) -> Offset {
    let young = |s: &&SealedSegment| {
        min_lag_ms > 0
            && s.max_timestamp_ms
                .is_some_and(|t| t > now_ms.saturating_sub(min_lag_ms))
    };
    match segments.iter().find(young) {
        Some(s) => s.base_offset,
        None => segments.last().map_or(Offset(0), |s| s.end_offset),
    }
}

/// Where the segments wholly below the last stable offset end: an open
/// transaction's records may still be aborted, so the cleaner stops before
/// them (Kafka's first uncleanable offset).
fn stable_end(segments: &[SealedSegment], last_stable_offset: Offset) -> Offset {
    match segments.iter().find(|s| s.end_offset > last_stable_offset) {
        Some(s) => s.base_offset,
        None => segments.last().map_or(Offset(0), |s| s.end_offset),
    }
}

fn dirt(log: &PartitionLog, state: LogState, now_ms: i64) -> Dirt {
    let config = log.config();
    let segments = log.sealed_segments();
    let first_dirty = state.cleaned_to.max(log.log_start_offset());
    let end = cleanable_end(&segments, config.min_compaction_lag_ms, now_ms)
        .min(stable_end(&segments, log.last_stable_offset()));
    let (mut clean, mut dirty) = (0u64, 0u64);
    let mut overdue = false;
    for s in &segments {
        if s.end_offset <= first_dirty {
            clean += s.bytes;
        } else if s.base_offset < end {
            dirty += s.bytes;
            overdue |= s
                .max_timestamp_ms
                .is_some_and(|t| t < now_ms.saturating_sub(config.max_compaction_lag_ms));
        }
    }
    let ratio = if clean + dirty == 0 {
        0.0
    } else {
        dirty as f64 / (clean + dirty) as f64
    };
    let over_ratio = dirty > 0 && ratio >= config.min_cleanable_dirty_ratio.as_f64();
    let tombstones_due = state.tombstone_due_ms.is_some_and(|due| due <= now_ms);
    Dirt {
        ratio,
        due: over_ratio || (dirty > 0 && overdue) || tombstones_due,
    }
}

fn expected_keys(segments: &[SealedSegment], from: Offset, end: Offset) -> usize {
    let dirty_bytes: u64 = segments
        .iter()
        .filter(|s| s.end_offset > from && s.base_offset < end)
        .map(|s| s.bytes)
        .sum();
    usize::try_from(dirty_bytes / RECORD_BYTES_MIN_ESTIMATE).unwrap_or(usize::MAX)
}

/// Reads a segment's batches, a chunk of whole batches at a time.
struct SegmentBatches<'a> {
    segment: &'a SealedSegment,
    position: u64,
}

impl<'a> SegmentBatches<'a> {
    fn new(segment: &'a SealedSegment) -> Self {
        SegmentBatches {
            segment,
            position: 0,
        }
    }

    /// The next chunk (at least one batch), or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Vec<Bytes>>, Error> {
        let segment = self.segment;
        if self.position >= segment.bytes {
            return Ok(None);
        }
        let mut batches = Vec::new();
        let mut total = 0usize;
        segment::read_batches(
            &segment.file,
            FilePosition(self.position),
            segment.bytes,
            Offset(0),
            ReadLimit {
                max_bytes: READ_CHUNK_BYTES,
                first_batch_whole: true,
            },
            &mut batches,
            &mut total,
        )
        .await?;
        self.position += total as u64;
        glommio::yield_if_needed().await;
        Ok((!batches.is_empty()).then_some(batches))
    }
}

/// Fills `map` from the records in `[from, end)`; returns the offset up to
/// which every such record went in.
async fn fill_map(
    segments: &[SealedSegment],
    from: Offset,
    end: Offset,
    aborted: &[AbortedTxn],
    map: &mut OffsetMap,
) -> Result<Offset, Error> {
    for segment in segments
        .iter()
        .filter(|s| s.end_offset > from && s.base_offset < end)
    {
        let mut stopped = None;
        let mut batches = SegmentBatches::new(segment);
        'segment: while let Some(chunk) = batches.next_chunk().await? {
            for batch in &chunk {
                stopped = rewrite::insert_batch(batch, from.get(), aborted, map)?;
                if stopped.is_some() {
                    break 'segment;
                }
            }
        }
        if let Some(offset) = stopped {
            return Ok(Offset(offset));
        }
    }
    Ok(end)
}

/// Rewrites one segment by `rules` and swaps the result in when it changed.
async fn rewrite_segment(
    log: &PartitionLog,
    segment: &SealedSegment,
    rules: &Rules<'_>,
) -> Result<BatchOutcome, Error> {
    let mut writer =
        swap::CleanedWriter::create(log.dir(), segment.base_offset, log.io_mode()).await?;
    let mut total = BatchOutcome::default();
    let mut out = BytesMut::new();
    let mut batches = SegmentBatches::new(segment);
    while let Some(chunk) = batches.next_chunk().await? {
        for batch in &chunk {
            let outcome = rewrite::filter_batch(batch, rules, &mut out)?;
            total.records_before += outcome.records_before;
            total.records_after += outcome.records_after;
            total.tombstone_due_ms = earliest(total.tombstone_due_ms, outcome.tombstone_due_ms);
        }
        writer.push(&out).await?;
        out.clear();
    }
    if total.records_after == total.records_before {
        drop(writer);
        swap::discard(log.dir(), segment.base_offset);
        return Ok(total);
    }
    let bytes = writer.finish().await?;
    hook::pause("cleaned").await;
    log.install_cleaned(segment, bytes).await?;
    Ok(total)
}
