//! `ringlog dev-cluster`: one command starts a local three-node cluster,
//! prints each node's address, and stops every node on SIGTERM.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::raw::RawClient;
use common::{broker_binary, free_port, wait_bounded, wait_until};
use kafka_protocol::messages::MetadataRequest;

const NODES: u16 = 3;
const CLUSTER_PORT_OFFSET: u16 = 100;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A base port whose client and cluster ports are all free right now.
fn free_base_port() -> u16 {
    for _ in 0..64 {
        let base = free_port();
        let ports = (0..NODES).flat_map(|i| [base + i, base + CLUSTER_PORT_OFFSET + i]);
        if base < 60_000
            && ports
                .into_iter()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free run of ports for a dev cluster");
}

fn live_brokers(addr: SocketAddr) -> Option<usize> {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let mut client = RawClient::connect_negotiated(addr);
    let metadata = client.call_negotiated(&MetadataRequest::default().with_topics(None), 12);
    Some(metadata.brokers.len())
}

#[test]
fn dev_cluster_prints_three_nodes_that_form_one_cluster_and_stops_them_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = free_base_port();
    let stdout_path = dir.path().join("stdout");
    let stdout = std::fs::File::create(&stdout_path).expect("a file");
    let mut child = Command::new(broker_binary())
        .args([
            "dev-cluster",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("cluster"))
        .args(["--cpus", &common::allowed_cpus()[0].to_string()])
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .expect("starting ringlog dev-cluster");
    let addrs: Vec<SocketAddr> = (0..NODES)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i)))
        .collect();
    let formed = wait_until(READY_TIMEOUT, || {
        addrs
            .iter()
            .all(|&a| live_brokers(a) == Some(NODES as usize))
    });
    let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_bounded(&mut child, STOP_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(
        formed,
        "every node lists three brokers; printed:\n{printed}"
    );
    for addr in &addrs {
        assert!(
            printed.contains(&format!("{addr} ")),
            "{addr} printed:\n{printed}"
        );
    }
    assert!(printed.contains("bootstrap.servers="), "{printed}");
    assert!(
        status.is_some_and(|s| s.success()),
        "stopped cleanly: {status:?}"
    );
    assert!(
        addrs
            .iter()
            .all(|&a| std::net::TcpStream::connect(a).is_err()),
        "every node is gone"
    );
}
