//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic
//! configs (broker configs are static: described, not altered).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::change_error;
use super::authorize::{cluster_allowed, topic_allowed};
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::admin::ConfigChange;
use crate::shard::Shard;
use crate::topic_config::{self, ConfigSource, ConfigType, CONFIG_DEFS};

pub const DESCRIBE_CONFIGS_VERSIONS: RangeInclusive<i16> = 1..=4;
pub const ALTER_CONFIGS_VERSIONS: RangeInclusive<i16> = 0..=2;
pub const INCREMENTAL_ALTER_CONFIGS_VERSIONS: RangeInclusive<i16> = 0..=1;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operations (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn entry(
    name: &str,
    value: String,
    source: i8,
    kind: ConfigType,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    // config_type is v3+: `describe` clears it for older versions.
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(kind as i8)
}

fn broker_configs(shard: &Shard) -> Vec<DescribeConfigsResourceResult> {
    let c = &shard.config;
    const STATIC_BROKER: i8 = ConfigSource::Broker as i8;
    vec![
        entry(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            STATIC_BROKER,
            ConfigType::String,
            true,
        ),
        entry(
            "num.partitions",
            c.default_partitions.to_string(),
            STATIC_BROKER,
            ConfigType::Int,
            true,
        ),
        entry(
            "socket.request.max.bytes",
            c.request_bytes_max.to_string(),
            STATIC_BROKER,
            ConfigType::Int,
            true,
        ),
        entry(
            "default.replication.factor",
            "1".into(),
            STATIC_BROKER,
            ConfigType::Int,
            true,
        ),
        entry(
            "log.dirs",
            c.data_dir.display().to_string(),
            STATIC_BROKER,
            ConfigType::String,
            true,
        ),
    ]
}

pub async fn handle_describe(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeConfigsRequest,
) -> Outcome {
    let table = shard.topics();
    let results = body
        .resources
        .iter()
        .map(|resource| {
            let keys = resource.configuration_keys.as_ref();
            let wanted =
                |name: &str| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let kind = resource.resource_type;
            if let Some(error) = refused(
                shard,
                request,
                Operation::DescribeConfigs,
                kind,
                &resource.resource_name,
            ) {
                return result.with_error_code(error.code());
            }
            match resource.resource_type {
                RESOURCE_TOPIC => match table.get(resource.resource_name.as_str()) {
                    Some(topic) => result.with_configs(
                        CONFIG_DEFS
                            .iter()
                            .filter(|def| wanted(def.name))
                            .map(|def| {
                                let (value, source) = topic.config.value(def.key);
                                entry(def.name, value.to_string(), source as i8, def.kind, false)
                            })
                            .collect(),
                    ),
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "topic '{}' does not exist",
                            resource.resource_name
                        )))),
                },
                RESOURCE_BROKER
                    if resource.resource_name.as_str() == shard.node_id().to_string()
                        || resource.resource_name.is_empty() =>
                {
                    result.with_configs(
                        broker_configs(shard)
                            .into_iter()
                            .filter(|c| wanted(c.name.as_str()))
                            .collect(),
                    )
                }
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str("unknown resource"))),
            }
        })
        .collect();
    let mut response = DescribeConfigsResponse::default().with_results(results);
    if request.version() < 3 {
        for config in response
            .results
            .iter_mut()
            .flat_map(|r| r.configs.iter_mut())
        {
            config.config_type = 0;
        }
    }
    request.respond(&response)
}

/// The authorization error for `operation` on a topic or the broker, if any.
fn refused(
    shard: &Shard,
    request: &Request,
    operation: Operation,
    resource_type: i8,
    name: &StrBytes,
) -> Option<ResponseError> {
    match resource_type {
        RESOURCE_TOPIC => (!topic_allowed(shard, request, operation, name.as_str()))
            .then_some(ResponseError::TopicAuthorizationFailed),
        RESOURCE_BROKER => (!cluster_allowed(shard, request, operation))
            .then_some(ResponseError::ClusterAuthorizationFailed),
        _ => None,
    }
}

/// Applies one resource's change and returns `(error_code, message)`.
/// The answer for one altered resource: both AlterConfigs APIs have the same
/// fields in distinct generated types.
macro_rules! resource_response {
    ($response:ty) => {
        |(code, message): (i16, Option<StrBytes>), kind: i8, name: &StrBytes| {
            <$response>::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(kind)
                .with_resource_name(name.clone())
        }
    };
}

/// Applies each resource's change in order (one at a time, as the metadata
/// shard takes them) and answers each with `response`.
async fn alter_all<'a, R>(
    shard: &Rc<Shard>,
    request: &Request,
    changes: impl Iterator<Item = (i8, &'a StrBytes, Result<ConfigChange, String>)>,
    validate_only: bool,
    response: impl Fn((i16, Option<StrBytes>), i8, &StrBytes) -> R,
) -> Vec<R> {
    let mut responses = Vec::new();
    for (kind, name, change) in changes {
        let outcome = match refused(shard, request, Operation::AlterConfigs, kind, name) {
            Some(error) => (error.code(), None),
            None => alter_one(shard, kind, name, change, validate_only).await,
        };
        responses.push(response(outcome, kind, name));
    }
    responses
}

async fn alter_one(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &StrBytes,
    change: Result<ConfigChange, String>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    if resource_type != RESOURCE_TOPIC {
        return (
            ResponseError::InvalidRequest.code(),
            Some(StrBytes::from_static_str(
                "only topic configs can be altered",
            )),
        );
    }
    let change = match change {
        Ok(change) => change,
        Err(text) => {
            return (
                ResponseError::InvalidConfig.code(),
                Some(StrBytes::from_string(text)),
            )
        }
    };
    match shard
        .change_topic_config(name.to_string(), change, validate_only)
        .await
    {
        Ok(()) => (0, None),
        Err(error) => (
            change_error(&error).code(),
            Some(StrBytes::from_string(error.to_string())),
        ),
    }
}

pub async fn handle_alter(
    shard: &Rc<Shard>,
    request: &Request,
    body: AlterConfigsRequest,
) -> Outcome {
    let changes = body.resources.iter().map(|resource| {
        let change = resource
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(value) => Ok((c.name.to_string(), value.to_string())),
                None => Err(format!("config {} has a null value", c.name)),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(ConfigChange::Replace);
        (resource.resource_type, &resource.resource_name, change)
    });
    let responses = alter_all(
        shard,
        request,
        changes,
        body.validate_only,
        resource_response!(alter_configs_response::AlterConfigsResourceResponse),
    )
    .await;
    request.respond(&AlterConfigsResponse::default().with_responses(responses))
}

pub async fn handle_incremental_alter(
    shard: &Rc<Shard>,
    request: &Request,
    body: IncrementalAlterConfigsRequest,
) -> Outcome {
    let table = shard.topics();
    let changes = body.resources.iter().map(|resource| {
        let topic = table.get(resource.resource_name.as_str());
        let current = |name: &str| {
            let key = topic_config::TopicConfigKey::from_name(name)?;
            Some(topic?.config.value(key).0.to_string())
        };
        let change = resource
            .configs
            .iter()
            .map(|c| match (c.config_operation, &c.value) {
                (OP_SET, Some(value)) => Ok((c.name.to_string(), Some(value.to_string()))),
                (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                    Err(format!("config {} has a null value", c.name))
                }
                (OP_DELETE, _) => Ok((c.name.to_string(), None)),
                (op @ (OP_APPEND | OP_SUBTRACT), Some(value)) => {
                    list_edit(c.name.as_str(), op, value, current(c.name.as_str()))
                        .map(|edited| (c.name.to_string(), Some(edited)))
                }
                (op, _) => Err(format!("operation {op} on {} is not supported", c.name)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ConfigChange::Edit);
        (resource.resource_type, &resource.resource_name, change)
    });
    let responses = alter_all(
        shard,
        request,
        changes,
        body.validate_only,
        resource_response!(incremental_alter_configs_response::AlterConfigsResourceResponse),
    )
    .await;
    request.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}

/// KIP-339 APPEND / SUBTRACT on a list-valued config: the items of `value`
/// added to (or taken from) the effective `current` list.
fn list_edit(name: &str, op: i8, value: &str, current: Option<String>) -> Result<String, String> {
    let listed = topic_config::definition(name).is_some_and(|d| d.kind == ConfigType::List);
    if !listed {
        return Err(format!(
            "operation {op} needs a list-valued config; {name} is not one"
        ));
    }
    let mut items: Vec<String> = current
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let present = items.iter().any(|i| i == item);
        match op {
            OP_APPEND if !present => items.push(item.to_string()),
            OP_SUBTRACT => items.retain(|i| i != item),
            _ => {}
        }
    }
    Ok(items.join(","))
}

kafka_api!(DescribeConfigs: DescribeConfigs, DESCRIBE_CONFIGS_VERSIONS, DescribeConfigsRequest => handle_describe);

kafka_api!(AlterConfigs: AlterConfigs, ALTER_CONFIGS_VERSIONS, AlterConfigsRequest => handle_alter);

kafka_api!(IncrementalAlterConfigs: IncrementalAlterConfigs, INCREMENTAL_ALTER_CONFIGS_VERSIONS, IncrementalAlterConfigsRequest => handle_incremental_alter);
