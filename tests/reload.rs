//! Configuration reload of the contract: the file is watched (edits in place and rename-replace)
//! and reloaded on SIGHUP; a valid file applies without dropping a stream or a proxied request,
//! part by part (channels, auth, CORS, limits, history bounds, sources, routes and upstreams);
//! streams whose rights it removes are closed; an invalid file is rejected, counted and logged
//! at `file:line:col`; `listen` and `broker` changes say they need a restart; `/stats` shows the
//! loaded file's generation and time. (Routes and upstream pools are not built yet: that test
//! is ignored with the contract's reason.)

mod backend;
mod common;

use std::time::Duration;

use backend::Backend;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// Replaces the gateway's file in place (truncate and write, as an editor saving in place does).
fn edit_in_place(gw: &Gateway, extra: &str) {
    std::fs::write(gw.config_path(), base_config(extra)).expect("write config");
}

/// Replaces the gateway's file by renaming a new one over it (as most editors and config
/// management tools do).
fn rename_replace(gw: &Gateway, extra: &str) {
    let staged = gw.dir.path().join("gateway.yaml.new");
    std::fs::write(&staged, base_config(extra)).expect("write config");
    std::fs::rename(&staged, gw.config_path()).expect("rename");
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    gw.metric(
        "sse_gateway_config_reloads_total",
        &format!("result=\"{result}\""),
    )
    .await
}

/// Waits until `n` reloads with `result` were counted.
async fn wait_reloads(gw: &Gateway, result: &str, n: f64) {
    eventually(WAIT, &format!("{n} reloads {result}"), || async {
        reloads(gw, result).await >= n
    })
    .await;
}

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn an_edit_in_place_applies_channels_and_closes_only_streams_that_lost_their_right() {
    let gw = Gateway::start("");
    let mut losing = SseClient::connect(&gw.url("/events?channel=news")).await;
    let mut keeping = SseClient::connect(&gw.url("/events?channel=open")).await;
    assert_eq!((losing.status, keeping.status), (200, 200));

    edit_in_place(
        &gw,
        "channels:\n  - {name: news, subscribe: claims}\n  - {name: \"*\", subscribe: public}\n",
    );
    wait_reloads(&gw, "ok", 1.0).await;
    let last = losing.until_end(WAIT).await;
    assert!(
        last.iter().any(|item| matches!(item,
            sse_gateway::sse::parse::ParsedItem::Event(e) if e.event == "access_revoked")),
        "the stream is told why it ends: {last:?}"
    );
    assert_eq!(losing.end_error, None, "and ends cleanly");
    assert_eq!(
        SseClient::connect(&gw.url("/events?channel=news"))
            .await
            .status,
        401,
        "news needs a credential now"
    );
    gw.publish_ok("open", "note", "still here").await;
    assert_eq!(
        keeping.next_event(WAIT).await.expect("event").data,
        "still here"
    );
    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats["streams"]["opened_total"], 2, "no stream reconnected");
}

#[tokio::test]
async fn a_rename_replace_applies_auth_and_cors_without_dropping_streams() {
    const NEW_KEY: &str = "reload-new-key-0123456789";
    let gw = Gateway::start_with_env("", &[("TEST_NEW_KEY", NEW_KEY)]);
    let mut watching = SseClient::connect(&gw.url("/events?channel=a")).await;
    let publish_with_new_key = || {
        http()
            .post(gw.url("/broadcast"))
            .header("x-api-key", NEW_KEY)
            .json(&serde_json::json!({"channel": "a", "data": "new key"}))
    };
    let from_new_origin = || {
        http()
            .get(gw.url("/healthz"))
            .header("origin", "http://new.test")
    };
    assert_eq!(status(publish_with_new_key()).await, 401);
    assert_eq!(status(from_new_origin()).await, 403);

    rename_replace(
        &gw,
        "auth:\n  api_keys:\n    - {name: admin, key_env: TEST_ADMIN_KEY, publish: [\"*\"], admin: true}\n    \
         - {name: newcomer, key_env: TEST_NEW_KEY, publish: [\"*\"]}\n\
         cors:\n  allowed_origins: [\"http://app.test\", \"http://new.test\"]\n",
    );
    wait_reloads(&gw, "ok", 1.0).await;
    assert_eq!(status(publish_with_new_key()).await, 202);
    assert_eq!(status(from_new_origin()).await, 200);
    assert_eq!(
        watching.next_event(WAIT).await.expect("event").data,
        "new key"
    );
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let gw = Gateway::start("");
    gw.signal("HUP");
    wait_reloads(&gw, "ok", 1.0).await;
    // A change signalled by SIGHUP applies (whether or not the watcher saw it first).
    edit_in_place(&gw, "limits:\n  max_connections: 1\n");
    gw.signal("HUP");
    wait_reloads(&gw, "ok", 2.0).await;
    let _only = SseClient::connect(&gw.url("/events?channel=a")).await;
    eventually(WAIT, "the new limit applies", || async {
        SseClient::connect(&gw.url("/events?channel=a"))
            .await
            .status
            == 503
    })
    .await;
}

#[tokio::test]
async fn limits_and_history_bounds_apply_on_reload() {
    let gw = Gateway::start("");
    let first = gw.publish_ok("h", "note", "one").await;
    edit_in_place(
        &gw,
        "history:\n  max_events: 1\nlimits:\n  max_connections_per_ip: 1\n",
    );
    wait_reloads(&gw, "ok", 1.0).await;
    gw.publish_ok("h", "note", "two").await;
    gw.publish_ok("h", "note", "three").await;
    let mut resumed = gw.resume("/events?channel=h", &first).await;
    let reset = resumed.next_event(WAIT).await.expect("first event");
    assert_eq!(reset.event, "reset", "history now keeps one event");
    let second = http()
        .get(gw.url("/events?channel=h"))
        .send()
        .await
        .expect("request");
    assert_eq!(second.status(), 429, "one stream per IP now");
}

async fn source_names(gw: &Gateway) -> Vec<String> {
    gw.admin_get("/stats").await["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn wait_stream_clients(up: &Upstream, n: u64) {
    eventually(WAIT, &format!("{n} upstream stream clients"), || async {
        up.info().await["stream_clients"] == n
    })
    .await;
}

#[tokio::test]
async fn sources_are_added_changed_and_removed_on_reload() {
    let (up1, up2) = (
        Upstream::start(&["--notify-interval", "0s"]),
        Upstream::start(&["--notify-interval", "0s"]),
    );
    let source = |name: &str, up: &Upstream, channel: &str| {
        format!(
            "  - {{name: {name}, url: \"{}\", channel: {channel}}}\n",
            up.url("/streams/notifications")
        )
    };
    let gw = Gateway::start(&format!("sources:\n{}", source("a", &up1, "ca")));
    wait_stream_clients(&up1, 1).await;

    // `a` moves to up2 (changed), `b` reads up1 (added).
    edit_in_place(
        &gw,
        &format!(
            "sources:\n{}{}",
            source("a", &up2, "ca"),
            source("b", &up1, "cb")
        ),
    );
    wait_reloads(&gw, "ok", 1.0).await;
    wait_stream_clients(&up2, 1).await;
    wait_stream_clients(&up1, 1).await;
    assert_eq!(source_names(&gw).await, ["a", "b"]);
    let mut on_a = SseClient::connect(&gw.url("/events?channel=ca")).await;
    up2.notify("from up2").await;
    let event = on_a.next_event(WAIT).await.expect("event");
    let data: Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(data["title"], "from up2");

    // Both removed.
    edit_in_place(&gw, "sources: []\n");
    wait_reloads(&gw, "ok", 2.0).await;
    wait_stream_clients(&up1, 0).await;
    wait_stream_clients(&up2, 0).await;
    assert!(source_names(&gw).await.is_empty());
}

#[tokio::test]

async fn routes_apply_on_reload_in_flight_requests_finish_and_an_unchanged_pool_keeps_its_state() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // b answers 503 once: passive checks eject it for a minute.
    b.set_status(Some(503));
    let pool = format!(
        "  p:\n    servers: [\"{}\", \"{}\"]\n    passive: {{failures: 1, eject_for: 60s}}\n",
        a.addr, b.addr
    );
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /x/, upstream: p, strip_prefix: true}}\nupstreams:\n{pool}"
    ));
    for _ in 0..4 {
        http().get(gw.url("/x/y")).send().await.expect("request");
    }
    assert_eq!(b.count(), 1, "b ejected after its 503");
    b.set_status(None);

    let in_flight = tokio::spawn({
        let url = gw.url("/x/slow");
        async move { http().get(url).send().await.expect("request").status() }
    });
    eventually(WAIT, "the slow request reached a", || async {
        a.requests().iter().any(|r| r.target == "/slow")
    })
    .await;
    edit_in_place(
        &gw,
        &format!(
            "routes:\n  - {{path_prefix: /x/, upstream: p, strip_prefix: true}}\n  \
             - {{path_prefix: /z/, upstream: p, strip_prefix: true}}\nupstreams:\n{pool}"
        ),
    );
    wait_reloads(&gw, "ok", 1.0).await;
    assert_eq!(
        in_flight.await.expect("task"),
        200,
        "the proxied request finished"
    );
    for _ in 0..4 {
        let resp = http().get(gw.url("/z/new")).send().await.expect("request");
        assert_eq!(resp.status(), 200, "the new route");
    }
    assert_eq!(b.count(), 1, "p is unchanged: b is still ejected");
}

#[tokio::test]
async fn an_invalid_file_is_rejected_counted_and_logged_and_the_old_config_stays() {
    let gw = Gateway::start("limits:\n  max_connections: 5\n");
    let mut kept = SseClient::connect(&gw.url("/events?channel=k")).await;
    edit_in_place(&gw, "limits:\n  max_connections: 5\nsse:\n  retry: soon\n");
    wait_reloads(&gw, "error", 1.0).await;
    assert_eq!(reloads(&gw, "ok").await, 0.0);
    let file = gw.config_path().display().to_string();
    eventually(WAIT, "the error logged at file:line:col", || async {
        gw.logs()
            .lines()
            .any(|l| l.contains(&format!("{file}:")) && l.contains("sse.retry"))
    })
    .await;
    gw.publish_ok("k", "note", "old config").await;
    assert_eq!(
        kept.next_event(WAIT).await.expect("event").data,
        "old config"
    );
}

#[tokio::test]
async fn listen_and_broker_changes_say_they_need_a_restart_and_serving_goes_on() {
    let gw = Gateway::start("");
    let mut kept = SseClient::connect(&gw.url("/events?channel=k")).await;
    let elsewhere = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    };
    edit_in_place(&gw, &format!("listen: {elsewhere}\n"));
    eventually(WAIT, "a log line saying restart", || async {
        gw.logs().lines().any(|l| l.contains("restart"))
    })
    .await;
    edit_in_place(
        &gw,
        &format!("listen: {elsewhere}\nbroker:\n  kind: redis\n  url: unix:///nonexistent.sock\n"),
    );
    eventually(WAIT, "a second line saying restart", || async {
        gw.logs().lines().filter(|l| l.contains("restart")).count() >= 2
    })
    .await;
    assert!(
        tokio::net::TcpStream::connect(elsewhere).await.is_err(),
        "nothing listens on the new address"
    );
    gw.publish_ok("k", "note", "same address, same broker")
        .await;
    assert_eq!(
        kept.next_event(WAIT).await.expect("event").data,
        "same address, same broker"
    );
}

/// The object in `/stats` holding the config's generation (field names are the gateway's to
/// choose; the contract names what they show).
fn config_info(stats: &Value) -> serde_json::Map<String, Value> {
    fn find(v: &Value) -> Option<serde_json::Map<String, Value>> {
        match v {
            Value::Object(map) if map.keys().any(|k| k.contains("generation")) => Some(map.clone()),
            Value::Object(map) => map.values().find_map(find),
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(stats).unwrap_or_else(|| panic!("no config generation in /stats: {stats}"))
}

#[tokio::test]
async fn stats_show_the_loaded_files_generation_and_time() {
    let gw = Gateway::start("");
    let before = config_info(&gw.admin_get("/stats").await);
    let generation = |info: &serde_json::Map<String, Value>| {
        info.iter()
            .find(|(k, _)| k.contains("generation"))
            .and_then(|(_, v)| v.as_u64())
            .expect("a numeric generation")
    };
    assert!(
        before
            .keys()
            .any(|k| k.contains("time") || k.contains("loaded") || k.ends_with("_at")),
        "no load time beside the generation: {before:?}"
    );
    edit_in_place(&gw, "sse:\n  retry: 5s\n");
    wait_reloads(&gw, "ok", 1.0).await;
    let after = config_info(&gw.admin_get("/stats").await);
    assert_eq!(generation(&after), generation(&before) + 1);
}

#[tokio::test]
async fn a_delete_then_create_is_one_reload_of_the_new_file() {
    let gw = Gateway::start("");
    let mut kept = SseClient::connect(&gw.url("/events?channel=k")).await;
    std::fs::remove_file(gw.config_path()).expect("delete");
    std::fs::write(gw.config_path(), base_config("sse:\n  retry: 7s\n")).expect("create");
    wait_reloads(&gw, "ok", 1.0).await;
    let fresh = SseClient::connect(&gw.url("/events?channel=k"))
        .await
        .next_item(WAIT)
        .await;
    assert!(
        matches!(
            fresh,
            Some(sse_gateway::sse::parse::ParsedItem::Retry(7000))
        ),
        "new streams get the new retry: {fresh:?}"
    );
    gw.publish_ok("k", "note", "still here").await;
    assert_eq!(
        kept.next_event(WAIT).await.expect("event").data,
        "still here"
    );
    assert_eq!(reloads(&gw, "error").await, 0.0);
}

#[tokio::test]
async fn a_removed_api_key_closes_exactly_the_streams_opened_with_it() {
    const DOOMED: &str = "doomed-key-0123456789";
    let keys = |doomed: bool| {
        let extra = if doomed {
            "    - {name: doomed, key_env: TEST_DOOMED_KEY}\n"
        } else {
            ""
        };
        format!(
            "channels:\n  - {{name: \"private.*\", subscribe: authenticated}}\n  - {{name: \"*\", subscribe: public}}\n\
             auth:\n  api_keys:\n    - {{name: admin, key_env: TEST_ADMIN_KEY, publish: [\"*\"], admin: true}}\n{extra}"
        )
    };
    let gw = Gateway::start_with_env(&keys(true), &[("TEST_DOOMED_KEY", DOOMED)]);
    let open = |key: &'static str| {
        let url = gw.url("/events?channel=private.x");
        async move { SseClient::connect_with(&url, &[("x-api-key", key)]).await }
    };
    let mut with_doomed = open(DOOMED).await;
    let mut with_admin = open(KEY).await;
    let mut public = SseClient::connect(&gw.url("/events?channel=open")).await;
    assert_eq!(
        (with_doomed.status, with_admin.status, public.status),
        (200, 200, 200)
    );

    edit_in_place(&gw, &keys(false));
    wait_reloads(&gw, "ok", 1.0).await;
    with_doomed.until_end(WAIT).await;
    assert_eq!(
        gw.metric("sse_gateway_streams_closed_total", "reason=\"revoked\"")
            .await,
        1.0
    );
    gw.publish_ok("private.x", "note", "for the admin").await;
    gw.publish_ok("open", "note", "for everyone").await;
    assert_eq!(
        with_admin.next_event(WAIT).await.expect("event").data,
        "for the admin"
    );
    assert_eq!(
        public.next_event(WAIT).await.expect("event").data,
        "for everyone"
    );
    assert_eq!(open(DOOMED).await.status, 401, "the key is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_100_events_a_second_lose_and_duplicate_nothing() {
    let gw = Gateway::start("");
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(SseClient::connect(&gw.url("/events?channel=load")).await);
    }
    let publishing = async {
        let mut ids = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for n in 0..400 {
            tick.tick().await;
            ids.push(gw.publish_ok("load", "note", &n.to_string()).await);
        }
        ids
    };
    let reloading = async {
        for n in 0..20 {
            // Alternate a setting that changes (so each write is a reload) with the history bound.
            let retry = if n % 2 == 0 { "2s" } else { "3s" };
            edit_in_place(
                &gw,
                &format!(
                    "sse:\n  retry: {retry}\nhistory:\n  max_events: {}\n",
                    1000 + n
                ),
            );
            wait_reloads(&gw, "ok", f64::from(n + 1)).await;
        }
    };
    let (ids, ()) = tokio::join!(publishing, reloading);
    let sentinel = gw.publish_ok("load", "note", "end").await;
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        let got: Vec<String> = subscriber
            .events(400, WAIT)
            .await
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, ids, "subscriber {i}: every event once, in order");
        // The next one is the sentinel: nothing arrived twice after the last.
        assert_eq!(
            subscriber.next_event(WAIT).await.expect("sentinel").id,
            sentinel
        );
    }
    assert_eq!(reloads(&gw, "error").await, 0.0);
    assert_eq!(
        gw.admin_get("/stats").await["streams"]["opened_total"],
        3,
        "no stream dropped and reconnected"
    );
}
