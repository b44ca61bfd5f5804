//! Leader epochs on a single broker (KIP-320): Fetch, ListOffsets and
//! OffsetForLeaderEpoch fence a client's `current_leader_epoch` against the
//! leader's, which is the epoch Metadata reports and the broker stamps into
//! appended batches; OffsetForLeaderEpoch answers from the log's epoch
//! cache at every version clients use, before and after a restart; a
//! single broker's DescribeQuorum is a quorum of one.

mod common;

use common::clients::{
    assert_all_delivered, assign, consume, consumer, create_topic, flush, producer, send,
};
use common::raw::{self, error_code, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::BaseRecord;
use std::time::Duration;

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// A single broker's partitions stay at their first epoch.
const EPOCH: i32 = 0;
/// The versions of OffsetForLeaderEpoch librdkafka (v2) and the Java client (v3, v4) send.
const OFFSET_FOR_LEADER_EPOCH_VERSIONS: [i16; 3] = [2, 3, 4];
const RECORDS: usize = 30;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// ListOffsets "latest" at `epoch`: (error, offset, leader epoch).
fn latest_at_epoch(client: &mut RawClient, topic: &str, epoch: i32) -> (i16, i64, i32) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(epoch)
                .with_timestamp(-1)])]);
    let response = client.call(&request, 4);
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.leader_epoch)
}

fn metadata_epoch(client: &mut RawClient, topic: &str) -> i32 {
    let request = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(name(topic))),
    ]));
    let response = client.call(&request, 12);
    response.topics[0].partitions[0].leader_epoch
}

fn produce_records(broker: &Broker, topic: &str) {
    let (producer, log) = producer(&broker.bootstrap(), &[]);
    for i in 0..RECORDS {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(topic)
                .key(&b"k"[..])
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, RECORDS);
}

#[test]
fn fetch_and_list_offsets_fence_epochs_other_than_the_leaders() {
    let broker = Broker::start();
    let topic = unique_topic("epochs");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    assert_eq!(
        raw::produce(&mut client, &topic, 0, &[(b"k", b"v")]).error_code,
        0
    );
    assert_eq!(
        metadata_epoch(&mut client, &topic),
        EPOCH,
        "Metadata's epoch"
    );

    // The epoch Metadata reports is the one stamped into stored batches.
    let fetched = raw::fetch(&mut client, &topic, 0, 0);
    let records = fetched.records.expect("records");
    let stamped = raw::partition_leader_epoch(&records);
    assert_eq!(stamped, EPOCH, "partitionLeaderEpoch of the stored batch");

    assert_eq!(
        raw::fetch_at_epoch(&mut client, &topic, -1),
        error_code::NONE,
        "-1: no check"
    );
    assert_eq!(
        raw::fetch_at_epoch(&mut client, &topic, EPOCH),
        error_code::NONE
    );
    assert_eq!(
        raw::fetch_at_epoch(&mut client, &topic, EPOCH + 1),
        UNKNOWN_LEADER_EPOCH
    );
    assert_eq!(
        raw::fetch_at_epoch(&mut client, &topic, -2),
        FENCED_LEADER_EPOCH
    );

    assert_eq!(latest_at_epoch(&mut client, &topic, -1), (0, 1, EPOCH));
    assert_eq!(latest_at_epoch(&mut client, &topic, EPOCH), (0, 1, EPOCH));
    assert_eq!(
        latest_at_epoch(&mut client, &topic, EPOCH + 3),
        (UNKNOWN_LEADER_EPOCH, -1, -1)
    );
    assert_eq!(
        latest_at_epoch(&mut client, &topic, -2),
        (FENCED_LEADER_EPOCH, -1, -1)
    );
}

#[test]
fn offset_for_leader_epoch_answers_each_version_and_survives_a_restart() {
    let mut broker = Broker::start();
    let topic = unique_topic("epoch-ends");
    produce_records(&broker, &topic);
    let answers = |broker: &Broker| {
        let mut client = RawClient::connect_negotiated(broker.addr());
        for version in OFFSET_FOR_LEADER_EPOCH_VERSIONS {
            let current =
                raw::offset_for_leader_epoch(&mut client, version, -1, &topic, EPOCH, EPOCH);
            assert_eq!(
                (current.error_code, current.leader_epoch, current.end_offset),
                (0, EPOCH, RECORDS as i64),
                "v{version}: the current epoch ends at the log end"
            );
            let newer =
                raw::offset_for_leader_epoch(&mut client, version, -1, &topic, -1, EPOCH + 1);
            assert_eq!(
                (newer.error_code, newer.leader_epoch, newer.end_offset),
                (0, -1, -1),
                "v{version}: an epoch newer than the leader's is undefined"
            );
            let fenced =
                raw::offset_for_leader_epoch(&mut client, version, -1, &topic, EPOCH + 2, EPOCH);
            assert_eq!(fenced.error_code, UNKNOWN_LEADER_EPOCH, "v{version}");
            assert_eq!((fenced.leader_epoch, fenced.end_offset), (-1, -1));
            let missing =
                raw::offset_for_leader_epoch(&mut client, version, -1, "no-such-topic", -1, EPOCH);
            assert_eq!(missing.error_code, error_code::UNKNOWN_TOPIC_OR_PARTITION);
        }
    };
    answers(&broker);
    broker.restart();
    answers(&broker);

    // A follower (replica id >= 0) needs CLUSTER_ACTION, which an open broker grants.
    let mut client = RawClient::connect_negotiated(broker.addr());
    let follower = raw::offset_for_leader_epoch(&mut client, 3, 2, &topic, -1, EPOCH);
    assert_ne!(follower.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(follower.end_offset, RECORDS as i64);

    // librdkafka, which checks epochs on every fetch, still reads it all.
    let consumer = consumer(&broker.bootstrap(), &[]);
    assign(&consumer, &topic, &[0], rdkafka::Offset::Beginning);
    consume(&consumer, RECORDS, CONSUME_TIMEOUT).expect_count(RECORDS);
}

#[test]
fn a_single_brokers_quorum_is_itself() {
    let broker = Broker::start();
    let mut client = RawClient::connect_negotiated(broker.addr());
    for version in 0..=2 {
        let response = client.call(&raw::describe_quorum_request(), version);
        assert_eq!(response.error_code, 0);
        let p = &response.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.leader_id.0, 0);
        let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
        assert_eq!(voters, [0]);
    }
    let other = DescribeQuorumRequest::default().with_topics(vec![
        kafka_protocol::messages::describe_quorum_request::TopicData::default()
            .with_topic_name(name("events"))
            .with_partitions(vec![Default::default()]),
    ]);
    let response = client.call(&other, 1);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION
    );
}
