//! Opening a partition directory: list segments, load or rebuild indexes, scan
//! every segment that may hold unsynced data (checking each batch's CRC and
//! offset continuity), and truncate a torn or corrupt tail.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::LogConfig;
use super::error::Error;
use super::file::{self, IoMode, SegmentFile};
use super::log::now_ms;
use super::meta::PartitionMeta;
use super::segment::{self, Segment};

pub(crate) struct Recovered {
    pub segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    pub next_offset: i64,
    pub leader_epoch: i32,
    pub recovery_point: i64,
}

fn list_segments(dir: &Path) -> Result<Vec<i64>, Error> {
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
        match file.next_data(position) {
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

pub(crate) async fn recover(
    dir: &Path,
    config: &LogConfig,
    mode: IoMode,
) -> Result<Recovered, Error> {
    let meta = PartitionMeta::load(dir).await?;
    let clean = meta.is_some_and(|m| m.clean_shutdown);
    let recovery_point = meta.map(|m| m.recovery_point).unwrap_or(0);
    let bases = list_segments(dir)?;
    let now = now_ms();
    let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
    let mut expected_base: Option<i64> = None;

    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        if let Some(expected) = expected_base {
            if base != expected {
                tracing::warn!(dir = %dir.display(), base, expected, "segment does not continue the log; removing it and later segments");
                for &later in &bases[i..] {
                    Segment::remove_files(dir, later)?;
                }
                break;
            }
        }
        let path = Segment::log_path(dir, base);
        let file = SegmentFile::open(&path, mode).await?;
        let size = file.size().await?;
        // Segments that may hold offsets at or past the recovery point are scanned
        // unless the last shutdown was clean.
        let following_base = bases.get(i + 1).copied();
        let may_hold_unsynced = following_base.is_none_or(|next| next > recovery_point);
        let loaded = if clean || !may_hold_unsynced {
            Segment::load_indexes(dir, base, size).await?
        } else {
            None
        };
        let (index, next_offset, valid_bytes, rebuilt) = match loaded {
            Some((index, next_offset)) => (index, next_offset, size, false),
            None => {
                let scan = segment::scan(&file, base, size, config.index_interval_bytes).await?;
                if scan.valid_bytes < size {
                    let reason = scan
                        .stopped_by
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    if is_zero_padding(&file, scan.valid_bytes, size).await? {
                        tracing::debug!(path = %path.display(), "trimming zero padding after the last batch");
                    } else {
                        tracing::warn!(
                            path = %path.display(),
                            valid_bytes = scan.valid_bytes,
                            truncated_bytes = size - scan.valid_bytes,
                            next_offset = scan.next_offset,
                            %reason,
                            "truncating torn or corrupt tail of segment"
                        );
                    }
                    file.truncate(scan.valid_bytes).await?;
                    file.fdatasync().await?;
                }
                (scan.index, scan.next_offset, scan.valid_bytes, true)
            }
        };
        let truncated = valid_bytes < size;
        let seg = Segment::opened(file, base, valid_bytes, index, next_offset, now);
        expected_base = Some(next_offset);
        if truncated && !is_last {
            tracing::warn!(dir = %dir.display(), base, "removing segments after the truncated one");
            for &later in &bases[i + 1..] {
                Segment::remove_files(dir, later)?;
            }
        }
        if rebuilt && !(is_last || truncated) {
            seg.encode_indexes()?.write(dir).await?;
        }
        segments.insert(base, seg);
        if truncated {
            break;
        }
    }

    let log_start_meta = meta.map(|m| m.log_start_offset).unwrap_or(0);
    if segments.is_empty() {
        let base = log_start_meta.max(0);
        segments.insert(base, Segment::create(dir, base, mode, now).await?);
        file::sync_dir(dir).await?;
    }
    // Segments wholly below the log start offset are dead (a crash after
    // delete_records stored the meta but before the files were removed).
    let mut log_start_offset = log_start_meta;
    while segments.len() > 1 {
        let mut keys = segments.keys();
        let (Some(_), Some(&second)) = (keys.next(), keys.next()) else {
            break;
        };
        if second > log_start_offset {
            break;
        }
        if let Some((base, _)) = segments.pop_first() {
            Segment::remove_files(dir, base)?;
        }
    }
    let (&first_base, _) = segments
        .first_key_value()
        .ok_or(Error::InvalidLayout(dir.to_path_buf(), "no segment"))?;
    let (_, active) = segments
        .iter_mut()
        .next_back()
        .ok_or(Error::InvalidLayout(dir.to_path_buf(), "no segment"))?;
    let next_offset = active.next_offset;
    let end = active.written_bytes;
    active.set_end(end).await?;
    log_start_offset = log_start_offset.max(first_base).min(next_offset);
    let recovery_point = if clean {
        next_offset
    } else {
        recovery_point.min(next_offset)
    };
    Ok(Recovered {
        segments,
        log_start_offset,
        next_offset,
        leader_epoch: meta.map(|m| m.leader_epoch).unwrap_or(0),
        recovery_point,
    })
}
