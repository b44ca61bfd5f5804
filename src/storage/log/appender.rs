//! The write pipeline of a partition log, with group commit.
//!
//! Appends go through three stages, each tracked by a byte sequence number:
//! *staged* (offsets assigned, bytes queued, under the append lock), *written*
//! (up to `WRITES_IN_FLIGHT_MAX` aligned writes, completed in order), and
//! *synced* (one fdatasync at a time covers everything written before it
//! started, see [`GroupCommit`](crate::storage::group_commit::GroupCommit)).
//! The high watermark moves only when bytes are written, so readers never see
//! a batch the file does not hold yet. The queue itself is [`super::pipeline`].

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::super::batch::{self, BatchHeader};
use super::super::config::{Durability, TimestampType};
use super::super::control::{self, StoredMarker, TxnMarker};
use super::super::error::Error;
use super::super::file::{self, SegmentFile};
use super::super::index::INDEX_ENTRIES_MAX;
use super::super::producer_state::{AppendCheck, BatchMetadata};
use super::super::recompress;
use super::super::segment::{Segment, StagedBatch};
use super::super::types::{FilePosition, Offset};
use super::active::ActiveWrite;
use super::pipeline::Issue;
use super::{PartitionLog, State};

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The broker's timestamp when message.timestamp.type=LogAppendTime.
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: Offset,
}

impl AppendInfo {
    /// The answer to a retry of `batch`, already stored (KIP-98): its offsets,
    /// and its timestamp when the topic stamps LogAppendTime.
    pub(super) fn of_duplicate(
        batch: &BatchMetadata,
        log_append_time: Option<i64>,
        log_start_offset: Offset,
    ) -> AppendInfo {
        AppendInfo {
            base_offset: batch.first_offset,
            last_offset: batch.last_offset,
            log_append_time_ms: log_append_time.map(|_| batch.timestamp_ms),
            log_start_offset,
        }
    }
}

/// What stamping a request's batches assigned.
pub(super) struct Stamped {
    pub(super) next_offset: Offset,
    records: u64,
}

impl PartitionLog {
    /// Appends one or more v2 batches. All are validated before any is written;
    /// a rejected append leaves the log unchanged.
    pub async fn append(
        &self,
        records: Bytes,
        durability: Durability,
    ) -> Result<AppendInfo, Error> {
        self.append_in_turn(records, durability, None).await
    }

    /// [`append`](Self::append) in a turn already taken from this log's
    /// [`AppendLock`](super::AppendLock), or in one queued for now. The
    /// queue is joined before anything here awaits, so appends keep the
    /// order in which they were called.
    pub async fn append_in_turn(
        &self,
        records: Bytes,
        durability: Durability,
        turn: Option<super::AppendTurn>,
    ) -> Result<AppendInfo, Error> {
        let records = self.validate(records)?;
        let (permit, now) = self.lock_with_room(records.len(), turn).await?;
        let (info, my_seq, flush_due) = self.stage(records, now)?;
        drop(permit);

        self.wait_written(my_seq).await?;
        if durability == Durability::Durable || flush_due {
            self.wait_synced(my_seq).await?;
        }
        Ok(info)
    }

    /// Takes the append lock and rolls the active segment first when
    /// `incoming_bytes` would take it past its limits. Returns the permit
    /// and the time the append is stamped with.
    pub(super) async fn lock_with_room(
        &self,
        incoming_bytes: usize,
        turn: Option<super::AppendTurn>,
    ) -> Result<(super::AppendTurn, i64), Error> {
        let permit = self.append_lock.turn_unless_held(turn).await;
        self.mark_changing().await?;
        let now = (self.clock)();
        if self.should_roll(incoming_bytes as u64, now) {
            self.roll(now).await?;
        }
        Ok((permit, now))
    }

    /// Checks every batch and brings it to the topic's compression.type.
    pub(super) fn validate(&self, records: Bytes) -> Result<Bytes, Error> {
        let (max_message_bytes, topic_codec) = {
            let state = self.state.borrow();
            Self::check_open(&state)?;
            let config = &state.config;
            (
                config.max_message_bytes as usize,
                config.compression_type.codec(),
            )
        };
        batch::validate_all(&records, max_message_bytes)?;
        // compression.type=producer (the default) stores the bytes as sent; any
        // other value recompresses batches of another codec, as Kafka does.
        match topic_codec {
            None => Ok(records),
            Some(codec) => recompress::to_codec(records, codec, max_message_bytes),
        }
    }

    /// Assigns offsets, queues the bytes for writing and indexes them. Runs
    /// without awaiting, under the append lock. Returns where the append
    /// landed, its sequence number and whether the flush policy asks for a sync.
    ///
    /// Idempotent batches are checked against their producers' state first
    /// (KIP-98): a retry of a stored batch is answered with its offsets once
    /// everything staged so far has the durability asked for.
    fn stage(&self, records: Bytes, now: i64) -> Result<(AppendInfo, u64, bool), Error> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        Self::check_open(state)?;
        let log_append_time =
            (state.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let producer_updates =
            match state
                .producers
                .check(&records, state.next_offset, log_append_time)?
            {
                AppendCheck::Fresh(updates) => updates,
                AppendCheck::Duplicate(batch) => {
                    let info =
                        AppendInfo::of_duplicate(&batch, log_append_time, state.log_start_offset);
                    return Ok((info, state.pipeline.staged_seq(), false));
                }
            };
        // Offsets are written into the producer's buffer when we own it alone,
        // otherwise into one copy of the whole request.
        let buffer: BytesMut = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let (info, records) = self.stamp_and_queue(state, buffer, log_append_time)?;
        state.producers.commit(producer_updates);
        let flush_due = state.flush.on_staged(records, &state.config, now);
        state.debug_check_pipeline(self.commit.durable_seq());
        Ok((info, state.pipeline.staged_seq(), flush_due))
    }

    /// Stamps offsets into `buffer`'s batches from the next offset on and
    /// queues them. Returns where they landed and how many records they hold.
    fn stamp_and_queue(
        &self,
        state: &mut State,
        mut buffer: BytesMut,
        log_append_time: Option<i64>,
    ) -> Result<(AppendInfo, u64), Error> {
        let base_offset = state.next_offset;
        let stamped = stamp_batches(
            &mut buffer,
            base_offset,
            state.leader_epoch,
            log_append_time,
        )?;
        let stored_bytes = buffer.len() as u64;
        self.queue_batches(state, buffer.freeze(), base_offset, log_append_time)?;
        debug_assert_eq!(state.next_offset, stamped.next_offset);
        // One comparison per append: only a new epoch adds an entry.
        state
            .leader_epochs
            .on_batch(state.leader_epoch, base_offset);
        state.stats.appends += 1;
        state.stats.appended_records += stamped.records;
        state.stats.appended_bytes += stored_bytes;
        let info = AppendInfo {
            base_offset,
            last_offset: stamped.next_offset - 1,
            log_append_time_ms: log_append_time,
            log_start_offset: state.log_start_offset,
        };
        Ok((info, stamped.records))
    }

    /// Appends a transaction marker (KIP-98) and returns once it is durable:
    /// the coordinator counts the transaction as written on this partition
    /// only then. The producer's state takes the marker's epoch and its open
    /// transaction here ends; a marker from an older producer or coordinator
    /// epoch is refused and nothing is written.
    pub async fn append_marker(&self, marker: TxnMarker) -> Result<AppendInfo, Error> {
        let (permit, now) = self
            .lock_with_room(control::MARKER_BATCH_BYTES, None)
            .await?;
        let (info, my_seq) = self.stage_marker(&marker, now)?;
        drop(permit);
        self.wait_written(my_seq).await?;
        self.wait_synced(my_seq).await?;
        Ok(info)
    }

    fn stage_marker(&self, marker: &TxnMarker, now: i64) -> Result<(AppendInfo, u64), Error> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        Self::check_open(state)?;
        let log_append_time =
            (state.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let stored = StoredMarker {
            result: marker.result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let (entry, completed) = state.producers.check_marker(
            marker.producer_id,
            marker.producer_epoch,
            stored,
            state.next_offset,
            now,
        )?;
        let segment_base = state.segments.active()?.base_offset();
        let buffer = BytesMut::from(&control::marker_batch(marker, now)[..]);
        let (info, _) = self.stamp_and_queue(state, buffer, log_append_time)?;
        state.producers.insert(marker.producer_id, entry);
        if let Some(completed) = completed {
            super::producers::record_completed(
                &mut state.txn_index,
                &state.producers,
                segment_base,
                completed,
            );
        }
        state.debug_check_pipeline(self.commit.durable_seq());
        Ok((info, state.pipeline.staged_seq()))
    }

    /// Indexes, caches and queues for writing each batch of `stored`, whose
    /// offsets start at `base_offset`.
    pub(super) fn queue_batches(
        &self,
        state: &mut State,
        stored: Bytes,
        base_offset: Offset,
        log_append_time: Option<i64>,
    ) -> Result<(), Error> {
        let interval = state.config.index_interval_bytes;
        let segment = state.segments.active_mut()?;
        let pipeline = &mut state.pipeline;
        let mut position = 0usize;
        let mut batch_offset = base_offset;
        while position < stored.len() {
            let header = BatchHeader::parse(&stored[position..])?;
            let size = header.total_bytes();
            let last = batch_offset + i64::from(header.last_offset_delta);
            let staged = StagedBatch {
                base_offset: batch_offset,
                last_offset: last,
                max_timestamp_ms: log_append_time.unwrap_or(header.max_timestamp),
                position: FilePosition(pipeline.active.staged_bytes),
                size: size as u64,
            };
            segment.stage_batch(staged, interval);
            let slice = stored.slice(position..position + size);
            self.cache
                .insert(self.log_id, batch_offset, last, slice.clone());
            pipeline.push(slice, last + 1);
            batch_offset = last + 1;
            position += size;
        }
        state.next_offset = batch_offset;
        Ok(())
    }

    fn should_roll(&self, incoming_bytes: u64, now: i64) -> bool {
        let state = self.state.borrow();
        let Ok(active) = state.segments.active() else {
            return false;
        };
        let staged_bytes = state.pipeline.active.staged_bytes;
        if staged_bytes == 0 {
            return false;
        }
        // Age by wall clock since the segment was created: unlike Kafka's first-batch
        // timestamp, producer timestamps far in the past cannot force a roll per append.
        let segment_age_ms = now.saturating_sub(active.created_ms());
        staged_bytes + incoming_bytes > state.config.segment_bytes
            || segment_age_ms > state.config.segment_ms.min(i64::MAX as u64) as i64
            || active.index().offsets.len() >= INDEX_ENTRIES_MAX
    }

    /// Seals the active segment and starts a new one at the next offset.
    /// Caller holds the append lock.
    async fn roll(&self, now: i64) -> Result<(), Error> {
        self.seal_active().await?;
        let next_offset = self.state.borrow().next_offset;
        self.write_producer_snapshot(next_offset).await?;
        let segment = Segment::create(&self.dir, next_offset, self.io_mode, now).await?;
        file::sync_dir(&self.dir).await?;
        let active = ActiveWrite::resume(&segment).await?;
        let mut state = self.state.borrow_mut();
        state.pipeline.start_segment(active);
        state.segments.push_active(segment);
        Ok(())
    }

    /// Seals the active segment: every staged byte written, the zero padding
    /// of the last block cut so the file is exact, the file synced and its
    /// indexes persisted. Caller holds the append lock.
    pub(super) async fn seal_active(&self) -> Result<(), Error> {
        let staged = self.state.borrow().pipeline.staged_seq();
        self.wait_written(staged).await?;
        let (file, bytes) = {
            let state = self.state.borrow();
            let active = state.segments.active()?;
            (active.file().clone(), active.written_bytes())
        };
        let sealed = async {
            file.truncate(bytes).await?;
            file.fdatasync().await
        };
        if let Err(e) = sealed.await {
            self.stop("fdatasync", &e);
            return Err(e);
        }
        {
            let mut state = self.state.borrow_mut();
            state.pipeline.active.give_back_reservation();
            state.recovery_point = state.recovery_point.max(state.high_watermark);
        }
        self.commit.mark_durable(staged);
        let (index_files, base) = {
            let state = self.state.borrow();
            let active = state.segments.active()?;
            (active.encode_indexes()?, active.base_offset())
        };
        index_files.write(&self.dir).await?;
        self.write_txn_index(base).await
    }

    /// Returns once every byte staged up to `seq` is written, issuing writes
    /// itself when the pipeline has room.
    ///
    /// Up to `WRITES_IN_FLIGHT_MAX` writes run at once. Two writes never cover
    /// the same block while both are in flight: a write that ends inside a block
    /// must complete before the next write (which rewrites that block) is issued.
    /// While other writes are in flight, only whole blocks are issued, so the
    /// pipeline stays full under load; the partial last block goes out when the
    /// pipeline drains.
    pub(super) async fn wait_written(&self, seq: u64) -> Result<(), Error> {
        loop {
            let next = {
                let mut state = self.state.borrow_mut();
                if state.pipeline.written_seq() >= seq {
                    return Ok(());
                }
                if let Some(what) = state.stopped {
                    return Err(Error::Stopped(what));
                }
                let segment_bytes = state.config.segment_bytes;
                let pipeline = &mut state.pipeline;
                pipeline
                    .next_write_bytes()
                    .map(|take| pipeline.issue(take, segment_bytes))
            };
            let Some(issue) = next else {
                // The pipeline is full or must drain first; a completion wakes us.
                let epoch = self.written.epoch();
                self.written.changed(epoch).await;
                continue;
            };
            if let Err(e) = self.perform_write(&issue).await {
                self.stop("write", &e);
                return Err(e);
            }
            self.complete_write(issue);
            self.written.notify_all();
        }
    }

    async fn perform_write(&self, issue: &Issue) -> Result<(), Error> {
        let write =
            issue
                .file
                .write_blocks(issue.position, &issue.head[..issue.head_len], &issue.parts);
        match issue.reserve_to {
            None => write.await,
            Some(target) => {
                // The write is issued first and completes in line; the
                // reservation (run by a kernel worker) waits for it.
                let (written, reserved) = futures::join!(write, issue.file.reserve(target));
                self.finish_reservation(&issue.file, target, reserved);
                written
            }
        }
    }

    /// Records a finished reservation on the segment it was made for (the
    /// active one: a roll waits for every write, and so for its reservation).
    fn finish_reservation(&self, file: &Rc<SegmentFile>, target: u64, result: Result<(), Error>) {
        let mut state = self.state.borrow_mut();
        let active = &mut state.pipeline.active;
        if Rc::ptr_eq(&active.file, file) {
            active.finish_reservation(target, result);
        }
    }

    /// Marks a write done and moves the high watermark and the readable end
    /// of the active segment over every write completed in order.
    fn complete_write(&self, issue: Issue) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.stats.writes += 1;
        state.stats.written_bytes += issue.bytes;
        if let Some((end_offset, end_position)) = state.pipeline.complete(issue) {
            state.high_watermark = state.high_watermark.max(end_offset);
            // Writes in flight belong to the active segment: a roll waits for them.
            if let Ok(active) = state.segments.active_mut() {
                active.set_written_bytes(end_position);
            }
        }
        state.debug_check_pipeline(self.commit.durable_seq());
    }

    /// Returns once every byte staged up to `seq` is covered by an fdatasync.
    /// Appends arriving while one runs are all covered by the next one.
    pub(super) async fn wait_synced(&self, seq: u64) -> Result<(), Error> {
        loop {
            if self.commit.covers(seq) {
                return Ok(());
            }
            if let Some(what) = self.state.borrow().stopped {
                return Err(Error::Stopped(what));
            }
            if self.commit.sync_in_flight() {
                self.commit.next_change().await;
            } else if self.state.borrow().pipeline.written_seq() < seq {
                self.wait_written(seq).await?;
            } else {
                self.lead_sync().await?;
            }
        }
    }

    /// Runs the one fdatasync, covering every byte written so far.
    async fn lead_sync(&self) -> Result<(), Error> {
        let (file, turn, target_offset) = {
            let mut state = self.state.borrow_mut();
            let Some(turn) = self.commit.begin_sync(state.pipeline.written_seq()) else {
                return Ok(());
            };
            state.flush.on_sync_started((self.clock)());
            (
                state.pipeline.active.file.clone(),
                turn,
                state.high_watermark,
            )
        };
        let result = file.fdatasync().await;
        self.commit.finish_sync(turn, result.is_ok());
        if let Err(e) = result {
            self.stop("fdatasync", &e);
            return Err(e);
        }
        let mut state = self.state.borrow_mut();
        state.stats.fdatasyncs += 1;
        state.recovery_point = state.recovery_point.max(target_offset);
        state.debug_check_pipeline(self.commit.durable_seq());
        Ok(())
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), Error> {
        let staged = self.state.borrow().pipeline.staged_seq();
        self.wait_written(staged).await?;
        self.wait_synced(staged).await
    }
}

/// Writes each batch's base offset, leader epoch and (for LogAppendTime) the
/// broker's timestamp into `buffer`, numbering from `base_offset`.
pub(super) fn stamp_batches(
    buffer: &mut [u8],
    base_offset: Offset,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Result<Stamped, Error> {
    let mut stamped = Stamped {
        next_offset: base_offset,
        records: 0,
    };
    let mut position = 0usize;
    while position < buffer.len() {
        let header = BatchHeader::parse(&buffer[position..])?;
        let available = buffer.len() - position;
        let bytes = buffer
            .get_mut(position..position + header.total_bytes())
            .ok_or(Error::Truncated {
                needed: header.total_bytes(),
                available,
            })?;
        batch::set_base_offset(bytes, stamped.next_offset.get());
        batch::set_partition_leader_epoch(bytes, leader_epoch);
        if let Some(ts) = log_append_time {
            batch::set_log_append_time(bytes, ts);
        }
        stamped.next_offset += i64::from(header.last_offset_delta) + 1;
        stamped.records += u64::try_from(header.record_count).unwrap_or(0);
        position += header.total_bytes();
    }
    Ok(stamped)
}
