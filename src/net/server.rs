//! The accept loop of one shard's listener: a task per connection, a bound
//! on open connections, and a drain on shutdown.

use std::rc::Rc;
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use glommio::sync::Gate;

use super::connection;
use super::handler::Handler;
use super::Shutdown;

/// Pause after a failed accept (EMFILE and the like) before the next one.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What the accept and connection loops need to know of their shard.
#[derive(Clone)]
pub struct ServeOptions {
    /// The shard, for log lines.
    pub shard: usize,
    /// Which of the caller's listeners this is; handed to the handler with
    /// each connection ([`super::Peer`]).
    pub listener: usize,
    /// Connections this listener keeps open at once (`max.connections`, per
    /// shard); one more is closed on accept with a log line.
    pub connections_max: usize,
    /// How long a stop waits for open connections to finish their requests.
    pub drain_max: Duration,
    /// Set on SSL and SASL_SSL listeners: every connection starts with TLS.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections on `listener` and serves each with `handler` until
/// `shutdown` starts; then stops accepting and waits (at most
/// `options.drain_max`) for the open connections to finish. Returns whether
/// they all did.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    shutdown: Rc<Shutdown>,
    handler: Rc<H>,
    options: ServeOptions,
) -> bool {
    let connections = Gate::new();
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(shard = options.shard, %error, "accept failed");
                glommio::timer::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        if open.get() >= options.connections_max {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "unknown".into(), |p| p.to_string());
            tracing::warn!(
                shard = options.shard,
                %peer,
                max_connections = options.connections_max,
                "connection refused: this shard is at max.connections"
            );
            crate::metrics::local::connection_refused();
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        crate::metrics::local::connection_opened();
        let (handler, shutdown, open) = (handler.clone(), shutdown.clone(), open.clone());
        let connection_options = options.clone();
        let task = connections.spawn(async move {
            connection::serve(handler, stream, connection_options, shutdown).await;
            open.set(open.get() - 1);
            crate::metrics::local::connection_closed();
        });
        match task {
            Ok(task) => {
                task.detach();
            }
            Err(error) => {
                tracing::warn!(shard = options.shard, %error, "cannot start connection task")
            }
        };
    }
    drop(listener);
    futures_lite::future::or(async { connections.close().await.is_ok() }, async {
        glommio::timer::sleep(options.drain_max).await;
        false
    })
    .await
}
