//! `ringlog-perf idle`: open many connections, negotiate versions on each
//! and hold them, to measure what idle connections cost a broker.

use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::args::Args;
use crate::wire;

const IDLE_CONNECTIONS_MAX: usize = 100_000;

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.connections <= IDLE_CONNECTIONS_MAX,
        "--connections must be at most {IDLE_CONNECTIONS_MAX}"
    );
    raise_nofile_limit();
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let conn =
            wire::connect_control(&args.bootstrap).with_context(|| format!("connection {i}"))?;
        held.push(conn);
    }
    eprintln!(
        "holding {} idle connections for {} s",
        held.len(),
        args.duration
    );
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    let report = serde_json::json!({ "mode": "idle", "connections": held.len(), "duration_s": args.duration });
    println!("{report}");
    Ok(())
}

/// Raises the open-file soft limit to the hard limit (idle mode holds many sockets).
fn raise_nofile_limit() {
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
