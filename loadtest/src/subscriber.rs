//! The subscribers: one small task per stream, and the [`Pool`] that opens them at the ramp
//! rate and adds up what they saw.
//!
//! Per-stream memory is what decides whether 19,000 streams fit next to the gateway, so a
//! stream holds only its socket, its framing and parser state and one sequence number. Reads go
//! into a buffer per worker thread (`READ_BUF`), borrowed only between a readiness wake-up and
//! the end of parsing (no `.await` in between), so an idle stream owns no read buffer at all.
//! Figures are kept in shared atomics and histograms, not per stream.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sse_wire::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::http::{read_head, BodyDecoder, BodyKind};
use crate::payload::{parse_data, unix_nanos};
use crate::progress::Counts;
use crate::report::{new_histogram, HistData};
use crate::target::Target;

/// A stream that has not opened (connected, answered 200, sent its first body byte) by then
/// counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read per wake-up, shared by all streams on a worker thread.
const READ_BUF_BYTES: usize = 16 * 1024;
/// Latency histograms are sharded so that streams on different threads rarely share a lock.
const LATENCY_SHARDS: usize = 16;
/// How often [`Pool`] checks its counters while waiting.
const POLL: Duration = Duration::from_millis(5);

thread_local! {
    /// The read buffer of every stream task on this thread: see the module doc.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF_BYTES]);
}

/// What a set of streams saw; crosses process boundaries as JSON in multi-process runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolStats {
    pub requested: u64,
    pub open: u64,
    pub failed: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub disconnects: u64,
    pub resets: u64,
    /// Events whose data is not `"<seq> <nanos> ..."`: not ours, or mangled.
    pub malformed: u64,
    pub connect_us: HistData,
    pub latency_us: HistData,
    /// The first reason a stream failed to open or ended, for the summary.
    pub first_error: Option<String>,
}

impl PoolStats {
    /// Adds another set of streams' figures to these.
    pub fn merge(&mut self, other: PoolStats) {
        self.requested += other.requested;
        self.open += other.open;
        self.failed += other.failed;
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.gaps += other.gaps;
        self.disconnects += other.disconnects;
        self.resets += other.resets;
        self.malformed += other.malformed;
        self.connect_us.merge(other.connect_us);
        self.latency_us.merge(other.latency_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// What all stream tasks of a pool share.
struct Shared {
    target: Target,
    /// The `GET` request, the same bytes for every stream.
    request: Box<[u8]>,
    /// Source addresses to bind, round robin; empty: let the kernel choose.
    sources: Vec<Ipv4Addr>,
    limits: ParserLimits,
    open: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    disconnects: AtomicU64,
    resets: AtomicU64,
    malformed: AtomicU64,
    /// The sum of the last sequence number seen by each stream still open: once it equals
    /// `(open - disconnects) × last published`, every live stream has caught up (even with
    /// gaps, since seq only moves forward), which lets the settle phase stop early.
    seq_sum: AtomicU64,
    /// Set when the run ends the streams itself, so that ending is not a disconnect.
    ended: AtomicBool,
    connect_us: Mutex<Histogram<u64>>,
    latency_us: Vec<Mutex<Histogram<u64>>>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new(spec: PoolSpec) -> Shared {
        let sources = match spec.target.addr {
            SocketAddr::V4(_) => (0..spec.source_ips)
                .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
                .collect(),
            // A ::1 target cannot be reached from 127.0.0.x; the kernel picks ::1.
            SocketAddr::V6(_) => Vec::new(),
        };
        // The parser must take the longest event we publish, with room for the field names.
        let room = spec.event_bytes.saturating_add(1024);
        let limits = ParserLimits {
            max_line_bytes: room.max(ParserLimits::default().max_line_bytes),
            max_event_bytes: room.max(ParserLimits::default().max_event_bytes),
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\nUser-Agent: sse-loadgen\r\n\r\n",
            spec.target.path, spec.target.authority
        );
        Shared {
            target: spec.target,
            request: request.into_bytes().into_boxed_slice(),
            sources,
            limits,
            open: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            seq_sum: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            connect_us: Mutex::new(new_histogram()),
            latency_us: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
            first_error: Mutex::new(None),
        }
    }

    fn note_error(&self, why: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }

    fn open_failed(&self, why: String) {
        self.note_error(why);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn disconnected(&self, last_seq: u64, why: String) {
        if self.ended.load(Ordering::Relaxed) {
            return;
        }
        self.note_error(why);
        self.seq_sum.fetch_sub(last_seq, Ordering::Relaxed);
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// A set of streams to one URL.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<AbortHandle>,
    requested: u64,
    /// Streams opened per second.
    ramp: f64,
}

/// What a pool is asked to open.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub target: Target,
    pub streams: u64,
    /// Streams opened per second.
    pub ramp: f64,
    /// Source addresses 127.0.0.2 .. 127.0.0.(n+1); 0: none.
    pub source_ips: u8,
    /// The size of the events to expect, which sets the parser's limits.
    pub event_bytes: usize,
}

impl Pool {
    /// A pool of no stream yet: [`Pool::open_all`] opens them, and [`Pool::counts`] can be
    /// watched meanwhile.
    pub fn new(spec: PoolSpec) -> Pool {
        let (requested, ramp) = (spec.streams, spec.ramp);
        Pool {
            shared: Arc::new(Shared::new(spec)),
            handles: Vec::with_capacity(usize::try_from(requested).unwrap_or(0)),
            requested,
            ramp,
        }
    }

    /// Opens the `streams` of the pool's spec at its `ramp` per second, and returns once each
    /// has opened or failed, or at `deadline`.
    pub async fn open_all(&mut self, deadline: Instant) {
        self.spawn_streams(deadline).await;
        while self.resolved() < self.requested && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the pool's live counts, from any task, for the progress line.
    pub fn counts(&self) -> impl Fn() -> Counts + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || Counts {
            open: shared
                .open
                .load(Ordering::Relaxed)
                .saturating_sub(shared.disconnects.load(Ordering::Relaxed)),
            delivered: shared.delivered.load(Ordering::Relaxed),
        }
    }

    /// Spawns the stream tasks on schedule: by time t, `ramp × t` of them.
    async fn spawn_streams(&mut self, deadline: Instant) {
        let ramp = self.ramp;
        let start = Instant::now();
        let mut spawned = 0u64;
        while spawned < self.requested && Instant::now() < deadline {
            let due = (start.elapsed().as_secs_f64() * ramp).floor() as u64 + 1;
            while spawned < due.min(self.requested) {
                let open_by = (Instant::now() + OPEN_TIMEOUT).min(deadline);
                let task = tokio::spawn(run_stream(self.shared.clone(), spawned, open_by));
                self.handles.push(task.abort_handle());
                spawned += 1;
            }
            if spawned < self.requested {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Streams that have opened or failed.
    fn resolved(&self) -> u64 {
        self.shared.open.load(Ordering::Relaxed) + self.shared.failed.load(Ordering::Relaxed)
    }

    pub fn open_count(&self) -> u64 {
        self.shared.open.load(Ordering::Relaxed)
    }

    pub fn failed_count(&self) -> u64 {
        self.requested - self.open_count()
    }

    /// Whether every stream still open has seen event `last_seq`.
    fn caught_up(&self, last_seq: u64) -> bool {
        let s = &self.shared;
        let live = s
            .open
            .load(Ordering::Relaxed)
            .saturating_sub(s.disconnects.load(Ordering::Relaxed));
        s.seq_sum.load(Ordering::Relaxed) >= live.saturating_mul(last_seq)
    }

    /// Waits until every open stream has seen event `last_seq`, at most `settle` and never
    /// past `deadline`.
    pub async fn settle(&self, last_seq: u64, settle: Duration, deadline: Instant) {
        let until = (Instant::now() + settle).min(deadline);
        while !self.caught_up(last_seq) && Instant::now() < until {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends every stream and returns the figures.
    pub fn finish(self) -> PoolStats {
        let s = &self.shared;
        s.ended.store(true, Ordering::Relaxed);
        for handle in &self.handles {
            handle.abort();
        }
        let mut latency = new_histogram();
        for shard in &s.latency_us {
            if let Ok(shard) = shard.lock() {
                // Same bounds on both sides, so adding cannot fail.
                let _ = latency.add(&*shard);
            }
        }
        let open = s.open.load(Ordering::Relaxed);
        PoolStats {
            requested: self.requested,
            open,
            failed: self.requested - open,
            delivered: s.delivered.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
            disconnects: s.disconnects.load(Ordering::Relaxed),
            resets: s.resets.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            connect_us: s
                .connect_us
                .lock()
                .map(|h| HistData::from_histogram(&h))
                .unwrap_or_default(),
            latency_us: HistData::from_histogram(&latency),
            first_error: s.first_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// One stream's state between reads: framing, SSE parser, and the last sequence number seen.
struct StreamState {
    body: BodyDecoder,
    parser: Parser,
    last_seq: u64,
    /// Which latency shard this stream records into.
    shard: usize,
}

impl StreamState {
    fn new(body: BodyKind, shared: &Shared, index: u64) -> StreamState {
        StreamState {
            body: BodyDecoder::new(body),
            parser: Parser::new(shared.limits),
            last_seq: 0,
            shard: (index % LATENCY_SHARDS as u64) as usize,
        }
    }

    /// Feeds bytes read from the socket; returns how many body bytes they held. An error ends
    /// the stream: bad framing or SSE, or the body ended (a stream must not end during a run).
    fn feed(&mut self, bytes: &[u8], shared: &Shared) -> Result<usize, String> {
        let mut input = bytes;
        let mut items = Vec::new();
        let mut body_bytes = 0;
        while let Some(data) = self.body.next_data(&mut input).map_err(|e| e.to_string())? {
            body_bytes += data.len();
            self.parser
                .push(data, &mut items)
                .map_err(|e| format!("bad event stream: {e}"))?;
        }
        if !items.is_empty() {
            let now = unix_nanos();
            for item in items {
                if let ParsedItem::Event(event) = item {
                    self.on_event(&event, now, shared);
                }
            }
        }
        if self.body.is_done() {
            return Err("the server ended the response body".to_owned());
        }
        Ok(body_bytes)
    }

    fn on_event(&mut self, event: &ParsedEvent, now: u64, shared: &Shared) {
        if event.event == "reset" {
            shared.resets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some((seq, sent)) = parse_data(&event.data) else {
            shared.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if seq <= self.last_seq {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if seq > self.last_seq + 1 {
            shared
                .gaps
                .fetch_add(seq - self.last_seq - 1, Ordering::Relaxed);
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared
            .seq_sum
            .fetch_add(seq - self.last_seq, Ordering::Relaxed);
        self.last_seq = seq;
        let micros = now.saturating_sub(sent) / 1000;
        if let Ok(mut hist) = shared.latency_us[self.shard].lock() {
            hist.saturating_record(micros.max(1));
        }
    }
}

/// One stream, from connect to the end of the run.
async fn run_stream(shared: Arc<Shared>, index: u64, open_by: Instant) {
    let started = Instant::now();
    let (stream, mut state) =
        match tokio::time::timeout_at(open_by, open_stream(&shared, index)).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(why)) => return shared.open_failed(why),
            Err(_) => return shared.open_failed("the stream did not open in time".to_owned()),
        };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Ok(mut hist) = shared.connect_us.lock() {
        hist.saturating_record(micros.max(1));
    }
    shared.open.fetch_add(1, Ordering::Relaxed);

    let why = loop {
        if let Err(e) = stream.readable().await {
            break e.to_string();
        }
        let step = READ_BUF.with_borrow_mut(|buf| match stream.try_read(buf) {
            Ok(0) => Err("the server closed the stream".to_owned()),
            Ok(n) => state.feed(&buf[..n], &shared).map(drop),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(format!("read failed: {e}")),
        });
        if let Err(why) = step {
            break why;
        }
    };
    shared.disconnected(state.last_seq, why);
}

/// Connects, sends the request, reads the response head (200 required) and the first body
/// byte, which is when an `EventSource` would fire `open`.
async fn open_stream(shared: &Shared, index: u64) -> Result<(TcpStream, StreamState), String> {
    let addr = shared.target.addr;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if !shared.sources.is_empty() {
        let source = shared.sources[(index % shared.sources.len() as u64) as usize];
        bind_source(&socket, source)?;
    }
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    // Nagle would only delay our one small request.
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&shared.request)
        .await
        .map_err(|e| format!("send request: {e}"))?;

    // The head and first bytes are read into a buffer of their own, freed once open.
    let mut buf = Vec::with_capacity(1024);
    let head = read_head(&mut stream, &mut buf).await?;
    if head.status != 200 {
        let body = &buf[head.len..buf.len().min(head.len + 200)];
        return Err(format!(
            "HTTP {} instead of 200: {}",
            head.status,
            String::from_utf8_lossy(body).trim()
        ));
    }
    if matches!(head.body, BodyKind::Length(_)) {
        return Err("the stream response has a Content-Length, so it would end".to_owned());
    }
    let mut state = StreamState::new(head.body, shared, index);
    let mut body_bytes = state.feed(&buf[head.len..], shared)?;
    while body_bytes == 0 {
        buf.clear();
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("the server closed before the stream opened".to_owned());
        }
        body_bytes = state.feed(&buf, shared)?;
    }
    Ok((stream, state))
}

/// Binds the socket to `source` with port selection left to `connect`
/// (`IP_BIND_ADDRESS_NO_PORT`): otherwise `bind` picks a port that must be unique per source
/// address alone, which halves the ports available and fails early at high stream counts.
fn bind_source(socket: &TcpSocket, source: Ipv4Addr) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the size passed. Failure is
    // harmless (an older kernel): bind then picks the port itself.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .map_err(|e| format!("bind {source}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::make_data;

    fn shared() -> Shared {
        Shared::new(PoolSpec {
            target: Target {
                authority: "127.0.0.1:1".to_owned(),
                path: "/".to_owned(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            streams: 1,
            ramp: 1.0,
            source_ips: 0,
            event_bytes: 64,
        })
    }

    fn event(seq: u64) -> String {
        format!(
            "id: {seq}\nevent: bench\ndata: {}\n\n",
            make_data(seq, unix_nanos(), 64)
        )
    }

    #[test]
    fn counts_delivered_duplicates_gaps_resets_and_foreign_data() {
        let s = shared();
        let mut state = StreamState::new(BodyKind::Close, &s, 3);
        assert_eq!(state.feed(b"retry: 3000\n: open\n\n", &s), Ok(20));
        let stream = [
            event(1),
            event(2),
            event(2),                                                // duplicate
            event(5),                                                // 3 and 4 missing
            "event: reset\ndata: {\"reason\":\"x\"}\n\n".to_owned(), // counted apart
            "data: hello\n\n".to_owned(),                            // not ours
            event(1),                                                // duplicate
        ]
        .concat();
        // Split anywhere: the figures do not depend on how reads cut the stream.
        for piece in stream.as_bytes().chunks(7) {
            state.feed(piece, &s).unwrap();
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(load(&s.delivered), 3);
        assert_eq!(load(&s.duplicates), 2);
        assert_eq!(load(&s.gaps), 2);
        assert_eq!(load(&s.resets), 1);
        assert_eq!(load(&s.malformed), 1);
        assert_eq!(load(&s.seq_sum), 5);
        assert_eq!(state.last_seq, 5);
        let recorded: u64 = s.latency_us.iter().map(|h| h.lock().unwrap().len()).sum();
        assert_eq!(recorded, 3);
    }

    #[test]
    fn a_body_that_ends_or_breaks_ends_the_stream() {
        let s = shared();
        let mut state = StreamState::new(BodyKind::Chunked, &s, 0);
        assert_eq!(state.feed(b"3\r\n: x\r\n", &s), Ok(3));
        assert!(state.feed(b"0\r\n\r\n", &s).is_err());
        let mut state = StreamState::new(BodyKind::Chunked, &s, 0);
        assert!(state.feed(b"zz\r\n", &s).is_err());
    }
}
