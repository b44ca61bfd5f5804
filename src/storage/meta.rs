//! `partition.meta`: log start offset, recovery point and leader epoch, as an
//! rkyv archive written via temp file + rename + fsync.

use std::path::Path;

use rkyv::{Archive, Deserialize, Serialize};

use super::error::Error;
use super::file;
use super::types::Offset;

pub const META_FILE_NAME: &str = "partition.meta";
pub const META_FORMAT_VERSION: u32 = 1;

/// The archived layout keeps the offsets as the integers it always has; the
/// accessors give them as [`Offset`]s.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PartitionMeta {
    format_version: u32,
    log_start_offset: i64,
    /// Every offset below this was on stable storage when the file was written.
    recovery_point: i64,
    leader_epoch: i32,
    /// Set by a clean close; cleared when the log opens again.
    clean_shutdown: bool,
    /// CRC-32C of the fields above, so a garbled file is noticed.
    crc: u32,
}

impl PartitionMeta {
    fn checksum(&self) -> u32 {
        let mut crc = crc32c::crc32c(&self.format_version.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &self.log_start_offset.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &self.recovery_point.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &self.leader_epoch.to_le_bytes());
        crc32c::crc32c_append(crc, &[u8::from(self.clean_shutdown)])
    }

    pub fn new(
        log_start_offset: Offset,
        recovery_point: Offset,
        leader_epoch: i32,
        clean_shutdown: bool,
    ) -> Self {
        let mut meta = PartitionMeta {
            format_version: META_FORMAT_VERSION,
            log_start_offset: log_start_offset.get(),
            recovery_point: recovery_point.get(),
            leader_epoch,
            clean_shutdown,
            crc: 0,
        };
        meta.crc = meta.checksum();
        meta
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset)
    }

    /// Every offset below this was on stable storage when the file was written.
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Whether the log was closed cleanly.
    pub fn clean_shutdown(&self) -> bool {
        self.clean_shutdown
    }

    pub async fn store(&self, dir: &Path) -> Result<(), Error> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(self).map_err(|e| {
            Error::io(
                "encoding",
                dir.join(META_FILE_NAME),
                std::io::Error::other(e.to_string()),
            )
        })?;
        file::write_file_atomically(dir, META_FILE_NAME, &bytes).await
    }

    /// `Ok(None)` when absent or unreadable (the log then recovers from scratch).
    pub async fn load(dir: &Path) -> Result<Option<PartitionMeta>, Error> {
        let path = dir.join(META_FILE_NAME);
        let Some(bytes) = file::read_small_file(&path).await? else {
            return Ok(None);
        };
        let meta = PartitionMeta::decode(&bytes);
        if meta.is_none() {
            tracing::warn!(path = %path.display(), "partition.meta is corrupt; recovering every segment");
        }
        Ok(meta)
    }

    /// Decodes the file's bytes; `None` when they are not a checked archive of
    /// this format version.
    pub fn decode(bytes: &[u8]) -> Option<PartitionMeta> {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let meta = rkyv::from_bytes::<PartitionMeta, rkyv::rancor::Error>(&aligned).ok()?;
        (meta.format_version == META_FORMAT_VERSION && meta.crc == meta.checksum()).then_some(meta)
    }
}
