//! The start-up capability check: can this process use io_uring, and does the
//! kernel implement the operations the shards depend on? Failing here gives a
//! clear message instead of an executor failing mid-start.

use io_uring::{opcode, register::Probe, IoUring};

/// Operations the storage and network paths submit through glommio.
const REQUIRED_OPS: &[(u8, &str)] = &[
    (opcode::Read::CODE, "read"),
    (opcode::Write::CODE, "write"),
    (opcode::Fsync::CODE, "fsync"),
    (opcode::Accept::CODE, "accept"),
    (opcode::Send::CODE, "send"),
    (opcode::Recv::CODE, "recv"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::AsyncCancel::CODE, "cancel"),
];

#[derive(Debug, thiserror::Error)]
pub enum UringError {
    #[error(
        "io_uring is not available to this process ({0}); ringlog needs Linux 5.8+ with io_uring enabled \
         (check sysctl kernel.io_uring_disabled and container seccomp profiles)"
    )]
    Unavailable(std::io::Error),
    #[error("this kernel's io_uring lacks {0}; ringlog needs Linux 5.8 or newer")]
    MissingOps(String),
}

/// Checks io_uring and the operations ringlog needs.
pub fn check() -> Result<(), UringError> {
    let ring = IoUring::new(4).map_err(UringError::Unavailable)?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(UringError::Unavailable)?;
    let missing: Vec<&str> = REQUIRED_OPS
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UringError::MissingOps(missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_supports_what_ringlog_needs() {
        super::check().expect("the development and CI machines run io_uring");
    }
}
