//! Cleaned segments on disk and how they replace the originals, as Kafka's
//! log cleaner does it: the new segment is written as `<base>.log.cleaned`
//! and synced; renamed to `<base>.log.swap` (the commit point, made durable
//! with a directory fsync); then the old indexes are removed and the swap
//! file is renamed over `<base>.log`. Recovery ([`recover`]) discards a
//! `.cleaned` file and finishes a `.swap`, so after a crash at any point the
//! partition holds either the old segment or the whole new one.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::super::error::Error;
use super::super::file::{self, IoMode, SegmentFile, BLOCK_BYTES};
use super::super::segment::{self, Segment, INDEX_SUFFIX, TIME_INDEX_SUFFIX};
use super::super::types::Offset;

pub const CLEANED_SUFFIX: &str = "log.cleaned";
pub const SWAP_SUFFIX: &str = "log.swap";
/// Bytes gathered before a cleaned segment's next write (a multiple of a block).
pub const WRITE_CHUNK_BYTES: usize = 1024 * 1024;
const _: () = assert!((WRITE_CHUNK_BYTES as u64).is_multiple_of(BLOCK_BYTES));

pub fn cleaned_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(segment::file_name(base_offset, CLEANED_SUFFIX))
}

pub fn swap_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(segment::file_name(base_offset, SWAP_SUFFIX))
}

/// A cleaned segment being written: whole blocks go out as they fill.
pub struct CleanedWriter {
    file: SegmentFile,
    /// Bytes already written (block-aligned).
    written: u64,
    pending: Vec<u8>,
}

impl CleanedWriter {
    pub async fn create(
        dir: &Path,
        base_offset: Offset,
        mode: IoMode,
    ) -> Result<CleanedWriter, Error> {
        let file = SegmentFile::open(&cleaned_path(dir, base_offset), mode).await?;
        file.truncate(0).await?;
        Ok(CleanedWriter {
            file,
            written: 0,
            pending: Vec::with_capacity(WRITE_CHUNK_BYTES * 2),
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    pub async fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            let whole = file::align_down(self.pending.len() as u64) as usize;
            let rest = self.pending.split_off(whole);
            let chunk = Bytes::from(std::mem::replace(&mut self.pending, rest));
            self.file.write_blocks(self.written, &[], &[chunk]).await?;
            self.written += whole as u64;
        }
        Ok(())
    }

    /// Writes the rest, cuts the padding and syncs. Returns the bytes written.
    pub async fn finish(mut self) -> Result<u64, Error> {
        let total = self.total_bytes();
        if !self.pending.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.pending));
            self.file.write_blocks(self.written, &[], &[chunk]).await?;
        }
        self.file.truncate(total).await?;
        self.file.fdatasync().await?;
        Ok(total)
    }
}

/// Makes the synced `.cleaned` file of `base_offset` the committed `.swap`.
pub async fn commit(dir: &Path, base_offset: Offset) -> Result<(), Error> {
    let from = cleaned_path(dir, base_offset);
    std::fs::rename(&from, swap_path(dir, base_offset))
        .map_err(|e| Error::io("renaming", &from, e))?;
    file::sync_dir(dir).await
}

/// Puts the committed `.swap` of `base_offset` in place of its segment. The
/// old indexes go first: they describe the old file.
pub fn install(dir: &Path, base_offset: Offset) -> Result<(), Error> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = dir.join(segment::file_name(base_offset, suffix));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", path, e)),
        }
    }
    let from = swap_path(dir, base_offset);
    std::fs::rename(&from, Segment::log_path(dir, base_offset))
        .map_err(|e| Error::io("renaming", &from, e))
}

/// Removes what a cleaning left unused.
pub fn discard(dir: &Path, base_offset: Offset) {
    for path in [cleaned_path(dir, base_offset), swap_path(dir, base_offset)] {
        let _ = std::fs::remove_file(path);
    }
}

/// On open, before segments are listed: removes unfinished `.cleaned` files
/// and installs committed `.swap` files.
pub fn recover(dir: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let parse = |suffix: &str| {
            let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
            segment::parse_log_file_name(&format!("{stem}.log"))
        };
        if let Some(base) = parse(CLEANED_SUFFIX) {
            tracing::info!(dir = %dir.display(), base_offset = base.get(), "discarding an unfinished cleaned segment");
            let path = cleaned_path(dir, base);
            std::fs::remove_file(&path).map_err(|e| Error::io("removing", path, e))?;
        } else if let Some(base) = parse(SWAP_SUFFIX) {
            tracing::info!(dir = %dir.display(), base_offset = base.get(), "finishing the swap of a cleaned segment");
            install(dir, base)?;
        }
    }
    Ok(())
}
