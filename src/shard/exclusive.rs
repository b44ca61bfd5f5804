//! Keeps a second broker away from this one's data directory and port.
//!
//! Shards bind with SO_REUSEPORT, which would also let another process on the
//! same port silently take a share of the connections; and two brokers on one
//! data directory would corrupt each other's logs.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file in the data directory, as Kafka names its own.
pub const LOCK_FILE: &str = ".lock";
/// How long the start-up probe waits for something already listening.
const LISTEN_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a listener found at start-up may take to go away before the
/// address is refused. A broker killed a moment ago keeps accepting for
/// 10-20 ms after its exit, while the kernel tears down its io_uring rings
/// (which hold the listening socket); a supervisor restarts it within that.
pub const LISTENER_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two probes while waiting for a listener to go away. Each
/// probe that a listener does not accept stays in its backlog, so the probes
/// within the timeout are kept well under the smallest usual backlog (128).
const LISTENER_DRAIN_POLL: Duration = Duration::from_millis(50);
const _: () = assert!(LISTENER_DRAIN_TIMEOUT.as_millis() / LISTENER_DRAIN_POLL.as_millis() <= 64);

#[derive(Debug, thiserror::Error)]
pub enum ExclusiveError {
    #[error("data directory {dir} is in use by another broker{holder} (lock file {lock})")]
    DataDirInUse {
        dir: String,
        lock: String,
        holder: String,
    },
    #[error("cannot lock data directory {dir}: {source}")]
    Lock { dir: String, source: std::io::Error },
    #[error(
        "{listen} is already accepting connections (another broker?); choose another --listen"
    )]
    ListenInUse { listen: SocketAddr },
}

/// An exclusive `flock` on `<data>/.lock`, held while the value lives (the
/// kernel drops it when the process dies, so a crash leaves no stale lock).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<DataDirLock, ExclusiveError> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let lock_error = |source| ExclusiveError::Lock {
            dir: dir.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_error)?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(ExclusiveError::DataDirInUse {
                    dir: dir.display().to_string(),
                    lock: path.display().to_string(),
                    holder,
                });
            }
            return Err(lock_error(error));
        }
        file.set_len(0).map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Refuses a listen address where something still accepts connections after
/// [`LISTENER_DRAIN_TIMEOUT`]. Called with the data directory's lock held,
/// so a listener found here is not a live broker on this directory: most
/// likely the socket of one that has just died.
pub fn check_listen_free(listen: SocketAddr) -> Result<(), ExclusiveError> {
    let deadline = Instant::now() + LISTENER_DRAIN_TIMEOUT;
    let mut logged = false;
    while is_accepting(listen) {
        if Instant::now() >= deadline {
            return Err(ExclusiveError::ListenInUse { listen });
        }
        if !logged {
            tracing::info!(%listen, timeout = ?LISTENER_DRAIN_TIMEOUT, "something accepts on the listen address; waiting for it to close (a broker that has just exited?)");
            logged = true;
        }
        std::thread::sleep(LISTENER_DRAIN_POLL);
    }
    Ok(())
}

/// Whether a connection to `listen` (loopback for a wildcard address) succeeds.
fn is_accepting(listen: SocketAddr) -> bool {
    let probe = match listen.ip() {
        ip if ip.is_unspecified() && listen.is_ipv4() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port()))
        }
        ip if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    };
    listen.port() != 0 && TcpStream::connect_timeout(&probe, LISTEN_PROBE_TIMEOUT).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        match DataDirLock::acquire(dir.path()) {
            Err(ExclusiveError::DataDirInUse { holder, .. }) => {
                assert_eq!(holder, format!(" (pid {})", std::process::id()));
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once released");
    }

    #[test]
    fn a_listening_address_is_refused_and_a_free_one_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = listener.local_addr().expect("addr");
        assert!(matches!(
            check_listen_free(taken),
            Err(ExclusiveError::ListenInUse { .. })
        ));
        drop(listener);
        check_listen_free(taken).expect("free after close");
    }

    #[test]
    fn a_listener_that_closes_within_the_drain_timeout_is_waited_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = listener.local_addr().expect("addr");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(LISTENER_DRAIN_TIMEOUT / 10);
            drop(listener);
        });
        check_listen_free(taken).expect("free once the listener closed");
        closer.join().expect("the closing thread ends");
    }
}
