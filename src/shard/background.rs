//! Work a shard does in the background, in its `Latency::NotImportant`
//! queue: retention, log compaction and closing unused logs.

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::clock::now_ms;
use crate::storage::cleaner::Cleaner;
use crate::storage::PartitionLog;

/// Enforces retention every `retention_check_interval_ms` until shutdown.
pub async fn retention_loop(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.retention_check_interval_ms);
    loop {
        if sleep_unless_shut_down(&shard, interval).await {
            return;
        }
        shard.enforce_retention(now_ms()).await;
    }
}

/// Closes logs left unused for about `partition_idle_close_ms` (looking every
/// half of it, a log closes between half of it and all of it after its last
/// use) until shutdown; never when it is 0.
pub async fn idle_close_loop(shard: Rc<Shard>) {
    if shard.config.partition_idle_close_ms == 0 {
        return;
    }
    let interval = Duration::from_millis(shard.config.partition_idle_close_ms / 2);
    loop {
        if sleep_unless_shut_down(&shard, interval).await {
            return;
        }
        shard.close_unused_logs().await;
    }
}

/// Cleans the shard's compacted partitions, one at a time, the dirtiest
/// first; waits `log_cleaner_backoff_ms` when none needs it.
pub async fn cleaner_loop(shard: Rc<Shard>) {
    let cleaner = Cleaner::new(shard.config.log_cleaner_dedupe_buffer_size);
    let backoff = Duration::from_millis(shard.config.log_cleaner_backoff_ms);
    loop {
        let logs: Vec<Rc<PartitionLog>> = shard
            .open_logs()
            .into_iter()
            .filter(|log| log.config().cleanup_policy.compact)
            .collect();
        let cleaned = match cleaner.clean_dirtiest(&logs, now_ms()).await {
            Ok(cleaned) => cleaned.is_some(),
            Err(error) => {
                tracing::error!(shard = shard.id.index(), %error, "log cleaning failed");
                false
            }
        };
        drop(logs);
        if cleaned {
            glommio::yield_if_needed().await;
            continue;
        }
        if sleep_unless_shut_down(&shard, backoff).await {
            return;
        }
    }
}

/// Sleeps for `duration`; true when the shard shuts down first.
async fn sleep_unless_shut_down(shard: &Shard, duration: Duration) -> bool {
    futures_lite::future::or(
        async {
            glommio::timer::sleep(duration).await;
            false
        },
        async {
            shard.shutdown.wait().await;
            true
        },
    )
    .await
}
