"""`AsyncSseClient`: the asyncio (or trio) client, an async iterator of events over
`httpx.AsyncClient`. The same loop as `SseClient`, with `await`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Unpack

import anyio
import httpx

from ._credentials import Credential
from ._errors import GatewayError
from ._event import Event
from ._session import ERROR_BODY_LIMIT, ClientBase, ClientOptions

AsyncTokenHook = Callable[[], Credential | None | Awaitable[Credential | None]]
"""`on_token_expired` of `AsyncSseClient`: a function or a coroutine function that returns the
new credential, or `None` to stop."""


class AsyncSseClient(ClientBase):
    """`SseClient` for asyncio (and trio, through anyio): the same options and behaviour,
    iterated with `async for`, and `on_token_expired` may be a coroutine function.

    ```python
    async with AsyncSseClient("http://127.0.0.1:8080", ["news"]) as client:
        async for event in client:
            print(event.id, event.type, event.data)
    ```

    To stop, break out of the loop or cancel the task that iterates; `aclose()` (or leaving the
    `async with`) then closes the HTTP client it made.
    """

    def __init__(
        self,
        base_url: str,
        channels: Sequence[str],
        *,
        on_token_expired: AsyncTokenHook | None = None,
        http_client: httpx.AsyncClient | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(base_url, channels, options)
        self._on_token_expired = on_token_expired
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        if self._closed:
            raise RuntimeError("the client is closed")
        self._start()
        try:
            wait = 0.0
            while True:
                if wait > 0:
                    await anyio.sleep(wait)
                failure: GatewayError | None
                try:
                    async with aclosing(self._connect_once()) as events:
                        async for event in events:
                            yield event
                    failure = self._end_reason()
                except GatewayError as e:
                    failure = e
                if self._on_token_expired is not None and self._wants_new_credential(failure):
                    result = self._on_token_expired()
                    credential = await result if isinstance(result, Awaitable) else result
                    self._use_credential(credential, failure)
                    wait = 0.0
                    continue
                wait = self._next_wait(failure)
        finally:
            if self._state != "closed":
                self._close(self._error)

    async def _connect_once(self) -> AsyncGenerator[Event, None]:
        """One connection: a ticket if asked for, the stream, its events until it ends."""
        ticket = await self._fetch_ticket() if self._tickets else None
        query, headers = self._stream_request(ticket)
        try:
            async with self._http.stream(
                "GET", self._events_url, params=query, headers=headers, timeout=self._timeout
            ) as response:
                if not self._is_stream(response.status_code, response.headers):
                    raise self._refusal(response.status_code, response.headers, await _read_capped(response))
                async for chunk in response.aiter_bytes():
                    for event in self._feed(chunk):
                        yield event
                    if self._stream_over():
                        return
        except httpx.RequestError as e:
            raise self._network_error(e, self._events_path) from e

    async def _fetch_ticket(self) -> str:
        try:
            response = await self._http.post(self._tickets_url, headers=self._ticket_headers(), timeout=self._timeout)
        except httpx.RequestError as e:
            raise self._network_error(e, self._tickets_path) from e
        return self._ticket_from_reply(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        """Closes the client for good (state `closed`) and the HTTP client it made."""
        self._closed = True
        if self._state != "closed":
            self._close(None)
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncSseClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _read_capped(response: httpx.Response) -> bytes:
    """The start of an error reply's body, enough for the gateway's JSON."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]
