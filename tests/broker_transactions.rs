//! Transactions on the partition side (KIP-98) against a real broker: a raw
//! client writes transactional batches and ends them with WriteTxnMarkers;
//! real consumers (rdkafka, kafka-python) read them with read_committed and
//! read_uncommitted. The last stable offset, the aborted-transaction lists
//! and ListOffsets per isolation level; both survive SIGKILL and come back
//! when `.txnindex` and `.snapshot` files are lost; bad input gets its
//! Kafka error.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::clients::{assign, consume, consumer, create_topic, payload_text};
use common::python::{python_with, run_script};
use common::raw::{self, error_code, RawClient, FETCH_VERSION_MAX, PRODUCE_VERSION_MAX};
use common::txn::{add_partitions, end_txn, init_transactional, transactional_id};
use common::{unique_topic, Broker};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ListOffsetsRequest, ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::Offset;
use ringlog::client::{BatchBuilder, BatchOptions};

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const LIST_OFFSETS_VERSION_MAX: i16 = 7;
/// How long a consumer may take to read what it should.
const CONSUME_WAIT: Duration = Duration::from_secs(20);
/// How long a consumer is given to show that nothing more arrives.
const QUIET_WAIT: Duration = Duration::from_secs(2);
/// Plain records written after the aborted transaction in the restart tests.
const PLAIN_AFTER_ABORT: usize = 40;
const READ_COMMITTED: &[(&str, &str)] = &[("isolation.level", "read_committed")];
const READ_UNCOMMITTED: &[(&str, &str)] = &[("isolation.level", "read_uncommitted")];

/// Transactional ids of the raw producers, one per producer.
static NEXT_TRANSACTIONAL_ID: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// (producer id, epoch) from InitProducerId for `transactional_id`.
fn init_producer_id(client: &mut RawClient, transactional_id: &str) -> (i64, i16) {
    let (error, id, epoch) = init_transactional(client, transactional_id, 60_000, (-1, -1));
    assert_eq!(error, error_code::NONE, "InitProducerId");
    (id, epoch)
}

/// One transactional producer's batches to partition 0, its sequence
/// counted here. Partitions join its transaction with AddPartitionsToTxn
/// (KIP-890 refuses a transactional batch otherwise).
struct TxnProducer {
    transactional_id: String,
    id: i64,
    epoch: i16,
    sequence: i32,
}

impl TxnProducer {
    fn new(client: &mut RawClient) -> TxnProducer {
        let n = NEXT_TRANSACTIONAL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let transactional_id = format!("partition-side-{}-{n}", std::process::id());
        let (id, epoch) = init_producer_id(client, &transactional_id);
        TxnProducer {
            transactional_id,
            id,
            epoch,
            sequence: 0,
        }
    }

    /// A new InitProducerId for the same transactional id: the next epoch,
    /// from sequence 0.
    fn reinit(&mut self, client: &mut RawClient) {
        let (id, epoch) = init_producer_id(client, &self.transactional_id);
        assert_eq!(id, self.id, "the same producer id at the next epoch");
        self.epoch = epoch;
        self.sequence = 0;
    }

    /// Adds partition 0 of `topic` to the producer's transaction.
    fn add_partition(&self, client: &mut RawClient, topic: &str) {
        let producer = (self.id, self.epoch);
        let codes = add_partitions(client, &self.transactional_id, producer, topic, &[0]);
        assert_eq!(codes, vec![error_code::NONE], "AddPartitionsToTxn");
    }

    /// Produces one batch with `values`; returns (error code, base offset).
    fn send(
        &mut self,
        client: &mut RawClient,
        topic: &str,
        transactional: bool,
        values: &[&str],
    ) -> (i16, i64) {
        if transactional {
            self.add_partition(client, topic);
        }
        let batch = batch(self.id, self.epoch, self.sequence, transactional, values);
        let request = raw::produce_request(topic, 0, -1, batch)
            .with_transactional_id(Some(transactional_id(&self.transactional_id)));
        let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
        let answer = raw::single_produce_partition(&response);
        if answer.error_code == error_code::NONE {
            self.sequence += values.len() as i32;
        }
        (answer.error_code, answer.base_offset)
    }

    /// A transactional batch of records keyed `key`, which must be accepted.
    fn send_keyed_txn(&mut self, client: &mut RawClient, topic: &str, key: &str, values: &[&str]) {
        self.add_partition(client, topic);
        let batch = keyed_batch(self.id, self.epoch, self.sequence, true, Some(key), values);
        let request = raw::produce_request(topic, 0, -1, batch)
            .with_transactional_id(Some(transactional_id(&self.transactional_id)));
        let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
        let answer = raw::single_produce_partition(&response);
        assert_eq!(
            answer.error_code,
            error_code::NONE,
            "keyed transactional produce"
        );
        self.sequence += values.len() as i32;
    }

    /// A transactional batch that must be accepted; returns its base offset.
    fn send_txn(&mut self, client: &mut RawClient, topic: &str, values: &[&str]) -> i64 {
        let (code, offset) = self.send(client, topic, true, values);
        assert_eq!(
            code,
            error_code::NONE,
            "transactional produce of {values:?}"
        );
        offset
    }

    /// Ends the open transaction with EndTxn: the coordinator writes the markers.
    fn end(&self, client: &mut RawClient, _topic: &str, commit: bool) {
        let producer = (self.id, self.epoch);
        let (code, _, _) = end_txn(client, &self.transactional_id, producer, commit, 3);
        assert_eq!(code, error_code::NONE, "EndTxn: the markers are written");
    }
}

fn batch(id: i64, epoch: i16, sequence: i32, transactional: bool, values: &[&str]) -> Bytes {
    keyed_batch(id, epoch, sequence, transactional, None, values)
}

/// A batch whose records all have `key` (None: no key).
fn keyed_batch(
    id: i64,
    epoch: i16,
    sequence: i32,
    transactional: bool,
    key: Option<&str>,
    values: &[&str],
) -> Bytes {
    let options = BatchOptions {
        producer_id: id,
        producer_epoch: epoch,
        base_sequence: sequence,
        transactional,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, values.len());
    for value in values {
        let key = key.map(|k| Bytes::from(k.to_string()));
        builder.push(key, Some(Bytes::from(value.to_string())), raw::now_ms());
    }
    builder.encode().unwrap_or_else(|error| panic!("{error}"))
}

/// A plain (non-idempotent) batch of `values`.
fn produce_plain(client: &mut RawClient, topic: &str, values: &[&str]) -> i64 {
    let request = raw::produce_request(topic, 0, -1, batch(-1, -1, -1, false, values));
    let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
    let answer = raw::single_produce_partition(&response);
    assert_eq!(answer.error_code, error_code::NONE, "plain produce");
    answer.base_offset
}

/// WriteTxnMarkers for one marker; the error code of every partition, in order.
fn write_markers(
    client: &mut RawClient,
    producer_id: i64,
    epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: &[(&str, &[i32])],
) -> Vec<i16> {
    let topics = partitions
        .iter()
        .map(|(topic, indexes)| {
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(indexes.to_vec())
        })
        .collect();
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(topics)]);
    let response = client.call(&request, WRITE_TXN_MARKERS_VERSION);
    response.markers[0]
        .topics
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// A read_committed (isolation 1) or read_uncommitted (0) fetch of partition 0.
fn fetch(client: &mut RawClient, topic: &str, offset: i64, isolation: i8) -> PartitionData {
    let request = raw::fetch_request(topic, 0, offset, 0, 0).with_isolation_level(isolation);
    let response = client.call_negotiated(&request, FETCH_VERSION_MAX);
    raw::single_fetch_partition(&response).clone()
}

/// (producer id, first offset) of each aborted transaction a read_committed fetch from 0 names.
fn aborted_from_start(client: &mut RawClient, topic: &str) -> Vec<(i64, i64)> {
    let data = fetch(client, topic, 0, 1);
    assert_eq!(data.error_code, error_code::NONE);
    data.aborted_transactions
        .unwrap_or_default()
        .iter()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect()
}

/// ListOffsets "latest" (-1) of partition 0 at an isolation level.
fn latest_offset(client: &mut RawClient, topic: &str, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response = client.call_negotiated(&request, LIST_OFFSETS_VERSION_MAX);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, error_code::NONE, "ListOffsets");
    partition.offset
}

/// Every value a consumer with `isolation` reads from the start of
/// partition 0, expecting `count` of them and then no more.
fn consume_values(
    bootstrap: &str,
    topic: &str,
    isolation: &[(&str, &str)],
    count: usize,
) -> Vec<String> {
    let consumer = consumer(bootstrap, isolation);
    assign(&consumer, topic, &[0], Offset::Beginning);
    let consumed = consume(&consumer, count, CONSUME_WAIT);
    consumed.expect_count(count);
    let extra = consume(&consumer, 1, QUIET_WAIT);
    assert!(
        extra.messages.is_empty(),
        "nothing past the {count} expected: {:?}",
        extra.messages.iter().map(payload_text).collect::<Vec<_>>()
    );
    consumed
        .messages
        .iter()
        .map(|m| payload_text(m).unwrap_or_default())
        .collect()
}

fn partition_dir(broker: &Broker, topic: &str) -> PathBuf {
    broker.data_dir().join(format!("{topic}-0"))
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    found.sort();
    found
}

#[test]
fn read_committed_sees_exactly_the_committed_records_and_read_uncommitted_all() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-commit-abort");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut producer = TxnProducer::new(&mut client);

    producer.send_txn(&mut client, &topic, &["c1-a", "c1-b"]);
    producer.send_txn(&mut client, &topic, &["c1-c"]);
    producer.end(&mut client, &topic, true);
    produce_plain(&mut client, &topic, &["plain-1"]);
    producer.send_txn(&mut client, &topic, &["a2-a", "a2-b"]);
    producer.end(&mut client, &topic, false);
    producer.send_txn(&mut client, &topic, &["c3-a"]);
    producer.end(&mut client, &topic, true);

    let committed = consume_values(&bootstrap, &topic, READ_COMMITTED, 5);
    assert_eq!(committed, ["c1-a", "c1-b", "c1-c", "plain-1", "c3-a"]);
    let all = consume_values(&bootstrap, &topic, READ_UNCOMMITTED, 7);
    assert_eq!(
        all,
        ["c1-a", "c1-b", "c1-c", "plain-1", "a2-a", "a2-b", "c3-a"]
    );
    // The aborted transaction started at offset 5 (0-2 data, 3 marker, 4 plain).
    assert_eq!(
        aborted_from_start(&mut client, &topic),
        vec![(producer.id, 5)]
    );
    let uncommitted = fetch(&mut client, &topic, 0, 0);
    assert!(
        uncommitted.aborted_transactions.is_none(),
        "read_uncommitted gets no aborted list"
    );
}

#[test]
fn an_open_transaction_holds_the_last_stable_offset_until_its_marker() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-lso");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut first = TxnProducer::new(&mut client);
    let mut open = TxnProducer::new(&mut client);

    first.send_txn(&mut client, &topic, &["committed"]);
    first.end(&mut client, &topic, true);
    let open_at = open.send_txn(&mut client, &topic, &["pending-a"]);
    produce_plain(&mut client, &topic, &["after-open"]);
    open.send_txn(&mut client, &topic, &["pending-b"]);

    let data = fetch(&mut client, &topic, 0, 1);
    assert_eq!(
        data.last_stable_offset, open_at,
        "the open transaction's first offset"
    );
    assert_eq!(data.high_watermark, open_at + 3);
    assert_eq!(latest_offset(&mut client, &topic, 1), open_at);
    assert_eq!(latest_offset(&mut client, &topic, 0), open_at + 3);
    let beyond = fetch(&mut client, &topic, open_at, 1);
    assert!(
        beyond.records.unwrap_or_default().is_empty(),
        "read_committed reads nothing at the last stable offset"
    );
    assert_eq!(
        consume_values(&bootstrap, &topic, READ_COMMITTED, 1),
        ["committed"]
    );

    open.end(&mut client, &topic, true);
    let data = fetch(&mut client, &topic, 0, 1);
    assert_eq!(data.last_stable_offset, data.high_watermark);
    assert_eq!(
        latest_offset(&mut client, &topic, 1),
        latest_offset(&mut client, &topic, 0)
    );
    assert_eq!(
        consume_values(&bootstrap, &topic, READ_COMMITTED, 4),
        ["committed", "pending-a", "after-open", "pending-b"]
    );
}

/// An aborted and an open transaction on a topic of small segments; returns
/// (producer of the open one, its first offset, producer id of the aborted one,
/// its first offset).
fn aborted_then_open(client: &mut RawClient, topic: &str) -> (TxnProducer, i64, i64, i64) {
    let mut aborted = TxnProducer::new(client);
    let aborted_at = aborted.send_txn(client, topic, &["gone-a", "gone-b"]);
    aborted.send_txn(client, topic, &["gone-c"]);
    aborted.end(client, topic, false);
    // Enough to roll 4 KiB segments twice after the abort marker.
    for i in 0..PLAIN_AFTER_ABORT {
        produce_plain(client, topic, &[&format!("plain-{i}-{}", "x".repeat(200))]);
    }
    let mut open = TxnProducer::new(client);
    let open_at = open.send_txn(client, topic, &["kept-a"]);
    (open, open_at, aborted.id, aborted_at)
}

#[test]
fn after_sigkill_the_open_and_aborted_transactions_come_back() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-kill");
    create_topic(&bootstrap, &topic, 1, &[("segment.bytes", "4096")]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (mut open, open_at, aborted_id, aborted_at) = aborted_then_open(&mut client, &topic);
    assert!(
        files_with(&partition_dir(&broker, &topic), "log").len() > 2,
        "the segments rolled"
    );
    drop(client);
    broker.kill9();
    broker.start_again();

    let mut client = RawClient::connect_negotiated(broker.addr());
    let data = fetch(&mut client, &topic, 0, 1);
    assert_eq!(
        data.last_stable_offset, open_at,
        "the open transaction holds the LSO"
    );
    assert_eq!(
        aborted_from_start(&mut client, &topic),
        vec![(aborted_id, aborted_at)]
    );
    assert_eq!(
        consume_values(&bootstrap, &topic, READ_COMMITTED, PLAIN_AFTER_ABORT).len(),
        PLAIN_AFTER_ABORT
    );
    // The same producer continues its transaction and commits it.
    open.send_txn(&mut client, &topic, &["kept-b"]);
    open.end(&mut client, &topic, true);
    let values = consume_values(&bootstrap, &topic, READ_COMMITTED, PLAIN_AFTER_ABORT + 2);
    assert_eq!(&values[PLAIN_AFTER_ABORT..], ["kept-a", "kept-b"]);
    assert!(values.iter().all(|v| !v.starts_with("gone")));
}

#[test]
fn lost_txnindex_and_snapshot_files_are_rebuilt_from_the_log() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-rebuild");
    create_topic(&bootstrap, &topic, 1, &[("segment.bytes", "4096")]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (_open, open_at, aborted_id, aborted_at) = aborted_then_open(&mut client, &topic);
    drop(client);
    let dir = partition_dir(&broker, &topic);
    for lost in [&["txnindex"][..], &["txnindex", "snapshot"]] {
        broker.stop();
        let indexes = files_with(&dir, "txnindex");
        assert!(
            indexes
                .iter()
                .any(|path| std::fs::metadata(path).is_ok_and(|m| m.len() == 34)),
            "the segment holding the abort marker has one 34-byte entry: {indexes:?}"
        );
        for extension in lost {
            for path in files_with(&dir, extension) {
                std::fs::remove_file(&path).unwrap_or_else(|error| panic!("{error}"));
            }
        }
        broker.start_again();

        let mut client = RawClient::connect_negotiated(broker.addr());
        assert_eq!(
            fetch(&mut client, &topic, 0, 1).last_stable_offset,
            open_at,
            "LSO after losing {lost:?}"
        );
        assert_eq!(
            aborted_from_start(&mut client, &topic),
            vec![(aborted_id, aborted_at)],
            "aborted transactions after losing {lost:?}"
        );
        let values = consume_values(&bootstrap, &topic, READ_COMMITTED, PLAIN_AFTER_ABORT);
        assert!(values.iter().all(|v| v.starts_with("plain")));
        assert!(
            !files_with(&dir, "txnindex").is_empty(),
            "the rebuilt indexes are written again"
        );
    }
}

#[test]
fn markers_and_transactional_batches_get_kafkas_errors_for_bad_input() {
    let broker = Broker::start();
    let topic = unique_topic("txn-bad-input");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut producer = TxnProducer::new(&mut client);

    assert_eq!(
        write_markers(
            &mut client,
            producer.id,
            0,
            0,
            true,
            &[("no-such-topic", &[0]), (&topic, &[7])]
        ),
        vec![error_code::UNKNOWN_TOPIC_OR_PARTITION; 2]
    );
    producer.send_txn(&mut client, &topic, &["a"]);
    let (code, _) = producer.send(&mut client, &topic, false, &["plain inside"]);
    assert_eq!(
        code, INVALID_TXN_STATE,
        "a plain batch inside the open transaction"
    );
    // KIP-890: the marker carries the bumped epoch; the old epoch is fenced after it.
    assert_eq!(
        write_markers(&mut client, producer.id, 1, 3, true, &[(&topic, &[0])]),
        vec![error_code::NONE]
    );
    assert_eq!(
        write_markers(&mut client, producer.id, 0, 3, false, &[(&topic, &[0])]),
        vec![INVALID_PRODUCER_EPOCH],
        "a marker with an older producer epoch"
    );
    assert_eq!(
        write_markers(&mut client, producer.id, 1, 2, false, &[(&topic, &[0])]),
        vec![TRANSACTION_COORDINATOR_FENCED],
        "a marker from an older coordinator epoch"
    );
    let (code, _) = producer.send(&mut client, &topic, true, &["late"]);
    assert_eq!(
        code, INVALID_PRODUCER_EPOCH,
        "a late batch of the ended epoch"
    );
    // The coordinator still has the transaction open: a new producer
    // session aborts it and continues at a later epoch.
    producer.reinit(&mut client);
    producer.send_txn(&mut client, &topic, &["next transaction"]);

    // Only the broker writes control batches.
    let mut control = ringlog::storage::control::marker_batch(
        &ringlog::storage::TxnMarker {
            producer_id: producer.id,
            producer_epoch: 1,
            coordinator_epoch: 3,
            result: ringlog::storage::TxnResult::Commit,
        },
        raw::now_ms(),
    );
    let request = raw::produce_request(&topic, 0, -1, std::mem::take(&mut control));
    let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
    assert_eq!(
        raw::single_produce_partition(&response).error_code,
        error_code::INVALID_RECORD
    );

    // A WriteTxnMarkers body cut short closes the connection, as Kafka does.
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()]);
    let (_, frame) = client.frame(&request, WRITE_TXN_MARKERS_VERSION);
    let mut cut = frame[..frame.len() - 3].to_vec();
    let length = (cut.len() - 4) as i32;
    cut[..4].copy_from_slice(&length.to_be_bytes());
    client
        .write_raw(&cut)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        client.peer_state(Duration::from_secs(5)),
        raw::PeerState::Closed
    );
    assert!(broker.logged_panic().is_none());
}

#[test]
fn the_cleaner_removes_aborted_records_and_keeps_the_committed_value() {
    let broker = Broker::builder()
        .arg("--log-cleaner-backoff-ms")
        .arg("100")
        .start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-compact");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut producer = TxnProducer::new(&mut client);
    producer.send_keyed_txn(&mut client, &topic, "k", &["committed"]);
    producer.end(&mut client, &topic, true);
    producer.send_keyed_txn(&mut client, &topic, "k", &["aborted"]);
    producer.end(&mut client, &topic, false);
    let filler = vec![b'f'; 1024];
    // Pushes the transactions out of the active segment, which is never cleaned.
    for i in 0..12 {
        let key = format!("filler-{i}");
        let answer = raw::produce(&mut client, &topic, 0, &[(key.as_bytes(), &filler)]);
        assert_eq!(answer.error_code, error_code::NONE);
    }
    let values_of_k = |client: &mut RawClient| -> Vec<String> {
        let data = fetch(client, &topic, 0, 0);
        raw::decode_records(&data.records.unwrap_or_default())
            .iter()
            .filter(|r| !r.control && r.key.as_deref() == Some(&b"k"[..]))
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    };
    // The cleaner may already have run (it backs off only 100 ms).
    let before = values_of_k(&mut client);
    assert!(
        before == ["committed", "aborted"] || before == ["committed"],
        "both values are stored until the cleaner runs: {before:?}"
    );
    let cleaned = common::wait_until(CONSUME_WAIT, || {
        std::thread::sleep(Duration::from_millis(200));
        values_of_k(&mut client) == ["committed"]
    });
    assert!(
        cleaned,
        "the cleaner removes the aborted record and keeps the committed one: {:?}",
        values_of_k(&mut client)
    );
    assert_eq!(
        aborted_from_start(&mut client, &topic).len(),
        1,
        "the marker stays"
    );
    let committed: Vec<String> = consume_values(&bootstrap, &topic, READ_COMMITTED, 13)
        .into_iter()
        .filter(|v| !v.starts_with('f'))
        .collect();
    assert_eq!(committed, ["committed"]);
}

const KAFKA_PYTHON_READ_COMMITTED: &str = r#"
import sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, isolation = sys.argv[1], sys.argv[2], sys.argv[3]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=5000)
consumer.assign([TopicPartition(topic, 0)])
print(" ".join(message.value.decode() for message in consumer))
consumer.close()
"#;

#[test]
fn kafka_python_read_committed_skips_aborted_records() {
    let test = "kafka_python_read_committed_skips_aborted_records";
    let Some(python) = python_with(test, &["kafka"]) else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("txn-kafka-python");
    create_topic(&bootstrap, &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut producer = TxnProducer::new(&mut client);
    producer.send_txn(&mut client, &topic, &["c1", "c2"]);
    producer.end(&mut client, &topic, true);
    producer.send_txn(&mut client, &topic, &["a1"]);
    producer.end(&mut client, &topic, false);
    producer.send_txn(&mut client, &topic, &["c3"]);
    producer.end(&mut client, &topic, true);
    producer.send_txn(&mut client, &topic, &["open"]);

    let committed = run_script(
        &python,
        KAFKA_PYTHON_READ_COMMITTED,
        &[&bootstrap, &topic, "read_committed"],
    );
    assert_eq!(committed.trim(), "c1 c2 c3");
    let all = run_script(
        &python,
        KAFKA_PYTHON_READ_COMMITTED,
        &[&bootstrap, &topic, "read_uncommitted"],
    );
    assert_eq!(all.trim(), "c1 c2 a1 c3 open");
}
