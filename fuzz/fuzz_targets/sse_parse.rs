//! Feeds arbitrary bytes to the SSE parser whole and in arbitrary chunks, and checks that the
//! chunking changes nothing: not the items, not the error, not the state a reconnect uses.
//! Panics, hangs and unbounded buffering are caught by the fuzzer itself.
//!
//! Input layout: byte 0 picks the limits (default, or small ones that errors are reachable
//! with) and whether oversized events fail the stream or are skipped (as sources do), bytes
//! 1..=8 are chunk lengths used in turn (0 means an empty chunk), the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_wire::parse::{ParseError, ParsedItem, Parser, ParserLimits};

#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<ParsedItem>,
    result: Result<(), ParseError>,
    last_event_id: String,
    discarded: bool,
}

fn run<'a>(limits: ParserLimits, skip: bool, chunks: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new(limits);
    if skip {
        parser = parser.skipping_oversized();
    }
    let mut items = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        result = parser.push(chunk, &mut items);
        assert!(
            !(skip && result.is_err()),
            "skip mode failed the stream: {result:?}"
        );
        if result.is_err() {
            break;
        }
    }
    let last_event_id = parser.last_event_id().to_owned();
    Outcome {
        items,
        result,
        last_event_id,
        discarded: parser.finish(),
    }
}

/// Splits `stream` into chunks whose lengths cycle through `lengths` (all zero: one chunk).
fn chunks<'a>(stream: &'a [u8], lengths: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let lengths = if lengths.iter().all(|&l| l == 0) {
        &[]
    } else {
        lengths
    };
    let mut rest = stream;
    let mut lengths = lengths.iter().cycle();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let length = lengths
            .next()
            .map_or(rest.len(), |&l| usize::from(l))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(length);
        rest = tail;
        done = rest.is_empty();
        Some(chunk)
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let (lengths, stream) = rest.split_at(rest.len().min(8));
    let limits = if selector & 1 == 0 {
        ParserLimits::default()
    } else {
        ParserLimits {
            max_line_bytes: usize::from(selector >> 1),
            max_event_bytes: usize::from(selector >> 2),
        }
    };
    let skip = selector & 2 != 0;
    let whole = run(limits, skip, std::iter::once(stream));
    let chunked = run(limits, skip, chunks(stream, lengths));
    assert_eq!(whole, chunked, "chunk lengths {lengths:?}");
});
