//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions and
//! DeleteRecords. Topic changes run on the metadata shard (see
//! `shard::admin`); DeleteRecords goes to each partition's owner.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::{may_create_topic, topic_allowed};
use super::metadata::topic_name;
use super::partitioned::PartitionPlan;
use super::{Outcome, Request, NODE_ID};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::admin::{NewTopic, TopicChangeError};
use crate::shard::{PartitionId, Shard};
use crate::storage::Offset;
use crate::topic_config::CONFIG_DEFS;

pub const CREATE_TOPICS_VERSIONS: RangeInclusive<i16> = 2..=7;
pub const DELETE_TOPICS_VERSIONS: RangeInclusive<i16> = 1..=6;
pub const CREATE_PARTITIONS_VERSIONS: RangeInclusive<i16> = 0..=3;
pub const DELETE_RECORDS_VERSIONS: RangeInclusive<i16> = 0..=2;

/// The only replication factor a single broker can honour.
const REPLICATION_FACTOR: i16 = 1;

pub fn change_error(error: &TopicChangeError) -> ResponseError {
    match error {
        TopicChangeError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicChangeError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicChangeError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicChangeError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicChangeError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicChangeError::TimedOut(_) => ResponseError::RequestTimedOut,
        TopicChangeError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        TopicChangeError::OverBudget(_) => ResponseError::PolicyViolation,
        TopicChangeError::Failed(_) => ResponseError::UnknownServerError,
    }
}

fn message(text: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(text))
}

/// Replica placement asked by a client: on one broker, only `[NODE_ID]` per partition works.
fn assignment_is_local<'a>(
    mut replicas: impl Iterator<Item = &'a [kafka_protocol::messages::BrokerId]>,
) -> bool {
    replicas.all(|r| r.len() == 1 && r[0].0 == NODE_ID)
}

/// A topic the request itself already refuses, with the error and its message.
type Refusal = (ResponseError, String);

pub async fn handle_create_topics(
    shard: &Rc<Shard>,
    request: &Request,
    body: CreateTopicsRequest,
) -> Outcome {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = body
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    // Checks the request can make on its own; the rest is decided on the metadata shard.
    let checked: Vec<Result<NewTopic, Refusal>> = body
        .topics
        .iter()
        .map(|topic| {
            if !may_create_topic(shard, request, topic.name.as_str()) {
                return Err((
                    ResponseError::TopicAuthorizationFailed,
                    format!("not authorized to create topic '{}'", topic.name.as_str()),
                ));
            }
            check_new_topic(shard, topic, duplicates.contains(topic.name.as_str()))
        })
        .collect();
    let to_create: Vec<NewTopic> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let mut created = shard
        .create_topics(to_create, body.validate_only)
        .await
        .into_iter();
    let topics = body
        .topics
        .iter()
        .zip(checked)
        .map(|(topic, checked)| {
            let outcome = checked.and_then(|new| {
                created
                    .next()
                    .unwrap_or(Err(TopicChangeError::Failed("no answer".into())))
                    .map(|()| new)
                    .map_err(|e| (change_error(&e), e.to_string()))
            });
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(new) => created_topic_result(shard, request.version(), result, &new),
                Err((error, text)) => result
                    .with_error_code(error.code())
                    .with_error_message(message(text))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    request.respond(&CreateTopicsResponse::default().with_topics(topics))
}

/// The partition count and configs of one requested topic, or why the
/// request alone already refuses it.
fn check_new_topic(
    shard: &Shard,
    topic: &CreatableTopic,
    duplicate: bool,
) -> Result<NewTopic, Refusal> {
    let name = topic.name.to_string();
    if duplicate {
        return Err((
            ResponseError::InvalidRequest,
            format!("topic '{name}' appears more than once in the request"),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "give either assignments or partitions and replication factor".into(),
            ));
        }
        if !assignment_is_local(topic.assignments.iter().map(|a| a.broker_ids.as_slice())) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!("replicas must be exactly [{NODE_ID}] on this single broker"),
            ));
        }
        topic.assignments.len() as i32
    } else if shard.cluster.is_none()
        && topic.replication_factor != -1
        && topic.replication_factor != REPLICATION_FACTOR
    {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                topic.replication_factor
            ),
        ));
    } else if topic.num_partitions == -1 {
        shard.config.default_partitions
    } else {
        topic.num_partitions
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            return Err((
                ResponseError::InvalidConfig,
                format!("config {} has a null value", config.name),
            ));
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(NewTopic {
        name,
        partitions,
        replication_factor: topic.replication_factor,
        configs,
    })
}

/// The answer for a created (or, with validate_only, creatable) topic: from
/// v5 its partition count, replication factor and configs, from v7 its id.
fn created_topic_result(
    shard: &Shard,
    version: i16,
    result: CreatableTopicResult,
    new: &NewTopic,
) -> CreatableTopicResult {
    let table = shard.topics();
    let info = table.get(&new.name);
    let config = match info {
        Some(info) => info.config.clone(),
        None => shard
            .config
            .topic_defaults
            .with_overrides(&new.configs)
            .unwrap_or_else(|_| shard.config.topic_defaults.clone()),
    };
    let configs = CONFIG_DEFS
        .iter()
        .map(|def| {
            let (value, source) = config.value(def.key);
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(def.name))
                .with_value(Some(StrBytes::from_string(value.to_string())))
                .with_config_source(source as i8)
        })
        .collect();
    let result = if version >= 7 {
        result.with_topic_id(info.map_or(uuid::Uuid::nil(), |i| i.id))
    } else {
        result
    };
    if version >= 5 {
        result
            .with_num_partitions(new.partitions)
            .with_replication_factor(replication_factor(shard, &new.name))
            .with_configs(Some(configs))
    } else {
        result
    }
}

/// A topic's replication factor: 1 on a single broker, its replica count in a cluster.
fn replication_factor(shard: &Shard, topic: &str) -> i16 {
    let Some(cluster) = shard.cluster.as_ref() else {
        return REPLICATION_FACTOR;
    };
    cluster
        .view()
        .topics
        .get(topic)
        .and_then(|t| t.partitions.first())
        .map_or(-1, |p| p.replicas.len() as i16)
}

pub async fn handle_delete_topics(
    shard: &Rc<Shard>,
    request: &Request,
    body: DeleteTopicsRequest,
) -> Outcome {
    let table = shard.topics();
    // v6 names topics by name or id; earlier versions by name only.
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if request.version() >= 6 {
        body.topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => (
                    Some(name.to_string()),
                    table.get(name.as_str()).map_or(t.topic_id, |i| i.id),
                ),
                None => (
                    table.get_by_id(&t.topic_id).map(|i| i.name.to_string()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| {
                (
                    Some(n.to_string()),
                    table.get(n.as_str()).map_or(uuid::Uuid::nil(), |i| i.id),
                )
            })
            .collect()
    };
    // Kafka checks DELETE on each named topic before deleting any.
    let allowed: Vec<bool> = wanted
        .iter()
        .map(|(name, _)| {
            name.as_deref()
                .is_none_or(|n| topic_allowed(shard, request, Operation::Delete, n))
        })
        .collect();
    let names: Vec<String> = wanted
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .filter_map(|((name, _), _)| name.clone())
        .collect();
    let version = request.version();
    let mut deleted = shard.delete_topics(names).await.into_iter();
    let responses = wanted
        .into_iter()
        .zip(allowed)
        .map(|((name, id), allowed)| {
            let result = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(if version >= 6 { id } else { uuid::Uuid::nil() });
            match name {
                None => result.with_error_code(ResponseError::UnknownTopicId.code()),
                Some(_) if !allowed => {
                    result.with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
                Some(_) => match deleted.next() {
                    Some(Ok(())) => result,
                    Some(Err(e)) => result
                        .with_error_code(change_error(&e).code())
                        .with_error_message(if version >= 5 {
                            message(e.to_string())
                        } else {
                            None
                        }),
                    None => result.with_error_code(ResponseError::UnknownServerError.code()),
                },
            }
        })
        .collect();
    request.respond(&DeleteTopicsResponse::default().with_responses(responses))
}

pub async fn handle_create_partitions(
    shard: &Rc<Shard>,
    request: &Request,
    body: CreatePartitionsRequest,
) -> Outcome {
    let mut results = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let local = topic
            .assignments
            .as_ref()
            .is_none_or(|a| assignment_is_local(a.iter().map(|x| x.broker_ids.as_slice())));
        let outcome = if !topic_allowed(shard, request, Operation::Alter, topic.name.as_str()) {
            Err((
                ResponseError::TopicAuthorizationFailed,
                format!("not authorized to alter topic '{}'", topic.name.as_str()),
            ))
        } else if !local {
            Err((
                ResponseError::InvalidReplicaAssignment,
                format!("replicas must be exactly [{NODE_ID}] on this single broker"),
            ))
        } else {
            shard
                .create_partitions(topic.name.to_string(), topic.count, body.validate_only)
                .await
                .map_err(|e| (change_error(&e), e.to_string()))
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err((error, text)) => result
                .with_error_code(error.code())
                .with_error_message(message(text)),
        });
    }
    request.respond(&CreatePartitionsResponse::default().with_results(results))
}

pub async fn handle_delete_records(
    shard: &Rc<Shard>,
    request: &Request,
    body: DeleteRecordsRequest,
) -> Outcome {
    let topics = body.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter();
        let offsets = partitions.map(|p| (PartitionId(p.partition_index), p.offset));
        (topic.name.as_str(), offsets)
    });
    let plan = PartitionPlan::named_topics(
        shard,
        |topic| topic_allowed(shard, request, Operation::Delete, topic),
        topics,
        |_, _| None,
        |info, partition, offset| (info.name.clone(), partition, Offset(offset)),
    );
    // A timeout of 0 or less asks for no bound.
    let timeout =
        (body.timeout_ms > 0).then(|| std::time::Duration::from_millis(body.timeout_ms as u64));
    let answers = plan
        .gather(shard, move |owner, parts| {
            owner.delete_records_local(parts, timeout)
        })
        .await;
    let topics = answers.zip_topics(
        &body.topics,
        |topic| &topic.partitions,
        |p, answer| {
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            match answer {
                Ok(low_watermark) => result.with_low_watermark(low_watermark.get()),
                Err(error) => result.with_low_watermark(-1).with_error_code(error.code()),
            }
        },
        |topic, partitions| {
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        },
    );
    request.respond(&DeleteRecordsResponse::default().with_topics(topics))
}

kafka_api!(CreateTopics: CreateTopics, CREATE_TOPICS_VERSIONS, CreateTopicsRequest => handle_create_topics);

kafka_api!(DeleteTopics: DeleteTopics, DELETE_TOPICS_VERSIONS, DeleteTopicsRequest => handle_delete_topics);

kafka_api!(CreatePartitions: CreatePartitions, CREATE_PARTITIONS_VERSIONS, CreatePartitionsRequest => handle_create_partitions);

kafka_api!(DeleteRecords: DeleteRecords, DELETE_RECORDS_VERSIONS, DeleteRecordsRequest => handle_delete_records);
