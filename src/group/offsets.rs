//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, removal of a
//! deleted topic's offsets and retention (offsets.retention.minutes, KIP-211).
//!
//! A commit is written to the log and answered only once durable; memory is
//! updated after that, and a record never replaces one written after it (the
//! log sequence decides), so memory matches the order on disk.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::coordinator::{now_ms, str_bytes, validate_member, GroupCoordinator};
use super::error::Error;
use super::record::{Key, OffsetValue};
use super::state::{Group, GroupState, StoredOffset};
use super::{validate_group_id, TopicCatalog};

/// OffsetFetch's answer for a partition without a committed offset.
const NO_OFFSET: i64 = -1;
const NO_LEADER_EPOCH: i32 = -1;
/// `retention_time_ms` value meaning "use the broker's retention" (OffsetCommit v2-v4).
const DEFAULT_RETENTION: i64 = -1;

/// Offsets of one group whose tombstones are being written.
struct OffsetRemoval {
    group_id: String,
    incarnation: u64,
    keys: Vec<(String, i32)>,
}

struct OffsetWrite {
    topic: String,
    partition: i32,
    value: OffsetValue,
}

impl GroupCoordinator {
    /// Commits offsets; every partition gets its own error code, and the
    /// answer comes once the accepted ones are durable.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
        topics: &dyn TopicCatalog,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.as_str().to_string();
        let group_check = self.validate_commit(&req);
        let now = now_ms();
        // KIP-211 removed per-request retention in v5.
        let expire_timestamp_ms = (version <= 4 && req.retention_time_ms != DEFAULT_RETENTION)
            .then(|| now.saturating_add(req.retention_time_ms));
        let mut writes = Vec::new();
        let mut response_topics = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let name = topic.name.0.as_str();
            let partition_count = topics.partition_count(name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for partition in &topic.partitions {
                let index = partition.partition_index;
                let code = match group_check {
                    Err(code) => code.code(),
                    Ok(_) if !partition_count.is_some_and(|count| index >= 0 && index < count) => {
                        ResponseError::UnknownTopicOrPartition.code()
                    }
                    Ok(_)
                        if partition.committed_metadata.as_ref().map_or(0, |m| m.len())
                            > self.config.offset_metadata_max_bytes =>
                    {
                        ResponseError::OffsetMetadataTooLarge.code()
                    }
                    Ok(_) => {
                        writes.push(OffsetWrite {
                            topic: name.to_string(),
                            partition: index,
                            value: OffsetValue {
                                offset: partition.committed_offset,
                                leader_epoch: partition.committed_leader_epoch,
                                metadata: partition
                                    .committed_metadata
                                    .as_ref()
                                    .map(|m| m.as_str().to_string()),
                                commit_timestamp_ms: now,
                                expire_timestamp_ms,
                            },
                        });
                        0
                    }
                };
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            response_topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        if let Ok(incarnation) = group_check {
            if !writes.is_empty() {
                if let Err(error) = self.write_offsets(&group_id, incarnation, writes).await {
                    tracing::warn!(group = %group_id, %error, "offset commit failed");
                    // Not durable: the partitions accepted above are not committed.
                    let code = error.response_error().code();
                    for partition in response_topics
                        .iter_mut()
                        .flat_map(|t| t.partitions.iter_mut())
                    {
                        if partition.error_code == 0 {
                            partition.error_code = code;
                        }
                    }
                }
            }
        }
        OffsetCommitResponse::default().with_topics(response_topics)
    }

    /// Kafka's validateOffsetCommit. Returns the group's incarnation.
    fn validate_commit(&self, req: &OffsetCommitRequest) -> Result<u64, ResponseError> {
        if self.closed.get() {
            return Err(ResponseError::NotCoordinator);
        }
        let group_id = req.group_id.0.as_str();
        validate_group_id(group_id, false)?;
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.as_str();
        let instance_id = req
            .group_instance_id
            .as_ref()
            .filter(|i| !i.is_empty())
            .map(|i| i.as_str());
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            if generation >= 0 {
                // A member of a generation this coordinator never formed.
                return Err(ResponseError::IllegalGeneration);
            }
            // A standalone consumer that only stores offsets here.
            let mut group = Group::new(group_id.to_string(), self.new_incarnation(), now_ms());
            group.generation = 0;
            self.persist_group(&group);
            let incarnation = group.incarnation;
            groups.insert(group_id.to_string(), group);
            return Ok(incarnation);
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            validate_member(group, member_id, instance_id)?;
            if generation != group.generation {
                return Err(ResponseError::IllegalGeneration);
            }
            if group.state == GroupState::CompletingRebalance {
                // The member has the new generation but not its assignment yet.
                return Err(ResponseError::RebalanceInProgress);
            }
            if let Some(member) = group.members.get_mut(member_id) {
                member.heartbeat_deadline = std::time::Instant::now()
                    + std::time::Duration::from_millis(member.session_timeout_ms.max(0) as u64);
            }
        } else if group.state != GroupState::Empty {
            // When the group has members, only members commit.
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(group.incarnation)
    }

    async fn write_offsets(
        &self,
        group_id: &str,
        incarnation: u64,
        writes: Vec<OffsetWrite>,
    ) -> Result<(), Error> {
        let records = writes
            .iter()
            .map(|write| {
                let key = Key::Offset {
                    group: group_id.to_string(),
                    topic: write.topic.clone(),
                    partition: write.partition,
                };
                (key.encode(), Some(write.value.encode()))
            })
            .collect();
        let seqs = self.log.enqueue_all(records)?;
        let Some(&last) = seqs.last() else {
            return Ok(());
        };
        let this = self.strong().ok_or(Error::Closed)?;
        let group_id = group_id.to_string();
        let applied = Self::run_to_completion(async move {
            this.log.sync(last).await?;
            this.apply_offsets(&group_id, incarnation, writes, seqs);
            Ok(())
        });
        applied.await.unwrap_or(Err(Error::Closed))
    }

    /// Puts durable commits in memory unless a later write of the same partition got there first.
    fn apply_offsets(
        &self,
        group_id: &str,
        incarnation: u64,
        writes: Vec<OffsetWrite>,
        seqs: Vec<u64>,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(group_id)
            .filter(|g| g.incarnation == incarnation)
        else {
            return;
        };
        for (write, seq) in writes.into_iter().zip(seqs) {
            let key = (write.topic, write.partition);
            if group
                .offsets
                .get(&key)
                .is_some_and(|stored| stored.seq > seq)
            {
                continue;
            }
            group.offsets.insert(
                key,
                StoredOffset {
                    value: write.value,
                    seq,
                },
            );
        }
    }

    /// Waits for tombstones up to `seq`, then drops the offsets from memory,
    /// even if the caller goes away meanwhile.
    async fn forget_when_durable(
        &self,
        removals: Vec<OffsetRemoval>,
        seq: u64,
    ) -> Result<(), Error> {
        let this = self.strong().ok_or(Error::Closed)?;
        let forgotten = Self::run_to_completion(async move {
            this.log.sync(seq).await?;
            for removal in &removals {
                this.forget_offsets(&removal.group_id, removal.incarnation, &removal.keys, seq);
            }
            Ok(())
        });
        forgotten.await.unwrap_or(Err(Error::Closed))
    }

    /// One group of an OffsetFetch (v8+ shape). `topics: None` fetches all of the group's offsets.
    pub fn offset_fetch_group(
        &self,
        request: &OffsetFetchRequestGroup,
        _require_stable: bool,
    ) -> OffsetFetchResponseGroup {
        // require_stable (KIP-447) matters only with pending transactional
        // offsets, which this coordinator does not have.
        let response = OffsetFetchResponseGroup::default().with_group_id(request.group_id.clone());
        if self.closed.get() {
            return response.with_error_code(ResponseError::NotCoordinator.code());
        }
        let group_id = request.group_id.0.as_str();
        if let Err(code) = validate_group_id(group_id, false) {
            return response.with_error_code(code.code());
        }
        let groups = self.groups.borrow();
        let group = groups.get(group_id).filter(|g| g.state != GroupState::Dead);
        let partition = |topic: &str, index: i32| {
            let stored = group.and_then(|g| g.offsets.get(&(topic.to_string(), index)));
            OffsetFetchResponsePartitions::default()
                .with_partition_index(index)
                .with_committed_offset(stored.map_or(NO_OFFSET, |s| s.value.offset))
                .with_committed_leader_epoch(
                    stored.map_or(NO_LEADER_EPOCH, |s| s.value.leader_epoch),
                )
                .with_metadata(Some(str_bytes(
                    stored
                        .and_then(|s| s.value.metadata.as_deref())
                        .unwrap_or(""),
                )))
        };
        let topics = match &request.topics {
            Some(topics) => topics
                .iter()
                .map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|&i| partition(t.name.0.as_str(), i))
                                .collect(),
                        )
                })
                .collect(),
            None => {
                let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
                for (topic, index) in group.iter().flat_map(|g| g.offsets.keys()) {
                    if topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
                        topics.push(
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(topic))),
                        );
                    }
                    if let Some(last) = topics.last_mut() {
                        last.partitions.push(partition(topic, *index));
                    }
                }
                topics
            }
        };
        response.with_topics(topics)
    }

    /// Deletes committed offsets of partitions the group no longer consumes.
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        _version: i16,
    ) -> OffsetDeleteResponse {
        let group_id = req.group_id.0.as_str().to_string();
        let top_level =
            |code: ResponseError| OffsetDeleteResponse::default().with_error_code(code.code());
        if self.closed.get() {
            return top_level(ResponseError::NotCoordinator);
        }
        if let Err(code) = validate_group_id(&group_id, false) {
            return top_level(code);
        }
        let mut deletes: Vec<(String, i32)> = Vec::new();
        let mut response_topics = Vec::with_capacity(req.topics.len());
        let (incarnation, last_seq) = {
            let groups = self.groups.borrow();
            let Some(group) = groups
                .get(&group_id)
                .filter(|g| g.state != GroupState::Dead)
            else {
                return top_level(ResponseError::GroupIdNotFound);
            };
            // An Empty group may drop any offset; a consumer group only those
            // of topics no member subscribes to; other groups none.
            let subscribed = if group.state == GroupState::Empty {
                BTreeSet::new()
            } else {
                match group.subscribed_topics() {
                    Some(topics) => topics,
                    None => return top_level(ResponseError::NonEmptyGroup),
                }
            };
            for topic in &req.topics {
                let name = topic.name.0.as_str();
                let code = if subscribed.contains(name) {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    0
                };
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        if code == 0
                            && group
                                .offsets
                                .contains_key(&(name.to_string(), p.partition_index))
                        {
                            deletes.push((name.to_string(), p.partition_index));
                        }
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                response_topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions),
                );
            }
            let tombstones = offset_tombstones(&group_id, &deletes);
            let last_seq = match self.log.enqueue_all(tombstones) {
                Ok(seqs) => seqs.last().copied().unwrap_or(0),
                Err(error) => {
                    tracing::warn!(group = %group_id, %error, "offset delete failed");
                    return top_level(error.response_error());
                }
            };
            (group.incarnation, last_seq)
        };
        if last_seq > 0 {
            let removal = OffsetRemoval {
                group_id: group_id.clone(),
                incarnation,
                keys: deletes,
            };
            if let Err(error) = self.forget_when_durable(vec![removal], last_seq).await {
                tracing::warn!(group = %group_id, %error, "offset delete failed");
                return top_level(error.response_error());
            }
        }
        OffsetDeleteResponse::default().with_topics(response_topics)
    }

    /// Drops offsets from memory unless rewritten after the tombstones (`seq`).
    fn forget_offsets(&self, group_id: &str, incarnation: u64, keys: &[(String, i32)], seq: u64) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(group_id)
            .filter(|g| g.incarnation == incarnation)
        else {
            return;
        };
        for key in keys {
            if group
                .offsets
                .get(key)
                .is_some_and(|stored| stored.seq < seq)
            {
                group.offsets.remove(key);
            }
        }
    }

    /// The topic was deleted: its committed offsets go too, in every group.
    pub async fn remove_topic(&self, topic: &str) {
        let mut removals: Vec<OffsetRemoval> = Vec::new();
        let mut last_seq = 0;
        {
            let groups = self.groups.borrow();
            for group in groups.values() {
                let keys: Vec<(String, i32)> = group
                    .offsets
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .cloned()
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                match self.log.enqueue_all(offset_tombstones(&group.id, &keys)) {
                    Ok(seqs) => last_seq = seqs.last().copied().unwrap_or(last_seq),
                    Err(error) => {
                        // Records already enqueued for other groups are harmless:
                        // those groups' offsets are dropped from memory below.
                        tracing::warn!(topic, %error, "could not remove offsets of deleted topic");
                        break;
                    }
                }
                removals.push(OffsetRemoval {
                    group_id: group.id.clone(),
                    incarnation: group.incarnation,
                    keys,
                });
            }
        }
        if last_seq == 0 {
            return;
        }
        if let Err(error) = self.forget_when_durable(removals, last_seq).await {
            tracing::warn!(topic, %error, "could not remove offsets of deleted topic");
        }
    }

    /// Removes offsets past retention and then Empty groups with no offsets
    /// left (Kafka's cleanupGroupMetadata). Returns the number of offsets removed.
    pub async fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.offsets_retention_ms;
        let mut offset_removals: Vec<OffsetRemoval> = Vec::new();
        let mut group_removals: Vec<(String, u64)> = Vec::new();
        let mut last_seq = 0;
        let mut expired_count = 0;
        {
            let groups = self.groups.borrow();
            for group in groups.values() {
                let expired = expired_offsets(group, now_ms, retention_ms);
                let all_gone = group.offsets.len() == expired.len();
                let remove_group = group.state == GroupState::Empty
                    && group.members.is_empty()
                    && group.pending_members.is_empty()
                    && all_gone;
                let mut tombstones = offset_tombstones(&group.id, &expired);
                if remove_group {
                    tombstones.push((
                        Key::Group {
                            group: group.id.clone(),
                        }
                        .encode(),
                        None,
                    ));
                }
                if tombstones.is_empty() {
                    continue;
                }
                match self.log.enqueue_all(tombstones) {
                    Ok(seqs) => last_seq = seqs.last().copied().unwrap_or(last_seq),
                    Err(error) => {
                        // Retried at the next check; what is enqueued is applied below.
                        tracing::warn!(%error, "could not expire offsets");
                        break;
                    }
                }
                expired_count += expired.len();
                if remove_group {
                    group_removals.push((group.id.clone(), group.incarnation));
                }
                if !expired.is_empty() {
                    offset_removals.push(OffsetRemoval {
                        group_id: group.id.clone(),
                        incarnation: group.incarnation,
                        keys: expired,
                    });
                }
            }
        }
        if last_seq == 0 {
            return 0;
        }
        if let Err(error) = self.forget_when_durable(offset_removals, last_seq).await {
            tracing::warn!(%error, "could not expire offsets");
            return 0;
        }
        let mut groups = self.groups.borrow_mut();
        for (group_id, incarnation) in group_removals {
            // Only if nothing joined or committed while the tombstone was written.
            let still_idle = groups.get(&group_id).is_some_and(|g| {
                g.incarnation == incarnation
                    && g.state == GroupState::Empty
                    && g.offsets.is_empty()
                    && g.pending_members.is_empty()
            });
            if still_idle {
                groups.remove(&group_id);
            } else if let Some(group) = groups
                .get(&group_id)
                .filter(|g| g.incarnation == incarnation)
            {
                // The tombstone is on disk but the group lives on: record it again.
                self.persist_group(group);
            }
        }
        expired_count
    }
}

/// The groups of an OffsetFetch in the v8+ shape: v1-7 name one group at the
/// top level. The broker routes each to its shard's `offset_fetch_group`.
pub fn offset_fetch_request_groups(
    request: &OffsetFetchRequest,
    version: i16,
) -> Vec<OffsetFetchRequestGroup> {
    if version >= 8 {
        return request.groups.clone();
    }
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| {
                OffsetFetchRequestTopics::default()
                    .with_name(t.name.clone())
                    .with_partition_indexes(t.partition_indexes.clone())
            })
            .collect()
    });
    vec![OffsetFetchRequestGroup::default()
        .with_group_id(request.group_id.clone())
        .with_topics(topics)]
}

/// The OffsetFetch response for `version` from the per-group answers (in request order).
pub fn offset_fetch_response(
    request: &OffsetFetchRequest,
    groups: Vec<OffsetFetchResponseGroup>,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let Some(group) = groups.into_iter().next() else {
        return OffsetFetchResponse::default();
    };
    let partition = |p: OffsetFetchResponsePartitions| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(p.partition_index)
            .with_committed_offset(p.committed_offset)
            .with_committed_leader_epoch(p.committed_leader_epoch)
            .with_metadata(p.metadata)
            .with_error_code(p.error_code)
    };
    let mut topics: Vec<OffsetFetchResponseTopic> = group
        .topics
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(t.partitions.into_iter().map(partition).collect())
        })
        .collect();
    if version < 2 && group.error_code != 0 {
        // v0-1 have no top-level error: every requested partition carries it.
        topics = request
            .topics
            .iter()
            .flatten()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&index| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(NO_OFFSET)
                            .with_metadata(Some(str_bytes("")))
                            .with_error_code(group.error_code)
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
    }
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(group.error_code)
}

/// Tombstones for these offsets of `group_id`.
fn offset_tombstones(group_id: &str, keys: &[(String, i32)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    keys.iter()
        .map(|(topic, partition)| {
            let key = Key::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            (key.encode(), None)
        })
        .collect()
}

/// Which of a group's offsets are past retention (Kafka's removeExpiredOffsets).
fn expired_offsets(group: &Group, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
    let is_expired = |stored: &StoredOffset, base_ms: i64| match stored.value.expire_timestamp_ms {
        Some(expire_ms) => now_ms >= expire_ms,
        None => now_ms.saturating_sub(base_ms) >= retention_ms,
    };
    match (group.protocol_type.as_deref(), group.state) {
        // No members: expire relative to when the group became Empty.
        (Some(_), GroupState::Empty) => group
            .offsets
            .iter()
            .filter(|(_, stored)| is_expired(stored, group.state_timestamp_ms))
            .map(|(key, _)| key.clone())
            .collect(),
        // A stable consumer group: offsets of topics it no longer subscribes to.
        (Some("consumer"), GroupState::Stable) => match group.subscribed_topics() {
            Some(subscribed) => group
                .offsets
                .iter()
                .filter(|((topic, _), stored)| {
                    !subscribed.contains(topic)
                        && is_expired(stored, stored.value.commit_timestamp_ms)
                })
                .map(|(key, _)| key.clone())
                .collect(),
            None => Vec::new(),
        },
        // Standalone consumers: relative to each commit.
        (None, _) => group
            .offsets
            .iter()
            .filter(|(_, stored)| is_expired(stored, stored.value.commit_timestamp_ms))
            .map(|(key, _)| key.clone())
            .collect(),
        _ => Vec::new(),
    }
}
