//! The accept loop of one shard's listener: a task per connection, bounds
//! on open connections (in all and per client address), and a drain on
//! shutdown.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Gate;

use super::connection;
use super::handler::Handler;
use super::tls::ShardTls;
use super::Shutdown;

/// Pause after a failed accept (EMFILE and the like) before the next one.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// At most one "accept failed" line per this interval.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Connections this listener keeps open at once from one IP address
    /// (`max.connections.per.ip`, per shard); one more is closed on accept
    /// with a log line.
    pub connections_per_ip_max: usize,
    /// How long a stop waits for open connections to finish their requests.
    pub drain_max: Duration,
    /// Set on SSL and SASL_SSL listeners: every connection starts with TLS.
    pub tls: Option<ShardTls>,
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
    let open = Rc::new(Cell::new(0usize));
    let per_ip: Rc<RefCell<HashMap<IpAddr, usize>>> = Rc::default();
    let mut last_accept_warning: Option<std::time::Instant> = None;
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
                // Out of descriptors, accept fails every retry: one line a second.
                if last_accept_warning.is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_INTERVAL) {
                    tracing::warn!(shard = options.shard, %error, "accept failed");
                    last_accept_warning = Some(std::time::Instant::now());
                }
                glommio::timer::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let peer = stream.peer_addr().ok();
        if let Some(refusal) = admission(&open, &per_ip, peer.map(|p| p.ip()), &options) {
            let peer = peer.map_or_else(|| "unknown".into(), |p| p.to_string());
            tracing::warn!(shard = options.shard, %peer, limit = refusal.1, "connection refused: {}", refusal.0);
            crate::metrics::local::connection_refused();
            drop(stream);
            continue;
        }
        let place = Place::take(&open, &per_ip, peer.map(|p| p.ip()));
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        let connection_options = options.clone();
        let task = connections.spawn(async move {
            connection::serve(handler, stream, connection_options, shutdown).await;
            drop(place);
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

/// Why a new connection is refused, and the limit it hit; `None` admits it.
fn admission(
    open: &Cell<usize>,
    per_ip: &RefCell<HashMap<IpAddr, usize>>,
    ip: Option<IpAddr>,
    options: &ServeOptions,
) -> Option<(&'static str, usize)> {
    if open.get() >= options.connections_max {
        return Some(("this shard is at max.connections", options.connections_max));
    }
    let from_ip = ip.map_or(0, |ip| per_ip.borrow().get(&ip).copied().unwrap_or(0));
    if from_ip >= options.connections_per_ip_max {
        return Some((
            "this address is at max.connections.per.ip on this shard",
            options.connections_per_ip_max,
        ));
    }
    None
}

/// An admitted connection's place in the counts; given back when dropped,
/// also when its task never ran.
struct Place {
    open: Rc<Cell<usize>>,
    per_ip: Rc<RefCell<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl Place {
    fn take(
        open: &Rc<Cell<usize>>,
        per_ip: &Rc<RefCell<HashMap<IpAddr, usize>>>,
        ip: Option<IpAddr>,
    ) -> Place {
        open.set(open.get() + 1);
        crate::metrics::local::connection_opened();
        if let Some(ip) = ip {
            *per_ip.borrow_mut().entry(ip).or_insert(0) += 1;
        }
        Place {
            open: open.clone(),
            per_ip: per_ip.clone(),
            ip,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
        crate::metrics::local::connection_closed();
        let Some(ip) = self.ip else { return };
        let mut per_ip = self.per_ip.borrow_mut();
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}
