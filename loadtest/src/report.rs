//! The figures of a run ([`Report`]), its text summary and its JSON line.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded exactly, in µs (one hour); higher values are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of microseconds, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid histogram bounds")
}

/// A histogram as `(value, count)` pairs of its non-empty buckets: how child processes hand
/// theirs to the parent. Plain JSON, and re-recording each bucket's value lands it in the same
/// bucket, so merging loses nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistData(pub Vec<(u64, u64)>);

impl HistData {
    pub fn from_histogram(hist: &Histogram<u64>) -> HistData {
        HistData(
            hist.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut hist = new_histogram();
        for &(value, count) in &self.0 {
            let _ = hist.record_n(value, count); // values come from the same bounds
        }
        hist
    }

    pub fn merge(&mut self, other: HistData) {
        if other.0.is_empty() {
            return;
        }
        let mut hist = self.to_histogram();
        let _ = hist.add(other.to_histogram());
        *self = HistData::from_histogram(&hist);
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }
}

/// Percentiles in milliseconds of a histogram of microseconds; all 0 when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn from_micros(data: &HistData) -> Percentiles {
        let hist = data.to_histogram();
        if hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            max: ms(hist.max()),
            count: hist.len(),
        }
    }
}

/// The server's figures, sampled from `/proc` when `--server-pid` is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFigures {
    /// RSS with all streams open, before the first publish (after `--hold` for `--events 0`).
    pub rss_kib_idle: Option<u64>,
    /// The largest RSS seen during the run (sampled every 500 ms).
    pub rss_kib_max: Option<u64>,
    /// Average CPU use, in percent of one core, from the first publish until deliveries ended.
    pub cpu_percent_avg: Option<f64>,
    /// Over the same time, CPU per delivered event in µs: in user space, and in the kernel
    /// (which on loopback also runs the receiving end's TCP input).
    #[serde(default)]
    pub cpu_user_us_per_event: Option<f64>,
    #[serde(default)]
    pub cpu_kernel_us_per_event: Option<f64>,
}

/// The load generator's own footprint: what the streams cost on the client side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenFigures {
    pub processes: u64,
    /// RSS of all stream-holding processes before they opened any stream.
    pub rss_kib_before: u64,
    /// RSS of all stream-holding processes with every stream open.
    pub rss_kib_idle: u64,
    /// `(idle - before) / open streams`, in bytes.
    pub rss_bytes_per_stream: u64,
    /// The load generator's own CPU per delivered event in µs, user and kernel, from the first
    /// publish until deliveries ended (one process only; not measured with `--processes`).
    #[serde(default)]
    pub cpu_user_us_per_event: Option<f64>,
    #[serde(default)]
    pub cpu_kernel_us_per_event: Option<f64>,
}

/// The figures of one run. `pass` is true when every stream opened, every event was published
/// and delivered once to every stream, in order, and no stream dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub streams_requested: u64,
    pub streams_open: u64,
    pub streams_failed: u64,
    pub connect_ms: Percentiles,
    pub events_requested: u64,
    pub events_published: u64,
    pub publish_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub disconnects: u64,
    pub resets: u64,
    pub malformed: u64,
    /// From when each event was due by the schedule to its receipt (see the crate's doc).
    pub latency_ms: Percentiles,
    /// How late each publish request was written after its due time: above a few ms, the
    /// server's answers held the publisher back.
    #[serde(default)]
    pub publish_lag_ms: Percentiles,
    /// Publishes per second achieved (against `--rate`); `None` for fewer than two.
    #[serde(default)]
    pub publish_rate: Option<f64>,
    pub server: ServerFigures,
    pub loadgen: LoadgenFigures,
    /// Wall time of the whole run, in seconds.
    pub elapsed_s: f64,
    /// The first error a stream or publish met, if any.
    pub first_error: Option<String>,
    pub pass: bool,
}

impl Report {
    /// The PASS rule; see the type's doc.
    pub fn compute_pass(&self) -> bool {
        self.streams_open == self.streams_requested
            && self.events_published == self.events_requested
            && self.publish_errors == 0
            && self.delivered == self.expected
            && self.duplicates == 0
            && self.gaps == 0
            && self.disconnects == 0
            && self.malformed == 0
    }

    /// The one JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable summary (without the JSON line).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let pct = |p: &Percentiles| {
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                p.p50, p.p90, p.p99, p.max
            )
        };
        let kib = |v: Option<u64>| v.map_or("-".to_owned(), |k| format!("{k} KiB"));
        let _ = writeln!(
            s,
            "streams:     requested {}, open {}, failed {}",
            self.streams_requested, self.streams_open, self.streams_failed
        );
        let _ = writeln!(s, "connect ms:  {}", pct(&self.connect_ms));
        let _ = writeln!(
            s,
            "events:      published {} of {} ({} publish errors), expected {}, delivered {}",
            self.events_published,
            self.events_requested,
            self.publish_errors,
            self.expected,
            self.delivered
        );
        let _ = writeln!(
            s,
            "problems:    duplicates {}, gaps {}, disconnects {}, resets {}, malformed {}",
            self.duplicates, self.gaps, self.disconnects, self.resets, self.malformed
        );
        let _ = writeln!(s, "latency ms:  {}", pct(&self.latency_ms));
        let _ = writeln!(
            s,
            "publish:     {} per s achieved; written late by ms: {}",
            self.publish_rate
                .map_or("-".to_owned(), |r| format!("{r:.2}")),
            pct(&self.publish_lag_ms)
        );
        let _ = writeln!(
            s,
            "server:      rss idle {}, rss max {}, cpu avg {}",
            kib(self.server.rss_kib_idle),
            kib(self.server.rss_kib_max),
            self.server
                .cpu_percent_avg
                .map_or("-".to_owned(), |c| format!("{c:.1}%"))
        );
        let _ = writeln!(
            s,
            "loadgen:     {} process(es), rss {} KiB before streams, {} KiB with them open, {} bytes per stream",
            self.loadgen.processes,
            self.loadgen.rss_kib_before,
            self.loadgen.rss_kib_idle,
            self.loadgen.rss_bytes_per_stream
        );
        let per_event = |user: Option<f64>, kernel: Option<f64>| match (user, kernel) {
            (Some(u), Some(k)) => format!("{u:.2} user + {k:.2} kernel"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "cpu us/event: server {}, loadgen {}",
            per_event(
                self.server.cpu_user_us_per_event,
                self.server.cpu_kernel_us_per_event
            ),
            per_event(
                self.loadgen.cpu_user_us_per_event,
                self.loadgen.cpu_kernel_us_per_event
            )
        );
        let _ = writeln!(s, "elapsed:     {:.2} s", self.elapsed_s);
        if let Some(error) = &self.first_error {
            let _ = writeln!(s, "first error: {error}");
        }
        let _ = writeln!(s, "result: {}", if self.pass { "PASS" } else { "FAIL" });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_data_round_trips_and_merges() {
        let mut a = new_histogram();
        for us in [1, 5, 1_000, 1_234, 250_000] {
            a.record(us).unwrap();
        }
        let data = HistData::from_histogram(&a);
        assert_eq!(data.count(), 5);
        let json = serde_json::to_string(&data).unwrap();
        let back: HistData = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_histogram().max(), a.max());

        let mut merged = data.clone();
        merged.merge(data);
        let p = Percentiles::from_micros(&merged);
        assert_eq!(p.count, 10);
        assert!((p.max - 250.0).abs() < 0.5, "{p:?}");
        assert!((p.p50 - 1.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn empty_percentiles_are_zero() {
        assert_eq!(
            Percentiles::from_micros(&HistData::default()),
            Percentiles::default()
        );
    }

    #[test]
    fn pass_needs_everything() {
        let good = Report {
            streams_requested: 2,
            streams_open: 2,
            events_requested: 3,
            events_published: 3,
            expected: 6,
            delivered: 6,
            ..Report::default()
        };
        assert!(good.compute_pass());
        for bad in [
            Report {
                streams_open: 1,
                ..good.clone()
            },
            Report {
                delivered: 5,
                ..good.clone()
            },
            Report {
                gaps: 1,
                ..good.clone()
            },
            Report {
                duplicates: 1,
                ..good.clone()
            },
            Report {
                disconnects: 1,
                ..good.clone()
            },
            Report {
                events_published: 2,
                ..good.clone()
            },
        ] {
            assert!(!bad.compute_pass(), "{bad:?}");
        }
        let line = good.json_line();
        assert!(line.starts_with("{\"streams_requested\":2,"), "{line}");
        assert!(!line.contains('\n'));
    }
}
