//! Metadata as Kafka answers it, at every version the broker advertises:
//! "all topics" (an empty array in v0, null in v1+), an empty array in v1+
//! (no topics), named topics, and auto-creation with and without
//! `allow_auto_topic_creation`; the all-topics answer after topics are
//! created, deleted and given more partitions while it is cached; and
//! aiokafka's consumer seeing a topic's partitions through its all-topics
//! requests.

mod common;

use std::time::Duration;

use common::clients::{admin, admin_options, block_on, consumer, create_topic, topic_names};
use common::python::{python_with, run_script};
use common::raw::{error_code, RawClient};
use common::{unique_topic, wait_until, Broker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::NewPartitions;
use rdkafka::consumer::Consumer;

const EXISTING_PARTITIONS: usize = 3;
/// How long an auto-created topic may take to be described without error.
const AUTO_CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Metadata versions the broker advertises.
fn advertised_metadata_versions(client: &mut RawClient) -> std::ops::RangeInclusive<i16> {
    let versions = client.negotiate();
    let range = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Metadata as i16)
        .expect("the broker advertises Metadata");
    range.min_version..=range.max_version
}

/// "Every topic": v0 has no null arrays and uses an empty one instead.
fn all_topics_request(version: i16) -> MetadataRequest {
    let topics = if version == 0 { Some(Vec::new()) } else { None };
    MetadataRequest::default().with_topics(topics)
}

fn named_request(topic: &str, allow_auto_topic_creation: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(allow_auto_topic_creation)
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
}

/// (error code, partition count) of `topic` in `response`, if it is there.
fn described(response: &MetadataResponse, topic: &str) -> Option<(i16, usize)> {
    response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .map(|t| (t.error_code, t.partitions.len()))
}

fn assert_lists_existing(response: &MetadataResponse, topic: &str, version: i16) {
    assert_eq!(
        described(response, topic),
        Some((error_code::NONE, EXISTING_PARTITIONS)),
        "v{version}: every partition of {topic} in {:?}",
        response.topics
    );
}

/// Checks "all topics", "no topics" and a named existing topic at `version`.
fn check_listing(client: &mut RawClient, version: i16, existing: &str) {
    let response = client.call(&all_topics_request(version), version);
    assert_lists_existing(&response, existing, version);
    if version >= 10 {
        let listed = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == existing));
        assert!(
            listed.is_some_and(|t| !t.topic_id.is_nil()),
            "v{version}: topic ids from v10"
        );
    }
    if version >= 1 {
        // Kafka (MetadataRequest.isAllTopics): since v1 an empty array asks for no topics.
        let none = MetadataRequest::default().with_topics(Some(Vec::new()));
        let response = client.call(&none, version);
        assert!(
            response.topics.is_empty(),
            "v{version}: an empty array lists no topics: {:?}",
            response.topics
        );
        assert_eq!(
            response.brokers.len(),
            1,
            "v{version}: brokers still listed"
        );
    }
    // v0-3 have no allow_auto_topic_creation field: they always allow it.
    let allow_auto_topic_creation = version < 4;
    let response = client.call(&named_request(existing, allow_auto_topic_creation), version);
    assert_eq!(response.topics.len(), 1, "v{version}: one answer per topic");
    assert_lists_existing(&response, existing, version);
}

/// Whether `topic` is described without error at `version` within the bound.
fn eventually_described(client: &mut RawClient, version: i16, topic: &str) -> bool {
    wait_until(AUTO_CREATE_TIMEOUT, || {
        let response = client.call(&named_request(topic, true), version);
        matches!(described(&response, topic), Some((error_code::NONE, n)) if n > 0)
    })
}

/// Creates a topic of `EXISTING_PARTITIONS` partitions; returns its name and
/// a raw connection to the broker.
fn existing_topic(broker: &Broker, prefix: &str) -> (String, RawClient) {
    let existing = unique_topic(prefix);
    create_topic(
        &broker.bootstrap(),
        &existing,
        EXISTING_PARTITIONS as i32,
        &[],
    );
    (existing, RawClient::connect(broker.addr()))
}

#[test]
fn metadata_lists_all_topics_and_named_topics_at_every_advertised_version() {
    let broker = Broker::start();
    let (existing, mut client) = existing_topic(&broker, "listed");
    let versions = advertised_metadata_versions(&mut client);
    assert_eq!(*versions.start(), 0, "Metadata from v0");
    for version in versions {
        check_listing(&mut client, version, &existing);

        // v4+ can refuse auto-creation per request; older versions always allow it.
        if version >= 4 {
            let refused = unique_topic(&format!("not-created-v{version}"));
            let response = client.call(&named_request(&refused, false), version);
            assert_eq!(
                described(&response, &refused).map(|(code, _)| code),
                Some(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                "v{version}: allow_auto_topic_creation=false"
            );
            let all = client.call(&all_topics_request(version), version);
            assert_eq!(described(&all, &refused), None, "v{version}: not created");
        }
        let created = unique_topic(&format!("auto-created-v{version}"));
        assert!(
            eventually_described(&mut client, version, &created),
            "v{version}: a named unknown topic is auto-created"
        );
        let all = client.call(&all_topics_request(version), version);
        assert!(
            described(&all, &created).is_some(),
            "v{version}: the auto-created topic is listed with all topics"
        );
    }
}

#[test]
fn metadata_without_auto_creation_still_lists_all_topics_at_every_advertised_version() {
    let broker = Broker::builder().auto_create_topics(false).start();
    let (existing, mut client) = existing_topic(&broker, "listed-no-auto");
    for version in advertised_metadata_versions(&mut client) {
        check_listing(&mut client, version, &existing);
        let missing = unique_topic(&format!("missing-v{version}"));
        let response = client.call(&named_request(&missing, true), version);
        assert_eq!(
            described(&response, &missing).map(|(code, _)| code),
            Some(error_code::UNKNOWN_TOPIC_OR_PARTITION),
            "v{version}: no auto-creation on this broker"
        );
    }
    let missing_created = topic_names(&broker.bootstrap())
        .into_iter()
        .filter(|name| name.contains("missing-v"))
        .collect::<Vec<_>>();
    assert!(missing_created.is_empty(), "created: {missing_created:?}");
}

/// A topic as an answer describes it: (partition count, topic id), after
/// checking that its partitions are 0..n, each led by node 0.
fn listed_topic(
    response: &MetadataResponse,
    topic: &str,
    version: i16,
) -> Option<(usize, uuid::Uuid)> {
    let listed = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
    assert_eq!(listed.error_code, error_code::NONE, "v{version}: {topic}");
    for (index, partition) in listed.partitions.iter().enumerate() {
        assert_eq!(
            partition.partition_index, index as i32,
            "v{version}: {topic}"
        );
        assert_eq!(partition.leader_id.0, 0, "v{version}: {topic}/{index}");
        assert_eq!(
            partition.replica_nodes.len(),
            1,
            "v{version}: {topic}/{index}"
        );
    }
    Some((listed.partitions.len(), listed.topic_id))
}

/// Versions whose all-topics answers a broker keeps encoded side by side
/// (no more than it keeps at once, so that each answer after a change comes
/// from a warm cache): arrays with i32 counts and compact ones, without and
/// with topic ids.
const CACHED_VERSIONS: [i16; 4] = [0, 4, 10, 12];

/// At every cached version: all topics list `expected` (name, partitions)
/// and none of `gone`; named requests agree. Returns each listed topic's id
/// at v12.
fn check_after_change(
    client: &mut RawClient,
    bootstrap: &str,
    expected: &[(&str, usize)],
    gone: &[&str],
) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for version in CACHED_VERSIONS {
        let all = client.call(&all_topics_request(version), version);
        for &(topic, partitions) in expected {
            let listed = listed_topic(&all, topic, version);
            assert_eq!(
                listed.map(|(count, _)| count),
                Some(partitions),
                "v{version}: {topic} in all topics"
            );
            // v0-3 always auto-create a named topic, so only existing ones are named there.
            let named = client.call(&named_request(topic, version < 4), version);
            assert_eq!(
                listed_topic(&named, topic, version).map(|(count, _)| count),
                Some(partitions),
                "v{version}: {topic} named"
            );
            if version == 12 {
                ids.extend(listed.map(|(_, id)| id));
            }
        }
        for topic in gone {
            assert_eq!(described(&all, topic), None, "v{version}: {topic} is gone");
            if version >= 4 {
                let named = client.call(&named_request(topic, false), version);
                assert_eq!(
                    described(&named, topic).map(|(code, _)| code),
                    Some(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                    "v{version}: {topic} named"
                );
            }
        }
    }
    // librdkafka's all-topics Metadata.
    let metadata = consumer(bootstrap, &[])
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("librdkafka Metadata");
    for &(topic, partitions) in expected {
        let listed = metadata.topics().iter().find(|t| t.name() == topic);
        assert_eq!(
            listed.map(|t| t.partitions().len()),
            Some(partitions),
            "librdkafka: {topic}"
        );
    }
    for topic in gone {
        assert!(
            metadata.topics().iter().all(|t| t.name() != *topic),
            "librdkafka: {topic} is gone"
        );
    }
    ids
}

#[test]
fn all_topics_after_a_topic_change_show_the_change_at_every_cached_version() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let admin = admin(&bootstrap);
    let (grown, kept, removed, added) = (
        unique_topic("grown"),
        unique_topic("kept"),
        unique_topic("removed"),
        unique_topic("added"),
    );
    create_topic(&bootstrap, &grown, 2, &[]);
    create_topic(&bootstrap, &kept, 3, &[]);
    create_topic(&bootstrap, &removed, 1, &[]);
    let mut client = RawClient::connect(broker.addr());
    let ids = check_after_change(
        &mut client,
        &bootstrap,
        &[(&grown, 2), (&kept, 3), (&removed, 1)],
        &[],
    );

    create_topic(&bootstrap, &added, 4, &[]);
    let all = [(&*grown, 2), (&*kept, 3), (&*removed, 1), (&*added, 4)];
    check_after_change(&mut client, &bootstrap, &all, &[]);

    block_on(admin.delete_topics(&[&removed], &admin_options())).expect("DeleteTopics request");
    let all = [(&*grown, 2), (&*kept, 3), (&*added, 4)];
    check_after_change(&mut client, &bootstrap, &all, &[&removed]);

    let more = NewPartitions::new(&grown, 5);
    let results = block_on(admin.create_partitions([&more], &admin_options()))
        .expect("CreatePartitions request");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let all = [(&*grown, 5), (&*kept, 3), (&*added, 4)];
    let after = check_after_change(&mut client, &bootstrap, &all, &[&removed]);
    assert_eq!(after[..2], ids[..2], "more partitions keep the topic's id");

    // Made again under the same name: a new topic with its own id.
    create_topic(&bootstrap, &removed, 6, &[]);
    let all = [(&*grown, 5), (&*kept, 3), (&*added, 4), (&*removed, 6)];
    let again = check_after_change(&mut client, &bootstrap, &all, &[]);
    assert_ne!(again[3], ids[2], "a topic made again has a new id");
}

/// aiokafka's consumer: `topics()` sends Metadata with null topics (all
/// topics); a pattern subscription makes the consumer's own metadata follow
/// every topic the same way, so `partitions_for_topic` knows each partition.
/// (aiokafka 0.14 bootstraps with an empty array at its negotiated version,
/// which Kafka answers with no topics, and `topics()` keeps its answer
/// apart from the consumer's own metadata.)
const AIOKAFKA_PARTITIONS_SCRIPT: &str = r#"
import asyncio, json, re, sys, time
from aiokafka import AIOKafkaConsumer

async def main(bootstrap, topic, timeout_s):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        listed = topic in await consumer.topics()
        consumer.subscribe(pattern="^" + re.escape(topic) + "$")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(consumer.assignment()) == 3:
                break
            await asyncio.sleep(0.1)
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        assigned = sorted(tp.partition for tp in consumer.assignment() if tp.topic == topic)
        print(json.dumps({"listed": listed, "partitions": partitions, "assigned": assigned}))
    finally:
        await consumer.stop()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"#;

#[test]
fn aiokafka_consumer_lists_a_topic_and_knows_all_its_partitions() {
    let test = "aiokafka_consumer_lists_a_topic_and_knows_all_its_partitions";
    let Some(python) = python_with(test, &["aiokafka"]) else {
        return;
    };
    let broker = Broker::start();
    let topic = unique_topic("aiokafka-partitions");
    create_topic(&broker.bootstrap(), &topic, EXISTING_PARTITIONS as i32, &[]);
    let out = run_script(
        &python,
        AIOKAFKA_PARTITIONS_SCRIPT,
        &[&broker.bootstrap(), &topic, "15"],
    );
    let result: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|error| panic!("script output {out:?}: {error}"));
    assert_eq!(result["listed"], true, "topics() lists {topic}: {out}");
    assert_eq!(
        result["partitions"],
        serde_json::json!([0, 1, 2]),
        "partitions_for_topic: {out}"
    );
    assert_eq!(
        result["assigned"],
        serde_json::json!([0, 1, 2]),
        "assignment: {out}"
    );
}
