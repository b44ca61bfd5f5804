//! Clocks, counters, latency histograms and CPU accounting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track (ns); larger values saturate.
pub const LATENCY_NS_MAX: u64 = 600_000_000_000;
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Monotonic time expressed as unix nanoseconds, so due times stamped into
/// records by one process can be compared by a consumer in another.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_unix_ns,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base_unix_ns + self.base.elapsed().as_nanos() as u64
    }

    /// Sleeps until `ns` (unix ns); returns at once if it has passed.
    pub fn sleep_until(&self, ns: u64) {
        let now = self.now_ns();
        if ns > now {
            std::thread::sleep(Duration::from_nanos(ns - now));
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// Live counters read by the once-a-second progress line.
#[derive(Default)]
pub struct Progress {
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_records: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one worker thread measured inside the measurement window.
pub struct WorkerResult {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency_ns: Histogram<u64>,
    /// `--transactional-id`: EndTxn (commit) latency, and commits counted.
    pub commit_latency_ns: Histogram<u64>,
    pub commits: u64,
    pub first_error: Option<String>,
    /// When the last counted record was acknowledged or received (unix ns).
    pub last_ns: u64,
}

impl WorkerResult {
    pub fn new() -> Self {
        Self {
            records: 0,
            bytes: 0,
            errors: 0,
            latency_ns: new_histogram(),
            commit_latency_ns: new_histogram(),
            commits: 0,
            first_error: None,
            last_ns: 0,
        }
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    pub fn merge(&mut self, other: WorkerResult) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.last_ns = self.last_ns.max(other.last_ns);
        let _ = self.latency_ns.add(&other.latency_ns);
        let _ = self.commit_latency_ns.add(&other.commit_latency_ns);
        self.commits += other.commits;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// user+system CPU seconds of this process.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills a plain C struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct LatencyUs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub count: u64,
}

impl LatencyUs {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
            count: h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_reported_in_microseconds() {
        let mut h = new_histogram();
        for ns in 1..=10_000u64 {
            h.record(ns * 1000).unwrap();
        }
        let l = LatencyUs::from_histogram(&h);
        assert!((l.p50 - 5000.0).abs() / 5000.0 < 0.01, "{l:?}");
        assert!((l.p99 - 9900.0).abs() / 9900.0 < 0.01, "{l:?}");
        assert!(l.max >= 9990.0);
        assert_eq!(l.count, 10_000);
    }

    #[test]
    fn process_cpu_time_grows_with_work() {
        let before = process_cpu_seconds();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds() > before);
    }
}
