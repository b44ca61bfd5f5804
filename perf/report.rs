//! The result of a measured run: which numbers count for the mode, the
//! text table, the `--json` line, and the warnings beside them.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::args::{Args, Mode};
use crate::cpus;
use crate::stats::{LatencyUs, WorkerResult};

/// What the workers measured, with the generator's own CPU use.
pub struct Measured {
    pub produced: WorkerResult,
    pub consumed: WorkerResult,
    pub measure_from_ns: u64,
    /// Of one core: 100 = one core busy, over the whole run.
    pub cpu_percent: f64,
    pub usable_cores: usize,
}

impl Measured {
    /// Seconds from the end of warm-up to `r`'s last counted record.
    fn elapsed_s(&self, r: &WorkerResult) -> f64 {
        (r.last_ns.saturating_sub(self.measure_from_ns)) as f64 / 1e9
    }
}

/// The side a mode's throughput is read from, and its latency.
struct Headline<'a> {
    counted: &'a WorkerResult,
    latency: LatencyUs,
    kind: &'static str,
    consumed_records_per_sec: Option<f64>,
}

fn headline<'a>(args: &Args, m: &'a Measured) -> Headline<'a> {
    let (produced, consumed) = (&m.produced, &m.consumed);
    match args.mode {
        Mode::Produce => Headline {
            counted: produced,
            latency: LatencyUs::from_histogram(&produced.latency_ns),
            kind: if args.acks == 0 {
                "send lateness vs schedule per batch (acks=0)"
            } else {
                "produce: due -> ack per batch"
            },
            consumed_records_per_sec: None,
        },
        Mode::Consume
        | Mode::Idle
        | Mode::Handshakes
        | Mode::Sink
        | Mode::Metadata
        | Mode::Accept => Headline {
            counted: consumed,
            latency: LatencyUs::from_histogram(&consumed.latency_ns),
            kind: "due -> received per stamped record",
            consumed_records_per_sec: None,
        },
        Mode::E2e => Headline {
            counted: produced,
            latency: LatencyUs::from_histogram(&consumed.latency_ns),
            kind: "e2e: due -> consumed per record",
            consumed_records_per_sec: Some(
                consumed.records as f64 / m.elapsed_s(consumed).max(1e-9),
            ),
        },
    }
}

/// The command line as JSON, plus what was derived from it.
pub fn config_json(
    args: &Args,
    effective_batch_records: usize,
    produce_version: i16,
) -> Result<serde_json::Value> {
    let mut config = serde_json::to_value(args)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "effective_batch_records".into(),
            effective_batch_records.into(),
        );
        obj.insert("produce_version".into(), produce_version.into());
    }
    Ok(config)
}

impl Report {
    pub fn new(args: &Args, m: &Measured, config: serde_json::Value) -> Self {
        let headline = headline(args, m);
        let counted = headline.counted;
        let elapsed_s = m.elapsed_s(counted).max(1e-9);
        Report {
            mode: args.mode.name(),
            records: counted.records,
            bytes: counted.bytes,
            elapsed_s,
            records_per_sec: counted.records as f64 / elapsed_s,
            mb_per_sec: counted.bytes as f64 / elapsed_s / 1e6,
            consumed_records_per_sec: headline.consumed_records_per_sec,
            ack_latency_us: (args.mode == Mode::E2e)
                .then(|| LatencyUs::from_histogram(&m.produced.latency_ns)),
            transactions: args.transactional_id.is_some().then_some(m.produced.commits),
            commit_latency_us: args
                .transactional_id
                .is_some()
                .then(|| LatencyUs::from_histogram(&m.produced.commit_latency_ns)),
            cpu_percent: m.cpu_percent,
            cpu_cores: m.usable_cores,
            saturated: cpus::is_saturated(m.cpu_percent, m.usable_cores),
            errors: m.produced.errors + m.consumed.errors,
            latency_us: headline.latency,
            latency_kind: headline.kind.to_owned(),
            config,
        }
    }
}

/// Prints the first error, the saturation warning, the table and (with
/// `--json`) the JSON line; fails a run that counted no records.
pub fn print(args: &Args, m: &Measured, report: &Report) -> Result<()> {
    if let Some(e) = m
        .produced
        .first_error
        .as_ref()
        .or(m.consumed.first_error.as_ref())
    {
        eprintln!("first error: {e}");
    }
    if report.saturated {
        eprintln!("warning: the generator used {:.0}% of {} core(s): it is saturated, the broker may be faster than measured", m.cpu_percent, m.usable_cores);
    }
    report.print_table();
    if args.json {
        println!("{}", report.json_line()?);
    }
    if report.records == 0 {
        bail!(
            "no records were {}",
            if args.mode == Mode::Consume {
                "consumed"
            } else {
                "acknowledged"
            }
        );
    }
    Ok(())
}

/// The final result; `--json` prints it as one line.
#[derive(Serialize, Debug)]
pub struct Report {
    pub mode: String,
    pub records: u64,
    /// Record-batch bytes (what the broker stores and serves).
    pub bytes: u64,
    pub elapsed_s: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// Consumer side in e2e mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed_records_per_sec: Option<f64>,
    /// e2e: the producers' due -> ack latency per batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_us: Option<LatencyUs>,
    /// `--transactional-id`: transactions committed, and EndTxn latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_latency_us: Option<LatencyUs>,
    /// Of one core: 100 = one core busy.
    pub cpu_percent: f64,
    pub cpu_cores: usize,
    pub saturated: bool,
    pub errors: u64,
    /// Produce: request→ack per batch. e2e/consume: due time→received per record.
    pub latency_us: LatencyUs,
    pub latency_kind: String,
    pub config: serde_json::Value,
}

impl Report {
    pub fn print_table(&self) {
        println!("mode               {}", self.mode);
        println!("records            {}", self.records);
        println!("elapsed            {:.2} s", self.elapsed_s);
        println!(
            "throughput         {:.0} records/s, {:.1} MB/s",
            self.records_per_sec, self.mb_per_sec
        );
        if let Some(c) = self.consumed_records_per_sec {
            println!("consumed           {c:.0} records/s");
        }
        println!(
            "generator cpu      {:.0}% of one core ({} core(s) given){}",
            self.cpu_percent,
            self.cpu_cores,
            if self.saturated { "  SATURATED" } else { "" }
        );
        println!("errors             {}", self.errors);
        let l = &self.latency_us;
        println!("latency ({})", self.latency_kind);
        println!(
            "  p50 {:>10.1} us   p90 {:>10.1} us   p99 {:>10.1} us",
            l.p50, l.p90, l.p99
        );
        println!(
            "  p99.9 {:>8.1} us   p99.99 {:>7.1} us   max {:>10.1} us   (n={})",
            l.p999, l.p9999, l.max, l.count
        );
        if let (Some(n), Some(c)) = (self.transactions, &self.commit_latency_us) {
            println!("transactions       {n} committed");
            println!(
                "commit latency (EndTxn until the markers are written): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                c.p50, c.p99, c.p999, c.max
            );
        }
        if let Some(a) = &self.ack_latency_us {
            println!("ack latency (due -> ack per batch): p50 {:.1} us, p99 {:.1} us, p99.99 {:.1} us, max {:.1} us", a.p50, a.p99, a.p9999, a.max);
        }
    }

    pub fn json_line(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}
