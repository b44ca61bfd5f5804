//! Opening the logs a new topic table gives a shard: a bounded number at a
//! time, so that opening many partitions never holds more descriptors at
//! once than a few probes need; and, when one fails, removing the
//! directories this attempt created, so that a failed change leaves nothing
//! behind.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::Shard;
use crate::storage::{self, LogConfig, PartitionLog, StorageOptions};

/// Partition logs opened at once (each open probes O_DIRECT with two
/// short-lived descriptors, then keeps its active segment open).
pub const OPENS_IN_FLIGHT_MAX: usize = 16;

/// Partition logs closed at once at shutdown (each syncs its segment, its
/// indexes and its partition.meta; concurrent syncs share the disk's flushes).
pub const CLOSES_IN_FLIGHT_MAX: usize = 64;

/// One log to open: topic, partition index and its config.
pub type ToOpen = (Arc<str>, usize, LogConfig);

/// Opens every log in `opening`; on any failure, deletes what this call
/// created (never a directory that was there before) and returns the error.
pub async fn open_logs(
    shard: &Shard,
    opening: Vec<ToOpen>,
) -> Result<Vec<(Arc<str>, usize, Rc<PartitionLog>)>, storage::Error> {
    let options = StorageOptions {
        allow_buffered_io: shard.config.allow_buffered_io,
        producer_id_expiration_ms: shard.config.producer_id_expiration_ms,
    };
    let outcomes: Vec<_> = stream::iter(opening)
        .map(|(name, partition, config)| {
            let dir = shard.config.data_dir.join(format!("{name}-{partition}"));
            let cache = shard.cache.clone();
            let options = options.clone();
            async move {
                let existed = dir.exists();
                let opened = PartitionLog::open(dir.clone(), config, cache, options).await;
                (name, partition, dir, existed, opened)
            }
        })
        .buffer_unordered(OPENS_IN_FLIGHT_MAX)
        .collect()
        .await;
    if outcomes.iter().all(|(.., opened)| opened.is_ok()) {
        return Ok(outcomes
            .into_iter()
            .filter_map(|(name, partition, _, _, opened)| Some((name, partition, opened.ok()?)))
            .collect());
    }
    let mut first_error = None;
    for (_, _, dir, existed, opened) in outcomes {
        match opened {
            Ok(log) => {
                let undone = if existed {
                    log.close().await
                } else {
                    log.delete().await
                };
                if let Err(error) = undone {
                    tracing::error!(dir = %dir.display(), %error, "cannot undo a partition of a failed change");
                }
            }
            Err(error) => {
                if !existed {
                    remove_created(dir);
                }
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.expect("some open failed"))
}

fn remove_created(dir: PathBuf) {
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "cannot remove a partition of a failed change")
        }
    }
}
