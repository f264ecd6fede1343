//! Encode + fan-out: one event published into the hub and taken off every subscriber's queue.
//!
//! `cargo bench --bench fanout`
//!
//! This is the per-event work the gateway does for N subscribers of one channel, minus the
//! socket writes: encoding the frame once, appending it to history, handing it to the writer
//! threads, and a refcount bump plus a queue push (and pop) per subscriber, the writers' work
//! spread over the cores.
//!
//! `two_channels` publishes on two channels of 5,000 subscribers each from two threads at
//! once, into a hub with one writer thread and into one with two: with fan-outs spread over the
//! writers and not serialized on one lock, two writers take about half the time of one (the
//! ratio is the scaling, on an idle machine with two free cores).

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sse_gateway::config::HistoryLimits;
use sse_gateway::hub::{Event, Hub, SubscribeRequest, Subscription};

const DATA: &str = r#"{"title":"Something happened","body":"A short notification body of typical size.","level":"info"}"#;

fn hub_with(writers: usize) -> Arc<Hub> {
    Hub::with_writers(
        1,
        |_| HistoryLimits {
            max_events: 1000,
            max_age: Duration::from_secs(600),
        },
        writers,
    )
}

fn hub() -> Arc<Hub> {
    hub_with(2)
}

fn subscribers(hub: &Arc<Hub>, channel: &str, n: usize) -> Vec<Subscription> {
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
    const EACH: usize = 5_000;
    let mut group = c.benchmark_group("two_channels");
    group.throughput(Throughput::Elements(2 * EACH as u64));
    for (name, writers) in [("one_writer", 1), ("two_writers", 2)] {
        let hub = hub_with(writers);
        let mut a = subscribers(&hub, "a", EACH);
        let mut b = subscribers(&hub, "b", EACH);
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let started = Instant::now();
                std::thread::scope(|s| {
                    for (channel, subs) in [("a", &mut a), ("b", &mut b)] {
                        let hub = &hub;
                        s.spawn(move || {
                            for _ in 0..iters {
                                publish_and_take(hub, channel, subs);
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, two_channels);
criterion_main!(benches);
