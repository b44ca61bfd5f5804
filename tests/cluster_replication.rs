//! Replicated partitions on Raft, with three real broker processes: an
//! acks=all load survives SIGKILL of a partition leader, the killed broker
//! catches up when it returns, every acknowledged record is read back at
//! its offset, and all three replicas hold byte-identical logs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::clients::{assign, consume, consumer, flush, producer, send};
use common::cluster::Cluster;
use common::raw::{self, error_code, RawClient};
use common::wait_until;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::MetadataResponse;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Kafka's NOT_ENOUGH_REPLICAS.
const NOT_ENOUGH_REPLICAS: i16 = 19;

/// (leader, leader epoch) per partition, as `metadata` has them.
fn leadership(metadata: &MetadataResponse) -> Vec<(i32, i32)> {
    leadership_of(metadata, TOPIC)
}

/// `name`'s partitions as `metadata` lists them.
fn partitions<'a>(metadata: &'a MetadataResponse, name: &str) -> &'a [MetadataResponsePartition] {
    &metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
        .expect("the topic is listed")
        .partitions
}

fn leadership_of(metadata: &MetadataResponse, name: &str) -> Vec<(i32, i32)> {
    partitions(metadata, name)
        .iter()
        .map(|p| (p.leader_id.0, p.leader_epoch))
        .collect()
}

/// Every segment file of `topic` under `data_dir`: (partition dir, file name) -> bytes.
fn segment_files(data_dir: &Path, topic: &str) -> BTreeMap<(String, String), Vec<u8>> {
    let mut files = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let dir: PathBuf = data_dir.join(format!("{topic}-{partition}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let bytes = std::fs::read(entry.path()).expect("a segment file reads");
                files.insert((format!("{topic}-{partition}"), name), bytes);
            }
        }
    }
    files
}

fn sizes(files: &BTreeMap<(String, String), Vec<u8>>) -> BTreeMap<(String, String), usize> {
    files.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

fn produce(producer: &common::clients::RecordingProducer, from: usize, to: usize) {
    for i in from..to {
        let value = format!("value-{i}");
        send(
            producer,
            BaseRecord::to(TOPIC)
                .partition((i % PARTITIONS as usize) as i32)
                .payload(value.as_bytes()),
        );
    }
}

#[test]
fn acks_all_survives_a_leader_kill_and_replicas_end_byte_identical() {
    let mut cluster = Cluster::start(3);
    assert_eq!(
        cluster.create_topic(1, TOPIC, PARTITIONS, 3),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, TOPIC, PARTITIONS as usize);
    }
    let before = leadership(&cluster.metadata(1));
    assert!(
        before
            .iter()
            .all(|(leader, epoch)| *leader > 0 && *epoch > 0),
        "every partition has a Raft leader: {before:?}"
    );

    let bootstrap = cluster.bootstrap();
    let (producer, log) = producer(&bootstrap, &[("message.timeout.ms", "60000")]);
    let total = 3000;
    produce(&producer, 0, 1000);
    flush(&producer);
    // Mid-load: more records in flight while partition 0's leader dies.
    produce(&producer, 1000, 2000);
    let victim = before[0].0;
    cluster.node(victim).kill9();
    produce(&producer, 2000, total);
    flush(&producer);
    assert!(
        log.failures().is_empty(),
        "every record is acknowledged: {:?}",
        log.failures().first()
    );

    // A new leader with a higher epoch serves partition 0.
    let survivor = if victim == 1 { 2 } else { 1 };
    let moved = wait_until(Duration::from_secs(30), || {
        let now = leadership(&cluster.metadata(survivor));
        now[0].0 != victim && now[0].0 > 0 && now[0].1 > before[0].1
    });
    let after = leadership(&cluster.metadata(survivor));
    assert!(moved, "partition 0 has a new leader: {after:?}");
    eprintln!("leaders (leader, epoch) before the kill of {victim}: {before:?}, after: {after:?}");

    // Every acknowledged record is at its acknowledged offset.
    cluster.node(victim).start_again();
    let delivered = log.delivered();
    let consumer = consumer(&cluster.bootstrap(), &[]);
    assign(&consumer, TOPIC, &[0, 1, 2], Offset::Beginning);
    let consumed = consume(&consumer, delivered.len(), CONSUME_TIMEOUT);
    let read: HashMap<(i32, i64), Vec<u8>> = consumed
        .messages
        .iter()
        .map(|m| {
            (
                (m.partition(), m.offset()),
                m.payload().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    let mut values = std::collections::HashSet::new();
    for d in &delivered {
        let payload = d.payload.clone().unwrap_or_default();
        assert_eq!(
            read.get(&(d.partition, d.offset)),
            Some(&payload),
            "the record acknowledged at {}-{} is read back there",
            d.partition,
            d.offset
        );
        values.insert(payload);
    }
    assert_eq!(values.len(), total, "every record was acknowledged");

    // The returned broker catches up: all replicas' segment files agree.
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|n| cluster.node(n).data_dir().to_path_buf())
        .collect();
    let caught_up = wait_until(CATCH_UP_TIMEOUT, || {
        let all: Vec<_> = dirs
            .iter()
            .map(|d| sizes(&segment_files(d, TOPIC)))
            .collect();
        !all[0].is_empty() && all.iter().all(|s| *s == all[0])
    });
    assert!(caught_up, "the returned broker catches up");
    eprintln!(
        "{} acknowledged, {} segment files per replica",
        delivered.len(),
        segment_files(&dirs[0], TOPIC).len()
    );
    for node in 1..=3 {
        let status = cluster.node(node).stop();
        assert!(status.success(), "node {node} stops cleanly");
    }
    let reference = segment_files(&dirs[0], TOPIC);
    assert!(!reference.is_empty());
    for (n, dir) in dirs.iter().enumerate().skip(1) {
        let files = segment_files(dir, TOPIC);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>(),
            "node {} has the same segments",
            n + 1
        );
        for (key, bytes) in &reference {
            assert!(
                files.get(key) == Some(bytes),
                "node {}'s {key:?} is byte-identical to node 1's",
                n + 1
            );
        }
    }
}

/// Preferred leaders (first replicas) of `topic`, per partition.
fn preferred(metadata: &MetadataResponse, name: &str) -> Vec<i32> {
    partitions(metadata, name)
        .iter()
        .map(|p| p.replica_nodes[0].0)
        .collect()
}

#[test]
fn min_insync_replicas_refuses_acks_all_while_a_replica_is_down_and_preferred_leaders_return() {
    let mut cluster = Cluster::start(3);
    let topic = "strict";
    assert_eq!(
        cluster.create_topic_with_configs(2, topic, 3, 3, &[("min.insync.replicas", "3")]),
        error_code::NONE
    );
    let metadata = cluster.wait_for_topic(1, topic, 3);
    let preferred = preferred(&metadata, topic);
    // Leaders go to the preferred replicas, one per broker.
    let spread = wait_until(Duration::from_secs(30), || {
        let now = leadership_of(&cluster.metadata(1), topic);
        now.iter().map(|(l, _)| *l).collect::<Vec<_>>() == preferred
    });
    assert!(
        spread,
        "preferred leaders lead: {:?} vs {preferred:?}",
        leadership_of(&cluster.metadata(1), topic)
    );
    let leader = preferred[0];
    let mut client = RawClient::connect_negotiated(cluster.node(leader).addr());
    let answer = raw::produce(&mut client, topic, 0, &[(b"k", b"all three")]);
    assert_eq!(answer.error_code, error_code::NONE);

    // With one follower down, acks=all is refused with NOT_ENOUGH_REPLICAS.
    let down = if leader == 3 { 1 } else { 3 };
    cluster.node(down).kill9();
    let mut last = None;
    let refused = wait_until(Duration::from_secs(30), || {
        let answer = raw::produce(&mut client, topic, 0, &[(b"k", b"two of three")]);
        last = Some(answer.error_code);
        answer.error_code == NOT_ENOUGH_REPLICAS
    });
    assert!(
        refused,
        "NOT_ENOUGH_REPLICAS with a replica down, got {last:?}"
    );

    // Back: acks=all is served again, and every partition's preferred
    // replica leads again (the one led by the returned broker moved away).
    cluster.node(down).start_again();
    let served = wait_until(Duration::from_secs(30), || {
        raw::produce(&mut client, topic, 0, &[(b"k", b"three again")]).error_code
            == error_code::NONE
    });
    assert!(served, "acks=all is served once the replica is back");
    let back = wait_until(Duration::from_secs(30), || {
        let now = leadership_of(&cluster.metadata(1), topic);
        now.iter().map(|(l, _)| *l).collect::<Vec<_>>() == preferred
    });
    assert!(
        back,
        "preferred leaders lead again: {:?} vs {preferred:?}",
        leadership_of(&cluster.metadata(1), topic)
    );
}
