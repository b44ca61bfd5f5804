//! Consumer groups end to end: a real broker process, librdkafka consumers in
//! groups (through rdkafka) and a raw protocol client for what librdkafka
//! does not do on purpose (a member that dies silently, bad input).
//!
//! The broker runs with a 1 s group.min.session.timeout.ms and a 100 ms
//! initial rebalance delay (flags), so sessions here are 3 s and an eviction
//! test takes about that long.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::clients::{admin, admin_options, block_on, create_topic, produce_keyed};
use common::raw::RawClient;
use common::{unique_topic, Broker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// session.timeout.ms of the test consumers: the broker's default minimum.
const SESSION_TIMEOUT_MS: u64 = 3_000;
/// heartbeat.interval.ms: members learn of a rebalance this quickly.
const HEARTBEAT_INTERVAL_MS: &str = "300";
/// How long a group may take to settle after a join or a clean leave.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long consuming a test's messages may take.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one rdkafka request made from a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll of one consumer when several are driven round-robin.
const POLL_SLICE: Duration = Duration::from_millis(50);
const PARTITIONS: i32 = 4;

/// A broker whose group timings suit short tests.
fn group_broker() -> Broker {
    Broker::builder()
        .arg("--group-min-session-timeout-ms")
        .arg("1000")
        .arg("--group-initial-rebalance-delay-ms")
        .arg("100")
        .start()
}

/// Counts rebalance callbacks, to tell whether a member was disturbed.
#[derive(Default)]
struct CountingContext {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for CountingContext {}

impl ConsumerContext for CountingContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<CountingContext>;

fn group_config(bootstrap: &str, group: &str, overrides: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("partition.assignment.strategy", "range")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    config
}

/// A consumer subscribed to `topic` in `group`, and its rebalance counter.
fn group_consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
    overrides: &[(&str, &str)],
) -> (GroupConsumer, Arc<AtomicUsize>) {
    let context = CountingContext::default();
    let rebalances = Arc::clone(&context.rebalances);
    let consumer: GroupConsumer = group_config(bootstrap, group, overrides)
        .create_with_context(context)
        .expect("consumer configuration must be valid");
    consumer.subscribe(&[topic]).expect("subscribe");
    (consumer, rebalances)
}

fn assigned(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// What polling a set of consumers received: (consumer index, partition, offset).
#[derive(Default)]
struct Polled {
    messages: Vec<(usize, i32, i64)>,
}

/// Polls every consumer in turn (committing each message synchronously when
/// `commit`) until `done` holds or `timeout` passes. Returns whether `done` held.
fn poll_until(
    consumers: &[&GroupConsumer],
    polled: &mut Polled,
    commit: bool,
    timeout: Duration,
    mut done: impl FnMut(&[&GroupConsumer], &Polled) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for (index, consumer) in consumers.iter().enumerate() {
            if let Some(Ok(message)) = consumer.poll(POLL_SLICE) {
                polled
                    .messages
                    .push((index, message.partition(), message.offset()));
                if commit {
                    consumer
                        .commit_message(&message, CommitMode::Sync)
                        .expect("synchronous commit");
                }
            }
        }
        if done(consumers, polled) {
            return true;
        }
    }
    false
}

/// Every partition is owned by exactly one consumer and every consumer owns one.
fn split_over_all(consumers: &[&GroupConsumer], partitions: i32) -> bool {
    let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == partitions as usize
        && union == (0..partitions).collect()
}

fn assignments(consumers: &[&GroupConsumer]) -> Vec<BTreeSet<i32>> {
    consumers.iter().map(|c| assigned(c)).collect()
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn subscription_metadata(topic: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s(topic)])
        .encode(&mut out, 0)
        .expect("a subscription encodes");
    out.freeze()
}

fn assigned_partitions(assignment: &Bytes) -> Vec<i32> {
    if assignment.len() < 2 {
        return Vec::new();
    }
    let mut body = assignment.slice(2..);
    let version = i16::from_be_bytes([assignment[0], assignment[1]]).clamp(0, 3);
    let decoded = ConsumerProtocolAssignment::decode(&mut body, version)
        .expect("the leader's assignment decodes");
    decoded
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect()
}

fn join_request(group: &str, member_id: &str, topic: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS as i32)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription_metadata(topic))])
}

/// A member over the raw protocol: joins (with the KIP-394 round trip) and
/// syncs. Returns (member id, generation, assigned partitions).
fn raw_member_join(client: &mut RawClient, group: &str, topic: &str) -> (String, i32, Vec<i32>) {
    let first = client.call_negotiated(&join_request(group, "", topic), 5);
    let member_id = if first.error_code == ResponseError::MemberIdRequired.code() {
        first.member_id.as_str().to_string()
    } else {
        assert_eq!(first.error_code, 0, "first JoinGroup");
        String::new()
    };
    let joined = if member_id.is_empty() {
        first
    } else {
        client.call_negotiated(&join_request(group, &member_id, topic), 5)
    };
    assert_eq!(joined.error_code, 0, "JoinGroup");
    let member_id = joined.member_id.as_str().to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member_id));
    let synced = client.call_negotiated(&sync, 3);
    assert_eq!(synced.error_code, 0, "SyncGroup");
    (
        member_id,
        joined.generation_id,
        assigned_partitions(&synced.assignment),
    )
}

#[test]
fn members_split_partitions_and_rebalance_on_join_leave_and_silent_death() {
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-split");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    let group = unique_topic("split-group");
    let mut polled = Polled::default();

    let (a, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    let (b, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    assert!(
        poll_until(&[&a, &b], &mut polled, false, REBALANCE_TIMEOUT, |c, _| {
            split_over_all(c, PARTITIONS)
        }),
        "two members never split the partitions: {:?}",
        assignments(&[&a, &b])
    );

    // A third member joins: the partitions are spread over three.
    let (c, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    assert!(
        poll_until(
            &[&a, &b, &c],
            &mut polled,
            false,
            REBALANCE_TIMEOUT,
            |c, _| split_over_all(c, PARTITIONS)
        ),
        "three members never split the partitions: {:?}",
        assignments(&[&a, &b, &c])
    );

    // A clean leave (LeaveGroup on close) moves its partitions well before a session timeout.
    let left_at = Instant::now();
    drop(c);
    assert!(
        poll_until(&[&a, &b], &mut polled, false, REBALANCE_TIMEOUT, |c, _| {
            split_over_all(c, PARTITIONS)
        }),
        "partitions did not return after a clean leave: {:?}",
        assignments(&[&a, &b])
    );
    assert!(
        left_at.elapsed() < Duration::from_millis(SESSION_TIMEOUT_MS),
        "a clean leave took {:?}, as long as a session timeout",
        left_at.elapsed()
    );

    // A member that joins and then dies silently: its partitions move only after its session timeout.
    let raw = thread::spawn({
        let (addr, group, topic) = (broker.addr(), group.clone(), topic.clone());
        move || {
            let mut client = RawClient::connect_negotiated(addr);
            raw_member_join(&mut client, &group, &topic)
        }
    });
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    while !raw.is_finished() && Instant::now() < deadline {
        for consumer in [&a, &b] {
            let _ = consumer.poll(POLL_SLICE);
        }
    }
    let (_, _, dead_partitions) = raw.join().expect("raw member thread");
    let silent_since = Instant::now();
    assert!(
        !dead_partitions.is_empty(),
        "the raw member got no partitions"
    );
    assert!(
        poll_until(&[&a, &b], &mut polled, false, REBALANCE_TIMEOUT, |c, _| {
            assignments(c).iter().flatten().count() == (PARTITIONS as usize - dead_partitions.len())
        }),
        "the live members did not settle beside the raw member: {:?}",
        assignments(&[&a, &b])
    );
    assert!(
        poll_until(
            &[&a, &b],
            &mut polled,
            false,
            REBALANCE_TIMEOUT + Duration::from_millis(SESSION_TIMEOUT_MS),
            |c, _| { split_over_all(c, PARTITIONS) }
        ),
        "the silent member's partitions never moved: {:?}",
        assignments(&[&a, &b])
    );
    let moved_after = silent_since.elapsed();
    assert!(
        moved_after >= Duration::from_millis(SESSION_TIMEOUT_MS / 2),
        "partitions moved after {moved_after:?}, before the session timeout"
    );
}

#[test]
fn manual_commits_deliver_every_message_once_across_a_rebalance() {
    const MESSAGES: usize = 400;
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-once");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    produce_keyed(&bootstrap, &topic, MESSAGES, 40);
    let group = unique_topic("once-group");
    let mut polled = Polled::default();

    let (a, _) = group_consumer(
        &bootstrap,
        &group,
        &topic,
        &[("max.partition.fetch.bytes", "2048")],
    );
    // The first member consumes part of the topic alone...
    poll_until(&[&a], &mut polled, true, CONSUME_TIMEOUT, |_, p| {
        p.messages.len() >= MESSAGES / 4
    });
    // ... then a second joins and the rest is shared.
    let (b, _) = group_consumer(
        &bootstrap,
        &group,
        &topic,
        &[("max.partition.fetch.bytes", "2048")],
    );
    let all = poll_until(&[&a, &b], &mut polled, true, CONSUME_TIMEOUT, |_, p| {
        p.messages.len() >= MESSAGES
    });
    // Give duplicates, if any, a moment to show up.
    poll_until(
        &[&a, &b],
        &mut polled,
        true,
        Duration::from_secs(2),
        |_, _| false,
    );
    assert!(all, "consumed {} of {MESSAGES}", polled.messages.len());
    let mut seen = HashSet::new();
    for (_, partition, offset) in &polled.messages {
        assert!(
            seen.insert((*partition, *offset)),
            "{partition}/{offset} was consumed twice"
        );
    }
    assert_eq!(seen.len(), MESSAGES);
    assert!(
        polled.messages.iter().any(|(index, _, _)| *index == 1),
        "the second member consumed nothing"
    );
}

#[test]
fn a_group_resumes_at_its_committed_offset_after_a_broker_restart() {
    let mut broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-restart");
    create_topic(&bootstrap, &topic, 1, &[]);
    produce_keyed(&bootstrap, &topic, 30, 1);
    let group = unique_topic("restart-group");

    let (consumer, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    let mut polled = Polled::default();
    assert!(poll_until(
        &[&consumer],
        &mut polled,
        false,
        CONSUME_TIMEOUT,
        |_, p| p.messages.len() >= 10
    ));
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(&topic, 0, Offset::Offset(10))
        .expect("valid offset");
    consumer
        .commit(&commit, CommitMode::Sync)
        .expect("commit at 10");
    drop(consumer);

    broker.restart();

    let (consumer, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(&topic, 0);
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .expect("OffsetFetch after restart");
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(10));
    let mut polled = Polled::default();
    assert!(poll_until(
        &[&consumer],
        &mut polled,
        false,
        CONSUME_TIMEOUT,
        |_, p| !p.messages.is_empty()
    ));
    assert_eq!(
        polled.messages[0].2, 10,
        "the first message after the restart"
    );
}

#[test]
fn two_groups_consume_the_same_topic_independently() {
    const MESSAGES: usize = 100;
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-independent");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    produce_keyed(&bootstrap, &topic, MESSAGES, 10);
    let (first, _) = group_consumer(&bootstrap, &unique_topic("first"), &topic, &[]);
    let (second, _) = group_consumer(&bootstrap, &unique_topic("second"), &topic, &[]);
    let mut first_polled = Polled::default();
    let mut second_polled = Polled::default();
    assert!(poll_until(
        &[&first],
        &mut first_polled,
        true,
        CONSUME_TIMEOUT,
        |_, p| p.messages.len() >= MESSAGES
    ));
    assert!(poll_until(
        &[&second],
        &mut second_polled,
        true,
        CONSUME_TIMEOUT,
        |_, p| p.messages.len() >= MESSAGES
    ));
    assert_eq!(first_polled.messages.len(), MESSAGES);
    assert_eq!(second_polled.messages.len(), MESSAGES);
}

#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-static");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    let group = unique_topic("static-group");
    let static_a = [
        ("group.instance.id", "instance-a"),
        ("session.timeout.ms", "10000"),
    ];
    let static_b = [
        ("group.instance.id", "instance-b"),
        ("session.timeout.ms", "10000"),
    ];
    let mut polled = Polled::default();

    let (a, _) = group_consumer(&bootstrap, &group, &topic, &static_a);
    let (b, b_rebalances) = group_consumer(&bootstrap, &group, &topic, &static_b);
    assert!(poll_until(
        &[&a, &b],
        &mut polled,
        false,
        REBALANCE_TIMEOUT,
        |c, _| split_over_all(c, PARTITIONS)
    ));
    let a_partitions = assigned(&a);
    let b_partitions = assigned(&b);
    let b_rebalances_before = b_rebalances.load(Ordering::SeqCst);

    // A static member does not leave on close; it comes back within its session timeout.
    drop(a);
    let (a, _) = group_consumer(&bootstrap, &group, &topic, &static_a);
    assert!(
        poll_until(&[&a, &b], &mut polled, false, REBALANCE_TIMEOUT, |c, _| {
            !assigned(c[0]).is_empty()
        }),
        "the restarted static member got no partitions"
    );
    assert_eq!(assigned(&a), a_partitions);
    assert_eq!(assigned(&b), b_partitions);
    assert_eq!(
        b_rebalances.load(Ordering::SeqCst),
        b_rebalances_before,
        "the other member was rebalanced"
    );
}

#[test]
fn group_admin_apis_list_describe_fetch_and_delete() {
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-admin");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    produce_keyed(&bootstrap, &topic, 20, 4);
    let group = unique_topic("admin-group");
    let mut polled = Polled::default();

    let (a, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    let (b, _) = group_consumer(&bootstrap, &group, &topic, &[]);
    assert!(poll_until(
        &[&a, &b],
        &mut polled,
        true,
        REBALANCE_TIMEOUT,
        |c, p| { split_over_all(c, PARTITIONS) && p.messages.len() >= 20 }
    ));

    // ListGroups + DescribeGroups.
    let list = a
        .fetch_group_list(Some(&group), REQUEST_TIMEOUT)
        .expect("group list");
    let described = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .expect("the group is listed");
    assert_eq!(described.state(), "Stable");
    assert_eq!(described.protocol_type(), "consumer");
    assert_eq!(described.protocol(), "range");
    assert_eq!(described.members().len(), 2);
    assert!(described
        .members()
        .iter()
        .all(|m| m.assignment().is_some_and(|a| !a.is_empty())));

    // OffsetFetch sees the commits.
    let committed = a.committed(REQUEST_TIMEOUT).expect("OffsetFetch");
    assert!(committed
        .elements()
        .iter()
        .any(|e| matches!(e.offset(), Offset::Offset(o) if o > 0)));

    // ListGroups with a state filter (KIP-518), raw.
    let mut client = RawClient::connect_negotiated(broker.addr());
    let stable = client.call_negotiated(
        &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
        4,
    );
    assert!(stable.groups.iter().any(|g| g.group_id.0.as_str() == group));
    let empty = client.call_negotiated(
        &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        4,
    );
    assert!(!empty.groups.iter().any(|g| g.group_id.0.as_str() == group));

    // DeleteGroups: refused while members are in, accepted once empty.
    let admin = admin(&bootstrap);
    let results =
        block_on(admin.delete_groups(&[group.as_str()], &admin_options())).expect("DeleteGroups");
    assert!(results[0].is_err(), "a group with members was deleted");
    // librdkafka's partition lists hold references into their client: a
    // consumer cannot be destroyed while one it returned is alive.
    drop(committed);
    drop(list);
    drop(a);
    drop(b);
    let results =
        block_on(admin.delete_groups(&[group.as_str()], &admin_options())).expect("DeleteGroups");
    assert!(
        results[0].is_ok(),
        "deleting the empty group: {:?}",
        results[0]
    );
    let described = client.call_negotiated(
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
        5,
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Dead");
    let results =
        block_on(admin.delete_groups(&[group.as_str()], &admin_options())).expect("DeleteGroups");
    assert!(results[0].is_err(), "a deleted group was deleted again");
}

#[test]
fn bad_group_requests_get_kafka_error_codes() {
    let broker = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-bad");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());

    let found = client.call_negotiated(
        &FindCoordinatorRequest::default().with_key(s("any-group")),
        3,
    );
    assert_eq!(found.error_code, 0, "FindCoordinator");

    let empty_id = client.call_negotiated(&join_request("", "", &topic), 5);
    assert_eq!(empty_id.error_code, ResponseError::InvalidGroupId.code());

    let group = unique_topic("bad-group");
    let (member_id, generation, _) = raw_member_join(&mut client, &group, &topic);
    let heartbeat = |client: &mut RawClient, member: &str, generation: i32| {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(member));
        client.call_negotiated(&request, 3).error_code
    };
    assert_eq!(heartbeat(&mut client, &member_id, generation), 0);
    assert_eq!(
        heartbeat(&mut client, "no-such-member", generation),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut client, &member_id, generation + 7),
        ResponseError::IllegalGeneration.code()
    );

    let commit = |client: &mut RawClient, topic_name: &str, generation: i32| {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic_name)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(1)
                ])]);
        client.call_negotiated(&request, 8).topics[0].partitions[0].error_code
    };
    assert_eq!(
        commit(&mut client, "no-such-topic", generation),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        commit(&mut client, &topic, generation + 1),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(commit(&mut client, &topic, generation), 0);
}

#[test]
fn groups_on_two_shards_commit_list_and_survive_a_restart() {
    const GROUPS: usize = 6;
    let Some(cpus) = common::two_cpus("groups_on_two_shards_commit_list_and_survive_a_restart")
    else {
        return;
    };
    let mut broker = Broker::builder()
        .cpus(&cpus)
        .arg("--group-min-session-timeout-ms")
        .arg("1000")
        .arg("--group-initial-rebalance-delay-ms")
        .arg("100")
        .start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("groups-shards");
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);
    produce_keyed(&bootstrap, &topic, 40, 8);
    // Groups picked so that each shard coordinates half of them.
    let mut groups: Vec<String> = Vec::new();
    let mut per_shard = [0usize; 2];
    while groups.len() < GROUPS {
        let group = unique_topic("sharded-group");
        let shard = ringlog::group::shard_for_group(&group, 2);
        if per_shard[shard] < GROUPS / 2 {
            per_shard[shard] += 1;
            groups.push(group);
        }
    }
    for (i, group) in groups.iter().enumerate() {
        let (consumer, _) = group_consumer(&bootstrap, group, &topic, &[]);
        let mut polled = Polled::default();
        assert!(
            poll_until(
                &[&consumer],
                &mut polled,
                false,
                REBALANCE_TIMEOUT,
                |c, _| assigned(c[0]).len() == PARTITIONS as usize
            ),
            "group {group} never got its partitions"
        );
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset(&topic, 0, Offset::Offset(i as i64 + 1))
            .expect("valid offset");
        consumer.commit(&commit, CommitMode::Sync).expect("commit");
    }
    let mut client = RawClient::connect_negotiated(broker.addr());
    let listed = client.call_negotiated(&ListGroupsRequest::default(), 4);
    for group in &groups {
        assert!(
            listed.groups.iter().any(|g| g.group_id.0.as_str() == group),
            "{group} is not listed"
        );
    }
    drop(client);
    for shard in 0..2 {
        let log = broker
            .data_dir()
            .join("__groups")
            .join(format!("shard-{shard}"))
            .join("groups.log");
        let bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        assert!(
            bytes > 0,
            "shard {shard} stored no group records in {}",
            log.display()
        );
    }

    broker.restart();

    for (i, group) in groups.iter().enumerate() {
        let (consumer, _) = group_consumer(&bootstrap, group, &topic, &[]);
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, 0);
        let committed = consumer
            .committed_offsets(wanted, REQUEST_TIMEOUT)
            .expect("OffsetFetch after restart");
        assert_eq!(
            committed.elements()[0].offset(),
            Offset::Offset(i as i64 + 1),
            "group {group}"
        );
    }
}

/// OffsetCommit of a standalone consumer (no generation, no member), which
/// makes its group on first use; returns the partition's error code.
fn standalone_commit(client: &mut RawClient, group: &str, topic: &str) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(1)
            ])]);
    client.call_negotiated(&request, 8).topics[0].partitions[0].error_code
}

#[test]
fn a_shard_at_its_group_cap_refuses_new_groups_and_serves_its_own() {
    let mut broker = Broker::builder()
        .cpus("0")
        .arg("--group-min-session-timeout-ms")
        .arg("1000")
        .arg("--group-initial-rebalance-delay-ms")
        .arg("100")
        .arg("--max-groups-per-shard")
        .arg("2")
        .start();
    let topic = unique_topic("groups-cap");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let joined = unique_topic("cap-joined");
    let committed = unique_topic("cap-committed");
    let refused = unique_topic("cap-refused");
    let mut client = RawClient::connect_negotiated(broker.addr());
    raw_member_join(&mut client, &joined, &topic);
    assert_eq!(standalone_commit(&mut client, &committed, &topic), 0);
    let full = ResponseError::GroupMaxSizeReached.code();
    for round in ["before", "after a restart"] {
        let join = client.call_negotiated(&join_request(&refused, "", &topic), 5);
        assert_eq!(join.error_code, full, "{round}: a third group cannot join");
        assert_eq!(
            standalone_commit(&mut client, &refused, &topic),
            full,
            "{round}: nor commit"
        );
        assert_eq!(
            standalone_commit(&mut client, &committed, &topic),
            0,
            "{round}: a group that exists still commits"
        );
        raw_member_join(&mut client, &joined, &topic);
        broker.restart();
        client = RawClient::connect_negotiated(broker.addr());
    }
    assert!(
        broker
            .log()
            .contains("a new consumer group was refused: this shard holds its maximum"),
        "the refusal is logged with the flag to raise"
    );
}
