//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, removal of a
//! deleted topic's offsets and retention (offsets.retention.minutes, KIP-211).
//!
//! A commit is written to the log and answered only once durable; memory is
//! updated after that, and a record never replaces one written after it (the
//! log sequence decides), so memory matches the order on disk.

use std::collections::BTreeSet;
use std::time::Instant;

use super::api::{
    CommitRequest, CommittedPartition, DeleteOffsetsAnswer, DeleteOffsetsRequest, FetchRequest,
    FetchedGroup, FetchedOffset, FetchedTopic, PartitionOutcome, TopicOutcome,
};
use super::coordinator::{now_ms, session_duration, validate_member, GroupCoordinator};
use super::error::{GroupError, GroupLogError};
use super::record::{Key, OffsetValue};
use super::state::{Group, GroupState, StoredOffset};
use super::{validate_group_id, TopicCatalog};
use crate::ids::PartitionId;
use crate::storage::Offset;

/// OffsetFetch's answer for a partition without a committed offset.
pub const NO_OFFSET: Offset = Offset(-1);
const NO_LEADER_EPOCH: i32 = -1;

/// Offsets of one group whose tombstones are being written.
struct OffsetRemoval {
    group_id: String,
    incarnation: u64,
    keys: Vec<(String, PartitionId)>,
}

pub(super) struct OffsetWrite {
    pub(super) topic: String,
    pub(super) partition: PartitionId,
    pub(super) value: OffsetValue,
}

impl GroupCoordinator {
    /// Commits offsets; every partition gets its own outcome, and the answer
    /// comes once the accepted ones are durable.
    pub async fn offset_commit(
        &self,
        req: CommitRequest,
        topics: &dyn TopicCatalog,
    ) -> Vec<TopicOutcome> {
        let group_check = self.validate_commit(&req);
        let now = now_ms();
        let expire_timestamp_ms = req.retention_ms.map(|ms| now.saturating_add(ms));
        let (writes, mut outcomes) =
            self.accepted_writes(&req, topics, group_check, now, expire_timestamp_ms);
        if let (Ok(incarnation), false) = (group_check, writes.is_empty()) {
            if let Err(error) = self.write_offsets(&req.group_id, incarnation, writes).await {
                tracing::warn!(group = %req.group_id, %error, "offset commit failed");
                // Not durable: the partitions accepted above are not committed.
                refuse_accepted(&mut outcomes, error.group_error());
            }
        }
        outcomes
    }

    /// The offsets of `req` to write, and each partition's outcome: the
    /// group's check (`group_check`), then the partition's own.
    pub(super) fn accepted_writes(
        &self,
        req: &CommitRequest,
        topics: &dyn TopicCatalog,
        group_check: Result<u64, GroupError>,
        now: i64,
        expire_timestamp_ms: Option<i64>,
    ) -> (Vec<OffsetWrite>, Vec<TopicOutcome>) {
        let mut writes = Vec::new();
        let mut outcomes = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let partition_count = topics.partition_count(&topic.name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for partition in &topic.partitions {
                let accepted = group_check
                    .and_then(|_| self.check_commit_partition(partition, partition_count));
                if accepted.is_ok() {
                    writes.push(OffsetWrite {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                        value: OffsetValue {
                            offset: partition.offset,
                            leader_epoch: partition.leader_epoch,
                            metadata: partition.metadata.clone(),
                            commit_timestamp_ms: now,
                            expire_timestamp_ms,
                        },
                    });
                }
                partitions.push(PartitionOutcome {
                    partition: partition.partition,
                    error: accepted.err(),
                });
            }
            outcomes.push(TopicOutcome {
                name: topic.name.clone(),
                partitions,
            });
        }
        (writes, outcomes)
    }

    fn check_commit_partition(
        &self,
        partition: &CommittedPartition,
        partition_count: Option<i32>,
    ) -> Result<(), GroupError> {
        let index = partition.partition;
        if !partition_count.is_some_and(|count| index.get() >= 0 && index.get() < count) {
            return Err(GroupError::UnknownTopicOrPartition);
        }
        if partition.metadata.as_ref().map_or(0, |m| m.len())
            > self.config.offset_metadata_max_bytes
        {
            return Err(GroupError::OffsetMetadataTooLarge);
        }
        Ok(())
    }

    /// Kafka's validateOffsetCommit. Returns the group's incarnation.
    pub(super) fn validate_commit(&self, req: &CommitRequest) -> Result<u64, GroupError> {
        if self.closed.get() {
            return Err(GroupError::NotCoordinator);
        }
        let group_id = req.group_id.as_str();
        validate_group_id(group_id, false)?;
        let generation = req.generation_id;
        let member_id = req.member_id.as_str();
        let instance_id = req.group_instance_id.as_deref();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            if generation >= 0 {
                // A member of a generation this coordinator never formed.
                return Err(GroupError::IllegalGeneration);
            }
            // A standalone consumer that only stores offsets here.
            self.check_room_for_group(groups.len())?;
            let mut group = Group::new(group_id.to_string(), self.new_incarnation(), now_ms());
            group.generation = 0;
            self.persist_group(&group);
            let incarnation = group.incarnation;
            groups.insert(group_id.to_string(), group);
            return Ok(incarnation);
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            validate_member(group, member_id, instance_id)?;
            if generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
            if group.state == GroupState::CompletingRebalance {
                // The member has the new generation but not its assignment yet.
                return Err(GroupError::RebalanceInProgress);
            }
            if let Some(member) = group.members.get_mut(member_id) {
                member.heartbeat_deadline =
                    Instant::now() + session_duration(member.session_timeout_ms);
            }
        } else if group.state != GroupState::Empty {
            // When the group has members, only members commit.
            return Err(GroupError::UnknownMemberId);
        }
        Ok(group.incarnation)
    }

    async fn write_offsets(
        &self,
        group_id: &str,
        incarnation: u64,
        writes: Vec<OffsetWrite>,
    ) -> Result<(), GroupLogError> {
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
        let group_id = group_id.to_string();
        self.write_then_apply(records, move |this, seqs| {
            this.apply_offsets(&group_id, incarnation, writes, seqs)
        })
        .await
    }

    /// Puts durable commits in memory unless a later write of the same partition got there first.
    pub(super) fn apply_offsets(
        &self,
        group_id: &str,
        incarnation: u64,
        writes: Vec<OffsetWrite>,
        seqs: Vec<u64>,
    ) {
        let Some(mut group) = self.group_mut(group_id, incarnation) else {
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
    ) -> Result<(), GroupLogError> {
        let this = self.strong().ok_or(GroupLogError::Closed)?;
        let forgotten = Self::run_to_completion(async move {
            this.log.sync(seq).await?;
            for removal in &removals {
                this.forget_offsets(&removal.group_id, removal.incarnation, &removal.keys, seq);
            }
            Ok(())
        });
        forgotten.await.unwrap_or(Err(GroupLogError::Closed))
    }

    /// One group's committed offsets. `topics: None` fetches all of them.
    pub fn offset_fetch_group(&self, request: &FetchRequest) -> FetchedGroup {
        let refused = |error| FetchedGroup {
            group_id: request.group_id.clone(),
            error: Some(error),
            topics: Vec::new(),
        };
        if self.closed.get() {
            return refused(GroupError::NotCoordinator);
        }
        if let Err(error) = validate_group_id(&request.group_id, false) {
            return refused(error);
        }
        // KIP-447: a read_committed consumer waits for pending transactional offsets.
        if request.require_stable && self.has_pending_txn_offsets(request) {
            return refused(GroupError::UnstableOffsetCommit);
        }
        let groups = self.groups.borrow();
        let group = groups
            .get(&request.group_id)
            .filter(|g| g.state != GroupState::Dead);
        let topics = match &request.topics {
            Some(topics) => topics
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&i| fetched_offset(group, &t.name, i))
                        .collect(),
                })
                .collect(),
            None => all_fetched_offsets(group),
        };
        FetchedGroup {
            group_id: request.group_id.clone(),
            error: None,
            topics,
        }
    }

    /// Deletes committed offsets of partitions the group no longer consumes.
    pub async fn offset_delete(&self, req: DeleteOffsetsRequest) -> DeleteOffsetsAnswer {
        if self.closed.get() {
            return DeleteOffsetsAnswer::refused(GroupError::NotCoordinator);
        }
        if let Err(error) = validate_group_id(&req.group_id, false) {
            return DeleteOffsetsAnswer::refused(error);
        }
        let (removal, last_seq, topics) = match self.start_offset_delete(&req) {
            Ok(started) => started,
            Err(error) => return DeleteOffsetsAnswer::refused(error),
        };
        if last_seq > 0 {
            if let Err(error) = self.forget_when_durable(vec![removal], last_seq).await {
                tracing::warn!(group = %req.group_id, %error, "offset delete failed");
                return DeleteOffsetsAnswer::refused(error.group_error());
            }
        }
        DeleteOffsetsAnswer {
            error: None,
            topics,
        }
    }

    /// Writes the tombstones of the offsets the group may drop. Returns them,
    /// the last tombstone's log sequence (0: none) and each partition's outcome.
    fn start_offset_delete(
        &self,
        req: &DeleteOffsetsRequest,
    ) -> Result<(OffsetRemoval, u64, Vec<TopicOutcome>), GroupError> {
        let groups = self.groups.borrow();
        let group = groups
            .get(&req.group_id)
            .filter(|g| g.state != GroupState::Dead)
            .ok_or(GroupError::GroupIdNotFound)?;
        // An Empty group may drop any offset; a consumer group only those
        // of topics no member subscribes to; other groups none.
        let subscribed = if group.state == GroupState::Empty {
            BTreeSet::new()
        } else {
            group.subscribed_topics().ok_or(GroupError::NonEmptyGroup)?
        };
        let mut deletes: Vec<(String, PartitionId)> = Vec::new();
        let mut outcomes = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let error = subscribed
                .contains(&topic.name)
                .then_some(GroupError::GroupSubscribedToTopic);
            let partitions = topic
                .partitions
                .iter()
                .map(|&partition| {
                    let key = (topic.name.clone(), partition);
                    if error.is_none() && group.offsets.contains_key(&key) {
                        deletes.push(key);
                    }
                    PartitionOutcome { partition, error }
                })
                .collect();
            outcomes.push(TopicOutcome {
                name: topic.name.clone(),
                partitions,
            });
        }
        let last_seq = match self
            .log
            .enqueue_all(offset_tombstones(&req.group_id, &deletes))
        {
            Ok(seqs) => seqs.last().copied().unwrap_or(0),
            Err(error) => {
                tracing::warn!(group = %req.group_id, %error, "offset delete failed");
                return Err(error.group_error());
            }
        };
        let removal = OffsetRemoval {
            group_id: req.group_id.clone(),
            incarnation: group.incarnation,
            keys: deletes,
        };
        Ok((removal, last_seq, outcomes))
    }

    /// Drops offsets from memory unless rewritten after the tombstones (`seq`).
    fn forget_offsets(
        &self,
        group_id: &str,
        incarnation: u64,
        keys: &[(String, PartitionId)],
        seq: u64,
    ) {
        let Some(mut group) = self.group_mut(group_id, incarnation) else {
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
                let keys: Vec<(String, PartitionId)> = group
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
        self.remove_expired_groups(group_removals);
        expired_count
    }

    /// Removes the groups whose tombstones are durable, unless something
    /// joined or committed meanwhile.
    fn remove_expired_groups(&self, removals: Vec<(String, u64)>) {
        let mut groups = self.groups.borrow_mut();
        for (group_id, incarnation) in removals {
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
    }
}

/// Partitions accepted before the write failed get the write's error.
pub(super) fn refuse_accepted(outcomes: &mut [TopicOutcome], error: GroupError) {
    for partition in outcomes.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        if partition.error.is_none() {
            partition.error = Some(error);
        }
    }
}

fn fetched_offset(group: Option<&Group>, topic: &str, partition: PartitionId) -> FetchedOffset {
    let stored = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
    FetchedOffset {
        partition,
        offset: stored.map_or(NO_OFFSET, |s| s.value.offset),
        leader_epoch: stored.map_or(NO_LEADER_EPOCH, |s| s.value.leader_epoch),
        metadata: stored
            .and_then(|s| s.value.metadata.clone())
            .unwrap_or_default(),
    }
}

/// Every committed offset of the group, by topic in name order.
fn all_fetched_offsets(group: Option<&Group>) -> Vec<FetchedTopic> {
    let mut topics: Vec<FetchedTopic> = Vec::new();
    for (topic, index) in group.iter().flat_map(|g| g.offsets.keys()) {
        if topics.last().is_none_or(|t| &t.name != topic) {
            topics.push(FetchedTopic {
                name: topic.clone(),
                partitions: Vec::new(),
            });
        }
        if let Some(last) = topics.last_mut() {
            last.partitions.push(fetched_offset(group, topic, *index));
        }
    }
    topics
}

/// Tombstones for these offsets of `group_id`.
fn offset_tombstones(
    group_id: &str,
    keys: &[(String, PartitionId)],
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
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
fn expired_offsets(group: &Group, now_ms: i64, retention_ms: i64) -> Vec<(String, PartitionId)> {
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
