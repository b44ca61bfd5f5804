//! Harness shared by the end-to-end tests: a real `ringlog` broker process on its
//! own port and data directory, real Kafka clients (librdkafka through rdkafka),
//! and a raw Kafka protocol client for hand-built and corrupted requests.
//!
//! # Layout
//!
//! - this file: [`Broker`] (start, stop, restart, SIGKILL, logs) and [`BrokerBuilder`].
//! - [`clients`]: rdkafka producer, consumer and admin helpers with bounded waits.
//! - [`checker`]: a Jepsen-style checker of what clients saw against the healed log and every replica.
//! - [`cluster`]: several brokers as one cluster (node ids, controller quorum, cluster ports), and their faults.
//! - [`metrics`]: GETs of the metrics and health endpoints, and the text parsed.
//! - [`netns`]: one network namespace per broker, and partitions between them.
//! - [`raw`]: a blocking Kafka protocol client over `std::net::TcpStream`.
//! - [`python`]: the Python interpreter with confluent-kafka and aiokafka.
//! - [`skip`]: how a test that cannot run says so.
//! - [`txn`]: raw transactional requests (InitProducerId, AddPartitionsToTxn, EndTxn).
//! - [`workload`]: producers and consumers under faults, recording into a checker history.
//!
//! Every wait is bounded by a named constant; a test never hangs on a dead broker.
//!
//! Run one theme with `cargo test -j 2 --test broker_topics` (or `broker_*`).
//! The broker runs with `RUST_LOG=info` unless the test run sets `RUST_LOG`;
//! its log is printed when a test fails.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

pub mod checker;
pub mod clients;
pub mod cluster;
pub mod metrics;
pub mod netns;
pub mod pki;
pub mod python;
pub mod raw;
pub mod skip;
pub mod txn;
pub mod workload;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a broker may take from spawn until its port accepts connections.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker may take to exit after SIGTERM or SIGINT.
pub const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker may take to exit after SIGKILL.
const BROKER_KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readiness probes of the listener.
const READINESS_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeout of one readiness probe connection.
const READINESS_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// First starts retried on a fresh port when the broker exits before accepting
/// (another process may have taken the port between probe and bind).
const FIRST_START_ATTEMPTS_MAX: usize = 3;
/// The most of the broker's log printed when a test fails.
const LOG_PRINT_BYTES_MAX: u64 = 64 * 1024;
/// What Rust's panic handler writes; a broker must never log it.
const PANIC_MARKER: &str = "panicked at";
/// What a shard logs once it accepts on the listener. Readiness waits for it
/// as well as for a connection: a broker killed a moment ago may still
/// accept on the port while the kernel tears it down.
const ACCEPTING_MARKER: &str = "accepting connections";
/// `RUST_LOG` for the broker unless the test run sets one.
const BROKER_LOG_FILTER_DEFAULT: &str = "info";

/// Path of the broker binary cargo built for this test run.
pub fn broker_binary() -> &'static str {
    env!("CARGO_BIN_EXE_ringlog")
}

/// Ports handed out in this test process, never handed out twice: brokers bind
/// with SO_REUSEPORT, so two brokers on one port would silently share it.
static PORTS_HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1 not yet used by another broker of this process.
pub fn free_port() -> u16 {
    const PORT_ATTEMPTS_MAX: usize = 64;
    for _ in 0..PORT_ATTEMPTS_MAX {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 must work");
        let port = listener
            .local_addr()
            .expect("a bound listener has a local address")
            .port();
        drop(listener);
        let mut guard = PORTS_HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no unused free port after {PORT_ATTEMPTS_MAX} attempts");
}

/// The CPUs this process may run on (sched_getaffinity), lowest first.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for pid 0 (us).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// A `--cpus` list of two allowed CPUs, for brokers with two shards; `None`
/// (and the test recorded as skipped) where this process may use only one.
pub fn two_cpus(test: &str) -> Option<String> {
    let cpus = allowed_cpus();
    match cpus.as_slice() {
        [first, second, ..] => Some(format!("{first},{second}")),
        _ => {
            skip::skip(
                test,
                &format!("needs two CPUs, this process may use {cpus:?}"),
            );
            None
        }
    }
}

/// A broker with two shards, on two allowed CPUs; `None` (and the test
/// recorded as skipped) where this process may use only one.
pub fn two_shard_broker(test: &str) -> Option<Broker> {
    let cpus = two_cpus(test)?;
    Some(Broker::builder().cpus(&cpus).start())
}

/// One CPU for a single-shard broker. Tests of one file run in parallel, so
/// brokers are spread over the allowed CPUs instead of all pinned to the first.
fn next_single_cpu() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cpus = allowed_cpus();
    let index = NEXT.fetch_add(1, Ordering::Relaxed) % cpus.len();
    cpus[index].to_string()
}

/// How a broker is started. `Broker::builder().cpus("0-1").start()`.
#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    cpus: Option<String>,
    extra_args: Vec<String>,
    data_dir: Option<PathBuf>,
    use_config_file: bool,
    relative_data_dir: bool,
    no_flags: bool,
    metrics: bool,
    open_files_limit: Option<u64>,
    /// Bound on start-up and on a clean stop (default: the named constants).
    lifecycle_timeout: Option<Duration>,
    /// Environment variables of the broker process.
    envs: Vec<(String, String)>,
    /// The IPv4 address the client listener binds (default 127.0.0.1).
    host: Option<String>,
    /// A command the broker is started through, e.g. `ip netns exec NS`.
    launcher: Vec<String>,
}

/// Where a broker started with no flags listens (the built-in default).
pub const DEFAULT_PORT: u16 = 9092;

impl BrokerBuilder {
    /// `--cpus` value; default: one allowed CPU.
    pub fn cpus(mut self, cpus: &str) -> Self {
        self.cpus = Some(cpus.to_string());
        self
    }

    /// `--default-partitions N`.
    pub fn default_partitions(self, partitions: u32) -> Self {
        self.arg("--default-partitions")
            .arg(&partitions.to_string())
    }

    /// `--auto-create-topics true|false`.
    pub fn auto_create_topics(self, enabled: bool) -> Self {
        self.arg("--auto-create-topics")
            .arg(if enabled { "true" } else { "false" })
    }

    /// Any further command-line argument, passed after the harness's own.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// An environment variable for the broker process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.envs.push((name.to_string(), value.to_string()));
        self
    }

    /// Listen for clients on `host` (an IPv4 address) instead of 127.0.0.1.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Start the broker through `launcher` (its program and arguments come
    /// before the broker's), e.g. `["ip", "netns", "exec", "NS"]`. The
    /// launcher must exec the broker, so that signals reach it.
    pub fn launcher(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Use this data directory (it may not exist yet) instead of a fresh temporary one.
    pub fn data_dir(mut self, path: &Path) -> Self {
        self.data_dir = Some(path.to_path_buf());
        self
    }

    /// Pass `listen` and `data_dir` in a TOML file given with `--config`
    /// instead of as flags.
    pub fn use_config_file(mut self) -> Self {
        self.use_config_file = true;
        self
    }

    /// Give the data directory as `data`, relative to the broker's working
    /// directory (its temporary folder), instead of as an absolute path.
    pub fn relative_data_dir(mut self) -> Self {
        self.relative_data_dir = true;
        self
    }

    /// Serve metrics on a free port of its own ([`Broker::metrics_addr`]);
    /// without this the harness passes `--metrics-listen none`, so brokers
    /// started in parallel never meet on the default port.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Start `ringlog` with no arguments at all, as a newcomer does: it then
    /// listens on [`DEFAULT_PORT`], uses every online CPU and keeps its data
    /// in `./data` of its working directory (its temporary folder).
    pub fn no_flags(mut self) -> Self {
        self.no_flags = true;
        self
    }

    /// Run the broker under this open-file limit (soft and hard
    /// RLIMIT_NOFILE, as `prlimit --nofile=N:N` sets it).
    pub fn open_files_limit(mut self, limit: u64) -> Self {
        self.open_files_limit = Some(limit);
        self
    }

    /// Wait up to `timeout` for start-up and for a clean stop instead of
    /// [`BROKER_START_TIMEOUT`] and [`BROKER_STOP_TIMEOUT`] (brokers that open
    /// or close tens of thousands of partitions).
    pub fn lifecycle_timeout(mut self, timeout: Duration) -> Self {
        self.lifecycle_timeout = Some(timeout);
        self
    }

    /// Starts the broker and waits until its port accepts connections.
    pub fn start(self) -> Broker {
        let work_dir = tempfile::Builder::new()
            .prefix("ringlog-test-")
            .tempdir()
            .expect("creating a temporary directory must work");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| work_dir.path().join("data"));
        let port = if self.no_flags {
            DEFAULT_PORT
        } else {
            free_port()
        };
        let cpus = self.cpus.clone().unwrap_or_else(next_single_cpu);
        let log_path = work_dir.path().join("broker.log");
        let metrics_port = self.metrics.then(free_port);
        let mut broker = Broker {
            child: None,
            port,
            metrics_port,
            data_dir,
            log_path,
            cpus,
            builder: self,
            work_dir,
            starts: 0,
            log_start: 0,
        };
        let mut last_error = String::new();
        for _ in 0..FIRST_START_ATTEMPTS_MAX {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                // Perhaps the port was taken after we probed it: try another.
                Err(StartError::Exited(error)) if !broker.builder.no_flags => {
                    last_error = error;
                    broker.port = free_port();
                    broker.metrics_port = broker.builder.metrics.then(free_port);
                }
                Err(StartError::Exited(error)) => {
                    last_error = error;
                    break;
                }
                // A broker that hangs at start-up would hang again: no retry.
                Err(StartError::NotAccepting(error)) => {
                    last_error = error;
                    break;
                }
            }
        }
        panic!(
            "broker did not start: {last_error}\n--- broker log ---\n{}",
            broker.log_tail()
        );
    }
}

/// A running `ringlog serve` process with its own port and data directory.
/// Dropping it kills the process; if the test is failing, the broker's log is printed.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    /// The metrics listener's port, when the builder asked for one.
    metrics_port: Option<u16>,
    data_dir: PathBuf,
    log_path: PathBuf,
    cpus: String,
    builder: BrokerBuilder,
    /// Holds the log, the config file and (by default) the data directory.
    work_dir: TempDir,
    starts: u32,
    /// Length of the log when the current process was started.
    log_start: u64,
}

impl Broker {
    /// A broker builder with the harness defaults (one CPU, temporary data directory).
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            cpus: None,
            extra_args: Vec::new(),
            data_dir: None,
            use_config_file: false,
            relative_data_dir: false,
            no_flags: false,
            metrics: false,
            open_files_limit: None,
            lifecycle_timeout: None,
            envs: Vec::new(),
            host: None,
            launcher: Vec::new(),
        }
    }

    /// Starts a broker with the harness defaults.
    pub fn start() -> Broker {
        Broker::builder().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip(), self.port))
    }

    /// The address the client listener binds.
    pub fn ip(&self) -> std::net::Ipv4Addr {
        self.builder
            .host
            .as_deref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |host| {
                host.parse().expect("the builder's host is an IPv4 address")
            })
    }

    /// Where `/metrics` and the health endpoints answer (builder's `metrics()`).
    pub fn metrics_addr(&self) -> SocketAddr {
        let port = self
            .metrics_port
            .expect("the broker was built with .metrics()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.ip(), self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id of the running broker.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the broker wrote to stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The end of the broker's log, at most `LOG_PRINT_BYTES_MAX` bytes.
    pub fn log_tail(&self) -> String {
        let Ok(mut file) = File::open(&self.log_path) else {
            return String::from("(no log file)");
        };
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = length.saturating_sub(LOG_PRINT_BYTES_MAX);
        let _ = file.seek(SeekFrom::Start(start));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The first panic in the broker's log (the "panicked at" line and the
    /// message after it), if any.
    pub fn logged_panic(&self) -> Option<String> {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let at = lines.iter().position(|line| line.contains(PANIC_MARKER))?;
        Some(lines[at..lines.len().min(at + 2)].join("\n"))
    }

    /// Whether the current process (since its start) has logged `text`.
    fn logged_since_start(&self, text: &str) -> bool {
        let Ok(mut file) = File::open(&self.log_path) else {
            return false;
        };
        let _ = file.seek(SeekFrom::Start(self.log_start));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).contains(text)
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
        }
    }

    /// Sends SIGTERM and waits for a clean exit; panics if it does not come in time.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM or SIGINT) and waits for the process to exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("stop needs a running broker");
        send_signal(&child, signal);
        let timeout = self
            .builder
            .lifecycle_timeout
            .unwrap_or(BROKER_STOP_TIMEOUT);
        match wait_bounded(&mut child, timeout) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = wait_bounded(&mut child, BROKER_KILL_TIMEOUT);
                panic!(
                    "broker did not exit within {timeout:?} of signal {signal}\n--- broker log ---\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// SIGTERM, wait for exit 0, start again on the same port and data directory.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "broker exited with {status} on SIGTERM\n--- broker log ---\n{}",
            self.log_tail()
        );
        self.start_again();
    }

    /// SIGKILL without warning, and reap the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&child, libc::SIGKILL);
            assert!(
                wait_bounded(&mut child, BROKER_KILL_TIMEOUT).is_some(),
                "broker did not die within {BROKER_KILL_TIMEOUT:?} of SIGKILL"
            );
        }
    }

    /// SIGSTOP: the process stays, frozen, until [`Broker::resume`].
    pub fn pause(&mut self) {
        let child = self.child.as_ref().expect("pause needs a running broker");
        send_signal(child, libc::SIGSTOP);
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&mut self) {
        let child = self.child.as_ref().expect("resume needs a running broker");
        send_signal(child, libc::SIGCONT);
    }

    /// Replaces the extra arguments of the next start.
    pub fn set_extra_args(&mut self, args: &[&str]) {
        self.builder.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// The open-file limit of the next start (see [`BrokerBuilder::open_files_limit`]).
    pub fn set_open_files_limit(&mut self, limit: u64) {
        self.builder.open_files_limit = Some(limit);
    }

    /// Starts the process again and returns why it exited when it does not
    /// come up (for tests of refused start-ups).
    pub fn try_start_again(&mut self) -> Result<(), String> {
        assert!(
            self.child.is_none(),
            "try_start_again needs a stopped broker"
        );
        match self.spawn_and_wait() {
            Ok(()) => Ok(()),
            Err(StartError::Exited(error) | StartError::NotAccepting(error)) => Err(error),
        }
    }

    /// Starts the process again (after `stop` or `kill9`) on the same port and directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again needs a stopped broker");
        if let Err(StartError::Exited(error) | StartError::NotAccepting(error)) =
            self.spawn_and_wait()
        {
            panic!(
                "broker did not restart: {error}\n--- broker log ---\n{}",
                self.log_tail()
            );
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        self.spawn_process().map_err(StartError::Exited)?;
        self.wait_until_accepting()
    }

    fn spawn_process(&mut self) -> Result<(), String> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("opening the broker log: {e}"))?;
        let args = self.command_args()?;
        let _ = writeln!(
            log,
            "=== start {} on port {}: ringlog {} ===",
            self.starts,
            self.port,
            args.join(" ")
        );
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_for_stdout = log
            .try_clone()
            .map_err(|e| format!("cloning the log file: {e}"))?;
        // Readiness needs the runtime's info lines, whatever the run's filter.
        let filter = std::env::var("RUST_LOG").map_or_else(
            |_| BROKER_LOG_FILTER_DEFAULT.to_string(),
            |filter| format!("{filter},ringlog::shard::runtime=info"),
        );
        let mut command = match self.builder.launcher.split_first() {
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(broker_binary());
                command
            }
            None => Command::new(broker_binary()),
        };
        if let Some(limit) = self.builder.open_files_limit {
            limit_open_files(&mut command, limit);
        }
        let child = command
            .args(&args)
            .current_dir(self.work_dir.path())
            .env("RUST_LOG", filter)
            // Plain text in the log file, without terminal colour codes.
            .env("NO_COLOR", "1")
            .envs(self.builder.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", broker_binary()))?;
        self.child = Some(child);
        Ok(())
    }

    fn command_args(&self) -> Result<Vec<String>, String> {
        if self.builder.no_flags {
            return Ok(Vec::new());
        }
        let mut args = vec!["serve".to_string()];
        let listen = format!("{}:{}", self.ip(), self.port);
        let data_dir = if self.builder.relative_data_dir {
            let relative = self
                .data_dir
                .strip_prefix(self.work_dir.path())
                .map_err(|_| "a relative data directory must be inside the work directory")?;
            relative.display().to_string()
        } else {
            self.data_dir.display().to_string()
        };
        let metrics_listen = self
            .metrics_port
            .map_or_else(|| "none".to_string(), |port| format!("127.0.0.1:{port}"));
        if self.builder.use_config_file {
            let config_path = self.work_dir.path().join("ringlog.toml");
            let text = format!(
                "listen = {listen:?}\ndata_dir = {data_dir:?}\nmetrics_listen = {metrics_listen:?}\n"
            );
            std::fs::write(&config_path, text)
                .map_err(|e| format!("writing the config file: {e}"))?;
            args.push("--config".into());
            args.push(config_path.display().to_string());
        } else {
            args.extend(["--listen".into(), listen]);
            args.extend(["--data-dir".into(), data_dir]);
            args.extend(["--metrics-listen".into(), metrics_listen]);
        }
        args.extend(["--cpus".into(), self.cpus.clone()]);
        args.extend(self.builder.extra_args.iter().cloned());
        Ok(args)
    }

    fn wait_until_accepting(&mut self) -> Result<(), StartError> {
        let timeout = self
            .builder
            .lifecycle_timeout
            .unwrap_or(BROKER_START_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let addr = self.addr();
        loop {
            let child = self.child.as_mut().expect("spawned just before");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(StartError::Exited(format!(
                    "broker exited with {status} before accepting on {addr}"
                )));
            }
            if self.logged_since_start(ACCEPTING_MARKER)
                && TcpStream::connect_timeout(&addr, READINESS_CONNECT_TIMEOUT).is_ok()
            {
                return Ok(());
            }
            // A panicked shard thread may leave the process alive but never listening.
            if let Some(panic) = self.logged_panic() {
                let child = self.child.as_mut().expect("checked above");
                let _ = child.kill();
                let _ = wait_bounded(child, BROKER_KILL_TIMEOUT);
                self.child = None;
                return Err(StartError::NotAccepting(format!(
                    "broker panicked during start-up: {panic}"
                )));
            }
            let child = self.child.as_mut().expect("checked above");
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = wait_bounded(child, BROKER_KILL_TIMEOUT);
                self.child = None;
                return Err(StartError::NotAccepting(format!(
                    "port {addr} not accepting after {timeout:?}"
                )));
            }
            thread::sleep(READINESS_POLL_INTERVAL);
        }
    }
}

/// Set, a failed test leaves each broker's directory (log and data) behind.
const KEEP_FAILED_VAR: &str = "RINGLOG_TEST_KEEP_FAILED";

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_bounded(&mut child, BROKER_KILL_TIMEOUT);
        }
        if thread::panicking() {
            eprintln!(
                "--- broker log ({}) ---\n{}\n--- end of broker log ---",
                self.log_path.display(),
                self.log_tail()
            );
            // The whole log and data stay for a post-mortem when asked.
            if std::env::var_os(KEEP_FAILED_VAR).is_some() {
                self.work_dir.disable_cleanup(true);
                eprintln!("kept {}", self.work_dir.path().display());
            }
        } else if let Some(panic) = self.logged_panic() {
            // A test that passed still fails if the broker panicked on the way.
            panic!(
                "the broker panicked during the test: {panic}\n--- broker log ({}) ---\n{}",
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Why a start attempt failed.
enum StartError {
    /// The process could not be spawned or exited before accepting.
    Exited(String),
    /// The process kept running but its port did not accept in time (it was killed).
    NotAccepting(String),
}

fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a child pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid; the child is not reaped yet, so the pid is ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits for the child to exit, at most `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// What a bounded run of a command left: its exit status (`None` if it was
/// still running at the limit and was killed) and its output.
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` (stdin closed, output to files) for at most `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Finished {
    run_bounded_with_input(command, None, timeout)
}

/// Runs `command` with `input` written to its stdin (closed when `None`),
/// output to files, for at most `timeout`.
pub fn run_bounded_with_input(
    command: &mut Command,
    input: Option<&str>,
    timeout: Duration,
) -> Finished {
    let out = tempfile::tempdir().expect("creating a temporary directory must work");
    let (stdout_path, stderr_path) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(File::create(&stdout_path).expect("creating a file must work"))
        .stderr(File::create(&stderr_path).expect("creating a file must work"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    // A writer thread, so a child that does not read cannot block the wait.
    let writer = child.stdin.take().zip(input).map(|(mut stdin, input)| {
        let input = input.to_string();
        thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        })
    });
    let status = wait_bounded(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Finished {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A topic name unique within this test process.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sets the soft and hard RLIMIT_NOFILE of the process `command` starts.
fn limit_open_files(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
