//! The open-file budget: the soft RLIMIT_NOFILE raised to what is allowed at
//! start-up, split into each shard's LRU of open segment files, and the
//! check that refuses topic creations the budget cannot serve before any
//! file is made.

/// Files kept out of the shards' segment-file LRUs: connections, the group
/// logs, index and meta writes, the O_DIRECT probes of partitions opening.
pub const OPEN_FILES_HEADROOM_MIN: u64 = 64;
/// The headroom is at least this fraction (1/N) of the budget.
pub const OPEN_FILES_HEADROOM_DIVISOR: u64 = 8;
/// Partitions served per open-file slot of the LRUs. Idle partitions hold no
/// descriptor, but an LRU much smaller than the partitions in use at once
/// would reopen a file for every read and write; this assumes at most one
/// partition in 16 is written or read at any moment.
pub const PARTITIONS_PER_OPEN_FILE_MAX: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum OpenFilesError {
    #[error(
        "--open-files-max {asked} is above the hard open-file limit (RLIMIT_NOFILE) of {hard}; \
         raise it with `ulimit -Hn` (or LimitNOFILE= in the systemd unit, nofile in /etc/security/limits.conf)"
    )]
    AboveHardLimit { asked: u64, hard: u64 },
    #[error("cannot set the open-file limit (RLIMIT_NOFILE) to {asked}: {source}")]
    Set { asked: u64, source: std::io::Error },
}

/// Raises the soft RLIMIT_NOFILE to `asked` (default: the hard limit) and
/// returns the budget the broker plans with.
pub fn raise_limit(asked: Option<u64>) -> Result<u64, OpenFilesError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(OpenFilesError::Set {
            asked: asked.unwrap_or(0),
            source: std::io::Error::last_os_error(),
        });
    }
    let hard = limit.rlim_max;
    let target = match asked {
        Some(asked) if hard != libc::RLIM_INFINITY && asked > hard => {
            return Err(OpenFilesError::AboveHardLimit { asked, hard })
        }
        Some(asked) => asked,
        // The kernel caps descriptors at fs.nr_open even when the hard limit is infinite.
        None if hard == libc::RLIM_INFINITY => nr_open().unwrap_or(limit.rlim_cur),
        None => hard,
    };
    if target != limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(OpenFilesError::Set {
                asked: target,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(target)
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Open segment files each of `shards` shards may keep (its LRU budget).
pub fn segment_files_per_shard(budget: u64, shards: usize) -> usize {
    let shared = budget.saturating_sub(headroom(budget));
    usize::try_from(shared / shards.max(1) as u64).unwrap_or(usize::MAX)
}

fn headroom(budget: u64) -> u64 {
    (budget / OPEN_FILES_HEADROOM_DIVISOR).max(OPEN_FILES_HEADROOM_MIN)
}

/// Whether `budget` open files can serve `now` partitions plus `new` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub budget: u64,
    pub now: u64,
    pub new: u64,
}

impl Admission {
    /// Partitions the budget serves in all.
    pub fn capacity(&self) -> u64 {
        self.budget
            .saturating_sub(headroom(self.budget))
            .saturating_mul(PARTITIONS_PER_OPEN_FILE_MAX)
    }

    pub fn fits(&self) -> bool {
        self.now.saturating_add(self.new) <= self.capacity()
    }

    /// Partitions that would still fit.
    pub fn partitions_left(&self) -> u64 {
        self.capacity().saturating_sub(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_partitions_per_open_file_beside_the_headroom() {
        let admission = |now, new| Admission {
            budget: 4096,
            now,
            new,
        };
        assert_eq!(admission(0, 0).capacity(), (4096 - 512) * 16);
        assert!(admission(30_000, 20_000).fits());
        assert!(!admission(50_000, 8_000).fits());
        assert_eq!(admission(50_000, 0).partitions_left(), 57_344 - 50_000);
        let small = Admission {
            budget: 100,
            now: 0,
            new: 1,
        };
        assert_eq!(small.capacity(), 36 * 16, "the minimum headroom counts");
        assert_eq!(segment_files_per_shard(4096, 2), 1792);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let budget = raise_limit(None).expect("raising to the hard limit is allowed");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, budget);
    }
}
