//! The metrics listener: `/metrics`, `/health/live` and `/health/ready`
//! over HTTP/1.1, served by hyper on glommio's sockets.
//!
//! It runs on one shard in a `Latency::NotImportant` queue, so a scrape
//! waits for produce and fetch work rather than the other way round; the
//! other shards only copy their numbers when asked ([`super::gather`]).

use std::cell::Cell;
use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::exposition::{self, Exposition};
use super::gather;
use crate::net::Shutdown;
use crate::shard::Shard;

/// Metrics connections served at once; more are closed on accept.
pub const METRICS_CONNECTIONS_MAX: usize = 16;
/// The longest one metrics connection stays open (hyper has no timer on
/// glommio, so this bounds a client that sends a request slowly or never).
pub const METRICS_CONNECTION_DURATION_MAX: Duration = Duration::from_secs(30);
/// Pause after a failed accept before the next one.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The most bytes copied per read from the socket into hyper's buffer.
const READ_CHUNK_BYTES: usize = 8 * 1024;

const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Whether the broker is ready: every shard accepts Kafka connections and
/// shutdown has not started.
pub struct Health {
    /// Shards whose Kafka listener is bound.
    pub accepting: Arc<AtomicUsize>,
    pub shard_count: usize,
    pub shutdown: Rc<Shutdown>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::SeqCst) >= self.shard_count && !self.shutdown.has_started()
    }
}

/// What the endpoint serves from.
pub struct Endpoint {
    pub shard: Rc<Shard>,
    pub health: Health,
    pub per_partition: bool,
}

/// Accepts metrics connections until the executor stops (health keeps
/// answering while the broker drains).
pub async fn serve(listener: TcpListener, endpoint: Rc<Endpoint>) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed");
                glommio::timer::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        if open.get() >= METRICS_CONNECTIONS_MAX {
            tracing::debug!("metrics connection refused: {METRICS_CONNECTIONS_MAX} already open");
            continue;
        }
        open.set(open.get() + 1);
        let (endpoint, open) = (endpoint.clone(), open.clone());
        glommio::spawn_local(async move {
            serve_connection(stream, endpoint).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn serve_connection(stream: TcpStream, endpoint: Rc<Endpoint>) {
    let service = hyper::service::service_fn(move |request| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(answer(&endpoint, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Hyper's own header timeout needs a hyper timer; the whole connection
    // is bounded below instead.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(GlommioIo(stream), service);
    let served = futures_lite::future::or(async { Some(connection.await) }, async {
        glommio::timer::sleep(METRICS_CONNECTION_DURATION_MAX).await;
        None
    })
    .await;
    if let Some(Err(error)) = served {
        tracing::debug!(%error, "metrics connection failed");
    }
}

async fn answer(endpoint: &Endpoint, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/health/live" | "/health/ready") {
        return text(StatusCode::NOT_FOUND, PLAIN_TEXT, "not found\n".into());
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN_TEXT,
            "use GET\n".into(),
        );
    }
    match path {
        "/health/live" => text(StatusCode::OK, PLAIN_TEXT, "live\n".into()),
        "/health/ready" if endpoint.health.is_ready() => {
            text(StatusCode::OK, PLAIN_TEXT, "ready\n".into())
        }
        "/health/ready" if endpoint.health.shutdown.has_started() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN_TEXT,
            "stopping\n".into(),
        ),
        "/health/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN_TEXT,
            "starting\n".into(),
        ),
        _ => metrics(endpoint).await,
    }
}

async fn metrics(endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let exposition = Exposition {
        samples: gather::gather(&endpoint.shard).await,
        per_partition: endpoint.per_partition,
        shard_count: endpoint.health.shard_count,
        ready: endpoint.health.is_ready(),
    };
    match exposition::encode(exposition) {
        Ok(body) => text(StatusCode::OK, OPENMETRICS_TEXT, body),
        Err(error) => {
            tracing::error!(%error, "encoding the metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                PLAIN_TEXT,
                "encoding failed\n".into(),
            )
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// hyper's I/O traits over a glommio socket (which speaks futures' traits).
struct GlommioIo(TcpStream);

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A copy through a small initialised buffer keeps this free of
        // `unsafe`; metrics requests are a few hundred bytes.
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let wanted = buf.remaining().min(READ_CHUNK_BYTES);
        match Pin::new(&mut self.0).poll_read(cx, &mut chunk[..wanted]) {
            Poll::Ready(Ok(read)) => {
                buf.put_slice(&chunk[..read]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
