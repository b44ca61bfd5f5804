//! Start-up and shutdown: one pinned executor per selected core, each with
//! its own listener (SO_REUSEPORT), partitions and group coordinator.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use super::background;
use super::exclusive::{self, DataDirLock};
use super::mesh::{self, MeshEnds};
use super::open_files;
use super::placement::{self, EXECUTOR_IO_MEMORY_BYTES};
use super::security::{SecuritySnapshot, SecurityStore, ShardSecurity};
use super::signals::{block_signals, wait_for_signals};
pub use super::startup::StartError;
use super::startup::{check_group_shards, resolve_data_dir, GROUPS_DIR, TRANSACTIONS_DIR};
use super::topics::{TopicRegistry, TopicTable};
use super::{Shard, ShardId, Shutdown, METADATA_SHARD};
use crate::config::Config;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::storage::file::{probe_direct_io, ProbeError};
use crate::storage::BatchCache;
use crate::txn::{ProducerIdStore, ProducerIds, TxnConfig, TxnCoordinator};
use crate::{kafka, net};

/// How long a clean shutdown waits for in-flight requests before closing logs.
pub const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);
/// How often a shard that is ready checks whether every other one is.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Everything one shard needs to start; moved onto its executor thread.
struct ShardSeed {
    id: ShardId,
    config: Arc<Config>,
    mesh: MeshEnds,
    table: Arc<TopicTable>,
    registry: Option<TopicRegistry>,
    security: SecuritySnapshot,
    security_store: Option<SecurityStore>,
    /// The TLS acceptor every SSL and SASL_SSL listener uses, and where
    /// the ones reloaded on SIGHUP arrive.
    tls: Option<(TlsAcceptor, mpsc::UnboundedReceiver<TlsAcceptor>)>,
    shutdown: oneshot::Receiver<()>,
    ready: Arc<AtomicUsize>,
    /// Shards whose Kafka listener is bound (what `/health/ready` waits for).
    accepting: Arc<AtomicUsize>,
    /// Only on [`METADATA_SHARD`]: the bound metrics listener, if any.
    metrics: Option<std::net::TcpListener>,
}

/// Runs the broker until SIGINT/SIGTERM, then shuts down cleanly; SIGHUP
/// reloads the TLS certificates.
pub fn run(mut config: Config) -> Result<(), StartError> {
    super::uring_probe::check()?;
    let cpus = placement::resolve_cpus(&config.cpus)?;
    placement::ensure_memlock(cpus.len())?;
    config.open_files_max = Some(open_files::raise_limit(config.open_files_max)?);
    config.data_dir = resolve_data_dir(&config.data_dir)?;
    let _data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
    for listener in &config.listeners {
        exclusive::check_listen_free(listener.address)?;
    }
    if let Some(cluster) = &config.cluster {
        exclusive::check_listen_free(cluster.listen)?;
    }
    check_group_shards(&config.data_dir.join(GROUPS_DIR), cpus.len())?;
    check_group_shards(&config.data_dir.join(TRANSACTIONS_DIR), cpus.len())?;
    let metrics = bind_metrics(&config)?;
    let registry = TopicRegistry::load(&config.data_dir, cpus.len(), &config.topic_defaults)?;
    let security = SecurityStore::open(&config.data_dir, &config.security)?;
    let tls = config
        .security
        .tls
        .as_ref()
        .map(net::tls::acceptor)
        .transpose()?;
    let config = Arc::new(config);
    let signals = block_signals();
    let listeners = listener_summary(&config);
    tracing::info!(shards = cpus.len(), ?cpus, %listeners, open_files_max = config.open_files_max, data_dir = %config.data_dir.display(), "starting");
    let (reload_senders, reload_receivers): (Vec<_>, Vec<_>) =
        cpus.iter().map(|_| mpsc::unbounded()).unzip();
    let tls = tls.map(|acceptor| (acceptor, reload_receivers));
    let (handles, stop_senders) = spawn_shards(&config, &cpus, registry, metrics, security, tls)?;
    let tls_settings = config.security.tls.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            wait_for_signals(signals, stop_senders, || {
                reload_tls(tls_settings.as_ref(), &reload_senders)
            })
        })
        .map_err(StartError::SignalThread)?;
    let mut failure = None;
    for (id, handle) in ShardId::all(handles.len()).zip(handles) {
        let outcome = match handle.join() {
            Ok(Ok(())) => continue,
            Ok(Err(message)) => message,
            Err(e) => e.to_string(),
        };
        failure.get_or_insert(StartError::Shard {
            shard: id,
            message: outcome,
        });
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// SIGHUP: reads the certificate, key and CA files again and hands every
/// shard the new acceptor. Files that do not make a valid setup leave the
/// running one in place.
fn reload_tls(
    settings: Option<&net::tls::TlsSettings>,
    shards: &[mpsc::UnboundedSender<TlsAcceptor>],
) {
    let Some(settings) = settings else {
        tracing::info!("no TLS listener: nothing to reload");
        return;
    };
    match net::tls::acceptor(settings) {
        Ok(acceptor) => {
            for shard in shards {
                let _ = shard.unbounded_send(acceptor.clone());
            }
            tracing::info!(certificate = %settings.certificate.display(), "TLS certificates reloaded");
        }
        Err(error) => {
            tracing::error!(%error, "TLS certificates not reloaded; the previous ones stay in use")
        }
    }
}

type ShardHandle = glommio::ExecutorJoinHandle<Result<(), String>>;

/// Starts one pinned executor per CPU, connected by the cross-shard mesh;
/// the metadata shard gets the topic registry. Returns their handles and
/// the senders that tell each to stop.
fn spawn_shards(
    config: &Arc<Config>,
    cpus: &[usize],
    registry: TopicRegistry,
    metrics: Option<std::net::TcpListener>,
    security_store: SecurityStore,
    tls: Option<(TlsAcceptor, Vec<mpsc::UnboundedReceiver<TlsAcceptor>>)>,
) -> Result<(Vec<ShardHandle>, Vec<oneshot::Sender<()>>), StartError> {
    // In a cluster the table comes from the controller's committed metadata.
    let table = match config.cluster {
        Some(_) => Arc::new(TopicTable::default()),
        None => registry.table(),
    };
    let (acceptor, mut reloads) = match tls {
        Some((acceptor, reloads)) => (Some(acceptor), reloads.into_iter().map(Some).collect()),
        None => (None, Vec::new()),
    };
    let mut registry = Some(registry);
    let mut metrics = metrics;
    let security = security_store.snapshot();
    let mut security_store = Some(security_store);
    let ready = Arc::new(AtomicUsize::new(0));
    let accepting = Arc::new(AtomicUsize::new(0));
    let mut stop_senders = Vec::new();
    let mut handles = Vec::new();
    let shards = ShardId::all(cpus.len()).zip(mesh::make_mesh(cpus.len()));
    for ((id, mesh), &cpu) in shards.zip(cpus) {
        let (stop, shutdown) = oneshot::channel();
        stop_senders.push(stop);
        let seed = ShardSeed {
            id,
            config: config.clone(),
            mesh,
            table: table.clone(),
            registry: registry.take_if(|_| id == METADATA_SHARD),
            security: security.clone(),
            security_store: security_store.take_if(|_| id == METADATA_SHARD),
            tls: acceptor
                .clone()
                .zip(reloads.get_mut(id.index()).and_then(Option::take)),
            shutdown,
            ready: ready.clone(),
            accepting: accepting.clone(),
            metrics: metrics.take_if(|_| id == METADATA_SHARD),
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .io_memory(EXECUTOR_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let outcome = shard_main(seed).await;
                if let Err(message) = &outcome {
                    // The other shards would wait for this one forever: stop the process.
                    eprintln!("ringlog: shard {id} failed: {message}");
                    std::process::exit(1);
                }
                outcome
            })
            .map_err(|e| StartError::Executor {
                shard: id,
                cpu,
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    Ok((handles, stop_senders))
}

/// One shard's life on its executor: open, wait for every shard, serve
/// until shutdown, then drain and close.
async fn shard_main(seed: ShardSeed) -> Result<(), String> {
    let ShardSeed {
        id,
        config,
        mesh,
        table,
        registry,
        security,
        security_store,
        tls,
        shutdown,
        ready,
        accepting,
        metrics,
    } = seed;
    let security = ShardSecurity::new(security, security_store);
    let shard = open_shard(id, config.clone(), mesh, registry, security).await?;
    if let Some(listener) = metrics {
        start_metrics(&shard, listener, accepting.clone())?;
    }
    if let (Some(cluster), Some(shard_cluster)) = (&config.cluster, &shard.cluster) {
        shard_cluster.replication.start(&shard);
        glommio::spawn_local(crate::cluster::coordinators::watch_leadership(
            shard.clone(),
        ))
        .detach();
        if id == METADATA_SHARD {
            let controller = crate::cluster::Controller::start(shard.clone(), cluster)?;
            shard_cluster.set_controller(controller);
        }
    }
    // Partitions open on first use: a shard serves once they are registered.
    shard.start_topics(table);
    // Accept only once every shard can serve the partitions it owns.
    ready.fetch_add(1, Ordering::SeqCst);
    while ready.load(Ordering::SeqCst) < shard.shard_count() {
        glommio::timer::sleep(READY_POLL_INTERVAL).await;
    }
    let mut bound = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let socket = TcpListener::bind(listener.address)
            .map_err(|e| format!("binding {} ({}): {e}", listener.address, listener.name))?;
        bound.push(socket);
    }
    tracing::info!(shard = id.index(), listeners = %listener_summary(&config), "accepting connections");
    accepting.fetch_add(1, Ordering::SeqCst);
    start_background(&shard)?;
    let stop_shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = shutdown.await;
        stop_shard.shutdown.start();
    })
    .detach();

    let tls = tls.map(|(acceptor, reloads)| {
        let tls = net::tls::ShardTls::new(acceptor);
        glommio::spawn_local(take_reloads(tls.clone(), reloads, id.index())).detach();
        tls
    });
    let handler = Rc::new(kafka::session::KafkaHandler::new(shard.clone()));
    let serving = bound.into_iter().enumerate().map(|(index, socket)| {
        let options = net::ServeOptions {
            shard: id.index(),
            listener: index,
            // Each listener counts its own connections against the bounds.
            connections_max: config.max_connections,
            connections_per_ip_max: config.max_connections_per_ip,
            drain_max: SHUTDOWN_DRAIN_MAX,
            tls: tls
                .clone()
                .filter(|_| config.listeners[index].protocol.uses_tls()),
        };
        // Each listener accepts in a task of its own: glommio keeps one more
        // waker each time a pending accept is polled, so an accept re-polled
        // whenever a sibling listener woke the shared task would pile them up
        // until the task's reference count overflows (~32k wakes).
        glommio::spawn_local(net::serve(
            socket,
            shard.shutdown.clone(),
            handler.clone(),
            options,
        ))
    });
    let drained = futures::future::join_all(serving)
        .await
        .into_iter()
        .all(|drained| drained);
    if !drained {
        tracing::warn!(
            shard = id.index(),
            "connections still busy after {SHUTDOWN_DRAIN_MAX:?}; closing logs anyway"
        );
    }
    shard.close_logs().await;
    if let Err(error) = shard.groups.close().await {
        tracing::error!(shard = id.index(), %error, "closing the group coordinator failed");
    }
    if let Err(error) = shard.transactions.close().await {
        tracing::error!(shard = id.index(), %error, "closing the transaction coordinator failed");
    }
    Ok(())
}

/// Swaps in each acceptor a SIGHUP reload sends; connections already open
/// keep their TLS session.
async fn take_reloads(
    tls: net::tls::ShardTls,
    mut reloads: mpsc::UnboundedReceiver<TlsAcceptor>,
    shard: usize,
) {
    while let Some(acceptor) = reloads.next().await {
        tls.replace(acceptor);
        tracing::debug!(shard, "new TLS handshakes use the reloaded certificates");
    }
}

/// `PLAINTEXT://127.0.0.1:9092, SASL_PLAINTEXT://0.0.0.0:9093 (SASL_PLAINTEXT)`
/// for log lines.
fn listener_summary(config: &Config) -> String {
    let parts: Vec<String> = config
        .listeners
        .iter()
        .map(|l| {
            if l.name == l.protocol.name() {
                format!("{}://{}", l.name, l.address)
            } else {
                format!("{}://{} ({})", l.name, l.address, l.protocol)
            }
        })
        .collect();
    parts.join(", ")
}

/// Checks the data directory on this shard's thread, opens its group
/// coordinator and connects it to the other shards.
async fn open_shard(
    id: ShardId,
    config: Arc<Config>,
    mesh: MeshEnds,
    registry: Option<TopicRegistry>,
    security: ShardSecurity,
) -> Result<Rc<Shard>, String> {
    let (mesh, inboxes) = mesh::Mesh::connect(mesh).await;
    let segment_files = open_files::segment_files_per_shard(
        config.open_files_max.unwrap_or(u64::MAX),
        mesh.shard_count(),
    );
    crate::storage::descriptors::set_budget(segment_files);
    // Refuse an unsafe data directory before serving; on every shard, since the
    // probe also primes glommio's per-thread polled-I/O detection.
    match probe_direct_io(&config.data_dir).await {
        Ok(()) => {}
        Err(ProbeError::Storage(error)) => return Err(error.to_string()),
        Err(ProbeError::Unsupported(reason)) if !config.allow_buffered_io => {
            return Err(crate::storage::Error::DirectIoUnavailable {
                path: config.data_dir.clone(),
                reason,
            }
            .to_string());
        }
        Err(ProbeError::Unsupported(reason)) => {
            tracing::warn!(shard = id.index(), %reason, "O_DIRECT unavailable; buffered I/O (development mode)");
        }
    }
    let group_config = GroupConfig {
        initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as u64,
        min_session_timeout_ms: config.group_min_session_timeout_ms,
        max_session_timeout_ms: config.group_max_session_timeout_ms,
        offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
        max_groups: config.max_groups_per_shard,
        ..GroupConfig::default()
    };
    let cluster = config
        .cluster
        .as_ref()
        .map(|c| crate::cluster::ShardCluster::new(c, &config.data_dir, id));
    // In a cluster the coordinator's log is the offsets topic.
    let offsets = cluster.as_ref().map(|c| {
        Rc::new(crate::cluster::coordinators::ShardOffsets {
            replication: c.replication.clone(),
            shard: RefCell::new(std::rc::Weak::new()),
            configured_partitions: config
                .cluster
                .as_ref()
                .map_or(1, |c| c.offsets_topic_num_partitions),
        })
    });
    let groups = match &offsets {
        Some(offsets) => GroupCoordinator::in_partitions(offsets.clone(), group_config),
        None => {
            GroupCoordinator::open(
                config.data_dir.join(GROUPS_DIR).join(format!("shard-{id}")),
                group_config,
            )
            .await
        }
    }
    .map_err(|e| format!("opening the group coordinator: {e}"))?;
    let txn_config = TxnConfig {
        max_timeout_ms: config.transaction_max_timeout_ms,
        id_expiration_ms: config.transactional_id_expiration_ms,
        ..TxnConfig::default()
    };
    let transactions = TxnCoordinator::open(
        &config
            .data_dir
            .join(TRANSACTIONS_DIR)
            .join(format!("shard-{id}")),
        txn_config,
    )
    .await
    .map_err(|e| format!("opening the transaction coordinator: {e}"))?;
    let producer_id_store = if id == METADATA_SHARD {
        Some(
            ProducerIdStore::load(&config.data_dir)
                .map_err(|e| format!("opening the producer id counter: {e}"))?,
        )
    } else {
        None
    };
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        mesh,
        topics: RefCell::new(Arc::new(TopicTable::default())),
        logs: RefCell::new(HashMap::new()),
        opened: Default::default(),
        openings: Default::default(),
        open_permits: Semaphore::new(super::opening::OPENS_IN_FLIGHT_MAX as u64),
        cache: BatchCache::new(config.batch_cache_bytes as usize),
        registry: registry.map(RefCell::new),
        admin_permit: Semaphore::new(1),
        shutdown: Rc::new(Shutdown::default()),
        groups,
        transactions,
        security,
        producer_ids: ProducerIds::new(),
        producer_id_store,
        cluster,
    });
    if let Some(offsets) = offsets {
        *offsets.shard.borrow_mut() = Rc::downgrade(&shard);
    }
    for inbox in inboxes {
        glommio::spawn_local(mesh::serve_inbox(shard.clone(), inbox)).detach();
    }
    Ok(shard)
}

/// Binds the metrics listener before any executor starts, so a port in use
/// is one clear message. A plain (not SO_REUSEPORT) socket: a second broker
/// on the same port is refused instead of sharing it.
fn bind_metrics(config: &Config) -> Result<Option<std::net::TcpListener>, StartError> {
    let Some(listen) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|source| StartError::MetricsListen { listen, source })?;
    tracing::info!(%listen, "serving metrics and health");
    Ok(Some(listener))
}

/// Serves `/metrics` and the health endpoints from this shard, in a
/// `Latency::NotImportant` queue: scrapes wait for Kafka requests.
fn start_metrics(
    shard: &Rc<Shard>,
    listener: std::net::TcpListener,
    accepting: Arc<AtomicUsize>,
) -> Result<(), String> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor is a bound, listening TCP socket that this
    // function owns (`into_raw_fd` gave up the std listener's ownership).
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let endpoint = Rc::new(crate::metrics::http::Endpoint {
        shard: shard.clone(),
        health: crate::metrics::http::Health {
            accepting,
            shard_count: shard.shard_count(),
            shutdown: shard.shutdown.clone(),
        },
        per_partition: shard.config.metrics_per_partition,
    });
    let queue =
        glommio::executor().create_task_queue(Shares::default(), Latency::NotImportant, "metrics");
    glommio::spawn_local_into(crate::metrics::http::serve(listener, endpoint), queue)
        .map_err(|e| e.to_string())?
        .detach();
    Ok(())
}

/// Starts the shard's background loops in a `Latency::NotImportant` queue.
fn start_background(shard: &Rc<Shard>) -> Result<(), String> {
    let queue = glommio::executor().create_task_queue(
        Shares::default(),
        Latency::NotImportant,
        "background",
    );
    glommio::spawn_local_into(background::retention_loop(shard.clone()), queue)
        .map_err(|e| e.to_string())?
        .detach();
    glommio::spawn_local_into(background::cleaner_loop(shard.clone()), queue)
        .map_err(|e| e.to_string())?
        .detach();
    glommio::spawn_local_into(background::idle_close_loop(shard.clone()), queue)
        .map_err(|e| e.to_string())?
        .detach();
    // Finishes transactions a crash left prepared, then aborts timed-out ones.
    glommio::spawn_local_into(kafka::transactions::coordinator_loop(shard.clone()), queue)
        .map_err(|e| e.to_string())?
        .detach();
    Ok(())
}
