//! Encode + fan-out: one event published into the hub and taken off every subscriber's queue.
//!
//! `cargo bench --bench fanout`
//!
//! This is the per-event work the gateway does for N subscribers of one channel, minus the
//! socket writes: encoding the frame once, appending it to history, handing it to the writer
//! threads, and a refcount bump plus a queue push (and pop) per subscriber, the writers' work
//! spread over the cores.
//!
//! `two_channels` is the fan-out with its socket writes: two channels of 2,500 streams each,
//! every stream a loopback TCP connection that the writer threads send to directly. It
//! publishes one event on each channel and times until the writers have sent both to every
//! stream, in a hub with one writer thread and in one with two; the readers are drained between
//! iterations, untimed. With the fan-out spread over the writers and not serialized on one
//! lock, two writers take about half the time of one (the ratio is the scaling, on an idle
//! machine with two free cores). Without sockets (a queue push per stream, about 50 ns) the
//! work is too small to split: waking the writers and waiting for them costs more.
//!
//! The same group's `floor_*` runs are the machine's own scaling for that work: a bare `send`
//! of one `data:` frame to each of 5,000 loopback connections, from one thread, then from two
//! threads of 2,500 each, and nothing else. How much two threads gain over one there (the
//! kernel's loopback path, the cores' caches, the host under the VM) bounds what the writers
//! can gain; the gateway's scaling is read against it.

#[path = "common/streams.rs"]
mod streams;

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sse_gateway::hub::{Event, Hub, Subscription};
use streams::{hub_with, socket_pairs, socket_streams, subscribers, DATA};

fn hub() -> Arc<Hub> {
    hub_with(2)
}

/// Publishes one event on `channel`, waits for the writers to queue it for every subscriber,
/// and takes it off every subscriber's queue.
fn publish_and_take(hub: &Hub, channel: &str, subs: &mut [Subscription]) {
    hub.deliver(|id| Event::new(id, "notification", vec![channel.into()].into(), DATA));
    hub.settle();
    let mut cx = Context::from_waker(Waker::noop());
    let mut batch = Vec::with_capacity(1);
    for sub in subs {
        let _ = sub.client.queue.poll_recv(&mut cx, &mut batch, 1);
        black_box(batch.pop());
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_fanout");
    for n in [1usize, 100, 1_000, 10_000] {
        let hub = hub();
        let mut subs = subscribers(&hub, "news", n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| publish_and_take(&hub, "news", &mut subs))
        });
    }
    group.finish();
}

fn two_channels(c: &mut Criterion) {
    const EACH: usize = 2_500;
    let mut group = c.benchmark_group("two_channels");
    group.throughput(Throughput::Elements(2 * EACH as u64));
    let mut buf = vec![0u8; 64 << 10];
    for (name, writers) in [("one_writer", 1), ("two_writers", 2)] {
        let hub = hub_with(writers);
        let mut streams = socket_streams(&hub, "a", EACH);
        streams.extend(socket_streams(&hub, "b", EACH));
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut fanning_out = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    for channel in ["a", "b"] {
                        hub.deliver(|id| {
                            Event::new(id, "notification", vec![channel.into()].into(), DATA)
                        });
                    }
                    hub.settle();
                    fanning_out += started.elapsed();
                    for (sub, reader) in &mut streams {
                        while reader.read(&mut buf).is_ok_and(|n| n > 0) {}
                        assert!(sub.client.close_reason().is_none(), "a stream fell behind");
                    }
                }
                fanning_out
            })
        });
    }
    let frame = format!("data: {DATA}\n\n");
    for (name, threads) in [("floor_one_thread", 1), ("floor_two_threads", 2)] {
        let mut pairs = socket_pairs(2 * EACH);
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut sending = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    std::thread::scope(|scope| {
                        for share in pairs.chunks_mut(2 * EACH / threads) {
                            scope.spawn(|| {
                                for (writer, _) in share {
                                    let sent = writer.write(frame.as_bytes()).expect("sends");
                                    assert_eq!(sent, frame.len(), "a socket filled up");
                                }
                            });
                        }
                    });
                    sending += started.elapsed();
                    for (_, reader) in &mut pairs {
                        while reader.read(&mut buf).is_ok_and(|n| n > 0) {}
                    }
                }
                sending
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, two_channels);
criterion_main!(benches);
