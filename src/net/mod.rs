//! The network edge: the accept loop with its connection limit, TLS,
//! framing with size limits, and the per-connection loop that keeps
//! responses in request order while requests are pipelined. It knows nothing above it:
//! what a frame means is the handler's business.

pub mod connection;
pub mod frame;
pub mod handler;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod transport;
pub mod vectored;

use bytes::Bytes;

pub use handler::{Handler, Peer};
pub use server::{serve, ServeOptions};
pub use shutdown::Shutdown;

/// What the connection does with a request's outcome.
pub enum Outcome {
    /// Send these pieces, in order, as the response frame (length prefix included).
    Respond(Vec<Bytes>),
    /// acks=0 produce: Kafka sends nothing back.
    NoResponse,
    /// Malformed or unsupported request: close the connection, logging why.
    Close(String),
}
