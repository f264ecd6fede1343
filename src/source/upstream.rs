//! Opening an upstream event stream with pingora's HTTP client: resolve, connect, send the GET
//! (with `Last-Event-ID` and the configured headers), and accept the answer only if it is a
//! `200 text/event-stream`. Everything else is a [`Fault`] for the relay to count and back off on.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

use super::status::Fault;

/// Connecting (TCP and TLS) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one connection attempt goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub path: String,
    /// For a server of an `upstreams:` pool: how the pool connects to it (its resolved address,
    /// TLS with the pool's `sni` and `ca_file`, its connect timeout), so a source reads through
    /// the pool exactly as a proxied request would. `None` for a source URL, resolved when
    /// connecting.
    pub peer: Option<Box<HttpPeer>>,
}

impl Target {
    /// From an absolute `http(s)://` URL (the config checked its shape).
    pub fn from_url(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must be http:// or https://".into()),
        };
        let host = uri.host().ok_or("the URL has no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            tls,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host,
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            peer: None,
        })
    }

    /// From a server of an `upstreams:` pool (`host:port`, checked by the config), the peer the
    /// pool connects to it with, and a path.
    pub fn from_server(server: &str, peer: HttpPeer, path: &str) -> Result<Target, String> {
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid server {server:?}"))?;
        let port = port
            .parse()
            .map_err(|_| format!("invalid port in {server:?}"))?;
        Ok(Target {
            tls: peer.is_tls(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
            peer: Some(Box::new(peer)),
        })
    }

    /// The `Host` header: the port only when it is not the scheme's default.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// Why an attempt failed: the kind to count, and words for the log.
#[derive(Debug)]
pub struct Failure {
    pub fault: Fault,
    pub detail: String,
}

impl Failure {
    fn new(fault: Fault, detail: impl Into<String>) -> Failure {
        Failure {
            fault,
            detail: detail.into(),
        }
    }
}

/// An open upstream event stream.
pub struct Stream {
    session: HttpSession,
    stall_timeout: Duration,
}

impl Stream {
    /// The next bytes of the body; `Ok(None)` when the upstream ended the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        match tokio::time::timeout(self.stall_timeout, self.session.read_response_body()).await {
            Err(_) => Err(Failure::new(
                Fault::Stalled,
                format!("no bytes for {:?}", self.stall_timeout),
            )),
            Ok(Err(e)) => Err(Failure::new(Fault::Read, format!("stream broke: {e}"))),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }
}

/// Opens the stream at `target`, resuming after `last_event_id` when it is not empty.
pub async fn open(
    connector: &Connector,
    target: &Target,
    headers: &[(String, String)],
    last_event_id: &str,
    stall_timeout: Duration,
) -> Result<Stream, Failure> {
    let mut peer = match &target.peer {
        Some(peer) => HttpPeer::clone(peer),
        None => {
            let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    Failure::new(
                        Fault::Connect,
                        format!("cannot resolve {}:{}", target.host, target.port),
                    )
                })?;
            let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
            peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
            peer
        }
    };
    // The TLS handshake is bounded too, not only the TCP connect.
    peer.options.total_connection_timeout = Some(CONNECT_TIMEOUT);
    let addr = peer._address.clone();
    let (mut session, _reused) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| Failure::new(Fault::Connect, format!("cannot connect to {addr}: {e}")))?;

    let request = request(target, headers, last_event_id)
        .map_err(|e| Failure::new(Fault::Connect, format!("cannot build the request: {e}")))?;
    let sent = async {
        session.write_request_header(Box::new(request)).await?;
        session.finish_request_body().await?;
        session.read_response_header().await
    };
    match tokio::time::timeout(stall_timeout, sent).await {
        Err(_) => {
            return Err(Failure::new(
                Fault::Stalled,
                format!("no response header within {stall_timeout:?}"),
            ))
        }
        Ok(Err(e)) if e.etype() == &ErrorType::ConnectionClosed => {
            return Err(Failure::new(
                Fault::Read,
                "the upstream closed the connection before answering",
            ))
        }
        Ok(Err(e)) => return Err(Failure::new(Fault::Read, format!("no valid answer: {e}"))),
        Ok(Ok(())) => {}
    }
    let Some(response) = session.response_header() else {
        return Err(Failure::new(Fault::Read, "no response header"));
    };
    if response.status != http::StatusCode::OK {
        return Err(Failure::new(
            Fault::Status,
            format!("answered {} instead of 200", response.status),
        ));
    }
    let content_type = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/event-stream") {
        return Err(Failure::new(
            Fault::ContentType,
            format!("answered Content-Type {content_type:?}, not text/event-stream"),
        ));
    }
    Ok(Stream {
        session,
        stall_timeout,
    })
}

fn request(
    target: &Target,
    headers: &[(String, String)],
    last_event_id: &str,
) -> pingora::Result<RequestHeader> {
    let mut req = RequestHeader::build("GET", target.path.as_bytes(), None)?;
    req.insert_header(http::header::HOST, target.authority())?;
    req.insert_header(http::header::ACCEPT, "text/event-stream")?;
    req.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    req.insert_header(
        http::header::USER_AGENT,
        concat!("sse-gateway/", env!("CARGO_PKG_VERSION")),
    )?;
    // An id with bytes a header cannot carry (control characters) cannot be resumed from; the
    // upstream then starts from its live edge rather than the gateway never reconnecting.
    if let Ok(id) = http::HeaderValue::from_bytes(last_event_id.as_bytes()) {
        if !last_event_id.is_empty() {
            req.insert_header("last-event-id", id)?;
        }
    }
    for (name, value) in headers {
        req.insert_header(name.clone(), value.as_str())?;
    }
    Ok(req)
}
