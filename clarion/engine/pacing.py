"""Per-channel pacing and retry timing.

`Pacer` is a token bucket per limit (messages per second, requests per second), shared by every batch of
one channel in a process, so concurrent tasks together stay under the configured rate. `backoff()` is
the wait before a retry: exponential with full jitter, never shorter than what the provider asked for.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from clarion.channels.base import Pacing


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; `take(n)` blocks until n are available."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(burst if burst is not None else rate, 1.0)
        self._tokens = self.burst
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: float = 1.0) -> float:
        """Take `n` tokens (more than the burst waits proportionally); returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class Pacer:
    """The pacing of one channel: messages per second and requests per second, either optional."""

    def __init__(self, pacing: Pacing) -> None:
        self.messages = TokenBucket(pacing.messages_per_second) if pacing.messages_per_second else None
        self.requests = TokenBucket(pacing.requests_per_second) if pacing.requests_per_second else None

    def request(self, messages: int) -> None:
        """Wait until a request carrying `messages` messages may go."""
        if self.requests is not None:
            self.requests.take(1)
        if self.messages is not None:
            self.messages.take(messages)


_PACERS: dict[tuple[str, str], Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(run_id: str, channel: str, pacing: Pacing) -> Pacer:
    """The one Pacer of a run's channel in this process."""
    with _PACERS_LOCK:
        key = (run_id, channel)
        if key not in _PACERS:
            _PACERS[key] = Pacer(pacing)
        return _PACERS[key]


def backoff(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    exponential = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(exponential, retry_after or 0.0)
