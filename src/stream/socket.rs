//! Where an HTTP/1.1 stream's bytes go after its header: the connection itself, its events
//! written as chunks of the chunked transfer coding.
//!
//! A plain TCP connection is taken out of pingora's stream wrapper ([`plain`]) and written
//! with non-blocking sends ([`PlainSocket`]): a write that the kernel takes at once,
//! which is nearly every write to a client that keeps up, costs one system call and no timer,
//! flush or buffer. The write timeout is armed only when the socket is full. Any other
//! connection (TLS) keeps pingora's stream and is written through it ([`ChunkedSocket`]).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
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
            Ok(socket) => Connection::Plain(PlainSocket {
                socket,
                write_timeout,
            }),
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
    socket: TcpStream,
    write_timeout: Duration,
}

impl Downstream for PlainSocket {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        let mut head = [0u8; 18];
        let Some((head, tail)) = chunk_frame(chunk.len(), end, &mut head) else {
            return Ok(());
        };
        let mut parts = [IoSlice::new(head), IoSlice::new(&chunk), IoSlice::new(tail)];
        let mut left: &mut [IoSlice] = &mut parts;
        // Armed on the first write that would block: a client that keeps up never costs a timer.
        let mut deadline = None;
        loop {
            match self
                .socket
                .try_io(Interest::WRITABLE, || send(&self.socket, left))
            {
                Ok(0) => return Err(WriteError::Closed),
                Ok(n) => {
                    IoSlice::advance_slices(&mut left, n);
                    if left.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let at = *deadline.get_or_insert_with(|| Instant::now() + self.write_timeout);
                    match timeout_at(at, self.socket.writable()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err(WriteError::Closed),
                        Err(_) => return Err(WriteError::TimedOut),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(WriteError::Closed),
            }
        }
    }

    async fn gone(&mut self) {
        client_left(&mut self.socket).await
    }
}

/// Writes up to this many bytes are copied into one buffer and sent with one `send`.
const SMALL_WRITE: usize = 512;

/// Sends what `parts` hold, or as much as the socket takes. A small write (nearly every event)
/// is copied into one buffer and sent with `send`, the kernel's plainest path: a `writev` of
/// the same bytes goes through the file layer and an iovec import on top, which put the
/// gateway's kernel time per delivery 1.1-1.2x the floor's (whose one `send` this now is; see
/// the performance chapter of the book). A larger one is sent as it is, with `sendmsg`.
fn send(socket: &TcpStream, parts: &[IoSlice]) -> io::Result<usize> {
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

    /// Both ways of sending (one copied buffer for a small write, `sendmsg` for a large one)
    /// put the same chunked bytes on the wire, in order, also when a large write fills the
    /// socket and goes out in pieces as the reader drains it.
    #[tokio::test]
    async fn small_and_large_chunks_arrive_byte_exact() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut reader = client.unwrap();
        let mut socket = PlainSocket {
            socket: accepted.unwrap().0,
            write_timeout: Duration::from_secs(10),
        };
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
