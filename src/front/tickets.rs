//! `POST /tickets`: a single-use ticket standing for the request's credential.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use super::Gateway;
use crate::auth::{self, Endpoint};
use crate::reply::{self, ApiError, CommonHeaders};
use crate::snapshot::Snapshot;

/// Issues a ticket for the credential of the headers or cookie (never a query token or another
/// ticket), within the credential's ticket rate, and writes it (`201`).
pub(super) async fn issue(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> Result<pingora::Result<()>, ApiError> {
    if front.drain.is_draining() {
        return Err(ApiError::draining());
    }
    // Nothing is read from a body; one that was sent must not be taken for the next request.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    let who = snapshot
        .auth
        .identify(session.req_header(), Endpoint::Tickets)?
        .ok_or_else(|| ApiError::new(401, "unauthorized", "a ticket needs a credential"))?;
    auth::require_time_left(Some(&who))?;
    front.limits.admit_ticket(&who.name).await?;
    let issued = snapshot.auth.issue_ticket(&who).await?;
    let body = serde_json::json!({
        "ticket": issued.ticket,
        "expires_in": issued.expires_in,
    });
    // The reply is a credential: no cache may keep it.
    let headers = [("cache-control", "no-store".to_string())];
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    Ok(reply::send(session, common, 201, "application/json", &headers, body).await)
}
