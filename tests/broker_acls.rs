//! ACLs with the authorizer on: real clients (confluent-kafka over
//! SASL_PLAINTEXT with SCRAM) create, describe and delete ACLs, and the
//! broker enforces them: no ACL means no access for a normal user, super
//! users may do anything, a PREFIXED ALLOW covers `orders-*`, a DENY wins,
//! Metadata hides what a user may not describe, OffsetCommit and
//! OffsetFetch check the topics as well as the group, OffsetForLeaderEpoch
//! needs topic DESCRIBE or CLUSTER_ACTION, and ACLs survive a
//! restart.

mod common;

use std::path::PathBuf;

use common::python::{python_with, run_script};
use common::raw::{plain_login, RawClient};
use common::{free_port, Broker};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    CreateAclsRequest, DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest, GroupId,
    InitProducerIdRequest, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

const ADMIN: &str = "admin";
const ALICE: &str = "alice";
/// SECURITY_DISABLED: ACL requests to a broker without an authorizer.
const SECURITY_DISABLED: i16 = 54;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const INVALID_TXN_STATE: i16 = 48;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The error code of an idempotent (non-transactional) InitProducerId from `user`.
fn init_producer_id(bootstrap: &str, user: &str) -> i16 {
    let addr = bootstrap.parse().expect("SASL listener address");
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    client.call(&request, 4).error_code
}

/// A broker with a SASL_PLAINTEXT listener (returned port), the authorizer
/// on, `admin` a super user and `alice` a normal one.
fn authorizing_broker() -> (Broker, String) {
    let sasl_port = free_port();
    let mut builder = Broker::builder()
        .arg("--listener")
        .arg(&format!("SASL_PLAINTEXT://127.0.0.1:{sasl_port}"))
        .arg("--authorizer")
        .arg("true")
        .arg("--super-users")
        .arg("User:admin")
        .arg("--group-initial-rebalance-delay-ms")
        .arg("0");
    for user in [ADMIN, ALICE] {
        builder = builder.arg("--add-scram").arg(&format!(
            "SCRAM-SHA-512=[name={user},password={user}-secret]"
        ));
    }
    (builder.start(), format!("127.0.0.1:{sasl_port}"))
}

/// One client action as a user; prints one line per result. Actions:
/// `topics`, `create T...`, `produce T...`, `consume GROUP T`,
/// `allow|deny OP PATTERN NAME` (a TOPIC ACL for alice), `allow-group GROUP`,
/// `allow-transactional-id ID` (WRITE for alice),
/// `acls`, `delete-deny`.
const CLIENT: &str = r#"
import sys
from confluent_kafka import Producer, Consumer, KafkaError
from confluent_kafka.admin import (AdminClient, NewTopic, AclBinding, AclBindingFilter,
    ResourceType, ResourcePatternType, AclOperation, AclPermissionType)
bootstrap, user, action, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
auth = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": user + "-secret"}
admin = AdminClient(dict(auth))
if action == "topics":
    print(" ".join(sorted(admin.list_topics(timeout=10).topics)))
elif action == "create":
    for topic, future in admin.create_topics([NewTopic(t, 1) for t in args]).items():
        try:
            future.result(timeout=20)
            print(topic, "created")
        except Exception as e:
            print(topic, e.args[0].name())
elif action == "produce":
    results = {}
    def report(error, message):
        results[message.topic()] = "ok" if error is None else error.name()
    producer = Producer(dict(auth, **{"message.timeout.ms": 5000, "on_delivery": report}))
    for topic in args:
        producer.produce(topic, value=b"record")
    producer.flush(20)
    for topic in args:
        print(topic, results.get(topic, "no-report"))
elif action == "consume":
    group, topic = args
    consumer = Consumer(dict(auth, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    outcome = "nothing"
    for _ in range(40):
        message = consumer.poll(0.5)
        if message is None:
            continue
        outcome = "read" if message.error() is None else message.error().name()
        break
    consumer.close()
    print(topic, outcome)
elif action in ("allow", "deny"):
    operation, pattern, name = args
    binding = AclBinding(ResourceType.TOPIC, name, ResourcePatternType[pattern], "User:alice", "*",
                         AclOperation[operation],
                         AclPermissionType.ALLOW if action == "allow" else AclPermissionType.DENY)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=20)
    print("created")
elif action == "allow-group":
    binding = AclBinding(ResourceType.GROUP, args[0], ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=20)
    print("created")
elif action == "allow-transactional-id":
    binding = AclBinding(ResourceType.TRANSACTIONAL_ID, args[0], ResourcePatternType.LITERAL,
                         "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=20)
    print("created")
elif action == "acls":
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    for b in sorted(admin.describe_acls(every).result(timeout=20), key=str):
        print(b.restype.name, b.name, b.resource_pattern_type.name, b.principal,
              b.operation.name, b.permission_type.name)
elif action == "delete-deny":
    denies = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                              AclOperation.ANY, AclPermissionType.DENY)
    for future in admin.delete_acls([denies]).values():
        print("deleted", len(future.result(timeout=20)))
"#;

fn client(
    python: &std::path::PathBuf,
    bootstrap: &str,
    user: &str,
    action: &str,
    args: &[&str],
) -> Vec<String> {
    let mut all = vec![bootstrap, user, action];
    all.extend_from_slice(args);
    run_script(python, CLIENT, &all)
        .lines()
        .map(str::to_string)
        .collect()
}

fn consume(python: &PathBuf, bootstrap: &str, user: &str, group: &str, topic: &str) -> String {
    client(python, bootstrap, user, "consume", &[group, topic]).join("\n")
}

#[test]
fn with_no_acls_a_normal_user_can_do_nothing_and_a_super_user_everything() {
    let test = "with_no_acls_a_normal_user_can_do_nothing_and_a_super_user_everything";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (_broker, bootstrap) = authorizing_broker();
    assert_eq!(
        client(&python, &bootstrap, ADMIN, "create", &["events"]),
        ["events created"]
    );
    assert_eq!(
        client(&python, &bootstrap, ADMIN, "produce", &["events"]),
        ["events ok"]
    );
    assert_eq!(
        consume(&python, &bootstrap, ADMIN, "admin-g", "events"),
        "events read"
    );
    assert_eq!(
        client(&python, &bootstrap, ADMIN, "topics", &[]),
        ["events"]
    );

    assert_eq!(
        client(&python, &bootstrap, ALICE, "create", &["mine"]),
        ["mine TOPIC_AUTHORIZATION_FAILED"]
    );
    assert_eq!(
        client(&python, &bootstrap, ALICE, "produce", &["events"]),
        ["events TOPIC_AUTHORIZATION_FAILED"]
    );
    assert_eq!(
        client(&python, &bootstrap, ALICE, "topics", &[]),
        [""],
        "Metadata hides every topic"
    );
    assert_eq!(
        consume(&python, &bootstrap, ALICE, "alice-g", "events"),
        "events GROUP_AUTHORIZATION_FAILED"
    );
}

#[test]
fn a_prefixed_read_acl_covers_orders_topics_only_and_a_deny_overrides_it() {
    let test = "a_prefixed_read_acl_covers_orders_topics_only_and_a_deny_overrides_it";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (mut broker, bootstrap) = authorizing_broker();
    let topics = ["orders-eu", "orders-us", "payments"];
    client(&python, &bootstrap, ADMIN, "create", &topics);
    client(&python, &bootstrap, ADMIN, "produce", &topics);
    client(
        &python,
        &bootstrap,
        ADMIN,
        "allow",
        &["READ", "PREFIXED", "orders-"],
    );
    client(&python, &bootstrap, ADMIN, "allow-group", &["alice-g"]);

    // READ implies DESCRIBE: Metadata lists exactly the orders topics.
    assert_eq!(
        client(&python, &bootstrap, ALICE, "topics", &[]),
        ["orders-eu orders-us"]
    );
    assert_eq!(
        consume(&python, &bootstrap, ALICE, "alice-g", "orders-eu"),
        "orders-eu read"
    );
    assert_eq!(
        consume(&python, &bootstrap, ALICE, "alice-g", "payments"),
        "payments TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        client(&python, &bootstrap, ALICE, "produce", &["orders-eu"]),
        ["orders-eu TOPIC_AUTHORIZATION_FAILED"],
        "READ does not allow WRITE"
    );

    client(
        &python,
        &bootstrap,
        ADMIN,
        "deny",
        &["ALL", "LITERAL", "orders-us"],
    );
    assert_eq!(
        consume(&python, &bootstrap, ALICE, "alice-g", "orders-us"),
        "orders-us TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        client(&python, &bootstrap, ALICE, "topics", &[]),
        ["orders-eu"]
    );

    // ACLs are durable.
    broker.restart();
    let acls = client(&python, &bootstrap, ADMIN, "acls", &[]);
    assert_eq!(
        acls,
        [
            "GROUP alice-g LITERAL User:alice READ ALLOW",
            "TOPIC orders- PREFIXED User:alice READ ALLOW",
            "TOPIC orders-us LITERAL User:alice ALL DENY",
        ]
    );
    assert_eq!(
        client(&python, &bootstrap, ADMIN, "delete-deny", &[]),
        ["deleted 1"]
    );
    assert_eq!(
        consume(&python, &bootstrap, ALICE, "alice-g", "orders-us"),
        "orders-us read"
    );
}

/// KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic, lets a
/// producer be idempotent; a DENY of WRITE on every topic takes that away.
#[test]
fn an_idempotent_producer_needs_write_on_some_topic() {
    let test = "an_idempotent_producer_needs_write_on_some_topic";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (_broker, bootstrap) = authorizing_broker();
    assert_eq!(init_producer_id(&bootstrap, ADMIN), 0, "a super user may");
    assert_eq!(
        init_producer_id(&bootstrap, ALICE),
        CLUSTER_AUTHORIZATION_FAILED
    );
    client(
        &python,
        &bootstrap,
        ADMIN,
        "allow",
        &["WRITE", "LITERAL", "payments"],
    );
    assert_eq!(init_producer_id(&bootstrap, ALICE), 0);
    client(
        &python,
        &bootstrap,
        ADMIN,
        "deny",
        &["WRITE", "LITERAL", "*"],
    );
    assert_eq!(
        init_producer_id(&bootstrap, ALICE),
        CLUSTER_AUTHORIZATION_FAILED
    );
}

#[test]
fn acl_requests_without_an_authorizer_answer_security_disabled() {
    let broker = Broker::start();
    let mut client = RawClient::connect(broker.addr());
    let request = CreateAclsRequest::default().with_creations(vec![Default::default()]);
    let response = client.call(&request, 3);
    assert_eq!(response.results[0].error_code, SECURITY_DISABLED);
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A standalone OffsetCommit (v8) of `offset` for partition 0 of each topic.
fn commit(
    client: &mut RawClient,
    group: &str,
    topics: &[&str],
    offset: i64,
) -> OffsetCommitResponse {
    let topics = topics
        .iter()
        .map(|topic| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(name(""))
        .with_topics(topics);
    client.call(&request, 8)
}

/// OffsetFetch (v7) of partition 0 of each topic, or of everything (`None`).
fn fetch_offsets(
    client: &mut RawClient,
    group: &str,
    topics: Option<&[&str]>,
) -> OffsetFetchResponse {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|topic| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partition_indexes(vec![0])
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_topics(topics);
    client.call(&request, 7)
}

/// (topic, error code, offset) of partition 0 of each topic of the answer.
fn fetched(response: &OffsetFetchResponse) -> Vec<(String, i16, i64)> {
    response
        .topics
        .iter()
        .map(|t| {
            let p = &t.partitions[0];
            (t.name.to_string(), p.error_code, p.committed_offset)
        })
        .collect()
}

#[test]
fn offset_commit_and_fetch_check_each_topic_as_well_as_the_group() {
    let test = "offset_commit_and_fetch_check_each_topic_as_well_as_the_group";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (_broker, bootstrap) = authorizing_broker();
    let mut created = client(&python, &bootstrap, ADMIN, "create", &["granted", "secret"]);
    created.sort();
    assert_eq!(created, ["granted created", "secret created"]);
    client(&python, &bootstrap, ADMIN, "allow-group", &["g"]);
    client(
        &python,
        &bootstrap,
        ADMIN,
        "allow",
        &["READ", "LITERAL", "granted"],
    );
    let addr = bootstrap.parse().expect("SASL listener address");
    let mut admin = plain_login(addr, ADMIN, "admin-secret");
    let answer = commit(&mut admin, "g", &["secret"], 7);
    assert_eq!(answer.topics[0].partitions[0].error_code, 0);

    let mut alice = plain_login(addr, ALICE, "alice-secret");
    // READ on the group, but on only one of the topics.
    let answer = commit(&mut alice, "g", &["granted", "secret"], 3);
    let codes: Vec<(String, i16)> = answer
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("granted".to_string(), 0),
            ("secret".to_string(), TOPIC_AUTHORIZATION_FAILED)
        ]
    );
    let answer = fetch_offsets(&mut alice, "g", Some(&["granted", "secret"]));
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        fetched(&answer),
        [
            ("granted".to_string(), 0, 3),
            ("secret".to_string(), TOPIC_AUTHORIZATION_FAILED, -1)
        ]
    );
    // Asking for everything leaves out what she may not describe.
    let answer = fetch_offsets(&mut alice, "g", None);
    assert_eq!(fetched(&answer), [("granted".to_string(), 0, 3)]);
    // The admin still sees the offset alice could not overwrite.
    let answer = fetch_offsets(&mut admin, "g", Some(&["secret"]));
    assert_eq!(fetched(&answer), [("secret".to_string(), 0, 7)]);
    // Without READ on the group, every partition answers the group's error.
    let answer = commit(&mut alice, "other", &["granted"], 1);
    assert_eq!(
        answer.topics[0].partitions[0].error_code,
        GROUP_AUTHORIZATION_FAILED
    );
    let answer = fetch_offsets(&mut alice, "other", Some(&["granted"]));
    assert_eq!(answer.error_code, GROUP_AUTHORIZATION_FAILED);
}

/// The error code WriteTxnMarkers gives `user` for a marker on a topic that does not exist.
fn write_txn_marker(bootstrap: &str, user: &str) -> i16 {
    let addr = bootstrap.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0)
            .with_transaction_result(true)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("no-such-topic")))
                .with_partition_indexes(vec![0])])]);
    client.call(&request, 1).markers[0].topics[0].partitions[0].error_code
}

#[test]
fn write_txn_markers_needs_cluster_action() {
    let (_broker, bootstrap) = authorizing_broker();
    assert_eq!(
        write_txn_marker(&bootstrap, ALICE),
        CLUSTER_AUTHORIZATION_FAILED,
        "a normal user may not write transaction markers"
    );
    assert_eq!(
        write_txn_marker(&bootstrap, ADMIN),
        UNKNOWN_TOPIC_OR_PARTITION,
        "a super user gets past the authorizer"
    );
}

/// The error codes `user` gets for `transactional_id` from InitProducerId,
/// FindCoordinator, DescribeTransactions and EndTxn (commit of nothing).
fn transactional_errors(bootstrap: &str, user: &str, transactional_id: &str) -> [i16; 4] {
    let addr = bootstrap.parse().expect("SASL listener address");
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    let id = TransactionalId(StrBytes::from_string(transactional_id.to_string()));
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(id.clone()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let init = client.call(&init, 4);
    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(id.0.clone());
    let find = client.call(&find, 3).error_code;
    let describe = DescribeTransactionsRequest::default().with_transactional_ids(vec![id.clone()]);
    let describe = client.call(&describe, 0).transaction_states[0].error_code;
    let end = EndTxnRequest::default()
        .with_transactional_id(id)
        .with_producer_id(init.producer_id)
        .with_producer_epoch(init.producer_epoch)
        .with_committed(true);
    let end = client.call(&end, 3).error_code;
    [init.error_code, find, describe, end]
}

#[test]
fn transactional_apis_need_acls_on_the_transactional_id() {
    let test = "transactional_apis_need_acls_on_the_transactional_id";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (_broker, bootstrap) = authorizing_broker();
    let refused = [TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 4];
    assert_eq!(
        transactional_errors(&bootstrap, ALICE, "payments-app"),
        refused
    );
    assert_eq!(
        transactional_errors(&bootstrap, ADMIN, "payments-app"),
        [0, 0, 0, INVALID_TXN_STATE],
        "a super user may; there is nothing to commit"
    );
    client(
        &python,
        &bootstrap,
        ADMIN,
        "allow-transactional-id",
        &["payments-app"],
    );
    // WRITE on the id, which implies DESCRIBE (Kafka's implied operations).
    assert_eq!(
        transactional_errors(&bootstrap, ALICE, "payments-app"),
        [0, 0, 0, INVALID_TXN_STATE]
    );
    assert_eq!(
        transactional_errors(&bootstrap, ALICE, "other-app"),
        refused
    );
}

/// OffsetForLeaderEpoch v3 from `user` for a topic that does not exist, as
/// a consumer (`replica_id` -1) or a follower (`replica_id` 1).
fn offset_for_leader_epoch(bootstrap: &str, user: &str, replica_id: i32) -> i16 {
    let addr = bootstrap.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    common::raw::offset_for_leader_epoch(&mut client, 3, replica_id, "no-such-topic", -1, 0)
        .error_code
}

fn describe_quorum(bootstrap: &str, user: &str) -> i16 {
    let addr = bootstrap.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    let request = kafka_protocol::messages::DescribeQuorumRequest::default();
    client.call(&request, 1).error_code
}

/// ElectLeaders v1 from `user` for a partition that does not exist: the
/// top-level and the partition's error codes.
fn elect_leaders(bootstrap: &str, user: &str) -> (i16, Vec<i16>) {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let addr = bootstrap.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut client = plain_login(addr, user, &format!("{user}-secret"));
    let request = kafka_protocol::messages::ElectLeadersRequest::default()
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(kafka_protocol::messages::TopicName(
                StrBytes::from_static_str("no-such-topic"),
            ))
            .with_partitions(vec![0])]))
        .with_timeout_ms(1000);
    let answer = client.call(&request, 1);
    let codes = answer
        .replica_election_results
        .iter()
        .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
        .collect();
    (answer.error_code, codes)
}

#[test]
fn elect_leaders_needs_alter_on_the_cluster() {
    let (_broker, bootstrap) = authorizing_broker();
    assert_eq!(
        elect_leaders(&bootstrap, ALICE),
        (
            CLUSTER_AUTHORIZATION_FAILED,
            vec![CLUSTER_AUTHORIZATION_FAILED]
        )
    );
    assert_eq!(
        elect_leaders(&bootstrap, ADMIN),
        (0, vec![UNKNOWN_TOPIC_OR_PARTITION]),
        "a super user gets past the authorizer"
    );
}

#[test]
fn offset_for_leader_epoch_needs_topic_describe_or_cluster_action() {
    let (_broker, bootstrap) = authorizing_broker();
    assert_eq!(
        offset_for_leader_epoch(&bootstrap, ALICE, -1),
        TOPIC_AUTHORIZATION_FAILED,
        "a consumer needs DESCRIBE on the topic"
    );
    assert_eq!(
        offset_for_leader_epoch(&bootstrap, ALICE, 1),
        CLUSTER_AUTHORIZATION_FAILED,
        "a follower needs CLUSTER_ACTION"
    );
    for replica_id in [-1, 1] {
        assert_eq!(
            offset_for_leader_epoch(&bootstrap, ADMIN, replica_id),
            UNKNOWN_TOPIC_OR_PARTITION,
            "a super user gets past the authorizer"
        );
    }
    assert_eq!(
        describe_quorum(&bootstrap, ALICE),
        CLUSTER_AUTHORIZATION_FAILED
    );
    assert_eq!(describe_quorum(&bootstrap, ADMIN), 0);
}
