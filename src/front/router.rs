//! Which handler answers a request. Before any handler: the request head's size limits and
//! the CORS check (a foreign origin is refused on every endpoint, proxied routes included);
//! then the gateway's own endpoints, then `routes:`, then the static UI; one JSON error reply
//! for whatever a handler refused.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use pingora::protocols::http::ServerSession;

use super::request::{allow, client_ip, framing, refused, size};
use super::{admin, events, health, openapi, publish, tickets, Gateway};
use crate::auth;
use crate::config::RouteAuth;
use crate::cors;
use crate::proxy::Route;
use crate::reply::{self, ApiError, CommonHeaders};
use crate::snapshot::Snapshot;
use crate::static_files;
use crate::stream::Admitted;

/// What became of a request.
pub(super) enum Outcome {
    /// A reply was written.
    Answered,
    /// It opens a stream that passed every check: the caller hands the connection off.
    Stream(Box<Admitted>),
    /// A route takes it: the caller proxies it.
    Proxy(Box<Proxied>),
}

/// A request a route takes, checked (credential, rate) and not yet sent anywhere.
pub struct Proxied {
    pub route: Arc<Route>,
    /// The request's CORS headers, for the response.
    pub common: CommonHeaders,
    /// For `auth: authenticated` routes: who, for `X-Authenticated-User`.
    pub user: Option<Box<str>>,
    /// The snapshot the request started with.
    pub snapshot: Arc<Snapshot>,
}

/// Routes the request (see the module doc).
pub(super) async fn handle(front: &Gateway, session: &mut ServerSession) -> Outcome {
    let snapshot = front.snapshots.load();
    let req = session.req_header();
    let origin = req.headers.get(http::header::ORIGIN).map(|v| v.as_bytes());
    let host = req
        .headers
        .get(http::header::HOST)
        .map(|v| v.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
    let checked = size(req)
        .and_then(|()| framing(session))
        .and_then(|()| cors::check(&snapshot.config.cors, origin, host));
    let result = match checked {
        Ok(common) => match route(front, &snapshot, session, &common).await {
            Ok(Routed::Answered) => Ok(()),
            Ok(Routed::Stream(stream)) => {
                return Outcome::Stream(Box::new(Admitted { common, ..*stream }))
            }
            Ok(Routed::Proxy(route, user)) => {
                return Outcome::Proxy(Box::new(Proxied {
                    route,
                    common,
                    user,
                    snapshot,
                }))
            }
            Err(e) => {
                refused(session, &e);
                reply::error(session, &common, &e).await
            }
        },
        Err(e) => {
            if e.code == "ambiguous_length" {
                session.set_keepalive(None);
            }
            reply::error(session, &CommonHeaders::default(), &e).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "reply not fully written; client gone");
    }
    Outcome::Answered
}

/// What [`route`] found.
enum Routed {
    Answered,
    Stream(Box<Admitted>),
    Proxy(Arc<Route>, Option<Box<str>>),
}

/// Answers the request, or returns the stream it asks for or the route that takes it.
async fn route(
    front: &Gateway,
    snapshot: &Arc<Snapshot>,
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> Result<Routed, ApiError> {
    let cfg = &snapshot.config;
    let method = session.req_header().method.clone();
    let uri = session.req_header().uri.clone();
    let path = uri.path();
    let query = uri.query();
    let is_preflight = method == Method::OPTIONS
        && session
            .req_header()
            .headers
            .contains_key("access-control-request-method");

    let written = if path == cfg.sse.path && !is_preflight {
        allow(&method, &[Method::GET])?;
        let admitted = events::admit(front, snapshot, session, query).await?;
        return Ok(Routed::Stream(Box::new(admitted)));
    } else if path == cfg.metrics.path && !is_preflight {
        allow(&method, &[Method::GET, Method::HEAD])?;
        health::metrics(session, common).await
    } else if let Some(endpoint) = Endpoint::named(path).filter(|_| !is_preflight) {
        endpoint_reply(front, snapshot, session, common, endpoint, &method, query).await?
    } else if let Some(route) = find_route(snapshot, session, path) {
        if is_preflight {
            // The gateway enforces CORS, so it answers the preflights of routes too.
            preflight(session, common).await
        } else {
            let user = admit_to_route(snapshot, session, &route)?;
            return Ok(Routed::Proxy(route, user));
        }
    } else if method == Method::OPTIONS {
        preflight(session, common).await
    } else {
        let root = cfg.static_dir.as_deref().ok_or_else(ApiError::not_found)?;
        allow(&method, &[Method::GET, Method::HEAD])?;
        static_files::serve(session, common, root, path).await?
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "reply not fully written; client gone");
    }
    Ok(Routed::Answered)
}

/// The gateway's fixed endpoints besides the stream and metrics paths.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Broadcast,
    Tickets,
    Healthz,
    Readyz,
    OpenApi,
    Stats,
    Clients,
    /// `/clients/{id}`.
    Client,
}

impl Endpoint {
    fn named(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/broadcast" => Endpoint::Broadcast,
            "/tickets" => Endpoint::Tickets,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/openapi.json" => Endpoint::OpenApi,
            "/stats" => Endpoint::Stats,
            "/clients" => Endpoint::Clients,
            _ if path.starts_with("/clients/") => Endpoint::Client,
            _ => return None,
        })
    }
}

async fn endpoint_reply(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
    endpoint: Endpoint,
    method: &Method,
    query: Option<&str>,
) -> Result<pingora::Result<()>, ApiError> {
    Ok(match endpoint {
        Endpoint::Broadcast => {
            allow(method, &[Method::POST])?;
            let accepted = publish::publish(front, snapshot, session).await?;
            reply::json(session, common, 202, &accepted).await
        }
        Endpoint::Tickets => {
            allow(method, &[Method::POST])?;
            tickets::issue(front, snapshot, session, common).await?
        }
        Endpoint::Healthz => {
            allow(method, &[Method::GET, Method::HEAD])?;
            health::live(session, common).await
        }
        Endpoint::Readyz => {
            allow(method, &[Method::GET, Method::HEAD])?;
            health::ready(front, session, common).await?
        }
        Endpoint::OpenApi => {
            allow(method, &[Method::GET, Method::HEAD])?;
            openapi::serve(session, common, &front.openapi).await
        }
        Endpoint::Stats => {
            allow(method, &[Method::GET])?;
            admin::stats(front, snapshot, session, common, query).await?
        }
        Endpoint::Clients => {
            allow(method, &[Method::GET])?;
            admin::clients(front, snapshot, session, common, query).await?
        }
        Endpoint::Client => {
            allow(method, &[Method::DELETE])?;
            let path = session.req_header().uri.path().to_owned();
            let id = &path["/clients/".len()..];
            admin::disconnect(front, snapshot, session, common, id).await?
        }
    })
}

/// The route for this request's host and path.
/// A CORS preflight's answer: the gateway enforces CORS, so it answers every preflight itself.
async fn preflight(session: &mut ServerSession, common: &CommonHeaders) -> pingora::Result<()> {
    reply::send(
        session,
        common,
        204,
        "",
        &cors::preflight_headers(),
        Bytes::new(),
    )
    .await
}

fn find_route(snapshot: &Snapshot, session: &ServerSession, path: &str) -> Option<Arc<Route>> {
    let req = session.req_header();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.host());
    snapshot.routes.find(host, path).cloned()
}

/// A route's own checks: its credential (`auth: authenticated`) and its rate.
fn admit_to_route(
    snapshot: &Snapshot,
    session: &ServerSession,
    route: &Route,
) -> Result<Option<Box<str>>, ApiError> {
    let user = match route.config.auth {
        RouteAuth::Public => None,
        RouteAuth::Authenticated => {
            let who = snapshot
                .auth
                .identify(session.req_header(), auth::Endpoint::Api)?
                .ok_or_else(|| {
                    ApiError::new(401, "unauthorized", "this route needs a credential")
                })?;
            auth::require_time_left(Some(&who))?;
            Some(who.name)
        }
    };
    route.admit(client_ip(session, &snapshot.config.trusted_proxies))?;
    Ok(user)
}
