//! Producer-state snapshots in Kafka's layout: `<20-digit offset>.snapshot`
//! in the partition directory, holding the state of every producer after
//! all batches below that offset.
//!
//! The format is Kafka's `ProducerSnapshot` version 1, big-endian:
//! ```text
//! version i16 | crc u32 (CRC-32C of everything after it) | entries: count i32, then each:
//!   producerId i64 | epoch i16 | lastSequence i32 | lastOffset i64 | offsetDelta i32 |
//!   timestamp i64 | coordinatorEpoch i32 | currentTxnFirstOffset i64
//! ```
//! Like Kafka's, a snapshot keeps each producer's last batch only.

use std::path::Path;

use super::{decrement_sequence, BatchMetadata, ProducerEntry, ProducerStateTable};
use crate::storage::error::Error;
use crate::storage::file;
use crate::storage::types::Offset;

pub const SNAPSHOT_SUFFIX: &str = "snapshot";
pub const SNAPSHOT_VERSION: i16 = 1;
const HEADER_BYTES: usize = 2 + 4 + 4;
const CRC_COVERS_FROM: usize = 6;
const ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// Why a snapshot file was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("shorter than a snapshot header")]
    Truncated,
    #[error("unsupported snapshot version {0}")]
    Version(i16),
    #[error("CRC-32C mismatch")]
    Crc,
    #[error("entry count {0} does not match the file size")]
    EntryCount(i32),
}

pub fn file_name(offset: Offset) -> String {
    format!("{:020}.{SNAPSHOT_SUFFIX}", offset.get())
}

pub fn parse_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

pub fn encode(table: &ProducerStateTable) -> Vec<u8> {
    let mut entries: Vec<(i64, &ProducerEntry)> = table.iter().collect();
    entries.sort_unstable_by_key(|(id, _)| *id);
    let mut out = Vec::with_capacity(HEADER_BYTES + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for (producer_id, entry) in entries {
        let last = entry.last_batch();
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_seq).to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_offset.get()).to_be_bytes());
        let delta = last.map_or(0, |b| (b.last_offset - b.first_offset) as i32);
        out.extend_from_slice(&delta.to_be_bytes());
        out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        let txn_first = entry.current_txn_first_offset.map_or(-1, Offset::get);
        out.extend_from_slice(&txn_first.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_COVERS_FROM..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Big-endian reads from a buffer whose length was checked first.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        out
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

pub fn decode(bytes: &[u8]) -> Result<ProducerStateTable, SnapshotError> {
    if bytes.len() < HEADER_BYTES {
        return Err(SnapshotError::Truncated);
    }
    let mut reader = Reader(bytes);
    let version = reader.i16();
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(version));
    }
    let stored_crc = reader.i32() as u32;
    if crc32c::crc32c(&bytes[CRC_COVERS_FROM..]) != stored_crc {
        return Err(SnapshotError::Crc);
    }
    let count = reader.i32();
    let expected = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(ENTRY_BYTES));
    if expected != Some(bytes.len() - HEADER_BYTES) {
        return Err(SnapshotError::EntryCount(count));
    }
    let mut table = ProducerStateTable::default();
    for _ in 0..count {
        let producer_id = reader.i64();
        let epoch = reader.i16();
        let last_seq = reader.i32();
        let last_offset = reader.i64();
        let offset_delta = reader.i32();
        let timestamp_ms = reader.i64();
        let coordinator_epoch = reader.i32();
        let current_txn_first_offset = reader.i64();
        let mut entry = ProducerEntry::new(epoch);
        if last_seq >= 0 && offset_delta >= 0 {
            entry.push(
                epoch,
                BatchMetadata {
                    first_seq: decrement_sequence(last_seq, offset_delta),
                    last_seq,
                    first_offset: Offset(last_offset - i64::from(offset_delta)),
                    last_offset: Offset(last_offset),
                    timestamp_ms,
                },
            );
        }
        entry.last_timestamp_ms = timestamp_ms;
        entry.coordinator_epoch = coordinator_epoch;
        entry.current_txn_first_offset =
            (current_txn_first_offset >= 0).then_some(Offset(current_txn_first_offset));
        table.insert(producer_id, entry);
    }
    Ok(table)
}

/// The offsets of the snapshot files in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Offset>, Error> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_file_name) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes an [`encode`]d snapshot at `offset` (temp file, sync, rename).
pub async fn write_bytes(dir: &Path, offset: Offset, bytes: &[u8]) -> Result<(), Error> {
    file::write_file_atomically(dir, &file_name(offset), bytes).await
}

pub fn remove(dir: &Path, offset: Offset) -> Result<(), Error> {
    let path = dir.join(file_name(offset));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path, e)),
        _ => Ok(()),
    }
}

/// The newest valid snapshot at or below `end_offset`. Snapshots past it
/// (the log was cut shorter) and ones that do not decode are removed.
pub async fn load_latest(
    dir: &Path,
    end_offset: Offset,
) -> Result<Option<(Offset, ProducerStateTable)>, Error> {
    let mut offsets = list(dir)?;
    while let Some(offset) = offsets.pop() {
        if offset > end_offset {
            tracing::info!(dir = %dir.display(), offset = offset.get(), "removing a producer snapshot past the log end");
            remove(dir, offset)?;
            continue;
        }
        let path = dir.join(file_name(offset));
        let Some(bytes) = file::read_small_file(&path).await? else {
            continue;
        };
        match decode(&bytes) {
            Ok(table) => return Ok(Some((offset, table))),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "producer snapshot unusable; rebuilding from the log");
                remove(dir, offset)?;
            }
        }
    }
    Ok(None)
}
