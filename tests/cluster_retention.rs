//! Retention on replicated partitions, with three real broker processes:
//! every replica removes old segments below its commit index, the log start
//! offset moves, reads below it answer OFFSET_OUT_OF_RANGE and every record
//! above it reads back; a follower that was down while the leader removed
//! what it lacked starts again at the leader's log start (a snapshot) and
//! ends byte-identical with the leader. DeleteRecords goes through the
//! leader's Raft group: only the leader answers, only up to the high
//! watermark, and a new leader keeps the log start offset.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use std::time::Instant;

use common::clients::{assert_all_delivered, assign, consumer, flush, producer, send, watermarks};
use common::cluster::Cluster;
use common::raw::{self, error_code, RawClient};
use common::wait_until;
use rdkafka::consumer::Consumer;
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
    fill_topic(bootstrap, TOPIC, from, to);
}

fn fill_topic(bootstrap: &str, topic: &str, from: usize, to: usize) {
    let (producer, log) = producer(bootstrap, &[("linger.ms", "0")]);
    for i in from..to {
        send(
            &producer,
            BaseRecord::to(topic)
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

/// The whole batches at the start of a segment file (an active segment's
/// file may run on past them, zeroed).
fn written_batches(file: &[u8]) -> &[u8] {
    let mut position = 0;
    while let Some(length) = file.get(position + 8..position + 12) {
        let length = i32::from_be_bytes(length.try_into().expect("four bytes"));
        let end = position + 12 + length.max(0) as usize;
        if length <= 0 || end > file.len() {
            break;
        }
        position = end;
    }
    &file[..position]
}

/// The stored batches of the partition in `dir` from the one holding
/// `offset` on, concatenated.
fn batches_from(dir: &Path, offset: i64) -> Vec<u8> {
    let field = |batch: &[u8], at: usize, len: usize| -> i64 {
        batch[at..at + len]
            .iter()
            .fold(0i64, |n, b| (n << 8) | i64::from(*b))
    };
    let mut out = Vec::new();
    for bytes in segments(dir).into_values() {
        let mut rest = written_batches(&bytes);
        while rest.len() >= 27 {
            let size = 12 + field(rest, 8, 4) as usize;
            // base offset (8 bytes) + last offset delta (4 bytes at 23).
            let last = field(rest, 0, 8) + field(rest, 23, 4);
            if last >= offset {
                out.extend_from_slice(&rest[..size]);
            }
            rest = &rest[size..];
        }
    }
    out
}

/// Whether two replicas' logs hold the same bytes where both have them: the
/// concatenated segments of one end with those of the other (segments
/// roll at other batches on a follower that caught up in large appends,
/// and retention may have removed more on one of them).
fn same_log(a: &Path, b: &Path) -> bool {
    let stream = |dir: &Path| {
        let mut stream = Vec::new();
        for bytes in segments(dir).into_values() {
            stream.extend_from_slice(written_batches(&bytes));
        }
        stream
    };
    let (a, b) = (stream(a), stream(b));
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    !short.is_empty() && long.ends_with(&short)
}

fn first_base(cluster: &Cluster, node: i32) -> i64 {
    first_base_of(cluster, node, TOPIC)
}

fn first_base_of(cluster: &Cluster, node: i32, topic: &str) -> i64 {
    segments(&cluster.partition_dir(node, topic, 0))
        .keys()
        .next()
        .copied()
        .unwrap_or(0)
}

/// Every record from the log start to the end reads back, in order: the
/// values are consecutive up to the last one produced (`end` records), the
/// first at or just above the log start (leader changes add control
/// batches, which clients skip). Returns the log start offset and the
/// first value read.
fn assert_readable_from_log_start(bootstrap: &str, end: usize) -> i64 {
    assert_topic_readable_from_log_start(bootstrap, TOPIC, end).0
}

fn assert_topic_readable_from_log_start(bootstrap: &str, topic: &str, end: usize) -> (i64, usize) {
    let (low, high) = settled_watermarks(bootstrap, topic);
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, topic, &[0], Offset::Beginning);
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
    (low, first_value)
}

/// The watermarks once retention has stopped moving the log start: each
/// replica checks every 100 ms and removes one segment at a time, so the
/// log start keeps rising for a while after the last write.
/// ListOffsets that fail while leadership moves count as a change.
fn settled_watermarks(bootstrap: &str, topic: &str) -> (i64, i64) {
    let consumer = consumer(bootstrap, &[]);
    let deadline = Instant::now() + RETENTION_TIMEOUT;
    let mut last = None;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        let now = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(5))
            .ok();
        if now.is_none() || now != last {
            last = now;
            since = Instant::now();
        } else if let Some(settled) = now.filter(|_| since.elapsed() >= Duration::from_secs(1)) {
            return settled;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the watermarks of {topic}/0 kept moving: last {last:?}");
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
    let leader = preferred_leader(&cluster, TOPIC);
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
    let identical = wait_until(CATCH_UP_TIMEOUT, || same_log(&leader_dir, &follower_dir));
    assert!(
        identical,
        "the returned follower holds the leader's log byte for byte: leader {:?}, follower {:?}",
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

/// The leader of partition 0 of `topic` once it is the preferred one (the
/// first replica), so leadership stays where it is while every replica lives.
fn preferred_leader(cluster: &Cluster, topic: &str) -> i32 {
    let preferred = || {
        let metadata = cluster.metadata(1);
        let partition = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?
            .partitions
            .first()?
            .clone();
        let first = partition.replica_nodes.first()?.0;
        (partition.leader_id.0 == first && cluster.partition_leader(topic, 0) == Some(first))
            .then_some(first)
    };
    assert!(
        wait_until(RETENTION_TIMEOUT, || preferred().is_some()),
        "{topic} is led by its preferred leader"
    );
    preferred().expect("the preferred leader leads")
}

/// (base offset, bytes) of each segment in `dir`.
fn shapes(dir: &Path) -> Vec<(i64, usize)> {
    segments(dir).iter().map(|(b, v)| (*b, v.len())).collect()
}

/// The log start offset in a partition directory's `partition.meta`.
fn log_start_in_meta(dir: &Path) -> Option<i64> {
    let bytes = std::fs::read(dir.join(ringlog::storage::meta::META_FILE_NAME)).ok()?;
    ringlog::storage::meta::PartitionMeta::decode(&bytes).map(|m| m.log_start_offset().get())
}

/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// DeleteRecords of partition 0 of `topic` before `offset` through `client`:
/// (error code, low watermark).
fn delete_records(client: &mut RawClient, topic: &str, offset: i64) -> (i16, i64) {
    delete_records_within(client, topic, offset, 20_000)
}

/// [`delete_records`] with the request's `timeout_ms`.
fn delete_records_within(
    client: &mut RawClient,
    topic: &str,
    offset: i64,
    timeout_ms: i32,
) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let response = client.call_negotiated(&request, 2);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

/// [`delete_records`] at the partition's leader, again where leadership
/// moved meanwhile (NOT_LEADER_OR_FOLLOWER), as Kafka clients retry.
fn delete_records_at_leader(cluster: &Cluster, topic: &str, offset: i64) -> (i16, i64) {
    let mut answer = (NOT_LEADER_OR_FOLLOWER, -1);
    wait_until(RETENTION_TIMEOUT, || {
        let Some(leader) = cluster.partition_leader(topic, 0) else {
            return false;
        };
        let mut client = RawClient::connect_negotiated(cluster.nodes[leader as usize - 1].addr());
        answer = delete_records(&mut client, topic, offset);
        answer.0 != NOT_LEADER_OR_FOLLOWER
    });
    answer
}

/// DeleteRecords through confluent-kafka's AdminClient; prints the low watermark.
const ADMIN_DELETE_RECORDS: &str = r#"
import sys
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
futures = admin.delete_records([TopicPartition(sys.argv[2], 0, int(sys.argv[3]))], request_timeout=30)
for _, future in futures.items():
    print(future.result(timeout=60).low_watermark)
"#;

#[test]
fn delete_records_goes_through_raft_and_a_new_leader_keeps_the_log_start() {
    let test = "delete_records_goes_through_raft_and_a_new_leader_keeps_the_log_start";
    let Some(python) = common::python::python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let topic = "trimmed";
    let mut cluster = Cluster::builder(3)
        .arg("--retention-check-interval-ms")
        .arg("100")
        .start();
    assert_eq!(
        cluster.create_topic_with_configs(1, topic, 1, 3, &[("segment.bytes", SEGMENT_BYTES)]),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, topic, 1);
    }
    let bootstrap = cluster.bootstrap();
    let leader = preferred_leader(&cluster, topic);
    let follower = cluster.other_than(leader, leader);
    let lagging = cluster.other_than(leader, follower);
    // One follower is down from early on: it returns after the leader
    // removed what it lacks.
    fill_topic(&bootstrap, topic, 0, 20);
    let lagging_end = watermarks(&bootstrap, topic, 0).1;
    cluster.kill9(lagging);
    let end = 300;
    fill_topic(&bootstrap, topic, 20, end);
    // No record is gone yet.
    let (low, first_value) = assert_topic_readable_from_log_start(&bootstrap, topic, end);
    assert_eq!(first_value, 0, "nothing deleted yet");
    let high = watermarks(&bootstrap, topic, 0).1;
    let addr = |cluster: &Cluster, node: i32| cluster.nodes[node as usize - 1].addr();

    // Only the leader answers, and only up to the high watermark.
    let mut at_follower = RawClient::connect_negotiated(addr(&cluster, follower));
    assert_eq!(
        delete_records(&mut at_follower, topic, 10).0,
        NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        delete_records_at_leader(&cluster, topic, high + 1).0,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(watermarks(&bootstrap, topic, 0).0, low, "nothing moved");

    // The AdminClient, then the raw client.
    let answer =
        common::python::run_script(&python, ADMIN_DELETE_RECORDS, &[&bootstrap, topic, "100"]);
    assert_eq!(answer.trim(), "100", "the AdminClient's low watermark");
    assert_eq!(watermarks(&bootstrap, topic, 0).0, 100);
    let cut = 150;
    assert_eq!(
        delete_records_at_leader(&cluster, topic, cut),
        (error_code::NONE, cut)
    );
    // Every replica up removes the segments wholly below the new log start.
    let removed = wait_until(RETENTION_TIMEOUT, || {
        [leader, follower]
            .iter()
            .all(|&node| first_base_of(&cluster, node, topic) > lagging_end)
    });
    let bases: Vec<i64> = [leader, follower]
        .iter()
        .map(|&node| first_base_of(&cluster, node, topic))
        .collect();
    assert!(
        removed,
        "the replicas up removed segments below the log start: {bases:?}"
    );
    assert!(
        bases.iter().all(|&base| base <= cut),
        "nothing at or above it: {bases:?}"
    );

    // The lagging follower catches up, by appends where the leader's Raft
    // log still reaches back to its end, else by a snapshot, and takes the
    // log start offset from the DeleteRecords entry or the snapshot. Its
    // segments may roll elsewhere, so its bytes are compared from the log
    // start on.
    cluster.restart(lagging);
    cluster.wait_for_brokers(lagging, 3);
    let leader_dir = cluster.partition_dir(leader, topic, 0);
    let lagging_dir = cluster.partition_dir(lagging, topic, 0);
    let caught_up = wait_until(CATCH_UP_TIMEOUT, || {
        log_start_in_meta(&lagging_dir) == Some(cut)
            && batches_from(&leader_dir, cut) == batches_from(&lagging_dir, cut)
    });
    assert!(
        caught_up,
        "the lagging follower holds the leader's log and its log start: {:?}, {:?} vs {:?}",
        log_start_in_meta(&lagging_dir),
        shapes(&lagging_dir),
        shapes(&leader_dir)
    );
    let mut reader = RawClient::connect_negotiated(addr(&cluster, leader));
    assert_eq!(
        raw::fetch(&mut reader, topic, 0, cut - 1).error_code,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(
        raw::fetch(&mut reader, topic, 0, cut).error_code,
        error_code::NONE
    );

    // SIGKILL of the leader: the next one keeps the log start offset.
    cluster.kill9(leader);
    let next = cluster.wait_for_leader_other_than(topic, 0, leader);
    // (DeleteRecords entries and the new leader's first entry take offsets.)
    let kept = wait_until(RETENTION_TIMEOUT, || {
        let (low, after) = watermarks(&bootstrap, topic, 0);
        low == cut && after > high
    });
    assert!(
        kept,
        "the new leader {next} keeps the log start: watermarks {:?}",
        watermarks(&bootstrap, topic, 0)
    );
    let mut reader = RawClient::connect_negotiated(addr(&cluster, next));
    assert_eq!(
        raw::fetch(&mut reader, topic, 0, cut - 1).error_code,
        OFFSET_OUT_OF_RANGE
    );
    let (low, _) = assert_topic_readable_from_log_start(&bootstrap, topic, end);
    assert_eq!(low, cut);
}

/// Kafka's REQUEST_TIMED_OUT.
const REQUEST_TIMED_OUT: i16 = 7;

#[test]
fn delete_records_and_produce_that_cannot_commit_in_time_answer_request_timed_out() {
    let topic = "stalled";
    let mut cluster = Cluster::builder(3).start();
    assert_eq!(cluster.create_topic(1, topic, 1, 3), error_code::NONE);
    for node in 1..=3 {
        cluster.wait_for_topic(node, topic, 1);
    }
    let bootstrap = cluster.bootstrap();
    fill_topic(&bootstrap, topic, 0, 20);
    let leader = preferred_leader(&cluster, topic);
    let down = cluster.other_than(leader, leader);
    let paused = cluster.other_than(leader, down);
    // No majority for the leader: nothing commits until a follower is back
    // (the leader steps down after an election timeout of its own).
    cluster.kill9(down);
    cluster.pause(paused);
    let mut client = RawClient::connect_negotiated(cluster.nodes[leader as usize - 1].addr());
    let (code, _) = delete_records_within(&mut client, topic, 10, 200);
    assert_eq!(
        code, REQUEST_TIMED_OUT,
        "the commit could not come within 200 ms"
    );
    let request = raw::produce_request(topic, 0, -1, raw::record_batch(&[(b"k", b"late")]))
        .with_timeout_ms(200);
    let response = client.call_negotiated(&request, 9);
    assert_eq!(
        raw::single_produce_partition(&response).error_code,
        REQUEST_TIMED_OUT,
        "acks=all could not be met within 200 ms"
    );
    cluster.resume(paused);
    cluster.restart(down);
    cluster.wait_for_brokers(paused, 3);
    assert_eq!(
        delete_records_at_leader(&cluster, topic, 10),
        (error_code::NONE, 10),
        "once a majority is back, the deletion commits"
    );
}
