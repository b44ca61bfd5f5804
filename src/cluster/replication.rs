//! A shard's replicated partitions: one Raft group ([`Replica`]) per
//! partition with more than one replica that this shard owns here, and the
//! turn that drives them all.
//!
//! One turn: take the Ready of every group with work; send the messages
//! that may leave at once (a leader's appends); write every group's entries
//! into its log (all groups at once, each append synced); make changed
//! terms and votes durable in the shard's hard-state file; then send what
//! waited for persistence (votes, append answers), advance raft-rs and
//! apply commits (high watermarks, acks=all answers, long-polls wake).
//! Messages of one turn leave in one frame per peer: each shard has its own
//! connection to every peer. Messages arrive on shard 0's listener and are
//! forwarded to the partition's owning shard.
//!
//! Groups with nothing in flight stop ticking (hibernate) and wake on a
//! message, a proposal, or their leader's broker losing its lease.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::prelude::{HardState, MessageType};
use serde::{Deserialize, Serialize};

use super::consensus::{ELECTION_TICKS, TICK_INTERVAL_MS};
use super::frame::{PartitionMessage, WireMessage};
use super::replica::{LogStart, Pending, Replica, ReplicaError};
use super::state::{LeaderReport, Op};
use super::transport::Transport;
use super::view::ClusterView;
use super::{NodeId, CONTROLLER_DIR};
use crate::config::ClusterConfig;
use crate::shard::mesh::run_on;
use crate::shard::{Shard, ShardId, METADATA_SHARD};
use crate::storage::{AppendInfo, Durability, Offset};

/// Leader reports wait this long to go to the controller together.
const LEADER_REPORT_DELAY: Duration = Duration::from_millis(200);
/// A leader reports a changed ISR of one partition at most this often, so
/// a flapping follower does not flood the controller.
const ISR_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Ticks between checks of the leaders' ISRs against the view.
const ISR_CHECK_TICKS: u64 = 5;
/// How often a shard whose groups all sleep checks the view for its
/// leaders' reports: rarely, so idle brokers stay near zero CPU.
const SLEEPING_REPORT_CHECK: Duration = Duration::from_secs(2);
/// Quiet ticks after which a leader stops ticking (and heartbeating).
const LEADER_HIBERNATE_AFTER_TICKS: u32 = 3 * ELECTION_TICKS as u32;
/// Quiet ticks after which a follower stops ticking: well within an
/// election timeout, so a follower never campaigns against a leader that
/// went quiet first. Its leader's lease with the controller wakes it.
const FOLLOWER_HIBERNATE_AFTER_TICKS: u32 = 3;

type GroupKey = (Arc<str>, u32);

/// A shard's replicated partitions it leads, those short of in-sync
/// replicas, and the elections its replicas won since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeadershipCounts {
    pub leaders: u64,
    pub under_replicated: u64,
    pub elections_won: u64,
}

/// One group's durable hard state, as the shard's file keeps it, and where
/// its Raft log starts: Raft state, written with the terms and votes before
/// the log changes (segments removed below it, a log emptied for a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredHardState {
    term: u64,
    vote: u64,
    commit: u64,
    /// `None`: the log starts at entry 1 (nothing was ever removed).
    #[serde(default)]
    start: Option<LogStart>,
    /// A snapshot's restart of the log at `start` may not have finished.
    #[serde(default)]
    restart: bool,
}

pub struct Replication {
    node: NodeId,
    shard_index: usize,
    config: ClusterConfig,
    shard: RefCell<Weak<Shard>>,
    groups: RefCell<BTreeMap<GroupKey, Rc<RefCell<Replica>>>>,
    /// Topic ids of the groups (hard states are kept per topic id).
    ids: RefCell<HashMap<Arc<str>, uuid::Uuid>>,
    /// Groups that still tick.
    awake: RefCell<std::collections::BTreeSet<GroupKey>>,
    /// Hibernating groups that stepped a heartbeat (or its answer) and
    /// have a Ready to take once, without ticking again.
    stepped: RefCell<std::collections::BTreeSet<GroupKey>>,
    opening: RefCell<std::collections::HashSet<GroupKey>>,
    transport: RefCell<Option<Rc<Transport>>>,
    state_path: PathBuf,
    stored: RefCell<BTreeMap<String, StoredHardState>>,
    /// A commit index moved since the file was written.
    commit_dirty: Cell<bool>,
    wake: Rc<LocalSender<()>>,
    woken: RefCell<Option<LocalReceiver<()>>>,
    /// Messages for other shards, forwarded in batches (shard 0).
    forward: RefCell<HashMap<ShardId, Vec<PartitionMessage>>>,
    forward_wake: LocalSender<()>,
    forward_woken: RefCell<Option<LocalReceiver<()>>>,
    /// Leader reports not yet sent to the controller.
    reports: RefCell<Vec<LeaderReport>>,
    /// Held while the hard-state file is written.
    state_write: tokio::sync::Mutex<()>,
    /// When each led group last reported its ISR.
    isr_reported: RefCell<HashMap<GroupKey, std::time::Instant>>,
    ticks: Cell<u64>,
    /// Partitions this shard's replicas came to lead (elections won).
    elections_won: Cell<u64>,
}

impl Replication {
    pub fn new(config: &ClusterConfig, data_dir: &std::path::Path, shard: ShardId) -> Replication {
        let state_path = data_dir
            .join(CONTROLLER_DIR)
            .join(format!("partition-raft-state-{}.json", shard.index()));
        let stored = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                // Written whole and renamed into place: never torn.
                tracing::error!(path = %state_path.display(), %error, "unreadable partition hard states; starting without");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let (wake, woken) = local_channel::new_bounded(1);
        let (forward_wake, forward_woken) = local_channel::new_bounded(1);
        Replication {
            node: config.node_id,
            shard_index: shard.index(),
            config: config.clone(),
            shard: RefCell::new(Weak::new()),
            groups: RefCell::new(BTreeMap::new()),
            ids: RefCell::new(HashMap::new()),
            awake: RefCell::default(),
            stepped: RefCell::default(),
            opening: RefCell::default(),
            transport: RefCell::new(None),
            state_path,
            stored: RefCell::new(stored),
            commit_dirty: Cell::new(false),
            wake: Rc::new(wake),
            woken: RefCell::new(Some(woken)),
            forward: RefCell::default(),
            forward_wake,
            forward_woken: RefCell::new(Some(forward_woken)),
            reports: RefCell::default(),
            state_write: tokio::sync::Mutex::new(()),
            isr_reported: RefCell::default(),
            ticks: Cell::new(0),
            elections_won: Cell::new(0),
        }
    }

    /// Starts the turn loop and the forwarder on `shard`'s executor.
    pub fn start(self: &Rc<Self>, shard: &Rc<Shard>) {
        *self.shard.borrow_mut() = Rc::downgrade(shard);
        if let Some(woken) = self.woken.borrow_mut().take() {
            glommio::spawn_local(self.clone().run(woken)).detach();
        }
        if let Some(woken) = self.forward_woken.borrow_mut().take() {
            glommio::spawn_local(self.clone().forward_loop(woken)).detach();
        }
    }

    fn group(&self, topic: &str, partition: u32) -> Option<Rc<RefCell<Replica>>> {
        self.groups
            .borrow()
            .get(&(Arc::<str>::from(topic), partition))
            .cloned()
    }

    /// Whether `topic`'s `partition` is replicated here, and if so whether
    /// this broker serves it as leader.
    pub fn serves(&self, topic: &str, partition: u32) -> Option<bool> {
        self.group(topic, partition)
            .map(|g| g.borrow().is_serving())
    }

    /// Leads the group but has not committed an entry of its term yet.
    pub fn is_new_leader(&self, topic: &str, partition: u32) -> bool {
        self.group(topic, partition).is_some_and(|g| {
            let g = g.borrow();
            g.is_leader() && !g.is_serving()
        })
    }

    /// (leader, term) of a group on this shard.
    pub fn leadership(&self, topic: &str, partition: u32) -> Option<(Option<NodeId>, u64)> {
        self.group(topic, partition).map(|g| {
            let g = g.borrow();
            (g.leader(), g.term())
        })
    }

    /// Produces through the group of `topic`'s `partition`; `None` when
    /// it is not replicated here.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        durability: Durability,
        min_insync: usize,
    ) -> Option<Result<AppendInfo, ReplicaError>> {
        let group = self.group(topic, partition)?;
        let answered = {
            let mut replica = group.borrow_mut();
            // One in-sync replica is always there: the leader.
            let short = min_insync > 1
                && self
                    .view()
                    .is_none_or(|view| Self::live_in_sync(&replica, &view).count() < min_insync);
            if short {
                return Some(Err(ReplicaError::NotEnoughReplicas));
            }
            let prepared = match replica.log.prepare(records) {
                Ok(prepared) => prepared,
                Err(error) => return Some(Err(error.into())),
            };
            replica.propose(prepared, durability)
        };
        self.wake_group(topic, partition);
        Some(match answered {
            Ok(answered) => answered.await.unwrap_or(Err(ReplicaError::NotLeader)),
            Err(error) => Err(error),
        })
    }

    /// DeleteRecords on the leader of `topic`'s `partition`: the new log
    /// start offset goes through Raft, so every replica (and a later leader)
    /// takes it; `None` when the partition is not replicated here.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before: Offset,
    ) -> Option<Result<Offset, ReplicaError>> {
        let group = self.group(topic, partition)?;
        let (answered, log) = {
            let mut replica = group.borrow_mut();
            (replica.propose_log_start(before), replica.log.clone())
        };
        self.wake_group(topic, partition);
        let answer = match answered {
            Ok(answered) => answered.await.unwrap_or(Err(ReplicaError::NotLeader)),
            Err(error) => Err(error),
        };
        Some(match answer {
            // Committed: the log takes it now, not only after the turn.
            Ok(info) => log
                .delete_records(info.log_start_offset)
                .await
                .map_err(ReplicaError::from),
            Err(error) => Err(error),
        })
    }

    fn wake_group(&self, topic: &str, partition: u32) {
        let key = (Arc::<str>::from(topic), partition);
        if let Some(group) = self.groups.borrow().get(&key) {
            self.wake_key(key.clone(), group);
        }
        let _ = self.wake.try_send(());
    }

    /// Puts a group back among those that tick.
    fn wake_key(&self, key: GroupKey, group: &RefCell<Replica>) {
        if self.awake.borrow_mut().insert(key) {
            group.borrow_mut().wake();
        }
    }

    /// Makes the groups of this shard match `view`: a group for each
    /// partition with more than one replica that this broker holds and this
    /// shard owns; groups of deleted topics go.
    pub async fn sync(self: &Rc<Self>, shard: &Rc<Shard>, view: &ClusterView) {
        let topics = shard.topics();
        let mut wanted = Vec::new();
        for (name, record) in view.topics.iter() {
            let Some(info) = topics.get(name) else {
                continue;
            };
            for (index, partition) in record.partitions.iter().enumerate() {
                let owned = info.partition_shards.get(index) == Some(&shard.id);
                if owned && partition.replicas.len() > 1 && partition.replicas.contains(&self.node)
                {
                    wanted.push((
                        info.name.clone(),
                        record.id,
                        index as u32,
                        partition.clone(),
                    ));
                }
            }
        }
        let gone: Vec<GroupKey> = self
            .groups
            .borrow()
            .keys()
            .filter(|(topic, _)| !view.topics.contains_key(&**topic))
            .cloned()
            .collect();
        for key in gone {
            self.isr_reported.borrow_mut().remove(&key);
            if let Some(group) = self.groups.borrow_mut().remove(&key) {
                group.borrow_mut().close();
            }
        }
        for (topic, id, partition, record) in wanted {
            let key = (topic.clone(), partition);
            if self.groups.borrow().contains_key(&key)
                || !self.opening.borrow_mut().insert(key.clone())
            {
                continue;
            }
            let opened = self
                .open_group(shard, &topic, id, partition, &record.replicas)
                .await;
            self.opening.borrow_mut().remove(&key);
            match opened {
                Ok(mut replica) => {
                    if !self.config.auto_leader_rebalance {
                        replica.stop_reclaiming();
                    }
                    // The preferred leader (first replica) of a fresh group
                    // campaigns at once, so leaders spread as placed.
                    if record.replicas.first() == Some(&self.node) && replica.term() == 0 {
                        replica.campaign();
                    }
                    self.ids.borrow_mut().insert(topic.clone(), id);
                    self.groups
                        .borrow_mut()
                        .insert(key.clone(), Rc::new(RefCell::new(replica)));
                    self.awake.borrow_mut().insert(key);
                    let _ = self.wake.try_send(());
                }
                Err(error) => {
                    tracing::error!(%topic, partition, %error, "opening a partition's Raft group failed")
                }
            }
        }
        self.wake_orphans(view);
        self.report_isr_changes(view);
    }

    async fn open_group(
        &self,
        shard: &Rc<Shard>,
        topic: &Arc<str>,
        id: uuid::Uuid,
        partition: u32,
        replicas: &[NodeId],
    ) -> Result<Replica, String> {
        let log = shard
            .replica_log(topic, crate::shard::PartitionId(partition as i32))
            .await
            .map_err(|e| e.to_string())?;
        if self.transport.borrow().is_none() {
            *self.transport.borrow_mut() = Some(Transport::connect(&self.config));
        }
        let stored = self
            .stored
            .borrow()
            .get(&state_key(id, partition))
            .copied()
            .unwrap_or_default();
        let hard_state = HardState {
            term: stored.term,
            vote: stored.vote,
            commit: stored.commit,
        };
        let replica = Replica::open(
            topic.clone(),
            partition,
            self.node,
            replicas,
            log,
            hard_state,
            (stored.start, stored.restart),
        )
        .await
        .map_err(|e| e.to_string())?;
        if stored.restart {
            // The restart finished: it must not run again over later appends.
            self.store_log_start(id, partition, replica.log_start(), false)
                .await;
        }
        Ok(replica)
    }

    /// Makes where a group's Raft log starts durable (before the log changes).
    async fn store_log_start(
        &self,
        id: uuid::Uuid,
        partition: u32,
        start: LogStart,
        restart: bool,
    ) {
        {
            let mut stored = self.stored.borrow_mut();
            let entry = stored.entry(state_key(id, partition)).or_default();
            entry.start = Some(start);
            entry.restart = restart;
        }
        self.store_hard_states().await;
    }

    /// Each group removes the whole segments of committed entries that
    /// retention and the log start offset let go (on every replica alike,
    /// each below its own commit index).
    pub async fn enforce_retention(&self, now_ms: i64) {
        let groups: Vec<Rc<RefCell<Replica>>> = self.groups.borrow().values().cloned().collect();
        for group in groups {
            let (start, id, partition) = {
                let replica = group.borrow();
                let Some(start) = replica.retained_start(now_ms) else {
                    continue;
                };
                let Some(id) = self.ids.borrow().get(&replica.topic).copied() else {
                    continue;
                };
                (start, id, replica.partition)
            };
            self.store_log_start(id, partition, start, false).await;
            match Replica::compact(&group, start).await {
                Ok(()) => {}
                Err(ReplicaError::Storage(crate::storage::Error::Closed)) => {}
                Err(error) => fatal(&group.borrow(), &error.to_string()),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Hibernating groups whose leader's broker is not live wake up, so
    /// their election timers run.
    fn wake_orphans(&self, view: &ClusterView) {
        let live = |node: NodeId| view.brokers.iter().any(|b| b.node == node);
        let mut woke = false;
        for (key, group) in self.groups.borrow().iter() {
            let leader = group.borrow().leader();
            if leader.is_none_or(|l| !live(l)) && !self.awake.borrow().contains(key) {
                self.wake_key(key.clone(), group);
                woke = true;
            }
        }
        if woke {
            let _ = self.wake.try_send(());
        }
    }

    /// ElectLeaders on the preferred replica: its group asks the leader
    /// to hand over. Whether it asked (not when it leads or knows no leader).
    pub fn claim_leadership(&self, topic: &str, partition: u32) -> bool {
        let Some(group) = self.group(topic, partition) else {
            return false;
        };
        let asked = group.borrow_mut().claim_leadership();
        if asked {
            self.wake_group(topic, partition);
        }
        asked
    }

    /// Messages from peers for groups of this shard.
    pub fn deliver(&self, messages: Vec<PartitionMessage>) {
        for message in messages {
            let Some(group) = self.group(&message.topic, message.partition) else {
                tracing::debug!(topic = %message.topic, partition = message.partition, "a message for a group not open here; dropped (Raft resends)");
                continue;
            };
            let key = (message.topic.clone(), message.partition);
            let heartbeat = matches!(
                message.message.msg_type(),
                MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse
            );
            if !heartbeat || self.awake.borrow().contains(&key) {
                self.wake_key(key, &group);
                group.borrow_mut().step(*message.message);
                continue;
            }
            // A heartbeat (or its answer) leaves a hibernating group asleep:
            // it answers in the next turn and does not tick. Waking on them
            // would have a leader's last heartbeat round wake it again
            // (and with it its followers), for ever.
            let changed = {
                let mut replica = group.borrow_mut();
                let before = (replica.term(), replica.leader());
                replica.step(*message.message);
                (replica.term(), replica.leader()) != before
            };
            if changed {
                self.wake_key(key, &group);
            } else {
                self.stepped.borrow_mut().insert(key);
            }
        }
        let _ = self.wake.try_send(());
    }

    /// On shard 0: a message from a peer goes to its partition's owning shard.
    pub fn route(&self, shard: &Rc<Shard>, message: PartitionMessage) {
        let owner = shard
            .topics()
            .get(&message.topic)
            .and_then(|t| t.partition_shards.get(message.partition as usize).copied());
        match owner {
            Some(owner) if owner == shard.id => self.deliver(vec![message]),
            Some(owner) => {
                self.forward
                    .borrow_mut()
                    .entry(owner)
                    .or_default()
                    .push(message);
                let _ = self.forward_wake.try_send(());
            }
            None => {
                tracing::debug!(topic = %message.topic, "a message for an unknown partition; dropped")
            }
        }
    }

    async fn forward_loop(self: Rc<Self>, woken: LocalReceiver<()>) {
        while woken.recv().await.is_some() {
            let Some(shard) = self.shard.borrow().upgrade() else {
                return;
            };
            let batches = std::mem::take(&mut *self.forward.borrow_mut());
            for (target, messages) in batches {
                let delivered = run_on(&shard, target, move |s| async move {
                    if let Some(cluster) = s.cluster.as_ref() {
                        cluster.replication.deliver(messages);
                    }
                })
                .await;
                if let Err(error) = delivered {
                    tracing::warn!(shard = target.index(), %error, "forwarding Raft messages failed");
                }
            }
        }
    }

    async fn run(self: Rc<Self>, woken: LocalReceiver<()>) {
        let interval = Duration::from_millis(TICK_INTERVAL_MS);
        let mut next_tick = std::time::Instant::now() + interval;
        loop {
            let now = std::time::Instant::now();
            if now >= next_tick {
                next_tick = now + interval;
                self.tick();
                if self.commit_dirty.replace(false) {
                    self.store_hard_states().await;
                }
            }
            self.turn().await;
            let sleep = next_tick.saturating_duration_since(std::time::Instant::now());
            let idle = self.awake.borrow().is_empty() && !self.commit_dirty.get();
            if idle {
                // Nothing ticks: sleep until woken, checking now and then
                // that the view shows this shard's leaders and ISRs (a
                // report can be lost while every group sleeps).
                let woke =
                    futures_lite::future::or(async { Some(woken.recv().await.is_some()) }, async {
                        glommio::timer::sleep(SLEEPING_REPORT_CHECK).await;
                        None
                    })
                    .await;
                match woke {
                    Some(true) => {}
                    Some(false) => return,
                    None => {
                        if let Some(view) = self.view() {
                            self.report_isr_changes(&view);
                        }
                    }
                }
            } else {
                futures_lite::future::or(
                    async {
                        let _ = woken.recv().await;
                    },
                    glommio::timer::sleep(sleep),
                )
                .await;
            }
        }
    }

    /// Ticks awake groups; quiet ones go to sleep.
    fn tick(&self) {
        let live: Vec<NodeId> = self
            .view()
            .map(|view| view.brokers.iter().map(|b| b.node).collect())
            .unwrap_or_default();
        let awake: Vec<GroupKey> = self.awake.borrow().iter().cloned().collect();
        for key in awake {
            let Some(group) = self.groups.borrow().get(&key).cloned() else {
                self.awake.borrow_mut().remove(&key);
                continue;
            };
            let mut replica = group.borrow_mut();
            // Quiet as the last turn left it: the heartbeats this tick
            // queues are no traffic.
            let quiet = replica.is_quiet();
            replica.tick();
            // A follower whose leader lost its lease keeps ticking until it
            // elects another.
            let leader_live = replica.leader().is_some_and(|l| live.contains(&l));
            if quiet && leader_live {
                replica.idle_ticks += 1;
                let limit = if replica.is_leader() {
                    LEADER_HIBERNATE_AFTER_TICKS
                } else {
                    FOLLOWER_HIBERNATE_AFTER_TICKS
                };
                if replica.idle_ticks >= limit {
                    self.awake.borrow_mut().remove(&key);
                    // A preferred leader that another leads asks for its
                    // leadership before it sleeps (it no longer ticks to
                    // ask later); the request goes out in the next turn.
                    if replica.reclaim_preferred() {
                        self.stepped.borrow_mut().insert(key);
                    }
                }
            } else {
                replica.idle_ticks = 0;
            }
        }
        let ticks = self.ticks.get() + 1;
        self.ticks.set(ticks);
        if ticks.is_multiple_of(ISR_CHECK_TICKS) {
            if let Some(view) = self.view() {
                self.report_isr_changes(&view);
            }
        }
    }

    /// The replicas a group's leader counts in sync, on live brokers only
    /// (a hibernating leader's follower progress is as it last was), the
    /// leader first.
    fn live_isr(replica: &Replica, view: &ClusterView) -> Vec<NodeId> {
        let me = replica.leader();
        let mut isr: Vec<NodeId> = me.into_iter().collect();
        isr.extend(Self::live_in_sync(replica, view).filter(|&r| Some(r) != me));
        isr
    }

    /// The replicas a group's leader counts in sync: itself, and the others
    /// on live brokers.
    fn live_in_sync<'a>(
        replica: &'a Replica,
        view: &'a ClusterView,
    ) -> impl Iterator<Item = NodeId> + 'a {
        let me = replica.leader();
        replica
            .in_sync_replicas()
            .filter(move |&r| Some(r) == me || view.brokers.iter().any(|b| b.node == r))
    }

    /// The cluster view of this shard, while the shard runs.
    fn view(&self) -> Option<Arc<ClusterView>> {
        self.shard
            .borrow()
            .upgrade()
            .and_then(|shard| shard.cluster.as_ref().map(|c| c.view()))
    }

    /// Led groups whose leadership or ISR `view` does not show report
    /// them (KIP-497's AlterPartition), each at most once per
    /// [`ISR_REPORT_INTERVAL`]: the controller drops a fenced broker's
    /// leaderships, and a leader that was only paused (or whose report was
    /// lost) still leads at its term.
    fn report_isr_changes(&self, view: &ClusterView) {
        let now = std::time::Instant::now();
        let mut changed = Vec::new();
        for (key, group) in self.groups.borrow().iter() {
            let replica = group.borrow();
            if !replica.is_serving() {
                continue;
            }
            let Some(record) = view
                .topics
                .get(&*key.0)
                .and_then(|t| t.partitions.get(key.1 as usize))
            else {
                continue;
            };
            let isr = Self::live_isr(&replica, view);
            let Some(&leader) = isr.first() else {
                continue;
            };
            let epoch = i32::try_from(replica.term()).unwrap_or(i32::MAX);
            let mut reported = isr.clone();
            reported.sort_unstable();
            let mut shown = record.in_sync();
            shown.sort_unstable();
            let same = record.leader == leader && record.leader_epoch == epoch && reported == shown;
            let recent = self
                .isr_reported
                .borrow()
                .get(key)
                .is_some_and(|at| now.duration_since(*at) < ISR_REPORT_INTERVAL);
            if !same && !recent {
                changed.push(LeaderReport {
                    name: key.0.to_string(),
                    partition: key.1,
                    leader,
                    epoch,
                    isr,
                });
            }
        }
        for report in changed {
            self.queue_report(report);
        }
    }

    /// Runs turns until no group has work.
    async fn turn(&self) {
        loop {
            // Only groups that tick can have work: messages and proposals
            // wake theirs first.
            let groups: Vec<Rc<RefCell<Replica>>> = {
                let all = self.groups.borrow();
                let awake = self.awake.borrow();
                let stepped = std::mem::take(&mut *self.stepped.borrow_mut());
                awake
                    .iter()
                    .chain(stepped.iter().filter(|key| !awake.contains(*key)))
                    .filter_map(|key| all.get(key).cloned())
                    .collect()
            };
            let mut now_out = Vec::new();
            let mut pending: Vec<(Rc<RefCell<Replica>>, Pending)> = Vec::new();
            for group in &groups {
                let mut out = Vec::new();
                let begun = group.borrow_mut().begin(&mut out);
                self.queue(&group.borrow(), out, &mut now_out);
                match begun {
                    Ok(Some(p)) => pending.push((group.clone(), p)),
                    Ok(None) => {}
                    Err(error) => fatal(&group.borrow(), &error.to_string()),
                }
            }
            self.send(now_out);
            if pending.is_empty() {
                break;
            }
            self.store_restarts(&pending, true).await;
            let writes = pending.iter().map(|(group, p)| {
                let log = group.borrow().log.clone();
                async move { p.write(&log).await }
            });
            let results = join_all(writes).await;
            let mut closed = false;
            for ((group, _), result) in pending.iter().zip(results) {
                match result {
                    Ok(()) => {}
                    // Shutting down (or the topic went away): the group ends here.
                    Err(crate::storage::Error::Closed) => closed = true,
                    // An unknown disk state must not vote or acknowledge.
                    Err(error) => fatal(&group.borrow(), &error.to_string()),
                }
            }
            if closed {
                self.drop_closed_groups();
                return;
            }
            self.store_restarts(&pending, false).await;
            self.persist_hard_states(&pending).await;
            let mut later_out = Vec::new();
            for (group, p) in pending {
                let mut out = Vec::new();
                let moved = group.borrow_mut().finish(p, &mut out);
                if moved.is_some() {
                    self.commit_dirty.set(true);
                }
                self.queue(&group.borrow(), out, &mut later_out);
            }
            self.send(later_out);
            self.after_turn(&groups);
        }
    }

    /// A snapshot's log start is durable, marked as a restart, before the
    /// log empties (`begun`), and unmarked once it did, before anything is
    /// appended after it is acknowledged.
    async fn store_restarts(&self, pending: &[(Rc<RefCell<Replica>>, Pending)], begun: bool) {
        for (group, p) in pending {
            let Some(start) = p.restart else {
                continue;
            };
            let (id, partition) = {
                let replica = group.borrow();
                let Some(id) = self.ids.borrow().get(&replica.topic).copied() else {
                    continue;
                };
                (id, replica.partition)
            };
            self.store_log_start(id, partition, start, begun).await;
        }
    }

    /// Groups whose log was closed stop (their answers are given).
    fn drop_closed_groups(&self) {
        self.groups.borrow_mut().retain(|_, group| {
            let mut replica = group.borrow_mut();
            let open = !replica.log.is_closed();
            if !open {
                replica.close();
            }
            open
        });
    }

    /// Terms and votes are durable before any message that depends on them
    /// leaves; a commit index alone is written at the next tick.
    async fn persist_hard_states(&self, pending: &[(Rc<RefCell<Replica>>, Pending)]) {
        let mut must_sync = false;
        {
            let ids = self.ids.borrow();
            let mut stored = self.stored.borrow_mut();
            for (group, p) in pending {
                let Some(state) = &p.hard_state else {
                    continue;
                };
                let replica = group.borrow();
                let Some(id) = ids.get(&replica.topic) else {
                    continue;
                };
                let entry = stored.entry(state_key(*id, replica.partition)).or_default();
                if entry.term != state.term || entry.vote != state.vote {
                    must_sync = true;
                } else if entry.commit != state.commit {
                    self.commit_dirty.set(true);
                }
                entry.term = state.term;
                entry.vote = state.vote;
                entry.commit = state.commit;
            }
        }
        if must_sync {
            self.store_hard_states().await;
        }
    }

    /// Writes every group's hard state (with the newest commit indexes) to
    /// a new file, syncs it and renames it over the old one, on the
    /// executor's blocking pool (the shard keeps serving meanwhile), one
    /// write at a time.
    async fn store_hard_states(&self) {
        // Retention and opening groups write too: one write at a time, so
        // files are renamed in the order they were encoded.
        let _writing = self.state_write.lock().await;
        {
            let ids = self.ids.borrow();
            let mut stored = self.stored.borrow_mut();
            for group in self.groups.borrow().values() {
                let replica = group.borrow();
                if let Some(id) = ids.get(&replica.topic) {
                    let hs = replica.hard_state();
                    let entry = stored.entry(state_key(*id, replica.partition)).or_default();
                    // Term and vote only move through a durable turn.
                    if entry.term == hs.term {
                        entry.commit = entry.commit.max(hs.commit);
                    }
                }
            }
        }
        let bytes = match serde_json::to_vec(&*self.stored.borrow()) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "encoding partition hard states failed");
                return;
            }
        };
        let path = self.state_path.clone();
        let written = glommio::executor()
            .spawn_blocking(move || write_synced(&path, &bytes))
            .await;
        if let Err(error) = written {
            tracing::error!(path = %self.state_path.display(), %error, "writing partition hard states failed; stopping");
            eprintln!("ringlog: writing partition hard states failed: {error}");
            std::process::exit(1);
        }
    }

    /// Leadership changes are published; old entries raft-rs asked for are read.
    fn after_turn(&self, groups: &[Rc<RefCell<Replica>>]) {
        for group in groups {
            let (published, wanted, log, log_start) = {
                let mut replica = group.borrow_mut();
                (
                    replica.leadership_turn(),
                    replica.take_wanted(),
                    replica.log.clone(),
                    replica.take_log_start_due(),
                )
            };
            if let Some(log_start) = log_start {
                let log = log.clone();
                glommio::spawn_local(async move {
                    if let Err(error) = log.delete_records(log_start).await {
                        tracing::warn!(%error, "moving the log start offset failed");
                    }
                })
                .detach();
            }
            if let Some((leader, term)) = published {
                let replica = group.borrow();
                tracing::info!(topic = %replica.topic, partition = replica.partition, leader, term, "leading the partition");
                self.elections_won.set(self.elections_won.get() + 1);
                let isr = self
                    .view()
                    .map_or_else(|| vec![leader], |view| Self::live_isr(&replica, &view));
                self.queue_report(LeaderReport {
                    name: replica.topic.to_string(),
                    partition: replica.partition,
                    leader,
                    epoch: i32::try_from(term).unwrap_or(i32::MAX),
                    isr,
                });
            }
            for (index, base_offset, context) in wanted {
                let group = group.clone();
                let log = log.clone();
                let wake = self.wake.clone();
                glommio::spawn_local(async move {
                    let batches = log
                        .read_replicated(base_offset, super::replica::FETCH_BYTES_MAX)
                        .await
                        .unwrap_or_default();
                    group.borrow_mut().entries_fetched(index, batches, context);
                    // The leader lags a follower: it is awake (not quiet).
                    let _ = wake.try_send(());
                })
                .detach();
            }
        }
    }

    /// Tells the controller who leads and which replicas are in sync, so
    /// Metadata on every broker says so. Reports of one moment go in one
    /// proposal.
    fn queue_report(&self, report: LeaderReport) {
        self.isr_reported.borrow_mut().insert(
            (Arc::from(report.name.as_str()), report.partition),
            std::time::Instant::now(),
        );
        let first = {
            let mut reports = self.reports.borrow_mut();
            reports.push(report);
            reports.len() == 1
        };
        if !first {
            return;
        }
        let Some(shard) = self.shard.borrow().upgrade() else {
            return;
        };
        let replication = self.shard_cluster_replication(&shard);
        glommio::spawn_local(async move {
            glommio::timer::sleep(LEADER_REPORT_DELAY).await;
            let Some(replication) = replication else {
                return;
            };
            let leaders = std::mem::take(&mut *replication.reports.borrow_mut());
            let submitted = run_on(&shard, METADATA_SHARD, move |s| async move {
                let Some(controller) = s.cluster.as_ref().and_then(|c| c.controller()) else {
                    return;
                };
                let op = Op::SetPartitionLeaders { leaders };
                if let Err(error) = controller.submit(op).await {
                    tracing::info!(%error, "publishing partition leaders failed");
                }
            })
            .await;
            if let Err(error) = submitted {
                tracing::warn!(%error, "publishing partition leaders failed");
            }
        })
        .detach();
    }

    fn shard_cluster_replication(&self, shard: &Rc<Shard>) -> Option<Rc<Replication>> {
        shard.cluster.as_ref().map(|c| c.replication.clone())
    }

    /// Adds each message's group and queues it in `into`.
    fn queue(
        &self,
        replica: &Replica,
        out: Vec<raft::prelude::Message>,
        into: &mut Vec<(NodeId, WireMessage)>,
    ) {
        for message in out {
            let to = NodeId::try_from(message.to).unwrap_or(-1);
            into.push((
                to,
                WireMessage::Partition(PartitionMessage {
                    topic: replica.topic.clone(),
                    partition: replica.partition,
                    message: Box::new(message),
                }),
            ));
        }
    }

    fn send(&self, messages: Vec<(NodeId, WireMessage)>) {
        if messages.is_empty() {
            return;
        }
        let transport = self.transport.borrow();
        let Some(transport) = transport.as_ref() else {
            return;
        };
        for (to, message) in messages {
            transport.send(to, message);
        }
    }

    /// This shard's part in the leadership metrics.
    pub fn leadership_counts(&self) -> LeadershipCounts {
        let view = self.view();
        let mut counts = LeadershipCounts {
            elections_won: self.elections_won.get(),
            ..LeadershipCounts::default()
        };
        for group in self.groups.borrow().values() {
            let replica = group.borrow();
            if !replica.is_serving() {
                continue;
            }
            counts.leaders += 1;
            let in_sync = view
                .as_ref()
                .map_or(1, |view| Self::live_isr(&replica, view).len());
            if in_sync < replica.replica_count() {
                counts.under_replicated += 1;
            }
        }
        counts
    }

    /// (awake, all) groups of this shard.
    pub fn group_counts(&self) -> (usize, usize) {
        (self.awake.borrow().len(), self.groups.borrow().len())
    }

    /// For logs and tests: this shard's index.
    pub fn shard_index(&self) -> usize {
        self.shard_index
    }
}

/// Replaces `path` with `bytes` durably (blocking; not on a shard's thread).
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::storage::file::replace_file_blocking(path, bytes)
}

fn state_key(topic: uuid::Uuid, partition: u32) -> String {
    format!("{topic}/{partition}")
}

fn fatal(replica: &Replica, error: &str) -> ! {
    tracing::error!(topic = %replica.topic, partition = replica.partition, error, "a partition's Raft log failed; stopping");
    eprintln!(
        "ringlog: the Raft log of {}-{} failed: {error}",
        replica.topic, replica.partition
    );
    std::process::exit(1);
}
