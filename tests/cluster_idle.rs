//! An idle cluster's Raft groups hibernate: three real brokers, a topic of
//! replication factor 3 that saw one record per partition and then
//! nothing; every broker's `ringlog_raft_groups_awake` drops to 0 and stays
//! there; the partitions of a leader SIGKILLed while everything sleeps
//! still get new leaders and take writes, and a leader paused while it
//! sleeps acknowledges nothing once it returns.

mod common;

use std::time::Duration;

use common::clients::{flush, producer, send};
use common::cluster::Cluster;
use common::metrics::scrape;
use common::raw::{self, error_code, RawClient};
use common::wait_until;
use rdkafka::producer::BaseRecord;

const TOPIC: &str = "idle";
const PARTITIONS: i32 = 6;
/// How long the groups may take to go to sleep once the writes are answered
/// (a leader sleeps after 30 quiet ticks of 100 ms).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Scrapes after the groups slept that must all find them asleep, and their spacing.
const QUIET_SCRAPES: usize = 10;
const QUIET_SCRAPE_EVERY: Duration = Duration::from_millis(300);

/// (awake, all) Raft groups of node `id`, summed over its shards.
fn groups(cluster: &mut Cluster, id: i32) -> (f64, f64) {
    let scrape = scrape(cluster.node(id).metrics_addr());
    let sum = |name: &str| {
        scrape
            .series
            .get(name)
            .map_or(0.0, |series| series.iter().map(|(_, v)| v).sum())
    };
    (sum("ringlog_raft_groups_awake"), sum("ringlog_raft_groups"))
}

fn produce_one_per_partition(bootstrap: &str) {
    let (producer, log) = producer(bootstrap, &[("message.timeout.ms", "60000")]);
    for partition in 0..PARTITIONS {
        send(
            &producer,
            BaseRecord::to(TOPIC)
                .partition(partition)
                .payload(b"once".as_slice()),
        );
    }
    flush(&producer);
    assert!(
        log.failures().is_empty(),
        "every record is acknowledged: {:?}",
        log.failures().first()
    );
}

/// Three brokers with metrics, the topic created, one record written to
/// each partition, and every Raft group of every broker asleep (checked
/// over several scrapes).
fn asleep_cluster() -> Cluster {
    let mut cluster = Cluster::builder(3).metrics().start();
    assert_eq!(
        cluster.create_topic(1, TOPIC, PARTITIONS, 3),
        error_code::NONE
    );
    for node in 1..=3 {
        cluster.wait_for_topic(node, TOPIC, PARTITIONS as usize);
    }
    let led = wait_until(SETTLE_TIMEOUT, || {
        (0..PARTITIONS).all(|p| cluster.partition_leader(TOPIC, p).is_some())
    });
    assert!(led, "every partition has a leader");
    produce_one_per_partition(&cluster.bootstrap());

    let mut seen = Vec::new();
    let asleep = wait_until(SETTLE_TIMEOUT, || {
        seen = (1..=3).map(|id| groups(&mut cluster, id)).collect();
        seen.iter().all(|&(awake, all)| awake == 0.0 && all > 0.0)
    });
    assert!(asleep, "every group sleeps: (awake, all) per node {seen:?}");
    for _ in 0..QUIET_SCRAPES {
        std::thread::sleep(QUIET_SCRAPE_EVERY);
        let now: Vec<(f64, f64)> = (1..=3).map(|id| groups(&mut cluster, id)).collect();
        assert!(
            now.iter().all(|&(awake, _)| awake == 0.0),
            "idle groups stay asleep: (awake, all) per node {now:?}"
        );
    }
    cluster
}

#[test]
fn idle_groups_sleep_and_a_killed_leaders_partitions_still_fail_over() {
    let mut cluster = asleep_cluster();
    // Fail-over while every group sleeps: the victim's lease runs out, the
    // controller fences it, and its followers wake and elect.
    let victim = cluster
        .partition_leader(TOPIC, 0)
        .expect("partition 0 has a leader");
    let victims: Vec<i32> = (0..PARTITIONS)
        .filter(|&p| cluster.partition_leader(TOPIC, p) == Some(victim))
        .collect();
    cluster.kill9(victim);
    for &partition in &victims {
        let leader = cluster.wait_for_leader_other_than(TOPIC, partition, victim);
        eprintln!("{TOPIC}-{partition}: led by {leader} after the kill of {victim}");
    }
    produce_one_per_partition(&cluster.bootstrap());
}

#[test]
fn a_leader_paused_while_asleep_acknowledges_nothing_once_it_returns() {
    let mut cluster = asleep_cluster();
    let victim = cluster
        .partition_leader(TOPIC, 0)
        .expect("partition 0 has a leader");
    cluster.pause(victim);
    let leader = cluster.wait_for_leader_other_than(TOPIC, 0, victim);
    cluster.resume(victim);
    // Its group still sleeps as leader of the old term; a write wakes it,
    // the others answer with the new term, and it steps down unacknowledged.
    let mut old = RawClient::connect_negotiated(cluster.node(victim).addr());
    let answer = raw::produce(&mut old, TOPIC, 0, &[(b"k", b"to the old leader")]);
    assert_ne!(
        answer.error_code,
        error_code::NONE,
        "the returned leader {victim} acknowledged a write after {leader} was elected"
    );
    let mut new = RawClient::connect_negotiated(cluster.node(leader).addr());
    let written = wait_until(SETTLE_TIMEOUT, || {
        raw::produce(&mut new, TOPIC, 0, &[(b"k", b"to the new leader")]).error_code
            == error_code::NONE
    });
    assert!(written, "the new leader {leader} takes writes");
}
