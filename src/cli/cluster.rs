//! `ringlog cluster info`: the cluster id, its brokers, the controller and
//! how many topics there are, from one Metadata answer. `ringlog cluster
//! elect-leaders`: a preferred leader election (ElectLeaders, KIP-460).

use clap::Subcommand;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::ElectLeadersRequest;
use serde::Serialize;

use super::error::{check, CliError};
use super::output::{Out, Table};
use super::session::{topic_name, versions, Target};
use super::Common;

/// KIP-460's preferred election.
const PREFERRED_ELECTION: i8 = 0;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, brokers, controller and topic count.
    Info,
    /// Move partitions' leadership to their preferred (first) replicas:
    /// every partition, a topic's, or one.
    ElectLeaders {
        #[arg(long, value_name = "TOPIC")]
        topic: Option<String>,
        #[arg(long, value_name = "N", requires = "topic")]
        partition: Option<i32>,
    },
}

#[derive(Serialize)]
struct Election {
    topic: String,
    partition: i32,
    /// `NONE` when elected, else Kafka's error name.
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Serialize)]
struct Info {
    cluster_id: Option<String>,
    controller: i32,
    topics: usize,
    brokers: Vec<Broker>,
}

#[derive(Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
}

pub fn run(common: &Common, command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Info => info(common),
        ClusterCommand::ElectLeaders { topic, partition } => {
            elect_leaders(common, topic, partition)
        }
    }
}

fn elect_leaders(
    common: &Common,
    topic: Option<String>,
    partition: Option<i32>,
) -> Result<(), CliError> {
    let mut session = common.session()?;
    let named = match (topic, partition) {
        (None, _) => None,
        (Some(topic), Some(p)) => Some((topic, vec![p])),
        (Some(topic), None) => {
            let partitions = session.topic(&topic)?.partition_indexes();
            Some((topic, partitions))
        }
    };
    // The broker answers within this, before the request's own bound.
    let wait_ms = i32::try_from(session.timeout().as_millis() * 3 / 4).unwrap_or(i32::MAX);
    let response = session.call(Target::Any, versions::ELECT_LEADERS, |_| {
        ElectLeadersRequest::default()
            .with_election_type(PREFERRED_ELECTION)
            .with_topic_partitions(named.map(|(topic, partitions)| {
                vec![TopicPartitions::default()
                    .with_topic(topic_name(&topic))
                    .with_partitions(partitions)]
            }))
            .with_timeout_ms(wait_ms)
    })?;
    check(response.error_code, None, || "ElectLeaders".to_string())?;
    let mut elections = Vec::new();
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            elections.push(Election {
                topic: topic.topic.to_string(),
                partition: p.partition_id,
                result: ringlog::metrics::exposition::error_name(p.error_code),
                message: p.error_message.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
    for e in &elections {
        table.row(vec![
            e.topic.clone(),
            e.partition.to_string(),
            e.result.clone(),
        ]);
    }
    Out::new().answer(&common.format, &elections, &[table])?;
    let failed = response
        .replica_election_results
        .iter()
        .flat_map(|t| t.partition_result.iter())
        .filter(|p| p.error_code != 0 && p.error_code != ResponseError::ElectionNotNeeded.code())
        .count();
    if failed > 0 {
        return Err(CliError::Answer(format!(
            "{failed} partition(s) got no preferred leader"
        )));
    }
    Ok(())
}

fn info(common: &Common) -> Result<(), CliError> {
    let mut session = common.session()?;
    let response = session.metadata(None)?;
    let mut brokers: Vec<Broker> = response
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let info = Info {
        cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
        controller: response.controller_id.0,
        topics: response.topics.iter().filter(|t| t.error_code == 0).count(),
        brokers,
    };
    let mut summary = Table::new(&["CLUSTER-ID", "CONTROLLER", "BROKERS", "TOPICS"]);
    summary.row(vec![
        info.cluster_id.clone().unwrap_or_else(|| "-".into()),
        info.controller.to_string(),
        info.brokers.len().to_string(),
        info.topics.to_string(),
    ]);
    let mut brokers = Table::new(&["ID", "HOST", "PORT", "RACK"]);
    for b in &info.brokers {
        brokers.row(vec![
            b.id.to_string(),
            b.host.clone(),
            b.port.to_string(),
            b.rack.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    Out::new().answer(&common.format, &info, &[summary, brokers])
}
