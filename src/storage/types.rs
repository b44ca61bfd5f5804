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
const _: () = assert!(std::mem::size_of::<TimestampOffset>() == 2 * std::mem::size_of::<i64>());
