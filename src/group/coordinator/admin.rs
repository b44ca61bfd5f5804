//! The admin APIs: DescribeGroups, ListGroups and DeleteGroups, one group
//! (or one shard's groups) at a time; the broker gathers the shards' answers.

use bytes::Bytes;

use super::{now_ms, GroupCoordinator};
use crate::group::api::{CommittedOffset, DescribedMember, GroupDescription, ListedGroup};
use crate::group::error::GroupError;
use crate::group::record::Key;
use crate::group::state::{Group, GroupState};
use crate::group::validate_group_id;

/// The group type ListGroups reports for classic-protocol groups (KIP-848 names).
const GROUP_TYPE_CLASSIC: &str = "classic";

impl GroupCoordinator {
    /// A missing group is described as Dead with GROUP_ID_NOT_FOUND.
    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        if self.closed.get() {
            return GroupDescription::without_group(group_id, GroupError::NotCoordinator);
        }
        if let Err(error) = validate_group_id(group_id, false) {
            return GroupDescription::without_group(group_id, error);
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
            return GroupDescription {
                state: Some(GroupState::Dead),
                ..GroupDescription::without_group(group_id, GroupError::GroupIdNotFound)
            };
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            group_id: group_id.to_string(),
            error: None,
            state: Some(group.state),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol } else { String::new() },
            members: described_members(group),
        }
    }

    /// Every committed offset of this shard's live groups, for the metrics.
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        let groups = self.groups.borrow();
        groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((topic, partition), stored)| CommittedOffset {
                        group_id: g.id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: stored.value.offset,
                    })
            })
            .collect()
    }

    /// Groups matching the filters (KIP-518 states, KIP-848 types; both
    /// case-insensitive, empty meaning all), sorted by group id.
    pub fn list_groups(
        &self,
        states_filter: &[String],
        types_filter: &[String],
    ) -> Vec<ListedGroup> {
        let type_matches = types_filter.is_empty()
            || types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
        if !type_matches || self.closed.get() {
            return Vec::new();
        }
        let state_matches = |state: GroupState| {
            states_filter.is_empty()
                || states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state.name()))
        };
        let groups = self.groups.borrow();
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead && state_matches(g.state))
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
                group_type: GROUP_TYPE_CLASSIC,
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// Deletes an Empty group and its offsets, once the tombstones are durable.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        if self.closed.get() {
            return Err(GroupError::NotCoordinator);
        }
        validate_group_id(group_id, false)?;
        let (incarnation, seq) = self.start_delete(group_id)?;
        let this = self.strong().ok_or(GroupError::CoordinatorNotAvailable)?;
        let group_id = group_id.to_string();
        Self::run_to_completion(
            async move { this.finish_delete(&group_id, incarnation, seq).await },
        )
        .await
        .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Writes the group's tombstones and marks it Dead while they are written
    /// (joins and commits are refused). Returns its incarnation and the last
    /// tombstone's log sequence.
    fn start_delete(&self, group_id: &str) -> Result<(u64, u64), GroupError> {
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        match group.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable => return Err(GroupError::NonEmptyGroup),
        }
        let last_seq = match self.log.enqueue_all(group_tombstones(group)) {
            Ok(seqs) => seqs.last().copied().unwrap_or(0),
            Err(error) => {
                tracing::warn!(group = group_id, %error, "could not delete group");
                return Err(error.group_error());
            }
        };
        group.transition(GroupState::Dead, now_ms());
        Ok((group.incarnation, last_seq))
    }

    async fn finish_delete(
        &self,
        group_id: &str,
        incarnation: u64,
        seq: u64,
    ) -> Result<(), GroupError> {
        let synced = self.log.sync(seq).await;
        let mut groups = self.groups.borrow_mut();
        let same = groups
            .get(group_id)
            .is_some_and(|g| g.incarnation == incarnation);
        match synced {
            Ok(()) => {
                if same {
                    groups.remove(group_id);
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(group = group_id, %error, "could not delete group");
                if let Some(group) = groups.get_mut(group_id).filter(|_| same) {
                    group.transition(GroupState::Empty, now_ms());
                }
                Err(error.group_error())
            }
        }
    }
}

fn described_members(group: &Group) -> Vec<DescribedMember> {
    let stable = group.state == GroupState::Stable;
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group
        .members
        .values()
        .map(|m| {
            // Kafka shows metadata and assignment only in Stable.
            let (metadata, assignment) = if stable {
                (m.metadata_for(&protocol), m.assignment.clone())
            } else {
                (Bytes::new(), Bytes::new())
            };
            DescribedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata,
                assignment,
            }
        })
        .collect()
}

/// Tombstones for every offset of the group and for the group itself.
fn group_tombstones(group: &Group) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let offsets = group.offsets.keys().map(|(topic, partition)| Key::Offset {
        group: group.id.clone(),
        topic: topic.clone(),
        partition: *partition,
    });
    offsets
        .chain(std::iter::once(Key::Group {
            group: group.id.clone(),
        }))
        .map(|key| (key.encode(), None))
        .collect()
}
