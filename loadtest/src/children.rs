//! Multi-process runs: above ~18,000 streams one process runs out of file descriptors (20,000
//! here, a hard limit), so the parent re-executes itself as children that hold the streams,
//! while it publishes and samples.
//!
//! The protocol is lines of text on the children's stdin and stdout:
//!
//! ```text
//! child  → parent   progress {"open":N,"delivered":N}     (every second, from the start)
//! child  → parent   ready {"open":N,"failed":N,"rss_kib_before":K,"rss_kib_idle":K}
//! parent → child    done <last seq published>
//! child  → parent   result {PoolStats as JSON, histograms as (value, count) pairs}
//! ```
//!
//! A child ends after its result line, when its stdin closes (the parent is gone), or at its
//! own `--duration`, which the parent sets a second short of its own deadline so the result
//! still arrives in time; at the deadline the parent kills whatever is left. The parent reads
//! each child's stdout all along (a task per child), so `progress` lines never fill the pipe:
//! they update the child's counts for the progress line, and the others wait in a small queue.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::options::Options;
use crate::procfs::rss_kib;
use crate::progress::{self, Counts};
use crate::subscriber::{Pool, PoolSpec, PoolStats};
use crate::{target, UsageError};

/// Longest protocol line read; a result line with two histograms is tens of KiB.
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;
/// How much earlier than the parent a child stops, so its result reaches the parent.
const CHILD_MARGIN: Duration = Duration::from_secs(1);

/// A child's report once all its streams have opened or failed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Ready {
    pub open: u64,
    pub failed: u64,
    pub rss_kib_before: u64,
    pub rss_kib_idle: u64,
}

struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The child's protocol lines other than `progress`, in order.
    messages: mpsc::Receiver<String>,
    /// The child's last `progress` counts.
    live: Arc<LiveCounts>,
    share: u64,
}

/// A child's last reported [`Counts`], written by its stdout reader.
#[derive(Default)]
struct LiveCounts {
    open: AtomicU64,
    delivered: AtomicU64,
}

/// The children of a multi-process run.
pub struct Children {
    procs: Vec<ChildProc>,
}

impl Children {
    /// Starts `processes` children, each holding its share of the streams at its share of the
    /// ramp rate.
    pub fn spawn(opts: &Options, processes: u64, deadline: Instant) -> anyhow::Result<Children> {
        let exe = match &opts.exe {
            Some(exe) => exe.clone(),
            None => {
                let exe = std::env::current_exe()?;
                let is_loadgen = exe
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sse-loadgen"));
                if !is_loadgen {
                    return Err(UsageError(format!(
                        "--processes above 1 re-runs the sse-loadgen binary, but this is {}; \
                         set Options::exe",
                        exe.display()
                    ))
                    .into());
                }
                exe
            }
        };
        let child_secs = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(CHILD_MARGIN)
            .max(Duration::from_millis(500))
            .as_secs_f64();
        let mut procs = Vec::new();
        for k in 0..processes {
            let share = opts.streams / processes + u64::from(k < opts.streams % processes);
            let mut child = Command::new(&exe)
                .arg("--child")
                .args(["--url", &opts.url])
                .args(["--streams", &share.to_string()])
                .args(["--ramp", &(opts.ramp / processes as f64).to_string()])
                .args(["--source-ips", &opts.source_ips.to_string()])
                .args(["--event-bytes", &opts.event_bytes.to_string()])
                .args(["--settle", &opts.settle.to_string()])
                .args(["--duration", &child_secs.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                anyhow::bail!("child process without pipes");
            };
            let live = Arc::new(LiveCounts::default());
            procs.push(ChildProc {
                child,
                stdin: Some(stdin),
                messages: read_child(stdout, live.clone()),
                live,
                share,
            });
        }
        Ok(Children { procs })
    }

    /// Waits for every child's ready line (at most until `deadline`) and adds them up. A child
    /// that dies or says nothing counts all its streams as failed.
    pub async fn wait_ready(&mut self, deadline: Instant) -> Ready {
        let mut total = Ready::default();
        for proc in &mut self.procs {
            match next_message(&mut proc.messages, "ready", deadline).await {
                Some(line) => match serde_json::from_str::<Ready>(&line) {
                    Ok(ready) => {
                        total.open += ready.open;
                        total.failed += ready.failed;
                        total.rss_kib_before += ready.rss_kib_before;
                        total.rss_kib_idle += ready.rss_kib_idle;
                    }
                    Err(_) => total.failed += proc.share,
                },
                None => total.failed += proc.share,
            }
        }
        total
    }

    /// Reads the children's live counts (their last `progress` lines) added up, for the
    /// progress line.
    pub fn counts(&self) -> impl Fn() -> Counts + Send + Sync + 'static {
        let live: Vec<Arc<LiveCounts>> = self.procs.iter().map(|p| p.live.clone()).collect();
        move || {
            live.iter()
                .map(|c| Counts {
                    open: c.open.load(Ordering::Relaxed),
                    delivered: c.delivered.load(Ordering::Relaxed),
                })
                .fold(Counts::default(), |sum, c| sum + c)
        }
    }

    /// Tells the children that `last_seq` was the last event, collects their figures (at most
    /// until `deadline`) and kills them.
    pub async fn finish(mut self, last_seq: u64, deadline: Instant) -> PoolStats {
        for proc in &mut self.procs {
            if let Some(stdin) = proc.stdin.as_mut() {
                let _ = stdin
                    .write_all(format!("done {last_seq}\n").as_bytes())
                    .await;
                let _ = stdin.flush().await;
            }
        }
        let mut total = PoolStats::default();
        for proc in &mut self.procs {
            let stats = next_message(&mut proc.messages, "result", deadline)
                .await
                .and_then(|line| serde_json::from_str::<PoolStats>(&line).ok());
            match stats {
                Some(stats) => total.merge(stats),
                None => total.merge(PoolStats {
                    requested: proc.share,
                    failed: proc.share,
                    first_error: Some("a child process sent no result".to_owned()),
                    ..PoolStats::default()
                }),
            }
        }
        for proc in &mut self.procs {
            proc.stdin = None;
            let _ = proc.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(1), proc.child.wait()).await;
        }
        total
    }
}

/// The payload of `line` if it is a `tag` message.
fn payload_of<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.trim_end().strip_prefix(tag)?.strip_prefix(' ')
}

/// The next line of `reader` (at most [`MAX_LINE_BYTES`]); `None` at EOF or on error.
async fn read_line<R>(reader: &mut R) -> Option<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = String::new();
    match (&mut *reader)
        .take(MAX_LINE_BYTES)
        .read_line(&mut line)
        .await
    {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

/// The payload of the next line starting with `tag `; `None` at EOF, on error or at `deadline`.
async fn read_message<R>(reader: &mut R, tag: &str, deadline: Instant) -> Option<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    loop {
        let line = tokio::time::timeout_at(deadline, read_line(reader))
            .await
            .ok()??;
        if let Some(payload) = payload_of(&line, tag) {
            return Some(payload.to_owned());
        }
    }
}

/// Reads a child's stdout to its end: `progress` lines go into `live`, the others into the
/// returned queue (the child sends two: `ready` and `result`).
fn read_child(stdout: ChildStdout, live: Arc<LiveCounts>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stdout = BufReader::new(stdout);
        while let Some(line) = read_line(&mut stdout).await {
            match payload_of(&line, "progress") {
                Some(payload) => {
                    if let Ok(counts) = serde_json::from_str::<Counts>(payload) {
                        live.open.store(counts.open, Ordering::Relaxed);
                        live.delivered.store(counts.delivered, Ordering::Relaxed);
                    }
                }
                None => {
                    if tx.send(line).await.is_err() {
                        return; // the parent is done with this child
                    }
                }
            }
        }
    });
    rx
}

/// The payload of the next `tag` message of a child; `None` once it has ended or at `deadline`.
async fn next_message(
    messages: &mut mpsc::Receiver<String>,
    tag: &str,
    deadline: Instant,
) -> Option<String> {
    loop {
        let line = tokio::time::timeout_at(deadline, messages.recv())
            .await
            .ok()??;
        if let Some(payload) = payload_of(&line, tag) {
            return Some(payload.to_owned());
        }
    }
}

/// The child side: hold a share of the streams, then report (see the module doc).
pub async fn run_child(opts: Options) -> anyhow::Result<()> {
    opts.validate()?;
    let deadline = Instant::now() + Duration::from_secs_f64(opts.duration);
    crate::procfs::raise_open_files_limit();
    let target = target::resolve(&opts.url).await?;
    let rss_kib_before = rss_kib(None).unwrap_or(0);
    let mut pool = Pool::new(PoolSpec {
        target,
        streams: opts.streams,
        ramp: opts.ramp,
        source_ips: opts.source_ips,
        event_bytes: opts.event_bytes,
    });
    let reporter = tokio::spawn(report_progress(pool.counts()));
    pool.open_all(deadline).await;
    let ready = Ready {
        open: pool.open_count(),
        failed: pool.failed_count(),
        rss_kib_before,
        rss_kib_idle: rss_kib(None).unwrap_or(0),
    };
    say("ready", &serde_json::to_string(&ready)?)?;

    let mut stdin = BufReader::new(tokio::io::stdin());
    let last_seq = loop {
        match read_message(&mut stdin, "done", deadline).await {
            Some(n) => match n.trim().parse::<u64>() {
                Ok(n) => break Some(n),
                Err(_) => continue,
            },
            // Stdin closed (the parent is gone) or the deadline: report what there is.
            None => break None,
        }
    };
    if let Some(last_seq) = last_seq {
        pool.settle(last_seq, Duration::from_secs_f64(opts.settle), deadline)
            .await;
    }
    reporter.abort();
    let stats = pool.finish();
    say("result", &serde_json::to_string(&stats)?)?;
    Ok(())
}

/// Sends the pool's counts to the parent every [`progress::INTERVAL`], for its progress line.
async fn report_progress(counts: impl Fn() -> Counts) {
    let mut tick = tokio::time::interval(progress::INTERVAL);
    loop {
        tick.tick().await;
        let line = serde_json::to_string(&counts()).unwrap_or_default();
        if say("progress", &line).is_err() {
            return; // the parent is gone
        }
    }
}

/// Writes one protocol line to stdout at once (it is read while we wait).
fn say(tag: &str, payload: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{tag} {payload}")?;
    out.flush()
}
