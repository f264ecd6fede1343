"""The client's state and decisions, shared by `SseClient` and `AsyncSseClient`; no I/O here.

Each client is one loop, and asks this base what to do at every step:

    wait --> [POST /tickets] --> GET /events --> feed chunks --> the stream is over --> decide
     ^        _ticket_headers     _stream_request  _feed           _stream_over          |
     |        _ticket_from_reply  _is_stream                                             |
     +--------------------- _next_wait (a delay, or raise) <-----------------------------+
                            _wants_new_credential / _use_credential (token expiry, 401)

so the two loops differ only in `await`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal, TypedDict, TypeGuard

import httpx

from ._backoff import DEFAULT_BACKOFF, Backoff
from ._credentials import Credential, credential_headers
from ._errors import AccessRevokedError, EventTooLargeError, GatewayError, TokenExpiredError
from ._event import Event, ResetInfo
from ._parse import DEFAULT_MAX_EVENT_SIZE, EventTooLarge, SseParser

ConnectionState = Literal["connecting", "open", "reconnecting", "closed"]

RESET_EVENT = "reset"
"""The gateway could not resume: events may be missing (delivered to the app)."""
TOKEN_EXPIRED_EVENT = "token_expired"
"""The stream's JWT reached its `exp` (handled by the client, not delivered)."""
ACCESS_REVOKED_EVENT = "access_revoked"
"""A config reload took the credential's rights away (handled by the client, not delivered)."""
HEARTBEAT_EVENT = "heartbeat"
"""A keep-alive of a gateway with `sse.heartbeat: event` (not delivered; its id is the last one)."""

ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an error reply read for its JSON; the rest is not waited for."""


class ClientOptions(TypedDict, total=False):
    """The options `SseClient` and `AsyncSseClient` share (see `SseClient`); defaults in
    `ClientBase`."""

    types: Sequence[str] | None
    last_event_id: str
    credential: Credential | None
    tickets: bool
    params: Mapping[str, str] | None
    path: str
    tickets_path: str
    backoff: Backoff
    max_attempts: int | None
    connect_timeout: float
    read_timeout: float | None
    max_event_size: int


class ClientBase:
    """Options, state and decisions of a client; see `SseClient` for the options."""

    def __init__(self, base_url: str, channels: Sequence[str], options: ClientOptions) -> None:
        types = options.get("types")
        credential = options.get("credential")
        tickets = options.get("tickets", False)
        max_attempts = options.get("max_attempts")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        if isinstance(channels, str) or isinstance(types, str):
            raise TypeError("channels and types are lists of names, not one string")
        if not channels:
            raise ValueError("at least one channel is needed")
        if types is not None and not types:
            raise ValueError("types, when given, names at least one event type (None: all types)")
        if tickets and credential is None:
            raise ValueError("tickets=True needs a credential to trade for tickets")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None: never give up)")
        root = base_url.rstrip("/")
        self._events_path = options.get("path", "/events")
        self._tickets_path = options.get("tickets_path", "/tickets")
        self._events_url = root + self._events_path
        self._tickets_url = root + self._tickets_path
        self._channels = list(channels)
        self._types = list(types) if types is not None else None
        self._params = dict(options.get("params") or {})
        self._credential = credential
        self._tickets = tickets
        self._backoff = options.get("backoff", DEFAULT_BACKOFF)
        self._max_attempts = max_attempts
        self._max_event_size = options.get("max_event_size", DEFAULT_MAX_EVENT_SIZE)
        self._timeout = httpx.Timeout(options.get("connect_timeout", 10.0), read=options.get("read_timeout", 60.0))

        self._state: ConnectionState = "connecting"
        self._last_event_id = options.get("last_event_id", "")
        self._last_reset: ResetInfo | None = None
        self._error: GatewayError | None = None
        self._attempts = 0
        self._connections = 0
        self._retry_ms: int | None = None
        self._parser: SseParser | None = None
        self._ended_by: GatewayError | None = None
        # A credential from the token hook that has not opened a stream yet: if it is refused
        # too, the client stops instead of asking again in a loop.
        self._untried_credential = False

    # ---- what the app can read ---------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """`connecting` (before the first stream opens), `open`, `reconnecting` (waiting or
        connecting again), or `closed` (stopped, for `error`'s reason or by the app)."""
        return self._state

    @property
    def last_event_id(self) -> str:
        """The resume point: the last event id received (or the initial `last_event_id`). Sent
        as `Last-Event-ID` on every reconnect; keep it to resume in a later process."""
        return self._last_event_id

    @property
    def last_reset(self) -> ResetInfo | None:
        """The last `reset` received, if any."""
        return self._last_reset

    @property
    def error(self) -> GatewayError | None:
        """Why the last connection failed (while reconnecting), or why the client closed."""
        return self._error

    @property
    def attempts(self) -> int:
        """Failed or ended connections in a row since a stream was last open."""
        return self._attempts

    @property
    def connections(self) -> int:
        """`GET /events` requests sent so far."""
        return self._connections

    # ---- one connection ----------------------------------------------------------------

    def _ticket_headers(self) -> dict[str, str]:
        return credential_headers(self._credential)

    def _ticket_from_reply(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        """The ticket of a `POST /tickets` reply (`201 {"ticket": "...", "expires_in": 30}`),
        or raises the refusal."""
        if not 200 <= status < 300:
            raise GatewayError.from_reply(status, headers, body, self._tickets_path)
        try:
            ticket = json.loads(body).get("ticket")
        except (ValueError, AttributeError):
            ticket = None
        if not isinstance(ticket, str) or not ticket:
            raise GatewayError(
                status, "bad_ticket_reply", 'the ticket reply has no "ticket" string', endpoint=self._tickets_path
            )
        return ticket

    def _stream_request(self, ticket: str | None) -> tuple[httpx.QueryParams, dict[str, str]]:
        """The query and headers of the next `GET /events`: the channels, the resume point, and
        the credential (in a header) or the ticket."""
        self._connections += 1
        query: list[tuple[str, str | int | float | bool | None]] = [("channel", c) for c in self._channels]
        if self._types is not None:
            query.append(("types", ",".join(self._types)))
        query.extend(self._params.items())
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._last_event_id:
            if _fits_header(self._last_event_id):
                headers["Last-Event-ID"] = self._last_event_id
            else:
                query.append(("lastEventId", self._last_event_id))
        if ticket is not None:
            query.append(("ticket", ticket))
        else:
            headers.update(credential_headers(self._credential))
        return httpx.QueryParams(query), headers

    def _is_stream(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether a `GET /events` reply is the stream (then it is open). `False` for an error
        reply, whose body the caller reads for `_refusal`; raises for a 2xx that is no stream."""
        if status == 200 and headers.get("content-type", "").startswith("text/event-stream"):
            self._state = "open"
            self._attempts = 0
            self._error = None
            self._untried_credential = False
            self._ended_by = None
            self._parser = SseParser(self._last_event_id, self._max_event_size)
            return True
        if 200 <= status < 300:
            raise GatewayError(
                status,
                "not_event_stream",
                f"{self._events_path} answered {headers.get('content-type') or 'no content type'}, "
                "not text/event-stream",
                endpoint=self._events_path,
            )
        return False

    def _refusal(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        return GatewayError.from_reply(status, headers, body, self._events_path)

    def _feed(self, chunk: bytes) -> list[Event]:
        """The app's events in `chunk`. Records the resume point, `retry:` and resets; a
        `token_expired` or `access_revoked` event ends the stream (see `_stream_over`)."""
        parser = self._parser
        if parser is None or self._ended_by is not None:
            return []
        try:
            parsed = parser.feed(chunk)
        except EventTooLarge as e:
            raise EventTooLargeError(f"{e} (max_event_size)") from e
        if parser.retry is not None:
            self._retry_ms = parser.retry
        delivered: list[Event] = []
        for event in parsed:
            self._last_event_id = event.id
            if event.type == TOKEN_EXPIRED_EVENT:
                self._ended_by = TokenExpiredError()
                return delivered
            if event.type == ACCESS_REVOKED_EVENT:
                self._ended_by = AccessRevokedError()
                return delivered
            if event.type == HEARTBEAT_EVENT:
                continue
            if event.type == RESET_EVENT:
                self._last_reset = ResetInfo.from_event(event)
            delivered.append(event)
        self._last_event_id = parser.last_event_id
        return delivered

    def _stream_over(self) -> bool:
        """Whether the stream ended itself with a control event (stop reading)."""
        return self._ended_by is not None

    def _end_reason(self) -> GatewayError | None:
        """Why the stream that just ended ended: a control event, or `None` (it just closed)."""
        self._parser = None
        return self._ended_by

    # ---- what next ---------------------------------------------------------------------

    def _wants_new_credential(self, failure: GatewayError | None) -> TypeGuard[GatewayError]:
        """Whether to ask the app for a new credential: the stream ended with `token_expired`,
        or the credential was refused (401 `unauthorized`, e.g. a token that expired while the
        client waited to reconnect) and is not one the app just gave."""
        if isinstance(failure, TokenExpiredError):
            return True
        return (
            failure is not None
            and failure.status == 401
            and failure.code == "unauthorized"
            and self._credential is not None
            and not self._untried_credential
        )

    def _use_credential(self, credential: Credential | None, failure: GatewayError) -> None:
        """Takes the app's new credential, or stops with `failure` when there is none (or it
        is the refused one again)."""
        if credential is None or credential == self._credential:
            self._close(failure)
            raise failure
        self._credential = credential
        self._untried_credential = True
        self._state = "reconnecting"
        self._error = failure

    def _next_wait(self, failure: GatewayError | None) -> float:
        """Seconds to wait before connecting again after `failure` (`None`: the stream just
        ended), or raises why the client stops: a refusal that will not change (400, 401, 403,
        404, an expired token, revoked rights), or `max_attempts` reached."""
        self._attempts += 1
        if failure is not None:
            self._error = failure
            if not failure.transient:
                self._close(failure)
                raise failure
        if self._max_attempts is not None and self._attempts >= self._max_attempts:
            error = failure or GatewayError(
                0, "gave_up", f"gave up after {self._attempts} connections in a row that failed or ended"
            )
            self._close(error)
            raise error
        self._state = "reconnecting"
        return max(
            self._backoff.delay(self._attempts),
            (self._retry_ms or 0) / 1000,
            (failure.retry_after or 0) if failure is not None else 0,
        )

    def _network_error(self, error: Exception, endpoint: str) -> GatewayError:
        return GatewayError(0, "network_error", f"{type(error).__name__}: {error}", endpoint=endpoint)

    def _close(self, error: GatewayError | None) -> None:
        self._state = "closed"
        self._error = error
        self._parser = None

    def _start(self) -> None:
        """A new iteration starts: from the last resume point, with a fresh count."""
        if self._state == "closed":
            self._state = "reconnecting" if self._connections else "connecting"
            self._attempts = 0


def _fits_header(value: str) -> bool:
    """Whether an id can travel as the `Last-Event-ID` header (printable ASCII); any other id
    goes as `?lastEventId=`, which the gateway reads when the header is absent."""
    return value.isascii() and value.isprintable()
