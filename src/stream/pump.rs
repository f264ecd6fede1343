//! The stream loop, independent of the transport.
//!
//! A stream waits on a few things at once: its live queue, the heartbeat timer, its lifetime
//! deadline (or its credential's expiry, whichever comes first), the drain, a request to close
//! it (from an operator, or from the hub when its queue overflowed), and the client leaving.
//! Events arrive already encoded; whatever is queued is written as one chunk, so a burst costs
//! one write. On a plain HTTP/1.1 stream the hub's writer threads write most live events
//! themselves (`hub::queue`): the queue then only holds what they could not write at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::time::{sleep_until, Instant};

use super::StreamSettings;
use crate::config::HeartbeatKind;
use crate::drain::Drain;
use crate::hub::{CloseReason, Event, EventId, StreamQueue, Subscription};
use crate::metrics;
use crate::sse;

/// Most events written in one chunk: bounds a chunk's size while a fast channel is catching up.
const MAX_BATCH: usize = 256;

/// The event that ends a stream whose credential expired, and its data.
pub const TOKEN_EXPIRED_EVENT: &str = "token_expired";
pub const TOKEN_EXPIRED_DATA: &str = r#"{"reason":"token_expired"}"#;
/// The event that ends a stream whose rights a config reload took away, and its data.
pub const ACCESS_REVOKED_EVENT: &str = "access_revoked";
pub const ACCESS_REVOKED_DATA: &str = r#"{"reason":"access_revoked"}"#;

/// How long a kicked or revoked stream's last chunk may take: it is to be gone, and a client
/// that cannot take a few bytes at once is not worth waiting for.
const KICK_WRITE_DEADLINE: Duration = Duration::from_secs(1);

/// About 30 years: far enough to mean "never", and safely inside what the timer can represent.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Where a stream's bytes go.
pub trait Downstream {
    /// Writes one chunk; `end` finishes the response after it.
    fn write(
        &mut self,
        chunk: Bytes,
        end: bool,
    ) -> impl std::future::Future<Output = Result<(), WriteError>> + Send;

    /// Resolves when the client has gone away.
    fn gone(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The peer accepted no bytes within the write timeout.
    TimedOut,
    /// The connection is gone.
    Closed,
}

/// Why a stream ended; the label of `sse_gateway_streams_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientLeft,
    SlowConsumer,
    Kicked,
    Lifetime,
    IdleTimeout,
    Shutdown,
    /// The credential it was opened with expired (a JWT's `exp`).
    TokenExpired,
    /// A config reload took its rights away.
    Revoked,
}

impl End {
    pub fn label(self) -> &'static str {
        match self {
            End::ClientLeft => "client_left",
            End::SlowConsumer => "slow_consumer",
            End::Kicked => "kicked",
            End::Lifetime => "lifetime",
            End::IdleTimeout => "idle_timeout",
            End::Shutdown => "shutdown",
            End::TokenExpired => "token_expired",
            End::Revoked => "revoked",
        }
    }
}

impl From<CloseReason> for End {
    fn from(reason: CloseReason) -> End {
        match reason {
            CloseReason::SlowConsumer => End::SlowConsumer,
            CloseReason::Kicked => End::Kicked,
            CloseReason::Revoked => End::Revoked,
        }
    }
}

impl From<WriteError> for End {
    fn from(e: WriteError) -> End {
        match e {
            WriteError::TimedOut => End::IdleTimeout,
            WriteError::Closed => End::ClientLeft,
        }
    }
}

/// Runs a registered stream until it ends: the opening chunk (retry, a comment so `EventSource`
/// fires `open` at once, padding, then the reset notice, the replay, or a lone `id:` with the
/// stream's position), then live events and
/// heartbeats, then (at lifetime or drain) the queued events and a jittered `retry:`, or (when
/// the credential expires) the queued events and a `token_expired` event.
pub async fn pump<D: Downstream>(
    out: &mut D,
    sub: Subscription,
    settings: &StreamSettings,
    drain: &Drain,
) -> End {
    let Subscription {
        client,
        replay,
        reset,
        position,
        guard: _unregister_on_drop,
    } = sub;

    let mut last_id = position;
    let replay_bytes: usize = replay.iter().map(|e| e.frame.len()).sum();
    let mut opening = BytesMut::with_capacity(96 + settings.padding + replay_bytes);
    opening.extend_from_slice(&sse::encode_retry(settings.retry.as_millis() as u64));
    opening.extend_from_slice(&sse::encode_comment("connected"));
    opening.extend_from_slice(&sse::encode_padding(settings.padding));
    if let Some(reason) = reset {
        let data = format!(r#"{{"reason":"{}"}}"#, reason.as_str());
        opening.extend_from_slice(&sse::encode_event(&position.text(), "reset", &data));
    }
    for event in &replay {
        opening.extend_from_slice(&event.frame);
        last_id = event.id;
    }
    if reset.is_none() && replay.is_empty() {
        // Where the client stands, without an event: a stream that drops before its first
        // event resumes from here instead of missing what is published meanwhile.
        opening.extend_from_slice(&sse::encode_id(&position.text()));
    }
    if let Err(e) = out.write(opening.freeze(), false).await {
        return e.into();
    }
    count_sent(&client.queue, &replay);
    drop(replay);

    // The futures a stream waits on for its whole life are made once and pinned here, not remade
    // on every turn of the loop: each turn then costs no waiter registration on the shared
    // notifiers and no timer-wheel update. The heartbeat timer is moved lazily (see below).
    let opened = Instant::now();
    let closed = client.closed();
    tokio::pin!(closed);
    let drain_started = drain.started();
    tokio::pin!(drain_started);
    let mut draining = false;
    // One timer for every planned end (lifetime, credential expiry, drain): the earliest wins,
    // and `closing` says which it is. The expiry is exact (no jitter): the credential is no
    // longer valid after it.
    let lifetime_at = settings.lifetime.map(|l| opened + jitter_down(l));
    let expiry_at = settings.expires_in.map(|d| opened + d.min(FAR_FUTURE));
    let (close_at, mut closing) = match (lifetime_at, expiry_at) {
        (Some(lifetime), Some(expiry)) if lifetime < expiry => (lifetime, End::Lifetime),
        (_, Some(expiry)) => (expiry, End::TokenExpired),
        (Some(lifetime), None) => (lifetime, End::Lifetime),
        (None, None) => (far_future(), End::Lifetime),
    };
    let close_timer = sleep_until(close_at);
    tokio::pin!(close_timer);
    let heartbeat_timer = sleep_until(opened + settings.heartbeat_interval);
    tokio::pin!(heartbeat_timer);
    let mut last_write = opened;
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(8);

    let queue = &client.queue;
    let end = loop {
        let chunk = tokio::select! {
            biased;
            reason = &mut closed => break reason.into(),
            // An empty batch asks for a write of nothing: it finishes what the fan-out's direct
            // write left unsent, or finds the connection broken.
            () = std::future::poll_fn(|cx| queue.poll_recv(cx, &mut batch, MAX_BATCH)) => {
                Event::frames_of(&batch)
            }
            _ = &mut heartbeat_timer => {
                // The timer is not moved on every write; when it fires after a recent write (the
                // task's or the fan-out's), it is moved to one interval after that write instead
                // of sending a heartbeat.
                let latest = queue
                    .last_direct_write()
                    .map_or(last_write, |at| last_write.max(Instant::from_std(at)));
                let due = latest + settings.heartbeat_interval;
                if Instant::now() < due {
                    heartbeat_timer.as_mut().reset(due);
                    continue;
                }
                heartbeat(settings.heartbeat, queue.last_id().unwrap_or(last_id))
            }
            _ = &mut close_timer => break closing,
            _ = &mut drain_started, if !draining => {
                draining = true;
                let spread = settings.grace_period.mul_f64(0.9 * rand::rng().random::<f64>());
                let at = Instant::now() + spread;
                // An expiry before the drain moment still ends the stream as expired.
                if closing != End::TokenExpired || at < close_timer.deadline() {
                    closing = End::Shutdown;
                }
                let at = at.min(close_timer.deadline());
                close_timer.as_mut().reset(at);
                continue;
            }
            _ = out.gone() => break End::ClientLeft,
        };
        let written = tokio::select! {
            biased;
            // Do not wait for a write to a client that is being closed anyway.
            reason = &mut closed => break reason.into(),
            r = out.write(chunk, false) => r,
        };
        if let Err(e) = written {
            break e.into();
        }
        last_write = Instant::now();
        if heartbeat_timer.is_elapsed() {
            heartbeat_timer
                .as_mut()
                .reset(last_write + settings.heartbeat_interval);
        }
        count_sent(queue, &batch);
        // One clock read for the whole batch: at millions of deliveries a second, a clock read
        // per event was a visible share of the profile.
        let written_at = last_write.into_std();
        for event in batch.drain(..) {
            let latency = written_at.saturating_duration_since(event.accepted_at);
            metrics::DELIVERY_LATENCY.observe(latency.as_secs_f64());
        }
    };

    // Nothing more is queued or written by the fan-out from here; what was queued is flushed
    // below or, for a stream closed by force, dropped.
    let rest = queue.end();
    let last_id = queue.last_id().unwrap_or(last_id);
    if matches!(end, End::Kicked | End::Revoked) {
        // The response still ends properly (the last chunk on HTTP/1.1), so that every client
        // sees a complete body rather than a broken one. A revoked stream is told why (nothing
        // still queued is sent: it has no right to it), so the app can ask its user to sign in
        // rather than let EventSource reconnect into a 401 or 403 that stops it for good.
        let last = if end == End::Revoked {
            sse::encode_event(&last_id.text(), ACCESS_REVOKED_EVENT, ACCESS_REVOKED_DATA)
        } else {
            Bytes::new()
        };
        let _ = tokio::time::timeout(KICK_WRITE_DEADLINE, out.write(last, true)).await;
    } else if matches!(end, End::Lifetime | End::Shutdown | End::TokenExpired) {
        // Flush what is already queued, then the last word.
        let mut last = BytesMut::new();
        for event in &rest {
            last.extend_from_slice(&event.frame);
        }
        if end == End::TokenExpired {
            // Tells the app to get a new credential rather than let EventSource reconnect with
            // the old one (which would get 401 and stop for good). The id repeats the last one,
            // so a reconnect with the new credential resumes where this stream stopped.
            last.extend_from_slice(&sse::encode_event(
                &last_id.text(),
                TOKEN_EXPIRED_EVENT,
                TOKEN_EXPIRED_DATA,
            ));
        } else {
            // Say when to come back: jittered, so a whole node's clients do not reconnect in
            // the same instant.
            last.extend_from_slice(&sse::encode_retry(
                jitter_up(settings.retry).as_millis() as u64
            ));
        }
        let _ = out.write(last.freeze(), true).await;
    }
    end
}

fn count_sent(queue: &StreamQueue, events: &[Arc<Event>]) {
    queue.count_sent(events.len());
    metrics::EVENTS_DELIVERED.inc_by(events.len() as u64);
}

fn heartbeat(kind: HeartbeatKind, last_id: EventId) -> Bytes {
    match kind {
        HeartbeatKind::Comment => Bytes::from_static(b": heartbeat\n\n"),
        // An event must carry an id; repeating the last one leaves the resume point unchanged.
        HeartbeatKind::Event => sse::encode_event(&last_id.text(), "heartbeat", ""),
    }
}

/// A deadline that never comes, for a stream without a lifetime (about 30 years ahead: far
/// enough, and safely inside what the timer can represent).
fn far_future() -> Instant {
    Instant::now() + FAR_FUTURE
}

/// `d` shortened by up to 10%: lifetimes never exceed the configured maximum.
fn jitter_down(d: Duration) -> Duration {
    d.mul_f64(1.0 - 0.1 * rand::rng().random::<f64>())
}

/// `d` lengthened by up to 100%: reconnects spread over one more retry interval.
fn jitter_up(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::rng().random::<f64>())
}

#[cfg(test)]
pub(super) mod tests;
