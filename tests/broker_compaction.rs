//! Compacted topics against a real broker: `cleanup.policy` and the
//! compaction settings through the admin APIs, produce refusing records
//! without a key (rdkafka and the raw protocol), the cleaner end to end
//! with rdkafka, switching policies, and SIGKILL in the middle of a cleaning.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::clients::{
    assign, consumer, create_topic, describe_topic, flush, producer, send, watermarks,
};
use common::raw::{
    error_code, now_ms, produce, produce_request, single_produce_partition, RawClient,
    PRODUCE_VERSION_MAX,
};
use common::{unique_topic, Broker};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::admin::ConfigSource;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;
use ringlog::client::{BatchBuilder, BatchOptions};

/// Kafka's resource type for topics in config requests.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (KIP-339).
const OP_SET: i8 = 0;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The topic's described configs as (name, value, source).
fn described(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>, ConfigSource)> {
    let resource = describe_topic(bootstrap, topic);
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, e.value, e.source))
        .collect()
}

fn described_value(bootstrap: &str, topic: &str, name: &str) -> (Option<String>, ConfigSource) {
    described(bootstrap, topic)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, value, source)| (value, source))
        .unwrap_or_else(|| panic!("{name} is not described"))
}

/// One IncrementalAlterConfigs operation on the topic; returns the error code.
fn alter(broker: &Broker, topic: &str, name: &'static str, op: i8, value: &'static str) -> i16 {
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(name))
                .with_config_operation(op)
                .with_value(Some(StrBytes::from_static_str(value)))]),
    ]);
    raw.call_negotiated(&request, 1).responses[0].error_code
}

#[test]
fn compaction_settings_are_described_with_kafka_defaults_and_their_sources() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-describe");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let configs = described(&bootstrap, &topic);
    let find = |name: &str| {
        configs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, s)| (v.clone(), format!("{s:?}")))
            .unwrap_or_else(|| panic!("{name} is not described"))
    };
    assert_eq!(
        find("cleanup.policy"),
        (
            Some("compact".into()),
            format!("{:?}", ConfigSource::DynamicTopic)
        )
    );
    assert_eq!(
        find("min.cleanable.dirty.ratio"),
        (
            Some("0.01".into()),
            format!("{:?}", ConfigSource::DynamicTopic)
        )
    );
    for (name, default) in [
        ("delete.retention.ms", "86400000"),
        ("min.compaction.lag.ms", "0"),
        ("max.compaction.lag.ms", "9223372036854775807"),
    ] {
        assert_eq!(
            find(name),
            (Some(default.into()), format!("{:?}", ConfigSource::Default)),
            "{name}"
        );
    }
}

#[test]
fn cleanup_policy_switches_between_delete_and_compact_by_alter_configs() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-switch");
    create_topic(&bootstrap, &topic, 1, &[]);
    let policy = || described_value(&bootstrap, &topic, "cleanup.policy").0;
    assert_eq!(policy().as_deref(), Some("delete"));

    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_SET, "compact"),
        error_code::NONE
    );
    assert_eq!(policy().as_deref(), Some("compact"));
    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_APPEND, "delete"),
        error_code::NONE
    );
    assert_eq!(policy().as_deref(), Some("compact,delete"));
    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_SUBTRACT, "compact"),
        error_code::NONE
    );
    assert_eq!(policy().as_deref(), Some("delete"));
    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_SET, "shred"),
        error_code::INVALID_CONFIG
    );
    assert_eq!(
        alter(&broker, &topic, "retention.ms", OP_APPEND, "5"),
        error_code::INVALID_CONFIG,
        "APPEND needs a list-valued config"
    );
    assert_eq!(policy().as_deref(), Some("delete"));
}

#[test]
fn rdkafka_producer_gets_invalid_record_for_a_null_key_on_a_compacted_topic() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-null-key");
    create_topic(&bootstrap, &topic, 1, &[("cleanup.policy", "compact")]);
    let (producer, log) = producer(&bootstrap, &[("linger.ms", "0")]);
    send(
        &producer,
        BaseRecord::<[u8], [u8]>::to(&topic).payload(b"keyless".as_slice()),
    );
    flush(&producer);
    let failures = log.failures();
    assert_eq!(failures.len(), 1, "the keyless record fails: {failures:?}");
    assert!(
        matches!(
            failures[0].1,
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
        ),
        "{:?}",
        failures[0].1
    );
    send(
        &producer,
        BaseRecord::to(&topic)
            .key(b"k".as_slice())
            .payload(b"v".as_slice()),
    );
    flush(&producer);
    assert_eq!(log.delivered_count(), 1, "a keyed record is stored");
    assert_eq!(log.delivered()[0].offset, 0, "nothing of the refused batch");
}

#[test]
fn a_compressed_batch_with_one_keyless_record_is_refused_whole() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-null-key-raw");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[("cleanup.policy", "compact,delete")],
    );
    let mut raw = RawClient::connect_negotiated(broker.addr());
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let mut builder = BatchBuilder::new(BatchOptions {
            compression,
            ..BatchOptions::default()
        });
        builder.push(
            Some(Bytes::from_static(b"a")),
            Some(Bytes::from_static(b"1")),
            now_ms(),
        );
        builder.push(None, Some(Bytes::from_static(b"2")), now_ms());
        let batch = builder.encode().expect("encodes");
        let response =
            raw.call_negotiated(&produce_request(&topic, 0, -1, batch), PRODUCE_VERSION_MAX);
        assert_eq!(
            single_produce_partition(&response).error_code,
            error_code::INVALID_RECORD,
            "{compression:?}"
        );
    }
    let stored = produce(&mut raw, &topic, 0, &[(b"a", b"1")]);
    assert_eq!(stored.error_code, error_code::NONE);
    assert_eq!(stored.base_offset, 0, "refused batches stored nothing");

    // A topic that does not compact takes keyless records.
    let plain = unique_topic("delete-null-key-raw");
    create_topic(&bootstrap, &plain, 1, &[]);
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder.push(None, Some(Bytes::from_static(b"x")), now_ms());
    let response = raw.call_negotiated(
        &produce_request(&plain, 0, -1, builder.encode().expect("encodes")),
        PRODUCE_VERSION_MAX,
    );
    assert_eq!(
        single_produce_partition(&response).error_code,
        error_code::NONE
    );
}

/// How long the cleaner may take to bring a log to the expected state.
const CLEANED_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one read of a whole partition may take.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Small segments, so most of the log is sealed and cleanable.
const SEGMENT_BYTES: &str = "16384";

/// A broker whose cleaner looks for work every 100 ms.
fn cleaning_broker() -> common::BrokerBuilder {
    Broker::builder()
        .arg("--log-cleaner-backoff-ms")
        .arg("100")
        .arg("--retention-check-interval-ms")
        .arg("100")
}

/// Every message of partition 0 from the beginning up to the high watermark.
fn read_all(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    let (_, high) = watermarks(bootstrap, topic, 0);
    let consumer = consumer(bootstrap, &[]);
    assign(&consumer, topic, &[0], Offset::Beginning);
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut messages: Vec<OwnedMessage> = Vec::new();
    while messages.last().is_none_or(|m| m.offset() + 1 < high) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} up to {high} timed out at {:?}",
            messages.last().map(|m| m.offset())
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.detach());
        }
    }
    messages
}

fn key_of(message: &OwnedMessage) -> String {
    String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned()
}

/// The last message of each key, with how many messages each key has.
fn by_key(messages: &[OwnedMessage]) -> BTreeMap<String, (usize, Option<Vec<u8>>)> {
    let mut keys: BTreeMap<String, (usize, Option<Vec<u8>>)> = BTreeMap::new();
    for m in messages {
        let entry = keys.entry(key_of(m)).or_default();
        entry.0 += 1;
        entry.1 = m.payload().map(<[u8]>::to_vec);
    }
    keys
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Produces `(key, value)` pairs (value `None`: a tombstone) with acks=all.
fn produce_all(bootstrap: &str, topic: &str, records: &[(String, Option<Vec<u8>>)]) {
    let (producer, log) = producer(bootstrap, &[]);
    for (key, value) in records {
        let record = BaseRecord::to(topic).key(key.as_bytes());
        let record = match value {
            Some(v) => record.payload(v.as_slice()),
            None => record,
        };
        send(&producer, record);
    }
    flush(&producer);
    assert!(log.failures().is_empty(), "{:?}", log.failures().first());
    assert_eq!(log.delivered_count(), records.len());
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(90)).into_bytes()
}

/// Filler records under their own key: they push what came before out of
/// the active segment, which the cleaner never touches.
fn filler(count: usize) -> Vec<(String, Option<Vec<u8>>)> {
    (0..count)
        .map(|_| ("filler".to_string(), Some(vec![b'f'; 1024])))
        .collect()
}

#[test]
fn the_cleaner_keeps_one_latest_value_per_key_and_drops_deleted_keys() {
    let broker = cleaning_broker().start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-e2e");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", SEGMENT_BYTES),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "2000"),
        ],
    );
    let keys = 100;
    let updates: Vec<_> = (0..10_000)
        .map(|i| (format!("key-{:03}", i % keys), Some(value(i))))
        .collect();
    let produced_bytes: u64 = updates
        .iter()
        .map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
        .sum();
    produce_all(&bootstrap, &topic, &updates);
    let deleted: Vec<String> = (0..10).map(|k| format!("key-{k:03}")).collect();
    let tombstones: Vec<_> = deleted.iter().map(|k| (k.clone(), None)).collect();
    produce_all(&bootstrap, &topic, &tombstones);
    produce_all(&bootstrap, &topic, &filler(40));
    let dir = broker.data_dir().join(format!("{topic}-0"));

    let expected = |key: &str| -> Option<Vec<u8>> {
        let k: usize = key.trim_start_matches("key-").parse().ok()?;
        (k >= 10).then(|| value(10_000 - keys + k))
    };
    let deadline = Instant::now() + CLEANED_TIMEOUT;
    loop {
        // More filler after delete.retention.ms, so the tombstones are
        // cleaned a second time, past their retention.
        std::thread::sleep(Duration::from_millis(500));
        let messages = read_all(&bootstrap, &topic);
        assert!(
            messages.windows(2).all(|w| w[0].offset() < w[1].offset()),
            "offsets increase"
        );
        let seen = by_key(&messages);
        let done = (0..keys)
            .map(|k| format!("key-{k:03}"))
            .all(|key| match expected(&key) {
                Some(v) => seen.get(&key) == Some(&(1, Some(v))),
                None => !seen.contains_key(&key),
            });
        if done {
            let after = log_bytes(&dir);
            assert!(
                after * 4 < produced_bytes,
                "data shrank: {after} bytes of log for {produced_bytes} produced"
            );
            assert!(
                broker.log().contains("cleaned partition log"),
                "one log line per cleaning"
            );
            break;
        }
        // Every live key's latest value is always there, cleaned or not.
        for key in (10..keys).map(|k| format!("key-{k:03}")) {
            assert_eq!(
                seen.get(&key).map(|(_, v)| v.clone()),
                Some(expected(&key)),
                "{key}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "not compacted in time: {:?}",
            seen.iter()
                .filter(|(k, _)| k.as_str() != "filler")
                .map(|(k, (n, _))| (k.clone(), *n))
                .filter(|(_, n)| *n != 1)
                .take(10)
                .collect::<Vec<_>>()
        );
        produce_all(&bootstrap, &topic, &filler(20));
    }
}

#[test]
fn a_topic_switches_from_delete_to_compact_and_back() {
    let broker = cleaning_broker().start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-switch-e2e");
    create_topic(&bootstrap, &topic, 1, &[("segment.bytes", SEGMENT_BYTES)]);
    let updates: Vec<_> = (0..2000)
        .map(|i| (format!("key-{}", i % 10), Some(value(i))))
        .collect();
    produce_all(&bootstrap, &topic, &updates);
    produce_all(&bootstrap, &topic, &filler(40));
    let total = read_all(&bootstrap, &topic).len();
    assert_eq!(total, 2040, "a delete topic keeps every record");

    assert_eq!(
        alter(&broker, &topic, "min.cleanable.dirty.ratio", OP_SET, "0.01"),
        error_code::NONE
    );
    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_SET, "compact"),
        error_code::NONE
    );
    let deadline = Instant::now() + CLEANED_TIMEOUT;
    loop {
        let seen = by_key(&read_all(&bootstrap, &topic));
        let compacted =
            (0..10).all(|k| seen.get(&format!("key-{k}")) == Some(&(1, Some(value(1990 + k)))));
        if compacted {
            break;
        }
        assert!(Instant::now() < deadline, "not compacted after the switch");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let mut keyless = BatchBuilder::new(BatchOptions::default());
    keyless.push(None, Some(Bytes::from_static(b"x")), now_ms());
    let batch = keyless.encode().expect("encodes");
    let answer = raw.call_negotiated(
        &produce_request(&topic, 0, -1, batch.clone()),
        PRODUCE_VERSION_MAX,
    );
    assert_eq!(
        single_produce_partition(&answer).error_code,
        error_code::INVALID_RECORD
    );

    // Back to delete: keyless records are taken and retention removes segments again.
    assert_eq!(
        alter(&broker, &topic, "cleanup.policy", OP_SET, "delete"),
        error_code::NONE
    );
    let answer = raw.call_negotiated(&produce_request(&topic, 0, -1, batch), PRODUCE_VERSION_MAX);
    assert_eq!(
        single_produce_partition(&answer).error_code,
        error_code::NONE
    );
    assert_eq!(
        alter(&broker, &topic, "retention.bytes", OP_SET, "1"),
        error_code::NONE
    );
    let gone = common::wait_until(CLEANED_TIMEOUT, || watermarks(&bootstrap, &topic, 0).0 > 0);
    assert!(
        gone,
        "retention removes segments once the topic deletes again"
    );
}

/// The cleaner's steps in a swap, as its debug pause logs them.
const CLEANER_STEPS: [&str; 3] = ["cleaned", "swap", "installed"];

#[test]
fn sigkill_at_each_step_of_a_cleaning_loses_no_latest_value() {
    let mut broker = cleaning_broker()
        .env("RINGLOG_CLEANER_PAUSE_MS", "1500")
        .start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("compact-kill");
    // Written while the topic deletes, so the first cleaning starts after
    // all of it is there.
    create_topic(&bootstrap, &topic, 1, &[("segment.bytes", SEGMENT_BYTES)]);
    // 300 keys written once, then 2000 updates of the first 30: the first
    // segments keep most of their records and are rebuilt (each rebuild
    // passes every step), the later ones empty out.
    let mut records: Vec<_> = (0..300)
        .map(|i| (format!("key-{i:03}"), Some(value(i))))
        .collect();
    records.extend((0..2000).map(|j| (format!("key-{:03}", j % 30), Some(value(300 + j)))));
    let latest: BTreeMap<String, Option<Vec<u8>>> = records.iter().cloned().collect();
    // Rounds of a few records, so that segments roll between them.
    for round in records.chunks(40) {
        produce_all(&bootstrap, &topic, round);
    }
    produce_all(&bootstrap, &topic, &filler(40));
    let marker = |step: &str| format!("step=\"{step}\"");
    let mut seen_before: Vec<usize> = CLEANER_STEPS
        .iter()
        .map(|s| broker.log().matches(&marker(s)).count())
        .collect();
    for (name, value) in [
        ("min.cleanable.dirty.ratio", "0.01"),
        ("cleanup.policy", "compact"),
    ] {
        assert_eq!(
            alter(&broker, &topic, name, OP_SET, value),
            error_code::NONE
        );
    }
    let check = |bootstrap: &str, when: &str| {
        let messages = read_all(bootstrap, &topic);
        assert!(
            messages.windows(2).all(|w| w[0].offset() < w[1].offset()),
            "{when}: offsets increase, no segment twice"
        );
        let seen = by_key(&messages);
        for (key, value) in &latest {
            assert_eq!(
                seen.get(key).map(|(_, v)| v),
                Some(value),
                "{when}: latest value of {key}"
            );
        }
    };
    for (i, step) in CLEANER_STEPS.iter().enumerate() {
        let paused = common::wait_until(CLEANED_TIMEOUT, || {
            broker.log().matches(&marker(step)).count() > seen_before[i]
        });
        assert!(paused, "the cleaner reached step {step}");
        broker.kill9();
        seen_before = CLEANER_STEPS
            .iter()
            .map(|s| broker.log().matches(&marker(s)).count())
            .collect();
        broker.start_again();
        // Reading opens the log: what the kill left is finished or discarded first.
        check(&broker.bootstrap(), step);
        let recovered = match *step {
            "cleaned" => Some("discarding an unfinished cleaned segment"),
            "swap" => Some("finishing the swap of a cleaned segment"),
            _ => None,
        };
        if let Some(line) = recovered {
            let log = broker.log();
            let this_start = log.rsplit("=== start").next().unwrap_or_default();
            assert!(
                this_start.contains(line),
                "after a kill at {step}: {line:?} logged"
            );
        }
    }
}

/// A quixstreams application counting messages per key in 10 s tumbling
/// windows. Its window state is changelogged to a compacted topic that
/// quixstreams creates itself; the script checks that topic's policy and
/// prints the counts as JSON.
const QUIXSTREAMS_WINDOWED_COUNT: &str = r#"
import json, sys, tempfile
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from quixstreams import Application

bootstrap, source = sys.argv[1], sys.argv[2]
base = 1_700_000_000_000
counts = {"a": 5, "b": 7, "c": 9}
producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
for key, n in counts.items():
    for i in range(n):
        producer.produce(source, key=key, value=json.dumps({"i": i}), timestamp=base + i)
# A later message per key closes its first window.
for key in counts:
    producer.produce(source, key=key, value=json.dumps({"i": -1}), timestamp=base + 60_000)
assert producer.flush(30) == 0, "input not delivered"

app = Application(
    broker_address=bootstrap,
    consumer_group="windowed-count-" + source,
    auto_offset_reset="earliest",
    state_dir=tempfile.mkdtemp(),
    loglevel="WARNING",
    # Until the broker has idempotent producers (InitProducerId).
    producer_extra_config={"enable.idempotence": False},
)
sdf = app.dataframe(app.topic(source, value_deserializer="json"))
sdf = sdf.tumbling_window(duration_ms=10_000).count().final()
rows = app.run(count=len(counts), timeout=40, metadata=True)

admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
changelogs = [t for t in admin.list_topics(timeout=10).topics if t.startswith("changelog")]
assert changelogs, "quixstreams made no changelog topic"
for name, future in admin.describe_configs([ConfigResource("topic", t) for t in changelogs]).items():
    policy = future.result(timeout=10)["cleanup.policy"].value
    assert "compact" in policy, (name.name, policy)
print(json.dumps({"changelogs": len(changelogs), "counts": {r["_key"].decode() if isinstance(r["_key"], bytes) else r["_key"]: r["value"] for r in rows}}))
"#;

#[test]
fn a_quixstreams_windowed_count_runs_on_its_own_compacted_changelog() {
    let Some(python) = common::python::python_with_quixstreams(
        "a_quixstreams_windowed_count_runs_on_its_own_compacted_changelog",
    ) else {
        return;
    };
    let broker = cleaning_broker().start();
    let bootstrap = broker.bootstrap();
    let source = unique_topic("quix-source");
    create_topic(&bootstrap, &source, 1, &[]);
    let output =
        common::python::run_script(&python, QUIXSTREAMS_WINDOWED_COUNT, &[&bootstrap, &source]);
    let line = output.lines().last().unwrap_or_default();
    let answer: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: quixstreams printed {output}"));
    assert_eq!(
        answer["counts"],
        serde_json::json!({"a": 5, "b": 7, "c": 9}),
        "{output}"
    );
}
