//! How streams end: lifetime, slow consumers, dead peers, graceful drain, and signals.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sse_gateway::sse::parse::ParsedItem;
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(10);

fn retries(items: &[ParsedItem]) -> Vec<u64> {
    items
        .iter()
        .filter_map(|i| match i {
            ParsedItem::Retry(ms) => Some(*ms),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn streams_end_at_their_jittered_lifetime_with_a_retry_hint() {
    let gw = Gateway::start("sse:\n  max_connection_lifetime: 1s\n  retry: 1s\n");
    let started = Instant::now();
    let mut c = SseClient::connect(&gw.url("/events?channel=l")).await;
    let items = c.until_end(T).await;
    let lived = started.elapsed();
    // At least the lifetime less its 10% jitter; at most three times the longest, for a busy
    // machine, which still tells it from the one-hour default.
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_millis(3 * 1100),
        "{lived:?}"
    );
    let r = retries(&items);
    assert!(
        r.last().is_some_and(|ms| (1000..=2000).contains(ms)),
        "{r:?}"
    );
    eventually(T, "the close counted as lifetime", || async {
        gw.metric("sse_gateway_streams_closed_total", "reason=\"lifetime\"")
            .await
            == 1.0
    })
    .await;
}

/// Opens a stream on a raw socket and never reads from it.
async fn non_reading_stream(gw: &Gateway, channel: &str) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // The smallest receive buffer, so the server's writes back up quickly.
    let sock = {
        let std = sock.into_std().unwrap();
        let s2 = socket2::Socket::from(std);
        s2.set_recv_buffer_size(4096).unwrap();
        tokio::net::TcpStream::from_std(s2.into()).unwrap()
    };
    let mut sock = sock;
    let req = format!("GET /events?channel={channel} HTTP/1.1\r\nHost: t\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_slows_no_one() {
    let gw = Gateway::start("sse:\n  client_queue: 64\n");
    let _stuck = non_reading_stream(&gw, "bulk").await;
    let mut healthy = SseClient::connect(&gw.url("/events?channel=bulk")).await;
    eventually(T, "both subscribed", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 2
    })
    .await;
    let reader = tokio::spawn(async move {
        let n = healthy.events(300, T).await.len();
        (n, healthy)
    });
    let payload = "x".repeat(32 * 1024);
    for _ in 0..300 {
        gw.publish_ok("bulk", "message", &payload).await;
    }
    // The reading client gets all 300 (9.6 MB) while the other one is cut off.
    let (received, _healthy) = reader.await.unwrap();
    assert_eq!(received, 300);
    eventually(T, "slow consumer counted", || async {
        gw.metric("sse_gateway_slow_consumer_disconnects_total", "")
            .await
            == 1.0
    })
    .await;
    eventually(T, "stuck stream gone", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_no_bytes_for_idle_timeout_is_dropped() {
    // A queue big enough that the stream is not a slow consumer: only the stalled write ends it.
    let gw = Gateway::start("sse:\n  client_queue: 100000\n  idle_timeout: 1s\n");
    let _stuck = non_reading_stream(&gw, "idle").await;
    eventually(T, "subscribed", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 1
    })
    .await;
    let payload = "y".repeat(60 * 1024);
    for _ in 0..100 {
        gw.publish_ok("idle", "message", &payload).await;
    }
    eventually(T, "idle timeout counted", || async {
        gw.metric(
            "sse_gateway_streams_closed_total",
            "reason=\"idle_timeout\"",
        )
        .await
            == 1.0
    })
    .await;
    assert_eq!(
        gw.metric("sse_gateway_slow_consumer_disconnects_total", "")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_over_the_grace_period_and_exits_zero() {
    let mut gw = Gateway::start("shutdown:\n  grace_period: 2s\nsse:\n  retry: 1s\n");
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(SseClient::connect(&gw.url("/events?channel=d")).await);
    }
    eventually(T, "20 streams", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 20
    })
    .await;
    let last = gw.publish_ok("d", "message", "before drain").await;

    // Every stream gets the event, then a retry hint, then its end, spread over the grace
    // period. Each is read from before the signal, so each end is seen when it comes.
    let started = Instant::now();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let last = last.clone();
            tokio::spawn(async move {
                let items = s.until_end(T).await;
                let ended = started.elapsed();
                let got_last = s.raw.windows(last.len()).any(|w| w == last.as_bytes());
                assert!(got_last, "queued event flushed before close");
                let r = retries(&items);
                assert!(
                    r.last().is_some_and(|ms| (1000..=2000).contains(ms)),
                    "{r:?}"
                );
                ended
            })
        })
        .collect();
    gw.signal("TERM");

    // Readiness, new streams and publishes are refused with 503 while draining.
    eventually(T, "readyz 503", || async {
        http()
            .get(gw.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    let resp = http()
        .get(gw.url("/events?channel=d"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let (status, body) = gw
        .publish(serde_json::json!({"channel": "d", "data": "late"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("draining"))
    );

    let mut ended_at = Vec::new();
    for r in readers {
        ended_at.push(r.await.unwrap());
    }
    let spread = ended_at
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*ended_at.iter().min().unwrap());
    assert!(
        spread > Duration::from_millis(200),
        "closes were not spread: {ended_at:?}"
    );
    // Three times the 2 s grace period, for a busy machine; still short of the 10 s default.
    assert!(
        *ended_at.iter().max().unwrap() < 3 * Duration::from_secs(2),
        "{ended_at:?}"
    );
    let status = gw.wait_exit(T);
    assert!(status.success(), "{status:?}\n{}", gw.logs());
}

#[tokio::test]
async fn sigint_drains_too_and_sighup_does_not_kill() {
    let mut gw = Gateway::start("shutdown:\n  grace_period: 500ms\n");
    let mut c = SseClient::connect(&gw.url("/events?channel=h")).await;
    gw.signal("HUP");
    gw.publish_ok("h", "message", "still here").await;
    assert_eq!(c.next_event(T).await.unwrap().data, "still here");
    gw.signal("INT");
    c.until_end(T).await;
    assert!(gw.wait_exit(T).success());
}

#[tokio::test]
async fn global_stream_limit_answers_503_with_retry_after() {
    let gw = Gateway::start("limits:\n  max_connections: 2\n");
    let _a = SseClient::connect(&gw.url("/events?channel=x")).await;
    let _b = SseClient::connect(&gw.url("/events?channel=x")).await;
    let resp = http()
        .get(gw.url("/events?channel=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "at_capacity");
    drop(_a);
    eventually(T, "slot freed", || async {
        http()
            .get(gw.url("/events?channel=x"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}
