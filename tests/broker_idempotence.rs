//! Idempotent producers (KIP-98, KIP-360) against a real broker: retries
//! stored once, sequence gaps and stale epochs refused, producer ids unique
//! across restarts, deduplication intact after SIGKILL and after the
//! producer-state snapshot is lost, and real clients (rdkafka with
//! enable.idempotence, kafka-python 3.x with its defaults).

mod common;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::clients::{
    assert_all_delivered, assign, consume, consumer, create_topic, flush, producer, send,
};
use common::python::{python_with, run_script};
use common::raw::{self, error_code, RawClient, PRODUCE_VERSION_MAX};
use common::{unique_topic, wait_until, Broker};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    DescribeProducersRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;
use ringlog::client::{BatchBuilder, BatchOptions, Connection};
use ringlog::storage::batch::BatchIter;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const INIT_PRODUCER_ID_VERSION_MAX: i16 = 5;
/// Records in each batch the raw producer sends.
const RECORDS_PER_BATCH: i32 = 10;
/// How long a wait for the broker or a client may take.
const WAIT_MAX: Duration = Duration::from_secs(30);

/// (producer id, epoch) from InitProducerId; `current` asks for a KIP-360 bump.
fn init_producer_id(client: &mut RawClient, current: Option<(i64, i16)>) -> (i64, i16) {
    let (id, epoch) = current.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let response = client.call_negotiated(&request, INIT_PRODUCER_ID_VERSION_MAX);
    assert_eq!(response.error_code, error_code::NONE, "InitProducerId");
    (response.producer_id.0, response.producer_epoch)
}

/// A batch of `RECORDS_PER_BATCH` records with values `s<sequence>-<i>`.
fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    let options = BatchOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, RECORDS_PER_BATCH as usize);
    for i in 0..RECORDS_PER_BATCH {
        let value = format!("s{base_sequence}-{i}");
        builder.push(None, Some(Bytes::from(value)), raw::now_ms());
    }
    builder.encode().unwrap_or_else(|error| panic!("{error}"))
}

/// (error code, base offset) of one acks=-1 produce of `batch`.
fn produce(client: &mut RawClient, topic: &str, batch: Bytes) -> (i16, i64) {
    let request = raw::produce_request(topic, 0, -1, batch);
    let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
    let answer = raw::single_produce_partition(&response);
    (answer.error_code, answer.base_offset)
}

/// The base sequence of every batch in partition 0, in offset order.
fn stored_sequences(client: &mut RawClient, topic: &str) -> Vec<(i64, i16, i32)> {
    let mut batches = Vec::new();
    let mut offset = 0;
    loop {
        let data = raw::fetch(client, topic, 0, offset);
        assert_eq!(data.error_code, error_code::NONE, "fetch at {offset}");
        let records = data.records.unwrap_or_default();
        if records.is_empty() {
            return batches;
        }
        for item in BatchIter::new(&records) {
            let (header, _) = item.unwrap_or_else(|error| panic!("fetched batch: {error}"));
            batches.push((
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
            ));
            offset = header.last_offset() + 1;
        }
    }
}

fn partition_dir(broker: &Broker, topic: &str) -> PathBuf {
    broker.data_dir().join(format!("{topic}-0"))
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "snapshot"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_retried_batch_is_stored_once_and_gaps_and_stale_epochs_are_refused() {
    let broker = Broker::start();
    let topic = unique_topic("idempotent-raw");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (id, epoch) = init_producer_id(&mut client, None);
    assert!(
        id >= 0 && epoch == 0,
        "a fresh producer id at epoch 0: {id}/{epoch}"
    );

    let first = idempotent_batch(id, 0, 0);
    assert_eq!(
        produce(&mut client, &topic, first.clone()),
        (error_code::NONE, 0)
    );
    // The retry is answered with the original offset and not stored again.
    assert_eq!(produce(&mut client, &topic, first), (error_code::NONE, 0));
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 0, 10)),
        (error_code::NONE, 10)
    );
    let (code, _) = produce(&mut client, &topic, idempotent_batch(id, 0, 30));
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER, "a gap in the sequence");

    // KIP-360: the same id at the next epoch; the old epoch is fenced.
    let bumped = init_producer_id(&mut client, Some((id, epoch)));
    assert_eq!(bumped, (id, 1));
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 1, 0)),
        (error_code::NONE, 20)
    );
    let (code, _) = produce(&mut client, &topic, idempotent_batch(id, 0, 20));
    assert_eq!(code, INVALID_PRODUCER_EPOCH, "a batch of the older epoch");

    let (code, _) = produce(&mut client, &topic, idempotent_batch(id + 500_000, 0, 40));
    assert_eq!(
        code, UNKNOWN_PRODUCER_ID,
        "a producer the partition never saw, past sequence 0"
    );

    assert_eq!(
        stored_sequences(&mut client, &topic),
        vec![(id, 0, 0), (id, 0, 10), (id, 1, 0)],
        "each accepted batch once"
    );
    assert_eq!(
        describe_producers(&mut client, &topic, &[0, 1]),
        vec![
            (error_code::NONE, vec![(id, 1, RECORDS_PER_BATCH - 1)]),
            (error_code::UNKNOWN_TOPIC_OR_PARTITION, vec![]),
        ],
        "DescribeProducers: the producer at its new epoch and last sequence"
    );
}

/// (producer id, epoch, last sequence) as DescribeProducers reports one.
type Described = (i64, i32, i32);

/// Per requested partition of `topic`: its error code and producers.
/// A producer's pipelined batches reach each partition in the order they
/// were sent, also while the partition opens on first use and while its
/// first append clears the clean-shutdown mark: both wait on the disk while
/// later requests arrive, and a later batch that overtook an earlier one
/// would be refused as OUT_OF_ORDER_SEQUENCE_NUMBER.
#[test]
fn pipelined_batches_keep_their_order_while_their_partitions_open() {
    const PARTITIONS: i32 = 8;
    const BATCHES_PER_PARTITION: i32 = 12;
    const ROUNDS: usize = 8;
    let broker = Broker::start();
    for round in 0..ROUNDS {
        let topic = unique_topic("idempotent-pipelined");
        create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
        let mut client = RawClient::connect_negotiated(broker.addr());
        let (id, epoch) = init_producer_id(&mut client, None);
        let version = client.version_of::<ProduceRequest>(PRODUCE_VERSION_MAX);
        let mut sent = Vec::new();
        for n in 0..BATCHES_PER_PARTITION {
            for partition in 0..PARTITIONS {
                let batch = idempotent_batch(id, epoch, n * RECORDS_PER_BATCH);
                let request = raw::produce_request(&topic, partition, -1, batch);
                let (correlation_id, frame) = client.frame(&request, version);
                client
                    .write_raw(&frame)
                    .unwrap_or_else(|error| panic!("sending a produce: {error}"));
                sent.push((correlation_id, partition, n));
            }
            // Later requests arrive in later reads, some while partitions open.
            thread::sleep(Duration::from_micros(300));
        }
        for (correlation_id, partition, n) in sent {
            let response = client.receive::<ProduceRequest>(correlation_id, version);
            let answer = raw::single_produce_partition(&response);
            assert_eq!(
                (answer.error_code, answer.base_offset),
                (error_code::NONE, i64::from(n * RECORDS_PER_BATCH)),
                "round {round}, partition {partition}, batch {n}: stored in the order sent"
            );
        }
    }
}

fn describe_producers(
    client: &mut RawClient,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i16, Vec<Described>)> {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_indexes(partitions.to_vec())]);
    let response = client.call_negotiated(&request, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let producers = p
                .active_producers
                .iter()
                .map(|s| (s.producer_id.0, s.producer_epoch, s.last_sequence))
                .collect();
            (p.error_code, producers)
        })
        .collect()
}

#[test]
fn producer_ids_are_never_given_twice_even_after_sigkill() {
    let mut broker = Broker::start();
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (a, _) = init_producer_id(&mut client, None);
    let (b, _) = init_producer_id(&mut client, None);
    assert_ne!(a, b);
    broker.kill9();
    broker.start_again();
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (c, _) = init_producer_id(&mut client, None);
    assert!(
        c > a.max(b),
        "an id after a restart is new: {c} after {a}, {b}"
    );
    broker.restart();
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (d, _) = init_producer_id(&mut client, None);
    assert!(d > c, "an id after a clean restart is new: {d} after {c}");
}

#[test]
fn an_expired_producer_must_start_again_at_sequence_zero() {
    let broker = Broker::builder()
        .arg("--producer-id-expiration-ms")
        .arg("500")
        .arg("--retention-check-interval-ms")
        .arg("50")
        .start();
    let topic = unique_topic("idempotent-expiry");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (id, _) = init_producer_id(&mut client, None);
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 0, 0)),
        (error_code::NONE, 0)
    );
    // Sequence 20 after 0..=9 is a gap while the producer is known.
    let mut code = OUT_OF_ORDER_SEQUENCE_NUMBER;
    let answered = wait_until(WAIT_MAX, || {
        thread::sleep(Duration::from_millis(100));
        code = produce(&mut client, &topic, idempotent_batch(id, 0, 20)).0;
        code != OUT_OF_ORDER_SEQUENCE_NUMBER
    });
    assert!(answered, "the producer never expired");
    assert_eq!(
        code, UNKNOWN_PRODUCER_ID,
        "an expired producer past sequence 0"
    );
    // Starting again at 0 is a new batch, not a duplicate of the first.
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 0, 0)),
        (error_code::NONE, 10)
    );
}

/// Sends batches from sequence 0 until the connection fails; returns the
/// acknowledged (sequence, offset) pairs and the sequence that was in flight.
fn produce_until_cut(addr: std::net::SocketAddr, topic: String, id: i64) -> (Vec<(i32, i64)>, i32) {
    let mut connection =
        Connection::connect_timeout(addr, Duration::from_secs(5), "idempotent-load")
            .unwrap_or_else(|error| panic!("{error}"));
    connection
        .negotiate()
        .unwrap_or_else(|error| panic!("{error}"));
    let version = connection
        .versions()
        .pick::<ProduceRequest>((3, PRODUCE_VERSION_MAX))
        .unwrap_or_else(|error| panic!("{error}"));
    let mut acked = Vec::new();
    let mut sequence = 0;
    loop {
        let request = raw::produce_request(&topic, 0, -1, idempotent_batch(id, 0, sequence));
        let Ok(response) = connection.call(&request, version) else {
            return (acked, sequence);
        };
        let answer = raw::single_produce_partition(&response);
        assert_eq!(answer.error_code, error_code::NONE, "sequence {sequence}");
        acked.push((sequence, answer.base_offset));
        sequence += RECORDS_PER_BATCH;
    }
}

#[test]
fn after_sigkill_under_load_the_same_producer_continues_without_duplicates() {
    let mut broker = Broker::start();
    let topic = unique_topic("idempotent-kill");
    create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[("segment.bytes", "20000")],
    );
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (id, _) = init_producer_id(&mut client, None);
    drop(client);
    let load = {
        let (addr, topic) = (broker.addr(), topic.clone());
        thread::spawn(move || produce_until_cut(addr, topic, id))
    };
    let dir = partition_dir(&broker, &topic);
    assert!(
        wait_until(WAIT_MAX, || snapshots(&dir).len() >= 3),
        "segments rolled (and snapshots were written) under load"
    );
    broker.kill9();
    let (acked, in_flight) = load
        .join()
        .unwrap_or_else(|_| panic!("the load thread panicked"));
    broker.start_again();

    let mut client = RawClient::connect_negotiated(broker.addr());
    // The batch in flight at the kill is sent again: stored once whatever happened to it.
    let (code, _) = produce(&mut client, &topic, idempotent_batch(id, 0, in_flight));
    assert_eq!(code, error_code::NONE, "the in-flight batch again");
    let &(last_acked, last_offset) = acked
        .last()
        .unwrap_or_else(|| panic!("nothing acknowledged"));
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 0, last_acked)),
        (error_code::NONE, last_offset),
        "a retry of the last acknowledged batch keeps its offset"
    );
    let next = in_flight + RECORDS_PER_BATCH;
    assert_eq!(
        produce(&mut client, &topic, idempotent_batch(id, 0, next)).0,
        error_code::NONE
    );

    let stored: Vec<i32> = stored_sequences(&mut client, &topic)
        .into_iter()
        .map(|(_, _, s)| s)
        .collect();
    let expected: Vec<i32> = (0..=next / RECORDS_PER_BATCH)
        .map(|n| n * RECORDS_PER_BATCH)
        .collect();
    assert_eq!(stored, expected, "every sequence exactly once, in order");
}

#[test]
fn a_deleted_or_corrupt_snapshot_is_rebuilt_from_the_log_with_the_same_deduplication() {
    let mut broker = Broker::start();
    let topic = unique_topic("idempotent-snapshot");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (id, _) = init_producer_id(&mut client, None);
    let offsets: Vec<i64> = (0..5)
        .map(|n| {
            let (code, offset) = produce(
                &mut client,
                &topic,
                idempotent_batch(id, 0, n * RECORDS_PER_BATCH),
            );
            assert_eq!(code, error_code::NONE);
            offset
        })
        .collect();
    drop(client);
    let dir = partition_dir(&broker, &topic);
    for damage in ["corrupt", "delete"] {
        broker.restart();
        let mut client = RawClient::connect_negotiated(broker.addr());
        assert_eq!(
            produce(
                &mut client,
                &topic,
                idempotent_batch(id, 0, 4 * RECORDS_PER_BATCH)
            ),
            (error_code::NONE, offsets[4]),
            "the snapshot of a clean stop keeps the last batch"
        );
        // An earlier one was stored too, but its offsets are not known:
        // DUPLICATE_SEQUENCE_NUMBER, which clients take as delivered.
        let (code, _) = produce(
            &mut client,
            &topic,
            idempotent_batch(id, 0, RECORDS_PER_BATCH),
        );
        assert_eq!(
            code, DUPLICATE_SEQUENCE_NUMBER,
            "batch 1 after a clean restart"
        );
        drop(client);
        broker.stop();
        let found = snapshots(&dir);
        assert!(!found.is_empty(), "a clean stop writes a snapshot");
        for path in found {
            if damage == "corrupt" {
                let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
            } else {
                std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        broker.start_again();
        let mut client = RawClient::connect_negotiated(broker.addr());
        // Rebuilt from the log, the state holds all five batches again.
        for n in [1, 3] {
            assert_eq!(
                produce(
                    &mut client,
                    &topic,
                    idempotent_batch(id, 0, n * RECORDS_PER_BATCH)
                ),
                (error_code::NONE, offsets[n as usize]),
                "batch {n} after the snapshot was {damage}d"
            );
        }
        assert_eq!(
            stored_sequences(&mut client, &topic).len(),
            5,
            "nothing stored twice"
        );
    }
}

#[test]
fn rdkafka_with_enable_idempotence_produces_and_reads_back() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("idempotent-rdkafka");
    create_topic(&bootstrap, &topic, 2, &[]);
    let (producer, log) = producer(&bootstrap, &[("enable.idempotence", "true")]);
    let count: i32 = 2_000;
    for i in 0..count {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(&b"k"[..])
                .payload(value.as_bytes())
                .partition(i % 2),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, count as usize);
    let consumer = consumer(&bootstrap, &[]);
    assign(&consumer, &topic, &[0, 1], Offset::Beginning);
    consume(&consumer, count as usize, WAIT_MAX).expect_count(count as usize);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let stored = stored_sequences(&mut client, &topic);
    assert!(
        !stored.is_empty()
            && stored
                .iter()
                .all(|(id, _, sequence)| *id >= 0 && *sequence >= 0),
        "rdkafka's batches carry a producer id and sequences: {stored:?}"
    );
}

const KAFKA_PYTHON_DEFAULT_PRODUCER: &str = r#"
import sys
from kafka import KafkaConsumer, KafkaProducer
bootstrap, topic = sys.argv[1], sys.argv[2]
producer = KafkaProducer(bootstrap_servers=bootstrap)
for i in range(100):
    producer.send(topic, key=b"k", value=("value-%d" % i).encode())
producer.flush(30)
producer.close()
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         consumer_timeout_ms=10000)
values = []
for message in consumer:
    values.append(message.value.decode())
    if len(values) == 100:
        break
consumer.close()
print(len(values), values[0], values[-1])
"#;

#[test]
fn kafka_python_with_default_settings_writes_and_reads_back() {
    let test = "kafka_python_with_default_settings_writes_and_reads_back";
    let Some(python) = python_with(test, &["kafka"]) else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("idempotent-kafka-python");
    create_topic(&bootstrap, &topic, 1, &[]);
    let output = run_script(
        &python,
        KAFKA_PYTHON_DEFAULT_PRODUCER,
        &[&bootstrap, &topic],
    );
    assert_eq!(output.trim(), "100 value-0 value-99");
    let mut client = RawClient::connect_negotiated(broker.addr());
    let stored = stored_sequences(&mut client, &topic);
    assert!(
        stored
            .iter()
            .all(|(id, _, sequence)| *id >= 0 && *sequence >= 0),
        "kafka-python's default producer is idempotent: {stored:?}"
    );
}
