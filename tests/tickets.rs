//! Connect tickets as a user of several nodes sees them: with Redis, a ticket from any node opens
//! a stream on any node, once, even when two nodes are handed it at the same moment; a stream
//! refused by a connection limit leaves its ticket usable; `POST /tickets` is rate limited per
//! credential across the cluster; a Redis outage is a 503, never a wrong answer. The memory
//! broker keeps its tickets in the process and spends them the same way.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis::{node, wait_ready, RedisServer};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};
use sse_gateway::sse::parse::ParsedItem;

const WAIT: Duration = Duration::from_secs(15);

/// A ticket rate that a quick loop of requests runs into.
const TICKET_RATE: &str = "limits:\n  ticket_rate: {per_second: 1, burst: 3}\n";

/// A token for `sub`, subscribing to its own `secret.<sub>.*` channels, expiring `in_secs` from
/// now.
fn token(sub: &str, in_secs: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims =
        json!({"sub": sub, "exp": now.as_secs() + in_secs, "subscribe": ["secret.{sub}.*"]});
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    encode(&Header::default(), &claims, &key).unwrap()
}

/// A ticket from `gw` for the admin key.
async fn ticket(gw: &Gateway) -> String {
    let (status, _, body) = post_ticket(gw, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 201, "{body}");
    body["ticket"].as_str().expect("ticket").to_owned()
}

/// The Redis key of a ticket: its SHA-256, never the ticket itself.
fn redis_key(ticket: &str) -> String {
    let hash: String = Sha256::digest(ticket.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{{sse-gateway}}:ticket:{hash}")
}

#[tokio::test]
async fn a_ticket_from_one_node_opens_a_stream_on_another_once() {
    let redis = RedisServer::start();
    let a = node(&redis, &jwt_config("")).await;
    let b = node(&redis, &jwt_config("")).await;
    let bearer = format!("Bearer {}", token("alice", 600));
    let (status, headers, body) = post_ticket(&a, &[("authorization", &bearer)]).await;
    assert_eq!((status, body["expires_in"].as_u64()), (201, Some(30)));
    assert_eq!(headers["cache-control"], "no-store");
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();

    // Redis holds it under its hash, expiring with it; a dump of Redis holds no ticket.
    let ttl = redis.command(&format!("PTTL {}", redis_key(&ticket)));
    let ttl: i64 = ttl.trim_start_matches(':').parse().expect("PTTL");
    assert!(0 < ttl && ttl <= 30_000, "{ttl} ms");
    let plain = format!("EXISTS {{sse-gateway}}:ticket:{ticket}");
    assert_eq!(redis.command(&plain), ":0");

    // On B it stands for alice, with her rights: bob's channel is refused, and the refusal
    // does not use it up.
    let bobs = format!("/events?channel=secret.bob.x&ticket={ticket}");
    assert_eq!(
        status_and_code(&b, &bobs, &[]).await,
        (403, "forbidden".into())
    );
    let path = format!("/events?channel=secret.alice.x&ticket={ticket}");
    let mut stream = SseClient::connect(&b.url(&path)).await;
    assert_eq!(stream.status, 200);
    let id = a.publish_ok("secret.alice.x", "note", "hello").await;
    let event = stream.next_event(WAIT).await.expect("the event");
    assert_eq!((event.id, event.data), (id, "hello".to_owned()));
    let clients = b.admin_get("/clients").await;
    assert_eq!(clients["clients"][0]["principal"], "alice");

    // Spent: on neither node a second time, and gone from Redis.
    for gw in [&a, &b] {
        assert_eq!(
            status_and_code(gw, &path, &[]).await,
            (401, "invalid_ticket".into())
        );
    }
    assert_eq!(
        redis.command(&format!("EXISTS {}", redis_key(&ticket))),
        ":0"
    );

    // The token's expiry travels with the ticket: the stream on B ends at it.
    let bearer = format!("Bearer {}", token("alice", 3));
    let (status, _, body) = post_ticket(&b, &[("authorization", &bearer)]).await;
    assert_eq!(status, 201);
    assert!(body["expires_in"].as_u64() <= Some(3), "{body}");
    let path = format!(
        "/events?channel=secret.alice.y&ticket={}",
        body["ticket"].as_str().expect("ticket")
    );
    let mut stream = SseClient::connect(&a.url(&path)).await;
    assert_eq!(stream.status, 200);
    let items = stream.until_end(WAIT).await;
    let last = items.iter().rev().find_map(|item| match item {
        ParsedItem::Event(e) => Some(e.event.as_str()),
        _ => None,
    });
    assert_eq!(last, Some("token_expired"));
}

#[tokio::test]
async fn a_ticket_presented_to_two_nodes_at_once_opens_one_stream() {
    let redis = RedisServer::start();
    let extra = jwt_config("") + "limits:\n  ticket_rate: {per_second: 1000, burst: 1000}\n";
    let a = node(&redis, &extra).await;
    let b = node(&redis, &extra).await;
    for round in 0..20 {
        let issuer = if round % 2 == 0 { &a } else { &b };
        let ticket = ticket(issuer).await;
        let path = format!("/events?channel=members.x&ticket={ticket}");
        let (on_a, on_b) = tokio::join!(
            status_and_code(&a, &path, &[]),
            status_and_code(&b, &path, &[])
        );
        let mut answers = [on_a, on_b];
        answers.sort();
        assert_eq!(
            answers,
            [(200, String::new()), (401, "invalid_ticket".into())],
            "round {round}"
        );
    }
}

/// While `holder` takes the last place a limit allows, a ticket from the first of `nodes` is
/// refused by each of them with `refused` (status, code) and stays usable: once the holder
/// leaves, it opens a stream on the last node, and after that on none.
async fn a_refusal_leaves_the_ticket_usable(
    nodes: &[&Gateway],
    holder: SseClient,
    refused: (u16, &str),
) {
    assert_eq!(holder.status, 200);
    let ticket = ticket(nodes[0]).await;
    let path = format!("/events?channel=members.x&ticket={ticket}");
    for gw in nodes {
        let (status, code) = status_and_code(gw, &path, &[]).await;
        assert_eq!((status, code.as_str()), refused);
    }
    drop(holder);
    let last = nodes[nodes.len() - 1];
    eventually(
        WAIT,
        "the ticket opens a stream once there is room",
        || async {
            match status_and_code(last, &path, &[]).await {
                (200, _) => true,
                (status, code) if (status, code.as_str()) == refused => false,
                other => panic!("{other:?}, expected {refused:?} or 200: the refusal spent it?"),
            }
        },
    )
    .await;
    for gw in nodes {
        assert_eq!(
            status_and_code(gw, &path, &[]).await,
            (401, "invalid_ticket".into())
        );
    }
}

#[tokio::test]
async fn a_stream_refused_by_a_connection_limit_leaves_its_ticket_usable_on_any_node() {
    let redis = RedisServer::start();
    let extra = jwt_config("") + "limits:\n  max_connections_per_ip: 1\n";
    let a = node(&redis, &extra).await;
    let b = node(&redis, &extra).await;
    // The address's one place in the cluster, held on A.
    let holder = SseClient::connect(&a.url("/events?channel=news")).await;
    a_refusal_leaves_the_ticket_usable(&[&a, &b], holder, (429, "too_many_connections")).await;
}

#[tokio::test]
async fn with_the_memory_broker_a_refused_stream_leaves_its_ticket_usable_too() {
    let gw = Gateway::start(&(jwt_config("") + "limits:\n  max_connections: 1\n"));
    let holder = SseClient::connect(&gw.url("/events?channel=news")).await;
    a_refusal_leaves_the_ticket_usable(&[&gw], holder, (503, "at_capacity")).await;
}

/// Asks tickets for the admin key, round the `nodes`, as fast as they answer, until one is
/// refused, under [`TICKET_RATE`]: no more are issued than its burst plus what refilled
/// meanwhile, the refusal is 429 `rate_limited` with `Retry-After`, and another credential is
/// not held up.
async fn asks_within_the_ticket_rate(nodes: &[&Gateway]) {
    let run = until_refused(50, |n| {
        let gw = nodes[n % nodes.len()];
        async move {
            let (status, headers, body) = post_ticket(gw, &[("x-api-key", KEY)]).await;
            match status {
                201 => Ok(()),
                _ => Err((status, headers, body)),
            }
        }
    })
    .await;
    run.assert_bucket(3, 1);
    let (status, headers, body) = &run.refused;
    assert_eq!(
        (*status, error_code(body)),
        (429, Some("rate_limited")),
        "{body}"
    );
    let retry: u64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    let other = post_ticket(nodes[0], &[("x-api-key", LIMITED_KEY)]).await;
    assert_eq!(other.0, 201, "another credential has a bucket of its own");
}

#[tokio::test]
async fn tickets_are_rate_limited_per_credential_across_nodes() {
    let redis = RedisServer::start();
    let extra = jwt_config("") + TICKET_RATE;
    let a = node(&redis, &extra).await;
    let b = node(&redis, &extra).await;
    asks_within_the_ticket_rate(&[&a, &b]).await;
}

#[tokio::test]
async fn with_the_memory_broker_tickets_are_rate_limited_too() {
    let gw = Gateway::start(&(jwt_config("") + TICKET_RATE));
    asks_within_the_ticket_rate(&[&gw]).await;
}

#[tokio::test]
async fn without_redis_tickets_get_503_and_work_again_when_it_is_back() {
    let mut redis = RedisServer::start();
    let a = node(&redis, &jwt_config("")).await;
    let before = ticket(&a).await;
    let path = format!("/events?channel=members.x&ticket={before}");

    redis.stop();
    eventually(WAIT, "POST /tickets refused with 503", || async {
        let (status, headers, body) = post_ticket(&a, &[("x-api-key", KEY)]).await;
        status == 503
            && body["error"]["code"] == "broker_unavailable"
            && headers.contains_key("retry-after")
    })
    .await;
    assert_eq!(
        status_and_code(&a, &path, &[]).await,
        (503, "broker_unavailable".into())
    );

    // Redis comes back empty (no persistence): the old ticket is gone, new ones work.
    redis.restart();
    wait_ready(&a).await;
    assert_eq!(
        status_and_code(&a, &path, &[]).await,
        (401, "invalid_ticket".into())
    );
    let after = ticket(&a).await;
    let path = format!("/events?channel=members.x&ticket={after}");
    assert_eq!(status_and_code(&a, &path, &[]).await.0, 200);
}
