//! Opening a partition directory: list segments, load or rebuild indexes, scan
//! every segment that may hold unsynced data (checking each batch's CRC and
//! offset continuity), and truncate a torn or corrupt tail.

use std::collections::BTreeMap;
use std::path::Path;

use super::cleaner;
use super::config::LogConfig;
use super::error::Error;
use super::file::{self, IoMode, SegmentFile};
use super::meta::PartitionMeta;
use super::segment::{self, Segment};
use super::types::Offset;

pub(crate) struct Recovered {
    pub segments: BTreeMap<Offset, Segment>,
    pub log_start_offset: Offset,
    pub next_offset: Offset,
    pub leader_epoch: i32,
    pub recovery_point: Offset,
    /// The last close was clean: `partition.meta` on disk says so.
    pub clean: bool,
}

/// How many segments a partition directory holds (none when it does not
/// exist), without opening any of them.
pub fn segment_count(dir: &Path) -> Result<usize, Error> {
    match list_segments(dir) {
        Ok(bases) => Ok(bases.len()),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

fn list_segments(dir: &Path) -> Result<Vec<Offset>, Error> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_log_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// True when the bytes after the last valid batch are only zeros: the padding
/// of our own aligned writes and the space reserved ahead of them (a crash
/// before the file was trimmed). Reserved space that was never written is a
/// hole to `SEEK_DATA`, so it is skipped without being read.
async fn is_zero_padding(file: &SegmentFile, from: u64, to: u64) -> Result<bool, Error> {
    let mut position = from;
    while position < to {
        match file.next_data(position).await? {
            None => return Ok(true),
            Some(data) => position = position.max(data),
        }
        if position >= to {
            break;
        }
        let len = (to - position).min(segment::SCAN_CHUNK_BYTES as u64) as usize;
        let bytes = file.read(position, len).await?;
        if bytes.is_empty() || bytes.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        position += bytes.len() as u64;
    }
    Ok(true)
}

/// What the partition directory says before any segment is opened.
struct Start<'a> {
    dir: &'a Path,
    index_interval_bytes: u32,
    mode: IoMode,
    now_ms: i64,
    clean: bool,
    recovery_point: Offset,
}

/// Opens the directory's segments, truncating a torn tail and dropping what
/// does not continue the log. `now_ms` is when the segments count as opened
/// (for segment.ms).
pub(crate) async fn recover(
    dir: &Path,
    config: &LogConfig,
    mode: IoMode,
    now_ms: i64,
) -> Result<Recovered, Error> {
    let meta = PartitionMeta::load(dir).await?;
    cleaner::swap::recover(dir)?;
    let start = Start {
        dir,
        index_interval_bytes: config.index_interval_bytes,
        mode,
        now_ms,
        clean: meta.is_some_and(|m| m.clean_shutdown()),
        recovery_point: meta.map_or(Offset(0), |m| m.recovery_point()),
    };
    let mut segments = open_segments(&start).await?;
    let log_start_meta = meta.map_or(Offset(0), |m| m.log_start_offset());
    if segments.is_empty() {
        let base = log_start_meta.max(Offset(0));
        segments.insert(base, Segment::create(dir, base, mode, now_ms).await?);
        file::sync_dir(dir).await?;
    }
    remove_dead_segments(dir, &mut segments, log_start_meta)?;
    restart_below_log_start(&start, &mut segments, log_start_meta).await?;
    let first_base = segments.keys().next().copied();
    let next_offset = segments.values().next_back().map(Segment::next_offset);
    let (Some(first_base), Some(next_offset)) = (first_base, next_offset) else {
        return Err(Error::InvalidLayout(dir.to_path_buf(), "no segment"));
    };
    let recovery_point = if start.clean {
        next_offset
    } else {
        start.recovery_point.min(next_offset)
    };
    Ok(Recovered {
        segments,
        log_start_offset: log_start_meta.max(first_base).min(next_offset),
        next_offset,
        leader_epoch: meta.map_or(0, |m| m.leader_epoch()),
        recovery_point,
        clean: start.clean,
    })
}

/// Opens every segment that continues the log, up to and including the first
/// one with a torn tail; later ones are removed.
async fn open_segments(start: &Start<'_>) -> Result<BTreeMap<Offset, Segment>, Error> {
    let dir = start.dir;
    let bases = list_segments(dir)?;
    let mut segments = BTreeMap::new();
    let mut expected_base: Option<Offset> = None;
    for (i, &base) in bases.iter().enumerate() {
        // A compacted segment may end below the next one's base, never above it.
        if expected_base.is_some_and(|expected| base < expected) {
            tracing::warn!(dir = %dir.display(), base = base.get(), expected_base = ?expected_base.map(Offset::get), "segment does not continue the log; removing it and later segments");
            remove_all(dir, &bases[i..])?;
            break;
        }
        let is_last = i + 1 == bases.len();
        // Segments that may hold offsets at or past the recovery point are scanned
        // unless the last shutdown was clean.
        let may_hold_unsynced = bases
            .get(i + 1)
            .is_none_or(|&next| next > start.recovery_point);
        let opened = open_segment(start, base, start.clean || !may_hold_unsynced).await?;
        expected_base = Some(opened.segment.next_offset());
        if opened.truncated && !is_last {
            tracing::warn!(dir = %dir.display(), base = base.get(), "removing segments after the truncated one");
            remove_all(dir, &bases[i + 1..])?;
        }
        if opened.rebuilt && !(is_last || opened.truncated) {
            opened.segment.encode_indexes()?.write(dir).await?;
        }
        segments.insert(base, opened.segment);
        if opened.truncated {
            break;
        }
    }
    Ok(segments)
}

/// One segment as recovery opened it.
struct Opened {
    segment: Segment,
    /// The indexes were rebuilt by a scan (not loaded).
    rebuilt: bool,
    /// A torn or corrupt tail was cut off.
    truncated: bool,
}

/// Opens one segment: its persisted indexes when `trust_indexes` and they
/// match the file, otherwise a CRC scan that truncates what does not check.
async fn open_segment(
    start: &Start<'_>,
    base: Offset,
    trust_indexes: bool,
) -> Result<Opened, Error> {
    let path = Segment::log_path(start.dir, base);
    let file = SegmentFile::open(&path, start.mode).await?;
    let size = file.size().await?;
    let loaded = if trust_indexes {
        Segment::load_indexes(start.dir, base, size).await?
    } else {
        None
    };
    if let Some((index, next_offset)) = loaded {
        let segment = Segment::opened(file, base, size, index, next_offset, start.now_ms);
        return Ok(Opened {
            segment,
            rebuilt: false,
            truncated: false,
        });
    }
    let scan = segment::scan(&file, base, size, start.index_interval_bytes).await?;
    if scan.valid_bytes < size {
        truncate_tail(&file, &path, &scan, size).await?;
    }
    let segment = Segment::opened(
        file,
        base,
        scan.valid_bytes,
        scan.index,
        scan.next_offset,
        start.now_ms,
    );
    Ok(Opened {
        segment,
        rebuilt: true,
        truncated: scan.valid_bytes < size,
    })
}

/// Cuts the file back to its valid batches, saying why when it was more
/// than our own zero padding.
async fn truncate_tail(
    file: &SegmentFile,
    path: &Path,
    scan: &segment::ScanResult,
    size: u64,
) -> Result<(), Error> {
    if is_zero_padding(file, scan.valid_bytes, size).await? {
        tracing::debug!(path = %path.display(), "trimming zero padding after the last batch");
    } else {
        let reason = scan
            .stopped_by
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        tracing::warn!(
            path = %path.display(),
            valid_bytes = scan.valid_bytes,
            truncated_bytes = size - scan.valid_bytes,
            next_offset = scan.next_offset.get(),
            %reason,
            "truncating torn or corrupt tail of segment"
        );
    }
    file.truncate(scan.valid_bytes).await?;
    file.fdatasync().await
}

/// A torn tail can take the log's end below its start offset (records
/// deleted by DeleteRecords or retention, then a crash lost the batches
/// written after them). Nothing is left to keep then: as Kafka's LogLoader
/// does, the log starts again, empty, at its start offset, so no offset
/// below it is given out twice.
async fn restart_below_log_start(
    start: &Start<'_>,
    segments: &mut BTreeMap<Offset, Segment>,
    log_start_offset: Offset,
) -> Result<(), Error> {
    let end = segments.values().next_back().map(Segment::next_offset);
    if end.is_none_or(|end| end >= log_start_offset) {
        return Ok(());
    }
    tracing::warn!(dir = %start.dir.display(), ?end, log_start_offset = log_start_offset.get(),
        "the log ends below its start offset after recovery; it starts again, empty, there");
    let bases: Vec<Offset> = std::mem::take(segments).into_keys().collect();
    remove_all(start.dir, &bases)?;
    let segment = Segment::create(start.dir, log_start_offset, start.mode, start.now_ms).await?;
    segments.insert(log_start_offset, segment);
    file::sync_dir(start.dir).await
}

/// Segments wholly below the log start offset are dead (a crash after
/// delete_records stored the meta but before the files were removed).
fn remove_dead_segments(
    dir: &Path,
    segments: &mut BTreeMap<Offset, Segment>,
    log_start_offset: Offset,
) -> Result<(), Error> {
    while segments
        .keys()
        .nth(1)
        .is_some_and(|&second| second <= log_start_offset)
    {
        if let Some((base, _)) = segments.pop_first() {
            Segment::remove_files(dir, base)?;
        }
    }
    Ok(())
}

fn remove_all(dir: &Path, bases: &[Offset]) -> Result<(), Error> {
    bases
        .iter()
        .try_for_each(|&base| Segment::remove_files(dir, base))
}
