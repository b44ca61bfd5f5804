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

/// `get` and the `From` conversions both ways between a domain number and
/// the integer it wraps.
macro_rules! wraps_integer {
    ($name:ident, $integer:ty) => {
        impl $name {
            pub const fn get(self) -> $integer {
                self.0
            }
        }

        impl From<$integer> for $name {
            fn from(value: $integer) -> $name {
                $name(value)
            }
        }

        impl From<$name> for $integer {
            fn from(value: $name) -> $integer {
                value.0
            }
        }
    };
}

wraps_integer!(Offset, i64);
wraps_integer!(FilePosition, u64);
wraps_integer!(TimestampMs, i64);

impl Offset {
    /// Below every offset a log holds (for ranges over all of them).
    pub const MIN: Offset = Offset(i64::MIN);
    /// Above every offset a log holds.
    pub const MAX: Offset = Offset(i64::MAX);
}

/// Offsets `count` records further on.
impl std::ops::Add<i64> for Offset {
    type Output = Offset;
    fn add(self, count: i64) -> Offset {
        Offset(self.0 + count)
    }
}

impl std::ops::AddAssign<i64> for Offset {
    fn add_assign(&mut self, count: i64) {
        self.0 += count;
    }
}

/// Offsets `count` records back.
impl std::ops::Sub<i64> for Offset {
    type Output = Offset;
    fn sub(self, count: i64) -> Offset {
        Offset(self.0 - count)
    }
}

/// The number of records between two offsets.
impl std::ops::Sub<Offset> for Offset {
    type Output = i64;
    fn sub(self, earlier: Offset) -> i64 {
        self.0 - earlier.0
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FilePosition {
    /// The start of a file.
    pub const ZERO: FilePosition = FilePosition(0);
}

/// The position `bytes` further into the file.
impl std::ops::Add<u64> for FilePosition {
    type Output = FilePosition;
    fn add(self, bytes: u64) -> FilePosition {
        FilePosition(self.0 + bytes)
    }
}

impl std::ops::AddAssign<u64> for FilePosition {
    fn add_assign(&mut self, bytes: u64) {
        self.0 += bytes;
    }
}

/// The bytes between two positions.
impl std::ops::Sub<FilePosition> for FilePosition {
    type Output = u64;
    fn sub(self, earlier: FilePosition) -> u64 {
        self.0 - earlier.0
    }
}

impl std::fmt::Display for FilePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
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

const _: () = assert!(std::mem::size_of::<Offset>() == std::mem::size_of::<i64>());
const _: () = assert!(std::mem::size_of::<FilePosition>() == std::mem::size_of::<u64>());
const _: () = assert!(std::mem::size_of::<TimestampOffset>() == 2 * std::mem::size_of::<i64>());
