//! The HTTP front: pingora's proxy owns the listener, and this is its [`ProxyHttp`]: the
//! gateway's own endpoints are answered from `request_filter` (`router`), streams are handed
//! off to tasks of their own (see [`crate::stream::open`]), and what a route takes is proxied by
//! pingora to a server of the route's pool (`proxied`).
//!
//! # Layout
//! - this module: [`Front`] (the `ProxyHttp` hooks) and [`FrontApp`] (the listener's app: the
//!   request head's deadline around pingora's proxy);
//! - `gateway`: [`Gateway`], what the handlers share;
//! - `router`: which handler answers a request; the CORS check and the size limits before it;
//! - one file per handler group: `events` (`GET /events` admission), `publish`
//!   (`POST /broadcast`), `tickets` (`POST /tickets`), `admin` (`/stats`, `/clients`),
//!   `health` (`/healthz`, `/readyz`, `/metrics`), `openapi` (`/openapi.json`), `proxied`
//!   (routes to upstream pools) and the static UI in [`crate::static_files`];
//! - `request`: what every handler reads off a request (method rules, client address).

mod admin;
mod events;
mod gateway;
mod health;
mod openapi;
mod proxied;
mod publish;
mod relay;
mod request;
mod router;
mod tickets;

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, HttpProxy, ProxyHttp, Session};
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

pub use gateway::Gateway;
pub use openapi::document as openapi_document;
pub use request::client_ip;

use crate::metrics;
use crate::snapshot::Snapshots;
use crate::stream;
use proxied::ProxyState;
use router::Outcome;

/// The gateway's [`ProxyHttp`]: what pingora's proxy calls for each request.
pub struct Front {
    pub gateway: Gateway,
}

/// What one request carries from hook to hook.
#[derive(Default)]
pub struct RequestCtx {
    /// Set for a request a route takes.
    proxy: Option<ProxyState>,
    /// The request took the connection (a stream): the session pingora still holds is an
    /// empty stand-in, which nothing may read.
    handed_off: bool,
}

#[async_trait]
impl ProxyHttp for Front {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The head is in: the deadline of `FrontApp` no longer applies.
        let _ = HEAD_READ.try_with(|read| read.set(true));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match router::handle(&self.gateway, session.as_downstream_mut()).await {
            Outcome::Answered => Ok(true),
            Outcome::Stream(admitted) => {
                // The stream keeps the connection; the request task ends now, freeing the proxy's
                // per-request state (see `stream::open`). pingora finishes the stand-in.
                ctx.handed_off = true;
                let stand_in = ServerSession::new_http1(Box::new(std::io::Cursor::new(Vec::new())));
                let real = std::mem::replace(&mut session.downstream_session, Box::new(stand_in));
                // Boxed, as is the relay below: this future is boxed and moved for every
                // request, and inline these two would make it about 10 KiB for a publish too.
                Box::pin(stream::open(*real, &self.gateway.streams, *admitted)).await;
                Ok(true)
            }
            Outcome::Proxy(proxied) => {
                let state = ProxyState::new(*proxied);
                if relay::takes(session.as_downstream()) {
                    // An event stream: proxied and relayed off this task (see `relay`).
                    Box::pin(relay::proxy(&self.gateway.upstreams, session, state)).await;
                    return Ok(true);
                }
                ctx.proxy = Some(state);
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let state = ctx.proxy.as_mut().ok_or_else(|| {
            Error::explain(
                pingora::ErrorType::InternalError,
                "no route for an upstream request",
            )
        })?;
        state.choose_peer(session.as_downstream()).map(Box::new)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match &ctx.proxy {
            Some(state) => state.upstream_request(session.as_downstream(), upstream),
            None => Ok(()),
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(state) = &mut ctx.proxy {
            state.answered(response);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match &ctx.proxy {
            Some(state) => state.downstream_response(response),
            None => Ok(()),
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(state) = &mut ctx.proxy {
            let idempotent = session.req_header().method.is_idempotent();
            e.set_retry(state.connect_failed(idempotent));
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = proxied::fail(session, e, ctx.proxy.as_ref()).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.handed_off {
            return;
        }
        if let Some(state) = &mut ctx.proxy {
            state.done(e);
        }
    }
}

tokio::task_local! {
    /// Whether the request head being read by this task's connection is complete.
    static HEAD_READ: Cell<bool>;
}

/// The listener's app: pingora's proxy over [`Front`], with a deadline on each request head.
///
/// pingora's own read timeout restarts with every byte, which a slowloris client exploits: the
/// whole head must arrive within `limits.header_read_timeout`. The deadline stops counting once
/// the head is in ([`Front::early_request_filter`] says so through a task-local flag), so a
/// long request or stream is never cut by it.
pub struct FrontApp {
    proxy: Arc<HttpProxy<Front>>,
    /// For the deadline, `http2_cleartext` and the idle timeout in force.
    snapshots: Arc<Snapshots>,
    options: ConnectionOptions,
}

/// The options of a connection, which pingora asks for on every new one, so that a reload
/// applies to the next: h2c as `http2_cleartext` says (on TLS pingora ignores it: ALPN
/// decides), and an HTTP/2 connection closed once it has had no request or stream for
/// `limits.header_read_timeout`, as an idle HTTP/1.1 keep-alive connection is (by the head
/// deadline).
///
/// pingora borrows the options from the app for as long as the app lives, so each distinct
/// pair in force is kept for good: one per value a reload ever sets, never one per connection.
#[derive(Default)]
struct ConnectionOptions(parking_lot::Mutex<Vec<&'static HttpServerOptions>>);

impl ConnectionOptions {
    fn get(&self, h2c: bool, idle: Duration) -> &'static HttpServerOptions {
        let mut kept = self.0.lock();
        if let Some(options) = kept
            .iter()
            .find(|o| o.h2c == h2c && o.h2_idle_timeout == Some(idle))
        {
            return options;
        }
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        options.h2_idle_timeout = Some(idle);
        let options: &'static HttpServerOptions = Box::leak(Box::new(options));
        kept.push(options);
        options
    }
}

impl FrontApp {
    pub fn new(proxy: HttpProxy<Front>, snapshots: Arc<Snapshots>) -> FrontApp {
        FrontApp {
            proxy: Arc::new(proxy),
            snapshots,
            options: ConnectionOptions::default(),
        }
    }

    fn header_timeout(&self) -> Duration {
        self.snapshots.load().config.limits.header_read_timeout
    }
}

#[async_trait]
impl HttpServerApp for FrontApp {
    /// Not an `async fn`: pingora's request future takes the session at once, so the future
    /// returned here never holds it. On HTTP/2 it stays as long as a stream the request opened
    /// (see [`stream::outlasting_stream`]), and a session kept in it would be about 2.5 KiB per
    /// stream. On HTTP/1.1 a stream takes the connection with it, so nothing waits (and the
    /// requests of a keep-alive connection, publishes for one, skip the wait's scope).
    fn process_new_http<'app, 'watch, 'request>(
        self: &'app Arc<Self>,
        session: ServerSession,
        shutdown: &'watch ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'request>>
    where
        'app: 'request,
        'watch: 'request,
        Self: 'request,
    {
        let timeout = self.header_timeout();
        let http2 = session.is_http2();
        let request = self.proxy.process_new_http(session, shutdown);
        let request = HEAD_READ.scope(Cell::new(false), within_head_deadline(request, timeout));
        if http2 {
            Box::pin(stream::outlasting_stream(request))
        } else {
            Box::pin(request)
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        let snapshot = self.snapshots.load();
        let config = &snapshot.config;
        Some(
            self.options
                .get(config.http2_cleartext, config.limits.header_read_timeout),
        )
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// Runs `request`; drops it (closing the connection) if its head is not in within `timeout`.
async fn within_head_deadline<F>(request: F, timeout: Duration) -> Option<ReusedHttpStream>
where
    F: Future<Output = Option<ReusedHttpStream>>,
{
    let mut request = pin!(request);
    let mut deadline = pin!(tokio::time::sleep(timeout));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(reused) = request.as_mut().poll(cx) {
            return Poll::Ready(reused);
        }
        let head_read = HEAD_READ.try_with(Cell::get).unwrap_or(true);
        if !head_read && deadline.as_mut().poll(cx).is_ready() {
            metrics::LIMIT_REJECTIONS
                .with_label_values(&["header_timeout"])
                .inc();
            tracing::debug!(?timeout, "request head not complete in time; closing");
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_options_follow_the_config_and_each_pair_is_kept_once() {
        let options = ConnectionOptions::default();
        let (ten, two) = (Duration::from_secs(10), Duration::from_secs(2));
        let plain = options.get(false, ten);
        assert!(!plain.h2c);
        assert_eq!(plain.h2_idle_timeout, Some(ten));
        assert!(options.get(true, ten).h2c);
        assert_eq!(options.get(false, two).h2_idle_timeout, Some(two));
        // A connection under a pair already in force takes the kept options.
        assert!(std::ptr::eq(plain, options.get(false, ten)));
        assert_eq!(options.0.lock().len(), 3);
    }
}
