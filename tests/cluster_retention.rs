//! Retention on replicated partitions, with three real broker processes:
//! every replica removes old segments below its commit index, the log start
//! offset moves, reads below it answer OFFSET_OUT_OF_RANGE and every record
//! above it reads back; a follower that was down while the leader removed
//! what it lacked starts again at the leader's log start (a snapshot) and
//! ends byte-identical with the leader.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use std::time::Instant;

use common::clients::{assert_all_delivered, assign, consumer, flush, producer, send, watermarks};
use common::cluster::Cluster;
use common::raw::{self, error_code, RawClient};
use common::wait_until;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const TOPIC: &str = "retained";
/// The smallest segment the broker allows, so that a few KiB roll segments.
const SEGMENT_BYTES: &str = "4096";
const RETENTION_BYTES: &str = "8192";
const VALUE_BYTES: usize = 200;
const RETENTION_TIMEOUT: Duration = Duration::from_secs(30);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

fn value(i: usize) -> String {
    format!("{i:>width$}", width = VALUE_BYTES)
}

/// Produces records `from..to` to partition 0 with acks=all, all acknowledged.
fn fill(bootstrap: &str, from: usize, to: usize) {
    let (producer, log) = producer(bootstrap, &[("linger.ms", "0")]);
    for i in from..to {
        send(
            &producer,
            BaseRecord::to(TOPIC)
                .partition(0)
                .key(&b"k"[..])
                .payload(value(i).as_bytes()),
        );
        if i % 20 == 19 {
            flush(&producer);
        }
    }
    flush(&producer);
    assert_all_delivered(&log, to - from);
}

/// The segment files of the partition in `dir`: base offset -> bytes.
fn segments(dir: &Path) -> BTreeMap<i64, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(base) = name.strip_suffix(".log") else {
            continue;
        };
        let (Ok(base), Ok(bytes)) = (base.parse::<i64>(), std::fs::read(entry.path())) else {
            continue;
        };
        files.insert(base, bytes);
    }
    files
}

fn first_base(cluster: &Cluster, node: i32) -> i64 {
    segments(&cluster.partition_dir(node, TOPIC, 0))
        .keys()
        .next()
        .copied()
        .unwrap_or(0)
}

/// Every record from the log start to the end reads back, in order: the
/// values are consecutive up to the last one produced (`end` records), the
/// first at or just above the log start (leader changes add control
/// batches, which clients skip). Returns the log start offset.
fn assert_readable_from_log_start(bootstrap: &str, end: usize) -> i64 {
    let (low, high) = watermarks(bootstrap, TOPIC, 0);
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read: Vec<(i64, usize)> = Vec::new();
    while read.last().is_none_or(|(_, v)| v + 1 < end) && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let payload = message.payload().expect("a value");
        let v: usize = std::str::from_utf8(payload)
            .expect("a text value")
            .trim()
            .parse()
            .expect("a number");
        read.push((message.offset(), v));
    }
    let (first_offset, first_value) = *read.first().expect("records are left to read");
    assert!(
        first_offset >= low && first_offset < low + 3,
        "reading starts at the log start {low}: {first_offset}"
    );
    for pair in read.windows(2) {
        assert!(pair[1].0 > pair[0].0, "offsets rise: {pair:?}");
        assert_eq!(pair[1].1, pair[0].1 + 1, "no record is missing: {pair:?}");
    }
    let last = read.last().expect("records are read");
    assert_eq!(last.1 + 1, end, "the last record produced reads");
    assert!(last.0 < high, "below the high watermark");
    assert!(
        first_value > 0 || low <= 1,
        "records below the log start are gone"
    );
    low
}

#[test]
fn retention_removes_old_segments_on_every_replica_and_a_returning_follower_catches_up_by_snapshot()
{
    let mut cluster = Cluster::builder(3)
        .arg("--retention-check-interval-ms")
        .arg("100")
        .start();
    assert_eq!(
        cluster.create_topic_with_configs(
            1,
            TOPIC,
            1,
            3,
            &[
                ("segment.bytes", SEGMENT_BYTES),
                ("retention.bytes", RETENTION_BYTES),
            ],
        ),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, TOPIC, 1);
    }
    let bootstrap = cluster.bootstrap();
    let first = 200;
    fill(&bootstrap, 0, first);

    // Every replica removes old segments itself.
    let removed = wait_until(RETENTION_TIMEOUT, || {
        (1..=3).all(|node| first_base(&cluster, node) > 0)
    });
    let bases: Vec<i64> = (1..=3).map(|node| first_base(&cluster, node)).collect();
    assert!(
        removed,
        "every replica removed old segments: first bases {bases:?}"
    );
    let low = assert_readable_from_log_start(&bootstrap, first);
    assert!(low > 0, "the log start offset moved: {low}");
    let leader = cluster
        .partition_leader(TOPIC, 0)
        .expect("the partition has a leader");
    let mut client = RawClient::connect_negotiated(cluster.nodes[leader as usize - 1].addr());
    let below = raw::fetch(&mut client, TOPIC, 0, 0);
    assert_eq!(
        below.error_code, OFFSET_OUT_OF_RANGE,
        "a read below the log start is out of range"
    );

    // A follower is down while the leader removes everything it has.
    let follower = cluster.other_than(leader, leader);
    cluster.kill9(follower);
    let follower_end = watermarks(&bootstrap, TOPIC, 0).1;
    let second = 600;
    fill(&bootstrap, first, second);
    let passed = wait_until(RETENTION_TIMEOUT, || {
        first_base(&cluster, leader) > follower_end
    });
    assert!(
        passed,
        "the leader removed what the follower lacks: first base {}",
        first_base(&cluster, leader)
    );
    cluster.restart(follower);
    cluster.wait_for_brokers(follower, 3);
    // More records after the follower returns: it appends them after the snapshot.
    let end = 700;
    fill(&bootstrap, second, end);

    let leader_dir = cluster.partition_dir(leader, TOPIC, 0);
    let follower_dir = cluster.partition_dir(follower, TOPIC, 0);
    let identical = wait_until(CATCH_UP_TIMEOUT, || {
        let (ours, theirs) = (segments(&leader_dir), segments(&follower_dir));
        !ours.is_empty() && ours == theirs
    });
    let shapes = |dir: &Path| -> Vec<(i64, usize)> {
        segments(dir).iter().map(|(b, v)| (*b, v.len())).collect()
    };
    assert!(
        identical,
        "the returned follower holds the leader's segments byte for byte: leader {:?}, follower {:?}",
        shapes(&leader_dir),
        shapes(&follower_dir)
    );
    assert!(
        cluster.nodes[follower as usize - 1]
            .log()
            .contains("starts again, empty"),
        "the follower started again at the leader's log start"
    );
    let low = assert_readable_from_log_start(&bootstrap, end);
    assert!(
        low > follower_end,
        "the log start moved past the follower's old end"
    );

    // The follower that caught up leads: everything above the log start reads.
    cluster.kill9(leader);
    let new_leader = cluster.wait_for_leader_other_than(TOPIC, 0, leader);
    assert_ne!(new_leader, leader);
    let low_after = assert_readable_from_log_start(&bootstrap, end);
    assert!(
        low_after >= low,
        "the log start does not go back: {low_after} < {low}"
    );
}
