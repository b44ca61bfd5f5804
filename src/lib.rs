//! ringlog: a Kafka-compatible event streaming broker, thread-per-core on io_uring.
//!
//! # Layout
//!
//! - [`config`]: configuration: defaults, file, flags, validation.
//! - [`storage`]: the partition log: batches, segments, indexes, cache, retention, recovery.
//! - [`group`]: the consumer-group coordinator and the committed-offset store.
//! - [`kafka`]: one file per Kafka API family; decodes requests and encodes responses.
//! - [`net`]: listener, connection loop, framing and limits.
//! - [`shard`]: executors, placement, the partition→shard table and cross-shard calls.
//! - [`metrics`]: counters and latency histograms.

pub mod group;
pub mod storage;
