//! `ringlog dev-cluster`: a local cluster of N broker processes on one
//! machine, for development. Node `i` (from 1) serves clients on
//! `base_port + i - 1` and its peers on `base_port + 100 + i - 1`, keeps its
//! data in `DIR/node-i` and its log in `DIR/node-i.log`. SIGINT or SIGTERM
//! stops every node cleanly.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Nodes one dev cluster may have (every node is a voter).
const NODES_MAX: u16 = ringlog::config::cluster::VOTERS_MAX as u16;
/// Cluster ports start this far above the client ports.
const CLUSTER_PORT_OFFSET: u16 = 100;
/// How often the nodes are checked for having exited.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long nodes may take to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct DevClusterArgs {
    /// Number of nodes, all controller voters.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Directory for every node's data and log.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Client port of node 1; node i listens on BASE+i-1, its cluster port is BASE+100+i-1.
    #[arg(long, value_name = "PORT", default_value_t = 19092)]
    base_port: u16,
    /// CPUs each node runs its shards on [default: the broker's default].
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn run(args: DevClusterArgs) -> ExitCode {
    match start_and_wait(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ringlog dev-cluster: {message}");
            ExitCode::from(2)
        }
    }
}

fn start_and_wait(args: DevClusterArgs) -> Result<ExitCode, String> {
    if args.nodes == 0 || args.nodes > NODES_MAX {
        return Err(format!("--nodes must be between 1 and {NODES_MAX}"));
    }
    let last = args
        .base_port
        .checked_add(CLUSTER_PORT_OFFSET + args.nodes - 1);
    if last.is_none() || args.base_port == 0 {
        return Err("--base-port leaves no room for the nodes' ports".into());
    }
    let binary = std::env::current_exe().map_err(|e| format!("finding the ringlog binary: {e}"))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("creating {}: {e}", args.data_dir.display()))?;
    let client_port = |i: u16| args.base_port + i - 1;
    let cluster_port = |i: u16| args.base_port + CLUSTER_PORT_OFFSET + i - 1;
    let voters = (1..=args.nodes)
        .map(|i| format!("{i}@127.0.0.1:{}", cluster_port(i)))
        .collect::<Vec<_>>()
        .join(",");
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            request_stop as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            request_stop as *const () as libc::sighandler_t,
        );
    }
    let mut children: Vec<(u16, Child)> = Vec::new();
    for i in 1..=args.nodes {
        let log_path = args.data_dir.join(format!("node-{i}.log"));
        let log =
            File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .args(["--node-id", &i.to_string()])
            .args(["--controller-quorum-voters", &voters])
            .args([
                "--cluster-listen",
                &format!("127.0.0.1:{}", cluster_port(i)),
            ])
            .args(["--listen", &format!("127.0.0.1:{}", client_port(i))])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{i}")))
            .args(["--metrics-listen", "none"]);
        if let Some(cpus) = &args.cpus {
            command.args(["--cpus", cpus]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("starting node {i}: {e}"))?;
        children.push((i, child));
        println!(
            "node {i}: 127.0.0.1:{} (cluster 127.0.0.1:{}, log {})",
            client_port(i),
            cluster_port(i),
            log_path.display()
        );
    }
    let bootstrap = (1..=args.nodes)
        .map(|i| format!("127.0.0.1:{}", client_port(i)))
        .collect::<Vec<_>>()
        .join(",");
    println!("bootstrap.servers={bootstrap}");
    println!("Ctrl-C stops the cluster.");
    let mut failed = false;
    while !STOP.load(Ordering::SeqCst) {
        if let Some((i, status)) = children
            .iter_mut()
            .find_map(|(i, c)| c.try_wait().ok().flatten().map(|s| (*i, s)))
        {
            eprintln!("ringlog dev-cluster: node {i} exited ({status}); stopping the others");
            failed = true;
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    stop_all(&mut children);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// SIGTERM to every node, then a bounded wait (SIGKILL after it).
fn stop_all(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter() {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on a child of ours that has not been reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (i, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                _ => {
                    eprintln!("ringlog dev-cluster: node {i} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}
