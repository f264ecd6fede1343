//! `/healthz` (the process answers), `/readyz` (it can take streams and publishes) and the
//! Prometheus text on `metrics.path`.

use pingora::protocols::http::ServerSession;

use super::Gateway;
use crate::metrics;
use crate::reply::{self, ApiError, CommonHeaders};

pub(super) async fn live(
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> pingora::Result<()> {
    let status = serde_json::json!({"status": "ok"});
    reply::json(session, common, 200, &status).await
}

/// 503 while draining or while the broker is unreachable (a Redis node not connected yet).
pub(super) async fn ready(
    front: &Gateway,
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> Result<pingora::Result<()>, ApiError> {
    if front.drain.is_draining() {
        return Err(ApiError::draining());
    }
    if !front.broker.is_up() {
        return Err(ApiError::broker_unavailable("the broker is not reachable"));
    }
    let status = serde_json::json!({"status": "ready"});
    Ok(reply::json(session, common, 200, &status).await)
}

pub(super) async fn metrics(
    session: &mut ServerSession,
    common: &CommonHeaders,
) -> pingora::Result<()> {
    let body = metrics::render();
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply::send(session, common, 200, content_type, &[], body.into()).await
}
