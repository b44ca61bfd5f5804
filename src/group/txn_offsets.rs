//! TxnOffsetCommit (KIP-98, KIP-447): a transaction's offsets are stored as
//! pending, per group and producer id, and become committed offsets only
//! when the transaction coordinator reports the transaction committed
//! ([`GroupCoordinator::complete_txn`], the group's "marker"); an abort drops
//! them. Pending offsets are in the log, so a crash between the commit
//! decision and the marker loses nothing: the coordinator reports again.

use std::collections::{BTreeMap, HashMap};

use super::api::{TopicOutcome, TxnCommitRequest};
use super::coordinator::{now_ms, GroupCoordinator};
use super::error::GroupLogError;
use super::offsets::{refuse_accepted, OffsetWrite};
use super::record::{Key, OffsetValue};
use super::state::{Group, GroupState};
use super::TopicCatalog;
use crate::ids::PartitionId;

/// By (group id, producer id): the offsets its open transaction commits.
pub(super) type PendingTxnOffsets =
    HashMap<(String, i64), BTreeMap<(String, PartitionId), OffsetValue>>;

impl GroupCoordinator {
    /// Stores a transaction's offsets as pending; each partition gets its
    /// own outcome, answered once the accepted ones are durable.
    pub async fn txn_offset_commit(
        &self,
        req: TxnCommitRequest,
        topics: &dyn TopicCatalog,
    ) -> Vec<TopicOutcome> {
        let group_check = self.validate_commit(&req.commit);
        let (writes, mut outcomes) =
            self.accepted_writes(&req.commit, topics, group_check, now_ms(), None);
        if group_check.is_ok() && !writes.is_empty() {
            let group_id = req.commit.group_id.clone();
            if let Err(error) = self.write_pending(group_id, req.producer_id, writes).await {
                tracing::warn!(group = %req.commit.group_id, %error, "transactional offset commit failed");
                refuse_accepted(&mut outcomes, error.group_error());
            }
        }
        outcomes
    }

    async fn write_pending(
        &self,
        group_id: String,
        producer_id: i64,
        writes: Vec<OffsetWrite>,
    ) -> Result<(), GroupLogError> {
        let records = writes
            .iter()
            .map(|write| {
                let key = Key::PendingOffset {
                    group: group_id.clone(),
                    producer_id,
                    topic: write.topic.clone(),
                    partition: write.partition,
                };
                (key.encode(), Some(write.value.encode()))
            })
            .collect();
        self.write_then_apply(records, move |this, _| {
            let mut pending = this.txn_offsets.borrow_mut();
            let offsets = pending.entry((group_id, producer_id)).or_default();
            for write in writes {
                offsets.insert((write.topic, write.partition), write.value);
            }
        })
        .await
    }

    /// The transaction of `producer_id` ended: its pending offsets for
    /// `group_id` become committed offsets (`commit`) or are dropped.
    /// Repeating it is harmless: nothing pending is nothing to do.
    pub async fn complete_txn(
        &self,
        group_id: &str,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), GroupLogError> {
        let pending_key = (group_id.to_string(), producer_id);
        let Some(pending) = self.txn_offsets.borrow().get(&pending_key).cloned() else {
            return Ok(());
        };
        let now = now_ms();
        let writes: Vec<OffsetWrite> = pending
            .into_iter()
            .map(|((topic, partition), mut value)| {
                value.commit_timestamp_ms = now;
                OffsetWrite {
                    topic,
                    partition,
                    value,
                }
            })
            .collect();
        let mut records = Vec::with_capacity(2 * writes.len());
        if commit {
            records.extend(writes.iter().map(|write| {
                let key = Key::Offset {
                    group: group_id.to_string(),
                    topic: write.topic.clone(),
                    partition: write.partition,
                };
                (key.encode(), Some(write.value.encode()))
            }));
        }
        records.extend(writes.iter().map(|write| {
            let key = Key::PendingOffset {
                group: group_id.to_string(),
                producer_id,
                topic: write.topic.clone(),
                partition: write.partition,
            };
            (key.encode(), None)
        }));
        let incarnation = if commit {
            Some(self.incarnation_for_commit(group_id))
        } else {
            None
        };
        let seqs = self.log.enqueue_all(records)?;
        let Some(&last) = seqs.last() else {
            return Ok(());
        };
        let this = self.strong().ok_or(GroupLogError::Closed)?;
        let group_id = group_id.to_string();
        let applied = Self::run_to_completion(async move {
            this.log.sync(last).await?;
            this.txn_offsets.borrow_mut().remove(&pending_key);
            if let Some(incarnation) = incarnation {
                let put_seqs = seqs[..writes.len()].to_vec();
                this.apply_offsets(&group_id, incarnation, writes, put_seqs);
            }
            Ok(())
        });
        applied.await.unwrap_or(Err(GroupLogError::Closed))
    }

    /// The group the committed offsets go to; a transaction may commit for
    /// a group that has no members (and so may not exist here yet).
    fn incarnation_for_commit(&self, group_id: &str) -> u64 {
        let mut groups = self.groups.borrow_mut();
        if let Some(group) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) {
            return group.incarnation;
        }
        let mut group = Group::new(group_id.to_string(), self.new_incarnation(), now_ms());
        group.generation = 0;
        self.persist_group(&group);
        let incarnation = group.incarnation;
        groups.insert(group_id.to_string(), group);
        incarnation
    }

    /// Whether a transaction holds offsets of the partitions `request` names.
    pub(super) fn has_pending_txn_offsets(&self, request: &super::api::FetchRequest) -> bool {
        let pending = self.txn_offsets.borrow();
        pending
            .iter()
            .filter(|((group, _), _)| *group == request.group_id)
            .any(|(_, offsets)| match &request.topics {
                None => !offsets.is_empty(),
                Some(topics) => topics.iter().any(|t| {
                    t.partitions
                        .iter()
                        .any(|&p| offsets.contains_key(&(t.name.clone(), p)))
                }),
            })
    }

    /// Producers with pending offsets in `group_id` (tests, DescribeGroups).
    pub fn pending_txn_producers(&self, group_id: &str) -> Vec<i64> {
        let mut producers: Vec<i64> = self
            .txn_offsets
            .borrow()
            .keys()
            .filter(|(group, _)| group == group_id)
            .map(|(_, producer_id)| *producer_id)
            .collect();
        producers.sort_unstable();
        producers
    }
}
