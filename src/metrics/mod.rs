//! Metrics and health: per-shard counters and latency histograms kept
//! without locks, gathered on scrape and served as Prometheus text on their
//! own listener (`--metrics-listen`), with `/health/live` and `/health/ready`.
//!
//! - [`local`]: the table each shard counts into (thread-local, plain integers);
//! - [`gather`]: a scrape's copy of every shard's numbers, over the cross-shard channels;
//! - [`exposition`]: the samples encoded under their `ringlog_` names;
//! - [`http`]: the HTTP server (hyper on glommio sockets) and the health state.

pub mod exposition;
pub mod gather;
pub mod http;
pub mod local;
