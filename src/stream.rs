//! One client's SSE stream: from `GET /events` to the last byte.
//!
//! A stream is one task that waits on a few things at once: its live queue, the heartbeat timer,
//! its lifetime deadline, the drain, an operator's or the hub's request to close, and the client's
//! side of the socket (so a client that leaves is noticed while nothing is being written). Events
//! arrive already encoded; whatever is queued is written in one chunk, so a burst costs one write.

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use rand::Rng;
use tokio::time::{sleep_until, Instant};

use crate::auth::{self, Action, Principal};
use crate::config::{is_valid_channel, is_valid_event_type, Config, HeartbeatKind, Policy};
use crate::gateway::App;
use crate::hub::{CloseReason, EventId, SubscribeRequest, Subscription};
use crate::metrics;
use crate::reply::{ApiError, CommonHeaders};
use crate::sse;

/// Most events written in one chunk: bounds a chunk's size while a fast channel is catching up.
const MAX_BATCH: usize = 256;
/// How long a write may take when `sse.idle_timeout` is not set: a client whose socket accepts
/// nothing for this long is gone or hopelessly slow.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `GET /events` asks for, parsed from the query and headers.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamRequest {
    pub channels: Vec<Box<str>>,
    pub types: Option<Box<[Box<str>]>>,
    pub last_event_id: Option<String>,
}

impl StreamRequest {
    /// Parses `?channel=a&channel=b`, `?channels=a,b`, `?types=x,y` and the resume point
    /// (`Last-Event-ID` header, else `?lastEventId=`). Unknown query parameters are ignored, as
    /// browsers and cache busters add their own.
    pub fn parse(
        query: Option<&str>,
        last_event_id_header: Option<&[u8]>,
        max_channels: usize,
    ) -> Result<StreamRequest, ApiError> {
        let mut channels: Vec<Box<str>> = Vec::new();
        let mut types: Option<Vec<Box<str>>> = None;
        let mut query_id = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "channel" => push_channel(&mut channels, &value, max_channels)?,
                "channels" => {
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        push_channel(&mut channels, name, max_channels)?;
                    }
                }
                "types" => {
                    let list = types.get_or_insert_with(Vec::new);
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        if !is_valid_event_type(name) {
                            return Err(ApiError::bad_request(
                                "invalid_types",
                                "types must be event names matching [A-Za-z0-9._:-]{1,64}",
                            ));
                        }
                        if list.len() >= 64 {
                            return Err(ApiError::bad_request("invalid_types", "at most 64 types"));
                        }
                        list.push(name.into());
                    }
                }
                "lastEventId" => query_id = Some(value.into_owned()),
                _ => {}
            }
        }
        if channels.is_empty() {
            return Err(ApiError::bad_request(
                "missing_channel",
                "name at least one channel: ?channel=name or ?channels=a,b",
            ));
        }
        if types.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(ApiError::bad_request("invalid_types", "types is empty"));
        }
        // A header that is not UTF-8 cannot be one of our ids: treat it as malformed (reset).
        // An empty id means "no resume point" (EventSource never sends one).
        let last_event_id = match last_event_id_header {
            Some(raw) => Some(String::from_utf8_lossy(raw).into_owned()),
            None => query_id,
        }
        .filter(|id| !id.is_empty());
        Ok(StreamRequest {
            channels,
            types: types.map(Vec::into_boxed_slice),
            last_event_id,
        })
    }
}

fn push_channel(channels: &mut Vec<Box<str>>, name: &str, max: usize) -> Result<(), ApiError> {
    if !is_valid_channel(name) {
        return Err(ApiError::bad_request(
            "invalid_channel",
            "channel names match [A-Za-z0-9._:/-]{1,128}",
        ));
    }
    if channels.iter().any(|c| &**c == name) {
        return Ok(());
    }
    if channels.len() >= max {
        return Err(ApiError::bad_request(
            "too_many_channels",
            format!("at most {max} channels per connection"),
        ));
    }
    channels.push(name.into());
    Ok(())
}

/// Checks the subscribe right for every channel.
pub fn authorize(cfg: &Config, who: Option<&Principal>, channels: &[Box<str>]) -> Result<(), ApiError> {
    for channel in channels {
        let policy = cfg.channel_rule(channel).map_or(Policy::Claims, |r| r.subscribe);
        auth::authorize(policy, who, Action::Subscribe, channel)?;
    }
    Ok(())
}

/// Everything a running stream needs to know, fixed when it opens.
pub struct StreamSettings {
    pub retry: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat: HeartbeatKind,
    pub lifetime: Option<Duration>,
    pub write_timeout: Duration,
    pub padding: usize,
    pub queue: usize,
}

impl StreamSettings {
    pub fn from_config(cfg: &Config) -> StreamSettings {
        StreamSettings {
            retry: cfg.sse.retry,
            heartbeat_interval: cfg.sse.heartbeat_interval,
            heartbeat: cfg.sse.heartbeat,
            lifetime: cfg.sse.max_connection_lifetime,
            write_timeout: cfg.sse.idle_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
            padding: cfg.sse.padding,
            queue: cfg.sse.client_queue,
        }
    }
}

/// Why a stream ended; the label of `sse_gateway_streams_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientLeft,
    SlowConsumer,
    Kicked,
    Lifetime,
    IdleTimeout,
    WriteError,
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::ClientLeft => "client_left",
            End::SlowConsumer => "slow_consumer",
            End::Kicked => "kicked",
            End::Lifetime => "lifetime",
            End::IdleTimeout => "idle_timeout",
            End::WriteError => "write_error",
            End::Shutdown => "shutdown",
        }
    }
}

/// Opens the stream and runs it until it ends. Errors before the response header are returned
/// for the caller to answer; after it, the stream just ends.
pub async fn run(
    session: &mut Session,
    app: &App,
    common: &CommonHeaders,
    req: StreamRequest,
    who: Option<Principal>,
    settings: StreamSettings,
) -> pingora::Result<()> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let sub = app.hub.subscribe(SubscribeRequest {
        channels: req.channels,
        types: req.types,
        last_event_id: req.last_event_id,
        peer,
        principal: who.map(|p| p.name),
        queue: settings.queue,
    });
    metrics::STREAMS_OPENED.inc();
    metrics::STREAMS_OPEN.inc();
    let end = serve(session, app, common, sub, &settings, peer).await;
    metrics::STREAMS_OPEN.dec();
    metrics::STREAMS_CLOSED.with_label_values(&[end.label()]).inc();
    if end == End::SlowConsumer {
        metrics::SLOW_CONSUMERS.inc();
    }
    Ok(())
}

fn response_header(session: &Session, common: &CommonHeaders) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(8))?;
    resp.insert_header("content-type", "text/event-stream; charset=utf-8")?;
    resp.insert_header("cache-control", "no-cache")?;
    resp.insert_header("x-accel-buffering", "no")?;
    if !session.is_http2() {
        resp.insert_header("connection", "keep-alive")?;
        // Without a length or chunking an HTTP/1.1 body is close-delimited and the connection
        // could never be reused; pingora strips this header on HTTP/2.
        resp.insert_header("transfer-encoding", "chunked")?;
    }
    common.apply(&mut resp)?;
    Ok(resp)
}

async fn serve(
    session: &mut Session,
    app: &App,
    common: &CommonHeaders,
    sub: Subscription,
    settings: &StreamSettings,
    peer: Option<IpAddr>,
) -> End {
    let Subscription {
        client,
        replay,
        reset,
        position,
        mut live,
        guard: _guard,
    } = sub;
    session.set_write_timeout(Some(settings.write_timeout));
    let header = match response_header(session, common) {
        Ok(h) => h,
        Err(_) => return End::WriteError,
    };
    if session.write_response_header(Box::new(header), false).await.is_err() {
        return End::WriteError;
    }
    tracing::debug!(client = client.id, ?peer, channels = ?client.channels, "stream opened");

    // The opening chunk: retry, a comment so EventSource fires `open` at once, optional padding,
    // then the reset notice or the replay.
    let mut last_id = position;
    let mut opening = BytesMut::with_capacity(64 + replay.iter().map(|e| e.frame.len()).sum::<usize>());
    opening.extend_from_slice(&sse::encode_retry(settings.retry.as_millis() as u64));
    opening.extend_from_slice(&sse::encode_comment("connected"));
    opening.extend_from_slice(&sse::encode_padding(settings.padding));
    if let Some(reason) = reset {
        let data = format!(r#"{{"reason":"{}"}}"#, reason.as_str());
        opening.extend_from_slice(&sse::encode_event(&position.to_string(), "reset", &data));
    }
    for event in &replay {
        opening.extend_from_slice(&event.frame);
        last_id = event.id;
    }
    let replayed = replay.len() as u64;
    drop(replay);
    if session.write_response_body(Some(opening.freeze()), false).await.is_err() {
        return End::ClientLeft;
    }
    client.events_sent.fetch_add(replayed, std::sync::atomic::Ordering::Relaxed);
    metrics::EVENTS_DELIVERED.inc_by(replayed);

    let opened = Instant::now();
    let mut close_at = settings.lifetime.map(|l| opened + jitter_down(l));
    let mut close_reason = End::Lifetime;
    let mut next_heartbeat = opened + settings.heartbeat_interval;
    let mut draining = false;
    let mut batch = Vec::with_capacity(8);

    let end = loop {
        let to_write: Bytes = tokio::select! {
            biased;
            reason = client.closed() => break match reason {
                CloseReason::SlowConsumer => End::SlowConsumer,
                CloseReason::Kicked => End::Kicked,
            },
            received = live.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    // The hub dropped our queue: it is closing us.
                    break match client.closed().await {
                        CloseReason::SlowConsumer => End::SlowConsumer,
                        CloseReason::Kicked => End::Kicked,
                    };
                }
                let frames = frames_of(&batch);
                if let Some(last) = batch.last() {
                    last_id = last.id;
                }
                frames
            }
            _ = sleep_until(next_heartbeat) => heartbeat(settings.heartbeat, last_id),
            _ = sleep_until_opt(close_at) => break close_reason,
            _ = app.drain.started(), if !draining => {
                draining = true;
                close_reason = End::Shutdown;
                let spread = app.grace_period.mul_f64(0.9);
                let at = Instant::now() + spread.mul_f64(rand::rng().random::<f64>());
                close_at = Some(close_at.map_or(at, |c| c.min(at)));
                continue;
            }
            gone = session.as_downstream_mut().read_body_or_idle(true) => {
                match gone {
                    // A client that sends bytes on an SSE stream is ignored, not obeyed.
                    Ok(Some(_)) => continue,
                    _ => break End::ClientLeft,
                }
            }
        };
        let written = tokio::select! {
            biased;
            reason = client.closed() => break match reason {
                CloseReason::SlowConsumer => End::SlowConsumer,
                CloseReason::Kicked => End::Kicked,
            },
            r = session.write_response_body(Some(to_write), false) => r,
        };
        if let Err(e) = written {
            break if e.etype() == &pingora::ErrorType::WriteTimedout {
                End::IdleTimeout
            } else {
                End::ClientLeft
            };
        }
        next_heartbeat = Instant::now() + settings.heartbeat_interval;
        if !batch.is_empty() {
            client
                .events_sent
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            metrics::EVENTS_DELIVERED.inc_by(batch.len() as u64);
            for event in batch.drain(..) {
                metrics::DELIVERY_LATENCY.observe(event.accepted_at.elapsed().as_secs_f64());
            }
        }
    };

    if matches!(end, End::Lifetime | End::Shutdown) {
        // Flush what is already queued, then tell the client when to come back: jittered, so a
        // whole node's clients do not reconnect in the same instant.
        let mut last = BytesMut::new();
        while let Ok(event) = live.try_recv() {
            last.extend_from_slice(&event.frame);
        }
        let retry = jitter_up(settings.retry);
        last.extend_from_slice(&sse::encode_retry(retry.as_millis() as u64));
        let _ = session.write_response_body(Some(last.freeze()), true).await;
    }
    tracing::debug!(client = client.id, reason = end.label(), "stream closed");
    end
}

/// One chunk holding every frame of the batch (no copy for a batch of one).
fn frames_of(batch: &[std::sync::Arc<crate::hub::Event>]) -> Bytes {
    if let [one] = batch {
        return one.frame.clone();
    }
    let mut buf = BytesMut::with_capacity(batch.iter().map(|e| e.frame.len()).sum());
    for event in batch {
        buf.extend_from_slice(&event.frame);
    }
    buf.freeze()
}

fn heartbeat(kind: HeartbeatKind, last_id: EventId) -> Bytes {
    match kind {
        HeartbeatKind::Comment => Bytes::from_static(b": heartbeat\n\n"),
        // An event must carry an id; repeating the last one leaves the resume point unchanged.
        HeartbeatKind::Event => sse::encode_event(&last_id.to_string(), "heartbeat", ""),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
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
mod tests {
    use super::*;

    #[test]
    fn parses_both_channel_forms_and_types() {
        let r = StreamRequest::parse(Some("channel=a&channels=b,c&channel=a&types=x,y"), None, 32).unwrap();
        assert_eq!(r.channels, vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>);
        assert_eq!(r.types.unwrap().len(), 2);
    }

    #[test]
    fn header_id_wins_over_query() {
        let r = StreamRequest::parse(Some("channel=a&lastEventId=1-1"), Some(b"2-2"), 32).unwrap();
        assert_eq!(r.last_event_id.as_deref(), Some("2-2"));
        let r = StreamRequest::parse(Some("channel=a&lastEventId=1-1"), None, 32).unwrap();
        assert_eq!(r.last_event_id.as_deref(), Some("1-1"));
    }

    #[test]
    fn rejects_bad_requests() {
        let code = |q: &str| StreamRequest::parse(Some(q), None, 2).unwrap_err().code;
        assert_eq!(code(""), "missing_channel");
        assert_eq!(code("channel="), "invalid_channel");
        assert_eq!(code("channel=a%20b"), "invalid_channel");
        assert_eq!(code("channel=a&channel=b&channel=c"), "too_many_channels");
        assert_eq!(code(&format!("channel={}", "x".repeat(129))), "invalid_channel");
        assert_eq!(code("channel=a&types=bad%0Aname"), "invalid_types");
        assert_eq!(code("channel=a&types=,"), "invalid_types");
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let d = jitter_down(Duration::from_secs(100));
            assert!(d <= Duration::from_secs(100) && d >= Duration::from_secs(90));
            let r = jitter_up(Duration::from_secs(3));
            assert!(r >= Duration::from_secs(3) && r <= Duration::from_secs(6));
        }
    }
}
