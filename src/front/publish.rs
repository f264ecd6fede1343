//! `POST /broadcast`: one event, checked whole before the broker sees it.

use pingora::protocols::http::ServerSession;

use super::request::client_ip;
use super::Gateway;
use crate::auth::{self, Action, Endpoint};
use crate::publish::{self, Accepted};
use crate::reply::ApiError;
use crate::snapshot::Snapshot;

/// Publishes the request's event: the credential's rate, the body (JSON, size, fields), every
/// channel's publish right, then the broker. A refusal changes nothing.
pub(super) async fn publish(
    front: &Gateway,
    snapshot: &Snapshot,
    session: &mut ServerSession,
) -> Result<Accepted, ApiError> {
    if front.drain.is_draining() {
        return Err(ApiError::draining());
    }
    let cfg = &snapshot.config;
    let who = snapshot
        .auth
        .identify(session.req_header(), Endpoint::Api)?;
    // Keyed by credential, or by address for anonymous publishers (public channels).
    let publisher = match &who {
        Some(p) => p.name.to_string(),
        None => client_ip(session, &cfg.trusted_proxies)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
    };
    front.limits.admit_publish(&publisher).await?;
    publish::require_json(session)?;
    let limit = publish::body_limit(cfg.limits.max_event_bytes);
    let body = publish::read_body(session, limit).await?;
    let draft = publish::parse(&body, cfg)?;
    auth::authorize_channels(cfg, who.as_ref(), Action::Publish, &draft.channels)?;
    let channels = draft.channels.iter().map(|c| c.to_string()).collect();
    let id = front
        .broker
        .publish(draft)
        .await
        .map_err(|e| ApiError::broker_unavailable(e.to_string()))?;
    Ok(Accepted {
        id: id.text(),
        channels,
    })
}
