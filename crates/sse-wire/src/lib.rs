//! The SSE wire format ([WHATWG HTML, server-sent events][spec]): encoding here, parsing in
//! [`parse`], and the HTTP/1.1 body framing a stream arrives in, decoding in [`body`].
//!
//! Encoding is on the fan-out hot path: each event is encoded once into a [`Bytes`] frame that
//! every subscriber's queue shares by refcount, so the encoders size their buffer exactly and
//! never reallocate. The decoder ([`parse::Parser`]) is what our tests use as an `EventSource`
//! and what ingests upstream SSE sources, so it follows the spec to the letter.
//!
//! Every multi-line value is split on CRLF, LF and CR (each one line break) and written as one
//! field line per line, so a value can never smuggle in a field or a blank (dispatching) line.
//!
//! [spec]: https://html.spec.whatwg.org/multipage/server-sent-events.html

pub mod body;
pub mod parse;

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes one event: `id: <id>`, `event: <event>`, one `data: <line>` per line of `data`, then
/// the blank line that dispatches it.
///
/// An `EventSource` receives `data` exactly, with its line breaks (CRLF, LF or CR) normalised to
/// LF: the spec joins `data` lines with LF and drops one final LF, so `"a\n"` is written as
/// `data: a` plus an empty `data: ` line, and `""` as one empty `data: ` line (without any
/// `data` line the event would not be dispatched at all). The one space after each colon is
/// the one the parser strips, so a value starting with a space keeps it.
///
/// Precondition: `id` and `event` contain no CR, LF or NUL. Callers validate them (the contract
/// never lets them through), so this is only checked in debug builds: a line break would start a
/// new field, and a NUL would make clients ignore the `id`.
pub fn encode_event(id: &str, event: &str, data: &str) -> Bytes {
    debug_assert!(is_field_safe(id), "id contains CR, LF or NUL: {id:?}");
    debug_assert!(
        is_field_safe(event),
        "event contains CR, LF or NUL: {event:?}"
    );

    let data_len: usize = Lines::new(data)
        .map(|line| b"data: ".len() + line.len() + 1)
        .sum();
    let len = b"id: ".len() + id.len() + 1 + b"event: ".len() + event.len() + 1 + data_len + 1;

    let mut buf = BytesMut::with_capacity(len);
    put_field(&mut buf, b"id: ", id);
    put_field(&mut buf, b"event: ", event);
    for line in Lines::new(data) {
        put_field(&mut buf, b"data: ", line);
    }
    buf.put_u8(b'\n');
    // Writing exactly the computed length proves the buffer never grew.
    debug_assert_eq!(buf.len(), len, "encode_event sized its buffer wrongly");
    buf.freeze()
}

/// Encodes a comment, which clients ignore: the heartbeat that keeps idle connections and
/// proxies from timing out, and the greeting that makes `EventSource` fire `open` at once.
///
/// Each line of `text` becomes one `: <line>` line, then a blank line follows. The blank line
/// dispatches nothing (no data is buffered) but keeps the frame self-contained.
pub fn encode_comment(text: &str) -> Bytes {
    let len = Lines::new(text)
        .map(|line| b": ".len() + line.len() + 1)
        .sum::<usize>()
        + 1;
    let mut buf = BytesMut::with_capacity(len);
    for line in Lines::new(text) {
        put_field(&mut buf, b": ", line);
    }
    buf.put_u8(b'\n');
    debug_assert_eq!(buf.len(), len, "encode_comment sized its buffer wrongly");
    buf.freeze()
}

/// Encodes `retry: <ms>`, the reconnection delay the client waits after the stream drops.
///
/// Sent once per connection (and again, jittered, on drain), so it is not on the hot path.
pub fn encode_retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// Encodes a lone `id: <id>` field: it dispatches no event (no data), but sets the client's
/// last event id, so a stream that drops before its first event still resumes from here.
/// `id` never holds CR, LF or NUL (ids are the gateway's own).
pub fn encode_id(id: &str) -> Bytes {
    debug_assert!(is_field_safe(id), "an id with a line break or NUL");
    Bytes::from(format!("id: {id}\n\n"))
}

/// Encodes a comment line of `bytes` bytes (at least 2: the colon and the line feed), for
/// proxies and old browsers that buffer the start of a response before passing it on.
/// `0` gives an empty frame, so callers can append the result unconditionally.
pub fn encode_padding(bytes: usize) -> Bytes {
    if bytes == 0 {
        return Bytes::new();
    }
    let spaces = bytes.saturating_sub(2);
    let mut buf = BytesMut::with_capacity(spaces + 2);
    buf.put_u8(b':');
    buf.put_bytes(b' ', spaces);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Whether `value` can be written after a field name without ending the line or, for `id`,
/// being ignored by clients.
fn is_field_safe(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0'))
}

fn put_field(buf: &mut BytesMut, prefix: &[u8], value: &str) {
    buf.put_slice(prefix);
    buf.put_slice(value.as_bytes());
    buf.put_u8(b'\n');
}

/// The lines of a value, split the way the SSE parser splits lines: at CRLF, LF or CR, each one
/// break. Unlike [`str::lines`], a lone CR is a break and a trailing break yields a final empty
/// line, so `n` breaks always give `n + 1` lines.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(value: &'a str) -> Self {
        Self { rest: Some(value) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        match memchr::memchr2(b'\r', b'\n', bytes) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(at) => {
                let break_len = if bytes[at..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                self.rest = Some(&rest[at + break_len..]);
                Some(&rest[..at])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: Bytes) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    #[test]
    fn single_line_event() {
        assert_eq!(
            text(encode_event("42", "message", "hello")),
            "id: 42\nevent: message\ndata: hello\n\n"
        );
    }

    #[test]
    fn every_line_break_kind_starts_a_data_line() {
        assert_eq!(
            text(encode_event("1", "m", "a\r\nb\nc\rd")),
            "id: 1\nevent: m\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn lf_then_cr_is_two_breaks() {
        // "\n\r" is two breaks (LF, then CR), unlike "\r\n".
        assert_eq!(
            text(encode_event("1", "m", "a\n\rb")),
            "id: 1\nevent: m\ndata: a\ndata: \ndata: b\n\n"
        );
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(
            text(encode_event("1", "m", "")),
            "id: 1\nevent: m\ndata: \n\n"
        );
    }

    #[test]
    fn trailing_and_leading_breaks_become_empty_data_lines() {
        assert_eq!(
            text(encode_event("1", "m", "a\n")),
            "id: 1\nevent: m\ndata: a\ndata: \n\n"
        );
        assert_eq!(
            text(encode_event("1", "m", "\r\n\r")),
            "id: 1\nevent: m\ndata: \ndata: \ndata: \n\n"
        );
    }

    #[test]
    fn leading_space_of_data_is_kept_after_the_separator_space() {
        assert_eq!(
            text(encode_event("1", "m", " x")),
            "id: 1\nevent: m\ndata:  x\n\n"
        );
    }

    #[test]
    fn unicode_is_written_as_utf8() {
        assert_eq!(
            text(encode_event("é-1", "ünï", "日本\n🦀")),
            "id: é-1\nevent: ünï\ndata: 日本\ndata: 🦀\n\n"
        );
    }

    #[test]
    fn data_cannot_inject_fields_or_events() {
        assert_eq!(
            text(encode_event("7", "message", "x\n\nevent: admin\ndata: y")),
            "id: 7\nevent: message\ndata: x\ndata: \ndata: event: admin\ndata: data: y\n\n"
        );
    }

    #[test]
    fn comment_lines() {
        assert_eq!(text(encode_comment("connected")), ": connected\n\n");
        assert_eq!(text(encode_comment("")), ": \n\n");
        assert_eq!(
            text(encode_comment("a\r\nb\rc\nd")),
            ": a\n: b\n: c\n: d\n\n"
        );
        assert_eq!(
            text(encode_comment("x\n\ndata: y")),
            ": x\n: \n: data: y\n\n"
        );
    }

    #[test]
    fn retry_field() {
        assert_eq!(text(encode_retry(3000)), "retry: 3000\n\n");
        assert_eq!(text(encode_retry(0)), "retry: 0\n\n");
        assert_eq!(
            text(encode_retry(u64::MAX)),
            format!("retry: {}\n\n", u64::MAX)
        );
    }

    #[test]
    fn padding_is_one_comment_line_of_the_asked_size() {
        assert_eq!(encode_padding(0), Bytes::new());
        assert_eq!(text(encode_padding(1)), ":\n");
        assert_eq!(text(encode_padding(2)), ":\n");
        assert_eq!(text(encode_padding(5)), ":   \n");
        assert_eq!(encode_padding(2048).len(), 2048);
    }

    #[test]
    fn lines_split_like_the_parser() {
        let lines = |s| Lines::new(s).collect::<Vec<_>>();
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("a"), ["a"]);
        assert_eq!(lines("a\r\n"), ["a", ""]);
        assert_eq!(lines("\r\r\n\n"), ["", "", "", ""]);
    }
}
