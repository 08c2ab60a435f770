"""A run's coordination while it sends: the opening gate, the stopped-channel breaker, and pacing.

Everything the send tasks of one launch share sits behind `Coordination`, one object per launch, so that
nothing about a run lives in module globals. `LocalCoordination` serves the tasks of one process (threads);
a shared implementation (Redis) serves shards on several workers behind the same interface.

- **Opening gate.** Every channel's opening batch does its slow work first (reading the ledger, rendering,
  claiming its first chunk), then waits at the gate; when all have arrived (or GATE_TIMEOUT passed) they
  send their first requests together, and every later batch waits for that moment.
- **Breaker.** A recipient whose retries run out is failed; STOP_AFTER chunks of a channel in a row doing
  so, with none getting through in between, mean the provider is down: the channel stops in this launch
  (what is left stays planned, for a resume) and the others go on.
- **Pacing.** `messages_per_second` and `requests_per_second` per channel hold for all the channel's
  batches together (token buckets).
- **Stopping.** Whoever runs the launch (`clarion run` on SIGINT or SIGTERM) asks it to stop sending new
  requests (`request_stop`); every send checks between chunks, and between messages of a provider that
  takes one per request, and waits (retries, the next wave) wake up at once. A request already made is
  settled as usual; `settled()` says when none is left in flight.

Keys are (run id, channel): a launch also sends its share kits' runs and a rollout's run.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from clarion.channels.base import Pacing

log = logging.getLogger("clarion.engine")

STOP_AFTER = 3  # chunks in a row with exhausted retries that mean the provider is down
GATE_TIMEOUT = 10.0  # an opening batch later than this does not hold the others back
INTERRUPTED = "the launch was interrupted: what is left stays planned for a resume"

Key = tuple[str, str]  # (run id, channel)


class Gate(ABC):
    """One batch's way through its run's opening, taken once, just before its first provider request."""

    @abstractmethod
    def open(self) -> None:
        """Wait for the run's opening (an opening batch: for the other opening batches)."""

    @abstractmethod
    def leave(self) -> None:
        """The batch is done: an opening batch that never sent takes its turn, so no one waits for it."""


class Coordination(ABC):
    """What one launch's send tasks share (see the module's docstring)."""

    # -- the breaker ----------------------------------------------------------------------------------

    @abstractmethod
    def stopped(self, run_id: str, channel: str) -> str | None:
        """Why this run's channel was stopped (its provider kept failing), or None."""

    @abstractmethod
    def chunk_done(self, run_id: str, channel: str, *, exhausted: bool, why: str) -> None:
        """Count chunks in a row whose retries ran out; STOP_AFTER of them stop the channel."""

    # -- the opening ----------------------------------------------------------------------------------

    @abstractmethod
    def open_gate(self, run_id: str, parties: int) -> None:
        """Make the run's `parties` opening batches wait for each other, then send together."""

    @abstractmethod
    def gate(self, run_id: str, opening: bool) -> Gate:
        """A batch's way through the run's gate (a pass-through when no gate is open)."""

    @abstractmethod
    def close_gate(self, run_id: str) -> None:
        """The wave is over: later batches no longer wait."""

    @abstractmethod
    def interrupt(self, run_id: str) -> None:
        """Stop the run's sending before its next chunk (an interrupted launch); the rest stays planned."""

    # -- pacing ---------------------------------------------------------------------------------------

    @abstractmethod
    def pace(self, run_id: str, channel: str, pacing: Pacing, messages: int) -> None:
        """Wait until a request carrying `messages` messages may go, under the channel's pacing."""

    # -- stopping -------------------------------------------------------------------------------------

    @abstractmethod
    def request_stop(self, why: str) -> None:
        """Stop sending new requests, in every run of this launch (the first reason given is kept)."""

    @abstractmethod
    def stop_requested(self) -> str | None:
        """Why the launch was asked to stop sending, or None."""

    @abstractmethod
    def wait_for_stop(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once when a stop is requested; True when one was."""

    @abstractmethod
    def enter_request(self) -> bool:
        """A chunk is about to be claimed and sent: counted in flight, unless a stop was requested (False:
        claim nothing). Checked and counted at once, so after a stop the count only goes down."""

    @abstractmethod
    def leave_request(self) -> None:
        """The chunk entered with `enter_request` is settled (or released)."""

    @abstractmethod
    def settled(self, timeout: float) -> bool:
        """Wait until no chunk of this launch is in flight (at most `timeout` seconds); True when none is."""


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


class _RunGate:
    """The moment a run opens: its opening batches meet at a barrier, and every other batch waits for it."""

    def __init__(self, parties: int) -> None:
        self.opened = threading.Event()
        self.barrier = threading.Barrier(max(parties, 1), action=self.opened.set)


class _LocalGate(Gate):
    def __init__(self, run_id: str, gate: _RunGate | None, opening: bool) -> None:
        self._run_id, self._gate, self._opening = run_id, gate, opening

    def open(self) -> None:
        gate, self._gate = self._gate, None
        if gate is None:
            return
        if not self._opening:
            gate.opened.wait(GATE_TIMEOUT * 2)
            return
        try:
            gate.barrier.wait(GATE_TIMEOUT)
        except threading.BrokenBarrierError:
            gate.opened.set()
            log.warning("run %s: an opening batch was late; the others went ahead", self._run_id)

    def leave(self) -> None:
        if self._opening:
            self.open()
        self._gate = None


class LocalCoordination(Coordination):
    """The coordination of one launch whose send tasks are threads of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped: dict[Key, str] = {}
        self._interrupted: set[str] = set()
        self._exhausted: dict[Key, int] = {}
        self._gates: dict[str, _RunGate] = {}
        self._pacers: dict[Key, Pacer] = {}
        self._stop = threading.Event()
        self._why: str | None = None
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    def stopped(self, run_id: str, channel: str) -> str | None:
        with self._lock:
            if run_id in self._interrupted:
                return INTERRUPTED
            return self._stopped.get((run_id, channel))

    def interrupt(self, run_id: str) -> None:
        with self._lock:
            self._interrupted.add(run_id)

    def chunk_done(self, run_id: str, channel: str, *, exhausted: bool, why: str) -> None:
        key = (run_id, channel)
        with self._lock:
            count = self._exhausted[key] = self._exhausted.get(key, 0) + 1 if exhausted else 0
            if count >= STOP_AFTER:
                self._stopped.setdefault(key, f"{why} ({count} chunks in a row)")

    def open_gate(self, run_id: str, parties: int) -> None:
        with self._lock:
            self._gates[run_id] = _RunGate(parties)

    def gate(self, run_id: str, opening: bool) -> Gate:
        with self._lock:
            return _LocalGate(run_id, self._gates.get(run_id), opening)

    def close_gate(self, run_id: str) -> None:
        with self._lock:
            self._gates.pop(run_id, None)

    def pace(self, run_id: str, channel: str, pacing: Pacing, messages: int) -> None:
        with self._lock:
            pacer = self._pacers.get((run_id, channel))
            if pacer is None:
                pacer = self._pacers[(run_id, channel)] = Pacer(pacing)
        pacer.request(messages)

    def request_stop(self, why: str) -> None:
        with self._lock:
            self._why = self._why or why
            self._stop.set()

    def stop_requested(self) -> str | None:
        return self._why if self._stop.is_set() else None

    def wait_for_stop(self, seconds: float) -> bool:
        return self._stop.wait(max(seconds, 0.0))

    def enter_request(self) -> bool:
        with self._lock:
            if self._stop.is_set():
                return False
            self._in_flight += 1
            return True

    def leave_request(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight <= 0:
                self._idle.notify_all()

    def settled(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._in_flight <= 0, timeout=max(timeout, 0.0))


__all__ = [
    "GATE_TIMEOUT",
    "STOP_AFTER",
    "Coordination",
    "Gate",
    "LocalCoordination",
    "Pacer",
    "TokenBucket",
]
