"""`SseClient`: the blocking client, an iterator of events over `httpx.Client`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Unpack

import httpx

from ._credentials import Credential
from ._errors import GatewayError
from ._event import Event
from ._session import ERROR_BODY_LIMIT, ClientBase, ClientOptions

TokenHook = Callable[[], Credential | None]
"""`on_token_expired`: returns the new credential, or `None` to stop."""


class SseClient(ClientBase):
    """A stream of the gateway's `GET /events`, as an iterator of `Event`s that reconnects by
    itself and resumes where it left off.

    ```python
    with SseClient("http://127.0.0.1:8080", ["news"]) as client:
        for event in client:
            print(event.id, event.type, event.data)
    ```

    Iterating connects, yields every event of the channels, and across a dropped or ended
    stream waits (backoff with jitter, never less than the server's `retry:` or a 429/503's
    `Retry-After`) and reconnects with `Last-Event-ID`, so no event is lost or repeated while
    the gateway's history holds them. When it cannot resume, the gateway sends a `reset` event,
    which is yielded like any other (`event.type == "reset"`, also kept in `last_reset`): events
    were missed, refetch your state.

    The iteration ends by raising a `GatewayError` when going on cannot help: a refusal that
    will not change (400, 401, 403, 404), `TokenExpiredError` when the token expired and
    `on_token_expired` gave no new one, `AccessRevokedError` when a config reload took the
    rights away, or the last error once `max_attempts` connections in a row failed. Breaking
    out of the loop closes the stream; iterating again resumes from `last_event_id`.

    Options:

    - `base_url`: the gateway, e.g. `http://127.0.0.1:8080` (`path` and `tickets_path` are
      appended to it);
    - `channels`: the channels to subscribe to; `types`: only these event types;
    - `last_event_id`: resume point of the first connection (a `last_event_id` saved earlier);
    - `credential`: `Bearer(token)` or `ApiKey(key)`, sent in a header;
    - `tickets`: trade the credential for a single-use ticket (`POST /tickets`) before every
      connection and open the stream with `?ticket=`, as browsers do;
    - `on_token_expired`: called when the stream ends with `token_expired` (or a reconnect is
      refused with 401): return a new credential to reconnect with, or `None` to stop with
      `TokenExpiredError`. Without it, the client stops;
    - `params`: extra query parameters; `backoff`: reconnect delays; `max_attempts`: failed or
      ended connections in a row before giving up (default: never);
    - `connect_timeout`, `read_timeout` (seconds; a stream silent for longer than
      `read_timeout` counts as dropped: keep it above the gateway's `sse.heartbeat_interval`,
      or `None`); `max_event_size` (characters of one event's data);
    - `http_client`: an `httpx.Client` to use (for TLS settings, proxies, a transport); the
      client closes only the one it made itself.

    `close()` stops the client for good, also from another thread: a backoff wait ends at
    once, a stream on its next chunk (at the latest the gateway's next heartbeat).
    """

    def __init__(
        self,
        base_url: str,
        channels: Sequence[str],
        *,
        on_token_expired: TokenHook | None = None,
        http_client: httpx.Client | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(base_url, channels, options)
        self._on_token_expired = on_token_expired
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        self._closing = threading.Event()
        self._iterating = False

    def __iter__(self) -> Iterator[Event]:
        if self._closing.is_set():
            raise RuntimeError("the client is closed")
        self._start()
        self._iterating = True
        try:
            yield from self._run()
        finally:
            self._iterating = False
            if self._state != "closed":
                self._close(self._error)
            if self._closing.is_set():
                self._close_http()

    def _run(self) -> Iterator[Event]:
        wait = 0.0
        while not self._closing.is_set():
            if wait > 0 and self._closing.wait(wait):
                return
            failure: GatewayError | None
            try:
                yield from self._connect_once()
                failure = self._end_reason()
            except GatewayError as e:
                failure = e
            if self._closing.is_set():
                return
            if self._on_token_expired is not None and self._wants_new_credential(failure):
                self._use_credential(self._on_token_expired(), failure)
                wait = 0.0
                continue
            wait = self._next_wait(failure)

    def _connect_once(self) -> Iterator[Event]:
        """One connection: a ticket if asked for, the stream, its events until it ends.
        Returns when the stream ends; raises `GatewayError` when it cannot open or breaks."""
        ticket = self._fetch_ticket() if self._tickets else None
        query, headers = self._stream_request(ticket)
        try:
            with self._http.stream(
                "GET", self._events_url, params=query, headers=headers, timeout=self._timeout
            ) as response:
                if not self._is_stream(response.status_code, response.headers):
                    raise self._refusal(response.status_code, response.headers, _read_capped(response))
                for chunk in response.iter_bytes():
                    yield from self._feed(chunk)
                    if self._stream_over() or self._closing.is_set():
                        return
        except httpx.RequestError as e:
            raise self._network_error(e, self._events_path) from e

    def _fetch_ticket(self) -> str:
        try:
            response = self._http.post(self._tickets_url, headers=self._ticket_headers(), timeout=self._timeout)
        except httpx.RequestError as e:
            raise self._network_error(e, self._tickets_path) from e
        return self._ticket_from_reply(response.status_code, response.headers, response.content)

    def close(self) -> None:
        """Stops the client for good (state `closed`) and closes the HTTP client it made
        (once the iteration, if one runs in another thread, has stopped)."""
        self._closing.set()
        if self._state != "closed":
            self._close(None)
        if not self._iterating:
            self._close_http()

    def _close_http(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _read_capped(response: httpx.Response) -> bytes:
    """The start of an error reply's body, enough for the gateway's JSON."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]
