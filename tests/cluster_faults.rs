//! Faults under load, judged by the checker: idempotent acks=all producers
//! and consumers run against real brokers while a broker is killed, paused,
//! cut off from the others by a network partition or restarted; after the
//! heal the checker compares what clients saw with the final log and with
//! every replica's segment files.
//!
//! The cluster fault tests need partitions replicated on Raft; without it a
//! partition is served by its first live replica alone, and the checker
//! reports the writes a fail-over loses.
//!
//! `RINGLOG_FAULT_SEED` repeats a randomized run; `RINGLOG_FAULT_DURATION_S`
//! sets its length.

mod common;

use std::time::{Duration, Instant};

use common::checker::{self, check, FinalState, History, Report};
use common::cluster::Cluster;
use common::netns::{self, Network};
use common::workload::{self, Workload, WorkloadConfig};
use common::{unique_topic, Broker};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long the cluster may take to serve every partition again after a fault.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Writes acknowledged before a fault, so that it hits a log with data.
const ACKS_BEFORE_FAULT: usize = 150;
/// Writes to wait for after a fault (not asserted: the checker judges availability).
const ACKS_AFTER_FAULT: usize = 150;
/// How long to wait for either.
const ACKS_TIMEOUT: Duration = Duration::from_secs(40);
/// Longer than the controller's election timeout (1-2 s) and broker session (3 s).
const PAST_ELECTION_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a killed broker stays down, or a partition lasts, in the named tests.
const FAULT_HOLD: Duration = Duration::from_secs(6);
/// Default length of the randomized run.
const RANDOM_RUN_DEFAULT: Duration = Duration::from_secs(300);
/// Longer than the broker session timeout (3 s): a node down this long is fenced.
const PAST_SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// The most a rolling restart waits between two nodes.
const ROLLING_RESTART_GAP_MAX: Duration = Duration::from_secs(3);
const PARTITIONS: i32 = 3;
const REPLICATION: i16 = 3;

/// The faults the tests inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillLeader,
    KillController,
    PauseLeader,
    IsolateLeader,
    IsolateFollower,
    RollingRestart,
}

const ALL_FAULTS: [Fault; 6] = [
    Fault::KillLeader,
    Fault::KillController,
    Fault::PauseLeader,
    Fault::IsolateLeader,
    Fault::IsolateFollower,
    Fault::RollingRestart,
];

/// A three-node cluster (in network namespaces when `network` is given) with
/// an RF=3 topic of `partitions` partitions.
fn cluster_with_topic(network: Option<Network>, partitions: i32) -> (Cluster, String) {
    let mut builder = Cluster::builder(3);
    if let Some(network) = network {
        builder = builder.network(network);
    }
    let cluster = builder.start();
    let topic = unique_topic("faults");
    assert_eq!(
        cluster.create_topic(1, &topic, partitions, REPLICATION),
        common::raw::error_code::NONE
    );
    for id in cluster.ids() {
        cluster.wait_for_topic(id, &topic, partitions as usize);
    }
    (cluster, topic)
}

/// How long a group's first member may take to be assigned its partitions.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until the load runs: the group's member reads and `ACKS_BEFORE_FAULT`
/// writes are acknowledged.
fn wait_for_load(workload: &Workload) {
    if !workload.wait_for_member(MEMBER_TIMEOUT) {
        workload.history.note(format!(
            "the group's member had no partitions within {MEMBER_TIMEOUT:?}"
        ));
    }
    wait_for_acks(workload, ACKS_BEFORE_FAULT, "before the first fault");
}

fn wait_for_acks(workload: &Workload, more: usize, why: &str) {
    if !workload.wait_for_more_acks(more, ACKS_TIMEOUT) {
        workload.history.note(format!(
            "fewer than {more} writes acknowledged within {ACKS_TIMEOUT:?} {why}"
        ));
    }
}

/// Injects `fault` on `partition`'s leader (or the controller, or every node),
/// holds it for `hold`, then ends it (restart, SIGCONT, heal).
fn inject(
    fault: Fault,
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    history: &History,
    hold: Duration,
) {
    let leader = cluster.partition_leader(topic, partition);
    let controller = cluster.controller_leader();
    match fault {
        Fault::KillLeader | Fault::KillController => {
            let (target, role) = if fault == Fault::KillLeader {
                (leader, format!("leader of {topic}-{partition}"))
            } else {
                (controller, "controller leader".to_string())
            };
            let Some(node) = target else {
                history.note(format!("no {role} known: SIGKILL skipped"));
                return;
            };
            history.fault(&format!("SIGKILL node {node} ({role})"));
            cluster.kill9(node);
            std::thread::sleep(hold);
            cluster.restart(node);
        }
        Fault::PauseLeader => {
            let Some(node) = leader else {
                history.note(format!("no leader of {topic}-{partition}: SIGSTOP skipped"));
                return;
            };
            history.fault(&format!(
                "SIGSTOP node {node} (leader of {topic}-{partition})"
            ));
            cluster.pause(node);
            std::thread::sleep(hold.max(PAST_ELECTION_TIMEOUT));
            cluster.resume(node);
        }
        Fault::IsolateLeader | Fault::IsolateFollower => {
            let Some(leader) = leader else {
                history.note(format!(
                    "no leader of {topic}-{partition}: partition skipped"
                ));
                return;
            };
            let node = if fault == Fault::IsolateLeader {
                leader
            } else {
                cluster.other_than(leader, controller.unwrap_or(leader))
            };
            let others: Vec<i32> = cluster.ids().into_iter().filter(|&n| n != node).collect();
            let role = if node == leader { "leader" } else { "follower" };
            history.fault(&format!(
                "network partition isolating node {node} ({role} of {topic}-{partition})"
            ));
            let network = cluster.network().expect("network faults need namespaces");
            network.isolate(node, &others);
            std::thread::sleep(hold);
            network.heal();
        }
        Fault::RollingRestart => {
            history.fault("rolling restart of every node");
            // Each node down past the broker session timeout, so its
            // leaderships move, as a controlled shutdown would move them.
            cluster.rolling_restart(PAST_SESSION_TIMEOUT, hold.min(ROLLING_RESTART_GAP_MAX));
        }
    }
}

/// Runs the load on a fresh cluster, injects `fault` once, heals and checks.
fn one_fault(fault: Fault, partitions: i32) -> Option<(String, Report)> {
    let network = match fault {
        Fault::IsolateLeader | Fault::IsolateFollower => {
            Some(Network::create(&format!("cluster_faults {fault:?}"), 3)?)
        }
        _ => None,
    };
    let (mut cluster, topic) = cluster_with_topic(network, partitions);
    let config = WorkloadConfig::new(&topic, partitions);
    let workload = Workload::start(&cluster.bootstrap(), &config);
    wait_for_load(&workload);
    inject(
        fault,
        &mut cluster,
        &topic,
        0,
        &workload.history,
        FAULT_HOLD,
    );
    wait_for_acks(&workload, ACKS_AFTER_FAULT, "after the fault");
    let (observed, final_state) =
        workload::finish_cluster(&mut cluster, workload, &topic, partitions);
    let report = check(&observed, &final_state, RECOVERY_BOUND);
    Some((format!("{fault:?}"), report))
}

#[test]
fn sigkill_of_a_partition_leader_then_restart_loses_no_acknowledged_write() {
    if let Some((title, report)) = one_fault(Fault::KillLeader, PARTITIONS) {
        report.print_and_assert_clean(&title);
    }
}

#[test]
fn sigkill_of_the_controller_leader_loses_no_acknowledged_write() {
    if let Some((title, report)) = one_fault(Fault::KillController, PARTITIONS) {
        report.print_and_assert_clean(&title);
    }
}

#[test]
fn a_leader_paused_past_the_election_timeout_acknowledges_nothing_once_fenced() {
    // A write the fenced leader acknowledged after SIGCONT is not in the
    // new leader's log: the checker reports it as a lost write.
    if let Some((title, report)) = one_fault(Fault::PauseLeader, PARTITIONS) {
        report.print_and_assert_clean(&title);
    }
}

#[test]
fn a_network_partition_isolating_a_leader_loses_no_acknowledged_write() {
    if let Some((title, report)) = one_fault(Fault::IsolateLeader, PARTITIONS) {
        report.print_and_assert_clean(&title);
    }
}

#[test]
fn a_network_partition_isolating_a_follower_loses_no_acknowledged_write() {
    // One partition, so that the isolated node follows and leads nothing.
    if let Some((title, report)) = one_fault(Fault::IsolateFollower, 1) {
        report.print_and_assert_clean(&title);
    }
}

#[test]
fn a_rolling_restart_of_all_three_loses_no_acknowledged_write() {
    if let Some((title, report)) = one_fault(Fault::RollingRestart, PARTITIONS) {
        report.print_and_assert_clean(&title);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
    )
}

#[test]
#[ignore = "long: mixes every fault for RINGLOG_FAULT_DURATION_S (default 300 s)"]
fn randomized_faults_lose_no_acknowledged_write() {
    let seed = env_u64("RINGLOG_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let duration =
        env_u64("RINGLOG_FAULT_DURATION_S").map_or(RANDOM_RUN_DEFAULT, Duration::from_secs);
    eprintln!(
        "randomized faults: seed {seed} (RINGLOG_FAULT_SEED={seed} repeats it), {duration:?}"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(network) = Network::create("cluster_faults randomized", 3) else {
        return;
    };
    let (mut cluster, topic) = cluster_with_topic(Some(network), PARTITIONS);
    let workload = Workload::start(
        &cluster.bootstrap(),
        &WorkloadConfig::new(&topic, PARTITIONS),
    );
    wait_for_load(&workload);
    let end = Instant::now() + duration;
    let mut injected = Vec::new();
    while Instant::now() < end {
        let fault = ALL_FAULTS[rng.gen_range(0..ALL_FAULTS.len())];
        let partition = rng.gen_range(0..PARTITIONS);
        let hold = Duration::from_millis(rng.gen_range(1_000..10_000));
        inject(
            fault,
            &mut cluster,
            &topic,
            partition,
            &workload.history,
            hold,
        );
        injected.push(fault);
        std::thread::sleep(Duration::from_millis(rng.gen_range(2_000..8_000)));
    }
    wait_for_acks(&workload, ACKS_AFTER_FAULT, "after the last fault");
    let (observed, final_state) =
        workload::finish_cluster(&mut cluster, workload, &topic, PARTITIONS);
    let report = check(&observed, &final_state, RECOVERY_BOUND);
    report.print_and_assert_clean(&format!("seed {seed}, faults {injected:?}"));
}

#[test]
fn a_single_broker_killed_under_idempotent_acks_all_load_loses_no_acknowledged_write() {
    let mut broker = Broker::start();
    let topic = unique_topic("single-kill");
    let config = WorkloadConfig::new(&topic, PARTITIONS);
    common::clients::create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let workload = Workload::start(&broker.bootstrap(), &config);
    wait_for_load(&workload);
    workload.history.fault("SIGKILL of the only broker");
    broker.kill9();
    std::thread::sleep(Duration::from_secs(1));
    broker.start_again();
    wait_for_acks(&workload, ACKS_AFTER_FAULT, "after the restart");
    let history = workload.stop();
    let drained = workload::drain(&broker.bootstrap(), &topic, PARTITIONS)
        .unwrap_or_else(|error| panic!("the final drain: {error}"));
    broker.stop();
    let replicas = (0..PARTITIONS)
        .map(|p| {
            let dir = broker.data_dir().join(format!("{topic}-{p}"));
            checker::read_replica(1, p, &dir).unwrap_or_else(|e| panic!("{}", e.0))
        })
        .collect();
    let final_state = FinalState { drained, replicas };
    let report = check(&history.snapshot(), &final_state, RECOVERY_BOUND);
    report.print_and_assert_clean("single broker SIGKILL");
    assert!(
        report.acked >= ACKS_BEFORE_FAULT + ACKS_AFTER_FAULT,
        "{report}"
    );
    assert!(report.read > 0, "consumers read: {report}");
    assert!(report.commits > 0, "the group committed: {report}");
    assert_eq!(report.recoveries.len(), 1);
}

#[test]
fn the_cluster_harness_finds_leaders_pauses_kills_and_restarts_nodes() {
    let (mut cluster, topic) = cluster_with_topic(None, PARTITIONS);
    let controller = cluster.controller_leader().expect("a controller leader");
    let leader = cluster
        .partition_leader(&topic, 0)
        .expect("a leader of partition 0");
    assert!(cluster.ids().contains(&controller) && cluster.ids().contains(&leader));

    // A paused node answers nothing; the others still do.
    let paused = cluster.other_than(controller, controller);
    cluster.pause(paused);
    assert!(
        cluster.try_metadata(paused).is_none(),
        "node {paused} is paused"
    );
    let running = cluster.other_than(paused, paused);
    assert!(cluster.try_metadata(running).is_some());
    cluster.resume(paused);
    assert!(
        common::wait_until(Duration::from_secs(10), || cluster
            .try_metadata(paused)
            .is_some()),
        "node {paused} answers again after SIGCONT"
    );

    // A killed partition leader hands the partition to another replica.
    cluster.kill9(leader);
    let next = cluster.wait_for_leader_other_than(&topic, 0, leader);
    assert_ne!(next, leader);
    cluster.restart(leader);
    cluster.wait_for_brokers(leader, 3);

    cluster.rolling_restart(Duration::ZERO, Duration::ZERO);
    for id in cluster.ids() {
        cluster.wait_for_topic(id, &topic, PARTITIONS as usize);
    }
    cluster.stop_all();
    assert!(cluster.nodes.iter().all(|n| n.pid().is_none()));
}

#[test]
fn network_namespaces_cut_a_broker_off_heal_and_are_removed_on_drop() {
    let Some(network) = Network::create("cluster_faults network", 3) else {
        return;
    };
    let (namespaces, bridge) = network.names();
    let (cluster, topic) = cluster_with_topic(Some(network), 1);
    let network = cluster.network().expect("the cluster runs in namespaces");
    // Clients in the root namespace reach every node on its own address.
    for id in cluster.ids() {
        let metadata = cluster.try_metadata(id).expect("node answers");
        let own = metadata
            .brokers
            .iter()
            .find(|b| b.node_id.0 == id)
            .expect("lists itself");
        assert_eq!(own.host.as_str(), network.ip(id));
    }

    // Cut the controller leader off: the other two elect another and stop
    // listing it; it no longer reaches them.
    let cut = cluster.controller_leader().expect("a controller leader");
    let others: Vec<i32> = cluster.ids().into_iter().filter(|&n| n != cut).collect();
    network.isolate(cut, &others);
    assert_eq!(
        network.blackholes_of(cut).len(),
        2,
        "{:?}",
        network.blackholes_of(cut)
    );
    let survivor = others[0];
    let new = cluster.wait_for_brokers(survivor, 2);
    assert_ne!(new, cut, "the majority elects a new controller");

    network.heal();
    assert!(network.blackholes_of(cut).is_empty());
    for id in cluster.ids() {
        cluster.wait_for_brokers(id, 3);
    }
    cluster.wait_for_topic(cut, &topic, 1);
    drop(cluster);
    for namespace in &namespaces {
        assert!(!netns::namespace_exists(namespace), "{namespace} removed");
    }
    assert!(!netns::link_exists(&bridge), "{bridge} removed");
}

#[test]
fn network_namespaces_are_removed_after_a_failed_test_and_leftovers_of_a_dead_run() {
    let Some(probe) = Network::create("cluster_faults teardown", 1) else {
        return;
    };
    drop(probe);
    // A panicking test still removes its network.
    let names = std::panic::catch_unwind(|| {
        let network = Network::create("cluster_faults teardown", 2).expect("made before");
        let names = network.names();
        std::panic::panic_any(names);
    })
    .expect_err("the closure panics");
    let (namespaces, bridge) = *names
        .downcast::<(Vec<String>, String)>()
        .expect("the names");
    assert!(namespaces.iter().all(|n| !netns::namespace_exists(n)));
    assert!(!netns::link_exists(&bridge));

    // What a killed run left behind (its process is gone) goes before a new network.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead = gone.id();
    gone.wait().expect("reaped");
    let leftover = format!("rlf-{dead}x0-1");
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &leftover])
        .status()
        .expect("ip runs");
    assert!(made.success());
    let network = Network::create("cluster_faults teardown", 1).expect("made before");
    assert!(!netns::namespace_exists(&leftover), "{leftover} removed");
    drop(network);
}
