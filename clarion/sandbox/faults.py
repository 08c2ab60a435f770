"""Fault injection: what share of a provider's requests fail, stall or are rate limited, and how.

Each provider has its own `FaultConfig` and its own seeded random generator, so a run with the same seed and
the same sequence of requests to that provider sees the same faults. Decisions are made before a request is
validated or stored, so a faulted request never stores a message, but for a stall the provider took first
(`stall_accepted`): its message is stored, and the answer comes too late.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FaultConfig:
    """How one provider misbehaves.

    - failure_rate: share of requests answered 500 or 503 with the provider's error body.
    - timeout_rate: share of requests where the server stalls `stall_seconds` before answering 503, so a
      client with a shorter timeout gives up first. The stalled request stores nothing, unless:
    - stall_accepted: share of those stalls where the provider took the request first: the message is
      stored, and its answer (a 2xx) comes after the stall, too late for the client. What
      `clarion reconcile` finds; the other stalls are what it proves never arrived.
    - rate_limit_every / rate_limit_burst: after every `rate_limit_every` requests that pass, the next
      `rate_limit_burst` requests get a 429 saying to retry after `retry_after` seconds (0 turns it off).
    - latency_ms: added to every response of the provider.
    - seed: makes the random draws repeatable (None draws from the system's entropy).
    """

    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    stall_seconds: float = 30.0
    stall_accepted: float = 0.0
    rate_limit_every: int = 0
    rate_limit_burst: int = 0
    retry_after: float = 1.0
    latency_ms: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("failure_rate", "timeout_rate", "stall_accepted"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if self.failure_rate + self.timeout_rate > 1.0:
            raise ValueError("failure_rate + timeout_rate must not exceed 1")
        for name in ("stall_seconds", "retry_after", "latency_ms", "rate_limit_every", "rate_limit_burst"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.rate_limit_burst and not self.rate_limit_every:
            raise ValueError(
                "rate_limit_burst needs rate_limit_every (how many requests pass between bursts)"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Read a JSON/YAML mapping; `rate_limit: {every, burst, retry_after}` may be nested."""
        values = dict(data)
        nested = values.pop("rate_limit", None)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise ValueError("rate_limit must be a mapping of every, burst and retry_after")
            unknown = set(nested) - {"every", "burst", "retry_after"}
            if unknown:
                raise ValueError(f"unknown rate_limit setting(s): {', '.join(sorted(map(str, unknown)))}")
            for key in ("every", "burst"):
                if key in nested:
                    values[f"rate_limit_{key}"] = nested[key]
            if "retry_after" in nested:
                values["retry_after"] = nested["retry_after"]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown fault setting(s): {', '.join(sorted(map(str, unknown)))} "
                f"(known: {', '.join(sorted(known | {'rate_limit'}))})"
            )
        try:
            return cls(**values)
        except TypeError as exc:  # a wrongly typed value compared with a number
            raise ValueError(f"invalid fault settings {data!r}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_faults(
    faults: Mapping[str, FaultConfig | Mapping[str, Any] | None] | None, providers: Sequence[str]
) -> dict[str, FaultConfig | None]:
    """Per-provider fault settings from FaultConfig objects or plain mappings (JSON, YAML)."""
    parsed: dict[str, FaultConfig | None] = {}
    for provider, value in (faults or {}).items():
        check_provider(provider, providers)
        parsed[provider] = as_fault_config(value)
    return parsed


def as_fault_config(value: FaultConfig | Mapping[str, Any] | None) -> FaultConfig | None:
    if value is None or isinstance(value, FaultConfig):
        return value
    if isinstance(value, Mapping):
        return FaultConfig.from_dict(value)
    raise ValueError(f"fault settings must be a mapping or FaultConfig, not {type(value).__name__}")


def check_provider(provider: str, providers: Sequence[str]) -> str:
    if provider not in providers:
        raise ValueError(f"unknown provider {provider!r} (known: {', '.join(providers)})")
    return provider


class FaultKind(enum.Enum):
    RATE_LIMIT = "rate_limit"
    FAILURE = "failure"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Decision:
    """What to do with one request: `kind` None means answer it normally."""

    kind: FaultKind | None = None
    status: int = 0
    latency: float = 0.0
    stall: float = 0.0
    retry_after: float = 0.0
    accepted: bool = False  # a stall after the provider took the request (stall_accepted)


PASS = Decision()


class _ProviderFaults:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.count = 0

    def decide(self) -> Decision:
        c = self.config
        position = self.count
        self.count += 1
        latency = c.latency_ms / 1000.0
        cycle = c.rate_limit_every + c.rate_limit_burst
        if c.rate_limit_burst and position % cycle >= c.rate_limit_every:
            return Decision(FaultKind.RATE_LIMIT, 429, latency, retry_after=c.retry_after)
        if c.failure_rate or c.timeout_rate:
            draw = self.rng.random()
            if draw < c.failure_rate:
                return Decision(FaultKind.FAILURE, self.rng.choice((500, 503)), latency)
            if draw < c.failure_rate + c.timeout_rate:
                # drawn only when configured, so existing seeds keep their sequences
                accepted = bool(c.stall_accepted) and self.rng.random() < c.stall_accepted
                return Decision(FaultKind.TIMEOUT, 503, latency, stall=c.stall_seconds, accepted=accepted)
        return Decision(latency=latency) if latency else PASS


class Faults:
    """The fault settings of every provider, safe to change from any thread while requests come in."""

    def __init__(
        self, providers: Sequence[str], faults: Mapping[str, FaultConfig | None] | None = None
    ) -> None:
        self.providers = tuple(providers)
        self._lock = threading.Lock()
        self._state: dict[str, _ProviderFaults] = {}
        for provider, config in (faults or {}).items():
            self.set(provider, config)

    def set(self, provider: str, config: FaultConfig | None) -> None:
        """Replace one provider's settings (None: no faults); its random sequence and counter restart."""
        check_provider(provider, self.providers)
        with self._lock:
            if config is None:
                self._state.pop(provider, None)
            else:
                self._state[provider] = _ProviderFaults(config)

    def get(self, provider: str) -> FaultConfig | None:
        with self._lock:
            state = self._state.get(provider)
            return state.config if state else None

    def snapshot(self) -> dict[str, dict[str, Any] | None]:
        with self._lock:
            return {p: (s.config.to_dict() if (s := self._state.get(p)) else None) for p in self.providers}

    def restart(self) -> None:
        """Re-seed every provider's generator and counter, as if its settings were just applied."""
        with self._lock:
            self._state = {p: _ProviderFaults(s.config) for p, s in self._state.items()}

    def decide(self, provider: str) -> Decision:
        with self._lock:
            state = self._state.get(provider)
            return state.decide() if state else PASS
