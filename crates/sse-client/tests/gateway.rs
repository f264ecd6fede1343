//! The client against a live gateway process: resume across kicks, `reset`, token expiry with
//! and without a refresh, tickets, refusals, revoked rights, `Retry-After`, binary data, and
//! silent connections.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::json;
use sse_client::{Credential, Error, Message, SseClient};
use tokio::sync::Notify;

/// A client of `channel` on `gw` with quick reconnects.
fn client(gw: &Gateway, channel: &str) -> SseClient {
    SseClient::new(gw.url("/events"))
        .channel(channel)
        .backoff(FAST)
}

#[tokio::test]
async fn resumes_across_kicks_without_losing_or_repeating_an_event() {
    let gw = Gateway::start("");
    let mut reader = Reader::spawn(client(&gw, "feed").stream().unwrap());
    let mut current = gw.the_stream_on("feed", None).await;
    let mut published = Vec::new();
    for round in 0..4 {
        if round > 0 {
            gw.kick(&current).await;
        }
        // Published right after the kick: mostly while the client is away, so they come back
        // in its replay, and the rest live.
        for n in 0..15 {
            let data = format!("r{round}-{n}");
            published.push((gw.publish_ok("feed", "tick", &data).await, data));
        }
        if (1..3).contains(&round) {
            current = gw.the_stream_on("feed", Some(&current)).await;
        }
    }
    let mut received = Vec::new();
    for _ in 0..published.len() {
        let event = reader.event().await;
        received.push((event.id, event.data));
    }
    assert_eq!(received, published, "every event once, in order");

    let end = gw.publish_ok("feed", "tick", "end").await;
    let (last, connections) = reader.next().await.expect("the sentinel");
    assert!(
        matches!(last, Ok(Message::Event(e)) if e.id == end),
        "nothing more came before it"
    );
    assert_eq!(connections, 4, "one connection, then one per kick");
}

#[tokio::test]
async fn the_gateways_retry_is_waited_out_after_a_drop() {
    let gw = Gateway::start("sse:\n  retry: 3s\n");
    let _reader = Reader::spawn(client(&gw, "news").stream().unwrap());
    let first = gw.the_stream_on("news", None).await;
    gw.kick(&first).await;
    let kicked_at = Instant::now();
    gw.the_stream_on("news", Some(&first)).await;
    let waited = kicked_at.elapsed();
    // `retry: 3000` against a backoff of 20 ms; the kick ended the stream a little before it
    // was answered, hence the margin.
    assert!(
        waited >= Duration::from_secs(2),
        "connected again after {waited:?}"
    );
}

#[tokio::test]
async fn a_resume_point_the_gateway_cannot_resume_from_is_surfaced_as_a_reset() {
    // The client waits out `retry` before it connects again: time to publish while it is away.
    let gw = Gateway::start("sse:\n  retry: 500ms\n");
    for (from, reason) in [("1-1", "unknown_id"), ("not-an-id", "malformed_id")] {
        let channel = format!("news.{reason}");
        let stream = client(&gw, &channel).last_event_id(from).stream().unwrap();
        let mut reader = Reader::spawn(stream);
        let reset = match reader.next().await {
            Some((Ok(Message::Reset(reset)), _)) => reset,
            other => panic!("expected a reset, got {other:?}"),
        };
        assert_eq!(reset.reason, reason, "from {from}");

        // The reset's id is the new resume point: after a kick the client resumes from it,
        // gets what it missed meanwhile, and no second reset.
        let kicked = gw.the_stream_on(&channel, None).await;
        gw.kick(&kicked).await;
        // The kick only asks the stream to end: until it has, an event can still go out on
        // the old connection (and count as delivered there).
        gw.until_gone(&channel, &kicked).await;
        let missed = gw.publish_ok(&channel, "note", "while away").await;
        let (item, connections) = reader.next().await.expect("an item");
        assert!(
            matches!(item, Ok(Message::Event(e)) if e.id == missed),
            "resumed from the reset"
        );
        assert_eq!(connections, 2);
    }
}

/// What a refresh callback did: how often it was called, and when the test lets it answer.
#[derive(Default)]
struct Refresh {
    calls: AtomicUsize,
    asked: Notify,
    answer: Notify,
}

/// A token on `secret.alice` that expires in 2 to 3 s is refreshed when the gateway ends the
/// stream at its expiry; events published meanwhile arrive after the reconnect.
async fn token_expiry_is_refreshed(tickets: bool) {
    let gw = Gateway::start("");
    let refresh = Arc::new(Refresh::default());
    let callback = refresh.clone();
    let stream = client(&gw, "secret.alice")
        .credential(Credential::Bearer(token("alice", &["secret.alice"], 3)))
        .tickets(tickets)
        .on_token_expired(move || {
            let refresh = callback.clone();
            async move {
                refresh.calls.fetch_add(1, Ordering::SeqCst);
                refresh.asked.notify_one();
                refresh.answer.notified().await;
                Some(Credential::Bearer(token("alice", &["secret.alice"], 600)))
            }
        })
        .stream()
        .unwrap();
    let mut reader = Reader::spawn(stream);
    gw.the_stream_on("secret.alice", None).await;
    gw.publish_ok("secret.alice", "note", "before").await;
    assert_eq!(reader.event().await.data, "before");

    tokio::time::timeout(WAIT, refresh.asked.notified())
        .await
        .expect("the client asks for a new credential at the token's expiry");
    let missed = gw.publish_ok("secret.alice", "note", "while expired").await;
    refresh.answer.notify_one();
    let (item, connections) = reader.next().await.expect("an item");
    assert!(
        matches!(item, Ok(Message::Event(e)) if e.id == missed),
        "resumed where it stopped"
    );
    assert_eq!(connections, 2);
    assert_eq!(refresh.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_expiry_asks_the_app_for_a_new_credential_and_resumes() {
    token_expiry_is_refreshed(false).await;
}

#[tokio::test]
async fn token_expiry_with_tickets_fetches_the_next_ticket_with_the_new_credential() {
    token_expiry_is_refreshed(true).await;
}

#[tokio::test]
async fn token_expiry_without_a_refresh_ends_the_stream_with_token_expired() {
    let gw = Gateway::start("");
    let stream = client(&gw, "secret.alice")
        .credential(Credential::Bearer(token("alice", &["secret.alice"], 3)))
        .stream()
        .unwrap();
    let mut reader = Reader::spawn(stream);
    gw.the_stream_on("secret.alice", None).await;
    gw.publish_ok("secret.alice", "note", "before").await;
    assert_eq!(reader.event().await.data, "before");
    let error = reader.final_error().await;
    assert!(matches!(error, Error::TokenExpired), "{error:?}");
}

#[tokio::test]
async fn tickets_are_fresh_for_every_connection_and_the_credential_stays_off_the_stream() {
    let gw = Gateway::start("");
    let tap = Tap::start(gw.addr).await;
    let stream = SseClient::new(tap.url("/events"))
        .channel("secret.alice")
        .backoff(FAST)
        .credential(Credential::Bearer(token("alice", &["secret.alice"], 600)))
        .tickets(true)
        .stream()
        .unwrap();
    let mut reader = Reader::spawn(stream);
    let first = gw.the_stream_on("secret.alice", None).await;
    let seen = gw.publish_ok("secret.alice", "note", "one").await;
    assert_eq!(reader.event().await.id, seen);
    gw.kick(&first).await;
    // Once the kicked stream has ended, the next event can only come on a new connection.
    gw.until_gone("secret.alice", &first).await;
    let missed = gw.publish_ok("secret.alice", "note", "two").await;
    assert_eq!(reader.event().await.id, missed);

    let heads = tap.request_heads();
    let posts: Vec<_> = heads
        .iter()
        .filter(|h| h.starts_with("post /tickets "))
        .collect();
    let gets: Vec<_> = heads
        .iter()
        .filter(|h| h.starts_with("get /events?"))
        .collect();
    assert_eq!((posts.len(), gets.len()), (2, 2), "{heads:#?}");
    assert!(posts
        .iter()
        .all(|h| h.contains("\r\nauthorization: bearer ")));
    assert!(gets
        .iter()
        .all(|h| !h.contains("authorization") && h.contains("&ticket=")));
    let ticket = |head: &str| head.split("ticket=").nth(1).map(|t| t[..64].to_owned());
    assert_ne!(
        ticket(gets[0]),
        ticket(gets[1]),
        "a new ticket per connection"
    );
    assert!(
        gets[1].contains(&format!("\r\nlast-event-id: {seen}")),
        "{}",
        gets[1]
    );
}

#[tokio::test]
async fn refusals_another_try_cannot_mend_end_the_stream_with_the_gateways_error() {
    let gw = Gateway::start("");
    let no_credential = client(&gw, "secret.alice");
    let wrong_channel = client(&gw, "secret.alice").credential(Credential::Bearer(token(
        "bob",
        &["secret.bob"],
        600,
    )));
    for (client, want_status, want_code) in [
        (no_credential, 401, "unauthorized"),
        (wrong_channel, 403, "forbidden"),
    ] {
        let mut reader = Reader::spawn(client.stream().unwrap());
        match reader.final_error().await {
            Error::Status { status, code, .. } => {
                assert_eq!((status, code.as_str()), (want_status, want_code))
            }
            other => panic!("expected {want_status}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn rights_revoked_by_a_reload_end_the_stream_with_access_revoked() {
    let gw = Gateway::start("");
    let mut reader = Reader::spawn(client(&gw, "news").stream().unwrap());
    gw.the_stream_on("news", None).await;
    gw.publish_ok("news", "note", "one").await;
    assert_eq!(reader.event().await.data, "one");

    gw.rewrite_config(
        "channels:\n  - {name: news, subscribe: claims}\n  - {name: \"*\", subscribe: public}\n",
    );
    let error = reader.final_error().await;
    assert!(
        matches!(error, Error::AccessRevoked),
        "{error:?}\n{}",
        gw.logs()
    );
}

/// A gateway that takes one stream, and the open stream that takes that place: further streams
/// get 503 `at_capacity` with `Retry-After: 5` until it is dropped.
async fn gateway_at_capacity() -> (Gateway, reqwest::Response) {
    let gw = Gateway::start("limits:\n  max_connections: 1\n");
    let occupant = http()
        .get(gw.url("/events?channel=hold"))
        .send()
        .await
        .expect("occupant");
    assert_eq!(occupant.status(), 200);
    gw.the_stream_on("hold", None).await;
    (gw, occupant)
}

#[tokio::test]
async fn a_503_with_retry_after_is_waited_out_before_connecting_again() {
    let (gw, occupant) = gateway_at_capacity().await;

    let mut reader = Reader::spawn(client(&gw, "news").stream().unwrap());
    let refused = || {
        gw.metric(
            "sse_gateway_requests_rejected_total",
            "code=\"at_capacity\"",
        )
    };
    let deadline = Instant::now() + WAIT;
    while refused().await < 1.0 {
        assert!(Instant::now() < deadline, "the client was never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_at = Instant::now();
    drop(occupant);
    gw.the_stream_on("news", None).await;
    let waited = refused_at.elapsed();
    // `Retry-After: 5`, against a backoff of 20 ms; the refusal was seen some time after it
    // happened, hence the margin.
    assert!(
        waited >= Duration::from_secs(3),
        "connected again after {waited:?}"
    );
    assert_eq!(
        refused().await,
        1.0,
        "one refusal: the client did not try again meanwhile"
    );

    let id = gw.publish_ok("news", "note", "in").await;
    assert_eq!(reader.event().await.id, id);
}

#[tokio::test]
async fn max_attempts_gives_up_with_the_last_failure() {
    let (gw, _occupant) = gateway_at_capacity().await;
    let mut reader = Reader::spawn(client(&gw, "news").max_attempts(1).stream().unwrap());
    match reader.final_error().await {
        Error::GaveUp { attempts: 1, last } => assert!(
            matches!(*last, Error::Status { status: 503, ref code, retry_after: Some(after), .. }
                if code == "at_capacity" && after == Duration::from_secs(5)),
            "{last:?}"
        ),
        other => panic!("expected GaveUp, got {other:?}"),
    }
}

#[tokio::test]
async fn binary_events_round_trip_all_256_byte_values() {
    let gw = Gateway::start("");
    let mut reader = Reader::spawn(client(&gw, "files").stream().unwrap());
    gw.the_stream_on("files", None).await;
    let bytes: Vec<u8> = (0..=255).collect();
    let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (status, body) = gw
        .publish(json!({"channel": "files", "event": "blob", "data_base64": text}))
        .await;
    assert_eq!(status, 202, "{body}");

    let event = reader.event().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("blob", text.as_str())
    );
    assert_eq!(event.bytes().unwrap(), bytes);
}

#[tokio::test]
async fn a_silent_connection_is_replaced_and_heartbeats_keep_one_alive() {
    // No heartbeat for an hour: after 300 ms of silence the client connects again.
    let silent = Gateway::start("sse:\n  retry: 100ms\n  heartbeat_interval: 1h\n");
    let mut replaced = Reader::spawn(
        client(&silent, "news")
            .idle_timeout(Duration::from_millis(300))
            .stream()
            .unwrap(),
    );
    let first = silent.the_stream_on("news", None).await;
    silent.the_stream_on("news", Some(&first)).await;
    let id = silent.publish_ok("news", "note", "still there").await;
    let (item, connections) = replaced.next().await.expect("an item");
    assert!(matches!(item, Ok(Message::Event(e)) if e.id == id));
    assert!(connections >= 2, "{connections}");

    // Heartbeats every 100 ms: over three idle timeouts of ten heartbeats each, the connection
    // stays.
    let lively = Gateway::start("sse:\n  retry: 100ms\n  heartbeat_interval: 100ms\n");
    let idle_timeout = Duration::from_secs(1);
    let mut kept = Reader::spawn(
        client(&lively, "news")
            .idle_timeout(idle_timeout)
            .stream()
            .unwrap(),
    );
    let only = lively.the_stream_on("news", None).await;
    tokio::time::sleep(3 * idle_timeout).await;
    assert_eq!(lively.stream_ids("news").await, [only]);
    let id = lively.publish_ok("news", "note", "same connection").await;
    let (item, connections) = kept.next().await.expect("an item");
    assert!(matches!(item, Ok(Message::Event(e)) if e.id == id));
    assert_eq!(connections, 1);
}
