//! Promises the book (docs/) makes that no other test held the gateway to: history leaving by age,
//! the default event type on the wire, custom endpoint paths, a source read from an `upstreams:`
//! pool, and a slow consumer catching up from history after it was cut off. Each runs the real
//! binary over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

/// Ceiling for anything that should take well under a second.
const WAIT: Duration = Duration::from_secs(10);

/// The first event of a stream on `channel` resuming after `last_id`.
async fn first_event_resuming(
    gw: &Gateway,
    channel: &str,
    last_id: &str,
) -> (SseClient, sse_gateway::sse::parse::ParsedEvent) {
    let mut client = gw
        .resume(&format!("/events?channel={channel}"), last_id)
        .await;
    assert_eq!(client.status, 200);
    let event = client.next_event(WAIT).await.expect("a first event");
    (client, event)
}

#[tokio::test]
async fn history_max_age_evicts_events_and_a_resume_past_them_gets_reset() {
    const MAX_AGE: Duration = Duration::from_secs(3);
    let gw = Gateway::start("history:\n  max_age: 3s\n");
    let published = Instant::now();
    let first = gw.publish_ok("aged", "note", "one").await;
    gw.publish_ok("aged", "note", "two").await;

    // Within the age the resume replays what followed.
    let (_, replayed) = first_event_resuming(&gw, "aged", &first).await;
    assert_eq!(
        (replayed.event.as_str(), replayed.data.as_str()),
        ("note", "two")
    );

    // Past it, the same resume point is older than history: one reset, then the live stream.
    eventually(MAX_AGE * 4, "the resume answered with reset", || async {
        first_event_resuming(&gw, "aged", &first).await.1.event == "reset"
    })
    .await;
    assert!(
        published.elapsed() >= MAX_AGE,
        "evicted after {:?}, before history.max_age",
        published.elapsed()
    );
    let (mut client, reset) = first_event_resuming(&gw, "aged", &first).await;
    assert_eq!(reset.event, "reset");
    let reason: Value = serde_json::from_str(&reset.data).expect("reset data is JSON");
    assert_eq!(reason, json!({"reason": "history_evicted"}));
    gw.publish_ok("aged", "note", "three").await;
    let live = client
        .next_event(WAIT)
        .await
        .expect("live event after reset");
    assert_eq!(live.data, "three");
}

#[tokio::test]
async fn a_publish_without_event_goes_out_as_event_message_on_the_wire() {
    let gw = Gateway::start("");
    let mut client = SseClient::connect(&gw.url("/events?channel=plain")).await;
    let (status, body) = gw
        .publish(json!({"channel": "plain", "data": "no type given"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id");
    client.next_event(WAIT).await.expect("the event");
    // The parser would fill in `message` by itself: the bytes must say it.
    let frame = format!("id: {id}\nevent: message\ndata: no type given\n\n");
    let raw = String::from_utf8_lossy(&client.raw);
    assert!(raw.contains(&frame), "no {frame:?} in {raw:?}");
}

#[tokio::test]
async fn custom_sse_and_metrics_paths_replace_the_defaults() {
    let gw = Gateway::start("sse:\n  path: /live/stream\nmetrics:\n  path: /internal/prom\n");

    let mut client = SseClient::connect(&gw.url("/live/stream?channel=a")).await;
    assert_eq!(client.status, 200);
    assert_eq!(
        client.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    gw.publish_ok("a", "note", "at the custom path").await;
    assert_eq!(
        client.next_event(WAIT).await.expect("event").data,
        "at the custom path"
    );

    let metrics = http()
        .get(gw.url("/internal/prom"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert_eq!(metric_value(&text, "sse_gateway_streams_open", ""), 1.0);

    // The defaults are no endpoint any more; the custom stream path is one (405, not 404).
    for (method, path, status, code) in [
        ("GET", "/events?channel=a", 404, "not_found"),
        ("GET", "/metrics", 404, "not_found"),
        ("POST", "/live/stream?channel=a", 405, "method_not_allowed"),
    ] {
        let resp = http()
            .request(method.parse().expect("method"), gw.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), status, "{method} {path}");
        let body: Value = resp.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], code, "{method} {path}");
    }
}

#[tokio::test]
async fn a_source_given_as_upstream_and_path_reads_through_a_server_of_the_pool() {
    // One server of the pool refuses the stream; the source ends up on the other (whichever the
    // pool's balancer offers first).
    let refusing = ScriptedUpstream::start(vec![response(
        "503 Service Unavailable",
        "text/plain",
        "down",
    )])
    .await;
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = Gateway::start(&format!(
        "upstreams:
  pool:
    servers: [\"{}\", \"{}\"]
sources:
  - {{name: notes, upstream: pool, path: /streams/notifications, channel: notifications}}
",
        refusing.addr, up.addr
    ));
    let mut client = SseClient::connect(&gw.url("/events?channel=notifications")).await;

    eventually(WAIT, "the source connected", || async {
        gw.admin_get("/stats").await["sources"][0]["state"] == "connected"
    })
    .await;
    let stats = gw.admin_get("/stats").await["sources"][0].clone();
    assert_eq!(stats["target"], "upstream pool /streams/notifications");
    let refused = refusing.requests();
    assert_eq!(
        stats["errors_total"]["status"].as_u64().unwrap_or(0),
        refused.len() as u64,
        "each refusal counted: {stats}"
    );
    assert!(
        refused.len() <= 1,
        "the good server is used once offered: {refused:?}"
    );
    for asked in &refused {
        assert!(
            asked.starts_with("GET /streams/notifications HTTP/1.1\r\n"),
            "{asked:?}"
        );
    }
    assert_eq!(up.info().await["stream_clients"], 1);

    up.notify("through the pool").await;
    let event = client.next_event(WAIT).await.expect("relayed event");
    assert_eq!(event.event, "notification");
    let data: Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(data["title"], "through the pool");
}

/// A stream on a raw socket with a small receive buffer, read up to its opening comment.
async fn raw_stream(gw: &Gateway, channel: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut stream = socket.connect(gw.addr).await.expect("connect");
    let request = format!("GET /events?channel={channel} HTTP/1.1\r\nHost: t\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("request");
    read_through(&mut stream, ": connected\n\n").await;
    stream
}

/// Reads from `stream` until what it has read contains `text`, and no further than the read
/// that brought it.
async fn read_through(stream: &mut tokio::net::TcpStream, text: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains(text) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in {:?}", String::from_utf8_lossy(&seen)))
            .expect("read");
        assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A client on `channel` reads one event, then stops reading while large events are published,
/// until the gateway cuts it off as a slow consumer. Returns its socket (still open on this
/// side), the id of the event it read, and the ids it missed, in order.
async fn cut_off_after_one_event(
    gw: &Gateway,
    channel: &str,
) -> (tokio::net::TcpStream, String, Vec<String>) {
    let mut stalled = raw_stream(gw, channel).await;
    let last_read = gw.publish_ok(channel, "bulk", "read").await;
    let frame = format!("id: {last_read}\nevent: bulk\ndata: read\n\n");
    read_through(&mut stalled, &frame).await;
    let payload = "z".repeat(60 * 1024);
    let mut missed = Vec::new();
    while gw
        .metric("sse_gateway_slow_consumer_disconnects_total", "")
        .await
        == 0.0
    {
        assert!(
            missed.len() < 900,
            "900 large events and the stream is not cut"
        );
        missed.push(gw.publish_ok(channel, "bulk", &payload).await);
    }
    (stalled, last_read, missed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_cut_off_catches_up_from_history_on_reconnect() {
    let gw = Gateway::start("sse:\n  client_queue: 4\nhistory:\n  max_events: 1000\n");
    let (_stalled, last_read, missed) = cut_off_after_one_event(&gw, "bulk").await;
    eventually(WAIT, "the cut stream closed", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 0
    })
    .await;

    let mut resumed = gw.resume("/events?channel=bulk", &last_read).await;
    let replayed: Vec<String> = resumed
        .events(missed.len(), WAIT)
        .await
        .into_iter()
        .map(|e| {
            assert_eq!(e.event, "bulk", "a replay, not a reset");
            e.id
        })
        .collect();
    assert_eq!(replayed, missed, "every event after its last id, in order");
    let live = gw.publish_ok("bulk", "bulk", "live").await;
    assert_eq!(resumed.next_event(WAIT).await.expect("live").id, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_further_behind_than_history_gets_reset_on_reconnect() {
    let gw = Gateway::start("sse:\n  client_queue: 4\nhistory:\n  max_events: 2\n");
    let (_stalled, last_read, missed) = cut_off_after_one_event(&gw, "bulk").await;
    assert!(missed.len() > 2, "more events missed than history holds");

    let mut resumed = gw.resume("/events?channel=bulk", &last_read).await;
    let reset = resumed.next_event(WAIT).await.expect("reset");
    assert_eq!(reset.event, "reset");
    let reason: Value = serde_json::from_str(&reset.data).expect("JSON");
    assert_eq!(reason, json!({"reason": "history_evicted"}));
    gw.publish_ok("bulk", "bulk", "live").await;
    assert_eq!(resumed.next_event(WAIT).await.expect("live").data, "live");
}
