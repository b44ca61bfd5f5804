//! Storage domain numbers, kept apart by type where mixing them is a real
//! risk: a Kafka offset, a byte position in a segment file, a timestamp.
//! Each is `repr(transparent)` over the integer it wraps, so it costs nothing;
//! conversions to and from the wire integers are explicit (`get`, `From`).

/// A Kafka offset: the position of a record in a partition.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

/// A byte position in a segment file.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePosition(pub u64);

/// Milliseconds since the Unix epoch, Kafka's timestamp unit.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampMs(pub i64);

/// A record's timestamp and offset: what the time index, timestamp lookups
/// and ListOffsets answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampOffset {
    pub timestamp: TimestampMs,
    pub offset: Offset,
}

impl Offset {
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl FilePosition {
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl TimestampMs {
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl TimestampOffset {
    /// Kafka's answer where no record qualifies: -1 for both.
    pub const UNKNOWN: TimestampOffset = TimestampOffset::new(-1, -1);

    pub const fn new(timestamp_ms: i64, offset: i64) -> TimestampOffset {
        TimestampOffset {
            timestamp: TimestampMs(timestamp_ms),
            offset: Offset(offset),
        }
    }
}

impl From<i64> for Offset {
    fn from(offset: i64) -> Offset {
        Offset(offset)
    }
}

impl From<Offset> for i64 {
    fn from(offset: Offset) -> i64 {
        offset.0
    }
}

impl From<u64> for FilePosition {
    fn from(position: u64) -> FilePosition {
        FilePosition(position)
    }
}

impl From<FilePosition> for u64 {
    fn from(position: FilePosition) -> u64 {
        position.0
    }
}

impl From<i64> for TimestampMs {
    fn from(timestamp_ms: i64) -> TimestampMs {
        TimestampMs(timestamp_ms)
    }
}

impl From<TimestampMs> for i64 {
    fn from(timestamp: TimestampMs) -> i64 {
        timestamp.0
    }
}

const _: () = assert!(std::mem::size_of::<Offset>() == std::mem::size_of::<i64>());
const _: () = assert!(std::mem::size_of::<TimestampOffset>() == 2 * std::mem::size_of::<i64>());
