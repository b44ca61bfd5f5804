//! Cross-shard calls: a job (a `Send` closure) goes to the owning shard over
//! a bounded single-producer channel, runs there, and its answer comes back
//! on a oneshot. Channels are explicit `shared_channel` pairs made at
//! start-up (glommio's `channel_mesh` has a reported deadlock under load).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::join_all;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use super::{Shard, ShardId};

/// Jobs queued from one shard to another before callers get `InboxFull`.
pub const SHARD_INBOX_CAPACITY: usize = 4096;
/// In debug builds only, `RINGLOG_SHARD_INBOX_CAPACITY=<jobs>` makes the
/// inboxes that small, so a test can fill one with real clients and see
/// what a full inbox answers.
pub const INBOX_CAPACITY_VAR: &str = "RINGLOG_SHARD_INBOX_CAPACITY";

/// The capacity of each inbox: [`SHARD_INBOX_CAPACITY`], or the debug
/// override when it is set to a positive number.
fn inbox_capacity() -> usize {
    if !cfg!(debug_assertions) {
        return SHARD_INBOX_CAPACITY;
    }
    std::env::var(INBOX_CAPACITY_VAR)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|jobs| *jobs > 0)
        .unwrap_or(SHARD_INBOX_CAPACITY)
}

pub type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
/// Work for another shard: built here, run there.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalFuture + Send>;

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    #[error("shard {0}'s inbox is full")]
    InboxFull(ShardId),
    #[error("shard {0} is gone")]
    ShardGone(ShardId),
}

/// The unconnected channel ends for one shard, made before executors start.
pub struct MeshEnds {
    /// `senders[j]` sends to shard `j` (None for this shard itself).
    pub senders: Vec<Option<SharedSender<Job>>>,
    /// One receiver per other shard.
    pub receivers: Vec<SharedReceiver<Job>>,
}

/// Makes a channel for every ordered pair of shards.
pub fn make_mesh(shard_count: usize) -> Vec<MeshEnds> {
    let capacity = inbox_capacity();
    let mut ends: Vec<MeshEnds> = (0..shard_count)
        .map(|_| MeshEnds {
            senders: (0..shard_count).map(|_| None).collect(),
            receivers: Vec::new(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(sender);
                ends[to].receivers.push(receiver);
            }
        }
    }
    ends
}

/// This shard's connected senders.
pub struct Mesh {
    senders: Vec<Option<ConnectedSender<Job>>>,
}

impl Mesh {
    /// Connects this shard's ends; returns the mesh and the inbound receivers.
    /// A connect waits for its peer, so all of them run at once (in sequence,
    /// two shards would each wait for the other).
    pub async fn connect(ends: MeshEnds) -> (Mesh, Vec<ConnectedReceiver<Job>>) {
        let senders = join_all(ends.senders.into_iter().map(|sender| async move {
            match sender {
                Some(s) => Some(s.connect().await),
                None => None,
            }
        }));
        let receivers = join_all(ends.receivers.into_iter().map(SharedReceiver::connect));
        let (senders, receivers) = futures::future::join(senders, receivers).await;
        (Mesh { senders }, receivers)
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Queues `job` for shard `target`; never blocks.
    pub fn send(&self, target: ShardId, job: Job) -> Result<(), RouteError> {
        let sender = self
            .senders
            .get(target.index())
            .and_then(Option::as_ref)
            .ok_or(RouteError::ShardGone(target))?;
        let sent = sender.try_send(job);
        crate::metrics::local::cross_shard_sent(sent.is_err());
        sent.map_err(|_| RouteError::InboxFull(target))
    }
}

/// Runs `f` on shard `target` (in place when it is this shard) and returns its answer.
/// `target` may also be a shard's index, as counted over `0..shard_count()`.
pub async fn run_on<T, F, Fut>(shard: &Rc<Shard>, target: ShardId, f: F) -> Result<T, RouteError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    if target == shard.id {
        return Ok(f(shard.clone()).await);
    }
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |owner| {
        Box::pin(async move {
            // The caller may have gone (connection closed): nothing to do then.
            let _ = reply.send(f(owner).await);
        })
    });
    shard.mesh.send(target, job)?;
    answer.await.map_err(|_| RouteError::ShardGone(target))
}

/// Serves jobs arriving from one other shard until that shard hangs up.
pub async fn serve_inbox(shard: Rc<Shard>, inbox: ConnectedReceiver<Job>) {
    while let Some(job) = inbox.recv().await {
        glommio::spawn_local(job(shard.clone())).detach();
    }
}
