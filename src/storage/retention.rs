//! Which whole segments retention removes: by age (retention.ms), by total
//! size (retention.bytes) and below the log start offset. The active segment
//! is never removed.

use super::segment_set::SegmentSet;

/// How many of the oldest segments are beyond retention at `now_ms`.
/// A negative `retention_ms` or `retention_bytes` means no limit of that kind.
pub(crate) fn expired_segments(
    segments: &SegmentSet,
    retention_ms: i64,
    retention_bytes: i64,
    now_ms: i64,
) -> usize {
    let by_time = if retention_ms >= 0 {
        expired_by_time(segments, retention_ms, now_ms)
    } else {
        0
    };
    let by_size = if retention_bytes >= 0 {
        expired_by_size(segments, retention_bytes)
    } else {
        0
    };
    by_time.max(by_size)
}

/// Kafka: a segment expires when its largest timestamp is older than retention.ms.
fn expired_by_time(segments: &SegmentSet, retention_ms: i64, now_ms: i64) -> usize {
    segments
        .sealed()
        .take_while(|s| {
            let newest = s
                .index()
                .max_timestamp
                .map(|max| max.timestamp.get())
                .unwrap_or(s.created_ms());
            now_ms.saturating_sub(newest) > retention_ms
        })
        .count()
}

/// Kafka: delete while the log stays at or above retention.bytes without the segment.
fn expired_by_size(segments: &SegmentSet, retention_bytes: i64) -> usize {
    let mut excess = segments.total_bytes() as i64 - retention_bytes;
    let mut count = 0;
    for s in segments.sealed() {
        if excess - (s.written_bytes() as i64) < 0 {
            break;
        }
        excess -= s.written_bytes() as i64;
        count += 1;
    }
    count
}
