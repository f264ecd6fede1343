//! Attacks and the reply each must get, over raw sockets against the real gateway: hostile
//! input, request smuggling, oversized requests, slowloris, and every limit. After each table,
//! the gateway must have published nothing and still serve.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// How soon a `header_read_timeout: 1s` must cut a slow client off: five times the setting, for
/// a busy machine, and well under the 10 s default that would apply if the setting were lost.
const HEADER_TIMEOUT_CEILING: Duration = Duration::from_secs(5);

/// One attack: what is sent, and the status and error code that must come back.
struct Attack {
    name: &'static str,
    request: String,
    status: u16,
    /// The JSON error code; `None` where pingora refuses the request before any handler runs
    /// (with its own 400, or by closing the connection without a reply, status 0 here).
    code: Option<&'static str>,
}

fn attack(name: &'static str, request: String, status: u16, code: &'static str) -> Attack {
    Attack {
        name,
        request,
        status,
        code: Some(code),
    }
}

/// A POST /broadcast with the admin key and this JSON body.
fn publish(body: &str) -> String {
    format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn get(target: &str, headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
}

async fn run_table(gw: &Gateway, attacks: Vec<Attack>) {
    for attack in attacks {
        let reply = gw.raw_request(&attack.request).await;
        let (status, code) = reply_status_and_code(&reply);
        match attack.code {
            Some(expected) => {
                assert_eq!(status, attack.status, "{}: {reply}", attack.name);
                assert_eq!(code.as_deref(), Some(expected), "{}: {reply}", attack.name);
            }
            None => assert!(
                status == attack.status || status == 0,
                "{}: {reply}",
                attack.name
            ),
        }
    }
}

#[tokio::test]
async fn hostile_requests_are_refused_and_publish_nothing() {
    let gw = Gateway::start("limits:\n  max_event_bytes: 4096\n");
    let mut watcher = SseClient::connect(&gw.url("/events?channel=a")).await;
    let deep = format!("{}1{}", "[".repeat(1500), "]".repeat(1500));
    let mut attacks = vec![
        attack("CR/LF in an event name", publish(r#"{"channel":"a","event":"x\r\nid: 1","data":1}"#), 400, "invalid_event"),
        attack("NUL in an event name", publish(r#"{"channel":"a","event":"x\u0000","data":1}"#), 400, "invalid_event"),
        attack("CR/LF in a channel", publish(r#"{"channel":"a\r\nevent: admin","data":1}"#), 400, "invalid_channel"),
        attack("deeply nested JSON data", publish(&format!(r#"{{"channel":"a","data":{deep}}}"#)), 400, "invalid_json"),
        attack("body over max_event_bytes", publish(&format!(r#"{{"channel":"a","data":"{}"}}"#, "x".repeat(5000))), 413, "payload_too_large"),
        attack(
            "not JSON",
            format!("POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"),
            415,
            "unsupported_media_type",
        ),
        attack("no credential", publish(r#"{"channel":"a","data":1}"#).replace(&format!("X-API-Key: {KEY}\r\n"), ""), 401, "unauthorized"),
        attack("a wrong key", publish(r#"{"channel":"a","data":1}"#).replace(KEY, "guess"), 401, "unauthorized"),
        attack("a key outside its channels", publish(r#"{"channel":"a","data":1}"#).replace(KEY, LIMITED_KEY), 403, "forbidden"),
        attack("a disallowed Origin on publish", publish(r#"{"channel":"a","data":1}"#).replace("Host: x\r\n", "Host: x\r\nOrigin: http://evil.test\r\n"), 403, "origin_not_allowed"),
        attack("a disallowed Origin on metrics", get("/metrics", "Origin: http://evil.test\r\n"), 403, "origin_not_allowed"),
        attack("a huge query string", get(&format!("/events?channel=a&pad={}", "x".repeat(9000)), ""), 414, "uri_too_long"),
        attack("huge header fields", get("/events?channel=a", &format!("X-Pad: {}\r\n", "x".repeat(40_000))), 431, "headers_too_large"),
        attack("a channel name with a NUL", get("/events?channel=a%00b", ""), 400, "invalid_channel"),
        attack("too many channels", get(&format!("/events?channels={}", (0..40).map(|n| format!("c{n}")).collect::<Vec<_>>().join(",")), ""), 400, "too_many_channels"),
        attack("a claims channel without credential", get("/events?channel=secret.x", ""), 401, "unauthorized"),
    ];
    // Request smuggling: a body whose length is told two ways, refused before any handler runs
    // (two different lengths by pingora, the rest by the gateway); the smuggled request inside
    // must never run as a request of its own.
    let smuggled = publish(r#"{"channel":"a","data":"smuggled"}"#);
    let chunked = format!("0\r\n\r\n{smuggled}");
    attacks.push(Attack {
        name: "Content-Length and Transfer-Encoding together",
        request: format!(
            "POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
            chunked.len()
        ),
        status: 400,
        code: Some("ambiguous_length"),
    });
    attacks.push(Attack {
        name: "two different Content-Lengths",
        request: format!(
            "POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
             Content-Length: 5\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{smuggled}"
        ),
        status: 400,
        code: None,
    });
    // pingora takes the same length given twice; the gateway does not.
    let body = r#"{"channel":"a","data":"smuggled"}"#;
    attacks.push(Attack {
        name: "the same Content-Length twice",
        request: format!(
            "POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
             Content-Length: {n}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{body}",
            n = body.len()
        ),
        status: 400,
        code: Some("ambiguous_length"),
    });
    run_table(&gw, attacks).await;

    // Invalid UTF-8 cannot be written in a Rust string literal request; send its bytes.
    let body: &[u8] = b"{\"channel\":\"a\",\"data\":\"\xff\xfe\"}";
    let mut request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let reply = raw_request(gw.addr, &request, WAIT).await;
    assert_eq!(
        reply_status_and_code(&reply),
        (400, Some("invalid_json".into())),
        "{reply}"
    );

    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats["events"]["published_total"], 0, "{stats}");
    // And the gateway still serves: the next event the watcher sees is this one.
    let after = gw.publish_ok("a", "note", "after the attacks").await;
    watcher.assert_next_is(&after, WAIT).await;
}

#[tokio::test]
async fn injected_fields_and_absurd_resume_ids_stay_harmless() {
    let gw = Gateway::start("");
    let mut client = SseClient::connect(&gw.url("/events?channel=a")).await;
    let injection = "x\n\nevent: admin\nid: 999\ndata: pwned\n\nretry: 1";
    gw.publish_ok("a", "note", injection).await;
    let event = client.events(1, WAIT).await.remove(0);
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("note", injection)
    );

    for absurd in [
        "99999999999999999999999999-1",
        "-1",
        "1-99999999999999999999999",
        "../../etc/passwd",
        &"9".repeat(4000),
    ] {
        let mut c =
            SseClient::connect_with(&gw.url("/events?channel=a"), &[("last-event-id", absurd)])
                .await;
        assert_eq!(
            c.status, 200,
            "{absurd}: never a 4xx, which would stop EventSource"
        );
        let reset = c.next_event(WAIT).await.expect("reset event");
        assert_eq!(reset.event, "reset", "{absurd}");
    }
}

#[tokio::test]
async fn connection_limits_per_ip_and_node_refuse_with_retry_after() {
    let gw = Gateway::start("limits:\n  max_connections: 3\n  max_connections_per_ip: 2\n");
    let url = gw.url("/events?channel=a");
    let first = SseClient::connect(&url).await;
    let _second = SseClient::connect(&url).await;
    let refused = http().get(&url).send().await.expect("request");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_connections");

    // A stream that ends gives its place back.
    drop(first);
    eventually(WAIT, "a place freed", || async {
        SseClient::connect(&url).await.status == 200
    })
    .await;
    assert!(
        gw.metric("sse_gateway_limit_rejections_total", "limit=\"per_ip\"")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn node_capacity_is_exact_under_a_burst() {
    let gw = Gateway::start("limits:\n  max_connections: 20\n");
    let url = gw.url("/events?channel=a");
    let attempts: Vec<_> = (0..60)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SseClient::connect(&url).await })
        })
        .collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        let client = attempt.await.expect("task");
        match client.status {
            200 => open.push(client),
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (open.len(), refused),
        (20, 40),
        "exactly max_connections admitted"
    );
}

#[tokio::test]
async fn per_user_limit_counts_streams_of_one_credential() {
    let gw = Gateway::start("limits:\n  max_connections_per_user: 1\n");
    let url = gw.url("/events?channel=a");
    let _mine = SseClient::connect_with(&url, &[("x-api-key", KEY)]).await;
    let second = http()
        .get(&url)
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(second.status(), 429);
    // Another credential, and anonymous streams, are not counted against it.
    assert_eq!(
        SseClient::connect_with(&url, &[("x-api-key", LIMITED_KEY)])
            .await
            .status,
        200
    );
    assert_eq!(SseClient::connect(&url).await.status, 200);
}

#[tokio::test]
async fn connect_and_publish_rates_refuse_and_lose_nothing_accepted() {
    let gw = Gateway::start(
        "limits:\n  connect_rate_per_ip: {per_second: 1, burst: 2}\n  \
         publish_rate: {per_second: 2, burst: 3}\n",
    );
    let url = gw.url("/events?channel=a");
    let connects = until_refused(50, |_| {
        let url = url.clone();
        async move {
            let resp = http().get(&url).send().await.expect("request");
            if resp.status() == 200 {
                Ok(SseClient::from_response(resp))
            } else {
                Err(resp)
            }
        }
    })
    .await;
    connects.assert_bucket(2, 1);
    assert!(connects.refused.headers().contains_key("retry-after"));
    assert_eq!(
        response_status_and_code(connects.refused).await,
        (429, Some("rate_limited".into()))
    );
    let mut watcher = connects.admitted.into_iter().next().expect("a stream");

    let publishes = publish_until_rate_limited(&[&gw], "a").await;
    publishes.assert_bucket(3, 2);
    // Every accepted publish is delivered, in order, and then the sentinel: no refused one.
    let sentinel = publish_when_allowed(&gw, "sentinel").await;
    let accepted = publishes.admitted;
    assert_eq!(watcher.data(accepted.len(), WAIT).await, accepted);
    watcher.assert_next_is(&sentinel, WAIT).await;
}

/// Publishes `data` on channel `a` once the publish rate lets it through; returns its id.
async fn publish_when_allowed(gw: &Gateway, data: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = gw
            .publish(serde_json::json!({"channel": "a", "data": data}))
            .await;
        match status {
            202 => return body["id"].as_str().expect("id").to_owned(),
            429 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("publish answered {other}: {body}"),
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start("limits:\n  header_read_timeout: 1s\n");
    let mut sock = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    sock.write_all(b"GET /events?channel=a HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    // One header byte every 200 ms: each read is fast, the head never completes.
    let mut closed = false;
    while started.elapsed() < HEADER_TIMEOUT_CEILING {
        if sock.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection stayed open for {:?}",
        started.elapsed()
    );
    eventually(WAIT, "the header timeout counted", || async {
        gw.metric(
            "sse_gateway_limit_rejections_total",
            "limit=\"header_timeout\"",
        )
        .await
            >= 1.0
    })
    .await;
}
