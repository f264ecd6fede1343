"""A client for sse-gateway's event streams: `SseClient` (blocking) and `AsyncSseClient`
(asyncio), each an iterator of `Event`s that reconnects with backoff and resumes with
`Last-Event-ID`, surfaces `reset`, trades credentials for connect tickets, and asks the app for
a new token when the gateway ends a stream with `token_expired`.

# Layout

- `_parse`: the WHATWG `text/event-stream` parser (bytes in, events out);
- `_event`: `Event` (with `.json()` and `.bytes()`) and `ResetInfo`;
- `_credentials`: `Bearer`, `ApiKey`; `_errors`: `GatewayError` and the stream-ending kinds;
- `_backoff`: reconnect delays;
- `_session`: the state and decisions both clients share, without I/O;
- `_sync`, `_async`: the two I/O loops over httpx.
"""

from ._async import AsyncSseClient, AsyncTokenHook
from ._backoff import Backoff
from ._credentials import ApiKey, Bearer, Credential
from ._errors import AccessRevokedError, EventTooLargeError, GatewayError, TokenExpiredError
from ._event import Event, ResetInfo
from ._parse import SseParser
from ._session import ACCESS_REVOKED_EVENT, RESET_EVENT, TOKEN_EXPIRED_EVENT, ClientOptions, ConnectionState
from ._sync import SseClient, TokenHook

__all__ = [
    "ACCESS_REVOKED_EVENT",
    "RESET_EVENT",
    "TOKEN_EXPIRED_EVENT",
    "AccessRevokedError",
    "ApiKey",
    "AsyncSseClient",
    "AsyncTokenHook",
    "Backoff",
    "Bearer",
    "ClientOptions",
    "ConnectionState",
    "Credential",
    "Event",
    "EventTooLargeError",
    "GatewayError",
    "ResetInfo",
    "SseClient",
    "SseParser",
    "TokenExpiredError",
    "TokenHook",
]

__version__ = "0.1.0"
