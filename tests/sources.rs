//! Upstream sources: one upstream connection for any number of subscribers, resume after drops
//! and restarts, every upstream fault absorbed, on-demand connections — against the real
//! reference upstream process and a scripted server on a real socket.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// A gateway with one `sources:` entry (YAML flow mapping) and any `extra` top-level keys.
fn gateway_with_source(entry: &str, extra: &str) -> Gateway {
    Gateway::start(&format!("sources:\n  - {entry}\n{extra}"))
}

/// A gateway relaying the upstream's notifications into the `notifications` channel.
fn notifications_gateway(up: &Upstream) -> Gateway {
    gateway_with_source(
        &format!(
            "{{name: notes, url: \"{}\", channel: notifications}}",
            up.url("/streams/notifications")
        ),
        "",
    )
}

async fn source_stats(gw: &Gateway) -> Value {
    gw.admin_get("/stats").await["sources"][0].clone()
}

async fn wait_source(gw: &Gateway, what: &str, check: impl Fn(&Value) -> bool) {
    eventually(WAIT, what, || async { check(&source_stats(gw).await) }).await;
}

async fn wait_upstream_clients(up: &Upstream, n: u64) {
    eventually(
        WAIT,
        &format!("{n} stream clients at the upstream"),
        || async { up.info().await["stream_clients"] == n },
    )
    .await;
}

/// A stream on `channels` that first replays everything the gateway has kept, so a test sees
/// events ingested before it subscribed.
async fn subscribe_from_start(gw: &Gateway, channels: &str) -> SseClient {
    let epoch = gw.admin_get("/stats").await["node"]["epoch"].clone();
    let client =
        SseClient::connect(&gw.url(&format!("/events?{channels}&lastEventId={epoch}-0"))).await;
    assert_eq!(client.status, 200);
    client
}

fn title(event: &sse_gateway::sse::parse::ParsedEvent) -> String {
    let data: Value = serde_json::from_str(&event.data).expect("notification JSON");
    data["title"].as_str().expect("title").to_string()
}

#[tokio::test]
async fn one_upstream_connection_serves_500_subscribers() {
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = notifications_gateway(&up);
    let url = gw.url("/events?channel=notifications");
    let subscribers: Vec<_> = (0..500)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = SseClient::connect(&url).await;
                assert_eq!(client.status, 200);
                client.events(1, WAIT).await.remove(0)
            })
        })
        .collect();
    eventually(WAIT, "500 streams open", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 500
    })
    .await;
    assert_eq!(
        up.info().await["stream_clients"],
        1,
        "one upstream connection"
    );

    up.notify("to everyone").await;
    for subscriber in subscribers {
        let event = subscriber.await.expect("subscriber");
        assert_eq!(event.event, "notification");
        assert_eq!(title(&event), "to everyone");
    }
    assert_eq!(up.info().await["stream_clients"], 1);
    let stats = source_stats(&gw).await;
    assert_eq!(stats["state"], "connected");
    assert_eq!(stats["events_total"], 1);
}

#[tokio::test]
async fn dropped_upstream_streams_resume_with_last_event_id_without_loss_or_duplicates() {
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = notifications_gateway(&up);
    let mut client = SseClient::connect(&gw.url("/events?channel=notifications")).await;
    wait_upstream_clients(&up, 1).await;
    wait_source(&gw, "source connected", |s| s["connected"] == true).await;

    // Notifications keep coming while the upstream drops the gateway's stream three times.
    let expected: Vec<String> = (0..30).map(|n| format!("n{n}")).collect();
    for (n, title) in expected.iter().enumerate() {
        up.notify(title).await;
        if n % 10 == 4 {
            // Dropped only once back: the posts in between are what it has to catch up on.
            wait_upstream_clients(&up, 1).await;
            let closed: Value = http()
                .post(up.url("/streams/disconnect"))
                .send()
                .await
                .expect("disconnect")
                .json()
                .await
                .expect("json");
            assert_eq!(closed["closed"], 1);
        }
    }
    let got: Vec<String> = client.events(30, WAIT).await.iter().map(title).collect();
    assert_eq!(got, expected, "every notification once, in order");

    let stats = source_stats(&gw).await;
    assert_eq!(stats["reconnects_total"], 3);
    assert_eq!(stats["events_total"], 30);
    let resumed = up.info().await["last_event_id_received"].clone();
    assert!(
        resumed.is_string(),
        "the gateway resumed with Last-Event-ID"
    );
}

#[tokio::test]
async fn an_upstream_restart_loses_nothing_it_retained_and_duplicates_nothing() {
    let mut up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = notifications_gateway(&up);
    let mut client = SseClient::connect(&gw.url("/events?channel=notifications")).await;
    wait_upstream_clients(&up, 1).await;
    let mut last_id = String::new();
    for title in ["a", "b", "c"] {
        last_id = up.notify(title).await;
    }
    let got: Vec<String> = client.events(3, WAIT).await.iter().map(title).collect();
    assert_eq!(got, ["a", "b", "c"]);

    up.kill();
    wait_source(&gw, "source disconnected", |s| s["connected"] == false).await;
    up.restart();
    // Published before the gateway is back: the upstream replays them to it.
    up.notify("d").await;
    up.notify("e").await;
    wait_upstream_clients(&up, 1).await;
    wait_source(&gw, "source reconnected", |s| s["connected"] == true).await;
    up.notify("f").await;

    let got: Vec<String> = client.events(3, WAIT).await.iter().map(title).collect();
    assert_eq!(got, ["d", "e", "f"], "nothing lost, nothing twice");
    assert_eq!(
        up.info().await["last_event_id_received"],
        last_id.as_str(),
        "the gateway asked to resume after the last event it ingested"
    );
    assert!(!client.ended, "the subscriber never lost its stream");
}

#[tokio::test]
async fn upstream_faults_are_counted_and_never_reach_subscribers() {
    let big = "x".repeat(5000);
    let up = ScriptedUpstream::start(vec![
        Reply::Sse(
            vec![
                "retry: 100\n\n".into(),
                "id: a1\nevent: update\ndata: A\n\n".into(),
            ],
            Then::End,
        ),
        response("503 Service Unavailable", "application/json", "{}"),
        response(
            "401 Unauthorized",
            "application/json",
            r#"{"error":"who are you"}"#,
        ),
        response("200 OK", "text/html", "<html></html>"),
        Reply::Sse(vec![], Then::Hold),
        Reply::Sse(
            vec![
                ": hello\nfoo: bar\nretry: soon\n\n".into(),
                format!("id: big\ndata: {big}\n\n"),
                "id: b1\ndata: B\n\n".into(),
            ],
            Then::Break,
        ),
        Reply::Sse(vec!["id: c1\ndata: C\n\n".into()], Then::Hold),
    ])
    .await;
    let gw = gateway_with_source(
        &format!(
            "{{name: feed, url: \"{}\", channel: feed, stall_timeout: 500ms, \
             headers: {{Authorization: \"Bearer up-secret\"}}}}",
            up.url("/feed")
        ),
        "limits:\n  max_event_bytes: 4096\n",
    );
    let mut client = subscribe_from_start(&gw, "channel=feed").await;
    let events = client.events(3, WAIT).await;
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(got, [("update", "A"), ("message", "B"), ("message", "C")]);

    wait_source(&gw, "seven connections", |s| s["reconnects_total"] == 6).await;
    let stats = source_stats(&gw).await;
    let errors = &stats["errors_total"];
    for (kind, n) in [
        ("status", 2),
        ("content_type", 1),
        ("stalled", 1),
        ("malformed", 2),
        ("oversized", 1),
        ("read", 1),
    ] {
        assert_eq!(errors[kind], n, "{kind}: {stats}");
    }
    assert_eq!(stats["connected"], true);
    assert_eq!(stats["last_event_id"], "c1");

    let requests = up.requests();
    assert_eq!(header(&requests[0], "last-event-id"), None);
    assert_eq!(header(&requests[0], "accept"), Some("text/event-stream"));
    assert_eq!(
        header(&requests[1], "authorization"),
        Some("Bearer up-secret")
    );
    assert_eq!(header(&requests[1], "last-event-id"), Some("a1"));
    // The oversized event was dropped whole, its id too; B's id was the last one read.
    assert_eq!(header(&requests[6], "last-event-id"), Some("b1"));
    assert!(
        !gw.logs().contains("up-secret"),
        "upstream credentials are never logged"
    );
    assert!(
        gw.metric("sse_gateway_source_errors_total", "kind=\"stalled\"")
            .await
            >= 1.0
    );

    // The subscriber's stream is still there, and publishing still works.
    gw.publish_ok("feed", "note", "D").await;
    assert_eq!(client.events(1, WAIT).await[0].data, "D");
}

#[tokio::test]
async fn an_unreachable_upstream_is_retried_while_the_gateway_serves_on() {
    // Held for the whole test, so that nothing starts listening there in the meantime.
    let gone = ClosedPort::new();
    let gw = gateway_with_source(
        &format!(
            "{{name: gone, url: \"http://{}/feed\", channel: feed}}",
            gone.addr()
        ),
        "",
    );
    wait_source(&gw, "a connect fault", |s| {
        s["errors_total"]["connect"].as_u64() >= Some(1)
    })
    .await;
    let mut client = SseClient::connect(&gw.url("/events?channel=feed")).await;
    gw.publish_ok("feed", "note", "still here").await;
    assert_eq!(client.events(1, WAIT).await[0].data, "still here");
    let health = http()
        .get(gw.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn on_demand_sources_connect_for_the_first_subscriber_and_leave_after_the_last() {
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = gateway_with_source(
        &format!(
            "{{name: notes, url: \"{}\", channel: notifications, mode: on_demand, \
             linger: 300ms}}",
            up.url("/streams/notifications")
        ),
        "",
    );
    assert_eq!(source_stats(&gw).await["state"], "idle");
    assert_eq!(up.info().await["stream_connects_total"], 0);

    let mut first = SseClient::connect(&gw.url("/events?channel=notifications")).await;
    let mut second = SseClient::connect(&gw.url("/events?channel=notifications")).await;
    wait_upstream_clients(&up, 1).await;
    wait_source(&gw, "connected", |s| s["state"] == "connected").await;
    up.notify("hello").await;
    assert_eq!(title(&first.events(1, WAIT).await[0]), "hello");
    assert_eq!(title(&second.events(1, WAIT).await[0]), "hello");

    drop(first);
    eventually(WAIT, "the gateway saw the first leave", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 1
    })
    .await;
    // One subscriber left: the connection stays, for three times the linger after that.
    let kept_until = Instant::now() + 3 * Duration::from_millis(300);
    while Instant::now() < kept_until {
        assert_eq!(source_stats(&gw).await["state"], "connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
    wait_upstream_clients(&up, 0).await;
    wait_source(&gw, "idle again", |s| s["state"] == "idle").await;
    assert_eq!(up.info().await["stream_connects_total"], 1);
}

#[tokio::test]
async fn event_types_map_to_prefixed_channels_and_bad_ones_are_dropped() {
    let up = ScriptedUpstream::start(vec![Reply::Sse(
        vec![
            "event: a\ndata: 1\n\n".into(),
            "event: no spaces allowed\ndata: 2\n\n".into(),
            "event: b\ndata: 3\n\n".into(),
        ],
        Then::Hold,
    )])
    .await;
    let gw = gateway_with_source(
        &format!(
            "{{name: typed, url: \"{}\", channel_from_event_type: true, channel_prefix: up.}}",
            up.url("/feed")
        ),
        "",
    );
    let mut client = subscribe_from_start(&gw, "channel=up.a&channel=up.b").await;
    let got: Vec<(String, String)> = client
        .events(2, WAIT)
        .await
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    assert_eq!(got, [("a".into(), "1".into()), ("b".into(), "3".into())]);
    wait_source(&gw, "the bad type counted", |s| {
        s["errors_total"]["bad_channel"] == 1
    })
    .await;
}

#[tokio::test]
async fn the_metrics_channel_ticks_every_second_and_sources_stop_on_drain() {
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let mut gw = gateway_with_source(
        &format!(
            "{{name: metrics, url: \"{}\", channel: metrics}}",
            up.url("/streams/metrics")
        ),
        "",
    );
    // From before subscribing: four ticks a second apart take three seconds from the first,
    // which may have left the upstream up to a relay's delay before this stream subscribed.
    // Measured from the first one received instead, a late first read would shorten it.
    let started = Instant::now();
    let mut client = SseClient::connect(&gw.url("/events?channel=metrics")).await;
    let ticks = client.events(4, WAIT).await;
    let spread = started.elapsed();
    assert!(
        spread >= Duration::from_secs(2),
        "four ticks came within {spread:?}: not one a second"
    );
    for event in &ticks {
        assert_eq!(event.event, "metrics");
        let data: Value = serde_json::from_str(&event.data).expect("metrics JSON");
        let cpu = data["cpu_percent"].as_f64().expect("cpu_percent");
        assert!((0.0..=100.0).contains(&cpu), "{data}");
        assert!(data["memory"]["total_bytes"].as_u64() > Some(0), "{data}");
    }

    gw.signal("TERM");
    wait_upstream_clients(&up, 0).await;
    assert!(gw.wait_exit(WAIT).success());
}
