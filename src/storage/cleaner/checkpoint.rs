//! `cleaner.checkpoint`: the offset below which a partition's log has been
//! cleaned (Kafka's `cleaner-offset-checkpoint`), an rkyv archive written
//! via temp file + rename + fsync. Offsets from it on are dirty.

use std::path::Path;

use rkyv::{Archive, Deserialize, Serialize};

use super::super::error::Error;
use super::super::file;
use super::super::types::Offset;

pub const CHECKPOINT_FILE_NAME: &str = "cleaner.checkpoint";
const FORMAT_VERSION: u32 = 1;

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Checkpoint {
    format_version: u32,
    cleaned_to: i64,
    /// CRC-32C of the fields above.
    crc: u32,
}

fn checksum(format_version: u32, cleaned_to: i64) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&format_version.to_le_bytes()),
        &cleaned_to.to_le_bytes(),
    )
}

pub async fn store(dir: &Path, cleaned_to: Offset) -> Result<(), Error> {
    let checkpoint = Checkpoint {
        format_version: FORMAT_VERSION,
        cleaned_to: cleaned_to.get(),
        crc: checksum(FORMAT_VERSION, cleaned_to.get()),
    };
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&checkpoint).map_err(|e| {
        Error::io(
            "encoding",
            dir.join(CHECKPOINT_FILE_NAME),
            std::io::Error::other(e.to_string()),
        )
    })?;
    file::write_file_atomically(dir, CHECKPOINT_FILE_NAME, &bytes).await
}

/// The cleaned-to offset, or `None` when absent or damaged (everything is
/// then dirty, which costs a cleaning and loses nothing).
pub async fn load(dir: &Path) -> Result<Option<Offset>, Error> {
    let Some(bytes) = file::read_small_file(&dir.join(CHECKPOINT_FILE_NAME)).await? else {
        return Ok(None);
    };
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&bytes);
    let checkpoint = rkyv::from_bytes::<Checkpoint, rkyv::rancor::Error>(&aligned).ok();
    Ok(checkpoint
        .filter(|c| {
            c.format_version == FORMAT_VERSION && c.crc == checksum(c.format_version, c.cleaned_to)
        })
        .map(|c| Offset(c.cleaned_to)))
}
