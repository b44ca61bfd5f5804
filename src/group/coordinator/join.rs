//! JoinGroup: new, known and static members (Kafka's GroupCoordinator
//! handleJoinGroup), answered now or once the rebalance completes.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel;

use super::{now_ms, session_duration, validate_member, GroupCoordinator, Pending};
use crate::group::api::{JoinAnswer, JoinRequest, JoinedMember};
use crate::group::error::GroupError;
use crate::group::state::{Group, GroupState, Member};
use crate::group::validate_group_id;

impl GroupCoordinator {
    /// Joins a member; held until the rebalance completes when it starts or
    /// joins one.
    pub async fn join_group(self: &Rc<Self>, req: JoinRequest) -> JoinAnswer {
        let fallback_member_id = req.member_id.clone();
        match self.join_start(req) {
            Pending::Ready(answer) => answer,
            // The sender is dropped when the member is removed without an answer.
            Pending::Wait(receiver) => receiver.recv().await.unwrap_or_else(|| {
                JoinAnswer::refused(GroupError::UnknownMemberId, &fallback_member_id)
            }),
        }
    }

    fn join_start(&self, mut req: JoinRequest) -> Pending<JoinAnswer> {
        let refuse = |error, member_id: &str| Pending::Ready(JoinAnswer::refused(error, member_id));
        if let Err(error) = self.check_join(&req) {
            return refuse(error, &req.member_id);
        }
        // Kafka uses the session timeout where the request has no rebalance timeout.
        req.rebalance_timeout_ms = Some(
            req.rebalance_timeout_ms
                .filter(|&ms| ms > 0)
                .unwrap_or(req.session_timeout_ms),
        );
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return refuse(GroupError::UnknownMemberId, &req.member_id);
            }
            if let Err(error) = self.check_room_for_group(groups.len()) {
                return refuse(error, &req.member_id);
            }
            let group = Group::new(req.group_id.clone(), self.new_incarnation(), now_ms());
            groups.insert(req.group_id.clone(), group);
        }
        let Some(group) = groups.get_mut(&req.group_id) else {
            return refuse(GroupError::UnknownServerError, &req.member_id);
        };
        if group.state == GroupState::Dead {
            return refuse(GroupError::CoordinatorNotAvailable, &req.member_id);
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            return refuse(GroupError::InconsistentGroupProtocol, &req.member_id);
        }
        let pending = if req.member_id.is_empty() {
            self.join_new_member(group, req)
        } else {
            self.join_known_member(group, req)
        };
        if matches!(pending, Pending::Wait(_)) {
            self.try_complete_join(group);
        }
        pending
    }

    /// The checks that need no group.
    fn check_join(&self, req: &JoinRequest) -> Result<(), GroupError> {
        if self.closed.get() {
            return Err(GroupError::NotCoordinator);
        }
        validate_group_id(&req.group_id, true)?;
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        Ok(())
    }

    fn join_new_member(&self, group: &mut Group, req: JoinRequest) -> Pending<JoinAnswer> {
        if let Some(instance_id) = req.group_instance_id.clone() {
            let new_member_id = self.new_member_id(&instance_id);
            if let Some(old_member_id) = group.static_members.get(&instance_id).cloned() {
                return self.replace_static_member(group, &old_member_id, new_member_id, req);
            }
            if group.size() >= self.config.max_group_size {
                return Pending::Ready(JoinAnswer::refused(GroupError::GroupMaxSizeReached, ""));
            }
            return self.add_member_and_rebalance(group, new_member_id, req);
        }
        if group.size() >= self.config.max_group_size {
            return Pending::Ready(JoinAnswer::refused(GroupError::GroupMaxSizeReached, ""));
        }
        let new_member_id = self.new_member_id(&req.client.client_id);
        if req.member_id_required {
            // KIP-394: hand out the member id first; the member joins with it.
            group.pending_members.insert(new_member_id.clone());
            self.schedule_pending_member_timer(group, &new_member_id, req.session_timeout_ms);
            return Pending::Ready(JoinAnswer::refused(
                GroupError::MemberIdRequired,
                &new_member_id,
            ));
        }
        self.add_member_and_rebalance(group, new_member_id, req)
    }

    fn join_known_member(&self, group: &mut Group, req: JoinRequest) -> Pending<JoinAnswer> {
        let member_id = req.member_id.clone();
        if group.pending_members.remove(&member_id) {
            return self.add_member_and_rebalance(group, member_id, req);
        }
        if let Err(error) = validate_member(group, &member_id, req.group_instance_id.as_deref()) {
            return Pending::Ready(JoinAnswer::refused(error, &member_id));
        }
        let unchanged = group
            .members
            .get(&member_id)
            .is_some_and(|m| m.same_protocols(&req.protocols));
        match group.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(group, req),
            // The member lost the JoinGroup answer: send it again.
            GroupState::CompletingRebalance if unchanged => {
                Pending::Ready(current_join_answer(group, &member_id, false))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(group, req),
            // The leader rejoins to force a rebalance (e.g. metadata changed).
            GroupState::Stable if group.is_leader(&member_id) || !unchanged => {
                self.update_member_and_rebalance(group, req)
            }
            GroupState::Stable => Pending::Ready(current_join_answer(group, &member_id, false)),
            GroupState::Empty | GroupState::Dead => {
                Pending::Ready(JoinAnswer::refused(GroupError::UnknownMemberId, &member_id))
            }
        }
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        member_id: String,
        req: JoinRequest,
    ) -> Pending<JoinAnswer> {
        let (sender, receiver) = local_channel::new_bounded(1);
        let instance_id = req.group_instance_id.clone();
        let protocol_type = req.protocol_type.clone();
        let mut member = new_member(member_id.clone(), instance_id.clone(), req, Bytes::new());
        member.join_waiter = Some(sender);
        if group.members.is_empty() {
            group.protocol_type = Some(protocol_type);
        }
        if let Some(instance_id) = instance_id {
            group.static_members.insert(instance_id, member_id.clone());
        }
        group.members.insert(member_id.clone(), member);
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        if group.state == GroupState::PreparingRebalance {
            // Extends the initial rebalance delay (InitialDelayedJoin).
            group.new_member_added = true;
        }
        self.schedule_session_timer(group, &member_id);
        self.maybe_prepare_rebalance(group);
        Pending::Wait(receiver)
    }

    fn update_member_and_rebalance(
        &self,
        group: &mut Group,
        req: JoinRequest,
    ) -> Pending<JoinAnswer> {
        let (sender, receiver) = local_channel::new_bounded(1);
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return Pending::Ready(JoinAnswer::refused(
                GroupError::UnknownMemberId,
                &req.member_id,
            ));
        };
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms.unwrap_or(req.session_timeout_ms);
        member.client_id = req.client.client_id;
        member.client_host = req.client.client_host;
        if let Some(old) = member.join_waiter.replace(sender) {
            // A duplicate JoinGroup: the older request is superseded.
            let _ = old.try_send(JoinAnswer::refused(
                GroupError::UnknownMemberId,
                &req.member_id,
            ));
        }
        self.maybe_prepare_rebalance(group);
        Pending::Wait(receiver)
    }

    /// KIP-345: a static member rejoining with a known group.instance.id takes
    /// over the old member id; the old one is fenced. No rebalance when the
    /// group is Stable and the selected protocol stays the same.
    fn replace_static_member(
        &self,
        group: &mut Group,
        old_member_id: &str,
        new_member_id: String,
        req: JoinRequest,
    ) -> Pending<JoinAnswer> {
        let Some(old) = group.members.shift_remove(old_member_id) else {
            return Pending::Ready(JoinAnswer::refused(GroupError::UnknownMemberId, ""));
        };
        fence(&old);
        let instance_id = old.group_instance_id.clone();
        let member = new_member(
            new_member_id.clone(),
            instance_id.clone(),
            req,
            old.assignment,
        );
        if let Some(instance_id) = instance_id {
            group
                .static_members
                .insert(instance_id, new_member_id.clone());
        }
        group.members.insert(new_member_id.clone(), member);
        if group.is_leader(old_member_id) {
            group.leader = Some(new_member_id.clone());
        }
        self.schedule_session_timer(group, &new_member_id);
        if group.state == GroupState::Stable && group.select_protocol() == group.protocol_name {
            self.persist_group(group);
            // KIP-814: a returning leader keeps its role without reassigning.
            let is_leader = group.is_leader(&new_member_id);
            return Pending::Ready(current_join_answer(group, &new_member_id, is_leader));
        }
        let (sender, receiver) = local_channel::new_bounded(1);
        if let Some(member) = group.members.get_mut(&new_member_id) {
            member.join_waiter = Some(sender);
        }
        match group.state {
            // After the members went to the leader, the new id would get no
            // assignment: rebalance again (Kafka does the same).
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(group),
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
        Pending::Wait(receiver)
    }
}

fn new_member(
    member_id: String,
    group_instance_id: Option<String>,
    req: JoinRequest,
    assignment: Bytes,
) -> Member {
    Member {
        member_id,
        group_instance_id,
        client_id: req.client.client_id,
        client_host: req.client.client_host,
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms.unwrap_or(req.session_timeout_ms),
        protocols: req.protocols,
        assignment,
        join_waiter: None,
        sync_waiter: None,
        heartbeat_deadline: Instant::now() + session_duration(req.session_timeout_ms),
    }
}

/// Answers the held requests of a static member replaced by a newer instance.
fn fence(old: &Member) {
    if let Some(waiter) = &old.join_waiter {
        let _ = waiter.try_send(JoinAnswer::refused(
            GroupError::FencedInstanceId,
            &old.member_id,
        ));
    }
    if let Some(waiter) = &old.sync_waiter {
        let _ = waiter.try_send(crate::group::api::SyncAnswer::refused(
            GroupError::FencedInstanceId,
        ));
    }
}

/// The current generation as a JoinGroup answer; the leader gets the members.
pub(super) fn current_join_answer(
    group: &Group,
    member_id: &str,
    skip_assignment: bool,
) -> JoinAnswer {
    let members = if group.is_leader(member_id) {
        leader_member_list(group)
    } else {
        Vec::new()
    };
    JoinAnswer {
        error: None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        skip_assignment,
        member_id: member_id.to_string(),
        members,
    }
}

/// What the leader gets to compute the assignment: every member's metadata
/// for the selected protocol.
pub(super) fn leader_member_list(group: &Group) -> Vec<JoinedMember> {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group
        .members
        .values()
        .map(|m| JoinedMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m.metadata_for(&protocol),
        })
        .collect()
}
