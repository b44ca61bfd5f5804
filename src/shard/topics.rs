//! The topic table: every topic, its id, configs and which shard owns each
//! partition. Shard 0 is its only writer; every shard reads immutable
//! snapshots (`Arc<TopicTable>`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::{PartitionId, ShardId};
use crate::topic_config::TopicConfig;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// More partitions than this in one topic is refused (keeps every table bounded).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

const REGISTRY_FILE: &str = "topics.meta";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// What this broker is for one partition of a cluster's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaRole {
    /// It serves the partition's clients.
    Leader,
    /// It holds a replica and answers clients NOT_LEADER_OR_FOLLOWER.
    Follower,
    /// It holds no replica.
    Absent,
}

#[derive(Debug)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub id: Uuid,
    /// `partition_shards[p]` is the shard that owns partition `p`.
    pub partition_shards: Vec<ShardId>,
    pub config: TopicConfig,
    /// In a cluster, this broker's role per partition; `None` on a single
    /// broker, which leads every partition.
    pub roles: Option<Arc<[ReplicaRole]>>,
}

impl TopicInfo {
    pub fn role(&self, partition: usize) -> ReplicaRole {
        match &self.roles {
            None => ReplicaRole::Leader,
            Some(roles) => roles.get(partition).copied().unwrap_or(ReplicaRole::Absent),
        }
    }

    pub fn partition_count(&self) -> i32 {
        self.partition_shards.len() as i32
    }

    pub fn shard_of(&self, partition: PartitionId) -> Option<ShardId> {
        partition
            .index()
            .and_then(|p| self.partition_shards.get(p).copied())
    }
}

/// An immutable snapshot of all topics.
#[derive(Debug, Default)]
pub struct TopicTable {
    by_name: BTreeMap<Arc<str>, Arc<TopicInfo>>,
    name_by_id: HashMap<Uuid, Arc<str>>,
}

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.by_name.get(name)
    }

    pub fn get_by_id(&self, id: &Uuid) -> Option<&Arc<TopicInfo>> {
        self.name_by_id
            .get(id)
            .and_then(|name| self.by_name.get(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<TopicInfo>> {
        self.by_name.values()
    }

    fn with(&self, changed: impl IntoIterator<Item = TopicInfo>) -> TopicTable {
        let mut by_name = self.by_name.clone();
        for topic in changed {
            by_name.insert(topic.name.clone(), Arc::new(topic));
        }
        TopicTable::from_map(by_name)
    }

    fn without(&self, name: &str) -> TopicTable {
        let mut by_name = self.by_name.clone();
        by_name.remove(name);
        TopicTable::from_map(by_name)
    }

    /// A table of `topics` (a cluster's replicated metadata as this broker holds it).
    pub fn from_topics(topics: impl IntoIterator<Item = TopicInfo>) -> TopicTable {
        TopicTable::from_map(
            topics
                .into_iter()
                .map(|t| (t.name.clone(), Arc::new(t)))
                .collect(),
        )
    }

    /// A table of `topics` as they are (shared with the tables that hold them).
    pub fn from_shared(topics: impl IntoIterator<Item = Arc<TopicInfo>>) -> TopicTable {
        TopicTable::from_map(topics.into_iter().map(|t| (t.name.clone(), t)).collect())
    }

    fn from_map(by_name: BTreeMap<Arc<str>, Arc<TopicInfo>>) -> TopicTable {
        let name_by_id = by_name.values().map(|t| (t.id, t.name.clone())).collect();
        TopicTable {
            by_name,
            name_by_id,
        }
    }
}

/// Kafka's topic name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The first shard of a topic's round-robin spread, so small topics do not
/// all pile onto shard 0.
fn first_shard(name: &str, shard_count: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    (hasher.finish() % shard_count as u64) as usize
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredTopic {
    name: String,
    id: [u8; 16],
    partition_shards: Vec<u32>,
    configs: Vec<(String, String)>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredRegistry {
    topics: Vec<StoredTopic>,
}

/// Decodes the bytes of `topics.meta` into a table, mapping owners onto
/// `shard_count` shards; the error says what is corrupt.
pub fn decode_registry(
    bytes: &[u8],
    shard_count: usize,
    defaults: &TopicConfig,
) -> Result<TopicTable, String> {
    assert!(shard_count > 0, "a broker runs at least one shard");
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    let stored = rkyv::from_bytes::<StoredRegistry, rkyv::rancor::Error>(&aligned)
        .map_err(|e| e.to_string())?;
    let mut by_name = BTreeMap::new();
    for topic in stored.topics {
        let configs: BTreeMap<String, String> = topic.configs.into_iter().collect();
        let config = defaults
            .with_overrides(&configs)
            .map_err(|e| e.to_string())?;
        let name: Arc<str> = topic.name.into();
        let info = TopicInfo {
            name: name.clone(),
            id: Uuid::from_bytes(topic.id),
            partition_shards: topic
                .partition_shards
                .iter()
                .map(|&s| ShardId(s as usize % shard_count))
                .collect(),
            config,
            roles: None,
        };
        by_name.insert(name, Arc::new(info));
    }
    Ok(TopicTable::from_map(by_name))
}

/// The persisted writer side of the topic table (lives on shard 0).
pub struct TopicRegistry {
    path: PathBuf,
    shard_count: usize,
    table: Arc<TopicTable>,
}

impl TopicRegistry {
    /// Loads `<data>/topics.meta`, mapping owners onto the current shard count.
    pub fn load(
        data_dir: &Path,
        shard_count: usize,
        defaults: &TopicConfig,
    ) -> Result<TopicRegistry, RegistryError> {
        let path = data_dir.join(REGISTRY_FILE);
        let mut table = TopicTable::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                table = decode_registry(&bytes, shard_count, defaults).map_err(|message| {
                    RegistryError::Corrupt {
                        path: path.clone(),
                        message,
                    }
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(RegistryError::Read { path, source }),
        }
        Ok(TopicRegistry {
            path,
            shard_count,
            table: Arc::new(table),
        })
    }

    pub fn table(&self) -> Arc<TopicTable> {
        self.table.clone()
    }

    /// Builds a new topic (not yet stored) with partitions spread over shards.
    pub fn new_topic(&self, name: &str, partitions: i32, config: TopicConfig) -> TopicInfo {
        self.placed(name, Uuid::new_v4(), partitions as usize, config, None)
    }

    /// A topic with a given id, partitions spread over shards as `new_topic` does.
    pub fn placed(
        &self,
        name: &str,
        id: Uuid,
        partitions: usize,
        config: TopicConfig,
        roles: Option<Arc<[ReplicaRole]>>,
    ) -> TopicInfo {
        let first = first_shard(name, self.shard_count);
        TopicInfo {
            name: name.into(),
            id,
            partition_shards: (0..partitions)
                .map(|p| ShardId((first + p) % self.shard_count))
                .collect(),
            config,
            roles,
        }
    }

    /// Stores `table` in place of the current one.
    pub fn replace(&mut self, table: TopicTable) -> Result<Arc<TopicTable>, RegistryError> {
        let table = Arc::new(table);
        self.store(&table)?;
        self.table = table;
        Ok(self.table.clone())
    }

    pub fn put(&mut self, topic: TopicInfo) -> Result<Arc<TopicTable>, RegistryError> {
        self.put_all(vec![topic])
    }

    /// Adds or replaces `topics` with one write of the table.
    pub fn put_all(&mut self, topics: Vec<TopicInfo>) -> Result<Arc<TopicTable>, RegistryError> {
        let table = Arc::new(self.table.with(topics));
        self.store(&table)?;
        self.table = table;
        Ok(self.table.clone())
    }

    pub fn add_partitions(
        &mut self,
        name: &str,
        total: i32,
    ) -> Result<Arc<TopicTable>, RegistryError> {
        let Some(old) = self.table.get(name).cloned() else {
            return Ok(self.table.clone());
        };
        let first = first_shard(name, self.shard_count);
        let partition_shards = (0..total as usize)
            .map(|p| {
                old.partition_shards
                    .get(p)
                    .copied()
                    .unwrap_or(ShardId((first + p) % self.shard_count))
            })
            .collect();
        self.put(TopicInfo {
            name: old.name.clone(),
            id: old.id,
            partition_shards,
            config: old.config.clone(),
            roles: old.roles.clone(),
        })
    }

    pub fn set_config(
        &mut self,
        name: &str,
        config: TopicConfig,
    ) -> Result<Arc<TopicTable>, RegistryError> {
        let Some(old) = self.table.get(name).cloned() else {
            return Ok(self.table.clone());
        };
        self.put(TopicInfo {
            name: old.name.clone(),
            id: old.id,
            partition_shards: old.partition_shards.clone(),
            config,
            roles: old.roles.clone(),
        })
    }

    pub fn remove(&mut self, name: &str) -> Result<Arc<TopicTable>, RegistryError> {
        let table = Arc::new(self.table.without(name));
        self.store(&table)?;
        self.table = table;
        Ok(self.table.clone())
    }

    /// Writes the table via temp file + fsync + rename + directory fsync, so a
    /// crash leaves either the old or the new table. Admin changes are rare and
    /// small, so plain blocking file calls are fine here.
    fn store(&self, table: &TopicTable) -> Result<(), RegistryError> {
        let stored = StoredRegistry {
            topics: table
                .iter()
                .map(|t| StoredTopic {
                    name: t.name.to_string(),
                    id: *t.id.as_bytes(),
                    partition_shards: t
                        .partition_shards
                        .iter()
                        .map(|&s| s.index() as u32)
                        .collect(),
                    configs: t
                        .config
                        .overrides()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .collect(),
        };
        let write_err = |source| RegistryError::Write {
            path: self.path.clone(),
            source,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&stored)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        crate::storage::file::replace_file_blocking(&self.path, &bytes).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(is_valid_topic_name("orders.v1_eu-west"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name(".."));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn registry_survives_reload_and_remaps_shards() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = TopicConfig::defaults();
        let mut registry = TopicRegistry::load(dir.path(), 4, &defaults).unwrap();
        let topic = registry.new_topic("t", 8, defaults.clone());
        let id = topic.id;
        registry.put(topic).unwrap();
        let reloaded = TopicRegistry::load(dir.path(), 2, &defaults).unwrap();
        let t = reloaded.table();
        let info = t.get("t").unwrap();
        assert_eq!(info.id, id);
        assert_eq!(info.partition_count(), 8);
        assert!(info.partition_shards.iter().all(|&s| s.index() < 2));
        assert!(t.get_by_id(&id).is_some());
    }
}
