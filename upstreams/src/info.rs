//! What the upstream tells about itself: `GET /api/info` (which the gateway's tests use to see
//! how many streams it holds open and which forwarding headers arrived) and `GET /healthz`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use crate::state::AppState;

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
        stream_connects_total: stats.stream_connects_total(),
        requests_served: stats.requests_served(),
        notifications_published: state.notifications.published(),
        last_event_id_received: stats.last_event_id(),
        forwarded: Forwarded::from_headers(&headers),
    })
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "name": state.config.name}))
}
