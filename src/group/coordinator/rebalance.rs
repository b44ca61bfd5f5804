//! Rebalances: PreparingRebalance until the members rejoined (or the
//! rebalance timeout passed), then the next generation (Kafka's
//! prepareRebalance, InitialDelayedJoin and onCompleteJoin).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::join::leader_member_list;
use super::{now_ms, remove_member, session_duration, spawn_detached, GroupCoordinator};
use crate::group::api::{JoinAnswer, SyncAnswer};
use crate::group::error::GroupError;
use crate::group::state::{Group, GroupState, JoinTimer};

impl GroupCoordinator {
    pub(super) fn maybe_prepare_rebalance(&self, group: &mut Group) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(group)
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
    }

    pub(super) fn prepare_rebalance(&self, group: &mut Group) {
        if group.state == GroupState::CompletingRebalance {
            // Followers waiting for the leader's assignment must rejoin.
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.try_send(SyncAnswer::refused(GroupError::RebalanceInProgress));
                }
            }
        }
        let initial = group.state == GroupState::Empty;
        group.transition(GroupState::PreparingRebalance, now_ms());
        let epoch = self.new_timer_epoch();
        let rebalance_timeout_ms = group.rebalance_timeout_ms();
        if initial {
            let delay_ms = self
                .config
                .initial_rebalance_delay_ms
                .min(rebalance_timeout_ms);
            group.new_member_added = false;
            group.join_timer = Some(JoinTimer {
                epoch,
                initial_remaining_ms: Some(rebalance_timeout_ms.saturating_sub(delay_ms)),
            });
            self.schedule_join_timer(group, epoch, delay_ms);
        } else {
            group.join_timer = Some(JoinTimer {
                epoch,
                initial_remaining_ms: None,
            });
            self.schedule_join_timer(group, epoch, rebalance_timeout_ms);
            self.try_complete_join(group);
        }
    }

    pub(super) fn try_complete_join(&self, group: &mut Group) {
        let in_initial_delay = group
            .join_timer
            .is_some_and(|t| t.initial_remaining_ms.is_some());
        if group.state == GroupState::PreparingRebalance
            && !in_initial_delay
            && group.all_members_joined()
        {
            self.complete_join(group);
        }
    }

    fn schedule_join_timer(&self, group: &Group, epoch: u64, delay_ms: u64) {
        let this = self.this.clone();
        let group_id = group.id.clone();
        let incarnation = group.incarnation;
        spawn_detached(async move {
            glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
            if let Some(coordinator) = this.upgrade() {
                coordinator.on_join_timer(&group_id, incarnation, epoch);
            }
        });
    }

    fn on_join_timer(&self, group_id: &str, incarnation: u64, epoch: u64) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        let Some(timer) = group.join_timer else {
            return;
        };
        if group.incarnation != incarnation
            || timer.epoch != epoch
            || group.state != GroupState::PreparingRebalance
        {
            return;
        }
        if let Some(remaining_ms) = timer.initial_remaining_ms {
            if group.new_member_added && remaining_ms > 0 {
                // More members arrived during the delay: wait a little longer for others.
                group.new_member_added = false;
                let delay_ms = self.config.initial_rebalance_delay_ms.min(remaining_ms);
                let epoch = self.new_timer_epoch();
                group.join_timer = Some(JoinTimer {
                    epoch,
                    initial_remaining_ms: Some(remaining_ms - delay_ms),
                });
                self.schedule_join_timer(group, epoch, delay_ms);
                return;
            }
        }
        self.complete_join(group);
    }

    /// Forms the next generation from the members that rejoined (Kafka's onCompleteJoin).
    fn complete_join(&self, group: &mut Group) {
        group.join_timer = None;
        let not_rejoined: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.is_awaiting_join())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            remove_member(group, &member_id);
        }
        let now = now_ms();
        group.generation = group.generation.wrapping_add(1).max(1);
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader = None;
            group.transition(GroupState::Empty, now);
            self.persist_group(group);
            return;
        }
        group.protocol_name = group.select_protocol();
        group.transition(GroupState::CompletingRebalance, now);
        if !group
            .leader
            .as_ref()
            .is_some_and(|leader| group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        self.persist_group(group);
        answer_joined_members(group);
    }
}

/// Sends each waiting member its JoinGroup answer for the new generation and
/// restarts the session clocks.
fn answer_joined_members(group: &mut Group) {
    let leader_members = leader_member_list(group);
    let deadline_base = Instant::now();
    let leader = group.leader.clone().unwrap_or_default();
    let generation_answer = JoinAnswer {
        error: None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: leader.clone(),
        skip_assignment: false,
        member_id: String::new(),
        members: Vec::new(),
    };
    for member in group.members.values_mut() {
        member.heartbeat_deadline = deadline_base + session_duration(member.session_timeout_ms);
        let Some(waiter) = member.join_waiter.take() else {
            continue;
        };
        let members = if member.member_id == leader {
            leader_members.clone()
        } else {
            Vec::new()
        };
        let _ = waiter.try_send(JoinAnswer {
            member_id: member.member_id.clone(),
            members,
            ..generation_answer.clone()
        });
    }
}
