//! The transaction index (KIP-98): the aborted transactions of a partition,
//! kept per segment in `<base offset>.txnindex`, as Kafka lays it out.
//!
//! An entry is written for every ABORT marker that ended a transaction with
//! data on the partition, in the segment that holds the marker. Entries are
//! 34 bytes, big-endian, back to back:
//! ```text
//! version i16 (0) | producerId i64 | firstOffset i64 | lastOffset i64 | lastStableOffset i64
//! ```
//! `lastOffset` is the marker's offset; `lastStableOffset` is the last stable
//! offset right after the abort, which lets a read_committed fetch stop
//! looking once an entry's is past the fetched range (Kafka's
//! `TransactionIndex.collectAbortedTxns`).
//!
//! The log keeps every entry in memory (aborts are rare, an entry is small),
//! writes a sealed segment's file when it seals (an empty file when it has
//! none, so a missing file means "rebuild"), and rebuilds what recovery
//! replays from the log.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::Error;
use super::file;
use super::segment;
use super::types::Offset;

pub const TXN_INDEX_SUFFIX: &str = "txnindex";
pub const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    /// The ABORT marker's offset.
    pub last_offset: Offset,
    pub last_stable_offset: Offset,
}

/// Why a `.txnindex` file was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnIndexError {
    #[error("{0} bytes is not a whole number of entries")]
    Length(usize),
    #[error("unsupported entry version {0}")]
    Version(i16),
}

pub fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for entry in entries {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&entry.producer_id.to_be_bytes());
        out.extend_from_slice(&entry.first_offset.get().to_be_bytes());
        out.extend_from_slice(&entry.last_offset.get().to_be_bytes());
        out.extend_from_slice(&entry.last_stable_offset.get().to_be_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<AbortedTxn>, TxnIndexError> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return Err(TxnIndexError::Length(bytes.len()));
    }
    let i64_at = |entry: &[u8], at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&entry[at..at + 8]);
        i64::from_be_bytes(b)
    };
    bytes
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let version = i16::from_be_bytes([entry[0], entry[1]]);
            if version != ENTRY_VERSION {
                return Err(TxnIndexError::Version(version));
            }
            Ok(AbortedTxn {
                producer_id: i64_at(entry, 2),
                first_offset: Offset(i64_at(entry, 10)),
                last_offset: Offset(i64_at(entry, 18)),
                last_stable_offset: Offset(i64_at(entry, 26)),
            })
        })
        .collect()
}

pub fn file_name(base_offset: Offset) -> String {
    segment::file_name(base_offset, TXN_INDEX_SUFFIX)
}

/// The entries of the segment at `base_offset`; `None` when its file is
/// missing or does not decode (the caller rebuilds it from the log).
pub async fn load(dir: &Path, base_offset: Offset) -> Result<Option<Vec<AbortedTxn>>, Error> {
    let path = dir.join(file_name(base_offset));
    let Some(bytes) = file::read_small_file(&path).await? else {
        return Ok(None);
    };
    match decode(&bytes) {
        Ok(entries) => Ok(Some(entries)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "transaction index unusable; rebuilding from the log");
            Ok(None)
        }
    }
}

/// Writes a segment's entries (temp file, sync, rename): a torn write must
/// never read back as fewer aborted transactions.
/// An empty file needs no sync: lost, it is rebuilt; torn, it is still empty.
pub async fn write(dir: &Path, base_offset: Offset, entries: &[AbortedTxn]) -> Result<(), Error> {
    if entries.is_empty() {
        let path = dir.join(file_name(base_offset));
        return std::fs::write(&path, []).map_err(|e| Error::io("writing", path, e));
    }
    file::write_file_atomically(dir, &file_name(base_offset), &encode(entries)).await
}

/// The aborted transactions of one log, by the base offset of the segment
/// holding each marker; markers come in offset order, so entries are sorted
/// by `last_offset` within and across segments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TxnIndex {
    segments: BTreeMap<Offset, Vec<AbortedTxn>>,
}

impl TxnIndex {
    /// Records an abort whose marker is in the segment at `segment_base`.
    pub fn push(&mut self, segment_base: Offset, entry: AbortedTxn) {
        let entries = self.segments.entry(segment_base).or_default();
        debug_assert!(entries
            .last()
            .is_none_or(|last| last.last_offset < entry.last_offset));
        entries.push(entry);
    }

    /// Sets a segment's entries (loaded or rebuilt).
    pub fn set_segment(&mut self, segment_base: Offset, entries: Vec<AbortedTxn>) {
        if entries.is_empty() {
            self.segments.remove(&segment_base);
        } else {
            self.segments.insert(segment_base, entries);
        }
    }

    pub fn segment(&self, segment_base: Offset) -> &[AbortedTxn] {
        self.segments.get(&segment_base).map_or(&[], Vec::as_slice)
    }

    /// Forgets the segments below `first_base` (removed by retention,
    /// DeleteRecords or a truncation).
    pub fn remove_below(&mut self, first_base: Offset) {
        self.segments = self.segments.split_off(&first_base);
    }

    /// Forgets entries whose marker is at or past `end` (the log was cut there).
    pub fn truncate_to(&mut self, end: Offset) {
        for entries in self.segments.values_mut() {
            entries.retain(|entry| entry.last_offset < end);
        }
        self.segments.retain(|_, entries| !entries.is_empty());
    }

    /// Every entry, oldest marker first.
    pub fn iter(&self) -> impl Iterator<Item = &AbortedTxn> {
        self.segments.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.segments.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The aborted transactions a read_committed fetch of `[from, upper)`
    /// must report (Kafka's `collectAbortedTxns`): those that end at or after
    /// `from` and start before `upper`, searched from the segment holding
    /// `from` on until an entry's last stable offset reaches `upper`.
    pub fn collect(&self, from: Offset, upper: Offset, out: &mut Vec<AbortedTxn>) {
        let start = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(Offset::MIN, |(base, _)| *base);
        for entries in self.segments.range(start..).map(|(_, e)| e) {
            let first = entries.partition_point(|entry| entry.last_offset < from);
            for entry in &entries[first..] {
                if entry.first_offset < upper {
                    out.push(*entry);
                }
                if entry.last_stable_offset >= upper {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: Offset(first),
            last_offset: Offset(last),
            last_stable_offset: Offset(lso),
        }
    }

    #[test]
    fn entries_round_trip_in_kafkas_34_byte_layout() {
        let entries = [aborted(7, 10, 20, 21), aborted(8, 15, 30, 31)];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 2 * ENTRY_BYTES);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(decode(&bytes).expect("decodes"), entries);
        assert_eq!(decode(&bytes[..33]), Err(TxnIndexError::Length(33)));
        let mut bad = bytes.clone();
        bad[1] = 9;
        assert_eq!(decode(&bad), Err(TxnIndexError::Version(9)));
    }

    #[test]
    fn a_fetch_collects_the_aborts_that_overlap_its_range() {
        let mut index = TxnIndex::default();
        // Segment 0: p1 aborted 0..5; segment 100: p2 aborted 90..120, p3 150..160.
        index.push(Offset(0), aborted(1, 0, 5, 6));
        index.push(Offset(100), aborted(2, 90, 120, 121));
        index.push(Offset(100), aborted(3, 150, 160, 161));
        let collect = |index: &TxnIndex, from, upper| {
            let mut out = Vec::new();
            index.collect(Offset(from), Offset(upper), &mut out);
            out.iter().map(|e| e.producer_id).collect::<Vec<_>>()
        };
        assert_eq!(collect(&index, 0, 10), vec![1]);
        assert_eq!(collect(&index, 6, 95), vec![2]);
        assert_eq!(collect(&index, 95, 200), vec![2, 3]);
        assert_eq!(collect(&index, 121, 150), Vec::<i64>::new());
        index.remove_below(Offset(100));
        assert_eq!(collect(&index, 0, 10), Vec::<i64>::new());
        index.truncate_to(Offset(160));
        assert_eq!(index.len(), 1);
    }
}
