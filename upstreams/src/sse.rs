//! The SSE side shared by both streams: the frame type every publisher broadcasts, the body
//! stream each client reads (replay, then live, with heartbeats), and the controls that end
//! streams on shutdown or through the disconnect fault hook.
//!
//! A stream never waits for a slow client: events reach it through a bounded
//! `tokio::sync::broadcast`, and a client that falls more than its capacity behind is
//! disconnected. Its `EventSource` reconnects with `Last-Event-ID` and catches up from history.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::ClientGuard;

/// The reconnection delay announced to clients (`retry: 1000`), in milliseconds.
pub const RETRY_MS: u64 = 1000;

/// One event as published: numbered (`seq`, increasing per stream kind), with its SSE id,
/// type and compact JSON data. Shared by `Arc` between history and every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub id: String,
    pub event: &'static str,
    pub data: String,
}

impl Frame {
    fn to_event(&self) -> Event {
        Event::default()
            .event(self.event)
            .id(&self.id)
            .data(&self.data)
    }
}

/// Ends streams. Shutdown ends every stream for good; [`StreamControl::disconnect_all`] ends
/// the streams open at that moment (each stream holds the token of the "epoch" it opened in,
/// and the hook cancels that epoch and starts a new one).
pub struct StreamControl {
    shutdown: CancellationToken,
    epoch: Mutex<CancellationToken>,
}

impl StreamControl {
    pub fn new(shutdown: CancellationToken) -> Self {
        let epoch = Mutex::new(shutdown.child_token());
        Self { shutdown, epoch }
    }

    /// The token a stream opened now must watch.
    pub fn token(&self) -> CancellationToken {
        self.epoch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Ends every stream opened before this call.
    pub fn disconnect_all(&self) {
        let fresh = self.shutdown.child_token();
        let old = std::mem::replace(
            &mut *self.epoch.lock().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
        old.cancel();
    }
}

/// Everything one stream needs to start.
pub struct StreamStart {
    /// Events to send before the live ones (the `Last-Event-ID` replay).
    pub replay: Vec<Arc<Frame>>,
    pub live: broadcast::Receiver<Arc<Frame>>,
    pub heartbeat: Duration,
    /// Ends the stream (shutdown or disconnect hook).
    pub cancel: CancellationToken,
    /// Counts the stream as open until the body is dropped.
    pub guard: ClientGuard,
}

struct StreamState {
    pending: VecDeque<Event>,
    live: broadcast::Receiver<Arc<Frame>>,
    /// Live frames at or below this were replayed already (or are older than the stream).
    last_seq: u64,
    heartbeat: Duration,
    cancel: CancellationToken,
    _guard: ClientGuard,
}

/// The body stream: `retry`, the replay, then live events until cancelled, lagging or closed;
/// a `: heartbeat` comment whenever nothing was sent for `heartbeat`.
pub fn event_stream(start: StreamStart) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let last_seq = start.replay.last().map_or(0, |f| f.seq);
    let mut pending = VecDeque::with_capacity(start.replay.len() + 1);
    pending.push_back(Event::default().retry(Duration::from_millis(RETRY_MS)));
    pending.extend(start.replay.iter().map(|f| f.to_event()));
    let state = StreamState {
        pending,
        live: start.live,
        last_seq,
        heartbeat: start.heartbeat,
        cancel: start.cancel,
        _guard: start.guard,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.cancel.is_cancelled() {
            return None;
        }
        if let Some(event) = st.pending.pop_front() {
            return Some((Ok(event), st));
        }
        let quiet_until = Instant::now() + st.heartbeat;
        loop {
            tokio::select! {
                biased;
                _ = st.cancel.cancelled() => return None,
                received = st.live.recv() => match received {
                    Ok(frame) if frame.seq <= st.last_seq => continue,
                    Ok(frame) => {
                        st.last_seq = frame.seq;
                        return Some((Ok(frame.to_event()), st));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "stream client fell behind; disconnecting it so it resumes from history");
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep_until(quiet_until) => {
                    return Some((Ok(Event::default().comment("heartbeat")), st));
                }
            }
        }
    })
}

/// The HTTP response for a stream: `text/event-stream`, `Cache-Control: no-cache` (set by
/// axum's `Sse`), and `X-Accel-Buffering: no` so a buffering proxy in front passes each event
/// on at once.
pub fn response(start: StreamStart) -> Response {
    let mut response = Sse::new(event_stream(start)).into_response();
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
