//! One client connection: a reader that frames and dispatches requests as
//! they arrive (pipelining), and a writer that sends the answers strictly in
//! request order, as Kafka requires.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::rc::Rc;

use futures_lite::io::{AsyncReadExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::frame::FrameReader;
use super::handler::{Handler, Peer};
use super::server::ServeOptions;
use super::transport::{self, Transport};
use super::{Outcome, Shutdown};

/// Requests one connection may have in flight (librdkafka pipelines up to 5;
/// the Java client up to 5 per connection by default).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;

type Pending = JoinHandle<Outcome>;

/// Serves one connection until the client leaves, a request is refused, or
/// `shutdown` starts.
pub async fn serve<H: Handler>(
    handler: Rc<H>,
    stream: TcpStream,
    options: ServeOptions,
    shutdown: Rc<Shutdown>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let accepted = match transport::accept(stream, options.tls.as_ref()).await {
        Ok(accepted) => accepted,
        Err(reason) => {
            tracing::info!(shard = options.shard, peer = %display_peer(peer), %reason, "connection closed");
            return;
        }
    };
    let connection = handler.open(&Peer {
        listener: options.listener,
        address: peer,
        client_subject: accepted.client_subject,
    });
    let fd = accepted.transport.raw_fd();
    let (reader, writer) = futures_lite::io::split(accepted.transport);
    let (queue, answers) = local_channel::new_bounded::<Pending>(REQUESTS_IN_FLIGHT_MAX);
    // Set when the writer stops, so the reader stops too and the socket closes.
    let writer_stopped = Shutdown::default();
    let write_side = async {
        let end = write_responses(writer, fd, answers).await;
        writer_stopped.start();
        end
    };
    let stopped = futures_lite::future::or(shutdown.wait(), writer_stopped.wait());
    let read_side = read_requests(handler.as_ref(), reader, queue, stopped, &connection);
    let (read_end, write_end) = futures_lite::future::zip(read_side, write_side).await;
    for reason in [read_end, write_end].into_iter().flatten() {
        tracing::info!(shard = options.shard, peer = %display_peer(peer), %reason, "connection closed");
    }
}

fn display_peer(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |p| p.to_string())
}

/// Reads frames until EOF, an error, or `stopped`; each request starts at
/// once on its own task. Between requests the connection holds only the
/// frame reader's 4 length bytes. Returns why it stopped when that deserves
/// a log line.
async fn read_requests<H: Handler>(
    handler: &H,
    mut reader: ReadHalf<Transport>,
    queue: LocalSender<Pending>,
    stopped: impl Future<Output = ()>,
    connection: &Rc<H::Connection>,
) -> Option<String> {
    let mut stopped = std::pin::pin!(stopped);
    let mut frames = FrameReader::new(handler.frame_bytes_max(connection));
    loop {
        // The limit may change with the connection's state (before SASL
        // authentication it is smaller); it applies to the next length read.
        frames.set_limit(handler.frame_bytes_max(connection));
        let read = futures_lite::future::or(
            async { Some(reader.read(frames.unfilled()).await) },
            async {
                (&mut stopped).await;
                None
            },
        )
        .await;
        let n = match read {
            None => return None,
            Some(Ok(0)) if frames.pending() == 0 => return None,
            Some(Ok(0)) => {
                return Some(format!(
                    "truncated frame: {} bytes left unread",
                    frames.pending()
                ))
            }
            Some(Ok(n)) => n,
            Some(Err(error)) => return Some(format!("read failed: {error}")),
        };
        let frame = match frames.filled(n) {
            Err(error) => return Some(error.to_string()),
            Ok(None) => continue,
            Ok(Some(frame)) => frame,
        };
        let task = glommio::spawn_local(handler.handle(frame, connection)).detach();
        if queue.send(task).await.is_err() {
            return None; // The writer stopped; it said why.
        }
    }
}

async fn write_responses(
    mut writer: WriteHalf<Transport>,
    fd: Option<RawFd>,
    answers: LocalReceiver<Pending>,
) -> Option<String> {
    while let Some(pending) = answers.recv().await {
        let pieces = match pending.await {
            Some(Outcome::Respond(pieces)) => pieces,
            Some(Outcome::NoResponse) => continue,
            Some(Outcome::Close(reason)) => return Some(reason),
            None => return Some("request handler failed".to_string()),
        };
        if let Err(error) = transport::write_pieces(&mut writer, fd, &pieces).await {
            return Some(format!("write failed: {error}"));
        }
    }
    None
}
