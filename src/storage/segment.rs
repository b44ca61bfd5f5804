//! One segment: `<base offset, 20 digits>.log` with `.index` and `.timeindex`
//! beside it, as Kafka lays them out.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::batch::{BatchHeader, BATCH_BYTES_LIMIT, HEADER_BYTES};
use super::error::{CorruptReason, Error};
use super::file::{self, IoMode, SegmentFile};
use super::index::SegmentIndex;
use super::limit::ReadLimit;
use super::records;

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Bytes read per I/O when scanning a segment.
pub const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Bounds of one space reservation ahead of the writes. A reservation grows
/// with the segment (doubling), so a quiet partition holds little unused space
/// and a busy one calls fallocate rarely.
pub const RESERVE_STEP_MIN: u64 = 1024 * 1024;
pub const RESERVE_STEP_MAX: u64 = 64 * 1024 * 1024;

pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct Segment {
    pub base_offset: i64,
    pub file: Rc<SegmentFile>,
    /// Bytes written to the file (the readable end).
    pub written_bytes: u64,
    /// Bytes handed to writes (the partial block of `tail` ends here).
    pub issued_bytes: u64,
    /// Bytes written plus bytes staged for the next write.
    pub staged_bytes: u64,
    /// The issued bytes of the partial last block, rewritten with the next write.
    pub tail: Vec<u8>,
    pub index: SegmentIndex,
    /// The offset after the last staged batch.
    pub next_offset: i64,
    /// When the segment was created or reopened (wall clock), for segment.ms.
    pub created_ms: i64,
    /// File length reserved ahead of the writes. A direct write that ends
    /// below it does not extend the file, so io_uring completes it in line
    /// instead of handing it to a kernel worker thread on the shard's core.
    pub reserved_bytes: u64,
    pub reservation: Reservation,
}

/// The file length to reserve when less than `RESERVE_STEP_MIN` would be left
/// ahead of a write ending at `write_end`: one step (the reserved length so
/// far, within the step bounds) past it, never past `segment_bytes` rounded up
/// to a block, where the segment rolls.
pub fn next_reservation(reserved: u64, write_end: u64, segment_bytes: u64) -> Option<u64> {
    if write_end + RESERVE_STEP_MIN <= reserved {
        return None;
    }
    let from = reserved.max(write_end);
    let step = reserved.clamp(RESERVE_STEP_MIN, RESERVE_STEP_MAX);
    let target = (from + step).min(file::align_up(segment_bytes));
    (target > from).then_some(target)
}

/// Whether the segment reserves space ahead of its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    Idle,
    InFlight,
    /// Buffered I/O, or a reservation failed (appends then extend the file).
    Off,
}

/// The outcome of scanning a segment from its start.
pub struct ScanResult {
    pub index: SegmentIndex,
    /// Bytes of complete, valid batches from the start.
    pub valid_bytes: u64,
    pub next_offset: i64,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped_by: Option<Error>,
}

impl Segment {
    pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(file_name(base_offset, LOG_SUFFIX))
    }

    /// Creates a new, empty segment.
    pub async fn create(
        dir: &Path,
        base_offset: i64,
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
        base_offset: i64,
        valid_bytes: u64,
        index: SegmentIndex,
        next_offset: i64,
        now_ms: i64,
    ) -> Segment {
        let reservation = match &file {
            SegmentFile::Direct(..) => Reservation::Idle,
            SegmentFile::Buffered(..) => Reservation::Off,
        };
        Segment {
            base_offset,
            file: Rc::new(file),
            written_bytes: valid_bytes,
            issued_bytes: valid_bytes,
            staged_bytes: valid_bytes,
            tail: Vec::with_capacity(file::BLOCK_BYTES as usize),
            index,
            next_offset,
            created_ms: now_ms,
            reserved_bytes: valid_bytes,
            reservation,
        }
    }

    /// Starts a reservation alongside a write ending at `write_end`, when one is
    /// due (see `next_reservation`), and returns the file length to reserve.
    pub fn start_reservation(&mut self, write_end: u64, segment_bytes: u64) -> Option<u64> {
        if self.reservation != Reservation::Idle {
            return None;
        }
        let target = next_reservation(self.reserved_bytes, write_end, segment_bytes)?;
        self.reservation = Reservation::InFlight;
        Some(target)
    }

    /// Records how a reservation to `target` ended.
    pub fn finish_reservation(&mut self, target: u64, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                self.reserved_bytes = self.reserved_bytes.max(target);
                self.reservation = Reservation::Idle;
            }
            Err(error) => {
                tracing::warn!(%error, "reserving segment space failed; appends to this segment extend the file instead");
                self.reservation = Reservation::Off;
            }
        }
    }

    /// Sets the readable end after recovery and loads the partial last block.
    pub async fn set_end(&mut self, bytes: u64) -> Result<(), Error> {
        self.written_bytes = bytes;
        self.issued_bytes = bytes;
        self.staged_bytes = bytes;
        let block_start = file::align_down(bytes);
        self.tail.clear();
        if bytes > block_start {
            let read = self
                .file
                .read(block_start, (bytes - block_start) as usize)
                .await?;
            if read.len() as u64 != bytes - block_start {
                return Err(Error::io(
                    "reading the last block of",
                    self.file.path(),
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ));
            }
            self.tail.extend_from_slice(&read);
        }
        Ok(())
    }

    /// Encodes both indexes (synchronously, so no borrow is held across I/O).
    pub fn encode_indexes(&self) -> Result<IndexFiles, Error> {
        let encode_error = |e: rkyv::rancor::Error| {
            Error::io(
                "encoding index of segment",
                format!("{:020}", self.base_offset),
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
        base_offset: i64,
        segment_bytes: u64,
    ) -> Result<Option<(SegmentIndex, i64)>, Error> {
        let o = file::read_small_file(&dir.join(file_name(base_offset, INDEX_SUFFIX))).await?;
        let t = file::read_small_file(&dir.join(file_name(base_offset, TIME_INDEX_SUFFIX))).await?;
        Ok(match (o, t) {
            (Some(o), Some(t)) => SegmentIndex::decode(&o, &t, base_offset, segment_bytes),
            _ => None,
        })
    }

    pub fn remove_files(dir: &Path, base_offset: i64) -> Result<(), Error> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = dir.join(file_name(base_offset, suffix));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", path, e)),
            }
        }
        Ok(())
    }
}

/// A segment's encoded index files, ready to write.
pub struct IndexFiles {
    base_offset: i64,
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
    base_offset: i64,
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
        if header.base_offset != result.next_offset {
            result.stopped_by = Some(Error::CorruptBatch(CorruptReason::OffsetDiscontinuity {
                expected: result.next_offset,
                found: header.base_offset,
            }));
            break;
        }
        result.index.on_batch(
            header.base_offset,
            header.max_timestamp,
            position,
            total as u64,
            index_interval_bytes,
        );
        result.next_offset = header.last_offset() + 1;
        position += total as u64;
        result.valid_bytes = position;
    }
    Ok(result)
}

/// Reads whole batches from `position` up to `end`: the first batch whose last
/// offset reaches `from_offset`, then following ones while `limit` admits them
/// (counting what `out` already holds). Each batch's CRC is checked.
/// Reports the offset after the last batch taken and whether `limit` stopped it.
pub async fn read_batches(
    file: &SegmentFile,
    mut position: u64,
    end: u64,
    from_offset: i64,
    limit: ReadLimit,
    out: &mut Vec<Bytes>,
    total_bytes: &mut usize,
) -> Result<ReadProgress, Error> {
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
        progress.next_offset = Some(header.last_offset() + 1);
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
    pub next_offset: Option<i64>,
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
/// below it, then look inside the first one that reaches it. Returns
/// (record timestamp, record offset).
pub async fn find_timestamp(
    file: &SegmentFile,
    mut position: u64,
    end: u64,
    timestamp_ms: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, Error> {
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
                return Ok(Some((record.timestamp_ms, record.offset)));
            }
        }
        position += size as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn reservations_start_small_and_double_up_to_the_step_limit() {
        assert_eq!(next_reservation(0, 4096, GIB), Some(4096 + MIB));
        let mut reserved = MIB;
        let mut steps = Vec::new();
        while reserved < 300 * MIB {
            let next = next_reservation(reserved, reserved - MIB / 2, GIB).expect("due");
            steps.push(next - reserved);
            reserved = next;
        }
        assert_eq!(
            &steps[..7],
            &[MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]
        );
        assert!(steps[7..].iter().all(|s| *s == RESERVE_STEP_MAX));
    }

    #[test]
    fn no_reservation_while_a_step_is_left_or_past_the_segment_size() {
        assert_eq!(next_reservation(8 * MIB, 7 * MIB, GIB), None);
        assert_eq!(next_reservation(8 * MIB, 7 * MIB + 1, GIB), Some(16 * MIB));
        // Capped where the segment rolls, rounded up to a whole block.
        assert_eq!(next_reservation(MIB, MIB, MIB + 100), Some(MIB + 4096));
        assert_eq!(next_reservation(MIB + 4096, MIB + 4000, MIB + 100), None);
        // A first batch larger than the segment size extends the file itself.
        assert_eq!(next_reservation(0, 3 * MIB, 2 * MIB), None);
    }
}
