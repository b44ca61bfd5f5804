//! Reads of a partition log: recent batches from the batch cache, older ones
//! with aligned direct reads of the segment files; waits for new data; and
//! the ListOffsets timestamp queries.

use bytes::Bytes;

use super::super::batch::BatchHeader;
use super::super::error::Error;
use super::super::limit::ReadLimit;
use super::super::records;
use super::super::segment;
use super::super::txn_index::AbortedTxn;
use super::super::types::{FilePosition, Offset, TimestampOffset};
use super::PartitionLog;

/// Which records a read may return (Kafka's fetch `isolation_level`, KIP-98).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, with the aborted transactions of the
    /// range read, so the consumer can drop their records.
    ReadCommitted,
}

/// Stored batches, exactly as appended (baseOffset and leader epoch assigned).
#[derive(Clone, Debug, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
    /// read_committed only: the aborted transactions overlapping the
    /// batches read (`None` for read_uncommitted).
    pub aborted: Option<Vec<AbortedTxn>>,
}

impl ReadResult {
    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// How far a read got: the next offset to read and the bytes taken so far.
struct Cursor {
    next: Offset,
    total: usize,
}

impl PartitionLog {
    /// Reads whole stored batches starting with the one containing `from_offset`,
    /// up to `max_bytes` (at least one batch). `from_offset == high_watermark`
    /// gives an empty result.
    pub async fn read(&self, from_offset: Offset, max_bytes: usize) -> Result<ReadResult, Error> {
        self.read_limited(from_offset, ReadLimit::first_batch_whole(max_bytes))
            .await
    }

    /// Reads whole stored batches starting with the one containing `from_offset`,
    /// as many as `limit` admits. `from_offset == high_watermark` gives an
    /// empty result.
    pub async fn read_limited(
        &self,
        from_offset: Offset,
        limit: ReadLimit,
    ) -> Result<ReadResult, Error> {
        self.read_isolated(from_offset, limit, Isolation::ReadUncommitted)
            .await
    }

    /// [`read_limited`](Self::read_limited) at an isolation level:
    /// read_committed stops at the last stable offset and reports the
    /// aborted transactions of what it read (Kafka's `LocalLog.read` with
    /// `FetchIsolation.TXN_COMMITTED`). An offset past the last stable
    /// offset but within the high watermark reads nothing, as in Kafka.
    pub async fn read_isolated(
        &self,
        from_offset: Offset,
        limit: ReadLimit,
        isolation: Isolation,
    ) -> Result<ReadResult, Error> {
        let mut result = self.empty_read_at(from_offset)?;
        let end = match isolation {
            Isolation::ReadUncommitted => result.high_watermark,
            Isolation::ReadCommitted => result.last_stable_offset,
        };
        if !limit.admits_nothing() {
            self.read_until(&mut result, from_offset, end, limit)
                .await?;
        }
        if isolation == Isolation::ReadCommitted {
            self.add_aborted(&mut result, from_offset, end);
        }
        Ok(result)
    }

    pub(super) async fn read_until(
        &self,
        result: &mut ReadResult,
        from_offset: Offset,
        end: Offset,
        limit: ReadLimit,
    ) -> Result<(), Error> {
        let mut cursor = Cursor {
            next: from_offset,
            total: 0,
        };
        while cursor.next < end && (result.batches.is_empty() || cursor.total < limit.max_bytes) {
            let full = self.read_from_cache(result, &mut cursor, end, limit);
            if full || cursor.next >= end {
                break;
            }
            if !self.read_from_disk(result, &mut cursor, limit).await? {
                break;
            }
        }
        Ok(())
    }

    /// read_committed: cuts what a disk read brought past `end` (the last
    /// stable offset sits on a batch boundary) and collects the aborted
    /// transactions overlapping the batches kept.
    fn add_aborted(&self, result: &mut ReadResult, from_offset: Offset, end: Offset) {
        let kept = result
            .batches
            .iter()
            .take_while(|batch| {
                BatchHeader::parse(batch).is_ok_and(|h| Offset(h.base_offset) < end)
            })
            .count();
        result.batches.truncate(kept);
        let mut aborted = Vec::new();
        let upper = result
            .batches
            .last()
            .and_then(|batch| BatchHeader::parse(batch).ok())
            .map(|header| Offset(header.last_offset()) + 1);
        if let Some(upper) = upper {
            self.state
                .borrow()
                .txn_index
                .collect(from_offset, upper, &mut aborted);
        }
        result.aborted = Some(aborted);
    }

    /// The result a read at `from_offset` starts from, once the offset is
    /// known to lie between the log start offset and the high watermark.
    fn empty_read_at(&self, from_offset: Offset) -> Result<ReadResult, Error> {
        let state = self.state.borrow();
        let (high_watermark, log_start_offset) = (state.visible_end(), state.log_start_offset);
        if from_offset < log_start_offset || from_offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset,
                high_watermark,
            });
        }
        Ok(ReadResult {
            batches: Vec::new(),
            high_watermark,
            last_stable_offset: state.last_stable_offset(),
            log_start_offset,
            aborted: None,
        })
    }

    /// Takes recent batches straight from the cache, no I/O, while they
    /// follow on. Returns true when `limit` is reached.
    fn read_from_cache(
        &self,
        result: &mut ReadResult,
        cursor: &mut Cursor,
        end: Offset,
        limit: ReadLimit,
    ) -> bool {
        while cursor.next < end {
            let Some((batch, last)) = self.cache.get_containing(self.log_id, cursor.next) else {
                return false;
            };
            if !limit.admits(result.batches.len(), cursor.total, batch.len()) {
                return true;
            }
            cursor.total += batch.len();
            result.batches.push(batch);
            cursor.next = last + 1;
            if cursor.total >= limit.max_bytes {
                return true;
            }
        }
        false
    }

    /// Reads older batches with an aligned direct read of the segment holding
    /// the cursor. Returns whether the read may go on (not full, not stuck).
    async fn read_from_disk(
        &self,
        result: &mut ReadResult,
        cursor: &mut Cursor,
        limit: ReadLimit,
    ) -> Result<bool, Error> {
        let (file, position, end, following_base) = {
            let state = self.state.borrow();
            let Some((segment, following)) = state.segments.containing(cursor.next) else {
                return Ok(false);
            };
            (
                segment.file().clone(),
                segment.index().position_for_offset(cursor.next),
                segment.written_bytes(),
                following,
            )
        };
        let progress = segment::read_batches(
            &file,
            position,
            end,
            cursor.next,
            limit,
            &mut result.batches,
            &mut cursor.total,
        )
        .await?;
        match (progress.next_offset, following_base) {
            (Some(next), _) => cursor.next = next,
            // Nothing left in this segment: the next one goes on.
            (None, Some(base)) if base > cursor.next => cursor.next = base,
            (None, _) => return Ok(false),
        }
        Ok(!progress.full)
    }

    /// Resolves once `high_watermark() > offset`, or when the log closes or stops.
    pub async fn wait_for_offset(&self, offset: Offset) {
        loop {
            let epoch = self.written.epoch();
            {
                let state = self.state.borrow();
                if state.visible_end() > offset || state.closed || state.stopped.is_some() {
                    return;
                }
            }
            self.written.changed(epoch).await;
        }
    }

    /// The first record with timestamp >= `timestamp_ms` at or after the log
    /// start offset, as (its timestamp, its offset). The sparse time index
    /// finds where to start; only the batch that reaches the timestamp is
    /// looked into.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>, Error> {
        let (candidates, log_start_offset) = {
            let state = self.state.borrow();
            let log_start_offset = state.log_start_offset;
            let candidates: Vec<_> = state
                .segments
                .iter()
                .filter(|s| s.next_offset() > log_start_offset)
                .filter(|s| {
                    s.index()
                        .max_timestamp
                        .is_some_and(|max| max.timestamp.get() >= timestamp_ms)
                })
                .map(|s| {
                    let index = s.index();
                    let position = index.position_for_timestamp(timestamp_ms).max(
                        index
                            .position_for_offset(log_start_offset)
                            .min(FilePosition(s.written_bytes())),
                    );
                    (s.file().clone(), position, s.written_bytes())
                })
                .collect();
            (candidates, log_start_offset)
        };
        for (file, position, end) in candidates {
            let found =
                segment::find_timestamp(&file, position, end, timestamp_ms, log_start_offset)
                    .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// KIP-734: the record holding the largest timestamp (the first such record
    /// on ties), as (its timestamp, its offset). The indexes name the first
    /// batch with the largest maxTimestamp; the answer is found inside it.
    pub async fn max_timestamp(&self) -> Result<Option<TimestampOffset>, Error> {
        let Some(batch_offset) = self.max_timestamp_batch() else {
            return Ok(None);
        };
        let log_start_offset = self.log_start_offset();
        let read = self.read(batch_offset.max(log_start_offset), 1).await?;
        let Some(batch) = read.batches.first() else {
            return Ok(None);
        };
        let header = BatchHeader::parse(batch)?;
        let record = records::first_with_max_timestamp(&header, batch, log_start_offset.get())?;
        Ok(record.map(|r| TimestampOffset::new(r.timestamp_ms, r.offset)))
    }

    /// The base offset of the first readable batch with the largest maxTimestamp.
    fn max_timestamp_batch(&self) -> Option<Offset> {
        let state = self.state.borrow();
        let mut best: Option<TimestampOffset> = None;
        for s in state.segments.iter() {
            if let Some(max) = s.index().max_timestamp {
                if max.offset >= state.visible_end() || s.next_offset() <= state.log_start_offset {
                    continue;
                }
                if best.is_none_or(|b| max.timestamp > b.timestamp) {
                    best = Some(max);
                }
            }
        }
        best.map(|max| max.offset)
    }
}
