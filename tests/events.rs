//! `GET /events` over real sockets: headers, opening, channels, types, heartbeats, framing.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn stream_opens_at_once_with_contract_headers_retry_and_comment() {
    let gw = Gateway::start("sse:\n  retry: 2500ms\n");
    let mut c = SseClient::connect(&gw.url("/events?channel=news")).await;
    assert_eq!(c.status, 200);
    assert_eq!(
        c.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(c.headers["cache-control"], "no-cache");
    assert_eq!(c.headers["x-accel-buffering"], "no");
    assert_eq!(c.headers["connection"], "keep-alive");
    // Nothing was published: the opening must arrive by itself.
    let first = c.next_item(T).await.expect("retry");
    assert_eq!(first, sse_gateway::sse::parse::ParsedItem::Retry(2500));
    assert!(matches!(
        c.next_item(T).await,
        Some(sse_gateway::sse::parse::ParsedItem::Comment(_))
    ));
    assert!(
        c.raw.starts_with(b"retry: 2500\n"),
        "{:?}",
        String::from_utf8_lossy(&c.raw)
    );
}

#[tokio::test]
async fn events_carry_id_event_data_and_ids_strictly_increase() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channel=news")).await;
    c.next_item(T).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            gw.publish_ok("news", "headline", &format!("story {i}"))
                .await,
        );
    }
    let got = c.events(5, T).await;
    for (i, e) in got.iter().enumerate() {
        assert_eq!(Some(e.id.as_str()), Some(ids[i].as_str()));
        assert_eq!(e.event, "headline");
        assert_eq!(e.data, format!("story {i}"));
    }
    let text = String::from_utf8_lossy(&c.raw);
    assert!(
        text.contains(&format!(
            "id: {}\nevent: headline\ndata: story 0\n\n",
            ids[0]
        )),
        "{text}"
    );
    let seqs: Vec<u64> = ids.iter().map(|id| seq(id)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn both_channel_query_forms_and_no_cross_talk() {
    let gw = Gateway::start("");
    let mut a = SseClient::connect(&gw.url("/events?channel=a&channel=b")).await;
    let mut b = SseClient::connect(&gw.url("/events?channels=b,c")).await;
    let mut other = SseClient::connect(&gw.url("/events?channel=zzz")).await;
    gw.publish_ok("a", "message", "to a").await;
    gw.publish_ok("b", "message", "to b").await;
    gw.publish_ok("c", "message", "to c").await;
    let got_a: Vec<String> = a.events(2, T).await.into_iter().map(|e| e.data).collect();
    let got_b: Vec<String> = b.events(2, T).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got_a, ["to a", "to b"]);
    assert_eq!(got_b, ["to b", "to c"]);
    // Nothing of a, b or c reached `zzz`: its own event, published after them, comes first.
    let own = gw.publish_ok("zzz", "message", "to zzz").await;
    other.assert_next_is(&own, T).await;
}

#[tokio::test]
async fn event_published_to_two_channels_arrives_once_per_stream() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channels=x,y")).await;
    let (status, _) = gw
        .publish(serde_json::json!({"channels": ["x", "y"], "data": "both"}))
        .await;
    assert_eq!(status, 202);
    gw.publish_ok("x", "message", "after").await;
    let got: Vec<String> = c.events(2, T).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["both", "after"]);
}

#[tokio::test]
async fn types_filter_delivers_only_those_types() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channel=n&types=alert,notification")).await;
    gw.publish_ok("n", "chatter", "no").await;
    gw.publish_ok("n", "alert", "yes 1").await;
    gw.publish_ok("n", "message", "no").await;
    gw.publish_ok("n", "notification", "yes 2").await;
    let got: Vec<(String, String)> = c
        .events(2, T)
        .await
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    assert_eq!(
        got,
        [
            ("alert".into(), "yes 1".into()),
            ("notification".into(), "yes 2".into())
        ]
    );
}

#[tokio::test]
async fn multi_line_data_becomes_several_data_lines_and_cannot_inject_fields() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channel=m")).await;
    gw.publish_ok("m", "message", "one\r\ntwo\nthree\rfour")
        .await;
    gw.publish_ok("m", "message", "x\n\nevent: admin\ndata: y\nid: 999")
        .await;
    let got = c.events(2, T).await;
    assert_eq!(got[0].data, "one\ntwo\nthree\nfour");
    assert_eq!(got[1].data, "x\n\nevent: admin\ndata: y\nid: 999");
    assert_eq!(got[1].event, "message");
    let text = String::from_utf8_lossy(&c.raw);
    assert!(
        text.contains("data: one\ndata: two\ndata: three\ndata: four\n\n"),
        "{text}"
    );
    assert!(
        text.contains("data: x\ndata: \ndata: event: admin\ndata: data: y\ndata: id: 999\n\n"),
        "{text}"
    );
}

#[tokio::test]
async fn json_data_is_sent_compact_and_strings_verbatim() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channel=j")).await;
    gw.publish(serde_json::json!({"channel": "j", "data": {"a": [1, 2], "b": null}}))
        .await;
    gw.publish(serde_json::json!({"channel": "j", "data": "{\"raw\": true}"}))
        .await;
    gw.publish(serde_json::json!({"channel": "j", "data": 42}))
        .await;
    let got: Vec<String> = c.events(3, T).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, [r#"{"a":[1,2],"b":null}"#, r#"{"raw": true}"#, "42"]);
}

#[tokio::test]
async fn heartbeat_comments_keep_an_idle_stream_alive() {
    let gw = Gateway::start("sse:\n  heartbeat_interval: 200ms\n");
    let mut c = SseClient::connect(&gw.url("/events?channel=quiet")).await;
    let mut comments = 0;
    let started = std::time::Instant::now();
    while comments < 4 {
        match c
            .next_item(Duration::from_secs(2))
            .await
            .expect("heartbeat")
        {
            sse_gateway::sse::parse::ParsedItem::Comment(_) => comments += 1,
            other => assert!(
                matches!(other, sse_gateway::sse::parse::ParsedItem::Retry(_)),
                "{other:?}"
            ),
        }
    }
    // The opening comment plus three heartbeats at 200 ms: not much faster than 600 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn heartbeat_as_event_carries_the_last_id() {
    let gw = Gateway::start("sse:\n  heartbeat_interval: 200ms\n  heartbeat: event\n");
    let mut c = SseClient::connect(&gw.url("/events?channel=hb")).await;
    let id = gw.publish_ok("hb", "message", "x").await;
    assert_eq!(c.next_event(T).await.unwrap().data, "x");
    let hb = c.next_event(T).await.expect("heartbeat event");
    assert_eq!(hb.event, "heartbeat");
    assert_eq!(Some(hb.id.as_str()), Some(id.as_str()));
}

#[tokio::test]
async fn padding_is_sent_first_when_configured() {
    let gw = Gateway::start("sse:\n  padding: 2048\n");
    let mut c = SseClient::connect(&gw.url("/events?channel=p")).await;
    while c.raw.len() < 2048 {
        c.next_item(T).await.expect("padding");
    }
    assert!(c.raw.len() >= 2048);
}

#[tokio::test]
async fn bad_stream_requests_get_json_errors() {
    let gw = Gateway::start("limits:\n  max_channels_per_connection: 3\n");
    let cases = [
        ("/events", 400, "missing_channel"),
        ("/events?channel=bad%20name", 400, "invalid_channel"),
        ("/events?channel=a%0Ab", 400, "invalid_channel"),
        ("/events?channels=a,b,c,d", 400, "too_many_channels"),
        ("/events?channel=a&types=bad%0Atype", 400, "invalid_types"),
        ("/events?channel=secret.x", 401, "unauthorized"),
    ];
    for (path, status, code) in cases {
        let resp = http().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let resp = http()
        .post(gw.url("/events?channel=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn many_clients_all_receive_every_event() {
    let gw = Gateway::start("");
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(SseClient::connect(&gw.url("/events?channel=wide")).await);
    }
    for i in 0..20 {
        gw.publish_ok("wide", "message", &i.to_string()).await;
    }
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for c in &mut clients {
        let got: Vec<String> = c.events(20, T).await.into_iter().map(|e| e.data).collect();
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn cors_echoes_allowed_origins_and_refuses_others() {
    let gw = Gateway::start("");
    let c = SseClient::connect_with(
        &gw.url("/events?channel=c"),
        &[("origin", "http://app.test")],
    )
    .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["access-control-allow-origin"], "http://app.test");
    assert_eq!(c.headers["access-control-allow-credentials"], "true");
    for path in ["/events?channel=c", "/healthz", "/stats"] {
        let resp = http()
            .get(gw.url(path))
            .header("origin", "http://evil.test")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "origin_not_allowed");
    }
    let resp = http()
        .request(reqwest::Method::OPTIONS, gw.url("/broadcast"))
        .header("origin", "http://app.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let allow_headers = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for h in ["authorization", "content-type", "last-event-id"] {
        assert!(allow_headers.contains(h), "{allow_headers}");
    }
    assert!(resp.headers().contains_key("access-control-max-age"));
    assert!(resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
}
