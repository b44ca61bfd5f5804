//! Consumer-group offsets in a cluster of three real broker processes: the
//! offsets live in the replicated internal topic `__consumer_offsets`, the
//! coordinator of a group is the leader of its partition, and after a
//! SIGKILL of that broker the group finds the new coordinator with its
//! committed offsets, so a consumer resumes where the group left off.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::clients::{flush, producer, send, try_committed_offsets};
use common::cluster::Cluster;
use common::raw::{error_code, RawClient};
use common::wait_until;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: usize = 8;
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 300;
const GROUP: &str = "billing";
/// Kafka's NOT_COORDINATOR.
const NOT_COORDINATOR: i16 = 16;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(90);
const MOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer in `group`, subscribed to `TOPIC`, committing only when told.
fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("consumer configuration must be valid");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    consumer
}

/// A group consumer's configuration: quick to find a moved coordinator.
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// Produces `RECORDS` values `<prefix>-<i>` round-robin over `TOPIC`'s
/// partitions, every one acknowledged.
fn fill(cluster: &Cluster, prefix: &str) {
    let (producer, log) = producer(&cluster.bootstrap(), &[]);
    for i in 0..RECORDS {
        send(
            &producer,
            BaseRecord::to(TOPIC)
                .partition((i % PARTITIONS as usize) as i32)
                .payload(format!("{prefix}-{i}").as_bytes()),
        );
    }
    flush(&producer);
    assert!(log.failures().is_empty(), "every record is acknowledged");
}

/// Waits until `group`'s committed offsets read `expected`; returns the last read.
fn wait_for_committed(cluster: &Cluster, group: &str, expected: &[i64]) -> Option<Vec<i64>> {
    let mut last = None;
    wait_until(MOVE_TIMEOUT, || {
        last = try_committed_offsets(&cluster.bootstrap(), group, TOPIC, PARTITIONS).ok();
        last.as_deref() == Some(expected)
    });
    last
}

/// (partition, offset) of each record `consumer` reads until `count` or the timeout.
fn consume<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    count: usize,
) -> Vec<(i32, i64)> {
    let deadline = std::time::Instant::now() + CONSUME_TIMEOUT;
    let mut read = Vec::new();
    while read.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            read.push((message.partition(), message.offset()));
        }
    }
    read
}

/// Moves `positions` (the next offset per partition) past `read`.
fn advance(positions: &mut BTreeMap<i32, i64>, read: &[(i32, i64)]) {
    for &(partition, offset) in read {
        let next = positions.entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }
}

/// Commits `positions` for `consumer`'s group; returns them per partition
/// of `TOPIC` (-1: none) as OffsetFetch will read them.
fn commit(consumer: &BaseConsumer, positions: &BTreeMap<i32, i64>) -> Vec<i64> {
    let mut list = TopicPartitionList::new();
    for (&partition, &next) in positions {
        list.add_partition_offset(TOPIC, partition, Offset::Offset(next))
            .expect("a new list entry");
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .expect("OffsetCommit");
    (0..PARTITIONS)
        .map(|p| positions.get(&p).copied().unwrap_or(-1))
        .collect()
}

/// The node FindCoordinator on node `asked` names for `group`, or the error code.
fn find_coordinator(cluster: &Cluster, asked: i32, group: &str) -> Result<i32, i16> {
    let mut client = RawClient::connect_negotiated(cluster.nodes[asked as usize - 1].addr());
    let response = client.call(
        &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())),
        3,
    );
    if response.error_code == error_code::NONE {
        Ok(response.node_id.0)
    } else {
        Err(response.error_code)
    }
}

/// OffsetFetch for `group` on node `asked`: its top-level error code.
fn offset_fetch_error(cluster: &Cluster, asked: i32, group: &str) -> i16 {
    let mut client = RawClient::connect_negotiated(cluster.nodes[asked as usize - 1].addr());
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(TOPIC.to_string())))
            .with_partition_indexes(vec![0])]));
    client.call(&request, 5).error_code
}

#[test]
fn committed_offsets_survive_a_coordinator_kill() {
    let mut cluster = Cluster::start(3);
    // The cluster makes its offsets topic itself, internal and replicated.
    let metadata = cluster.wait_for_topic(1, OFFSETS_TOPIC, OFFSETS_PARTITIONS);
    let offsets = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == OFFSETS_TOPIC))
        .expect("listed");
    assert!(offsets.is_internal, "the offsets topic is internal");
    assert!(
        offsets
            .partitions
            .iter()
            .all(|p| p.replica_nodes.len() == 3),
        "every offsets partition has three replicas"
    );
    assert_eq!(
        cluster.create_topic(1, TOPIC, PARTITIONS, 3),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, TOPIC, PARTITIONS as usize);
    }

    fill(&cluster, "order");

    // Every broker names the same coordinator; the others refuse the group.
    let mut coordinator = Err(0);
    assert!(
        wait_until(MOVE_TIMEOUT, || {
            coordinator = find_coordinator(&cluster, 1, GROUP);
            coordinator.is_ok()
        }),
        "a coordinator is named: {coordinator:?}"
    );
    let coordinator = coordinator.expect("checked");
    for node in 1..=3 {
        assert_eq!(find_coordinator(&cluster, node, GROUP), Ok(coordinator));
        if node != coordinator {
            assert_eq!(offset_fetch_error(&cluster, node, GROUP), NOT_COORDINATOR);
        }
    }

    // The group reads half and commits where it stands.
    let first = group_consumer(&cluster.bootstrap(), GROUP);
    let read = consume(&first, RECORDS / 2);
    assert_eq!(read.len(), RECORDS / 2, "the first member reads half");
    let mut positions = BTreeMap::new();
    advance(&mut positions, &read);
    let expected = commit(&first, &positions);
    drop(first);
    assert_eq!(
        wait_for_committed(&cluster, GROUP, &expected),
        Some(expected.clone())
    );

    // The coordinator dies; a survivor leads the offsets partition now.
    cluster.node(coordinator).kill9();
    let survivor = if coordinator == 1 { 2 } else { 1 };
    let mut moved = Err(0);
    assert!(
        wait_until(MOVE_TIMEOUT, || {
            moved = find_coordinator(&cluster, survivor, GROUP);
            moved.is_ok_and(|node| node != coordinator)
        }),
        "the group has a new coordinator: {moved:?}"
    );
    eprintln!("coordinator of {GROUP}: {coordinator}, after its kill: {moved:?}");
    assert_eq!(
        wait_for_committed(&cluster, GROUP, &expected),
        Some(expected.clone()),
        "the committed offsets are at the new coordinator"
    );

    // A new member resumes from them: nothing before them is read again.
    let second = group_consumer(&cluster.bootstrap(), GROUP);
    let rest = consume(&second, RECORDS - read.len());
    assert_eq!(
        rest.len(),
        RECORDS - read.len(),
        "the second member reads the rest"
    );
    let distinct: std::collections::BTreeSet<_> = rest.iter().collect();
    assert_eq!(distinct.len(), rest.len(), "no record is read twice");
    for &(partition, offset) in &rest {
        let committed = positions.get(&partition).copied().unwrap_or(0);
        assert!(
            offset >= committed,
            "partition {partition} offset {offset} was read again (committed {committed})"
        );
    }
    // It commits the end, at the new coordinator.
    let mut ends = positions.clone();
    advance(&mut ends, &rest);
    let at_end = commit(&second, &ends);
    drop(second);

    // The killed broker returns. The preferred leader of the group's
    // offsets partition takes it back, replays it, and coordinates the
    // group again with the commits made while it was away.
    cluster.node(coordinator).start_again();
    cluster.wait_for_brokers(survivor, 3);
    let partition = crc32c::crc32c(GROUP.as_bytes()) as usize % OFFSETS_PARTITIONS;
    let preferred = cluster
        .wait_for_topic(survivor, OFFSETS_TOPIC, OFFSETS_PARTITIONS)
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == OFFSETS_TOPIC))
        .map(|t| t.partitions[partition].replica_nodes[0].0)
        .expect("listed");
    let mut back = Err(0);
    assert!(
        wait_until(MOVE_TIMEOUT, || {
            back = find_coordinator(&cluster, survivor, GROUP);
            back == Ok(preferred)
        }),
        "the preferred leader {preferred} coordinates the group again: {back:?}"
    );
    assert_eq!(
        wait_for_committed(&cluster, GROUP, &at_end),
        Some(at_end.clone()),
        "the offsets committed while the first coordinator was away"
    );
}

/// Counts a consumer's assignments: each one is a rebalance it went through.
struct AssignmentCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::ClientContext for AssignmentCount {}

impl rdkafka::consumer::ConsumerContext for AssignmentCount {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[test]
fn a_member_keeps_its_place_when_its_coordinator_is_killed() {
    let group = "ledger";
    let mut cluster = Cluster::start(3);
    assert_eq!(
        cluster.create_topic(1, TOPIC, PARTITIONS, 3),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, TOPIC, PARTITIONS as usize);
    }
    // Preferred-leader election moves coordinators early in a cluster's
    // life; the kill below is to be the only move.
    cluster.wait_for_topic(1, OFFSETS_TOPIC, OFFSETS_PARTITIONS);
    assert!(cluster.wait_for_preferred_leaders(OFFSETS_TOPIC));
    fill(&cluster, "entry");

    let assignments = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A session long enough to outlast the coordinator's fail-over.
    let consumer: BaseConsumer<AssignmentCount> = consumer_config(&cluster.bootstrap(), group)
        .set("session.timeout.ms", "15000")
        .create_with_context(AssignmentCount(assignments.clone()))
        .expect("consumer configuration must be valid");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut read = consume(&consumer, RECORDS / 2).len();
    assert_eq!(read, RECORDS / 2);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("OffsetCommit");
    assert_eq!(assignments.load(std::sync::atomic::Ordering::Relaxed), 1);

    let coordinator = find_coordinator(&cluster, 1, group).expect("a coordinator");
    cluster.node(coordinator).kill9();
    let survivor = if coordinator == 1 { 2 } else { 1 };
    assert!(
        wait_until(MOVE_TIMEOUT, || {
            find_coordinator(&cluster, survivor, group).is_ok_and(|node| node != coordinator)
        }),
        "the group has a new coordinator"
    );
    // The member reads on and commits at the new coordinator, which took
    // it over from the log: no rebalance, no UNKNOWN_MEMBER_ID.
    read += consume(&consumer, RECORDS - read).len();
    assert_eq!(read, RECORDS, "the member reads the rest");
    let mut committed = Err(rdkafka::error::KafkaError::NoMessageReceived);
    assert!(
        wait_until(MOVE_TIMEOUT, || {
            committed = consumer.commit_consumer_state(CommitMode::Sync);
            committed.is_ok()
        }),
        "the member commits at the new coordinator: {committed:?}"
    );
    assert!(
        !matches!(
            committed,
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::UnknownMemberId
            ))
        ),
        "the new coordinator knows the member"
    );
    assert_eq!(
        assignments.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the member kept its assignment through the move"
    );
}
