//! Thread placement: the `--cpus` list, pinning, and how many cores the
//! generator may use (the base of the saturation warning).

use anyhow::{ensure, Context, Result};

/// A process using at least this share of its cores is reported as saturated.
const SATURATION_SHARE: f64 = 0.9;

/// `1`, `0-3`, `1,3,5-7` → core ids.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
                ensure!(a <= b, "bad cpu range {part}");
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(|| format!("bad cpu {part:?}"))?),
        }
    }
    ensure!(!out.is_empty(), "--cpus is empty");
    Ok(out)
}

/// Pins the calling thread to `cpus[slot]`, round-robin; no list, no pinning.
pub fn pin(cpus: &[usize], slot: usize) {
    if cpus.is_empty() {
        return;
    }
    let id = cpus[slot % cpus.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
        eprintln!("warning: could not pin a thread to cpu {id}");
    }
}

/// Cores the generator can keep busy: those given (or the machine's), but
/// no more than it has worker threads.
pub fn usable_cores(cpus: &[usize], threads: usize) -> usize {
    let cores = if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cpus.len()
    };
    cores.min(threads.max(1))
}

/// Whether the generator, at `cpu_percent` (100 = one core busy), used up
/// the cores it has, so it may be what limits the measured rate.
pub fn is_saturated(cpu_percent: f64, usable_cores: usize) -> bool {
    cpu_percent >= SATURATION_SHARE * 100.0 * usable_cores as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_accept_singles_ranges_and_mixes() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpus("1,3,5-6").unwrap(), vec![1, 3, 5, 6]);
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("3-1").is_err());
    }
}
