//! Resume from `Last-Event-ID`: exact replay, several channels, the seam under concurrent
//! publishing, and `reset` for every id that cannot be honoured.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use sse_gateway::sse::parse::{ParsedEvent, ParsedItem};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn resume_by_header_and_by_query_replays_exactly_what_was_missed() {
    let gw = Gateway::start("");
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(gw.publish_ok("r", "message", &i.to_string()).await);
    }
    let mut by_header =
        SseClient::connect_with(&gw.url("/events?channel=r"), &[("last-event-id", &ids[2])]).await;
    let mut by_query =
        SseClient::connect(&gw.url(&format!("/events?channel=r&lastEventId={}", ids[2]))).await;
    // The next live event ends the replay: nothing more, nothing twice, comes before it.
    let live = gw.publish_ok("r", "message", "live").await;
    for c in [&mut by_header, &mut by_query] {
        let got: Vec<String> = c.events(3, T).await.into_iter().map(|e| e.data).collect();
        assert_eq!(got, ["3", "4", "5"]);
        c.assert_next_is(&live, T).await;
    }
    // The header wins over the query.
    let url = gw.url(&format!("/events?channel=r&lastEventId={}", ids[0]));
    let mut both = SseClient::connect_with(&url, &[("last-event-id", &ids[4])]).await;
    assert_eq!(both.next_event(T).await.unwrap().data, "5");
}

#[tokio::test]
async fn multi_channel_resume_merges_in_id_order() {
    let gw = Gateway::start("");
    let first = gw.publish_ok("a", "message", "a0").await;
    for (ch, d) in [
        ("b", "b1"),
        ("c", "c2"),
        ("a", "a3"),
        ("b", "b4"),
        ("a", "a5"),
    ] {
        gw.publish_ok(ch, "message", d).await;
    }
    let mut c = SseClient::connect_with(
        &gw.url("/events?channels=a,b"),
        &[("last-event-id", &first)],
    )
    .await;
    let got: Vec<String> = c.events(4, T).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["b1", "a3", "b4", "a5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_while_events_keep_coming_loses_and_repeats_nothing() {
    let gw = Gateway::start("history:\n  max_events: 100000\n");
    let url = gw.url("/events?channels=p,q");
    // The first stream is open before the first publish: everything after it must arrive.
    let mut first = Some(SseClient::connect(&url).await);
    let publisher = {
        let base = gw.url("/broadcast");
        tokio::spawn(async move {
            let client = http();
            let mut ids = Vec::new();
            for i in 0..600 {
                let channel = if i % 3 == 0 { "q" } else { "p" };
                let resp = client
                    .post(&base)
                    .header("x-api-key", KEY)
                    .json(&serde_json::json!({"channel": channel, "data": i.to_string()}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                let body: serde_json::Value = resp.json().await.unwrap();
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            ids
        })
    };
    // Take a few events per connection, drop it, resume from the last id seen; repeat.
    let mut seen: Vec<ParsedEvent> = Vec::new();
    let mut last: Option<String> = None;
    while seen.len() < 600 {
        let headers: Vec<(&str, &str)> = last
            .iter()
            .map(|id| ("last-event-id", id.as_str()))
            .collect();
        let mut c = match first.take() {
            Some(c) => c,
            None => SseClient::connect_with(&url, &headers).await,
        };
        let take = (600 - seen.len()).min(37);
        for _ in 0..take {
            let Some(e) = c.next_event(T).await else {
                let ids: Vec<u64> = seen.iter().map(|e| seq(&e.id)).collect();
                let missing: Vec<u64> = (1..=600).filter(|s| !ids.contains(s)).collect();
                panic!("stalled after {} events; missing {missing:?}", seen.len());
            };
            last = Some(e.id.clone());
            seen.push(e);
        }
    }
    let published = publisher.await.unwrap();
    let got_ids: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got_ids,
        published.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let data: Vec<String> = seen.iter().map(|e| e.data.clone()).collect();
    let expected: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    assert_eq!(data, expected);
    let distinct: BTreeSet<u64> = got_ids.iter().map(|id| seq(id)).collect();
    assert_eq!(distinct.len(), 600);
}

async fn first_event_after(gw: &Gateway, query: &str, last_id: &str) -> ParsedEvent {
    let mut c = SseClient::connect_with(
        &gw.url(&format!("/events?{query}")),
        &[("last-event-id", last_id)],
    )
    .await;
    assert_eq!(c.status, 200, "a bad id must never be a 4xx");
    c.next_event(T).await.expect("an event")
}

#[tokio::test]
async fn unusable_ids_get_one_reset_then_live_events() {
    let gw = Gateway::start("channels:\n  - name: \"small\"\n    subscribe: public\n    history: {max_events: 2}\n  - name: \"*\"\n    subscribe: public\n");
    let first = gw.publish_ok("small", "message", "0").await;
    for i in 1..5 {
        gw.publish_ok("small", "message", &i.to_string()).await;
    }
    let (epoch, _) = first.split_once('-').unwrap();
    let cases = [
        ("garbage", "malformed_id"),
        ("12-", "malformed_id"),
        (&*"9".repeat(5000), "malformed_id"),
        ("1-1", "unknown_id"),
        (&*format!("{epoch}-999999"), "unknown_id"),
        (first.as_str(), "history_evicted"),
    ];
    for (id, reason) in cases {
        let e = first_event_after(&gw, "channel=small", id).await;
        assert_eq!(e.event, "reset", "{id:.40}");
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["reason"], reason, "{id:.40}");
    }
    // After the reset come live events, and the reset's id is a valid resume point.
    let mut c = SseClient::connect_with(
        &gw.url("/events?channel=small"),
        &[("last-event-id", "1-1")],
    )
    .await;
    let reset = c.next_event(T).await.unwrap();
    assert_eq!(reset.event, "reset");
    gw.publish_ok("small", "message", "live").await;
    assert_eq!(c.next_event(T).await.unwrap().data, "live");
    let mut again = SseClient::connect_with(
        &gw.url("/events?channel=small"),
        &[("last-event-id", reset.id.as_str())],
    )
    .await;
    let e = again.next_event(T).await.unwrap();
    assert_eq!(e.data, "live");
    assert!(gw.metric("sse_gateway_resets_total", "").await >= 7.0);
}

#[tokio::test]
async fn ids_from_before_a_restart_get_reset() {
    let gw = Gateway::start("");
    let old = gw.publish_ok("k", "message", "before").await;
    drop(gw);
    let gw = Gateway::start("");
    let new = gw.publish_ok("k", "message", "after").await;
    assert_ne!(old, new, "ids are never reused across restarts");
    let e = first_event_after(&gw, "channel=k", &old).await;
    assert_eq!(e.event, "reset");
}

#[tokio::test]
async fn a_stream_that_drops_before_its_first_event_resumes_from_where_it_opened() {
    let gw = Gateway::start("");
    gw.publish_ok("quiet", "note", "before it opened").await;
    let mut first = SseClient::connect(&gw.url("/events?channel=quiet")).await;
    // The opening block (one write) names the stream's position without firing an event.
    assert!(
        first.next_item(T).await.is_some(),
        "the opening block arrives"
    );
    let mut parser = sse_gateway::sse::parse::Parser::default();
    let mut items = Vec::new();
    parser.push(&first.raw, &mut items).expect("valid SSE");
    assert!(
        !items.iter().any(|i| matches!(i, ParsedItem::Event(_))),
        "no event: {items:?}"
    );
    let position = parser.last_event_id().to_owned();
    assert!(
        !position.is_empty(),
        "a position in {:?}",
        String::from_utf8_lossy(&first.raw)
    );
    drop(first);
    gw.publish_ok("quiet", "note", "while it was away").await;
    // What EventSource does: reconnect with the last id it saw.
    let mut back = gw.resume("/events?channel=quiet", &position).await;
    assert_eq!(back.data(1, T).await, ["while it was away"]);
}
