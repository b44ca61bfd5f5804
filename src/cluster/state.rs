//! The controller's replicated state machine: brokers and their client
//! endpoints, topics with their configs, and each partition's replica set
//! and leader. Every node applies the same committed commands in the same
//! order, so `apply` must be deterministic: no clocks, no randomness (a new
//! topic's id comes in the command).

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::placement;
use super::NodeId;

/// Request ids remembered to drop a proposal that was retried after it had
/// already committed (a lost answer, a leader change).
const APPLIED_REQUESTS_REMEMBERED_MAX: usize = 4096;

/// A registered broker: where its clients connect, and whether its lease
/// holds (KRaft's fenced brokers: registered but not live).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub host: String,
    pub port: u16,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The preferred leader first.
    pub replicas: Vec<NodeId>,
    /// With one replica: that replica while it is live. With more: the
    /// leader of the partition's Raft group as it reported itself, until
    /// its broker loses its lease. `-1` when none is known.
    pub leader: NodeId,
    /// KIP-320's leader epoch: with one replica raised at each change of
    /// leader, with more the Raft term of the reported leader.
    pub leader_epoch: i32,
    /// The in-sync replicas as the leader last reported them (KIP-497's
    /// AlterPartition): live replicas that are caught up, the leader first.
    /// A fenced broker leaves it at once.
    #[serde(default)]
    pub isr: Vec<NodeId>,
}

impl PartitionRecord {
    /// Whether the partition is its own Raft group (more than one replica).
    pub fn is_replicated(&self) -> bool {
        self.replicas.len() > 1
    }

    /// The in-sync replicas Metadata shows: the leader always, the others
    /// as reported; none without a leader.
    pub fn in_sync(&self) -> Vec<NodeId> {
        if self.leader < 0 {
            return Vec::new();
        }
        let mut isr = vec![self.leader];
        if self.is_replicated() {
            isr.extend(self.isr.iter().copied().filter(|&r| r != self.leader));
        }
        isr
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: Uuid,
    /// Overrides with Kafka's names; brokers add their defaults.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A broker's (re-)registration: its endpoint, and it is live again.
    RegisterBroker {
        node: NodeId,
        host: String,
        port: u16,
    },
    /// The broker's lease ran out.
    FenceBroker {
        node: NodeId,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
    },
    SetTopicConfig {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replicated partitions' Raft leaders report themselves with their
    /// terms (many at once: one broker's reports of a moment).
    SetPartitionLeaders {
        leaders: Vec<LeaderReport>,
    },
}

/// A Raft leader of one replicated partition, with its term as the epoch
/// and the replicas it counts in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderReport {
    pub name: String,
    pub partition: u32,
    pub leader: NodeId,
    pub epoch: i32,
    #[serde(default)]
    pub isr: Vec<NodeId>,
}

/// A command as stored in a Raft entry: the op and who waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per proposal; `0` when nobody waits for the answer.
    pub request: u64,
    pub op: Op,
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command of plain data always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Why a committed op changed nothing; the same on every node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OpError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("replication factor {asked} is larger than the {live} live brokers")]
    ReplicationFactor { asked: i16, live: usize },
    #[error("topic has {current} partitions, {asked} would not be an increase")]
    Partitions { current: usize, asked: i32 },
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub brokers: BTreeMap<NodeId, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Where the next topic's first partition starts on the ring of live
    /// brokers, so first replicas (preferred leaders) spread over brokers.
    placement_cursor: u64,
    applied_requests: VecDeque<u64>,
    applied_set: HashSet<u64>,
}

impl ClusterState {
    /// Live (registered, unfenced) broker ids, ascending.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(&id, _)| id)
            .collect()
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    /// Applies one command; a request id seen before changes nothing and
    /// answers `None` (its first application already answered).
    pub fn apply(&mut self, command: &Command) -> Option<Result<(), OpError>> {
        if command.request != 0 {
            if !self.applied_set.insert(command.request) {
                return None;
            }
            self.applied_requests.push_back(command.request);
            if self.applied_requests.len() > APPLIED_REQUESTS_REMEMBERED_MAX {
                if let Some(old) = self.applied_requests.pop_front() {
                    self.applied_set.remove(&old);
                }
            }
        }
        Some(self.apply_op(&command.op))
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), OpError> {
        match op {
            Op::RegisterBroker { node, host, port } => {
                let broker = BrokerRecord {
                    host: host.clone(),
                    port: *port,
                    fenced: false,
                };
                self.brokers.insert(*node, broker);
                self.elect_leaders();
                Ok(())
            }
            Op::FenceBroker { node } => {
                let broker = self
                    .brokers
                    .get_mut(node)
                    .ok_or(OpError::UnknownBroker(*node))?;
                broker.fenced = true;
                self.elect_leaders();
                Ok(())
            }
            Op::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
            } => self.create_topic(name, *id, *partitions, *replication_factor, configs),
            Op::DeleteTopic { name } => self
                .topics
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| OpError::UnknownTopic(name.clone())),
            Op::CreatePartitions { name, total } => self.create_partitions(name, *total),
            Op::SetPartitionLeaders { leaders } => {
                for report in leaders {
                    self.set_leader(report);
                }
                Ok(())
            }
            Op::SetTopicConfig { name, configs } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| OpError::UnknownTopic(name.clone()))?;
                topic.configs = configs.clone();
                Ok(())
            }
        }
    }

    /// Takes a leader report unless the partition knows a newer term; the
    /// leader of the known term may report its in-sync replicas again.
    /// Replicas of fenced brokers are not taken into the ISR.
    fn set_leader(&mut self, report: &LeaderReport) {
        let live: HashSet<NodeId> = self.live_brokers().into_iter().collect();
        let Some(topic) = self.topics.get_mut(&report.name) else {
            return;
        };
        let Some(p) = topic.partitions.get_mut(report.partition as usize) else {
            return;
        };
        let newer =
            report.epoch > p.leader_epoch || (report.epoch == p.leader_epoch && p.leader < 0);
        let same = report.epoch == p.leader_epoch && report.leader == p.leader;
        if !p.is_replicated() || !p.replicas.contains(&report.leader) || !(newer || same) {
            return;
        }
        p.leader = report.leader;
        p.leader_epoch = report.epoch;
        let mut isr = vec![report.leader];
        for &r in &report.isr {
            if !isr.contains(&r) && p.replicas.contains(&r) && live.contains(&r) {
                isr.push(r);
            }
        }
        p.isr = isr;
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: Uuid,
        partitions: i32,
        factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), OpError> {
        if self.topics.contains_key(name) {
            return Err(OpError::TopicExists(name.to_string()));
        }
        let live = self.live_brokers();
        check_replication_factor(factor, live.len())?;
        let count = partitions.max(0) as usize;
        let partitions = self.place(&live, count, factor as usize);
        let topic = TopicRecord {
            id,
            configs: configs.clone(),
            partitions,
        };
        self.topics.insert(name.to_string(), topic);
        Ok(())
    }

    fn create_partitions(&mut self, name: &str, total: i32) -> Result<(), OpError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| OpError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len();
        if total < 0 || total as usize <= current {
            return Err(OpError::Partitions {
                current,
                asked: total,
            });
        }
        let factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let live = self.live_brokers();
        check_replication_factor(factor as i16, live.len())?;
        let added = self.place(&live, total as usize - current, factor);
        if let Some(topic) = self.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
        Ok(())
    }

    /// `count` new partitions of `factor` replicas on `live` brokers; moves
    /// the placement cursor past them.
    fn place(&mut self, live: &[NodeId], count: usize, factor: usize) -> Vec<PartitionRecord> {
        let replicas = placement::place(live, self.placement_cursor, count, factor);
        self.placement_cursor += count as u64;
        replicas
            .into_iter()
            .map(|replicas| self.new_partition(replicas))
            .collect()
    }

    fn new_partition(&self, replicas: Vec<NodeId>) -> PartitionRecord {
        // A Raft group's leader is known once it reports itself.
        let leader = if replicas.len() > 1 {
            -1
        } else {
            self.first_live(&replicas)
        };
        PartitionRecord {
            replicas,
            leader,
            leader_epoch: 0,
            isr: Vec::new(),
        }
    }

    fn first_live(&self, replicas: &[NodeId]) -> NodeId {
        replicas
            .iter()
            .copied()
            .find(|&r| self.is_live(r))
            .unwrap_or(-1)
    }

    /// A partition of one replica is led by it while it is live; each change
    /// raises the leader epoch. A Raft group's leader whose broker lost its
    /// lease is forgotten (its group elects another, which reports itself).
    fn elect_leaders(&mut self) {
        let live: HashSet<NodeId> = self.live_brokers().into_iter().collect();
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                if partition.is_replicated() {
                    if partition.leader >= 0 && !live.contains(&partition.leader) {
                        partition.leader = -1;
                    }
                    partition.isr.retain(|r| live.contains(r));
                    continue;
                }
                let leader = partition
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| live.contains(r))
                    .unwrap_or(-1);
                if leader != partition.leader {
                    partition.leader = leader;
                    partition.leader_epoch += 1;
                }
            }
        }
    }
}

fn check_replication_factor(asked: i16, live: usize) -> Result<(), OpError> {
    if asked < 1 || asked as usize > live {
        return Err(OpError::ReplicationFactor { asked, live });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(request: u64, op: Op) -> Command {
        Command { request, op }
    }

    fn register(state: &mut ClusterState, node: NodeId) {
        let op = Op::RegisterBroker {
            node,
            host: "127.0.0.1".into(),
            port: 9000 + node as u16,
        };
        state.apply(&command(0, op)).unwrap().unwrap();
    }

    fn create(name: &str, partitions: i32, factor: i16) -> Op {
        Op::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: factor,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_topic_gets_replicas_on_distinct_live_brokers_and_leaders_spread() {
        let mut state = ClusterState::default();
        for node in 1..=3 {
            register(&mut state, node);
        }
        state
            .apply(&command(1, create("t", 6, 3)))
            .unwrap()
            .unwrap();
        let topic = &state.topics["t"];
        let mut preferred = BTreeMap::new();
        for partition in &topic.partitions {
            let distinct: HashSet<_> = partition.replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
            // A Raft group's leader is known once it reports itself.
            assert_eq!(partition.leader, -1);
            *preferred.entry(partition.replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(preferred.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn replication_factor_above_the_live_brokers_is_refused() {
        let mut state = ClusterState::default();
        register(&mut state, 1);
        register(&mut state, 2);
        let refused = state.apply(&command(1, create("t", 1, 3))).unwrap();
        assert_eq!(
            refused,
            Err(OpError::ReplicationFactor { asked: 3, live: 2 })
        );
        state
            .apply(&command(0, Op::FenceBroker { node: 2 }))
            .unwrap()
            .unwrap();
        assert!(state
            .apply(&command(2, create("t", 1, 2)))
            .unwrap()
            .is_err());
    }

    #[test]
    fn fencing_a_single_replica_moves_nothing_else_and_raises_the_epoch() {
        let mut state = ClusterState::default();
        for node in 1..=3 {
            register(&mut state, node);
        }
        state
            .apply(&command(1, create("t", 1, 1)))
            .unwrap()
            .unwrap();
        let first = state.topics["t"].partitions[0].clone();
        state
            .apply(&command(0, Op::FenceBroker { node: first.leader }))
            .unwrap()
            .unwrap();
        let gone = &state.topics["t"].partitions[0];
        assert_eq!(gone.leader, -1);
        assert_eq!(gone.leader_epoch, 1);
        register(&mut state, first.leader);
        let back = &state.topics["t"].partitions[0];
        assert_eq!(back.leader, first.leader);
        assert_eq!(back.leader_epoch, 2);
    }

    #[test]
    fn a_raft_leader_report_of_a_newer_term_wins_and_fencing_forgets_it() {
        let mut state = ClusterState::default();
        for node in 1..=3 {
            register(&mut state, node);
        }
        state
            .apply(&command(1, create("t", 1, 3)))
            .unwrap()
            .unwrap();
        let report = |leader, epoch| Op::SetPartitionLeaders {
            leaders: vec![LeaderReport {
                name: "t".into(),
                partition: 0,
                leader,
                epoch,
                isr: vec![1, 2, 3],
            }],
        };
        state.apply(&command(0, report(2, 3))).unwrap().unwrap();
        assert_eq!(state.topics["t"].partitions[0].in_sync(), [2, 1, 3]);
        // An older term's report (a late message) changes nothing.
        state.apply(&command(0, report(1, 2))).unwrap().unwrap();
        let p = &state.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (2, 3));
        state
            .apply(&command(0, Op::FenceBroker { node: 2 }))
            .unwrap()
            .unwrap();
        let p = &state.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (-1, 3));
        assert!(p.in_sync().is_empty());
        // A fenced broker is not taken back into the ISR.
        state.apply(&command(0, report(3, 4))).unwrap().unwrap();
        let p = &state.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (3, 4));
        assert_eq!(p.in_sync(), [3, 1]);
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut state = ClusterState::default();
        register(&mut state, 1);
        let op = create("t", 1, 1);
        assert_eq!(state.apply(&command(7, op.clone())), Some(Ok(())));
        assert_eq!(state.apply(&command(7, op)), None);
        let decoded = Command::decode(&command(7, Op::DeleteTopic { name: "t".into() }).encode());
        assert_eq!(decoded.unwrap().op, Op::DeleteTopic { name: "t".into() });
    }

    #[test]
    fn added_partitions_keep_the_replication_factor() {
        let mut state = ClusterState::default();
        for node in 1..=3 {
            register(&mut state, node);
        }
        state
            .apply(&command(1, create("t", 1, 2)))
            .unwrap()
            .unwrap();
        let grow = Op::CreatePartitions {
            name: "t".into(),
            total: 4,
        };
        state.apply(&command(2, grow)).unwrap().unwrap();
        let topic = &state.topics["t"];
        assert_eq!(topic.partitions.len(), 4);
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
        let shrink = Op::CreatePartitions {
            name: "t".into(),
            total: 2,
        };
        assert!(state.apply(&command(3, shrink)).unwrap().is_err());
    }
}
