//! Fetch's limits against a real broker: `min_bytes` (0 answers at once),
//! and KIP-74's `max_bytes` and `partition_max_bytes` (whole batches, the
//! first batch of the first partition with data returned whole), on one
//! shard and across two.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::clients::{assign, consume, consumer, create_topic};
use common::raw::{self, error_code, RawClient};
use common::{two_shard_broker, unique_topic, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::Offset;

/// Value bytes of each record in the large-batch tests (one record per batch).
const LARGE_VALUE_BYTES: usize = 100_000;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

/// A record value of `LARGE_VALUE_BYTES` that names its partition and sequence.
fn large_value(partition: i32, sequence: usize) -> Vec<u8> {
    let mut value = format!("{partition}-{sequence}-").into_bytes();
    value.resize(LARGE_VALUE_BYTES, b'x');
    value
}

/// Appends `count` one-record batches of `LARGE_VALUE_BYTES` to `partition`.
fn produce_large_batches(client: &mut RawClient, topic: &str, partition: i32, count: usize) {
    for sequence in 0..count {
        let value = large_value(partition, sequence);
        let answer = raw::produce(client, topic, partition, &[(b"k", &value)]);
        assert_eq!(answer.error_code, error_code::NONE, "produce error");
    }
}

/// The stored size of one batch made by [`produce_large_batches`].
fn large_batch_bytes() -> usize {
    raw::record_batch(&[(b"k", &large_value(0, 0))]).len()
}

/// One Fetch request for `partitions` of `topic` from offset 0, without waiting.
fn fetch_partitions(
    topic: &str,
    partitions: i32,
    max_bytes: usize,
    partition_max_bytes: usize,
) -> FetchRequest {
    let partitions = (0..partitions)
        .map(|partition| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(i32::try_from(partition_max_bytes).expect("fits i32"))
        })
        .collect();
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(i32::try_from(max_bytes).expect("fits i32"))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)])
}

/// Per partition (in request order): the batches returned (one record each)
/// and their bytes.
fn batches_per_partition(response: &FetchResponse) -> Vec<(usize, usize)> {
    assert_eq!(response.responses.len(), 1, "one topic in the response");
    response.responses[0]
        .partitions
        .iter()
        .map(|partition| {
            assert_eq!(partition.error_code, error_code::NONE, "partition error");
            let records = partition.records.clone().unwrap_or_else(Bytes::new);
            (raw::decode_records(&records).len(), records.len())
        })
        .collect()
}

fn total_bytes(per_partition: &[(usize, usize)]) -> usize {
    per_partition.iter().map(|(_, bytes)| bytes).sum()
}

/// Fills `partitions` partitions with `batches` large batches each.
fn topic_with_large_batches(
    broker: &Broker,
    prefix: &str,
    partitions: i32,
    batches: usize,
) -> String {
    let topic = unique_topic(prefix);
    create_topic(&broker.bootstrap(), &topic, partitions, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    for partition in 0..partitions {
        produce_large_batches(&mut client, &topic, partition, batches);
    }
    topic
}

#[test]
fn fetch_with_min_bytes_0_answers_at_once_and_min_bytes_1_waits() {
    let broker = Broker::start();
    let topic = unique_topic("min-bytes");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());

    // Kafka answers a fetch as soon as min_bytes are there: 0 is always there.
    let started = Instant::now();
    let request = raw::fetch_request(&topic, 0, 0, 5000, 0);
    let response = client.call_negotiated(&request, raw::FETCH_VERSION_MAX);
    let waited = started.elapsed();
    let partition = raw::single_fetch_partition(&response);
    assert_eq!(partition.error_code, error_code::NONE);
    assert!(
        waited < Duration::from_secs(2),
        "min_bytes=0, max_wait_ms=5000 on an empty partition answered after {waited:?}"
    );

    // min_bytes=1 on an empty partition waits for max_wait_ms.
    let started = Instant::now();
    let request = raw::fetch_request(&topic, 0, 0, 500, 1);
    let response = client.call_negotiated(&request, raw::FETCH_VERSION_MAX);
    let waited = started.elapsed();
    assert_eq!(
        raw::single_fetch_partition(&response).error_code,
        error_code::NONE
    );
    assert!(
        waited >= Duration::from_millis(400),
        "min_bytes=1, max_wait_ms=500 on an empty partition answered after {waited:?}"
    );
}

#[test]
fn fetch_stops_at_max_bytes_and_a_later_partition_gets_no_batch_that_does_not_fit() {
    let broker = Broker::start();
    let topic = topic_with_large_batches(&broker, "max-bytes", 3, 3);
    let batch = large_batch_bytes();
    let mut client = RawClient::connect_negotiated(broker.addr());

    // Room for two and a half batches: partition 0 fills two, the half left
    // over takes none of partition 1's or 2's.
    let max_bytes = 2 * batch + batch / 2;
    let response = client.call_negotiated(
        &fetch_partitions(&topic, 3, max_bytes, 16 * batch),
        raw::FETCH_VERSION_MAX,
    );
    let got = batches_per_partition(&response);
    assert!(total_bytes(&got) <= max_bytes, "{got:?} over {max_bytes}");
    assert_eq!(
        got.iter().map(|(count, _)| *count).collect::<Vec<_>>(),
        vec![2, 0, 0]
    );
}

#[test]
fn a_first_batch_larger_than_max_bytes_comes_back_whole_and_alone() {
    let broker = Broker::start();
    let topic = topic_with_large_batches(&broker, "oversize", 2, 2);
    let batch = large_batch_bytes();
    let mut client = RawClient::connect_negotiated(broker.addr());

    // KIP-74: the first batch of the first partition with data comes back
    // whole, whatever the limits; nothing else joins it.
    for (max_bytes, partition_max_bytes) in [(batch / 4, 16 * batch), (16 * batch, batch / 4)] {
        let response = client.call_negotiated(
            &fetch_partitions(&topic, 2, max_bytes, partition_max_bytes),
            raw::FETCH_VERSION_MAX,
        );
        let got = batches_per_partition(&response);
        assert_eq!(
            got,
            vec![(1, batch), (0, 0)],
            "max_bytes={max_bytes} partition_max_bytes={partition_max_bytes}"
        );
    }
}

#[test]
fn partition_max_bytes_limits_each_partition_to_whole_batches() {
    let broker = Broker::start();
    let topic = unique_topic("partition-max-bytes");
    create_topic(&broker.bootstrap(), &topic, 3, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let batch = large_batch_bytes();
    produce_large_batches(&mut client, &topic, 0, 3);
    // Partition 1 holds one batch three times the usual size.
    let value = vec![b'y'; 3 * LARGE_VALUE_BYTES];
    let answer = raw::produce(&mut client, &topic, 1, &[(b"k", &value)]);
    assert_eq!(answer.error_code, error_code::NONE);
    produce_large_batches(&mut client, &topic, 2, 3);

    // Two and a half batches per partition: two each; partition 1's big batch
    // does not fit and, with data already in the response, is not returned.
    let partition_max_bytes = 2 * batch + batch / 2;
    let response = client.call_negotiated(
        &fetch_partitions(&topic, 3, 64 * batch, partition_max_bytes),
        raw::FETCH_VERSION_MAX,
    );
    let got = batches_per_partition(&response);
    assert_eq!(got, vec![(2, 2 * batch), (0, 0), (2, 2 * batch)]);
}

#[test]
fn fetch_across_two_shards_stays_within_max_bytes_in_request_order() {
    let test = "fetch_across_two_shards_stays_within_max_bytes_in_request_order";
    let Some(broker) = two_shard_broker(test) else {
        return;
    };
    let partitions = 4;
    let topic = topic_with_large_batches(&broker, "max-bytes-shards", partitions, 3);
    let batch = large_batch_bytes();
    let max_bytes = 2 * batch + batch / 2;
    // Ask from several connections: the kernel spreads them over both shards,
    // so both the shard owning partition 0 and the other one answer some.
    for _ in 0..4 {
        let mut client = RawClient::connect_negotiated(broker.addr());
        let response = client.call_negotiated(
            &fetch_partitions(&topic, partitions, max_bytes, 16 * batch),
            raw::FETCH_VERSION_MAX,
        );
        let got = batches_per_partition(&response);
        assert!(total_bytes(&got) <= max_bytes, "{got:?} over {max_bytes}");
        assert_eq!(
            got.iter().map(|(count, _)| *count).collect::<Vec<_>>(),
            vec![2, 0, 0, 0]
        );

        // A partition limit of one and a half batches: one batch from each
        // partition while the response has room.
        let response = client.call_negotiated(
            &fetch_partitions(&topic, partitions, max_bytes, batch + batch / 2),
            raw::FETCH_VERSION_MAX,
        );
        let got = batches_per_partition(&response);
        assert_eq!(
            got.iter().map(|(count, _)| *count).collect::<Vec<_>>(),
            vec![1, 1, 0, 0]
        );
    }
}

/// librdkafka's test 0082_fetch_max_bytes: a consumer whose largest accepted
/// response (`receive.message.max.bytes`) is just over `fetch.max.bytes`,
/// asking for much more per partition, must still get every record.
fn librdkafka_consumes_everything_within_fetch_max_bytes(broker: &Broker) {
    let partitions = 3;
    let per_partition = 10;
    let topic = topic_with_large_batches(broker, "fetch-max-bytes", partitions, per_partition);
    let consumer = consumer(
        &broker.bootstrap(),
        &[
            ("max.partition.fetch.bytes", "20000000"),
            ("fetch.max.bytes", "1000000"),
            ("receive.message.max.bytes", "1000512"),
        ],
    );
    let all: Vec<i32> = (0..partitions).collect();
    assign(&consumer, &topic, &all, Offset::Beginning);
    let count = partitions as usize * per_partition;
    let consumed = consume(&consumer, count, CONSUME_TIMEOUT);
    consumed.expect_count(count);
    for partition in 0..partitions {
        let values: Vec<&[u8]> = consumed
            .messages
            .iter()
            .filter(|m| m.partition() == partition)
            .filter_map(|m| m.payload())
            .collect();
        let expected: Vec<Vec<u8>> = (0..per_partition)
            .map(|sequence| large_value(partition, sequence))
            .collect();
        assert!(
            values
                .iter()
                .copied()
                .eq(expected.iter().map(Vec::as_slice)),
            "partition {partition}: records in order and intact"
        );
    }
}

#[test]
fn librdkafka_consumer_with_small_fetch_max_bytes_gets_every_record() {
    let broker = Broker::start();
    librdkafka_consumes_everything_within_fetch_max_bytes(&broker);
}

#[test]
fn librdkafka_consumer_with_small_fetch_max_bytes_gets_every_record_from_two_shards() {
    let test = "librdkafka_consumer_with_small_fetch_max_bytes_gets_every_record_from_two_shards";
    let Some(broker) = two_shard_broker(test) else {
        return;
    };
    librdkafka_consumes_everything_within_fetch_max_bytes(&broker);
}
