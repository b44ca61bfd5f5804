//! A replicated partition's side of its log. The log is the Raft log: each
//! entry is one stored batch whose offsets and leader epoch the leader
//! assigned, appended byte for byte on every replica. Here are the raw
//! append that keeps those numbers, the commit limit clients read up to,
//! reads past it for replication, the scan that rebuilds the entry map and
//! the cut of a divergent uncommitted tail.

use bytes::{Bytes, BytesMut};

use super::super::batch::BatchHeader;
use super::super::config::LogConfig;
use super::super::config::TimestampType;
use super::super::control;
use super::super::error::{CorruptReason, Error};
use super::super::file;
use super::super::limit::ReadLimit;
use super::super::producer_state::{snapshot, AppendCheck, ProducerEntry};
use super::super::segment::{self, Segment};
use super::super::types::Offset;
use super::{load_state, AppendInfo, LogStats, PartitionLog, ReadResult};

/// What a leader's proposal comes to.
#[derive(Debug)]
pub enum Proposal {
    /// New batches, one per Raft entry, where they land, and the producers'
    /// entries once they are stored.
    Fresh {
        batches: Vec<Bytes>,
        info: AppendInfo,
        producers: Vec<(i64, ProducerEntry)>,
    },
    /// A retry of a batch already in the log or proposed: its offsets.
    Duplicate(AppendInfo),
}

/// One stored batch as the Raft log sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSpan {
    pub base_offset: Offset,
    /// The offset after its last record.
    pub next_offset: Offset,
    pub leader_epoch: i32,
    /// The log start offset the batch moves the log to (DeleteRecords).
    pub log_start: Option<Offset>,
}

impl PartitionLog {
    /// Checks a client's batches and brings them to the topic's
    /// compression.type, as an append would, for a leader to propose.
    pub fn prepare(&self, records: Bytes) -> Result<Bytes, Error> {
        self.validate(records)
    }

    /// Stamps a leader's proposal: `records` (already [`prepare`]d) get
    /// offsets from `base_offset` on and `leader_epoch`, and are split into
    /// one batch per Raft entry. Idempotent batches are checked against the
    /// log's producers and, newer, the leader's proposals not yet in the log
    /// (`proposed`), as a single log's append checks them (KIP-98).
    ///
    /// [`prepare`]: Self::prepare
    pub fn stamp_proposal(
        &self,
        records: Bytes,
        base_offset: Offset,
        leader_epoch: i32,
        proposed: impl Fn(i64) -> Option<ProducerEntry>,
    ) -> Result<Proposal, Error> {
        let (log_append_time, log_start_offset, check) = {
            let state = self.state.borrow();
            let now = (self.clock)();
            let log_append_time =
                (state.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
            let check =
                state
                    .producers
                    .check_after(&records, base_offset, log_append_time, proposed)?;
            (log_append_time, state.log_start_offset, check)
        };
        let producers = match check {
            AppendCheck::Fresh(updates) => updates,
            AppendCheck::Duplicate(batch) => {
                return Ok(Proposal::Duplicate(AppendInfo::of_duplicate(
                    &batch,
                    log_append_time,
                    log_start_offset,
                )))
            }
        };
        let mut buffer: BytesMut = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let stamped = super::appender::stamp_batches(
            &mut buffer,
            base_offset,
            leader_epoch,
            log_append_time,
        )?;
        let mut stored = buffer.freeze();
        let mut batches = Vec::with_capacity(1);
        while !stored.is_empty() {
            let size = BatchHeader::parse(&stored)?.total_bytes().min(stored.len());
            batches.push(stored.split_to(size));
        }
        let info = AppendInfo {
            base_offset,
            last_offset: stamped.next_offset - 1,
            log_append_time_ms: log_append_time,
            log_start_offset,
        };
        Ok(Proposal::Fresh {
            batches,
            info,
            producers,
        })
    }

    /// The offset the next batch takes.
    pub fn next_offset(&self) -> Offset {
        self.state.borrow().next_offset
    }

    /// Whether the log was closed (or stopped).
    pub fn is_closed(&self) -> bool {
        let state = self.state.borrow();
        state.closed || state.stopped.is_some()
    }

    /// Whether the log is a replica of a Raft group (it then has a commit limit).
    pub fn is_replicated(&self) -> bool {
        self.state.borrow().commit_limit.is_some()
    }

    /// Appends `batches` exactly as given: each must start at the log's next
    /// offset. Producer state follows them as recovery's replay does, so it is
    /// the same on every replica. Returns once they are durable.
    pub async fn append_replicated(&self, batches: &[Bytes]) -> Result<(), Error> {
        let total = batches.iter().map(Bytes::len).sum();
        let (permit, _) = self.lock_with_room(total, None).await?;
        let seq = self.stage_replicated(batches)?;
        drop(permit);
        self.wait_written(seq).await?;
        self.wait_synced(seq).await
    }

    fn stage_replicated(&self, batches: &[Bytes]) -> Result<u64, Error> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        Self::check_open(state)?;
        for batch in batches {
            let header = BatchHeader::parse(batch)?;
            if header.base_offset != state.next_offset.get() {
                return Err(Error::CorruptBatch(CorruptReason::OffsetDiscontinuity {
                    expected: state.next_offset.get(),
                    found: header.base_offset,
                }));
            }
            let marker = control::is_control(&header)
                .then(|| control::read_marker(&header, batch).ok().flatten())
                .flatten();
            let segment_base = state.segments.active()?.base_offset();
            if let Some(completed) = state.producers.replay(&header, marker) {
                super::producers::record_completed(
                    &mut state.txn_index,
                    &state.producers,
                    segment_base,
                    completed,
                );
            }
            // Every replica keeps the same epoch cache (OffsetForLeaderEpoch).
            if header.partition_leader_epoch > state.leader_epoch {
                state.leader_epoch = header.partition_leader_epoch;
            }
            state
                .leader_epochs
                .on_batch(header.partition_leader_epoch, Offset(header.base_offset));
            self.queue_batches(state, batch.clone(), Offset(header.base_offset), None)?;
            state.stats.appends += 1;
            state.stats.appended_records += u64::try_from(header.record_count).unwrap_or(0);
            state.stats.appended_bytes += batch.len() as u64;
        }
        state.debug_check_pipeline(self.commit.durable_seq());
        Ok(state.pipeline.staged_seq())
    }

    /// Clients read up to `end` (the end of the last committed entry) and no
    /// further; long-polling fetches wake.
    pub fn set_commit_limit(&self, end: Offset) {
        self.state.borrow_mut().commit_limit = Some(end);
        self.written.notify_all();
    }

    /// Whole batches from the one at `from` on, up to the written end
    /// (committed or not), at least one and about `max_bytes`.
    pub async fn read_replicated(
        &self,
        from: Offset,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, Error> {
        let (end, start) = {
            let state = self.state.borrow();
            Self::check_open(&state)?;
            (state.high_watermark, state.log_start_offset)
        };
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange {
                offset: from,
                log_start_offset: start,
                high_watermark: end,
            });
        }
        let mut result = ReadResult::default();
        self.read_until(
            &mut result,
            from,
            end,
            ReadLimit::first_batch_whole(max_bytes),
        )
        .await?;
        Ok(result.batches)
    }

    /// Every stored batch, oldest first (the map of Raft entries is rebuilt
    /// from it at opening).
    pub async fn batch_spans(&self) -> Result<Vec<BatchSpan>, Error> {
        let files: Vec<_> = self
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| (s.file().clone(), s.written_bytes()))
            .collect();
        let mut spans = Vec::new();
        for (file, end) in files {
            segment::scan_batches(&file, end, |header, bytes| {
                spans.push(BatchSpan {
                    base_offset: Offset(header.base_offset),
                    next_offset: Offset(header.last_offset()) + 1,
                    leader_epoch: header.partition_leader_epoch,
                    log_start: control::read_log_start(header, bytes).map(Offset),
                });
            })
            .await?;
        }
        Ok(spans)
    }

    /// Where the log starts once retention (retention.ms, retention.bytes,
    /// with cleanup.policy=delete) and the log start offset (DeleteRecords)
    /// remove what they may of the segments that end at or below `limit`
    /// (the end of the last committed entry): the base offset of the first
    /// segment kept, or `None` when no segment goes.
    pub fn retained_start(&self, now_ms: i64, limit: Offset) -> Option<Offset> {
        let state = self.state.borrow();
        let config = &state.config;
        let expired = if config.cleanup_policy.delete {
            super::super::retention::expired_segments(
                &state.segments,
                config.retention_ms,
                config.retention_bytes,
                now_ms,
            )
        } else {
            0
        };
        let count = expired.max(state.segments.count_wholly_below(state.log_start_offset));
        // Only whole segments of committed entries go.
        let committed = state.segments.count_wholly_below(limit);
        let count = count.min(committed);
        (count > 0)
            .then(|| state.segments.base_offsets().get(count).copied())
            .flatten()
    }

    /// Removes the segments wholly below `base`, a segment's base offset (see
    /// [`retained_start`](Self::retained_start)); the log start offset moves to it.
    pub async fn remove_segments_below(&self, base: Offset) -> Result<(), Error> {
        let removed = {
            let mut state = self.state.borrow_mut();
            Self::check_open(&state)?;
            let count = state.segments.count_wholly_below(base);
            state.remove_oldest_segments(count)
        };
        self.finish_retention(removed).await
    }

    /// Loads the log again from its directory after its files changed (in
    /// a turn of the append queue), with `commit_limit` and its counters.
    async fn reload(
        &self,
        seq: u64,
        config: LogConfig,
        commit_limit: Option<Offset>,
        stats: LogStats,
    ) -> Result<(), Error> {
        let mut loaded = load_state(
            &self.dir,
            config,
            self.io_mode,
            (self.clock)(),
            self.producer_id_expiration_ms,
            seq,
        )
        .await?;
        loaded.state.commit_limit = commit_limit;
        loaded.state.stats = stats;
        *self.state.borrow_mut() = loaded.state;
        for base in loaded.rewrite_txn_indexes {
            self.write_txn_index(base).await?;
        }
        self.written.notify_all();
        Ok(())
    }

    /// Removes every batch and starts again, empty, at `offset`: a follower
    /// whose log the leader's log start offset has passed (Kafka's
    /// `truncateFullyAndStartAt`). Producer state starts empty.
    pub async fn restart_at(&self, offset: Offset) -> Result<(), Error> {
        let permit = self.append_lock.turn().await;
        Self::check_open(&self.state.borrow())?;
        self.mark_changing().await?;
        self.flush().await?;
        let (bases, seq, config, commit_limit, stats, leader_epoch) = {
            let state = self.state.borrow();
            (
                state.segments.base_offsets(),
                state.pipeline.staged_seq(),
                state.config.clone(),
                state.commit_limit,
                state.stats,
                state.leader_epoch,
            )
        };
        tracing::info!(dir = %self.dir.display(), offset = offset.get(), "the log starts again, empty, at the leader's log start");
        // The meta first: after a crash the recovery removes what is left below.
        super::super::meta::PartitionMeta::new(offset, offset, leader_epoch, false)
            .store(&self.dir)
            .await?;
        for base in bases {
            Segment::remove_files(&self.dir, base)?;
        }
        for snapshot in snapshot::list(&self.dir)? {
            snapshot::remove(&self.dir, snapshot)?;
        }
        file::sync_dir(&self.dir).await?;
        self.cache.remove_log_from(self.log_id, Offset::MIN);
        self.reload(seq, config, commit_limit.map(|_| offset), stats)
            .await?;
        drop(permit);
        Ok(())
    }

    /// Removes every batch at or after `offset` (a follower's uncommitted
    /// tail that a new leader replaced). Everything before is synced first;
    /// the files are cut, the indexes and producer snapshots past the cut
    /// removed, and the log reloaded from its directory as at an opening.
    pub async fn truncate_from(&self, offset: Offset) -> Result<(), Error> {
        let permit = self.append_lock.turn().await;
        {
            let state = self.state.borrow();
            Self::check_open(&state)?;
            if offset >= state.next_offset {
                return Ok(());
            }
        }
        self.mark_changing().await?;
        self.flush().await?;
        let (cut_base, cut_file, cut_end, later, seq) = {
            let state = self.state.borrow();
            let Some((segment, _)) = state.segments.containing(offset) else {
                return Err(Error::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.high_watermark,
                });
            };
            let later: Vec<Offset> = state
                .segments
                .base_offsets()
                .into_iter()
                .filter(|base| *base > segment.base_offset())
                .collect();
            (
                segment.base_offset(),
                segment.file().clone(),
                segment.written_bytes(),
                later,
                state.pipeline.staged_seq(),
            )
        };
        let mut position = 0u64;
        let mut cut = None;
        segment::scan_batches(&cut_file, cut_end, |header, _| {
            if cut.is_none() && header.base_offset >= offset.get() {
                cut = Some(position);
            }
            position += header.total_bytes() as u64;
        })
        .await?;
        drop(cut_file);
        let cut = cut.unwrap_or(cut_end);
        tracing::info!(dir = %self.dir.display(), offset = offset.get(), "cutting a replaced uncommitted tail");
        for base in later {
            Segment::remove_files(&self.dir, base)?;
        }
        Segment::remove_index_files(&self.dir, cut_base)?;
        let path = Segment::log_path(&self.dir, cut_base);
        let cut_log = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(cut).and_then(|()| f.sync_all()))
            .map_err(|e| Error::io("cutting", &path, e));
        cut_log?;
        for snapshot in snapshot::list(&self.dir)? {
            if snapshot > offset {
                snapshot::remove(&self.dir, snapshot)?;
            }
        }
        file::sync_dir(&self.dir).await?;
        self.cache.remove_log_from(self.log_id, offset);
        let (config, commit_limit, stats) = {
            let mut state = self.state.borrow_mut();
            state.recovery_point = state.recovery_point.min(offset);
            (state.config.clone(), state.commit_limit, state.stats)
        };
        self.store_meta(false).await?;
        self.reload(
            seq,
            config,
            commit_limit.map(|limit| limit.min(offset)),
            stats,
        )
        .await?;
        drop(permit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::cache::BatchCache;
    use super::super::super::config::{LogConfig, StorageOptions};
    use super::*;
    use crate::client::{BatchBuilder, BatchOptions};
    use kafka_protocol::records::Compression;

    /// A batch of `records` plain records, as a leader stamps it.
    fn stamped(base: i64, epoch: i32, records: usize, tag: &str) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        });
        for i in 0..records {
            builder.push(
                None,
                Some(Bytes::from(format!("{tag}-{i}"))),
                1000 + i as i64,
            );
        }
        let mut bytes = builder.encode().expect("encodes").to_vec();
        crate::storage::batch::set_base_offset(&mut bytes, base);
        crate::storage::batch::set_partition_leader_epoch(&mut bytes, epoch);
        Bytes::from(bytes)
    }

    #[test]
    fn raw_appends_keep_their_bytes_and_a_cut_tail_is_replaced_and_survives_a_reopen() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("t-0");
                let options = StorageOptions {
                    allow_buffered_io: true,
                    ..StorageOptions::default()
                };
                let open = || {
                    PartitionLog::open(
                        path.clone(),
                        LogConfig::default(),
                        BatchCache::new(1 << 20),
                        options.clone(),
                    )
                };
                let log = open().await.expect("open");
                log.set_commit_limit(Offset(0));
                let change = control::leader_change_batch(0, 1);
                let first = stamped(1, 1, 3, "a");
                let tail = stamped(4, 1, 2, "b");
                log.append_replicated(&[change.clone(), first.clone(), tail])
                    .await
                    .expect("append");
                assert_eq!(log.next_offset(), Offset(6));
                // Uncommitted entries are not visible to clients.
                assert_eq!(log.high_watermark(), Offset(0));
                log.set_commit_limit(Offset(4));
                assert_eq!(log.high_watermark(), Offset(4));
                // A batch that does not continue the log is refused.
                assert!(log
                    .append_replicated(&[stamped(9, 1, 1, "x")])
                    .await
                    .is_err());

                // A new leader replaced the tail from offset 4.
                log.truncate_from(Offset(4)).await.expect("cut");
                assert_eq!(log.next_offset(), Offset(4));
                let replaced = stamped(4, 2, 1, "c");
                log.append_replicated(&[control::leader_change_batch(5, 2), replaced.clone()])
                    .await
                    .ok();
                // Batches out of place are refused and nothing is written.
                assert_eq!(log.next_offset(), Offset(4));
                log.append_replicated(&[replaced.clone(), control::leader_change_batch(5, 2)])
                    .await
                    .expect("append after the cut");
                let read = log.read_replicated(Offset(0), 1 << 20).await.expect("read");
                assert_eq!(read.len(), 4);
                assert_eq!(read[0], change);
                assert_eq!(read[1], first);
                assert_eq!(read[2], replaced);
                log.close().await.expect("close");

                let log = open().await.expect("reopen");
                let spans = log.batch_spans().await.expect("spans");
                let shape: Vec<_> = spans
                    .iter()
                    .map(|s| (s.base_offset.get(), s.next_offset.get(), s.leader_epoch))
                    .collect();
                assert_eq!(shape, [(0, 1, 1), (1, 4, 1), (4, 5, 2), (5, 6, 2)]);
                let header = BatchHeader::parse(&change).expect("a header");
                header
                    .validate(&change, 1 << 20)
                    .expect("a valid control batch");
                assert!(control::is_control(&header));
            })
            .expect("executor")
            .join()
            .expect("test body");
    }
}
