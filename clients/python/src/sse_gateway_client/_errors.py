"""Why the client stopped, or why a connection failed: `GatewayError` and its two stream-ending
kinds, `TokenExpiredError` and `AccessRevokedError`."""

from __future__ import annotations

import json
from collections.abc import Mapping


class GatewayError(Exception):
    """A refusal of the gateway, or a failure to reach it.

    The gateway answers every error with `{"error": {"code": "snake_case_code", "message":
    "human words"}}`; `code` and `message` come from there. Without such a reply, `code` says
    what happened: `network_error` (no reply, or the connection broke; `status` 0),
    `http_<status>` (a reply without the gateway's body), `not_event_stream`, `bad_ticket_reply`,
    `event_too_large` or `gave_up`.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status, or 0 when no reply decided the failure."""
        self.code = code
        self.message = message
        self.retry_after = retry_after
        """Seconds from the `Retry-After` header of a 429 or 503, when present."""
        self.endpoint = endpoint
        """The path that answered (`/events`, `/tickets`), when one did."""

    @property
    def transient(self) -> bool:
        """Whether trying again later can succeed: network errors, 408, 429 and 5xx. A 400,
        401, 403 or 404 will be the same next time until someone changes something."""
        return self.status in (0, 408, 429) or self.status >= 500

    @classmethod
    def from_reply(cls, status: int, headers: Mapping[str, str], body: bytes, endpoint: str) -> GatewayError:
        """Reads a gateway error reply (its JSON body and `Retry-After`)."""
        code, message = f"http_{status}", f"HTTP {status}"
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError, RecursionError):
            error = None  # not the gateway's JSON (a proxy's error page, say): keep the status
        if isinstance(error, dict):
            if isinstance(error.get("code"), str):
                code = error["code"]
            if isinstance(error.get("message"), str):
                message = error["message"]
        retry_after = headers.get("retry-after", "").strip()
        return cls(
            status,
            code,
            message,
            retry_after=int(retry_after) if retry_after.isascii() and retry_after.isdigit() else None,
            endpoint=endpoint,
        )

    def __str__(self) -> str:
        where = f" from {self.endpoint}" if self.endpoint else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.code}{where}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class TokenExpiredError(GatewayError):
    """The gateway ended the stream with `token_expired` (the JWT reached its `exp`), and the
    app gave no new credential: reconnecting with the expired one would only get 401."""

    def __init__(self, message: str = "the credential expired and no new one was given") -> None:
        super().__init__(401, "token_expired", message, endpoint=None)


class AccessRevokedError(GatewayError):
    """The gateway ended the stream with `access_revoked`: a config reload took the credential's
    rights to the channel away. Reconnecting with it would only get 401 or 403."""

    def __init__(self) -> None:
        super().__init__(403, "access_revoked", "a config reload took this credential's rights away")


class EventTooLargeError(GatewayError):
    """A line or an event's data was over the client's `max_event_size`. Not retried: the
    resumed stream would replay the same event."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "event_too_large", message, endpoint=None)

    @property
    def transient(self) -> bool:
        return False
