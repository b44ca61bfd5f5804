//! What the connection loop asks of the layer above it: per-connection
//! state, the frame limit that applies now, and an answer per frame. The
//! connection loop only carries that state; what it holds (a SASL exchange,
//! a principal) is the handler's business.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use super::Outcome;

/// Where a connection came from: which listener accepted it and the peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The accepting listener, as the caller of [`super::serve`] numbered it.
    pub listener: usize,
    pub address: Option<SocketAddr>,
    /// On a TLS listener, the subject of the client's verified certificate.
    pub client_subject: Option<String>,
}

/// Answers the request frames of each connection.
pub trait Handler: 'static {
    /// State kept for one connection from accept to close.
    type Connection: 'static;

    /// Called once per accepted connection, before its first frame.
    fn open(&self, peer: &Peer) -> Rc<Self::Connection>;

    /// The largest frame the connection may send next (asked before each
    /// frame is buffered, so it may shrink before authentication).
    fn frame_bytes_max(&self, connection: &Self::Connection) -> usize;

    /// Answers one request frame (without its length prefix).
    fn handle(
        &self,
        frame: Bytes,
        connection: &Rc<Self::Connection>,
    ) -> impl Future<Output = Outcome> + 'static;
}
