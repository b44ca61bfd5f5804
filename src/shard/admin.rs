//! Topic changes: create, delete, add partitions, change configs. They run on
//! the metadata shard, one at a time; the new table is stored, then applied
//! on every shard before the caller gets its answer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;

use super::mesh::run_on;
use super::open_files;
use super::topics::{
    is_valid_topic_name, TopicInfo, TopicRegistry, TopicTable, PARTITIONS_PER_TOPIC_MAX,
};
use super::{Shard, ShardId, METADATA_SHARD};
use crate::topic_config::TopicConfig;

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// `-1`: the broker's default (`default.replication.factor`).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TopicChangeError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic name '{0}' is illegal: it must be 1-249 of [a-zA-Z0-9._-] and not '.' or '..'")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The broker could not keep the new partitions' files open.
    #[error("{0}")]
    OverBudget(String),
    #[error("the topic table could not be changed: {0}")]
    Failed(String),
}

/// A config change: replace all of a topic's configs, or edit some of them.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Replace(BTreeMap<String, String>),
    /// `(name, Some(value))` sets, `(name, None)` deletes (back to the default).
    Edit(Vec<(String, Option<String>)>),
}

impl ConfigChange {
    /// The overrides after this change to `current`.
    pub fn applied_to(self, current: BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            ConfigChange::Replace(entries) => entries,
            ConfigChange::Edit(edits) => {
                let mut entries = current;
                for (key, value) in edits {
                    match value {
                        Some(value) => entries.insert(key, value),
                        None => entries.remove(&key),
                    };
                }
                entries
            }
        }
    }
}

impl Shard {
    pub async fn create_topics(
        self: &Rc<Self>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicChangeError>> {
        if self.cluster.is_some() {
            return crate::cluster::admin::create_topics(self, topics, validate_only).await;
        }
        let count = topics.len();
        run_on(self, METADATA_SHARD, move |s| async move {
            s.create_topics_here(topics, validate_only).await
        })
        .await
        .unwrap_or_else(|e| vec![Err(TopicChangeError::Failed(e.to_string())); count])
    }

    pub async fn delete_topics(
        self: &Rc<Self>,
        names: Vec<String>,
    ) -> Vec<Result<(), TopicChangeError>> {
        if self.cluster.is_some() {
            return crate::cluster::admin::delete_topics(self, names).await;
        }
        let count = names.len();
        run_on(self, METADATA_SHARD, move |s| async move {
            s.delete_topics_here(names).await
        })
        .await
        .unwrap_or_else(|e| vec![Err(TopicChangeError::Failed(e.to_string())); count])
    }

    pub async fn create_partitions(
        self: &Rc<Self>,
        name: String,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicChangeError> {
        if self.cluster.is_some() {
            return crate::cluster::admin::create_partitions(self, name, total, validate_only)
                .await;
        }
        run_on(self, METADATA_SHARD, move |s| async move {
            s.create_partitions_here(name, total, validate_only).await
        })
        .await
        .unwrap_or_else(|e| Err(TopicChangeError::Failed(e.to_string())))
    }

    pub async fn change_topic_config(
        self: &Rc<Self>,
        name: String,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), TopicChangeError> {
        if self.cluster.is_some() {
            return crate::cluster::admin::change_topic_config(self, name, change, validate_only)
                .await;
        }
        run_on(self, METADATA_SHARD, move |s| async move {
            s.change_topic_config_here(name, change, validate_only)
                .await
        })
        .await
        .unwrap_or_else(|e| Err(TopicChangeError::Failed(e.to_string())))
    }

    fn defaults(&self) -> &TopicConfig {
        &self.config.topic_defaults
    }

    /// The topic registry, which only the metadata shard holds.
    fn registry(&self) -> Result<&RefCell<TopicRegistry>, TopicChangeError> {
        self.registry
            .as_ref()
            .ok_or_else(|| TopicChangeError::Failed("not the metadata shard".into()))
    }

    async fn create_topics_here(
        self: Rc<Self>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<(), TopicChangeError>> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let mut results = Vec::with_capacity(topics.len());
        let mut made: Vec<TopicInfo> = Vec::new();
        let mut admitted_partitions = 0;
        for topic in topics {
            match self.new_topic(topic, &made, &mut admitted_partitions) {
                Ok(info) => {
                    if !validate_only {
                        made.push(info);
                    }
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if made.is_empty() {
            return results;
        }
        let created: Vec<String> = made.iter().map(|t| t.name.to_string()).collect();
        let summaries: Vec<(i32, String)> = made
            .iter()
            .map(|t| (t.partition_count(), placement_summary(&t.partition_shards)))
            .collect();
        // One write of the table for the whole request.
        let stored = match self.registry() {
            Ok(registry) => registry
                .borrow_mut()
                .put_all(made)
                .map_err(|e| TopicChangeError::Failed(e.to_string())),
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            return results
                .into_iter()
                .map(|r| r.and(Err(error.clone())))
                .collect();
        }
        for (name, (partitions, shards)) in created.iter().zip(summaries) {
            tracing::info!(topic = %name, partitions, %shards, "topic created");
        }
        match self.publish().await {
            Ok(()) => results,
            Err(error) => {
                self.roll_back_creations(&created).await;
                results
                    .into_iter()
                    .map(|r| r.and(Err(error.clone())))
                    .collect()
            }
        }
    }

    /// Takes topics whose partitions could not all be opened back out of the
    /// table, so that a topic exists whole or not at all; shards that had
    /// opened their part delete it again.
    async fn roll_back_creations(self: &Rc<Self>, names: &[String]) {
        let Ok(registry) = self.registry() else {
            return;
        };
        for name in names {
            if let Err(error) = registry.borrow_mut().remove(name) {
                tracing::error!(topic = %name, %error, "cannot take a failed topic out of the table");
            }
        }
        match self.publish().await {
            Ok(()) => tracing::warn!(topics = ?names, "topic creation failed and was rolled back"),
            Err(error) => {
                tracing::error!(topics = ?names, %error, "rolling back a failed topic creation failed")
            }
        }
    }

    /// Refuses `partitions` more partitions (beside `admitted` ones this
    /// request adds) when the open-file budget cannot serve them.
    fn check_open_files(
        &self,
        topic: &str,
        partitions: u64,
        admitted: u64,
    ) -> Result<(), TopicChangeError> {
        let budget = self.config.open_files_max.unwrap_or(u64::MAX);
        let now: u64 = self
            .registry()?
            .borrow()
            .table()
            .iter()
            .map(|t| t.partition_count() as u64)
            .sum();
        let admission = open_files::Admission {
            budget,
            now: now + admitted,
            new: partitions,
        };
        if admission.fits() {
            return Ok(());
        }
        tracing::warn!(
            %topic,
            partitions,
            partitions_now = admission.now,
            open_files_max = budget,
            "topic creation refused: the open-file limit is reached; raise RLIMIT_NOFILE (ulimit -n, LimitNOFILE=) and --open-files-max"
        );
        Err(TopicChangeError::OverBudget(format!(
            "the broker cannot serve {partitions} more partitions: with its open-file limit of \
             {budget} it serves {} partitions and has room for {} more; the operator must raise \
             the broker's open-file limit (RLIMIT_NOFILE, --open-files-max)",
            admission.capacity(),
            admission.partitions_left()
        )))
    }

    /// Checks one topic of a CreateTopics request (beside those `made` by
    /// it so far) and builds it, not yet stored.
    fn new_topic(
        &self,
        topic: NewTopic,
        made: &[TopicInfo],
        admitted_partitions: &mut u64,
    ) -> Result<TopicInfo, TopicChangeError> {
        let registry = self.registry()?;
        if !is_valid_topic_name(&topic.name) {
            return Err(TopicChangeError::InvalidName(topic.name));
        }
        let taken = registry.borrow().table().get(&topic.name).is_some()
            || made.iter().any(|t| *t.name == *topic.name);
        if taken {
            return Err(TopicChangeError::AlreadyExists(topic.name));
        }
        check_partition_count(topic.partitions)?;
        let config = self
            .defaults()
            .with_overrides(&topic.configs)
            .map_err(|e| TopicChangeError::InvalidConfig(e.to_string()))?;
        let partitions = topic.partitions as u64;
        self.check_open_files(&topic.name, partitions, *admitted_partitions)?;
        *admitted_partitions += partitions;
        Ok(registry
            .borrow()
            .new_topic(&topic.name, topic.partitions, config))
    }

    async fn delete_topics_here(
        self: Rc<Self>,
        names: Vec<String>,
    ) -> Vec<Result<(), TopicChangeError>> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let registry = match self.registry() {
            Ok(registry) => registry,
            Err(error) => return vec![Err(error); names.len()],
        };
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            let exists = registry.borrow().table().get(&name).is_some();
            let result = if exists {
                registry
                    .borrow_mut()
                    .remove(&name)
                    .map(|_| ())
                    .map_err(|e| TopicChangeError::Failed(e.to_string()))
            } else {
                Err(TopicChangeError::UnknownTopic(name.clone()))
            };
            if result.is_ok() {
                tracing::info!(topic = %name, "topic deleted");
            }
            results.push(result);
        }
        let changed = results.iter().any(Result::is_ok);
        self.publish_for(results, changed).await
    }

    async fn create_partitions_here(
        self: Rc<Self>,
        name: String,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicChangeError> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let registry = self.registry()?;
        let current = match registry.borrow().table().get(&name) {
            Some(topic) => topic.partition_count(),
            None => return Err(TopicChangeError::UnknownTopic(name)),
        };
        if total <= current {
            return Err(TopicChangeError::InvalidPartitions(format!(
                "topic currently has {current} partitions, {total} would not be an increase"
            )));
        }
        check_partition_count(total)?;
        self.check_open_files(&name, (total - current) as u64, 0)?;
        if validate_only {
            return Ok(());
        }
        registry
            .borrow_mut()
            .add_partitions(&name, total)
            .map_err(|e| TopicChangeError::Failed(e.to_string()))?;
        self.publish().await
    }

    async fn change_topic_config_here(
        self: Rc<Self>,
        name: String,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), TopicChangeError> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let registry = self.registry()?;
        let current = match registry.borrow().table().get(&name) {
            Some(topic) => topic.config.overrides().clone(),
            None => return Err(TopicChangeError::UnknownTopic(name)),
        };
        let entries = change.applied_to(current);
        let config = self
            .defaults()
            .with_overrides(&entries)
            .map_err(|e| TopicChangeError::InvalidConfig(e.to_string()))?;
        if validate_only {
            return Ok(());
        }
        registry
            .borrow_mut()
            .set_config(&name, config)
            .map_err(|e| TopicChangeError::Failed(e.to_string()))?;
        self.publish().await
    }

    /// Publishes the table if `changed`; a failure to publish fails every
    /// change that had succeeded.
    async fn publish_for(
        self: &Rc<Self>,
        results: Vec<Result<(), TopicChangeError>>,
        changed: bool,
    ) -> Vec<Result<(), TopicChangeError>> {
        if !changed {
            return results;
        }
        match self.publish().await {
            Ok(()) => results,
            Err(error) => results
                .into_iter()
                .map(|r| r.and(Err(error.clone())))
                .collect(),
        }
    }

    /// In a cluster, on the metadata shard: stores the table `build` makes
    /// from the registry and applies it on every shard.
    pub async fn replace_topics(
        self: &Rc<Self>,
        build: impl FnOnce(&TopicRegistry) -> TopicTable,
    ) -> Result<(), TopicChangeError> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let registry = self.registry()?;
        let table = build(&registry.borrow());
        registry
            .borrow_mut()
            .replace(table)
            .map_err(|e| TopicChangeError::Failed(e.to_string()))?;
        self.publish().await
    }

    /// Applies the registry's table on every shard and waits for all of them.
    async fn publish(self: &Rc<Self>) -> Result<(), TopicChangeError> {
        let table: Arc<TopicTable> = self.registry()?.borrow().table();
        let applies = ShardId::all(self.shard_count()).map(|target| {
            let table = table.clone();
            run_on(self, target, move |s| async move {
                s.apply_topics(table).await.map_err(|e| e.to_string())
            })
        });
        for outcome in join_all(applies).await {
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(message)) => return Err(TopicChangeError::Failed(message)),
                Err(route) => return Err(TopicChangeError::Failed(route.to_string())),
            }
        }
        Ok(())
    }
}

pub fn check_partition_count(partitions: i32) -> Result<(), TopicChangeError> {
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(TopicChangeError::InvalidPartitions(format!(
            "number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {partitions}"
        )));
    }
    Ok(())
}

/// Which shards own a new topic's partitions, for its log line: each one for
/// a small topic, a summary for a large one (the list of 10,000 would be a
/// 30 KB line).
fn placement_summary(shards: &[ShardId]) -> String {
    const LISTED_MAX: usize = 64;
    if shards.len() <= LISTED_MAX {
        return format!("{shards:?}");
    }
    let spread = shards.iter().max().map_or(0, |last| last.index() + 1);
    let first = shards.first().copied().unwrap_or_default();
    format!("round robin over {spread} shards from shard {first}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_placements_are_listed_and_large_ones_summarized() {
        let small: Vec<ShardId> = (0..4).map(|p| ShardId(p % 2)).collect();
        assert_eq!(placement_summary(&small), "[0, 1, 0, 1]");
        let large: Vec<ShardId> = (0..10_000).map(|p| ShardId((p + 3) % 8)).collect();
        assert_eq!(
            placement_summary(&large),
            "round robin over 8 shards from shard 3"
        );
    }
}
