//! The command line, which is also the library's input ([`crate::run`] takes an [`Options`]).
//!
//! The flag names are a contract: `loadtest/run` and the k6 comparison scripts are written
//! against them.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::UsageError;

/// Most bytes an event's data may be asked to have. Far above what a gateway accepts by
/// default (64 KiB), and it bounds what each stream's parser may buffer.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// How events are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishFormat {
    /// `POST` JSON `{"channel", "event": "bench", "data"}` with `X-API-Key`, as our gateway's
    /// `/broadcast` wants.
    Gateway,
    /// `POST` the data itself as `text/plain`, as nginx+nchan's publisher endpoint wants.
    Raw,
    /// `POST` JSON `{"title": "<seq> <send time>", "body": padding}` to the reference
    /// upstream's `/notifications`: the event reaches the streams relayed by a gateway source.
    Notification,
}

/// Opens N SSE streams on loopback, publishes M timestamped events and reports how they were
/// delivered: connect and publish→receive latency (HDR histograms), delivered vs expected,
/// duplicates, gaps, disconnects, and the server's RSS and CPU.
#[derive(Debug, Clone, Parser)]
// A flag given twice takes its last value, so scripts can append overrides to a base list.
#[command(name = "sse-loadgen", version, args_override_self = true)]
pub struct Options {
    /// The stream URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/events?channel=bench")]
    pub url: String,

    /// Where events are published (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/broadcast")]
    pub publish_url: String,

    /// `gateway`: JSON with X-API-Key; `raw`: the data itself as text/plain (nginx+nchan);
    /// `notification`: a reference-upstream notification (through a gateway source).
    #[arg(long, value_enum, default_value_t = PublishFormat::Gateway)]
    pub publish_format: PublishFormat,

    /// The channel named in gateway-format publishes.
    #[arg(long, default_value = "bench")]
    pub channel: String,

    /// Sent as X-API-Key on publishes.
    #[arg(long, env = "SSE_LOADGEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Streams to hold open.
    #[arg(long, default_value_t = 100)]
    pub streams: u64,

    /// Streams opened per second (over all processes).
    #[arg(long, default_value_t = 2000.0)]
    pub ramp: f64,

    /// Spread streams over source addresses 127.0.0.2 .. 127.0.0.(N+1), bound before connect,
    /// so per-IP limits and ephemeral ports are shared out; 0 lets the kernel choose.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=254))]
    pub source_ips: u8,

    /// Processes holding the streams; default ceil(streams / 18000), since a process may have
    /// at most 20,000 open files. Above 1, this process re-executes itself as that many children.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub processes: Option<u64>,

    /// Events published per second (may be fractional).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,

    /// Events to publish; 0 only holds the streams (idle memory runs).
    #[arg(long, default_value_t = 10)]
    pub events: u64,

    /// Bytes of each event's data, padded after `"<seq> <unix_nanos> "`.
    #[arg(long, default_value_t = 64)]
    pub event_bytes: usize,

    /// Hard stop in seconds: the run always ends by then, whatever happens.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,

    /// With --events 0: seconds to hold the streams once all are open.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,

    /// Seconds to wait after the last publish for deliveries (ends early once all arrived).
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,

    /// Sample this server process's RSS (VmRSS) and CPU from /proc every 500 ms; repeat it for
    /// a server made of several processes (nginx's workers), whose figures are added up.
    #[arg(long)]
    pub server_pid: Vec<u32>,

    /// Print only the one JSON line.
    #[arg(long)]
    pub json: bool,

    /// Internal: run as a child of a multi-process run (stream holder speaking the line
    /// protocol of `children.rs` on stdin/stdout).
    #[arg(long, hide = true)]
    pub child: bool,

    /// The executable re-run as child processes; default: this one. Set by callers that run
    /// the library from another binary (tests) and want `--processes` above 1.
    #[arg(skip)]
    pub exe: Option<PathBuf>,
}

impl Options {
    /// The number of processes to hold the streams in.
    pub fn process_count(&self) -> u64 {
        self.processes
            .unwrap_or_else(|| self.streams.div_ceil(18_000).max(1))
    }

    /// Rejects values clap's types cannot: the run would otherwise misbehave rather than fail.
    pub fn validate(&self) -> Result<(), UsageError> {
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "--{name} must be a positive number, got {value}"
                )))
            }
        };
        let non_negative = |name: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "--{name} must be zero or more, got {value}"
                )))
            }
        };
        positive("ramp", self.ramp)?;
        positive("duration", self.duration)?;
        non_negative("hold", self.hold)?;
        non_negative("settle", self.settle)?;
        if self.events > 0 {
            positive("rate", self.rate)?;
        }
        if self.event_bytes > MAX_EVENT_BYTES {
            return Err(UsageError(format!(
                "--event-bytes must be at most {MAX_EVENT_BYTES}, got {}",
                self.event_bytes
            )));
        }
        Ok(())
    }
}
