//! Helpers shared by the integration tests: an in-process server on a free loopback port and an
//! SSE reader whose every read has a deadline; the rest (the SSE client, `eventually`, `seq`) is
//! the workspace's `test-kit`.

#![allow(dead_code)]

use std::time::Duration;

use reference_upstream::{Config, Server};
use serde_json::Value;
use sse_wire::parse::{ParsedEvent, ParsedItem};
use test_kit::SseClient;
use tokio::net::TcpListener;
use tokio::time::timeout;

/// How long any single expected thing may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How soon a shutdown must end the streams still open: well under the binary's 5 s grace for
/// requests that stay open, which a shutdown that waited for them would use up, and well over
/// what a busy machine takes to end them at once.
pub const PROMPTLY: Duration = Duration::from_secs(3);

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
        let client = timeout(PATIENCE, SseClient::connect_with(&self.url(path), headers))
            .await
            .expect("stream response in time");
        assert_eq!(client.status, 200);
        let header = |name: &str| {
            client
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = header("content-type");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        assert_eq!(header("cache-control"), "no-cache");
        let mut stream = SseStream(client);
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

/// An open SSE stream on which anything expected must come within [`PATIENCE`].
pub struct SseStream(SseClient);

impl SseStream {
    /// The next item (event, comment or retry), or `None` when the stream ended. Fails the
    /// test if nothing arrives within [`PATIENCE`].
    pub async fn next_item(&mut self) -> Option<ParsedItem> {
        let item = self.0.next_item(PATIENCE).await;
        assert!(item.is_some() || self.0.ended, "an SSE item in time");
        item
    }

    /// The next event, skipping comments; panics if the stream ends first.
    pub async fn next_event(&mut self) -> ParsedEvent {
        self.0
            .next_event(PATIENCE)
            .await
            .expect("an event before the stream ends, in time")
    }

    /// Events up to and including the one with id `last_id`.
    pub async fn events_until(&mut self, last_id: &str) -> Vec<ParsedEvent> {
        self.0.events_until(last_id, PATIENCE).await
    }

    /// Waits for the stream to end, skipping anything still sent.
    pub async fn expect_end(&mut self) {
        self.0.until_end(PATIENCE).await;
    }
}

/// The data of a notification event as JSON.
pub fn data(event: &ParsedEvent) -> Value {
    serde_json::from_str(&event.data).expect("JSON data")
}
