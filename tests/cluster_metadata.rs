//! Three real broker processes as one cluster on loopback ports: topics made
//! through any broker reach every broker through the controller, clients
//! produce and consume through partition leaders, and the controller's
//! metadata survives losing its leader and restarting every node.

mod common;

use std::time::Duration;

use common::clients::{assign, consume, consumer, flush, producer, send};
use common::cluster::Cluster;
use common::raw::{self, error_code, RawClient};
use kafka_protocol::messages::MetadataResponse;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

/// Replica lists of `topic` per partition, as `metadata` has them.
fn replicas(metadata: &MetadataResponse, topic: &str) -> Vec<Vec<i32>> {
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .unwrap_or_else(|| panic!("{topic} is listed"));
    topic
        .partitions
        .iter()
        .map(|p| p.replica_nodes.iter().map(|r| r.0).collect())
        .collect()
}

fn leaders(metadata: &MetadataResponse, topic: &str) -> Vec<i32> {
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .unwrap_or_else(|| panic!("{topic} is listed"));
    topic.partitions.iter().map(|p| p.leader_id.0).collect()
}

#[test]
fn a_topic_made_through_one_broker_is_served_by_its_leaders_on_all_three() {
    let mut cluster = Cluster::start(3);
    assert_eq!(
        cluster.create_topic(2, "orders", 3, 3),
        error_code::NONE,
        "CreateTopics through broker 2"
    );
    // Replicas everywhere agree; leaders spread over the three brokers.
    let first = replicas(&cluster.wait_for_topic(1, "orders", 3), "orders");
    for node in 1..=3 {
        let metadata = cluster.wait_for_topic(node, "orders", 3);
        assert_eq!(metadata.brokers.len(), 3, "node {node} lists 3 brokers");
        assert!(
            metadata.controller_id.0 >= 1,
            "node {node} names a controller"
        );
        assert_eq!(
            replicas(&metadata, "orders"),
            first,
            "node {node}'s replicas"
        );
    }
    let mut first_replicas: Vec<i32> = first.iter().map(|r| r[0]).collect();
    first_replicas.sort_unstable();
    assert_eq!(first_replicas, [1, 2, 3], "one preferred leader per broker");
    assert!(first.iter().all(|r| r.len() == 3));

    // A replication factor above the live brokers is refused.
    assert_eq!(
        cluster.create_topic(3, "too-many", 1, 4),
        error_code::INVALID_REPLICATION_FACTOR
    );

    let bootstrap = cluster.bootstrap();
    let (producer, log) = producer(&bootstrap, &[]);
    let count = 300;
    for i in 0..count {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to("orders")
                .partition(i % 3)
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_eq!(
        log.delivered_count(),
        count as usize,
        "{:?}",
        log.failures().first()
    );
    let consumer = consumer(&bootstrap, &[]);
    assign(&consumer, "orders", &[0, 1, 2], Offset::Beginning);
    consume(&consumer, count as usize, CONSUME_TIMEOUT).expect_count(count as usize);

    // A replica that does not lead refuses clients with NOT_LEADER_OR_FOLLOWER.
    let metadata = cluster.metadata(1);
    let leader = leaders(&metadata, "orders")[0];
    let follower = if leader == 1 { 2 } else { 1 };
    let mut client = RawClient::connect_negotiated(cluster.node(follower).addr());
    let answer = raw::produce(&mut client, "orders", 0, &[(b"k", b"v")]);
    assert_eq!(answer.error_code, NOT_LEADER_OR_FOLLOWER);
    let fetched = raw::fetch(&mut client, "orders", 0, 0);
    assert_eq!(fetched.error_code, NOT_LEADER_OR_FOLLOWER);
}

#[test]
fn a_bad_frame_on_the_cluster_port_closes_that_connection_with_a_log_line() {
    use std::io::{Read, Write};
    let mut cluster = Cluster::start(3);
    let port = cluster.cluster_ports[1];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    // A frame length far past the bound, then garbage.
    stream
        .write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3])
        .expect("write");
    let mut buffer = [0; 16];
    let read = stream.read(&mut buffer);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "the node closes the connection: {read:?}"
    );
    let logged = common::wait_until(Duration::from_secs(10), || {
        cluster
            .node(2)
            .log()
            .contains("closing a cluster connection")
    });
    assert!(logged, "the node logs why it closed the connection");
    // The cluster still works.
    assert_eq!(
        cluster.create_topic(2, "still-fine", 1, 3),
        error_code::NONE
    );
    cluster.wait_for_topic(1, "still-fine", 1);
}

#[test]
fn losing_the_controller_leader_elects_another_and_the_node_catches_up_on_return() {
    let mut cluster = Cluster::start(3);
    let old = cluster.wait_for_brokers(1, 3);
    cluster.node(old).kill9();
    let survivor = if old == 1 { 2 } else { 1 };
    // The dead broker's lease runs out; a new controller is elected.
    let new = cluster.wait_for_brokers(survivor, 2);
    assert_ne!(new, old, "a new controller leader");
    assert_eq!(
        cluster.create_topic(survivor, "after-failover", 2, 2),
        error_code::NONE
    );
    let metadata = cluster.wait_for_topic(survivor, "after-failover", 2);
    assert!(replicas(&metadata, "after-failover")
        .iter()
        .all(|r| r.len() == 2 && !r.contains(&old)));

    cluster.node(old).start_again();
    cluster.wait_for_brokers(old, 3);
    let caught_up = cluster.wait_for_topic(old, "after-failover", 2);
    assert_eq!(
        replicas(&caught_up, "after-failover"),
        replicas(&metadata, "after-failover")
    );
}

#[test]
fn a_whole_cluster_restart_keeps_topics_and_replicas() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(1, "kept", 4, 2), error_code::NONE);
    let before = replicas(&cluster.wait_for_topic(3, "kept", 4), "kept");
    assert_eq!(cluster.create_topic(1, "gone", 1, 1), error_code::NONE);
    cluster.wait_for_topic(2, "gone", 1);
    let deleted = cluster.nodes[0].addr();
    let mut client = RawClient::connect_negotiated(deleted);
    let request = kafka_protocol::messages::DeleteTopicsRequest::default()
        .with_topic_names(vec![kafka_protocol::messages::TopicName(
            kafka_protocol::protocol::StrBytes::from_static_str("gone"),
        )])
        .with_timeout_ms(20_000);
    let response = client.call_negotiated(&request, 5);
    assert_eq!(response.responses[0].error_code, error_code::NONE);

    for node in 1..=3 {
        let status = cluster.node(node).stop();
        assert!(status.success(), "node {node} stopped cleanly");
    }
    for node in 1..=3 {
        cluster.node(node).start_again();
    }
    for node in 1..=3 {
        cluster.wait_for_brokers(node, 3);
        let metadata = cluster.wait_for_topic(node, "kept", 4);
        assert_eq!(
            replicas(&metadata, "kept"),
            before,
            "node {node} after restart"
        );
        assert!(
            metadata
                .topics
                .iter()
                .all(|t| t.name.as_ref().is_none_or(|n| n.as_str() != "gone")),
            "node {node} does not list the deleted topic"
        );
    }
}
