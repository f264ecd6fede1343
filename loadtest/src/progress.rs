//! The progress line of a run: streams open, events delivered, time elapsed, rewritten in place
//! about once a second on stderr, so whoever watches a long run on a terminal sees it move.
//!
//! Only when stderr is a terminal: in CI, in a log file or when `loadtest/run` captures stderr,
//! nothing is written, since the summary and the JSON line are the record and a log full of
//! carriage returns helps nobody.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How often the line is rewritten (and children report their counts).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// ANSI: back to the start of the line and erase it.
const CLEAR: &str = "\r\x1b[2K";

/// What the line shows of the streams at one moment; children send theirs to the parent as
/// JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Streams open now (opened and not dropped).
    pub open: u64,
    /// Events received so far, over every stream.
    pub delivered: u64,
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, other: Counts) -> Counts {
        Counts {
            open: self.open + other.open,
            delivered: self.delivered + other.delivered,
        }
    }
}

/// The line's text: `streams 1200/5000 open, 48213 events delivered, 14s elapsed`.
pub fn render(requested: u64, counts: Counts, elapsed: Duration) -> String {
    format!(
        "sse-loadgen: streams {}/{requested} open, {} events delivered, {}s elapsed",
        counts.open,
        counts.delivered,
        elapsed.as_secs()
    )
}

/// The line while it is shown; dropping it stops the updates and erases the line, so the
/// summary starts on a clean line.
pub struct ProgressLine {
    task: JoinHandle<()>,
}

impl ProgressLine {
    /// Shows the line, read from `counts` every [`INTERVAL`], if stderr is a terminal; `None`
    /// (and nothing written, no task started) otherwise.
    pub fn start<F>(requested: u64, counts: F) -> Option<ProgressLine>
    where
        F: Fn() -> Counts + Send + 'static,
    {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let line = render(requested, counts(), started.elapsed());
                let mut err = std::io::stderr().lock();
                // A terminal that went away is no reason to fail the run.
                let _ = write!(err, "{CLEAR}{line}");
                let _ = err.flush();
            }
        });
        Some(ProgressLine { task })
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.task.abort();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR}");
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_open_streams_of_requested_deliveries_and_whole_seconds() {
        let counts = Counts {
            open: 1200,
            delivered: 48213,
        };
        assert_eq!(
            render(5000, counts, Duration::from_millis(14_900)),
            "sse-loadgen: streams 1200/5000 open, 48213 events delivered, 14s elapsed"
        );
    }

    #[test]
    fn children_counts_add_up() {
        let a = Counts {
            open: 3,
            delivered: 30,
        };
        let b = Counts {
            open: 4,
            delivered: 40,
        };
        assert_eq!(
            a + b,
            Counts {
                open: 7,
                delivered: 70
            }
        );
    }
}
