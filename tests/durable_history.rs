//! Durable history: with `broker.kind: redis` on a Redis that persists (AOF), history survives a
//! restart of every gateway node and of Redis, so a client resuming with its last id afterwards
//! gets what it missed.

mod common;

use std::time::Duration;

use common::redis::{node, RedisServer};
use common::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn history_on_an_aof_redis_survives_a_restart_of_every_node_and_of_redis() {
    let mut redis = RedisServer::start_persistent();
    let (a, b) = (node(&redis, "").await, node(&redis, "").await);
    let mut client = SseClient::connect(&a.url("/events?channel=kept&channel=also")).await;
    let mut published = Vec::new();
    for (gw, channel, n) in [
        (&a, "kept", 1),
        (&b, "also", 2),
        (&a, "kept", 3),
        (&b, "kept", 4),
    ] {
        published.push(gw.publish_ok(channel, "note", &format!("e{n}")).await);
    }
    let seen = client.events(1, WAIT).await;
    let last_id = seen[0].id.clone();
    assert_eq!(last_id, published[0]);
    drop(client);

    // Every node and Redis go down; Redis comes back from its AOF, then a new node.
    drop((a, b));
    redis.restart();
    let c = node(&redis, "").await;
    let mut resumed = c
        .resume("/events?channel=kept&channel=also", &last_id)
        .await;
    let replayed = resumed.events(3, WAIT).await;
    let ids: Vec<&str> = replayed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, &published[1..], "what it missed, in order, no reset");
    let data: Vec<&str> = replayed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["e2", "e3", "e4"]);

    // Ids go on from there: a new event comes after every old one.
    let next = c.publish_ok("kept", "note", "e5").await;
    let live = resumed.next_event(WAIT).await.expect("live event");
    assert_eq!(
        (live.id.as_str(), live.data.as_str()),
        (next.as_str(), "e5")
    );
}
