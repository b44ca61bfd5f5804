//! `PartitionLog`: one partition's segments, its write pipeline with group
//! commit, reads through the batch cache, and retention.
//!
//! This file is the front: opening, closing and deleting a log, its
//! accessors and retention. The jobs behind it each have a module:
//! - [`appender`]: the write pipeline (staging, writes, group commit, rolls);
//! - [`pipeline`]: the queue of staged batches and writes in flight;
//! - [`active`]: the write position in the active segment;
//! - [`reader`]: reads from the cache and the files, waits, timestamp queries;
//! - [`flusher`]: `flush.messages` and the `flush.ms` timer;
//! - [`producers`]: producer state and open transactions (rebuilt, snapshotted,
//!   expired), the last stable offset and the transaction index.
//! - [`cleaning`]: sealed segments for the cleaner and the swap of cleaned ones.
//! - [`order`]: the first-come, first-served queue of appends.

mod active;
mod appender;
mod cleaning;
mod flusher;
mod order;
mod pipeline;
mod producers;
mod reader;
mod replicated;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::cache::{BatchCache, LogId};
use super::config::{LogConfig, StorageOptions};
use super::error::Error;
use super::file::{self, IoMode};
use super::group_commit::GroupCommit;
use super::leader_epochs::{EpochEnd, LeaderEpochs};
use super::meta::PartitionMeta;
use super::notify::Notify;
use super::producer_state::ProducerStateTable;
use super::recovery;
use super::retention;
use super::segment::Segment;
use super::segment_set::SegmentSet;
use super::txn_index::TxnIndex;
use super::types::Offset;

use active::ActiveWrite;
use flusher::FlushState;
pub use order::{AppendLock, AppendTurn};
use pipeline::Pipeline;

pub use active::{reserved_ahead_bytes, RESERVED_AHEAD_BYTES_PER_SHARD_MAX};
pub use appender::AppendInfo;
pub use cleaning::SealedSegment;
pub use pipeline::{WRITES_IN_FLIGHT_MAX, WRITE_BYTES_MAX};
pub use reader::{Isolation, ReadResult};
pub use replicated::{BatchSpan, Proposal};

/// The wall clock a log reads, in milliseconds since the Unix epoch
/// (injected so tests can set the time).
pub type Clock = fn() -> i64;

/// I/O counters of one log (for tests, benchmarks and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub writes: u64,
    pub written_bytes: u64,
    pub fdatasyncs: u64,
    /// Records and stored bytes of the batches appended (Kafka's
    /// MessagesInPerSec and BytesInPerSec, counted per append).
    pub appended_records: u64,
    pub appended_bytes: u64,
}

struct State {
    config: LogConfig,
    segments: SegmentSet,
    log_start_offset: Offset,
    /// Offset after the last written batch: what readers may see, unless
    /// `commit_limit` says less.
    high_watermark: Offset,
    /// A replicated partition: the end of the last committed entry; clients
    /// see nothing past it (`None` on a partition without replicas).
    commit_limit: Option<Offset>,
    /// Offset after the last staged batch: the next offset to assign.
    next_offset: Offset,
    leader_epoch: i32,
    /// Each epoch of the log and the offset it began at.
    leader_epochs: LeaderEpochs,
    /// Offset after the last batch covered by an fdatasync.
    recovery_point: Offset,
    pipeline: Pipeline,
    flush: FlushState,
    stopped: Option<&'static str>,
    closed: bool,
    stats: LogStats,
    /// Idempotent producers' epochs and last batches, and open
    /// transactions, as of `next_offset`.
    producers: ProducerStateTable,
    /// Aborted transactions by segment (the `.txnindex` files).
    txn_index: TxnIndex,
}

/// One partition's log. `!Send`: it lives on the shard that owns the partition.
pub struct PartitionLog {
    dir: PathBuf,
    io_mode: IoMode,
    cache: Rc<BatchCache>,
    log_id: LogId,
    clock: Clock,
    producer_id_expiration_ms: i64,
    state: RefCell<State>,
    /// Serialises offset assignment and segment rolls, in arrival order.
    append_lock: AppendLock,
    /// Moves when bytes are written (the high watermark), or on stop/close.
    written: Notify,
    /// The synced frontier; moves when an fdatasync completes, or on stop/close.
    commit: GroupCommit,
    /// `partition.meta` on disk says the log was closed cleanly. It stays so
    /// while the log is only read; the first change clears it on disk first,
    /// so only logs that were written need a scan after a crash.
    meta_clean: Cell<bool>,
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
        Self::open_with_clock(dir, config, cache, options, crate::clock::now_ms).await
    }

    /// [`open`](Self::open) with the append queue given: appends that
    /// arrived while the log was opening already wait in it.
    pub async fn open_in_order(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        options: StorageOptions,
        append_lock: AppendLock,
    ) -> Result<Rc<PartitionLog>, Error> {
        Self::open_inner(
            dir,
            config,
            cache,
            options,
            crate::clock::now_ms,
            append_lock,
        )
        .await
    }

    /// [`open`](Self::open) with the wall clock given.
    pub async fn open_with_clock(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        options: StorageOptions,
        clock: Clock,
    ) -> Result<Rc<PartitionLog>, Error> {
        Self::open_inner(dir, config, cache, options, clock, AppendLock::default()).await
    }

    async fn open_inner(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        options: StorageOptions,
        clock: Clock,
        append_lock: AppendLock,
    ) -> Result<Rc<PartitionLog>, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let io_mode = choose_io_mode(&dir, &options).await?;
        let loaded = load_state(
            &dir,
            config,
            io_mode,
            clock(),
            options.producer_id_expiration_ms,
            0,
        )
        .await?;
        let log = Rc::new(PartitionLog {
            dir,
            io_mode,
            log_id: cache.register_log(),
            cache,
            clock,
            producer_id_expiration_ms: options.producer_id_expiration_ms,
            state: RefCell::new(loaded.state),
            append_lock,
            written: Notify::default(),
            commit: GroupCommit::default(),
            meta_clean: Cell::new(loaded.clean),
        });
        for base in loaded.rewrite_txn_indexes {
            log.write_txn_index(base).await?;
        }
        log.start_flusher_if_needed();
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This log's append queue, for appends that arrive while it closes.
    pub fn append_queue(&self) -> AppendLock {
        self.append_lock.clone()
    }

    /// The next append turn, when nobody holds it or waits for it.
    pub fn try_append_turn(&self) -> Option<AppendTurn> {
        self.append_lock.try_turn()
    }

    /// Whether `turn` is a turn of this log's append queue.
    pub fn is_turn_of(&self, turn: &AppendTurn) -> bool {
        self.append_lock.gave(turn)
    }

    /// Whether segment files use O_DIRECT (false only in the development mode).
    pub fn is_direct_io(&self) -> bool {
        self.io_mode == IoMode::Direct
    }

    /// What clients may read up to: the written end, or for a replicated
    /// partition the end of its last committed entry.
    pub fn high_watermark(&self) -> Offset {
        self.state.borrow().visible_end()
    }

    pub fn log_start_offset(&self) -> Offset {
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
    pub fn leader_epoch(&self) -> i32 {
        self.state.borrow().leader_epoch
    }

    /// Raises the epoch stamped on the batches appended from now on (a
    /// leader elected at a newer epoch); an older one changes nothing. It is
    /// kept in `partition.meta` at the next checkpoint.
    pub fn raise_leader_epoch(&self, epoch: i32) {
        let mut state = self.state.borrow_mut();
        if epoch > state.leader_epoch {
            state.leader_epoch = epoch;
            let start = state.next_offset;
            state.leader_epochs.on_batch(epoch, start);
        }
    }

    /// OffsetForLeaderEpoch (KIP-101/KIP-320): where `epoch` ended in this
    /// log, the latest epoch ending at the high watermark.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> EpochEnd {
        let state = self.state.borrow();
        state
            .leader_epochs
            .end_offset_for(epoch, state.high_watermark)
    }

    /// The epoch `offset` was written in, if known (ListOffsets answers it).
    pub fn epoch_for_offset(&self, offset: Offset) -> Option<i32> {
        self.state.borrow().leader_epochs.epoch_for_offset(offset)
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.state.borrow().segments.base_offsets()
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }

    /// (base offset, bytes) of each segment, oldest first.
    pub fn segment_sizes(&self) -> Vec<(Offset, u64)> {
        self.state
            .borrow()
            .segments
            .iter()
            .map(|s| (s.base_offset(), s.written_bytes()))
            .collect()
    }

    /// Total bytes of the segment files.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.total_bytes()
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

    /// Stops the partition after a failed write or fdatasync: the disk state
    /// is unknown, so nothing more is appended or acknowledged.
    fn stop(&self, what: &'static str, error: &Error) {
        tracing::error!(dir = %self.dir.display(), %error, "{what} failed; partition stopped");
        self.state.borrow_mut().stopped = Some(what);
        self.written.notify_all();
        self.commit.wake_all();
    }

    /// Advances the log start offset to `before_offset` (Kafka DeleteRecords),
    /// deleting segments that end below it (a replicated log's Raft group
    /// deletes them later). Returns the new log start offset.
    pub async fn delete_records(&self, before_offset: Offset) -> Result<Offset, Error> {
        let removed = {
            let mut state = self.state.borrow_mut();
            Self::check_open(&state)?;
            if before_offset < Offset(0) || before_offset > state.visible_end() {
                return Err(Error::OffsetOutOfRange {
                    offset: before_offset,
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.visible_end(),
                });
            }
            if before_offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
            state.log_start_offset = before_offset;
            // A replicated log's Raft group removes the segments (it keeps
            // where its entries start first; see `retained_start`).
            let count = match state.commit_limit {
                Some(_) => 0,
                None => state.segments.count_wholly_below(before_offset),
            };
            state.remove_oldest_segments(count)
        };
        self.finish_removal(removed).await?;
        Ok(self.log_start_offset())
    }

    /// Deletes the oldest whole segments beyond retention.ms and retention.bytes
    /// (never the active one) and moves the log start offset past them.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<(), Error> {
        self.expire_producers(now_ms);
        let removed = {
            let mut state = self.state.borrow_mut();
            Self::check_open(&state)?;
            let config = &state.config;
            // A replicated log's Raft group applies retention itself, below
            // its commit index (see `retained_start`).
            if !config.cleanup_policy.delete || state.commit_limit.is_some() {
                // cleanup.policy=compact alone: the cleaner, not retention, removes data.
                return Ok(());
            }
            let count = retention::expired_segments(
                &state.segments,
                config.retention_ms,
                config.retention_bytes,
                now_ms,
            );
            state.remove_oldest_segments(count)
        };
        self.finish_retention(removed).await
    }

    /// Counts and removes the segments retention took out of the set.
    async fn finish_retention(&self, removed: Vec<Segment>) -> Result<(), Error> {
        if removed.is_empty() {
            return Ok(());
        }
        let bytes = removed.iter().map(Segment::written_bytes).sum();
        crate::metrics::local::retention_deleted(removed.len(), bytes);
        self.finish_removal(removed).await
    }

    async fn finish_removal(&self, removed: Vec<Segment>) -> Result<(), Error> {
        for segment in &removed {
            tracing::info!(dir = %self.dir.display(), base_offset = segment.base_offset().get(), "deleting segment");
            Segment::remove_files(&self.dir, segment.base_offset())?;
        }
        drop(removed);
        let first_base = self.state.borrow().segments.first_base_offset();
        if let Some(first_base) = first_base {
            self.remove_snapshots_below(first_base)?;
        }
        self.store_meta(false).await
    }

    /// Clears the clean mark on disk before the first change to a log that
    /// was opened clean (a write, a roll, a cleaned segment's swap).
    pub(super) async fn mark_changing(&self) -> Result<(), Error> {
        if self.meta_clean.get() {
            self.store_meta(false).await?;
        }
        Ok(())
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
        meta.store(&self.dir).await?;
        self.meta_clean.set(clean_shutdown);
        Ok(())
    }

    /// Writes and syncs everything, persists the active segment's indexes and a
    /// clean partition.meta. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), Error> {
        self.close_in_turn(None).await
    }

    /// [`close`](Self::close) in a turn of this log's append queue already
    /// taken (see [`try_append_turn`](Self::try_append_turn)).
    pub async fn close_in_turn(&self, turn: Option<AppendTurn>) -> Result<(), Error> {
        let permit = self.append_lock.turn_unless_held(turn).await;
        {
            let state = self.state.borrow();
            if state.closed {
                return Ok(());
            }
            if let Some(what) = state.stopped {
                return Err(Error::Stopped(what));
            }
        }
        if self.meta_clean.get() {
            // Opened clean and never changed: the files already say all of it.
            self.finish_close();
            drop(permit);
            return Ok(());
        }
        self.flush().await?;
        self.seal_active().await?;
        let end = self.state.borrow().next_offset;
        self.write_producer_snapshot(end).await?;
        {
            let mut state = self.state.borrow_mut();
            state.recovery_point = state.high_watermark;
            state.closed = true;
        }
        self.store_meta(true).await?;
        self.finish_close();
        drop(permit);
        Ok(())
    }

    fn finish_close(&self) {
        self.state.borrow_mut().closed = true;
        self.cache.remove_log_from(self.log_id, Offset::MIN);
        self.written.notify_all();
        self.commit.wake_all();
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
        self.cache.remove_log_from(self.log_id, Offset::MIN);
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("removing", &self.dir, e))
    }
}

impl State {
    /// The end clients see (see [`PartitionLog::high_watermark`]).
    fn visible_end(&self) -> Offset {
        match self.commit_limit {
            Some(limit) => limit.min(self.high_watermark),
            None => self.high_watermark,
        }
    }

    /// Removes the `count` oldest sealed segments and moves the log start
    /// offset past them.
    fn remove_oldest_segments(&mut self, count: usize) -> Vec<Segment> {
        let removed = self.segments.remove_oldest(count);
        if let Some(first_base) = self.segments.first_base_offset() {
            self.log_start_offset = self.log_start_offset.max(first_base);
            self.txn_index.remove_below(first_base);
        }
        self.leader_epochs
            .truncate_from_start(self.log_start_offset);
        removed
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.cache.remove_log_from(self.log_id, Offset::MIN);
    }
}

/// A log's state as its directory says, and what opening it left to do.
struct Loaded {
    state: State,
    clean: bool,
    /// Sealed segments whose `.txnindex` must be written again.
    rewrite_txn_indexes: Vec<Offset>,
}

/// Recovers `dir` and rebuilds its producer state; the pipeline's byte
/// sequence numbers start at `seq` (where a log that reloads left off).
async fn load_state(
    dir: &Path,
    config: LogConfig,
    io_mode: IoMode,
    now: i64,
    producer_id_expiration_ms: i64,
    seq: u64,
) -> Result<Loaded, Error> {
    let recovered = recovery::recover(dir, &config, io_mode, now).await?;
    let segments = SegmentSet::new(dir, recovered.segments);
    let mut leader_epochs = LeaderEpochs::rebuild(&segments, recovered.leader_epoch).await?;
    // After a crash `partition.meta` may predate the newest epoch on
    // disk; epochs never go back.
    let leader_epoch = leader_epochs.latest().map_or(recovered.leader_epoch, |e| {
        e.epoch.max(recovered.leader_epoch)
    });
    leader_epochs.truncate_from_start(recovered.log_start_offset);
    // The current epoch begins at the log end if no batch has it yet
    // (Kafka assigns it when the leader takes over).
    leader_epochs.on_batch(leader_epoch, recovered.next_offset);
    let rebuilt = producers::rebuild(dir, &segments, recovered.next_offset).await?;
    let mut producers = rebuilt.producers;
    producers.expire(now, producer_id_expiration_ms);
    let active = ActiveWrite::resume(segments.active()?).await?;
    let state = State {
        config,
        segments,
        log_start_offset: recovered.log_start_offset,
        high_watermark: recovered.next_offset,
        commit_limit: None,
        next_offset: recovered.next_offset,
        leader_epoch,
        leader_epochs,
        recovery_point: recovered.recovery_point,
        pipeline: Pipeline::new(active, recovered.next_offset).starting_at(seq),
        flush: FlushState::new(now),
        stopped: None,
        closed: false,
        stats: LogStats::default(),
        producers,
        txn_index: rebuilt.txn_index,
    };
    Ok(Loaded {
        state,
        clean: recovered.clean,
        rewrite_txn_indexes: rebuilt.rewrite_txn_indexes,
    })
}

thread_local! {
    /// Filesystems (by device) this thread has seen do O_DIRECT: a shard
    /// opening thousands of partitions on one disk probes it once.
    static DIRECT_IO_DEVICES: RefCell<std::collections::HashSet<u64>> = RefCell::default();
}

/// O_DIRECT, or buffered I/O when the directory cannot do it and the
/// development mode allows it.
async fn choose_io_mode(dir: &Path, options: &StorageOptions) -> Result<IoMode, Error> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir)
        .map_err(|e| Error::io("inspecting", dir, e))?
        .dev();
    if DIRECT_IO_DEVICES.with(|known| known.borrow().contains(&device)) {
        return Ok(IoMode::Direct);
    }
    match file::probe_direct_io(dir).await {
        Ok(()) => {
            DIRECT_IO_DEVICES.with(|known| known.borrow_mut().insert(device));
            Ok(IoMode::Direct)
        }
        Err(file::ProbeError::Storage(error)) => Err(error),
        Err(file::ProbeError::Unsupported(reason)) if options.allow_buffered_io => {
            tracing::warn!(dir = %dir.display(), %reason, "O_DIRECT unavailable; using buffered I/O (development mode)");
            Ok(IoMode::Buffered)
        }
        Err(file::ProbeError::Unsupported(reason)) => Err(Error::DirectIoUnavailable {
            path: dir.to_path_buf(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::Durability;
    use super::*;
    use bytes::Bytes;

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
                    glommio::spawn_local(async move { log.wait_for_offset(Offset(10)).await })
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
}
