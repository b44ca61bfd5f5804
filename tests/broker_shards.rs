//! A broker with two shards (`--cpus 0-1`): partitions of one topic live on
//! both, and any connection, whichever shard accepted it, produces to and
//! fetches from all of them, also within a single request.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::clients::{
    assert_all_delivered, assign, consume, consumer, create_topic, flush, key_text, payload_text,
    producer, send, topic_names,
};
use common::raw::{self, error_code, RawClient};
use common::{two_shard_broker, unique_topic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const PARTITIONS: i32 = 4;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
/// Raw connections opened; the kernel spreads them over both shards
/// (SO_REUSEPORT), so with this many both shards accept some.
const RAW_CONNECTIONS: usize = 8;

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// One Produce request carrying a batch for every partition.
fn produce_to_all_partitions(topic: &str, connection: usize) -> ProduceRequest {
    let partitions = (0..PARTITIONS)
        .map(|partition| {
            let key = format!("conn-{connection}");
            let value = format!("conn-{connection}-partition-{partition}");
            PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(raw::record_batch(&[(
                    key.as_bytes(),
                    value.as_bytes(),
                )])))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(partitions)])
}

/// One Fetch request for every partition from offset 0.
fn fetch_all_partitions(topic: &str) -> FetchRequest {
    let partitions = (0..PARTITIONS)
        .map(|partition| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1024 * 1024)
        })
        .collect();
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)])
}

#[test]
fn one_client_produces_to_and_fetches_from_partitions_on_both_shards() {
    let Some(mut broker) =
        two_shard_broker("one_client_produces_to_and_fetches_from_partitions_on_both_shards")
    else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("sharded");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    // The broker logs each partition's owner: both shards must own some.
    let placement = broker
        .log()
        .lines()
        .find(|l| l.contains("topic created") && l.contains(&topic))
        .map(|l| l.split("shards=").nth(1).unwrap_or("").to_string())
        .expect("a 'topic created' log line");
    assert!(
        placement.contains('0') && placement.contains('1'),
        "partitions on both shards: {placement}"
    );

    let (producer, log) = producer(&bootstrap, &[]);
    let per_partition = 100;
    let count = per_partition * PARTITIONS as usize;
    for i in 0..count {
        let partition = (i % PARTITIONS as usize) as i32;
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, count);
    drop(producer);

    let check = |what: &str| {
        let consumer = consumer(&bootstrap, &[]);
        let all: Vec<i32> = (0..PARTITIONS).collect();
        assign(&consumer, &topic, &all, Offset::Beginning);
        let consumed = consume(&consumer, count, CONSUME_TIMEOUT);
        consumed.expect_count(count);
        let mut next: HashMap<i32, i64> = HashMap::new();
        for message in &consumed.messages {
            let value = payload_text(message).expect("a value");
            let i: usize = value.trim_start_matches("value-").parse().expect("value-N");
            assert_eq!(
                message.partition(),
                (i % PARTITIONS as usize) as i32,
                "{what}: partition of {value}"
            );
            assert_eq!(
                key_text(message),
                Some(format!("key-{i}")),
                "{what}: key of {value}"
            );
            let expected = next.entry(message.partition()).or_insert(0);
            assert_eq!(
                message.offset(),
                *expected,
                "{what}: offsets of {}",
                message.partition()
            );
            *expected += 1;
        }
        for partition in 0..PARTITIONS {
            assert_eq!(
                next.get(&partition).copied(),
                Some(per_partition as i64),
                "{what}: count of {partition}"
            );
        }
    };
    check("before restart");
    // The partition-to-shard assignment is persisted: the same data after a restart.
    broker.restart();
    check("after restart");
}

#[test]
fn every_connection_reaches_every_partition_within_one_request() {
    let Some(broker) =
        two_shard_broker("every_connection_reaches_every_partition_within_one_request")
    else {
        return;
    };
    let topic = unique_topic("sharded-raw");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);

    let mut clients: Vec<RawClient> = (0..RAW_CONNECTIONS)
        .map(|_| RawClient::connect_negotiated(broker.addr()))
        .collect();
    for (connection, client) in clients.iter_mut().enumerate() {
        let response = client.call_negotiated(
            &produce_to_all_partitions(&topic, connection),
            raw::PRODUCE_VERSION_MAX,
        );
        assert_eq!(response.responses.len(), 1, "one topic answered");
        let mut answered: Vec<i32> = response.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.index)
            .collect();
        answered.sort_unstable();
        assert_eq!(
            answered,
            (0..PARTITIONS).collect::<Vec<_>>(),
            "every partition answered"
        );
        for answer in &response.responses[0].partition_responses {
            assert_eq!(
                answer.error_code,
                error_code::NONE,
                "produce to partition {}",
                answer.index
            );
            assert_eq!(
                answer.base_offset, connection as i64,
                "base offset in partition {}",
                answer.index
            );
        }
    }
    for client in &mut clients {
        let response =
            client.call_negotiated(&fetch_all_partitions(&topic), raw::FETCH_VERSION_MAX);
        assert_eq!(response.responses.len(), 1, "one topic answered");
        let partitions = &response.responses[0].partitions;
        assert_eq!(
            partitions.len(),
            PARTITIONS as usize,
            "every partition answered"
        );
        for partition in partitions {
            assert_eq!(
                partition.error_code,
                error_code::NONE,
                "fetch from {}",
                partition.partition_index
            );
            assert_eq!(partition.high_watermark, RAW_CONNECTIONS as i64);
            let records = raw::decode_records(partition.records.as_ref().expect("records"));
            assert_eq!(
                records.len(),
                RAW_CONNECTIONS,
                "records of {}",
                partition.partition_index
            );
            for (connection, record) in records.iter().enumerate() {
                assert_eq!(record.offset, connection as i64);
                let value = format!("conn-{connection}-partition-{}", partition.partition_index);
                assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
            }
        }
    }
}

#[test]
fn topics_created_through_one_connection_are_visible_on_all_of_them() {
    let Some(broker) =
        two_shard_broker("topics_created_through_one_connection_are_visible_on_all_of_them")
    else {
        return;
    };
    let mut clients: Vec<RawClient> = (0..RAW_CONNECTIONS)
        .map(|_| RawClient::connect_negotiated(broker.addr()))
        .collect();
    let topic = unique_topic("sharded-metadata");
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(&topic)))
        ]));
    for (i, client) in clients.iter_mut().enumerate() {
        // Metadata reaches the other shard as a snapshot; allow it a moment.
        let visible = common::wait_until(Duration::from_secs(2), || {
            let response = client.call_negotiated(&request, 12);
            response.topics.len() == 1
                && response.topics[0].error_code == error_code::NONE
                && response.topics[0].partitions.len() == PARTITIONS as usize
                && response.topics[0]
                    .partitions
                    .iter()
                    .all(|p| p.leader_id.0 == 0)
        });
        assert!(
            visible,
            "connection {i} sees the new topic with {PARTITIONS} partitions led by node 0"
        );
    }
    assert!(topic_names(&broker.bootstrap()).contains(&topic));
}
