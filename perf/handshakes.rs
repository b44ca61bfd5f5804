//! `ringlog-perf handshakes`: each of --producers threads opens a
//! connection, negotiates versions, runs TLS and the SASL login that -X
//! asks for (e.g. SCRAM-SHA-512 over SASL_SSL), and closes it, for
//! --duration seconds after --warmup: the broker's rate of new secured
//! connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use ringlog::client::{ClientSecurity, Connection};

use crate::args::{Args, Settings};
use crate::{cpus, wire};

pub fn run(args: &Args, settings: &Settings) -> Result<()> {
    let security = ClientSecurity::from_properties(&args.settings).map_err(|e| anyhow!(e))?;
    // One login first: a wrong setting fails here, not in every thread.
    Connection::open(
        &args.bootstrap,
        wire::CONTROL_TIMEOUT,
        wire::CLIENT_ID,
        &security,
    )?;
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..args.producers)
        .map(|slot| {
            let (security, counting, stop, done) = (
                security.clone(),
                counting.clone(),
                stop.clone(),
                done.clone(),
            );
            let (bootstrap, cpus) = (args.bootstrap.clone(), settings.cpus.clone());
            std::thread::spawn(move || -> Result<()> {
                cpus::pin(&cpus, slot + 1);
                while !stop.load(Ordering::Relaxed) {
                    let connection = Connection::open(
                        &bootstrap,
                        wire::CONTROL_TIMEOUT,
                        wire::CLIENT_ID,
                        &security,
                    )?;
                    drop(connection);
                    if counting.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    let counted = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("a handshake thread panicked"))??;
    }
    let per_second = counted as f64 / elapsed;
    eprintln!(
        "{counted} connections in {elapsed:.1} s: {per_second:.0} per second ({} threads)",
        args.producers
    );
    let report = serde_json::json!({
        "mode": "handshakes", "connections": counted, "duration_s": elapsed,
        "connections_per_sec": per_second, "threads": args.producers,
        "settings": args.settings.iter().filter(|s| !s.starts_with("sasl.password")).collect::<Vec<_>>(),
    });
    println!("{report}");
    Ok(())
}
