//! Event streams a route takes, relayed off pingora's request task.
//!
//! Why: pingora's proxy keeps a request's whole state for the life of its response: the boxed
//! request future (about 14 KiB), a 64 KiB body buffer its HTTP/1 client allocates for every
//! upstream response, header buffers and the task. For a small response that is gone in
//! microseconds; for an event stream that stays open for hours, it was about 60 KiB per idle
//! stream, four times what nginx holds. So a request that asks for an event stream (a `GET`
//! over HTTP/1 that accepts `text/event-stream`, without a body or an upgrade) is proxied here
//! instead: the upstream exchange is made on this request task (server chosen and retried as
//! pingora would, the same headers both ways, the same JSON errors), and once the response head
//! is written to the client, a task of its own relays the body. That task holds the two
//! sockets, the request's [`ProxyState`] (the server counted in flight for
//! `least_connections` and `/stats` until the stream ends, its metrics written then) and no
//! buffer while idle: each read gets a buffer that lives until its bytes are written.
//!
//! What the relay keeps of pingora's proxying: events go to the client as they arrive (each
//! read is written at once, as a chunk); a client that leaves (before the upstream's answer or
//! after) closes the upstream connection;
//! the route's `timeout` applies to every read (`0s`: none, for streams); the response is
//! whatever the upstream answered (any status), re-framed in chunks; the connections are not
//! reused afterwards (an event stream ends with its connection).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderName, HeaderValue};
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::http_req_header_to_wire;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, OrErr, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxied::{self, ProxyState};
use crate::proxy::framing::Body;
use crate::stream::{plain_socket, Connection, Downstream};

/// The largest upstream response head read (pingora's limit too).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers an upstream response head may have.
const MAX_HEADERS: usize = 256;
/// What one read of the upstream body takes at most.
const READ_SIZE: usize = 8 * 1024;
/// How long a write to the client may take: one that accepts nothing for this long is gone or
/// hopelessly slow (the gateway's own streams default to the same).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a request a route takes is proxied here: it asks for an event stream (see the
/// module doc).
pub(super) fn takes(session: &ServerSession) -> bool {
    let req = session.req_header();
    let headers = &req.headers;
    req.method == http::Method::GET
        && !session.is_http2()
        && !headers.contains_key(http::header::UPGRADE)
        && !headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers
            .get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
        && headers
            .get_all(http::header::ACCEPT)
            .iter()
            .any(|v| accepts_event_stream(v.as_bytes()))
}

fn accepts_event_stream(accept: &[u8]) -> bool {
    accept.split(|&b| b == b',').any(|range| {
        let media = range.split(|&b| b == b';').next().unwrap_or(b"");
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// Proxies the request of `session` (see the module doc): on success the connection goes to a
/// relay task and pingora is left an empty stand-in; otherwise the client has the JSON error.
pub(super) async fn proxy(
    connector: &TransportConnector,
    session: &mut Session,
    mut state: ProxyState,
) {
    let answered = exchange(connector, session, &mut state).await.and_then(
        |(upstream, mut response, preread)| {
            let body = Body::of(response.status, &response.headers).map_err(|_| {
                Error::explain(ErrorType::InvalidHTTPHeader, "upstream body framing").into_up()
            })?;
            state.answered(&mut response);
            client_head(&state, &mut response, &body)?;
            Ok((upstream, response, body, preread))
        },
    );
    let (upstream, response, body, preread) = match answered {
        Ok(answered) => answered,
        Err(e) => {
            proxied::fail(session, &e, Some(&state)).await;
            state.done(Some(&e));
            return;
        }
    };
    let downstream = session.as_downstream_mut();
    if let Err(e) = downstream.write_response_header(Box::new(response)).await {
        state.done(Some(&e));
        return;
    }
    // The connection leaves pingora, which finishes an empty stand-in.
    let stand_in = ServerSession::new_http1(Box::new(io::Cursor::new(Vec::new())));
    let real = std::mem::replace(&mut session.downstream_session, Box::new(stand_in));
    let client = match *real {
        ServerSession::H1(h1) => Connection::new(h1.into_inner(), WRITE_TIMEOUT).await,
        // `takes` admits HTTP/1 only.
        _ => Err(io::ErrorKind::Unsupported.into()),
    };
    let Ok(client) = client else {
        let e = Error::explain(ErrorType::WriteError, "client gone").into_down();
        state.done(Some(&e));
        return;
    };
    if body.is_done() {
        // No body: the head was all; both connections close.
        state.done(None);
        return;
    }
    let upstream = Upstream::new(upstream);
    let read_timeout = state.read_timeout();
    tokio::spawn(async move {
        let error = relay(client, upstream, body, preread, read_timeout).await;
        state.done(error.as_deref());
    });
}

/// The response head as it goes to the client: a body re-framed in chunks by the relay, the
/// connection closed after it, and the request's CORS headers.
fn client_head(state: &ProxyState, response: &mut ResponseHeader, body: &Body) -> Result<()> {
    response.remove_header(&http::header::TRANSFER_ENCODING);
    if !body.is_done() {
        response.remove_header(&http::header::CONTENT_LENGTH);
        response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    response.insert_header(http::header::CONNECTION, "close")?;
    state.downstream_response(response)
}

/// Sends the request to a server of the route's pool (another one once, if the connection
/// failed) and reads its response head: the connection, the head, and the body bytes read
/// with it.
async fn exchange(
    connector: &TransportConnector,
    session: &mut Session,
    state: &mut ProxyState,
) -> Result<(Stream, ResponseHeader, BytesMut)> {
    let request = upstream_request(session, state)?;
    loop {
        let peer = state.choose_peer(session.as_downstream())?;
        let mut upstream = match connector.new_stream(&peer).await {
            Ok(stream) => stream,
            Err(e) => {
                if state.connect_failed(true) {
                    continue;
                }
                return Err(e.into_up());
            }
        };
        let head = async {
            upstream
                .write_all(&request)
                .await
                .or_err(ErrorType::WriteError, "writing the request upstream")?;
            upstream
                .flush()
                .await
                .or_err(ErrorType::WriteError, "writing the request upstream")?;
            let read = read_head(&mut upstream);
            match peer.options.read_timeout {
                Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| {
                    Error::explain(ErrorType::ReadTimedout, "upstream response head")
                })?,
                None => read.await,
            }
        };
        // A client that leaves while the upstream has not answered yet closes its request too.
        let client_left = async {
            loop {
                if let Err(e) = session.as_downstream_mut().read_body_or_idle(true).await {
                    return e;
                }
            }
        };
        let (response, preread) = tokio::select! {
            head = head => head.map_err(|e| e.into_up())?,
            e = client_left => return Err(e.into_down()),
        };
        return Ok((upstream, response, preread));
    }
}

/// The request head as it goes upstream, on the wire: HTTP/1.1, without the hop-by-hop headers,
/// with the route's changes ([`ProxyState::upstream_request`]).
fn upstream_request(session: &Session, state: &ProxyState) -> Result<BytesMut> {
    let downstream = session.as_downstream();
    let mut request: RequestHeader = downstream.req_header().clone();
    request.set_version(http::Version::HTTP_11);
    for name in proxied::hop_by_hop(&request.headers) {
        request.remove_header(name.as_ref());
    }
    request.remove_header(&http::header::TRANSFER_ENCODING);
    request.remove_header("http2-settings");
    state.upstream_request(downstream, &mut request)?;
    http_req_header_to_wire(&request)
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "request line"))
}

/// Reads an HTTP/1 response head: the final head (interim `1xx` heads such as `103 Early
/// Hints` are skipped), and the body bytes read past it.
async fn read_head(upstream: &mut Stream) -> Result<(ResponseHeader, BytesMut)> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        while let Some((head, len)) = parse_head(&buf)? {
            let rest = buf.split_off(len);
            if !head.status.is_informational() {
                return Ok((head, rest));
            }
            buf = rest;
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "upstream head too large");
        }
        let n = upstream
            .read_buf(&mut buf)
            .await
            .or_err(ErrorType::ReadError, "reading the upstream response head")?;
        if n == 0 {
            return Error::e_explain(
                ErrorType::ConnectionClosed,
                "upstream closed before its head",
            );
        }
    }
}

/// The response head at the start of `buf`, with its length; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHeader, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Error::e_explain(ErrorType::InvalidHTTPHeader, "upstream response head"),
    };
    let status = parsed.code.unwrap_or(0);
    let mut head = ResponseHeader::build(status, Some(parsed.headers.len()))?;
    head.set_version(http::Version::HTTP_11);
    head.set_reason_phrase(parsed.reason)?;
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .or_err(ErrorType::InvalidHTTPHeader, "upstream header name")?;
        let value = HeaderValue::from_bytes(header.value)
            .or_err(ErrorType::InvalidHTTPHeader, "upstream header value")?;
        head.append_header(name, value)?;
    }
    Ok(Some((head, len)))
}

/// The upstream connection of a relay: the TCP socket itself when it is plain TCP (read only
/// when readable, into a buffer that lives until its bytes are written), else pingora's stream
/// (TLS).
enum Upstream {
    Plain(TcpStream),
    Wrapped(Stream),
}

impl Upstream {
    fn new(stream: Stream) -> Upstream {
        match plain_socket(stream) {
            Ok(socket) => Upstream::Plain(socket),
            Err(stream) => Upstream::Wrapped(stream),
        }
    }

    /// The next bytes; empty at the end of the connection.
    async fn read(&mut self) -> io::Result<BytesMut> {
        match self {
            Upstream::Plain(socket) => loop {
                socket.readable().await?;
                let mut buf = BytesMut::with_capacity(READ_SIZE);
                match socket.try_read_buf(&mut buf) {
                    Ok(_) => return Ok(buf),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
            Upstream::Wrapped(stream) => {
                let mut buf = BytesMut::with_capacity(READ_SIZE);
                stream.read_buf(&mut buf).await?;
                Ok(buf)
            }
        }
    }
}

/// Relays the upstream body to the client until it ends, the client leaves or either side
/// fails (`bytes`: what came with the head); the error, if the stream did not end as it should.
async fn relay(
    mut client: Connection,
    mut upstream: Upstream,
    mut body: Body,
    mut bytes: BytesMut,
    read_timeout: Option<Duration>,
) -> Option<Box<Error>> {
    let mut closed = false;
    loop {
        if closed && body.closed().is_err() {
            // The client's connection closes without the last chunk, so it sees the cut.
            let cut = Error::explain(ErrorType::ConnectionClosed, "upstream body cut short");
            return Some(cut.into_up());
        }
        let Ok(data) = body.decode(bytes) else {
            let broken = Error::explain(ErrorType::InvalidHTTPHeader, "upstream body framing");
            return Some(broken.into_up());
        };
        let end = body.is_done();
        if (!data.is_empty() || end) && client.write(data, end).await.is_err() {
            return Some(Error::explain(ErrorType::WriteError, "client gone").into_down());
        }
        if end {
            return None;
        }
        bytes = tokio::select! {
            read = read_with(&mut upstream, read_timeout) => match read {
                Ok(bytes) => bytes,
                Err(e) => return Some(e.into_up()),
            },
            () = client.gone() => {
                let left = Error::explain(ErrorType::ConnectionClosed, "client left");
                return Some(left.into_down());
            }
        };
        closed = bytes.is_empty();
    }
}

async fn read_with(upstream: &mut Upstream, limit: Option<Duration>) -> Result<BytesMut> {
    let read = upstream.read();
    let result = match limit {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| Error::explain(ErrorType::ReadTimedout, "upstream body"))?,
        None => read.await,
    };
    result.or_err(ErrorType::ReadError, "reading the upstream body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_what_accept_names() {
        assert!(accepts_event_stream(b"text/event-stream"));
        assert!(accepts_event_stream(b"text/html, Text/Event-Stream;q=0.9"));
        assert!(!accepts_event_stream(b"*/*"));
        assert!(!accepts_event_stream(b"application/json"));
    }

    #[test]
    fn response_heads_parse_with_their_body_bytes_left() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n";
        assert!(parse_head(&wire[..20]).unwrap().is_none());
        let (head, len) = parse_head(wire).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["content-type"], "text/event-stream");
        assert_eq!(&wire[len..], b"data: x\n\n");
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn interim_heads_are_skipped_for_the_final_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            for part in [
                &b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 2"[..],
                b"00 OK\r\n\r\ndata",
            ] {
                conn.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut upstream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
        let (head, rest) = read_head(&mut upstream).await.unwrap();
        assert_eq!(head.status, 200);
        assert!(head.headers.get("link").is_none());
        server.await.unwrap();
        let mut rest = rest;
        while rest.len() < 4 && upstream.read_buf(&mut rest).await.unwrap() > 0 {}
        assert_eq!(&rest[..], b"data");
    }
}
