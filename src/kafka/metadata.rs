//! Metadata (with auto topic creation) and DescribeCluster. A single broker
//! is node 0, leader of every partition, its only replica; in a cluster the
//! answer comes from the replicated metadata (live brokers, the controller,
//! each partition's leader, leader epoch and replicas).

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::{allows_everything, may_create_topic, require_cluster, topic_allowed};
use super::metadata_cache;
use super::session::listener_of;
use super::{Outcome, Request, CLUSTER_ID, NODE_ID};
use crate::cluster::state::TopicRecord;
use crate::cluster::view::Leadership;
use crate::cluster::ClusterView;
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::admin::{NewTopic, TopicChangeError};
use crate::shard::topics::{is_valid_topic_name, TopicInfo};
use crate::shard::Shard;

pub const VERSIONS: RangeInclusive<i16> = 0..=12;
pub const DESCRIBE_CLUSTER_VERSIONS: RangeInclusive<i16> = 0..=1;

/// KIP-430: "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// This broker as the client's listener advertises it.
fn broker(shard: &Shard, request: &Request) -> MetadataResponseBroker {
    let listener = listener_of(shard, request.session.listener);
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(listener.advertised_host.clone()))
        .with_port(listener.advertised_port as i32)
}

/// Every live broker of a cluster, at its first listener's advertised address.
fn cluster_brokers(view: &ClusterView) -> Vec<MetadataResponseBroker> {
    view.brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port as i32)
        })
        .collect()
}

/// A cluster topic's partitions: leader and epoch from the view's
/// leadership (leaders report themselves there); a fenced broker's
/// replicas are offline. The ISR is the leader and the replicas it last
/// reported caught up.
fn cluster_partitions(
    name: &str,
    record: &TopicRecord,
    view: &ClusterView,
    version: i16,
) -> Vec<MetadataResponsePartition> {
    let ids = |nodes: &mut dyn Iterator<Item = i32>| nodes.map(BrokerId).collect::<Vec<_>>();
    record
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let leadership = view.leadership(name, index).unwrap_or(Leadership {
                leader: -1,
                epoch: -1,
            });
            let (leader, epoch) = (leadership.leader, leadership.epoch);
            let error = if leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            let offline = ids(&mut p
                .replicas
                .iter()
                .copied()
                .filter(|r| !view.brokers.iter().any(|b| b.node == *r)));
            let partition = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(if version >= 7 { epoch } else { -1 })
                .with_replica_nodes(ids(&mut p.replicas.iter().copied()))
                .with_isr_nodes(ids(&mut p.in_sync().into_iter()));
            if version >= 5 {
                partition.with_offline_replicas(offline)
            } else {
                partition
            }
        })
        .collect()
}

/// Fields a version does not carry must stay at their defaults, or encoding fails.
pub(super) fn describe_topic(
    topic: &TopicInfo,
    view: Option<&ClusterView>,
    version: i16,
) -> MetadataResponseTopic {
    let partitions = match view {
        Some(view) => match view.topics.get(&*topic.name) {
            Some(record) => cluster_partitions(&topic.name, record, view, version),
            // Applied on this broker, not yet in its view: a moment away.
            None => {
                let id = if version >= 10 {
                    topic.id
                } else {
                    uuid::Uuid::nil()
                };
                let name = Some(topic_name(&topic.name));
                return topic_error(name, id, ResponseError::LeaderNotAvailable);
            }
        },
        None => (0..topic.partition_count())
            .map(|index| single_broker_partition(index, version))
            .collect(),
    };
    topic_without_partitions(topic, version).with_partitions(partitions)
}

/// A described topic before its partitions are added.
pub(super) fn topic_without_partitions(topic: &TopicInfo, version: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(if version >= 10 {
            topic.id
        } else {
            uuid::Uuid::nil()
        })
        .with_is_internal(version >= 1 && &*topic.name == crate::group::OFFSETS_TOPIC)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// A partition of a single broker, which leads it and is its only replica.
/// Partitions differ only in their index.
pub(super) fn single_broker_partition(index: i32, version: i16) -> MetadataResponsePartition {
    MetadataResponsePartition::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(NODE_ID))
        .with_leader_epoch(if version >= 7 { 0 } else { -1 })
        .with_replica_nodes(vec![BrokerId(NODE_ID)])
        .with_isr_nodes(vec![BrokerId(NODE_ID)])
}

fn topic_error(
    name: Option<TopicName>,
    id: uuid::Uuid,
    error: ResponseError,
) -> MetadataResponseTopic {
    // Only v10+ asks by id, so an id here is always encodable.
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Creates `name` with the broker defaults if auto-creation allows it.
/// Fails with the error the request should report for this topic.
pub async fn auto_create(shard: &Rc<Shard>, name: &str) -> Result<(), ResponseError> {
    if !is_valid_topic_name(name) {
        return Err(ResponseError::InvalidTopicException);
    }
    if !shard.config.auto_create_topics {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let topic = NewTopic {
        name: name.to_string(),
        partitions: shard.config.default_partitions,
        replication_factor: -1,
        configs: Default::default(),
    };
    match shard.create_topics(vec![topic], false).await.pop() {
        Some(Ok(())) | Some(Err(TopicChangeError::AlreadyExists(_))) => Ok(()),
        Some(Err(error)) => {
            tracing::warn!(topic = name, %error, "auto-creating a topic failed");
            Err(ResponseError::UnknownTopicOrPartition)
        }
        None => Err(ResponseError::UnknownTopicOrPartition),
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: MetadataRequest) -> Outcome {
    let version = request.version();
    // v0: an empty list means every topic; v1+: null means every topic.
    let wanted = match body.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let allow_create = version < 4 || body.allow_auto_topic_creation;
    let view = shard.cluster.as_ref().map(|c| c.view());
    let view = view.as_deref();
    let describe_topic = |topic: &TopicInfo, version| describe_topic(topic, view, version);
    let describable = |name: &str| topic_allowed(shard, request, Operation::Describe, name);
    // In a cluster, leaders and live brokers change without the topic table.
    if wanted.is_none() && view.is_none() && allows_everything(shard, request) {
        return respond_with_every_topic(shard, request);
    }
    let topics = match wanted {
        // Every topic: only those the principal may describe are listed.
        None => shard
            .topics()
            .iter()
            .filter(|t| describable(&t.name))
            .map(|t| describe_topic(t, version))
            .collect(),
        Some(wanted) => {
            let mut topics = Vec::with_capacity(wanted.len());
            for entry in wanted {
                let table = shard.topics();
                let described = match entry.name {
                    None => match table.get_by_id(&entry.topic_id) {
                        Some(topic) if !describable(&topic.name) => topic_error(
                            None,
                            entry.topic_id,
                            ResponseError::TopicAuthorizationFailed,
                        ),
                        Some(topic) => describe_topic(topic, version),
                        None => topic_error(None, entry.topic_id, ResponseError::UnknownTopicId),
                    },
                    Some(name) if !describable(name.as_str()) => topic_error(
                        Some(name),
                        uuid::Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed,
                    ),
                    Some(name) => match table.get(name.as_str()) {
                        Some(topic) => describe_topic(topic, version),
                        None if allow_create
                            && !may_create_topic(shard, request, name.as_str()) =>
                        {
                            topic_error(
                                Some(name),
                                uuid::Uuid::nil(),
                                ResponseError::TopicAuthorizationFailed,
                            )
                        }
                        None if allow_create => match auto_create(shard, name.as_str()).await {
                            Ok(()) => match shard.topics().get(name.as_str()) {
                                Some(topic) => describe_topic(topic, version),
                                None => topic_error(
                                    Some(name),
                                    uuid::Uuid::nil(),
                                    ResponseError::LeaderNotAvailable,
                                ),
                            },
                            Err(error) => topic_error(Some(name), uuid::Uuid::nil(), error),
                        },
                        None => {
                            let error = if is_valid_topic_name(name.as_str()) {
                                ResponseError::UnknownTopicOrPartition
                            } else {
                                ResponseError::InvalidTopicException
                            };
                            topic_error(Some(name), uuid::Uuid::nil(), error)
                        }
                    },
                };
                topics.push(described);
            }
            topics
        }
    };
    request.respond(&answer(shard, request, view).with_topics(topics))
}

/// The answer without its topics: in a cluster, every live broker and the
/// controller from this broker's view.
fn answer(shard: &Shard, request: &Request, view: Option<&ClusterView>) -> MetadataResponse {
    let version = request.version();
    let (brokers, controller) = match view {
        Some(view) => (cluster_brokers(view), view.controller.unwrap_or(-1)),
        None => (vec![broker(shard, request)], NODE_ID),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(if version >= 1 { controller } else { -1 }))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Every topic of a single broker, for a principal that may describe all of
/// them: the topic list comes encoded from the shard's cache.
fn respond_with_every_topic(shard: &Shard, request: &Request) -> Outcome {
    let version = request.version();
    let table = shard.topics();
    let describe = metadata_cache::Describe {
        topic: &|t| topic_without_partitions(t, version),
        partition: &|index| single_broker_partition(index, version),
    };
    match metadata_cache::topics_of(&table, version, describe) {
        Ok(topics) => metadata_cache::splice(
            request.respond(&answer(shard, request, None)),
            topics,
            version,
        ),
        Err(error) => Outcome::Close(format!("cannot encode the topic list: {error}")),
    }
}

pub async fn handle_describe_cluster(
    shard: &Rc<Shard>,
    request: &Request,
    _body: DescribeClusterRequest,
) -> Outcome {
    if let Err(error) = require_cluster(shard, request, Operation::Describe) {
        return request.respond(&DescribeClusterResponse::default().with_error_code(error.code()));
    }
    let listener = listener_of(shard, request.session.listener);
    let (brokers, controller) = match shard.cluster.as_ref().map(|c| c.view()) {
        Some(view) => (
            view.brokers
                .iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node))
                        .with_host(StrBytes::from_string(b.host.clone()))
                        .with_port(b.port as i32)
                })
                .collect(),
            view.controller.unwrap_or(-1),
        ),
        None => (
            vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(NODE_ID))
                .with_host(StrBytes::from_string(listener.advertised_host.clone()))
                .with_port(listener.advertised_port as i32)],
            NODE_ID,
        ),
    };
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    request.respond(&response)
}

kafka_api!(Metadata: Metadata, VERSIONS, MetadataRequest => handle);

kafka_api!(DescribeCluster: DescribeCluster, DESCRIBE_CLUSTER_VERSIONS, DescribeClusterRequest => handle_describe_cluster);
