//! One replicated partition's Raft group on this broker: raft-rs's RawNode
//! over the partition log, which is the Raft log.
//!
//! Raft index is not the Kafka offset: the log's first stored batch is the
//! entry after its [`LogStart`] (index 1 until retention or DeleteRecords
//! removed a segment), each later batch the next entry, and [`Entries`] maps
//! each index to the batch's (base offset, next offset, term), rebuilt from
//! the log at opening. The term of an entry
//! is its batch's partitionLeaderEpoch. Recent entries' bytes are kept in
//! memory (shared with the batch cache, not copied); older ones a lagging
//! follower needs are read back from the log asynchronously: the storage
//! answers `LogTemporarilyUnavailable` and raft-rs asks again once
//! [`Replica::entries_fetched`] was called.
//!
//! Each replica removes whole segments of committed entries itself
//! (retention, the log start offset). A follower that needs an entry its
//! leader removed gets a snapshot that holds no data, only the [`LogStart`]:
//! it empties its log and starts again at that offset, as a Kafka follower
//! does when the leader's log start offset has passed it.
//!
//! A new leader's empty entry is stored as a LEADER_CHANGE control batch,
//! built from the entry's offset and term alone, so every replica writes
//! the same bytes.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use raft::prelude::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use raft::{GetEntriesContext, RaftState, RawNode, SnapshotStatus, StateRole, StorageError};
use serde::{Deserialize, Serialize};

use super::consensus::raft_config;
use super::logger::partition_raft_logger;
use super::NodeId;
use crate::storage::producer_state::ProducerEntry;
use crate::storage::{
    self, control, AppendInfo, BatchHeader, Durability, Offset, PartitionLog, Proposal,
};

/// Entry bytes kept in memory per group for followers that are nearly caught up.
const WINDOW_BYTES_MAX: usize = 8 << 20;
const WINDOW_ENTRIES_MAX: usize = 4096;
/// Bytes of old entries read back from the log at once for a lagging follower.
pub const FETCH_BYTES_MAX: usize = 1 << 20;
/// How often (in ticks) a preferred leader that does not lead asks for it.
const PREFERRED_CHECK_TICKS: u64 = 30;
/// A replica at most this many entries behind the leader's last counts as in sync.
pub const IN_SYNC_LAG_ENTRIES_MAX: u64 = 1000;
/// Produce requests waiting for their entry at once, per group.
const WAITERS_MAX: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("too many produce requests wait for this partition")]
    Busy,
    #[error("fewer replicas in sync than min.insync.replicas")]
    NotEnoughReplicas,
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("the log does not continue the Raft log: {0}")]
    Diverged(String),
}

/// Where entry `index` lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    pub base_offset: Offset,
    pub next_offset: Offset,
    pub term: u64,
}

/// Where a replica's Raft log starts: every entry up to `index` (of `term`)
/// is gone, and the entry after it begins at `offset`. Kept durably with the
/// hard state; a snapshot carries it to a follower.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStart {
    pub index: u64,
    pub term: u64,
    pub offset: i64,
}

impl LogStart {
    /// A snapshot's data: the offset, then the log start offset clients
    /// see (DeleteRecords may have moved it past the first batch), each
    /// big-endian.
    fn snapshot_data(&self, log_start_offset: Offset) -> Vec<u8> {
        let mut data = self.offset.to_be_bytes().to_vec();
        data.extend_from_slice(&log_start_offset.get().to_be_bytes());
        data
    }

    fn from_snapshot(snapshot: &Snapshot) -> Option<(LogStart, Offset)> {
        let meta = snapshot.get_metadata();
        let offset = i64::from_be_bytes(snapshot.data.get(..8)?.try_into().ok()?);
        let log_start_offset = i64::from_be_bytes(snapshot.data.get(8..16)?.try_into().ok()?);
        let start = LogStart {
            index: meta.index,
            term: meta.term,
            offset,
        };
        Some((start, Offset(log_start_offset)))
    }
}

/// The Raft log as raft-rs reads it: the entry map, recent entries' bytes,
/// old entries read back, and the hard state.
pub struct Entries {
    hard_state: HardState,
    voters: Vec<u64>,
    /// What went before `metas[0]`: it is entry `start.index + 1`.
    start: LogStart,
    /// `metas[i - start.index - 1]` is entry `i`. Entries of a turn's write are here from
    /// the moment raft-rs hands them over (it reads them back at once), so
    /// the last ones may not be durable yet.
    metas: Vec<EntryMeta>,
    /// The last entry that is durable in the log.
    persisted: u64,
    /// The raft index of `window[0]`.
    window_first: u64,
    window: VecDeque<Bytes>,
    window_bytes: usize,
    /// Old entries read back from the log for a lagging follower.
    fetched: BTreeMap<u64, Bytes>,
    /// Reads raft-rs asked for: (first index, context to hand back).
    wanted: Vec<(u64, GetEntriesContext)>,
    /// Entries not yet applied that move the log start offset (DeleteRecords).
    log_starts: BTreeMap<u64, Offset>,
    /// The log start offset the applied entries set (a snapshot carries it).
    log_start_offset: Offset,
}

impl Entries {
    fn first_index(&self) -> u64 {
        self.start.index + 1
    }

    fn last_index(&self) -> u64 {
        self.start.index + self.metas.len() as u64
    }

    fn meta(&self, index: u64) -> Option<EntryMeta> {
        index
            .checked_sub(self.first_index())
            .and_then(|i| self.metas.get(i as usize))
            .copied()
    }

    /// The offset after entry `index` (the log start's offset for the entry
    /// before the first).
    fn end_of(&self, index: u64) -> Offset {
        if index == self.start.index {
            return Offset(self.start.offset);
        }
        self.meta(index)
            .map_or(Offset(self.start.offset), |m| m.next_offset)
    }

    /// The first entry is now the one after `start` (its segments go).
    fn compact(&mut self, start: LogStart) {
        let gone = start.index.saturating_sub(self.start.index) as usize;
        self.metas.drain(..gone.min(self.metas.len()));
        self.start = start;
        while self.window_first <= start.index {
            let Some(gone) = self.window.pop_front() else {
                self.window_first = start.index + 1;
                break;
            };
            self.window_bytes -= gone.len();
            self.window_first += 1;
        }
        self.fetched = self.fetched.split_off(&(start.index + 1));
        self.log_starts = self.log_starts.split_off(&(start.index + 1));
    }

    /// A snapshot replaces the whole log: it starts empty after `start`.
    fn restore(&mut self, start: LogStart) {
        self.metas.clear();
        self.start = start;
        self.persisted = start.index;
        self.window.clear();
        self.window_bytes = 0;
        self.window_first = start.index + 1;
        self.fetched.clear();
        self.log_starts.clear();
    }

    /// The newest log start offset of the entries up to `index`, which
    /// are applied now.
    fn take_log_start(&mut self, index: u64) -> Option<Offset> {
        let later = self.log_starts.split_off(&(index + 1));
        let applied = std::mem::replace(&mut self.log_starts, later);
        applied.into_values().max()
    }

    fn data(&self, index: u64) -> Option<&Bytes> {
        index
            .checked_sub(self.window_first)
            .and_then(|i| self.window.get(i as usize))
            .or_else(|| self.fetched.get(&index))
    }

    /// Forgets entry `index` and every later one.
    fn truncate_from(&mut self, index: u64) {
        self.metas
            .truncate(index.saturating_sub(self.first_index()) as usize);
        self.persisted = self.persisted.min(self.last_index());
        if index < self.window_first {
            self.window.clear();
            self.window_bytes = 0;
        } else {
            let keep = (index - self.window_first) as usize;
            while self.window.len() > keep {
                if let Some(gone) = self.window.pop_back() {
                    self.window_bytes -= gone.len();
                }
            }
        }
        self.fetched.split_off(&index);
        self.log_starts.split_off(&index);
    }

    /// Entry `index` follows the last one (it is being written).
    fn push(&mut self, index: u64, meta: EntryMeta, data: Bytes) {
        debug_assert_eq!(index, self.last_index() + 1);
        self.metas.push(meta);
        if self.window.is_empty() {
            self.window_first = index;
        }
        self.window_bytes += data.len();
        self.window.push_back(data);
        while self.window.len() > 1
            && (self.window_bytes > WINDOW_BYTES_MAX || self.window.len() > WINDOW_ENTRIES_MAX)
        {
            if let Some(gone) = self.window.pop_front() {
                self.window_bytes -= gone.len();
                self.window_first += 1;
            }
        }
    }
}

/// raft-rs's view of [`Entries`].
#[derive(Clone)]
pub struct GroupStorage(Rc<RefCell<Entries>>);

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let entries = self.0.borrow();
        Ok(RaftState {
            hard_state: entries.hard_state.clone(),
            conf_state: ConfState::from((entries.voters.clone(), vec![])),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut entries = self.0.borrow_mut();
        if low < entries.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > entries.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let Some(meta) = entries.meta(index) else {
                break;
            };
            let data = match entries.data(index) {
                Some(data) => data.to_vec(),
                // Only appends to followers need the bytes; raft-rs reads
                // other ranges for terms and entry types alone.
                None if !context.can_async() => Vec::new(),
                None if out.is_empty() => {
                    entries.wanted.push((index, context));
                    return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
                }
                None => break,
            };
            size += data.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(Entry {
                index,
                term: meta.term,
                data,
                ..Default::default()
            });
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let entries = self.0.borrow();
        match index.cmp(&entries.start.index) {
            std::cmp::Ordering::Less => Err(raft::Error::Store(StorageError::Compacted)),
            std::cmp::Ordering::Equal => Ok(entries.start.term),
            std::cmp::Ordering::Greater => entries
                .meta(index)
                .map(|m| m.term)
                .ok_or(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    /// A follower needs entries this log removed: it starts again where
    /// this log starts. The snapshot holds the [`LogStart`] alone.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let entries = self.0.borrow();
        let start = entries.start;
        if start.index == 0 || request_index > start.index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot {
            data: start.snapshot_data(entries.log_start_offset),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = start.index;
        meta.term = start.term;
        meta.set_conf_state(ConfState::from((entries.voters.clone(), vec![])));
        Ok(snapshot)
    }
}

/// A produce waiting for its entry.
struct Waiter {
    index: u64,
    term: u64,
    durability: Durability,
    info: AppendInfo,
    answer: oneshot::Sender<Result<AppendInfo, ReplicaError>>,
}

/// A produce that reached a leader before it took writes (new, or
/// handing leadership over).
struct Held {
    records: Bytes,
    durability: Durability,
    answer: oneshot::Sender<Result<AppendInfo, ReplicaError>>,
}

/// What one turn writes for a group, taken from its Ready (already
/// handed back to raft-rs, and already in [`Entries`]; persistence is
/// reported with its number).
pub struct Pending {
    number: u64,
    /// Messages that may leave only once this is durable (votes, append answers).
    persisted_messages: Vec<Message>,
    /// Cut the log at this offset first (a replaced uncommitted tail).
    truncate: Option<Offset>,
    /// A snapshot from the leader: the log starts again, empty, here first.
    pub restart: Option<LogStart>,
    /// The last entry durable once this is written.
    last_index: u64,
    batches: Vec<Bytes>,
    pub hard_state: Option<HardState>,
}

impl Pending {
    /// Cuts and appends what this turn must make durable in `log`.
    pub async fn write(&self, log: &PartitionLog) -> Result<(), storage::Error> {
        if let Some(start) = self.restart {
            log.restart_at(Offset(start.offset)).await?;
        }
        if let Some(offset) = self.truncate {
            log.truncate_from(offset).await?;
        }
        if !self.batches.is_empty() {
            log.append_replicated(&self.batches).await?;
        }
        Ok(())
    }
}

/// Messages to send: the group's topic and partition are added by the caller.
pub type Outbox = Vec<Message>;

pub struct Replica {
    pub topic: Arc<str>,
    pub partition: u32,
    pub log: Rc<PartitionLog>,
    node: RawNode<GroupStorage>,
    entries: Rc<RefCell<Entries>>,
    /// The leader's next offset to assign, once its term's first entry is
    /// committed (before that, produce is held).
    proposed_end: Option<Offset>,
    /// On the leader: producers' entries after its proposals that are not
    /// in the log yet, with the last such proposal's index (a retry of one
    /// is a duplicate, KIP-98).
    proposed_producers: HashMap<i64, (ProducerEntry, u64)>,
    waiters: VecDeque<Waiter>,
    /// Produce held until the leader takes proposals ([`Replica::takes_proposals`]).
    held: VecDeque<Held>,
    /// The (leader, term) last published.
    published: (Option<NodeId>, u64),
    /// Ticks since the last message or proposal (for hibernation).
    pub idle_ticks: u32,
    /// This broker is the first replica (the preferred leader).
    preferred: bool,
    ticks: u64,
    /// A log start offset committed entries moved to, for the log to take.
    log_start_due: Option<Offset>,
}

impl Replica {
    /// The group of `log` among `replicas` with the hard state and log start
    /// stored for it (`restart`: a snapshot's restart of the log may not have
    /// finished). Entries are rebuilt from the log's batches.
    pub async fn open(
        topic: Arc<str>,
        partition: u32,
        node: NodeId,
        replicas: &[NodeId],
        log: Rc<PartitionLog>,
        mut hard_state: HardState,
        (start, restart): (Option<LogStart>, bool),
    ) -> Result<Replica, ReplicaError> {
        let mut spans = log.batch_spans().await?;
        let start = match start {
            Some(start) => {
                let offset = Offset(start.offset);
                let at = spans.iter().position(|s| s.base_offset == offset);
                match at {
                    _ if restart => {
                        log.restart_at(offset).await?;
                        spans.clear();
                    }
                    // Retention stored the start, then stopped before all of
                    // the segments below it went.
                    Some(at) => {
                        if at > 0 {
                            log.remove_segments_below(offset).await?;
                            spans.drain(..at);
                        }
                    }
                    None if spans.is_empty() && log.next_offset() == offset => {}
                    None => {
                        return Err(ReplicaError::Diverged(format!(
                            "the Raft log starts at offset {offset}, the log has no batch there"
                        )))
                    }
                }
                start
            }
            None => LogStart {
                offset: spans
                    .first()
                    .map_or(log.next_offset(), |s| s.base_offset)
                    .get(),
                ..LogStart::default()
            },
        };
        let log_starts: BTreeMap<u64, Offset> = spans
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((start.index + 1 + i as u64, s.log_start?)))
            .collect();
        let metas: Vec<EntryMeta> = spans
            .iter()
            .map(|s| EntryMeta {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                term: s.leader_epoch.max(0) as u64,
            })
            .collect();
        let last = start.index + metas.len() as u64;
        // The stored commit may run ahead of a log whose unsynced tail was
        // lost; everything up to the log start is committed.
        hard_state.commit = hard_state.commit.clamp(start.index, last);
        let mut entries = Entries {
            hard_state: hard_state.clone(),
            voters: replicas.iter().map(|&r| r as u64).collect(),
            start,
            metas,
            persisted: last,
            window_first: last + 1,
            window: VecDeque::new(),
            window_bytes: 0,
            fetched: BTreeMap::new(),
            wanted: Vec::new(),
            log_starts,
            log_start_offset: Offset(0),
        };
        log.set_commit_limit(entries.end_of(hard_state.commit));
        // Applied before a crash, maybe not yet in the log's meta: again.
        if let Some(log_start) = entries.take_log_start(hard_state.commit) {
            if let Err(error) = log.delete_records(log_start).await {
                tracing::warn!(%topic, partition, %error, "moving the log start offset failed");
            }
        }
        entries.log_start_offset = log.log_start_offset();
        let entries = Rc::new(RefCell::new(entries));
        let config = raft_config(node, hard_state.commit)?;
        let logger = partition_raft_logger(&topic, partition);
        let raw = RawNode::new(&config, GroupStorage(entries.clone()), &logger)?;
        Ok(Replica {
            topic,
            partition,
            log,
            node: raw,
            entries,
            proposed_end: None,
            proposed_producers: HashMap::new(),
            waiters: VecDeque::new(),
            held: VecDeque::new(),
            published: (None, 0),
            idle_ticks: 0,
            preferred: replicas.first() == Some(&node),
            ticks: 0,
            log_start_due: None,
        })
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        match self.node.raft.leader_id {
            raft::INVALID_ID => None,
            id => NodeId::try_from(id).ok(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Leads and has committed an entry of its own term: takes produces.
    pub fn is_serving(&self) -> bool {
        self.is_leader() && self.proposed_end.is_some()
    }

    /// On the leader: replicas that are in sync, itself included: those
    /// with every entry, and those recently active (raft-rs's check-quorum
    /// lease) and no more than [`IN_SYNC_LAG_ENTRIES_MAX`] entries behind.
    /// A group that slept has no fresh activity to judge by, and a follower
    /// that has everything is caught up (dead brokers are left out by the
    /// controller's view).
    pub fn in_sync_replicas(&self) -> impl Iterator<Item = NodeId> + '_ {
        let raft = &self.node.raft;
        let last = raft.raft_log.last_index();
        raft.prs()
            .iter()
            .filter(move |(&id, p)| {
                id == raft.id
                    || p.matched >= last
                    || (p.recent_active && p.matched + IN_SYNC_LAG_ENTRIES_MAX >= last)
            })
            .filter_map(|(&id, _)| NodeId::try_from(id).ok())
    }

    /// The group's replicas (its voters).
    pub fn replica_count(&self) -> usize {
        self.entries.borrow().voters.len()
    }

    /// On the preferred leader (the first replica) while another leads and
    /// this one is caught up: asks the leader to hand leadership over
    /// (raft-rs forwards the request; the leader transfers once this
    /// replica has every entry). Returns whether it asked.
    pub fn reclaim_preferred(&mut self) -> bool {
        self.preferred && self.claim_leadership()
    }

    /// A follower that knows its leader asks it for the leadership (raft-rs
    /// forwards the request; the leader transfers once this replica has
    /// every entry, or gives up after an election timeout). Whether it
    /// asked.
    pub fn claim_leadership(&mut self) -> bool {
        let raft = &self.node.raft;
        let other_leads = raft.leader_id != raft::INVALID_ID && raft.leader_id != raft.id;
        if other_leads && raft.state == StateRole::Follower {
            let me = raft.id;
            self.node.transfer_leader(me);
            self.idle_ticks = 0;
            return true;
        }
        false
    }

    /// The preferred leader waits for an ElectLeaders instead of reclaiming
    /// on its own (`auto.leader.rebalance.enable=false`).
    pub fn stop_reclaiming(&mut self) {
        self.preferred = false;
    }

    /// A hibernating group ticks again. A leader's check-quorum clock starts
    /// over, so its followers have a whole election timeout to answer its
    /// heartbeats before it counts them.
    pub fn wake(&mut self) {
        self.idle_ticks = 0;
        if self.is_leader() {
            self.node.raft.election_elapsed = 0;
        }
    }

    /// Starts an election at once (the preferred leader of a new group).
    pub fn campaign(&mut self) {
        if let Err(error) = self.node.campaign() {
            tracing::debug!(topic = %self.topic, partition = self.partition, %error, "campaign refused");
        }
    }

    /// One tick; every [`PREFERRED_CHECK_TICKS`] the preferred leader asks
    /// for its leadership back.
    pub fn tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        if self.ticks.is_multiple_of(PREFERRED_CHECK_TICKS) {
            let _ = self.reclaim_preferred();
        }
    }

    pub fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    pub fn step(&mut self, message: Message) {
        // Heartbeats keep a group as it is; anything else is traffic that
        // keeps it awake.
        let heartbeat = matches!(
            message.msg_type(),
            MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse
        );
        if !heartbeat {
            self.idle_ticks = 0;
        }
        if let Err(error) = self.node.step(message) {
            tracing::debug!(topic = %self.topic, partition = self.partition, %error, "a Raft message was not taken");
        }
    }

    /// Proposes a client's batches (already prepared); the answer comes once
    /// `durability` is met: written locally (acks=1) or committed (acks=all).
    /// A new leader holds them, in arrival order, until its term's first
    /// entry commits, and so does a leader while it hands leadership over:
    /// a client's pipelined batches then reach the log in their sequence
    /// order (KIP-98), or are all refused, instead of an earlier one being
    /// refused and a later one taken.
    pub fn propose(
        &mut self,
        records: Bytes,
        durability: Durability,
    ) -> Result<oneshot::Receiver<Result<AppendInfo, ReplicaError>>, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader);
        }
        if self.waiters.len() + self.held.len() >= WAITERS_MAX {
            return Err(ReplicaError::Busy);
        }
        self.idle_ticks = 0;
        let (answer, answered) = oneshot::channel();
        // Behind what is held, to keep the order.
        if !self.takes_proposals() || !self.held.is_empty() {
            self.held.push_back(Held {
                records,
                durability,
                answer,
            });
            return Ok(answered);
        }
        let (info, index) = self.submit(records)?;
        self.settle(info, index, durability, answer);
        Ok(answered)
    }

    /// Whether a produce is proposed now rather than held: the leader's
    /// first entry committed, and no leadership transfer runs (raft-rs drops
    /// proposals meanwhile, and a dropped batch followed by a taken one of
    /// the same producer is a sequence gap, OUT_OF_ORDER_SEQUENCE_NUMBER).
    fn takes_proposals(&self) -> bool {
        self.proposed_end.is_some() && self.node.raft.lead_transferee.is_none()
    }

    /// Stamps a client's batches at the leader's next offsets and hands them
    /// to raft-rs (a retry of a batch stored or proposed is not): the answer
    /// and the index whose entry it waits for.
    fn submit(&mut self, records: Bytes) -> Result<(AppendInfo, u64), ReplicaError> {
        let Some(base_offset) = self.proposed_end.filter(|_| self.is_leader()) else {
            return Err(ReplicaError::NotLeader);
        };
        let term = self.term();
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        // Which writer and sequences, for following idempotence in a debug log.
        let writer = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| BatchHeader::parse(&records).ok())
            .flatten()
            .filter(|h| h.producer_id >= 0)
            .map(|h| (h.producer_id, h.producer_epoch, h.base_sequence));
        let proposed = &self.proposed_producers;
        let proposal = self
            .log
            .stamp_proposal(records, base_offset, epoch, |id| {
                proposed.get(&id).map(|(entry, _)| *entry)
            })
            .inspect_err(|error| {
                if let Some((producer, producer_epoch, sequence)) = writer {
                    tracing::debug!(topic = %self.topic, partition = self.partition, term, producer, producer_epoch, sequence, %error, "a producer's batch refused");
                }
            })?;
        if let Some((producer, producer_epoch, sequence)) = writer {
            let (duplicate, at) = match &proposal {
                Proposal::Fresh { info, .. } => (false, info.base_offset.get()),
                Proposal::Duplicate(info) => (true, info.base_offset.get()),
            };
            tracing::debug!(topic = %self.topic, partition = self.partition, term, producer, producer_epoch, sequence, at, duplicate, "a producer's batch proposed");
        }
        let info = match proposal {
            Proposal::Fresh {
                batches,
                info,
                producers,
            } => {
                for batch in &batches {
                    // Later proposals start after each batch raft-rs took,
                    // even if it drops one that follows.
                    let end = Offset(BatchHeader::parse(batch)?.last_offset()) + 1;
                    self.node.propose(Vec::new(), batch.to_vec())?;
                    self.proposed_end = Some(end);
                }
                let index = self.node.raft.raft_log.last_index();
                for (id, entry) in producers {
                    self.proposed_producers.insert(id, (entry, index));
                }
                info
            }
            // A retry: answered once everything proposed so far is, which
            // includes the batch it repeats.
            Proposal::Duplicate(info) => info,
        };
        Ok((info, self.node.raft.raft_log.last_index()))
    }

    /// Answers a proposal at once where `durability` is met for `index`,
    /// else once its entry is.
    fn settle(
        &mut self,
        info: AppendInfo,
        index: u64,
        durability: Durability,
        answer: oneshot::Sender<Result<AppendInfo, ReplicaError>>,
    ) {
        let met = match durability {
            Durability::Written => index <= self.entries.borrow().persisted,
            _ => index <= self.node.raft.raft_log.committed,
        };
        if met {
            let _ = answer.send(Ok(info));
            return;
        }
        self.waiters.push_back(Waiter {
            index,
            term: self.term(),
            durability,
            info,
            answer,
        });
    }

    /// Proposes what was held, in the order it came. Once raft-rs refuses
    /// one, the rest are refused too: a later batch must not be taken after
    /// an earlier one was dropped.
    fn release_held(&mut self) {
        while let Some(held) = self.held.pop_front() {
            match self.submit(held.records) {
                Ok((info, index)) => self.settle(info, index, held.durability, held.answer),
                Err(error) => {
                    let dropped = matches!(error, ReplicaError::Raft(_) | ReplicaError::NotLeader);
                    let _ = held.answer.send(Err(error));
                    if dropped {
                        for held in self.held.drain(..) {
                            let _ = held.answer.send(Err(ReplicaError::NotLeader));
                        }
                    }
                }
            }
        }
    }

    /// Proposes moving the log start offset to `before` (DeleteRecords, at
    /// most the high watermark); the answer comes once it is committed, with
    /// the log start offset then.
    pub fn propose_log_start(
        &mut self,
        before: Offset,
    ) -> Result<oneshot::Receiver<Result<AppendInfo, ReplicaError>>, ReplicaError> {
        let Some(base_offset) = self.proposed_end.filter(|_| self.is_leader()) else {
            return Err(ReplicaError::NotLeader);
        };
        let (log_start, high_watermark) = (self.log.log_start_offset(), self.log.high_watermark());
        if before < Offset(0) || before > high_watermark {
            return Err(ReplicaError::Storage(storage::Error::OffsetOutOfRange {
                offset: before,
                log_start_offset: log_start,
                high_watermark,
            }));
        }
        if self.waiters.len() >= WAITERS_MAX {
            return Err(ReplicaError::Busy);
        }
        let (answer, answered) = oneshot::channel();
        let mut info = AppendInfo {
            base_offset,
            last_offset: base_offset,
            log_append_time_ms: None,
            log_start_offset: before.max(log_start),
        };
        if before <= log_start {
            info.log_start_offset = log_start;
            let _ = answer.send(Ok(info));
            return Ok(answered);
        }
        self.idle_ticks = 0;
        let term = self.term();
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        let batch = control::log_start_batch(base_offset.get(), epoch, before.get());
        self.node.propose(Vec::new(), batch.to_vec())?;
        self.proposed_end = Some(base_offset + 1);
        self.waiters.push_back(Waiter {
            index: self.node.raft.raft_log.last_index(),
            term,
            durability: Durability::Durable,
            info,
            answer,
        });
        Ok(answered)
    }

    /// The log start offset committed entries (or a snapshot) moved the
    /// log to, once the log's high watermark reaches it.
    pub fn take_log_start_due(&mut self) -> Option<Offset> {
        let high_watermark = self.log.high_watermark();
        self.log_start_due.take_if(|due| *due <= high_watermark)
    }

    /// Takes this turn's Ready: messages that may leave at once go to `out`;
    /// committed entries are applied; entries to persist are turned into
    /// batches. `None` when raft-rs has nothing.
    pub fn begin(&mut self, out: &mut Outbox) -> Result<Option<Pending>, ReplicaError> {
        // Held produce goes out once the leader takes proposals: after its
        // first entry committed (seen by the last leadership turn) or a
        // leadership transfer ran out (on a tick).
        if !self.held.is_empty() && self.takes_proposals() {
            self.release_held();
        }
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut ready = self.node.ready();
        let messages = ready.take_messages();
        // A snapshot is a few bytes the transport sends whole or not at
        // all: raft-rs goes on probing at once, and sends it again if the
        // follower still lacks what it needs.
        let snapshots_to: Vec<u64> = messages
            .iter()
            .filter(|m| m.msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        out.extend(messages);
        let restart = if ready.snapshot().is_empty() {
            None
        } else {
            let (start, log_start_offset) = LogStart::from_snapshot(ready.snapshot())
                .ok_or_else(|| ReplicaError::Diverged("a snapshot without a log start".into()))?;
            let mut entries = self.entries.borrow_mut();
            entries.restore(start);
            entries.log_start_offset = log_start_offset;
            if log_start_offset > Offset(start.offset) {
                self.log_start_due = Some(log_start_offset);
            }
            Some(start)
        };
        let committed = ready.take_committed_entries();
        self.apply(&committed);
        let new = ready.take_entries();
        let mut pending = Pending {
            number: ready.number(),
            persisted_messages: ready.take_persisted_messages(),
            truncate: None,
            restart,
            last_index: 0,
            batches: Vec::with_capacity(new.len()),
            hard_state: ready.hs().cloned(),
        };
        // raft-rs reads entries it hands over back from storage as soon as
        // `advance_append_async` returns (proposals and appends stepped
        // while the write runs build on them), so they enter the map first.
        self.stage(new, &mut pending)?;
        pending.last_index = self.entries.borrow().last_index();
        self.node.advance_append_async(ready);
        if let Some(last) = committed.last() {
            self.node.advance_apply_to(last.index);
        }
        for to in snapshots_to {
            self.node.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(Some(pending))
    }

    /// Turns a Ready's entries into the batches to write and enters them
    /// in the map, cutting a replaced tail first.
    fn stage(&mut self, new: Vec<Entry>, pending: &mut Pending) -> Result<(), ReplicaError> {
        let Some(first) = new.first() else {
            return Ok(());
        };
        let mut entries = self.entries.borrow_mut();
        let mut next = if first.index <= entries.last_index() {
            let meta = entries
                .meta(first.index)
                .ok_or_else(|| ReplicaError::Diverged("no entry to replace".into()))?;
            pending.truncate = Some(meta.base_offset);
            entries.truncate_from(first.index);
            meta.base_offset
        } else if first.index == entries.last_index() + 1 {
            entries.end_of(entries.last_index())
        } else {
            return Err(ReplicaError::Diverged(format!(
                "entry {} follows entry {}",
                first.index,
                entries.last_index()
            )));
        };
        for entry in new {
            let epoch = i32::try_from(entry.term).unwrap_or(i32::MAX);
            let batch = if entry.data.is_empty() {
                control::leader_change_batch(next.get(), epoch)
            } else {
                Bytes::from(entry.data)
            };
            let header = BatchHeader::parse(&batch)?;
            if header.base_offset != next.get() {
                return Err(ReplicaError::Diverged(format!(
                    "entry {} starts at offset {}, the log at {}",
                    entry.index,
                    header.base_offset,
                    next.get()
                )));
            }
            let meta = EntryMeta {
                base_offset: next,
                next_offset: Offset(header.last_offset()) + 1,
                term: entry.term,
            };
            next = meta.next_offset;
            if let Some(log_start) = control::read_log_start(&header, &batch) {
                entries.log_starts.insert(entry.index, Offset(log_start));
            }
            entries.push(entry.index, meta, batch.clone());
            pending.batches.push(batch);
        }
        Ok(())
    }

    /// After `pending` is durable: marks its entries so, sends what waited
    /// for persistence and tells raft-rs (what it then commits comes with
    /// the next Ready). Returns the commit index when it moved.
    pub fn finish(&mut self, pending: Pending, out: &mut Outbox) -> Option<u64> {
        let Pending {
            number,
            persisted_messages,
            last_index,
            hard_state,
            ..
        } = pending;
        {
            let mut entries = self.entries.borrow_mut();
            entries.persisted = last_index.min(entries.last_index());
            if let Some(state) = hard_state {
                entries.hard_state = state;
            }
            // The log's producer state has what it wrote.
            let persisted = entries.persisted;
            self.proposed_producers
                .retain(|_, (_, index)| *index > persisted);
        }
        out.extend(persisted_messages);
        self.node.on_persist_ready(number);
        self.answer_written();
        let commit = self.node.raft.raft_log.committed;
        let mut entries = self.entries.borrow_mut();
        if commit > entries.hard_state.commit {
            entries.hard_state.commit = commit;
            return Some(commit);
        }
        None
    }

    /// Where the Raft log starts.
    pub fn log_start(&self) -> LogStart {
        self.entries.borrow().start
    }

    /// Where the log would start once retention and the log start offset
    /// removed the whole segments they may of what clients can read (the
    /// committed entries that are durable here), or `None`.
    pub fn retained_start(&self, now_ms: i64) -> Option<LogStart> {
        let offset = self.log.retained_start(now_ms, self.log.high_watermark())?;
        let entries = self.entries.borrow();
        let at = entries
            .metas
            .binary_search_by_key(&offset, |m| m.base_offset)
            .ok()
            .filter(|&at| at > 0)?;
        let before = entries.metas[at - 1];
        Some(LogStart {
            index: entries.start.index + at as u64,
            term: before.term,
            offset: offset.get(),
        })
    }

    /// After `start` is durable: the entries before it are gone, then their
    /// segments.
    pub async fn compact(replica: &RefCell<Replica>, start: LogStart) -> Result<(), ReplicaError> {
        let log = {
            let replica = replica.borrow();
            replica.entries.borrow_mut().compact(start);
            replica.log.clone()
        };
        log.remove_segments_below(Offset(start.offset)).await?;
        Ok(())
    }

    /// The hard state as last persisted (with the newest commit index).
    pub fn hard_state(&self) -> HardState {
        self.entries.borrow().hard_state.clone()
    }

    /// Moves the high watermark over `committed` and answers acks=all waiters.
    fn apply(&mut self, committed: &[Entry]) {
        let Some(last) = committed.last() else {
            return;
        };
        let meta = self.entries.borrow().meta(last.index);
        let Some(meta) = meta else {
            return;
        };
        self.log.set_commit_limit(meta.next_offset);
        let mut entries = self.entries.borrow_mut();
        if let Some(log_start) = entries.take_log_start(last.index) {
            entries.log_start_offset = entries.log_start_offset.max(log_start);
            self.log_start_due = self.log_start_due.max(Some(log_start));
        }
        drop(entries);
        let entries = self.entries.borrow();
        while let Some(waiter) = self.waiters.front() {
            if waiter.index > last.index {
                break;
            }
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            let kept = entries
                .meta(waiter.index)
                .is_some_and(|m| m.term == waiter.term);
            let answer = if kept {
                Ok(waiter.info)
            } else {
                Err(ReplicaError::NotLeader)
            };
            let _ = waiter.answer.send(answer);
        }
    }

    /// acks=1 waiters whose entry is durable here are answered.
    fn answer_written(&mut self) {
        let persisted = self.entries.borrow().persisted;
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        for waiter in self.waiters.drain(..) {
            if waiter.durability == Durability::Written && waiter.index <= persisted {
                let _ = waiter.answer.send(Ok(waiter.info));
            } else {
                kept.push_back(waiter);
            }
        }
        self.waiters = kept;
    }

    /// Brings the produce side in line with the Raft role. Returns (leader,
    /// term) when this broker has just started to serve as leader, to be
    /// published.
    pub fn leadership_turn(&mut self) -> Option<(NodeId, u64)> {
        let term = self.term();
        if !self.is_leader() {
            self.proposed_end = None;
            self.proposed_producers.clear();
            self.close();
            self.published = (self.leader(), term);
            return None;
        }
        if self.proposed_end.is_none() {
            let entries = self.entries.borrow();
            let last = entries.last_index();
            let own_entry_committed = last == self.node.raft.raft_log.last_index()
                && entries.meta(last).is_some_and(|m| m.term == term)
                && self.node.raft.raft_log.committed >= last;
            if own_entry_committed {
                let end = entries.end_of(last);
                drop(entries);
                self.proposed_end = Some(end);
            }
        }
        let me = self.leader();
        if self.proposed_end.is_some() && self.published != (me, term) {
            self.published = (me, term);
            return me.map(|node| (node, term));
        }
        None
    }

    /// Reads raft-rs asked for and could not have: (first index, its base
    /// offset, context).
    pub fn take_wanted(&mut self) -> Vec<(u64, Offset, GetEntriesContext)> {
        let mut entries = self.entries.borrow_mut();
        let wanted = std::mem::take(&mut entries.wanted);
        wanted
            .into_iter()
            .filter_map(|(index, context)| {
                let meta = entries.meta(index)?;
                Some((index, meta.base_offset, context))
            })
            .collect()
    }

    /// Old entries read back from the log, from `first` on; raft-rs resends.
    pub fn entries_fetched(&mut self, first: u64, batches: Vec<Bytes>, context: GetEntriesContext) {
        {
            let mut entries = self.entries.borrow_mut();
            entries.fetched.clear();
            for (i, batch) in batches.into_iter().enumerate() {
                let index = first + i as u64;
                let matches = entries.meta(index).is_some_and(|m| {
                    BatchHeader::parse(&batch).is_ok_and(|h| h.base_offset == m.base_offset.get())
                });
                if !matches {
                    break;
                }
                entries.fetched.insert(index, batch);
            }
        }
        self.node.on_entries_fetched(context);
    }

    /// Whether nothing is in flight: every follower matches, nothing to
    /// apply, no produce waits.
    pub fn is_quiet(&self) -> bool {
        if !self.waiters.is_empty() || !self.held.is_empty() || self.node.has_ready() {
            return false;
        }
        let raft = &self.node.raft;
        if raft.state == StateRole::Leader {
            let last = raft.raft_log.last_index();
            raft.prs().iter().all(|(_, p)| p.matched == last) && raft.raft_log.committed == last
        } else {
            raft.leader_id != raft::INVALID_ID
        }
    }

    /// Answers every waiter: the group is going away.
    pub fn close(&mut self) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.answer.send(Err(ReplicaError::NotLeader));
        }
        for held in self.held.drain(..) {
            let _ = held.answer.send(Err(ReplicaError::NotLeader));
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BatchBuilder, BatchOptions};
    use crate::storage::{BatchCache, LogConfig, StorageOptions};
    use kafka_protocol::records::Compression;

    /// A client's batch of `records`, idempotent when `producer_id` is set.
    fn batch(records: usize, producer_id: i64, base_sequence: i32) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions {
            compression: Compression::None,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            base_sequence,
            transactional: false,
        });
        for i in 0..records {
            builder.push(None, Some(Bytes::from(format!("v{i}"))), 1000 + i as i64);
        }
        builder.encode().expect("encodes")
    }

    /// Runs turns as the shard does until raft-rs has nothing.
    async fn drive(replica: &mut Replica) {
        while let Some(pending) = replica.begin(&mut Vec::new()).expect("a turn") {
            pending.write(&replica.log).await.expect("written");
            replica.finish(pending, &mut Vec::new());
            replica.leadership_turn();
        }
        replica.leadership_turn();
    }

    /// A one-replica group that has just been elected (its first entry is
    /// not written yet), over a log in `dir`.
    async fn elected_group(dir: &std::path::Path) -> Replica {
        let log = PartitionLog::open(
            dir.join("t-0"),
            LogConfig::default(),
            BatchCache::new(1 << 20),
            StorageOptions {
                allow_buffered_io: true,
                ..StorageOptions::default()
            },
        )
        .await
        .expect("open");
        let mut replica = Replica::open(
            "t".into(),
            0,
            1,
            &[1],
            log,
            HardState::default(),
            (None, false),
        )
        .await
        .expect("a group");
        replica.campaign();
        assert!(replica.is_leader(), "a single replica leads at once");
        replica
    }

    /// A one-replica group that leads and serves, over a log in `dir`.
    async fn serving_group(dir: &std::path::Path) -> Replica {
        let mut replica = elected_group(dir).await;
        drive(&mut replica).await;
        assert!(replica.is_serving(), "its first entry committed");
        replica
    }

    fn run<F, T>(test: F)
    where
        F: FnOnce() -> T + Send + 'static,
        T: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(test)
            .expect("executor")
            .join()
            .expect("test body");
    }

    #[test]
    fn a_proposal_made_while_the_previous_entry_is_written_follows_it() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut replica = serving_group(dir.path()).await;
            let first = replica
                .propose(batch(3, -1, -1), Durability::Written)
                .expect("proposed");
            let pending = replica
                .begin(&mut Vec::new())
                .expect("a turn")
                .expect("the entry to write");
            // raft-rs numbers this entry after the one being written: it
            // reads that one back from the map while the write runs.
            let second = replica
                .propose(batch(2, -1, -1), Durability::Written)
                .expect("proposed");
            pending.write(&replica.log).await.expect("written");
            replica.finish(pending, &mut Vec::new());
            drive(&mut replica).await;
            let first = first.await.expect("answered").expect("appended");
            let second = second.await.expect("answered").expect("appended");
            // Offset 0 is the leader's LEADER_CHANGE batch.
            assert_eq!(
                (first.base_offset, first.last_offset),
                (Offset(1), Offset(3))
            );
            assert_eq!(
                (second.base_offset, second.last_offset),
                (Offset(4), Offset(5))
            );
            assert_eq!(replica.log.next_offset(), Offset(6));
            assert_eq!(replica.log.high_watermark(), Offset(6));
        });
    }

    #[test]
    fn a_new_leader_holds_produce_until_its_first_entry_commits_and_keeps_its_order() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut replica = elected_group(dir.path()).await;
            assert!(!replica.is_serving());
            let first = replica
                .propose(batch(2, 7, 0), Durability::Durable)
                .expect("held");
            let second = replica
                .propose(batch(3, 7, 2), Durability::Durable)
                .expect("held");
            assert!(!replica.is_quiet(), "held produce is work");
            drive(&mut replica).await;
            let first = first.await.expect("answered").expect("appended");
            let second = second.await.expect("answered").expect("appended");
            // Offset 0 is the leader's LEADER_CHANGE batch.
            assert_eq!(
                (first.base_offset, first.last_offset),
                (Offset(1), Offset(2))
            );
            assert_eq!(
                (second.base_offset, second.last_offset),
                (Offset(3), Offset(5))
            );
        });
    }

    #[test]
    fn a_leader_handing_over_holds_produce_and_proposes_it_in_order_if_it_stays() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut replica = serving_group(dir.path()).await;
            // raft-rs drops proposals while a transfer runs.
            replica.node.raft.lead_transferee = Some(2);
            let first = replica
                .propose(batch(1, 7, 0), Durability::Durable)
                .expect("held");
            let second = replica
                .propose(batch(2, 7, 1), Durability::Durable)
                .expect("held");
            drive(&mut replica).await;
            assert_eq!(replica.log.next_offset(), Offset(1), "nothing proposed yet");
            // The transfer ran out: the leader stays and takes them.
            replica.node.raft.lead_transferee = None;
            drive(&mut replica).await;
            let first = first.await.expect("answered").expect("appended");
            let second = second.await.expect("answered").expect("appended");
            assert_eq!(first.base_offset, Offset(1));
            assert_eq!(
                (second.base_offset, second.last_offset),
                (Offset(2), Offset(3))
            );
        });
    }

    #[test]
    fn a_retry_of_a_proposal_not_yet_in_the_log_gets_its_offsets() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut replica = serving_group(dir.path()).await;
            let first = replica
                .propose(batch(2, 7, 0), Durability::Durable)
                .expect("proposed");
            let retry = replica
                .propose(batch(2, 7, 0), Durability::Durable)
                .expect("proposed");
            drive(&mut replica).await;
            let first = first.await.expect("answered").expect("appended");
            let retry = retry.await.expect("answered").expect("a duplicate");
            assert_eq!(first.base_offset, retry.base_offset);
            assert_eq!(first.last_offset, retry.last_offset);
            assert_eq!(replica.log.next_offset(), Offset(3), "stored once");
            // Once in the log, the log's producer state answers a retry.
            let again = replica
                .propose(batch(2, 7, 0), Durability::Durable)
                .expect("proposed")
                .await
                .expect("answered")
                .expect("a duplicate");
            assert_eq!(again.base_offset, first.base_offset);
            let next = replica
                .propose(batch(1, 7, 2), Durability::Durable)
                .expect("proposed");
            drive(&mut replica).await;
            let next = next.await.expect("answered").expect("appended");
            assert_eq!(next.base_offset, Offset(3));
        });
    }
}
