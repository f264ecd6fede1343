//! What every handler reads off a request: which methods a path allows, the client's address,
//! the size limits of a request head, and the log line of a refusal.

use http::Method;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;

use crate::auth;
use crate::config::Cidr;
use crate::metrics;
use crate::proxy::forwarded;
use crate::reply::ApiError;

/// The address of the connection's peer, when it is TCP.
pub fn peer_ip(session: &ServerSession) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client's address: the peer's, or behind `trusted_proxies` the one they forwarded (see
/// [`crate::proxy::forwarded::client_ip`]).
pub fn client_ip(session: &ServerSession, trusted: &[Cidr]) -> Option<std::net::IpAddr> {
    forwarded::client_ip(peer_ip(session), &session.req_header().headers, trusted)
}

/// 405 with `Allow` unless `method` is one of `allowed`.
pub(super) fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(&names.join(", ")))
    }
}

/// Longest request target (path and query) accepted: far above any real channel list, far below
/// what would make parsing it a cost.
const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of request header fields accepted (pingora itself stops at 1 MiB).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 for an over-long request target, 431 for over-large header fields.
pub(super) fn size(req: &RequestHeader) -> Result<(), ApiError> {
    let uri = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        metrics::LIMIT_REJECTIONS
            .with_label_values(&["uri_size"])
            .inc();
        return Err(ApiError::new(
            414,
            "uri_too_long",
            format!("the request target is over {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        metrics::LIMIT_REJECTIONS
            .with_label_values(&["header_size"])
            .inc();
        return Err(ApiError::new(
            431,
            "headers_too_large",
            format!("the request header fields are over {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// 400 for a request whose body length is ambiguous: both `Content-Length` and
/// `Transfer-Encoding`, or several `Content-Length` values. Two servers reading such a request
/// differently is how requests are smuggled past a proxy, so none is passed on (pingora would
/// take the chunked body and drop `Content-Length`, which is why the request head as received
/// is what is checked), and the connection is closed after the refusal.
///
/// Without `Transfer-Encoding`, pingora keeps every `Content-Length` line it parsed, so the
/// parsed fields tell; only a request with `Transfer-Encoding` has its head scanned as received
/// (scanning every request's head cost about 4% of a publish's instructions).
pub(super) fn framing(session: &ServerSession) -> Result<(), ApiError> {
    let ServerSession::H1(h1) = session else {
        // HTTP/2 frames its bodies itself.
        return Ok(());
    };
    let headers = &h1.req_header().headers;
    let ambiguous = if headers.contains_key(http::header::TRANSFER_ENCODING) {
        // pingora has dropped any Content-Length: look for one in the head as received.
        let name = b"content-length";
        h1.get_headers_raw_bytes()
            .split(|&b| b == b'\n')
            .skip(1)
            .any(|line| {
                line.len() > name.len()
                    && line[..name.len()].eq_ignore_ascii_case(name)
                    && line[name.len()..].trim_ascii_start().first() == Some(&b':')
            })
    } else {
        headers.get_all(http::header::CONTENT_LENGTH).iter().count() > 1
    };
    if ambiguous {
        return Err(ApiError::bad_request(
            "ambiguous_length",
            "the request gives its body length twice (Content-Length and Transfer-Encoding, or two Content-Lengths)",
        ));
    }
    Ok(())
}

/// One debug line per refused request; the target with its credentials redacted.
pub(super) fn refused(session: &ServerSession, e: &ApiError) {
    let req = session.req_header();
    let target = req.uri.path_and_query().map_or("", |pq| pq.as_str());
    tracing::debug!(
        method = %req.method,
        target = %auth::redact::target(target),
        status = e.status,
        code = e.code,
        "request refused"
    );
}
