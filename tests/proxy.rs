//! The reverse proxy of the contract (`routes:`, `upstreams:`, `trusted_proxies:`), each point an
//! executable statement against real backends on real sockets.

mod backend;
mod common;
mod pki;

use std::net::IpAddr;
use std::time::Duration;

use backend::{dead_addr, Backend, SLOW};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

/// `GET path`: the status and the body.
async fn get(gw: &Gateway, path: &str) -> (u16, String) {
    let resp = http().get(gw.url(path)).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The error code of a JSON error body.
fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["code"].as_str().expect("error code").to_owned()
}

/// The status line and head of a raw response, lowercased header names.
fn head_of(response: &str) -> (u16, Vec<(String, String)>) {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

#[tokio::test]
async fn routes_match_by_prefix_and_host_in_file_order_and_unmatched_paths_are_404() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /api/, host: api.test, upstream: b}}
  - {{path_prefix: /api/, upstream: a}}
  - {{path_prefix: /api/admin/, upstream: b}}
upstreams:
  a: {{servers: [\"{}\"]}}
  b: {{servers: [\"{}\"]}}
",
        a.addr, b.addr
    ));
    assert_eq!(get(&gw, "/api/x?q=1").await, (200, "a".into()));
    assert_eq!(
        a.requests()[0].target,
        "/api/x?q=1",
        "the path is sent as is"
    );
    assert_eq!(
        get(&gw, "/api/admin/x").await,
        (200, "a".into()),
        "the first route in file order wins"
    );
    // `host` is compared with the Host header without its port.
    let resp = http()
        .get(gw.url("/api/x"))
        .header("host", "api.test:8080")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), "b");

    let (status, body) = get(&gw, "/nowhere").await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"));
    assert_eq!(a.count() + b.count(), 3, "the 404 reached no backend");
}

#[tokio::test]
async fn gateway_endpoints_are_answered_before_a_catch_all_route() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    let (status, body) = get(&gw, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let stream = SseClient::connect(&gw.url("/events?channel=x")).await;
    assert_eq!(stream.status, 200);
    assert_eq!(a.count(), 0);
    assert_eq!(get(&gw, "/anything/else").await, (200, "a".into()));
}

#[tokio::test]
async fn strip_prefix_removes_the_prefix_and_the_default_keeps_it() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /keep, upstream: a}}
  - {{path_prefix: /strip, upstream: a, strip_prefix: true}}
upstreams:
  a: {{servers: [\"{}\"]}}
",
        a.addr
    ));
    assert_eq!(get(&gw, "/keep/x?q=1").await.0, 200);
    assert_eq!(get(&gw, "/strip/x?q=1").await.0, 200);
    let targets: Vec<String> = a.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/keep/x?q=1", "/x?q=1"]);
}

#[tokio::test]
async fn round_robin_alternates_and_random_reaches_every_server() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /rr/, upstream: rr}}
  - {{path_prefix: /random/, upstream: random}}
upstreams:
  rr: {{servers: [\"{a}\", \"{b}\"]}}
  random: {{servers: [\"{a}\", \"{b}\"], balance: random}}
",
        a = a.addr,
        b = b.addr
    ));
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(get(&gw, "/rr/x").await.1);
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "round_robin (the default) alternates: {order:?}"
    );
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..60 {
        served.insert(get(&gw, "/random/x").await.1);
    }
    assert_eq!(served.len(), 2, "60 random picks reached both servers");
}

#[tokio::test]
async fn server_weights_share_requests_in_proportion() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p}}\nupstreams:\n  \
         p: {{servers: [{{addr: \"{}\", weight: 3}}, \"{}\"]}}\n",
        a.addr, b.addr
    ));
    for _ in 0..40 {
        assert_eq!(get(&gw, "/x").await.0, 200);
    }
    // Weight 3 against the default 1: three in four requests.
    assert!((27..=33).contains(&a.count()), "a served {}", a.count());
    assert_eq!(a.count() + b.count(), 40);
}

/// A client whose connections leave from `ip` (any 127.0.0.0/8 address reaches the gateway).
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

#[tokio::test]
async fn consistent_hash_keeps_each_key_on_one_server_for_every_hash_key() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let pool = |hash_key: &str| {
        format!(
            "{{servers: [\"{}\", \"{}\"], balance: consistent_hash{hash_key}}}",
            a.addr, b.addr
        )
    };
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /ip/, upstream: by_ip}}
  - {{path_prefix: /header/, upstream: by_header}}
  - {{path_prefix: /cookie/, upstream: by_cookie}}
  - {{path_prefix: /path/, upstream: by_path}}
upstreams:
  by_ip: {}
  by_header: {}
  by_cookie: {}
  by_path: {}
",
        pool(""),
        pool(", hash_key: \"header:X-User\""),
        pool(", hash_key: \"cookie:session\""),
        pool(", hash_key: path"),
    ));
    // Twenty keys of each kind, each asked three times: one server per key, both servers used.
    for kind in ["ip", "header", "cookie", "path"] {
        let mut servers_used = std::collections::BTreeSet::new();
        for key in 1..=20u8 {
            let mut answers = std::collections::BTreeSet::new();
            for _ in 0..3 {
                let client = client_from(IpAddr::from([127, 0, 0, key]));
                let url = match kind {
                    "path" => gw.url(&format!("/path/k{key}")),
                    _ => gw.url(&format!("/{kind}/x")),
                };
                let resp = client
                    .get(url)
                    .header("x-user", format!("user{key}"))
                    .header("cookie", format!("session=s{key}"))
                    .send()
                    .await
                    .expect("request");
                answers.insert(resp.text().await.expect("body"));
            }
            assert_eq!(answers.len(), 1, "{kind} key {key} moved: {answers:?}");
            servers_used.extend(answers);
        }
        assert_eq!(servers_used.len(), 2, "{kind}: 20 keys all on one server");
    }
}

#[tokio::test]
async fn least_connections_picks_the_server_with_fewest_requests_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p, timeout: 0s}}\nupstreams:\n  \
         p: {{servers: [\"{}\", \"{}\"], balance: least_connections}}\n",
        a.addr, b.addr
    ));
    // An open upstream stream is a request in flight on its server.
    let held = http().get(gw.url("/hold")).send().await.expect("hold");
    assert_eq!(held.status(), 200);
    let holder = if a.count() == 1 { &a } else { &b };
    let other = if a.count() == 1 { &b } else { &a };
    let other_addr = other.addr.to_string();
    for _ in 0..5 {
        // A request leaves the count when pingora has finished it, which on a busy machine may
        // be a moment after its client got the whole response: until then the two servers tie.
        eventually(WAIT, "the last request left the count", || async {
            let stats = gw.admin_get("/stats").await;
            server_in_stats(&stats, &other_addr).get("in_flight") == Some(&json!(0))
        })
        .await;
        assert_eq!(get(&gw, "/x").await.1, other.name());
    }
    assert_eq!(holder.count(), 1, "nothing new for the busy server");
    drop(held);
}

#[tokio::test]
async fn active_health_checks_take_a_server_out_and_bring_it_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.set_healthy(false);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p}}\nupstreams:\n  p:\n    \
         servers: [\"{}\", \"{}\"]\n    health_check: {{path: /healthz, interval: 200ms, \
         timeout: 1s, healthy_after: 1, unhealthy_after: 1}}\n",
        a.addr, b.addr
    ));
    let healthy = |server: std::net::SocketAddr| {
        let gw = &gw;
        async move {
            gw.metric(
                "sse_gateway_upstream_healthy",
                &format!("server=\"{server}\""),
            )
            .await
        }
    };
    eventually(WAIT, "b checked unhealthy", || async {
        b.health_checks() > 0 && healthy(b.addr).await == 0.0 && healthy(a.addr).await == 1.0
    })
    .await;
    for _ in 0..6 {
        assert_eq!(
            get(&gw, "/x").await.1,
            "a",
            "no request for an unhealthy server"
        );
    }
    assert_eq!(b.count(), 0);

    b.set_healthy(true);
    eventually(WAIT, "b healthy again", || async {
        healthy(b.addr).await == 1.0
    })
    .await;
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        served.insert(get(&gw, "/x").await.1);
    }
    assert_eq!(served.len(), 2, "b serves again: {served:?}");
}

#[tokio::test]
async fn a_health_check_slower_than_its_timeout_fails() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p}}\nupstreams:\n  p:\n    \
         servers: [\"{}\"]\n    health_check: {{path: /slow, interval: 500ms, timeout: 200ms, \
         unhealthy_after: 1}}\n",
        a.addr
    ));
    eventually(WAIT, "a checked unhealthy", || async {
        gw.metric(
            "sse_gateway_upstream_healthy",
            &format!("server=\"{}\"", a.addr),
        )
        .await
            == 0.0
            && a.count() > 0
    })
    .await;
    let (status, body) = get(&gw, "/x").await;
    assert_eq!((status, code(&body).as_str()), (502, "no_healthy_upstream"));
}

#[tokio::test]
async fn no_healthy_server_left_is_502_no_healthy_upstream() {
    let b = Backend::start("b").await;
    b.set_healthy(false);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p}}\nupstreams:\n  p:\n    \
         servers: [\"{}\"]\n    health_check: {{path: /healthz, interval: 200ms, \
         unhealthy_after: 1}}\n",
        b.addr
    ));
    eventually(WAIT, "b checked unhealthy", || async {
        gw.metric(
            "sse_gateway_upstream_healthy",
            &format!("server=\"{}\"", b.addr),
        )
        .await
            == 0.0
    })
    .await;
    let before = b.count();
    let (status, body) = get(&gw, "/x").await;
    assert_eq!((status, code(&body).as_str()), (502, "no_healthy_upstream"));
    assert_eq!(b.count(), before, "nothing sent to the unhealthy server");
}

#[tokio::test]
async fn a_connect_failure_is_502_and_a_get_is_retried_once_on_another_server() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /dead/, upstream: dead}}
  - {{path_prefix: /mixed/, upstream: mixed}}
upstreams:
  dead: {{servers: [\"{dead}\"]}}
  mixed: {{servers: [\"{dead}\", \"{a}\"]}}
",
        dead = dead_addr(),
        a = a.addr
    ));
    let (status, body) = get(&gw, "/dead/x").await;
    assert_eq!(status, 502, "{body}");
    code(&body);
    // Round robin sends every other GET to the dead server: each is retried on the live one.
    for _ in 0..6 {
        assert_eq!(get(&gw, "/mixed/x").await, (200, "a".into()));
    }
    assert_eq!(a.count(), 6);
}

#[tokio::test]
async fn an_upstream_read_timeout_is_504_and_timeout_0s_waits_for_ever() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /short/, upstream: a, strip_prefix: true, timeout: 500ms}}
  - {{path_prefix: /none/, upstream: a, strip_prefix: true, timeout: 0s}}
upstreams:
  a: {{servers: [\"{}\"]}}
",
        a.addr
    ));
    let started = std::time::Instant::now();
    let (status, body) = get(&gw, "/short/slow").await;
    assert_eq!(status, 504, "{body}");
    code(&body);
    assert!(started.elapsed() < SLOW, "answered before the backend did");
    assert_eq!(get(&gw, "/none/slow").await, (200, "a".into()));
}

#[tokio::test]
async fn passive_failures_eject_a_server_for_eject_for() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(Some(503));
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p}}\nupstreams:\n  p:\n    \
         servers: [\"{}\", \"{}\"]\n    passive: {{failures: 2, eject_for: 60s}}\n",
        a.addr, b.addr
    ));
    for _ in 0..12 {
        get(&gw, "/x").await;
    }
    assert_eq!(
        a.count(),
        2,
        "two consecutive 503s eject a; it gets nothing more"
    );
    assert_eq!(b.count(), 10);
    let stats = gw.admin_get("/stats").await;
    let server = server_in_stats(&stats, &a.addr.to_string());
    assert!(
        server
            .iter()
            .any(|(k, v)| k.contains("eject") && v != &json!(false) && !v.is_null()),
        "a shown as ejected: {server:?}"
    );
}

/// Sum of the samples of `name` whose labels include every one of `labels` (in any order).
fn metric_with(text: &str, name: &str, labels: &[String]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The object in `/stats` that describes server `addr` (field names are the gateway's to
/// choose; the contract names what they show).
fn server_in_stats(stats: &Value, addr: &str) -> serde_json::Map<String, Value> {
    fn find(v: &Value, addr: &str) -> Option<serde_json::Map<String, Value>> {
        match v {
            Value::Object(map) => {
                if map.values().any(|x| x == addr) {
                    return Some(map.clone());
                }
                map.values().find_map(|x| find(x, addr))
            }
            Value::Array(items) => items.iter().find_map(|x| find(x, addr)),
            _ => None,
        }
    }
    find(stats, addr).unwrap_or_else(|| panic!("no server {addr} in /stats: {stats}"))
}

#[tokio::test]
async fn stats_and_metrics_show_each_upstream_server() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p, timeout: 0s}}\nupstreams:\n  \
         p: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    for _ in 0..3 {
        get(&gw, "/x").await;
    }
    let _held = http().get(gw.url("/hold")).send().await.expect("hold");
    let stats = gw.admin_get("/stats").await;
    let server = server_in_stats(&stats, &a.addr.to_string());
    for shown in ["health", "eject", "flight"] {
        assert!(
            server.keys().any(|k| k.contains(shown)),
            "no {shown} field for the server: {server:?}"
        );
    }
    let in_flight = server
        .iter()
        .find(|(k, _)| k.contains("flight"))
        .map(|(_, v)| v.clone());
    assert_eq!(in_flight, Some(json!(1)), "the held stream is in flight");

    let text = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let labels = [
        "upstream=\"p\"".to_owned(),
        format!("server=\"{}\"", a.addr),
    ];
    assert!(
        metric_with(&text, "sse_gateway_upstream_requests_total", &labels) >= 3.0,
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("sse_gateway_upstream_requests_total{") && l.contains("class=\"")));
    assert_eq!(
        metric_with(&text, "sse_gateway_upstream_healthy", &labels),
        1.0
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("# TYPE sse_gateway_upstream_") && l.ends_with(" histogram")),
        "an upstream latency histogram"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_appended_and_proto_and_host_are_set() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    gw.raw_request(
        "GET /one HTTP/1.1\r\nHost: site.test:8080\r\nX-Forwarded-For: 203.0.113.9\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    gw.raw_request("GET /two HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        .await;
    let seen = a.requests();
    assert_eq!(
        seen[0].header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some("site.test:8080"));
    assert_eq!(seen[1].header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded_either_way() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    let reply = gw
        .raw_request(
            "GET /hop HTTP/1.1\r\nHost: t\r\nConnection: close, x-my-hop\r\nX-My-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n\
             Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\
             X-End-To-End: kept\r\n\r\n",
        )
        .await;
    let seen = &a.requests()[0];
    for hop in [
        "x-my-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} forwarded: {seen:?}");
    }
    assert!(
        seen.header("connection")
            .is_none_or(|c| !c.to_ascii_lowercase().contains("x-my-hop")),
        "{seen:?}"
    );
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));

    let (status, headers) = head_of(&reply);
    assert_eq!(status, 200);
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!names.contains(&"x-resp-hop"), "{headers:?}");
    assert!(names.contains(&"x-resp-kept"), "{headers:?}");
}

#[tokio::test]
async fn authenticated_routes_need_a_credential_and_name_the_user_to_the_backend() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /private/, upstream: a, auth: authenticated}}
  - {{path_prefix: /public/, upstream: a}}
upstreams:
  a: {{servers: [\"{}\"]}}
auth:
  jwt:
    secret_env: TEST_JWT_SECRET
  api_keys:
    - {{name: admin, key_env: TEST_ADMIN_KEY, publish: [\"*\"], admin: true}}
",
        a.addr
    ));
    let private = gw.url("/private/x");
    for (what, headers) in [
        ("no credential", vec![]),
        ("an unknown key", vec![("x-api-key", "wrong")]),
        ("a bad token", vec![("authorization", "Bearer not.a.jwt")]),
    ] {
        let mut req = http().get(&private);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 401, "{what}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    assert_eq!(a.count(), 0, "refused requests reach no backend");

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token");
    for (credential, user) in [
        (("x-api-key", KEY.to_owned()), "admin"),
        (("authorization", format!("Bearer {token}")), "alice"),
    ] {
        let resp = http()
            .get(&private)
            .header(credential.0, credential.1)
            .header("x-authenticated-user", "mallory")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let seen = a.requests().pop().expect("forwarded");
        assert_eq!(seen.all("x-authenticated-user"), [user]);
    }
    // On a public route a client-sent X-Authenticated-User is removed too.
    let resp = http()
        .get(gw.url("/public/x"))
        .header("x-authenticated-user", "mallory")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        a.requests()
            .pop()
            .expect("forwarded")
            .header("x-authenticated-user"),
        None
    );
}

#[tokio::test]
async fn a_route_rate_limit_refuses_with_429_and_retry_after() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: a, rate_limit: {{per_second: 1, burst: 2}}}}\n\
         upstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    assert_eq!(get(&gw, "/x").await.0, 200);
    assert_eq!(get(&gw, "/x").await.0, 200);
    let refused = http().get(gw.url("/x")).send().await.expect("request");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(a.count(), 2);
}

#[tokio::test]
async fn cors_applies_to_proxied_routes() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    let refused = http()
        .get(gw.url("/x"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert_eq!(a.count(), 0);

    let allowed = http()
        .get(gw.url("/x"))
        .header("origin", "http://app.test")
        .send()
        .await
        .expect("request");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.test"
    );
}

#[tokio::test]
async fn upstream_event_streams_are_relayed_event_by_event_and_a_leaving_client_closes_them() {
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /streams/, upstream: up, timeout: 0s}}\n\
         upstreams:\n  up: {{servers: [\"{}\"]}}\n",
        up.addr
    ));
    // With `Accept: text/event-stream` (as EventSource sends) the gateway relays the stream
    // itself; without, pingora's proxy does. Either way the same events, as they come.
    for accept in ["*/*", "text/event-stream"] {
        let mut client = SseClient::connect_with(
            &gw.url("/streams/notifications"),
            &[("accept-encoding", "gzip, br, zstd"), ("accept", accept)],
        )
        .await;
        assert_eq!(client.status, 200, "{accept}");
        assert!(
            client.headers.get("content-encoding").is_none(),
            "no compression"
        );
        eventually(WAIT, "the upstream holds the stream", || async {
            up.info().await["stream_clients"] == 1
        })
        .await;
        let upstream = gw.admin_get("/stats").await["upstreams"][0]["servers"][0].clone();
        assert_eq!(upstream["in_flight"], 1, "{accept}: {upstream}");
        // Each event arrives before the next one is even sent: nothing is buffered.
        for title in ["first", "second", "third"] {
            up.notify(title).await;
            let event = client.next_event(WAIT).await.expect("relayed event");
            let data: Value = serde_json::from_str(&event.data).expect("JSON");
            assert_eq!(data["title"], title, "{accept}");
        }
        drop(client);
        eventually(WAIT, "the upstream request closed", || async {
            up.info().await["stream_clients"] == 0
        })
        .await;
        eventually(WAIT, "the stream left the in-flight count", || async {
            gw.admin_get("/stats").await["upstreams"][0]["servers"][0]["in_flight"] == 0
        })
        .await;
    }
    // Each stream counted once when it ended, whichever way it went.
    let labels = ["upstream=\"up\"".to_owned(), "class=\"2xx\"".to_owned()];
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_with(&text, "sse_gateway_upstream_requests_total", &labels),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_before_the_upstream_answers_closes_the_upstream_request() {
    // An upstream that takes requests and never answers; it reports each connection's end.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<&'static str>(8);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = seen_tx.send("request").await;
                // No answer: wait for the gateway to close its side.
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = seen_tx.send("closed").await;
            });
        }
    });
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /hold/, upstream: up, timeout: 0s}}\n\
         upstreams:\n  up: {{servers: [\"{addr}\"]}}\n"
    ));
    for accept in ["text/event-stream", "*/*"] {
        let mut client = tokio::net::TcpStream::connect(gw.addr)
            .await
            .expect("connect");
        client
            .write_all(
                format!("GET /hold/x HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let got = tokio::time::timeout(WAIT, seen.recv())
            .await
            .expect("in time");
        assert_eq!(got, Some("request"), "{accept}");
        drop(client);
        let got = tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("{accept}: the upstream request was not closed"));
        assert_eq!(got, Some("closed"), "{accept}");
        eventually(WAIT, "the request left the in-flight count", || async {
            gw.admin_get("/stats").await["upstreams"][0]["servers"][0]["in_flight"] == 0
        })
        .await;
    }
}

/// How often the WebSocket test tries its handshake. pingora 0.9.1 tears an upgrade down right
/// after its 101 when it happens to read the upstream's 101 before the request's empty body
/// (cloudflare/pingora#946; the fix, PR #947, is not released): the client gets the 101, then
/// an end of file. It is rare, and seen only on a busy machine; a WebSocket client reconnects,
/// and so does this test.
const UPGRADE_ATTEMPTS: usize = 5;

#[tokio::test]
async fn websocket_upgrades_are_proxied_as_upgrades() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /ws, upstream: a, timeout: 0s}}\n\
         upstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    let mut torn_down = Vec::new();
    for _ in 0..UPGRADE_ATTEMPTS {
        match upgrade_and_echo(gw.addr).await {
            Ok(()) => {
                assert_eq!(a.requests()[0].header("upgrade"), Some("websocket"));
                return;
            }
            Err(e) => torn_down.push(e),
        }
    }
    panic!("no tunnel in {UPGRADE_ATTEMPTS} upgrades: {torn_down:?}");
}

/// One WebSocket handshake through the gateway, which must answer 101, then one frame sent and
/// echoed through the tunnel. `Err` when the tunnel closed after the 101 (see
/// [`UPGRADE_ATTEMPTS`]).
async fn upgrade_and_echo(gw: std::net::SocketAddr) -> Result<(), String> {
    let mut sock = tokio::net::TcpStream::connect(gw).await.expect("connect");
    sock.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
            .await
            .expect("101 in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let (status, _) = head_of(&String::from_utf8_lossy(&got));
    assert_eq!(status, 101);
    // The connection is now a tunnel both ways.
    sock.write_all(b"\x81\x05hello")
        .await
        .map_err(|e| e.to_string())?;
    let mut echo = [0u8; 7];
    tokio::time::timeout(WAIT, sock.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .map_err(|e| format!("after the 101: {e}"))?;
    assert_eq!(&echo, b"\x81\x05hello");
    Ok(())
}

#[tokio::test]
async fn https_upstreams_verify_with_ca_file_and_send_sni() {
    let pki = pki::Pki::new(&["backend.test"]);
    let tls_backend = pki::TlsEcho::start(&pki).await;
    let gw = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /trusted/, upstream: trusted, strip_prefix: true}}
  - {{path_prefix: /untrusted/, upstream: untrusted, strip_prefix: true}}
upstreams:
  trusted: {{servers: [\"{addr}\"], tls: true, sni: backend.test, ca_file: \"{ca}\", connect_timeout: 2s}}
  untrusted: {{servers: [\"{addr}\"], tls: true, sni: backend.test}}
",
        addr = tls_backend.addr,
        ca = pki.ca_file.display()
    ));
    assert_eq!(get(&gw, "/trusted/x").await, (200, "over tls".into()));
    assert_eq!(tls_backend.server_names(), ["backend.test"]);
    let (status, body) = get(&gw, "/untrusted/x").await;
    assert_eq!(status, 502, "a certificate no configured CA signed: {body}");
}

#[tokio::test]
async fn a_source_on_an_https_pool_verifies_with_its_ca_file_and_sends_sni() {
    let pki = pki::Pki::new(&["backend.test"]);
    let backend = pki::TlsEcho::answering(
        &pki,
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
          id: 1\ndata: read over tls\n\n",
    )
    .await;
    let gw = Gateway::start(&format!(
        "upstreams:
  trusted: {{servers: [\"{addr}\"], tls: true, sni: backend.test, ca_file: \"{ca}\"}}
  untrusted: {{servers: [\"{addr}\"], tls: true, sni: backend.test}}
sources:
  - {{name: trusted, upstream: trusted, path: /s, channel: good}}
  - {{name: untrusted, upstream: untrusted, path: /s, channel: bad}}
",
        addr = backend.addr,
        ca = pki.ca_file.display()
    ));
    let mut good = SseClient::connect(&gw.url("/events?channel=good")).await;
    let event = good.next_event(WAIT).await.expect("an event relayed");
    assert_eq!(event.data, "read over tls");
    assert!(
        backend
            .server_names()
            .iter()
            .all(|name| name == "backend.test"),
        "the pool's sni: {:?}",
        backend.server_names()
    );
    // Without the pool's CA the upstream's certificate is refused: a connect error, no event.
    eventually(WAIT, "the untrusted source failed to connect", || async {
        let stats = gw.admin_get("/stats").await;
        stats["sources"][1]["errors_total"]["connect"].as_u64() >= Some(1)
    })
    .await;
    assert_ne!(
        gw.admin_get("/stats").await["sources"][1]["state"],
        "connected"
    );
}

#[tokio::test]
async fn trusted_proxies_make_the_last_untrusted_forwarded_address_the_client_ip() {
    let gw =
        Gateway::start("trusted_proxies: [127.0.0.0/8]\nlimits:\n  max_connections_per_ip: 1\n");
    let stream = |xff: &'static str| {
        let url = gw.url("/events?channel=a");
        async move { SseClient::connect_with(&url, &[("x-forwarded-for", xff)]).await }
    };
    let first = stream("10.1.1.1").await;
    let other = stream("10.1.1.2").await;
    // The hop added by a trusted proxy (127.0.0.5) is skipped.
    let through_two = stream("10.9.9.9, 127.0.0.5").await;
    assert_eq!(
        (first.status, other.status, through_two.status),
        (200, 200, 200)
    );
    assert_eq!(
        stream("10.1.1.1").await.status,
        429,
        "10.1.1.1 holds its one stream"
    );
    let clients = gw.admin_get("/clients").await;
    let ips: std::collections::BTreeSet<&str> = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["ip"].as_str().expect("ip"))
        .collect();
    assert_eq!(ips, ["10.1.1.1", "10.1.1.2", "10.9.9.9"].into());

    // From a peer outside trusted_proxies the header is ignored.
    let gw = Gateway::start("trusted_proxies: [192.0.2.0/24]\n");
    let _s = SseClient::connect_with(
        &gw.url("/events?channel=a"),
        &[("x-forwarded-for", "10.1.1.1")],
    )
    .await;
    let clients = gw.admin_get("/clients").await;
    assert_eq!(clients["clients"][0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn least_connections_refills_the_server_whose_streams_ended_when_clients_churn() {
    let servers = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /, upstream: p, timeout: 0s}}\nupstreams:\n  \
         p: {{servers: [\"{}\", \"{}\", \"{}\"], balance: least_connections}}\n",
        servers[0].addr, servers[1].addr, servers[2].addr
    ));
    let holds_on = |name: &str| -> usize {
        servers.iter().find(|s| s.name() == name).map_or(0, |s| {
            s.requests().iter().filter(|r| r.target == "/hold").count()
        })
    };
    // Six long-lived upstream streams: two on each server.
    let mut streams = Vec::new();
    for _ in 0..6 {
        // As EventSource asks: relayed off pingora's proxy (front::relay), counted all the same.
        let held = http()
            .get(gw.url("/hold"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("hold");
        assert_eq!(held.status(), 200);
        streams.push(held);
    }
    for s in &servers {
        assert_eq!(holds_on(s.name()), 2, "{}", s.name());
    }
    // The clients of server a leave (their upstream streams close); two new ones come.
    let on_a: Vec<usize> = {
        let mut seen = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            let from = stream.headers()["x-backend"].to_str().unwrap_or("");
            if from == servers[0].name() {
                seen.push(i);
            }
        }
        seen
    };
    assert_eq!(on_a.len(), 2, "each stream names its server");
    for i in on_a.into_iter().rev() {
        drop(streams.remove(i));
    }
    eventually(WAIT, "a's streams closed upstream", || async {
        gw.admin_get("/stats").await["upstreams"][0]["servers"]
            .as_array()
            .is_some_and(|servers| servers.iter().any(|s| s["in_flight"] == 0))
    })
    .await;
    for _ in 0..2 {
        let held = http()
            .get(gw.url("/hold"))
            .header("accept", "text/event-stream");
        streams.push(held.send().await.expect("hold"));
    }
    // Round robin would have put one of them on b or c; least connections refills a.
    assert_eq!(holds_on(servers[0].name()), 4);
    assert_eq!(holds_on(servers[1].name()), 2);
    assert_eq!(holds_on(servers[2].name()), 2);
}

#[tokio::test]
async fn smuggling_attempts_on_a_route_are_refused_before_anything_is_forwarded() {
    let a = Backend::start("a").await;
    let gw = Gateway::start(&format!(
        "routes:\n  - {{path_prefix: /api/, upstream: a}}\nupstreams:\n  a: {{servers: [\"{}\"]}}\n",
        a.addr
    ));
    for (what, request) in [
        (
            "Content-Length and Transfer-Encoding",
            "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n\
             abcdGET /api/smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
    ] {
        let reply = gw.raw_request(request).await;
        let (status, _) = head_of(&reply);
        assert_eq!(status, 400, "{what}: {reply}");
    }
    assert!(
        a.requests().is_empty(),
        "nothing reached the backend: {:?}",
        a.requests()
    );
}
