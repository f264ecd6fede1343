//! A stream client that reconnects as a browser's `EventSource` does: when its stream ends or
//! fails it waits the server's `retry:` delay and connects again with `Last-Event-ID`, so a
//! server that honours the header owes it every event it missed.
//!
//! [`crate::subscriber`] holds thousands of streams and counts a drop as a failure of the run;
//! this one is for runs that end streams on purpose (`sse-chaos`): it keeps going and hands
//! every event and every drop to its [`Listener`], which decides what they mean.
//!
//! Two departures from `EventSource`, both what a client behind a load balancer sees: a node
//! that refuses the connection (or is marked down in [`Nodes`]) is skipped for the next one at
//! once, and an answer other than 200 is retried too (`EventSource` would give up for good).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sse_wire::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{read_head, BodyDecoder};

/// The address of each node a client may use, by index; `None` while a node is down. Whoever
/// restarts a node on a new address writes it here.
pub type Nodes = Arc<RwLock<Vec<Option<SocketAddr>>>>;

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 16 * 1024;

/// What a client reports.
pub trait Listener: Send + 'static {
    /// A stream opened (200) on node `node`.
    fn opened(&mut self, node: usize);
    /// An event, in stream order (comments and `retry:` fields are handled here).
    fn event(&mut self, event: ParsedEvent);
    /// A connection attempt to node `node` failed, or its open stream ended.
    fn ended(&mut self, node: usize, end: End);
}

/// Why a stream ended or did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The node refused the connection, or is marked down.
    Refused,
    /// An answer other than 200.
    Status(u16),
    /// The server ended the stream: end of the body, or of the connection.
    Closed,
    /// The connection broke: reset, or another read or write error.
    Broken,
    /// No byte, not even a heartbeat, for [`Settings::stall`].
    Stalled,
    /// No answer within [`Settings::open_timeout`].
    Timeout,
    /// The bytes were not HTTP/1.1, or not an event stream.
    Malformed,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Status(status) => write!(f, "status_{status}"),
            other => {
                let name = serde_json::to_value(other).ok();
                f.write_str(name.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
            }
        }
    }
}

/// How a client behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The request's path and query, such as `/events?channel=a&channel=b`.
    pub path: String,
    /// The reconnection delay until the server sends `retry:`.
    pub retry: Duration,
    /// The longest `retry:` honoured, so that a server cannot park the client.
    pub max_retry: Duration,
    /// An open stream silent for this long is dropped and reconnected (heartbeats count).
    pub stall: Duration,
    /// The longest wait for a connection and the response head.
    pub open_timeout: Duration,
}

/// One client. [`run`](EventSource::run) it in a task, and abort the task to stop it.
pub struct EventSource<L> {
    settings: Settings,
    nodes: Nodes,
    /// The node to try first.
    node: usize,
    /// The id of the last event received, sent as `Last-Event-ID` (none while empty).
    last_id: String,
    retry: Duration,
    listener: L,
}

impl<L: Listener> EventSource<L> {
    /// A client that starts on node `node`.
    pub fn new(settings: Settings, nodes: Nodes, node: usize, listener: L) -> EventSource<L> {
        EventSource {
            retry: settings.retry,
            settings,
            nodes,
            node,
            last_id: String::new(),
            listener,
        }
    }

    /// Connects, reads, and reconnects, until the task is aborted.
    pub async fn run(mut self) {
        let mut refusals = 0usize;
        loop {
            let node = self.node;
            let end = match self.address(node) {
                Some(addr) => self.stream(node, addr).await,
                None => End::Refused,
            };
            self.listener.ended(node, end);
            if end == End::Refused {
                // Straight on to the next node; wait only once every node has refused.
                let count = self.node_count();
                self.node = (node + 1) % count;
                refusals += 1;
                if !refusals.is_multiple_of(count) {
                    continue;
                }
            } else {
                refusals = 0;
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    fn node_count(&self) -> usize {
        self.nodes.read().map_or(1, |nodes| nodes.len().max(1))
    }

    fn address(&self, node: usize) -> Option<SocketAddr> {
        self.nodes.read().ok()?.get(node).copied().flatten()
    }

    /// One connection: open it, then read events until it ends.
    async fn stream(&mut self, node: usize, addr: SocketAddr) -> End {
        let opened = tokio::time::timeout(self.settings.open_timeout, self.open(addr)).await;
        let (mut conn, body, mut buf, start) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(end)) => return end,
            Err(_) => return End::Timeout,
        };
        self.listener.opened(node);
        let mut body = BodyDecoder::new(body);
        let mut parser = Parser::new(ParserLimits::default());
        let mut items = Vec::new();
        let mut input_start = start;
        loop {
            let mut input = &buf[input_start..];
            loop {
                match body.next_data(&mut input) {
                    Ok(Some(data)) => {
                        if parser.push(data, &mut items).is_err() {
                            return End::Malformed;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return End::Malformed,
                }
            }
            for item in items.drain(..) {
                match item {
                    ParsedItem::Event(event) => {
                        self.last_id.clone_from(&event.id);
                        self.listener.event(event);
                    }
                    ParsedItem::Retry(ms) => {
                        self.retry = Duration::from_millis(ms).min(self.settings.max_retry);
                    }
                    ParsedItem::Comment(_) => {}
                }
            }
            if body.is_done() {
                return End::Closed;
            }
            buf.clear();
            buf.resize(READ_BYTES, 0);
            input_start = 0;
            let read = tokio::time::timeout(self.settings.stall, conn.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) => return End::Closed,
                Ok(Ok(n)) => buf.truncate(n),
                Ok(Err(_)) => return End::Broken,
                Err(_) => return End::Stalled,
            }
        }
    }

    /// Connects and reads the response head: the connection, its body framing, and the buffer
    /// with the first body bytes from the returned offset.
    async fn open(
        &self,
        addr: SocketAddr,
    ) -> Result<(TcpStream, crate::http::BodyKind, Vec<u8>, usize), End> {
        let mut conn = TcpStream::connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                End::Refused
            } else {
                End::Broken
            }
        })?;
        let _ = conn.set_nodelay(true);
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\nUser-Agent: sse-loadgen\r\n",
            self.settings.path
        );
        if !self.last_id.is_empty() {
            request.push_str(&format!("Last-Event-ID: {}\r\n", self.last_id));
        }
        request.push_str("\r\n");
        conn.write_all(request.as_bytes())
            .await
            .map_err(|_| End::Broken)?;
        let mut buf = Vec::with_capacity(READ_BYTES);
        let head = read_head(&mut conn, &mut buf)
            .await
            .map_err(|_| End::Broken)?;
        if head.status != 200 {
            return Err(End::Status(head.status));
        }
        Ok((conn, head.body, buf, head.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    /// Everything a client reported, in order.
    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<String>>>);

    impl Listener for Record {
        fn opened(&mut self, node: usize) {
            self.0.lock().unwrap().push(format!("open {node}"));
        }
        fn event(&mut self, event: ParsedEvent) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {} {}", event.id, event.event, event.data));
        }
        fn ended(&mut self, node: usize, end: End) {
            self.0.lock().unwrap().push(format!("end {node} {end}"));
        }
    }

    fn settings() -> Settings {
        Settings {
            path: "/events?channel=a".to_owned(),
            retry: Duration::from_secs(5),
            max_retry: Duration::from_millis(50),
            stall: Duration::from_secs(5),
            open_timeout: Duration::from_secs(5),
        }
    }

    /// Answers each connection with the next of `bodies` (a close-delimited stream) and
    /// returns the request heads it got.
    async fn server(bodies: Vec<&'static str>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            for body in bodies {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    conn.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{body}");
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (addr, heads)
    }

    async fn wait_for(record: &Record, lines: usize) -> Vec<String> {
        for _ in 0..500 {
            let got = record.0.lock().unwrap().clone();
            if got.len() >= lines {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {:?}", record.0.lock().unwrap());
    }

    #[tokio::test]
    async fn resumes_with_the_last_id_after_the_retry_the_server_set() {
        let (addr, heads) = server(vec![
            "retry: 10\n\nid: 1\nevent: e\ndata: one\n\nid: 2\ndata: two\n\n",
            "id: 3\ndata: three\n\n",
        ])
        .await;
        let nodes: Nodes = Arc::new(RwLock::new(vec![Some(addr)]));
        let record = Record::default();
        let task = tokio::spawn(EventSource::new(settings(), nodes, 0, record.clone()).run());
        let got = wait_for(&record, 7).await;
        task.abort();
        assert_eq!(
            got[..7],
            [
                "open 0",
                "1 e one",
                "2 message two",
                "end 0 closed",
                "open 0",
                "3 message three",
                "end 0 closed",
            ]
        );
        let heads = heads.lock().unwrap();
        assert!(!heads[0].contains("Last-Event-ID"), "{}", heads[0]);
        assert!(heads[1].starts_with("GET /events?channel=a HTTP/1.1\r\n"));
        assert!(heads[1].contains("Last-Event-ID: 2\r\n"), "{}", heads[1]);
    }

    #[tokio::test]
    async fn a_refusing_or_down_node_is_skipped_for_the_next() {
        // A port nothing listens on: bound, then freed.
        let refused = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, _) = server(vec!["id: 7\ndata: x\n\n"]).await;
        let nodes: Nodes = Arc::new(RwLock::new(vec![Some(refused), None, Some(addr)]));
        let record = Record::default();
        let task = tokio::spawn(EventSource::new(settings(), nodes, 0, record.clone()).run());
        let got = wait_for(&record, 4).await;
        task.abort();
        assert_eq!(
            got[..4],
            ["end 0 refused", "end 1 refused", "open 2", "7 message x"]
        );
    }
}
