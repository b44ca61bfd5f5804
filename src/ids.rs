//! `ShardId`: which shard (executor) something lives on; `PartitionId`: a
//! partition's index within its topic. Kept apart by type from each other,
//! from counts and from CPU numbers.

/// A shard's number, `0..shard_count`. `repr(transparent)` over `usize`; it
/// becomes a plain `usize` only to index per-shard tables ([`ShardId::index`]).
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl ShardId {
    /// The position of this shard in a per-shard table.
    pub const fn index(self) -> usize {
        self.0
    }

    /// Every shard of a broker running `shard_count` of them, in order.
    pub fn all(shard_count: usize) -> impl Iterator<Item = ShardId> {
        (0..shard_count).map(ShardId)
    }
}

impl From<usize> for ShardId {
    fn from(index: usize) -> ShardId {
        ShardId(index)
    }
}

/// Written as the bare number, as logs have always shown shards.
impl std::fmt::Debug for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition's index within its topic, Kafka's `int32` partition.
/// `repr(transparent)` over `i32`; the Kafka layer converts it from and to
/// the wire integer (`From`, [`PartitionId::get`]).
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(pub i32);

impl PartitionId {
    pub const fn get(self) -> i32 {
        self.0
    }

    /// The position of this partition in a per-topic table; `None` for a
    /// negative index, which no topic has.
    pub fn index(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }

    /// The partition at position `index` of a per-topic table.
    pub fn from_index(index: usize) -> PartitionId {
        debug_assert!(
            i32::try_from(index).is_ok(),
            "partition index fits Kafka's int32"
        );
        PartitionId(index as i32)
    }
}

impl From<i32> for PartitionId {
    fn from(partition: i32) -> PartitionId {
        PartitionId(partition)
    }
}

impl From<PartitionId> for i32 {
    fn from(partition: PartitionId) -> i32 {
        partition.0
    }
}

/// Written as the bare number, as logs have always shown partitions.
impl std::fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

const _: () = assert!(std::mem::size_of::<ShardId>() == std::mem::size_of::<usize>());
const _: () = assert!(std::mem::size_of::<PartitionId>() == std::mem::size_of::<i32>());
