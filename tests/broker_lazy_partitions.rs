//! Partitions that open on first use, with real broker processes and
//! librdkafka: after a clean restart and after SIGKILL, an idle partition
//! serves produce, fetch and ListOffsets as before; a partition that is only
//! read keeps its clean mark; a partition written just before SIGKILL is
//! the one whose tail is scanned, and loses nothing that was acknowledged;
//! a partition left unused closes while the broker runs and opens again on
//! its next use, with its records and its producers' state.

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::{
    admin, admin_options, assert_all_delivered, block_on, consume_all, create_topic, flush,
    producer, send,
};
use common::raw::{self, RawClient};
use common::{unique_topic, wait_until, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseRecord;
use ringlog::storage::meta::{PartitionMeta, META_FILE_NAME};

const PARTITIONS: i32 = 6;
/// Records produced to each partition in one round.
const RECORDS_PER_PARTITION: usize = 20;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);
/// `--partition-idle-close-ms` of the idle-close test: unused logs close
/// within this, looked for every half of it.
const IDLE_CLOSE_MS: u64 = 200;
/// How long the unused partitions may take to close on a loaded machine.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);
/// Rounds of one record to each partition, each after the logs could close.
const ROUNDS_ACROSS_CLOSES: usize = 8;

/// Produces `RECORDS_PER_PARTITION` records (acks=all) to each of `partitions`.
fn produce_to(broker: &Broker, topic: &str, partitions: &[i32], round: &str) {
    let (producer, log) = producer(&broker.bootstrap(), &[]);
    for &partition in partitions {
        for i in 0..RECORDS_PER_PARTITION {
            let value = format!("{round}-{partition}-{i}");
            send(
                &producer,
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(&b"k"[..])
                    .payload(value.as_bytes()),
            );
        }
    }
    flush(&producer);
    assert_all_delivered(&log, partitions.len() * RECORDS_PER_PARTITION);
}

/// (log start, high watermark) of each partition, through librdkafka's ListOffsets.
fn watermarks(broker: &Broker, topic: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = common::clients::consumer(&broker.bootstrap(), &[]);
    (0..PARTITIONS)
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
                .unwrap_or_else(|error| panic!("ListOffsets {topic}/{partition}: {error}"))
        })
        .collect()
}

/// Whether `partition.meta` of the partition says it was closed cleanly.
fn meta_says_clean(broker: &Broker, topic: &str, partition: i32) -> bool {
    let path = broker
        .data_dir()
        .join(format!("{topic}-{partition}"))
        .join(META_FILE_NAME);
    let bytes = std::fs::read(&path).unwrap_or_default();
    PartitionMeta::decode(&bytes).is_some_and(|meta| meta.clean_shutdown())
}

fn clean_marks(broker: &Broker, topic: &str) -> Vec<bool> {
    (0..PARTITIONS)
        .map(|p| meta_says_clean(broker, topic, p))
        .collect()
}

/// Every record of the topic, read back from the beginning by librdkafka.
fn consume_everything(broker: &Broker, topic: &str, expected: usize) {
    let consumed = consume_all(
        &broker.bootstrap(),
        topic,
        PARTITIONS,
        expected,
        CONSUME_TIMEOUT,
    );
    consumed.expect_count(expected);
}

/// The active segment file of a partition (its only `.log` here).
fn active_segment(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("the partition directory is readable")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .max()
        .expect("the partition has a segment")
}

#[test]
fn idle_partitions_serve_produce_fetch_and_list_offsets_after_a_clean_restart() {
    let mut broker = Broker::builder().cpus("0").start();
    let topic = unique_topic("lazy-clean");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    produce_to(&broker, &topic, &all, "first");
    broker.restart();
    assert_eq!(
        clean_marks(&broker, &topic),
        vec![true; PARTITIONS as usize],
        "a clean stop marks every written partition clean"
    );
    let end = RECORDS_PER_PARTITION as i64;
    assert_eq!(
        watermarks(&broker, &topic),
        vec![(0, end); PARTITIONS as usize],
        "every partition opens on ListOffsets with its offsets"
    );
    consume_everything(&broker, &topic, PARTITIONS as usize * RECORDS_PER_PARTITION);
    assert_eq!(
        clean_marks(&broker, &topic),
        vec![true; PARTITIONS as usize],
        "partitions that were only read keep their clean mark"
    );
    produce_to(&broker, &topic, &[1, 4], "second");
    let marks = clean_marks(&broker, &topic);
    assert!(
        !marks[1] && !marks[4] && marks[0] && marks[2] && marks[3] && marks[5],
        "only the written partitions lose their clean mark: {marks:?}"
    );
    broker.restart();
    let mut client = RawClient::connect_negotiated(broker.addr());
    let produced = raw::produce(&mut client, &topic, 1, &[(b"k", b"third")]);
    assert_eq!(produced.error_code, 0);
    assert_eq!(
        produced.base_offset,
        2 * end,
        "a partition written before the restart continues at its end"
    );
    let fetched = raw::fetch(&mut client, &topic, 1, produced.base_offset);
    let records = raw::decode_records(fetched.records.as_ref().expect("records"));
    assert_eq!(records[0].value.as_deref(), Some(&b"third"[..]));
    consume_everything(
        &broker,
        &topic,
        (PARTITIONS as usize + 2) * RECORDS_PER_PARTITION + 1,
    );
}

#[test]
fn after_sigkill_only_written_partitions_are_scanned_and_nothing_acknowledged_is_lost() {
    let mut broker = Broker::builder().cpus("0").start();
    let topic = unique_topic("lazy-crash");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    produce_to(&broker, &topic, &all, "first");
    broker.restart();
    // Written (acks=all) just before the kill: partitions 0 and 3.
    produce_to(&broker, &topic, &[0, 3], "last");
    broker.kill9();
    let marks = clean_marks(&broker, &topic);
    assert!(
        !marks[0] && !marks[3] && marks[1] && marks[2] && marks[4] && marks[5],
        "only the written partitions are left unclean: {marks:?}"
    );
    // A torn write after the last acknowledged batch of partition 0.
    let segment = active_segment(&broker.data_dir().join(format!("{topic}-0")));
    let mut bytes = std::fs::read(&segment).expect("reading the segment");
    bytes.extend_from_slice(&[0xab; 300]);
    std::fs::write(&segment, &bytes).expect("appending a torn tail");
    broker.start_again();
    let end = RECORDS_PER_PARTITION as i64;
    let expected: Vec<(i64, i64)> = (0..PARTITIONS)
        .map(|p| (0, if p == 0 || p == 3 { 2 * end } else { end }))
        .collect();
    assert_eq!(
        watermarks(&broker, &topic),
        expected,
        "acknowledged records survive, the torn tail is cut"
    );
    assert!(
        broker.log().contains("truncating torn or corrupt tail"),
        "the written partition's tail was scanned"
    );
    let mut client = RawClient::connect_negotiated(broker.addr());
    for partition in [0, 1] {
        let produced = raw::produce(&mut client, &topic, partition, &[(b"k", b"after")]);
        assert_eq!(produced.error_code, 0);
        assert_eq!(produced.base_offset, expected[partition as usize].1);
    }
    consume_everything(
        &broker,
        &topic,
        (PARTITIONS as usize + 2) * RECORDS_PER_PARTITION + 2,
    );
    broker.restart();
    assert_eq!(
        clean_marks(&broker, &topic),
        vec![true; PARTITIONS as usize],
        "a clean stop after the recovery marks every partition clean"
    );
}

#[test]
fn a_deleted_idle_topic_leaves_no_directory_and_its_name_starts_empty() {
    let mut broker = Broker::builder().cpus("0").start();
    let topic = unique_topic("lazy-delete");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    produce_to(&broker, &topic, &[2], "old");
    broker.restart();
    let admin = admin(&broker.bootstrap());
    let deleted =
        block_on(admin.delete_topics(&[&topic], &admin_options())).expect("DeleteTopics request");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let left = std::fs::read_dir(broker.data_dir())
        .expect("the data directory is readable")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{topic}-"))
        })
        .count();
    assert_eq!(left, 0, "the idle partitions' directories are removed");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    assert_eq!(
        watermarks(&broker, &topic),
        vec![(0, 0); PARTITIONS as usize],
        "the topic made again is empty"
    );
}

#[test]
fn unused_partitions_close_and_open_again_with_their_records_and_producer_state() {
    let mut broker = Broker::builder()
        .cpus("0")
        .arg("--partition-idle-close-ms")
        .arg(&IDLE_CLOSE_MS.to_string())
        .start();
    let topic = unique_topic("idle-close");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    produce_to(&broker, &topic, &all, "first");
    // A written log is marked clean again only when it closes.
    assert!(
        wait_until(CLOSE_TIMEOUT, || clean_marks(&broker, &topic)
            == vec![true; PARTITIONS as usize]),
        "every unused partition closes: {:?}",
        clean_marks(&broker, &topic)
    );

    // An idempotent producer writes across closings: each opening brings
    // back its sequence numbers, or the broker would refuse its batches.
    let (producer, log) = producer(&broker.bootstrap(), &[("enable.idempotence", "true")]);
    for round in 0..ROUNDS_ACROSS_CLOSES {
        for &partition in &all {
            let value = format!("idempotent-{partition}-{round}");
            send(
                &producer,
                BaseRecord::to(&topic)
                    .partition(partition)
                    .key(&b"k"[..])
                    .payload(value.as_bytes()),
            );
        }
        flush(&producer);
        std::thread::sleep(Duration::from_millis(2 * IDLE_CLOSE_MS));
    }
    assert_all_delivered(&log, PARTITIONS as usize * ROUNDS_ACROSS_CLOSES);
    let end = (RECORDS_PER_PARTITION + ROUNDS_ACROSS_CLOSES) as i64;
    assert_eq!(
        watermarks(&broker, &topic),
        vec![(0, end); PARTITIONS as usize],
        "each partition continues at its end after every closing"
    );
    let expected = PARTITIONS as usize * (RECORDS_PER_PARTITION + ROUNDS_ACROSS_CLOSES);
    consume_everything(&broker, &topic, expected);
    broker.restart();
    consume_everything(&broker, &topic, expected);
}
