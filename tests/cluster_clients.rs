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

/// `RECORDS` records over a topic's three partitions, every one delivered.
fn produce_over_three_partitions(bootstrap: &str, topic: &str) {
    let (producer, log) = producer(bootstrap, &[]);
    for i in 0..RECORDS {
        let value = format!("value-{i}");
        let record = BaseRecord::to(topic).partition((i % 3) as i32);
        send(&producer, record.payload(value.as_bytes()));
    }
    flush(&producer);
    assert_eq!(
        log.delivered_count(),
        RECORDS,
        "{:?}",
        log.failures().first()
    );
}

/// The end (high watermark) of each of a topic's three partitions.
fn ends(bootstrap: &str, topic: &str) -> Vec<i64> {
    (0..3)
        .map(|p| common::clients::watermarks(bootstrap, topic, p).1)
        .collect()
}

/// Each of three partitions' committed offset is past its records and at
/// most its end. Offsets count the leaders' LEADER_CHANGE control batches
/// too, and one written after the last record may not have been fetched
/// when the consumer committed.
fn assert_committed_past_records(committed: &[i64], ends: &[i64]) {
    for (p, (&at, &end)) in committed.iter().zip(ends).enumerate() {
        assert!(
            at >= (RECORDS / 3) as i64 && at <= end,
            "partition {p}: committed {at}, end {end}"
        );
    }
}

/// (coordinator, port) once every broker names the same one for `group`
/// (the offsets topic is made, and its partitions elect leaders, after the
/// cluster forms).
fn wait_for_coordinator(cluster: &mut Cluster, group: &str) -> (i32, i32) {
    let mut answers = Vec::new();
    let agreed = common::wait_until(FAILOVER_TIMEOUT, || {
        answers = (1..=3)
            .map(|node| find_coordinator(cluster, node, group))
            .collect();
        answers[0].0 == 0 && answers.iter().all(|a| *a == answers[0])
    });
    assert!(
        agreed,
        "{group}: every broker names one coordinator: {answers:?}"
    );
    (answers[0].1, answers[0].2)
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
    // Group members live in their coordinator's memory (Kafka stores them
    // with the group): a coordinator that moves forgets them, and a member
    // rejoins. Preferred-leader election moves coordinators early in a
    // cluster's life, so the test starts once it has.
    wait_for_coordinator(&mut cluster, groups[0]);
    assert!(
        cluster.wait_for_preferred_leaders("__consumer_offsets"),
        "the offsets topic's partitions are led by their preferred replicas"
    );
    let mut coordinators = Vec::new();
    for group in groups {
        let (coordinator, port) = wait_for_coordinator(&mut cluster, group);
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
    produce_over_three_partitions(&bootstrap, "work");

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
    assert_committed_past_records(&committed, &ends(&bootstrap, "work"));
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
    produce_over_three_partitions(&bootstrap, "py-work");
    // A group whose coordinator is not the first bootstrap broker.
    let group = ["py-a", "py-b", "py-c", "py-d", "py-e", "py-f"]
        .into_iter()
        .find(|g| wait_for_coordinator(&mut cluster, g).0 != 1)
        .expect("a group coordinated elsewhere");
    let count = RECORDS.to_string();
    let out = common::python::run_script(
        &python,
        KAFKA_PYTHON_GROUP,
        &[&bootstrap, "py-work", group, &count],
    );
    let committed = committed_offsets(&bootstrap, group, "py-work", 3);
    assert_eq!(
        out.trim(),
        format!("{RECORDS} {}", committed.iter().sum::<i64>()),
        "read every record and committed through the coordinator"
    );
    assert_committed_past_records(&committed, &ends(&bootstrap, "py-work"));
}

/// The partition's leader and epoch once a leader serves it, as `node` sees it.
fn wait_for_leader(cluster: &mut Cluster, node: i32, topic: &str, other_than: i32) -> (i32, i32) {
    let mut seen = (-1, -1);
    let found = common::wait_until(FAILOVER_TIMEOUT, || {
        let (leader, epoch, _, _) = partition(&cluster.metadata(node), topic);
        seen = (leader, epoch);
        leader > 0 && leader != other_than
    });
    assert!(found, "{topic}: a leader other than {other_than}: {seen:?}");
    seen
}

/// A produce of one record to the partition's leader as `ask` names it,
/// retried while leadership settles: (leader, base offset).
fn produce_when_served(cluster: &mut Cluster, ask: i32, topic: &str, value: &[u8]) -> (i32, i64) {
    let mut last = (-1, -1, -1);
    let served = common::wait_until(FAILOVER_TIMEOUT, || {
        let leader = partition(&cluster.metadata(ask), topic).0;
        if leader <= 0 {
            return false;
        }
        let mut client = RawClient::connect_negotiated(cluster.node(leader).addr());
        let answer = raw::produce(&mut client, topic, 0, &[(b"k", value)]);
        last = (leader, answer.error_code, answer.base_offset);
        answer.error_code == 0
    });
    assert!(served, "{topic}: produce served: {last:?}");
    (last.0, last.2)
}

#[test]
fn a_new_leader_fences_the_old_epoch_and_answers_where_epochs_ended() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.create_topic(1, "epochs", 1, 3), error_code::NONE);
    cluster.wait_for_topic(2, "epochs", 1);
    // The partition's Raft group elects a leader; its term is the epoch.
    wait_for_leader(&mut cluster, 2, "epochs", -1);
    let (mut old, mut last) = (-1, -1);
    for i in 0..5u8 {
        (old, last) = produce_when_served(&mut cluster, 2, "epochs", &[i]);
    }
    let first_epoch = partition(&cluster.metadata(old), "epochs").1;
    let mut client = RawClient::connect_negotiated(cluster.node(old).addr());
    assert_eq!(stamped_epoch(&mut client, "epochs", last), first_epoch);
    let (error, epoch, end) = end_offset(&mut client, "epochs", first_epoch);
    assert_eq!((error, epoch), (0, first_epoch));
    assert_eq!(
        end,
        last + 1,
        "the current epoch ends at the high watermark"
    );

    // The leader dies: another replica leads at a later epoch; the dead one is offline.
    cluster.node(old).kill9();
    let survivor = if old == 1 { 2 } else { 1 };
    wait_for_leader(&mut cluster, survivor, "epochs", old);
    let offline = common::wait_until(FAILOVER_TIMEOUT, || {
        partition(&cluster.metadata(survivor), "epochs").3 == vec![old]
    });
    assert!(offline, "{old} is listed offline");

    let (new, after) = produce_when_served(&mut cluster, survivor, "epochs", b"after");
    let epoch = partition(&cluster.metadata(new), "epochs").1;
    assert!(epoch > first_epoch, "epoch {epoch} after {first_epoch}");
    let mut client = RawClient::connect_negotiated(cluster.node(new).addr());
    assert!(after > last, "{after} after {last}");
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", first_epoch),
        FENCED_LEADER_EPOCH
    );
    // KIP-951: the fenced fetch names the leader at its epoch.
    let mut request = raw::fetch_request("epochs", 0, 0, 0, 0);
    request.topics[0].partitions[0].current_leader_epoch = first_epoch;
    let response = client.call(&request, raw::FETCH_VERSION_MAX);
    let hint = &raw::single_fetch_partition(&response).current_leader;
    assert_eq!((hint.leader_id.0, hint.leader_epoch), (new, epoch));
    assert_eq!(raw::fetch_at_epoch(&mut client, "epochs", epoch), 0);
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", epoch + 1),
        UNKNOWN_LEADER_EPOCH
    );
    // Batches appended now carry the new epoch; the old one ended where the
    // new leader's first entry (its LEADER_CHANGE control batch) began.
    assert_eq!(stamped_epoch(&mut client, "epochs", after), epoch);
    let (error, ended_epoch, ended) = end_offset(&mut client, "epochs", first_epoch);
    assert_eq!((error, ended_epoch), (0, first_epoch));
    assert!(
        ended > last && ended <= after,
        "epoch {first_epoch} ended at {ended}"
    );
    assert_eq!(
        end_offset(&mut client, "epochs", epoch),
        (0, epoch, after + 1)
    );
    assert_eq!(end_offset(&mut client, "epochs", epoch + 1), (0, -1, -1));

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

    // The old leader returns: it is listed again, and whoever leads then
    // (at this epoch or a later one, if leadership moved back) still fences
    // the first epoch and answers where it ended.
    cluster.node(old).start_again();
    let back = common::wait_until(FAILOVER_TIMEOUT, || {
        partition(&cluster.metadata(old), "epochs").3.is_empty()
    });
    assert!(back, "{old} is listed again");
    let (leader, again) = produce_when_served(&mut cluster, old, "epochs", b"again");
    assert!(
        again > after,
        "acknowledged at {after}, the next write at {again} on {leader}"
    );
    let now = partition(&cluster.metadata(leader), "epochs").1;
    assert!(now >= epoch, "epoch {now} after {epoch}");
    let mut client = RawClient::connect_negotiated(cluster.node(leader).addr());
    assert_eq!(
        raw::fetch_at_epoch(&mut client, "epochs", first_epoch),
        FENCED_LEADER_EPOCH
    );
    let (error, ended_epoch, ended) = end_offset(&mut client, "epochs", first_epoch);
    assert_eq!((error, ended_epoch), (0, first_epoch));
    assert!(
        ended > last && ended <= after,
        "epoch {first_epoch} ended at {ended}"
    );
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
