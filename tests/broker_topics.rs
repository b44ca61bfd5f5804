//! Topic administration against a real broker: CreateTopics, DeleteTopics,
//! CreatePartitions, configs, DeleteRecords and cluster description, through
//! librdkafka's admin client and, where it has no call, the raw protocol.

mod common;

use std::time::Duration;

use common::clients::{
    admin, admin_options, assign, block_on, consume, consumer, create_topic, partition_count,
    produce_keyed, topic_names, watermarks, METADATA_TIMEOUT,
};
use common::raw::{error_code, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::messages::alter_configs_request;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterConfigsRequest, DescribeClusterRequest, IncrementalAlterConfigsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(20);
/// Kafka's resource type for topics in config requests.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (KIP-339).
const CONFIG_OPERATION_SET: i8 = 0;
const CONFIG_OPERATION_DELETE: i8 = 1;

/// Describes one topic's configs as (name -> (value, source)).
fn describe_topic_configs(
    bootstrap: &str,
    topic: &str,
) -> Vec<(String, Option<String>, ConfigSource)> {
    let admin = admin(bootstrap);
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .unwrap_or_else(|error| panic!("DescribeConfigs {topic} failed: {error}"));
    assert_eq!(results.len(), 1, "one result per resource");
    let resource = results
        .into_iter()
        .next()
        .expect("length checked")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic} answered {code:?}"));
    resource
        .entries
        .into_iter()
        .map(|entry| (entry.name, entry.value, entry.source))
        .collect()
}

fn config_value(configs: &[(String, Option<String>, ConfigSource)], name: &str) -> Option<String> {
    configs
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| {
            panic!(
                "config {name} is not described; described: {:?}",
                names(configs)
            )
        })
        .1
        .clone()
}

fn config_source<'a>(
    configs: &'a [(String, Option<String>, ConfigSource)],
    name: &str,
) -> &'a ConfigSource {
    &configs
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| {
            panic!(
                "config {name} is not described; described: {:?}",
                names(configs)
            )
        })
        .2
}

fn names(configs: &[(String, Option<String>, ConfigSource)]) -> Vec<&str> {
    configs.iter().map(|(n, _, _)| n.as_str()).collect()
}

/// Creates one topic and returns the broker's per-topic answer.
fn try_create(
    bootstrap: &str,
    topic: &NewTopic<'_>,
    validate_only: bool,
) -> Result<String, (String, RDKafkaErrorCode)> {
    let admin = admin(bootstrap);
    let options = admin_options().validate_only(validate_only);
    let mut results = block_on(admin.create_topics([topic], &options))
        .unwrap_or_else(|error| panic!("CreateTopics request failed: {error}"));
    assert_eq!(results.len(), 1, "one result per topic");
    results.remove(0)
}

#[test]
fn created_topic_is_listed_with_this_broker_as_leader_and_deleted_topic_is_gone() {
    let broker = Broker::start();
    let topic = unique_topic("admin-create");
    create_topic(&broker.bootstrap(), &topic, 3, &[]);

    let consumer = consumer(&broker.bootstrap(), &[]);
    let metadata = consumer
        .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
        .expect("Metadata for the new topic");
    let brokers = metadata.brokers();
    assert_eq!(brokers.len(), 1, "a single broker is listed");
    assert_eq!(brokers[0].id(), 0, "node id");
    assert_eq!(
        brokers[0].port(),
        i32::from(broker.port()),
        "advertised port"
    );
    assert_eq!(brokers[0].host(), "127.0.0.1", "advertised host");
    let listed = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("the new topic is in the metadata");
    assert_eq!(listed.error(), None, "topic error");
    let mut partitions: Vec<i32> = listed.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    assert_eq!(partitions, vec![0, 1, 2], "partition ids");
    for partition in listed.partitions() {
        assert_eq!(
            partition.leader(),
            0,
            "leader of partition {}",
            partition.id()
        );
        assert_eq!(
            partition.replicas(),
            &[0],
            "replicas of partition {}",
            partition.id()
        );
        assert_eq!(
            partition.isr(),
            &[0],
            "in-sync replicas of partition {}",
            partition.id()
        );
        assert_eq!(
            partition.error(),
            None,
            "error of partition {}",
            partition.id()
        );
    }

    let admin = admin(&broker.bootstrap());
    let results =
        block_on(admin.delete_topics(&[&topic], &admin_options())).expect("DeleteTopics request");
    assert_eq!(results, vec![Ok(topic.clone())], "DeleteTopics result");
    assert!(
        !topic_names(&broker.bootstrap()).contains(&topic),
        "a deleted topic is not listed"
    );
    let again =
        block_on(admin.delete_topics(&[&topic], &admin_options())).expect("DeleteTopics request");
    assert_eq!(
        again,
        vec![Err((
            topic.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "deleting a deleted topic"
    );
}

#[test]
fn deleted_topic_can_be_created_again_empty() {
    let broker = Broker::start();
    let topic = unique_topic("admin-recreate");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    produce_keyed(&broker.bootstrap(), &topic, 10, 2);
    let admin = admin(&broker.bootstrap());
    let results =
        block_on(admin.delete_topics(&[&topic], &admin_options())).expect("DeleteTopics request");
    assert_eq!(results, vec![Ok(topic.clone())], "DeleteTopics result");

    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    assert_eq!(
        watermarks(&broker.bootstrap(), &topic, 0),
        (0, 0),
        "a re-created topic is empty"
    );
    let consumer = consumer(&broker.bootstrap(), &[]);
    assert_eq!(
        partition_count(&consumer, &topic),
        Some(2),
        "partition count of the new topic"
    );
}

#[test]
fn validate_only_create_checks_but_does_not_create_the_topic() {
    let broker = Broker::start();
    let topic = unique_topic("admin-validate");
    let valid = NewTopic::new(&topic, 2, TopicReplication::Fixed(1));
    assert_eq!(
        try_create(&broker.bootstrap(), &valid, true),
        Ok(topic.clone())
    );
    assert!(
        !topic_names(&broker.bootstrap()).contains(&topic),
        "validate_only must not create the topic"
    );

    let invalid = NewTopic::new(&topic, 0, TopicReplication::Fixed(1));
    assert_eq!(
        try_create(&broker.bootstrap(), &invalid, true),
        Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions)),
        "validate_only still validates"
    );
    // The name is still free.
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
}

#[test]
fn topic_configs_given_at_creation_are_described() {
    let broker = Broker::start();
    let topic = unique_topic("admin-configs");
    create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[
            ("retention.ms", "123456789"),
            ("retention.bytes", "987654321"),
        ],
    );
    let configs = describe_topic_configs(&broker.bootstrap(), &topic);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("123456789")
    );
    assert_eq!(
        config_value(&configs, "retention.bytes").as_deref(),
        Some("987654321")
    );
    assert_eq!(
        config_source(&configs, "retention.ms"),
        &ConfigSource::DynamicTopic
    );
    // A key that was not set is described with its default.
    assert!(
        configs.iter().any(|(n, _, source)| n == "max.message.bytes" && *source != ConfigSource::DynamicTopic),
        "max.message.bytes is described as a default; described: {:?}",
        names(&configs)
    );
}

#[test]
fn duplicate_topic_is_refused_with_topic_already_exists() {
    let broker = Broker::start();
    let topic = unique_topic("admin-duplicate");
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    let again = NewTopic::new(&topic, 5, TopicReplication::Fixed(1));
    assert_eq!(
        try_create(&broker.bootstrap(), &again, false),
        Err((topic.clone(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    let consumer = consumer(&broker.bootstrap(), &[]);
    assert_eq!(
        partition_count(&consumer, &topic),
        Some(2),
        "the first topic is unchanged"
    );
}

#[test]
fn invalid_create_requests_get_their_kafka_error_codes() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let zero = unique_topic("admin-zero-partitions");
    let replicated = unique_topic("admin-replicated");
    let bad_config = unique_topic("admin-bad-config");
    let cases = [
        (
            NewTopic::new(&zero, 0, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidPartitions,
        ),
        (
            NewTopic::new(&replicated, 1, TopicReplication::Fixed(3)),
            RDKafkaErrorCode::InvalidReplicationFactor,
        ),
        (
            NewTopic::new(&bad_config, 1, TopicReplication::Fixed(1))
                .set("retention.ms", "not-a-number"),
            RDKafkaErrorCode::InvalidConfig,
        ),
        (
            NewTopic::new("bad/topic name", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
        (
            NewTopic::new("..", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
    ];
    for (topic, expected) in &cases {
        assert_eq!(
            try_create(&bootstrap, topic, false),
            Err((topic.name.to_string(), *expected)),
            "creating {topic:?}"
        );
    }
    let listed = topic_names(&bootstrap);
    for (topic, _) in &cases {
        assert!(
            !listed.contains(&topic.name.to_string()),
            "{} must not exist",
            topic.name
        );
    }
    // A valid request still works afterwards.
    create_topic(&bootstrap, &unique_topic("admin-after-errors"), 1, &[]);
}

#[test]
fn create_partitions_grows_a_topic_and_refuses_to_shrink_it() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-grow");
    create_topic(&bootstrap, &topic, 1, &[]);
    let admin = admin(&bootstrap);

    let grow = NewPartitions::new(&topic, 3);
    let results = block_on(admin.create_partitions([&grow], &admin_options()))
        .expect("CreatePartitions request");
    assert_eq!(results, vec![Ok(topic.clone())], "growing to 3 partitions");
    let consumer = consumer(&bootstrap, &[]);
    assert_eq!(
        partition_count(&consumer, &topic),
        Some(3),
        "partition count after growing"
    );

    let shrink = NewPartitions::new(&topic, 2);
    let results = block_on(admin.create_partitions([&shrink], &admin_options()))
        .expect("CreatePartitions request");
    assert_eq!(
        results,
        vec![Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions))],
        "shrinking is refused"
    );
    let unknown = unique_topic("admin-grow-unknown");
    let missing = NewPartitions::new(&unknown, 2);
    let results = block_on(admin.create_partitions([&missing], &admin_options()))
        .expect("CreatePartitions request");
    assert_eq!(
        results,
        vec![Err((
            unknown.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "growing an unknown topic"
    );

    // The new partition takes writes and serves reads.
    let (producer, log) = common::clients::producer(&bootstrap, &[]);
    common::clients::send(
        &producer,
        rdkafka::producer::BaseRecord::to(&topic)
            .partition(2)
            .key(&b"k"[..])
            .payload(&b"in-new-partition"[..]),
    );
    common::clients::flush(&producer);
    common::clients::assert_all_delivered(&log, 1);
    assign(&consumer, &topic, &[2], Offset::Beginning);
    let consumed = consume(&consumer, 1, CONSUME_TIMEOUT);
    consumed.expect_count(1);
    assert_eq!(
        consumed.messages[0].payload(),
        Some(&b"in-new-partition"[..])
    );
}

#[test]
fn alter_configs_sets_given_keys_and_resets_the_others_to_defaults() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-alter");
    create_topic(&bootstrap, &topic, 1, &[("retention.bytes", "1048576000")]);

    let admin = admin(&bootstrap);
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "7200000");
    let results =
        block_on(admin.alter_configs([&alter], &admin_options())).expect("AlterConfigs request");
    assert_eq!(results.len(), 1, "one result per resource");

    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("7200000")
    );
    assert_eq!(
        config_source(&configs, "retention.ms"),
        &ConfigSource::DynamicTopic
    );
    // AlterConfigs replaces the whole set: a key it does not name returns to its default.
    assert_ne!(
        config_value(&configs, "retention.bytes").as_deref(),
        Some("1048576000")
    );
    assert_ne!(
        config_source(&configs, "retention.bytes"),
        &ConfigSource::DynamicTopic
    );

    // rdkafka 0.39 drops AlterConfigs' per-resource error codes, so the
    // refusal of an invalid value is checked on the wire.
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let bad = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.clone()))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("soon")))]),
    ]);
    let response = raw.call_negotiated(&bad, 1);
    assert_eq!(response.responses.len(), 1, "one answer per resource");
    assert_eq!(
        response.responses[0].error_code,
        error_code::INVALID_CONFIG,
        "an invalid value is refused"
    );
    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("7200000"),
        "a refused change leaves the config as it was"
    );
}

#[test]
fn incremental_alter_configs_changes_only_the_named_keys() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-incremental");
    create_topic(
        &bootstrap,
        &topic,
        1,
        &[
            ("retention.bytes", "1048576000"),
            ("retention.ms", "3600000"),
        ],
    );

    let mut raw = RawClient::connect_negotiated(broker.addr());
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.clone()))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(CONFIG_OPERATION_SET)
                    .with_value(Some(StrBytes::from_static_str("7200000"))),
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.bytes"))
                    .with_config_operation(CONFIG_OPERATION_DELETE)
                    .with_value(None),
            ]),
    ]);
    let response = raw.call_negotiated(&request, 1);
    assert_eq!(response.responses.len(), 1, "one answer per resource");
    assert_eq!(
        response.responses[0].error_code,
        error_code::NONE,
        "IncrementalAlterConfigs error: {:?}",
        response.responses[0].error_message
    );

    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("7200000")
    );
    assert_ne!(
        config_value(&configs, "retention.bytes").as_deref(),
        Some("1048576000")
    );
    assert_ne!(
        config_source(&configs, "retention.bytes"),
        &ConfigSource::DynamicTopic
    );

    // Set one key: the other dynamic key stays.
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.clone()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.bytes"))
                .with_config_operation(CONFIG_OPERATION_SET)
                .with_value(Some(StrBytes::from_static_str("2097152000")))]),
    ]);
    let response = raw.call_negotiated(&request, 1);
    assert_eq!(response.responses[0].error_code, error_code::NONE);
    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("7200000")
    );
    assert_eq!(
        config_value(&configs, "retention.bytes").as_deref(),
        Some("2097152000")
    );
}

#[test]
fn delete_records_moves_the_low_watermark() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("admin-delete-records");
    create_topic(&bootstrap, &topic, 1, &[]);
    produce_keyed(&bootstrap, &topic, 10, 3);
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (0, 10),
        "before DeleteRecords"
    );

    let admin = admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(4))
        .expect("a valid offset");
    let result =
        block_on(admin.delete_records(&offsets, &admin_options())).expect("DeleteRecords request");
    let element = result
        .find_partition(&topic, 0)
        .expect("the partition is in the result");
    assert!(
        element.error().is_ok(),
        "DeleteRecords error: {:?}",
        element.error()
    );
    assert_eq!(
        element.offset(),
        Offset::Offset(4),
        "low watermark in the DeleteRecords answer"
    );
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (4, 10),
        "after DeleteRecords"
    );

    let consumer = consumer(&bootstrap, &[]);
    assign(&consumer, &topic, &[0], Offset::Beginning);
    let consumed = consume(&consumer, 6, CONSUME_TIMEOUT);
    consumed.expect_count(6);
    assert_eq!(
        consumed.messages[0].offset(),
        4,
        "the first readable offset"
    );
    assert_eq!(consumed.messages[5].offset(), 9, "the last offset");

    // Deleting everything moves the low watermark to the high watermark.
    let mut all = TopicPartitionList::new();
    all.add_partition_offset(&topic, 0, Offset::End)
        .expect("a valid offset");
    let result =
        block_on(admin.delete_records(&all, &admin_options())).expect("DeleteRecords request");
    let element = result
        .find_partition(&topic, 0)
        .expect("the partition is in the result");
    assert!(
        element.error().is_ok(),
        "DeleteRecords error: {:?}",
        element.error()
    );
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (10, 10),
        "after deleting everything"
    );

    // Beyond the high watermark is refused.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset(&topic, 0, Offset::Offset(11))
        .expect("a valid offset");
    let result = block_on(admin.delete_records(&beyond, &admin_options()));
    let refused = match result {
        Err(_) => true,
        Ok(list) => list
            .find_partition(&topic, 0)
            .map(|e| e.error().is_err())
            .unwrap_or(true),
    };
    assert!(
        refused,
        "DeleteRecords beyond the high watermark is refused"
    );
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (10, 10),
        "unchanged after a refused delete"
    );
}

#[test]
fn describe_cluster_lists_this_broker_as_the_controller() {
    let broker = Broker::start();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let response = raw.call_negotiated(&DescribeClusterRequest::default(), 1);
    assert_eq!(
        response.error_code,
        error_code::NONE,
        "error: {:?}",
        response.error_message
    );
    assert!(!response.cluster_id.is_empty(), "a cluster id is reported");
    assert_eq!(response.controller_id.0, 0, "controller id");
    assert_eq!(response.brokers.len(), 1, "brokers: {:?}", response.brokers);
    let described = &response.brokers[0];
    assert_eq!(described.broker_id.0, 0, "broker id");
    assert_eq!(described.host.as_str(), "127.0.0.1", "host");
    assert_eq!(described.port, i32::from(broker.port()), "port");
}

#[test]
fn advertised_listener_is_what_metadata_reports() {
    let broker = Broker::builder()
        .arg("--advertised-listener")
        .arg("localhost:19092")
        .start();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let response = raw.call_negotiated(
        &MetadataRequest::default().with_topics(Some(Vec::new())),
        12,
    );
    assert_eq!(response.brokers.len(), 1, "brokers: {:?}", response.brokers);
    assert_eq!(response.brokers[0].host.as_str(), "localhost");
    assert_eq!(response.brokers[0].port, 19092);
}

#[test]
fn metadata_request_auto_creates_a_topic_with_the_default_partition_count() {
    let broker = Broker::builder().default_partitions(3).start();
    let topic = unique_topic("auto-created");
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))]));
    // Kafka may answer LEADER_NOT_AVAILABLE while the new topic settles; ask again briefly.
    let created = common::wait_until(Duration::from_secs(5), || {
        let response = raw.call_negotiated(&request, 12);
        response.topics.len() == 1
            && response.topics[0].error_code == error_code::NONE
            && response.topics[0].partitions.len() == 3
    });
    assert!(created, "the topic is auto-created with 3 partitions");
    assert!(topic_names(&broker.bootstrap()).contains(&topic));
}

#[test]
fn metadata_request_for_unknown_topic_is_refused_when_auto_create_is_off() {
    let broker = Broker::builder().auto_create_topics(false).start();
    let topic = unique_topic("not-auto-created");
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))]));
    let response = raw.call_negotiated(&request, 12);
    assert_eq!(response.topics.len(), 1, "one answer per requested topic");
    assert_eq!(
        response.topics[0].error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert!(!topic_names(&broker.bootstrap()).contains(&topic));
}

/// Kafka's `compression.type` values for a topic.
const COMPRESSION_TYPES: [&str; 6] = ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];

#[test]
fn compression_type_takes_kafka_values_at_creation_and_by_alter_configs() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    for value in COMPRESSION_TYPES {
        let topic = unique_topic(&format!("compression-{value}"));
        let new =
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("compression.type", value);
        assert_eq!(
            try_create(&bootstrap, &new, false),
            Ok(topic.clone()),
            "compression.type={value}"
        );
        let configs = describe_topic_configs(&bootstrap, &topic);
        assert_eq!(
            config_value(&configs, "compression.type").as_deref(),
            Some(value)
        );
        assert_eq!(
            config_source(&configs, "compression.type"),
            &ConfigSource::DynamicTopic
        );
    }
    let unknown = unique_topic("compression-unknown");
    let new =
        NewTopic::new(&unknown, 1, TopicReplication::Fixed(1)).set("compression.type", "brotli");
    assert_eq!(
        try_create(&bootstrap, &new, false),
        Err((unknown.clone(), RDKafkaErrorCode::InvalidConfig)),
        "an unknown codec is refused"
    );

    let topic = unique_topic("compression-altered");
    create_topic(&bootstrap, &topic, 1, &[]);
    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "compression.type").as_deref(),
        Some("producer"),
        "the default"
    );
    let admin = admin(&bootstrap);
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("compression.type", "lz4");
    block_on(admin.alter_configs([&alter], &admin_options())).expect("AlterConfigs request");
    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "compression.type").as_deref(),
        Some("lz4")
    );

    let mut raw = RawClient::connect_negotiated(broker.addr());
    let set_compression = |value: &'static str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("compression.type"))
                    .with_config_operation(CONFIG_OPERATION_SET)
                    .with_value(Some(StrBytes::from_static_str(value)))]),
        ])
    };
    let response = raw.call_negotiated(&set_compression("zstd"), 1);
    assert_eq!(response.responses[0].error_code, error_code::NONE);
    let response = raw.call_negotiated(&set_compression("none"), 1);
    assert_eq!(
        response.responses[0].error_code,
        error_code::INVALID_CONFIG,
        "`none` is a producer codec name, not a topic value"
    );
    let configs = describe_topic_configs(&bootstrap, &topic);
    assert_eq!(
        config_value(&configs, "compression.type").as_deref(),
        Some("zstd")
    );
}
