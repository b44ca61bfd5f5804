//! The counters and latency histograms one shard keeps for itself.
//!
//! Every executor thread is one shard, so a thread-local is the shard's own
//! table: the hot paths touch plain integers in `Cell`s and `RefCell`s, with
//! no lock, no atomic and nothing shared with another core. A scrape reads
//! the table on its own shard ([`super::gather`]) and carries a copy away.
//! Counting is per request or per batch, never per record, and allocates
//! only the first time a slot (an API, a topic, an error code) is seen.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::storage::batch::BatchIter;

/// Kafka API keys below this get a latency slot (the highest is in the 70s).
pub const API_KEYS_MAX: usize = 128;
/// The longest latency a histogram tells apart; longer ones count as this.
const LATENCY_US_MAX: u64 = 60_000_000;
/// 1% resolution: enough for buckets, and 20 KiB per histogram.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// The upper bounds of the exported latency buckets, in seconds.
pub const LATENCY_BUCKETS_SECONDS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One latency distribution: an hdrhistogram of microseconds and the exact sum.
pub struct Latency {
    histogram: Histogram<u64>,
    sum_us: u64,
}

/// A latency distribution as it is exported: cumulative bucket counts
/// ([`LATENCY_BUCKETS_SECONDS`]), the count and the sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySample {
    pub buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencySample {
    /// Adds another shard's distribution to this one.
    pub fn merge(&mut self, other: &LatencySample) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

impl Latency {
    fn new() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            sum_us: 0,
        }
    }

    fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(us.clamp(1, LATENCY_US_MAX));
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn sample(&self) -> LatencySample {
        let mut buckets = [0; LATENCY_BUCKETS_SECONDS.len()];
        for (count, bound) in buckets.iter_mut().zip(LATENCY_BUCKETS_SECONDS) {
            *count = self.histogram.count_between(0, (bound * 1e6) as u64);
        }
        LatencySample {
            buckets,
            count: self.histogram.len(),
            sum_seconds: self.sum_us as f64 / 1e6,
        }
    }
}

/// Records and bytes sent to consumers for one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub records: u64,
    pub bytes: u64,
}

/// Connections of this shard's Kafka listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub open: u64,
    pub accepted: u64,
    /// Closed on accept because the shard was at `max.connections`.
    pub refused: u64,
}

/// Jobs this shard sent to other shards, and those refused by a full inbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossShardCounts {
    pub sent: u64,
    pub rejected: u64,
}

/// Data removed by retention and by the log cleaner (compaction) on this shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageWork {
    pub retention_segments_deleted: u64,
    pub retention_bytes_deleted: u64,
    pub cleaner_runs: u64,
    /// Bytes of the sealed segments the cleanings went over.
    pub cleaner_bytes_read: u64,
    pub cleaner_bytes_removed: u64,
    pub cleaner_records_removed: u64,
}

/// A topic's id and a partition index (or [`WHOLE_TOPIC`]).
type FetchedKey = (uuid::Uuid, i32);

/// One shard's table. Only its own thread touches it.
#[derive(Default)]
pub struct ShardCounters {
    /// Request latency by API key (index), made on the API's first request.
    requests: RefCell<Vec<Option<Latency>>>,
    /// Errors answered, by (API key, Kafka error code).
    errors: RefCell<HashMap<(i16, i16), u64>>,
    connections: Cell<ConnectionCounts>,
    cross_shard: Cell<CrossShardCounts>,
    fsync: RefCell<Option<Latency>>,
    storage_work: Cell<StorageWork>,
    /// Fetched traffic by topic id (a random UUID, so one lookup per topic
    /// or partition of a response, never a string comparison) and partition
    /// ([`WHOLE_TOPIC`] when per-partition series are off), with the topic's name.
    fetched: RefCell<HashMap<FetchedKey, (Arc<str>, Traffic)>>,
}

thread_local! {
    static SHARD: ShardCounters = ShardCounters::default();
}

/// Runs `f` with this shard's table.
pub fn with<R>(f: impl FnOnce(&ShardCounters) -> R) -> R {
    SHARD.with(f)
}

/// A request of API `api_key` took from `started` until now.
pub fn request_done(api_key: i16, started: Instant) {
    let Ok(index) = usize::try_from(api_key) else {
        return;
    };
    if index >= API_KEYS_MAX {
        return;
    }
    let elapsed = started.elapsed();
    with(|shard| {
        let mut requests = shard.requests.borrow_mut();
        if requests.len() <= index {
            requests.resize_with(index + 1, || None);
        }
        requests[index]
            .get_or_insert_with(Latency::new)
            .record(elapsed);
    });
}

/// The API key an error is counted under: keys past [`API_KEYS_MAX`]
/// (not Kafka's, so from a broken or hostile client) share one, `-1`, to
/// keep the series bounded.
pub const API_KEY_UNKNOWN: i16 = -1;

/// A request of API `api_key` was answered (in one of its slots) with `code`.
pub fn request_error(api_key: i16, code: i16) {
    let api_key = match usize::try_from(api_key) {
        Ok(index) if index < API_KEYS_MAX => api_key,
        _ => API_KEY_UNKNOWN,
    };
    with(|shard| {
        *shard
            .errors
            .borrow_mut()
            .entry((api_key, code))
            .or_default() += 1
    });
}

/// The partition fetched traffic is counted under when it is counted per topic.
pub const WHOLE_TOPIC: i32 = -1;

/// Traffic fetched from one topic, or from one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedTraffic {
    pub topic: Arc<str>,
    /// `None` when counted for the whole topic.
    pub partition: Option<i32>,
    pub traffic: Traffic,
}

/// A fetch response carries `batches` of topic `id`, of its partition
/// `partition` or of several ([`WHOLE_TOPIC`]); counted per batch, from
/// each batch header's record count, never per record.
pub fn fetched<'a>(
    id: uuid::Uuid,
    name: &Arc<str>,
    partition: i32,
    batches: impl Iterator<Item = &'a Bytes>,
) {
    let (mut records, mut bytes) = (0u64, 0u64);
    for stored in batches {
        bytes += stored.len() as u64;
        records += BatchIter::new(stored)
            .filter_map(Result::ok)
            .map(|(header, _)| u64::try_from(header.record_count).unwrap_or(0))
            .sum::<u64>();
    }
    if bytes == 0 {
        return;
    }
    with(|shard| {
        let mut fetched = shard.fetched.borrow_mut();
        let (_, traffic) = fetched
            .entry((id, partition))
            .or_insert_with(|| (name.clone(), Traffic::default()));
        traffic.records += records;
        traffic.bytes += bytes;
    });
}

fn update_connections(change: impl FnOnce(&mut ConnectionCounts)) {
    with(|shard| {
        let mut counts = shard.connections.get();
        change(&mut counts);
        shard.connections.set(counts);
    });
}

pub fn connection_opened() {
    update_connections(|c| {
        c.accepted += 1;
        c.open += 1;
    });
}

pub fn connection_closed() {
    update_connections(|c| c.open = c.open.saturating_sub(1));
}

pub fn connection_refused() {
    update_connections(|c| c.refused += 1);
}

/// A job left for another shard (`rejected`: its inbox was full).
pub fn cross_shard_sent(rejected: bool) {
    with(|shard| {
        let mut counts = shard.cross_shard.get();
        if rejected {
            counts.rejected += 1;
        } else {
            counts.sent += 1;
        }
        shard.cross_shard.set(counts);
    });
}

/// An fdatasync of a segment file took `elapsed`.
pub fn fsync_done(elapsed: Duration) {
    with(|shard| {
        shard
            .fsync
            .borrow_mut()
            .get_or_insert_with(Latency::new)
            .record(elapsed)
    });
}

fn update_storage_work(change: impl FnOnce(&mut StorageWork)) {
    with(|shard| {
        let mut work = shard.storage_work.get();
        change(&mut work);
        shard.storage_work.set(work);
    });
}

/// Retention deleted `segments` whole segments holding `bytes`.
pub fn retention_deleted(segments: usize, bytes: u64) {
    update_storage_work(|w| {
        w.retention_segments_deleted += segments as u64;
        w.retention_bytes_deleted += bytes;
    });
}

/// One cleaning of a log went over `bytes_read` bytes of sealed segments
/// and removed `bytes_removed` bytes and `records_removed` records.
pub fn log_cleaned(bytes_read: u64, bytes_removed: u64, records_removed: u64) {
    update_storage_work(|w| {
        w.cleaner_runs += 1;
        w.cleaner_bytes_read += bytes_read;
        w.cleaner_bytes_removed += bytes_removed;
        w.cleaner_records_removed += records_removed;
    });
}

impl ShardCounters {
    /// Latency by API key, for the APIs that have been called.
    pub fn request_latencies(&self) -> Vec<(i16, LatencySample)> {
        let requests = self.requests.borrow();
        (0i16..)
            .zip(requests.iter())
            .filter_map(|(key, latency)| latency.as_ref().map(|l| (key, l.sample())))
            .collect()
    }

    pub fn errors(&self) -> Vec<((i16, i16), u64)> {
        let mut errors: Vec<_> = self.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect();
        errors.sort_unstable();
        errors
    }

    pub fn connections(&self) -> ConnectionCounts {
        self.connections.get()
    }

    pub fn cross_shard(&self) -> CrossShardCounts {
        self.cross_shard.get()
    }

    pub fn storage_work(&self) -> StorageWork {
        self.storage_work.get()
    }

    pub fn fsync_latency(&self) -> LatencySample {
        self.fsync
            .borrow()
            .as_ref()
            .map(Latency::sample)
            .unwrap_or_default()
    }

    /// Fetched traffic by topic and partition; topics for which `exists`
    /// says no (deleted since) are forgotten.
    pub fn fetched(&self, exists: impl Fn(&uuid::Uuid) -> bool) -> Vec<FetchedTraffic> {
        let mut fetched = self.fetched.borrow_mut();
        fetched.retain(|(id, _), _| exists(id));
        fetched
            .iter()
            .map(|((_, partition), (topic, traffic))| FetchedTraffic {
                topic: topic.clone(),
                partition: (*partition != WHOLE_TOPIC).then_some(*partition),
                traffic: traffic.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_count_every_request() {
        let mut latency = Latency::new();
        latency.record(Duration::from_micros(80));
        latency.record(Duration::from_millis(3));
        latency.record(Duration::from_secs(100));
        let sample = latency.sample();
        assert_eq!(sample.count, 3);
        assert_eq!(sample.buckets[0], 0, "nothing at or under 50 us");
        assert_eq!(sample.buckets[1], 1, "80 us is under 100 us");
        assert_eq!(sample.buckets[6], 2, "3 ms is under 5 ms");
        assert_eq!(*sample.buckets.last().unwrap(), 2, "100 s is past 30 s");
        assert!(sample.buckets.windows(2).all(|w| w[0] <= w[1]));
        assert!((sample.sum_seconds - 100.003_08).abs() < 1e-6);
    }

    #[test]
    fn api_keys_out_of_range_get_no_latency_and_share_one_error_slot() {
        // A thread of its own: its table starts empty whatever ran before.
        let counted = std::thread::spawn(|| {
            request_done(-1, Instant::now());
            request_done(API_KEYS_MAX as i16, Instant::now());
            request_done(0, Instant::now());
            request_error(0, 3);
            request_error(0, 3);
            request_error(999, 42);
            request_error(-7, 42);
            with(|shard| {
                let keys: Vec<i16> = shard.request_latencies().iter().map(|l| l.0).collect();
                (keys, shard.errors())
            })
        })
        .join()
        .expect("the counting thread");
        assert_eq!(counted.0, vec![0]);
        assert_eq!(counted.1, vec![((API_KEY_UNKNOWN, 42), 2), ((0, 3), 2)]);
    }
}
