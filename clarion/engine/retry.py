"""How long to wait before retrying a refusal: exponential backoff with full jitter, never shorter than what
the provider asked for (Retry-After, X-RateLimit-Reset, x-rate-limit-reset)."""

from __future__ import annotations

import random

#: The jitter's own generator: a retry never moves the process's `random` state, which a caller may have
#: seeded (a test, a simulation) and which other threads draw from
_JITTER = random.Random()


def backoff(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    exponential = _JITTER.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(exponential, retry_after or 0.0)
