//! Encode + fan-out: one event published into the hub and taken off every subscriber's queue.
//!
//! `cargo bench --bench fanout`
//!
//! This is the per-event work the gateway does for N subscribers of one channel, minus the
//! socket writes: encoding the frame once, appending it to history, and a refcount bump plus a
//! queue push (and pop) per subscriber.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sse_gateway::config::HistoryLimits;
use sse_gateway::hub::{Event, Hub, SubscribeRequest};

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_fanout");
    for subscribers in [1usize, 100, 1_000, 10_000] {
        let hub = Hub::new(1, |_| HistoryLimits {
            max_events: 1000,
            max_age: Duration::from_secs(600),
        });
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| {
                hub.subscribe(SubscribeRequest {
                    channels: vec!["news".into()],
                    types: None,
                    last_event_id: None,
                    peer: None,
                    principal: None,
                    queue: 1024,
                })
            })
            .collect();
        let data = r#"{"title":"Something happened","body":"A short notification body of typical size.","level":"info"}"#;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    hub.deliver(|id| {
                        Event::new(
                            id,
                            "notification",
                            vec!["news".into()].into_boxed_slice(),
                            data,
                        )
                    });
                    for sub in &mut subs {
                        black_box(sub.live.try_recv().ok());
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
