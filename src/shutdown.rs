//! Signals: graceful drain on SIGTERM/SIGINT, a socket hand-over to a new process on SIGQUIT,
//! and a config reload on SIGHUP.
//!
//! pingora's own SIGTERM path closes the listeners at once and then sleeps its grace period
//! unconditionally, while SSE streams would stay open until the runtime is torn down. Instead the
//! gateway installs its own [`ShutdownSignalWatch`]: on SIGTERM/SIGINT it flips [`Drain`] (readiness
//! turns 503, new streams and publishes get 503 while the listener stays up to say so), lets every
//! stream close itself at a random moment within `shutdown.grace_period` with a jittered `retry:`
//! so reconnects spread over the remaining nodes, waits until the streams are gone (or the grace
//! period is over), and only then hands control back to pingora, which has nothing left to wait
//! for.
//!
//! On SIGQUIT (`sse-gateway --upgrade` sends it) pingora hands the listening sockets to the new
//! process, which accepts from then on; this process keeps serving what it accepted and, once
//! pingora stops its listener, drains exactly as on SIGTERM while pingora waits out the grace
//! period.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use crate::drain::Drain;
use crate::hub::Hub;
use crate::reload::{Cause, ReloadTrigger};
use crate::snapshot::Snapshots;

/// pingora's execution phases, to learn when a socket hand-over is done.
pub struct Phases(Mutex<Option<broadcast::Receiver<ExecutionPhase>>>);

impl From<broadcast::Receiver<ExecutionPhase>> for Phases {
    fn from(rx: broadcast::Receiver<ExecutionPhase>) -> Phases {
        Phases(Mutex::new(Some(rx)))
    }
}

/// Watches the process signals for pingora (see the module doc).
pub struct SignalWatch {
    pub drain: Arc<Drain>,
    pub hub: Arc<Hub>,
    /// For the grace period in force when the signal comes.
    pub snapshots: Arc<Snapshots>,
    pub reload: ReloadTrigger,
    pub phases: Phases,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = quit.recv() => {
                    self.hand_over();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    self.reload.request(Cause::Signal);
                }
            }
        };
        self.drain(name).await;
        // Every stream is gone: nothing is left for pingora to wait for.
        ShutdownSignal::FastShutdown
    }
}

impl SignalWatch {
    /// Closes the streams over the grace period and waits until they are gone (or the period
    /// is over).
    async fn drain(&self, signal: &str) {
        drain_streams(&self.drain, &self.hub, &self.snapshots, signal).await;
    }

    /// After pingora has sent the listening sockets to the new process and stopped accepting,
    /// drains the streams of this one (in the background: pingora waits its grace period).
    fn hand_over(&self) {
        tracing::info!("SIGQUIT received: handing the listener over to the new process");
        let Some(mut phases) = self.phases.0.lock().take() else {
            return;
        };
        let (drain, hub, snapshots) =
            (self.drain.clone(), self.hub.clone(), self.snapshots.clone());
        tokio::spawn(async move {
            loop {
                match phases.recv().await {
                    Ok(ExecutionPhase::ShutdownStarted)
                    | Err(broadcast::error::RecvError::Closed) => break,
                    _ => continue,
                }
            }
            drain_streams(&drain, &hub, &snapshots, "SIGQUIT").await;
        });
    }
}

async fn drain_streams(drain: &Drain, hub: &Hub, snapshots: &Snapshots, signal: &str) {
    let grace_period = snapshots.load().config.shutdown.grace_period;
    tracing::info!(
        signal,
        streams = hub.clients().len(),
        grace_period_ms = grace_period.as_millis() as u64,
        "draining: closing streams over the grace period"
    );
    drain.start();
    // Streams pick their moments within the grace period; allow a little slack for the last
    // writes before giving up on stragglers.
    let slack = grace_period + Duration::from_secs(1);
    let _ = tokio::time::timeout(slack, hub.clients().until_empty()).await;
    tracing::info!(left = hub.clients().len(), "drain finished; exiting");
}
