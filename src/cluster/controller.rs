//! The controller on shard 0 of a voter: drives its Raft group (ticks,
//! peer messages, proposals), applies committed commands to the state
//! machine, keeps brokers' leases, and hands applied metadata to [`local`]
//! before answering whoever proposed it.
//!
//! Leases follow KRaft: every broker heartbeats to the leader; the leader
//! registers (unfences) a broker it hears from and fences one it has not
//! heard from for [`BROKER_SESSION_TIMEOUT`]. Heartbeats are not in the
//! log; registrations and fencings are.
//!
//! [`local`]: super::local

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::consensus::{Committed, Consensus, QuorumState, RaftConsensus, TICK_INTERVAL_MS};
use super::frame::{Control, WireMessage};
use super::state::{ClusterState, Command, Op, OpError};
use super::transport::{Transport, INBOX_MESSAGES_MAX};
use super::{local, NodeId, CONTROLLER_DIR};
use crate::config::ClusterConfig;
use crate::shard::Shard;

/// How often a broker renews its lease (`broker.heartbeat.interval.ms`).
pub const BROKER_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A broker not heard from this long is fenced (`broker.session.timeout.ms`).
pub const BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(3000);
/// A proposal not yet committed is sent again (to the leader of the moment).
const PROPOSAL_RETRY_INTERVAL: Duration = Duration::from_millis(1000);
/// How long an admin change may take before the client gets REQUEST_TIMED_OUT.
pub const ADMIN_CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Admin changes waiting for their commit at once.
const WAITERS_MAX: usize = 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error(transparent)]
    Refused(#[from] OpError),
    #[error("the controller did not commit the change within {ADMIN_CHANGE_TIMEOUT:?}")]
    TimedOut,
    #[error("too many admin changes in flight")]
    Busy,
}

/// An applied command's answer, given once this broker has applied it:
/// (log index, request id, result).
type Answer = (u64, u64, Result<(), OpError>);

struct Waiter {
    command: Vec<u8>,
    answer: Option<oneshot::Sender<Result<(), SubmitError>>>,
    sent: Instant,
    deadline: Instant,
}

#[derive(Default)]
struct Leases {
    last_seen: HashMap<NodeId, Instant>,
    last_proposed: HashMap<NodeId, Instant>,
    was_leader: bool,
    heartbeat_sent: Option<Instant>,
}

pub struct Controller {
    node: NodeId,
    host: String,
    port: u16,
    pub default_replication_factor: i16,
    consensus: RefCell<Box<dyn Consensus>>,
    transport: Rc<Transport>,
    state: RefCell<ClusterState>,
    applied_index: Cell<u64>,
    leases: RefCell<Leases>,
    waiters: RefCell<HashMap<u64, Waiter>>,
    /// Answers applied and not yet given: (log index, request, result).
    answered: RefCell<Vec<Answer>>,
    leader: Cell<Option<NodeId>>,
    changed: LocalSender<()>,
    shard: Rc<Shard>,
    voters: usize,
    /// The offsets topic's creation is proposed (once at a time).
    creating_offsets_topic: Cell<bool>,
}

impl Controller {
    /// Opens the Raft log, binds the transport and starts the loops.
    pub fn start(shard: Rc<Shard>, config: &ClusterConfig) -> Result<Rc<Controller>, String> {
        let listener = shard
            .config
            .listeners
            .first()
            .ok_or("a broker has at least one listener")?;
        let voters: Vec<NodeId> = config.voters.iter().map(|v| v.node_id).collect();
        let dir = shard.config.data_dir.join(CONTROLLER_DIR);
        let consensus = RaftConsensus::open(&dir, config.node_id, &voters)
            .map_err(|e| format!("opening the controller log: {e}"))?;
        let (inbox, received) = local_channel::new_bounded(INBOX_MESSAGES_MAX);
        let transport = Transport::start(config, inbox)?;
        let (changed, woken) = local_channel::new_bounded(1);
        let controller = Rc::new(Controller {
            node: config.node_id,
            host: listener.advertised_host.clone(),
            port: listener.advertised_port,
            default_replication_factor: config.default_replication_factor,
            consensus: RefCell::new(Box::new(consensus)),
            transport,
            state: RefCell::new(ClusterState::default()),
            applied_index: Cell::new(0),
            leases: RefCell::new(Leases::default()),
            waiters: RefCell::new(HashMap::new()),
            answered: RefCell::new(Vec::new()),
            leader: Cell::new(None),
            changed,
            shard,
            voters: voters.len(),
            creating_offsets_topic: Cell::new(false),
        });
        glommio::spawn_local(controller.clone().tick_loop()).detach();
        glommio::spawn_local(controller.clone().receive_loop(received)).detach();
        glommio::spawn_local(controller.clone().apply_loop(woken)).detach();
        // Committed entries of the log on disk are applied at once.
        controller.drive();
        tracing::info!(node = config.node_id, voters = ?voters, "controller started");
        Ok(controller)
    }

    /// The controller quorum as this voter sees it (DescribeQuorum).
    pub fn quorum(&self) -> QuorumState {
        self.consensus.borrow().quorum()
    }

    /// Proposes `op` through the leader and waits until it is committed and
    /// applied on this broker.
    pub async fn submit(self: &Rc<Self>, op: Op) -> Result<(), SubmitError> {
        if self.waiters.borrow().len() >= WAITERS_MAX {
            return Err(SubmitError::Busy);
        }
        let request = new_request_id();
        let command = Command { request, op }.encode();
        let (answer, answered) = oneshot::channel();
        let now = Instant::now();
        self.send_proposal(&command);
        self.waiters.borrow_mut().insert(
            request,
            Waiter {
                command,
                answer: Some(answer),
                sent: now,
                deadline: now + ADMIN_CHANGE_TIMEOUT,
            },
        );
        self.drive();
        answered.await.unwrap_or(Err(SubmitError::TimedOut))
    }

    async fn tick_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(TICK_INTERVAL_MS);
        loop {
            glommio::timer::sleep(interval).await;
            self.consensus.borrow_mut().tick();
            self.lease_turn();
            self.retry_proposals();
            self.drive();
            self.ensure_offsets_topic();
        }
    }

    /// The leader creates the internal offsets topic once the cluster has
    /// formed (enough live brokers for its replication factor); its
    /// partition count is fixed from then on.
    fn ensure_offsets_topic(self: &Rc<Self>) {
        use super::coordinators::{
            offsets_replication_factor, offsets_topic_configs, should_create_offsets_topic,
        };
        let Some(config) = self.shard.config.cluster.as_ref() else {
            return;
        };
        let factor =
            offsets_replication_factor(config.offsets_topic_replication_factor, self.voters);
        let due = {
            let state = self.state.borrow();
            should_create_offsets_topic(
                self.leader.get() == Some(self.node),
                state.topics.contains_key(crate::group::OFFSETS_TOPIC),
                state.live_brokers().len(),
                factor,
            )
        };
        if !due || self.creating_offsets_topic.replace(true) {
            return;
        }
        let op = Op::CreateTopic {
            name: crate::group::OFFSETS_TOPIC.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: config.offsets_topic_num_partitions as i32,
            replication_factor: factor,
            configs: offsets_topic_configs(),
        };
        let this = self.clone();
        glommio::spawn_local(async move {
            match this.submit(op).await {
                Ok(()) => tracing::info!(
                    topic = crate::group::OFFSETS_TOPIC,
                    "created the offsets topic"
                ),
                Err(SubmitError::Refused(OpError::TopicExists(_))) => {}
                Err(error) => {
                    tracing::warn!(%error, "creating the offsets topic failed; trying again")
                }
            }
            this.creating_offsets_topic.set(false);
        })
        .detach();
    }

    async fn receive_loop(self: Rc<Self>, received: LocalReceiver<WireMessage>) {
        while let Some(message) = received.recv().await {
            self.receive(message);
            self.drive();
        }
    }

    fn receive(&self, message: WireMessage) {
        match message {
            WireMessage::Raft(message) => {
                if let Err(error) = self.consensus.borrow_mut().receive(*message) {
                    tracing::debug!(%error, "a Raft message was not taken");
                }
            }
            WireMessage::Control(Control::Heartbeat { node, host, port }) => {
                self.heartbeat_from(node, host, port)
            }
            WireMessage::Partition(message) => {
                if let Some(cluster) = self.shard.cluster.as_ref() {
                    cluster.replication.route(&self.shard, message);
                }
            }
            WireMessage::Control(Control::ElectPreferred { topic, partition }) => {
                let shard = self.shard.clone();
                glommio::spawn_local(async move {
                    super::elect::claim_here(&shard, topic, partition).await;
                })
                .detach();
            }
            WireMessage::Control(Control::Propose { command }) => {
                let mut consensus = self.consensus.borrow_mut();
                if consensus.is_leader() {
                    if let Err(error) = consensus.propose(command) {
                        tracing::debug!(%error, "a forwarded proposal was not taken");
                    }
                }
            }
        }
    }

    /// Sends `control` to broker `to` over the controller's channel.
    pub fn send_control(&self, to: NodeId, control: Control) {
        self.transport.send(to, WireMessage::Control(control));
    }

    /// Persists, sends and applies whatever consensus has ready.
    fn drive(&self) {
        loop {
            let progress = match self.consensus.borrow_mut().advance() {
                Ok(progress) => progress,
                Err(error) => {
                    // An unknown disk state must not vote or acknowledge.
                    tracing::error!(%error, "the controller log failed; stopping");
                    eprintln!("ringlog: the controller log failed: {error}");
                    std::process::exit(1);
                }
            };
            if progress.messages.is_empty() && progress.committed.is_empty() {
                break;
            }
            for message in progress.messages {
                let to = NodeId::try_from(message.to).unwrap_or(-1);
                self.transport
                    .send(to, WireMessage::Raft(Box::new(message)));
            }
            self.apply(progress.committed);
        }
        let leader = self.consensus.borrow().leader();
        if leader != self.leader.get() {
            self.leader.set(leader);
            let term = self.consensus.borrow().term();
            tracing::info!(leader = ?leader, term, "controller leader changed");
            let _ = self.changed.try_send(());
        }
    }

    fn apply(&self, committed: Vec<Committed>) {
        if committed.is_empty() {
            return;
        }
        for entry in committed {
            match Command::decode(&entry.data) {
                Ok(command) => {
                    let result = self.state.borrow_mut().apply(&command);
                    if let Some(result) = result {
                        if let Err(error) = &result {
                            tracing::debug!(index = entry.index, %error, "a committed change was refused");
                        }
                        if self.waiters.borrow().contains_key(&command.request) {
                            self.answered
                                .borrow_mut()
                                .push((entry.index, command.request, result));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(index = entry.index, %error, "skipping an undecodable controller entry")
                }
            }
            self.applied_index.set(entry.index);
        }
        let _ = self.changed.try_send(());
    }

    /// Hands applied state to this broker, then answers the waiters it covers.
    async fn apply_loop(self: Rc<Self>, woken: LocalReceiver<()>) {
        let mut applied = local::Applied::default();
        while woken.recv().await.is_some() {
            let index = self.applied_index.get();
            let state = self.state.borrow().clone();
            local::apply(&self.shard, &mut applied, &state, self.leader.get()).await;
            let ready: Vec<_> = {
                let mut answered = self.answered.borrow_mut();
                let (ready, later) = answered.drain(..).partition(|(i, _, _)| *i <= index);
                *answered = later;
                ready
            };
            for (_, request, result) in ready {
                if let Some(mut waiter) = self.waiters.borrow_mut().remove(&request) {
                    if let Some(answer) = waiter.answer.take() {
                        let _ = answer.send(result.map_err(SubmitError::from));
                    }
                }
            }
        }
    }

    fn send_proposal(&self, command: &[u8]) {
        let (is_leader, leader) = {
            let consensus = self.consensus.borrow();
            (consensus.is_leader(), consensus.leader())
        };
        if is_leader {
            if let Err(error) = self.consensus.borrow_mut().propose(command.to_vec()) {
                tracing::debug!(%error, "a proposal was not taken");
            }
        } else if let Some(leader) = leader {
            let control = Control::Propose {
                command: command.to_vec(),
            };
            self.transport.send(leader, WireMessage::Control(control));
        }
    }

    /// Sends uncommitted proposals again and gives up on expired ones.
    fn retry_proposals(&self) {
        let now = Instant::now();
        let mut resend = Vec::new();
        self.waiters.borrow_mut().retain(|_, waiter| {
            if now >= waiter.deadline {
                if let Some(answer) = waiter.answer.take() {
                    let _ = answer.send(Err(SubmitError::TimedOut));
                }
                return false;
            }
            if now.duration_since(waiter.sent) >= PROPOSAL_RETRY_INTERVAL {
                waiter.sent = now;
                resend.push(waiter.command.clone());
            }
            true
        });
        for command in resend {
            self.send_proposal(&command);
        }
    }

    /// This broker's heartbeat, and on the leader the fencing of brokers
    /// whose session ran out.
    fn lease_turn(&self) {
        let now = Instant::now();
        let (is_leader, leader) = {
            let consensus = self.consensus.borrow();
            (consensus.is_leader(), consensus.leader())
        };
        let due = self
            .leases
            .borrow()
            .heartbeat_sent
            .is_none_or(|sent| now.duration_since(sent) >= BROKER_HEARTBEAT_INTERVAL);
        if due {
            self.leases.borrow_mut().heartbeat_sent = Some(now);
            if is_leader {
                self.heartbeat_from(self.node, self.host.clone(), self.port);
            } else if let Some(leader) = leader {
                let control = Control::Heartbeat {
                    node: self.node,
                    host: self.host.clone(),
                    port: self.port,
                };
                self.transport.send(leader, WireMessage::Control(control));
            }
        }
        if !is_leader {
            self.leases.borrow_mut().was_leader = false;
            return;
        }
        let live = self.state.borrow().live_brokers();
        let expired: Vec<NodeId> = {
            let mut leases = self.leases.borrow_mut();
            if !leases.was_leader {
                // A new leader gives every broker a full session first.
                leases.was_leader = true;
                for &node in &live {
                    leases.last_seen.insert(node, now);
                }
            }
            live.into_iter()
                .filter(|node| {
                    leases
                        .last_seen
                        .get(node)
                        .is_none_or(|seen| now.duration_since(*seen) > BROKER_SESSION_TIMEOUT)
                })
                .collect()
        };
        for node in expired {
            self.propose_for(node, Op::FenceBroker { node });
        }
    }

    /// On the leader: renews `node`'s lease, registering it if it is new,
    /// fenced or has moved.
    fn heartbeat_from(&self, node: NodeId, host: String, port: u16) {
        if !self.consensus.borrow().is_leader() {
            return;
        }
        self.leases
            .borrow_mut()
            .last_seen
            .insert(node, Instant::now());
        let registered = self
            .state
            .borrow()
            .brokers
            .get(&node)
            .is_some_and(|b| !b.fenced && b.host == host && b.port == port);
        if !registered {
            self.propose_for(node, Op::RegisterBroker { node, host, port });
        }
    }

    /// Proposes a lease change for `node`, at most once per retry interval.
    fn propose_for(&self, node: NodeId, op: Op) {
        let now = Instant::now();
        {
            let mut leases = self.leases.borrow_mut();
            let recent = leases
                .last_proposed
                .get(&node)
                .is_some_and(|at| now.duration_since(*at) < PROPOSAL_RETRY_INTERVAL);
            if recent {
                return;
            }
            leases.last_proposed.insert(node, now);
        }
        tracing::info!(?op, "proposing a broker lease change");
        let command = Command { request: 0, op }.encode();
        if let Err(error) = self.consensus.borrow_mut().propose(command) {
            tracing::debug!(%error, "a lease change was not taken");
        }
    }
}

/// A random, non-zero request id (zero means "nobody waits").
fn new_request_id() -> u64 {
    let mut bytes = [0; 8];
    loop {
        if getrandom::getrandom(&mut bytes).is_err() {
            // No entropy source: the clock still makes ids unique enough.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            bytes = nanos.to_le_bytes();
        }
        let id = u64::from_le_bytes(bytes);
        if id != 0 {
            return id;
        }
    }
}
