//! Helpers shared by the integration tests: an in-process server on a free loopback port, an
//! SSE reader with deadlines, and a condition poller. Nothing here sleeps and hopes: every
//! wait is for a condition, bounded by a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use reference_upstream::{Config, Server};
use serde_json::Value;
use sse_wire::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};

/// How long any single expected thing may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A server on 127.0.0.1 with a free port, plus an HTTP client pointed at it.
pub struct TestServer {
    pub server: Server,
    pub base: String,
    pub http: reqwest::Client,
}

/// A quiet default for tests: no generated notifications, slow heartbeats and metrics.
pub fn quiet_config() -> Config {
    Config {
        name: "test-up".to_owned(),
        notify_interval: Duration::ZERO,
        history: 1000,
        heartbeat: Duration::from_secs(60),
        metrics_interval: Duration::from_secs(60),
    }
}

pub async fn start(config: Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = Server::start(listener, config).expect("start");
    let base = format!("http://{}", server.local_addr());
    TestServer {
        server,
        base,
        http: reqwest::Client::new(),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a notification and returns the 201 reply's JSON.
    pub async fn post(&self, body: Value) -> Value {
        let response = self
            .http
            .post(self.url("/notifications"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 201, "POST {body}");
        response.json().await.expect("json reply")
    }

    pub async fn info(&self) -> Value {
        self.json(self.http.get(self.url("/api/info"))).await
    }

    /// Sends `request` and reads its reply as JSON.
    pub async fn json(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("send");
        response.json().await.expect("json reply")
    }

    /// Opens a stream at `path` with extra request headers; waits for the `retry` field,
    /// which the server sends only after subscribing, so later publishes reach this stream.
    pub async fn open(&self, path: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut request = self.http.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = timeout(PATIENCE, request.send())
            .await
            .expect("stream response in time")
            .expect("stream request");
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-cache")
        );
        let mut stream = SseStream {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(ParserLimits::default()),
            ready: std::collections::VecDeque::new(),
        };
        assert_eq!(stream.next_item().await, Some(ParsedItem::Retry(1000)));
        stream
    }

    pub async fn shutdown(self) {
        timeout(PATIENCE, self.server.shutdown())
            .await
            .expect("shutdown in time")
            .expect("clean shutdown");
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open SSE stream read through the workspace's WHATWG parser.
pub struct SseStream {
    body: ByteStream,
    parser: Parser,
    ready: std::collections::VecDeque<ParsedItem>,
}

impl SseStream {
    /// The next item (event, comment or retry), or `None` when the stream ended. Fails the
    /// test if nothing arrives within [`PATIENCE`].
    pub async fn next_item(&mut self) -> Option<ParsedItem> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an SSE item in time");
            match chunk {
                None | Some(Err(_)) => return None,
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    self.parser.push(&bytes, &mut out).expect("valid SSE");
                    self.ready.extend(out);
                }
            }
        }
    }

    /// The next event, skipping comments; panics if the stream ends first.
    pub async fn next_event(&mut self) -> ParsedEvent {
        loop {
            match self.next_item().await {
                Some(ParsedItem::Event(event)) => return event,
                Some(_) => continue,
                None => panic!("the stream ended while an event was expected"),
            }
        }
    }

    /// Events up to and including the one with id `last_id`.
    pub async fn events_until(&mut self, last_id: &str) -> Vec<ParsedEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let done = event.id == last_id;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Waits for the stream to end, skipping anything still sent.
    pub async fn expect_end(&mut self) {
        while self.next_item().await.is_some() {}
    }
}

/// Polls `check` until it returns true; fails the test after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The data of a notification event as JSON.
pub fn data(event: &ParsedEvent) -> Value {
    serde_json::from_str(&event.data).expect("JSON data")
}

/// The sequence number of an id `<boot-ms>-<seq>`.
pub fn seq(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or_else(|| panic!("bad id {id:?}"))
}
