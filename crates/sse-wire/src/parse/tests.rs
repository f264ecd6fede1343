//! Every parsing rule of the spec, each checked under every way of splitting its input in two
//! and byte by byte; then properties over arbitrary streams and arbitrary chunking.

use super::*;
use crate::{encode_comment, encode_event, encode_padding, encode_retry};
use proptest::prelude::*;
use proptest::sample::Index;

/// What one stream produced: its items, how it ended, and the state a reconnect would use.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<ParsedItem>,
    result: Result<(), ParseError>,
    last_event_id: String,
    discarded: bool,
}

fn run<'a>(limits: ParserLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new(limits);
    let mut items = Vec::new();
    let result = chunks
        .into_iter()
        .try_for_each(|chunk| parser.push(chunk, &mut items));
    let last_event_id = parser.last_event_id().to_owned();
    Outcome {
        items,
        result,
        last_event_id,
        discarded: parser.finish(),
    }
}

/// Parses `input` whole, byte by byte and split at every position, asserts that all agree, and
/// returns the outcome.
fn parse_with(limits: ParserLimits, input: &[u8]) -> Outcome {
    let whole = run(limits, [input]);
    assert_eq!(
        run(limits, input.chunks(1)),
        whole,
        "byte by byte: {input:?}"
    );
    for at in 0..=input.len() {
        let (head, tail) = input.split_at(at);
        assert_eq!(run(limits, [head, tail]), whole, "split at {at}: {input:?}");
    }
    whole
}

fn parse(input: &[u8]) -> Outcome {
    parse_with(ParserLimits::default(), input)
}

/// The items of a stream that parses without error.
fn items(input: &str) -> Vec<ParsedItem> {
    let outcome = parse(input.as_bytes());
    assert_eq!(outcome.result, Ok(()));
    outcome.items
}

fn event(id: &str, event: &str, data: &str) -> ParsedItem {
    ParsedItem::Event(ParsedEvent {
        id: id.to_owned(),
        event: event.to_owned(),
        data: data.to_owned(),
    })
}

fn message(data: &str) -> ParsedItem {
    event("", "message", data)
}

fn comment(text: &str) -> ParsedItem {
    ParsedItem::Comment(text.to_owned())
}

#[test]
fn a_leading_bom_is_stripped_once() {
    assert_eq!(items("\u{FEFF}data: a\n\n"), [message("a")]);
    // A second BOM is part of the first line's field name, an unknown field.
    assert_eq!(
        items("\u{FEFF}\u{FEFF}data: a\n\ndata: b\n\n"),
        [message("b")]
    );
    // Only at the start of the stream.
    assert_eq!(items("data: a\n\n\u{FEFF}data: b\n\n"), [message("a")]);
}

#[test]
fn a_partial_bom_is_content() {
    let outcome = parse(b"\xEF\xBB:x\n\xEF\n");
    assert_eq!(outcome.items, []); // `\xEF\xBB:x` is an unknown field, `\xEF` too
    let outcome = parse(b"\xEF\xBB");
    assert_eq!(outcome.items, []);
    assert!(outcome.discarded);
}

#[test]
fn lines_end_at_crlf_lf_or_cr() {
    let expected = [message("a\nb"), message("c"), message("d")];
    assert_eq!(
        items("data: a\r\ndata: b\r\n\r\ndata: c\n\ndata: d\r\r"),
        expected
    );
    // LF then CR is two line breaks, so this is a blank line.
    assert_eq!(items("data: a\n\r"), [message("a")]);
    assert_eq!(items("data: a\r\n\n"), [message("a")]);
}

#[test]
fn a_line_starting_with_a_colon_is_a_comment() {
    assert_eq!(
        items(": hi\n:hi\n:  two\n:\n"),
        [comment("hi"), comment("hi"), comment(" two"), comment("")]
    );
    // Comments do not interrupt or dispatch an event.
    assert_eq!(
        items("data: a\n: beat\ndata: b\n\n"),
        [comment("beat"), message("a\nb")]
    );
}

#[test]
fn a_field_without_colon_has_an_empty_value() {
    assert_eq!(items("data\n\n"), [message("")]);
    assert_eq!(items("data\ndata\n\n"), [message("\n")]);
    assert_eq!(items("event: x\nevent\ndata: y\n\n"), [message("y")]);
}

#[test]
fn exactly_one_leading_space_is_stripped() {
    assert_eq!(
        items("data:x\n\ndata: x\n\ndata:  x\n\ndata:\tx\n\n"),
        [message("x"), message("x"), message(" x"), message("\tx")]
    );
    assert_eq!(items("event:  t\ndata: x\n\n"), [event("", " t", "x")]);
    assert_eq!(items("id:  7\ndata: x\n\n"), [event(" 7", "message", "x")]);
}

#[test]
fn the_value_runs_from_the_first_colon() {
    assert_eq!(items("data: a: b\n\n"), [message("a: b")]);
    assert_eq!(items("data::\n\n"), [message(":")]);
}

#[test]
fn data_lines_are_joined_with_lf_and_one_final_lf_removed() {
    assert_eq!(items("data: a\ndata: b\n\n"), [message("a\nb")]);
    assert_eq!(items("data: a\ndata: \n\n"), [message("a\n")]);
    assert_eq!(items("data: \ndata: \ndata: \n\n"), [message("\n\n")]);
}

#[test]
fn event_sets_the_type_for_one_event() {
    assert_eq!(
        items("event: ping\ndata: x\n\ndata: y\n\n"),
        [event("", "ping", "x"), message("y")]
    );
    // The last `event` field wins.
    assert_eq!(
        items("event: a\nevent: b\ndata: x\n\n"),
        [event("", "b", "x")]
    );
}

#[test]
fn the_last_event_id_persists_until_changed() {
    assert_eq!(
        items("id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"),
        [
            event("1", "message", "a"),
            event("1", "message", "b"),
            event("2", "message", "c"),
        ]
    );
    // An `id` after the data still belongs to that event.
    assert_eq!(items("data: a\nid: 9\n\n"), [event("9", "message", "a")]);
}

#[test]
fn an_empty_id_resets_the_last_event_id() {
    assert_eq!(
        items("id: 1\ndata: a\n\nid\ndata: b\n\n"),
        [event("1", "message", "a"), message("b")]
    );
    assert_eq!(parse(b"id: 1\n\nid:\n\n").last_event_id, "");
}

#[test]
fn an_id_containing_nul_is_ignored() {
    assert_eq!(
        items("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"),
        [event("1", "message", "a"), event("1", "message", "b")]
    );
}

#[test]
fn a_blank_line_without_data_dispatches_nothing_but_sets_the_last_event_id() {
    let outcome = parse(b"id: 5\nevent: x\n\n");
    assert_eq!(outcome.items, []);
    assert_eq!(outcome.last_event_id, "5");
    // The event type was reset with the empty data buffer.
    assert_eq!(items("event: x\n\ndata: y\n\n"), [message("y")]);
    assert_eq!(items("id: 3\n\ndata: y\n\n"), [event("3", "message", "y")]);
}

#[test]
fn retry_counts_only_when_all_ascii_digits() {
    assert_eq!(
        items("retry: 1500\nretry: 007\nretry:0\n"),
        [
            ParsedItem::Retry(1500),
            ParsedItem::Retry(7),
            ParsedItem::Retry(0)
        ]
    );
    for bad in [
        "retry: 15a\n",
        "retry: -1\n",
        "retry: +1\n",
        "retry: 1.5\n",
        "retry: 1 \n",
        "retry: \n",
        "retry\n",
        "retry: ١٢\n",
        "retry: 99999999999999999999999\n",
    ] {
        assert_eq!(items(bad), [], "{bad:?}");
    }
}

#[test]
fn retry_takes_effect_without_dispatch() {
    assert_eq!(
        items("data: a\nretry: 10\n\n"),
        [ParsedItem::Retry(10), message("a")]
    );
}

#[test]
fn unknown_fields_are_ignored_and_names_are_case_sensitive() {
    assert_eq!(items("foo: bar\ndata: x\n\n"), [message("x")]);
    assert_eq!(items("Data: x\n\nDATA: y\n\n"), []);
    assert_eq!(items("data : x\n\n"), []);
}

#[test]
fn invalid_utf8_decodes_with_replacement_characters() {
    let outcome = parse(b"data: a\xFFb\n\ndata: \xC3\n\nevent: \xE2\x82\ndata: x\n\n");
    assert_eq!(
        outcome.items,
        [
            message("a\u{FFFD}b"),
            message("\u{FFFD}"),
            event("", "\u{FFFD}", "x"),
        ]
    );
}

#[test]
fn multi_byte_characters_survive_any_split() {
    assert_eq!(
        items("id: é\nevent: ünï\ndata: 日本🦀\n\n"),
        [event("é", "ünï", "日本🦀")]
    );
}

#[test]
fn an_event_not_ended_by_a_blank_line_is_discarded_at_eof() {
    let outcome = parse(b"data: a\n\ndata: b\n");
    assert_eq!(outcome.items, [message("a")]);
    assert!(outcome.discarded);
    // A final line with no line break is not a line.
    let outcome = parse(b"data: a\n\n: no break");
    assert_eq!(outcome.items, [message("a")]);
    assert!(outcome.discarded);
    let outcome = parse(b"data: a\n\n: done\n");
    assert!(!outcome.discarded);
}

#[test]
fn finish_starts_a_new_stream_that_keeps_the_last_event_id() {
    let mut parser = Parser::default();
    let mut out = Vec::new();
    parser
        .push(b"id: 1\ndata: a\n\nid: 2\ndata: cut", &mut out)
        .unwrap();
    assert!(parser.finish());
    assert_eq!(parser.last_event_id(), "1");
    // A new stream: the BOM is stripped again, and an event without id keeps the resumed one.
    parser.push(b"\xEF\xBB\xBFdata: b\n\n", &mut out).unwrap();
    assert_eq!(
        out,
        [event("1", "message", "a"), event("1", "message", "b")]
    );
}

fn small(max_line_bytes: usize, max_event_bytes: usize) -> ParserLimits {
    ParserLimits {
        max_line_bytes,
        max_event_bytes,
    }
}

#[test]
fn a_line_over_the_limit_is_an_error() {
    let limits = small(8, 100);
    assert_eq!(parse_with(limits, b"data: 12\r\n\n").items, [message("12")]);
    let outcome = parse_with(limits, b"data: a\n\ndata: 123\n\n");
    assert_eq!(outcome.items, [message("a")]);
    assert_eq!(outcome.result, Err(ParseError::LineTooLong { limit: 8 }));
    // Caught without waiting for the line break, so memory stays bounded.
    let outcome = parse_with(limits, b"data: 123");
    assert_eq!(outcome.result, Err(ParseError::LineTooLong { limit: 8 }));
}

#[test]
fn an_event_over_the_limit_is_an_error() {
    let limits = small(100, 8);
    // Seven bytes and the joining LF fit.
    assert_eq!(
        parse_with(limits, b"data: 1234567\n\n").items,
        [message("1234567")]
    );
    for input in [
        &b"data: 12345678\n\n"[..],
        b"data: 123\ndata: 1234\n\n",
        b"event: 12345\ndata: 123\n\n",
        b"data: 123\nevent: 123456\n\n",
    ] {
        let outcome = parse_with(limits, input);
        assert_eq!(outcome.items, [], "{input:?}");
        assert_eq!(outcome.result, Err(ParseError::EventTooLarge { limit: 8 }));
    }
    // The limit is per event.
    assert_eq!(
        parse_with(limits, b"data: 1234\n\ndata: 1234\n\n").items,
        [message("1234"), message("1234")]
    );
}

#[test]
fn after_an_error_input_is_refused_until_finish() {
    let mut parser = Parser::new(small(8, 100));
    let mut out = Vec::new();
    let too_long = Err(ParseError::LineTooLong { limit: 8 });
    assert_eq!(parser.push(b"data: 123456789", &mut out), too_long);
    // The tail of the over-long line must not be read as a line of its own.
    assert_eq!(parser.push(b"\ndata: x\n\n", &mut out), too_long);
    assert_eq!(out, []);
    parser.finish();
    parser.push(b"data: x\n\n", &mut out).unwrap();
    assert_eq!(out, [message("x")]);
}

/// Skip mode: the items, the events skipped and the last event id, from `chunks`.
fn run_skipping<'a>(
    limits: ParserLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ParsedItem>, u64, String) {
    let mut parser = Parser::new(limits).skipping_oversized();
    let mut items = Vec::new();
    for chunk in chunks {
        assert_eq!(
            parser.push(chunk, &mut items),
            Ok(()),
            "skip mode never fails"
        );
    }
    (
        items,
        parser.skipped_events(),
        parser.last_event_id().to_owned(),
    )
}

#[test]
fn skip_mode_drops_an_oversized_event_whole_and_reads_on() {
    let limits = small(12, 8);
    for input in [
        // Over the event limit, over the line limit, over it without waiting for the break.
        &b"id: 1\ndata: a\n\nid: 2\ndata: 12345678\ndata: x\n\nid: 3\ndata: b\n\n"[..],
        b"id: 1\ndata: a\n\nid: 2\ndata: 1234567890123\n\nid: 3\ndata: b\n\n",
        b"id: 1\ndata: a\n\nid: 2\ndata: 123456789012345678901234\r\nid: 9\n\nid: 3\ndata: b\n\n",
    ] {
        let whole = run_skipping(limits, [input]);
        assert_eq!(
            whole,
            (
                vec![event("1", "message", "a"), event("3", "message", "b")],
                1,
                "3".into()
            ),
            "{input:?}"
        );
        assert_eq!(run_skipping(limits, input.chunks(1)), whole, "{input:?}");
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            assert_eq!(
                run_skipping(limits, [head, tail]),
                whole,
                "split at {at}: {input:?}"
            );
        }
    }
    // The dropped event's own id is not taken: a reconnect resumes from the event before it.
    let (items, skipped, last_id) = run_skipping(
        limits,
        [&b"id: 1\ndata: a\n\nid: 2\ndata: 123456789\n\n"[..]],
    );
    assert_eq!((items.len(), skipped, last_id.as_str()), (1, 1, "1"));
}

#[test]
fn ignored_lines_are_counted() {
    let mut parser = Parser::default();
    let mut out = Vec::new();
    parser
        .push(
            b"data: a\nfoo: 1\nretry: 1x\nid: a\0b\nretry: 5\n\n",
            &mut out,
        )
        .unwrap();
    assert_eq!(parser.ignored_lines(), 3);
    assert_eq!(out, [ParsedItem::Retry(5), message("a")]);
}

#[test]
fn injected_fields_in_data_round_trip_as_data() {
    let data = "x\n\nevent: admin\ndata: y";
    let frame = encode_event("7", "message", data);
    assert_eq!(parse(&frame).items, [event("7", "message", data)]);
}

// Properties.

/// Splits `input` at the given points (in any order, duplicates allowed).
fn split<'a>(input: &'a [u8], points: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p.index(input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        chunks.push(&input[start..point]);
        start = point;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Strings rich in what the wire format cares about: line breaks of every kind, spaces,
/// colons, field names, a BOM and non-ASCII characters, as well as arbitrary characters.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just("data".to_owned()),
        Just("\u{FEFF}".to_owned()),
        Just("é🦀".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        any::<String>(),
        prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat()),
    ]
}

/// A valid `id` or `event`: anything but CR, LF and NUL.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof!["[^\r\n\u{0}]{0,12}", "[ a-z0-9:é]{0,6}",]
}

#[derive(Debug, Clone)]
enum Frame {
    Event(String, String, String),
    Comment(String),
    Retry(u64),
    Padding(usize),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (field_value(), field_value(), tricky_string())
            .prop_map(|(id, event, data)| Frame::Event(id, event, data)),
        1 => tricky_string().prop_map(Frame::Comment),
        1 => any::<u64>().prop_map(Frame::Retry),
        1 => (0usize..8).prop_map(Frame::Padding),
    ]
}

/// Line breaks as the parser reports them: every CRLF, LF or CR becomes one LF.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

impl Frame {
    fn encode(&self) -> bytes::Bytes {
        match self {
            Frame::Event(id, event, data) => encode_event(id, event, data),
            Frame::Comment(text) => encode_comment(text),
            Frame::Retry(ms) => encode_retry(*ms),
            Frame::Padding(bytes) => encode_padding(*bytes),
        }
    }

    /// What the parser should read back, worked out from the spec rather than the encoder.
    fn expected(&self) -> Vec<ParsedItem> {
        match self {
            Frame::Event(id, kind, data) => {
                let kind = if kind.is_empty() { "message" } else { kind };
                vec![event(id, kind, &normalise(data))]
            }
            Frame::Comment(text) => normalise(text).split('\n').map(comment).collect(),
            Frame::Retry(ms) => vec![ParsedItem::Retry(*ms)],
            Frame::Padding(0) => vec![],
            Frame::Padding(bytes) => vec![comment(&" ".repeat(bytes.saturating_sub(3)))],
        }
    }
}

fn any_limits() -> impl Strategy<Value = ParserLimits> {
    prop_oneof![
        Just(ParserLimits::default()),
        (0usize..48, 0usize..48).prop_map(|(line, event)| small(line, event)),
    ]
}

/// Byte streams that look enough like SSE to reach every rule, and plain noise.
fn sse_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"id".to_vec()),
        Just(b"event".to_vec()),
        Just(b"retry".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"12".to_vec()),
        Just(BOM.to_vec()),
        Just("é".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(piece, 0..32).prop_map(|pieces| pieces.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn one_event_round_trips_under_any_chunking(
        id in field_value(),
        kind in field_value(),
        data in tricky_string(),
        points in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let frame = Frame::Event(id, kind, data);
        let encoded = frame.encode();
        let outcome = run(ParserLimits::default(), split(&encoded, &points));
        prop_assert_eq!(outcome.result, Ok(()));
        prop_assert_eq!(outcome.items, frame.expected());
        prop_assert!(!outcome.discarded);
    }

    #[test]
    fn any_sequence_of_frames_round_trips_under_any_chunking(
        frames in prop::collection::vec(frame(), 0..8),
        points in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|frame| frame.encode()).collect();
        let expected: Vec<ParsedItem> = frames.iter().flat_map(Frame::expected).collect();
        let outcome = run(ParserLimits::default(), split(&stream, &points));
        prop_assert_eq!(outcome.result, Ok(()));
        prop_assert_eq!(outcome.items, expected);
    }

    #[test]
    fn skip_mode_keeps_every_event_that_fits_under_any_chunking(
        frames in prop::collection::vec(frame(), 0..6),
        oversized_at in any::<Index>(),
        points in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        // Events within the limits, with one far over them spliced in between two frames.
        let limits = ParserLimits { max_line_bytes: 4096, max_event_bytes: 4096 };
        let mut pieces: Vec<bytes::Bytes> = frames.iter().map(Frame::encode).collect();
        let big = encode_event("", "message", &"x".repeat(10_000));
        pieces.insert(oversized_at.index(pieces.len() + 1), big);
        let stream: Vec<u8> = pieces.concat();
        let expected: Vec<ParsedItem> = frames.iter().flat_map(Frame::expected).collect();
        let (items, skipped, _) = run_skipping(limits, split(&stream, &points));
        prop_assert_eq!(items, expected);
        prop_assert_eq!(skipped, 1);
    }

    #[test]
    fn skip_mode_outcome_does_not_depend_on_chunking(
        input in sse_like_bytes(),
        limits in any_limits(),
        points in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        prop_assert_eq!(run_skipping(limits, split(&input, &points)), run_skipping(limits, [&input[..]]));
    }

    #[test]
    fn chunking_never_changes_the_outcome_of_any_bytes(
        input in sse_like_bytes(),
        limits in any_limits(),
        points in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let whole = run(limits, [&input[..]]);
        prop_assert_eq!(run(limits, split(&input, &points)), whole);
    }
}
