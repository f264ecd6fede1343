//! TLS and HTTP/2 of the contract: an HTTPS listener serving everything the plain one does with
//! h2 and HTTP/1.1 by ALPN, many streams over one HTTP/2 connection, h2c with
//! `http2_cleartext`, certificate errors at their `file:line:col`, and a reload that re-reads the
//! certificate; and HTTP/2 streams as clients of their own: a stream that stops reading (flow
//! control) is a slow consumer while its siblings on the connection go on, a stream the
//! client resets is freed at once, and an idle HTTP/2 connection closes while one with a stream
//! stays.

mod backend;
mod common;
mod pki;

use std::net::SocketAddr;
use std::time::Duration;

use backend::Backend;
use bytes::Bytes;
use common::*;
use pki::Pki;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

/// An address on 127.0.0.1 that was free a moment ago: the contract does not say how a
/// gateway reports the port of a `tls.listen` of port 0, so the test picks one.
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr")
}

/// A gateway with an HTTPS listener using `pki`'s certificate; `extra` adds top-level keys.
async fn tls_gateway(pki: &Pki, extra: &str) -> (Gateway, SocketAddr) {
    let tls = free_addr();
    let gw = Gateway::start(&format!(
        "tls:\n  listen: {tls}\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}",
        pki.cert_file.display(),
        pki.key_file.display()
    ));
    eventually(WAIT, "the TLS listener accepts", || async {
        tokio::net::TcpStream::connect(tls).await.is_ok()
    })
    .await;
    (gw, tls)
}

/// An HTTP/2 client on `io` (TLS with ALPN h2, or plain TCP for h2c).
async fn h2_client<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    h2_client_with(io, &h2::client::Builder::new()).await
}

/// An HTTP/2 client over TLS to the gateway's HTTPS listener at `tls` (ALPN h2).
async fn h2_over_tls(pki: &Pki, tls: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let conn = pki::connect(&pki.client(&[b"h2"]), tls, "localhost")
        .await
        .expect("handshake");
    h2_client(conn).await
}

/// An HTTP/2 client on `io` made by `builder` (flow-control windows, for one).
async fn h2_client_with<T>(io: T, builder: &h2::client::Builder) -> h2::client::SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = builder.handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// An HTTP/2 request on the connection: the response head and its body stream.
async fn h2_request(
    send: &h2::client::SendRequest<Bytes>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(http::response::Parts, h2::RecvStream), h2::Error> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut send = send.clone().ready().await?;
    let (response, mut outgoing) =
        send.send_request(req.body(()).expect("request"), body.is_none())?;
    if let Some(body) = body {
        outgoing.send_data(Bytes::from(body.to_owned()), true)?;
    }
    Ok(response.await?.into_parts())
}

/// Reads the body until it contains `needle`; panics after `within`.
async fn read_until(body: &mut h2::RecvStream, needle: &str, within: Duration) -> String {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, body.data())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)))
            .expect("body ended")
            .expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        seen.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The whole body of a finished response.
async fn read_all(mut body: h2::RecvStream) -> String {
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn https_serves_what_the_plain_listener_does_with_h2_and_http1_by_alpn() {
    let pki = Pki::new(&[]);
    let (gw, tls) = tls_gateway(&pki, "").await;

    // HTTP/1.1, chosen by ALPN or by offering nothing.
    for offer in [&[b"http/1.1".as_slice()][..], &[]] {
        let mut conn = pki::connect(&pki.client(offer), tls, "localhost")
            .await
            .expect("handshake");
        assert!(
            pki::alpn(&conn).is_none_or(|p| p == "http/1.1"),
            "{:?}",
            pki::alpn(&conn)
        );
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with(r#"{"status":"ok"}"#), "{reply}");
    }

    // HTTP/2 by ALPN: the stream, a publish and the admin API over one connection.
    let conn = pki::connect(&pki.client(&[b"h2", b"http/1.1"]), tls, "localhost")
        .await
        .expect("handshake");
    assert_eq!(pki::alpn(&conn).as_deref(), Some("h2"));
    let h2 = h2_client(conn).await;
    let (head, mut events) = h2_request(&h2, "GET", "/events?channel=secure", &[], None)
        .await
        .expect("stream");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let publish = r#"{"channel": "secure", "event": "note", "data": "over h2"}"#;
    let (head, body) = h2_request(
        &h2,
        "POST",
        "/broadcast",
        &[("x-api-key", KEY), ("content-type", "application/json")],
        Some(publish),
    )
    .await
    .expect("publish");
    assert_eq!(head.status, 202, "{}", read_all(body).await);
    read_until(&mut events, "event: note\ndata: over h2\n\n", WAIT).await;
    let (head, body) = h2_request(&h2, "GET", "/stats", &[("x-api-key", KEY)], None)
        .await
        .expect("stats");
    assert_eq!(head.status, 200);
    let stats: Value = serde_json::from_str(&read_all(body).await).expect("JSON");
    assert_eq!(stats["streams"]["open"], 1);
    drop(gw);
}

#[tokio::test]
async fn many_h2_streams_over_one_connection_each_behave_as_one_client() {
    let pki = Pki::new(&[]);
    let (gw, tls) = tls_gateway(&pki, "").await;
    let h2 = h2_over_tls(&pki, tls).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        let (head, body) = h2_request(&h2, "GET", "/events?channel=shared", &[], None)
            .await
            .expect("stream");
        assert_eq!(head.status, 200);
        streams.push(body);
    }
    eventually(WAIT, "10 clients", || async {
        gw.admin_get("/clients").await["total"] == 10
    })
    .await;
    gw.publish_ok("shared", "note", "to all ten").await;
    for body in &mut streams {
        read_until(body, "data: to all ten\n\n", WAIT).await;
    }

    // Ending three streams ends three clients; the connection and the others go on.
    streams.truncate(7);
    eventually(WAIT, "7 clients", || async {
        gw.admin_get("/clients").await["total"] == 7
    })
    .await;
    gw.publish_ok("shared", "note", "to the seven").await;
    for body in &mut streams {
        read_until(body, "data: to the seven\n\n", WAIT).await;
    }
}

/// A stream on `channel` over a new h2c connection to `gw`'s plain listener, with the
/// connection's handle (the connection lasts while it is held).
async fn h2c_stream(
    gw: &Gateway,
    channel: &str,
) -> (h2::client::SendRequest<Bytes>, h2::RecvStream) {
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let h2 = h2_client(tcp).await;
    let (head, events) = h2_request(&h2, "GET", &format!("/events?channel={channel}"), &[], None)
        .await
        .expect("h2c stream");
    assert_eq!(head.status, 200);
    (h2, events)
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_only_with_http2_cleartext() {
    let gw = Gateway::start("http2_cleartext: true\n");
    let (_h2, mut events) = h2c_stream(&gw, "clear").await;
    gw.publish_ok("clear", "note", "over h2c").await;
    read_until(&mut events, "data: over h2c\n\n", WAIT).await;
    // HTTP/1.1 goes on working on the same listener.
    let resp = http()
        .get(gw.url("/healthz"))
        .send()
        .await
        .expect("http/1.1");
    assert_eq!(resp.status(), 200);

    // Off by default: the plain listener does not speak HTTP/2.
    let gw = Gateway::start("");
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let answered = tokio::time::timeout(WAIT, async {
        let (send, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        h2_request(&send, "GET", "/healthz", &[], None).await
    })
    .await;
    assert!(
        !matches!(answered, Ok(Ok((ref head, _))) if head.status == 200),
        "h2c served without http2_cleartext"
    );
}

#[tokio::test]
async fn an_idle_h2_connection_closes_after_the_head_timeout_and_one_with_a_stream_stays() {
    let gw = Gateway::start("http2_cleartext: true\nlimits:\n  header_read_timeout: 1s\n");
    // A connection whose one request is a stream: it has nothing in flight but the stream.
    let (_streaming, mut events) = h2c_stream(&gw, "idle").await;

    // A connection that is answered once, then left idle: closed after the timeout.
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let closed = tokio::spawn(connection);
    let (head, _) = h2_request(&send, "GET", "/healthz", &[], None)
        .await
        .expect("answered");
    assert_eq!(head.status, 200);
    let answered = std::time::Instant::now();
    // pingora drops the socket without a GOAWAY, which the client may see as an error: either
    // way the connection has ended.
    let _ = tokio::time::timeout(WAIT, closed)
        .await
        .expect("the idle connection was closed")
        .expect("its connection task");
    assert!(
        answered.elapsed() >= Duration::from_millis(500),
        "closed after {:?}, not after its idle time",
        answered.elapsed()
    );

    // The stream's connection has been without a request for longer than that, and stays.
    gw.publish_ok("idle", "note", "still here").await;
    read_until(&mut events, "data: still here\n\n", WAIT).await;
}

#[test]
fn bad_or_unreadable_certificate_files_are_config_errors_at_their_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write");
    let missing = dir.path().join("missing-key.pem");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ntls:\n  listen: 127.0.0.1:0\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            garbage.display(),
            missing.display()
        ),
    )
    .expect("write");
    for check in [true, false] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sse-gateway"));
        cmd.arg("--config")
            .arg(&config)
            .env_remove("SSE_GATEWAY_CONFIG");
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check={check}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing listens, no ok");
        let file = config.display();
        for (at, key) in [("4:14", "tls.cert_file"), ("5:13", "tls.key_file")] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&format!("{file}:{at}: {key}"))),
                "check={check}: no {key} error at {at}:\n{stderr}"
            );
        }
    }
}

#[tokio::test]
async fn a_reload_rereads_the_certificate_for_new_handshakes_and_keeps_open_connections() {
    let (first, second) = (Pki::new(&[]), Pki::new(&[]));
    // The gateway reads the pair from files of its own, which the test replaces.
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert_file, &cert).expect("copy");
    std::fs::copy(&first.key_file, &key).expect("copy");
    let tls = free_addr();
    let gw = Gateway::start(&format!(
        "tls:\n  listen: {tls}\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
        cert.display(),
        key.display()
    ));
    eventually(WAIT, "the TLS listener accepts", || async {
        pki::connect(&first.client(&[b"h2"]), tls, "localhost")
            .await
            .is_ok()
    })
    .await;
    let old = pki::connect(&first.client(&[b"h2"]), tls, "localhost")
        .await
        .expect("handshake with the first pair");
    let h2 = h2_client(old).await;
    let (_, mut events) = h2_request(&h2, "GET", "/events?channel=rotate", &[], None)
        .await
        .expect("stream");

    std::fs::copy(&second.cert_file, &cert).expect("copy");
    std::fs::copy(&second.key_file, &key).expect("copy");
    gw.signal("HUP");
    eventually(WAIT, "new handshakes use the new pair", || async {
        pki::connect(&second.client(&[b"h2"]), tls, "localhost")
            .await
            .is_ok()
    })
    .await;
    assert!(
        pki::connect(&first.client(&[b"h2"]), tls, "localhost")
            .await
            .is_err(),
        "the old certificate is no longer offered"
    );
    gw.publish_ok("rotate", "note", "still connected").await;
    read_until(&mut events, "data: still connected\n\n", WAIT).await;
}

#[tokio::test]
async fn https_http1_streams_and_proxied_routes_say_https() {
    let pki = Pki::new(&[]);
    let backend = Backend::start("a").await;
    let (gw, tls) = tls_gateway(
        &pki,
        &format!(
            "routes:\n  - {{path_prefix: /api/, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
            backend.addr
        ),
    )
    .await;

    // A stream over HTTPS/1.1: the connection handed to the stream task is the TLS one.
    let mut conn = pki::connect(&pki.client(&[b"http/1.1"]), tls, "localhost")
        .await
        .expect("handshake");
    conn.write_all(b"GET /events?channel=tls1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(": connected") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("stream opens")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: keep-alive"), "{head}");
    gw.publish_ok("tls1", "note", "over https/1.1").await;
    while !String::from_utf8_lossy(&seen).contains("data: over https/1.1\n\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("the event arrives")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }

    // A proxied route over HTTP/2: the backend is told the client came over HTTPS.
    let h2 = h2_over_tls(&pki, tls).await;
    let (head, body) = h2_request(&h2, "GET", "/api/info", &[], None)
        .await
        .expect("proxied");
    assert_eq!(head.status, 200);
    assert_eq!(read_all(body).await, "a");
    let seen = backend.requests();
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn an_h2_stream_that_stops_reading_is_a_slow_consumer_and_its_siblings_go_on() {
    let pki = Pki::new(&[]);
    let (gw, tls) = tls_gateway(&pki, "sse:\n  client_queue: 16\n").await;
    let conn = pki::connect(&pki.client(&[b"h2"]), tls, "localhost")
        .await
        .expect("handshake");
    // As browsers do: a connection window far larger than a stream's, so that one stream's
    // unread bytes do not hold the others back on the client's side.
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024);
    let h2 = h2_client_with(conn, &builder).await;
    let (_, stalled) = h2_request(&h2, "GET", "/events?channel=flood", &[], None)
        .await
        .expect("stream");
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (_, mut body) = h2_request(&h2, "GET", "/events?channel=flood", &[], None)
            .await
            .expect("stream");
        readers.push(tokio::spawn(async move {
            let seen = read_until(&mut body, "data: last\n\n", WAIT * 2).await;
            (seen, body)
        }));
    }
    eventually(WAIT, "4 clients", || async {
        gw.admin_get("/clients").await["total"] == 4
    })
    .await;

    // 128 KiB for each stream: 16 KiB fill the stalled stream's window, 16 more events its
    // queue, and the rest overflow it.
    let data = "x".repeat(1024);
    for _ in 0..128 {
        gw.publish_ok("flood", "note", &data).await;
    }
    eventually(WAIT, "the stalled stream disconnected as slow", || async {
        gw.metric("sse_gateway_slow_consumer_disconnects_total", "")
            .await
            == 1.0
    })
    .await;
    gw.publish_ok("flood", "note", "last").await;
    let mut siblings = Vec::new();
    for reader in readers {
        let (seen, body) = reader.await.expect("reader");
        assert_eq!(seen.matches(&data).count(), 128, "a sibling missed events");
        siblings.push(body);
    }
    assert_eq!(gw.admin_get("/clients").await["total"], 3);
    drop(stalled);
}

#[tokio::test]
async fn an_h2_stream_the_client_resets_is_freed_at_once() {
    let pki = Pki::new(&[]);
    let (gw, tls) = tls_gateway(&pki, "").await;
    let h2 = h2_over_tls(&pki, tls).await;
    let request = http::Request::builder()
        .uri("https://localhost/events?channel=reset")
        .body(())
        .expect("request");
    let mut send = h2.clone().ready().await.expect("ready");
    let (response, mut outgoing) = send.send_request(request, false).expect("send");
    let (head, _body) = response.await.expect("response").into_parts();
    assert_eq!(head.status, 200);
    let (_, mut sibling) = h2_request(&h2, "GET", "/events?channel=reset", &[], None)
        .await
        .expect("stream");
    eventually(WAIT, "2 clients", || async {
        gw.admin_get("/clients").await["total"] == 2
    })
    .await;

    outgoing.send_reset(h2::Reason::CANCEL);
    eventually(WAIT, "the reset stream is gone", || async {
        gw.admin_get("/clients").await["total"] == 1
    })
    .await;
    assert_eq!(
        gw.metric("sse_gateway_streams_closed_total", "reason=\"client_left\"")
            .await,
        1.0
    );
    // The connection and its other stream go on.
    gw.publish_ok("reset", "note", "still here").await;
    read_until(&mut sibling, "data: still here\n\n", WAIT).await;
}

#[tokio::test]
async fn h2_streams_end_at_their_lifetime_each_with_a_clean_end_and_the_connection_stays() {
    let pki = Pki::new(&[]);
    let (_gw, tls) = tls_gateway(&pki, "sse:\n  max_connection_lifetime: 2s\n").await;
    let h2 = h2_over_tls(&pki, tls).await;
    let mut ends = Vec::new();
    for _ in 0..3 {
        let (_, body) = h2_request(&h2, "GET", "/events?channel=life", &[], None)
            .await
            .expect("stream");
        // The whole body: it ends (END_STREAM, not a reset) with the jittered `retry:`.
        ends.push(tokio::spawn(tokio::time::timeout(WAIT, read_all(body))));
    }
    for end in ends {
        let body = end.await.expect("task").expect("the stream ends by itself");
        assert!(
            body.trim_end()
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("retry:")),
            "{body}"
        );
    }
    // The connection outlives its streams.
    let (head, body) = h2_request(&h2, "GET", "/healthz", &[], None)
        .await
        .expect("same connection");
    assert_eq!(head.status, 200);
    assert_eq!(read_all(body).await, r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn a_changed_tls_listen_needs_a_restart_and_the_listener_in_force_stays() {
    let pki = Pki::new(&[]);
    let (gw, tls) = tls_gateway(&pki, "").await;
    let elsewhere = free_addr();
    std::fs::write(
        gw.config_path(),
        base_config(&format!(
            "tls:\n  listen: {elsewhere}\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            pki.cert_file.display(),
            pki.key_file.display()
        )),
    )
    .expect("write config");
    gw.signal("HUP");
    eventually(WAIT, "the reload says a restart is needed", || async {
        gw.logs()
            .lines()
            .any(|l| l.contains("tls.listen changed") && l.contains("restart"))
    })
    .await;
    eventually(WAIT, "the reload applied", || async {
        gw.metric("sse_gateway_config_reloads_total", "result=\"ok\"")
            .await
            >= 1.0
    })
    .await;
    pki::connect(&pki.client(&[b"h2"]), tls, "localhost")
        .await
        .expect("the listener in force still serves");
    assert!(
        tokio::net::TcpStream::connect(elsewhere).await.is_err(),
        "nothing listens on the new address before a restart"
    );
}
