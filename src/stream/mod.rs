//! One client's SSE stream: from `GET /events` to the last byte.
//!
//! `request` parses what the client asks for; [`open`] registers it with the hub, writes the
//! response header through pingora and hands the connection to a task of its own; [`pump`] runs
//! the stream itself against any [`Downstream`], which is how its timing is tested with paused
//! time.

mod compress;
mod pump;
mod request;
mod socket;

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use tokio::task::JoinHandle;

use compress::{Compressed, Encoding};
pub use pump::{pump, Downstream, End, WriteError};
pub use request::StreamRequest;
pub(crate) use socket::{plain as plain_socket, Connection};

use crate::auth::Principal;
use crate::config::{Config, HeartbeatKind};
use crate::drain::Drain;
use crate::hub::{Hub, SubscribeRequest, Subscription};
use crate::limits::StreamPermit;
use crate::metrics;
use crate::reply::CommonHeaders;

/// How long a write may take when `sse.idle_timeout` is not set: a client whose socket accepts
/// nothing for this long is gone or hopelessly slow.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a running stream needs to know, fixed when it opens.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub retry: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat: HeartbeatKind,
    pub lifetime: Option<Duration>,
    pub write_timeout: Duration,
    pub padding: usize,
    pub queue: usize,
    /// Streams close at random moments within 90% of this once the node drains.
    pub grace_period: Duration,
    /// Time left on the credential the stream was opened with (a JWT's `exp`): the stream ends
    /// then with a `token_expired` event. `None` for API keys and anonymous streams.
    pub expires_in: Option<Duration>,
    /// `sse.compression`: the stream is compressed when the client's `Accept-Encoding` asks.
    pub compression: bool,
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
            grace_period: cfg.shutdown.grace_period,
            expires_in: None,
            compression: cfg.sse.compression,
        }
    }
}

/// What a stream uses besides its own request: the hub it subscribes to and the drain that ends
/// it.
#[derive(Clone)]
pub struct StreamContext {
    pub hub: Arc<Hub>,
    pub drain: Arc<Drain>,
}

/// A stream request that passed every check: what it asks, who asks, its place in the limits,
/// and what it starts with.
pub struct Admitted {
    /// The CORS headers of its request.
    pub common: CommonHeaders,
    pub req: StreamRequest,
    pub who: Option<Principal>,
    pub permit: StreamPermit,
    pub settings: StreamSettings,
    pub peer: Option<IpAddr>,
}

/// Opens the stream: registers it with the hub, writes the response header, and hands the
/// connection to a task of its own that runs it until it ends.
///
/// The hand-off is what keeps an idle stream small: the request's handling (pingora's session,
/// its header buffer and the request future) ends here, and the stream task keeps only the
/// socket and its own loop. On HTTP/1.1 that socket is the raw connection, written as chunked
/// encoding directly (see `socket`); on HTTP/2 it is the stream's body writer on the shared
/// connection, and the request's task stays, waiting for the stream (see
/// [`outlasting_stream`]), so that pingora counts the connection as busy.
pub async fn open(mut session: ServerSession, ctx: &StreamContext, admitted: Admitted) {
    let Admitted {
        common,
        req,
        who,
        permit,
        mut settings,
        peer,
    } = admitted;
    // Measured now, as the stream starts: the time spent checking the request is not given back.
    settings.expires_in = who
        .as_ref()
        .and_then(|p| p.expires)
        .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    let sub = ctx.hub.subscribe(SubscribeRequest {
        channels: req.channels,
        types: req.types,
        last_event_id: req.last_event_id,
        peer,
        principal: who.map(Arc::new),
        queue: settings.queue,
    });
    let encoding = if settings.compression {
        session
            .req_header()
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(Encoding::negotiate)
    } else {
        None
    };
    let header = match response_header(&session, &common, settings.compression, encoding) {
        Ok(header) => header,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the stream's response header");
            return;
        }
    };
    if session
        .write_response_header(Box::new(header))
        .await
        .is_err()
    {
        return;
    }
    metrics::STREAMS_OPENED.inc();
    metrics::STREAMS_OPEN.inc();
    tracing::debug!(client = sub.client.id, ?peer, "stream opened");
    let drain = ctx.drain.clone();
    let write_timeout = settings.write_timeout;
    let session = match session {
        ServerSession::H1(h1) => {
            match Connection::new(h1.into_inner(), write_timeout).await {
                Ok(mut out) => {
                    if let (Connection::Plain(socket), None) = (&mut out, encoding) {
                        // Uncompressed bytes are the event frames themselves: the hub's
                        // writers may send them to this socket directly.
                        socket.hand_to(&sub.client);
                    }
                    // The connection is the stream's alone: nothing else waits for it.
                    spawn_stream(out, encoding, sub, permit, settings, drain);
                }
                // The client left before its stream could start.
                Err(_) => {
                    drop(permit);
                    finished(End::ClientLeft);
                }
            }
            return;
        }
        ServerSession::H2(mut h2) => match h2.take_response_body_writer() {
            // The rest of the session (request and response heads, the request body's end) is
            // dropped here: about 4 KiB per stream (see `H2Stream`).
            Some(writer) => {
                let out = H2Stream {
                    writer,
                    write_timeout,
                };
                outlive_request(spawn_stream(out, encoding, sub, permit, settings, drain));
                return;
            }
            None => ServerSession::H2(h2),
        },
        session => session,
    };
    let out = SessionOut {
        session,
        write_timeout,
    };
    outlive_request(spawn_stream(out, encoding, sub, permit, settings, drain));
}

tokio::task_local! {
    /// The task that the stream an HTTP/2 request opened runs on, for [`outlasting_stream`] to
    /// wait for; HTTP/1.1 streams take their connection with them.
    static STREAM_TASK: RefCell<Option<JoinHandle<()>>>;
}

/// Leaves the stream's task for [`outlasting_stream`] to wait for (outside it, as for a
/// session of another kind or in tests that open streams directly, the stream just runs).
fn outlive_request(task: JoinHandle<()>) {
    let _ = STREAM_TASK.try_with(|slot| *slot.borrow_mut() = Some(task));
}

/// Runs `request`, one request of an HTTP/2 connection, and then, if it opened a stream, waits
/// until that stream has ended.
///
/// pingora counts an HTTP/2 connection as busy while a request task of it runs, and closes one
/// that has been idle for its `h2_idle_timeout`. A stream runs on a task of its own, without
/// pingora's request state (about 4 KiB per stream, see `H2Stream`), so the request's task
/// stays, holding nothing but this wait, for as long as the stream: a connection whose streams
/// are open is not idle.
pub async fn outlasting_stream<F: Future>(request: F) -> F::Output {
    STREAM_TASK
        .scope(RefCell::new(None), async move {
            let answered = request.await;
            if let Some(task) = STREAM_TASK.with(|slot| slot.borrow_mut().take()) {
                // A stream task that panicked has ended too.
                let _ = task.await;
            }
            answered
        })
        .await
}

/// Runs the stream on a task of its own, through a compressor when it has an `encoding`.
fn spawn_stream<D>(
    out: D,
    encoding: Option<Encoding>,
    sub: Subscription,
    permit: StreamPermit,
    settings: StreamSettings,
    drain: Arc<Drain>,
) -> JoinHandle<()>
where
    D: Downstream + Send + 'static,
{
    match encoding {
        Some(encoding) => run(Compressed::new(out, encoding), sub, permit, settings, drain),
        None => run(out, sub, permit, settings, drain),
    }
}

/// Runs the stream on a task of its own and counts how it ended. The permit is given back to
/// the limits when the task ends.
fn run<D>(
    mut out: D,
    sub: Subscription,
    permit: StreamPermit,
    settings: StreamSettings,
    drain: Arc<Drain>,
) -> JoinHandle<()>
where
    D: Downstream + Send + 'static,
{
    tokio::spawn(async move {
        let end = pump(&mut out, sub, &settings, &drain).await;
        drop(permit);
        finished(end);
    })
}

fn finished(end: End) {
    metrics::STREAMS_OPEN.dec();
    metrics::STREAMS_CLOSED
        .with_label_values(&[end.label()])
        .inc();
    if end == End::SlowConsumer {
        metrics::SLOW_CONSUMERS.inc();
    }
}

/// The stream's response header; with compression on, it varies by `Accept-Encoding` whether or
/// not this client gets an `encoding`.
fn response_header(
    session: &ServerSession,
    common: &CommonHeaders,
    compression: bool,
    encoding: Option<Encoding>,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(10))?;
    resp.insert_header("content-type", "text/event-stream; charset=utf-8")?;
    resp.insert_header("cache-control", "no-cache")?;
    resp.insert_header("x-accel-buffering", "no")?;
    if !session.is_http2() {
        resp.insert_header("connection", "keep-alive")?;
        // The body is written in chunks by `ChunkedSocket`; pingora strips this header on HTTP/2.
        resp.insert_header("transfer-encoding", "chunked")?;
    }
    common.apply(&mut resp)?;
    // After the common headers, whose `Vary: Origin` would replace it.
    if let Some(encoding) = encoding {
        resp.insert_header("content-encoding", encoding.token())?;
    }
    if compression {
        resp.append_header("vary", "Accept-Encoding")?;
    }
    Ok(resp)
}

/// A stream on a protocol with neither a raw socket to hand off nor an HTTP/2 body writer:
/// written through its whole session.
struct SessionOut {
    session: ServerSession,
    write_timeout: Duration,
}

impl Downstream for SessionOut {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        self.session.set_write_timeout(Some(self.write_timeout));
        self.session
            .write_response_body(chunk, end)
            .await
            .map_err(|e| {
                if e.etype() == &pingora::ErrorType::WriteTimedout {
                    WriteError::TimedOut
                } else {
                    WriteError::Closed
                }
            })
    }

    async fn gone(&mut self) {
        loop {
            match self.session.read_body_or_idle(true).await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    }
}

/// An HTTP/2 stream after its header: its body writer on pingora's h2 connection, and nothing
/// else of the session.
///
/// Each HTTP/2 stream is a client of its own; they share the connection, which pingora's
/// accept loop drives. Holding the whole session kept the request and response heads of every
/// stream for its whole life: 7.8 KiB per stream against 3.7 KiB with the writer alone
/// (`loadtest/run --h2`, 100 connections x 100 streams). Writes wait for the stream's
/// flow-control window, as pingora's own `write_body` does: a client that stops reading blocks
/// only its own stream, whose queue then overflows (a slow consumer); dropping the writer
/// before the end resets the stream (`RST_STREAM`) and leaves the connection's other streams be.
struct H2Stream {
    writer: h2::SendStream<Bytes>,
    write_timeout: Duration,
}

impl Downstream for H2Stream {
    async fn write(&mut self, mut chunk: Bytes, end: bool) -> Result<(), WriteError> {
        let writer = &mut self.writer;
        let write = async {
            if chunk.is_empty() {
                return writer.send_data(chunk, end).map_err(|_| WriteError::Closed);
            }
            while !chunk.is_empty() {
                writer.reserve_capacity(chunk.len());
                let n = match std::future::poll_fn(|cx| writer.poll_capacity(cx)).await {
                    Some(Ok(n)) => n,
                    _ => return Err(WriteError::Closed),
                };
                let part = chunk.split_to(n.min(chunk.len()));
                writer
                    .send_data(part, end && chunk.is_empty())
                    .map_err(|_| WriteError::Closed)?;
            }
            Ok(())
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::TimedOut),
        }
    }

    async fn gone(&mut self) {
        // The client reset the stream (`Ok`), or the connection is gone (`Err`).
        let _ = std::future::poll_fn(|cx| self.writer.poll_reset(cx)).await;
    }
}
