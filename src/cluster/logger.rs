//! raft-rs logs through `slog`; this drain hands its records to `tracing`
//! (target `ringlog::cluster::raft`), with their key-values in the message.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// `quiet`: raft-rs's info records go to debug (a partition group's
/// elections are many; the controller's stay at info).
struct TracingDrain {
    quiet: bool,
}

/// Collects `key=value` pairs into one string.
struct Pairs(String);

impl slog::Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        // Formatting is the cost: records no subscriber wants are dropped first.
        let level = match record.level() {
            Level::Critical | Level::Error => tracing::Level::ERROR,
            Level::Warning => tracing::Level::WARN,
            Level::Info if !self.quiet => tracing::Level::INFO,
            Level::Info | Level::Debug | Level::Trace => tracing::Level::DEBUG,
        };
        let enabled = match level {
            tracing::Level::ERROR => {
                tracing::enabled!(target: "ringlog::cluster::raft", tracing::Level::ERROR)
            }
            tracing::Level::WARN => {
                tracing::enabled!(target: "ringlog::cluster::raft", tracing::Level::WARN)
            }
            tracing::Level::INFO => {
                tracing::enabled!(target: "ringlog::cluster::raft", tracing::Level::INFO)
            }
            _ => tracing::enabled!(target: "ringlog::cluster::raft", tracing::Level::DEBUG),
        };
        if !enabled {
            return Ok(());
        }
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let message = record.msg();
        let pairs = pairs.0;
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "ringlog::cluster::raft", "{message}{pairs}")
            }
            Level::Warning => tracing::warn!(target: "ringlog::cluster::raft", "{message}{pairs}"),
            Level::Info if !self.quiet => {
                tracing::info!(target: "ringlog::cluster::raft", "{message}{pairs}")
            }
            Level::Info => tracing::debug!(target: "ringlog::cluster::raft", "{message}{pairs}"),
            Level::Debug | Level::Trace => {
                tracing::debug!(target: "ringlog::cluster::raft", "{message}{pairs}")
            }
        }
        Ok(())
    }
}

/// The logger given to the controller's raft-rs.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain { quiet: false }.fuse(), slog::o!())
}

/// The logger given to a partition group's raft-rs, with its group named.
pub fn partition_raft_logger(topic: &str, partition: u32) -> slog::Logger {
    let group = format!("{topic}-{partition}");
    slog::Logger::root(
        TracingDrain { quiet: true }.fuse(),
        slog::o!("group" => group),
    )
}
