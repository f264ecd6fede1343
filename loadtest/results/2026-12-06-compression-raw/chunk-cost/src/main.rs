//! Instructions per compressed chunk (run under callgrind): the chunks of
//! loadtest/compression-savings (200 notifications, 200 metrics samples, one event per chunk),
//! through each way of compressing them. `chunk-cost none|gzip|br|br-encoder|zstd`; subtract
//! `none` (the set-up) and divide by 400.
// The gateway's own br writer, as it is in the tree.
#[path = "../../../../../src/stream/compress/brotli_blocks.rs"]
#[allow(dead_code)]
mod brotli_blocks;

use std::hint::black_box;
use std::io::Write;

fn frames(shape: &str, n: usize) -> Vec<Vec<u8>> {
    let levels = ["info", "success", "warning", "error"];
    (1..=n)
        .map(|i| {
            let data = if shape == "notification" {
                format!("{{\"id\":\"1764974000000-{i}\",\"title\":\"Periodic notification #{i}\",\"body\":\"Generated every 5s\",\"level\":\"{}\",\"time\":\"2026-12-06T00:{:02}:{:02}.{:03}Z\"}}", levels[i % 4], i / 60 % 60, i % 60, (i * 37) % 1000)
            } else {
                format!("{{\"time\":\"2026-12-06T00:{:02}:{:02}.{:03}Z\",\"cpu_percent\":{},\"memory\":{{\"total_bytes\":8340000768,\"available_bytes\":{},\"used_percent\":{}}},\"load\":[0.42,0.37,0.31],\"network\":{{\"rx_bytes\":{},\"tx_bytes\":{}}},\"stream_clients\":3}}", i / 60 % 60, i % 60, (i * 37) % 1000, (i * 7919 % 10000) as f64 / 100.0, 5123456789u64 - i as u64 * 4096, 38.57 + (i % 50) as f64 / 100.0, 987654321 + i * 1834, 123456789 + i * 2211)
            };
            format!("id: 1765000000000-{i}\nevent: message\ndata: {data}\n\n").into_bytes()
        })
        .collect()
}

fn main() {
    let how = std::env::args().nth(1).unwrap_or_default();
    let mut total = 0usize;
    let mut plain = 0usize;
    let mut deflate = flate2::Compress::new(flate2::Compression::new(1), false);
    let mut zstd = zstd::bulk::Compressor::new(1).unwrap();
    for shape in ["notification", "metrics"] {
        let chunks = frames(shape, 200);
        let mut encoder = brotli::CompressorWriter::new(Vec::new(), 1024, 2, 16);
        let mut previous: &[u8] = &[];
        for (i, chunk) in chunks.iter().enumerate() {
            plain += chunk.len();
            let out = match how.as_str() {
                "gzip" => {
                    deflate.reset();
                    if !previous.is_empty() {
                        deflate.set_dictionary(previous).unwrap();
                    }
                    let mut out = Vec::with_capacity(chunk.len() / 2 + 64);
                    loop {
                        let before = deflate.total_in() as usize;
                        out.reserve(64 + (chunk.len() - before) / 2);
                        deflate.compress_vec(&chunk[before..], &mut out, flate2::FlushCompress::Sync).unwrap();
                        if deflate.total_in() as usize == chunk.len() && out.len() < out.capacity() {
                            break;
                        }
                    }
                    out
                }
                "br" => {
                    let mut input = Vec::with_capacity(previous.len() + chunk.len());
                    input.extend_from_slice(previous);
                    input.extend_from_slice(chunk);
                    brotli_blocks::chunk(&input, previous.len(), i == 0, false)
                }
                "br-encoder" => {
                    encoder.write_all(chunk).unwrap();
                    encoder.flush().unwrap();
                    std::mem::take(encoder.get_mut())
                }
                "zstd" => zstd.compress(chunk).unwrap(),
                _ => Vec::new(),
            };
            total += black_box(out).len();
            previous = chunk;
        }
    }
    println!("{how}: {total} bytes of {plain}");
}
