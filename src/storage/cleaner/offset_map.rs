//! The cleaner's offset map: key hash -> offset of the key's latest record,
//! in a fixed budget of memory (Kafka's `SkimpyOffsetMap`). An open-addressed
//! table with linear probing; it reports "full" rather than grow.

use std::hash::{Hash, Hasher};

/// Bytes one entry takes: a 128-bit key hash and an offset.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Slot>();
/// The share of slots filled before the map counts as full, in percent
/// (Kafka's `log.cleaner.io.buffer.load.factor`, 0.9).
pub const LOAD_PERCENT: usize = 90;
/// The smallest table, whatever the estimate.
pub const SLOTS_MIN: usize = 1024;

const _: () = assert!(ENTRY_BYTES == 24);

/// A 128-bit hash of a record key. Two keys with the same hash count as one
/// key, so the hash is wide enough that this does not happen in practice
/// (Kafka uses MD5 for the same reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KeyHash([u64; 2]);

impl KeyHash {
    pub fn of(key: &[u8]) -> KeyHash {
        let half = |seed: u8| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            seed.hash(&mut hasher);
            key.hash(&mut hasher);
            hasher.finish()
        };
        KeyHash([half(0x5a), half(0xa5)])
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: KeyHash,
    /// `EMPTY` while unused.
    offset: i64,
}

const EMPTY: i64 = -1;

pub struct OffsetMap {
    slots: Vec<Slot>,
    used: usize,
    /// `used` may not pass this.
    limit: usize,
}

impl OffsetMap {
    /// A map within `budget_bytes` with room for about `expected_keys`
    /// (a power of two of slots, at least [`SLOTS_MIN`]).
    pub fn new(budget_bytes: usize, expected_keys: usize) -> OffsetMap {
        let budget_slots = (budget_bytes / ENTRY_BYTES).max(SLOTS_MIN);
        let budget_slots = 1usize << (usize::BITS - 1 - budget_slots.leading_zeros());
        let wanted = (expected_keys.saturating_mul(100) / LOAD_PERCENT + 1)
            .max(SLOTS_MIN)
            .checked_next_power_of_two()
            .unwrap_or(budget_slots);
        let slots = wanted.min(budget_slots);
        OffsetMap {
            slots: vec![
                Slot {
                    hash: KeyHash::default(),
                    offset: EMPTY,
                };
                slots
            ],
            used: 0,
            limit: slots * LOAD_PERCENT / 100,
        }
    }

    fn slot_of(&self, hash: KeyHash) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = (hash.0[0] as usize) & mask;
        loop {
            let slot = &self.slots[i];
            if slot.offset == EMPTY || slot.hash == hash {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `offset` as the latest of `hash`. False when the key is new
    /// and the map is full (nothing is changed then).
    pub fn insert(&mut self, hash: KeyHash, offset: i64) -> bool {
        debug_assert!(offset >= 0);
        let i = self.slot_of(hash);
        let slot = &mut self.slots[i];
        if slot.offset == EMPTY {
            if self.used >= self.limit {
                return false;
            }
            self.used += 1;
            slot.hash = hash;
        }
        slot.offset = slot.offset.max(offset);
        true
    }

    /// The latest offset recorded for `hash`.
    pub fn get(&self, hash: KeyHash) -> Option<i64> {
        let slot = &self.slots[self.slot_of(hash)];
        (slot.offset != EMPTY).then_some(slot.offset)
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// How many keys fit at most.
    pub fn capacity(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_wins_and_a_full_map_refuses_new_keys_only() {
        let mut map = OffsetMap::new(SLOTS_MIN * ENTRY_BYTES, 10);
        assert_eq!(map.capacity(), SLOTS_MIN * LOAD_PERCENT / 100);
        let key = |i: usize| KeyHash::of(format!("key-{i}").as_bytes());
        for i in 0..map.capacity() {
            assert!(map.insert(key(i), i as i64));
        }
        assert!(!map.insert(key(usize::MAX), 5), "full");
        assert!(map.insert(key(3), 9000), "known keys still update");
        assert!(map.insert(key(3), 7), "an older offset is ignored");
        assert_eq!(map.get(key(3)), Some(9000));
        assert_eq!(map.get(key(4)), Some(4));
        assert_eq!(map.get(key(usize::MAX)), None);
    }

    #[test]
    fn the_table_is_sized_by_the_estimate_within_the_budget() {
        assert_eq!(OffsetMap::new(1 << 30, 10).slots.len(), SLOTS_MIN);
        assert_eq!(OffsetMap::new(1 << 30, 100_000).slots.len(), 131_072);
        assert_eq!(
            OffsetMap::new(4096 * ENTRY_BYTES, 100_000).slots.len(),
            4096
        );
    }
}
