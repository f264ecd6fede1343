//! HTTP as the tests speak it: a client without connection reuse, raw requests for what no
//! client would send, and the contract's JSON error, `{"error": {"code", "message"}}`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client that opens a connection per request (no idle pool): no request of a test waits on,
/// or fails on, a connection that an earlier step left open and the server has since closed.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client")
}

/// Sends `request` as is on a new connection to `addr` and returns everything written back
/// before the server closes, or `within` passes: for requests no HTTP client would send.
pub async fn raw_request(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may close before taking all of a request it refuses.
    let _ = sock.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, sock.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The code of a contract error body; `None` when `body` is no error object. Panics when it is
/// one without the contract's shape: exactly `code` and a non-empty `message`, nothing else.
pub fn error_code(body: &Value) -> Option<&str> {
    let error = body.get("error")?;
    let shape = |ok: bool| assert!(ok, "not the contract's error shape: {body}");
    shape(body.as_object().is_some_and(|o| o.len() == 1));
    shape(error.as_object().is_some_and(|o| o.len() == 2));
    shape(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    let code = error["code"].as_str();
    shape(code.is_some_and(|c| !c.is_empty()));
    code
}

/// The status and error code of a raw HTTP/1.1 reply: status 0 when there is none (the server
/// closed without replying), no code unless the body is a contract error.
pub fn reply_status_and_code(reply: &str) -> (u16, Option<String>) {
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let code = reply
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| error_code(&body).map(str::to_owned));
    (status, code)
}

/// The status of `resp` and, unless it is a success, its error code, after checking that the
/// body is a contract error served as `application/json`. The body of a success is not read (a
/// stream's never ends).
pub async fn response_status_and_code(resp: reqwest::Response) -> (u16, Option<String>) {
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return (status, None);
    }
    let content_type = resp.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "a {status} error's content type"
    );
    let body: Value = resp.json().await.expect("a JSON error body");
    let code = error_code(&body).unwrap_or_else(|| panic!("{status} without an error: {body}"));
    (status, Some(code.to_owned()))
}
