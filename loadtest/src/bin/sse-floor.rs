//! `sse-floor`: the least work any SSE server can do per delivery, to measure this machine's
//! floor under the same load as the gateway and nginx + nchan.
//!
//! Every server that fans an event out over HTTP/1.1 must make at least one `write` per stream
//! per event, and on loopback that write also runs the receiver's TCP input path and wakes the
//! receiver. This server does only that: `GET` (any path) opens a stream (`200`,
//! `text/event-stream`, close-delimited body, a comment so the client sees the stream open);
//! `POST` (any path, `Content-Length` body) answers `202` and writes `data: <body>\n\n` to every
//! stream, each worker thread to its own streams straight from its epoll loop: no queues, no
//! tasks, no ids, no history, no heartbeats, no limits, no auth. A stream that cannot take a
//! frame at once is dropped and counted (a floor does not buffer). It is not a product: it
//! exists so that a benchmark report can say how far above the machine's floor a server is.
//!
//! `sse-floor [--listen 127.0.0.1:0] [--threads 2] [--max-seconds 600]` prints
//! `sse-floor listening on http://ADDR` and exits after `--max-seconds` or on SIGTERM.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

/// The token of each worker's waker; connections count up from 1.
const WAKER: Token = Token(0);
/// Longest request (head and body) accepted.
const MAX_REQUEST: usize = 64 * 1024;
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
    cache-control: no-cache\r\nconnection: close\r\n\r\n: connected\n\n";
const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

struct Options {
    listen: SocketAddr,
    threads: usize,
    max_seconds: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        threads: 2,
        max_seconds: 600,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => options.listen = value.parse().map_err(|e| bad(&e))?,
            "--threads" => options.threads = value.parse().map_err(|e| bad(&e))?,
            "--max-seconds" => options.max_seconds = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !options.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: loopback addresses only",
            options.listen
        ));
    }
    if options.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(options)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("sse-floor: {e}\nusage: sse-floor [--listen 127.0.0.1:0] [--threads 2] [--max-seconds 600]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options) {
        eprintln!("sse-floor: {e}");
        std::process::exit(1);
    }
}

/// What a worker is handed by others: new connections and frames to write to its streams.
///
/// Not bounded, on purpose: this is a loopback benchmark peer fed by a load generator that
/// publishes a bounded number of events and opens a bounded number of streams, and a worker
/// that falls behind must still write every frame, or the floor it measures would be false.
struct Inbox {
    waker: Waker,
    connections: Mutex<Vec<std::net::TcpStream>>,
    frames: Mutex<Vec<Arc<[u8]>>>,
}

/// Counts printed at exit.
#[derive(Default)]
struct Totals {
    streams: AtomicU64,
    published: AtomicU64,
    writes: AtomicU64,
    dropped: AtomicU64,
}

fn run(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(options.listen)?;
    println!("sse-floor listening on http://{}", listener.local_addr()?);
    let totals = Arc::new(Totals::default());
    let mut polls = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..options.threads {
        let poll = Poll::new()?;
        inboxes.push(Arc::new(Inbox {
            waker: Waker::new(poll.registry(), WAKER)?,
            connections: Mutex::new(Vec::new()),
            frames: Mutex::new(Vec::new()),
        }));
        polls.push(poll);
    }
    let inboxes: Arc<[Arc<Inbox>]> = inboxes.into();
    for (index, poll) in polls.into_iter().enumerate() {
        let worker = Worker {
            poll,
            index,
            inboxes: inboxes.clone(),
            totals: totals.clone(),
            conns: HashMap::new(),
            next_token: 1,
        };
        std::thread::spawn(move || worker.run());
    }
    // Ends the process after --max-seconds, or at SIGTERM (the default action), whichever first.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let max = Duration::from_secs(options.max_seconds);
    std::thread::spawn(move || {
        let _ = stop_rx.recv_timeout(max);
        let t = &totals;
        eprintln!(
            "sse-floor: {} streams, {} published, {} writes, {} dropped",
            t.streams.load(Ordering::Relaxed),
            t.published.load(Ordering::Relaxed),
            t.writes.load(Ordering::Relaxed),
            t.dropped.load(Ordering::Relaxed)
        );
        std::process::exit(0);
    });
    let _keep = stop_tx;
    for (n, conn) in listener.incoming().enumerate() {
        let Ok(conn) = conn else { continue };
        let inbox = &inboxes[n % inboxes.len()];
        if let Ok(mut pending) = inbox.connections.lock() {
            pending.push(conn);
        }
        inbox.waker.wake()?;
    }
    Ok(())
}

enum Conn {
    /// Reading a request.
    Request(TcpStream, Vec<u8>),
    /// An open event stream.
    Stream(TcpStream),
}

struct Worker {
    poll: Poll,
    index: usize,
    inboxes: Arc<[Arc<Inbox>]>,
    totals: Arc<Totals>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.poll.poll(&mut events, None).is_err() {
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    self.take_inbox();
                } else {
                    self.readable(event.token());
                }
            }
        }
    }

    fn take_inbox(&mut self) {
        let inbox = self.inboxes[self.index].clone();
        let new = inbox
            .connections
            .lock()
            .map(|mut v| std::mem::take(&mut *v));
        for conn in new.unwrap_or_default() {
            if conn.set_nonblocking(true).is_err() || conn.set_nodelay(true).is_err() {
                continue;
            }
            let mut conn = TcpStream::from_std(conn);
            let token = Token(self.next_token);
            self.next_token += 1;
            if self
                .poll
                .registry()
                .register(&mut conn, token, Interest::READABLE)
                .is_ok()
            {
                self.conns.insert(token, Conn::Request(conn, Vec::new()));
            }
        }
        let frames = inbox.frames.lock().map(|mut v| std::mem::take(&mut *v));
        for frame in frames.unwrap_or_default() {
            self.fan_out(&frame);
        }
    }

    /// Writes one frame to every stream of this worker: one `write` each.
    fn fan_out(&mut self, frame: &[u8]) {
        let mut dropped = Vec::new();
        let mut writes = 0;
        for (token, conn) in self.conns.iter_mut() {
            if let Conn::Stream(stream) = conn {
                writes += 1;
                if !matches!(stream.write(frame), Ok(n) if n == frame.len()) {
                    dropped.push(*token);
                }
            }
        }
        self.totals.writes.fetch_add(writes, Ordering::Relaxed);
        self.totals
            .dropped
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        for token in dropped {
            self.conns.remove(&token);
        }
    }

    fn readable(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let done = match conn {
            // A client says nothing on a stream: data is ignored, end of file or an error ends it.
            Conn::Stream(stream) => loop {
                match stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            },
            Conn::Request(stream, buf) => loop {
                match stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) if buf.len() + n <= MAX_REQUEST => buf.extend_from_slice(&chunk[..n]),
                    Ok(_) => break true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            },
        };
        if done {
            self.conns.remove(&token);
            return;
        }
        self.serve_requests(token);
    }

    /// Answers every complete request buffered on a request connection.
    fn serve_requests(&mut self, token: Token) {
        loop {
            let Some(Conn::Request(stream, buf)) = self.conns.get_mut(&token) else {
                return;
            };
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let head_len = match request.parse(buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return,
                Err(_) => {
                    let _ = stream.write(BAD_REQUEST);
                    self.conns.remove(&token);
                    return;
                }
            };
            let body_len = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if request.method == Some("GET") {
                let ok = matches!(stream.write(STREAM_HEAD), Ok(n) if n == STREAM_HEAD.len());
                let Some(Conn::Request(stream, _)) = self.conns.remove(&token) else {
                    return;
                };
                if ok {
                    self.totals.streams.fetch_add(1, Ordering::Relaxed);
                    self.conns.insert(token, Conn::Stream(stream));
                }
                return;
            }
            if buf.len() < head_len + body_len {
                return;
            }
            let body: Vec<u8> = buf.drain(..head_len + body_len).skip(head_len).collect();
            if stream.write(ACCEPTED).is_err() {
                self.conns.remove(&token);
                return;
            }
            self.publish(&body);
        }
    }

    /// Hands the frame to every other worker, then writes it to this worker's own streams.
    fn publish(&mut self, data: &[u8]) {
        let mut frame = Vec::with_capacity(data.len() + 8);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\n\n");
        let frame: Arc<[u8]> = frame.into();
        self.totals.published.fetch_add(1, Ordering::Relaxed);
        for (i, inbox) in self.inboxes.iter().enumerate() {
            if i == self.index {
                continue;
            }
            if let Ok(mut frames) = inbox.frames.lock() {
                frames.push(frame.clone());
            }
            let _ = inbox.waker.wake();
        }
        self.fan_out(&frame);
    }
}
