//! One client connection: a reader that frames and dispatches requests as
//! they arrive (pipelining), and a writer that sends the answers strictly in
//! request order, as Kafka requires.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::frame::FrameReader;
use super::server::ServeOptions;
use super::vectored;
use super::{Outcome, Shutdown};

/// Requests one connection may have in flight (librdkafka pipelines up to 5;
/// the Java client up to 5 per connection by default).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;

type Pending = JoinHandle<Outcome>;

/// Answers one request frame (without its length prefix) from the client at
/// `client_host` (Kafka's `/<ip>` form).
pub trait Handler: 'static {
    type Answer: Future<Output = Outcome> + 'static;
    fn handle(&self, frame: Bytes, client_host: Rc<str>) -> Self::Answer;
}

impl<F, A> Handler for F
where
    F: Fn(Bytes, Rc<str>) -> A + 'static,
    A: Future<Output = Outcome> + 'static,
{
    type Answer = A;
    fn handle(&self, frame: Bytes, client_host: Rc<str>) -> A {
        self(frame, client_host)
    }
}

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
    let fd = stream.as_raw_fd();
    let (reader, writer) = futures_lite::io::split(stream);
    let (queue, answers) = local_channel::new_bounded::<Pending>(REQUESTS_IN_FLIGHT_MAX);
    // Set when the writer stops, so the reader stops too and the socket closes.
    let writer_stopped = Shutdown::default();
    let write_side = async {
        let end = write_responses(writer, fd, answers).await;
        writer_stopped.start();
        end
    };
    // Kafka reports a member's host as "/<ip>" in DescribeGroups.
    let client_host: Rc<str> =
        peer.map_or_else(|| "/unknown".into(), |p| format!("/{}", p.ip()).into());
    let stopped = futures_lite::future::or(shutdown.wait(), writer_stopped.wait());
    let read_side = read_requests(
        handler.as_ref(),
        reader,
        queue,
        options.request_bytes_max,
        stopped,
        &client_host,
    );
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
    mut reader: ReadHalf<TcpStream>,
    queue: LocalSender<Pending>,
    limit: usize,
    stopped: impl Future<Output = ()>,
    client_host: &Rc<str>,
) -> Option<String> {
    let mut stopped = std::pin::pin!(stopped);
    let mut frames = FrameReader::new(limit);
    loop {
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
        let task = glommio::spawn_local(handler.handle(frame, client_host.clone())).detach();
        if queue.send(task).await.is_err() {
            return None; // The writer stopped; it said why.
        }
    }
}

async fn write_responses(
    mut writer: WriteHalf<TcpStream>,
    fd: RawFd,
    answers: LocalReceiver<Pending>,
) -> Option<String> {
    while let Some(pending) = answers.recv().await {
        let pieces = match pending.await {
            Some(Outcome::Respond(pieces)) => pieces,
            Some(Outcome::NoResponse) => continue,
            Some(Outcome::Close(reason)) => return Some(reason),
            None => return Some("request handler failed".to_string()),
        };
        if let Err(error) = vectored::write_all(&mut writer, fd, &pieces).await {
            return Some(format!("write failed: {error}"));
        }
    }
    None
}
