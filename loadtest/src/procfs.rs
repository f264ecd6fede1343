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

/// User and system (kernel) CPU time of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// Fields 14 and 15 of `/proc/PID/stat`, counted after the `(comm)` field, which may itself
/// contain spaces and parentheses (hence the last `)`).
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Clock ticks per second for `/proc/PID/stat` times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// VmRSS added up over `pids`; `None` if any cannot be read.
pub fn rss_kib_sum(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&pid| rss_kib(Some(pid))).sum()
}

/// User and system ticks added up over `pids`; `None` if any cannot be read.
fn cpu_ticks_sum(pids: &[u32]) -> Option<(u64, u64)> {
    pids.iter().try_fold((0, 0), |(user, system), &pid| {
        let (u, s) = cpu_ticks(pid)?;
        Some((user + u, system + s))
    })
}

/// A point to measure the CPU use of a set of processes from.
#[derive(Debug, Clone)]
pub struct CpuMark {
    pids: Vec<u32>,
    user: u64,
    system: u64,
    at: Instant,
}

/// CPU a process used since a [`CpuMark`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSpent {
    pub user_s: f64,
    /// In the kernel: system calls, and on loopback the TCP paths of both ends.
    pub system_s: f64,
    pub wall_s: f64,
}

impl CpuMark {
    pub fn now(pids: &[u32]) -> Option<CpuMark> {
        let (user, system) = cpu_ticks_sum(pids)?;
        Some(CpuMark {
            pids: pids.to_vec(),
            user,
            system,
            at: Instant::now(),
        })
    }

    pub fn spent(&self) -> Option<CpuSpent> {
        let (user, system) = cpu_ticks_sum(&self.pids)?;
        let per_second = ticks_per_second() as f64;
        Some(CpuSpent {
            user_s: user.checked_sub(self.user)? as f64 / per_second,
            system_s: system.checked_sub(self.system)? as f64 / per_second,
            wall_s: self.at.elapsed().as_secs_f64(),
        })
    }
}

impl CpuSpent {
    /// Average use in percent of one core.
    pub fn percent(&self) -> Option<f64> {
        (self.wall_s > 0.0).then(|| (self.user_s + self.system_s) / self.wall_s * 100.0)
    }

    /// (user, kernel) microseconds per `events`; `None` for none.
    pub fn micros_per(&self, events: u64) -> Option<(f64, f64)> {
        (events > 0).then(|| {
            let n = events as f64;
            (self.user_s * 1e6 / n, self.system_s * 1e6 / n)
        })
    }
}

/// Samples the RSS of a set of processes (added up) in the background, keeping the maximum.
/// Stops when dropped.
pub struct RssSampler {
    pids: Arc<[u32]>,
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pids: &[u32]) -> RssSampler {
        let pids: Arc<[u32]> = pids.into();
        let max_kib = Arc::new(AtomicU64::new(0));
        let (max, sampled) = (max_kib.clone(), pids.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(kib) = rss_kib_sum(&sampled) {
                    max.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        RssSampler {
            pids,
            max_kib,
            task,
        }
    }

    /// Samples now (so a figure taken at a chosen moment also counts toward the maximum).
    pub fn sample(&self) -> Option<u64> {
        let kib = rss_kib_sum(&self.pids)?;
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
        assert_eq!(parse_cpu_ticks(stat), Some((250, 50)));
        let spent = CpuSpent {
            user_s: 2.0,
            system_s: 6.0,
            wall_s: 10.0,
        };
        assert_eq!(spent.percent(), Some(80.0));
        assert_eq!(spent.micros_per(400_000), Some((5.0, 15.0)));
        assert_eq!(spent.micros_per(0), None);
    }

    #[test]
    fn reads_our_own_process() {
        assert!(rss_kib(None).is_some_and(|k| k > 0));
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(raise_open_files_limit().is_some_and(|n| n > 0));
    }
}
