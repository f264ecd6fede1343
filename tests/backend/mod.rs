//! A backend HTTP/1.1 server on a real socket for the reverse-proxy tests: it records every
//! request and answers by path, so a test sees what the gateway forwarded and can make a server
//! unhealthy, slow, failing, streaming or upgrading.
//!
//! | path | answer |
//! |---|---|
//! | `/healthz` | 200, or 503 after `set_healthy(false)` (not recorded in `requests`) |
//! | `/slow` | 200 after [`SLOW`] |
//! | `/hold` | 200 `text/event-stream`, one comment, then held open (a request in flight) |
//! | `/hop` | 200 with hop-by-hop response headers (`Keep-Alive`, one named by `Connection`) |
//! | `/ws` | with `Upgrade: websocket`: 101, then echoes every byte |
//! | anything else | 200 with the server's name as body, or `set_status(...)`'s status |
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long `/slow` takes to answer.
pub const SLOW: Duration = Duration::from_secs(2);

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as in the request line.
    pub target: String,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
        all.first().copied()
    }
}

struct State {
    name: String,
    healthy: AtomicBool,
    /// 0: answer normally.
    status: AtomicU16,
    requests: Mutex<Vec<Seen>>,
    health_checks: Mutex<usize>,
}

pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            name: name.to_owned(),
            healthy: AtomicBool::new(true),
            status: AtomicU16::new(0),
            requests: Mutex::new(Vec::new()),
            health_checks: Mutex::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        Backend { addr, state, task }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether `/healthz` answers 200 (else 503).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Answer every ordinary request with this status (`None`: normally).
    pub fn set_status(&self, status: Option<u16>) {
        self.state
            .status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// The requests received so far, health checks left out.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn health_checks(&self) -> usize {
        *self.state.health_checks.lock().unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on: a port bound, then freed.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Serves one connection's requests in turn (keep-alive).
async fn serve(mut socket: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        let Some(seen) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        let path = seen.target.split('?').next().unwrap_or("").to_owned();
        if path == "/healthz" {
            *state.health_checks.lock().unwrap() += 1;
            let status = if state.healthy.load(Ordering::SeqCst) {
                200
            } else {
                503
            };
            if write(&mut socket, status, &[], "health").await.is_err() {
                return;
            }
            continue;
        }
        state.requests.lock().unwrap().push(seen.clone());
        let forced = state.status.load(Ordering::SeqCst);
        let written = match path.as_str() {
            _ if forced != 0 => write(&mut socket, forced, &[], &state.name).await,
            "/slow" => {
                tokio::time::sleep(SLOW).await;
                write(&mut socket, 200, &[], &state.name).await
            }
            "/hold" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-backend: {}\r\n\
                     transfer-encoding: chunked\r\n\r\n5\r\n: on\n\r\n",
                    state.name
                );
                let _ = socket.write_all(head.as_bytes()).await;
                // Held until the other side closes.
                let mut sink = [0u8; 512];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            "/hop" => {
                let hops = [
                    ("connection", "keep-alive, x-resp-hop"),
                    ("keep-alive", "timeout=5"),
                    ("x-resp-hop", "1"),
                    ("x-resp-kept", "1"),
                ];
                write(&mut socket, 200, &hops, &state.name).await
            }
            "/ws" if seen.header("upgrade") == Some("websocket") => {
                let head = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                            connection: Upgrade\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                socket.write_all(&buf).await.ok();
                let (mut rd, mut wr) = socket.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                return;
            }
            _ => write(&mut socket, 200, &[], &state.name).await,
        };
        if written.is_err() {
            return;
        }
    }
}

/// Reads one request (head and a `Content-Length` body); `buf` keeps bytes read past it.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

async fn write(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await
}
