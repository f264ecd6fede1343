//! `sse-loadgen`: holds many long-lived SSE subscribers against a gateway (ours, or
//! nginx+nchan for comparison), publishes timestamped events, and measures what arrives.
//!
//! A run: open `--streams` streams at `--ramp` per second from several 127.0.0.x source
//! addresses (over several processes above ~18,000 streams) → once every stream has opened or
//! failed, sample the server's idle RSS → publish `--events` events at `--rate` per second, each
//! carrying its sequence number and the time it was due → wait up to `--settle` for every stream
//! to catch up → report. Everything is bounded by `--duration`.
//!
//! Latency runs from when an event was *due* by the schedule, not from when its request was
//! written. Publishes go one at a time, so a server that answers a publish only after its
//! fan-out holds the next one back; timing from the write would hide that wait (coordinated
//! omission) and let such a server meet a lower rate than the one asked for. How late the
//! writes were is reported apart (`publish_lag_ms`), with the rate the publisher achieved.
//!
//! # Layout
//! - [`options`]: the command line, also the library's input ([`Options`]).
//! - [`target`]: URL parsing and the loopback-only rule.
//! - [`http`]: the HTTP/1.1 response head and body framing (chunked, length, close).
//! - [`payload`]: the event data, `"<seq> <unix_nanos_due> <padding>"`.
//! - [`subscriber`]: one small task per stream, and the pool that opens them and adds up.
//! - [`publisher`]: the keep-alive publishing connection.
//! - [`children`]: splitting streams over child processes.
//! - [`eventsource`]: a stream that reconnects with `Last-Event-ID` as a browser's would, and
//!   reports every event and drop (for `sse-chaos`, which ends streams on purpose).
//! - [`procfs`]: RSS and CPU from `/proc`, the open-files limit.
//! - [`progress`]: the progress line on a terminal (streams open, events delivered, elapsed).
//! - [`report`]: the figures, the text summary, the JSON line.

pub mod children;
pub mod eventsource;
pub mod http;
pub mod options;
pub mod payload;
pub mod procfs;
pub mod progress;
pub mod publisher;
pub mod report;
pub mod subscriber;
pub mod target;

use std::time::Duration;

use tokio::time::Instant;

pub use children::run_child;
pub use options::{Options, PublishFormat};
pub use report::Report;

use children::Children;
use procfs::{rss_kib, CpuMark, RssSampler};
use progress::ProgressLine;
use publisher::{Outcome, Publisher};
use report::{new_histogram, HistData, LoadgenFigures, Percentiles, ServerFigures};
use subscriber::{Pool, PoolSpec, PoolStats};

/// Longest wait for one publish's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A mistake in the command line or its URLs: the binary exits 2 on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Who holds the streams: this process, or child processes.
enum Holders {
    Local(Pool),
    Children(Children),
}

/// Runs one load test and returns its figures. Fails only on usage errors ([`UsageError`]:
/// bad values, a URL that is not loopback) or if child processes cannot start; everything that
/// goes wrong with the server is in the report.
///
/// With `--processes` above 1 the streams are held by child processes running
/// [`Options::exe`] (default: the current executable, which must then be `sse-loadgen`).
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    opts.validate()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.duration);
    let stream_target = target::resolve(&opts.url).await?;
    let publish_target = target::resolve(&opts.publish_url).await?;
    let processes = opts.process_count();
    let per_process = opts.streams.div_ceil(processes);
    if let Some(limit) = procfs::raise_open_files_limit() {
        if per_process + 64 > limit {
            eprintln!(
                "sse-loadgen: warning: {per_process} streams per process, but only {limit} open \
                 files are allowed; raise --processes"
            );
        }
    }
    let server_pids = &opts.server_pid;
    let sampler = (!server_pids.is_empty()).then(|| RssSampler::start(server_pids));

    // Open every stream before the first publish, so that each one expects every event.
    let mut loadgen = LoadgenFigures {
        processes,
        ..LoadgenFigures::default()
    };
    // Shown until the figures are in, then erased before the summary.
    let progress;
    let (holders, streams_open) = if processes <= 1 {
        loadgen.rss_kib_before = rss_kib(None).unwrap_or(0);
        let spec = PoolSpec {
            target: stream_target,
            streams: opts.streams,
            ramp: opts.ramp,
            source_ips: opts.source_ips,
            event_bytes: opts.event_bytes,
        };
        let mut pool = Pool::new(spec);
        progress = ProgressLine::start(opts.streams, pool.counts());
        pool.open_all(deadline).await;
        loadgen.rss_kib_idle = rss_kib(None).unwrap_or(0);
        let open = pool.open_count();
        (Holders::Local(pool), open)
    } else {
        let mut children = Children::spawn(&opts, processes, deadline)?;
        progress = ProgressLine::start(opts.streams, children.counts());
        let ready = children.wait_ready(deadline).await;
        loadgen.rss_kib_before = ready.rss_kib_before;
        loadgen.rss_kib_idle = ready.rss_kib_idle;
        (Holders::Children(children), ready.open)
    };
    loadgen.rss_bytes_per_stream = (loadgen.rss_kib_idle.saturating_sub(loadgen.rss_kib_before)
        * 1024)
        .checked_div(streams_open)
        .unwrap_or(0);

    if opts.events == 0 {
        let hold_until = (Instant::now() + Duration::from_secs_f64(opts.hold)).min(deadline);
        tokio::time::sleep_until(hold_until).await;
    }
    let mut server = ServerFigures::default();
    let cpu_mark = sampler.as_ref().and_then(|sampler| {
        server.rss_kib_idle = sampler.sample();
        CpuMark::now(server_pids)
    });
    // Our own CPU, when this process holds every stream.
    let own_mark = (processes <= 1)
        .then(|| CpuMark::now(&[std::process::id()]))
        .flatten();

    let publishing = publish_all(&opts, publish_target, deadline).await;

    let settle = Duration::from_secs_f64(opts.settle);
    let stats: PoolStats = match holders {
        Holders::Local(pool) => {
            pool.settle(publishing.last_seq, settle, deadline).await;
            pool.finish()
        }
        Holders::Children(children) => children.finish(publishing.last_seq, deadline).await,
    };
    drop(progress);
    if opts.events > 0 {
        if let Some(spent) = cpu_mark.as_ref().and_then(CpuMark::spent) {
            server.cpu_percent_avg = spent.percent();
            (server.cpu_user_us_per_event, server.cpu_kernel_us_per_event) =
                spent.micros_per(stats.delivered).unzip();
        }
        if let Some(spent) = own_mark.as_ref().and_then(CpuMark::spent) {
            (
                loadgen.cpu_user_us_per_event,
                loadgen.cpu_kernel_us_per_event,
            ) = spent.micros_per(stats.delivered).unzip();
        }
    }
    if let Some(sampler) = &sampler {
        sampler.sample();
        server.rss_kib_max = sampler.max_kib();
    }

    let mut report = Report {
        streams_requested: opts.streams,
        streams_open: stats.open,
        streams_failed: stats.failed,
        connect_ms: Percentiles::from_micros(&stats.connect_us),
        events_requested: opts.events,
        events_published: publishing.published,
        publish_errors: publishing.errors,
        expected: stats.open * publishing.published,
        delivered: stats.delivered,
        duplicates: stats.duplicates,
        gaps: stats.gaps,
        disconnects: stats.disconnects,
        resets: stats.resets,
        malformed: stats.malformed,
        latency_ms: Percentiles::from_micros(&stats.latency_us),
        publish_lag_ms: Percentiles::from_micros(&publishing.lag_us),
        publish_rate: publishing.rate(),
        server,
        loadgen,
        elapsed_s: started.elapsed().as_secs_f64(),
        first_error: stats.first_error.or(publishing.first_error),
        pass: false,
    };
    report.pass = report.compute_pass();
    Ok(report)
}

/// What the publishing phase did.
struct Publishing {
    published: u64,
    errors: u64,
    /// The highest sequence number that may have reached the server: streams wait for it.
    last_seq: u64,
    first_error: Option<String>,
    /// How late each request was written after it was due, in µs.
    lag_us: HistData,
    /// Seconds from the first publish's due time to the last answer.
    span_s: f64,
}

impl Publishing {
    /// Publishes per second achieved: the first at its due time, the rest spread until the last
    /// answer. `None` for fewer than two.
    fn rate(&self) -> Option<f64> {
        (self.published > 1 && self.span_s > 0.0).then(|| (self.published - 1) as f64 / self.span_s)
    }
}

/// Publishes `opts.events` events at `opts.rate` per second, on an absolute schedule (a slow
/// publish is followed by the next one at once rather than shifting the rest), until done or
/// `deadline`. Each event carries the wall-clock time it was due, so that its latency includes
/// any wait behind a slow earlier publish.
///
/// A refused publish does not use up its sequence number, so streams see no gap for it; one
/// whose fate is unknown (no answer) does, since it may still be delivered. Either way it
/// counts as a publish error and the run fails.
async fn publish_all(opts: &Options, target: target::Target, deadline: Instant) -> Publishing {
    let mut publisher = Publisher::new(
        target,
        opts.publish_format,
        opts.api_key.clone(),
        opts.channel.clone(),
    );
    let mut done = Publishing {
        published: 0,
        errors: 0,
        last_seq: 0,
        first_error: None,
        lag_us: HistData::default(),
        span_s: 0.0,
    };
    let mut lag_us = new_histogram();
    let start = Instant::now();
    let start_nanos = payload::unix_nanos();
    for attempt in 0..opts.events {
        let due_in = Duration::from_secs_f64(attempt as f64 / opts.rate);
        let at = start + due_in;
        if at >= deadline {
            break;
        }
        tokio::time::sleep_until(at).await;
        let timeout = PUBLISH_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let seq = done.last_seq + 1;
        let due_nanos = start_nanos.saturating_add(u64::try_from(due_in.as_nanos()).unwrap_or(0));
        let data = payload::make_data(seq, due_nanos, opts.event_bytes);
        let request = publisher.request(&data);
        let late = Instant::now().saturating_duration_since(at);
        lag_us.saturating_record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX).max(1));
        let outcome = publisher.send(&request, timeout).await;
        done.span_s = start.elapsed().as_secs_f64();
        match outcome {
            Outcome::Accepted(_) => {
                done.published += 1;
                done.last_seq = seq;
            }
            Outcome::Rejected { why, .. } | Outcome::NotSent(why) => {
                done.errors += 1;
                done.first_error
                    .get_or_insert(format!("publish {seq}: {why}"));
            }
            Outcome::Unknown(why) => {
                done.errors += 1;
                done.last_seq = seq;
                done.first_error
                    .get_or_insert(format!("publish {seq}: {why}"));
            }
        }
    }
    done.lag_us = HistData::from_histogram(&lag_us);
    done
}
