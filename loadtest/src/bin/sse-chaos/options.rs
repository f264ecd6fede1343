//! The command line. `loadtest/run --chaos` is written against these flag names.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// A fault the run injects, once, at its place in the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Redis is killed (SIGKILL) and started again at once, empty, on the same port.
    Redis,
    /// `CLIENT KILL TYPE pubsub`: every node's subscription is cut, Redis keeps its data.
    Pubsub,
    /// One gateway node (the source's leader when there is one) is killed (SIGKILL) and,
    /// after `--node-down`, started again with the same configuration.
    Node,
    /// The reference upstream is stopped (SIGTERM) and started again on the same port.
    Upstream,
}

impl Fault {
    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Redis => "redis",
            Fault::Pubsub => "pubsub",
            Fault::Node => "node",
            Fault::Upstream => "upstream",
        }
    }
}

/// The faults of a run, in timeline order; `none` for a run without faults (a baseline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults(pub Vec<Fault>);

fn parse_faults(text: &str) -> Result<Faults, String> {
    if text == "none" {
        return Ok(Faults(Vec::new()));
    }
    text.split(',')
        .map(|name| <Fault as ValueEnum>::from_str(name.trim(), true))
        .collect::<Result<_, _>>()
        .map(Faults)
        .map_err(|_| {
            format!("{text:?}: a comma-separated list of redis, pubsub, node, upstream; or none")
        })
}

/// A duration as `500ms`, `5s`, `2m`, or plain seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 500ms, 5s or 2m");
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// Starts Redis, the reference upstream and several gateway nodes on loopback, publishes at a
/// steady rate with subscribers on every node while it injects faults, and reports accepted,
/// delivered, lost and duplicated events. Exits 0 when no accepted event was lost or
/// duplicated, 1 otherwise (or on an error), 2 on a usage error.
#[derive(Debug, Clone, Parser)]
#[command(name = "sse-chaos", version, args_override_self = true)]
pub struct Options {
    /// How long to publish (`60s`, `500ms`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Events per second published with POST /broadcast, spread over the nodes.
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,

    /// Gateway nodes on the one Redis.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,

    /// Subscribers per node, each on channels `chaos` and `notifications`.
    #[arg(long, default_value_t = 20)]
    pub subscribers: usize,

    /// Notifications per second posted to the reference upstream, which a gateway source
    /// relays into channel `notifications` (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub source_rate: f64,

    /// The faults, spread evenly over the run in this order (`none`: a run without faults).
    #[arg(long, default_value = "redis,pubsub,node,upstream", value_parser = parse_faults)]
    pub faults: Faults,

    /// How long the killed node stays down before it is started again.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub node_down: Duration,

    /// The longest wait, after the last publish, for every subscriber to catch up.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub settle: Duration,

    /// The gateway binary (default: `sse-gateway` beside this one).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,

    /// The reference upstream binary (default: `reference-upstream` beside this one).
    #[arg(long)]
    pub upstream_bin: Option<PathBuf>,

    /// The Redis server binary.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,

    /// Where each process's output goes (`node-A.log`, `redis.log`, `upstream.log`); none
    /// is kept without it.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,

    /// Print only the JSON line, not the summary.
    #[arg(long)]
    pub json: bool,
}

impl Options {
    /// Checks the values that clap cannot: every figure bounded, so a run always stays small
    /// and short.
    pub fn validate(&self) -> Result<(), String> {
        let within = |name: &str, value: f64, low: f64, high: f64| {
            if value.is_finite() && (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(format!("--{name} {value}: must be within {low}..={high}"))
            }
        };
        within("duration (s)", self.duration.as_secs_f64(), 1.0, 600.0)?;
        within("rate", self.rate, 1.0, 5000.0)?;
        within("nodes", self.nodes as f64, 2.0, 6.0)?;
        within("subscribers", self.subscribers as f64, 1.0, 200.0)?;
        within("source-rate", self.source_rate, 0.0, 100.0)?;
        within("node-down (s)", self.node_down.as_secs_f64(), 0.0, 60.0)?;
        within("settle (s)", self.settle.as_secs_f64(), 0.0, 120.0)?;
        Ok(())
    }

    /// Where fault `index` of the run's faults happens, from the first publish: the faults
    /// split the run into equal parts.
    pub fn fault_offset(&self, index: usize) -> Duration {
        let parts = self.faults.0.len() as u32 + 1;
        self.duration * (index as u32 + 1) / parts
    }

    /// The longest the whole run may take: starting, publishing, settling, the restarts'
    /// waits, and stopping. A watchdog ends the process past it.
    pub fn time_limit(&self) -> Duration {
        Duration::from_secs(60) + self.duration + self.settle + self.node_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_faults() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "-1s", "5h", "NaNs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_faults("redis, node"),
            Ok(Faults(vec![Fault::Redis, Fault::Node]))
        );
        assert_eq!(parse_faults("none"), Ok(Faults(Vec::new())));
        assert!(parse_faults("redis,meteor").is_err());
    }

    #[test]
    fn faults_split_the_run_and_values_are_bounded() {
        let opts = Options::try_parse_from(["sse-chaos"]).unwrap();
        assert_eq!(opts.validate(), Ok(()));
        let offsets: Vec<u64> = (0..4).map(|i| opts.fault_offset(i).as_secs()).collect();
        assert_eq!(offsets, [12, 24, 36, 48]);
        for args in [
            &["--rate", "0"][..],
            &["--nodes", "1"],
            &["--duration", "0s"],
            &["--subscribers", "1000"],
        ] {
            let opts = Options::try_parse_from(["sse-chaos"].iter().chain(args)).unwrap();
            assert!(opts.validate().is_err(), "{args:?}");
        }
    }
}
