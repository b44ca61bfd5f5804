//! The coordinator's durable log: a key/value log with group commit and
//! compaction, one per shard.
//!
//! Every record is a frame `[u32 payload_len][u32 crc32c(payload)][payload]`
//! (little endian), the payload `[u8 op][u32 key_len][key]` plus, for a put,
//! `[u32 value_len][value]`. The log keeps the live map (latest value per
//! key) in memory; compaction writes that map to a fresh file, fdatasyncs it
//! and renames it over the log, so a reopen reads at most about
//! `compact_bytes` plus the live state.
//!
//! Writes are acknowledged only once durable: `enqueue` orders a record,
//! `sync(seq)` returns once a write + fdatasync covering it completed. The
//! writing is done by one flusher task, not by the waiters, so a waiter whose
//! request is dropped cannot abandon records half-written; each flush takes
//! every record enqueued meanwhile (group commit, with the partition log's
//! [`GroupCommit`]). A failed write or
//! fdatasync fails the log for good: the disk state is unknown, so nothing
//! more is acknowledged.
//!
//! On open a torn or corrupt tail (short frame, bad length, bad CRC) is
//! truncated away: records after it were never acknowledged.
//!
//! In a cluster the same log keeps no file: [`GroupLog::in_partitions`]
//! sends each flush to the offsets topic instead (`partition`), one record
//! batch per offsets partition, acknowledged once committed there; the live
//! map holds the partitions this broker leads, loaded by replaying them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, Directory, OpenOptions};
use glommio::sync::Semaphore;

use crate::storage::group_commit::GroupCommit;

use super::error::GroupLogError;

mod framing;
pub mod partition;

#[cfg(test)]
pub(crate) use framing::scan_for_tests;
pub use framing::RECORD_BYTES_MAX;
use framing::{frame, framed_len, scan, Op, Scan, FRAME_HEADER_BYTES};
pub use partition::OffsetsPartitions;
/// Records enqueued but not yet flushed; beyond it `enqueue` refuses (back-pressure).
pub const PENDING_BYTES_MAX: usize = 64 << 20;
/// A log file larger than this is refused at open rather than read into memory.
pub const LOAD_BYTES_MAX: u64 = 1 << 30;
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The group coordinator's log file; other logs of this kind name their own.
pub const GROUP_LOG_FILE: &str = "groups.log";
/// What a compaction writes before renaming it over the log: `<log>.compact`.
const COMPACT_SUFFIX: &str = ".compact";

fn compact_path(dir: &Path, log_file: &str) -> PathBuf {
    dir.join(format!("{log_file}{COMPACT_SUFFIX}"))
}

/// When the log is rewritten from its live map.
#[derive(Debug, Clone, Copy)]
pub struct GroupLogConfig {
    /// Compact once the file reaches this many bytes...
    pub compact_bytes: u64,
    /// ... or this many records, provided at least half of it is dead.
    pub compact_records: u64,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupLogStats {
    pub file_bytes: u64,
    pub file_records: u64,
    pub live_records: u64,
    pub flushes: u64,
    pub compactions: u64,
    /// Bytes cut from a torn tail when the log was opened.
    pub truncated_bytes: u64,
}

struct Inner {
    /// `None` once closed.
    file: Option<Rc<BufferedFile>>,
    pending: Vec<u8>,
    pending_ops: Vec<Op>,
    /// Sequence number the next enqueued record gets; the first is 1.
    next_seq: u64,
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Framed size of the live records: what a compacted file holds.
    live_bytes: u64,
    failed: Option<String>,
    /// Sequence ranges (first, last) whose flush was not committed (the
    /// offsets partition's leadership moved): their waiters are refused.
    lost: std::collections::VecDeque<(u64, u64)>,
    closed: bool,
    flusher_running: bool,
    stats: GroupLogStats,
}

pub struct GroupLog {
    dir: PathBuf,
    path: PathBuf,
    compact_path: PathBuf,
    config: GroupLogConfig,
    /// One flush or compaction at a time.
    flush_lock: Semaphore,
    /// The durable frontier of the record sequence numbers.
    commit: GroupCommit,
    inner: RefCell<Inner>,
    /// In a cluster: records go to the offsets topic, not to the file.
    partitions: Option<Rc<dyn OffsetsPartitions>>,
}

/// Lost ranges remembered; a waiter older than these is long answered.
const LOST_RANGES_MAX: usize = 64;

async fn write_all(
    file: &BufferedFile,
    bytes: Vec<u8>,
    mut pos: u64,
    path: &Path,
) -> Result<(), GroupLogError> {
    let mut remaining = bytes;
    while !remaining.is_empty() {
        // `write_at` takes the buffer; a short write needs the rest, so pass a
        // copy (one memcpy per flush, next to an fdatasync).
        let written = file
            .write_at(remaining.clone(), pos)
            .await
            .map_err(GroupLogError::io("write", path))?;
        if written == 0 {
            return Err(GroupLogError::Io {
                operation: "write",
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::WriteZero, "wrote 0 bytes"),
            });
        }
        pos += written as u64;
        remaining.drain(..written.min(remaining.len()));
    }
    Ok(())
}

/// Closes a log file no flush uses any more (glommio prefers an explicit close
/// to a drop). A flush still holding it closes it by dropping.
async fn close_file(file: Option<Rc<BufferedFile>>) {
    if let Some(file) = file.and_then(|f| Rc::try_unwrap(f).ok()) {
        if let Err(error) = file.close().await {
            tracing::warn!(%error, "closing a group log file");
        }
    }
}

async fn open_read_write(path: &Path) -> Result<BufferedFile, GroupLogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(GroupLogError::io("open", path))
}

async fn sync_dir(dir: &Path) -> Result<(), GroupLogError> {
    let handle = Directory::open(dir)
        .await
        .map_err(GroupLogError::io("open directory", dir))?;
    handle
        .sync()
        .await
        .map_err(GroupLogError::io("sync directory", dir))?;
    handle
        .close()
        .await
        .map_err(GroupLogError::io("close directory", dir))
}

/// A compaction that did not reach its rename leaves its file behind; the
/// log itself is still whole.
async fn remove_unfinished_compaction(dir: &Path, log_file: &str) -> Result<(), GroupLogError> {
    let compact_path = compact_path(dir, log_file);
    if compact_path.exists() {
        glommio::io::remove(&compact_path)
            .await
            .map_err(GroupLogError::io("remove", &compact_path))?;
    }
    Ok(())
}

/// Reads the whole log file, refusing one above `LOAD_BYTES_MAX`. Returns
/// the bytes read and the file's size.
async fn read_whole(file: &BufferedFile, path: &Path) -> Result<(Vec<u8>, u64), GroupLogError> {
    let size = file
        .file_size()
        .await
        .map_err(GroupLogError::io("stat", path))?;
    if size > LOAD_BYTES_MAX {
        return Err(GroupLogError::TooLarge {
            path: path.to_path_buf(),
            bytes: size,
            limit: LOAD_BYTES_MAX,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        let want = READ_CHUNK_BYTES.min((size - bytes.len() as u64) as usize);
        let chunk = file
            .read_at(bytes.len() as u64, want)
            .await
            .map_err(GroupLogError::io("read", path))?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, size))
}

impl GroupLog {
    /// Opens (or creates) the group log in `dir`, truncates a torn tail and loads the live map.
    pub async fn open(dir: &Path, config: GroupLogConfig) -> Result<GroupLog, GroupLogError> {
        Self::open_file(dir, GROUP_LOG_FILE, config).await
    }

    /// Opens (or creates) the log file `log_file` in `dir`: the same log
    /// for another coordinator's records (the transaction log).
    pub async fn open_file(
        dir: &Path,
        log_file: &str,
        config: GroupLogConfig,
    ) -> Result<GroupLog, GroupLogError> {
        // Blocking, but once per shard at start-up, before any request is served.
        std::fs::create_dir_all(dir).map_err(|source| GroupLogError::Io {
            operation: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        remove_unfinished_compaction(dir, log_file).await?;
        let path = dir.join(log_file);
        let file = open_read_write(&path).await?;
        let (bytes, size) = read_whole(&file, &path).await?;
        let scanned = scan(&bytes)?;
        let truncated_bytes = size - scanned.valid_bytes as u64;
        if truncated_bytes > 0 {
            tracing::warn!(path = %path.display(), valid_bytes = scanned.valid_bytes, truncated_bytes, "truncating torn tail of group log");
            file.truncate(scanned.valid_bytes as u64)
                .await
                .map_err(GroupLogError::io("truncate", &path))?;
            file.fdatasync()
                .await
                .map_err(GroupLogError::io("fdatasync", &path))?;
        }
        let log = GroupLog {
            dir: dir.to_path_buf(),
            path,
            compact_path: compact_path(dir, log_file),
            config,
            flush_lock: Semaphore::new(1),
            commit: GroupCommit::default(),
            inner: RefCell::new(Inner::loaded(Some(file), scanned, truncated_bytes)),
            partitions: None,
        };
        if log.should_compact() {
            let _permit = log.lock_flushes().await?;
            log.compact_locked().await?;
        }
        Ok(log)
    }

    /// A log whose records go to the offsets topic through `partitions`; it
    /// starts empty and learns a partition's records from [`load`](Self::load).
    pub fn in_partitions(partitions: Rc<dyn OffsetsPartitions>) -> GroupLog {
        let config = GroupLogConfig {
            compact_bytes: u64::MAX,
            compact_records: u64::MAX,
        };
        GroupLog {
            dir: PathBuf::new(),
            path: PathBuf::from(crate::group::OFFSETS_TOPIC),
            compact_path: PathBuf::new(),
            config,
            flush_lock: Semaphore::new(1),
            commit: GroupCommit::default(),
            inner: RefCell::new(Inner::loaded(None, Scan::default(), 0)),
            partitions: Some(partitions),
        }
    }

    /// The offsets topic this log writes to, if it does.
    pub fn offsets_partitions(&self) -> Option<&Rc<dyn OffsetsPartitions>> {
        self.partitions.as_ref()
    }

    /// Applies replayed records (an offsets partition this broker now leads)
    /// to the live map.
    pub fn load(&self, ops: Vec<Op>) {
        let mut inner = self.inner.borrow_mut();
        for op in ops {
            inner.apply(op);
        }
    }

    /// Drops the live keys `unloaded` selects (a partition led elsewhere now).
    pub fn unload(&self, unloaded: impl Fn(&[u8]) -> bool) {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<Vec<u8>> = inner.live.keys().filter(|k| unloaded(k)).cloned().collect();
        for key in keys {
            inner.apply((key, None));
        }
    }

    /// Waits for the one flush or compaction turn.
    async fn lock_flushes(&self) -> Result<glommio::sync::Permit<'_>, GroupLogError> {
        self.flush_lock
            .acquire_permit(1)
            .await
            .map_err(|_| GroupLogError::Closed)
    }

    /// The live map: the latest value of every key.
    pub fn with_live<R>(&self, f: impl FnOnce(&BTreeMap<Vec<u8>, Vec<u8>>) -> R) -> R {
        f(&self.inner.borrow().live)
    }

    pub fn stats(&self) -> GroupLogStats {
        let inner = self.inner.borrow();
        GroupLogStats {
            live_records: inner.live.len() as u64,
            ..inner.stats
        }
    }

    /// Orders a put (`Some(value)`) or delete (`None`) after every record
    /// enqueued before it. Returns the sequence number to pass to [`sync`](Self::sync).
    pub fn enqueue(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<u64, GroupLogError> {
        self.enqueue_all(vec![(key, value)]).map(|seqs| seqs[0])
    }

    /// Orders records all or none (a refusal leaves nothing half-enqueued).
    /// Returns their sequence numbers, in order.
    pub fn enqueue_all(
        &self,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<Vec<u64>, GroupLogError> {
        let mut inner = self.inner.borrow_mut();
        if let Some(reason) = &inner.failed {
            return Err(GroupLogError::Failed(reason.clone()));
        }
        if inner.closed {
            return Err(GroupLogError::Closed);
        }
        let records: Vec<Vec<u8>> = ops
            .iter()
            .map(|(key, value)| frame(key, value.as_deref()))
            .collect();
        if let Some(record) = records
            .iter()
            .find(|r| r.len() - FRAME_HEADER_BYTES > RECORD_BYTES_MAX)
        {
            return Err(GroupLogError::Corrupt(format!(
                "record of {} bytes is too large",
                record.len()
            )));
        }
        let bytes: usize = records.iter().map(Vec::len).sum();
        if inner.pending.len() + bytes > PENDING_BYTES_MAX {
            return Err(GroupLogError::Backlogged);
        }
        let mut seqs = Vec::with_capacity(ops.len());
        for (record, op) in records.iter().zip(ops) {
            inner.pending.extend_from_slice(record);
            inner.pending_ops.push(op);
            seqs.push(inner.next_seq);
            inner.next_seq += 1;
        }
        Ok(seqs)
    }

    /// Returns once every record up to `seq` is durable.
    pub async fn sync(self: &Rc<Self>, seq: u64) -> Result<(), GroupLogError> {
        if !self.commit.covers(seq) {
            if let Some(error) = self.refusal() {
                return Err(error);
            }
            self.flush_soon();
            self.commit.wait_durable(seq, || self.refusal()).await?;
        }
        let lost = self
            .inner
            .borrow()
            .lost
            .iter()
            .any(|&(first, last)| (first..=last).contains(&seq));
        if lost {
            return Err(GroupLogError::NotCommitted);
        }
        Ok(())
    }

    /// Why nothing more becomes durable, if that is so.
    fn refusal(&self) -> Option<GroupLogError> {
        let inner = self.inner.borrow();
        if let Some(reason) = &inner.failed {
            return Some(GroupLogError::Failed(reason.clone()));
        }
        inner.closed.then_some(GroupLogError::Closed)
    }

    /// Waits until no flush or compaction is running (tests simulate a crash
    /// by dropping the log and reopening; a live flusher would race the reopen).
    #[cfg(test)]
    pub async fn wait_idle(&self) {
        while self.inner.borrow().flusher_running {
            if let Ok(permit) = self.flush_lock.acquire_permit(1).await {
                drop(permit);
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Makes sure a flusher task will write what is pending, without waiting for it.
    pub fn flush_soon(self: &Rc<Self>) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.flusher_running || inner.pending_ops.is_empty() {
                return;
            }
            inner.flusher_running = true;
        }
        let log = Rc::clone(self);
        glommio::spawn_local(async move { log.run_flusher().await }).detach();
    }

    async fn run_flusher(&self) {
        loop {
            let Ok(permit) = self.flush_lock.acquire_permit(1).await else {
                break;
            };
            // Errors are recorded in `failed` and reported to the waiters.
            let _ = self.flush_locked().await;
            drop(permit);
            let inner = self.inner.borrow();
            if inner.pending_ops.is_empty() || inner.failed.is_some() {
                break;
            }
        }
        self.inner.borrow_mut().flusher_running = false;
    }

    fn fail(&self, error: &GroupLogError) {
        tracing::error!(path = %self.path.display(), %error, "group log failed; refusing further writes");
        self.inner.borrow_mut().failed = Some(error.to_string());
        self.commit.wake_all();
    }

    /// Writes and fdatasyncs everything pending. Caller holds `flush_lock`.
    async fn flush_locked(&self) -> Result<(), GroupLogError> {
        if let Some(partitions) = self.partitions.clone() {
            return self.flush_to_partitions(&*partitions).await;
        }
        let (bytes, ops, upto, file, pos) = {
            let mut inner = self.inner.borrow_mut();
            if let Some(reason) = &inner.failed {
                return Err(GroupLogError::Failed(reason.clone()));
            }
            if inner.pending_ops.is_empty() {
                return Ok(());
            }
            let Some(file) = inner.file.clone() else {
                return Err(GroupLogError::Closed);
            };
            let bytes = std::mem::take(&mut inner.pending);
            let ops = std::mem::take(&mut inner.pending_ops);
            (bytes, ops, inner.next_seq - 1, file, inner.stats.file_bytes)
        };
        let len = bytes.len() as u64;
        let turn = self
            .commit
            .begin_sync(upto)
            .expect("flush_lock admits one flush, and so one sync, at a time");
        let result = async {
            write_all(&file, bytes, pos, &self.path).await?;
            file.fdatasync()
                .await
                .map_err(GroupLogError::io("fdatasync", &self.path))
        }
        .await;
        // Released before a compaction, which closes the file it replaces.
        drop(file);
        if let Err(error) = result {
            self.fail(&error);
            self.commit.finish_sync(turn, false);
            return Err(error);
        }
        {
            let mut inner = self.inner.borrow_mut();
            inner.stats.file_bytes += len;
            inner.stats.file_records += ops.len() as u64;
            inner.stats.flushes += 1;
            for op in ops {
                inner.apply(op);
            }
        }
        self.commit.finish_sync(turn, true);
        if self.should_compact() {
            self.compact_locked().await?;
        }
        Ok(())
    }

    /// Appends everything pending to the offsets partitions, one batch per
    /// partition, and applies what was committed. Caller holds `flush_lock`.
    /// A partition whose append fails (its leadership moved) loses that
    /// flush's records there; their waiters are refused and the log goes on.
    async fn flush_to_partitions(
        &self,
        partitions: &dyn OffsetsPartitions,
    ) -> Result<(), GroupLogError> {
        let (ops, first, upto) = {
            let mut inner = self.inner.borrow_mut();
            if inner.closed {
                return Err(GroupLogError::Closed);
            }
            if inner.pending_ops.is_empty() {
                return Ok(());
            }
            inner.pending.clear();
            let ops = std::mem::take(&mut inner.pending_ops);
            let upto = inner.next_seq - 1;
            (ops.clone(), upto + 1 - ops.len() as u64, upto)
        };
        let count = partitions.partitions();
        let mut by_partition: BTreeMap<u32, Vec<Op>> = BTreeMap::new();
        for op in ops {
            // Keys are the coordinator's own encoding: one that does not
            // decode is a bug, and its record goes to partition 0.
            let partition = partition::partition_of_key(&op.0, count).unwrap_or(0);
            by_partition.entry(partition).or_default().push(op);
        }
        let turn = self
            .commit
            .begin_sync(upto)
            .expect("flush_lock admits one flush, and so one sync, at a time");
        let now = crate::clock::now_ms();
        let appends = by_partition.into_iter().map(|(partition, ops)| async move {
            let appended = match partition::encode_batch(&ops, now) {
                Ok(batch) => partitions.append(partition, batch).await,
                Err(error) => Err(error.to_string()),
            };
            (partition, ops, appended)
        });
        let results = futures::future::join_all(appends).await;
        let mut all_committed = true;
        {
            let mut inner = self.inner.borrow_mut();
            for (partition, ops, appended) in results {
                match appended {
                    Ok(()) => {
                        inner.stats.file_records += ops.len() as u64;
                        for op in ops {
                            inner.apply(op);
                        }
                    }
                    Err(error) => {
                        tracing::info!(partition, %error, "coordinator records not committed to the offsets topic");
                        all_committed = false;
                    }
                }
            }
            inner.stats.flushes += 1;
            if !all_committed {
                // Which sequence numbers went where is not kept: the whole
                // flush is refused, records committed elsewhere stay applied.
                inner.lost.push_back((first, upto));
                if inner.lost.len() > LOST_RANGES_MAX {
                    inner.lost.pop_front();
                }
            }
        }
        self.commit.finish_sync(turn, true);
        Ok(())
    }

    fn should_compact(&self) -> bool {
        let inner = self.inner.borrow();
        let over_limit = inner.stats.file_bytes >= self.config.compact_bytes
            || inner.stats.file_records >= self.config.compact_records;
        // Only when at least half is dead, so a large live state does not compact on every flush.
        over_limit && inner.stats.file_bytes >= 2 * inner.live_bytes.max(1)
    }

    /// Rewrites the log from the live map. Caller holds `flush_lock`.
    async fn compact_locked(&self) -> Result<(), GroupLogError> {
        let (bytes, records) = {
            let inner = self.inner.borrow();
            let mut bytes = Vec::with_capacity(inner.live_bytes as usize);
            for (key, value) in &inner.live {
                bytes.extend_from_slice(&frame(key, Some(value)));
            }
            (bytes, inner.live.len() as u64)
        };
        let len = bytes.len() as u64;
        let compact_path = self.compact_path.clone();
        let written = async {
            let file = BufferedFile::create(&compact_path)
                .await
                .map_err(GroupLogError::io("create", &compact_path))?;
            write_all(&file, bytes, 0, &compact_path).await?;
            file.fdatasync()
                .await
                .map_err(GroupLogError::io("fdatasync", &compact_path))?;
            file.close()
                .await
                .map_err(GroupLogError::io("close", &compact_path))
        }
        .await;
        if let Err(error) = written {
            // The log itself is untouched: keep appending to it and try again later.
            tracing::warn!(%error, "group log compaction failed; continuing with the uncompacted log");
            let _ = glommio::io::remove(&compact_path).await;
            return Ok(());
        }
        let swapped = async {
            glommio::io::rename(&compact_path, &self.path)
                .await
                .map_err(GroupLogError::io("rename", &compact_path))?;
            sync_dir(&self.dir).await?;
            open_read_write(&self.path).await
        }
        .await;
        match swapped {
            Ok(file) => {
                let replaced = {
                    let mut inner = self.inner.borrow_mut();
                    inner.stats.file_bytes = len;
                    inner.stats.file_records = records;
                    inner.stats.compactions += 1;
                    inner.file.replace(Rc::new(file))
                };
                close_file(replaced).await;
                Ok(())
            }
            Err(error) => {
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Flushes what is pending, compacts if anything in the file is dead, and
    /// refuses further writes.
    pub async fn close(&self) -> Result<(), GroupLogError> {
        let _permit = self.lock_flushes().await?;
        if self.partitions.is_some() {
            let flushed = self.flush_locked().await;
            self.inner.borrow_mut().closed = true;
            self.commit.wake_all();
            return flushed;
        }
        self.flush_locked().await?;
        let has_dead = {
            let inner = self.inner.borrow();
            inner.stats.file_records > inner.live.len() as u64
        };
        if has_dead {
            self.compact_locked().await?;
        }
        let file = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            inner.file.take()
        };
        close_file(file).await;
        Ok(())
    }
}

impl Inner {
    /// The state of a log whose file holds the records `scanned` found.
    fn loaded(file: Option<BufferedFile>, scanned: Scan, truncated_bytes: u64) -> Inner {
        let mut inner = Inner {
            file: file.map(Rc::new),
            pending: Vec::new(),
            pending_ops: Vec::new(),
            next_seq: 1,
            live: BTreeMap::new(),
            live_bytes: 0,
            failed: None,
            lost: Default::default(),
            closed: false,
            flusher_running: false,
            stats: GroupLogStats {
                file_bytes: scanned.valid_bytes as u64,
                file_records: scanned.ops.len() as u64,
                truncated_bytes,
                ..GroupLogStats::default()
            },
        };
        for op in scanned.ops {
            inner.apply(op);
        }
        inner
    }

    fn apply(&mut self, (key, value): Op) {
        match value {
            Some(value) => {
                let added = framed_len(&key, &value);
                if let Some(old) = self.live.insert(key.clone(), value) {
                    self.live_bytes -= framed_len(&key, &old);
                }
                self.live_bytes += added;
            }
            None => {
                if let Some(old) = self.live.remove(&key) {
                    self.live_bytes -= framed_len(&key, &old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_stops_at_a_bad_crc_or_short_frame() {
        let mut bytes = frame(b"a", Some(b"1"));
        let first = bytes.len();
        bytes.extend_from_slice(&frame(b"b", None));
        let second = bytes.len();
        bytes.extend_from_slice(&frame(b"c", Some(b"3")));
        assert_eq!(scan(&bytes).unwrap().valid_bytes, bytes.len());
        assert_eq!(scan(&bytes[..second + 5]).unwrap().valid_bytes, second);
        let mut flipped = bytes.clone();
        flipped[first + 10] ^= 0xff;
        let scanned = scan(&flipped).unwrap();
        assert_eq!(scanned.valid_bytes, first);
        assert_eq!(scanned.ops, vec![(b"a".to_vec(), Some(b"1".to_vec()))]);
    }

    #[test]
    fn scan_treats_a_huge_length_as_a_torn_tail() {
        let mut bytes = frame(b"a", Some(b"1"));
        let first = bytes.len();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(scan(&bytes).unwrap().valid_bytes, first);
    }
}
