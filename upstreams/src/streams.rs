//! The stream endpoints (`GET /streams/notifications`, `GET /streams/metrics`) and the
//! disconnect fault hook (`POST /streams/disconnect`).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::sse::{self, Frame, StreamStart};
use crate::state::AppState;
use crate::stats::ClientGuard;

/// The id a client resumes from: the `Last-Event-ID` header (what `EventSource` sends), else
/// the `lastEventId` query parameter (for clients that cannot set headers). Empty means none.
fn resume_id(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let from_query = || {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(key, _)| key == "lastEventId")
            .map(|(_, value)| value.trim().to_owned())
    };
    from_header.or_else(from_query).filter(|id| !id.is_empty())
}

/// `GET /streams/notifications`: replay from `Last-Event-ID` (see
/// [`crate::notifications::NotificationHub::subscribe`]), then live notifications.
pub async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let resume = record_resume_id(&state, &headers, query.as_deref());
    let subscription = state.notifications.subscribe(resume.as_deref());
    stream(&state, subscription.replay, subscription.live)
}

/// `GET /streams/metrics`: live samples only; a resume id is recorded but changes nothing.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    record_resume_id(&state, &headers, query.as_deref());
    stream(&state, Vec::new(), state.metrics.subscribe())
}

/// The request's resume id, also kept for `/api/info` (which proxy tests read).
fn record_resume_id(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let resume = resume_id(headers, query);
    state.stats.record_last_event_id(resume.as_deref());
    resume
}

/// An SSE response: `replay` first, then `live`, counted as a stream client while it lasts.
fn stream(
    state: &AppState,
    replay: Vec<Arc<Frame>>,
    live: broadcast::Receiver<Arc<Frame>>,
) -> Response {
    sse::response(StreamStart {
        replay,
        live,
        heartbeat: state.config.heartbeat,
        cancel: state.control.token(),
        guard: ClientGuard::new(Arc::clone(&state.stats)),
    })
}

/// The reply of `POST /streams/disconnect`.
#[derive(Debug, Serialize)]
pub struct Disconnected {
    /// Streams that were open when the hook ran.
    pub closed: u64,
}

/// `POST /streams/disconnect`, a fault-injection hook: ends every open stream at once, as a
/// crash or network cut would, so tests can watch clients (or the gateway) reconnect with
/// `Last-Event-ID`.
pub async fn disconnect(State(state): State<AppState>) -> Json<Disconnected> {
    let closed = state.stats.stream_clients();
    state.control.disconnect_all();
    tracing::info!(closed, "fault hook: disconnected every open stream");
    Json(Disconnected { closed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resume_ids() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_id(&headers, None), None);
        assert_eq!(
            resume_id(&headers, Some("a=1&lastEventId=9-3")),
            Some("9-3".to_owned())
        );
        assert_eq!(resume_id(&headers, Some("lastEventId=")), None);
        headers.insert("last-event-id", HeaderValue::from_static("9-4"));
        assert_eq!(
            resume_id(&headers, Some("lastEventId=9-3")),
            Some("9-4".to_owned())
        );
    }
}
