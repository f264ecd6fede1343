//! `GET /events`: everything that can refuse a stream, before anything is written.

use pingora::protocols::http::ServerSession;

use super::request::client_ip;
use super::Gateway;
use crate::auth::{self, Action};
use crate::reply::{ApiError, CommonHeaders};
use crate::snapshot::Snapshot;
use crate::stream::{Admitted, StreamRequest};

/// Admits a stream: the request parses, the credential is valid and covers every channel, and
/// the limits have room (the permit holds its place). A ticket is spent last, once nothing else
/// can refuse the stream: a refused request leaves it usable.
pub(super) async fn admit(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &ServerSession,
    query: Option<&str>,
) -> Result<Admitted, ApiError> {
    if front.drain.is_draining() {
        return Err(ApiError::draining());
    }
    let cfg = &snapshot.config;
    let header_id = session
        .req_header()
        .headers
        .get("last-event-id")
        .map(|v| v.as_bytes());
    let req = StreamRequest::parse(query, header_id, cfg.limits.max_channels_per_connection)?;
    let caller = snapshot.auth.identify_stream(session.req_header()).await?;
    let who = caller.who;
    auth::require_time_left(who.as_ref())?;
    auth::authorize_channels(cfg, who.as_ref(), Action::Subscribe, &req.channels)?;
    let peer = client_ip(session, &cfg.trusted_proxies);
    let user = who.as_ref().map(|p| &*p.name);
    let permit = front.limits.admit_stream(peer, user).await?;
    if let Some(ticket) = caller.ticket {
        // Another request may have spent it meanwhile: then this one gives its place back.
        snapshot.auth.spend_ticket(ticket).await?;
    }
    Ok(Admitted {
        // The router sets the request's own CORS headers.
        common: CommonHeaders::default(),
        req,
        who,
        permit,
        settings: snapshot.stream.clone(),
        peer,
    })
}
