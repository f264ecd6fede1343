//! The command line. Durations are written the way operators write them (`5s`, `500ms`, `1m`),
//! parsed by `humantime`, so a test can run the upstream with millisecond ticks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// `reference-upstream`: a small SSE origin (notifications with replay, host metrics) that the
/// gateway relays and proxies in tests and demos.
#[derive(Debug, Clone, Parser)]
#[command(name = "reference-upstream", version, about)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,

    /// Name reported by `/api/info` and `/healthz`, to tell several upstreams apart.
    #[arg(long, default_value = "up1")]
    pub name: String,

    /// Period of generated notifications (`5s`, `500ms`); `0s` sends only POSTed ones.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub notify_interval: Duration,

    /// How many notifications are kept for `Last-Event-ID` replay.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history: u64,

    /// A `: heartbeat` comment is sent on a stream that has been silent this long.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,

    /// Period of `metrics` events on `/streams/metrics`.
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    pub metrics_interval: Duration,
}

impl Cli {
    /// The settings the server runs with.
    pub fn config(&self) -> crate::state::Config {
        crate::state::Config {
            name: self.name.clone(),
            notify_interval: self.notify_interval,
            // The range check above keeps this within usize on every supported platform.
            history: usize::try_from(self.history).unwrap_or(usize::MAX),
            heartbeat: self.heartbeat,
            metrics_interval: self.metrics_interval,
        }
    }
}

/// Parses a duration such as `5s`, `500ms` or `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (examples: 5s, 500ms, 1m)"))
}

/// Like [`parse_duration`], but zero is refused: a zero tick or heartbeat would spin.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("five").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["reference-upstream"]).expect("defaults parse");
        assert_eq!(cli.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(cli.name, "up1");
        assert_eq!(cli.notify_interval, Duration::from_secs(5));
        assert_eq!(cli.history, 1000);
        assert_eq!(cli.heartbeat, Duration::from_secs(15));
        assert_eq!(cli.metrics_interval, Duration::from_secs(1));
    }
}
