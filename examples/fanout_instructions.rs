//! The fan-out's work per delivery as a count of instructions, for `scripts/instructions` (run
//! by `scripts/test`): a regression check that noise cannot fail, since `valgrind
//! --tool=callgrind` counts the instructions a program runs, not the time they take.
//!
//! `fanout_instructions EVENTS` subscribes 1,000 streams to one channel, each on a loopback
//! connection that the hub's one writer thread sends to directly (the path of every plain
//! HTTP/1.1 stream), then publishes EVENTS events, waiting after each until the writer has sent
//! it to every stream. The readers are not read: 25 events fit in a loopback socket's buffer.
//! The script counts only what runs inside the writer's fan-out, so setting up the streams and
//! the waits between events do not count.

#[path = "../benches/common/streams.rs"]
mod streams;

use sse_gateway::hub::Event;
use streams::{hub_with, socket_streams, DATA};

/// Streams of the channel.
const STREAMS: usize = 1_000;

fn main() {
    let events: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        Some(Ok(n)) if n <= 25 => n,
        _ => {
            eprintln!("usage: fanout_instructions EVENTS (at most 25)");
            std::process::exit(2);
        }
    };
    // One writer: with two, how the threads interleave under valgrind would move the count.
    let hub = hub_with(1);
    let streams = socket_streams(&hub, "news", STREAMS);
    for _ in 0..events {
        hub.deliver(|id| Event::new(id, "notification", vec!["news".into()].into(), DATA));
        hub.settle();
    }
    for (sub, _) in &streams {
        assert!(sub.client.close_reason().is_none(), "a stream fell behind");
    }
    println!("published {events} events to {STREAMS} streams");
}
