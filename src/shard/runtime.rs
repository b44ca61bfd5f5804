//! Start-up and shutdown: one pinned executor per selected core, each with
//! its own listener (SO_REUSEPORT), partitions and group coordinator.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;
use glommio::net::TcpListener;
use glommio::sync::{Gate, Semaphore};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use super::exclusive::{self, DataDirLock};
use super::mesh::{self, MeshEnds};
use super::placement::{self, EXECUTOR_IO_MEMORY_BYTES};
use super::topics::{TopicRegistry, TopicTable};
use super::{Shard, Shutdown, METADATA_SHARD};
use crate::config::Config;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::storage::BatchCache;

/// How long a clean shutdown waits for in-flight requests before closing logs.
pub const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error(transparent)]
    Uring(#[from] super::uring_probe::UringError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Exclusive(#[from] super::exclusive::ExclusiveError),
    #[error(transparent)]
    Registry(#[from] super::topics::RegistryError),
    #[error("cannot start executor for shard {shard} on CPU {cpu}: {message}")]
    Executor {
        shard: usize,
        cpu: usize,
        message: String,
    },
    #[error(
        "consumer group offsets in {dir} were written by {found} shard(s) but {shards} are configured; \
         groups are placed by shard count, so start with {found} CPUs (--cpus) to keep them"
    )]
    GroupShards {
        dir: String,
        found: usize,
        shards: usize,
    },
    #[error("shard {shard} failed: {message}")]
    Shard { shard: usize, message: String },
}

/// Where each shard's group coordinator keeps its log, in `shard-<n>` folders.
const GROUPS_DIR: &str = "__groups";

/// Each group lives on `hash(group) % shards` and its offsets in that shard's
/// folder, so a different shard count would lose track of committed offsets:
/// refuse to start instead (partitions, unlike groups, move freely).
fn check_group_shards(dir: &std::path::Path, shards: usize) -> Result<(), StartError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let found = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("shard-")?
                .parse::<usize>()
                .ok()
        })
        .map(|n| n + 1)
        .max()
        .unwrap_or(0);
    if found == 0 || found == shards {
        return Ok(());
    }
    Err(StartError::GroupShards {
        dir: dir.display().to_string(),
        found,
        shards,
    })
}

/// Creates the data directory and returns its absolute, symlink-free path.
///
/// Resolved once here: glommio opens files and directories with `openat`
/// against no directory descriptor, so a relative path (the default
/// `./data`) fails there with EBADF, and the working directory of a
/// long-running process is not something to depend on anyway.
fn resolve_data_dir(path: &std::path::Path) -> Result<std::path::PathBuf, StartError> {
    let failed = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(failed)?;
    std::fs::canonicalize(path).map_err(failed)
}

/// Everything one shard needs to start; moved onto its executor thread.
struct ShardSeed {
    id: usize,
    config: Arc<Config>,
    mesh: MeshEnds,
    table: Arc<TopicTable>,
    registry: Option<TopicRegistry>,
    shutdown: oneshot::Receiver<()>,
    ready: Arc<AtomicUsize>,
}

/// Runs the broker until SIGINT/SIGTERM (or `stop` fires), then shuts down cleanly.
pub fn run(mut config: Config) -> Result<(), StartError> {
    super::uring_probe::check()?;
    let cpus = placement::resolve_cpus(&config.cpus)?;
    placement::ensure_memlock(cpus.len())?;
    config.data_dir = resolve_data_dir(&config.data_dir)?;
    let _data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
    exclusive::check_listen_free(config.listen)?;
    check_group_shards(&config.data_dir.join(GROUPS_DIR), cpus.len())?;
    let registry = TopicRegistry::load(&config.data_dir, cpus.len(), &config.topic_defaults)?;
    let table = registry.table();
    let config = Arc::new(config);
    let signals = block_stop_signals();
    let mut registry = Some(registry);
    let ready = Arc::new(AtomicUsize::new(0));
    let mut stop_senders = Vec::new();
    let mut handles = Vec::new();
    tracing::info!(shards = cpus.len(), ?cpus, listen = %config.listen, data_dir = %config.data_dir.display(), "starting");
    for (id, (mesh, &cpu)) in mesh::make_mesh(cpus.len())
        .into_iter()
        .zip(&cpus)
        .enumerate()
    {
        let (stop, shutdown) = oneshot::channel();
        stop_senders.push(stop);
        let seed = ShardSeed {
            id,
            config: config.clone(),
            mesh,
            table: table.clone(),
            registry: if id == METADATA_SHARD {
                registry.take()
            } else {
                None
            },
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
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_stop_signals(signals, stop_senders))
        .map_err(|e| StartError::Executor {
            shard: 0,
            cpu: 0,
            message: e.to_string(),
        })?;
    let mut failure = None;
    for (id, handle) in handles.into_iter().enumerate() {
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

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a set we own. Blocking here, before
    // any executor thread exists, makes every thread inherit the mask, so only
    // the signal thread's sigwait receives SIGINT/SIGTERM.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_stop_signals(set: libc::sigset_t, stop_senders: Vec<oneshot::Sender<()>>) {
    let mut signal = 0;
    // SAFETY: sigwait reads the set we own and writes the signal number.
    unsafe { libc::sigwait(&set, &mut signal) };
    tracing::info!(signal, "stop signal received, shutting down");
    for stop in stop_senders {
        let _ = stop.send(());
    }
    // A second signal means "now".
    unsafe { libc::sigwait(&set, &mut signal) };
    tracing::warn!(signal, "second stop signal, exiting immediately");
    std::process::exit(1);
}

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
        tracing::warn!(shard = id, %reason, "O_DIRECT unavailable; buffered I/O (development mode)");
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
        shutdown: Shutdown::default(),
        groups,
    });
    for inbox in inboxes {
        glommio::spawn_local(mesh::serve_inbox(shard.clone(), inbox)).detach();
    }
    shard
        .clone()
        .apply_topics(table)
        .await
        .map_err(|e| format!("opening partitions: {e}"))?;
    // Accept only once every shard can serve the partitions it owns.
    ready.fetch_add(1, Ordering::SeqCst);
    while ready.load(Ordering::SeqCst) < shard.shard_count() {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let listener =
        TcpListener::bind(config.listen).map_err(|e| format!("binding {}: {e}", config.listen))?;
    tracing::info!(shard = id, listen = %config.listen, "accepting connections");

    let background = glommio::executor().create_task_queue(
        Shares::default(),
        Latency::NotImportant,
        "background",
    );
    let retention_shard = shard.clone();
    glommio::spawn_local_into(
        async move { retention_loop(retention_shard).await },
        background,
    )
    .map_err(|e| e.to_string())?
    .detach();

    let stop_shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = shutdown.await;
        stop_shard.shutdown.start();
    })
    .detach();

    let connections = Gate::new();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::warn!(shard = id, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shard = shard.clone();
        match connections.spawn(crate::net::connection::serve(shard, stream)) {
            Ok(task) => {
                task.detach();
            }
            Err(error) => tracing::warn!(shard = id, %error, "cannot start connection task"),
        };
    }
    drop(listener);
    let drained = futures_lite::future::or(async { connections.close().await.is_ok() }, async {
        glommio::timer::sleep(SHUTDOWN_DRAIN_MAX).await;
        false
    })
    .await;
    if !drained {
        tracing::warn!(
            shard = id,
            "connections still busy after {SHUTDOWN_DRAIN_MAX:?}; closing logs anyway"
        );
    }
    shard.close_logs().await;
    if let Err(error) = shard.groups.close().await {
        tracing::error!(shard = id, %error, "closing the group coordinator failed");
    }
    Ok(())
}

async fn retention_loop(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.retention_check_interval_ms);
    loop {
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(interval).await;
                false
            },
            async {
                shard.shutdown.wait().await;
                true
            },
        )
        .await;
        if stopped {
            return;
        }
        shard.enforce_retention(now_ms()).await;
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
