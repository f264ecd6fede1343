//! Where an HTTP/1.1 stream's bytes go after its header: the connection itself, its events
//! written as chunks of the chunked transfer coding.
//!
//! A plain TCP connection is taken out of pingora's stream wrapper ([`plain`]) and written
//! with non-blocking sends ([`PlainSocket`]): a write that the kernel takes at once,
//! which is nearly every write to a client that keeps up, costs one system call and no timer,
//! flush or buffer. The write timeout is armed only when the socket is full. A plain socket's
//! sending half ([`Sender`]) can be handed to the stream's queue, so that the hub's writer
//! threads write events to it directly (see `hub::queue`). Any other connection (TLS) keeps
//! pingora's stream and is written through it ([`ChunkedSocket`]).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::pump::{Downstream, WriteError};
use crate::hub::{ClientHandle, DirectWrite};

/// The connection of an HTTP/1.1 stream whose header is written: a [`PlainSocket`] when it is
/// plain TCP, else a [`ChunkedSocket`] over pingora's stream.
pub enum Connection {
    Plain(PlainSocket),
    Wrapped(ChunkedSocket),
}

impl Connection {
    pub async fn new(mut stream: Stream, write_timeout: Duration) -> io::Result<Connection> {
        // pingora may hold the end of the response header in its write buffer.
        stream.flush().await?;
        Ok(match plain(stream) {
            Ok(socket) => Connection::Plain(PlainSocket::new(socket, write_timeout)),
            Err(stream) => Connection::Wrapped(ChunkedSocket {
                stream,
                write_timeout,
            }),
        })
    }
}

/// The TCP socket under pingora's stream, if the stream is plain TCP (not TLS, not a unix
/// socket); the stream back otherwise.
///
/// pingora's stream does not give its socket up, so the socket's descriptor is duplicated and
/// the stream dropped: the duplicate is the connection from then on. Nothing is lost in
/// between: the stream's write buffer was flushed by the caller, and a client sends nothing on
/// an SSE stream after its request.
pub(crate) fn plain(stream: Stream) -> Result<TcpStream, Stream> {
    let Some(raw_fd) = stream
        .as_any()
        .downcast_ref::<L4Stream>()
        .map(|s| s.as_raw_fd())
    else {
        return Err(stream);
    };
    // SAFETY: the descriptor belongs to `stream`, which is alive for this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(raw_fd) };
    let Ok(owned) = fd.try_clone_to_owned() else {
        return Err(stream);
    };
    let std_socket = std::net::TcpStream::from(owned);
    // A unix socket has no IP peer: it keeps pingora's stream.
    if std_socket.peer_addr().is_err() || std_socket.set_nonblocking(true).is_err() {
        return Err(stream);
    }
    match TcpStream::from_std(std_socket) {
        Ok(socket) => {
            drop(stream);
            Ok(socket)
        }
        Err(_) => Err(stream),
    }
}

/// A plain TCP connection written with non-blocking sends (see [`send`]).
pub struct PlainSocket {
    socket: Arc<TcpStream>,
    sender: SenderAt,
    write_timeout: Duration,
}

/// Where a plain socket's sending half is: with the socket, or handed to a stream's queue.
enum SenderAt {
    Here(Sender),
    Queue(Arc<ClientHandle>),
}

impl PlainSocket {
    fn new(socket: TcpStream, write_timeout: Duration) -> PlainSocket {
        let socket = Arc::new(socket);
        PlainSocket {
            sender: SenderAt::Here(Sender {
                fd: socket.as_raw_fd(),
                socket: socket.clone(),
                unsent: Bytes::new(),
            }),
            socket,
            write_timeout,
        }
    }

    /// Hands the sending half to `client`'s queue: from now on the hub's writer threads may
    /// write its events to this socket directly, and this socket's own writes go through the
    /// queue's lock so that theirs and its own never interleave.
    pub fn hand_to(&mut self, client: &Arc<ClientHandle>) {
        let at = std::mem::replace(&mut self.sender, SenderAt::Queue(client.clone()));
        if let SenderAt::Here(sender) = at {
            client.queue.go_direct(Box::new(sender));
        }
    }

    fn with_sender<R>(
        &mut self,
        f: impl FnOnce(&mut dyn DirectWrite) -> io::Result<R>,
    ) -> io::Result<R> {
        match &mut self.sender {
            SenderAt::Here(sender) => f(sender),
            SenderAt::Queue(client) => client.queue.with_direct(f),
        }
    }
}

impl Drop for PlainSocket {
    fn drop(&mut self) {
        if let SenderAt::Queue(client) = &self.sender {
            drop(client.queue.take_direct());
        }
    }
}

impl Downstream for PlainSocket {
    /// Finishes what an earlier write left unsent, then writes `chunk` (an empty, non-final one
    /// writes nothing but that).
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        let mut chunk = Some(chunk);
        // Armed on the first write that would block: a client that keeps up never costs a timer.
        let mut deadline = None;
        loop {
            let done = self.with_sender(|sender| {
                if !sender.flush()? {
                    return Ok(false);
                }
                if let Some(chunk) = chunk.take() {
                    sender.send_chunk(&chunk, end)?;
                }
                Ok(!sender.has_unsent())
            });
            match done {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(WriteError::Closed),
            }
            let at = *deadline.get_or_insert_with(|| Instant::now() + self.write_timeout);
            match timeout_at(at, self.socket.writable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(WriteError::Closed),
                Err(_) => return Err(WriteError::TimedOut),
            }
        }
    }

    async fn gone(&mut self) {
        let mut probe = [0u8; 64];
        loop {
            if self.socket.readable().await.is_err() {
                return;
            }
            match self.socket.try_read(&mut probe) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// A plain socket's sending half: non-blocking sends of whole chunks, and what the socket did
/// not take of the last one.
struct Sender {
    socket: Arc<TcpStream>,
    /// The socket's descriptor, kept here so that the fan-out's send reads no other memory.
    fd: RawFd,
    unsent: Bytes,
}

/// How a send treats the runtime's record of the socket's readiness.
#[derive(Clone, Copy)]
enum Readiness {
    /// Consulted and, when the socket is full, cleared: for the stream's task, which then
    /// waits for the socket to become writable.
    Tracked,
    /// Left alone: for the fan-out, which never waits. It saves touching the record (a cache
    /// line of its own per stream); a send that finds the socket full leaves the rest to the
    /// task, whose first send then clears the record.
    Untracked,
}

impl Sender {
    /// Sends as much of `parts` as the socket takes now; how much that was.
    fn try_send(&self, parts: &[IoSlice], readiness: Readiness) -> io::Result<usize> {
        loop {
            let sent = match readiness {
                Readiness::Tracked => self
                    .socket
                    .try_io(Interest::WRITABLE, || send(&self.socket, parts)),
                Readiness::Untracked => {
                    // SAFETY: `self.socket` owns the descriptor and lives as long as `self`.
                    send(&unsafe { BorrowedFd::borrow_raw(self.fd) }, parts)
                }
            };
            match sent {
                Ok(0) if parts.iter().any(|p| !p.is_empty()) => {
                    return Err(io::ErrorKind::WriteZero.into())
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `data` as one chunk; keeps what the socket did not take.
    fn chunk(&mut self, data: &[u8], end: bool, readiness: Readiness) -> io::Result<()> {
        let mut head = [0u8; 18];
        let Some((head, tail)) = chunk_frame(data.len(), end, &mut head) else {
            return Ok(());
        };
        let parts = [IoSlice::new(head), IoSlice::new(data), IoSlice::new(tail)];
        let sent = self.try_send(&parts, readiness)?;
        let total = head.len() + data.len() + tail.len();
        if sent < total {
            // Rare (the socket is full): the rest is copied, to go first next time.
            let mut rest = Vec::with_capacity(total - sent);
            let mut skip = sent;
            for part in [head, data, tail] {
                let from = skip.min(part.len());
                rest.extend_from_slice(&part[from..]);
                skip -= from;
            }
            self.unsent = Bytes::from(rest);
        }
        Ok(())
    }
}

impl DirectWrite for Sender {
    fn flush(&mut self) -> io::Result<bool> {
        if self.unsent.is_empty() {
            return Ok(true);
        }
        let n = self.try_send(&[IoSlice::new(&self.unsent)], Readiness::Tracked)?;
        self.unsent.advance(n);
        Ok(self.unsent.is_empty())
    }

    fn send_chunk(&mut self, data: &[u8], end: bool) -> io::Result<()> {
        self.chunk(data, end, Readiness::Tracked)
    }

    fn offer_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        self.chunk(data, false, Readiness::Untracked)
    }

    fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }
}

/// Writes up to this many bytes are copied into one buffer and sent with one `send`.
const SMALL_WRITE: usize = 512;

/// Sends what `parts` hold, or as much as the socket takes. A small write (nearly every event)
/// is copied into one buffer and sent with `send`, the kernel's plainest path: a `writev` of
/// the same bytes goes through the file layer and an iovec import on top, which put the
/// gateway's kernel time per delivery 1.1-1.2x the floor's (whose one `send` this now is; see
/// the performance chapter of the book). A larger one is sent as it is, with `sendmsg`.
fn send(socket: &impl AsFd, parts: &[IoSlice]) -> io::Result<usize> {
    let socket = SockRef::from(socket);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > SMALL_WRITE {
        return socket.send_vectored(parts);
    }
    let mut buf = [0u8; SMALL_WRITE];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    socket.send(&buf[..at])
}

/// A connection pingora wraps (TLS), written through its stream: one vectored write and a flush
/// per chunk, under the write timeout.
pub struct ChunkedSocket {
    stream: Stream,
    write_timeout: Duration,
}

impl Downstream for ChunkedSocket {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        let mut head = [0u8; 18];
        let Some((head, tail)) = chunk_frame(chunk.len(), end, &mut head) else {
            return Ok(());
        };
        let mut buf = Buf::chain(head, chunk).chain(tail);
        let write = async {
            self.stream.write_all_buf(&mut buf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Closed),
            Err(_) => Err(WriteError::TimedOut),
        }
    }

    async fn gone(&mut self) {
        client_left(&mut self.stream).await
    }
}

impl Downstream for Connection {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        match self {
            Connection::Plain(s) => s.write(chunk, end).await,
            Connection::Wrapped(s) => s.write(chunk, end).await,
        }
    }

    async fn gone(&mut self) {
        match self {
            Connection::Plain(s) => s.gone().await,
            Connection::Wrapped(s) => s.gone().await,
        }
    }
}

/// Resolves when the client has left. A client never sends on an SSE stream; anything it does
/// send is ignored. End of file or an error means it has left.
async fn client_left<R: tokio::io::AsyncRead + Unpin>(conn: &mut R) {
    let mut probe = [0u8; 64];
    while let Ok(n) = conn.read(&mut probe).await {
        if n == 0 {
            return;
        }
    }
}

/// What goes around a chunk of `len` bytes: its size line and its end (with the last chunk
/// after it when `end`). `None` when there is nothing to write: an empty chunk would read as the
/// last one, so an empty non-final chunk is skipped and an empty final one is the last chunk
/// alone.
fn chunk_frame(len: usize, end: bool, head: &mut [u8; 18]) -> Option<(&[u8], &'static [u8])> {
    match (len == 0, end) {
        (true, true) => Some((b"", b"0\r\n\r\n")),
        (true, false) => None,
        (false, true) => Some((chunk_size_line(len, head), b"\r\n0\r\n\r\n")),
        (false, false) => Some((chunk_size_line(len, head), b"\r\n")),
    }
}

/// Writes a chunk's size line (`<hex length>\r\n`) into `buf` without allocating.
fn chunk_size_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let mut digits = 0;
    let mut n = len;
    loop {
        digits += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in buf[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::pump;

    #[test]
    fn chunk_size_lines_are_lowercase_hex() {
        let mut buf = [0u8; 18];
        for (len, line) in [
            (0, "0\r\n"),
            (9, "9\r\n"),
            (10, "a\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            assert_eq!(chunk_size_line(len, &mut buf), line.as_bytes());
        }
    }

    #[test]
    fn an_empty_chunk_is_never_written_as_data() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_frame(0, false, &mut buf), None);
        assert_eq!(
            chunk_frame(0, true, &mut buf),
            Some((&b""[..], &b"0\r\n\r\n"[..]))
        );
        assert_eq!(
            chunk_frame(3, true, &mut buf),
            Some((&b"3\r\n"[..], &b"\r\n0\r\n\r\n"[..]))
        );
    }

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// A stream of channel "c" on a plain socket handed to its queue, run by its task.
    fn direct_stream(
        hub: &std::sync::Arc<crate::hub::Hub>,
        socket: TcpStream,
        queue: usize,
    ) -> (
        std::sync::Arc<ClientHandle>,
        tokio::task::JoinHandle<super::super::End>,
    ) {
        let sub = pump::tests::subscribe(hub, queue);
        let client = sub.client.clone();
        let mut out = PlainSocket::new(socket, Duration::from_secs(30));
        out.hand_to(&client);
        let settings = super::super::StreamSettings {
            queue,
            ..pump::tests::settings()
        };
        let task = tokio::spawn(async move {
            let drain = crate::drain::Drain::default();
            super::super::pump(&mut out, sub, &settings, &drain).await
        });
        (client, task)
    }

    /// Waits until the stream's opening is written and its task waits for events: from then
    /// on the writers write to it directly.
    async fn until_open(client: &ClientHandle) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !format!("{:?}", client.queue).contains("held: false") {
            assert!(Instant::now() < deadline, "the stream never opened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Events the writer threads send straight to the socket keep their order and arrive once
    /// each when the socket fills: the part of a chunk it did not take is finished by the
    /// stream's task once the client reads again, and the events that came meanwhile wait in
    /// the queue behind it.
    #[tokio::test]
    async fn direct_writes_to_a_full_socket_arrive_in_order_once() {
        const EVENTS: usize = 2_000;
        let hub = pump::tests::hub();
        let (mut reader, socket) = socket_pair().await;
        let (client, _task) = direct_stream(&hub, socket, EVENTS);
        until_open(&client).await;
        // 2,000 events of 16 KiB: 32 MiB, far more than the socket buffers hold unread.
        let padding = "x".repeat(16 << 10);
        for i in 0..EVENTS {
            pump::tests::publish(&hub, &format!("{i} {padding}"));
        }
        hub.settle();
        assert!(
            !format!("{:?}", client.queue).contains("queued: 0,"),
            "the socket filled and events were queued behind it: {:?}",
            client.queue
        );
        let mut body = sse_wire::body::BodyDecoder::new(sse_wire::body::BodyKind::Chunked);
        let mut parser = sse_wire::parse::Parser::new(Default::default());
        let mut items = Vec::new();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < EVENTS {
            let n = timeout_at(deadline, reader.read(&mut buf))
                .await
                .expect("every event within 30 s")
                .unwrap();
            assert!(n > 0, "the stream ended early after {} events", got.len());
            let mut input = &buf[..n];
            while let Some(data) = body.next_data(&mut input).unwrap() {
                parser.push(data, &mut items).unwrap();
            }
            for item in items.drain(..) {
                if let sse_wire::parse::ParsedItem::Event(event) = item {
                    got.push(event.data.split(' ').next().unwrap().to_owned());
                }
            }
        }
        let expected: Vec<String> = (0..EVENTS).map(|i| i.to_string()).collect();
        assert!(got == expected, "events out of order or repeated");
    }

    /// A client that stops reading is closed as a slow consumer also when its events are
    /// written directly: once the socket is full, they queue, and the queue overflows.
    #[tokio::test]
    async fn a_direct_stream_that_stops_reading_is_closed_as_slow() {
        let hub = pump::tests::hub();
        let (_reader, socket) = socket_pair().await;
        let (client, task) = direct_stream(&hub, socket, 8);
        until_open(&client).await;
        let padding = "x".repeat(16 << 10);
        for i in 0..2_000 {
            pump::tests::publish(&hub, &format!("{i} {padding}"));
        }
        let end = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the stream ends")
            .unwrap();
        assert_eq!(end, super::super::End::SlowConsumer);
    }

    /// Both ways of sending (one copied buffer for a small write, `sendmsg` for a large one)
    /// put the same chunked bytes on the wire, in order, also when a large write fills the
    /// socket and goes out in pieces as the reader drains it.
    #[tokio::test]
    async fn small_and_large_chunks_arrive_byte_exact() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut reader = client.unwrap();
        let mut socket = PlainSocket::new(accepted.unwrap().0, Duration::from_secs(10));
        let small = Bytes::from_static(b"data: small\n\n");
        let large = Bytes::from(
            (0..4 << 20)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        );
        let mut expected = Vec::new();
        for (chunk, end) in [(&small, false), (&large, false), (&small, true)] {
            let mut head = [0u8; 18];
            let (head, tail) = chunk_frame(chunk.len(), end, &mut head).unwrap();
            expected.extend_from_slice(head);
            expected.extend_from_slice(chunk);
            expected.extend_from_slice(tail);
        }
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.map(|_| got)
        });
        for (chunk, end) in [(small.clone(), false), (large, false), (small, true)] {
            socket.write(chunk, end).await.unwrap();
        }
        drop(socket);
        assert!(read.await.unwrap().unwrap() == expected, "bytes differ");
    }
}
