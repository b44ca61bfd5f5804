//! `PartitionLog`: one partition's segments, its write pipeline with group
//! commit, reads through the batch cache, and retention.
//!
//! Appends go through three stages, each tracked by a byte sequence number:
//! *staged* (offsets assigned, bytes queued, under the append lock), *written*
//! (one task at a time writes everything queued as one aligned write), and
//! *synced* (one fdatasync at a time covers everything written before it
//! started). The high watermark moves only when bytes are written, so readers
//! never see a batch the file does not hold yet.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::cache::{BatchCache, LogId};
use super::config::{Durability, LogConfig, StorageOptions, TimestampType, KAFKA_LONG_MAX};
use super::error::Error;
use super::file::{self, IoMode, BLOCK_BYTES};
use super::limit::ReadLimit;
use super::meta::PartitionMeta;
use super::notify::Notify;
use super::recompress;
use super::recovery;
use super::retention;
use super::segment::{self, Segment};

/// Most bytes one write I/O carries; more queued data goes in the next write.
pub const WRITE_BYTES_MAX: usize = 1024 * 1024;
/// Writes of one partition in flight at once (sequential, non-overlapping).
pub const WRITES_IN_FLIGHT_MAX: usize = 4;
/// Bounds on the flush.ms timer's sleep, so a huge flush.ms cannot overflow a
/// Duration and a config change is noticed within a second.
const FLUSH_TICK_MS_MIN: u64 = 1;
const FLUSH_TICK_MS_MAX: u64 = 1000;

const _: () = assert!((WRITE_BYTES_MAX as u64).is_multiple_of(BLOCK_BYTES));
const _: () = assert!(WRITE_BYTES_MAX as u64 > 2 * BLOCK_BYTES && WRITES_IN_FLIGHT_MAX >= 1);

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp when message.timestamp.type=LogAppendTime.
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: i64,
}

/// Stored batches, exactly as appended (baseOffset and leader epoch assigned).
#[derive(Clone, Debug, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl ReadResult {
    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// A (timestamp, offset) answer for ListOffsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp_ms: i64,
    pub offset: i64,
}

/// I/O counters of one log (for tests, benchmarks and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub writes: u64,
    pub written_bytes: u64,
    pub fdatasyncs: u64,
}

/// One write issued and not yet completed (in issue order).
struct Flight {
    id: u64,
    end_seq: u64,
    /// The offset after the last batch this write completes.
    end_offset: i64,
    end_position: u64,
    done: bool,
}

/// What a task needs to perform one write.
struct Issue {
    id: u64,
    file: Rc<super::file::SegmentFile>,
    position: u64,
    head: [u8; BLOCK_BYTES as usize],
    head_len: usize,
    parts: Vec<Bytes>,
    bytes: u64,
    /// File length to reserve while this write runs.
    reserve_to: Option<u64>,
}

/// What a task waiting for durability does next.
enum SyncStep {
    WaitForSync,
    WaitForWrite,
    /// Lead the next fdatasync, covering bytes up to the sequence and offset given.
    Sync(Rc<super::file::SegmentFile>, u64, i64),
}

struct Pending {
    batch: Bytes,
    next_offset: i64,
}

pub(crate) struct State {
    pub(crate) config: LogConfig,
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    /// Offset after the last written batch: what readers may see.
    pub(crate) high_watermark: i64,
    /// Offset after the last staged batch: the next offset to assign.
    pub(crate) next_offset: i64,
    pub(crate) leader_epoch: i32,
    /// Offset after the last batch covered by an fdatasync.
    pub(crate) recovery_point: i64,
    pending: VecDeque<Pending>,
    staged_seq: u64,
    /// Bytes handed to writes (issued, maybe not complete).
    issued_seq: u64,
    /// The offset after the last batch wholly issued.
    issued_offset: i64,
    flights: VecDeque<Flight>,
    next_flight_id: u64,
    written_seq: u64,
    synced_seq: u64,
    sync_in_flight: bool,
    /// Reused between writes so a write allocates nothing but its DMA buffer.
    write_scratch: Vec<Bytes>,
    stopped: Option<&'static str>,
    closed: bool,
    unflushed_records: u64,
    last_flush_ms: i64,
    flusher_running: bool,
    stats: LogStats,
}

/// One partition's log. `!Send`: it lives on the shard that owns the partition.
pub struct PartitionLog {
    dir: PathBuf,
    io_mode: IoMode,
    cache: Rc<BatchCache>,
    log_id: LogId,
    state: RefCell<State>,
    /// Serialises offset assignment and segment rolls.
    append_lock: glommio::sync::Semaphore,
    /// Moves when bytes are written (the high watermark), or on stop/close.
    written: Notify,
    /// Moves when an fdatasync completes, or on stop/close.
    synced: Notify,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl PartitionLog {
    /// Opens (creating if needed) the partition directory, recovers it, and
    /// returns a log ready to append at the right offset.
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        options: StorageOptions,
    ) -> Result<Rc<PartitionLog>, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let io_mode = match file::probe_direct_io(&dir).await {
            Ok(()) => IoMode::Direct,
            Err(reason) if options.allow_buffered_io => {
                tracing::warn!(dir = %dir.display(), %reason, "O_DIRECT unavailable; using buffered I/O (development mode)");
                IoMode::Buffered
            }
            Err(reason) => return Err(Error::DirectIoUnavailable { path: dir, reason }),
        };
        let recovered = recovery::recover(&dir, &config, io_mode).await?;
        let now = now_ms();
        let state = State {
            config,
            segments: recovered.segments,
            log_start_offset: recovered.log_start_offset,
            high_watermark: recovered.next_offset,
            next_offset: recovered.next_offset,
            leader_epoch: recovered.leader_epoch,
            recovery_point: recovered.recovery_point,
            pending: VecDeque::new(),
            staged_seq: 0,
            issued_seq: 0,
            issued_offset: recovered.next_offset,
            flights: VecDeque::new(),
            next_flight_id: 0,
            written_seq: 0,
            synced_seq: 0,
            sync_in_flight: false,
            write_scratch: Vec::new(),
            stopped: None,
            closed: false,
            unflushed_records: 0,
            last_flush_ms: now,
            flusher_running: false,
            stats: LogStats::default(),
        };
        let log = Rc::new(PartitionLog {
            dir,
            io_mode,
            log_id: cache.register_log(),
            cache,
            state: RefCell::new(state),
            append_lock: glommio::sync::Semaphore::new(1),
            written: Notify::default(),
            synced: Notify::default(),
        });
        log.store_meta(false).await?;
        log.start_flusher_if_needed();
        Ok(log)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether segment files use O_DIRECT (false only in the development mode).
    pub fn is_direct_io(&self) -> bool {
        self.io_mode == IoMode::Direct
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    pub fn config(&self) -> LogConfig {
        self.state.borrow().config.clone()
    }

    pub fn set_config(self: &Rc<Self>, config: LogConfig) {
        self.state.borrow_mut().config = config;
        self.start_flusher_if_needed();
    }

    /// The epoch stamped into partitionLeaderEpoch of appended batches.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.state.borrow_mut().leader_epoch = epoch;
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.borrow().leader_epoch
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.state.borrow().segments.keys().copied().collect()
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }

    /// (base offset, bytes) of each segment, oldest first.
    pub fn segment_sizes(&self) -> Vec<(i64, u64)> {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| (s.base_offset, s.written_bytes))
            .collect()
    }

    /// Total bytes of the segment files.
    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| s.written_bytes)
            .sum()
    }

    fn check_open(state: &State) -> Result<(), Error> {
        if let Some(what) = state.stopped {
            return Err(Error::Stopped(what));
        }
        if state.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Appends one or more v2 batches. All are validated before any is written;
    /// a rejected append leaves the log unchanged.
    pub async fn append(
        &self,
        records: Bytes,
        durability: Durability,
    ) -> Result<AppendInfo, Error> {
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
        let records = match topic_codec {
            None => records,
            Some(codec) => recompress::to_codec(records, codec, max_message_bytes)?,
        };

        let permit = self
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Closed)?;
        let now = now_ms();
        if self.should_roll(records.len() as u64, now) {
            self.roll(now).await?;
        }
        let (info, my_seq, flush_due) = self.stage(records, now)?;
        drop(permit);

        self.wait_written(my_seq).await?;
        if durability == Durability::Durable || flush_due {
            self.wait_synced(my_seq).await?;
        }
        Ok(info)
    }

    /// Assigns offsets, queues the bytes for writing and indexes them. Runs
    /// without awaiting, under the append lock.
    fn stage(&self, records: Bytes, now: i64) -> Result<(AppendInfo, u64, bool), Error> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        Self::check_open(state)?;
        // Offsets are written into the producer's buffer when we own it alone,
        // otherwise into one copy of the whole request.
        let mut buffer: BytesMut = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let log_append_time =
            (state.config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let base_offset = state.next_offset;
        let mut offset = base_offset;
        let mut position = 0usize;
        let mut records_total = 0u64;
        while position < buffer.len() {
            let header = BatchHeader::parse(&buffer[position..])?;
            let end = position + header.total_bytes();
            let bytes = &mut buffer[position..end];
            batch::set_base_offset(bytes, offset);
            batch::set_partition_leader_epoch(bytes, state.leader_epoch);
            if let Some(ts) = log_append_time {
                batch::set_log_append_time(bytes, ts);
            }
            offset += i64::from(header.last_offset_delta) + 1;
            records_total += header.record_count as u64;
            position = end;
        }
        let stored = buffer.freeze();
        let Some((_, active)) = state.segments.last_key_value() else {
            return Err(Error::InvalidLayout(self.dir.clone(), "no active segment"));
        };
        let active_base = active.base_offset;
        let interval = state.config.index_interval_bytes;
        let segment = state
            .segments
            .get_mut(&active_base)
            .ok_or(Error::InvalidLayout(self.dir.clone(), "no active segment"))?;
        let mut position = 0usize;
        let mut batch_offset = base_offset;
        while position < stored.len() {
            let header = BatchHeader::parse(&stored[position..])?;
            let size = header.total_bytes();
            let last = batch_offset + i64::from(header.last_offset_delta);
            let max_timestamp = log_append_time.unwrap_or(header.max_timestamp);
            let slice = stored.slice(position..position + size);
            segment.index.on_batch(
                batch_offset,
                max_timestamp,
                segment.staged_bytes,
                size as u64,
                interval,
            );
            segment.staged_bytes += size as u64;
            segment.next_offset = last + 1;
            self.cache
                .insert(self.log_id, batch_offset, last, slice.clone());
            state.pending.push_back(Pending {
                batch: slice,
                next_offset: last + 1,
            });
            batch_offset = last + 1;
            position += size;
        }
        debug_assert_eq!(batch_offset, offset);
        state.staged_seq += stored.len() as u64;
        state.stats.appends += 1;
        state.next_offset = offset;
        state.unflushed_records += records_total;
        let flush_due = state.unflushed_records >= state.config.flush_messages
            || (state.config.flush_ms < KAFKA_LONG_MAX
                && now.saturating_sub(state.last_flush_ms) >= state.config.flush_ms as i64);
        let info = AppendInfo {
            base_offset,
            last_offset: offset - 1,
            log_append_time_ms: log_append_time,
            log_start_offset: state.log_start_offset,
        };
        Ok((info, state.staged_seq, flush_due))
    }

    fn should_roll(&self, incoming_bytes: u64, now: i64) -> bool {
        let state = self.state.borrow();
        let Some((_, active)) = state.segments.last_key_value() else {
            return false;
        };
        if active.staged_bytes == 0 {
            return false;
        }
        // Age by wall clock since the segment was created: unlike Kafka's first-batch
        // timestamp, producer timestamps far in the past cannot force a roll per append.
        let segment_age_ms = now.saturating_sub(active.created_ms);
        active.staged_bytes + incoming_bytes > state.config.segment_bytes
            || segment_age_ms > state.config.segment_ms.min(i64::MAX as u64) as i64
            || active.index.offsets.len() >= super::index::INDEX_ENTRIES_MAX
    }

    /// Seals the active segment (written, truncated to size, synced, indexes
    /// persisted) and starts a new one at the next offset. Caller holds the
    /// append lock.
    async fn roll(&self, now: i64) -> Result<(), Error> {
        let staged = self.state.borrow().staged_seq;
        self.wait_written(staged).await?;
        let (old_file, old_bytes, old_base) = {
            let state = self.state.borrow();
            let (_, active) = state
                .segments
                .last_key_value()
                .ok_or(Error::InvalidLayout(self.dir.clone(), "no active segment"))?;
            (
                active.file.clone(),
                active.written_bytes,
                active.base_offset,
            )
        };
        // Drop the zero padding of the last block so the sealed file is exact.
        let sealed = async {
            old_file.truncate(old_bytes).await?;
            old_file.fdatasync().await
        };
        if let Err(e) = sealed.await {
            self.stop("fdatasync", &e);
            return Err(e);
        }
        {
            let mut state = self.state.borrow_mut();
            state.synced_seq = state.synced_seq.max(staged);
            state.recovery_point = state.recovery_point.max(state.high_watermark);
        }
        self.synced.notify_all();
        let index_files = self
            .state
            .borrow()
            .segments
            .get(&old_base)
            .map(Segment::encode_indexes)
            .transpose()?;
        if let Some(files) = index_files {
            files.write(&self.dir).await?;
        }
        let next_offset = self.state.borrow().next_offset;
        let segment = Segment::create(&self.dir, next_offset, self.io_mode, now).await?;
        file::sync_dir(&self.dir).await?;
        self.state
            .borrow_mut()
            .segments
            .insert(next_offset, segment);
        Ok(())
    }

    fn stop(&self, what: &'static str, error: &Error) {
        tracing::error!(dir = %self.dir.display(), %error, "{what} failed; partition stopped");
        self.state.borrow_mut().stopped = Some(what);
        self.written.notify_all();
        self.synced.notify_all();
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
    async fn wait_written(&self, seq: u64) -> Result<(), Error> {
        loop {
            let next = {
                let mut state = self.state.borrow_mut();
                if state.written_seq >= seq {
                    return Ok(());
                }
                if let Some(what) = state.stopped {
                    return Err(Error::Stopped(what));
                }
                self.take_write(&mut state)?
            };
            let Some(issue) = next else {
                // The pipeline is full or must drain first; a completion wakes us.
                let epoch = self.written.epoch();
                self.written.changed(epoch).await;
                continue;
            };
            let write = issue.file.write_blocks(
                issue.position,
                &issue.head[..issue.head_len],
                &issue.parts,
            );
            let result = match issue.reserve_to {
                None => write.await,
                Some(target) => {
                    // The write is issued first and completes in line; the
                    // reservation (run by a kernel worker) waits for it.
                    let (written, reserved) = futures::join!(write, issue.file.reserve(target));
                    self.finish_reservation(&issue.file, target, reserved);
                    written
                }
            };
            if let Err(e) = result {
                self.stop("write", &e);
                return Err(e);
            }
            self.complete_write(issue);
            self.written.notify_all();
        }
    }

    /// Takes the next write off the staged queue, or `None` when the pipeline
    /// has no room or nothing may be issued yet.
    fn take_write(&self, state: &mut State) -> Result<Option<Issue>, Error> {
        let unissued = state.staged_seq - state.issued_seq;
        if unissued == 0 || state.flights.len() >= WRITES_IN_FLIGHT_MAX {
            return Ok(None);
        }
        let state = &mut *state;
        let (_, active) = state
            .segments
            .iter_mut()
            .next_back()
            .ok_or(Error::InvalidLayout(self.dir.clone(), "no active segment"))?;
        let head_len = active.tail.len();
        if head_len > 0 && !state.flights.is_empty() {
            // The last write in flight ends inside the block this one must rewrite.
            return Ok(None);
        }
        let start = active.issued_bytes;
        let limit = (WRITE_BYTES_MAX - head_len) as u64;
        let mut take = unissued.min(limit);
        let end = start + take;
        if !state.flights.is_empty() || take < unissued {
            // Keep the pipeline going with whole blocks; the remainder follows.
            let aligned_end = file::align_down(end);
            if aligned_end <= start {
                return Ok(None);
            }
            take = aligned_end - start;
        }
        let mut parts = std::mem::take(&mut state.write_scratch);
        let mut remaining = take as usize;
        let mut end_offset = state.issued_offset;
        while remaining > 0 {
            let Some(front) = state.pending.front_mut() else {
                break;
            };
            if front.batch.len() <= remaining {
                remaining -= front.batch.len();
                end_offset = front.next_offset;
                if let Some(p) = state.pending.pop_front() {
                    parts.push(p.batch);
                }
            } else {
                // The batch continues in the next write; a slice, not a copy.
                parts.push(front.batch.split_to(remaining));
                remaining = 0;
            }
        }
        let mut head = [0u8; BLOCK_BYTES as usize];
        head[..head_len].copy_from_slice(&active.tail);
        let position = file::align_down(start);
        let new_end = start + take;
        fill_tail(
            &mut active.tail,
            &head[..head_len],
            &parts,
            (new_end - file::align_down(new_end)) as usize,
        );
        active.issued_bytes = new_end;
        let reserve_to = active.start_reservation(new_end, state.config.segment_bytes);
        state.issued_seq += take;
        state.issued_offset = end_offset;
        let id = state.next_flight_id;
        state.next_flight_id += 1;
        state.flights.push_back(Flight {
            id,
            end_seq: state.issued_seq,
            end_offset,
            end_position: new_end,
            done: false,
        });
        Ok(Some(Issue {
            id,
            file: active.file.clone(),
            position,
            head,
            head_len,
            parts,
            bytes: take,
            reserve_to,
        }))
    }

    /// Records a finished reservation on the segment it was made for (the
    /// active one: a roll waits for every write, and so for its reservation).
    fn finish_reservation(
        &self,
        file: &Rc<file::SegmentFile>,
        target: u64,
        result: Result<(), Error>,
    ) {
        let mut state = self.state.borrow_mut();
        if let Some((_, active)) = state.segments.iter_mut().next_back() {
            if Rc::ptr_eq(&active.file, file) {
                active.finish_reservation(target, result);
            }
        }
    }

    /// Marks a write done and advances the written frontier over every write
    /// completed in order.
    fn complete_write(&self, issue: Issue) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if let Some(flight) = state.flights.iter_mut().find(|f| f.id == issue.id) {
            flight.done = true;
        }
        state.stats.writes += 1;
        state.stats.written_bytes += issue.bytes;
        while state.flights.front().is_some_and(|f| f.done) {
            let Some(flight) = state.flights.pop_front() else {
                break;
            };
            state.written_seq = flight.end_seq;
            state.high_watermark = state.high_watermark.max(flight.end_offset);
            if let Some((_, active)) = state.segments.iter_mut().next_back() {
                active.written_bytes = flight.end_position;
            }
        }
        let mut parts = issue.parts;
        parts.clear();
        if parts.capacity() > state.write_scratch.capacity() {
            state.write_scratch = parts;
        }
    }

    /// Returns once every byte staged up to `seq` is covered by an fdatasync.
    /// Appends arriving while one runs are all covered by the next one.
    async fn wait_synced(&self, seq: u64) -> Result<(), Error> {
        loop {
            let step = {
                let mut state = self.state.borrow_mut();
                if state.synced_seq >= seq {
                    return Ok(());
                }
                if let Some(what) = state.stopped {
                    return Err(Error::Stopped(what));
                }
                if state.sync_in_flight {
                    SyncStep::WaitForSync
                } else if state.written_seq < seq {
                    SyncStep::WaitForWrite
                } else {
                    let (_, active) = state
                        .segments
                        .last_key_value()
                        .ok_or(Error::InvalidLayout(self.dir.clone(), "no active segment"))?;
                    let file = active.file.clone();
                    state.sync_in_flight = true;
                    state.unflushed_records = 0;
                    state.last_flush_ms = now_ms();
                    SyncStep::Sync(file, state.written_seq, state.high_watermark)
                }
            };
            let (file, target_seq, target_offset) = match step {
                SyncStep::WaitForSync => {
                    let epoch = self.synced.epoch();
                    self.synced.changed(epoch).await;
                    continue;
                }
                SyncStep::WaitForWrite => {
                    self.wait_written(seq).await?;
                    continue;
                }
                SyncStep::Sync(file, target_seq, target_offset) => {
                    (file, target_seq, target_offset)
                }
            };
            let result = file.fdatasync().await;
            self.state.borrow_mut().sync_in_flight = false;
            if let Err(e) = result {
                self.stop("fdatasync", &e);
                return Err(e);
            }
            {
                let mut state = self.state.borrow_mut();
                state.synced_seq = state.synced_seq.max(target_seq);
                state.stats.fdatasyncs += 1;
                state.recovery_point = state.recovery_point.max(target_offset);
            }
            self.synced.notify_all();
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), Error> {
        let staged = self.state.borrow().staged_seq;
        self.wait_written(staged).await?;
        self.wait_synced(staged).await
    }

    fn start_flusher_if_needed(self: &Rc<Self>) {
        {
            let mut state = self.state.borrow_mut();
            if state.flusher_running || state.config.flush_ms >= KAFKA_LONG_MAX || state.closed {
                return;
            }
            state.flusher_running = true;
        }
        let weak: Weak<PartitionLog> = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                let tick_ms = match weak.upgrade() {
                    Some(log) => {
                        let state = log.state.borrow();
                        if state.closed
                            || state.stopped.is_some()
                            || state.config.flush_ms >= KAFKA_LONG_MAX
                        {
                            drop(state);
                            log.state.borrow_mut().flusher_running = false;
                            return;
                        }
                        state
                            .config
                            .flush_ms
                            .clamp(FLUSH_TICK_MS_MIN, FLUSH_TICK_MS_MAX)
                    }
                    None => return,
                };
                glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
                let Some(log) = weak.upgrade() else { return };
                let due = {
                    let state = log.state.borrow();
                    state.written_seq > state.synced_seq
                        && now_ms().saturating_sub(state.last_flush_ms)
                            >= state.config.flush_ms as i64
                };
                if due {
                    // A failure stops the partition inside flush(); the loop then ends.
                    let _ = log.flush().await;
                }
            }
        })
        .detach();
    }

    /// Reads whole stored batches starting with the one containing `from_offset`,
    /// up to `max_bytes` (at least one batch). `from_offset == high_watermark`
    /// gives an empty result.
    pub async fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadResult, Error> {
        self.read_limited(from_offset, ReadLimit::first_batch_whole(max_bytes))
            .await
    }

    /// Reads whole stored batches starting with the one containing `from_offset`,
    /// as many as `limit` admits. `from_offset == high_watermark` gives an
    /// empty result.
    pub async fn read_limited(
        &self,
        from_offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult, Error> {
        let max_bytes = limit.max_bytes;
        let (high_watermark, log_start_offset) = {
            let state = self.state.borrow();
            (state.high_watermark, state.log_start_offset)
        };
        if from_offset < log_start_offset || from_offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset,
                high_watermark,
            });
        }
        let mut result = ReadResult {
            batches: Vec::new(),
            high_watermark,
            log_start_offset,
        };
        if limit.admits_nothing() {
            return Ok(result);
        }
        let mut total = 0usize;
        let mut next = from_offset;
        while next < high_watermark && (result.batches.is_empty() || total < max_bytes) {
            // Recent data: straight from the cache, no I/O.
            let mut full = false;
            while next < high_watermark {
                let Some((batch, last)) = self.cache.get_containing(self.log_id, next) else {
                    break;
                };
                if !limit.admits(result.batches.len(), total, batch.len()) {
                    full = true;
                    break;
                }
                total += batch.len();
                result.batches.push(batch);
                next = last + 1;
                if total >= max_bytes {
                    full = true;
                    break;
                }
            }
            if full || next >= high_watermark {
                break;
            }
            // Older data: an aligned direct read of the segment.
            let (file, position, end, following_base) = {
                let state = self.state.borrow();
                let Some((_, segment)) = state.segments.range(..=next).next_back() else {
                    break;
                };
                let following = state.segments.range(next + 1..).next().map(|(b, _)| *b);
                (
                    segment.file.clone(),
                    segment.index.position_for_offset(next),
                    segment.written_bytes,
                    following,
                )
            };
            let progress = segment::read_batches(
                &file,
                position,
                end,
                next,
                limit,
                &mut result.batches,
                &mut total,
            )
            .await?;
            match progress.next_offset {
                Some(n) => next = n,
                None => match following_base {
                    Some(base) if base > next => next = base,
                    _ => break,
                },
            }
            if progress.full {
                break;
            }
        }
        Ok(result)
    }

    /// Resolves once `high_watermark() > offset`, or when the log closes or stops.
    pub async fn wait_for_offset(&self, offset: i64) {
        loop {
            let epoch = self.written.epoch();
            {
                let state = self.state.borrow();
                if state.high_watermark > offset || state.closed || state.stopped.is_some() {
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
            let candidates: Vec<_> = state
                .segments
                .values()
                .filter(|s| s.next_offset > state.log_start_offset)
                .filter(|s| {
                    s.index
                        .max_timestamp
                        .is_some_and(|(t, _)| t >= timestamp_ms)
                })
                .map(|s| {
                    let position = s.index.position_for_timestamp(timestamp_ms).max(
                        s.index
                            .position_for_offset(state.log_start_offset)
                            .min(s.written_bytes),
                    );
                    (s.file.clone(), position, s.written_bytes)
                })
                .collect();
            (candidates, state.log_start_offset)
        };
        for (file, position, end) in candidates {
            if let Some((timestamp_ms, offset)) =
                segment::find_timestamp(&file, position, end, timestamp_ms, log_start_offset)
                    .await?
            {
                return Ok(Some(TimestampOffset {
                    timestamp_ms,
                    offset,
                }));
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
        let record = super::records::first_with_max_timestamp(&header, batch, log_start_offset)?;
        Ok(record.map(|r| TimestampOffset {
            timestamp_ms: r.timestamp_ms,
            offset: r.offset,
        }))
    }

    /// The base offset of the first readable batch with the largest maxTimestamp.
    fn max_timestamp_batch(&self) -> Option<i64> {
        let state = self.state.borrow();
        let mut best: Option<(i64, i64)> = None;
        for s in state.segments.values() {
            if let Some((t, o)) = s.index.max_timestamp {
                if o >= state.high_watermark || s.next_offset <= state.log_start_offset {
                    continue;
                }
                if best.is_none_or(|(best_t, _)| t > best_t) {
                    best = Some((t, o));
                }
            }
        }
        best.map(|(_, offset)| offset)
    }

    /// Advances the log start offset to `before_offset` (Kafka DeleteRecords),
    /// deleting segments that end below it. Returns the new log start offset.
    pub async fn delete_records(&self, before_offset: i64) -> Result<i64, Error> {
        let removed = {
            let mut state = self.state.borrow_mut();
            Self::check_open(&state)?;
            if before_offset < 0 || before_offset > state.high_watermark {
                return Err(Error::OffsetOutOfRange {
                    offset: before_offset,
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.high_watermark,
                });
            }
            if before_offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
            state.log_start_offset = before_offset;
            retention::remove_below(&mut state, before_offset)
        };
        self.finish_removal(removed).await?;
        Ok(self.log_start_offset())
    }

    /// Deletes the oldest whole segments beyond retention.ms and retention.bytes
    /// (never the active one) and moves the log start offset past them.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<(), Error> {
        let removed = {
            let mut state = self.state.borrow_mut();
            Self::check_open(&state)?;
            let count = retention::expired_segments(&state, now_ms);
            retention::remove_oldest(&mut state, count)
        };
        if removed.is_empty() {
            return Ok(());
        }
        self.finish_removal(removed).await
    }

    async fn finish_removal(&self, removed: Vec<Segment>) -> Result<(), Error> {
        for segment in &removed {
            tracing::info!(dir = %self.dir.display(), base_offset = segment.base_offset, "deleting segment");
            Segment::remove_files(&self.dir, segment.base_offset)?;
        }
        drop(removed);
        self.store_meta(false).await
    }

    async fn store_meta(&self, clean_shutdown: bool) -> Result<(), Error> {
        let meta = {
            let state = self.state.borrow();
            PartitionMeta::new(
                state.log_start_offset,
                state.recovery_point,
                state.leader_epoch,
                clean_shutdown,
            )
        };
        meta.store(&self.dir).await
    }

    /// Writes and syncs everything, persists the active segment's indexes and a
    /// clean partition.meta. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), Error> {
        let permit = self
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Closed)?;
        {
            let state = self.state.borrow();
            if state.closed {
                return Ok(());
            }
            if let Some(what) = state.stopped {
                return Err(Error::Stopped(what));
            }
        }
        self.flush().await?;
        let (file, bytes) = {
            let state = self.state.borrow();
            let (_, active) = state
                .segments
                .last_key_value()
                .ok_or(Error::InvalidLayout(self.dir.clone(), "no active segment"))?;
            (active.file.clone(), active.written_bytes)
        };
        let sealed = async {
            file.truncate(bytes).await?;
            file.fdatasync().await
        };
        if let Err(e) = sealed.await {
            self.stop("fdatasync", &e);
            return Err(e);
        }
        let index_files = self
            .state
            .borrow()
            .segments
            .last_key_value()
            .map(|(_, s)| s.encode_indexes())
            .transpose()?;
        if let Some(files) = index_files {
            files.write(&self.dir).await?;
        }
        {
            let mut state = self.state.borrow_mut();
            state.recovery_point = state.high_watermark;
            state.closed = true;
        }
        self.store_meta(true).await?;
        self.cache.remove_log_from(self.log_id, i64::MIN);
        self.written.notify_all();
        self.synced.notify_all();
        drop(permit);
        Ok(())
    }

    /// Closes the log and removes its directory.
    pub async fn delete(&self) -> Result<(), Error> {
        match self.close().await {
            Ok(()) | Err(Error::Stopped(_)) => {}
            Err(e) => return Err(e),
        }
        {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            state.segments.clear();
        }
        self.cache.remove_log_from(self.log_id, i64::MIN);
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("removing", &self.dir, e))
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.cache.remove_log_from(self.log_id, i64::MIN);
    }
}

/// Keeps the last `tail_len` bytes of `head ++ parts`: the partial last block.
fn fill_tail(tail: &mut Vec<u8>, head: &[u8], parts: &[Bytes], tail_len: usize) {
    tail.clear();
    tail.resize(tail_len, 0);
    let mut remaining = tail_len;
    for part in parts
        .iter()
        .rev()
        .map(|b| &b[..])
        .chain(std::iter::once(head))
    {
        if remaining == 0 {
            break;
        }
        let take = remaining.min(part.len());
        tail[remaining - take..remaining].copy_from_slice(&part[part.len() - take..]);
        remaining -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failed_fdatasync_appends_fail_and_waiters_return() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                let dir = tempfile::tempdir().expect("tempdir");
                let cache = BatchCache::new(1 << 20);
                let log = PartitionLog::open(
                    dir.path().join("t-0"),
                    LogConfig::default(),
                    cache,
                    StorageOptions::default(),
                )
                .await
                .expect("open");
                let waiter = {
                    let log = log.clone();
                    glommio::spawn_local(async move { log.wait_for_offset(10).await })
                };
                let failure = Error::io(
                    "syncing",
                    dir.path(),
                    std::io::Error::from_raw_os_error(libc::EIO),
                );
                log.stop("fdatasync", &failure);
                waiter.await;
                let batch = Bytes::from_static(&[0u8; 8]);
                assert!(matches!(
                    log.append(batch, Durability::Written).await,
                    Err(Error::Stopped("fdatasync"))
                ));
                assert!(matches!(
                    log.close().await,
                    Err(Error::Stopped("fdatasync"))
                ));
            })
            .expect("executor")
            .join()
            .expect("test body");
    }

    #[test]
    fn tail_is_the_suffix_of_head_and_parts() {
        let mut tail = Vec::new();
        let parts = [Bytes::from_static(b"defg"), Bytes::from_static(b"hi")];
        fill_tail(&mut tail, b"abc", &parts, 5);
        assert_eq!(&tail, b"efghi");
        fill_tail(&mut tail, b"abc", &parts, 8);
        assert_eq!(&tail, b"bcdefghi");
        fill_tail(&mut tail, b"abc", &parts, 0);
        assert!(tail.is_empty());
    }
}
