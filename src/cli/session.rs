//! The admin tool's view of a cluster: a connection to the bootstrap
//! broker, one more per broker a request must reach (partition leaders,
//! group coordinators), versions negotiated on each, every call bounded.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::net::ToSocketAddrs;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use ringlog::client::{ClientError, ClientSecurity, Connection};

use super::error::{check, CliError};

/// How the tool names itself to brokers (`client.id`).
pub const CLIENT_ID: &str = "ringlog-cli";
/// Kafka's "no leader" node id.
const NO_LEADER: i32 = -1;
/// FindCoordinator's key type for a consumer group.
const COORDINATOR_KEY_GROUP: i8 = 0;

/// Versions this tool speaks per API (inclusive): up to the last version
/// with the request shape it builds (names, not topic ids; one group per
/// OffsetFetch and FindCoordinator).
pub mod versions {
    pub const METADATA: (i16, i16) = (1, 12);
    pub const FIND_COORDINATOR: (i16, i16) = (1, 3);
    pub const LIST_OFFSETS: (i16, i16) = (1, 7);
    pub const PRODUCE: (i16, i16) = (3, 12);
    pub const FETCH: (i16, i16) = (4, 12);
    pub const CREATE_TOPICS: (i16, i16) = (2, 7);
    pub const DELETE_TOPICS: (i16, i16) = (1, 5);
    pub const CREATE_PARTITIONS: (i16, i16) = (0, 3);
    pub const DESCRIBE_CONFIGS: (i16, i16) = (1, 4);
    pub const INCREMENTAL_ALTER_CONFIGS: (i16, i16) = (0, 1);
    pub const LIST_GROUPS: (i16, i16) = (0, 4);
    pub const DESCRIBE_GROUPS: (i16, i16) = (0, 5);
    pub const DELETE_GROUPS: (i16, i16) = (0, 2);
    pub const OFFSET_FETCH: (i16, i16) = (2, 7);
    pub const OFFSET_COMMIT: (i16, i16) = (2, 8);
    pub const ELECT_LEADERS: (i16, i16) = (0, 2);
}

/// Which broker a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bootstrap broker (any broker answers cluster-wide requests).
    Any,
    /// The broker with this node id, as metadata or FindCoordinator named it.
    Node(i32),
}

/// One partition of a topic as metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic as metadata describes it, partitions in index order.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn partition_indexes(&self) -> Vec<i32> {
        self.partitions.iter().map(|p| p.index).collect()
    }

    /// `partitions` grouped by the broker that leads them.
    pub fn by_leader(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Vec<i32>>, CliError> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &index in partitions {
            let partition = self
                .partitions
                .iter()
                .find(|p| p.index == index)
                .ok_or_else(|| {
                    CliError::usage(format!("topic {} has no partition {index}", self.name))
                })?;
            if partition.leader == NO_LEADER {
                return Err(CliError::Answer(format!(
                    "partition {}/{index} has no leader",
                    self.name
                )));
            }
            groups.entry(partition.leader).or_default().push(index);
        }
        Ok(groups)
    }
}

pub struct Session {
    bootstrap: String,
    timeout: Duration,
    /// TLS and SASL of every connection (`-X` settings).
    security: ClientSecurity,
    control: Connection,
    /// node id -> "host:port", from metadata and FindCoordinator answers.
    addresses: HashMap<i32, String>,
    nodes: HashMap<i32, Connection>,
}

impl Session {
    /// Connects to `bootstrap` and negotiates versions; `timeout` bounds the
    /// connect and every later read and write.
    pub fn connect(
        bootstrap: &str,
        timeout: Duration,
        security: ClientSecurity,
    ) -> Result<Session, CliError> {
        Ok(Session {
            bootstrap: bootstrap.to_string(),
            timeout,
            control: open(bootstrap, timeout, &security)?,
            security,
            addresses: HashMap::new(),
            nodes: HashMap::new(),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the request `build` makes for the version picked from `ours`
    /// and the target broker's range, and waits for the answer.
    pub fn call<R: Request>(
        &mut self,
        target: Target,
        ours: (i16, i16),
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, CliError> {
        let timeout = Some(self.timeout);
        let (addr, connection) = self.connection(target)?;
        let version = connection
            .versions()
            .pick::<R>(ours)
            .map_err(|source| broker_error(&addr, source, None))?;
        connection
            .call(&build(version), version)
            .map_err(|source| broker_error(&addr, source, timeout))
    }

    /// The version `call` would pick for `R` on the bootstrap broker.
    pub fn version<R: Request>(&self, ours: (i16, i16)) -> Result<i16, CliError> {
        self.control
            .versions()
            .pick::<R>(ours)
            .map_err(|source| broker_error(&self.bootstrap, source, None))
    }

    fn connection(&mut self, target: Target) -> Result<(String, &mut Connection), CliError> {
        let node = match target {
            Target::Any => return Ok((self.bootstrap.clone(), &mut self.control)),
            Target::Node(node) => node,
        };
        let addr = self
            .addresses
            .get(&node)
            .cloned()
            .ok_or_else(|| CliError::Answer(format!("no address known for broker {node}")))?;
        if addr == self.bootstrap {
            return Ok((addr, &mut self.control));
        }
        if !self.nodes.contains_key(&node) {
            let connection = open(&addr, self.timeout, &self.security)?;
            self.nodes.insert(node, connection);
        }
        let connection = self.nodes.get_mut(&node).expect("inserted above");
        Ok((addr, connection))
    }

    /// Metadata for `topics` (all topics for `None`), never creating one;
    /// remembers every broker's address.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, CliError> {
        let response = self.call(Target::Any, versions::METADATA, |_| {
            MetadataRequest::default()
                .with_topics(topics.map(|names| {
                    names
                        .iter()
                        .map(|name| {
                            MetadataRequestTopic::default().with_name(Some(topic_name(name)))
                        })
                        .collect()
                }))
                .with_allow_auto_topic_creation(false)
        })?;
        for broker in &response.brokers {
            self.addresses
                .insert(broker.node_id.0, format!("{}:{}", broker.host, broker.port));
        }
        Ok(response)
    }

    /// One topic's partitions and leaders; an unknown topic is an error.
    pub fn topic(&mut self, name: &str) -> Result<TopicInfo, CliError> {
        let response = self.metadata(Some(&[name.to_string()]))?;
        let topic = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or_else(|| CliError::Answer(format!("topic {name}: not in the metadata answer")))?;
        if ResponseError::try_from_code(topic.error_code)
            == Some(ResponseError::UnknownTopicOrPartition)
        {
            return Err(CliError::Answer(format!("topic {name} does not exist")));
        }
        check(topic.error_code, None, || format!("topic {name}"))?;
        let mut partitions: Vec<PartitionInfo> = topic
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                index: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|p| p.index);
        if partitions.is_empty() {
            return Err(CliError::Answer(format!("topic {name} has no partitions")));
        }
        Ok(TopicInfo {
            name: name.to_string(),
            partitions,
        })
    }

    /// The node id of `group`'s coordinator (its address remembered).
    pub fn coordinator(&mut self, group: &str) -> Result<i32, CliError> {
        let response = self.call(Target::Any, versions::FIND_COORDINATOR, |_| {
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string()))
                .with_key_type(COORDINATOR_KEY_GROUP)
        })?;
        check(
            response.error_code,
            response.error_message.as_deref(),
            || format!("finding the coordinator of group {group}"),
        )?;
        self.addresses.insert(
            response.node_id.0,
            format!("{}:{}", response.host, response.port),
        );
        Ok(response.node_id.0)
    }

    /// Every broker's node id, from a fresh metadata answer.
    pub fn broker_ids(&mut self) -> Result<Vec<i32>, CliError> {
        let response = self.metadata(Some(&[]))?;
        let mut ids: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        ids.sort_unstable();
        Ok(ids)
    }
}

/// Resolves `addr`, connects within `timeout` (TLS, SASL as `security`
/// says) and negotiates versions.
fn open(addr: &str, timeout: Duration, security: &ClientSecurity) -> Result<Connection, CliError> {
    addr.to_socket_addrs()
        .map_err(|e| CliError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| CliError::Resolve {
            addr: addr.to_string(),
            reason: "no addresses".to_string(),
        })?;
    Connection::open(addr, timeout, CLIENT_ID, security)
        .map_err(|source| broker_error(addr, source, Some(timeout)))
}

/// A client error as one line that names the broker; a read or write that
/// ran past `timeout` says so instead of "resource temporarily unavailable".
fn broker_error(addr: &str, source: ClientError, timeout: Option<Duration>) -> CliError {
    match source {
        ClientError::Connect { source, .. } => CliError::Unreachable {
            addr: addr.to_string(),
            source,
        },
        ClientError::Io(error)
            if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            CliError::Timeout {
                addr: addr.to_string(),
                timeout: timeout.unwrap_or_default(),
            }
        }
        source => CliError::Broker {
            addr: addr.to_string(),
            source,
        },
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// The replica id a client (not a follower) sends.
pub fn consumer_replica_id() -> BrokerId {
    BrokerId(-1)
}
