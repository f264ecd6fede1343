//! Several gateway nodes on one Redis behave as one: fan-out across nodes exactly once and in
//! order, resume on another node, history for nodes that start later, and no loss through a
//! killed subscription, a Redis outage or a node's drain. Each test runs its own redis-server.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis::{node, readyz, wait_ready, RedisServer};
use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// Publishes until accepted (a node refuses with 503 while the cluster recovers after Redis
/// lost its data); returns the id.
async fn publish_eventually(gw: &Gateway, channel: &str, data: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = gw
            .publish(serde_json::json!({"channel": channel, "event": "note", "data": data}))
            .await;
        match status {
            202 => return body["id"].as_str().expect("id").to_owned(),
            503 => assert!(std::time::Instant::now() < deadline, "still 503: {body}"),
            other => panic!("publish answered {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_publish_on_any_node_reaches_every_node_once_and_in_order() {
    let redis = RedisServer::start();
    let nodes = [
        node(&redis, "").await,
        node(&redis, "").await,
        node(&redis, "").await,
    ];
    let mut clients = Vec::new();
    for gw in &nodes {
        clients.push(SseClient::connect(&gw.url("/events?channel=x")).await);
    }
    let mut published = Vec::new();
    for n in 0..30 {
        let id = nodes[n % 3].publish_ok("x", "note", &format!("e{n}")).await;
        published.push((id, format!("e{n}")));
    }
    // Published last: on every node it must come right after the 30, so none came twice.
    let sentinel = nodes[1].publish_ok("x", "note", "sentinel").await;
    for (i, client) in clients.iter_mut().enumerate() {
        let got: Vec<(String, String)> = client
            .events(30, WAIT)
            .await
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        assert_eq!(got, published, "node {i}");
        client.assert_next_is(&sentinel, WAIT).await;
    }
    assert!(published.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)));
    let stats = nodes[1].admin_get("/stats").await;
    assert_eq!(
        (
            stats["node"]["broker"].as_str(),
            stats["node"]["broker_up"].as_bool()
        ),
        (Some("redis"), Some(true))
    );
}

#[tokio::test]
async fn a_client_resumes_on_another_node_single_and_multi_channel() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    let mut first = SseClient::connect(&a.url("/events?channels=x,y")).await;
    a.publish_ok("x", "note", "1").await;
    a.publish_ok("y", "note", "2").await;
    let seen = first.events(2, WAIT).await;
    drop(first);
    // Published while the client is away, on a third channel too.
    for (channel, data) in [("x", "3"), ("z", "not mine"), ("y", "4"), ("x", "5")] {
        b.publish_ok(channel, "note", data).await;
    }
    let mut resumed = b.resume("/events?channels=x,y", &seen[1].id).await;
    let got: Vec<String> = resumed.data(3, WAIT).await;
    assert_eq!(got, ["3", "4", "5"]);

    let mut single = b.resume("/events?channel=y", &seen[0].id).await;
    let got: Vec<String> = single.data(2, WAIT).await;
    assert_eq!(got, ["2", "4"]);
}

#[tokio::test]
async fn a_node_started_later_serves_resumes_from_the_shared_log() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(a.publish_ok("x", "note", &n.to_string()).await);
    }
    let late = node(&redis, "").await;
    let mut client = late.resume("/events?channel=x", &ids[1]).await;
    let got: Vec<String> = client.data(3, WAIT).await;
    assert_eq!(got, ["3", "4", "5"]);
}

#[tokio::test]
async fn killed_subscriptions_lose_nothing() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    let mut client = SseClient::connect(&b.url("/events?channel=x")).await;
    let mut on_publisher = SseClient::connect(&a.url("/events?channel=x")).await;
    let mut expected = Vec::new();
    for n in 0..60 {
        if n % 10 == 5 {
            let killed = redis.command("CLIENT KILL TYPE pubsub");
            assert!(killed.starts_with(':'), "{killed}");
        }
        a.publish_ok("x", "note", &format!("e{n}")).await;
        expected.push(format!("e{n}"));
    }
    let got: Vec<String> = client.data(60, WAIT).await;
    assert_eq!(got, expected);
    assert_eq!(
        on_publisher.data(60, WAIT).await,
        expected,
        "on the publishing node too"
    );
    assert!(!client.ended, "the stream never dropped");
    // Published last: it must come right after the 60, so none came twice.
    let sentinel = a.publish_ok("x", "note", "sentinel").await;
    client.assert_next_is(&sentinel, WAIT).await;
    // What pub/sub dropped while B resubscribed came from the log.
    eventually(WAIT, "events recovered from the log counted", || async {
        b.metric("sse_gateway_broker_events_recovered_total", "")
            .await
            >= 1.0
    })
    .await;
}

#[tokio::test]
async fn a_redis_outage_refuses_publishes_keeps_streams_and_recovers() {
    let mut redis = RedisServer::start();
    let fast_heartbeats = "sse:\n  heartbeat_interval: 300ms\n";
    let a = node(&redis, fast_heartbeats).await;
    let b = node(&redis, fast_heartbeats).await;
    let mut client = SseClient::connect(&b.url("/events?channel=x")).await;
    let before = a.publish_ok("x", "note", "before").await;
    assert_eq!(client.events(1, WAIT).await[0].data, "before");

    redis.stop();
    eventually(WAIT, "publishes refused", || async {
        let resp = http()
            .post(a.url("/broadcast"))
            .header("x-api-key", KEY)
            .json(&serde_json::json!({"channel": "x", "data": "during"}))
            .send()
            .await
            .expect("publish");
        if resp.status() != 503 {
            return false;
        }
        assert!(resp.headers().contains_key("retry-after"));
        let body: serde_json::Value = resp.json().await.expect("json");
        body["error"]["code"] == "broker_unavailable"
    })
    .await;
    eventually(WAIT, "readyz says the broker is down", || async {
        readyz(&b).await == 503
    })
    .await;
    eventually(WAIT, "the broker_up gauge at 0", || async {
        b.metric("sse_gateway_broker_up", "").await == 0.0
    })
    .await;
    // The stream stays open: heartbeats keep coming.
    let heartbeat = client.next_item(WAIT).await;
    assert!(
        matches!(
            heartbeat,
            Some(sse_gateway::sse::parse::ParsedItem::Comment(_))
        ),
        "{heartbeat:?}"
    );

    // Redis comes back empty (no persistence); the nodes resubscribe and ids carry on.
    redis.restart();
    wait_ready(&a).await;
    wait_ready(&b).await;
    let after = publish_eventually(&a, "x", "after").await;
    assert!(seq(&after) > seq(&before), "{after} after {before}");
    let event = client
        .next_event(WAIT)
        .await
        .expect("the event after the outage");
    assert_eq!((event.id, event.data), (after, "after".to_owned()));
    assert!(!client.ended, "the subscriber never had to reconnect");
}

#[tokio::test]
async fn a_draining_node_hands_its_clients_to_the_others_without_loss() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "shutdown:\n  grace_period: 1s\n").await;
    let b = node(&redis, "").await;
    let mut client = SseClient::connect(&a.url("/events?channel=x")).await;
    b.publish_ok("x", "note", "1").await;
    let last = client.events(1, WAIT).await.remove(0);

    a.signal("TERM");
    let publishing = async {
        for n in 2..=6 {
            b.publish_ok("x", "note", &n.to_string()).await;
        }
    };
    let (_, items) = tokio::join!(publishing, client.until_end(WAIT));
    assert!(a.wait_exit(WAIT).success());
    // Whatever the drained stream still delivered, the rest comes from the other node.
    let mut got: Vec<String> = vec![last.data.clone()];
    let mut resume = last.id.clone();
    for item in items {
        if let sse_gateway::sse::parse::ParsedItem::Event(e) = item {
            resume = e.id.clone();
            got.push(e.data);
        }
    }
    let mut resumed = b.resume("/events?channel=x", &resume).await;
    let missing = 6 - got.len();
    got.extend(
        resumed
            .events(missing, WAIT)
            .await
            .into_iter()
            .map(|e| e.data),
    );
    assert_eq!(got, ["1", "2", "3", "4", "5", "6"]);
}

#[tokio::test]
async fn one_upstream_connection_per_source_per_cluster_and_failover_without_loss() {
    let redis = RedisServer::start();
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let source = format!(
        "sources:\n  - {{name: notes, url: \"{}\", channel: notifications}}\n",
        up.url("/streams/notifications")
    );
    let mut nodes = vec![node(&redis, &source).await, node(&redis, &source).await];
    let states =
        |stats: &serde_json::Value| stats["sources"][0]["state"].as_str().map(str::to_owned);
    // One node leads (connected), the other waits (standby); the upstream sees one connection.
    // Polled by hand: the leader's index is the result, not just a condition.
    let deadline = std::time::Instant::now() + WAIT;
    let leader = loop {
        let a = states(&nodes[0].admin_get("/stats").await);
        let b = states(&nodes[1].admin_get("/stats").await);
        match (a.as_deref(), b.as_deref()) {
            (Some("connected"), Some("standby")) => break 0,
            (Some("standby"), Some("connected")) => break 1,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no single leader: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(up.info().await["stream_clients"], 1);
    let follower = 1 - leader;
    let mut client =
        SseClient::connect(&nodes[follower].url("/events?channel=notifications")).await;
    up.notify("n1").await;
    up.notify("n2").await;
    let title = |e: &sse_gateway::sse::parse::ParsedEvent| {
        serde_json::from_str::<serde_json::Value>(&e.data).expect("json")["title"]
            .as_str()
            .expect("title")
            .to_owned()
    };
    let got: Vec<String> = client.events(2, WAIT).await.iter().map(title).collect();
    assert_eq!(got, ["n1", "n2"]);

    // The leader dies without a word; its lease lapses and the other node takes over, resuming
    // the upstream after the last event the cluster ingested.
    nodes[leader].signal("KILL");
    up.notify("n3").await;
    up.notify("n4").await;
    eventually(WAIT, "the follower leads", || async {
        states(&nodes[follower].admin_get("/stats").await).as_deref() == Some("connected")
    })
    .await;
    up.notify("n5").await;
    let got: Vec<String> = client.events(3, WAIT).await.iter().map(title).collect();
    assert_eq!(got, ["n3", "n4", "n5"], "nothing lost");
    // Sent last by the upstream: it must come right after n5, so nothing came twice.
    up.notify("n6").await;
    let next = client.next_event(WAIT).await.expect("the sentinel n6");
    assert_eq!(title(&next), "n6", "nothing twice");
    assert_eq!(up.info().await["stream_clients"], 1);
    nodes.remove(leader);
}

#[tokio::test]
async fn per_ip_and_rate_limits_hold_across_nodes() {
    let redis = RedisServer::start();
    let limits =
        "limits:\n  max_connections_per_ip: 2\n  publish_rate: {per_second: 1, burst: 3}\n";
    let a = node(&redis, limits).await;
    let b = node(&redis, limits).await;
    let on_a = SseClient::connect(&a.url("/events?channel=x")).await;
    let on_b = SseClient::connect(&b.url("/events?channel=x")).await;
    assert_eq!((on_a.status, on_b.status), (200, 200));
    // Each node alone would allow a second stream; the cluster has its two.
    for gw in [&a, &b] {
        let refused = http()
            .get(gw.url("/events?channel=x"))
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "5");
    }
    drop(on_b);
    eventually(WAIT, "the place given back", || async {
        SseClient::connect(&b.url("/events?channel=x")).await.status == 200
    })
    .await;

    // Publishes alternate between the nodes, and one bucket for the cluster admits them: one
    // per node would admit twice the burst before refusing.
    let publishes = publish_until_rate_limited(&[&a, &b], "x").await;
    publishes.assert_bucket(3, 1);

    // A node that dies stops counting once its liveness lapses (seconds): with A's stream and
    // one on B the address is at its limit, until A is known dead.
    let _kept = SseClient::connect(&b.url("/events?channel=x")).await;
    a.signal("KILL");
    drop(on_a);
    let refused = http()
        .get(b.url("/events?channel=x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        refused.status(),
        429,
        "A's stream still counts right after it died"
    );
    eventually(WAIT, "the dead node's stream no longer counted", || async {
        SseClient::connect(&b.url("/events?channel=x")).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn stats_and_clients_say_which_node_answered_and_aggregate_the_cluster() {
    let redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    let _on_a = SseClient::connect(&a.url("/events?channel=x")).await;
    let _on_b = SseClient::connect(&b.url("/events?channels=x,y")).await;
    let _also_b = SseClient::connect(&b.url("/events?channel=y")).await;
    let id_a = a.admin_get("/stats").await["node"]["id"].clone();
    let id_b = b.admin_get("/stats").await["node"]["id"].clone();
    assert!(id_a.is_string() && id_a != id_b, "{id_a} {id_b}");
    assert_eq!(b.admin_get("/clients").await["node"], id_b);

    eventually(WAIT, "both nodes reported", || async {
        let stats = a.admin_get("/stats?scope=cluster").await;
        stats["totals"]["nodes"] == 2 && stats["totals"]["streams_open"] == 3
    })
    .await;
    let stats = a.admin_get("/stats?scope=cluster").await;
    assert_eq!(stats["answered_by"], id_a);
    let clients = b.admin_get("/clients?scope=cluster").await;
    assert_eq!(clients["total"], 3);
    let per_node: Vec<u64> = {
        let mut counts: Vec<u64> = clients["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["total"].as_u64().expect("total"))
            .collect();
        counts.sort_unstable();
        counts
    };
    assert_eq!(per_node, [1, 2]);

    let bad = http()
        .get(a.url("/stats?scope=everything"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
}

/// What one publisher saw: every answer, in order.
#[derive(Default)]
struct Answers {
    /// (id, data) of every 202.
    accepted: Vec<(String, String)>,
    /// Statuses and error codes of the rest.
    refused: Vec<(u16, String, bool)>,
}

/// How many answers of each kind a publisher has had so far, for the faults to wait on.
#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl Tally {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Waits until every publisher has had `more` answers (as `count` counts them) than now.
async fn answers_grow(tallies: &[Tally], what: &str, more: usize, count: fn(&Tally) -> usize) {
    let from: Vec<usize> = tallies.iter().map(count).collect();
    eventually(WAIT, what, || async {
        tallies
            .iter()
            .zip(&from)
            .all(|(t, from)| count(t) >= from + more)
    })
    .await;
}

/// Publishes `<name>-<n>` on channel `race` every few ms until `stop`, counting its answers in
/// `tally`.
async fn publish_continuously(
    gw: &Gateway,
    name: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
    tally: &Tally,
) -> Answers {
    let mut answers = Answers::default();
    let client = reqwest::Client::new();
    for n in 0.. {
        if *stop.borrow() {
            break;
        }
        let data = format!("{name}-{n}");
        let sent = client
            .post(gw.url("/broadcast"))
            .header("x-api-key", KEY)
            .json(&serde_json::json!({"channel": "race", "event": "note", "data": data}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(resp) = sent else {
            answers.refused.push((0, "transport".into(), false));
            tally.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status == 202 {
            let id = body["id"].as_str().expect("id").to_owned();
            answers.accepted.push((id, data));
            tally.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
            answers.refused.push((status, code, retry_after));
            tally.refused.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_202_through_redis_restarts_arrives_exactly_once_in_order_on_every_node() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "").await;
    let b = node(&redis, "").await;
    let mut subscribers = [
        SseClient::connect(&a.url("/events?channel=race")).await,
        SseClient::connect(&b.url("/events?channel=race")).await,
    ];
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tallies = [Tally::default(), Tally::default()];
    let publishing = async {
        tokio::join!(
            publish_continuously(&a, "A", &stop, &tallies[0]),
            publish_continuously(&b, "B", &stop, &tallies[1])
        )
    };
    let faults = async {
        // Three times: Redis is killed while both nodes publish, and comes back empty. Each
        // step waits for the publishers to get there, however slow the machine.
        for _ in 0..3 {
            answers_grow(&tallies, "publishes accepted", 5, Tally::accepted).await;
            redis.stop();
            answers_grow(&tallies, "publishes refused", 1, Tally::refused).await;
            eventually(WAIT, "both nodes notice", || async {
                readyz(&a).await == 503 && readyz(&b).await == 503
            })
            .await;
            redis.restart();
            wait_ready(&a).await;
            wait_ready(&b).await;
        }
        // Each publisher has events accepted after the last recovery too.
        answers_grow(&tallies, "publishes accepted after", 10, Tally::accepted).await;
        stop_tx.send_replace(true);
    };
    let ((from_a, from_b), ()) = tokio::join!(publishing, faults);

    // Refusals are 503 broker_unavailable with Retry-After, nothing else; and there were some.
    let refused: Vec<_> = from_a.refused.iter().chain(&from_b.refused).collect();
    assert!(!refused.is_empty(), "the restarts refused publishes");
    for (status, code, retry_after) in &refused {
        assert_eq!(
            (*status, code.as_str(), *retry_after),
            (503, "broker_unavailable", true)
        );
    }

    // A last event from each node marks the end of what the subscribers must have.
    let ends = [
        publish_eventually(&a, "race", "A-end").await,
        publish_eventually(&b, "race", "B-end").await,
    ];
    let mut accepted: Vec<(String, String)> = from_a
        .accepted
        .iter()
        .chain(&from_b.accepted)
        .cloned()
        .collect();
    accepted.sort_by_key(|(id, _)| seq(id));
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        let mut got: Vec<(String, String)> = Vec::new();
        while !ends.iter().all(|end| got.iter().any(|(id, _)| id == end)) {
            let event = subscriber
                .next_event(WAIT)
                .await
                .unwrap_or_else(|| panic!("node {i}: stream stalled after {} events", got.len()));
            assert_ne!(event.event.as_str(), "reset", "node {i}: {event:?}");
            got.push((event.id, event.data));
        }
        assert!(
            got.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)),
            "node {i}: ids strictly increase"
        );
        // Every accepted event, with its id, exactly once; an event answered 503 may or may
        // not have been delivered (the publisher cannot know, as after any timeout).
        let received: std::collections::HashMap<&str, &str> = got
            .iter()
            .map(|(id, data)| (id.as_str(), data.as_str()))
            .collect();
        let missing: Vec<&(String, String)> = accepted
            .iter()
            .filter(|(id, data)| received.get(id.as_str()) != Some(&data.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "node {i}: {} of {} accepted events missing, first {:?}",
            missing.len(),
            accepted.len(),
            missing.first()
        );
        let mut datas: Vec<&str> = got.iter().map(|(_, d)| d.as_str()).collect();
        datas.sort_unstable();
        let before = datas.len();
        datas.dedup();
        assert_eq!(before, datas.len(), "node {i}: no event twice");
    }
}

#[tokio::test]
async fn the_nodes_give_their_history_back_to_a_redis_that_lost_it() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "").await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(a.publish_ok("x", "note", &n.to_string()).await);
    }
    redis.restart();
    eventually(WAIT, "the history back in the log", || async {
        a.metric("sse_gateway_broker_events_restored_total", "")
            .await
            == 5.0
    })
    .await;
    // A node that never saw those events serves a resume from them, from the shared log.
    let late = node(&redis, "").await;
    let mut client = late.resume("/events?channel=x", &ids[1]).await;
    assert_eq!(client.data(3, WAIT).await, ["3", "4", "5"]);
    let next = publish_eventually(&a, "x", "6").await;
    assert!(seq(&next) > seq(&ids[4]), "{next} after {}", ids[4]);
    assert_eq!(client.events(1, WAIT).await[0].id, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_loses_nothing_when_redis_comes_back_empty() {
    let mut redis = RedisServer::start();
    let up = Upstream::start(&["--notify-interval", "0s"]);
    let source = format!(
        "sources:\n  - {{name: notes, url: \"{}\", channel: notifications}}\n",
        up.url("/streams/notifications")
    );
    let nodes = [node(&redis, &source).await, node(&redis, &source).await];
    let mut clients = Vec::new();
    for gw in &nodes {
        clients.push(SseClient::connect(&gw.url("/events?channel=notifications")).await);
    }
    let title = |e: &sse_gateway::sse::parse::ParsedEvent| {
        serde_json::from_str::<serde_json::Value>(&e.data).expect("json")["title"]
            .as_str()
            .expect("title")
            .to_owned()
    };
    eventually(WAIT, "the source connected", || async {
        up.info().await["stream_clients"] == 1
    })
    .await;
    // Notifications keep coming while Redis is killed and comes back empty: the source's
    // resume point comes back with the nodes' history, whichever node leads it next.
    let mut sent = Vec::new();
    for n in 0..40 {
        if n == 15 {
            redis.restart();
        }
        let t = format!("n{n}");
        up.notify(&t).await;
        sent.push(t);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let got: Vec<String> = client.events(40, WAIT).await.iter().map(title).collect();
        assert_eq!(got, sent, "node {i}: every notification once, in order");
    }
}
