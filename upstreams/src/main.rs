//! The `reference-upstream` binary: parse the command line, bind, print the one stdout line
//! that scripts and tests wait for, then serve until SIGTERM or SIGINT.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use reference_upstream::cli::Cli;
use reference_upstream::Server;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// Longest wait for open requests to finish after a signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // Handlers go in before the stdout line: whoever reads it may signal at once.
    let signals = Signals::install()?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let server = Server::start(listener, cli.config()).context("cannot start the server")?;
    let addr = server.local_addr();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "reference-upstream listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, name = %cli.name, "serving");

    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down");
    // Streams end at once on shutdown; only a stuck non-stream request could hold it up.
    match tokio::time::timeout(SHUTDOWN_GRACE, server.shutdown()).await {
        Ok(result) => result.context("server error")?,
        Err(_) => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "requests still open after the grace period; exiting anyway"
        ),
    }
    Ok(())
}

/// SIGTERM and SIGINT, caught from installation on (the default action would kill the
/// process without a clean shutdown).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// Resolves with the name of the first of SIGTERM or SIGINT to arrive.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
