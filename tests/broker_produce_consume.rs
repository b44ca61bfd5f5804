//! Producing and consuming with librdkafka against a real broker: delivery,
//! ordering, partitioning, headers, timestamps, compression, long polling,
//! offset lookup, seeking and offset reset.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::clients::{
    admin, admin_options, assert_all_delivered, assign, block_on, consume, consume_all, consumer,
    create_topic, flush, header_pairs, key_text, make_headers, payload_text, producer, send,
    watermarks, CLIENT_REQUEST_TIMEOUT,
};
use common::raw::{self, error_code, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::records::Compression;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use ringlog::client::{BatchBuilder, BatchOptions};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
/// The large ordered-delivery test: message count, distinct keys, partitions.
const ORDERED_MESSAGES: usize = 100_000;
const ORDERED_KEYS: usize = 1_000;
const ORDERED_PARTITIONS: i32 = 4;
const ORDERED_CONSUME_TIMEOUT: Duration = Duration::from_secs(180);

/// librdkafka's default partitioner (`consistent_random`) for a non-empty key:
/// CRC-32 (IEEE, as zlib) of the key modulo the partition count.
fn librdkafka_partition(key: &[u8], partitions: i32) -> i32 {
    let hash = kafka_protocol::records::IEEE.checksum(key);
    i32::try_from(hash % u32::try_from(partitions).expect("a positive partition count"))
        .expect("a partition index fits i32")
}

/// `value-{i}` -> i
fn sequence_of(value: &str) -> usize {
    value
        .strip_prefix("value-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected value {value:?}"))
}

#[test]
fn keyed_messages_arrive_exactly_once_in_key_order_on_the_key_hash_partition() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("ordered");
    create_topic(&bootstrap, &topic, ORDERED_PARTITIONS, &[]);

    let (producer, log) = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "10")]);
    let started = Instant::now();
    for i in 0..ORDERED_MESSAGES {
        let key = format!("key-{}", i % ORDERED_KEYS);
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    let produce_elapsed = started.elapsed();
    assert_all_delivered(&log, ORDERED_MESSAGES);

    // Every key went to the partition librdkafka's partitioner chose, always the same one.
    let delivered = log.delivered();
    let mut delivered_at: HashMap<(i32, i64), String> = HashMap::new();
    for report in &delivered {
        let key = report.key.as_deref().expect("every message has a key");
        assert_eq!(
            report.partition,
            librdkafka_partition(key, ORDERED_PARTITIONS),
            "partition of key {}",
            String::from_utf8_lossy(key)
        );
        let value = String::from_utf8(report.payload.clone().expect("every message has a value"))
            .expect("UTF-8");
        let previous = delivered_at.insert((report.partition, report.offset), value);
        assert!(
            previous.is_none(),
            "two acknowledgements for {}/{}",
            report.partition,
            report.offset
        );
    }

    let started = Instant::now();
    let consumed = consume_all(
        &bootstrap,
        &topic,
        ORDERED_PARTITIONS,
        ORDERED_MESSAGES,
        ORDERED_CONSUME_TIMEOUT,
    );
    let consume_elapsed = started.elapsed();
    consumed.expect_count(ORDERED_MESSAGES);
    eprintln!("produced {ORDERED_MESSAGES} acks=all in {produce_elapsed:?}, consumed in {consume_elapsed:?}");

    let mut seen = HashSet::new();
    let mut last_sequence_of_key: HashMap<String, usize> = HashMap::new();
    let mut next_offset_of_partition: HashMap<i32, i64> = HashMap::new();
    for message in &consumed.messages {
        let key = key_text(message).expect("every message has a key");
        let value = payload_text(message).expect("every message has a value");
        let sequence = sequence_of(&value);
        assert!(seen.insert(sequence), "{value} consumed twice");
        assert_eq!(
            message.partition(),
            librdkafka_partition(key.as_bytes(), ORDERED_PARTITIONS),
            "partition of {key}"
        );
        assert_eq!(
            key,
            format!("key-{}", sequence % ORDERED_KEYS),
            "key of {value}"
        );
        if let Some(&previous) = last_sequence_of_key.get(&key) {
            assert!(
                previous < sequence,
                "{key}: value-{sequence} after value-{previous}"
            );
        }
        last_sequence_of_key.insert(key, sequence);
        let next = next_offset_of_partition
            .entry(message.partition())
            .or_insert(0);
        assert_eq!(
            message.offset(),
            *next,
            "offsets of partition {} are dense",
            message.partition()
        );
        *next += 1;
        assert_eq!(
            delivered_at.get(&(message.partition(), message.offset())),
            Some(&value),
            "the acknowledged offset holds the acknowledged message"
        );
    }
    assert_eq!(seen.len(), ORDERED_MESSAGES, "every message exactly once");
    for partition in 0..ORDERED_PARTITIONS {
        let high = next_offset_of_partition
            .get(&partition)
            .copied()
            .unwrap_or(0);
        assert_eq!(
            watermarks(&bootstrap, &topic, partition),
            (0, high),
            "watermarks of {partition}"
        );
    }
}

#[test]
fn null_key_messages_are_spread_over_partitions() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("null-keys");
    let partitions = 4;
    let count = 400;
    create_topic(&bootstrap, &topic, partitions, &[]);
    // Without sticky batching, librdkafka picks a random partition per null-key message.
    let (producer, log) = producer(&bootstrap, &[("sticky.partitioning.linger.ms", "0")]);
    for i in 0..count {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::<[u8], [u8]>::to(&topic).payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, count);

    let consumed = consume_all(&bootstrap, &topic, partitions, count, CONSUME_TIMEOUT);
    consumed.expect_count(count);
    let mut per_partition: HashMap<i32, usize> = HashMap::new();
    for message in &consumed.messages {
        assert_eq!(message.key(), None, "a null key stays null");
        *per_partition.entry(message.partition()).or_default() += 1;
    }
    for partition in 0..partitions {
        assert!(
            per_partition.get(&partition).copied().unwrap_or(0) > 0,
            "partition {partition} got no null-key message: {per_partition:?}"
        );
    }
}

#[test]
fn headers_timestamps_and_null_fields_round_trip() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("headers");
    create_topic(&bootstrap, &topic, 1, &[]);
    let base_timestamp_ms: i64 = 1_600_000_000_000;
    let binary: Vec<u8> = (0..=255u8).collect();
    let (producer, log) = producer(&bootstrap, &[]);
    let count = 20;
    for i in 0..count {
        let headers = make_headers(&[
            ("trace-id", Some(format!("trace-{i}").as_bytes())),
            ("binary", Some(&binary)),
            ("null-valued", None),
            ("repeated", Some(b"first")),
            ("repeated", Some(b"second")),
            ("empty", Some(b"")),
        ]);
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let mut record = BaseRecord::to(&topic)
            .payload(value.as_bytes())
            .timestamp(base_timestamp_ms + i as i64 * 1000)
            .headers(headers);
        // Every other message has a null key.
        if i % 2 == 0 {
            record = record.key(key.as_bytes());
        }
        send(&producer, record);
    }
    // A message with neither key nor value, and one with an empty value.
    send(
        &producer,
        BaseRecord::<[u8], [u8]>::to(&topic).timestamp(base_timestamp_ms - 1),
    );
    send(
        &producer,
        BaseRecord::to(&topic)
            .key(&b"empty-value"[..])
            .payload(&b""[..]),
    );
    flush(&producer);
    assert_all_delivered(&log, count + 2);

    let consumed = consume_all(&bootstrap, &topic, 1, count + 2, CONSUME_TIMEOUT);
    consumed.expect_count(count + 2);
    for (i, message) in consumed.messages.iter().take(count).enumerate() {
        let expected_key = (i % 2 == 0).then(|| format!("key-{i}"));
        assert_eq!(key_text(message), expected_key, "key of message {i}");
        assert_eq!(
            payload_text(message),
            Some(format!("value-{i}")),
            "value of message {i}"
        );
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(base_timestamp_ms + i as i64 * 1000),
            "timestamp of message {i}"
        );
        let expected_headers: Vec<(String, Option<Vec<u8>>)> = vec![
            ("trace-id".into(), Some(format!("trace-{i}").into_bytes())),
            ("binary".into(), Some(binary.clone())),
            ("null-valued".into(), None),
            ("repeated".into(), Some(b"first".to_vec())),
            ("repeated".into(), Some(b"second".to_vec())),
            ("empty".into(), Some(Vec::new())),
        ];
        assert_eq!(
            header_pairs(message),
            expected_headers,
            "headers of message {i}"
        );
    }
    let bare = &consumed.messages[count];
    assert_eq!(bare.key(), None, "null key");
    assert_eq!(bare.payload(), None, "null value");
    assert_eq!(
        bare.timestamp(),
        Timestamp::CreateTime(base_timestamp_ms - 1)
    );
    assert!(header_pairs(bare).is_empty(), "no headers");
    let empty = &consumed.messages[count + 1];
    assert_eq!(
        empty.payload(),
        Some(&b""[..]),
        "an empty value stays empty, not null"
    );
}

#[test]
fn compressed_batches_round_trip_and_are_stored_as_sent() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let codecs = [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    let count = 300;
    for (codec, compression) in codecs {
        let topic = unique_topic(&format!("compressed-{codec}"));
        create_topic(&bootstrap, &topic, 1, &[]);
        let (producer, log) = producer(
            &bootstrap,
            &[("compression.type", codec), ("linger.ms", "50")],
        );
        for i in 0..count {
            let key = format!("key-{i}");
            // Repetitive values, so that compression has something to do.
            let value = format!("value-{i}-{}", "abcdefgh".repeat(16));
            let headers = make_headers(&[("codec", Some(codec.as_bytes()))]);
            send(
                &producer,
                BaseRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes())
                    .headers(headers),
            );
        }
        flush(&producer);
        assert_all_delivered(&log, count);

        let consumed = consume_all(&bootstrap, &topic, 1, count, CONSUME_TIMEOUT);
        consumed.expect_count(count);
        for (i, message) in consumed.messages.iter().enumerate() {
            assert_eq!(message.offset(), i as i64, "{codec}: offset");
            assert_eq!(key_text(message), Some(format!("key-{i}")), "{codec}: key");
            assert_eq!(
                payload_text(message),
                Some(format!("value-{i}-{}", "abcdefgh".repeat(16))),
                "{codec}: value"
            );
            assert_eq!(
                header_pairs(message),
                vec![("codec".to_string(), Some(codec.as_bytes().to_vec()))]
            );
        }

        // The broker hands out the producer's compressed batches, not re-encoded ones.
        let mut raw = RawClient::connect_negotiated(broker.addr());
        let fetched = raw::fetch(&mut raw, &topic, 0, 0);
        assert_eq!(fetched.error_code, error_code::NONE, "{codec}: fetch error");
        let records = fetched.records.clone().expect("fetched records");
        let mut bytes = records.clone();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
            .unwrap_or_else(|error| panic!("{codec}: decoding fetched batches: {error}"));
        assert!(!sets.is_empty(), "{codec}: at least one batch");
        for set in &sets {
            assert_eq!(
                set.compression, compression,
                "{codec}: stored batch compression"
            );
        }
    }
}

#[test]
fn consumer_waiting_on_an_empty_partition_gets_a_new_message_long_before_fetch_wait_max() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("long-poll");
    create_topic(&bootstrap, &topic, 1, &[]);
    let consumer = consumer(&bootstrap, &[("fetch.wait.max.ms", "5000")]);
    assign(&consumer, &topic, &[0], Offset::Beginning);
    // Let the consumer connect and park a fetch on the empty partition.
    let idle = consume(&consumer, 1, Duration::from_millis(1500));
    assert!(idle.messages.is_empty(), "the partition is empty");

    let (producer, log) = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "0")]);
    let sent_at = Instant::now();
    send(
        &producer,
        BaseRecord::to(&topic)
            .key(&b"k"[..])
            .payload(&b"wake up"[..]),
    );
    let consumed = consume(&consumer, 1, Duration::from_secs(10));
    let latency = sent_at.elapsed();
    consumed.expect_count(1);
    assert_eq!(consumed.messages[0].payload(), Some(&b"wake up"[..]));
    assert!(
        latency < Duration::from_millis(2000),
        "a parked fetch must wake on append, not wait for fetch.wait.max.ms: took {latency:?}"
    );
    flush(&producer);
    assert_all_delivered(&log, 1);
}

#[test]
fn fetch_waits_up_to_max_wait_on_an_empty_partition_and_wakes_on_append() {
    let broker = Broker::start();
    let topic = unique_topic("raw-long-poll");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());

    // Nothing arrives: the answer comes after about max_wait_ms, empty.
    let started = Instant::now();
    let request = raw::fetch_request(&topic, 0, 0, 1000, 1);
    let response = raw.call_negotiated(&request, raw::FETCH_VERSION_MAX);
    let waited = started.elapsed();
    let partition = raw::single_fetch_partition(&response);
    assert_eq!(partition.error_code, error_code::NONE);
    assert!(
        partition.records.as_ref().is_none_or(|r| r.is_empty()),
        "no records on an empty partition"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(3000),
        "an empty fetch with max_wait_ms=1000 answered after {waited:?}"
    );

    // A batch arrives 300 ms into a 10 s wait: the answer comes right after it.
    let addr = broker.addr();
    let topic_for_writer = topic.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut writer = RawClient::connect_negotiated(addr);
        raw::produce(&mut writer, &topic_for_writer, 0, &[(b"k", b"v")])
    });
    let started = Instant::now();
    let request = raw::fetch_request(&topic, 0, 0, 10_000, 1);
    let response = raw.call_negotiated(&request, raw::FETCH_VERSION_MAX);
    let waited = started.elapsed();
    let produced = writer.join().expect("the writer thread does not panic");
    assert_eq!(produced.error_code, error_code::NONE, "produce error");
    let partition = raw::single_fetch_partition(&response);
    assert_eq!(partition.error_code, error_code::NONE);
    let records = raw::decode_records(partition.records.as_ref().expect("records after append"));
    assert_eq!(records.len(), 1, "the appended record");
    assert!(
        waited < Duration::from_millis(2500),
        "a parked fetch woke after {waited:?}"
    );
}

#[test]
fn offsets_for_times_finds_the_first_offset_at_or_after_a_timestamp() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("by-time");
    create_topic(&bootstrap, &topic, 1, &[]);
    let base_timestamp_ms: i64 = 1_700_000_000_000;
    let (producer, log) = producer(&bootstrap, &[("linger.ms", "0")]);
    for i in 0..10 {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(&b"k"[..])
                .payload(value.as_bytes())
                .timestamp(base_timestamp_ms + i * 1000),
        );
        // Separate batches, so that the lookup has to look inside the log.
        flush(&producer);
    }
    assert_all_delivered(&log, 10);

    let consumer = consumer(&bootstrap, &[]);
    let lookup = |timestamp: i64| common::clients::offset_for_time(&consumer, &topic, timestamp);
    assert_eq!(
        lookup(base_timestamp_ms - 5000),
        Offset::Offset(0),
        "before everything"
    );
    assert_eq!(
        lookup(base_timestamp_ms),
        Offset::Offset(0),
        "exactly the first"
    );
    assert_eq!(
        lookup(base_timestamp_ms + 3000),
        Offset::Offset(3),
        "exactly the fourth"
    );
    assert_eq!(
        lookup(base_timestamp_ms + 3500),
        Offset::Offset(4),
        "between the fourth and fifth"
    );
    assert_eq!(
        lookup(base_timestamp_ms + 9000),
        Offset::Offset(9),
        "exactly the last"
    );
    assert_eq!(
        lookup(base_timestamp_ms + 60_000),
        Offset::End,
        "after everything"
    );
}

#[test]
fn seek_moves_a_consumer_to_the_given_offset() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("seek");
    create_topic(&bootstrap, &topic, 1, &[]);
    common::clients::produce_keyed(&bootstrap, &topic, 20, 1);

    let consumer = consumer(&bootstrap, &[]);
    assign(&consumer, &topic, &[0], Offset::Beginning);
    let first = consume(&consumer, 5, CONSUME_TIMEOUT);
    first.expect_count(5);
    assert_eq!(first.messages[4].offset(), 4);

    consumer
        .seek(&topic, 0, Offset::Offset(15), CLIENT_REQUEST_TIMEOUT)
        .expect("seek forward");
    let after_forward = consume(&consumer, 1, CONSUME_TIMEOUT);
    after_forward.expect_count(1);
    assert_eq!(
        after_forward.messages[0].offset(),
        15,
        "offset after seeking forward"
    );
    assert_eq!(
        payload_text(&after_forward.messages[0]).as_deref(),
        Some("value-15")
    );

    consumer
        .seek(&topic, 0, Offset::Offset(2), CLIENT_REQUEST_TIMEOUT)
        .expect("seek back");
    let after_back = consume(&consumer, 1, CONSUME_TIMEOUT);
    after_back.expect_count(1);
    assert_eq!(
        after_back.messages[0].offset(),
        2,
        "offset after seeking back"
    );

    // Assigning at an explicit offset starts there.
    let other = common::clients::consumer(&bootstrap, &[]);
    assign(&other, &topic, &[0], Offset::Offset(18));
    let tail = consume(&other, 2, CONSUME_TIMEOUT);
    tail.expect_count(2);
    assert_eq!(
        (tail.messages[0].offset(), tail.messages[1].offset()),
        (18, 19)
    );
}

#[test]
fn offset_beyond_the_end_is_reset_to_earliest_or_latest_by_policy() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("reset");
    create_topic(&bootstrap, &topic, 1, &[]);
    common::clients::produce_keyed(&bootstrap, &topic, 10, 1);

    let earliest = consumer(&bootstrap, &[("auto.offset.reset", "earliest")]);
    assign(&earliest, &topic, &[0], Offset::Offset(1000));
    let consumed = consume(&earliest, 10, CONSUME_TIMEOUT);
    consumed.expect_count(10);
    assert_eq!(
        consumed.messages[0].offset(),
        0,
        "earliest resets to the log start"
    );

    let latest = consumer(&bootstrap, &[("auto.offset.reset", "latest")]);
    assign(&latest, &topic, &[0], Offset::Offset(1000));
    let idle = consume(&latest, 1, Duration::from_millis(2000));
    assert!(
        idle.messages.is_empty(),
        "latest resets to the end: nothing old is delivered"
    );
    common::clients::produce_keyed(&bootstrap, &topic, 1, 1);
    let consumed = consume(&latest, 1, CONSUME_TIMEOUT);
    consumed.expect_count(1);
    assert_eq!(
        consumed.messages[0].offset(),
        10,
        "latest resets to the high watermark"
    );

    let strict = consumer(&bootstrap, &[("auto.offset.reset", "error")]);
    assign(&strict, &topic, &[0], Offset::Offset(1000));
    let consumed = consume(&strict, 1, Duration::from_millis(3000));
    assert!(
        consumed.messages.is_empty(),
        "no reset with auto.offset.reset=error"
    );
    assert!(
        !consumed.errors.is_empty(),
        "the client reports the out-of-range offset as an error"
    );
}

#[test]
fn earliest_reset_after_delete_records_starts_at_the_new_log_start() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("reset-after-delete");
    create_topic(&bootstrap, &topic, 1, &[]);
    common::clients::produce_keyed(&bootstrap, &topic, 10, 1);
    let admin = admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(6))
        .expect("a valid offset");
    block_on(admin.delete_records(&offsets, &admin_options())).expect("DeleteRecords request");

    // Offset 2 was deleted: the fetch is out of range, the reset goes to offset 6.
    let consumer = consumer(&bootstrap, &[("auto.offset.reset", "earliest")]);
    assign(&consumer, &topic, &[0], Offset::Offset(2));
    let consumed = consume(&consumer, 4, CONSUME_TIMEOUT);
    consumed.expect_count(4);
    assert_eq!(
        consumed.messages[0].offset(),
        6,
        "first offset after the reset"
    );

    // The raw protocol says why: OFFSET_OUT_OF_RANGE below the log start.
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let fetched = raw::fetch(&mut raw, &topic, 0, 2);
    // Kafka answers an errored partition with -1 watermarks, so only the code is checked.
    assert_eq!(
        fetched.error_code,
        error_code::OFFSET_OUT_OF_RANGE,
        "fetch below the log start"
    );
}

#[test]
fn produce_with_acks_0_is_stored_and_gets_no_response() {
    let broker = Broker::start();
    let topic = unique_topic("acks-0");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let produce_version =
        client.version_of::<kafka_protocol::messages::ProduceRequest>(raw::PRODUCE_VERSION_MAX);
    let request = raw::produce_request(
        &topic,
        0,
        0,
        raw::record_batch(&[(b"k", b"fire and forget")]),
    );
    let (_, frame) = client.frame(&request, produce_version);
    client.write_raw(&frame).expect("writing an acks=0 produce");
    // The next response on the connection answers the next request.
    let versions_request = raw::api_versions_request(0);
    let (correlation_id, frame) = client.frame(&versions_request, 0);
    client.write_raw(&frame).expect("writing ApiVersions");
    let answer = client.receive::<kafka_protocol::messages::ApiVersionsRequest>(correlation_id, 0);
    assert_eq!(answer.error_code, error_code::NONE);

    let stored = common::wait_until(Duration::from_secs(5), || {
        watermarks(&broker.bootstrap(), &topic, 0) == (0, 1)
    });
    assert!(stored, "the acks=0 batch is stored");
    let fetched = raw::fetch(&mut client, &topic, 0, 0);
    let records = raw::decode_records(fetched.records.as_ref().expect("records"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"fire and forget"[..]));
}

#[test]
fn log_append_time_topic_stamps_messages_with_the_broker_clock() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("log-append-time");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let before_ms = raw::now_ms();
    let (producer, log) = producer(&bootstrap, &[]);
    for i in 0..5 {
        let value = format!("value-{i}");
        // An old producer timestamp, which the broker must replace.
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(&b"k"[..])
                .payload(value.as_bytes())
                .timestamp(1_000_000),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, 5);
    let after_ms = raw::now_ms();

    let consumed = consume_all(&bootstrap, &topic, 1, 5, CONSUME_TIMEOUT);
    consumed.expect_count(5);
    for message in &consumed.messages {
        match message.timestamp() {
            Timestamp::LogAppendTime(ms) => assert!(
                (before_ms - 1000..=after_ms + 1000).contains(&ms),
                "append time {ms} outside [{before_ms}, {after_ms}]"
            ),
            other => panic!("expected a log append time, got {other:?}"),
        }
    }
    // The broker rewrote the batch header, so its CRC must still hold.
    let mut raw_client = RawClient::connect_negotiated(broker.addr());
    let fetched = raw::fetch(&mut raw_client, &topic, 0, 0);
    let records = raw::decode_records(fetched.records.as_ref().expect("records"));
    assert_eq!(records.len(), 5, "the batches decode with valid CRCs");
}

#[test]
fn a_large_fetch_response_read_slowly_arrives_whole_and_in_order() {
    let broker = Broker::start();
    let topic = unique_topic("slow-reader");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    // About 6 MiB in 48 batches: far more than a socket buffer holds.
    let value = vec![b'v'; 1024];
    let mut produced = 0usize;
    for batch in 0..48 {
        let keys: Vec<String> = (0..128).map(|i| format!("{batch}-{i}")).collect();
        let entries: Vec<(&[u8], &[u8])> = keys
            .iter()
            .map(|k| (k.as_bytes(), value.as_slice()))
            .collect();
        let answer = raw::produce(&mut client, &topic, 0, &entries);
        assert_eq!(answer.error_code, 0, "produce batch {batch}");
        produced += entries.len();
    }
    let version =
        client.version_of::<kafka_protocol::messages::FetchRequest>(raw::FETCH_VERSION_MAX);
    let (correlation_id, frame) = client.frame(&raw::fetch_request(&topic, 0, 0, 0, 0), version);
    client.write_raw(&frame).expect("sending the fetch");
    // Do not read for a while: the broker finds the socket full and must finish later.
    std::thread::sleep(Duration::from_millis(300));
    let response =
        client.receive::<kafka_protocol::messages::FetchRequest>(correlation_id, version);
    let partition = raw::single_fetch_partition(&response);
    assert_eq!(partition.error_code, 0);
    let records = raw::decode_records(partition.records.as_ref().expect("records"));
    assert_eq!(records.len(), produced, "every record in one response");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, i as i64, "offsets in order");
    }
}

/// A batch of records with keys, values (one null), headers and distinct
/// timestamps, for the broker-side recompression tests, and its records.
fn recompression_batch(
    count: i64,
    base_timestamp_ms: i64,
    compression: Compression,
) -> (Vec<kafka_protocol::records::Record>, bytes::Bytes) {
    let mut builder = BatchBuilder::new(BatchOptions {
        compression,
        ..BatchOptions::default()
    });
    for i in 0..count {
        let value = (i != 3).then(|| format!("value-{i}-{}", "xyz".repeat(20)));
        let headers = [(
            kafka_protocol::protocol::StrBytes::from_string(format!("header-{i}")),
            Some(bytes::Bytes::from(format!("header-value-{i}"))),
        )]
        .into_iter()
        .collect();
        builder.push_with_headers(
            Some(bytes::Bytes::from(format!("key-{i}"))),
            value.map(bytes::Bytes::from),
            base_timestamp_ms + 7 * i,
            headers,
        );
    }
    let batch = builder.encode().expect("encoding a record batch");
    (builder.records().to_vec(), batch)
}

/// Produces `batch` with acks=-1 and returns the stored bytes fetched back from offset 0.
fn produce_and_fetch_raw(broker: &Broker, topic: &str, batch: bytes::Bytes) -> bytes::Bytes {
    let mut client = RawClient::connect_negotiated(broker.addr());
    let request = raw::produce_request(topic, 0, -1, batch);
    let response = client.call_negotiated(&request, raw::PRODUCE_VERSION_MAX);
    let answer = raw::single_produce_partition(&response);
    assert_eq!(answer.error_code, error_code::NONE, "produce error");
    assert_eq!(answer.base_offset, 0, "the first batch of the topic");
    let fetched = raw::fetch(&mut client, topic, 0, 0);
    assert_eq!(fetched.error_code, error_code::NONE, "fetch error");
    fetched.records.clone().expect("fetched records")
}

/// The compression bits of the first stored batch (attributes, bytes 21-22).
fn stored_codec(stored: &[u8]) -> i16 {
    i16::from_be_bytes([stored[21], stored[22]]) & 0x07
}

#[test]
fn lz4_topic_stores_a_gzip_batch_as_lz4_with_identical_records() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("recompress-lz4");
    create_topic(&bootstrap, &topic, 1, &[("compression.type", "lz4")]);
    let base_timestamp_ms = 1_650_000_000_000;
    let (sent, batch) = recompression_batch(40, base_timestamp_ms, Compression::Gzip);
    let stored = produce_and_fetch_raw(&broker, &topic, batch);
    assert_eq!(stored_codec(&stored), 3, "stored batch attributes say lz4");

    let mut bytes = stored.clone();
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .expect("the stored batch decodes");
    assert_eq!(sets.len(), 1, "one batch stored for one sent");
    assert_eq!(sets[0].compression, Compression::Lz4);
    let got = &sets[0].records;
    assert_eq!(got.len(), sent.len());
    for (got, sent) in got.iter().zip(&sent) {
        assert_eq!(
            (
                got.offset,
                got.timestamp,
                got.timestamp_type,
                &got.key,
                &got.value,
                &got.headers
            ),
            (
                sent.offset,
                sent.timestamp,
                sent.timestamp_type,
                &sent.key,
                &sent.value,
                &sent.headers
            ),
            "record {}",
            sent.offset
        );
        assert_eq!(
            (
                got.producer_id,
                got.producer_epoch,
                got.sequence,
                got.transactional
            ),
            (
                sent.producer_id,
                sent.producer_epoch,
                sent.sequence,
                sent.transactional
            )
        );
    }

    // A real consumer reads the recompressed batch like any other.
    let consumed = consume_all(&bootstrap, &topic, 1, sent.len(), CONSUME_TIMEOUT);
    consumed.expect_count(sent.len());
    for (message, sent) in consumed.messages.iter().zip(&sent) {
        assert_eq!(message.offset(), sent.offset);
        assert_eq!(message.key(), sent.key.as_deref());
        assert_eq!(message.payload(), sent.value.as_deref());
        assert_eq!(message.timestamp(), Timestamp::CreateTime(sent.timestamp));
        assert_eq!(header_pairs(message).len(), 1, "one header");
    }
}

#[test]
fn uncompressed_topic_stores_batches_without_compression() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("recompress-uncompressed");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[("compression.type", "uncompressed")],
    );
    let (producer, log) = producer(
        &bootstrap,
        &[("compression.type", "gzip"), ("linger.ms", "50")],
    );
    let count = 50;
    for i in 0..count {
        let value = format!("value-{i}-{}", "abcdefgh".repeat(16));
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(format!("key-{i}").as_bytes())
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, count);

    let mut raw = RawClient::connect_negotiated(broker.addr());
    let fetched = raw::fetch(&mut raw, &topic, 0, 0);
    let mut bytes = fetched.records.clone().expect("fetched records");
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .expect("stored batches decode");
    assert!(!sets.is_empty());
    for set in &sets {
        assert_eq!(set.compression, Compression::None, "stored codec 0");
    }
    let consumed = consume_all(&bootstrap, &topic, 1, count, CONSUME_TIMEOUT);
    consumed.expect_count(count);
    for (i, message) in consumed.messages.iter().enumerate() {
        assert_eq!(key_text(message), Some(format!("key-{i}")));
        assert_eq!(
            payload_text(message),
            Some(format!("value-{i}-{}", "abcdefgh".repeat(16)))
        );
    }
}

#[test]
fn producer_compression_type_keeps_the_batch_byte_for_byte() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("recompress-producer");
    create_topic(&bootstrap, &topic, 1, &[("compression.type", "producer")]);
    let (_, sent) = recompression_batch(30, 1_650_000_000_000, Compression::Gzip);
    let stored = produce_and_fetch_raw(&broker, &topic, sent.clone());
    // Only baseOffset (0..8) and partitionLeaderEpoch (12..16) are assigned.
    assert_eq!(stored.len(), sent.len(), "same length");
    assert_eq!(stored[8..12], sent[8..12], "same batchLength");
    assert_eq!(stored[16..], sent[16..], "same bytes from magic to the end");
}
