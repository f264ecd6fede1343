"""The WHATWG parser on tricky inputs, each fed whole, byte by byte, and in every two-part split:
the result must not depend on where the network cut the stream."""

from __future__ import annotations

import pytest

from sse_gateway_client import Backoff, Event, SseParser
from sse_gateway_client._parse import EventTooLarge


def parse(stream: bytes, last_event_id: str = "") -> tuple[list[Event], SseParser]:
    """Parses `stream` whole, then in every other chunking, and checks they all agree."""
    results = []
    chunkings = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    chunkings += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    for chunks in chunkings:
        parser = SseParser(last_event_id)
        events = [event for chunk in chunks for event in parser.feed(chunk)]
        results.append((events, parser.last_event_id, parser.retry))
    for other in results[1:]:
        assert other == results[0], f"chunking changed the result of {stream!r}"
    parser = SseParser(last_event_id)
    return parser.feed(stream), parser


def test_lf_crlf_and_cr_line_ends_are_the_same() -> None:
    expected = [Event("message", "a", ""), Event("note", "b", "7")]
    for eol in (b"\n", b"\r\n", b"\r"):
        stream = eol.join([b"data: a", b"", b"event: note", b"id: 7", b"data: b", b"", b""])
        assert parse(stream)[0] == expected, eol


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    # The LF completes the CRLF above; only the next line end dispatches.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [Event("message", "a", "")]


def test_comments_are_skipped_and_unknown_fields_ignored() -> None:
    stream = b": connected\n\n:heartbeat\nfoo: bar\ndata: x\n: inside an event\ndata: y\n\n"
    assert parse(stream)[0] == [Event("message", "x\ny", "")]


def test_multi_line_data_keeps_empty_lines_and_one_space_is_removed() -> None:
    stream = b"data:first\ndata\ndata:  two spaces\ndata: \n\n"
    assert parse(stream)[0] == [Event("message", "first\n\n two spaces\n", "")]


def test_an_empty_data_line_dispatches_an_event_with_empty_data() -> None:
    assert parse(b"data\n\ndata:\n\n")[0] == [Event("message", "", ""), Event("message", "", "")]


def test_a_block_without_data_dispatches_nothing_but_moves_the_id_and_forgets_its_type() -> None:
    events, parser = parse(b"event: ghost\nid: 5\n\ndata: after\n\n")
    assert events == [Event("message", "after", "5")]
    assert parser.last_event_id == "5"


def test_an_id_with_nul_is_ignored_and_an_empty_id_clears_it() -> None:
    events, _ = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", ""]


def test_the_id_carries_over_to_later_events_and_starts_from_the_resume_point() -> None:
    events, parser = parse(b"data: a\n\nid: 9\ndata: b\n\ndata: c\n\n", last_event_id="4")
    assert [e.id for e in events] == ["4", "9", "9"]
    assert parser.last_event_id == "9"


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 2500", 2500),
        (b"retry:0", 0),
        (b"retry: 25x", None),
        (b"retry: -5", None),
        (b"retry: 1.5", None),
        (b"retry:", None),
        ("retry: \u0663".encode(), None),  # an Arabic-Indic digit is a digit, but not ASCII
        (b"retry : 100", None),  # the field name is "retry "
    ],
)
def test_retry_counts_only_when_it_is_ascii_digits(line: bytes, retry: int | None) -> None:
    events, parser = parse(line + b"\n\n")
    assert events == []
    assert parser.retry == retry


def test_one_leading_bom_is_dropped_and_a_second_is_not() -> None:
    events, _ = parse(b"\xef\xbb\xbfdata: a\n\n")
    assert events == [Event("message", "a", "")]
    # The second BOM makes the field name "\ufeffdata": unknown, ignored.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n")[0] == []
    assert parse(b"data: \xef\xbb\xbfa\n\n")[0] == [Event("message", "\ufeffa", "")]


def test_utf8_split_anywhere_is_decoded_and_invalid_bytes_are_replaced() -> None:
    assert parse("data: h\u00e9\u20ac\U0001f600\n\n".encode())[0] == [Event("message", "h\u00e9\u20ac\U0001f600", "")]
    assert parse(b"data: a\xffb\n\n")[0] == [Event("message", "a\ufffdb", "")]


def test_an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() -> None:
    assert parse(b"data: complete\n\ndata: cut off\n")[0] == [Event("message", "complete", "")]


def test_lines_and_data_over_the_limit_raise_instead_of_buffering() -> None:
    with pytest.raises(EventTooLarge):
        SseParser(max_event_size=10).feed(b"data: " + b"x" * 20)
    parser = SseParser(max_event_size=10)
    with pytest.raises(EventTooLarge):
        for _ in range(5):
            parser.feed(b"data: xxx\n")
    assert SseParser(max_event_size=10).feed(b"data: 12345\n\n") == [Event("message", "12345", "")]


def test_event_bytes_decodes_standard_base64_only() -> None:
    assert Event("blob", "AAEC//4=", "1").bytes() == b"\x00\x01\x02\xff\xfe"
    for bad in ("AAEC__4=", "not base64!", "AAE", "\u00e9"):
        with pytest.raises(ValueError):
            Event("blob", bad, "1").bytes()


def test_event_json_parses_the_data_or_raises() -> None:
    assert Event("message", '{"a": [1]}', "").json() == {"a": [1]}
    with pytest.raises(ValueError):
        Event("message", "plain text", "").json()


def test_backoff_grows_to_its_cap_and_jitter_takes_up_to_its_share() -> None:
    backoff = Backoff(initial=1.0, maximum=10.0, factor=2.0, jitter=0.5)
    assert [backoff.delay(n, lambda: 0.0) for n in (1, 2, 3, 4, 5, 100_000)] == [1, 2, 4, 8, 10, 10]
    assert backoff.delay(3, lambda: 1.0) == 2.0
    assert Backoff(jitter=0.0).delay(1, lambda: 1.0) == 1.0
