//! Graceful drain on SIGTERM/SIGINT, and SIGHUP.
//!
//! pingora's own SIGTERM path closes the listeners at once and then sleeps its grace period
//! unconditionally, while SSE streams would stay open until the runtime is torn down. Instead the
//! gateway installs its own [`ShutdownSignalWatch`]: on SIGTERM/SIGINT it flips [`Drain`] (readiness
//! turns 503, new streams and publishes get 503 while the listener stays up to say so), lets every
//! stream close itself at a random moment within `shutdown.grace_period` with a jittered `retry:`
//! so reconnects spread over the remaining nodes, waits until the streams are gone (or the grace
//! period is over), and only then hands control back to pingora, which has nothing left to wait for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::hub::Hub;
use crate::metrics;

/// The drain state shared by the signal watch, the readiness probe and every stream.
#[derive(Default)]
pub struct Drain {
    started: AtomicBool,
    notify: Notify,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Starts the drain (idempotent).
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            metrics::DRAINING.set(1);
            self.notify.notify_waiters();
        }
    }

    /// Resolves when the drain starts (at once if it already has).
    pub async fn started(&self) {
        let notified = self.notify.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }
}

/// Watches the process signals for pingora (see the module doc).
pub struct SignalWatch {
    pub drain: Arc<Drain>,
    pub hub: Arc<Hub>,
    pub grace_period: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => tracing::info!("SIGHUP received; configuration reload is not available yet, ignoring it"),
            }
        };
        let streams = self.hub.clients().len();
        tracing::info!(
            signal = name,
            streams,
            grace_period_ms = self.grace_period.as_millis() as u64,
            "draining: closing streams over the grace period"
        );
        self.drain.start();
        // Streams pick their moments within the grace period; allow a little slack for the last
        // writes before giving up on stragglers.
        let slack = self.grace_period + Duration::from_secs(1);
        let _ = tokio::time::timeout(slack, self.hub.clients().until_empty()).await;
        tracing::info!(left = self.hub.clients().len(), "drain finished; exiting");
        ShutdownSignal::GracefulTerminate
    }
}
