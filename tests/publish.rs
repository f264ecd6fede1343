//! `POST /broadcast`: the happy path, every bad input, and that a rejected publish changes nothing.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

async fn post(
    gw: &Gateway,
    key: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let mut req = http()
        .post(gw.url("/broadcast"))
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 202 {
        assert_eq!(resp.headers()["content-type"], "application/json");
    }
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn accepted_publish_returns_id_and_channels_and_is_in_history_at_once() {
    let gw = Gateway::start("");
    let (status, body) = gw
        .publish(serde_json::json!({"channels": ["a", "b", "a"], "event": "e", "data": "x"}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["channels"], serde_json::json!(["a", "b"]));
    let id = body["id"].as_str().unwrap();
    // In history as soon as 202 returned: a resume from the event before it replays it.
    let (epoch, seq) = id.split_once('-').unwrap();
    let before = format!("{epoch}-{}", seq.parse::<u64>().unwrap() - 1);
    let mut c =
        SseClient::connect_with(&gw.url("/events?channel=b"), &[("last-event-id", &before)]).await;
    let e = c.next_event(T).await.unwrap();
    assert_eq!((Some(e.id.as_str()), e.data.as_str()), (Some(id), "x"));
}

#[tokio::test]
async fn bearer_and_x_api_key_both_work() {
    let gw = Gateway::start("");
    let resp = http()
        .post(gw.url("/broadcast"))
        .header("authorization", format!("Bearer {KEY}"))
        .json(&serde_json::json!({"channel": "a", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (status, _) = post(
        &gw,
        Some(KEY),
        "application/json; charset=utf-8",
        r#"{"channel":"a","data":1}"#,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn bad_publishes_are_refused_and_change_nothing() {
    let gw = Gateway::start("limits:\n  max_event_bytes: 1024\n");
    let mut watcher = SseClient::connect(&gw.url("/events?channels=a,limited.x")).await;
    assert_eq!(watcher.status, 200);
    let big = "x".repeat(2000);
    let cases: Vec<(Option<&str>, &str, String, u16, &str)> = vec![
        (
            Some(KEY),
            "application/json",
            "{not json".into(),
            400,
            "invalid_json",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","data":1,"extra":true}"#.into(),
            400,
            "invalid_json",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"bad name","data":1}"#.into(),
            400,
            "invalid_channel",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channels":[],"data":1}"#.into(),
            400,
            "missing_channel",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"data":1}"#.into(),
            400,
            "missing_channel",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","channels":["b"],"data":1}"#.into(),
            400,
            "ambiguous_channel",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a"}"#.into(),
            400,
            "missing_data",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","event":"bad\nname","data":1}"#.into(),
            400,
            "invalid_event",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","event":"","data":1}"#.into(),
            400,
            "invalid_event",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","event":"token_expired","data":1}"#.into(),
            400,
            "reserved_event",
        ),
        (
            Some(KEY),
            "application/json",
            r#"{"channel":"a","data":1,"channel":"b"}"#.into(),
            400,
            "invalid_json",
        ),
        (
            Some(KEY),
            "application/json",
            format!(r#"{{"channel":"a","data":"{big}"}}"#),
            413,
            "payload_too_large",
        ),
        (
            Some(KEY),
            "application/json",
            format!("{}1{}", "[".repeat(300), "]".repeat(300)),
            400,
            "invalid_json",
        ),
        (
            Some(KEY),
            "text/plain",
            r#"{"channel":"a","data":1}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            Some(KEY),
            "",
            r#"{"channel":"a","data":1}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            None,
            "application/json",
            r#"{"channel":"a","data":1}"#.into(),
            401,
            "unauthorized",
        ),
        (
            Some("wrong-key"),
            "application/json",
            r#"{"channel":"a","data":1}"#.into(),
            401,
            "unauthorized",
        ),
        (
            Some(LIMITED_KEY),
            "application/json",
            r#"{"channel":"a","data":1}"#.into(),
            403,
            "forbidden",
        ),
        (
            Some(LIMITED_KEY),
            "application/json",
            r#"{"channels":["limited.x","a"],"data":1}"#.into(),
            403,
            "forbidden",
        ),
    ];
    for (key, ct, body, status, code) in cases {
        let (got, reply) = post(&gw, key, ct, body.clone()).await;
        assert_eq!(got, status, "{body:.80}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{body:.80}");
    }
    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats["events"]["published_total"], 0, "{stats}");

    // The limited key may publish on its own channels, and the watcher sees only that.
    let (status, reply) = post(
        &gw,
        Some(LIMITED_KEY),
        "application/json",
        r#"{"channel":"limited.x","data":"ok"}"#,
    )
    .await;
    assert_eq!(status, 202);
    watcher
        .assert_next_is(reply["id"].as_str().expect("id"), T)
        .await;
}

#[tokio::test]
async fn null_in_place_of_a_field_is_a_wrong_type_not_an_absent_field() {
    // Found by schemathesis: `"data_base64": null` beside `"data"` was taken for no
    // `data_base64`, and `null` for no `channel`, `channels` or `event`.
    let gw = Gateway::start("");
    for body in [
        r#"{"channel":"a","data":1,"data_base64":null}"#,
        r#"{"channel":"a","data_base64":null}"#,
        r#"{"channel":null,"channels":["a"],"data":1}"#,
        r#"{"channel":"a","channels":null,"data":1}"#,
        r#"{"channel":"a","event":null,"data":1}"#,
    ] {
        let (status, reply) = post(&gw, Some(KEY), "application/json", body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_json", "{body}");
    }
    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats["events"]["published_total"], 0, "{stats}");
    // `"data": null` is a value: it publishes `null`.
    let (status, reply) = post(
        &gw,
        Some(KEY),
        "application/json",
        r#"{"channel":"a","data":null}"#,
    )
    .await;
    assert_eq!(status, 202, "{reply}");
}

#[tokio::test]
async fn publish_rejects_wrong_methods_and_unknown_paths_with_json() {
    let gw = Gateway::start("");
    let resp = http().get(gw.url("/broadcast")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let resp = http().get(gw.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
