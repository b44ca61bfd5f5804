//! Which cores the shards run on: a CPU list, a NUMA node's CPUs, or every
//! online CPU; and whether the locked-memory limit allows that many executors.

use std::path::Path;

use crate::config::{parse_cpu_list, CpuSelection};

/// Memory each executor registers with io_uring for DMA buffers.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 1024 * 1024;
/// Locked memory an executor needs beyond its I/O memory (rings and buffers).
pub const EXECUTOR_LOCKED_OVERHEAD_BYTES: u64 = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("cannot read the online CPUs ({path}): {source}")]
    ReadTopology {
        path: String,
        source: std::io::Error,
    },
    #[error("CPU {0} is not online on this machine (online: {1})")]
    CpuOffline(usize, String),
    #[error("NUMA node {0} does not exist or has no CPUs")]
    NumaNode(usize),
    #[error("invalid CPU list in {path}: {text:?}")]
    Topology { path: String, text: String },
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {have_kib} KiB but {shards} shard(s) need {need_kib} KiB; \
         raise it with `ulimit -l {need_kib}` (or LimitMEMLOCK= in the systemd unit, memlock in /etc/security/limits.conf)"
    )]
    MemlockTooLow {
        have_kib: u64,
        need_kib: u64,
        shards: usize,
    },
}

fn read_cpu_list(path: &str) -> Result<Vec<usize>, PlacementError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlacementError::ReadTopology {
        path: path.to_string(),
        source,
    })?;
    parse_cpu_list(text.trim()).map_err(|_| PlacementError::Topology {
        path: path.to_string(),
        text,
    })
}

/// Resolves the selection to concrete, online CPU numbers.
pub fn resolve_cpus(selection: &CpuSelection) -> Result<Vec<usize>, PlacementError> {
    let online_path = "/sys/devices/system/cpu/online";
    let online = read_cpu_list(online_path)?;
    match selection {
        CpuSelection::AllOnline => Ok(online),
        CpuSelection::List(cpus) => {
            if let Some(cpu) = cpus.iter().find(|c| !online.contains(c)) {
                let text = std::fs::read_to_string(online_path).unwrap_or_default();
                return Err(PlacementError::CpuOffline(*cpu, text.trim().to_string()));
            }
            Ok(cpus.clone())
        }
        CpuSelection::NumaNode(node) => {
            let path = format!("/sys/devices/system/node/node{node}/cpulist");
            if !Path::new(&path).exists() {
                return Err(PlacementError::NumaNode(*node));
            }
            let cpus: Vec<usize> = read_cpu_list(&path)?
                .into_iter()
                .filter(|c| online.contains(c))
                .collect();
            if cpus.is_empty() {
                return Err(PlacementError::NumaNode(*node));
            }
            Ok(cpus)
        }
    }
}

/// Checks RLIMIT_MEMLOCK for `shards` executors, raising the soft limit to the
/// hard one when that is enough.
pub fn ensure_memlock(shards: usize) -> Result<(), PlacementError> {
    let need = shards as u64 * (EXECUTOR_IO_MEMORY_BYTES as u64 + EXECUTOR_LOCKED_OVERHEAD_BYTES);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(()); // Unknown limit: let the executors report what fails.
    }
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= need {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= need {
        let raised = libc::rlimit {
            rlim_cur: need,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(PlacementError::MemlockTooLow {
        have_kib: limit.rlim_cur / 1024,
        need_kib: need.div_ceil(1024),
        shards,
    })
}
