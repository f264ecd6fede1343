//! What can go wrong, and which failures are worth another try.

use std::time::Duration;

use futures_util::StreamExt;

/// The most bytes of an error reply that are read: the gateway's JSON errors are small, and a
/// proxy's error page must not make the client buffer without bound.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Why a stream ended, or why an [`Event`](crate::Event)'s data could not be read.
///
/// Only failures that another try cannot mend end a stream: a refusal with 400, 401, 403 or
/// 404, an expired credential nobody refreshed, revoked rights. Network errors, 408, 429 and
/// 5xx replies are retried with backoff (until [`SseClient::max_attempts`](crate::SseClient::max_attempts)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The gateway answered with an error status. `code` and `message` come from its JSON error
    /// (`{"error": {"code", "message"}}`); a reply without one gets `http_<status>` and the
    /// status text.
    #[error("{endpoint} answered {status} {code}: {message}")]
    Status {
        /// The path that answered: the stream's, or the ticket endpoint's.
        endpoint: String,
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` of a 429 or 503, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// The gateway could not be reached, or the connection broke.
    #[error("{endpoint}: {source}")]
    Network {
        endpoint: String,
        /// Without its URL, which may hold a ticket.
        #[source]
        source: reqwest::Error,
    },
    /// The stream URL answered 200 with something other than `text/event-stream`.
    #[error("{endpoint} answered {content_type:?}, not text/event-stream")]
    NotEventStream {
        endpoint: String,
        content_type: String,
    },
    /// `POST /tickets` answered without a `"ticket"` string.
    #[error("{endpoint} answered without a ticket")]
    BadTicketReply { endpoint: String },
    /// The event stream broke the parser's limits (a line or an event too large). Not retried:
    /// the same event would come back on reconnect.
    #[error("the event stream is malformed: {0}")]
    Malformed(#[from] sse_wire::parse::ParseError),
    /// The gateway ended the stream with `event: token_expired` and no new credential came
    /// from [`SseClient::on_token_expired`](crate::SseClient::on_token_expired).
    #[error("the credential expired and no new one was given")]
    TokenExpired,
    /// The gateway ended the stream with `event: access_revoked`: a configuration reload took
    /// the right to read one of its channels away.
    #[error("the gateway revoked the right to read this stream")]
    AccessRevoked,
    /// [`SseClient::max_attempts`](crate::SseClient::max_attempts) connections failed in a row.
    #[error("gave up after {attempts} failed connections: {last}")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<Error>,
    },
    /// The client's settings cannot work (a URL that does not parse, tickets without a
    /// credential).
    #[error("invalid client settings: {0}")]
    Settings(String),
    /// [`Event::json`](crate::Event::json): the data is not that JSON.
    #[error("the event data is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// [`Event::bytes`](crate::Event::bytes): the data is not standard base64.
    #[error("the event data is not standard base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

impl Error {
    /// Whether connecting again later can succeed: network errors, 408, 429 and 5xx. With
    /// tickets, also 401 `invalid_ticket` (the ticket expired or was spent meanwhile): the next
    /// try fetches a fresh one. Anything else will be the same next time.
    pub(crate) fn is_transient(&self, tickets: bool) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Status { status, code, .. } => {
                matches!(status, 408 | 429 | 500..)
                    || (tickets && *status == 401 && code == "invalid_ticket")
            }
            _ => false,
        }
    }

    /// How long the gateway asked to wait, if it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn network(endpoint: &str, source: reqwest::Error) -> Error {
        Error::Network {
            endpoint: endpoint.to_owned(),
            source: source.without_url(),
        }
    }

    /// Reads a non-2xx reply of `endpoint` (at most [`MAX_ERROR_BODY`] of it).
    pub(crate) async fn from_response(endpoint: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_bounded(response, MAX_ERROR_BODY).await;
        let reply = serde_json::from_slice::<ErrorReply>(&body).ok();
        let (code, message) = match reply {
            Some(ErrorReply { error }) => (error.code, error.message),
            // Not the gateway's JSON (a proxy's error page, say): keep the status line.
            None => (
                format!("http_{}", status.as_u16()),
                status.canonical_reason().unwrap_or("error").to_owned(),
            ),
        };
        Error::Status {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code,
            message,
            retry_after,
        }
    }
}

/// `{"error": {"code": "...", "message": "..."}}`, the gateway's error reply.
#[derive(serde::Deserialize)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// The body of `response`, up to `limit` bytes (the rest is not read). A body that breaks off
/// gives what arrived.
pub(crate) async fn read_bounded(response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> Error {
        Error::Status {
            endpoint: "/events".into(),
            status,
            code: code.into(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn only_failures_that_can_mend_are_transient() {
        for s in [408, 429, 500, 502, 503] {
            assert!(status(s, "x").is_transient(false), "{s}");
        }
        for s in [400, 401, 403, 404, 405] {
            assert!(!status(s, "x").is_transient(true), "{s}");
        }
        assert!(!Error::TokenExpired.is_transient(true));
        assert!(!Error::AccessRevoked.is_transient(true));
    }

    #[test]
    fn a_spent_ticket_is_transient_only_when_tickets_are_fetched() {
        assert!(status(401, "invalid_ticket").is_transient(true));
        assert!(!status(401, "invalid_ticket").is_transient(false));
    }
}
