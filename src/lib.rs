//! ringlog: a Kafka-compatible event streaming broker, thread-per-core on io_uring.
//!
//! # Layout
//!
//! - [`client`]: a blocking Kafka client and the one record-batch builder, for tools and tests.
//! - [`clock`]: the wall clock in Kafka's milliseconds.
//! - [`cluster`]: running as a node of a cluster: the Raft controller, inter-broker transport, replicated metadata.
//! - [`config`]: configuration: defaults, file, flags, validation.
//! - [`topic_config`]: topic configs under Kafka's names and the storage settings they give.
//! - [`storage`]: the partition log: batches, segments, indexes, cache, retention, recovery.
//! - [`group`]: the consumer-group coordinator and the committed-offset store.
//! - [`kafka`]: one file per Kafka API family; decodes requests and encodes responses.
//! - [`metrics`]: per-shard counters and latencies, the `/metrics` and health endpoints.
//! - [`net`]: the accept loop and its connection limit, the connection loop, framing and limits.
//! - [`security`]: principals, SASL PLAIN and SCRAM, the stored SCRAM credentials, ACLs.
//! - [`shard`]: executors, placement, the topic table, partition routing and cross-shard calls.
//! - [`txn`]: producer ids for idempotent producers, from a durable block allocator.
//! - [`fuzzing`]: entry points to every decoder of untrusted bytes, for the fuzz targets and proptests.
//!
//! Data flows one way: `net` → `kafka` (decode, split by shard) → `shard`
//! (route) → `storage` / `group` → back up as a response.

pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod group;
pub mod ids;
pub mod kafka;
pub mod metrics;
pub mod net;
pub mod security;
pub mod shard;
pub mod storage;
pub mod topic_config;
pub mod txn;
