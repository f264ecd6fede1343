//! Operator endpoints: `/stats`, `/clients` (paginated), `DELETE /clients/{id}`, `/metrics`,
//! `/healthz`, `/readyz`, and the static UI.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn admin_endpoints_need_an_admin_credential() {
    let gw = Gateway::start("");
    for path in ["/stats", "/clients"] {
        let resp = http().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = http()
            .get(gw.url(path))
            .header("x-api-key", LIMITED_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let resp = http()
            .get(gw.url(path))
            .header("x-api-key", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = http().delete(gw.url("/clients/1")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn clients_page_with_a_cursor_and_can_be_disconnected() {
    let gw = Gateway::start("");
    let mut streams = Vec::new();
    for i in 0..7 {
        streams.push(SseClient::connect(&gw.url(&format!("/events?channel=c{i}&types=t"))).await);
    }
    eventually(T, "7 clients listed", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 7
    })
    .await;
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/clients?limit=3&cursor={c}"),
            None => "/clients?limit=3".to_string(),
        };
        let page = gw.admin_get(&path).await;
        pages += 1;
        assert_eq!(page["total"], 7);
        for c in page["clients"].as_array().unwrap() {
            assert!(ids.insert(c["id"].as_str().unwrap().to_string()));
            assert_eq!(c["types"], serde_json::json!(["t"]));
            assert_eq!(c["ip"], "127.0.0.1");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!((ids.len(), pages), (7, 3));

    for bad in [
        "/clients?limit=0",
        "/clients?limit=abc",
        "/clients?limit=100000",
        "/clients?cursor=x",
    ] {
        let resp = http()
            .get(gw.url(bad))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }

    // Disconnect the first client: its stream ends, the others stay.
    let first = ids.iter().next().unwrap().clone();
    let resp = http()
        .delete(gw.url(&format!("/clients/{first}")))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    streams[0].until_end(T).await;
    assert_eq!(
        streams[0].end_error, None,
        "a kicked stream ends with a complete chunked body"
    );
    eventually(T, "6 left", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 6
    })
    .await;
    for missing in ["999999", "abc", first.as_str()] {
        let resp = http()
            .delete(gw.url(&format!("/clients/{missing}")))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{missing}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "client_not_found");
    }
    eventually(T, "the close counted as kicked", || async {
        gw.metric("sse_gateway_streams_closed_total", "reason=\"kicked\"")
            .await
            == 1.0
    })
    .await;
}

#[tokio::test]
async fn stats_and_metrics_reflect_traffic() {
    let gw = Gateway::start("");
    let mut c = SseClient::connect(&gw.url("/events?channel=s")).await;
    for i in 0..3 {
        gw.publish_ok("s", "message", &i.to_string()).await;
    }
    c.events(3, T).await;
    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats["streams"]["open"], 1);
    assert_eq!(stats["events"]["published_total"], 3);
    assert_eq!(stats["node"]["broker"], "memory");
    assert_eq!(stats["node"]["draining"], false);
    assert!(stats["node"]["last_event_id"]
        .as_str()
        .unwrap()
        .ends_with("-3"));
    eventually(T, "deliveries and their latencies counted", || async {
        let text = gw.metrics_text().await;
        metric_value(&text, "sse_gateway_events_delivered_total", "") == 3.0
            && metric_value(&text, "sse_gateway_publish_to_write_seconds_count", "") == 3.0
    })
    .await;
    let text = gw.metrics_text().await;
    for name in [
        "sse_gateway_streams_open",
        "sse_gateway_events_published_total",
        "sse_gateway_publish_to_write_seconds_bucket",
        "sse_gateway_slow_consumer_disconnects_total",
        "sse_gateway_replayed_events_total",
        "sse_gateway_resets_total",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("sse_gateway_") || line.starts_with("process_"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = Gateway::start("");
    for path in ["/healthz", "/readyz"] {
        let resp = http().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn static_ui_is_served_without_traversal() {
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(www.path().join("assets")).unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<!doctype html><title>ui</title>",
    )
    .unwrap();
    std::fs::write(www.path().join("assets/app-1234.js"), "console.log(1)").unwrap();
    let gw = Gateway::start(&format!("static_dir: {}\n", www.path().display()));
    let resp = http().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let resp = http()
        .get(gw.url("/assets/app-1234.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    // Raw request lines, so no client normalises the dots away.
    for path in [
        "/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2fetc/passwd",
    ] {
        let reply = gw
            .raw_request(&format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(
            reply.starts_with("HTTP/1.1 404") || reply.starts_with("HTTP/1.1 400"),
            "{path}: {reply}"
        );
        assert!(!reply.contains("root:"), "{path}");
    }
}

#[tokio::test]
async fn cluster_scope_on_one_node_is_that_node() {
    let gw = Gateway::start("");
    let _client = SseClient::connect(&gw.url("/events?channel=a")).await;
    let stats = gw.admin_get("/stats?scope=cluster").await;
    assert_eq!(stats["totals"]["nodes"], 1);
    assert_eq!(stats["totals"]["streams_open"], 1);
    assert_eq!(stats["answered_by"], stats["nodes"][0]["node"]["id"]);
    let clients = gw.admin_get("/clients?scope=cluster").await;
    assert_eq!(clients["total"], 1);
}

#[tokio::test]
async fn cluster_scope_refuses_bad_paging_values_rather_than_ignoring_them() {
    // Found by schemathesis: `scope=cluster` answered 200 whatever `cursor` and `limit` held.
    let gw = Gateway::start("");
    for (query, code) in [
        ("scope=cluster&cursor=x", "invalid_cursor"),
        ("scope=cluster&limit=0", "invalid_limit"),
        ("cursor=x&scope=cluster", "invalid_cursor"),
    ] {
        let (status, got) =
            status_and_code(&gw, &format!("/clients?{query}"), &[("x-api-key", KEY)]).await;
        assert_eq!((status, got.as_str()), (400, code), "{query}");
    }
    let (status, _) = status_and_code(
        &gw,
        "/clients?scope=cluster&limit=5&cursor=3",
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(status, 200, "values of ours are still accepted");
}
