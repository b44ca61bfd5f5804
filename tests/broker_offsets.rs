//! ListOffsets against a real broker: lookups by timestamp answer with the
//! exact record, not the batch around it, through librdkafka's
//! `offsets_for_times`, the raw protocol (MAX_TIMESTAMP, KIP-734) and
//! confluent-kafka's admin `list_offsets`; uncompressed and compressed batches.

mod common;

use common::clients::{assert_all_delivered, consumer, create_topic, flush, producer, send};
use common::python::{python_with, run_script};
use common::raw::{self, error_code, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Record i has timestamp BASE + i * STEP.
const RECORDS: i64 = 100;
const TIMESTAMP_STEP_MS: i64 = 1_000;
/// Records per produced batch: uneven, so that batch edges fall anywhere.
const BATCH_SIZES: [i64; 5] = [13, 30, 7, 38, 12];
const _: () = assert!(
    BATCH_SIZES[0] + BATCH_SIZES[1] + BATCH_SIZES[2] + BATCH_SIZES[3] + BATCH_SIZES[4] == RECORDS
);
/// KIP-734: ListOffsets v7 may ask for the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
const LIST_OFFSETS_VERSION_MAX: i16 = 9;

/// Produces the 100 records in `BATCH_SIZES` batches with `codec`.
fn produce_timestamped(bootstrap: &str, topic: &str, codec: &str) {
    let (producer, log) = producer(
        bootstrap,
        &[("linger.ms", "1000"), ("compression.type", codec)],
    );
    let mut next = 0i64;
    for size in BATCH_SIZES {
        for i in next..next + size {
            let value = format!("value-{i}-{}", "x".repeat(40));
            send(
                &producer,
                BaseRecord::to(topic)
                    .key(&b"k"[..])
                    .payload(value.as_bytes())
                    .timestamp(BASE_TIMESTAMP_MS + i * TIMESTAMP_STEP_MS),
            );
        }
        // One flush per batch, so that each group of records is its own batch.
        flush(&producer);
        next += size;
    }
    assert_all_delivered(&log, RECORDS as usize);
}

/// The stored batches of partition 0, decoded.
fn stored_batch_count(broker: &Broker, topic: &str) -> usize {
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let mut count = 0;
    let mut offset = 0;
    while offset < RECORDS {
        let fetched = raw::fetch(&mut raw, topic, 0, offset);
        assert_eq!(fetched.error_code, error_code::NONE, "fetch error");
        let mut bytes = fetched.records.clone().expect("fetched records");
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("stored batches decode");
        count += sets.len();
        offset += sets.iter().map(|s| s.records.len() as i64).sum::<i64>();
    }
    count
}

fn lookup(consumer: &rdkafka::consumer::BaseConsumer, topic: &str, timestamp: i64) -> Offset {
    common::clients::offset_for_time(consumer, topic, timestamp)
}

/// (error code, timestamp, offset) of a raw ListOffsets for one partition.
fn raw_list_offsets(broker: &Broker, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let mut client = RawClient::connect_negotiated(broker.addr());
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let version = client.version_of::<ListOffsetsRequest>(LIST_OFFSETS_VERSION_MAX);
    assert!(
        version >= 7,
        "MAX_TIMESTAMP needs ListOffsets v7, got v{version}"
    );
    let response = client.call(&request, version);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.timestamp, partition.offset)
}

fn check_lookups_find_the_exact_record(codec: &str) {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic(&format!("by-time-{codec}"));
    create_topic(&bootstrap, &topic, 1, &[]);
    produce_timestamped(&bootstrap, &topic, codec);
    assert!(
        stored_batch_count(&broker, &topic) >= 3,
        "{codec}: the records are stored in several batches"
    );

    let consumer = consumer(&bootstrap, &[]);
    let at = |step: i64, extra_ms: i64| {
        lookup(
            &consumer,
            &topic,
            BASE_TIMESTAMP_MS + step * TIMESTAMP_STEP_MS + extra_ms,
        )
    };
    assert_eq!(
        at(0, -5_000),
        Offset::Offset(0),
        "{codec}: before everything"
    );
    assert_eq!(at(0, 0), Offset::Offset(0), "{codec}: the first record");
    assert_eq!(at(50, 0), Offset::Offset(50), "{codec}: inside a batch");
    assert_eq!(at(50, 500), Offset::Offset(51), "{codec}: between records");
    assert_eq!(
        at(13, 0),
        Offset::Offset(13),
        "{codec}: a batch's first record"
    );
    assert_eq!(
        at(42, 500),
        Offset::Offset(43),
        "{codec}: across a batch edge"
    );
    assert_eq!(at(99, 0), Offset::Offset(99), "{codec}: the last record");
    assert_eq!(at(99, 1), Offset::End, "{codec}: past the end");

    let (error, timestamp, offset) = raw_list_offsets(&broker, &topic, MAX_TIMESTAMP);
    assert_eq!(error, error_code::NONE, "{codec}: MAX_TIMESTAMP error");
    assert_eq!(
        (timestamp, offset),
        (BASE_TIMESTAMP_MS + 99 * TIMESTAMP_STEP_MS, 99),
        "{codec}: MAX_TIMESTAMP is the record holding it"
    );
    let (error, timestamp, offset) = raw_list_offsets(&broker, &topic, BASE_TIMESTAMP_MS + 70_300);
    assert_eq!(error, error_code::NONE, "{codec}: by-time error");
    assert_eq!(
        (timestamp, offset),
        (BASE_TIMESTAMP_MS + 71 * TIMESTAMP_STEP_MS, 71),
        "{codec}: the answer carries the record's own timestamp"
    );
}

#[test]
fn offsets_for_times_finds_the_exact_record_inside_uncompressed_batches() {
    check_lookups_find_the_exact_record("none");
}

#[test]
fn offsets_for_times_finds_the_exact_record_inside_compressed_batches() {
    check_lookups_find_the_exact_record("lz4");
}

/// confluent-kafka's admin `list_offsets` with `OffsetSpec.for_timestamp` and
/// `OffsetSpec.max_timestamp()`: prints "offset timestamp" per spec.
const ADMIN_LIST_OFFSETS: &str = r#"
import sys
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
bootstrap, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
for spec in sys.argv[3:]:
    offset_spec = OffsetSpec.max_timestamp() if spec == "max" else OffsetSpec.for_timestamp(int(spec))
    futures = admin.list_offsets({TopicPartition(topic, 0): offset_spec}, request_timeout=10)
    for _, future in futures.items():
        info = future.result(timeout=20)
        print(info.offset, info.timestamp)
"#;

#[test]
fn admin_list_offsets_by_timestamp_and_max_timestamp_name_the_exact_record() {
    let test = "admin_list_offsets_by_timestamp_and_max_timestamp_name_the_exact_record";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-by-time");
    create_topic(&bootstrap, &topic, 1, &[]);
    produce_timestamped(&bootstrap, &topic, "zstd");

    let by_time = (BASE_TIMESTAMP_MS + 50_500).to_string();
    let output = run_script(
        &python,
        ADMIN_LIST_OFFSETS,
        &[&bootstrap, &topic, &by_time, "max"],
    );
    let answers: Vec<&str> = output.lines().collect();
    assert_eq!(
        answers,
        vec![
            format!("51 {}", BASE_TIMESTAMP_MS + 51_000),
            format!("99 {}", BASE_TIMESTAMP_MS + 99_000),
        ],
        "admin list_offsets answers"
    );
}
