//! A one-line progress report on stderr for a catch-up read: shown only
//! where a person watches stderr on a terminal while the records go to a
//! file or a pipe, from the first fetch that leaves the read behind the end,
//! then at most a few times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The least time between two updates of the line.
const UPDATE_INTERVAL: Duration = Duration::from_millis(250);
/// Erase the terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

pub struct Progress {
    enabled: bool,
    /// When the line was last written; `None` before the first time.
    last: Option<Instant>,
}

impl Progress {
    pub fn on_terminal() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal() && !std::io::stdout().is_terminal(),
            last: None,
        }
    }

    /// `printed` records so far, `behind` still between the read position
    /// and the end of the log.
    pub fn update(&mut self, printed: u64, behind: i64) {
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= UPDATE_INTERVAL);
        if !self.enabled || !due || (self.last.is_none() && behind == 0) {
            return;
        }
        self.last = Some(Instant::now());
        // Progress is a courtesy: a failed write to stderr is not the command's failure.
        let _ = write!(std::io::stderr(), "{CLEAR_LINE}{}", line(printed, behind));
    }

    pub fn finish(&mut self) {
        if self.last.take().is_some() {
            let _ = write!(std::io::stderr(), "{CLEAR_LINE}");
        }
    }
}

fn line(printed: u64, behind: i64) -> String {
    let total = printed.saturating_add(behind.max(0) as u64);
    let percent = if total == 0 {
        100.0
    } else {
        printed as f64 * 100.0 / total as f64
    };
    format!("{printed} records read, {behind} behind the end ({percent:.1}%)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_far_the_read_has_come() {
        assert_eq!(
            line(250, 750),
            "250 records read, 750 behind the end (25.0%)"
        );
        assert_eq!(line(0, 0), "0 records read, 0 behind the end (100.0%)");
    }
}
