//! A measured produce, consume or e2e run, from topic set-up to the report.

use std::sync::Arc;

use anyhow::Result;

use crate::args::{Args, Settings};
use crate::batch;
use crate::cpus;
use crate::monitor;
use crate::report::{self, Measured, Report};
use crate::setup;
use crate::stats::{self, Clock};
use crate::workers::{Launch, Window, Workers};

pub fn run(args: &Args, settings: &Settings) -> Result<()> {
    let clock = Clock::new();
    let run_id = new_run_id(clock);
    let setup = setup::prepare(args)?;
    let launch = Launch {
        args,
        settings,
        setup: &setup,
        run_id,
        window: Window::new(clock.now_ns(), args.warmup, args.duration),
        clock,
        progress: Arc::default(),
        stop: Arc::default(),
    };
    let cpu_before_s = stats::process_cpu_seconds();
    let workers = Workers::start(&launch)?;
    let usable_cores = cpus::usable_cores(&settings.cpus, workers.threads());
    monitor::watch(&workers, &launch, usable_cores);
    let wall_s = (clock.now_ns().saturating_sub(launch.window.start_ns)) as f64 / 1e9;
    let cpu_percent = (stats::process_cpu_seconds() - cpu_before_s) / wall_s.max(1e-9) * 100.0;
    let (produced, consumed) = workers.join()?;
    let measured = Measured {
        produced,
        consumed,
        measure_from_ns: launch.window.measure_from_ns,
        cpu_percent,
        usable_cores,
    };
    let config = report::config_json(args, settings.batch_records, setup.produce_version)?;
    let report = Report::new(args, &measured, config);
    report::print(args, &measured, &report)
}

/// A run id unlikely to repeat across processes: the generator's magic in
/// the high half, process id and start time in the low half.
fn new_run_id(clock: Clock) -> u64 {
    batch::RUN_ID_MAGIC | (u64::from(std::process::id()) ^ (clock.now_ns() >> 10)) & 0xFFFF_FFFF
}
