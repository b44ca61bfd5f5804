//! Compacted topics against a real broker: `cleanup.policy` and the
//! compaction settings through the admin APIs, and produce refusing records
//! without a key (rdkafka and the raw protocol).

mod common;

use bytes::Bytes;
use common::clients::{admin, admin_options, block_on, create_topic, flush, producer, send};
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
use rdkafka::admin::{ConfigSource, ResourceSpecifier};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;
use ringlog::client::{BatchBuilder, BatchOptions};

/// Kafka's resource type for topics in config requests.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (KIP-339).
const OP_SET: i8 = 0;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The topic's described configs as (name, value, source).
fn described(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>, ConfigSource)> {
    let results = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()),
    )
    .unwrap_or_else(|error| panic!("DescribeConfigs {topic}: {error}"));
    let resource = results
        .into_iter()
        .next()
        .expect("one result")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic} answered {code:?}"));
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
