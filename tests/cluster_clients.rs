//! What clients see of a three-process cluster: one broker coordinates each
//! consumer group (the others answer NOT_COORDINATOR) and a real consumer
//! group runs through it; after a leader is lost, Metadata shows the new
//! leader at a new epoch with the lost replica offline, the new leader
//! fences fetches from the old epoch (KIP-320) and answers
//! OffsetForLeaderEpoch from its log; DescribeQuorum and DescribeCluster
//! name the controller.

mod common;

use std::time::Duration;

use common::clients::{committed_offsets, flush, producer, send};
use common::cluster::Cluster;
use common::raw::{self, error_code, RawClient};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Message};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_COORDINATOR: i16 = 16;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const RECORDS: usize = 60;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// A killed broker's lease runs out and its partitions move within this.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

fn partition(metadata: &MetadataResponse, topic: &str) -> (i32, i32, Vec<i32>, Vec<i32>) {
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .unwrap_or_else(|| panic!("{topic} is listed"));
    let p = &topic.partitions[0];
    let ids = |nodes: &[BrokerId]| nodes.iter().map(|n| n.0).collect::<Vec<_>>();
    (
        p.leader_id.0,
        p.leader_epoch,
        ids(&p.isr_nodes),
        ids(&p.offline_replicas),
    )
}

fn find_coordinator(cluster: &mut Cluster, node: i32, group: &str) -> (i16, i32, i32) {
    let mut client = RawClient::connect_negotiated(cluster.node(node).addr());
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let response = client.call(&request, 3);
    (response.error_code, response.node_id.0, response.port)
}

fn heartbeat(cluster: &mut Cluster, node: i32, group: &str) -> i16 {
    let mut client = RawClient::connect_negotiated(cluster.node(node).addr());
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("nobody"));
    client.call(&request, 4).error_code
}

/// OffsetForLeaderEpoch v4 for partition 0: (error, epoch, end offset).
fn end_offset(client: &mut RawClient, topic: &str, leader_epoch: i32) -> (i16, i32, i64) {
    let p = raw::offset_for_leader_epoch(client, 4, -1, topic, -1, leader_epoch);
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// partitionLeaderEpoch of the batch at `offset` of partition 0.
fn stamped_epoch(client: &mut RawClient, topic: &str, offset: i64) -> i32 {
    let fetched = raw::fetch(client, topic, 0, offset);
    assert_eq!(fetched.error_code, 0);
    let records = fetched.records.expect("records");
    raw::partition_leader_epoch(&records)
}

#[test]
fn one_broker_coordinates_each_group_and_a_consumer_group_runs_through_it() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(1, "work", 3, 3), error_code::NONE);
    cluster.wait_for_topic(3, "work", 3);
    // Every broker names the same coordinator; the others refuse the group.
    let groups = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    let mut coordinators = Vec::new();
    for group in groups {
        let answers: Vec<_> = (1..=3)
            .map(|node| find_coordinator(&mut cluster, node, group))
            .collect();
        let (error, coordinator, port) = answers[0];
        assert_eq!(error, 0, "{group}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{group}: {answers:?}"
        );
        assert_eq!(port, i32::from(cluster.node(coordinator).addr().port()));
        for node in 1..=3 {
            let answer = heartbeat(&mut cluster, node, group);
            if node == coordinator {
                assert_ne!(answer, NOT_COORDINATOR, "{group} on its coordinator {node}");
            } else {
                assert_eq!(answer, NOT_COORDINATOR, "{group} on {node}");
            }
        }
        coordinators.push(coordinator);
    }
    coordinators.sort_unstable();
    coordinators.dedup();
    assert!(coordinators.len() > 1, "groups spread over brokers");

    let bootstrap = cluster.bootstrap();
    let (producer, log) = producer(&bootstrap, &[]);
    for i in 0..RECORDS {
        let value = format!("value-{i}");
        let record = BaseRecord::to("work").partition((i % 3) as i32);
        send(&producer, record.payload(value.as_bytes()));
    }
    flush(&producer);
    assert_eq!(
        log.delivered_count(),
        RECORDS,
        "{:?}",
        log.failures().first()
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "alpha")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    consumer.subscribe(&["work"]).expect("subscribe");
    let mut seen = 0;
    let deadline = std::time::Instant::now() + CONSUME_TIMEOUT;
    while seen < RECORDS && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("no consume error");
            assert!(message.payload().is_some());
            seen += 1;
        }
    }
    assert_eq!(seen, RECORDS, "the group consumed everything");
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit through the coordinator");
    let committed = committed_offsets(&bootstrap, "alpha", "work", 3);
    assert_eq!(
        committed.iter().sum::<i64>(),
        RECORDS as i64,
        "{committed:?}"
    );
}

/// kafka-python, a client of its own (not librdkafka): a group consumer
/// through the whole cluster reads every record and commits through the
/// group's coordinator; prints the records read and the committed total.
const KAFKA_PYTHON_GROUP: &str = r#"
import sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=30000)
seen = 0
for _ in consumer:
    seen += 1
    if seen == count:
        break
consumer.commit()
committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(3))
consumer.close()
print(seen, committed)
"#;

#[test]
fn a_kafka_python_group_consumer_finds_its_coordinator_in_the_cluster() {
    let test = "a_kafka_python_group_consumer_finds_its_coordinator_in_the_cluster";
    let Some(python) = common::python::python_with(test, &["kafka"]) else {
        return;
    };
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(3, "py-work", 3, 3), error_code::NONE);
    cluster.wait_for_topic(1, "py-work", 3);
    let bootstrap = cluster.bootstrap();
    let (producer, log) = producer(&bootstrap, &[]);
    for i in 0..RECORDS {
        let value = format!("value-{i}");
        let record = BaseRecord::to("py-work").partition((i % 3) as i32);
        send(&producer, record.payload(value.as_bytes()));
    }
    flush(&producer);
    assert_eq!(
        log.delivered_count(),
        RECORDS,
        "{:?}",
        log.failures().first()
    );
    // A group whose coordinator is not the first bootstrap broker.
    let group = ["py-a", "py-b", "py-c", "py-d", "py-e", "py-f"]
        .into_iter()
        .find(|g| find_coordinator(&mut cluster, 1, g).1 != 1)
        .expect("a group coordinated elsewhere");
    let count = RECORDS.to_string();
    let out = common::python::run_script(
        &python,
        KAFKA_PYTHON_GROUP,
        &[&bootstrap, "py-work", group, &count],
    );
    assert_eq!(
        out.trim(),
        format!("{RECORDS} {RECORDS}"),
        "read and committed"
    );
    let committed = committed_offsets(&bootstrap, group, "py-work", 3);
    assert_eq!(
        committed.iter().sum::<i64>(),
        RECORDS as i64,
        "{committed:?}"
    );
}

#[test]
fn a_new_leader_fences_the_old_epoch_and_answers_where_epochs_ended() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(1, "epochs", 1, 3), error_code::NONE);
    let metadata = cluster.wait_for_topic(2, "epochs", 1);
    let (old, epoch, isr, offline) = partition(&metadata, "epochs");
    assert_eq!((epoch, isr, offline), (0, vec![old], vec![]));
    let mut client = RawClient::connect_negotiated(cluster.node(old).addr());
    for i in 0..5u8 {
        let answer = raw::produce(&mut client, "epochs", 0, &[(b"k", &[i])]);
        assert_eq!(answer.error_code, 0);
    }
    assert_eq!(stamped_epoch(&mut client, "epochs", 0), 0);
    assert_eq!(end_offset(&mut client, "epochs", 0), (0, 0, 5));

    // The leader dies: another replica leads at epoch 1; the dead one is offline.
    cluster.node(old).kill9();
    let survivor = if old == 1 { 2 } else { 1 };
    let mut moved = None;
    let failed_over = common::wait_until(FAILOVER_TIMEOUT, || {
        let found = partition(&cluster.metadata(survivor), "epochs");
        let done = found.0 > 0 && found.0 != old;
        moved = Some(found);
        done
    });
    let (new, epoch, isr, offline) = moved.expect("polled");
    assert!(failed_over, "leadership moved off {old}: {new}");
    assert_eq!((epoch, isr, offline), (1, vec![new], vec![old]));

    let mut client = RawClient::connect_negotiated(cluster.node(new).addr());
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", 0),
        FENCED_LEADER_EPOCH
    );
    // KIP-951: the fenced fetch names the leader at its epoch.
    let mut request = raw::fetch_request("epochs", 0, 0, 0, 0);
    request.topics[0].partitions[0].current_leader_epoch = 0;
    let response = client.call(&request, raw::FETCH_VERSION_MAX);
    let hint = &raw::single_fetch_partition(&response).current_leader;
    assert_eq!((hint.leader_id.0, hint.leader_epoch), (new, 1));
    assert_eq!(raw::fetch_at_epoch(&mut client, "epochs", 1), 0);
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", 2),
        UNKNOWN_LEADER_EPOCH
    );
    // Batches appended now carry epoch 1; epoch 0 ended where epoch 1 began.
    let answer = raw::produce(&mut client, "epochs", 0, &[(b"k", b"after")]);
    assert_eq!(answer.error_code, 0);
    assert_eq!(stamped_epoch(&mut client, "epochs", 0), 1);
    assert_eq!(end_offset(&mut client, "epochs", 1), (0, 1, 1));
    assert_eq!(end_offset(&mut client, "epochs", 0), (0, 0, 0));
    assert_eq!(end_offset(&mut client, "epochs", 2), (0, -1, -1));

    // Both survivors' controller views agree with their quorum and cluster answers.
    for node in [survivor, 6 - old - survivor] {
        let mut client = RawClient::connect_negotiated(cluster.node(node).addr());
        let controller = cluster.metadata(node).controller_id.0;
        let described = client.call(&DescribeClusterRequest::default(), 1);
        assert_eq!(
            described.controller_id.0, controller,
            "DescribeCluster on {node}"
        );
        let quorum = client.call(&raw::describe_quorum_request(), 1);
        let p = &quorum.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id.0, controller, "DescribeQuorum on {node}");
        assert!(p.leader_epoch > 0 && p.high_watermark > 0, "{p:?}");
        let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
        assert_eq!(voters, [1, 2, 3]);
        if node == controller {
            let live_known = p
                .current_voters
                .iter()
                .filter(|v| v.replica_id.0 != old)
                .all(|v| v.log_end_offset > 0);
            assert!(
                live_known,
                "the controller knows its live voters' logs: {p:?}"
            );
        }
    }

    // The old leader returns and, as the preferred replica, leads again at
    // epoch 2. Its log still holds the five epoch-0 records: asked where
    // epoch 1 ended, it answers with its own last epoch before 2 and where
    // epoch 2 began, so a reader that followed epoch 1 finds the divergence.
    cluster.node(old).start_again();
    // (On restart its view first replays its own metadata log, where it led at 0.)
    let back = common::wait_until(FAILOVER_TIMEOUT, || {
        let (leader, epoch, _, offline) = partition(&cluster.metadata(old), "epochs");
        (leader, epoch, offline.is_empty()) == (old, 2, true)
    });
    assert!(back, "the preferred replica leads again at epoch 2");
    let mut client = RawClient::connect_negotiated(cluster.node(old).addr());
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", 1),
        FENCED_LEADER_EPOCH
    );
    assert_eq!(end_offset(&mut client, "epochs", 1), (0, 0, 5));
    assert_eq!(end_offset(&mut client, "epochs", 2), (0, 2, 5));
}

#[test]
fn a_client_at_a_follower_is_pointed_at_the_leader() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(2, "hints", 1, 3), error_code::NONE);
    let metadata = cluster.wait_for_topic(1, "hints", 1);
    let (leader, epoch, _, _) = partition(&metadata, "hints");
    let topic_id = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "hints"))
        .map(|t| t.topic_id)
        .expect("listed");
    let follower = if leader == 1 { 2 } else { 1 };
    let leader_port = i32::from(cluster.node(leader).addr().port());
    let mut client = RawClient::connect_negotiated(cluster.node(follower).addr());

    // Produce v10+ (KIP-951): the partition names its leader, the response its endpoint.
    for version in [10, 12] {
        let request = raw::produce_request("hints", 0, -1, raw::record_batch(&[(b"k", b"v")]));
        let response = client.call(&request, version);
        let p = raw::single_produce_partition(&response);
        assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER, "v{version}");
        let hint = (p.current_leader.leader_id.0, p.current_leader.leader_epoch);
        assert_eq!(hint, (leader, epoch), "Produce v{version}");
        let endpoints: Vec<_> = response
            .node_endpoints
            .iter()
            .map(|e| (e.node_id.0, e.port))
            .collect();
        assert_eq!(endpoints, [(leader, leader_port)], "Produce v{version}");
    }
    // Older versions carry neither.
    let request = raw::produce_request("hints", 0, -1, raw::record_batch(&[(b"k", b"v")]));
    let response = client.call(&request, 9);
    assert!(response.node_endpoints.is_empty());

    // Fetch v12 names the leader; v16 (by topic id) also its endpoint.
    let response = client.call(&raw::fetch_request("hints", 0, 0, 0, 0), 12);
    let p = raw::single_fetch_partition(&response);
    assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (leader, epoch)
    );
    let mut request = raw::fetch_request("hints", 0, 0, 0, 0);
    request.topics[0].topic_id = topic_id;
    let response = client.call(&request, 16);
    let p = raw::single_fetch_partition(&response);
    assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(p.current_leader.leader_id.0, leader);
    let endpoints: Vec<_> = response
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port))
        .collect();
    assert_eq!(endpoints, [(leader, leader_port)], "Fetch v16");

    // The leader itself answers without hints.
    let mut client = RawClient::connect_negotiated(cluster.node(leader).addr());
    let request = raw::produce_request("hints", 0, -1, raw::record_batch(&[(b"k", b"v")]));
    let response = client.call(&request, 12);
    assert_eq!(raw::single_produce_partition(&response).error_code, 0);
    assert!(response.node_endpoints.is_empty());
}
