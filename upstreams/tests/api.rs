//! The HTTP API of an in-process server, over real loopback sockets.

mod common;

use std::time::Duration;

use common::{data, quiet_config, start, PATIENCE, PROMPTLY};
use reference_upstream::notifications::NewNotification;
use serde_json::{json, Value};
use sse_wire::parse::ParsedItem;
use test_kit::{eventually, response_status_and_code, seq};

#[tokio::test]
async fn stream_receives_a_posted_notification() {
    let t = start(quiet_config()).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let reply = t
        .post(json!({"title": "Deploy done", "body": "v1.2", "level": "success"}))
        .await;
    let id = reply["id"].as_str().expect("id");
    assert_eq!(seq(id), 1);
    assert_eq!(reply["title"], "Deploy done");
    assert_eq!(reply["body"], "v1.2");
    assert_eq!(reply["level"], "success");
    assert!(reply["time"].as_str().expect("time").ends_with('Z'));
    let object = reply.as_object().expect("object");
    assert_eq!(object.len(), 5, "{reply}");

    let event = stream.next_event().await;
    assert_eq!(event.event, "notification");
    assert_eq!(event.id, id);
    assert_eq!(data(&event), reply);

    // Defaults: empty body, level info.
    let reply = t.post(json!({"title": "x"})).await;
    assert_eq!(reply["body"], "");
    assert_eq!(reply["level"], "info");
    assert_eq!(data(&stream.next_event().await), reply);
    t.shutdown().await;
}

#[tokio::test]
async fn replay_after_a_known_id_gives_exactly_the_later_ones() {
    let t = start(quiet_config()).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(t.post(json!({"title": format!("n{i}")})).await["id"].clone());
    }
    let known = ids[1].as_str().expect("id");
    let mut expected = vec!["n3", "n4", "n5"];

    // Header, then the query parameter for clients that cannot set headers.
    for (path, headers) in [
        (
            "/streams/notifications".to_owned(),
            vec![("Last-Event-ID", known)],
        ),
        (
            format!("/streams/notifications?lastEventId={known}"),
            vec![],
        ),
    ] {
        let mut stream = t.open(&path, &headers).await;
        // The marker of the first pass is retained too, so the second replays it.
        let marker = t.post(json!({"title": "marker"})).await;
        expected.push("marker");
        let got = stream
            .events_until(marker["id"].as_str().expect("id"))
            .await;
        let titles: Vec<Value> = got.iter().map(|e| data(e)["title"].clone()).collect();
        assert_eq!(titles, expected, "{path}");
        assert_eq!(t.info().await["last_event_id_received"], known);
    }

    // No resume id: live only.
    let mut stream = t.open("/streams/notifications", &[]).await;
    let marker = t.post(json!({"title": "live"})).await;
    assert_eq!(
        stream.next_event().await.id,
        marker["id"].as_str().expect("id")
    );
    assert_eq!(t.info().await["last_event_id_received"], Value::Null);
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_id_replays_the_retained_history() {
    let t = start(quiet_config()).await;
    let first = t.post(json!({"title": "a"})).await;
    t.post(json!({"title": "b"})).await;
    // An id of an earlier run of the process (another boot prefix) is unknown.
    let stale = "1000-2";
    let mut stream = t
        .open("/streams/notifications", &[("Last-Event-ID", stale)])
        .await;
    let marker = t.post(json!({"title": "c"})).await;
    let got = stream
        .events_until(marker["id"].as_str().expect("id"))
        .await;
    let titles: Vec<Value> = got.iter().map(|e| data(e)["title"].clone()).collect();
    assert_eq!(titles, ["a", "b", "c"]);
    assert_eq!(got[0].id, first["id"].as_str().expect("id"));
    t.shutdown().await;
}

#[tokio::test]
async fn history_is_bounded() {
    let mut config = quiet_config();
    config.history = 3;
    let t = start(config).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(
            t.post(json!({"title": format!("n{i}")})).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    assert_eq!(t.server.notifications().retained_ids(), ids[2..]);
    // The evicted first id is no longer known: the whole (bounded) history comes back.
    let mut stream = t
        .open("/streams/notifications", &[("Last-Event-ID", &ids[0])])
        .await;
    let marker = t.post(json!({"title": "marker"})).await;
    let got = stream
        .events_until(marker["id"].as_str().expect("id"))
        .await;
    let titles: Vec<Value> = got.iter().map(|e| data(e)["title"].clone()).collect();
    assert_eq!(titles, ["n3", "n4", "n5", "marker"]);
    t.shutdown().await;
}

#[tokio::test]
async fn replay_and_live_have_no_gap_and_no_duplicate_under_concurrent_publishing() {
    let t = start(quiet_config()).await;
    let hub = std::sync::Arc::clone(t.server.notifications());
    let first = hub.publish(NewNotification {
        title: "first".to_owned(),
        body: String::new(),
        level: Default::default(),
    });
    let publisher = {
        let hub = std::sync::Arc::clone(&hub);
        tokio::task::spawn_blocking(move || {
            for i in 0..300 {
                hub.publish(NewNotification {
                    title: format!("c{i}"),
                    body: String::new(),
                    level: Default::default(),
                });
            }
        })
    };
    let mut stream = t
        .open("/streams/notifications", &[("Last-Event-ID", &first.id)])
        .await;
    publisher.await.expect("publisher");
    let marker = t.post(json!({"title": "marker"})).await;
    let got = stream
        .events_until(marker["id"].as_str().expect("id"))
        .await;
    let seqs: Vec<u64> = got.iter().map(|e| seq(&e.id)).collect();
    let expected: Vec<u64> = (2..=302).collect();
    assert_eq!(seqs, expected);
    t.shutdown().await;
}

#[tokio::test]
async fn bad_posts_get_json_errors_and_publish_nothing() {
    let t = start(quiet_config()).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let json_type = "application/json";
    let long_title = json!({"title": "x".repeat(201)}).to_string();
    let long_body = json!({"title": "x", "body": "y".repeat(2001)}).to_string();
    let oversized = json!({"title": "x", "body": "y".repeat(70 * 1024)}).to_string();
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "bad JSON",
            Some(json_type),
            "{\"title\": ".to_owned(),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            Some(json_type),
            String::new(),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            Some(json_type),
            "[1]".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "missing title",
            Some(json_type),
            "{\"body\": \"b\"}".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "empty title",
            Some(json_type),
            "{\"title\": \"\"}".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "title not a string",
            Some(json_type),
            "{\"title\": 7}".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "too-long title",
            Some(json_type),
            long_title,
            400,
            "invalid_notification",
        ),
        (
            "too-long body",
            Some(json_type),
            long_body,
            400,
            "invalid_notification",
        ),
        (
            "bad level",
            Some(json_type),
            "{\"title\": \"t\", \"level\": \"fatal\"}".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "unknown field",
            Some(json_type),
            "{\"title\": \"t\", \"colour\": \"red\"}".to_owned(),
            400,
            "invalid_notification",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            "{\"title\": \"t\"}".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            "{\"title\": \"t\"}".to_owned(),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized",
            Some(json_type),
            oversized,
            413,
            "body_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let mut request = t.http.post(t.url("/notifications")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("send");
        assert_eq!(
            response_status_and_code(response).await,
            (status, Some(code.to_owned())),
            "{what}"
        );
    }
    assert_eq!(t.info().await["notifications_published"], 0);
    assert!(t.server.notifications().retained_ids().is_empty());
    // Nothing reached the stream: the next event is the first accepted one.
    let accepted = t.post(json!({"title": "ok"})).await;
    assert_eq!(
        stream.next_event().await.id,
        accepted["id"].as_str().expect("id")
    );
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let t = start(quiet_config()).await;
    let response = t.http.get(t.url("/nope")).send().await.expect("send");
    assert_eq!(
        response_status_and_code(response).await,
        (404, Some("not_found".to_owned()))
    );

    let response = t
        .http
        .delete(t.url("/notifications"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let not_allowed = (405, Some("method_not_allowed".to_owned()));
    assert_eq!(response_status_and_code(response).await, not_allowed);

    let response = t.http.post(t.url("/api/info")).send().await.expect("send");
    assert_eq!(response_status_and_code(response).await, not_allowed);

    let health: Value = t.json(t.http.get(t.url("/healthz"))).await;
    assert_eq!(health, json!({"status": "ok", "name": "test-up"}));
    t.shutdown().await;
}

#[tokio::test]
async fn info_counts_stream_clients_and_echoes_forwarding_headers() {
    let t = start(quiet_config()).await;
    let info = t.info().await;
    assert_eq!(info["name"], "test-up");
    assert_eq!(info["stream_clients"], 0);
    assert_eq!(info["stream_connects_total"], 0);
    assert_eq!(info["last_event_id_received"], Value::Null);
    assert_eq!(
        info["forwarded"],
        json!({"x-forwarded-for": null, "x-forwarded-proto": null, "x-forwarded-host": null, "forwarded": null})
    );
    let served_before = info["requests_served"].as_u64().expect("requests_served");
    assert!(served_before >= 1);

    let notifications = t.open("/streams/notifications", &[]).await;
    let metrics = t
        .open("/streams/metrics", &[("Last-Event-ID", "whatever-1")])
        .await;
    let info = t.info().await;
    assert_eq!(info["stream_clients"], 2);
    assert_eq!(info["stream_connects_total"], 2);
    assert_eq!(info["last_event_id_received"], "whatever-1");
    assert_eq!(info["requests_served"], served_before + 3);

    drop(notifications);
    eventually(PATIENCE, "one stream is left", || async {
        t.info().await["stream_clients"] == 1
    })
    .await;
    drop(metrics);
    eventually(PATIENCE, "no stream is left", || async {
        t.info().await["stream_clients"] == 0
    })
    .await;
    assert_eq!(t.info().await["stream_connects_total"], 2);

    let forwarded = t
        .http
        .get(t.url("/api/info"))
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "example.test")
        .header("Forwarded", "for=203.0.113.7;proto=https");
    let info = t.json(forwarded).await;
    assert_eq!(
        info["forwarded"],
        json!({
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "example.test",
            "forwarded": "for=203.0.113.7;proto=https"
        })
    );
    t.shutdown().await;
}

#[tokio::test]
async fn disconnect_hook_closes_every_stream_and_clients_resume() {
    let t = start(quiet_config()).await;
    let mut a = t.open("/streams/notifications", &[]).await;
    let mut b = t.open("/streams/metrics", &[]).await;
    let before = t.post(json!({"title": "before"})).await;
    assert_eq!(a.next_event().await.id, before["id"].as_str().expect("id"));

    let reply: Value = t.json(t.http.post(t.url("/streams/disconnect"))).await;
    assert_eq!(reply, json!({"closed": 2}));
    a.expect_end().await;
    b.expect_end().await;
    eventually(PATIENCE, "the streams are gone", || async {
        t.info().await["stream_clients"] == 0
    })
    .await;

    // What was published while disconnected comes back on resume; new streams stay open.
    let missed = t.post(json!({"title": "missed"})).await;
    let mut resumed = t
        .open(
            "/streams/notifications",
            &[("Last-Event-ID", before["id"].as_str().expect("id"))],
        )
        .await;
    assert_eq!(
        resumed.next_event().await.id,
        missed["id"].as_str().expect("id")
    );
    let live = t.post(json!({"title": "live"})).await;
    assert_eq!(
        resumed.next_event().await.id,
        live["id"].as_str().expect("id")
    );
    t.shutdown().await;
}

#[tokio::test]
async fn metrics_stream_ticks_with_sane_values() {
    let mut config = quiet_config();
    config.metrics_interval = Duration::from_millis(50);
    let t = start(config).await;
    let mut stream = t
        .open("/streams/metrics", &[("Last-Event-ID", "anything")])
        .await;
    let mut last_seq = 0;
    for _ in 0..3 {
        let event = stream.next_event().await;
        assert_eq!(event.event, "metrics");
        let n = seq(&event.id);
        assert!(n > last_seq, "ids increase: {}", event.id);
        last_seq = n;
        let m = data(&event);
        let cpu = m["cpu_percent"].as_f64().expect("cpu_percent");
        assert!((0.0..=100.0).contains(&cpu), "{m}");
        let total = m["memory"]["total_bytes"].as_u64().expect("total");
        let available = m["memory"]["available_bytes"].as_u64().expect("available");
        assert!(total > 0 && available <= total, "{m}");
        let used = m["memory"]["used_percent"].as_f64().expect("used_percent");
        assert!((0.0..=100.0).contains(&used), "{m}");
        let load = m["load"].as_array().expect("load");
        assert_eq!(load.len(), 3);
        assert!(
            load.iter().all(|v| v.as_f64().is_some_and(|v| v >= 0.0)),
            "{m}"
        );
        assert!(m["network"]["rx_bytes"].is_u64() && m["network"]["tx_bytes"].is_u64());
        assert!(m["stream_clients"].as_u64().expect("stream_clients") >= 1);
        assert!(m["time"].as_str().expect("time").ends_with('Z'));
    }
    t.shutdown().await;
}

#[tokio::test]
async fn periodic_notifications_cycle_levels_and_heartbeats_fill_silence() {
    let mut config = quiet_config();
    config.notify_interval = Duration::from_millis(50);
    let t = start(config).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let first = data(&stream.next_event().await);
    let n: usize = first["title"]
        .as_str()
        .and_then(|s| s.strip_prefix("Periodic notification #"))
        .and_then(|s| s.parse().ok())
        .expect("periodic title");
    let levels = ["info", "success", "warning", "error"];
    assert_eq!(first["level"], levels[(n - 1) % 4]);
    let second = data(&stream.next_event().await);
    assert_eq!(second["title"], format!("Periodic notification #{}", n + 1));
    assert_eq!(second["level"], levels[n % 4]);
    t.shutdown().await;

    let mut config = quiet_config();
    config.heartbeat = Duration::from_millis(50);
    let t = start(config).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        stream.next_item().await,
        Some(ParsedItem::Comment("heartbeat".to_owned()))
    );
    assert!(started.elapsed() < PATIENCE);
    t.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly() {
    let t = start(quiet_config()).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let started = tokio::time::Instant::now();
    t.shutdown().await;
    stream.expect_end().await;
    assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_lagging_stream_is_disconnected_and_resumes_from_history() {
    let mut config = quiet_config();
    config.history = 2000;
    let t = start(config).await;
    let mut stream = t.open("/streams/notifications", &[]).await;
    let seen = t.post(json!({"title": "seen"})).await;
    let seen_id = seen["id"].as_str().expect("id");
    assert_eq!(stream.next_event().await.id, seen_id);

    // This test runs on one thread, so the server cannot drain the stream's queue while these
    // are published without an await: it falls more than the queue's capacity behind.
    let count = reference_upstream::notifications::BROADCAST_CAPACITY + 100;
    let hub = t.server.notifications();
    let mut last = String::new();
    for i in 0..count {
        last = hub
            .publish(NewNotification {
                title: format!("burst {i}"),
                body: String::new(),
                level: Default::default(),
            })
            .id;
    }
    stream.expect_end().await;

    let mut resumed = t
        .open("/streams/notifications", &[("Last-Event-ID", seen_id)])
        .await;
    let got = resumed.events_until(&last).await;
    assert_eq!(got.len(), count);
    assert_eq!(seq(&got[0].id), seq(seen_id) + 1);
    t.shutdown().await;
}
