//! Sparse per-segment indexes, kept in memory and persisted as rkyv archives
//! when a segment rolls and on clean shutdown:
//! - the offset index maps a batch's base offset to its file position;
//! - the time index maps a new maximum timestamp to the batch that reached it.
//!
//! A persisted index names the segment size it describes and carries a CRC-32C
//! of its entries; one that does not match the segment is rebuilt by a scan.

use rkyv::{Archive, Deserialize, Serialize};

use super::types::{FilePosition, Offset, TimestampOffset};

/// Bumped when the archived layout changes; other versions are rebuilt.
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// Bound on entries per segment (a 1 GiB segment at 4 KiB intervals needs 262144).
pub const INDEX_ENTRIES_MAX: usize = 4 * 1024 * 1024;

/// A batch's base offset and where it starts in the segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub offset: Offset,
    pub position: FilePosition,
}

/// A new maximum timestamp, the batch that reached it and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub offset: Offset,
    pub position: FilePosition,
}

/// An [`OffsetEntry`] as the `.index` archive stores it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct StoredOffsetEntry {
    offset: i64,
    position: u64,
}

/// A [`TimeEntry`] as the `.timeindex` archive stores it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct StoredTimeEntry {
    timestamp_ms: i64,
    offset: i64,
    position: u64,
}

impl From<&OffsetEntry> for StoredOffsetEntry {
    fn from(e: &OffsetEntry) -> StoredOffsetEntry {
        StoredOffsetEntry {
            offset: e.offset.get(),
            position: e.position.get(),
        }
    }
}

impl From<&StoredOffsetEntry> for OffsetEntry {
    fn from(e: &StoredOffsetEntry) -> OffsetEntry {
        OffsetEntry {
            offset: Offset(e.offset),
            position: FilePosition(e.position),
        }
    }
}

impl From<&TimeEntry> for StoredTimeEntry {
    fn from(e: &TimeEntry) -> StoredTimeEntry {
        StoredTimeEntry {
            timestamp_ms: e.timestamp_ms,
            offset: e.offset.get(),
            position: e.position.get(),
        }
    }
}

impl From<&StoredTimeEntry> for TimeEntry {
    fn from(e: &StoredTimeEntry) -> TimeEntry {
        TimeEntry {
            timestamp_ms: e.timestamp_ms,
            offset: Offset(e.offset),
            position: FilePosition(e.position),
        }
    }
}

/// Both indexes of a segment plus what the segment's batches summarise to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Largest batch maxTimestamp and the base offset of the first batch that has it.
    pub max_timestamp: Option<TimestampOffset>,
    /// Bytes appended since the last entry of each index.
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug)]
struct OffsetIndexFile {
    format_version: u32,
    base_offset: i64,
    segment_bytes: u64,
    next_offset: i64,
    entries: Vec<StoredOffsetEntry>,
    crc: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug)]
struct TimeIndexFile {
    format_version: u32,
    base_offset: i64,
    segment_bytes: u64,
    entries: Vec<StoredTimeEntry>,
    max_timestamp_ms: i64,
    max_timestamp_offset: i64,
    has_max_timestamp: bool,
    crc: u32,
}

fn offsets_crc(entries: &[StoredOffsetEntry]) -> u32 {
    entries.iter().fold(0, |crc, e| {
        let crc = crc32c::crc32c_append(crc, &e.offset.to_le_bytes());
        crc32c::crc32c_append(crc, &e.position.to_le_bytes())
    })
}

fn times_crc(entries: &[StoredTimeEntry], max: Option<TimestampOffset>) -> u32 {
    let crc = entries.iter().fold(0, |crc, e| {
        let crc = crc32c::crc32c_append(crc, &e.timestamp_ms.to_le_bytes());
        let crc = crc32c::crc32c_append(crc, &e.offset.to_le_bytes());
        crc32c::crc32c_append(crc, &e.position.to_le_bytes())
    });
    let (t, o) = archived_max(max);
    let crc = crc32c::crc32c_append(crc, &t.to_le_bytes());
    crc32c::crc32c_append(crc, &o.to_le_bytes())
}

/// The time index file keeps the maximum as two integers (`i64::MIN` for
/// none), as it always has.
fn archived_max(max: Option<TimestampOffset>) -> (i64, i64) {
    max.map_or((i64::MIN, i64::MIN), |m| {
        (m.timestamp.get(), m.offset.get())
    })
}

impl SegmentIndex {
    /// Records a batch appended at `position`; adds sparse entries every
    /// `interval_bytes` (the first batch of a segment is always indexed).
    pub fn on_batch(
        &mut self,
        base_offset: Offset,
        max_timestamp_ms: i64,
        position: FilePosition,
        size: u64,
        interval_bytes: u32,
    ) {
        let interval = u64::from(interval_bytes.max(1));
        if (self.offsets.is_empty() || self.bytes_since_offset_entry >= interval)
            && self.offsets.len() < INDEX_ENTRIES_MAX
        {
            self.offsets.push(OffsetEntry {
                offset: base_offset,
                position,
            });
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += size;
        // A batch without a timestamp (-1) is no segment's newest: retention
        // then falls back to the segment's creation time, as Kafka does.
        let is_new_max = max_timestamp_ms >= 0
            && self
                .max_timestamp
                .is_none_or(|max| max_timestamp_ms > max.timestamp.get());
        if is_new_max {
            self.max_timestamp = Some(TimestampOffset::new(max_timestamp_ms, base_offset.get()));
            if (self.times.is_empty() || self.bytes_since_time_entry >= interval)
                && self.times.len() < INDEX_ENTRIES_MAX
            {
                self.times.push(TimeEntry {
                    timestamp_ms: max_timestamp_ms,
                    offset: base_offset,
                    position,
                });
                self.bytes_since_time_entry = 0;
            }
        }
        self.bytes_since_time_entry += size;
    }

    /// Position from which to scan for the batch containing `offset`.
    pub fn position_for_offset(&self, offset: Offset) -> FilePosition {
        let i = self.offsets.partition_point(|e| e.offset <= offset);
        if i == 0 {
            FilePosition::ZERO
        } else {
            self.offsets[i - 1].position
        }
    }

    /// Position from which to scan for the first batch with maxTimestamp >= `timestamp_ms`:
    /// every batch before the last entry with a smaller timestamp is below it.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> FilePosition {
        let i = self
            .times
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        if i == 0 {
            FilePosition::ZERO
        } else {
            self.times[i - 1].position
        }
    }

    /// Drops entries at or beyond `position` (after a truncation).
    pub fn truncate_to(&mut self, position: FilePosition) {
        self.offsets.retain(|e| e.position < position);
        self.times.retain(|e| e.position < position);
    }

    pub fn encode_offsets(
        &self,
        base_offset: Offset,
        segment_bytes: u64,
        next_offset: Offset,
    ) -> Result<Vec<u8>, rkyv::rancor::Error> {
        let entries: Vec<StoredOffsetEntry> = self.offsets.iter().map(Into::into).collect();
        let file = OffsetIndexFile {
            format_version: INDEX_FORMAT_VERSION,
            base_offset: base_offset.get(),
            segment_bytes,
            next_offset: next_offset.get(),
            crc: offsets_crc(&entries),
            entries,
        };
        Ok(rkyv::to_bytes::<rkyv::rancor::Error>(&file)?.into_vec())
    }

    pub fn encode_times(
        &self,
        base_offset: Offset,
        segment_bytes: u64,
    ) -> Result<Vec<u8>, rkyv::rancor::Error> {
        let (t, o) = archived_max(self.max_timestamp);
        let entries: Vec<StoredTimeEntry> = self.times.iter().map(Into::into).collect();
        let file = TimeIndexFile {
            format_version: INDEX_FORMAT_VERSION,
            base_offset: base_offset.get(),
            segment_bytes,
            max_timestamp_ms: t,
            max_timestamp_offset: o,
            has_max_timestamp: self.max_timestamp.is_some(),
            crc: times_crc(&entries, self.max_timestamp),
            entries,
        };
        Ok(rkyv::to_bytes::<rkyv::rancor::Error>(&file)?.into_vec())
    }

    /// Loads both persisted indexes and the segment's next offset; `None` if either
    /// is missing, corrupt, or describes another segment size (then the caller
    /// rebuilds by scanning).
    pub fn decode(
        offsets: &[u8],
        times: &[u8],
        base_offset: Offset,
        segment_bytes: u64,
    ) -> Option<(SegmentIndex, Offset)> {
        let base_offset = base_offset.get();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(offsets);
        let o = rkyv::from_bytes::<OffsetIndexFile, rkyv::rancor::Error>(&aligned).ok()?;
        aligned.clear();
        aligned.extend_from_slice(times);
        let t = rkyv::from_bytes::<TimeIndexFile, rkyv::rancor::Error>(&aligned).ok()?;
        let max_timestamp = t.has_max_timestamp.then_some(TimestampOffset::new(
            t.max_timestamp_ms,
            t.max_timestamp_offset,
        ));
        let consistent = o.format_version == INDEX_FORMAT_VERSION
            && t.format_version == INDEX_FORMAT_VERSION
            && o.base_offset == base_offset
            && t.base_offset == base_offset
            && o.segment_bytes == segment_bytes
            && o.next_offset >= base_offset
            && (segment_bytes > 0 || o.next_offset == base_offset)
            && t.segment_bytes == segment_bytes
            && o.crc == offsets_crc(&o.entries)
            && t.crc == times_crc(&t.entries, max_timestamp)
            && o.entries.len() <= INDEX_ENTRIES_MAX
            && t.entries.len() <= INDEX_ENTRIES_MAX
            && o.entries
                .windows(2)
                .all(|w| w[0].offset < w[1].offset && w[0].position < w[1].position)
            && o.entries
                .iter()
                .all(|e| e.position < segment_bytes && e.offset >= base_offset)
            && t.entries
                .windows(2)
                .all(|w| w[0].timestamp_ms < w[1].timestamp_ms && w[0].position < w[1].position)
            && t.entries
                .iter()
                .all(|e| e.position < segment_bytes && e.offset >= base_offset)
            && (segment_bytes == 0
                || (o.entries.first().map(|e| e.position) == Some(0) && max_timestamp.is_some()));
        if !consistent {
            return None;
        }
        let next_offset = Offset(o.next_offset);
        let index = SegmentIndex {
            offsets: o.entries.iter().map(Into::into).collect(),
            times: t.entries.iter().map(Into::into).collect(),
            max_timestamp,
            // A loaded index belongs to a closed segment; a reopened active segment
            // starts a fresh interval, which only makes the index denser.
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
        };
        Some((index, next_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::NO_TIMESTAMP;

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::default();
        for i in 0..100u64 {
            index.on_batch(
                Offset(100 + i as i64 * 10),
                1000 + (i as i64 % 7) * 3 + i as i64,
                FilePosition(i * 1000),
                1000,
                4096,
            );
        }
        index
    }

    #[test]
    fn persisted_index_round_trips() {
        let index = sample();
        let o = index
            .encode_offsets(Offset(100), 100_000, Offset(1100))
            .expect("encodes");
        let t = index.encode_times(Offset(100), 100_000).expect("encodes");
        let (back, next) = SegmentIndex::decode(&o, &t, Offset(100), 100_000).expect("decodes");
        assert_eq!(next, Offset(1100));
        assert_eq!(back.offsets, index.offsets);
        assert_eq!(back.times, index.times);
        assert_eq!(back.max_timestamp, index.max_timestamp);
    }

    #[test]
    fn index_for_another_segment_size_is_refused() {
        let index = sample();
        let o = index
            .encode_offsets(Offset(100), 100_000, Offset(1100))
            .expect("encodes");
        let t = index.encode_times(Offset(100), 100_000).expect("encodes");
        assert!(SegmentIndex::decode(&o, &t, Offset(100), 99_000).is_none());
    }

    #[test]
    fn garbled_index_is_refused() {
        let index = sample();
        let mut o = index
            .encode_offsets(Offset(100), 100_000, Offset(1100))
            .expect("encodes");
        let t = index.encode_times(Offset(100), 100_000).expect("encodes");
        let mid = o.len() / 2;
        o[mid] ^= 0x5a;
        assert!(SegmentIndex::decode(&o, &t, Offset(100), 100_000).is_none());
    }

    #[test]
    fn offset_lookup_returns_floor_position() {
        let index = sample();
        assert_eq!(index.position_for_offset(Offset(100)), FilePosition::ZERO);
        let p = index.position_for_offset(Offset(100 + 50 * 10 + 3));
        assert!(p <= FilePosition(50 * 1000));
    }

    #[test]
    fn a_batch_without_a_timestamp_is_no_segments_newest() {
        let mut index = SegmentIndex::default();
        index.on_batch(Offset(0), NO_TIMESTAMP, FilePosition::ZERO, 80, 4096);
        assert_eq!(
            index.max_timestamp, None,
            "retention falls back to the creation time"
        );
        index.on_batch(Offset(1), 5_000, FilePosition(80), 80, 4096);
        index.on_batch(Offset(2), NO_TIMESTAMP, FilePosition(160), 80, 4096);
        assert_eq!(index.max_timestamp, Some(TimestampOffset::new(5_000, 1)));
    }
}
