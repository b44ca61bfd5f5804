//! `ShardId`: which shard (executor) something lives on, kept apart by type
//! from counts, partition indexes and CPU numbers.

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

const _: () = assert!(std::mem::size_of::<ShardId>() == std::mem::size_of::<usize>());
