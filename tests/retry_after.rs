//! Every 429 and 503 the gateway produces carries `Retry-After`, provoked one by one over real
//! sockets: the connection and rate limits of one node and of a Redis cluster, the ticket store
//! when full, a draining node and an unreachable broker.
//!
//! The producers, from `src/`: `limits.rs` (`rate_limited`, `too_many_connections` per IP and per
//! user, `at_capacity`, each on the node and across the cluster), `auth/ticket.rs`
//! (`too_many_tickets`), `reply.rs` (`draining` on `/events`, `/broadcast`, `/tickets` and
//! `/readyz`; `broker_unavailable` on `/broadcast`, `/readyz` and the `?scope=cluster` admin
//! reads). Not provoked: `no_randomness` (the operating system failing to give random bytes)
//! and the Redis publish that does not come back within a second; both are built with
//! `.retry_after(1)` by the same constructors as the cases here.

mod common;

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use common::redis::RedisServer;
use common::*;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// Asserts the refusal's status, code and a `Retry-After` of whole seconds within `seconds`.
async fn assert_refusal(
    what: &str,
    resp: reqwest::Response,
    status: u16,
    code: &str,
    seconds: RangeInclusive<u64>,
) {
    assert_eq!(resp.status(), status, "{what}");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .expect("ASCII")
        .parse::<u64>()
        .unwrap_or_else(|e| panic!("{what}: Retry-After is not whole seconds: {e}"));
    assert!(
        seconds.contains(&retry_after),
        "{what}: Retry-After {retry_after}, expected {seconds:?}"
    );
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], code, "{what}");
}

fn get<'a>(gw: &'a Gateway, path: &str, key: Option<&str>) -> BoxFuture<'a, reqwest::Response> {
    let mut req = http().get(gw.url(path));
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    Box::pin(async move { req.send().await.expect("request") })
}

fn post<'a>(gw: &'a Gateway, path: &str, body: Value) -> BoxFuture<'a, reqwest::Response> {
    let req = http()
        .post(gw.url(path))
        .header("x-api-key", KEY)
        .json(&body);
    Box::pin(async move { req.send().await.expect("request") })
}

/// Opens one stream (kept until the refusal is in) and returns the refused second one.
fn second_stream<'a>(gw: &'a Gateway, key: Option<&'a str>) -> BoxFuture<'a, reqwest::Response> {
    Box::pin(async move {
        let first = get(gw, "/events?channel=a", key).await;
        assert_eq!(first.status(), 200, "the first stream");
        let refused = get(gw, "/events?channel=a", key).await;
        drop(first);
        refused
    })
}

/// One case of a single node: its `limits:` and how to provoke the refusal.
struct Case {
    what: &'static str,
    limits: &'static str,
    provoke: for<'a> fn(&'a Gateway) -> BoxFuture<'a, reqwest::Response>,
    status: u16,
    code: &'static str,
    retry_after: RangeInclusive<u64>,
}

#[tokio::test]
async fn every_limit_of_one_node_refuses_with_retry_after() {
    let cases = [
        Case {
            what: "connect rate per IP",
            limits: "connect_rate_per_ip: {per_second: 1, burst: 1}",
            provoke: |gw| second_stream(gw, None),
            status: 429,
            code: "rate_limited",
            retry_after: 1..=1,
        },
        Case {
            what: "streams per IP",
            limits: "max_connections_per_ip: 1",
            provoke: |gw| second_stream(gw, None),
            status: 429,
            code: "too_many_connections",
            retry_after: 5..=5,
        },
        Case {
            what: "streams per user",
            limits: "max_connections_per_user: 1",
            provoke: |gw| second_stream(gw, Some(KEY)),
            status: 429,
            code: "too_many_connections",
            retry_after: 5..=5,
        },
        Case {
            what: "streams per node",
            limits: "max_connections: 1",
            provoke: |gw| second_stream(gw, None),
            status: 503,
            code: "at_capacity",
            retry_after: 5..=5,
        },
        Case {
            what: "publish rate",
            limits: "publish_rate: {per_second: 1, burst: 1}",
            provoke: |gw| {
                Box::pin(async move {
                    let first = post(gw, "/broadcast", json!({"channel": "a", "data": 1})).await;
                    assert_eq!(first.status(), 202, "the first publish");
                    post(gw, "/broadcast", json!({"channel": "a", "data": 2})).await
                })
            },
            status: 429,
            code: "rate_limited",
            retry_after: 1..=1,
        },
    ];
    for case in cases {
        let gw = Gateway::start(&format!("limits:\n  {}\n", case.limits));
        let refused = (case.provoke)(&gw).await;
        assert_refusal(case.what, refused, case.status, case.code, case.retry_after).await;
    }
}

/// An HS256 token (8 KiB at most, the gateway's limit) whose subscribe claim is as long as fits:
/// each ticket for it holds tens of KiB of rights, so the store's 64 MiB fill with few tickets.
fn fat_token() -> String {
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    (1..=2000)
        .rev()
        .step_by(20)
        .map(|n| {
            let claims = json!({"sub": "fat", "exp": exp, "subscribe": vec!["a"; n]});
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token")
        })
        .find(|token| token.len() <= 8000)
        .expect("a token under 8 KiB")
}

#[tokio::test]
async fn a_full_ticket_store_refuses_with_retry_after_until_the_oldest_expires() {
    // One credential fills the store: its ticket rate must not refuse first.
    let gw = Gateway::start(
        "auth:\n  jwt:\n    secret_env: TEST_JWT_SECRET\n  ticket_ttl: 5m\n\
         limits:\n  ticket_rate: {per_second: 100000, burst: 100000}\n",
    );
    let token = fat_token();
    // One connection reused: thousands of tickets in a few seconds.
    let client = reqwest::Client::new();
    for issued in 0.. {
        assert!(issued < 20_000, "the store never filled");
        let resp = client
            .post(gw.url("/tickets"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        if resp.status() != 201 {
            // Until the first ticket expires: within the 5 minute lifetime, plus a second.
            assert_refusal("full ticket store", resp, 503, "too_many_tickets", 1..=301).await;
            return;
        }
    }
}

#[tokio::test]
async fn every_refusal_of_a_draining_node_carries_retry_after() {
    let (gw, _streams) = gateway_with_streams_to_drain().await;
    gw.signal("TERM");
    eventually(WAIT, "draining", || async {
        get(&gw, "/readyz", None).await.status() == 503
    })
    .await;
    let refusals = [
        ("GET /events", get(&gw, "/events?channel=d", None)),
        (
            "POST /broadcast",
            post(&gw, "/broadcast", json!({"channel": "d", "data": 1})),
        ),
        ("POST /tickets", post(&gw, "/tickets", json!({}))),
        ("GET /readyz", get(&gw, "/readyz", None)),
    ];
    for (what, refusal) in refusals {
        assert_refusal(what, refusal.await, 503, "draining", 1..=1).await;
    }
}

/// A node on `redis`, ready (its replicator connected).
async fn node(redis: &RedisServer, limits: &str) -> Gateway {
    let gw = Gateway::start(&format!(
        "broker:\n  kind: redis\n  url: \"{}\"\nlimits:\n  {limits}\n",
        redis.url()
    ));
    eventually(WAIT, "node ready", || async {
        get(&gw, "/readyz", None).await.status() == 200
    })
    .await;
    gw
}

#[tokio::test]
async fn every_refusal_while_redis_is_down_carries_retry_after() {
    let mut redis = RedisServer::start();
    let gw = node(&redis, "{}").await;
    redis.stop();
    eventually(WAIT, "the node saw Redis go", || async {
        get(&gw, "/readyz", None).await.status() == 503
    })
    .await;
    let refusals = [
        (
            "POST /broadcast",
            post(&gw, "/broadcast", json!({"channel": "r", "data": 1})),
        ),
        ("GET /readyz", get(&gw, "/readyz", None)),
        (
            "GET /stats?scope=cluster",
            get(&gw, "/stats?scope=cluster", Some(KEY)),
        ),
        (
            "GET /clients?scope=cluster",
            get(&gw, "/clients?scope=cluster", Some(KEY)),
        ),
    ];
    for (what, refusal) in refusals {
        assert_refusal(what, refusal.await, 503, "broker_unavailable", 1..=1).await;
    }
}

/// One case of two nodes on one Redis: the request is admitted on node A, then refused on B,
/// which alone would have admitted it.
struct ClusterCase {
    what: &'static str,
    limits: &'static str,
    request: for<'a> fn(&'a Gateway) -> BoxFuture<'a, reqwest::Response>,
    status: u16,
    code: &'static str,
    retry_after: RangeInclusive<u64>,
}

fn anonymous_stream(gw: &Gateway) -> BoxFuture<'_, reqwest::Response> {
    get(gw, "/events?channel=a", None)
}

fn stream_with_key(gw: &Gateway) -> BoxFuture<'_, reqwest::Response> {
    get(gw, "/events?channel=a", Some(KEY))
}

fn publish(gw: &Gateway) -> BoxFuture<'_, reqwest::Response> {
    post(gw, "/broadcast", json!({"channel": "a", "data": 1}))
}

#[tokio::test]
async fn every_cluster_wide_limit_refuses_with_retry_after() {
    let cases = [
        ClusterCase {
            what: "connect rate per IP across nodes",
            limits: "connect_rate_per_ip: {per_second: 1, burst: 1}",
            request: anonymous_stream,
            status: 429,
            code: "rate_limited",
            retry_after: 1..=1,
        },
        ClusterCase {
            what: "streams per IP across nodes",
            limits: "max_connections_per_ip: 1",
            request: anonymous_stream,
            status: 429,
            code: "too_many_connections",
            retry_after: 5..=5,
        },
        ClusterCase {
            what: "streams per user across nodes",
            limits: "max_connections_per_user: 1",
            request: stream_with_key,
            status: 429,
            code: "too_many_connections",
            retry_after: 5..=5,
        },
        ClusterCase {
            what: "publish rate across nodes",
            limits: "publish_rate: {per_second: 1, burst: 1}",
            request: publish,
            status: 429,
            code: "rate_limited",
            retry_after: 1..=1,
        },
    ];
    for case in cases {
        let redis = RedisServer::start();
        let a = node(&redis, case.limits).await;
        let b = node(&redis, case.limits).await;
        // Held until B has answered: a stream's place is taken while it is open.
        let first = (case.request)(&a).await;
        assert!(first.status().is_success(), "{}: on A", case.what);
        let refused = (case.request)(&b).await;
        assert_refusal(case.what, refused, case.status, case.code, case.retry_after).await;
        drop(first);
    }
}
