//! Work a shard does in the background, in its `Latency::NotImportant`
//! queue: retention.

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::clock::now_ms;

/// Enforces retention every `retention_check_interval_ms` until shutdown.
pub async fn retention_loop(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.retention_check_interval_ms);
    loop {
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(interval).await;
                false
            },
            async {
                shard.shutdown.wait().await;
                true
            },
        )
        .await;
        if stopped {
            return;
        }
        shard.enforce_retention(now_ms()).await;
    }
}
