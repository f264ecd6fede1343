//! Counters kept while serving, read by `GET /api/info` and the host metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters shared by every request.
#[derive(Debug, Default)]
pub struct Stats {
    stream_clients: AtomicU64,
    stream_connects_total: AtomicU64,
    requests_served: AtomicU64,
    last_event_id_received: Mutex<Option<String>>,
}

impl Stats {
    /// SSE streams open right now (both kinds).
    pub fn stream_clients(&self) -> u64 {
        self.stream_clients.load(Ordering::Relaxed)
    }

    pub fn count_request(&self) {
        self.requests_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers the resume id of the latest stream request (`None` when it had none).
    pub fn record_last_event_id(&self, id: Option<&str>) {
        *self
            .last_event_id_received
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = id.map(str::to_owned);
    }

    pub fn stream_connects_total(&self) -> u64 {
        self.stream_connects_total.load(Ordering::Relaxed)
    }

    pub fn requests_served(&self) -> u64 {
        self.requests_served.load(Ordering::Relaxed)
    }

    pub fn last_event_id(&self) -> Option<String> {
        self.last_event_id_received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Counts one open stream from creation until drop. The stream body owns it, and hyper drops
/// the body when the connection closes, so the count falls as soon as a client goes away.
#[derive(Debug)]
pub struct ClientGuard {
    stats: Arc<Stats>,
}

impl ClientGuard {
    pub fn new(stats: Arc<Stats>) -> Self {
        stats.stream_clients.fetch_add(1, Ordering::Relaxed);
        stats.stream_connects_total.fetch_add(1, Ordering::Relaxed);
        Self { stats }
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.stats.stream_clients.fetch_sub(1, Ordering::Relaxed);
    }
}
