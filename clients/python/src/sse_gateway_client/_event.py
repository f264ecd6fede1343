"""What the client hands to the app: one `Event` per dispatched SSE event, and `ResetInfo`."""

from __future__ import annotations

import base64
import builtins
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the stream, as the WHATWG parser dispatched it."""

    type: str
    """The `event:` field, `message` when the event had none."""
    data: str
    """The `data:` text; several `data:` lines are joined with `\\n`."""
    id: str
    """The stream's last event id after this event: the resume point (`""` before any id)."""

    def json(self) -> Any:
        """The data parsed as JSON. Raises `ValueError` when it is not JSON (the gateway sends a
        published string verbatim)."""
        return json.loads(self.data)

    def bytes(self) -> builtins.bytes:
        """The data decoded as standard base64: the bytes of an event published with
        `data_base64`. Raises `ValueError` when the data is not standard base64. Nothing on the
        wire says which events are binary, so the app asks for the bytes where it expects them."""
        return base64.b64decode(self.data.encode("ascii", "strict"), validate=True)


@dataclass(frozen=True, slots=True)
class ResetInfo:
    """What a `reset` event said: the gateway could not resume from the id the client sent, so
    events may be missing and the app must refetch its state."""

    reason: str
    """`malformed_id`, `unknown_id`, `history_evicted`, or a reason of a later gateway."""
    id: str
    """The reset event's id: a safe resume point from then on."""

    @classmethod
    def from_event(cls, event: Event) -> ResetInfo:
        """Reads the reason from the event's `{"reason": "..."}` data (`unknown` when absent)."""
        try:
            body = event.json()
        except ValueError:
            body = None
        reason = body.get("reason") if isinstance(body, dict) else None
        return cls(reason=reason if isinstance(reason, str) else "unknown", id=event.id)
