//! Three real broker processes: the ISR every broker's Metadata shows
//! follows the replicas that are caught up (a killed follower leaves it, and
//! comes back once restarted and caught up), the leader's broker counts its
//! under-replicated partitions on the metrics endpoint, and ElectLeaders
//! moves a partition's leadership back to its preferred replica within the
//! answer (raw client at v0 and v2, and kafka-python's admin client).

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::metrics::scrape;
use common::python::{python_with, run_script};
use common::raw::{self, error_code, RawClient};
use common::wait_until;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// How long a changed ISR may take to reach every broker's Metadata.
const ISR_TIMEOUT: Duration = Duration::from_secs(30);
/// What ElectLeaders may wait for a transfer (below the raw client's I/O timeout).
const ELECTION_TIMEOUT_MS: i32 = 8000;
const INVALID_REQUEST: i16 = 42;
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
const ELECTION_NOT_NEEDED: i16 = 84;
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

fn partition<'a>(
    metadata: &'a MetadataResponse,
    topic: &str,
    index: i32,
) -> Option<&'a MetadataResponsePartition> {
    metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?
        .partitions
        .iter()
        .find(|p| p.partition_index == index)
}

/// The ISR of `topic`'s partition `index` as node `node` shows it, sorted.
fn isr(cluster: &Cluster, node: i32, topic: &str, index: i32) -> Option<Vec<i32>> {
    let metadata = cluster.try_metadata(node)?;
    let mut isr: Vec<i32> = partition(&metadata, topic, index)?
        .isr_nodes
        .iter()
        .map(|b| b.0)
        .collect();
    isr.sort_unstable();
    Some(isr)
}

/// Waits until node `node` shows `wanted` as the ISR.
fn wait_for_isr(cluster: &Cluster, node: i32, topic: &str, index: i32, wanted: &[i32]) {
    let mut last = None;
    let shown = wait_until(ISR_TIMEOUT, || {
        last = isr(cluster, node, topic, index);
        last.as_deref() == Some(wanted)
    });
    assert!(
        shown,
        "node {node} shows ISR {last:?} for {topic}-{index}, not {wanted:?}, after {ISR_TIMEOUT:?}"
    );
}

/// (preferred replica, leader) of `topic`'s partition `index` on node `node`.
fn preferred_and_leader(cluster: &Cluster, node: i32, topic: &str, index: i32) -> (i32, i32) {
    let metadata = cluster.metadata(node);
    let p = partition(&metadata, topic, index).expect("the partition is listed");
    (p.replica_nodes[0].0, p.leader_id.0)
}

fn produce_until_taken(cluster: &mut Cluster, leader: i32, topic: &str) {
    let addr = cluster.node(leader).addr();
    let taken = wait_until(ISR_TIMEOUT, || {
        let mut client = RawClient::connect_negotiated(addr);
        raw::produce(&mut client, topic, 0, &[(b"k", b"v")]).error_code == error_code::NONE
    });
    assert!(taken, "node {leader} took a produce to {topic}-0");
}

fn metric(cluster: &mut Cluster, node: i32, name: &str) -> f64 {
    scrape(cluster.node(node).metrics_addr()).value(name, &[])
}

#[test]
fn the_isr_shrinks_when_a_follower_dies_and_grows_back_when_it_returns() {
    let mut cluster = Cluster::builder(3).metrics().start();
    assert_eq!(cluster.create_topic(1, "isr", 1, 3), error_code::NONE);
    cluster.wait_for_topic(1, "isr", 1);
    for node in cluster.ids() {
        wait_for_isr(&cluster, node, "isr", 0, &[1, 2, 3]);
    }
    let leader = cluster.partition_leader("isr", 0).expect("a leader");
    assert_eq!(
        metric(&mut cluster, leader, "ringlog_under_replicated_partitions"),
        0.0
    );
    assert!(metric(&mut cluster, leader, "ringlog_partition_leaders") >= 1.0);
    assert!(
        metric(
            &mut cluster,
            leader,
            "ringlog_partition_leader_elections_total"
        ) >= 1.0
    );

    // Clients parse it: kcat's listing and kafka-python's admin client.
    let listing = std::process::Command::new("kcat")
        .args(["-L", "-b", &cluster.bootstrap(), "-t", "isr", "-m", "10"])
        .output();
    match listing {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.contains("partition 0,"))
                .unwrap_or_else(|| panic!("kcat lists partition 0:\n{text}"));
            let isrs = line.split("isrs: ").nth(1).unwrap_or_default().trim();
            let mut isrs: Vec<&str> = isrs.split(',').collect();
            isrs.sort_unstable();
            assert_eq!(isrs, ["1", "2", "3"], "kcat: {line}");
        }
        Err(error) => common::skip::skip("kcat -L", &format!("kcat did not run: {error}")),
    }
    if let Some(python) = python_with("the_isr_shrinks (kafka-python)", &["kafka"]) {
        let script = r#"
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
topic = admin.describe_topics([sys.argv[2]])[0]
partition = topic["partitions"][0]
isr = partition.get("isr_nodes", partition.get("isr"))
print(",".join(str(n) for n in sorted(isr)))
admin.close()
"#;
        let out = run_script(&python, script, &[&cluster.bootstrap(), "isr"]);
        assert_eq!(out.trim(), "1,2,3", "kafka-python's describe_topics");
    }

    // A killed follower leaves the ISR on every broker; it is offline.
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&n| n != leader)
        .expect("a follower");
    let observer = cluster.other_than(leader, follower);
    cluster.kill9(follower);
    let mut left: Vec<i32> = vec![leader, observer];
    left.sort_unstable();
    wait_for_isr(&cluster, observer, "isr", 0, &left);
    // Offline once its lease runs out.
    let mut shown = None;
    let offline = wait_until(ISR_TIMEOUT, || {
        let metadata = cluster.metadata(observer);
        let p = partition(&metadata, "isr", 0).expect("listed");
        let offline: Vec<i32> = p.offline_replicas.iter().map(|b| b.0).collect();
        shown = Some((p.leader_id.0, offline.clone()));
        offline == [follower]
    });
    assert!(
        offline,
        "(leader, offline replicas) {shown:?}: {follower} is offline"
    );
    assert_eq!(shown.map(|s| s.0), Some(leader), "the leader stays");
    wait_for_isr(&cluster, observer, "isr", 0, &left);
    let counted = wait_until(ISR_TIMEOUT, || {
        metric(&mut cluster, leader, "ringlog_under_replicated_partitions") >= 1.0
    });
    assert!(
        counted,
        "node {leader} counts an under-replicated partition"
    );

    // Back and caught up: in the ISR again, and nothing is under-replicated.
    cluster.restart(follower);
    cluster.wait_for_brokers(observer, 3);
    produce_until_taken(&mut cluster, leader, "isr");
    for node in cluster.ids() {
        wait_for_isr(&cluster, node, "isr", 0, &[1, 2, 3]);
    }
    let metadata = cluster.metadata(observer);
    let p = partition(&metadata, "isr", 0).expect("listed");
    assert!(p.offline_replicas.is_empty(), "nothing offline");
    let recovered = wait_until(ISR_TIMEOUT, || {
        metric(&mut cluster, leader, "ringlog_under_replicated_partitions") == 0.0
    });
    assert!(
        recovered,
        "node {leader} counts no under-replicated partition"
    );
}

fn elect_request(election_type: i8, partitions: Option<&[(&str, &[i32])]>) -> ElectLeadersRequest {
    let topics = partitions.map(|named| {
        named
            .iter()
            .map(|(topic, ps)| {
                TopicPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(ps.to_vec())
            })
            .collect()
    });
    ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_topic_partitions(topics)
        .with_timeout_ms(ELECTION_TIMEOUT_MS)
}

/// ElectLeaders through node `node` at `version`.
fn elect(
    cluster: &mut Cluster,
    node: i32,
    version: i16,
    election_type: i8,
    partitions: Option<&[(&str, &[i32])]>,
) -> ElectLeadersResponse {
    let mut client = RawClient::connect(cluster.node(node).addr());
    client.call(&elect_request(election_type, partitions), version)
}

/// The (partition, error code) answers for `topic`, in answer order.
fn codes(answer: &ElectLeadersResponse, topic: &str) -> Vec<(i32, i16)> {
    answer
        .replica_election_results
        .iter()
        .filter(|t| t.topic.as_str() == topic)
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (p.partition_id, p.error_code))
        })
        .collect()
}

/// Kills `topic`-0's leader (its preferred replica), waits for another to
/// lead, restarts it and waits until it is back in the ISR; the leadership
/// stays away (auto.leader.rebalance.enable is off). Returns (preferred,
/// the node that leads now).
fn move_leadership_away(cluster: &mut Cluster, topic: &str) -> (i32, i32) {
    let (preferred, leader) = preferred_and_leader(cluster, 1, topic, 0);
    assert_eq!(
        leader, preferred,
        "{topic}-0 starts on its preferred replica"
    );
    cluster.kill9(preferred);
    let other = cluster.wait_for_leader_other_than(topic, 0, preferred);
    cluster.restart(preferred);
    cluster.wait_for_brokers(other, 3);
    wait_for_isr(cluster, other, topic, 0, &[1, 2, 3]);
    assert_eq!(
        preferred_and_leader(cluster, other, topic, 0).1,
        other,
        "without auto rebalance the leadership stays"
    );
    (preferred, other)
}

#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let mut cluster = Cluster::builder(3)
        .arg("--auto-leader-rebalance-enable")
        .arg("false")
        .start();
    assert_eq!(cluster.create_topic(1, "elect", 3, 3), error_code::NONE);
    cluster.wait_for_topic(1, "elect", 3);
    // One replica per partition, one partition per broker: killing a broker
    // leaves one of them with no replica to lead.
    assert_eq!(cluster.create_topic(1, "lonely", 3, 1), error_code::NONE);
    cluster.wait_for_topic(1, "lonely", 3);
    for node in cluster.ids() {
        for p in 0..3 {
            wait_for_isr(&cluster, node, "elect", p, &[1, 2, 3]);
        }
    }

    // A preferred replica may lose the first election of a new group:
    // an election puts every partition on its preferred replica.
    let answer = elect(
        &mut cluster,
        1,
        2,
        PREFERRED,
        Some(&[("elect", &[0, 1, 2])]),
    );
    for (p, code) in codes(&answer, "elect") {
        assert!(
            code == error_code::NONE || code == ELECTION_NOT_NEEDED,
            "elect-{p}: {code}"
        );
    }

    // The error cases.
    let answer = elect(
        &mut cluster,
        2,
        2,
        PREFERRED,
        Some(&[("elect", &[0, 1, 1])]),
    );
    assert_eq!(answer.error_code, error_code::NONE);
    assert_eq!(
        codes(&answer, "elect"),
        [
            (0, ELECTION_NOT_NEEDED),
            (1, ELECTION_NOT_NEEDED),
            (1, INVALID_REQUEST)
        ],
        "preferred replicas lead; a partition named twice is refused"
    );
    let answer = elect(
        &mut cluster,
        3,
        1,
        PREFERRED,
        Some(&[("no-such-topic", &[0]), ("elect", &[99])]),
    );
    assert_eq!(
        codes(&answer, "no-such-topic"),
        [(0, error_code::UNKNOWN_TOPIC_OR_PARTITION)]
    );
    assert_eq!(
        codes(&answer, "elect"),
        [(99, error_code::UNKNOWN_TOPIC_OR_PARTITION)]
    );
    let answer = elect(&mut cluster, 1, 2, UNCLEAN, Some(&[("elect", &[0])]));
    assert_eq!(
        codes(&answer, "elect"),
        [(0, ELECTION_NOT_NEEDED)],
        "a partition with a leader needs no unclean election"
    );

    // The preferred replica is down: not available.
    let (preferred, _) = preferred_and_leader(&cluster, 1, "elect", 0);
    cluster.kill9(preferred);
    let other = cluster.wait_for_leader_other_than("elect", 0, preferred);
    let answer = elect(&mut cluster, other, 2, PREFERRED, Some(&[("elect", &[0])]));
    assert_eq!(
        codes(&answer, "elect"),
        [(0, PREFERRED_LEADER_NOT_AVAILABLE)]
    );
    // A partition whose only replica is down has no leader, and an unclean
    // election has no replica to elect.
    let orphan = (0..3)
        .find(|&p| {
            cluster
                .try_metadata(other)
                .as_ref()
                .and_then(|m| partition(m, "lonely", p))
                .is_some_and(|p| p.replica_nodes.first().map(|r| r.0) == Some(preferred))
        })
        .expect("a lonely partition on the killed broker");
    assert!(
        common::wait_until(Duration::from_secs(30), || cluster
            .try_metadata(other)
            .as_ref()
            .and_then(|m| partition(m, "lonely", orphan))
            .is_some_and(|p| p.leader_id.0 < 0)),
        "lonely-{orphan} has no leader"
    );
    let answer = elect(
        &mut cluster,
        other,
        2,
        UNCLEAN,
        Some(&[("lonely", &[orphan])]),
    );
    assert_eq!(
        codes(&answer, "lonely"),
        [(orphan, ELIGIBLE_LEADERS_NOT_AVAILABLE)]
    );
    cluster.restart(preferred);
    cluster.wait_for_brokers(other, 3);
    wait_for_isr(&cluster, other, "elect", 0, &[1, 2, 3]);

    // v0 through the broker that neither leads nor is preferred: the
    // leadership is back when the answer comes.
    let leader = preferred_and_leader(&cluster, other, "elect", 0).1;
    assert_ne!(leader, preferred);
    let third = cluster.other_than(preferred, leader);
    let answer = elect(&mut cluster, third, 0, PREFERRED, Some(&[("elect", &[0])]));
    assert_eq!(codes(&answer, "elect"), [(0, error_code::NONE)]);
    assert_eq!(
        preferred_and_leader(&cluster, third, "elect", 0).1,
        preferred
    );

    // v2 for every partition through the preferred replica itself.
    let (preferred, _) = move_leadership_away(&mut cluster, "elect");
    let answer = elect(&mut cluster, preferred, 2, PREFERRED, None);
    assert_eq!(answer.error_code, error_code::NONE);
    let answered = codes(&answer, "elect");
    assert!(
        answered.contains(&(0, error_code::NONE)) && answered.iter().all(|(_, c)| *c == 0),
        "only partitions that needed an election are listed, elected: {answered:?}"
    );
    assert_eq!(
        preferred_and_leader(&cluster, preferred, "elect", 0).1,
        preferred
    );

    // The admin CLI: nothing left to elect for the topic.
    let run = common::run_bounded(
        std::process::Command::new(common::broker_binary()).args([
            "cluster",
            "elect-leaders",
            "--topic",
            "elect",
            "--format",
            "json",
            "--bootstrap",
            &cluster.node(2).bootstrap(),
        ]),
        Duration::from_secs(30),
    );
    assert!(run.succeeded(), "{}{}", run.stdout, run.stderr);
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let results: Vec<(i64, String)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let partition = e["partition"].as_i64().unwrap_or(-1);
            (
                partition,
                e["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let not_needed = "ELECTION_NOT_NEEDED".to_string();
    assert_eq!(
        results,
        [
            (0, not_needed.clone()),
            (1, not_needed.clone()),
            (2, not_needed)
        ]
    );

    // kafka-python's admin client.
    let Some(python) = python_with("elect_leaders (kafka-python)", &["kafka"]) else {
        return;
    };
    let (preferred, other) = move_leadership_away(&mut cluster, "elect");
    let script = r#"
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
answer = admin.elect_leaders(0, {"elect": [0, 1]}, timeout_ms=8000, raise_errors=False)
for topic in answer.replica_election_results:
    for p in topic.partition_result:
        print(topic.topic, p.partition_id, p.error_code)
admin.close()
"#;
    let out = run_script(&python, script, &[&cluster.bootstrap()]);
    assert_eq!(
        out.trim(),
        format!("elect 0 0\nelect 1 {ELECTION_NOT_NEEDED}"),
        "kafka-python's elect_leaders"
    );
    // The controller answered; the others' views follow a moment later.
    let moved = wait_until(ISR_TIMEOUT, || {
        preferred_and_leader(&cluster, other, "elect", 0).1 == preferred
    });
    assert!(moved, "node {other} shows node {preferred} leading elect-0");
}
