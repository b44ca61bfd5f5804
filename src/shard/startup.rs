//! Checks made once, before any executor starts: the data directory, the
//! shard count its group offsets were written with, and what can go wrong.

use std::path::{Path, PathBuf};

use super::placement;
use super::ShardId;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error(transparent)]
    OpenFiles(#[from] super::open_files::OpenFilesError),
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
    #[error(transparent)]
    SecurityStore(#[from] crate::security::stored::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error("cannot start executor for shard {shard} on CPU {cpu}: {message}")]
    Executor {
        shard: ShardId,
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
    #[error(
        "cannot listen for metrics on {listen}: {source}; choose another --metrics-listen, or none"
    )]
    MetricsListen {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} failed: {message}")]
    Shard { shard: ShardId, message: String },
    #[error("cannot start the signal-handling thread: {0}")]
    SignalThread(#[source] std::io::Error),
}

/// Where each shard's group coordinator keeps its log, in `shard-<n>` folders.
pub const GROUPS_DIR: &str = "__groups";

/// Where each shard's transaction coordinator keeps its log, in `shard-<n>`
/// folders; transactional ids are placed like groups, so the same check applies.
pub const TRANSACTIONS_DIR: &str = "__transactions";

/// Each group lives on `hash(group) % shards` and its offsets in that shard's
/// folder, so a different shard count would lose track of committed offsets:
/// refuse to start instead (partitions, unlike groups, move freely).
pub fn check_group_shards(dir: &Path, shards: usize) -> Result<(), StartError> {
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
pub fn resolve_data_dir(path: &Path) -> Result<PathBuf, StartError> {
    let failed = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(failed)?;
    std::fs::canonicalize(path).map_err(failed)
}
