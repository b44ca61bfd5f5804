//! Kafka's flush policy: `flush.messages` (sync once that many records are
//! unsynced) and `flush.ms` (sync once the oldest unsynced write is that old,
//! checked by a timer task while the setting is finite).

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::super::config::{LogConfig, KAFKA_LONG_MAX};
use super::PartitionLog;

/// Bounds on the flush.ms timer's sleep, so a huge flush.ms cannot overflow a
/// Duration and a config change is noticed within a second.
const FLUSH_TICK_MS_MIN: u64 = 1;
const FLUSH_TICK_MS_MAX: u64 = 1000;

/// What the flush policy counts between syncs.
pub(super) struct FlushState {
    unflushed_records: u64,
    last_flush_ms: i64,
    /// Whether the flush.ms timer task runs.
    timer_running: bool,
}

impl FlushState {
    pub(super) fn new(now_ms: i64) -> FlushState {
        FlushState {
            unflushed_records: 0,
            last_flush_ms: now_ms,
            timer_running: false,
        }
    }

    /// Counts `records` staged at `now_ms`; says whether the policy asks
    /// for a sync now.
    pub(super) fn on_staged(&mut self, records: u64, config: &LogConfig, now_ms: i64) -> bool {
        self.unflushed_records += records;
        self.unflushed_records >= config.flush_messages || self.interval_elapsed(config, now_ms)
    }

    pub(super) fn on_sync_started(&mut self, now_ms: i64) {
        self.unflushed_records = 0;
        self.last_flush_ms = now_ms;
    }

    fn interval_elapsed(&self, config: &LogConfig, now_ms: i64) -> bool {
        config.flush_ms < KAFKA_LONG_MAX
            && now_ms.saturating_sub(self.last_flush_ms) >= config.flush_ms as i64
    }
}

impl PartitionLog {
    /// Starts the flush.ms timer task unless it runs already or flush.ms is
    /// "never".
    pub(super) fn start_flusher_if_needed(self: &Rc<Self>) {
        {
            let mut state = self.state.borrow_mut();
            if state.flush.timer_running || state.config.flush_ms >= KAFKA_LONG_MAX || state.closed
            {
                return;
            }
            state.flush.timer_running = true;
        }
        // Weak, so the timer does not keep a dropped log alive.
        let weak: Weak<PartitionLog> = Rc::downgrade(self);
        glommio::spawn_local(run_flush_timer(weak)).detach();
    }

    /// How long the timer sleeps next, or `None` once it should end (closed,
    /// stopped, or flush.ms set to "never").
    fn flush_tick_ms(&self) -> Option<u64> {
        let mut state = self.state.borrow_mut();
        if state.closed || state.stopped.is_some() || state.config.flush_ms >= KAFKA_LONG_MAX {
            state.flush.timer_running = false;
            return None;
        }
        Some(
            state
                .config
                .flush_ms
                .clamp(FLUSH_TICK_MS_MIN, FLUSH_TICK_MS_MAX),
        )
    }

    /// Whether written bytes wait for a sync longer than flush.ms.
    fn flush_timer_due(&self) -> bool {
        let state = self.state.borrow();
        state.pipeline.written_seq() > self.commit.durable_seq()
            && state.flush.interval_elapsed(&state.config, (self.clock)())
    }
}

async fn run_flush_timer(weak: Weak<PartitionLog>) {
    loop {
        let Some(tick_ms) = weak.upgrade().and_then(|log| log.flush_tick_ms()) else {
            return;
        };
        glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
        let Some(log) = weak.upgrade() else { return };
        if log.flush_timer_due() {
            // A failure stops the partition inside flush(); the loop then ends.
            let _ = log.flush().await;
        }
    }
}
