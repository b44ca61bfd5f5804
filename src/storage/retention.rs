//! Which whole segments retention removes: by age (retention.ms), by total
//! size (retention.bytes) and below the log start offset. The active segment
//! is never removed.

use super::log::State;
use super::segment::Segment;

/// How many of the oldest segments are beyond retention at `now_ms`.
pub(crate) fn expired_segments(state: &State, now_ms: i64) -> usize {
    let sealed = state.segments.len().saturating_sub(1);
    let mut by_time = 0;
    if state.config.retention_ms >= 0 {
        // Kafka: a segment expires when its largest timestamp is older than retention.ms.
        by_time = state
            .segments
            .values()
            .take(sealed)
            .take_while(|s| {
                let newest = s
                    .index
                    .max_timestamp
                    .map(|(t, _)| t)
                    .unwrap_or(s.created_ms);
                now_ms.saturating_sub(newest) > state.config.retention_ms
            })
            .count();
    }
    let mut by_size = 0;
    if state.config.retention_bytes >= 0 {
        // Kafka: delete while the log stays at or above retention.bytes without the segment.
        let total: u64 = state.segments.values().map(|s| s.written_bytes).sum();
        let mut excess = total as i64 - state.config.retention_bytes;
        for s in state.segments.values().take(sealed) {
            if excess - (s.written_bytes as i64) < 0 {
                break;
            }
            excess -= s.written_bytes as i64;
            by_size += 1;
        }
    }
    by_time.max(by_size)
}

/// Removes the `count` oldest segments and moves the log start offset past them.
pub(crate) fn remove_oldest(state: &mut State, count: usize) -> Vec<Segment> {
    let count = count.min(state.segments.len().saturating_sub(1));
    let mut removed = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some((_, segment)) = state.segments.pop_first() {
            removed.push(segment);
        }
    }
    if let Some((&first_base, _)) = state.segments.first_key_value() {
        state.log_start_offset = state.log_start_offset.max(first_base);
    }
    removed
}

/// Removes sealed segments whose every offset is below `before_offset`.
pub(crate) fn remove_below(state: &mut State, before_offset: i64) -> Vec<Segment> {
    let bases: Vec<i64> = state.segments.keys().copied().collect();
    let count = bases
        .windows(2)
        .take_while(|w| w[1] <= before_offset)
        .count();
    remove_oldest(state, count)
}
