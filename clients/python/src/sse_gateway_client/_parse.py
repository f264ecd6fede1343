"""The `text/event-stream` wire format: bytes in, events out, no I/O.

Follows the WHATWG HTML standard's "event stream interpretation" (section 9.2.6):

- the stream is UTF-8, decoded with replacement characters; one leading byte order mark is
  dropped;
- lines end with CRLF, LF or CR, also when a CRLF is split between two chunks;
- a line starting with `:` is a comment; `field: value` loses one space after the colon; a
  line without a colon is a field with an empty value; unknown fields are ignored;
- `data` lines are joined with `\\n`; an empty line dispatches the event, unless no `data` line
  came (an event with no data is not dispatched, but its `id` still moves the resume point);
- an `id` containing NUL is ignored; `retry` counts only when it is ASCII digits;
- an event cut off by the end of the stream is discarded.

One deliberate difference: a parser starts with the last event id it is given (the client's
resume point) instead of `""`, as Chromium does, so a stream that sends no `id` does not erase
the resume point of the previous one.
"""

from __future__ import annotations

import codecs
import re

from ._event import Event

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
"""Characters a single line or an event's data may hold before the stream counts as broken."""

_LINE_END = re.compile(r"\r\n|\r|\n")


class EventTooLarge(Exception):
    """A line or an event's data grew past the parser's limit."""


class SseParser:
    """Parses one connection's body. Feed it chunks as they arrive; it returns the events each
    chunk completed. `last_event_id` and `retry` are read after each `feed`."""

    def __init__(self, last_event_id: str = "", max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self.last_event_id = last_event_id
        """The stream's last event id: set by each dispatch (even one without data)."""
        self.retry: int | None = None
        """The last valid `retry:` value, in milliseconds; `None` until the stream sends one."""
        self._max = max_event_size
        # "utf-8-sig" drops one leading BOM, also when it is split between chunks.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._line = ""
        self._skip_lf = False
        self._data: list[str] = []
        self._data_size = 0
        self._type = ""
        self._id = last_event_id

    def feed(self, chunk: bytes) -> list[Event]:
        """Parses `chunk` and returns the events it completed, in order. Raises `EventTooLarge`
        when a line or an event's data is over the limit (nothing is buffered past it)."""
        text = self._decoder.decode(chunk)
        if self._skip_lf and text:
            if text[0] == "\n":
                text = text[1:]
            self._skip_lf = False
        events: list[Event] = []
        pos = 0
        for end in _LINE_END.finditer(text):
            line = self._line + text[pos : end.start()]
            self._line = ""
            pos = end.end()
            # A CR ending the chunk may be the first half of a CRLF.
            self._skip_lf = end.group() == "\r" and pos == len(text)
            event = self._process(line)
            if event is not None:
                events.append(event)
        self._line += text[pos:]
        if len(self._line) > self._max:
            raise EventTooLarge(f"a line of the stream is over {self._max} characters")
        return events

    def _process(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise EventTooLarge(f"an event's data is over {self._max} characters")
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id
        data, event_type = self._data, self._type
        self._data, self._data_size, self._type = [], 0, ""
        if not data:
            return None
        return Event(type=event_type or "message", data="\n".join(data), id=self._id)
