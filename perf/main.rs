//! ringlog-perf: a Kafka-protocol load generator for ringlog or any
//! Kafka-compatible broker.
//!
//! # Layout
//!
//! - `main.rs`: checks the command line and runs the mode.
//! - [`args`]: the command line and its checks.
//! - [`cpus`]: `--cpus`, thread pinning, the cores the saturation warning counts.
//! - [`load`]: a measured produce, consume or e2e run, from set-up to report.
//! - [`setup`]: the control plane before a run: topic, versions, start offsets.
//! - [`workers`]: the run's time window and its producer and consumer threads.
//! - [`monitor`]: the once-a-second progress line; stopping e2e consumers.
//! - [`report`]: what counts for each mode, the text table and the JSON line.
//! - [`idle`]: holding many idle connections.
//! - [`probe`]: Metadata for every topic timed; the accept rate against open connections' latency.
//! - [`handshakes`]: new connections per second (TCP, TLS, SASL login).
//! - [`batch`]: RecordBatch v2 encoded once and patched per send (values, timestamps, CRC-32C).
//! - [`wire`]: connecting with the shared client, control-plane requests, the Produce template.
//! - [`producer`]: one producer connection, open loop or max rate, pipelined.
//! - [`consumer`]: one consumer connection, long-poll Fetch, end-to-end latency from stamped values.
//! - [`stats`]: clock, histograms, CPU accounting.
//! - [`sink`]: an endpoint that acknowledges and discards produce requests (the generator's ceiling).
//!
//! Latency is measured from when a batch (produce) or record (e2e) was due
//! to be sent by the schedule, not from when it was sent, so a slow broker
//! cannot hide its stalls by slowing the generator down (no coordinated
//! omission).

mod args;
mod batch;
mod consumer;
mod cpus;
mod handshakes;
mod idle;
mod load;
mod monitor;
mod probe;
mod producer;
mod report;
mod setup;
mod sink;
mod stats;
mod wire;
mod workers;

use anyhow::Result;
use clap::Parser;

use crate::args::{Args, Mode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("ringlog-perf: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let settings = args.check()?;
    // The main thread shares the first core with the first worker.
    cpus::pin(&settings.cpus, 0);
    let security = ringlog::client::ClientSecurity::from_properties(&args.settings)
        .map_err(|e| anyhow::anyhow!(e))?;
    wire::secure_connections(security);
    match args.mode {
        Mode::Idle => idle::run(&args),
        Mode::Handshakes => handshakes::run(&args, &settings),
        Mode::Sink => sink::run(&args.listen),
        Mode::Metadata => probe::metadata(&args),
        Mode::Accept => probe::accept(&args),
        Mode::Produce | Mode::Consume | Mode::E2e => load::run(&args, &settings),
    }
}
