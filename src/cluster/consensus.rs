//! The `Consensus` contract the controller drives, and its implementation on
//! tikv's raft-rs. raft-rs is a pure state machine: the caller ticks it,
//! feeds it messages and proposals, and after each turn calls `advance`,
//! which persists what must be durable first and then hands back the
//! messages to send and the committed commands to apply. No runtime of its
//! own, so it runs inside the glommio executor of shard 0.

use std::path::Path;

use raft::prelude::Message;
use raft::{Config, RawNode, StateRole};

use super::logger::raft_logger;
use super::raft_log::{RaftLog, RaftLogError};
use super::NodeId;

/// One Raft tick. Elections time out after 10-20 ticks, heartbeats go every 2.
pub const TICK_INTERVAL_MS: u64 = 100;
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 2;
/// Bytes of entries in one append message.
const ENTRIES_PER_MESSAGE_BYTES_MAX: u64 = 1 << 20;
/// Append messages in flight to one follower.
const INFLIGHT_MESSAGES_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Log(#[from] RaftLogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("no leader is known")]
    NoLeader,
}

/// A committed command and its log index.
pub struct Committed {
    pub index: u64,
    pub data: Vec<u8>,
}

/// What one `advance` leaves to the caller, once everything it depends on
/// is durable.
#[derive(Default)]
pub struct Progress {
    pub messages: Vec<Message>,
    pub committed: Vec<Committed>,
}

/// One voter as this node knows it (KRaft's DescribeQuorum `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voter {
    pub node: NodeId,
    /// Entries in the voter's log (Raft indexes start at 1, so this is the
    /// offset after its last entry counted from 0); `None` where not known here
    /// (only the leader tracks its followers).
    pub log_end: Option<u64>,
}

/// The quorum as this node sees it, for DescribeQuorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumState {
    pub leader: Option<NodeId>,
    /// The current term (the controller's leader epoch).
    pub term: u64,
    /// Entries committed: the offset after the last one (KRaft's high watermark).
    pub high_watermark: u64,
    /// Ascending ids.
    pub voters: Vec<Voter>,
}

/// A replicated log of commands among a fixed set of voters.
pub trait Consensus {
    /// One unit of logical time (see [`TICK_INTERVAL_MS`]).
    fn tick(&mut self);
    /// A message from a peer.
    fn receive(&mut self, message: Message) -> Result<(), ConsensusError>;
    /// Proposes a command; only the leader accepts one.
    fn propose(&mut self, command: Vec<u8>) -> Result<(), ConsensusError>;
    /// The leader this node knows of.
    fn leader(&self) -> Option<NodeId>;
    fn is_leader(&self) -> bool;
    /// The current term (the controller epoch).
    fn term(&self) -> u64;
    /// Persists, then returns messages to send and commands to apply.
    fn advance(&mut self) -> Result<Progress, ConsensusError>;
    /// Leader, term, commit and what is known of each voter's log.
    fn quorum(&self) -> QuorumState;
}

/// The Raft settings of every group (the controller's and each
/// partition's): this node's id and the last index already applied.
pub fn raft_config(node: NodeId, applied: u64) -> Result<Config, raft::Error> {
    let config = Config {
        id: node as u64,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        max_size_per_msg: ENTRIES_PER_MESSAGE_BYTES_MAX,
        max_inflight_msgs: INFLIGHT_MESSAGES_MAX,
        // A node cut off and back must not depose a working leader.
        pre_vote: true,
        // A leader that loses its quorum steps down.
        check_quorum: true,
        applied,
        ..Default::default()
    };
    config.validate()?;
    Ok(config)
}

pub struct RaftConsensus {
    node: RawNode<raft::storage::MemStorage>,
    log: RaftLog,
}

impl RaftConsensus {
    /// Opens this node's Raft log under `dir` among `voters`. Committed
    /// entries are applied again from the first: the state machine is
    /// rebuilt on start-up.
    pub fn open(
        dir: &Path,
        node: NodeId,
        voters: &[NodeId],
    ) -> Result<RaftConsensus, ConsensusError> {
        let ids: Vec<u64> = voters.iter().map(|&v| v as u64).collect();
        let log = RaftLog::open(dir, ids)?;
        let config = raft_config(node, 0)?;
        let node = RawNode::new(&config, log.storage(), &raft_logger())?;
        Ok(RaftConsensus { node, log })
    }
}

impl Consensus for RaftConsensus {
    fn tick(&mut self) {
        self.node.tick();
    }

    fn receive(&mut self, message: Message) -> Result<(), ConsensusError> {
        Ok(self.node.step(message)?)
    }

    fn propose(&mut self, command: Vec<u8>) -> Result<(), ConsensusError> {
        if !self.is_leader() {
            return Err(ConsensusError::NoLeader);
        }
        Ok(self.node.propose(Vec::new(), command)?)
    }

    fn leader(&self) -> Option<NodeId> {
        match self.node.raft.leader_id {
            raft::INVALID_ID => None,
            id => NodeId::try_from(id).ok(),
        }
    }

    fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    fn term(&self) -> u64 {
        self.node.raft.term
    }

    fn quorum(&self) -> QuorumState {
        let raft = &self.node.raft;
        let own_end = raft.raft_log.last_index();
        let leader = self.is_leader();
        let mut voters: Vec<Voter> = raft
            .prs()
            .iter()
            .filter_map(|(&id, progress)| {
                let node = NodeId::try_from(id).ok()?;
                let log_end = if id == raft.id {
                    Some(own_end)
                } else {
                    leader.then_some(progress.matched)
                };
                Some(Voter { node, log_end })
            })
            .collect();
        voters.sort_unstable_by_key(|v| v.node);
        QuorumState {
            leader: self.leader(),
            term: raft.term,
            high_watermark: raft.raft_log.committed,
            voters,
        }
    }

    fn advance(&mut self) -> Result<Progress, ConsensusError> {
        if !self.node.has_ready() {
            return Ok(Progress::default());
        }
        let mut ready = self.node.ready();
        let mut progress = Progress {
            messages: ready.take_messages(),
            committed: Vec::new(),
        };
        // Snapshots are never made (the controller log is not compacted), so
        // none can arrive from a peer running this code.
        take_commands(ready.take_committed_entries(), &mut progress.committed);
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.log.persist(ready.entries(), ready.hs())?;
        }
        progress.messages.extend(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit);
        }
        progress.messages.extend(light.take_messages());
        take_commands(light.take_committed_entries(), &mut progress.committed);
        self.node.advance_apply();
        Ok(progress)
    }
}

/// Keeps normal entries with data (a new leader's empty entry carries none;
/// configuration changes are never proposed).
fn take_commands(entries: Vec<raft::prelude::Entry>, into: &mut Vec<Committed>) {
    into.extend(
        entries
            .into_iter()
            .filter(|e| {
                !e.data.is_empty() && e.entry_type == raft::prelude::EntryType::EntryNormal as i32
            })
            .map(|e| Committed {
                index: e.index,
                data: e.data,
            }),
    );
}
