//! The group coordinator: Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups,
//! DeleteGroups) over the states of [`GroupState`], following Kafka's
//! GroupCoordinator. Timers (join completion, session expiry, pending member
//! expiry, offset expiry) are glommio tasks holding a `Weak` reference, so a
//! dropped coordinator stops them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::error::Error;
use super::log::{GroupLog, LogConfig, LogStats};
use super::record::{GroupValue, Key, OffsetValue};
use super::state::{Group, GroupState, JoinTimer, Member, StoredOffset};
use super::{validate_group_id, ClientInfo, GroupConfig};

/// The group type ListGroups reports for classic-protocol groups (KIP-848 names).
const GROUP_TYPE_CLASSIC: &str = "classic";

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_str().to_string())
}

fn join_error(code: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code.code())
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

fn sync_error(code: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code.code())
}

/// Fields a response may carry only from some version on.
fn adapt_join_response(mut response: JoinGroupResponse, version: i16) -> JoinGroupResponse {
    // protocol_name is nullable only from v7; older clients expect a string.
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::new());
    }
    // KIP-814: skip_assignment exists from v9.
    if version < 9 {
        response.skip_assignment = false;
    }
    response
}

/// A response now, or a receiver it will arrive on.
enum Pending<R> {
    Ready(R),
    Wait(LocalReceiver<R>),
}

/// What a JoinGroup brings, in the coordinator's own types.
struct JoinParams {
    member_id: String,
    group_instance_id: Option<String>,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    client: ClientInfo,
    version: i16,
}

enum SessionCheck {
    Gone,
    SleepUntil(Instant),
}

pub struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) log: Rc<GroupLog>,
    pub(super) groups: RefCell<HashMap<String, Group>>,
    this: Weak<GroupCoordinator>,
    member_id_base: u64,
    next_member_seq: Cell<u64>,
    next_incarnation: Cell<u64>,
    next_timer_epoch: Cell<u64>,
    pub(super) closed: Cell<bool>,
}

impl GroupCoordinator {
    /// Opens the log in `dir`, rebuilds groups and offsets from it and starts
    /// the offset expiry timer. Groups come back Empty: members rejoin.
    pub async fn open(dir: PathBuf, config: GroupConfig) -> Result<Rc<GroupCoordinator>, Error> {
        config.validate()?;
        let log_config = LogConfig {
            compact_bytes: config.log_compact_bytes,
            compact_records: config.log_compact_records,
        };
        let log = Rc::new(GroupLog::open(&dir, log_config).await?);
        let now = now_ms();
        let mut incarnation = 0u64;
        let groups = log.with_live(|live| -> Result<HashMap<String, Group>, Error> {
            let mut groups: HashMap<String, Group> = HashMap::new();
            let mut group_entry = |groups: &mut HashMap<String, Group>, id: &str| -> u64 {
                if !groups.contains_key(id) {
                    incarnation += 1;
                    groups.insert(id.to_string(), Group::new(id.to_string(), incarnation, now));
                }
                incarnation
            };
            for (key, value) in live {
                match Key::decode(key)? {
                    Key::Group { group } => {
                        let value = GroupValue::decode(value)?;
                        group_entry(&mut groups, &group);
                        let Some(loaded) = groups.get_mut(&group) else {
                            continue;
                        };
                        loaded.protocol_type = value.protocol_type;
                        loaded.generation = value.generation;
                        // Members are not persisted: the group restarts Empty. If it
                        // was Empty already (no protocol), its expiry clock keeps running.
                        loaded.state_timestamp_ms = if value.protocol_name.is_none() {
                            value.state_timestamp_ms
                        } else {
                            now
                        };
                    }
                    Key::Offset {
                        group,
                        topic,
                        partition,
                    } => {
                        let value = OffsetValue::decode(value)?;
                        group_entry(&mut groups, &group);
                        if let Some(loaded) = groups.get_mut(&group) {
                            loaded
                                .offsets
                                .insert((topic, partition), StoredOffset { value, seq: 0 });
                        }
                    }
                }
            }
            Ok(groups)
        })?;
        let member_id_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32);
        let coordinator = Rc::new_cyclic(|this| GroupCoordinator {
            config,
            log,
            groups: RefCell::new(groups),
            this: this.clone(),
            member_id_base,
            next_member_seq: Cell::new(0),
            next_incarnation: Cell::new(incarnation + 1),
            next_timer_epoch: Cell::new(1),
            closed: Cell::new(false),
        });
        coordinator.start_expiry_timer();
        Ok(coordinator)
    }

    /// Counters of the underlying log.
    pub fn log_stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Number of groups this shard holds.
    pub fn group_count(&self) -> usize {
        self.groups.borrow().len()
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.borrow().get(group_id).map(|g| g.state)
    }

    pub(super) fn new_incarnation(&self) -> u64 {
        let incarnation = self.next_incarnation.get();
        self.next_incarnation.set(incarnation + 1);
        incarnation
    }

    fn new_member_id(&self, prefix: &str) -> String {
        let seq = self.next_member_seq.get();
        self.next_member_seq.set(seq + 1);
        format!("{prefix}-{:016x}-{seq:08x}", self.member_id_base)
    }

    fn new_timer_epoch(&self) -> u64 {
        let epoch = self.next_timer_epoch.get();
        self.next_timer_epoch.set(epoch + 1);
        epoch
    }

    /// Records the group's facts in the log without waiting: membership
    /// changes are not acknowledged on durability (offsets are).
    pub(super) fn persist_group(&self, group: &Group) {
        let key = Key::Group {
            group: group.id.clone(),
        }
        .encode();
        match self.log.enqueue(key, Some(group.value().encode())) {
            Ok(_) => self.log.flush_soon(),
            Err(error) => {
                tracing::warn!(group = %group.id, %error, "could not record group metadata")
            }
        }
    }

    /// Runs `task` as its own task and waits for it. The broker drops a
    /// request's future when its connection closes; work that follows a
    /// durable write (updating memory to match the log) must still finish.
    pub(super) async fn run_to_completion<T: 'static>(
        task: impl std::future::Future<Output = T> + 'static,
    ) -> Option<T> {
        glommio::spawn_local(task).detach().await
    }

    pub(super) fn strong(&self) -> Option<Rc<GroupCoordinator>> {
        self.this.upgrade()
    }

    // ---------------------------------------------------------------- JoinGroup

    pub async fn join_group(
        self: &Rc<Self>,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let fallback_member_id = req.member_id.as_str().to_string();
        let response = match self.join_start(req, version, client) {
            Pending::Ready(response) => response,
            // The sender is dropped when the member is removed without an answer.
            Pending::Wait(receiver) => receiver
                .recv()
                .await
                .unwrap_or_else(|| join_error(ResponseError::UnknownMemberId, &fallback_member_id)),
        };
        adapt_join_response(response, version)
    }

    fn join_start(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> Pending<JoinGroupResponse> {
        let group_id = req.group_id.0.as_str().to_string();
        let member_id = req.member_id.as_str().to_string();
        if self.closed.get() {
            return Pending::Ready(join_error(ResponseError::NotCoordinator, &member_id));
        }
        if let Err(code) = validate_group_id(&group_id, true) {
            return Pending::Ready(join_error(code, &member_id));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Pending::Ready(join_error(ResponseError::InvalidSessionTimeout, &member_id));
        }
        let params = JoinParams {
            member_id: member_id.clone(),
            group_instance_id: opt_string(&req.group_instance_id),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 || req.rebalance_timeout_ms <= 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: req.protocol_type.as_str().to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
                .collect(),
            client: client.clone(),
            version,
        };
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&group_id) {
            if !member_id.is_empty() {
                return Pending::Ready(join_error(ResponseError::UnknownMemberId, &member_id));
            }
            let incarnation = self.new_incarnation();
            groups.insert(
                group_id.clone(),
                Group::new(group_id.clone(), incarnation, now_ms()),
            );
        }
        let Some(group) = groups.get_mut(&group_id) else {
            return Pending::Ready(join_error(ResponseError::UnknownServerError, &member_id));
        };
        if group.state == GroupState::Dead {
            return Pending::Ready(join_error(
                ResponseError::CoordinatorNotAvailable,
                &member_id,
            ));
        }
        if !group.supports_protocols(&params.protocol_type, &params.protocols) {
            return Pending::Ready(join_error(
                ResponseError::InconsistentGroupProtocol,
                &member_id,
            ));
        }
        let pending = if member_id.is_empty() {
            self.join_new_member(group, params)
        } else {
            self.join_known_member(group, params)
        };
        if matches!(pending, Pending::Wait(_)) {
            self.try_complete_join(group);
        }
        pending
    }

    fn join_new_member(&self, group: &mut Group, params: JoinParams) -> Pending<JoinGroupResponse> {
        if let Some(instance_id) = params.group_instance_id.clone() {
            let new_member_id = self.new_member_id(&instance_id);
            if let Some(old_member_id) = group.static_members.get(&instance_id).cloned() {
                return self.replace_static_member(group, &old_member_id, new_member_id, params);
            }
            if group.size() >= self.config.max_group_size {
                return Pending::Ready(join_error(ResponseError::GroupMaxSizeReached, ""));
            }
            return self.add_member_and_rebalance(group, new_member_id, params);
        }
        if group.size() >= self.config.max_group_size {
            return Pending::Ready(join_error(ResponseError::GroupMaxSizeReached, ""));
        }
        let new_member_id = self.new_member_id(&params.client.client_id);
        if params.version >= 4 {
            // KIP-394: hand out the member id first; the member joins with it.
            group.pending_members.insert(new_member_id.clone());
            self.schedule_pending_member_timer(group, &new_member_id, params.session_timeout_ms);
            return Pending::Ready(join_error(ResponseError::MemberIdRequired, &new_member_id));
        }
        self.add_member_and_rebalance(group, new_member_id, params)
    }

    fn join_known_member(
        &self,
        group: &mut Group,
        params: JoinParams,
    ) -> Pending<JoinGroupResponse> {
        let member_id = params.member_id.clone();
        if group.pending_members.remove(&member_id) {
            return self.add_member_and_rebalance(group, member_id, params);
        }
        if let Err(code) = validate_member(group, &member_id, params.group_instance_id.as_deref()) {
            return Pending::Ready(join_error(code, &member_id));
        }
        match group.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(group, params),
            GroupState::CompletingRebalance => {
                let unchanged = group
                    .members
                    .get(&member_id)
                    .is_some_and(|m| m.same_protocols(&params.protocols));
                if unchanged {
                    // The member lost the JoinGroup response: send it again.
                    Pending::Ready(self.current_join_response(group, &member_id, false))
                } else {
                    self.update_member_and_rebalance(group, params)
                }
            }
            GroupState::Stable => {
                let unchanged = group
                    .members
                    .get(&member_id)
                    .is_some_and(|m| m.same_protocols(&params.protocols));
                if group.is_leader(&member_id) || !unchanged {
                    // The leader rejoins to force a rebalance (e.g. metadata changed).
                    self.update_member_and_rebalance(group, params)
                } else {
                    Pending::Ready(self.current_join_response(group, &member_id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => {
                Pending::Ready(join_error(ResponseError::UnknownMemberId, &member_id))
            }
        }
    }

    /// The current generation as a JoinGroup response; the leader gets the members.
    fn current_join_response(
        &self,
        group: &Group,
        member_id: &str,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let members = if group.is_leader(member_id) {
            leader_member_list(group)
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(group.generation)
            .with_protocol_type(group.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(group.protocol_name.as_deref().map(str_bytes))
            .with_leader(str_bytes(group.leader.as_deref().unwrap_or("")))
            .with_skip_assignment(skip_assignment)
            .with_member_id(str_bytes(member_id))
            .with_members(members)
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        member_id: String,
        params: JoinParams,
    ) -> Pending<JoinGroupResponse> {
        let (sender, receiver) = local_channel::new_bounded(1);
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: params.group_instance_id.clone(),
            client_id: params.client.client_id,
            client_host: params.client.client_host,
            session_timeout_ms: params.session_timeout_ms,
            rebalance_timeout_ms: params.rebalance_timeout_ms,
            protocols: params.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(sender),
            sync_waiter: None,
            heartbeat_deadline: Instant::now() + session_duration(params.session_timeout_ms),
        };
        if group.members.is_empty() {
            group.protocol_type = Some(params.protocol_type);
        }
        if let Some(instance_id) = params.group_instance_id {
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
        params: JoinParams,
    ) -> Pending<JoinGroupResponse> {
        let (sender, receiver) = local_channel::new_bounded(1);
        let Some(member) = group.members.get_mut(&params.member_id) else {
            return Pending::Ready(join_error(
                ResponseError::UnknownMemberId,
                &params.member_id,
            ));
        };
        member.protocols = params.protocols;
        member.session_timeout_ms = params.session_timeout_ms;
        member.rebalance_timeout_ms = params.rebalance_timeout_ms;
        member.client_id = params.client.client_id;
        member.client_host = params.client.client_host;
        if let Some(old) = member.join_waiter.replace(sender) {
            // A duplicate JoinGroup: the older request is superseded.
            let _ = old.try_send(join_error(
                ResponseError::UnknownMemberId,
                &params.member_id,
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
        params: JoinParams,
    ) -> Pending<JoinGroupResponse> {
        let Some(old) = group.members.shift_remove(old_member_id) else {
            return Pending::Ready(join_error(ResponseError::UnknownMemberId, ""));
        };
        if let Some(waiter) = &old.join_waiter {
            let _ = waiter.try_send(join_error(ResponseError::FencedInstanceId, old_member_id));
        }
        if let Some(waiter) = &old.sync_waiter {
            let _ = waiter.try_send(sync_error(ResponseError::FencedInstanceId));
        }
        let member = Member {
            member_id: new_member_id.clone(),
            group_instance_id: old.group_instance_id.clone(),
            client_id: params.client.client_id,
            client_host: params.client.client_host,
            session_timeout_ms: params.session_timeout_ms,
            rebalance_timeout_ms: params.rebalance_timeout_ms,
            protocols: params.protocols,
            assignment: old.assignment.clone(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: Instant::now() + session_duration(params.session_timeout_ms),
        };
        if let Some(instance_id) = &old.group_instance_id {
            group
                .static_members
                .insert(instance_id.clone(), new_member_id.clone());
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
            return Pending::Ready(self.current_join_response(group, &new_member_id, is_leader));
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

    fn maybe_prepare_rebalance(&self, group: &mut Group) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(group)
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(&self, group: &mut Group) {
        if group.state == GroupState::CompletingRebalance {
            // Followers waiting for the leader's assignment must rejoin.
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.try_send(sync_error(ResponseError::RebalanceInProgress));
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

    fn try_complete_join(&self, group: &mut Group) {
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
        let leader_members = leader_member_list(group);
        let deadline_base = Instant::now();
        let generation = group.generation;
        let protocol_type = group.protocol_type.as_deref().map(str_bytes);
        let protocol_name = group.protocol_name.as_deref().map(str_bytes);
        let leader = group.leader.clone().unwrap_or_default();
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
            let response = JoinGroupResponse::default()
                .with_generation_id(generation)
                .with_protocol_type(protocol_type.clone())
                .with_protocol_name(protocol_name.clone())
                .with_leader(str_bytes(&leader))
                .with_member_id(str_bytes(&member.member_id))
                .with_members(members);
            let _ = waiter.try_send(response);
        }
    }

    // ------------------------------------------------------------ member timers

    fn schedule_session_timer(&self, group: &Group, member_id: &str) {
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
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(group_id)
            .filter(|g| g.incarnation == incarnation)
        else {
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
        self.remove_member_and_update_group(group, member_id);
        SessionCheck::Gone
    }

    fn schedule_pending_member_timer(
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
            let mut groups = coordinator.groups.borrow_mut();
            let Some(group) = groups
                .get_mut(&group_id)
                .filter(|g| g.incarnation == incarnation)
            else {
                return;
            };
            if group.pending_members.remove(&member_id) {
                coordinator.try_complete_join(group);
            }
        });
    }

    /// Kafka's removeMemberAndUpdateGroup.
    pub(super) fn remove_member_and_update_group(&self, group: &mut Group, member_id: &str) {
        if !remove_member(group, member_id) {
            return;
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(group),
            GroupState::PreparingRebalance => self.try_complete_join(group),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---------------------------------------------------------------- SyncGroup

    pub async fn sync_group(
        self: &Rc<Self>,
        req: SyncGroupRequest,
        _version: i16,
    ) -> SyncGroupResponse {
        match self.sync_start(req) {
            Pending::Ready(response) => response,
            Pending::Wait(receiver) => receiver
                .recv()
                .await
                .unwrap_or_else(|| sync_error(ResponseError::UnknownMemberId)),
        }
    }

    fn sync_start(&self, req: SyncGroupRequest) -> Pending<SyncGroupResponse> {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        let ready = |code: ResponseError| Pending::Ready(sync_error(code));
        if self.closed.get() {
            return ready(ResponseError::NotCoordinator);
        }
        if let Err(code) = validate_group_id(group_id, true) {
            return ready(code);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return ready(ResponseError::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return ready(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(code) = validate_member(
            group,
            member_id,
            opt_string(&req.group_instance_id).as_deref(),
        ) {
            return ready(code);
        }
        if req.generation_id != group.generation {
            return ready(ResponseError::IllegalGeneration);
        }
        // v5: the client names the protocol it expects.
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != group.protocol_type.as_deref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n.as_str()) != group.protocol_name.as_deref());
        if type_mismatch || name_mismatch {
            return ready(ResponseError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => ready(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => ready(ResponseError::RebalanceInProgress),
            GroupState::Dead => ready(ResponseError::CoordinatorNotAvailable),
            GroupState::Stable => {
                let response = match group.members.get_mut(member_id) {
                    Some(member) => {
                        member.heartbeat_deadline =
                            Instant::now() + session_duration(member.session_timeout_ms);
                        self.sync_response(group, member_id)
                    }
                    None => sync_error(ResponseError::UnknownMemberId),
                };
                Pending::Ready(response)
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = local_channel::new_bounded(1);
                let Some(member) = group.members.get_mut(member_id) else {
                    return ready(ResponseError::UnknownMemberId);
                };
                member.heartbeat_deadline =
                    Instant::now() + session_duration(member.session_timeout_ms);
                if let Some(old) = member.sync_waiter.replace(sender) {
                    let _ = old.try_send(sync_error(ResponseError::UnknownMemberId));
                }
                if group.is_leader(member_id) {
                    let mut assignments: HashMap<&str, &Bytes> = HashMap::new();
                    for assignment in &req.assignments {
                        assignments.insert(assignment.member_id.as_str(), &assignment.assignment);
                    }
                    // Members the leader left out get an empty assignment.
                    for member in group.members.values_mut() {
                        member.assignment = assignments
                            .get(member.member_id.as_str())
                            .map(|a| (*a).clone())
                            .unwrap_or_default();
                    }
                    group.transition(GroupState::Stable, now_ms());
                    self.persist_group(group);
                    let member_ids: Vec<String> = group.members.keys().cloned().collect();
                    for id in member_ids {
                        let response = self.sync_response(group, &id);
                        if let Some(waiter) = group
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.sync_waiter.take())
                        {
                            let _ = waiter.try_send(response);
                        }
                    }
                }
                Pending::Wait(receiver)
            }
        }
    }

    fn sync_response(&self, group: &Group, member_id: &str) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_protocol_type(group.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(group.protocol_name.as_deref().map(str_bytes))
            .with_assignment(
                group
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            )
    }

    // ---------------------------------------------------------------- Heartbeat

    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let code = match self.heartbeat_outcome(&req) {
            Ok(()) => 0,
            Err(code) => code.code(),
        };
        HeartbeatResponse::default().with_error_code(code)
    }

    fn heartbeat_outcome(&self, req: &HeartbeatRequest) -> Result<(), ResponseError> {
        if self.closed.get() {
            return Err(ResponseError::NotCoordinator);
        }
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        validate_group_id(group_id, true)?;
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if group.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        validate_member(
            group,
            member_id,
            opt_string(&req.group_instance_id).as_deref(),
        )?;
        if req.generation_id != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        let state = group.state;
        if let Some(member) = group.members.get_mut(member_id) {
            member.heartbeat_deadline =
                Instant::now() + session_duration(member.session_timeout_ms);
        }
        match state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            // Members may heartbeat between their JoinGroup and SyncGroup.
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    // --------------------------------------------------------------- LeaveGroup

    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        // v3+ (KIP-345) leaves a batch of members, by member id or group.instance.id.
        let identities: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.as_str().to_string(),
                        opt_string(&m.group_instance_id),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.as_str().to_string(), None)]
        };
        let (top_level, results) = self.leave_members(req.group_id.0.as_str(), &identities);
        if version >= 3 {
            let members = identities
                .iter()
                .zip(results)
                .map(|((member_id, instance_id), code)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance_id.as_deref().map(str_bytes))
                        .with_error_code(code)
                })
                .collect();
            LeaveGroupResponse::default()
                .with_error_code(top_level)
                .with_members(members)
        } else {
            let code = if top_level != 0 {
                top_level
            } else {
                results.first().copied().unwrap_or(0)
            };
            LeaveGroupResponse::default().with_error_code(code)
        }
    }

    fn leave_members(
        &self,
        group_id: &str,
        identities: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        let all = |code: ResponseError| (0, vec![code.code(); identities.len()]);
        if self.closed.get() {
            return (ResponseError::NotCoordinator.code(), Vec::new());
        }
        if let Err(code) = validate_group_id(group_id, true) {
            return (code.code(), Vec::new());
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return all(ResponseError::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return (ResponseError::CoordinatorNotAvailable.code(), Vec::new());
        }
        let mut results = Vec::with_capacity(identities.len());
        for (member_id, instance_id) in identities {
            let outcome = if member_id.is_empty() {
                // Removal by group.instance.id alone (AdminClient removeMembersFromConsumerGroup).
                match instance_id
                    .as_ref()
                    .and_then(|i| group.static_members.get(i))
                    .cloned()
                {
                    Some(found) => {
                        self.remove_member_and_update_group(group, &found);
                        Ok(())
                    }
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if group.pending_members.remove(member_id) {
                self.try_complete_join(group);
                Ok(())
            } else {
                validate_member(group, member_id, instance_id.as_deref())
                    .map(|()| self.remove_member_and_update_group(group, member_id))
            };
            results.push(outcome.err().map_or(0, |code| code.code()));
        }
        (0, results)
    }

    // ----------------------------------------------------- Describe/List/Delete

    pub fn describe_group(&self, group_id: &str, version: i16) -> DescribedGroup {
        let base = DescribedGroup::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_group_state(str_bytes(""));
        if self.closed.get() {
            return base.with_error_code(ResponseError::NotCoordinator.code());
        }
        if let Err(code) = validate_group_id(group_id, false) {
            return base.with_error_code(code.code());
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
            let dead = base.with_group_state(str_bytes(GroupState::Dead.name()));
            // KIP-1043: v6 reports a missing group as an error.
            return if version >= 6 {
                dead.with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Group {group_id} not found."
                    ))))
            } else {
                dead
            };
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| {
                // Kafka shows metadata and assignment only in Stable.
                let (metadata, assignment) = if stable {
                    (m.metadata_for(&protocol), m.assignment.clone())
                } else {
                    (Bytes::new(), Bytes::new())
                };
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(metadata)
                    .with_member_assignment(assignment)
            })
            .collect();
        base.with_group_state(str_bytes(group.state.name()))
            .with_protocol_type(str_bytes(group.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(str_bytes(if stable { &protocol } else { "" }))
            .with_members(members)
    }

    /// Groups matching the filters (KIP-518 states, KIP-848 types; both
    /// case-insensitive, empty meaning all).
    pub fn list_groups(
        &self,
        states_filter: &[StrBytes],
        types_filter: &[StrBytes],
    ) -> Vec<ListedGroup> {
        let type_matches = types_filter.is_empty()
            || types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
        if !type_matches || self.closed.get() {
            return Vec::new();
        }
        let groups = self.groups.borrow();
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states_filter.is_empty()
                    || states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&g.id)))
                    .with_protocol_type(str_bytes(g.protocol_type.as_deref().unwrap_or("")))
                    .with_group_state(str_bytes(g.state.name()))
                    .with_group_type(str_bytes(GROUP_TYPE_CLASSIC))
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        listed
    }

    /// Deletes an Empty group and its offsets; answers the DeleteGroups error code.
    pub async fn delete_group(&self, group_id: &str) -> i16 {
        if self.closed.get() {
            return ResponseError::NotCoordinator.code();
        }
        if let Err(code) = validate_group_id(group_id, false) {
            return code.code();
        }
        let (incarnation, seq) = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return ResponseError::GroupIdNotFound.code();
            };
            match group.state {
                GroupState::Dead => return ResponseError::GroupIdNotFound.code(),
                GroupState::Empty => {}
                GroupState::PreparingRebalance
                | GroupState::CompletingRebalance
                | GroupState::Stable => {
                    return ResponseError::NonEmptyGroup.code();
                }
            }
            let mut keys: Vec<Vec<u8>> = group
                .offsets
                .keys()
                .map(|(topic, partition)| {
                    Key::Offset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    }
                    .encode()
                })
                .collect();
            keys.push(
                Key::Group {
                    group: group_id.to_string(),
                }
                .encode(),
            );
            let last_seq = match self
                .log
                .enqueue_all(keys.into_iter().map(|key| (key, None)).collect())
            {
                Ok(seqs) => seqs.last().copied().unwrap_or(0),
                Err(error) => {
                    tracing::warn!(group = group_id, %error, "could not delete group");
                    return error.response_error().code();
                }
            };
            // Dead while the tombstones are written: joins and commits are refused.
            group.transition(GroupState::Dead, now_ms());
            (group.incarnation, last_seq)
        };
        let Some(this) = self.strong() else {
            return ResponseError::CoordinatorNotAvailable.code();
        };
        let group_id = group_id.to_string();
        Self::run_to_completion(
            async move { this.finish_delete(&group_id, incarnation, seq).await },
        )
        .await
        .unwrap_or(ResponseError::CoordinatorNotAvailable.code())
    }

    async fn finish_delete(&self, group_id: &str, incarnation: u64, seq: u64) -> i16 {
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
                0
            }
            Err(error) => {
                tracing::warn!(group = group_id, %error, "could not delete group");
                if let Some(group) = groups.get_mut(group_id).filter(|_| same) {
                    group.transition(GroupState::Empty, now_ms());
                }
                error.response_error().code()
            }
        }
    }

    // ------------------------------------------------------------------ Close

    /// Answers held requests with NOT_COORDINATOR (clients look for the
    /// coordinator again), flushes and compacts the log.
    pub async fn close(&self) -> Result<(), Error> {
        self.closed.set(true);
        {
            let mut groups = self.groups.borrow_mut();
            for group in groups.values_mut() {
                group.join_timer = None;
                for member in group.members.values_mut() {
                    if let Some(waiter) = member.join_waiter.take() {
                        let _ = waiter
                            .try_send(join_error(ResponseError::NotCoordinator, &member.member_id));
                    }
                    if let Some(waiter) = member.sync_waiter.take() {
                        let _ = waiter.try_send(sync_error(ResponseError::NotCoordinator));
                    }
                }
            }
        }
        self.log.close().await
    }

    fn start_expiry_timer(&self) {
        let this = self.this.clone();
        let interval = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        spawn_detached(async move {
            loop {
                glommio::timer::sleep(interval).await;
                let Some(coordinator) = this.upgrade() else {
                    return;
                };
                if coordinator.closed.get() {
                    return;
                }
                let expired = coordinator.expire_offsets(now_ms()).await;
                if expired > 0 {
                    tracing::info!(expired, "expired committed offsets");
                }
            }
        });
    }
}

/// Spawns a background task that first yields: glommio runs a new task
/// right away, and the caller may hold the group map borrowed.
fn spawn_detached(task: impl std::future::Future<Output = ()> + 'static) {
    glommio::spawn_local(async move {
        futures_lite::future::yield_now().await;
        task.await;
    })
    .detach();
}

fn session_duration(session_timeout_ms: i32) -> Duration {
    Duration::from_millis(session_timeout_ms.max(0) as u64)
}

/// Kafka's validateCurrentMember: a static member's instance id must map to
/// this member id (else it was replaced: FENCED_INSTANCE_ID).
pub(super) fn validate_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), ResponseError> {
    if let Some(instance_id) = instance_id {
        match group.static_members.get(instance_id) {
            None => return Err(ResponseError::UnknownMemberId),
            Some(current) if current != member_id => return Err(ResponseError::FencedInstanceId),
            Some(_) => {}
        }
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(ResponseError::UnknownMemberId)
    }
}

/// Removes a member without touching the group's state. Returns whether it was there.
fn remove_member(group: &mut Group, member_id: &str) -> bool {
    let Some(member) = group.members.shift_remove(member_id) else {
        return false;
    };
    if let Some(waiter) = member.join_waiter {
        let _ = waiter.try_send(join_error(ResponseError::UnknownMemberId, member_id));
    }
    if let Some(waiter) = member.sync_waiter {
        let _ = waiter.try_send(sync_error(ResponseError::UnknownMemberId));
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

/// What the leader gets to compute the assignment: every member's metadata
/// for the selected protocol.
fn leader_member_list(group: &Group) -> Vec<JoinGroupResponseMember> {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group
        .members
        .values()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                .with_metadata(m.metadata_for(&protocol))
        })
        .collect()
}
