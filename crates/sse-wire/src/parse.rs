//! An incremental parser for `text/event-stream`, following the WHATWG [event stream
//! interpretation][spec] rule for rule.
//!
//! It is the client side of [`super`]: our tests read the gateway's streams with it, source
//! connectors ingest upstream SSE with it, and it is fuzzed (`fuzz/`). Bytes arrive in chunks
//! split anywhere (inside a CRLF, inside a UTF-8 character); the items produced do not depend on
//! where. Because upstreams are not trusted, the bytes it buffers are bounded by
//! [`ParserLimits`].
//!
//! What an `EventSource` would surface becomes a [`ParsedItem`]: dispatched events, plus the two
//! things a browser consumes silently that the gateway and its tests need to see, comments
//! (heartbeats) and `retry` values.
//!
//! [spec]: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

use std::mem;

/// The UTF-8 byte order mark, which the UTF-8 decode step strips once from the stream's start.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One thing read from the stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedItem {
    /// An event, dispatched by a blank line after at least one `data` field.
    Event(ParsedEvent),
    /// A comment line (`:text`), with one leading space stripped as for field values. Clients
    /// ignore these; the gateway sends its heartbeats and greeting as comments.
    Comment(String),
    /// A `retry` field with a valid value: the reconnection delay in milliseconds. It takes
    /// effect when read, not at dispatch, so it is an item of its own.
    Retry(u64),
}

/// A dispatched event, as an `EventSource` hands it to `onmessage` / `addEventListener`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The last event ID at dispatch (`MessageEvent.lastEventId`). It persists across events:
    /// an event without an `id` field carries the previous one. Empty when no `id` was seen or
    /// an empty `id` field reset it (the spec does not tell these apart).
    pub id: String,
    /// The event type: the `event` field, or `"message"` when that is unset or empty.
    pub event: String,
    /// The `data` field values joined with `\n`.
    pub data: String,
}

/// Upper bounds on what one stream can make the parser buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest line, in bytes, without its line break.
    pub max_line_bytes: usize,
    /// Most bytes of `data` (with the `\n` joining its lines) and `event` buffered for one
    /// event.
    pub max_event_bytes: usize,
}

impl Default for ParserLimits {
    /// 64 KiB lines and 1 MiB events: far above what real streams send, far below trouble.
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            max_event_bytes: 1024 * 1024,
        }
    }
}

/// Why a stream was rejected. After an error the parser refuses further input (the rest of an
/// over-long line must not be read as fields) until [`Parser::finish`] starts a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("an event stream line is longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("an event stream event is larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// The parsing state of one `EventSource`: the spec's data, event type and last event ID
/// buffers for the current stream, and the last event ID string that outlives it.
#[derive(Debug)]
pub struct Parser {
    limits: ParserLimits,
    /// How many bytes of the BOM the stream has started with so far; `None` once decided.
    bom_matched: Option<usize>,
    /// The current line, when it spans chunks (complete lines in one chunk are not copied).
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it completes the same line break.
    after_cr: bool,
    /// A field line was read since the last dispatch, so stopping now would lose it.
    in_event: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    last_event_id: String,
    failed: Option<ParseError>,
    /// Set by [`Parser::skipping_oversized`]: drop an over-limit event and read on, instead of
    /// failing the stream.
    skip_oversized: bool,
    skipping: Skip,
    /// Events dropped for their size, in skip mode.
    skipped_events: u64,
    /// Lines the spec says to ignore: unknown field names, `id` with a NUL, non-digit `retry`.
    ignored_lines: u64,
}

/// Where a parser in skip mode is in dropping an over-limit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    No,
    /// Drop bytes up to the next line break (the over-long line), then the rest of the event.
    Line,
    /// Drop lines up to the blank line that ends the event.
    Event,
}

impl Parser {
    pub fn new(limits: ParserLimits) -> Self {
        Self {
            limits,
            bom_matched: Some(0),
            line: Vec::new(),
            after_cr: false,
            in_event: false,
            data: String::new(),
            event_type: String::new(),
            last_event_id_buffer: String::new(),
            last_event_id: String::new(),
            failed: None,
            skip_oversized: false,
            skipping: Skip::No,
            skipped_events: 0,
            ignored_lines: 0,
        }
    }

    /// Skip mode: an event over a limit is dropped whole (every line up to its blank line, its
    /// `id` included) and parsing goes on with the next one, so [`push`](Self::push) never fails.
    /// For a relay, where failing the stream would only bring the same event back on reconnect.
    /// Memory stays bounded: the bytes of an over-long line are not buffered.
    pub fn skipping_oversized(mut self) -> Self {
        self.skip_oversized = true;
        self
    }

    /// Events dropped for their size so far, in skip mode (kept across [`finish`](Self::finish)).
    pub fn skipped_events(&self) -> u64 {
        self.skipped_events
    }

    /// Lines ignored as the spec says so far (unknown fields, `id` with NUL, bad `retry`): signs
    /// of a malformed upstream (kept across [`finish`](Self::finish)).
    pub fn ignored_lines(&self) -> u64 {
        self.ignored_lines
    }

    /// The event source's last event ID string: what a reconnecting client sends as
    /// `Last-Event-ID`. Set at every blank line, even one that dispatches no event, and kept
    /// across [`finish`](Self::finish).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Reads the next chunk of the stream, appending each complete item to `out`.
    ///
    /// On error, the items before the offending line are in `out`; this and every later call
    /// return the error until [`finish`](Self::finish).
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<ParsedItem>) -> Result<(), ParseError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let result = self.push_after_bom(chunk, out);
        if let Err(error) = result {
            self.failed = Some(error);
        }
        result
    }

    /// Ends the current stream (EOF or connection loss). Per spec, an event not yet dispatched
    /// by a blank line, and a final line with no line break, are discarded. The parser is then
    /// ready for the next connection's stream: buffers, BOM and error state are reset, and only
    /// [`last_event_id`](Self::last_event_id) is kept.
    ///
    /// The new stream's last event ID buffer starts from that kept value, as in Chromium, rather
    /// than empty as a literal reading of the spec's per-stream buffers would have it: an event
    /// without `id` after a reconnect then still reports the ID the client resumed from.
    ///
    /// Returns whether an event or line was cut off, by the end of the stream or by an error, for
    /// callers that log truncated upstreams.
    pub fn finish(&mut self) -> bool {
        let held_bom = matches!(self.bom_matched, Some(matched) if matched > 0);
        let discarded = self.failed.is_some() || self.in_event || !self.line.is_empty() || held_bom;
        let discarded = discarded || self.skipping != Skip::No;
        let last_event_id = mem::take(&mut self.last_event_id);
        *self = Self {
            last_event_id_buffer: last_event_id.clone(),
            last_event_id,
            skip_oversized: self.skip_oversized,
            skipped_events: self.skipped_events,
            ignored_lines: self.ignored_lines,
            ..Self::new(self.limits)
        };
        discarded
    }

    /// Strips a leading BOM, which may itself arrive split across chunks.
    fn push_after_bom(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<ParsedItem>,
    ) -> Result<(), ParseError> {
        let Some(matched) = self.bom_matched else {
            return self.push_lines(chunk, out);
        };
        let wanted = BOM.len() - matched;
        let common = chunk.len().min(wanted);
        if chunk[..common] == BOM[matched..matched + common] {
            if common == wanted {
                self.bom_matched = None;
                return self.push_lines(&chunk[common..], out);
            }
            self.bom_matched = Some(matched + common);
            return Ok(());
        }
        // Not a BOM after all: the bytes held back so far are ordinary stream content.
        self.bom_matched = None;
        self.push_lines(&BOM[..matched], out)?;
        self.push_lines(chunk, out)
    }

    /// Splits the stream into lines at CRLF, LF or CR, processing each complete one.
    fn push_lines(
        &mut self,
        mut chunk: &[u8],
        out: &mut Vec<ParsedItem>,
    ) -> Result<(), ParseError> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\r', b'\n', chunk) {
            if self.skipping == Skip::Line {
                // The rest of an over-long line ends here; the event it was in goes too.
                self.skipping = Skip::Event;
            } else if self.line.is_empty() {
                match self.check_line_len(end) {
                    Ok(()) => self.process_line(&chunk[..end], out)?,
                    Err(error) => self.oversized(error, Skip::Event)?,
                }
            } else {
                let mut line = mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..end]);
                let processed = match self.check_line_len(line.len()) {
                    Ok(()) => self.process_line(&line, out),
                    Err(error) => self.oversized(error, Skip::Event),
                };
                line.clear();
                self.line = line; // keep the allocation for the next split line
                processed?;
            }
            let break_len = match chunk.get(end..end + 2) {
                Some(b"\r\n") => 2,
                _ => 1,
            };
            if chunk[end] == b'\r' && end + 1 == chunk.len() {
                self.after_cr = true;
            }
            chunk = &chunk[end + break_len..];
        }
        if self.skipping == Skip::Line {
            return Ok(());
        }
        if let Err(error) = self.check_line_len(self.line.len() + chunk.len()) {
            self.line.clear();
            return self.oversized(error, Skip::Line);
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// An over-limit line or event: the stream's error, or in skip mode the start of dropping
    /// the event (`from` says whether the current line still has bytes to come).
    fn oversized(&mut self, error: ParseError, from: Skip) -> Result<(), ParseError> {
        if !self.skip_oversized {
            return Err(error);
        }
        if self.skipping == Skip::No {
            self.skipped_events += 1;
        }
        self.skipping = from;
        self.data.clear();
        self.event_type.clear();
        self.last_event_id_buffer.clone_from(&self.last_event_id);
        Ok(())
    }

    fn check_line_len(&self, len: usize) -> Result<(), ParseError> {
        if len > self.limits.max_line_bytes {
            return Err(ParseError::LineTooLong {
                limit: self.limits.max_line_bytes,
            });
        }
        Ok(())
    }

    /// One line, without its line break.
    fn process_line(&mut self, line: &[u8], out: &mut Vec<ParsedItem>) -> Result<(), ParseError> {
        if self.skipping == Skip::Event {
            // Lines of a dropped event; the blank line ends it without a dispatch.
            if line.is_empty() {
                self.skipping = Skip::No;
                self.in_event = false;
            }
            return Ok(());
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(b":") {
            out.push(ParsedItem::Comment(
                decode(strip_one_space(comment)).into_owned(),
            ));
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => (&line[..colon], strip_one_space(&line[colon + 1..])),
            None => (line, &b""[..]),
        };
        self.in_event = true;
        match name {
            b"event" => {
                let value = decode(value);
                if let Err(error) = self.check_event_size(self.data.len() + value.len()) {
                    return self.oversized(error, Skip::Event);
                }
                self.event_type.clear();
                self.event_type.push_str(&value);
            }
            b"data" => {
                let value = decode(value);
                let size = self.event_type.len() + self.data.len() + value.len() + 1;
                if let Err(error) = self.check_event_size(size) {
                    return self.oversized(error, Skip::Event);
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id_buffer.clear();
                self.last_event_id_buffer.push_str(&decode(value));
            }
            b"retry" => match parse_retry(value) {
                Some(ms) => out.push(ParsedItem::Retry(ms)),
                None => self.ignored_lines += 1,
            },
            // Unknown fields, and `id` values with a NUL, are ignored.
            _ => self.ignored_lines += 1,
        }
        Ok(())
    }

    fn check_event_size(&self, size: usize) -> Result<(), ParseError> {
        if size > self.limits.max_event_bytes {
            return Err(ParseError::EventTooLarge {
                limit: self.limits.max_event_bytes,
            });
        }
        Ok(())
    }

    /// The blank-line step: publish the last event ID, then dispatch if any data was buffered.
    fn dispatch(&mut self, out: &mut Vec<ParsedItem>) {
        self.in_event = false;
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line; present since data is not empty
        let event = match mem::take(&mut self.event_type) {
            event if event.is_empty() => "message".to_owned(),
            event => event,
        };
        out.push(ParsedItem::Event(ParsedEvent {
            id: self.last_event_id.clone(),
            event,
            data,
        }));
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(ParserLimits::default())
    }
}

/// Decodes as UTF-8 with U+FFFD for invalid sequences. Line by line is the same as decoding the
/// whole stream, since CR, LF and `:` are ASCII and never inside a multi-byte sequence.
fn decode(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn strip_one_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

/// A `retry` value counts only if it is all ASCII digits. Empty values and values beyond `u64`
/// are ignored too: neither is an integer a client could honour.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
