//! Publishing: one keep-alive HTTP/1.1 connection, one `POST` at a time.
//!
//! Raw HTTP over a tokio socket is all a loopback publisher needs, and it keeps the crate free
//! of an HTTP client stack. Publishes are sequential on purpose: the send time in each event is
//! taken just before its request is written, and the rate is set by the schedule in
//! [`crate::run`], not by concurrency.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::{parse_head, BodyDecoder, BodyKind};
use crate::options::PublishFormat;
use crate::payload;
use crate::target::Target;

/// Most bytes of a publish response kept; a reply is a small JSON object.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What happened to one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the event was published. The answer's body (the gateway's `{"id", "channels"}`).
    Accepted(String),
    /// Another status: the server refused the event; `why` has the status and the body.
    Rejected { status: u16, why: String },
    /// The request never reached the server (connect failed).
    NotSent(String),
    /// The request was sent but no complete answer came: it may or may not be published.
    Unknown(String),
}

/// Why one request/response exchange failed.
enum Failure {
    /// Could not connect: nothing was sent.
    Connect(String),
    /// A reused connection was closed before any response byte: the server had closed it
    /// while idle and never read the request, so it can be sent again.
    Stale(String),
    /// Anything else after the request was written.
    Broken(String),
}

/// A publisher to one URL.
pub struct Publisher {
    target: Target,
    format: PublishFormat,
    api_key: Option<String>,
    channel: String,
    conn: Option<TcpStream>,
    /// The response being read; reused across publishes.
    buf: Vec<u8>,
    /// Whether a request that met a stale keep-alive connection is sent again (see
    /// [`once_only`](Self::once_only)).
    resend_on_stale: bool,
}

impl Publisher {
    pub fn new(
        target: Target,
        format: PublishFormat,
        api_key: Option<String>,
        channel: String,
    ) -> Publisher {
        Publisher {
            target,
            format,
            api_key,
            channel,
            conn: None,
            buf: Vec::with_capacity(1024),
            resend_on_stale: true,
        }
    }

    /// Never sends a request twice. By default a request whose reused connection turns out to
    /// be closed before any answer byte is sent again on a new one, since a server closing an
    /// idle connection never read it; but a server killed just after reading it may have acted
    /// on it, and a run that counts every publish must not risk a second copy: the first
    /// attempt's fate is then [`Outcome::Unknown`].
    pub fn once_only(mut self) -> Publisher {
        self.resend_on_stale = false;
        self
    }

    /// The request that publishes `data`.
    pub fn request(&self, data: &str) -> Vec<u8> {
        let (content_type, body) = match self.format {
            PublishFormat::Gateway => (
                "application/json",
                serde_json::json!({"channel": self.channel, "event": "bench", "data": data})
                    .to_string(),
            ),
            PublishFormat::Raw => ("text/plain", data.to_owned()),
            PublishFormat::Notification => {
                // The numbers in the title (at most 200 characters), the padding in the body.
                let (title, padding) = payload::split_padding(data);
                (
                    "application/json",
                    serde_json::json!({"title": title, "body": padding}).to_string(),
                )
            }
        };
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nUser-Agent: sse-loadgen\r\n",
            self.target.path,
            self.target.authority,
            body.len()
        );
        if let Some(key) = &self.api_key {
            request.push_str("X-API-Key: ");
            request.push_str(key);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(&body);
        request.into_bytes()
    }

    /// Sends `request` (from [`request`](Self::request)), waiting at most `timeout` for the answer.
    pub async fn send(&mut self, request: &[u8], timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let reused = self.conn.is_some();
        let first = tokio::time::timeout_at(deadline, self.exchange(request)).await;
        let result = match first {
            Ok(Err(Failure::Stale(_))) if reused && self.resend_on_stale => {
                tokio::time::timeout_at(deadline, self.exchange(request)).await
            }
            other => other,
        };
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(Failure::Connect(why))) => Outcome::NotSent(why),
            Ok(Err(Failure::Stale(why) | Failure::Broken(why))) => Outcome::Unknown(why),
            Err(_) => Outcome::Unknown(format!("no answer within {timeout:?}")),
        };
        if !matches!(outcome, Outcome::Accepted(_) | Outcome::Rejected { .. }) {
            self.conn = None;
        }
        outcome
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Outcome, Failure> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let conn = TcpStream::connect(self.target.addr).await.map_err(|e| {
                    Failure::Connect(format!("connect to {}: {e}", self.target.addr))
                })?;
                let _ = conn.set_nodelay(true);
                conn
            }
        };
        conn.write_all(request)
            .await
            .map_err(|e| Failure::Stale(format!("send: {e}")))?;

        self.buf.clear();
        let head = loop {
            let n = match read_some(&mut conn, &mut self.buf).await {
                // A reset before any answer: the same closed idle connection as EOF.
                Err(Failure::Broken(why)) if self.buf.is_empty() => {
                    return Err(Failure::Stale(why))
                }
                other => other?,
            };
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    Failure::Stale("connection closed before any response".to_owned())
                } else {
                    Failure::Broken("connection closed inside the response head".to_owned())
                });
            }
            if let Some(head) = parse_head(&self.buf).map_err(Failure::Broken)? {
                break head;
            }
        };
        let mut decoder = BodyDecoder::new(head.body);
        let mut body = Vec::new();
        let mut input = &self.buf[head.len..];
        loop {
            while let Some(data) = decoder
                .next_data(&mut input)
                .map_err(|e| Failure::Broken(e.to_string()))?
            {
                let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
            }
            if decoder.is_done() {
                break;
            }
            self.buf.clear();
            let n = read_some(&mut conn, &mut self.buf).await?;
            if n == 0 {
                if head.body == BodyKind::Close {
                    break;
                }
                return Err(Failure::Broken(
                    "connection closed inside the response".to_owned(),
                ));
            }
            input = &self.buf[..];
        }
        if head.keep_alive && decoder.is_done() {
            self.conn = Some(conn);
        }
        Ok(if (200..300).contains(&head.status) {
            Outcome::Accepted(String::from_utf8_lossy(&body).into_owned())
        } else {
            Outcome::Rejected {
                status: head.status,
                why: format!(
                    "HTTP {}: {}",
                    head.status,
                    String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
                ),
            }
        })
    }
}

/// Reads what is there into `buf`, which never grows past [`MAX_RESPONSE_BYTES`]: a response
/// bigger than that is refused rather than buffered.
async fn read_some(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    if buf.len() >= MAX_RESPONSE_BYTES {
        return Err(Failure::Broken(format!(
            "response head over {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    buf.reserve(4096.min(MAX_RESPONSE_BYTES - buf.len()));
    conn.read_buf(buf)
        .await
        .map_err(|e| Failure::Broken(format!("read response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            authority: "127.0.0.1:8080".to_owned(),
            path: "/broadcast".to_owned(),
            addr: "127.0.0.1:8080".parse().unwrap(),
        }
    }

    #[test]
    fn gateway_and_raw_requests() {
        let p = Publisher::new(
            target(),
            PublishFormat::Gateway,
            Some("k".to_owned()),
            "bench".to_owned(),
        );
        let req = String::from_utf8(p.request("1 2 \"x")).unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(head.contains("Content-Type: application/json\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.ends_with("X-API-Key: k"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"channel": "bench", "event": "bench", "data": "1 2 \"x"})
        );

        let p = Publisher::new(target(), PublishFormat::Raw, None, "bench".to_owned());
        let req = String::from_utf8(p.request("1 2 xx")).unwrap();
        assert!(req.contains("Content-Type: text/plain\r\n"));
        assert!(!req.contains("X-API-Key"));
        assert!(req.ends_with("\r\n\r\n1 2 xx"));
    }

    /// A one-connection server that answers each request with `reply`, then closes after `n`.
    async fn server(replies: Vec<&'static [u8]>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            for reply in replies {
                let _ = conn.read(&mut buf).await.unwrap();
                conn.write_all(reply).await.unwrap();
            }
        });
        Target {
            authority: addr.to_string(),
            path: "/".to_owned(),
            addr,
        }
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_statuses() {
        let t = server(vec![
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nslow\r\n0\r\n\r\n",
        ])
        .await;
        let mut p = Publisher::new(t, PublishFormat::Raw, None, String::new());
        let req = p.request("1 2");
        let wait = Duration::from_secs(5);
        assert_eq!(p.send(&req, wait).await, Outcome::Accepted("{}".to_owned()));
        assert_eq!(
            p.send(&req, wait).await,
            Outcome::Rejected {
                status: 429,
                why: "HTTP 429: slow".to_owned()
            }
        );
        // The server is gone now: the stale connection is retried, and the retry cannot connect.
        // It goes to a port held refusing: the server's port is free now, anyone's to take.
        let gone = test_kit::ClosedPort::new();
        p.target.addr = gone.addr();
        assert!(matches!(p.send(&req, wait).await, Outcome::NotSent(_)));
    }
}
