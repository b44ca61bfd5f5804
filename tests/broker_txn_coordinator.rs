//! The transaction coordinator (KIP-98, KIP-360, KIP-890) against a real broker: rdkafka's
//! transactional producer (init, begin, commit, abort,
//! send_offsets_to_transaction) with read_committed consumers, fencing of
//! an older producer, the transaction timeout, SIGKILL at each step, a
//! second client (kafka-python), and the raw client for what a real client
//! would not send.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::clients::{
    assign, committed_offsets, consume, consumer, create_topic, flush, producer, send,
    RecordingProducer,
};
use common::python::{python_with, run_script};
use common::raw::{self, error_code, RawClient, PRODUCE_VERSION_MAX};
use common::txn::{
    add_partitions, end_txn, end_txn_request, init_transactional, str_bytes, transactional_id,
};
use common::{unique_topic, wait_until, Broker};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId,
};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use ringlog::client::{BatchBuilder, BatchOptions};

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const INVALID_REQUEST: i16 = 42;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
const FIND_COORDINATOR_KEY_TYPE_TRANSACTION: i8 = 1;
/// How long a client call or a wait for the broker may take.
const WAIT_MAX: Duration = Duration::from_secs(30);
/// A read_committed consumer's wait for records that must not arrive.
const QUIET_WAIT: Duration = Duration::from_secs(3);

/// An rdkafka transactional producer, initialized.
fn transactional_producer(
    bootstrap: &str,
    transactional_id: &str,
    timeout_ms: &str,
) -> RecordingProducer {
    let (producer, _log) = producer(
        bootstrap,
        &[
            ("transactional.id", transactional_id),
            ("enable.idempotence", "true"),
            ("transaction.timeout.ms", timeout_ms),
            // librdkafka wants these timeouts within the transaction's.
            ("socket.timeout.ms", "1500"),
            ("message.timeout.ms", timeout_ms),
            ("linger.ms", "0"),
        ],
    );
    producer
        .init_transactions(WAIT_MAX)
        .unwrap_or_else(|error| panic!("init_transactions: {error}"));
    producer
}

/// Sends `values` to partition 0 of `topic` inside the open transaction and flushes.
fn send_values(producer: &RecordingProducer, topic: &str, values: &[String]) {
    for value in values {
        send(
            producer,
            BaseRecord::to(topic).partition(0).payload(value.as_bytes()),
        );
    }
    flush(producer);
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// What a consumer with `isolation_level` reads from partition 0 of `topic`
/// within `wait`, up to `expected` records.
fn read(
    bootstrap: &str,
    topic: &str,
    isolation_level: &str,
    expected: usize,
    wait: Duration,
) -> Vec<String> {
    let consumer = consumer(bootstrap, &[("isolation.level", isolation_level)]);
    assign(&consumer, topic, &[0], Offset::Beginning);
    consume(&consumer, expected, wait)
        .messages
        .iter()
        .map(|m| common::clients::payload_text(m).unwrap_or_default())
        .collect()
}

#[test]
fn commit_abort_commit_is_seen_by_read_committed_exactly_as_committed() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-commit-abort");
    create_topic(&bootstrap, &topic, 1, &[]);
    let producer = transactional_producer(&bootstrap, "txn-commit-abort", "60000");
    let rounds = [("first", true), ("aborted", false), ("second", true)];
    for (prefix, commit) in rounds {
        producer.begin_transaction().expect("begin_transaction");
        send_values(&producer, &topic, &values(prefix, 5));
        if commit {
            producer
                .commit_transaction(WAIT_MAX)
                .expect("commit_transaction");
        } else {
            producer
                .abort_transaction(WAIT_MAX)
                .expect("abort_transaction");
        }
    }
    let mut committed = values("first", 5);
    committed.extend(values("second", 5));
    assert_eq!(
        read(&bootstrap, &topic, "read_committed", 10, WAIT_MAX),
        committed
    );
    let all = read(&bootstrap, &topic, "read_uncommitted", 15, WAIT_MAX);
    assert_eq!(all.len(), 15, "read_uncommitted sees every record: {all:?}");
    // An open transaction is invisible to read_committed until it commits.
    producer.begin_transaction().expect("begin_transaction");
    send_values(&producer, &topic, &values("open", 3));
    let seen = read(&bootstrap, &topic, "read_committed", 13, QUIET_WAIT);
    assert_eq!(seen, committed, "an open transaction stays invisible");
    producer
        .commit_transaction(WAIT_MAX)
        .expect("commit_transaction");
    committed.extend(values("open", 3));
    assert_eq!(
        read(&bootstrap, &topic, "read_committed", 13, WAIT_MAX),
        committed
    );
}

/// One consume -> transform -> produce round: reads `input`'s records from
/// `position`, writes them upper-cased to `output` and the next position to
/// `group`, then commits or aborts.
fn transform_round(
    producer: &RecordingProducer,
    bootstrap: &str,
    (input, output, group): (&str, &str, &str),
    position: i64,
    commit: bool,
) {
    let source = consumer(bootstrap, &[("isolation.level", "read_committed")]);
    assign(&source, input, &[0], Offset::Offset(position));
    let consumed = consume(&source, 5, WAIT_MAX);
    consumed.expect_count(5);
    producer.begin_transaction().expect("begin_transaction");
    let upper: Vec<String> = consumed
        .messages
        .iter()
        .map(|m| {
            common::clients::payload_text(m)
                .unwrap_or_default()
                .to_uppercase()
        })
        .collect();
    send_values(producer, output, &upper);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(input, 0, Offset::Offset(position + 5))
        .expect("offset entry");
    let member = consumer(bootstrap, &[("group.id", group)]);
    let metadata = member.group_metadata().expect("group metadata");
    producer
        .send_offsets_to_transaction(&offsets, &metadata, WAIT_MAX)
        .expect("send_offsets_to_transaction");
    if commit {
        producer
            .commit_transaction(WAIT_MAX)
            .expect("commit_transaction");
    } else {
        producer
            .abort_transaction(WAIT_MAX)
            .expect("abort_transaction");
    }
}

#[test]
fn consume_transform_produce_commits_offsets_and_output_together() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let input = unique_topic("txn-input");
    let output = unique_topic("txn-output");
    let group = "txn-transform";
    create_topic(&bootstrap, &input, 1, &[]);
    create_topic(&bootstrap, &output, 1, &[]);
    let (plain, _log) = producer(&bootstrap, &[]);
    send_values(&plain, &input, &values("in", 10));
    let producer = transactional_producer(&bootstrap, "txn-transform", "60000");
    let topics = (input.as_str(), output.as_str(), group);

    transform_round(&producer, &bootstrap, topics, 0, false);
    assert_eq!(
        committed_offsets(&bootstrap, group, &input, 1),
        vec![-1],
        "an aborted round commits no offsets"
    );
    assert!(read(&bootstrap, &output, "read_committed", 1, QUIET_WAIT).is_empty());

    transform_round(&producer, &bootstrap, topics, 0, true);
    assert_eq!(committed_offsets(&bootstrap, group, &input, 1), vec![5]);
    assert_eq!(
        read(&bootstrap, &output, "read_committed", 5, WAIT_MAX),
        (0..5).map(|i| format!("IN-{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-fence");
    create_topic(&bootstrap, &topic, 1, &[]);
    let older = transactional_producer(&bootstrap, "txn-fence", "60000");
    older.begin_transaction().expect("begin_transaction");
    send_values(&older, &topic, &values("older", 4));
    // The newer producer's init aborts the older one's open transaction.
    let newer = transactional_producer(&bootstrap, "txn-fence", "60000");
    let fenced = older.commit_transaction(WAIT_MAX);
    assert!(fenced.is_err(), "the older producer is fenced: {fenced:?}");
    newer.begin_transaction().expect("begin_transaction");
    send_values(&newer, &topic, &values("newer", 2));
    newer
        .commit_transaction(WAIT_MAX)
        .expect("commit_transaction");
    assert_eq!(
        read(&bootstrap, &topic, "read_committed", 6, QUIET_WAIT),
        values("newer", 2),
        "the fenced producer's transaction was aborted"
    );
}

#[test]
fn a_producer_that_stops_mid_transaction_is_aborted_after_its_timeout() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-timeout");
    create_topic(&bootstrap, &topic, 1, &[]);
    let stopped = transactional_producer(&bootstrap, "txn-timeout", "2000");
    stopped.begin_transaction().expect("begin_transaction");
    send_values(&stopped, &topic, &values("stopped", 3));
    // The producer goes away without ending its transaction.
    std::mem::forget(stopped);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let aborted = wait_until(WAIT_MAX, || {
        describe(&mut client, "txn-timeout").1 == "CompleteAbort"
    });
    assert!(aborted, "the coordinator aborted the timed-out transaction");
    // The LSO moved on: a later committed record is visible to read_committed.
    let (plain, _log) = producer(&bootstrap, &[]);
    send_values(&plain, &topic, &values("after", 1));
    assert_eq!(
        read(&bootstrap, &topic, "read_committed", 1, WAIT_MAX),
        values("after", 1)
    );
}

/// (error code, state name, producer id, epoch) DescribeTransactions reports.
fn describe(client: &mut RawClient, transactional_id: &str) -> (i16, String, i64, i16) {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(str_bytes(transactional_id))]);
    let response = client.call_negotiated(&request, 0);
    let state = &response.transaction_states[0];
    (
        state.error_code,
        state.transaction_state.to_string(),
        state.producer_id.0,
        state.producer_epoch,
    )
}

/// One transactional batch of `count` records from the producer.
fn transactional_batch((id, epoch): (i64, i16), base_sequence: i32, count: usize) -> Bytes {
    let options = BatchOptions {
        producer_id: id,
        producer_epoch: epoch,
        base_sequence,
        transactional: true,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, count);
    for i in 0..count {
        let value = Bytes::from(format!("raw-{base_sequence}-{i}"));
        builder.push(None, Some(value), raw::now_ms());
    }
    builder.encode().unwrap_or_else(|error| panic!("{error}"))
}

/// The error of a transactional produce of `batch` at `version`.
fn produce_transactional(
    client: &mut RawClient,
    transactional_id: &str,
    topic: &str,
    batch: Bytes,
    version: i16,
) -> i16 {
    let request = raw::produce_request(topic, 0, -1, batch)
        .with_transactional_id(Some(TransactionalId(str_bytes(transactional_id))));
    let response = client.call(&request, version);
    raw::single_produce_partition(&response).error_code
}

#[test]
fn bad_transactional_input_gets_kafka_errors() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-bad");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    assert_eq!(
        init_transactional(&mut client, "", 60_000, (-1, -1)).0,
        INVALID_REQUEST,
        "an empty transactional id"
    );
    assert_eq!(
        init_transactional(&mut client, "bad", 900_001, (-1, -1)).0,
        INVALID_TRANSACTION_TIMEOUT
    );
    assert_eq!(
        end_txn(&mut client, "never-initialized", (5, 0), true, 3).0,
        INVALID_PRODUCER_ID_MAPPING,
        "EndTxn for an unknown transactional id"
    );
    assert_eq!(end_txn(&mut client, "", (5, 0), true, 3).0, INVALID_REQUEST);
    let (error, id, epoch) = init_transactional(&mut client, "bad", 60_000, (-1, -1));
    assert_eq!(error, error_code::NONE);
    // A transactional produce to a partition outside the transaction (V1).
    let batch = transactional_batch((id, epoch), 0, 3);
    assert_eq!(
        produce_transactional(
            &mut client,
            "bad",
            &topic,
            batch.clone(),
            PRODUCE_VERSION_MAX
        ),
        INVALID_TXN_STATE
    );
    assert_eq!(
        add_partitions(&mut client, "bad", (id, epoch), &topic, &[0])[0],
        error_code::NONE
    );
    assert_eq!(
        produce_transactional(&mut client, "bad", &topic, batch, PRODUCE_VERSION_MAX),
        error_code::NONE
    );
    // A stale epoch: a second init bumps it.
    let (error, same_id, newer) = init_transactional(&mut client, "bad", 60_000, (-1, -1));
    assert_eq!((error, same_id), (error_code::NONE, id));
    assert!(newer > epoch, "the epoch is bumped: {newer} after {epoch}");
    assert_eq!(
        add_partitions(&mut client, "bad", (id, epoch), &topic, &[0])[0],
        PRODUCER_FENCED
    );
    assert_eq!(
        end_txn(&mut client, "bad", (id, epoch), true, 1).0,
        INVALID_PRODUCER_EPOCH,
        "EndTxn v1 knows no PRODUCER_FENCED"
    );
    assert_eq!(
        end_txn(&mut client, "bad", (id, epoch), true, 3).0,
        PRODUCER_FENCED
    );
    assert_eq!(
        end_txn(&mut client, "bad", (id, newer), true, 3).0,
        INVALID_TXN_STATE,
        "nothing to commit"
    );
    // KIP-360: the old epoch is neither the current nor the last one.
    assert_eq!(
        init_transactional(&mut client, "bad", 60_000, (id, epoch)).0,
        PRODUCER_FENCED
    );
    assert_eq!(
        describe(&mut client, "unknown-id").0,
        TRANSACTIONAL_ID_NOT_FOUND
    );
    // Nothing else was disturbed: the id still works.
    assert_eq!(
        add_partitions(&mut client, "bad", (id, newer), &topic, &[0])[0],
        error_code::NONE
    );
    assert_eq!(
        end_txn(&mut client, "bad", (id, newer), false, 3).0,
        error_code::NONE
    );
}

#[test]
fn transactions_v2_add_partitions_implicitly_and_bump_the_epoch_at_every_end() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-v2");
    create_topic(&bootstrap, &topic, 2, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let versions = client.negotiate();
    let feature = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level);
    assert_eq!(feature, Some(2), "transaction.version 2 is finalized");
    let (error, id, epoch) = init_transactional(&mut client, "v2", 60_000, (-1, -1));
    assert_eq!(error, error_code::NONE);
    // Produce v12 adds the partition itself.
    let batch = transactional_batch((id, epoch), 0, 2);
    assert_eq!(
        produce_transactional(&mut client, "v2", &topic, batch, 12),
        error_code::NONE
    );
    assert_eq!(describe(&mut client, "v2").1, "Ongoing");
    // AddPartitionsToTxn v4+ verify-only (KIP-890, a broker's check):
    // partition 0 is in the transaction, partition 1 is not.
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(transactional_id("v2"))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(vec![0, 1])]),
    ]);
    let response = client.call(&verify, 4);
    assert_eq!(response.error_code, error_code::NONE);
    let verified: Vec<i16> = response.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert_eq!(verified, vec![error_code::NONE, INVALID_TXN_STATE]);
    assert_eq!(
        describe(&mut client, "v2").1,
        "Ongoing",
        "verifying adds nothing"
    );
    let (error, next_id, next_epoch) = end_txn(&mut client, "v2", (id, epoch), true, 5);
    assert_eq!(
        (error, next_id, next_epoch),
        (error_code::NONE, id, epoch + 1)
    );
    // A retry of the same EndTxn is answered the same.
    assert_eq!(
        end_txn(&mut client, "v2", (id, epoch), true, 5),
        (error_code::NONE, id, epoch + 1)
    );
    // A late batch of the finished transaction carries the old epoch: fenced.
    let late = transactional_batch((id, epoch), 2, 1);
    let late_error = produce_transactional(&mut client, "v2", &topic, late, 12);
    assert_eq!(late_error, INVALID_PRODUCER_EPOCH);
    let (error, _, aborted_epoch) = end_txn(&mut client, "v2", (id, epoch + 1), false, 5);
    assert_eq!(
        (error, aborted_epoch),
        (error_code::NONE, epoch + 2),
        "an empty V2 abort bumps too"
    );
}

#[test]
fn find_coordinator_answers_transactional_ids_at_every_version() {
    let broker = Broker::start();
    let mut client = RawClient::connect_negotiated(broker.addr());
    // FindCoordinator v0 has no key type: it names groups only.
    for version in 1..=6 {
        let mut request =
            FindCoordinatorRequest::default().with_key_type(FIND_COORDINATOR_KEY_TYPE_TRANSACTION);
        if version >= 4 {
            request = request.with_coordinator_keys(vec![str_bytes("app-1"), str_bytes("")]);
        } else {
            request = request.with_key(str_bytes("app-1"));
        }
        let response = client.call(&request, version);
        if version >= 4 {
            let coordinators = &response.coordinators;
            assert_eq!(coordinators[0].error_code, error_code::NONE, "v{version}");
            assert_eq!(coordinators[0].port, i32::from(broker.port()), "v{version}");
            assert_eq!(
                coordinators[1].error_code, INVALID_REQUEST,
                "v{version}: an empty id"
            );
        } else {
            assert_eq!(response.error_code, error_code::NONE, "v{version}");
            assert_eq!(response.port, i32::from(broker.port()), "v{version}");
        }
    }
}

#[test]
fn list_and_describe_transactions_report_states() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-list");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (_, id, epoch) = init_transactional(&mut client, "listed-open", 60_000, (-1, -1));
    assert_eq!(
        add_partitions(&mut client, "listed-open", (id, epoch), &topic, &[0])[0],
        error_code::NONE
    );
    init_transactional(&mut client, "listed-empty", 60_000, (-1, -1));
    let (error, state, described_id, described_epoch) = describe(&mut client, "listed-open");
    assert_eq!(
        (error, state.as_str(), described_id, described_epoch),
        (0, "Ongoing", id, epoch)
    );
    let request = ListTransactionsRequest::default()
        .with_state_filters(vec![str_bytes("Ongoing"), str_bytes("NoSuchState")]);
    let response = client.call_negotiated(&request, 1);
    let listed: Vec<String> = response
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect();
    assert_eq!(listed, vec!["listed-open".to_string()]);
    assert_eq!(
        response.unknown_state_filters,
        vec![str_bytes("NoSuchState")]
    );
}

/// A raw transactional producer writing to partitions 0 and 1 of `topic`.
struct RawTxn<'a> {
    transactional_id: &'a str,
    producer: (i64, i16),
    topic: &'a str,
    /// The next sequence of each partition.
    sequences: [i32; 2],
}

impl RawTxn<'_> {
    /// Adds both partitions and writes `count` records to each.
    fn write(&mut self, client: &mut RawClient, count: usize) {
        let added = add_partitions(
            client,
            self.transactional_id,
            self.producer,
            self.topic,
            &[0, 1],
        );
        assert_eq!(added, vec![error_code::NONE; 2], "AddPartitionsToTxn");
        for partition in 0..2 {
            let sequence = self.sequences[partition];
            let batch = transactional_batch(self.producer, sequence, count);
            let request = raw::produce_request(self.topic, partition as i32, -1, batch)
                .with_transactional_id(Some(TransactionalId(str_bytes(self.transactional_id))));
            let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
            assert_eq!(
                raw::single_produce_partition(&response).error_code,
                0,
                "produce"
            );
            self.sequences[partition] += count as i32;
        }
    }
}

/// What read_committed consumers see of partitions 0 and 1, waited for `wait`.
fn read_committed_both(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    wait: Duration,
) -> Vec<usize> {
    let consumer = consumer(bootstrap, &[("isolation.level", "read_committed")]);
    assign(&consumer, topic, &[0, 1], Offset::Beginning);
    let consumed = consume(&consumer, expected, wait);
    (0..2)
        .map(|p| {
            consumed
                .messages
                .iter()
                .filter(|m| m.partition() == p)
                .count()
        })
        .collect()
}

/// Waits until the coordinator has no transaction of `transactional_id`
/// between decision and markers; returns its state.
fn settled_state(client: &mut RawClient, transactional_id: &str) -> String {
    let mut state = String::new();
    let settled = wait_until(WAIT_MAX, || {
        state = describe(client, transactional_id).1;
        !state.starts_with("Prepare")
    });
    assert!(settled, "the coordinator finished the transaction: {state}");
    state
}

#[test]
fn after_sigkill_every_transaction_is_all_or_nothing_and_the_producer_continues() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-sigkill");
    create_topic(&bootstrap, &topic, 2, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (_, id, epoch) = init_transactional(&mut client, "killed", 60_000, (-1, -1));
    let mut txn = RawTxn {
        transactional_id: "killed",
        producer: (id, epoch),
        topic: &topic,
        sequences: [0, 0],
    };
    // Transaction 1 is committed; transaction 2 is open when the broker dies.
    txn.write(&mut client, 3);
    assert_eq!(end_txn(&mut client, "killed", (id, epoch), true, 3).0, 0);
    txn.write(&mut client, 2);
    broker.kill9();
    broker.start_again();
    let mut client = RawClient::connect_negotiated(broker.addr());
    assert_eq!(
        describe(&mut client, "killed").1,
        "Ongoing",
        "the open transaction survived"
    );
    assert_eq!(
        read_committed_both(&bootstrap, &topic, 10, QUIET_WAIT),
        vec![3, 3]
    );
    // The same producer continues its transaction and commits it.
    txn.write(&mut client, 1);
    assert_eq!(end_txn(&mut client, "killed", (id, epoch), true, 3).0, 0);
    assert_eq!(
        read_committed_both(&bootstrap, &topic, 12, WAIT_MAX),
        vec![6, 6]
    );

    // Transaction 3: EndTxn, then SIGKILL before, while or after its markers are written.
    txn.write(&mut client, 4);
    client.frame(&end_txn_request("killed", (id, epoch), true), 3);
    std::thread::sleep(Duration::from_millis(2));
    broker.kill9();
    broker.start_again();
    let mut client = RawClient::connect_negotiated(broker.addr());
    let state = settled_state(&mut client, "killed");
    let seen = read_committed_both(&bootstrap, &topic, 20, QUIET_WAIT);
    match state.as_str() {
        "CompleteCommit" => assert_eq!(seen, vec![10, 10], "all of transaction 3"),
        "Ongoing" => assert_eq!(seen, vec![6, 6], "none of transaction 3"),
        other => panic!("unexpected state {other}"),
    }
    // The producer retries its EndTxn, as a client whose answer was lost does.
    assert_eq!(end_txn(&mut client, "killed", (id, epoch), true, 3).0, 0);
    assert_eq!(settled_state(&mut client, "killed"), "CompleteCommit");
    assert_eq!(
        read_committed_both(&bootstrap, &topic, 20, WAIT_MAX),
        vec![10, 10]
    );
}

const KAFKA_PYTHON_TRANSACTIONS: &str = r#"
import sys
from kafka import KafkaProducer, KafkaConsumer
bootstrap, topic = sys.argv[1], sys.argv[2]
producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
producer.init_transactions()
producer.begin_transaction()
for i in range(3):
    producer.send(topic, value=b"kept-%d" % i, partition=0)
producer.commit_transaction()
producer.begin_transaction()
for i in range(2):
    producer.send(topic, value=b"dropped-%d" % i, partition=0)
producer.abort_transaction()
producer.close()
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         isolation_level="read_committed", consumer_timeout_ms=5000)
values = [m.value.decode() for m in consumer]
print(" ".join(values))
"#;

#[test]
fn kafka_python_commits_and_aborts_transactions() {
    let test = "kafka_python_commits_and_aborts_transactions";
    let Some(python) = python_with(test, &["kafka"]) else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-kafka-python");
    create_topic(&bootstrap, &topic, 1, &[]);
    let output = run_script(&python, KAFKA_PYTHON_TRANSACTIONS, &[&bootstrap, &topic]);
    assert_eq!(output.trim(), "kept-0 kept-1 kept-2");
}

/// The transactional ids ListTransactions reports, all states.
fn listed(client: &mut RawClient) -> Vec<String> {
    let response = client.call_negotiated(&ListTransactionsRequest::default(), 1);
    response
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect()
}

#[test]
fn an_idle_transactional_id_expires_and_stays_gone_after_a_restart() {
    let mut broker = Broker::builder()
        .arg("--transactional-id-expiration-ms")
        .arg("1500")
        .start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-expiry");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (error, id, epoch) = init_transactional(&mut client, "expiring", 60_000, (-1, -1));
    assert_eq!(error, error_code::NONE);
    assert_eq!(
        add_partitions(&mut client, "expiring", (id, epoch), &topic, &[0])[0],
        error_code::NONE
    );
    assert_eq!(
        end_txn(&mut client, "expiring", (id, epoch), true, 3).0,
        error_code::NONE
    );
    assert_eq!(settled_state(&mut client, "expiring"), "CompleteCommit");
    // An open transaction is never expired, however idle.
    let (_, open_id, open_epoch) =
        init_transactional(&mut client, "expiring-open", 60_000, (-1, -1));
    assert_eq!(
        add_partitions(
            &mut client,
            "expiring-open",
            (open_id, open_epoch),
            &topic,
            &[0]
        )[0],
        error_code::NONE
    );
    let expired = wait_until(WAIT_MAX, || {
        describe(&mut client, "expiring").0 == TRANSACTIONAL_ID_NOT_FOUND
    });
    assert!(expired, "the idle transactional id expired");
    // Well past the expiration for the open one too.
    std::thread::sleep(Duration::from_millis(2_500));
    let check = |client: &mut RawClient| {
        assert_eq!(describe(client, "expiring").0, TRANSACTIONAL_ID_NOT_FOUND);
        let (error, state, described_id, _) = describe(client, "expiring-open");
        assert_eq!(
            (error, state.as_str(), described_id),
            (0, "Ongoing", open_id)
        );
        assert_eq!(listed(client), vec!["expiring-open".to_string()]);
    };
    check(&mut client);
    broker.restart();
    let mut client = RawClient::connect_negotiated(broker.addr());
    check(&mut client);
    // The id starts afresh.
    let (error, _, epoch) = init_transactional(&mut client, "expiring", 60_000, (-1, -1));
    assert_eq!((error, epoch), (error_code::NONE, 0));
    assert_eq!(describe(&mut client, "expiring").1, "Empty");
}
