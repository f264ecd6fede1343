//! Requests a route takes: the server they go to (and the one retry), the headers they carry
//! both ways, the pool's passive health, the JSON error when the upstream fails, and their
//! metrics.

use std::borrow::Cow;
use std::time::Instant;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::request::{client_ip, peer_ip};
use super::router::Proxied;
use crate::metrics;
use crate::proxy::{forwarded, HashInput, Selected};
use crate::reply::{self, ApiError};

/// Attempts per request: one retry on another server, for idempotent requests whose connection
/// failed.
const MAX_TRIES: usize = 2;

/// Header the backend of an `authenticated` route learns the caller from; a copy the client
/// sent never reaches it.
const AUTHENTICATED_USER: &str = "x-authenticated-user";

/// A proxied request as it goes.
pub(super) struct ProxyState {
    proxied: Proxied,
    /// The server of the current attempt, counted in flight until the request ends.
    selected: Option<Selected>,
    /// Servers already tried (not tried again).
    tried: Vec<SocketAddr>,
    /// None left to choose from.
    no_server: bool,
    /// The upstream's status, once it answered.
    status: Option<u16>,
    started: Instant,
}

impl ProxyState {
    pub(super) fn new(proxied: Proxied) -> ProxyState {
        ProxyState {
            proxied,
            selected: None,
            tried: Vec::new(),
            no_server: false,
            status: None,
            started: Instant::now(),
        }
    }

    /// A server for the next attempt: healthy, not ejected, not tried already.
    pub(super) fn choose_peer(&mut self, session: &ServerSession) -> Result<HttpPeer> {
        let route = &self.proxied.route;
        let pool = &route.pool;
        let trusted = &self.proxied.snapshot.config.trusted_proxies;
        let req = session.req_header();
        let input = HashInput {
            client_ip: client_ip(session, trusted)
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            path: req.uri.path(),
            headers: &req.headers,
        };
        let key = pool.hash_key(&input);
        // The previous attempt's server stops counting before the next is chosen.
        self.selected = None;
        let Some(selected) = pool.select(&key, &self.tried) else {
            self.no_server = true;
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                "no healthy server in the upstream pool",
            );
        };
        let peer = pool.peer(selected.server(), route.config.timeout);
        self.tried.push(selected.server().addr().clone());
        self.selected = Some(selected);
        Ok(peer)
    }

    /// The request as it goes upstream: the path without the route's prefix (`strip_prefix`),
    /// the `X-Forwarded-*` headers, and `X-Authenticated-User` set or removed.
    pub(super) fn upstream_request(
        &self,
        session: &ServerSession,
        upstream: &mut RequestHeader,
    ) -> Result<()> {
        let route = &self.proxied.route;
        if route.config.strip_prefix {
            let path = route.upstream_path(upstream.uri.path());
            let target = match upstream.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.into_owned(),
            };
            let uri = target.parse().map_err(|_| {
                Error::explain(ErrorType::InternalError, "the stripped path is no URI")
            })?;
            upstream.set_uri(uri);
        }
        upstream.remove_header(AUTHENTICATED_USER);
        if let Some(user) = &self.proxied.user {
            upstream.insert_header(AUTHENTICATED_USER, user.to_string())?;
        }
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let https = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();
        forwarded::apply(upstream, peer_ip(session), https, host)
    }

    /// The route's read timeout (`None` for `0s`).
    pub(super) fn read_timeout(&self) -> Option<std::time::Duration> {
        self.proxied.route.config.timeout
    }

    /// The upstream answered: a 502/503/504 counts against the server (passive health), any
    /// other answer ends its run of failures. Its hop-by-hop headers stay on its side.
    pub(super) fn answered(&mut self, response: &mut ResponseHeader) {
        let status = response.status.as_u16();
        if status != 101 {
            remove_hop_by_hop(response);
        }
        self.status = Some(status);
        let Some(selected) = &self.selected else {
            return;
        };
        if matches!(status, 502..=504) {
            self.passive_failure(selected);
        } else {
            selected.server().answered();
        }
    }

    /// The response as it goes to the client: the CORS headers of its request.
    pub(super) fn downstream_response(&self, response: &mut ResponseHeader) -> Result<()> {
        self.proxied.common.apply(response)
    }

    /// The connection to the server failed: counted against it; whether to try another server.
    pub(super) fn connect_failed(&mut self, idempotent: bool) -> bool {
        if let Some(selected) = &self.selected {
            self.passive_failure(selected);
            metrics::UPSTREAM_REQUESTS
                .with_label_values(&[
                    self.proxied.route.pool.name(),
                    selected.server().label(),
                    "error",
                ])
                .inc();
        }
        idempotent && self.tried.len() < MAX_TRIES
    }

    fn passive_failure(&self, selected: &Selected) {
        let pool = &self.proxied.route.pool;
        if selected.server().failed(pool.config.passive.as_ref()) {
            tracing::warn!(
                upstream = %pool.name(),
                server = %selected.server().label(),
                "upstream server ejected after failing in a row"
            );
        }
    }

    /// The request is over: its metrics.
    pub(super) fn done(&mut self, error: Option<&Error>) {
        let Some(selected) = self.selected.take() else {
            return;
        };
        let class = match (self.status, error) {
            (Some(status), _) => status_class(status),
            (None, _) => "error",
        };
        let pool = self.proxied.route.pool.name();
        metrics::UPSTREAM_REQUESTS
            .with_label_values(&[pool, selected.server().label(), class])
            .inc();
        metrics::UPSTREAM_LATENCY
            .with_label_values(&[pool])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), which a
/// proxy does not pass on; with those the `Connection` header names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn remove_hop_by_hop(response: &mut ResponseHeader) {
    for name in hop_by_hop(&response.headers) {
        response.remove_header(name.as_ref());
    }
}

/// The hop-by-hop headers of a message: the standard ones and those its `Connection` names.
/// Only the names a `Connection` header nominates are allocated: this runs for every proxied
/// response.
pub(super) fn hop_by_hop(headers: &http::HeaderMap) -> Vec<Cow<'static, str>> {
    let nominated = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .map(Cow::Owned);
    HOP_BY_HOP
        .iter()
        .map(|name| Cow::Borrowed(*name))
        .chain(nominated)
        .collect()
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "1xx",
    }
}

/// Answers a request the proxy could not complete with the contract's JSON error, if nothing
/// was sent yet: 502 `no_healthy_upstream` when the pool had no server to offer, 504
/// `upstream_timeout` when the server did not answer in time, 502 `bad_gateway` otherwise.
/// Returns the status (0 when the client is gone).
pub(super) async fn fail(session: &mut Session, e: &Error, state: Option<&ProxyState>) -> u16 {
    let error = if state.is_some_and(|s| s.no_server) {
        ApiError::new(
            502,
            "no_healthy_upstream",
            "no healthy server in the upstream pool",
        )
    } else {
        match (e.esource(), e.etype()) {
            (ErrorSource::Downstream, _) => return 0,
            (_, ErrorType::ReadTimedout) => ApiError::new(
                504,
                "upstream_timeout",
                "the upstream server did not answer in time",
            ),
            (_, ErrorType::HTTPStatus(code)) if *code >= 400 => {
                ApiError::new(*code, "bad_gateway", "the request could not be proxied")
            }
            (ErrorSource::Upstream, _) => ApiError::new(
                502,
                "bad_gateway",
                "the upstream server could not be reached or failed",
            ),
            _ => ApiError::new(500, "internal_error", "the request could not be proxied"),
        }
    };
    if session.response_written().is_none() {
        let common = state.map(|s| s.proxied.common.clone()).unwrap_or_default();
        session.set_keepalive(None);
        if let Err(write) = reply::error(session.as_downstream_mut(), &common, &error).await {
            tracing::debug!(error = %write, "error reply not written; client gone");
        }
    }
    error.status
}
