//! Process figures from `/proc` (Linux): RSS and CPU time of the server and of ourselves, and
//! the open-files limit that decides how many streams one process can hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the server's RSS is sampled for its maximum.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// `VmRSS` of `pid` (ourselves when `None`), in KiB; `None` if it cannot be read (gone, not Linux).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// Fields 14 and 15 of `/proc/PID/stat`, counted after the `(comm)` field, which may itself
/// contain spaces and parentheses (hence the last `)`).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for `/proc/PID/stat` times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// A point to measure CPU use from.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    ticks: u64,
    at: Instant,
}

impl CpuMark {
    pub fn now(pid: u32) -> Option<CpuMark> {
        Some(CpuMark {
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// Average CPU use of `pid` since this mark, in percent of one core.
    pub fn percent_since(&self, pid: u32) -> Option<f64> {
        let ticks = cpu_ticks(pid)?.checked_sub(self.ticks)?;
        let wall = self.at.elapsed().as_secs_f64();
        (wall > 0.0).then(|| ticks as f64 / ticks_per_second() as f64 / wall * 100.0)
    }
}

/// Samples a process's RSS in the background, keeping the maximum. Stops when dropped.
pub struct RssSampler {
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(kib) = rss_kib(Some(pid)) {
                    max.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        RssSampler { max_kib, task }
    }

    /// Samples now (so a figure taken at a chosen moment also counts toward the maximum).
    pub fn sample(&self, pid: u32) -> Option<u64> {
        let kib = rss_kib(Some(pid))?;
        self.max_kib.fetch_max(kib, Ordering::Relaxed);
        Some(kib)
    }

    pub fn max_kib(&self) -> Option<u64> {
        Some(self.max_kib.load(Ordering::Relaxed)).filter(|&k| k > 0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises the soft open-files limit to the hard one, since each stream is a file descriptor
/// and shells often start with a soft limit of 1024. Returns the soft limit in force after.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur) // rlim_t is u64 on Linux
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    1234 kB\n"),
            Some(1234)
        );
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_our_own_process() {
        assert!(rss_kib(None).is_some_and(|k| k > 0));
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(raise_open_files_limit().is_some_and(|n| n > 0));
    }
}
