//! While a measured run goes on: one progress line a second on stderr, and
//! in e2e mode the signal that stops consumers once every produced record
//! has arrived.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::args::Mode;
use crate::cpus;
use crate::stats::{self, Progress};
use crate::workers::{Launch, Workers, DRAIN};

const PROGRESS_INTERVAL_NS: u64 = 1_000_000_000;
/// How often the workers' state is looked at.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// The progress counters at one moment, to print rates since the last one.
struct Sample {
    produced_records: u64,
    produced_bytes: u64,
    consumed_records: u64,
    at_ns: u64,
    cpu_s: f64,
}

impl Sample {
    fn take(progress: &Progress, at_ns: u64) -> Self {
        Self {
            produced_records: progress.produced_records.load(Ordering::Relaxed),
            produced_bytes: progress.produced_bytes.load(Ordering::Relaxed),
            consumed_records: progress.consumed_records.load(Ordering::Relaxed),
            at_ns,
            cpu_s: stats::process_cpu_seconds(),
        }
    }
}

/// Returns once every worker thread has finished.
pub fn watch(workers: &Workers, launch: &Launch, usable_cores: usize) {
    let (clock, start_ns) = (launch.clock, launch.window.start_ns);
    let mut last = Sample {
        produced_records: 0,
        produced_bytes: 0,
        consumed_records: 0,
        at_ns: clock.now_ns(),
        cpu_s: stats::process_cpu_seconds(),
    };
    let mut next_tick_ns = start_ns + PROGRESS_INTERVAL_NS;
    let mut producers_done_at_ns: Option<u64> = None;
    while !workers.all_done() {
        if launch.args.mode == Mode::E2e && workers.producers_done() {
            let done_at_ns = *producers_done_at_ns.get_or_insert(clock.now_ns());
            stop_consumers_when_drained(launch, done_at_ns);
        }
        let now = clock.now_ns();
        if now >= next_tick_ns {
            next_tick_ns += PROGRESS_INTERVAL_NS;
            let sample = Sample::take(&launch.progress, now);
            eprintln!("{}", progress_line(launch, &last, &sample, usable_cores));
            last = sample;
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// e2e: consumers stop when they have every produced record, or `DRAIN`
/// after the producers finished.
fn stop_consumers_when_drained(launch: &Launch, producers_done_at_ns: u64) {
    let progress = &launch.progress;
    let produced = progress.produced_records.load(Ordering::Relaxed);
    let consumed = progress.consumed_records.load(Ordering::Relaxed);
    let drain_over = launch.clock.now_ns() > producers_done_at_ns + DRAIN.as_nanos() as u64;
    if consumed >= produced || drain_over {
        launch.stop.store(true, Ordering::Relaxed);
    }
}

fn progress_line(launch: &Launch, last: &Sample, sample: &Sample, usable_cores: usize) -> String {
    let now = sample.at_ns;
    let dt = (now - last.at_ns) as f64 / 1e9;
    let start_ns = launch.window.start_ns;
    let mut line = format!("[{:>5.0}s]", (now.saturating_sub(start_ns)) as f64 / 1e9);
    if launch.args.mode.sends() {
        line += &format!(
            " produced {:>10.0} rec/s {:>8.1} MB/s",
            (sample.produced_records - last.produced_records) as f64 / dt,
            (sample.produced_bytes - last.produced_bytes) as f64 / dt / 1e6
        );
    }
    if launch.args.mode.fetches() {
        line += &format!(
            " | consumed {:>10.0} rec/s",
            (sample.consumed_records - last.consumed_records) as f64 / dt
        );
    }
    let cpu_percent = (sample.cpu_s - last.cpu_s) / dt * 100.0;
    line += &format!(
        " | errors {} | cpu {cpu_percent:.0}%",
        launch.progress.errors.load(Ordering::Relaxed)
    );
    if cpus::is_saturated(cpu_percent, usable_cores) {
        line += " SATURATED";
    }
    line
}
