//! Start-up and shutdown: one pinned executor per selected core, each with
//! its own listener (SO_REUSEPORT), partitions and group coordinator.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use super::background;
use super::exclusive::{self, DataDirLock};
use super::mesh::{self, MeshEnds};
use super::placement::{self, EXECUTOR_IO_MEMORY_BYTES};
use super::signals::{block_stop_signals, wait_for_stop_signals};
pub use super::startup::StartError;
use super::startup::{check_group_shards, resolve_data_dir, GROUPS_DIR};
use super::topics::{TopicRegistry, TopicTable};
use super::{Shard, ShardId, Shutdown, METADATA_SHARD};
use crate::config::Config;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::storage::BatchCache;
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
    shutdown: oneshot::Receiver<()>,
    ready: Arc<AtomicUsize>,
}

/// Runs the broker until SIGINT/SIGTERM, then shuts down cleanly.
pub fn run(mut config: Config) -> Result<(), StartError> {
    super::uring_probe::check()?;
    let cpus = placement::resolve_cpus(&config.cpus)?;
    placement::ensure_memlock(cpus.len())?;
    config.data_dir = resolve_data_dir(&config.data_dir)?;
    let _data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
    exclusive::check_listen_free(config.listen)?;
    check_group_shards(&config.data_dir.join(GROUPS_DIR), cpus.len())?;
    let registry = TopicRegistry::load(&config.data_dir, cpus.len(), &config.topic_defaults)?;
    let config = Arc::new(config);
    let signals = block_stop_signals();
    tracing::info!(shards = cpus.len(), ?cpus, listen = %config.listen, data_dir = %config.data_dir.display(), "starting");
    let (handles, stop_senders) = spawn_shards(&config, &cpus, registry)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_stop_signals(signals, stop_senders))
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

type ShardHandle = glommio::ExecutorJoinHandle<Result<(), String>>;

/// Starts one pinned executor per CPU, connected by the cross-shard mesh;
/// the metadata shard gets the topic registry. Returns their handles and
/// the senders that tell each to stop.
fn spawn_shards(
    config: &Arc<Config>,
    cpus: &[usize],
    registry: TopicRegistry,
) -> Result<(Vec<ShardHandle>, Vec<oneshot::Sender<()>>), StartError> {
    let table = registry.table();
    let mut registry = Some(registry);
    let ready = Arc::new(AtomicUsize::new(0));
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
            shutdown,
            ready: ready.clone(),
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
        shutdown,
        ready,
    } = seed;
    let shard = open_shard(id, config.clone(), mesh, registry).await?;
    shard
        .clone()
        .apply_topics(table)
        .await
        .map_err(|e| format!("opening partitions: {e}"))?;
    // Accept only once every shard can serve the partitions it owns.
    ready.fetch_add(1, Ordering::SeqCst);
    while ready.load(Ordering::SeqCst) < shard.shard_count() {
        glommio::timer::sleep(READY_POLL_INTERVAL).await;
    }
    let listener =
        TcpListener::bind(config.listen).map_err(|e| format!("binding {}: {e}", config.listen))?;
    tracing::info!(shard = id.index(), listen = %config.listen, "accepting connections");
    start_background(&shard)?;
    let stop_shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = shutdown.await;
        stop_shard.shutdown.start();
    })
    .detach();

    let options = net::ServeOptions {
        shard: id.index(),
        request_bytes_max: config.request_bytes_max as usize,
        connections_max: config.max_connections,
        drain_max: SHUTDOWN_DRAIN_MAX,
    };
    let handler = {
        let shard = shard.clone();
        Rc::new(move |frame, client_host| kafka::handle(shard.clone(), frame, client_host))
    };
    let drained = net::serve(listener, shard.shutdown.clone(), handler, options).await;
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
    Ok(())
}

/// Checks the data directory on this shard's thread, opens its group
/// coordinator and connects it to the other shards.
async fn open_shard(
    id: ShardId,
    config: Arc<Config>,
    mesh: MeshEnds,
    registry: Option<TopicRegistry>,
) -> Result<Rc<Shard>, String> {
    let (mesh, inboxes) = mesh::Mesh::connect(mesh).await;
    // Refuse an unsafe data directory before serving; on every shard, since the
    // probe also primes glommio's per-thread polled-I/O detection.
    if let Err(reason) = crate::storage::file::probe_direct_io(&config.data_dir).await {
        if !config.allow_buffered_io {
            return Err(crate::storage::Error::DirectIoUnavailable {
                path: config.data_dir.clone(),
                reason,
            }
            .to_string());
        }
        tracing::warn!(shard = id.index(), %reason, "O_DIRECT unavailable; buffered I/O (development mode)");
    }
    let group_config = GroupConfig {
        initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as u64,
        min_session_timeout_ms: config.group_min_session_timeout_ms,
        max_session_timeout_ms: config.group_max_session_timeout_ms,
        offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
        ..GroupConfig::default()
    };
    let groups = GroupCoordinator::open(
        config.data_dir.join(GROUPS_DIR).join(format!("shard-{id}")),
        group_config,
    )
    .await
    .map_err(|e| format!("opening the group coordinator: {e}"))?;
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        mesh,
        topics: RefCell::new(Arc::new(TopicTable::default())),
        logs: RefCell::new(HashMap::new()),
        cache: BatchCache::new(config.batch_cache_bytes as usize),
        registry: registry.map(RefCell::new),
        admin_permit: Semaphore::new(1),
        shutdown: Rc::new(Shutdown::default()),
        groups,
    });
    for inbox in inboxes {
        glommio::spawn_local(mesh::serve_inbox(shard.clone(), inbox)).detach();
    }
    Ok(shard)
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
    Ok(())
}
