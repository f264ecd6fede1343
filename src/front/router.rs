//! Which handler answers a request. Before any handler: the request head's size limits and
//! the CORS check (a foreign origin is refused on every endpoint); after: one JSON error reply
//! for whatever a handler refused.

use bytes::Bytes;
use http::Method;
use pingora::protocols::http::ServerSession;

use super::request::{allow, refused, size};
use super::{admin, events, health, publish, tickets, Gateway};
use crate::cors;
use crate::reply::{self, ApiError, CommonHeaders};
use crate::snapshot::Snapshot;
use crate::static_files;
use crate::stream::Admitted;

/// Answers the request; or, when it opens a stream that passed every check, returns it for the
/// caller to hand the connection off.
pub(super) async fn handle(front: &Gateway, session: &mut ServerSession) -> Option<Box<Admitted>> {
    let snapshot = front.snapshots.load();
    let req = session.req_header();
    let origin = req.headers.get(http::header::ORIGIN).map(|v| v.as_bytes());
    let host = req
        .headers
        .get(http::header::HOST)
        .map(|v| v.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
    let checked = size(req).and_then(|()| cors::check(&snapshot.config.cors, origin, host));
    let result = match checked {
        Ok(common) => match route(front, &snapshot, session, &common).await {
            Ok(Some(stream)) => return Some(Box::new(Admitted { common, ..stream })),
            Ok(None) => Ok(()),
            Err(e) => {
                refused(session, &e);
                reply::error(session, &common, &e).await
            }
        },
        Err(e) => reply::error(session, &CommonHeaders::default(), &e).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "reply not fully written; client gone");
    }
    None
}

/// Answers the request (`Ok(None)`), or returns the stream it asks for.
async fn route(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> Result<Option<Admitted>, ApiError> {
    let cfg = &snapshot.config;
    let method = session.req_header().method.clone();
    let uri = session.req_header().uri.clone();
    let path = uri.path();
    let query = uri.query();

    let written = if method == Method::OPTIONS {
        let headers = cors::preflight_headers();
        reply::send(session, common, 204, "", &headers, Bytes::new()).await
    } else if path == cfg.sse.path {
        allow(&method, &[Method::GET])?;
        return events::admit(front, snapshot, session, query)
            .await
            .map(Some);
    } else if path == cfg.metrics.path {
        allow(&method, &[Method::GET, Method::HEAD])?;
        health::metrics(session, common).await
    } else {
        match path {
            "/broadcast" => {
                allow(&method, &[Method::POST])?;
                let accepted = publish::publish(front, snapshot, session).await?;
                reply::json(session, common, 202, &accepted).await
            }
            "/tickets" => {
                allow(&method, &[Method::POST])?;
                tickets::issue(front, snapshot, session, common).await?
            }
            "/healthz" => {
                allow(&method, &[Method::GET, Method::HEAD])?;
                health::live(session, common).await
            }
            "/readyz" => {
                allow(&method, &[Method::GET, Method::HEAD])?;
                health::ready(front, session, common).await?
            }
            "/stats" => {
                allow(&method, &[Method::GET])?;
                admin::stats(front, snapshot, session, common, query).await?
            }
            "/clients" => {
                allow(&method, &[Method::GET])?;
                admin::clients(front, snapshot, session, common, query).await?
            }
            _ if path.starts_with("/clients/") => {
                allow(&method, &[Method::DELETE])?;
                let id = &path["/clients/".len()..];
                admin::disconnect(front, snapshot, session, common, id).await?
            }
            _ => {
                let root = cfg.static_dir.as_deref().ok_or_else(ApiError::not_found)?;
                allow(&method, &[Method::GET, Method::HEAD])?;
                static_files::serve(session, common, root, path).await?
            }
        }
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "reply not fully written; client gone");
    }
    Ok(None)
}
