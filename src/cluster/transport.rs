//! Inter-broker TCP on `--cluster-listen`, on glommio sockets of shard 0.
//! Each peer has one outgoing connection and a bounded queue; a writer task
//! sends everything queued since its last write as one frame, so the
//! messages of one controller turn leave in one write per peer. A failed
//! connection is dropped and made again on the next write (Raft resends
//! what was lost). Incoming connections only deliver into the inbox; a bad
//! frame closes its connection with a log line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use super::frame::{self, WireMessage, FRAME_HEADER_BYTES};
use super::NodeId;
use crate::config::ClusterConfig;

/// Messages queued for one peer; more are dropped (Raft retries).
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Messages received and not yet taken by the controller.
pub const INBOX_MESSAGES_MAX: usize = 8192;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause after a failed connection before the next attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

struct Peer {
    node: NodeId,
    address: SocketAddr,
    queue: RefCell<Vec<WireMessage>>,
    wake: LocalSender<()>,
}

pub struct Transport {
    peers: HashMap<NodeId, Rc<Peer>>,
}

impl Transport {
    /// Binds the listener and starts one writer per peer; received messages
    /// go to `inbox`.
    pub fn start(
        config: &ClusterConfig,
        inbox: LocalSender<WireMessage>,
    ) -> Result<Rc<Transport>, String> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| format!("binding the cluster listener {}: {e}", config.listen))?;
        glommio::spawn_local(accept_loop(listener, Rc::new(inbox))).detach();
        let transport = Transport::connect(config);
        tracing::info!(listen = %config.listen, peers = transport.peers.len(), "cluster transport started");
        Ok(transport)
    }

    /// Writers to every peer and no listener: a shard's own connections
    /// for its partition groups (one per shard and peer). What peers send
    /// back arrives on the listener of shard 0.
    pub fn connect(config: &ClusterConfig) -> Rc<Transport> {
        let mut peers = HashMap::new();
        for voter in config.peers() {
            let (wake, woken) = local_channel::new_bounded(1);
            let peer = Rc::new(Peer {
                node: voter.node_id,
                address: voter.address,
                queue: RefCell::new(Vec::new()),
                wake,
            });
            glommio::spawn_local(write_loop(peer.clone(), woken)).detach();
            peers.insert(voter.node_id, peer);
        }
        Rc::new(Transport { peers })
    }

    /// Queues `message` for `to`; dropped when the queue is full or `to`
    /// is not a peer.
    pub fn send(&self, to: NodeId, message: WireMessage) {
        let Some(peer) = self.peers.get(&to) else {
            tracing::debug!(to, "no such peer; message dropped");
            return;
        };
        let mut queue = peer.queue.borrow_mut();
        if queue.len() >= PEER_QUEUE_MESSAGES_MAX {
            return;
        }
        queue.push(message);
        // One pending wake-up is enough: the writer takes the whole queue.
        let _ = peer.wake.try_send(());
    }
}

async fn write_loop(peer: Rc<Peer>, woken: LocalReceiver<()>) {
    let mut connection: Option<TcpStream> = None;
    let mut unreachable_logged = false;
    while woken.recv().await.is_some() {
        let batch = std::mem::take(&mut *peer.queue.borrow_mut());
        if batch.is_empty() {
            continue;
        }
        if connection.is_none() {
            match TcpStream::connect_timeout(peer.address, CONNECT_TIMEOUT).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    tracing::info!(peer = peer.node, address = %peer.address, "connected to peer");
                    unreachable_logged = false;
                    connection = Some(stream);
                }
                Err(error) => {
                    if !unreachable_logged {
                        tracing::warn!(peer = peer.node, address = %peer.address, %error, "peer unreachable; retrying");
                        unreachable_logged = true;
                    }
                    glommio::timer::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(stream) = connection.as_mut() else {
            continue;
        };
        if let Err(error) = stream.write_all(&frame::encode(&batch)).await {
            tracing::info!(peer = peer.node, %error, "connection to peer lost; reconnecting");
            connection = None;
        }
    }
}

async fn accept_loop(listener: TcpListener, inbox: Rc<LocalSender<WireMessage>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(read_loop(stream, inbox.clone())).detach();
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a cluster connection failed");
                glommio::timer::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}

async fn read_loop(mut stream: TcpStream, inbox: Rc<LocalSender<WireMessage>>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
    loop {
        let mut header = [0; FRAME_HEADER_BYTES];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = match frame::body_length(header) {
            Ok(length) => length,
            Err(error) => {
                tracing::warn!(%peer, %error, "closing a cluster connection");
                return;
            }
        };
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        match frame::decode(&body) {
            Ok(messages) => {
                for message in messages {
                    // A full inbox drops the message; Raft resends it.
                    let _ = inbox.try_send(message);
                }
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "closing a cluster connection after a bad frame");
                return;
            }
        }
    }
}
