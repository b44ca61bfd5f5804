//! A pause at each step of a swap, for crash tests: in debug builds only,
//! `RINGLOG_CLEANER_PAUSE_MS=<ms>` makes the cleaner log the step and sleep
//! that long, so a test can kill the broker in the middle of a cleaning.

use std::time::Duration;

pub const PAUSE_VAR: &str = "RINGLOG_CLEANER_PAUSE_MS";

fn pause_ms() -> Option<u64> {
    if !cfg!(debug_assertions) {
        return None;
    }
    thread_local! {
        static PAUSE: Option<u64> = std::env::var(PAUSE_VAR).ok().and_then(|v| v.parse().ok());
    }
    PAUSE.with(|p| *p)
}

/// Logs `step` and sleeps when the pause is set; nothing otherwise.
pub async fn pause(step: &'static str) {
    if let Some(ms) = pause_ms() {
        tracing::info!(step, pause_ms = ms, "cleaner paused");
        glommio::timer::sleep(Duration::from_millis(ms)).await;
    }
}
