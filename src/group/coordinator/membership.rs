//! Membership outside rebalances: Heartbeat, LeaveGroup, session expiry and
//! the expiry of member ids handed out but never used (KIP-394).

use std::time::Instant;

use super::{session_duration, spawn_detached, GroupCoordinator};
use crate::group::api::{
    HeartbeatRequest, JoinAnswer, LeaveAnswer, LeaveRequest, LeavingMember, SyncAnswer,
};
use crate::group::error::GroupError;
use crate::group::state::{Group, GroupState};
use crate::group::validate_group_id;

enum SessionCheck {
    Gone,
    SleepUntil(Instant),
}

impl GroupCoordinator {
    /// Keeps the member's session alive; RebalanceInProgress tells it to rejoin.
    pub async fn heartbeat(&self, req: HeartbeatRequest) -> Result<(), GroupError> {
        if self.closed.get() {
            return Err(GroupError::NotCoordinator);
        }
        validate_group_id(&req.group_id, true)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if group.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        validate_member(group, &req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let state = group.state;
        if let Some(member) = group.members.get_mut(&req.member_id) {
            member.heartbeat_deadline =
                Instant::now() + session_duration(member.session_timeout_ms);
        }
        match state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            // Members may heartbeat between their JoinGroup and SyncGroup.
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::Dead => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Removes each named member (KIP-345: by member id or group.instance.id).
    pub async fn leave_group(&self, req: LeaveRequest) -> LeaveAnswer {
        let refused = |error| LeaveAnswer {
            error: Some(error),
            members: Vec::new(),
        };
        if self.closed.get() {
            return refused(GroupError::NotCoordinator);
        }
        if let Err(error) = validate_group_id(&req.group_id, true) {
            return refused(error);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&req.group_id) else {
            return LeaveAnswer {
                error: None,
                members: vec![Some(GroupError::UnknownMemberId); req.members.len()],
            };
        };
        if group.state == GroupState::Dead {
            return refused(GroupError::CoordinatorNotAvailable);
        }
        let members = req
            .members
            .iter()
            .map(|member| self.leave_member(group, member).err())
            .collect();
        LeaveAnswer {
            error: None,
            members,
        }
    }

    fn leave_member(&self, group: &mut Group, leaving: &LeavingMember) -> Result<(), GroupError> {
        let member_id = leaving.member_id.as_str();
        let instance_id = leaving.group_instance_id.as_deref();
        if member_id.is_empty() {
            // Removal by group.instance.id alone (AdminClient removeMembersFromConsumerGroup).
            let found = instance_id
                .and_then(|i| group.static_members.get(i))
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?;
            self.remove_member_and_update_group(group, &found);
            return Ok(());
        }
        if group.pending_members.remove(member_id) {
            self.try_complete_join(group);
            return Ok(());
        }
        validate_member(group, member_id, instance_id)?;
        self.remove_member_and_update_group(group, member_id);
        Ok(())
    }

    /// Kafka's removeMemberAndUpdateGroup.
    pub(crate) fn remove_member_and_update_group(&self, group: &mut Group, member_id: &str) {
        if !remove_member(group, member_id) {
            return;
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(group),
            GroupState::PreparingRebalance => self.try_complete_join(group),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(super) fn schedule_session_timer(&self, group: &Group, member_id: &str) {
        let this = self.this.clone();
        let group_id = group.id.clone();
        let incarnation = group.incarnation;
        let member_id = member_id.to_string();
        spawn_detached(async move {
            loop {
                let deadline = {
                    let Some(coordinator) = this.upgrade() else {
                        return;
                    };
                    match coordinator.session_check(&group_id, incarnation, &member_id) {
                        SessionCheck::Gone => return,
                        SessionCheck::SleepUntil(deadline) => deadline,
                    }
                };
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            }
        });
    }

    /// Evicts the member if its session expired (Kafka's onExpireHeartbeat).
    fn session_check(&self, group_id: &str, incarnation: u64, member_id: &str) -> SessionCheck {
        if self.closed.get() {
            return SessionCheck::Gone;
        }
        let Some(mut group) = self.group_mut(group_id, incarnation) else {
            return SessionCheck::Gone;
        };
        let now = Instant::now();
        let Some(member) = group.members.get_mut(member_id) else {
            return SessionCheck::Gone;
        };
        if member.heartbeat_deadline > now {
            return SessionCheck::SleepUntil(member.heartbeat_deadline);
        }
        if member.join_waiter.is_some() || member.sync_waiter.is_some() {
            // Kept alive while its JoinGroup or SyncGroup is held; the
            // rebalance timeout bounds that.
            member.heartbeat_deadline = now + session_duration(member.session_timeout_ms);
            return SessionCheck::SleepUntil(member.heartbeat_deadline);
        }
        tracing::info!(
            group = group_id,
            member = member_id,
            "session timeout: removing member"
        );
        self.remove_member_and_update_group(&mut group, member_id);
        SessionCheck::Gone
    }

    /// KIP-394: a member id handed out but not used within the session
    /// timeout stops holding up the rebalance.
    pub(super) fn schedule_pending_member_timer(
        &self,
        group: &Group,
        member_id: &str,
        session_timeout_ms: i32,
    ) {
        let this = self.this.clone();
        let group_id = group.id.clone();
        let incarnation = group.incarnation;
        let member_id = member_id.to_string();
        spawn_detached(async move {
            glommio::timer::sleep(session_duration(session_timeout_ms)).await;
            let Some(coordinator) = this.upgrade() else {
                return;
            };
            let Some(mut group) = coordinator.group_mut(&group_id, incarnation) else {
                return;
            };
            if group.pending_members.remove(&member_id) {
                coordinator.try_complete_join(&mut group);
            }
        });
    }
}

/// Kafka's validateCurrentMember: a static member's instance id must map to
/// this member id (else it was replaced: FENCED_INSTANCE_ID).
pub(crate) fn validate_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    if let Some(instance_id) = instance_id {
        match group.static_members.get(instance_id) {
            None => return Err(GroupError::UnknownMemberId),
            Some(current) if current != member_id => return Err(GroupError::FencedInstanceId),
            Some(_) => {}
        }
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(GroupError::UnknownMemberId)
    }
}

/// Removes a member without touching the group's state. Returns whether it was there.
pub(super) fn remove_member(group: &mut Group, member_id: &str) -> bool {
    let Some(member) = group.members.shift_remove(member_id) else {
        return false;
    };
    if let Some(waiter) = member.join_waiter {
        let _ = waiter.try_send(JoinAnswer::refused(GroupError::UnknownMemberId, member_id));
    }
    if let Some(waiter) = member.sync_waiter {
        let _ = waiter.try_send(SyncAnswer::refused(GroupError::UnknownMemberId));
    }
    if let Some(instance_id) = &member.group_instance_id {
        if group
            .static_members
            .get(instance_id)
            .is_some_and(|id| id == member_id)
        {
            group.static_members.remove(instance_id);
        }
    }
    if group.is_leader(member_id) {
        group.leader = group.members.keys().next().cloned();
    }
    true
}
