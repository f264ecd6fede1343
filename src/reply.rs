//! Writing replies: the contract's JSON error shape, JSON bodies, and the CORS headers that go on
//! every response of a request.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::Result;
use serde::Serialize;

use crate::metrics;

/// An error reply: `{"error": {"code": "...", "message": "..."}}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// snake_case, stable: clients switch on it.
    pub code: &'static str,
    /// Human words; never contains a credential.
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// The allowed methods, for 405.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "no such resource")
    }

    pub fn method_not_allowed(allowed: &str) -> ApiError {
        ApiError {
            allow: Some(allowed.to_string()),
            ..ApiError::new(405, "method_not_allowed", format!("use {allowed}"))
        }
    }

    pub fn draining() -> ApiError {
        ApiError::new(
            503,
            "draining",
            "this node is shutting down; retry on another",
        )
        .retry_after(1)
    }

    /// 503: the broker cannot take events now (Redis unreachable); nothing was accepted.
    pub fn broker_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "broker_unavailable", message).retry_after(1)
    }

    fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        // Serialising two strings cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Response headers that every reply to this request carries (today: CORS).
#[derive(Debug, Default, Clone)]
pub struct CommonHeaders(pub Vec<(&'static str, String)>);

impl CommonHeaders {
    pub fn apply(&self, resp: &mut ResponseHeader) -> Result<()> {
        for (name, value) in &self.0 {
            resp.insert_header(*name, value.as_str())?;
        }
        Ok(())
    }
}

/// Sends a complete response with a body.
pub async fn send(
    session: &mut ServerSession,
    common: &CommonHeaders,
    status: u16,
    content_type: &str,
    extra: &[(&'static str, String)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len() + common.0.len()))?;
    if !content_type.is_empty() {
        resp.insert_header("content-type", content_type)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    common.apply(&mut resp)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp)).await?;
    if body.is_empty() || head_only {
        Ok(())
    } else {
        session.write_response_body(body, true).await
    }
}

/// Sends `value` as a JSON body.
pub async fn json<T: Serialize>(
    session: &mut ServerSession,
    common: &CommonHeaders,
    status: u16,
    value: &T,
) -> Result<()> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    send(
        session,
        common,
        status,
        "application/json",
        &[],
        body.into(),
    )
    .await
}

/// Sends an error reply in the contract's shape, and counts it.
pub async fn error(
    session: &mut ServerSession,
    common: &CommonHeaders,
    err: &ApiError,
) -> Result<()> {
    metrics::REQUESTS_REJECTED
        .with_label_values(&[err.code])
        .inc();
    let headers: Vec<(&'static str, String)> = err
        .retry_after
        .map(|s| ("retry-after", s.to_string()))
        .into_iter()
        .chain(err.allow.clone().map(|a| ("allow", a)))
        .collect();
    // A client that sent a body we did not read must not have it parsed as its next request.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    send(
        session,
        common,
        err.status,
        "application/json",
        &headers,
        err.body(),
    )
    .await
}
