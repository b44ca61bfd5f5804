//! A local cluster of real `ringlog` processes: each node a [`Broker`] with
//! `--node-id`, `--controller-quorum-voters` and `--cluster-listen` on
//! loopback ports of its own, and helpers that read the cluster's metadata
//! from one chosen node with the raw client.

use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::{Message as _, StrBytes};
use ringlog::client::Connection;

use super::netns::Network;
use super::raw::RawClient;
use super::{free_port, wait_until, Broker};

/// How long a cluster may take to elect a controller and register its brokers.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long committed metadata may take to reach every broker.
pub const METADATA_SPREAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Highest Metadata version the helpers ask for (leader epochs and topic ids).
const METADATA_VERSION_MAX: i16 = 12;
/// How long a probe of one node may take before it counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Cluster {
    /// `nodes[i]` is node id `i + 1`.
    pub nodes: Vec<Broker>,
    /// `cluster_ports[i]`: node `i + 1`'s inter-broker port.
    pub cluster_ports: Vec<u16>,
    /// Nodes stopped with SIGSTOP and not yet resumed.
    paused: Vec<bool>,
    /// The namespaces the nodes run in, if any; dropped after the nodes.
    network: Option<Network>,
}

/// How a cluster is started: `Cluster::builder(3).network(net).start()`.
pub struct ClusterBuilder {
    count: usize,
    network: Option<Network>,
    extra_args: Vec<String>,
    metrics: bool,
}

impl ClusterBuilder {
    /// Run each node in its own network namespace of `network`, listening
    /// on its address there (clients and the cluster port alike).
    pub fn network(mut self, network: Network) -> Self {
        self.network = Some(network);
        self
    }

    /// Every node serves its metrics endpoint ([`Broker::metrics_addr`]).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// A further argument for every node.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Starts the nodes, all voters, and waits until every node lists all
    /// of them with a controller.
    pub fn start(self) -> Cluster {
        let count = self.count;
        let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let host = |node: usize| {
            self.network
                .as_ref()
                .map_or_else(|| "127.0.0.1".to_string(), |n| n.ip(node as i32))
        };
        let voters = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@{}:{port}", i + 1, host(i + 1)))
            .collect::<Vec<_>>()
            .join(",");
        let nodes: Vec<Broker> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let node = i + 1;
                let mut builder = Broker::builder()
                    .arg("--node-id")
                    .arg(&node.to_string())
                    .arg("--controller-quorum-voters")
                    .arg(&voters)
                    .arg("--cluster-listen")
                    .arg(&format!("{}:{port}", host(node)));
                for arg in &self.extra_args {
                    builder = builder.arg(arg);
                }
                if self.metrics {
                    builder = builder.metrics();
                }
                if let Some(network) = &self.network {
                    builder = builder
                        .host(&network.ip(node as i32))
                        .launcher(&network.launcher(node as i32));
                }
                builder.start()
            })
            .collect();
        let cluster = Cluster {
            nodes,
            cluster_ports,
            paused: vec![false; count],
            network: self.network,
        };
        for node in 1..=count as i32 {
            cluster.wait_for_brokers(node, count);
        }
        cluster
    }
}

impl Cluster {
    /// Starts `count` nodes, all voters, on loopback, and waits until every
    /// node lists all of them with a controller.
    pub fn start(count: usize) -> Cluster {
        Cluster::builder(count).start()
    }

    pub fn builder(count: usize) -> ClusterBuilder {
        ClusterBuilder {
            count,
            network: None,
            extra_args: Vec::new(),
            metrics: false,
        }
    }

    /// The node ids, 1 to N.
    pub fn ids(&self) -> Vec<i32> {
        (1..=self.nodes.len() as i32).collect()
    }

    /// The network namespaces, when the cluster runs in them.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    pub fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    /// `bootstrap.servers` naming every node that is running.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(|n| n.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Metadata for every topic, as node `id` answers it.
    pub fn metadata(&self, id: i32) -> MetadataResponse {
        let mut client = RawClient::connect_negotiated(self.nodes[id as usize - 1].addr());
        client.call_negotiated(
            &MetadataRequest::default().with_topics(None),
            METADATA_VERSION_MAX,
        )
    }

    /// Waits until node `id` lists `count` live brokers and a controller;
    /// returns the controller's id.
    pub fn wait_for_brokers(&self, id: i32, count: usize) -> i32 {
        let mut last = None;
        let ready = wait_until(CLUSTER_READY_TIMEOUT, || {
            let metadata = self.metadata(id);
            let ok = metadata.brokers.len() == count && metadata.controller_id.0 > 0;
            last = Some(metadata);
            ok
        });
        let last = last.expect("polled at least once");
        assert!(
            ready,
            "node {id} did not list {count} brokers and a controller within {CLUSTER_READY_TIMEOUT:?}: {:?} controller {}",
            last.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
            last.controller_id.0
        );
        last.controller_id.0
    }

    /// Waits until node `id` lists `topic` with `partitions` partitions.
    pub fn wait_for_topic(&self, id: i32, topic: &str, partitions: usize) -> MetadataResponse {
        let mut last = None;
        let listed = wait_until(METADATA_SPREAD_TIMEOUT, || {
            let metadata = self.metadata(id);
            let ok = metadata.topics.iter().any(|t| {
                t.name.as_ref().is_some_and(|n| n.as_str() == topic)
                    && t.partitions.len() == partitions
                    && t.partitions.iter().all(|p| p.leader_id.0 > 0)
            });
            last = Some(metadata);
            ok
        });
        assert!(
            listed,
            "node {id} did not list {topic} with {partitions} led partitions within {METADATA_SPREAD_TIMEOUT:?}"
        );
        last.expect("polled at least once")
    }

    /// CreateTopics through node `id`; returns the topic's error code.
    pub fn create_topic(&self, id: i32, topic: &str, partitions: i32, replication: i16) -> i16 {
        self.create_topic_with_configs(id, topic, partitions, replication, &[])
    }

    /// [`create_topic`](Self::create_topic) with topic configs.
    pub fn create_topic_with_configs(
        &self,
        id: i32,
        topic: &str,
        partitions: i32,
        replication: i16,
        configs: &[(&str, &str)],
    ) -> i16 {
        let mut client = RawClient::connect_negotiated(self.nodes[id as usize - 1].addr());
        let configs = configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_value(Some(StrBytes::from_string(value.to_string())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(20_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(replication)
                .with_configs(configs)]);
        let response = client.call_negotiated(&request, 7);
        response.topics[0].error_code
    }

    /// Metadata for every topic as node `id` answers it, or `None` when it
    /// does not answer within [`PROBE_TIMEOUT`] (dead, paused, unreachable).
    pub fn try_metadata(&self, id: i32) -> Option<MetadataResponse> {
        let broker = &self.nodes[id as usize - 1];
        if broker.pid().is_none() || self.paused[id as usize - 1] {
            return None;
        }
        let mut connection =
            Connection::connect_timeout(broker.addr(), PROBE_TIMEOUT, "ringlog-cluster-probe")
                .ok()?;
        connection.negotiate().ok()?;
        let version = connection
            .versions()
            .pick::<MetadataRequest>((MetadataRequest::VERSIONS.min, METADATA_VERSION_MAX))
            .ok()?;
        connection
            .call(&MetadataRequest::default().with_topics(None), version)
            .ok()
    }

    /// The answer most running nodes give (`None` when none answers), so
    /// that a node cut off from the others is outvoted.
    fn most_say<T: Ord + Clone>(
        &self,
        answer: impl Fn(&MetadataResponse) -> Option<T>,
    ) -> Option<T> {
        let mut votes: std::collections::BTreeMap<T, usize> = Default::default();
        for id in self.ids() {
            if let Some(said) = self.try_metadata(id).as_ref().and_then(&answer) {
                *votes.entry(said).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(t, _)| t)
    }

    /// The controller's leader, as most running nodes name it.
    pub fn controller_leader(&self) -> Option<i32> {
        self.most_say(|m| (m.controller_id.0 > 0).then_some(m.controller_id.0))
    }

    /// The leader of `topic`'s `partition`, as most running nodes name it.
    pub fn partition_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.most_say(|m| {
            let topic = m
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
            let leader = topic
                .partitions
                .iter()
                .find(|p| p.partition_index == partition)?
                .leader_id
                .0;
            (leader > 0).then_some(leader)
        })
    }

    /// Waits until `topic`'s `partition` has a leader other than `not`.
    pub fn wait_for_leader_other_than(&self, topic: &str, partition: i32, not: i32) -> i32 {
        let mut leader = None;
        let moved = wait_until(CLUSTER_READY_TIMEOUT, || {
            leader = self.partition_leader(topic, partition);
            leader.is_some_and(|l| l != not)
        });
        assert!(
            moved,
            "{topic}-{partition} still led by {leader:?} (not {not}) after {CLUSTER_READY_TIMEOUT:?}"
        );
        leader.expect("checked above")
    }

    /// Waits until every running node names each partition of `topic` led
    /// by its preferred replica (the first), where automatic preferred-leader
    /// election leaves it while every broker lives; false on timeout.
    pub fn wait_for_preferred_leaders(&self, topic: &str) -> bool {
        let preferred = |m: &MetadataResponse| {
            m.topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
                .is_some_and(|t| {
                    !t.partitions.is_empty()
                        && t.partitions.iter().all(|p| {
                            p.replica_nodes
                                .first()
                                .is_some_and(|first| first.0 == p.leader_id.0)
                        })
                })
        };
        wait_until(CLUSTER_READY_TIMEOUT, || {
            self.ids()
                .into_iter()
                .all(|id| self.try_metadata(id).as_ref().is_some_and(preferred))
        })
    }

    /// A node that is neither `a` nor `b`.
    pub fn other_than(&self, a: i32, b: i32) -> i32 {
        self.ids()
            .into_iter()
            .find(|&id| id != a && id != b)
            .expect("a cluster of three or more")
    }

    /// SIGKILL node `id`.
    pub fn kill9(&mut self, id: i32) {
        self.resume(id);
        self.node(id).kill9();
    }

    /// Starts node `id` again on its port and data after a kill or stop.
    pub fn restart(&mut self, id: i32) {
        self.node(id).start_again();
    }

    /// SIGSTOP node `id`.
    pub fn pause(&mut self, id: i32) {
        self.node(id).pause();
        self.paused[id as usize - 1] = true;
    }

    /// SIGCONT node `id` if it is paused.
    pub fn resume(&mut self, id: i32) {
        if std::mem::take(&mut self.paused[id as usize - 1]) {
            self.node(id).resume();
        }
    }

    /// Stops (SIGTERM) every node in turn, keeps it down for `down`, starts
    /// it again and waits until the others list it and it ran for `between`,
    /// before the next goes. A `down` past the broker session timeout moves
    /// the node's leaderships away.
    pub fn rolling_restart(&mut self, down: Duration, between: Duration) {
        let count = self.nodes.len();
        for id in self.ids() {
            self.resume(id);
            let status = self.node(id).stop();
            assert!(status.success(), "node {id} stopped cleanly: {status}");
            std::thread::sleep(down);
            self.restart(id);
            self.wait_for_brokers(id, count);
            std::thread::sleep(between);
        }
    }

    /// Stops every node (SIGCONT first where paused, SIGKILL where SIGTERM
    /// is not enough), so their data directories can be read.
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            self.resume(id);
            let broker = self.node(id);
            if broker.pid().is_some() {
                let status = broker.stop();
                if !status.success() {
                    eprintln!("node {id} exited with {status} on SIGTERM");
                }
            }
        }
    }

    /// Node `id`'s directory of `topic`'s `partition`.
    pub fn partition_dir(&self, id: i32, topic: &str, partition: i32) -> std::path::PathBuf {
        self.nodes[id as usize - 1]
            .data_dir()
            .join(format!("{topic}-{partition}"))
    }
}
