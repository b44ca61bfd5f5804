//! The group coordinator: Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups,
//! DeleteGroups) over the states of [`GroupState`], following Kafka's
//! GroupCoordinator. Timers (join completion, session expiry, pending member
//! expiry, offset expiry) are glommio tasks holding a `Weak` reference, so a
//! dropped coordinator stops them.
//!
//! - `join`: JoinGroup for new, known and static members.
//! - `rebalance`: PreparingRebalance, the join timers and the next generation.
//! - `sync`: SyncGroup.
//! - `membership`: Heartbeat, LeaveGroup and session expiry.
//! - `admin`: DescribeGroups, ListGroups, DeleteGroups.
//!
//! Committed offsets are in `group::offsets`.

mod admin;
mod join;
mod membership;
mod rebalance;
mod sync;

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::LocalReceiver;

use membership::remove_member;
pub(crate) use membership::validate_member;

use super::api::{JoinAnswer, SyncAnswer};
use super::error::{GroupError, GroupLogError};
use super::log::{GroupLog, GroupLogConfig, GroupLogStats};
use super::record::{GroupValue, Key, OffsetValue};
use super::state::{Group, GroupState, StoredOffset};
use super::txn_offsets::PendingTxnOffsets;
use super::GroupConfig;

pub(crate) use crate::clock::now_ms;

/// An answer now, or a receiver it will arrive on.
enum Pending<R> {
    Ready(R),
    Wait(LocalReceiver<R>),
}

pub struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) log: Rc<GroupLog>,
    pub(super) groups: RefCell<HashMap<String, Group>>,
    /// Offsets of open transactions, by group and producer id (KIP-98).
    pub(super) txn_offsets: RefCell<PendingTxnOffsets>,
    this: Weak<GroupCoordinator>,
    member_id_base: u64,
    next_member_seq: Cell<u64>,
    next_incarnation: Cell<u64>,
    next_timer_epoch: Cell<u64>,
    pub(super) closed: Cell<bool>,
    /// When the last "too many groups" line was logged.
    groups_full_logged: Cell<Option<std::time::Instant>>,
    /// In a cluster: the offsets partitions this coordinator has loaded or
    /// is loading; groups of any other partition are not coordinated here.
    loads: RefCell<HashMap<u32, Load>>,
}

/// Where an offsets partition's replay stands on its leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Loading,
    Loaded,
}

/// At most one "too many groups" line per this interval.
const GROUPS_FULL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Groups rebuilt from the log, and the last incarnation handed out.
struct LoadedGroups {
    groups: HashMap<String, Group>,
    txn_offsets: PendingTxnOffsets,
    last_incarnation: u64,
}

impl LoadedGroups {
    fn entry(&mut self, id: &str, now_ms: i64) -> &mut Group {
        let last_incarnation = &mut self.last_incarnation;
        self.groups.entry(id.to_string()).or_insert_with(|| {
            *last_incarnation += 1;
            Group::new(id.to_string(), *last_incarnation, now_ms)
        })
    }

    fn load(&mut self, key: &[u8], value: &[u8], now_ms: i64) -> Result<(), GroupLogError> {
        match Key::decode(key)? {
            Key::Group { group } => {
                let value = GroupValue::decode(value)?;
                let loaded = self.entry(&group, now_ms);
                loaded.protocol_type = value.protocol_type.clone();
                loaded.generation = value.generation;
                // An Empty group's expiry clock keeps running; any other
                // group's state starts now.
                loaded.state_timestamp_ms = if value.protocol_name.is_none() {
                    value.state_timestamp_ms
                } else {
                    now_ms
                };
                // The newest record of the group says who its members are: a
                // Stable group's members come back (each with a new session),
                // any other group restarts Empty and its members rejoin.
                loaded.members.clear();
                loaded.static_members.clear();
                loaded.leader = None;
                loaded.protocol_name = None;
                loaded.state = GroupState::Empty;
                loaded.restore_members(value, std::time::Instant::now());
            }
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                let value = OffsetValue::decode(value)?;
                self.entry(&group, now_ms)
                    .offsets
                    .insert((topic, partition), StoredOffset { value, seq: 0 });
            }
            Key::PendingOffset {
                group,
                producer_id,
                topic,
                partition,
            } => {
                let value = OffsetValue::decode(value)?;
                self.txn_offsets
                    .entry((group, producer_id))
                    .or_default()
                    .insert((topic, partition), value);
            }
        }
        Ok(())
    }
}

impl GroupCoordinator {
    /// Refuses a new group once this coordinator holds `max_groups`, with
    /// GROUP_MAX_SIZE_REACHED: the error Kafka gives when a group cap is
    /// reached (`group.max.size`, and `group.share.max.groups` for share
    /// groups), which clients treat as fatal rather than retrying forever.
    pub(crate) fn check_room_for_group(&self, groups: usize) -> Result<(), GroupError> {
        if groups < self.config.max_groups {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let due = self
            .groups_full_logged
            .get()
            .is_none_or(|at| now.duration_since(at) >= GROUPS_FULL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                groups,
                max_groups = self.config.max_groups,
                "a new consumer group was refused: this shard holds its maximum; raise --max-groups-per-shard"
            );
            self.groups_full_logged.set(Some(now));
        }
        Err(GroupError::GroupMaxSizeReached)
    }

    /// Opens the log in `dir`, rebuilds groups and offsets from it and starts
    /// the offset expiry timer. A Stable group comes back with its members,
    /// each with a new session; any other group comes back Empty.
    pub async fn open(
        dir: PathBuf,
        config: GroupConfig,
    ) -> Result<Rc<GroupCoordinator>, GroupLogError> {
        config.validate()?;
        let log_config = GroupLogConfig {
            compact_bytes: config.log_compact_bytes,
            compact_records: config.log_compact_records,
        };
        let log = Rc::new(GroupLog::open(&dir, log_config).await?);
        Self::with_log(log, config)
    }

    /// A coordinator whose log is the offsets topic (a cluster): it holds
    /// no group until [`load_partition`](Self::load_partition) replays one.
    pub fn in_partitions(
        partitions: Rc<dyn super::log::OffsetsPartitions>,
        config: GroupConfig,
    ) -> Result<Rc<GroupCoordinator>, GroupLogError> {
        config.validate()?;
        Self::with_log(Rc::new(GroupLog::in_partitions(partitions)), config)
    }

    fn with_log(
        log: Rc<GroupLog>,
        config: GroupConfig,
    ) -> Result<Rc<GroupCoordinator>, GroupLogError> {
        let now = now_ms();
        let loaded = log.with_live(|live| -> Result<LoadedGroups, GroupLogError> {
            let mut loaded = LoadedGroups {
                groups: HashMap::new(),
                txn_offsets: PendingTxnOffsets::new(),
                last_incarnation: 0,
            };
            for (key, value) in live {
                loaded.load(key, value, now)?;
            }
            Ok(loaded)
        })?;
        let member_id_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32);
        let coordinator = Rc::new_cyclic(|this| GroupCoordinator {
            config,
            log,
            groups: RefCell::new(loaded.groups),
            txn_offsets: RefCell::new(loaded.txn_offsets),
            this: this.clone(),
            member_id_base,
            next_member_seq: Cell::new(0),
            next_incarnation: Cell::new(loaded.last_incarnation + 1),
            next_timer_epoch: Cell::new(1),
            closed: Cell::new(false),
            groups_full_logged: Cell::new(None),
            loads: RefCell::new(HashMap::new()),
        });
        coordinator.start_expiry_timer();
        coordinator.schedule_restored_sessions(None);
        Ok(coordinator)
    }

    /// In a cluster, why this coordinator does not serve `group_id` now:
    /// NOT_COORDINATOR unless it leads the group's offsets partition,
    /// COORDINATOR_LOAD_IN_PROGRESS while it replays it.
    pub fn refusal(&self, group_id: &str) -> Option<GroupError> {
        let partitions = self.log.offsets_partitions()?;
        let partition = super::partition_for_group(group_id, partitions.partitions());
        match self.loads.borrow().get(&partition) {
            Some(Load::Loaded) => None,
            Some(Load::Loading) => Some(GroupError::CoordinatorLoadInProgress),
            None => Some(GroupError::NotCoordinator),
        }
    }

    /// The load state of offsets partition `partition`.
    pub fn load_state(&self, partition: u32) -> Option<Load> {
        self.loads.borrow().get(&partition).copied()
    }

    /// This broker now leads `partition`: requests for its groups get
    /// COORDINATOR_LOAD_IN_PROGRESS until [`load_partition`](Self::load_partition).
    pub fn begin_load(&self, partition: u32) {
        self.loads.borrow_mut().insert(partition, Load::Loading);
    }

    /// Rebuilds the groups of offsets partition `partition` from its
    /// committed records, in log order; then serves them. A Stable group
    /// keeps its members, as after a coordinator move in Kafka.
    pub fn load_partition(
        &self,
        partition: u32,
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), GroupLogError> {
        let Some(count) = self.log.offsets_partitions().map(|p| p.partitions()) else {
            return Ok(());
        };
        let in_partition = |key: &[u8]| {
            super::log::partition::partition_of_key(key, count).ok() == Some(partition)
        };
        // A stale copy of the partition's keys (led here before) goes first.
        self.log.unload(in_partition);
        self.log.load(ops);
        let now = now_ms();
        let mut loaded = LoadedGroups {
            groups: HashMap::new(),
            txn_offsets: PendingTxnOffsets::new(),
            last_incarnation: self.next_incarnation.get(),
        };
        self.log.with_live(|live| -> Result<(), GroupLogError> {
            for (key, value) in live.iter().filter(|(k, _)| in_partition(k)) {
                loaded.load(key, value, now)?;
            }
            Ok(())
        })?;
        let groups = loaded.groups.len();
        let restored: Vec<String> = loaded.groups.keys().cloned().collect();
        self.groups.borrow_mut().extend(loaded.groups);
        self.schedule_restored_sessions(Some(&restored));
        for (key, offsets) in loaded.txn_offsets {
            self.txn_offsets.borrow_mut().insert(key, offsets);
        }
        self.next_incarnation.set(loaded.last_incarnation + 1);
        self.loads.borrow_mut().insert(partition, Load::Loaded);
        tracing::info!(
            partition,
            groups,
            "loaded the groups of an offsets partition"
        );
        Ok(())
    }

    /// Session timers for the members that groups (`only` these, or all)
    /// took back from the log: one that does not heartbeat here in time
    /// leaves, and the group rebalances.
    fn schedule_restored_sessions(&self, only: Option<&[String]>) {
        let groups = self.groups.borrow();
        let ids: Vec<&String> = match only {
            Some(only) => only.iter().collect(),
            None => groups.keys().collect(),
        };
        for id in ids {
            let Some(group) = groups.get(id) else {
                continue;
            };
            for member_id in group.members.keys() {
                self.schedule_session_timer(group, member_id);
            }
        }
    }

    /// This broker no longer leads `partition`: its groups go (held
    /// requests are answered NOT_COORDINATOR and clients find the new one).
    pub fn unload_partition(&self, partition: u32) {
        let Some(count) = self.log.offsets_partitions().map(|p| p.partitions()) else {
            return;
        };
        self.loads.borrow_mut().remove(&partition);
        let ours = |group: &str| super::partition_for_group(group, count) == partition;
        let unloaded: Vec<Group> = {
            let mut groups = self.groups.borrow_mut();
            let ids: Vec<String> = groups.keys().filter(|g| ours(g)).cloned().collect();
            ids.into_iter()
                .filter_map(|id| groups.remove(&id))
                .collect()
        };
        for mut group in unloaded {
            refuse_waiters(&mut group);
        }
        self.txn_offsets
            .borrow_mut()
            .retain(|(group, _), _| !ours(group));
        self.log.unload(|key| {
            super::log::partition::partition_of_key(key, count).ok() == Some(partition)
        });
        tracing::info!(partition, "unloaded the groups of an offsets partition");
    }

    /// Counters of the underlying log.
    pub fn log_stats(&self) -> GroupLogStats {
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

    /// The group, if it is still the incarnation a timer or a durable write
    /// was started for (not a deleted one's successor of the same id).
    pub(super) fn group_mut(&self, group_id: &str, incarnation: u64) -> Option<RefMut<'_, Group>> {
        RefMut::filter_map(self.groups.borrow_mut(), |groups| {
            groups
                .get_mut(group_id)
                .filter(|g| g.incarnation == incarnation)
        })
        .ok()
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

    /// Writes `records` to the group log and, once they are on disk, runs
    /// `apply` with their sequence numbers, to completion even if the caller
    /// goes away (an acknowledged write is always applied in memory).
    pub(super) async fn write_then_apply(
        &self,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        apply: impl FnOnce(&GroupCoordinator, Vec<u64>) + 'static,
    ) -> Result<(), GroupLogError> {
        let seqs = self.log.enqueue_all(records)?;
        let Some(&last) = seqs.last() else {
            return Ok(());
        };
        let this = self.strong().ok_or(GroupLogError::Closed)?;
        let applied = Self::run_to_completion(async move {
            this.log.sync(last).await?;
            apply(&this, seqs);
            Ok(())
        });
        applied.await.unwrap_or(Err(GroupLogError::Closed))
    }

    /// Answers held requests with NOT_COORDINATOR (clients look for the
    /// coordinator again), flushes and compacts the log.
    pub async fn close(&self) -> Result<(), GroupLogError> {
        self.closed.set(true);
        for group in self.groups.borrow_mut().values_mut() {
            refuse_waiters(group);
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

/// Answers the group's held JoinGroup and SyncGroup requests with
/// NOT_COORDINATOR (clients look for the coordinator again) and stops its
/// join timer.
fn refuse_waiters(group: &mut Group) {
    group.join_timer = None;
    for member in group.members.values_mut() {
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.try_send(JoinAnswer::refused(
                GroupError::NotCoordinator,
                &member.member_id,
            ));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.try_send(SyncAnswer::refused(GroupError::NotCoordinator));
        }
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

pub(crate) fn session_duration(session_timeout_ms: i32) -> Duration {
    Duration::from_millis(session_timeout_ms.max(0) as u64)
}
