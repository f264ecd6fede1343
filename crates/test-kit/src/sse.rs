//! A strict `EventSource` over a real HTTP connection, parsing with the workspace's WHATWG parser
//! (the one the gateway ingests upstream sources with).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sse_wire::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};

use crate::web::http;

/// One stream's response, read item by item with deadlines.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: Option<BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    parser: Parser,
    pending: VecDeque<ParsedItem>,
    /// Every byte received, for byte-level assertions.
    pub raw: Vec<u8>,
    /// The body ended (the server closed the stream).
    pub ended: bool,
    /// Why the body ended badly (a cut-off chunked body, a reset), if it did: what a strict
    /// client (Chromium, httpx, curl) reports as an error.
    pub end_error: Option<String>,
}

impl SseClient {
    pub async fn connect(url: &str) -> SseClient {
        SseClient::connect_with(url, &[]).await
    }

    /// A `GET url` with these request headers; any status (check [`status`](Self::status)).
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req = http().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        SseClient::from_response(req.send().await.expect("connect"))
    }

    /// Reads `resp` (any status) as a stream.
    pub fn from_response(resp: reqwest::Response) -> SseClient {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        SseClient {
            status,
            headers,
            body: Some(resp.bytes_stream().boxed()),
            parser: Parser::new(ParserLimits::default()),
            pending: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
            end_error: None,
        }
    }

    /// The next parsed item, or `None` if the stream ended or nothing came within `within`
    /// ([`ended`](Self::ended) tells which).
    pub async fn next_item(&mut self, within: Duration) -> Option<ParsedItem> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let body = self.body.as_mut()?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    let mut out = Vec::new();
                    self.parser.push(&chunk, &mut out).expect("valid SSE");
                    self.pending.extend(out);
                }
                Ok(end) => {
                    self.end_error = end.and_then(|e| e.err()).map(|e| format!("{e:?}"));
                    self.ended = true;
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The next event (comments and retry skipped).
    pub async fn next_event(&mut self, within: Duration) -> Option<ParsedEvent> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left).await? {
                ParsedItem::Event(e) => return Some(e),
                _ => continue,
            }
        }
    }

    /// Exactly `n` events, or panics after `within`.
    pub async fn events(&mut self, n: usize, within: Duration) -> Vec<ParsedEvent> {
        let deadline = Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(e) => got.push(e),
                None => panic!(
                    "got {} of {n} events, the last {:?}",
                    got.len(),
                    got.last().map(|e: &ParsedEvent| &e.id)
                ),
            }
        }
        got
    }

    /// The data of exactly `n` events, or panics after `within`.
    pub async fn data(&mut self, n: usize, within: Duration) -> Vec<String> {
        self.events(n, within)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// The events up to and including the one with id `last_id`, or panics after `within`.
    pub async fn events_until(&mut self, last_id: &str, within: Duration) -> Vec<ParsedEvent> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next_event(left).await else {
                panic!("no event {last_id:?} after {} events", got.len());
            };
            let done = event.id == last_id;
            got.push(event);
            if done {
                return got;
            }
        }
    }

    /// Asserts that the next event is the one with id `sentinel`, within `within`.
    ///
    /// This ends a window in which nothing else may arrive (no event twice, none that was
    /// refused): the test sends the sentinel after everything it checked, so anything stray
    /// would come before it. Waiting for a quiet period instead proves nothing on a busy
    /// machine, where a stray event can come later than any such period.
    pub async fn assert_next_is(&mut self, sentinel: &str, within: Duration) {
        match self.next_event(within).await {
            Some(e) if e.id == sentinel => {}
            Some(e) => panic!("expected the sentinel {sentinel:?} next, got {e:?}"),
            None => panic!(
                "no sentinel {sentinel:?} within {within:?} (stream ended: {})",
                self.ended
            ),
        }
    }

    /// Asserts that no event arrives within `window`. Prefer
    /// [`assert_next_is`](Self::assert_next_is) wherever a sentinel can be sent: a quiet period
    /// shows only that nothing came *within it*.
    pub async fn assert_no_event(&mut self, window: Duration) {
        if let Some(e) = self.next_event(window).await {
            panic!("unexpected event {e:?}");
        }
    }

    /// Reads until the server ends the stream, at most `within`; returns the items seen.
    pub async fn until_end(&mut self, within: Duration) -> Vec<ParsedItem> {
        let deadline = Instant::now() + within;
        let mut items = Vec::new();
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "stream did not end in {within:?}");
            if let Some(item) = self.next_item(left).await {
                items.push(item);
            }
        }
        items
    }
}
