//! `ringlog topic create|list|delete|alter-config|add-partitions`:
//! CreateTopics, Metadata, DeleteTopics, IncrementalAlterConfigs and
//! CreatePartitions (`describe` is in `topic_describe`, `produce` and
//! `consume` in their own files).

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::consume::ConsumeArgs;
use super::error::{check_answered, CliError};
use super::output::{answer_each, Out, Table};
use super::produce::ProduceArgs;
use super::session::{topic_name, versions, Session, Target};
use super::topic_describe as describe;
use super::Common;

/// The config resource type of a topic (DescribeConfigs, IncrementalAlterConfigs).
pub const RESOURCE_TYPE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations (KIP-339).
const CONFIG_OPERATION_SET: i8 = 0;
const CONFIG_OPERATION_DELETE: i8 = 1;
/// The default partition count and replication factor (KIP-464: the broker's).
const BROKER_DEFAULT: i32 = -1;
/// CreateTopics understands "the broker's default" from v4 on.
const CREATE_TOPICS_DEFAULTS_VERSION: i16 = 4;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create topics.
    Create(CreateArgs),
    /// List topics with their partition and replica counts.
    List,
    /// Show topics' partitions (leaders, replicas, offsets) and configs.
    Describe {
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Set or remove topic configs (Kafka's names, e.g. retention.ms).
    AlterConfig(AlterConfigArgs),
    /// Add partitions to a topic.
    AddPartitions {
        topic: String,
        /// How many partitions to add.
        #[arg(short = 'n', long = "num", value_name = "N")]
        count: i32,
    },
    /// Produce the lines of stdin, one record each.
    Produce(ProduceArgs),
    /// Print the records of a topic.
    Consume(ConsumeArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// Partitions of each topic [default: the broker's num.partitions].
    #[arg(short, long, value_name = "N")]
    partitions: Option<i32>,
    /// Replication factor [default: the broker's].
    #[arg(short, long, value_name = "N")]
    replicas: Option<i16>,
    /// A topic config with Kafka's name, e.g. retention.ms=86400000 (repeatable).
    #[arg(short, long = "config", value_name = "NAME=VALUE")]
    configs: Vec<String>,
}

#[derive(Args)]
pub struct AlterConfigArgs {
    topic: String,
    /// Set a config, e.g. retention.ms=86400000 (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Remove a config, back to the broker's default (repeatable).
    #[arg(long = "delete", value_name = "NAME")]
    delete: Vec<String>,
}

pub fn run(common: &Common, command: TopicCommand) -> Result<(), CliError> {
    let mut session = common.session()?;
    let mut out = Out::new();
    let format = &common.format;
    match command {
        TopicCommand::Create(args) => create(&mut session, &mut out, common, &args),
        TopicCommand::List => list(&mut session, &mut out, common),
        TopicCommand::Describe { topics } => answer_each(
            &mut out,
            format,
            &topics,
            |name| describe::describe(&mut session, name),
            describe::tables,
        ),
        TopicCommand::Delete { topics } => delete(&mut session, &mut out, common, &topics),
        TopicCommand::AlterConfig(args) => alter_config(&mut session, &mut out, common, &args),
        TopicCommand::AddPartitions { topic, count } => {
            add_partitions(&mut session, &mut out, common, &topic, count)
        }
        TopicCommand::Produce(args) => super::produce::run(&mut session, &mut out, format, &args),
        TopicCommand::Consume(args) => super::consume::run(&mut session, &mut out, format, &args),
    }
}

/// One topic's outcome in a command on several topics.
#[derive(Serialize)]
struct Outcome {
    topic: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Prints each topic's outcome. With one topic a failure is just its error;
/// with several, the table shows which failed and the command fails after it.
fn finish(
    out: &mut Out,
    common: &Common,
    action: &str,
    results: Vec<(String, Result<(), CliError>)>,
) -> Result<(), CliError> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if let [(_, Err(_))] = results.as_slice() {
        let (_, result) = results.into_iter().next().expect("one result");
        return result;
    }
    let outcomes: Vec<Outcome> = results
        .into_iter()
        .map(|(topic, result)| match result {
            Ok(()) => Outcome {
                topic,
                status: "OK".into(),
                message: None,
            },
            Err(error) => Outcome {
                topic,
                status: "FAILED".into(),
                message: Some(error.to_string()),
            },
        })
        .collect();
    let mut table = Table::new(&["TOPIC", "STATUS"]);
    for outcome in &outcomes {
        let status = match &outcome.message {
            Some(message) => format!("{}: {message}", outcome.status),
            None => outcome.status.clone(),
        };
        table.row(vec![outcome.topic.clone(), status]);
    }
    out.answer(&common.format, &outcomes, &[table])?;
    if failed > 0 {
        return Err(CliError::Answer(format!(
            "could not {action} {failed} of {} topics",
            outcomes.len()
        )));
    }
    Ok(())
}

fn create(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    args: &CreateArgs,
) -> Result<(), CliError> {
    let configs = parse_assignments(&args.configs)?;
    let version = session.version::<CreateTopicsRequest>(versions::CREATE_TOPICS)?;
    let fallback = if version >= CREATE_TOPICS_DEFAULTS_VERSION {
        BROKER_DEFAULT
    } else {
        1
    };
    let partitions = args.partitions.unwrap_or(fallback);
    let replicas = args.replicas.unwrap_or(fallback as i16);
    if partitions == 0 || partitions < BROKER_DEFAULT {
        return Err(CliError::usage("--partitions must be at least 1"));
    }
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms(session))
        .with_topics(
            args.topics
                .iter()
                .map(|name| {
                    CreatableTopic::default()
                        .with_name(topic_name(name))
                        .with_num_partitions(partitions)
                        .with_replication_factor(replicas)
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(text(k))
                                        .with_value(Some(text(v)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response = session.call(Target::Any, versions::CREATE_TOPICS, |_| request)?;
    let results = args
        .topics
        .iter()
        .map(|name| {
            let found = response
                .topics
                .iter()
                .find(|t| t.name.0.as_str() == name)
                .map(|t| (t.error_code, t.error_message.as_deref()));
            let result = check_answered(found, "CreateTopics", name, || {
                format!("creating topic {name}")
            });
            (name.clone(), result)
        })
        .collect();
    finish(out, common, "create", results)
}

#[derive(Serialize)]
struct Listed {
    name: String,
    partitions: usize,
    replicas: usize,
    internal: bool,
}

fn list(session: &mut Session, out: &mut Out, common: &Common) -> Result<(), CliError> {
    let response = session.metadata(None)?;
    let mut topics: Vec<Listed> = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| Listed {
            name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
            partitions: t.partitions.len(),
            replicas: t
                .partitions
                .iter()
                .map(|p| p.replica_nodes.len())
                .max()
                .unwrap_or(0),
            internal: t.is_internal,
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICAS"]);
    for topic in &topics {
        table.row(vec![
            topic.name.clone(),
            topic.partitions.to_string(),
            topic.replicas.to_string(),
        ]);
    }
    out.answer(&common.format, &topics, &[table])
}

fn delete(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    topics: &[String],
) -> Result<(), CliError> {
    let timeout_ms = timeout_ms(session);
    let response = session.call(Target::Any, versions::DELETE_TOPICS, |version| {
        let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
        // v6 names topics in `topics` (name or id), earlier versions in `topic_names`.
        if version >= 6 {
            request.with_topics(
                topics
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                    .collect(),
            )
        } else {
            request.with_topic_names(topics.iter().map(|n| topic_name(n)).collect())
        }
    })?;
    let results = topics
        .iter()
        .map(|name| {
            let found = response
                .responses
                .iter()
                .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .map(|r| (r.error_code, r.error_message.as_deref()));
            let result = check_answered(found, "DeleteTopics", name, || {
                format!("deleting topic {name}")
            });
            (name.clone(), result)
        })
        .collect();
    finish(out, common, "delete", results)
}

fn alter_config(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    args: &AlterConfigArgs,
) -> Result<(), CliError> {
    if args.set.is_empty() && args.delete.is_empty() {
        return Err(CliError::usage(
            "alter-config needs --set NAME=VALUE or --delete NAME",
        ));
    }
    let mut configs: Vec<AlterableConfig> = parse_assignments(&args.set)?
        .into_iter()
        .map(|(name, value)| {
            AlterableConfig::default()
                .with_name(text(&name))
                .with_config_operation(CONFIG_OPERATION_SET)
                .with_value(Some(text(&value)))
        })
        .collect();
    configs.extend(args.delete.iter().map(|name| {
        AlterableConfig::default()
            .with_name(text(name))
            .with_config_operation(CONFIG_OPERATION_DELETE)
            .with_value(None)
    }));
    let topic = &args.topic;
    let response = session.call(Target::Any, versions::INCREMENTAL_ALTER_CONFIGS, |_| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(text(topic))
                .with_configs(configs),
        ])
    })?;
    let found = response
        .responses
        .first()
        .map(|r| (r.error_code, r.error_message.as_deref()));
    let result = check_answered(found, "IncrementalAlterConfigs", topic, || {
        format!("altering the configs of topic {topic}")
    });
    finish(out, common, "alter", vec![(topic.clone(), result)])
}

fn add_partitions(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    name: &str,
    count: i32,
) -> Result<(), CliError> {
    if count < 1 {
        return Err(CliError::usage("--num must be at least 1"));
    }
    let current = session.topic(name)?.partitions.len() as i32;
    let total = current
        .checked_add(count)
        .ok_or_else(|| CliError::usage("--num is too large"))?;
    let timeout_ms = timeout_ms(session);
    let response = session.call(Target::Any, versions::CREATE_PARTITIONS, |_| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)
                .with_assignments(None)])
    })?;
    let found = response
        .results
        .first()
        .map(|r| (r.error_code, r.error_message.as_deref()));
    check_answered(found, "CreatePartitions", name, || {
        format!("adding partitions to topic {name}")
    })?;
    #[derive(Serialize)]
    struct Added<'a> {
        topic: &'a str,
        partitions: i32,
        added: i32,
    }
    let added = Added {
        topic: name,
        partitions: total,
        added: count,
    };
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "ADDED"]);
    table.row(vec![name.to_string(), total.to_string(), count.to_string()]);
    out.answer(&common.format, &added, &[table])
}

/// `NAME=VALUE` items as pairs.
fn parse_assignments(items: &[String]) -> Result<Vec<(String, String)>, CliError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::usage(format!("{item:?} is not NAME=VALUE")))
        })
        .collect()
}

pub fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The broker-side timeout of an admin request: the tool's own.
fn timeout_ms(session: &Session) -> i32 {
    i32::try_from(session.timeout().as_millis()).unwrap_or(i32::MAX)
}
