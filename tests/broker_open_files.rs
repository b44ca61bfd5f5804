//! The open-file budget with real broker processes under a lowered
//! RLIMIT_NOFILE (as `prlimit --nofile=N:N` sets it): many more partitions
//! than descriptors are served (idle ones give their files back), topic
//! creations the budget cannot serve are refused up front with
//! POLICY_VIOLATION, a failed creation leaves nothing behind, and an
//! impossible --open-files-max is refused at start-up.

mod common;

use std::time::Duration;

use common::raw::{self, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// The open-file limit the small brokers run under.
const SMALL_LIMIT: u64 = 512;
/// Partitions that fit in [`SMALL_LIMIT`] with room to spare.
const FITTING_PARTITIONS: i32 = 100;
/// Partitions beyond what [`SMALL_LIMIT`] serves ((512 - 64) x 16 = 7,168).
const OVERSIZED_PARTITIONS: i32 = 8000;

/// Creates `topics` in one CreateTopics request; returns (error code, message) per topic.
fn create_topics(client: &mut RawClient, topics: &[(&str, i32)]) -> Vec<(i16, Option<String>)> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let response = client.call_negotiated(&request, 7);
    response
        .topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

/// Partition directories of `topic` in the broker's data directory.
fn partition_dirs(broker: &Broker, topic: &str) -> usize {
    let prefix = format!("{topic}-");
    std::fs::read_dir(broker.data_dir())
        .expect("the data directory is readable")
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .is_some_and(|rest| rest.parse::<u32>().is_ok())
        })
        .count()
}

/// Produces one record to each of `partitions` of `topic` and reads it back.
fn round_trip(broker: &Broker, topic: &str, partitions: impl Iterator<Item = i32>, value: &[u8]) {
    let mut client = RawClient::connect_negotiated(broker.addr());
    for partition in partitions {
        let produced = raw::produce(&mut client, topic, partition, &[(b"k", value)]);
        assert_eq!(produced.error_code, 0, "produce to {topic}/{partition}");
        let fetched = raw::fetch(&mut client, topic, partition, produced.base_offset);
        assert_eq!(fetched.error_code, 0, "fetch from {topic}/{partition}");
        let records = raw::decode_records(fetched.records.as_ref().expect("records"));
        assert_eq!(
            records.first().and_then(|r| r.value.as_deref()),
            Some(value),
            "{topic}/{partition} gives back what was written"
        );
    }
}

#[test]
fn creating_topics_beyond_the_open_file_limit_is_refused_up_front() {
    let mut broker = Broker::builder().open_files_limit(SMALL_LIMIT).start();
    let fits = unique_topic("fits");
    let too_big = unique_topic("too-big");
    let mut client = RawClient::connect_negotiated(broker.addr());
    let results = create_topics(
        &mut client,
        &[
            (&fits, FITTING_PARTITIONS),
            (&too_big, OVERSIZED_PARTITIONS),
        ],
    );
    assert_eq!(
        results[0].0, 0,
        "the topic that fits is created: {results:?}"
    );
    assert_eq!(
        results[1].0,
        ResponseError::PolicyViolation.code(),
        "the topic that does not fit is refused: {results:?}"
    );
    let message = results[1].1.clone().unwrap_or_default();
    assert!(
        message.contains("open-file limit") && message.contains("more partitions"),
        "the client is told why: {message:?}"
    );
    assert!(
        broker
            .log()
            .contains("topic creation refused: the open-file limit is reached"),
        "one log line names the limit to raise"
    );
    assert_eq!(
        partition_dirs(&broker, &too_big),
        0,
        "nothing of it is made"
    );
    assert!(!common::clients::topic_names(&broker.bootstrap()).contains(&too_big));
    round_trip(&broker, &fits, 0..FITTING_PARTITIONS, b"before");
    broker.restart();
    round_trip(&broker, &fits, 0..FITTING_PARTITIONS, b"after");
    assert_eq!(partition_dirs(&broker, &too_big), 0);
}

#[test]
fn a_topic_whose_partitions_cannot_all_be_made_is_not_left_half_made() {
    let mut broker = Broker::start();
    let topic = unique_topic("half");
    // A plain file where one partition's directory must go: that partition cannot open.
    let blocker = broker.data_dir().join(format!("{topic}-3"));
    std::fs::write(&blocker, b"not a directory").expect("writing the blocking file");
    let mut client = RawClient::connect_negotiated(broker.addr());
    let results = create_topics(&mut client, &[(&topic, 8)]);
    assert_ne!(results[0].0, 0, "the creation fails: {results:?}");
    assert_eq!(
        partition_dirs(&broker, &topic),
        1,
        "only the file that was there before remains"
    );
    assert!(blocker.is_file());
    assert!(!common::clients::topic_names(&broker.bootstrap()).contains(&topic));
    broker.restart();
    assert!(!common::clients::topic_names(&broker.bootstrap()).contains(&topic));
    std::fs::remove_file(&blocker).expect("removing the blocking file");
    let results = create_topics(
        &mut RawClient::connect_negotiated(broker.addr()),
        &[(&topic, 8)],
    );
    assert_eq!(results[0].0, 0, "the name is free again: {results:?}");
    round_trip(&broker, &topic, 0..8, b"whole");
}

/// Descriptors the broker process holds now.
fn open_descriptors(broker: &Broker) -> usize {
    let pid = broker.pid().expect("the broker runs");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// How long a broker with tens of thousands of partitions may take to start or stop.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Creates `partitions` partitions in topics of at most 1,000 on a broker
/// under `limit` open files, then produces to and fetches from every
/// `stride`-th partition, restarts it and does it again.
fn many_partitions_under_a_small_limit(partitions: i32, limit: u64, stride: usize) {
    // One CreateTopics must answer within the raw client's read timeout.
    const TOPIC_PARTITIONS_MAX: i32 = 1_000;
    let mut broker = Broker::builder()
        .open_files_limit(limit)
        .lifecycle_timeout(LIFECYCLE_TIMEOUT)
        .start();
    let mut topics = Vec::new();
    let mut left = partitions;
    while left > 0 {
        let count = left.min(TOPIC_PARTITIONS_MAX);
        topics.push((unique_topic("many"), count));
        left -= count;
    }
    for (topic, count) in &topics {
        let results = create_topics(
            &mut RawClient::connect_negotiated(broker.addr()),
            &[(topic, *count)],
        );
        assert_eq!(results[0].0, 0, "{topic}: {results:?}");
    }
    for round in [b"first".as_slice(), b"after restart"] {
        for (topic, count) in &topics {
            round_trip(&broker, topic, (0..*count).step_by(stride), round);
        }
        let open = open_descriptors(&broker) as u64;
        assert!(
            open < limit,
            "{open} descriptors open under a limit of {limit}"
        );
        broker.restart();
    }
}

#[test]
fn more_partitions_than_open_files_are_served_across_a_restart() {
    many_partitions_under_a_small_limit(3_000, 256, 97);
}

#[test]
#[ignore = "30,000 partitions take minutes to create on a 2-core machine; run by hand"]
fn thirty_thousand_partitions_are_served_under_an_open_file_limit_of_4096() {
    many_partitions_under_a_small_limit(30_000, 4096, 301);
}

#[test]
fn an_open_files_max_above_the_hard_limit_is_refused_at_start_up() {
    let mut broker = Broker::builder().open_files_limit(1024).start();
    broker.stop();
    broker.set_extra_args(&["--open-files-max", "4096"]);
    let refused = broker.try_start_again();
    assert!(
        refused.is_err(),
        "a budget above the hard limit cannot be had"
    );
    let log = broker.log_tail();
    assert!(
        log.contains("--open-files-max 4096 is above the hard open-file limit")
            && log.contains("1024"),
        "start-up says which limit to raise: {log}"
    );
}
