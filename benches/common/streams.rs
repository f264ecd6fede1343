//! What the fan-out benchmarks and the instruction count share: a hub, its subscribers, and
//! streams on loopback connections that the hub's writer threads send to directly, as they do
//! for plain HTTP/1.1 streams in the gateway.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use sse_gateway::config::HistoryLimits;
use sse_gateway::hub::{DirectWrite, Hub, SubscribeRequest, Subscription};

/// The data of every event published: a notification of typical size.
pub const DATA: &str = r#"{"title":"Something happened","body":"A short notification body of typical size.","level":"info"}"#;

/// A hub of one history shard and `writers` writer threads, with the benchmark config's
/// history limits.
pub fn hub_with(writers: usize) -> Arc<Hub> {
    Hub::with_writers(
        1,
        |_| HistoryLimits {
            max_events: 1000,
            max_age: Duration::from_secs(600),
        },
        writers,
    )
}

/// `n` subscribers of `channel`, each with a queue of 1,024 events.
pub fn subscribers(hub: &Arc<Hub>, channel: &str, n: usize) -> Vec<Subscription> {
    (0..n)
        .map(|_| {
            hub.subscribe(SubscribeRequest {
                channels: vec![channel.into()],
                types: None,
                last_event_id: None,
                peer: None,
                principal: None,
                queue: 1024,
            })
        })
        .collect()
}

/// `n` loopback connections as (sending end, reading end), both non-blocking.
pub fn socket_pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().expect("its address");
    (0..n)
        .map(|_| {
            let reader = TcpStream::connect(addr).expect("connects");
            let (writer, _) = listener.accept().expect("accepts");
            writer.set_nonblocking(true).expect("non-blocking");
            reader.set_nonblocking(true).expect("non-blocking");
            (writer, reader)
        })
        .collect()
}

/// `n` streams of `channel`, each on a loopback connection whose sending half is handed to the
/// stream's queue (as the gateway does for plain HTTP/1.1), with the connection's reading end.
pub fn socket_streams(hub: &Arc<Hub>, channel: &str, n: usize) -> Vec<(Subscription, TcpStream)> {
    let mut cx = Context::from_waker(Waker::noop());
    subscribers(hub, channel, n)
        .into_iter()
        .zip(socket_pairs(n))
        .map(|(sub, (writer, reader))| {
            sub.client.queue.go_direct(Box::new(Frames(writer)));
            // The first ask opens the stream to direct writes, as the stream's task does.
            let _ = sub.client.queue.poll_recv(&mut cx, &mut Vec::new(), 1);
            (sub, reader)
        })
        .collect()
}

/// A socket written with plain non-blocking sends; the frames go out unchunked (the framing
/// is not what is measured), and a bench that fills a socket fails instead of keeping the rest.
pub struct Frames(TcpStream);

impl DirectWrite for Frames {
    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn send_chunk(&mut self, data: &[u8], _end: bool) -> io::Result<()> {
        self.offer_chunk(data)
    }

    fn offer_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        match self.0.write(data)? {
            n if n == data.len() => Ok(()),
            _ => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    fn has_unsent(&self) -> bool {
        false
    }
}
