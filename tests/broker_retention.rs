//! Retention against a real broker: old segments are deleted by age
//! (`retention.ms`) and by size (`retention.bytes`), which moves the log start
//! offset, while the high watermark and the newest data stay.

mod common;

use std::time::Duration;

use common::clients::{
    assert_all_delivered, consume_all, create_topic, flush, producer, send, watermarks,
};
use common::{unique_topic, Broker};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;

/// How often the broker runs retention in these tests.
const RETENTION_CHECK_INTERVAL_MS: &str = "100";
/// The smallest segment the broker allows, so that a few KiB roll segments.
const SEGMENT_BYTES: &str = "4096";
const MESSAGES: usize = 200;
const VALUE_BYTES: usize = 200;
const RETENTION_TIMEOUT: Duration = Duration::from_secs(15);

fn fill(bootstrap: &str, topic: &str) {
    let (producer, log) = producer(bootstrap, &[("linger.ms", "0")]);
    for i in 0..MESSAGES {
        let value = format!("{i:>width$}", width = VALUE_BYTES);
        send(
            &producer,
            BaseRecord::to(topic)
                .key(&b"k"[..])
                .payload(value.as_bytes()),
        );
        if i % 20 == 19 {
            flush(&producer);
        }
    }
    flush(&producer);
    assert_all_delivered(&log, MESSAGES);
}

#[test]
fn old_segments_are_deleted_by_age_and_by_size() {
    let broker = Broker::builder()
        .arg("--retention-check-interval-ms")
        .arg(RETENTION_CHECK_INTERVAL_MS)
        .start();
    let bootstrap = broker.bootstrap();
    let by_age = unique_topic("retention-age");
    let by_size = unique_topic("retention-size");
    create_topic(
        &bootstrap,
        &by_age,
        1,
        &[("segment.bytes", SEGMENT_BYTES), ("retention.ms", "1000")],
    );
    create_topic(
        &bootstrap,
        &by_size,
        1,
        &[
            ("segment.bytes", SEGMENT_BYTES),
            ("retention.bytes", "8192"),
        ],
    );
    fill(&bootstrap, &by_age);
    fill(&bootstrap, &by_size);
    let end = MESSAGES as i64;

    for topic in [&by_age, &by_size] {
        let trimmed = common::wait_until(RETENTION_TIMEOUT, || {
            let (low, _) = watermarks(&bootstrap, topic, 0);
            low > 0
        });
        let (low, high) = watermarks(&bootstrap, topic, 0);
        assert!(
            trimmed,
            "{topic}: the log start offset moved (watermarks {low}..{high})"
        );
        assert_eq!(high, end, "{topic}: the high watermark stays");
        assert!(
            low <= end,
            "{topic}: the log start offset stays within the log"
        );
        // What is left reads from the new log start to the end.
        let left = (end - low) as usize;
        let consumed = consume_all(&bootstrap, topic, 1, left, Duration::from_secs(20));
        consumed.expect_count(left);
        assert_eq!(
            consumed.messages.first().map(|m| m.offset()),
            (left > 0).then_some(low)
        );
    }
    // Size retention keeps about retention.bytes: not everything is deleted.
    let (low, _) = watermarks(&bootstrap, &by_size, 0);
    assert!(low < end, "size retention keeps the newest segment(s)");
}
