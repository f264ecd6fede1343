//! What the upstream tells about itself: counters kept while serving, `GET /api/info` (which
//! the gateway's tests use to see how many streams it holds open and which forwarding headers
//! arrived) and `GET /healthz`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;

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

    fn last_event_id(&self) -> Option<String> {
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

/// The reply of `GET /api/info`.
#[derive(Debug, Serialize)]
pub struct Info {
    pub name: String,
    pub stream_clients: u64,
    pub stream_connects_total: u64,
    pub requests_served: u64,
    pub notifications_published: u64,
    pub last_event_id_received: Option<String>,
    pub forwarded: Forwarded,
}

/// The forwarding headers of the info request itself, `null` when absent (several
/// occurrences of one header are joined with `, `, as HTTP allows).
#[derive(Debug, Serialize)]
pub struct Forwarded {
    #[serde(rename = "x-forwarded-for")]
    pub x_forwarded_for: Option<String>,
    #[serde(rename = "x-forwarded-proto")]
    pub x_forwarded_proto: Option<String>,
    #[serde(rename = "x-forwarded-host")]
    pub x_forwarded_host: Option<String>,
    pub forwarded: Option<String>,
}

impl Forwarded {
    fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            x_forwarded_for: header_text(headers, "x-forwarded-for"),
            x_forwarded_proto: header_text(headers, "x-forwarded-proto"),
            x_forwarded_host: header_text(headers, "x-forwarded-host"),
            forwarded: header_text(headers, "forwarded"),
        }
    }
}

/// All values of header `name` joined with `, `; bytes that are not UTF-8 are replaced.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// `GET /api/info`.
pub async fn info(State(state): State<AppState>, headers: HeaderMap) -> Json<Info> {
    let stats = &state.stats;
    Json(Info {
        name: state.config.name.clone(),
        stream_clients: stats.stream_clients(),
        stream_connects_total: stats.stream_connects_total.load(Ordering::Relaxed),
        requests_served: stats.requests_served.load(Ordering::Relaxed),
        notifications_published: state.notifications.published(),
        last_event_id_received: stats.last_event_id(),
        forwarded: Forwarded::from_headers(&headers),
    })
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "name": state.config.name}))
}
