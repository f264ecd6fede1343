//! How long encoding one event takes: the one cost paid per published event, before fan-out
//! shares the frame by refcount.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sse_gateway::sse::encode_event;

/// A JSON notification of about 100 bytes, on one line like most payloads.
fn small_payload() -> String {
    let data = r#"{"kind":"notification","user":"u-1842","title":"Build passed","at":1732694400}"#;
    format!("{data:<100}")
}

/// 4 KiB of text in 64-byte lines with mixed line breaks, the multi-line worst case.
fn multi_line_payload() -> String {
    let breaks = ["\n", "\r\n", "\r"];
    let mut data = String::with_capacity(4096);
    for i in 0.. {
        let line = format!("{:<60}", format!("line {i}: lorem ipsum dolor sit amet"));
        if data.len() + line.len() + 2 > 4096 {
            break;
        }
        data.push_str(&line);
        data.push_str(breaks[i % breaks.len()]);
    }
    data
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event");
    for (name, data) in [
        ("small_100b", small_payload()),
        ("multi_line_4k", multi_line_payload()),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                encode_event(
                    black_box("1732694400123-0"),
                    black_box("notification"),
                    black_box(&data),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
