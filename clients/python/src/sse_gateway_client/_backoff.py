"""How long to wait before connecting again."""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, the same rule as the TypeScript client's.

    The wait before retry number `attempt` (1 after the first failure, counting since the
    stream was last open) is `min(maximum, initial * factor ** (attempt - 1))`, less up to
    `jitter` of it at random: with the default 0.5, a random point in the upper half, so clients
    dropped together do not come back together. The client never waits less than the server's
    `retry:` or a refusal's `Retry-After`.
    """

    initial: float = 1.0
    """Seconds before the first retry."""
    maximum: float = 30.0
    """Upper bound of the wait, in seconds."""
    factor: float = 2.0
    """Growth per failure in a row."""
    jitter: float = 0.5
    """Share of the wait that is random, 0..1."""

    def delay(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        """Seconds to wait before retry number `attempt`; `random` returns 0..1 (0 gives the
        full delay)."""
        n = max(1, attempt)
        # Capped before multiplying out, so a long outage cannot overflow the float.
        base = min(self.maximum, self.initial * self.factor ** min(n - 1, 64))
        jitter = min(1.0, max(0.0, self.jitter))
        return base * (1.0 - jitter * random())


DEFAULT_BACKOFF = Backoff()
"""1 s, doubling up to 30 s, half of it random."""
