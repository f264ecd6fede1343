//! The drain: the one flag that tells the readiness probe, the handlers and every stream that
//! the node is shutting down (or handing over to a new process). Set by the signal watch.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

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
