//! A local cluster of real `ringlog` processes: each node a [`Broker`] with
//! `--node-id`, `--controller-quorum-voters` and `--cluster-listen` on
//! loopback ports of its own, and helpers that read the cluster's metadata
//! from one chosen node with the raw client.

use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

use super::raw::RawClient;
use super::{free_port, wait_until, Broker};

/// How long a cluster may take to elect a controller and register its brokers.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long committed metadata may take to reach every broker.
pub const METADATA_SPREAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Highest Metadata version the helpers ask for (leader epochs and topic ids).
const METADATA_VERSION_MAX: i16 = 12;

pub struct Cluster {
    /// `nodes[i]` is node id `i + 1`.
    pub nodes: Vec<Broker>,
    /// `cluster_ports[i]`: node `i + 1`'s inter-broker port.
    pub cluster_ports: Vec<u16>,
}

impl Cluster {
    /// Starts `count` nodes, all voters, and waits until every node lists
    /// all of them with a controller.
    pub fn start(count: usize) -> Cluster {
        let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let voters = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes: Vec<Broker> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                Broker::builder()
                    .arg("--node-id")
                    .arg(&(i + 1).to_string())
                    .arg("--controller-quorum-voters")
                    .arg(&voters)
                    .arg("--cluster-listen")
                    .arg(&format!("127.0.0.1:{port}"))
                    .start()
            })
            .collect();
        let cluster = Cluster {
            nodes,
            cluster_ports,
        };
        for node in 1..=count as i32 {
            cluster.wait_for_brokers(node, count);
        }
        cluster
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
}
