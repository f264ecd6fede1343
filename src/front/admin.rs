//! `/stats`, `/clients` and `DELETE /clients/{id}`: an admin credential, then the node view.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use super::Gateway;
use crate::admin;
use crate::auth::{self, Endpoint};
use crate::reply::{self, ApiError, CommonHeaders};
use crate::snapshot::Snapshot;

fn require_admin(snapshot: &Snapshot, session: &ServerSession) -> Result<(), ApiError> {
    let who = snapshot
        .auth
        .identify(session.req_header(), Endpoint::Api)?;
    auth::require_admin(who.as_ref())
}

/// `GET /stats` (`?scope=cluster` for every node).
pub(super) async fn stats(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
    query: Option<&str>,
) -> Result<pingora::Result<()>, ApiError> {
    require_admin(snapshot, session)?;
    if admin::cluster_scope(query)? {
        let stats = admin::cluster_stats(&front.node).await?;
        return Ok(reply::json(session, common, 200, &stats).await);
    }
    Ok(reply::json(session, common, 200, &admin::stats(&front.node)).await)
}

/// `GET /clients` (paged; `?scope=cluster` for every node's first streams).
pub(super) async fn clients(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
    query: Option<&str>,
) -> Result<pingora::Result<()>, ApiError> {
    require_admin(snapshot, session)?;
    let page = admin::page_query(query)?;
    if admin::cluster_scope(query)? {
        let clients = admin::cluster_clients(&front.node).await?;
        return Ok(reply::json(session, common, 200, &clients).await);
    }
    let page = admin::clients(&front.node, page);
    Ok(reply::json(session, common, 200, &page).await)
}

/// `DELETE /clients/{id}`: `204` once the stream is told to end.
pub(super) async fn disconnect(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
    id: &str,
) -> Result<pingora::Result<()>, ApiError> {
    require_admin(snapshot, session)?;
    admin::disconnect(&front.node, id)?;
    Ok(reply::send(session, common, 204, "", &[], Bytes::new()).await)
}
