//! The per-shard batch cache: recently appended batches as `Bytes`, bounded by
//! bytes and evicted least-recently-used first. Shared by every partition log
//! of one shard (`Rc`, never crosses threads).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use super::types::Offset;

/// Identifies one open partition log within the cache.
pub type LogId = u64;

struct Entry {
    batch: Bytes,
    last_offset: Offset,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<(LogId, Offset), Entry>,
    /// Recency order: tick -> key. The smallest tick is evicted first.
    recency: BTreeMap<u64, (LogId, Offset)>,
    used_bytes: usize,
    next_tick: u64,
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub used_bytes: usize,
    pub entries: usize,
}

pub struct BatchCache {
    capacity_bytes: usize,
    inner: RefCell<Inner>,
    next_log_id: Cell<LogId>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl BatchCache {
    pub fn new(capacity_bytes: usize) -> Rc<BatchCache> {
        Rc::new(BatchCache {
            capacity_bytes,
            inner: RefCell::new(Inner::default()),
            next_log_id: Cell::new(1),
            hits: Cell::new(0),
            misses: Cell::new(0),
        })
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    pub(crate) fn register_log(&self) -> LogId {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }

    /// Caches one stored batch (base offset is the key). Batches larger than the
    /// whole cache are not cached.
    pub(crate) fn insert(
        &self,
        log: LogId,
        base_offset: Offset,
        last_offset: Offset,
        batch: Bytes,
    ) {
        if batch.len() > self.capacity_bytes {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        while inner.used_bytes + batch.len() > self.capacity_bytes {
            let Some((_, key)) = inner.recency.pop_first() else {
                break;
            };
            if let Some(old) = inner.entries.remove(&key) {
                inner.used_bytes -= old.batch.len();
            }
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.used_bytes += batch.len();
        inner.recency.insert(tick, (log, base_offset));
        if let Some(old) = inner.entries.insert(
            (log, base_offset),
            Entry {
                batch,
                last_offset,
                tick,
            },
        ) {
            inner.used_bytes -= old.batch.len();
            inner.recency.remove(&old.tick);
        }
    }

    /// The cached batch that contains `offset`, with its last offset.
    pub(crate) fn get_containing(&self, log: LogId, offset: Offset) -> Option<(Bytes, Offset)> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let found = inner
            .entries
            .range_mut((log, Offset::MIN)..=(log, offset))
            .next_back()
            .filter(|(_, e)| e.last_offset >= offset);
        let Some((key, entry)) = found else {
            self.misses.set(self.misses.get() + 1);
            return None;
        };
        let key = *key;
        inner.recency.remove(&entry.tick);
        entry.tick = inner.next_tick;
        inner.next_tick += 1;
        inner.recency.insert(entry.tick, key);
        self.hits.set(self.hits.get() + 1);
        Some((entry.batch.clone(), entry.last_offset))
    }

    /// Drops every batch of `log` at or above `from_offset` (truncation) or all of
    /// them (`Offset::MIN`, when the log closes).
    pub(crate) fn remove_log_from(&self, log: LogId, from_offset: Offset) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let keys: Vec<(LogId, Offset)> = inner
            .entries
            .range((log, from_offset)..=(log, Offset::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(e) = inner.entries.remove(&key) {
                inner.used_bytes -= e.batch.len();
                inner.recency.remove(&e.tick);
            }
        }
    }

    /// Drops every batch of `log` based below `end_offset` (a compaction
    /// rewrote the segments holding them).
    pub(crate) fn remove_log_below(&self, log: LogId, end_offset: Offset) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let keys: Vec<(LogId, Offset)> = inner
            .entries
            .range((log, Offset::MIN)..(log, end_offset))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(e) = inner.entries.remove(&key) {
                inner.used_bytes -= e.batch.len();
                inner.recency.remove(&e.tick);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.borrow();
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            used_bytes: inner.used_bytes,
            entries: inner.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_least_recently_used_by_bytes() {
        let cache = BatchCache::new(300);
        let log = cache.register_log();
        cache.insert(log, Offset(0), Offset(9), Bytes::from(vec![0u8; 100]));
        cache.insert(log, Offset(10), Offset(19), Bytes::from(vec![1u8; 100]));
        cache.insert(log, Offset(20), Offset(29), Bytes::from(vec![2u8; 100]));
        assert!(cache.get_containing(log, Offset(5)).is_some()); // 0 becomes most recent
        cache.insert(log, Offset(30), Offset(39), Bytes::from(vec![3u8; 100]));
        assert!(
            cache.get_containing(log, Offset(15)).is_none(),
            "10..19 was least recently used"
        );
        assert!(cache.get_containing(log, Offset(5)).is_some());
        assert!(cache.get_containing(log, Offset(35)).is_some());
        assert!(cache.stats().used_bytes <= 300);
    }

    #[test]
    fn lookup_finds_the_batch_containing_an_offset() {
        let cache = BatchCache::new(1000);
        let (a, b) = (cache.register_log(), cache.register_log());
        cache.insert(a, Offset(0), Offset(9), Bytes::from_static(b"aaaa"));
        cache.insert(b, Offset(0), Offset(9), Bytes::from_static(b"bbbb"));
        assert_eq!(
            cache.get_containing(a, Offset(9)),
            Some((Bytes::from_static(b"aaaa"), Offset(9)))
        );
        assert!(cache.get_containing(a, Offset(10)).is_none());
        cache.remove_log_from(a, Offset::MIN);
        assert!(cache.get_containing(a, Offset(3)).is_none());
        assert!(cache.get_containing(b, Offset(3)).is_some());
    }
}
