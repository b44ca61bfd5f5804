//! One segment: `<base offset, 20 digits>.log` with `.index`, `.timeindex`
//! and `.txnindex` beside it, as Kafka lays them out.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::batch::{BatchHeader, BATCH_BYTES_LIMIT, HEADER_BYTES};
use super::error::{CorruptReason, Error};
use super::file::{self, IoMode, SegmentFile};
use super::index::SegmentIndex;
use super::limit::ReadLimit;
use super::records;
use super::txn_index::TXN_INDEX_SUFFIX;
use super::types::{FilePosition, Offset, TimestampOffset};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Bytes read per I/O when scanning a segment.
pub const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

pub fn file_name(base_offset: Offset, suffix: &str) -> String {
    format!("{:020}.{suffix}", base_offset.get())
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_log_file_name(name: &str) -> Option<Offset> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Offset)
}

/// A segment's file, its indexes and how far its batches reach. The write
/// position of the active segment (staged and issued bytes, the partial last
/// block, space reserved ahead) belongs to the appender, not to the segment.
pub struct Segment {
    base_offset: Offset,
    file: Rc<SegmentFile>,
    /// Bytes written to the file (the readable end).
    written_bytes: u64,
    index: SegmentIndex,
    /// The offset after the last staged batch.
    next_offset: Offset,
    /// When the segment was created or reopened (wall clock), for segment.ms.
    created_ms: i64,
}

/// A batch as the segment's indexes record it.
pub struct StagedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp_ms: i64,
    /// Where the batch starts in the file.
    pub position: FilePosition,
    pub size: u64,
}

/// The outcome of scanning a segment from its start.
pub struct ScanResult {
    pub index: SegmentIndex,
    /// Bytes of complete, valid batches from the start.
    pub valid_bytes: u64,
    pub next_offset: Offset,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped_by: Option<Error>,
}

impl Segment {
    pub fn log_path(dir: &Path, base_offset: Offset) -> PathBuf {
        dir.join(file_name(base_offset, LOG_SUFFIX))
    }

    /// Creates a new, empty segment.
    pub async fn create(
        dir: &Path,
        base_offset: Offset,
        mode: IoMode,
        now_ms: i64,
    ) -> Result<Segment, Error> {
        let path = Self::log_path(dir, base_offset);
        let file = SegmentFile::open(&path, mode).await?;
        file.truncate(0).await?;
        Ok(Segment::opened(
            file,
            base_offset,
            0,
            SegmentIndex::default(),
            base_offset,
            now_ms,
        ))
    }

    /// A segment whose file holds `valid_bytes` of batches up to `next_offset`.
    pub fn opened(
        file: SegmentFile,
        base_offset: Offset,
        valid_bytes: u64,
        index: SegmentIndex,
        next_offset: Offset,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            file: Rc::new(file),
            written_bytes: valid_bytes,
            index,
            next_offset,
            created_ms: now_ms,
        }
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    pub fn file(&self) -> &Rc<SegmentFile> {
        &self.file
    }

    /// Bytes written to the file: where reads end.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }

    /// The offset after the last staged batch.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Records a batch staged at `position` (offsets `base_offset..=last_offset`).
    pub fn stage_batch(&mut self, batch: StagedBatch, index_interval_bytes: u32) {
        debug_assert!(
            batch.base_offset == self.next_offset,
            "batches continue the segment"
        );
        debug_assert!(batch.last_offset >= batch.base_offset);
        self.index.on_batch(
            batch.base_offset,
            batch.max_timestamp_ms,
            batch.position,
            batch.size,
            index_interval_bytes,
        );
        self.next_offset = batch.last_offset + 1;
    }

    /// Moves the readable end forward once writes up to `bytes` completed.
    pub fn set_written_bytes(&mut self, bytes: u64) {
        debug_assert!(
            bytes >= self.written_bytes,
            "the readable end never moves back"
        );
        self.written_bytes = bytes;
    }

    /// Encodes both indexes (synchronously, so no borrow is held across I/O).
    pub fn encode_indexes(&self) -> Result<IndexFiles, Error> {
        let encode_error = |e: rkyv::rancor::Error| {
            Error::io(
                "encoding index of segment",
                format!("{:020}", self.base_offset.get()),
                std::io::Error::other(e.to_string()),
            )
        };
        Ok(IndexFiles {
            base_offset: self.base_offset,
            offsets: self
                .index
                .encode_offsets(self.base_offset, self.written_bytes, self.next_offset)
                .map_err(encode_error)?,
            times: self
                .index
                .encode_times(self.base_offset, self.written_bytes)
                .map_err(encode_error)?,
        })
    }

    /// Loads the persisted indexes if they describe this segment as it is.
    pub async fn load_indexes(
        dir: &Path,
        base_offset: Offset,
        segment_bytes: u64,
    ) -> Result<Option<(SegmentIndex, Offset)>, Error> {
        let o = file::read_small_file(&dir.join(file_name(base_offset, INDEX_SUFFIX))).await?;
        let t = file::read_small_file(&dir.join(file_name(base_offset, TIME_INDEX_SUFFIX))).await?;
        Ok(match (o, t) {
            (Some(o), Some(t)) => SegmentIndex::decode(&o, &t, base_offset, segment_bytes),
            _ => None,
        })
    }

    pub fn remove_files(dir: &Path, base_offset: Offset) -> Result<(), Error> {
        remove_suffixes(dir, base_offset, &[LOG_SUFFIX])?;
        Self::remove_index_files(dir, base_offset)
    }

    /// Removes a segment's index files only (they are rebuilt from its log
    /// file at the next opening).
    pub fn remove_index_files(dir: &Path, base_offset: Offset) -> Result<(), Error> {
        remove_suffixes(
            dir,
            base_offset,
            &[INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX],
        )
    }
}

fn remove_suffixes(dir: &Path, base_offset: Offset, suffixes: &[&str]) -> Result<(), Error> {
    for suffix in suffixes {
        let path = dir.join(file_name(base_offset, suffix));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", path, e)),
        }
    }
    Ok(())
}

/// A segment's encoded index files, ready to write.
pub struct IndexFiles {
    base_offset: Offset,
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl IndexFiles {
    /// Indexes are rebuilt when missing or stale, so they need no fsync of their own.
    pub async fn write(self, dir: &Path) -> Result<(), Error> {
        write_whole(
            &dir.join(file_name(self.base_offset, INDEX_SUFFIX)),
            &self.offsets,
        )
        .await?;
        write_whole(
            &dir.join(file_name(self.base_offset, TIME_INDEX_SUFFIX)),
            &self.times,
        )
        .await
    }
}

async fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let f = glommio::io::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(path)
        .await
        .map_err(|e| Error::io("creating", path, e))?;
    let n = f
        .write_at(bytes.to_vec(), 0)
        .await
        .map_err(|e| Error::io("writing", path, e))?;
    f.close().await.map_err(|e| Error::io("closing", path, e))?;
    if n != bytes.len() {
        return Err(Error::io(
            "writing (short write)",
            path,
            std::io::Error::from(std::io::ErrorKind::WriteZero),
        ));
    }
    Ok(())
}

/// A window of a segment file read into memory.
struct Window {
    start: u64,
    data: glommio::io::ReadResult,
}

impl Window {
    fn slice(&self, position: u64, len: usize) -> Option<&[u8]> {
        let from = position.checked_sub(self.start)? as usize;
        self.data.get(from..from.checked_add(len)?)
    }
}

/// Reads the batch header at `position`, re-reading a window when needed.
async fn batch_at(
    file: &SegmentFile,
    window: &mut Option<Window>,
    position: u64,
    end: u64,
    chunk_bytes: usize,
) -> Result<BatchHeader, Error> {
    let available = (end - position) as usize;
    if available < HEADER_BYTES {
        return Err(Error::Truncated {
            needed: HEADER_BYTES,
            available,
        });
    }
    if window
        .as_ref()
        .and_then(|w| w.slice(position, HEADER_BYTES))
        .is_none()
    {
        let len = chunk_bytes.min(available);
        *window = Some(Window {
            start: position,
            data: file.read(position, len).await?,
        });
    }
    let head = window
        .as_ref()
        .and_then(|w| w.slice(position, HEADER_BYTES))
        .ok_or(Error::Truncated {
            needed: HEADER_BYTES,
            available: 0,
        })?;
    let header = BatchHeader::parse(head)?;
    header.validate_framing(available, BATCH_BYTES_LIMIT)?;
    let total = header.total_bytes();
    if window
        .as_ref()
        .and_then(|w| w.slice(position, total))
        .is_none()
    {
        let len = chunk_bytes.max(total).min(available);
        *window = Some(Window {
            start: position,
            data: file.read(position, len).await?,
        });
    }
    Ok(header)
}

/// Scans a segment from the start, checking every batch's framing, CRC and
/// offset continuity, and rebuilding both indexes.
pub async fn scan(
    file: &SegmentFile,
    base_offset: Offset,
    file_bytes: u64,
    index_interval_bytes: u32,
) -> Result<ScanResult, Error> {
    let mut result = ScanResult {
        index: SegmentIndex::default(),
        valid_bytes: 0,
        next_offset: base_offset,
        stopped_by: None,
    };
    let mut window = None;
    let mut position = 0u64;
    while position < file_bytes {
        let header = match batch_at(file, &mut window, position, file_bytes, SCAN_CHUNK_BYTES).await
        {
            Ok(h) => h,
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => {
                result.stopped_by = Some(e);
                break;
            }
        };
        let total = header.total_bytes();
        let bytes = window
            .as_ref()
            .and_then(|w| w.slice(position, total))
            .unwrap_or_default();
        if let Err(e) = header.validate(bytes, BATCH_BYTES_LIMIT) {
            result.stopped_by = Some(e);
            break;
        }
        // Offsets only grow; compaction leaves gaps between batches.
        if header.base_offset < result.next_offset.get() {
            result.stopped_by = Some(Error::CorruptBatch(CorruptReason::OffsetDiscontinuity {
                expected: result.next_offset.get(),
                found: header.base_offset,
            }));
            break;
        }
        result.index.on_batch(
            Offset(header.base_offset),
            header.max_timestamp,
            FilePosition(position),
            total as u64,
            index_interval_bytes,
        );
        result.next_offset = Offset(header.last_offset()) + 1;
        position += total as u64;
        result.valid_bytes = position;
    }
    Ok(result)
}

/// The header of a segment's first batch, if it holds one before `end`
/// (recovery already checked the batch: one header-sized read).
pub async fn first_batch_header(
    file: &SegmentFile,
    end: u64,
) -> Result<Option<BatchHeader>, Error> {
    if end < HEADER_BYTES as u64 {
        return Ok(None);
    }
    let head = file.read(0, HEADER_BYTES).await?;
    BatchHeader::parse(&head).map(Some)
}

/// Calls `visit` with the header and the bytes of every batch before `end`,
/// a boundary recovery already checked (producer state and the transaction
/// index are rebuilt this way).
pub async fn scan_batches(
    file: &SegmentFile,
    end: u64,
    mut visit: impl FnMut(&BatchHeader, &[u8]),
) -> Result<(), Error> {
    let mut window = None;
    let mut position = 0u64;
    while position < end {
        let header = batch_at(file, &mut window, position, end, SCAN_CHUNK_BYTES).await?;
        let total = header.total_bytes();
        let bytes = window
            .as_ref()
            .and_then(|w| w.slice(position, total))
            .unwrap_or_default();
        visit(&header, bytes);
        position += total as u64;
    }
    Ok(())
}

/// Reads whole batches from `position` up to `end`: the first batch whose last
/// offset reaches `from_offset`, then following ones while `limit` admits them
/// (counting what `out` already holds). Each batch's CRC is checked.
/// Reports the offset after the last batch taken and whether `limit` stopped it.
pub async fn read_batches(
    file: &SegmentFile,
    start: FilePosition,
    end: u64,
    from_offset: Offset,
    limit: ReadLimit,
    out: &mut Vec<Bytes>,
    total_bytes: &mut usize,
) -> Result<ReadProgress, Error> {
    let mut position = start.get();
    let from_offset = from_offset.get();
    let max_bytes = limit.max_bytes;
    let chunk = max_bytes.clamp(HEADER_BYTES, SCAN_CHUNK_BYTES * 8);
    let mut window: Option<Window> = None;
    let mut progress = ReadProgress {
        next_offset: None,
        full: false,
    };
    while position < end {
        let header = batch_at(file, &mut window, position, end, chunk)
            .await
            .map_err(|e| match e {
                Error::Io { .. } => e,
                // The readable end only covers complete batches; anything else is damage.
                other => corrupt_on_disk(other),
            })?;
        let size = header.total_bytes();
        if header.last_offset() < from_offset {
            position += size as u64;
            continue;
        }
        if !limit.admits(out.len(), *total_bytes, size) {
            progress.full = true;
            break;
        }
        let Some(bytes) = window.as_ref().and_then(|w| w.slice(position, size)) else {
            return Err(Error::CorruptBatch(CorruptReason::LengthBeyondLimit));
        };
        header
            .validate(bytes, BATCH_BYTES_LIMIT)
            .map_err(corrupt_on_disk)?;
        // The one copy out of the DMA buffer.
        out.push(Bytes::copy_from_slice(bytes));
        *total_bytes += size;
        progress.next_offset = Some(Offset(header.last_offset()) + 1);
        position += size as u64;
        if *total_bytes >= max_bytes {
            progress.full = true;
            break;
        }
    }
    Ok(progress)
}

/// How far [`read_batches`] got.
pub struct ReadProgress {
    pub next_offset: Option<Offset>,
    pub full: bool,
}

fn corrupt_on_disk(e: Error) -> Error {
    match e {
        Error::CorruptBatch(r) => Error::CorruptBatch(r),
        Error::Truncated { .. }
        | Error::MessageTooLarge { .. }
        | Error::InvalidMagic(_)
        | Error::EmptyAppend => Error::CorruptBatch(CorruptReason::LengthBeyondLimit),
        other => other,
    }
}

/// Finds the first record at or after `position` (and at or after `min_offset`)
/// whose timestamp is at least `timestamp_ms`, as Kafka's
/// `LogSegment.findOffsetByTimestamp` does: skip batches whose maxTimestamp is
/// below it, then look inside the first one that reaches it.
pub async fn find_timestamp(
    file: &SegmentFile,
    start: FilePosition,
    end: u64,
    timestamp_ms: i64,
    min_offset: Offset,
) -> Result<Option<TimestampOffset>, Error> {
    let mut position = start.get();
    let min_offset = min_offset.get();
    let mut window = None;
    while position < end {
        let header = batch_at(file, &mut window, position, end, SCAN_CHUNK_BYTES)
            .await
            .map_err(corrupt_on_disk)?;
        let size = header.total_bytes();
        if header.max_timestamp >= timestamp_ms && header.last_offset() >= min_offset {
            let bytes = window
                .as_ref()
                .and_then(|w| w.slice(position, size))
                .ok_or(Error::CorruptBatch(CorruptReason::LengthBeyondLimit))?;
            header
                .validate(bytes, BATCH_BYTES_LIMIT)
                .map_err(corrupt_on_disk)?;
            if let Some(record) =
                records::first_at_or_after(&header, bytes, timestamp_ms, min_offset)?
            {
                return Ok(Some(TimestampOffset::new(
                    record.timestamp_ms,
                    record.offset,
                )));
            }
        }
        position += size as u64;
    }
    Ok(None)
}
