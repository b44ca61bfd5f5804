//! SyncGroup: the leader hands out the assignments; followers wait for them
//! (Kafka's handleSyncGroup).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel;

use super::{now_ms, session_duration, validate_member, GroupCoordinator, Pending};
use crate::group::api::{MemberAssignment, SyncAnswer, SyncRequest};
use crate::group::error::GroupError;
use crate::group::state::{Group, GroupState};
use crate::group::validate_group_id;

impl GroupCoordinator {
    /// Answers with the member's assignment; followers wait for the leader.
    pub async fn sync_group(self: &Rc<Self>, req: SyncRequest) -> SyncAnswer {
        match self.sync_start(req) {
            Pending::Ready(answer) => answer,
            Pending::Wait(receiver) => receiver
                .recv()
                .await
                .unwrap_or_else(|| SyncAnswer::refused(GroupError::UnknownMemberId)),
        }
    }

    fn sync_start(&self, req: SyncRequest) -> Pending<SyncAnswer> {
        let ready = |error| Pending::Ready(SyncAnswer::refused(error));
        if self.closed.get() {
            return ready(GroupError::NotCoordinator);
        }
        if let Err(error) = validate_group_id(&req.group_id, true) {
            return ready(error);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&req.group_id) else {
            return ready(GroupError::UnknownMemberId);
        };
        if let Err(error) = check_sync(group, &req) {
            return ready(error);
        }
        let member_id = req.member_id.as_str();
        match group.state {
            GroupState::Empty => ready(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => ready(GroupError::RebalanceInProgress),
            GroupState::Dead => ready(GroupError::CoordinatorNotAvailable),
            GroupState::Stable => {
                let answer = match group.members.get_mut(member_id) {
                    Some(member) => {
                        member.heartbeat_deadline =
                            Instant::now() + session_duration(member.session_timeout_ms);
                        sync_answer(group, member_id)
                    }
                    None => SyncAnswer::refused(GroupError::UnknownMemberId),
                };
                Pending::Ready(answer)
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = local_channel::new_bounded(1);
                let Some(member) = group.members.get_mut(member_id) else {
                    return ready(GroupError::UnknownMemberId);
                };
                member.heartbeat_deadline =
                    Instant::now() + session_duration(member.session_timeout_ms);
                if let Some(old) = member.sync_waiter.replace(sender) {
                    let _ = old.try_send(SyncAnswer::refused(GroupError::UnknownMemberId));
                }
                if group.is_leader(member_id) {
                    self.complete_sync(group, &req.assignments);
                }
                Pending::Wait(receiver)
            }
        }
    }

    /// The leader's assignments make the group Stable; every waiting member gets its own.
    fn complete_sync(&self, group: &mut Group, assignments: &[MemberAssignment]) {
        let by_member: HashMap<&str, &Bytes> = assignments
            .iter()
            .map(|a| (a.member_id.as_str(), &a.assignment))
            .collect();
        // Members the leader left out get an empty assignment.
        for member in group.members.values_mut() {
            member.assignment = by_member
                .get(member.member_id.as_str())
                .map(|a| (*a).clone())
                .unwrap_or_default();
        }
        group.transition(GroupState::Stable, now_ms());
        self.persist_group(group);
        let member_ids: Vec<String> = group.members.keys().cloned().collect();
        for id in member_ids {
            let answer = sync_answer(group, &id);
            if let Some(waiter) = group
                .members
                .get_mut(&id)
                .and_then(|m| m.sync_waiter.take())
            {
                let _ = waiter.try_send(answer);
            }
        }
    }
}

/// Membership, generation and (SyncGroup v5+) the protocol the client expects.
fn check_sync(group: &Group, req: &SyncRequest) -> Result<(), GroupError> {
    if group.state == GroupState::Dead {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    validate_member(group, &req.member_id, req.group_instance_id.as_deref())?;
    if req.generation_id != group.generation {
        return Err(GroupError::IllegalGeneration);
    }
    let type_mismatch = req
        .protocol_type
        .as_ref()
        .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
    let name_mismatch = req
        .protocol_name
        .as_ref()
        .is_some_and(|n| Some(n) != group.protocol_name.as_ref());
    if type_mismatch || name_mismatch {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    Ok(())
}

fn sync_answer(group: &Group, member_id: &str) -> SyncAnswer {
    SyncAnswer {
        error: None,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}
