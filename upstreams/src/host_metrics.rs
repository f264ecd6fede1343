//! Host metrics read from Linux's `/proc`, sampled once per `--metrics-interval` and broadcast
//! as `metrics` events. The parsers are pure functions over the files' text so they can be
//! tested on fixed input; on unexpected content they return an error (the tick is skipped and
//! logged), never panic.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::sse::Frame;
use crate::stats::Stats;

/// Metrics are live only: a stream that falls this many samples behind is disconnected.
pub const BROADCAST_CAPACITY: usize = 16;

/// Why a `/proc` file could not be read or understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcError(pub String);

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProcError {}

fn err(message: impl Into<String>) -> ProcError {
    ProcError(message.into())
}

/// Aggregate CPU time over all CPUs, in clock ticks, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub total: u64,
    /// `idle` plus `iowait`.
    pub idle: u64,
}

/// Parses the first (`cpu `, all CPUs) line of `/proc/stat`. `guest` and `guest_nice` are
/// already counted in `user` and `nice`, so only the first eight fields are summed.
pub fn parse_cpu_times(stat: &str) -> Result<CpuTimes, ProcError> {
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
        .ok_or_else(|| err("/proc/stat has no `cpu` line"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("/proc/stat `cpu` line: {e}")))?;
    if fields.len() < 4 {
        return Err(err("/proc/stat `cpu` line has fewer than 4 fields"));
    }
    let total = fields.iter().fold(0u64, |a, b| a.saturating_add(*b));
    let idle = fields[3].saturating_add(fields.get(4).copied().unwrap_or(0));
    Ok(CpuTimes { total, idle })
}

/// Busy share of CPU time between two readings, 0..=100 (0 when no time passed).
pub fn cpu_percent(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    let idle = after.idle.saturating_sub(before.idle);
    if total == 0 {
        return 0.0;
    }
    let busy = total.saturating_sub(idle) as f64;
    round2((busy * 100.0 / total as f64).clamp(0.0, 100.0))
}

/// Memory from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
}

/// Parses `/proc/meminfo` (values in kB). Kernels before 3.14 lack `MemAvailable`; there
/// `MemFree + Buffers + Cached` stands in for it.
pub fn parse_meminfo(text: &str) -> Result<Memory, ProcError> {
    let field = |name: &str| -> Result<Option<u64>, ProcError> {
        let Some(line) = text.lines().find(|l| l.split(':').next() == Some(name)) else {
            return Ok(None);
        };
        let value = line
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| err(format!("/proc/meminfo {name}: no value")))?;
        let kib: u64 = value
            .parse()
            .map_err(|e| err(format!("/proc/meminfo {name}: {e}")))?;
        Ok(Some(kib.saturating_mul(1024)))
    };
    let total = field("MemTotal")?.ok_or_else(|| err("/proc/meminfo has no MemTotal"))?;
    let available = match field("MemAvailable")? {
        Some(available) => available,
        None => [field("MemFree")?, field("Buffers")?, field("Cached")?]
            .into_iter()
            .map(Option::unwrap_or_default)
            .fold(0u64, u64::saturating_add),
    };
    if total == 0 {
        return Err(err("/proc/meminfo MemTotal is 0"));
    }
    let available = available.min(total);
    let used_percent = round2((total - available) as f64 * 100.0 / total as f64);
    Ok(Memory {
        total_bytes: total,
        available_bytes: available,
        used_percent,
    })
}

/// Parses the 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], ProcError> {
    let mut fields = text.split_whitespace();
    let mut load = [0.0; 3];
    for slot in &mut load {
        let field = fields
            .next()
            .ok_or_else(|| err("/proc/loadavg has fewer than 3 fields"))?;
        *slot = field
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| err(format!("/proc/loadavg: bad value {field:?}")))?;
    }
    Ok(load)
}

/// Bytes received and sent, summed over every interface but `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Network {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `iface: rx_bytes rx_packets ... (8 rx
/// fields) tx_bytes ...`.
pub fn parse_net_dev(text: &str) -> Result<Network, ProcError> {
    let mut network = Network {
        rx_bytes: 0,
        tx_bytes: 0,
    };
    for line in text.lines().filter(|l| l.contains(':')) {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let fields: Vec<&str> = counters.split_whitespace().collect();
        let parse = |i: usize| -> Result<u64, ProcError> {
            let field = fields
                .get(i)
                .ok_or_else(|| err(format!("/proc/net/dev {}: too few fields", iface.trim())))?;
            field
                .parse()
                .map_err(|e| err(format!("/proc/net/dev {}: {e}", iface.trim())))
        };
        network.rx_bytes = network.rx_bytes.saturating_add(parse(0)?);
        network.tx_bytes = network.tx_bytes.saturating_add(parse(8)?);
    }
    Ok(network)
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The `data` of a `metrics` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub time: String,
    pub cpu_percent: f64,
    pub memory: Memory,
    pub load: [f64; 3],
    pub network: Network,
    pub stream_clients: u64,
}

fn read(path: &str) -> Result<String, ProcError> {
    // procfs files are generated in memory on read, so a plain blocking read is quick.
    std::fs::read_to_string(path).map_err(|e| err(format!("{path}: {e}")))
}

fn read_cpu() -> Result<CpuTimes, ProcError> {
    parse_cpu_times(&read("/proc/stat")?)
}

/// Takes one sample, given the CPU times of the previous one; returns the new CPU times too.
fn sample(before: CpuTimes, stats: &Stats) -> Result<(Sample, CpuTimes), ProcError> {
    let now = read_cpu()?;
    let sample = Sample {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        cpu_percent: cpu_percent(before, now),
        memory: parse_meminfo(&read("/proc/meminfo")?)?,
        load: parse_loadavg(&read("/proc/loadavg")?)?,
        network: parse_net_dev(&read("/proc/net/dev")?)?,
        stream_clients: stats.stream_clients(),
    };
    Ok((sample, now))
}

/// Where samples are broadcast; streams subscribe here.
pub struct MetricsHub {
    boot_ms: u128,
    sender: broadcast::Sender<Arc<Frame>>,
    seq: AtomicU64,
}

impl MetricsHub {
    pub fn new(boot_ms: u128) -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            boot_ms,
            sender,
            seq: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.sender.subscribe()
    }

    fn publish(&self, sample: &Sample) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let data = match serde_json::to_string(sample) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(error = %e, "could not serialize a metrics sample");
                return;
            }
        };
        // An error only means that no stream is open.
        let _ = self.sender.send(Arc::new(Frame {
            seq,
            id: format!("{}-{seq}", self.boot_ms),
            event: "metrics",
            data,
        }));
    }
}

/// Samples the host every `interval` and publishes to `hub` until `stop` is cancelled. A
/// tick whose `/proc` read fails is skipped and logged (at `warn` once, then at `debug`).
pub async fn run_sampler(
    hub: Arc<MetricsHub>,
    stats: Arc<Stats>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut before = read_cpu().ok();
    let mut warned = false;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = match before {
            Some(prev) => sample(prev, &stats),
            // No baseline yet: take one now and report from the next tick on.
            None => read_cpu().and_then(|now| {
                before = Some(now);
                Err(err("no CPU baseline yet"))
            }),
        };
        match result {
            Ok((sample, now)) => {
                before = Some(now);
                hub.publish(&sample);
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "skipping a metrics tick: cannot read /proc");
            }
            Err(e) => tracing::debug!(error = %e, "skipping a metrics tick"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        let a = parse_cpu_times("cpu  100 0 100 700 100 0 0 0 50 0\ncpu0 1 2 3 4\n").expect("ok");
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 800
            }
        );
        let b = CpuTimes {
            total: 2000,
            idle: 1300,
        };
        assert_eq!(cpu_percent(a, b), 50.0);
        assert_eq!(cpu_percent(a, a), 0.0);
        assert_eq!(cpu_percent(b, a), 0.0);
        assert!(parse_cpu_times("").is_err());
        assert!(parse_cpu_times("cpu 1 2 x 4").is_err());
        assert!(parse_cpu_times("cpu 1 2").is_err());
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:   250 kB\n")
            .expect("ok");
        assert_eq!(m.total_bytes, 1_024_000);
        assert_eq!(m.available_bytes, 256_000);
        assert_eq!(m.used_percent, 75.0);
        let old =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB")
                .expect("ok");
        assert_eq!(old.available_bytes, 204_800);
        assert!(parse_meminfo("MemFree: 1 kB").is_err());
        assert!(parse_meminfo("MemTotal: lots").is_err());
        assert!(parse_meminfo("MemTotal: 0 kB").is_err());
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/389 12345\n"),
            Ok([0.52, 0.58, 0.59])
        );
        assert!(parse_loadavg("0.5 0.5").is_err());
        assert!(parse_loadavg("a b c").is_err());
        assert!(parse_loadavg("NaN 1 1").is_err());
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n  wlan0:3 1 0 0 0 0 0 0 4 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(text),
            Ok(Network {
                rx_bytes: 1003,
                tx_bytes: 2004
            })
        );
        assert!(parse_net_dev("eth0: 1 2 3").is_err());
        assert_eq!(
            parse_net_dev(""),
            Ok(Network {
                rx_bytes: 0,
                tx_bytes: 0
            })
        );
    }

    #[test]
    fn reads_this_host() {
        if std::path::Path::new("/proc/stat").exists() {
            let before = read_cpu().expect("cpu");
            let (s, _) = sample(before, &Stats::default()).expect("sample");
            assert!(s.memory.total_bytes > 0);
            assert!((0.0..=100.0).contains(&s.cpu_percent));
        }
    }
}
