//! `ringlog topic describe`: a topic's partitions (leaders, replicas, log
//! start and end offsets) from Metadata and ListOffsets, and its configs
//! from DescribeConfigs.

use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use serde::Serialize;

use super::error::{check, CliError};
use super::offsets;
use super::output::{join_ids, Table};
use super::session::{versions, Session, Target};
use super::topic::{text, RESOURCE_TYPE_TOPIC};

/// One topic as `topic describe` shows it.
#[derive(Serialize)]
pub struct Described {
    name: String,
    partitions: Vec<DescribedPartition>,
    configs: Vec<DescribedConfig>,
}

#[derive(Serialize)]
struct DescribedPartition {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start_offset: i64,
    high_watermark: i64,
}

#[derive(Serialize)]
struct DescribedConfig {
    name: String,
    value: Option<String>,
    source: &'static str,
}

pub fn describe(session: &mut Session, name: &str) -> Result<Described, CliError> {
    let topic = session.topic(name)?;
    let bounds = offsets::bounds(session, &topic, &topic.partition_indexes())?;
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let (log_start_offset, high_watermark) =
                bounds.get(&p.index).copied().unwrap_or((-1, -1));
            DescribedPartition {
                partition: p.index,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                log_start_offset,
                high_watermark,
            }
        })
        .collect();
    Ok(Described {
        name: name.to_string(),
        partitions,
        configs: describe_configs(session, name)?,
    })
}

pub fn tables(topic: &Described) -> Vec<Table> {
    let mut partitions = Table::new(&[
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "LOG-START-OFFSET",
        "HIGH-WATERMARK",
    ])
    .titled(format!(
        "TOPIC {} ({} partitions)",
        topic.name,
        topic.partitions.len()
    ));
    for p in &topic.partitions {
        partitions.row(vec![
            p.partition.to_string(),
            p.leader.to_string(),
            join_ids(&p.replicas),
            join_ids(&p.isr),
            p.log_start_offset.to_string(),
            p.high_watermark.to_string(),
        ]);
    }
    let mut configs = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for c in &topic.configs {
        configs.row(vec![
            c.name.clone(),
            c.value.clone().unwrap_or_else(|| "-".into()),
            c.source.to_string(),
        ]);
    }
    vec![partitions, configs]
}

fn describe_configs(session: &mut Session, name: &str) -> Result<Vec<DescribedConfig>, CliError> {
    let response = session.call(Target::Any, versions::DESCRIBE_CONFIGS, |_| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(text(name))
            .with_configuration_keys(None)])
    })?;
    let result = response
        .results
        .first()
        .ok_or_else(|| CliError::Answer(format!("DescribeConfigs did not answer for {name}")))?;
    check(result.error_code, result.error_message.as_deref(), || {
        format!("configs of topic {name}")
    })?;
    let mut configs: Vec<DescribedConfig> = result
        .configs
        .iter()
        .map(|c| DescribedConfig {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            source: config_source(c.config_source),
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

/// DescribeConfigs' `config_source` (KIP-226) as Kafka's tools name it.
fn config_source(code: i8) -> &'static str {
    match code {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        6 => "dynamic-broker-logger",
        _ => "unknown",
    }
}
