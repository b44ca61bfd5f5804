//! Topic changes in a cluster: checked against this broker's view, then
//! proposed to the controller (forwarded to its Raft leader) and answered
//! once committed and applied on this broker. The replicated state machine
//! decides what the view cannot (a topic made meanwhile, fewer live brokers).

use std::rc::Rc;

use super::controller::SubmitError;
use super::state::{Op, OpError, TopicRecord};
use crate::shard::admin::{check_partition_count, ConfigChange, NewTopic, TopicChangeError};
use crate::shard::mesh::run_on;
use crate::shard::topics::is_valid_topic_name;
use crate::shard::{Shard, METADATA_SHARD};

pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<Result<(), TopicChangeError>> {
    let creations = topics.into_iter().map(|topic| async move {
        let op = check_creation(shard, topic)?;
        if validate_only {
            return Ok(());
        }
        submit(shard, op).await
    });
    futures::future::join_all(creations).await
}

fn check_creation(shard: &Shard, topic: NewTopic) -> Result<Op, TopicChangeError> {
    let view = shard
        .cluster
        .as_ref()
        .map(|c| c.view())
        .ok_or_else(|| TopicChangeError::Failed("not in a cluster".into()))?;
    if !is_valid_topic_name(&topic.name) {
        return Err(TopicChangeError::InvalidName(topic.name));
    }
    if view.topics.contains_key(&topic.name) {
        return Err(TopicChangeError::AlreadyExists(topic.name));
    }
    check_partition_count(topic.partitions)?;
    shard
        .config
        .topic_defaults
        .with_overrides(&topic.configs)
        .map_err(|e| TopicChangeError::InvalidConfig(e.to_string()))?;
    let factor = match topic.replication_factor {
        -1 => shard
            .config
            .cluster
            .as_ref()
            .map_or(1, |c| c.default_replication_factor),
        factor => factor,
    };
    let live = view.live_brokers();
    if factor < 1 || factor as usize > live {
        return Err(TopicChangeError::InvalidReplicationFactor(
            OpError::ReplicationFactor {
                asked: factor,
                live,
            }
            .to_string(),
        ));
    }
    Ok(Op::CreateTopic {
        name: topic.name,
        id: uuid::Uuid::new_v4(),
        partitions: topic.partitions,
        replication_factor: factor,
        configs: topic.configs,
    })
}

pub async fn delete_topics(
    shard: &Rc<Shard>,
    names: Vec<String>,
) -> Vec<Result<(), TopicChangeError>> {
    let deletions = names.into_iter().map(|name| async move {
        if !known(shard, &name) {
            return Err(TopicChangeError::UnknownTopic(name));
        }
        submit(shard, Op::DeleteTopic { name }).await
    });
    futures::future::join_all(deletions).await
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    name: String,
    total: i32,
    validate_only: bool,
) -> Result<(), TopicChangeError> {
    let current = known_topic(shard, &name, |t| t.partitions.len())?;
    if total as i64 <= current as i64 {
        return Err(TopicChangeError::InvalidPartitions(format!(
            "topic currently has {current} partitions, {total} would not be an increase"
        )));
    }
    check_partition_count(total)?;
    if validate_only {
        return Ok(());
    }
    submit(shard, Op::CreatePartitions { name, total }).await
}

pub async fn change_topic_config(
    shard: &Rc<Shard>,
    name: String,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), TopicChangeError> {
    let current = known_topic(shard, &name, |t| t.configs.clone())?;
    let configs = change.applied_to(current);
    shard
        .config
        .topic_defaults
        .with_overrides(&configs)
        .map_err(|e| TopicChangeError::InvalidConfig(e.to_string()))?;
    if validate_only {
        return Ok(());
    }
    submit(shard, Op::SetTopicConfig { name, configs }).await
}

fn known(shard: &Shard, name: &str) -> bool {
    known_topic(shard, name, |_| ()).is_ok()
}

/// `read` of the topic `name` in this broker's view, or UnknownTopic.
fn known_topic<T>(
    shard: &Shard,
    name: &str,
    read: impl FnOnce(&TopicRecord) -> T,
) -> Result<T, TopicChangeError> {
    shard
        .cluster
        .as_ref()
        .and_then(|c| c.view().topics.get(name).map(read))
        .ok_or_else(|| TopicChangeError::UnknownTopic(name.to_string()))
}

/// Runs `op` through the controller on the metadata shard.
async fn submit(shard: &Rc<Shard>, op: Op) -> Result<(), TopicChangeError> {
    let outcome = run_on(shard, METADATA_SHARD, move |s| async move {
        match s.cluster.as_ref().and_then(|c| c.controller()) {
            Some(controller) => controller.submit(op).await,
            None => Err(SubmitError::TimedOut),
        }
    })
    .await
    .map_err(|e| TopicChangeError::Failed(e.to_string()))?;
    outcome.map_err(change_error)
}

fn change_error(error: SubmitError) -> TopicChangeError {
    match error {
        SubmitError::Refused(refused) => match refused {
            OpError::TopicExists(name) => TopicChangeError::AlreadyExists(name),
            OpError::UnknownTopic(name) => TopicChangeError::UnknownTopic(name),
            error @ OpError::ReplicationFactor { .. } => {
                TopicChangeError::InvalidReplicationFactor(error.to_string())
            }
            error @ OpError::Partitions { .. } => {
                TopicChangeError::InvalidPartitions(error.to_string())
            }
            error @ OpError::UnknownBroker(_) => TopicChangeError::Failed(error.to_string()),
        },
        error @ (SubmitError::TimedOut | SubmitError::Busy) => {
            TopicChangeError::TimedOut(error.to_string())
        }
    }
}
