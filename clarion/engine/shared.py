"""The coordination of a launch whose send shards run on several workers: shared through Redis.

Same interface as `LocalCoordination` (clarion/engine/coordination.py), so the send path does not know
which it has. Keys live under `clarion:<run id>:` and expire a day after their last use.

- **Opening instant.** The launch arms a run's opening with the number of opening batches; each opening
  batch, ready to send, registers (`SADD ready`), then waits for the instant. The launcher (a thread of the
  launch flow) waits until all are ready or OPENING_TIMEOUT passed (longer than the in-process gate's:
  each shard starts a process on a worker first), then sets one instant a quarter second
  ahead on Redis' clock (`SET opening NX`: a restarted launcher re-reads the same one); every shard sleeps
  until it, correcting for its own clock's offset from Redis'. Later batches wait for the instant too.
- **Breaker.** Chunks in a row with exhausted retries are counted per run and channel (`INCR`, reset by
  any chunk that got through); STOP_AFTER of them set the channel's stop reason, which every shard reads
  before each chunk.
- **Pacing.** Two parts, per run and channel, shared by every shard. Spacing: each request reserves the
  next slot on one schedule (a small Lua script, atomic, on Redis' clock: the slot after the last one
  reserved, `messages / rate` seconds later), and waits for it, so the shards' requests leave evenly
  through the second rather than a whole second's worth at its start (a moving window alone admits a
  burst, and bursts that leave a little late bunch at the provider over the limit). A thread woken more
  than LATE after its slot (the machine stalled) takes a new one rather than sending at once with every
  other thread that slept through its slot. The cap: the `limits` library's moving window on Redis, one
  for messages and one for requests, which a request that does not fit waits for; the spacing keeps it
  from filling in practice, the window keeps the limit when a slot is taken late. A window counts whole
  messages over whole seconds (`window`: 0.5/s is 1 in 2 s).
- **Liveness.** Each shard refreshes a lease every LEASE_REFRESH seconds while it runs (a refresh that
  fails is tried again at the next); a shard whose lease expired died (kill -9, a machine gone), and the
  launch runs its batches again (the ledger's claims make that safe: what the dead shard had in flight is
  listed uncertain, never resent).
- **Stop.** An interrupted launch sets a stop flag; every shard stops before its next chunk. A stop
  request (`clarion run` got SIGINT or SIGTERM) is one key per launch, `clarion:<launch>:stop`, read by
  every shard between chunks (at most every STOP_POLL seconds), written again until Redis takes it; the
  launch's chunks in flight are one counter there, so the launcher knows when the shards have settled
  what they had sent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any

from clarion.base.errors import ClarionError
from clarion.campaign.kits import kit_run_id
from clarion.channels.base import Pacing
from clarion.engine.coordination import INTERRUPTED, STOP_AFTER, Coordination, Gate
from clarion.engine.schedule import bandit_run_id, rollout_run_id

log = logging.getLogger("clarion.engine")

TTL = 24 * 3600  # seconds a run's keys outlive their last use
LEAD = 0.25  # seconds between the moment every opening batch is ready and the opening instant
#: Reserves a request's slot on one schedule: KEYS[1] holds when the next slot is free (Redis' clock);
#: ARGV[1] is this request's share of a second (its messages / the rate), ARGV[2] the key's lifetime.
#: Returns the seconds to wait for the slot (0 when free now).
_RESERVE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < t then free = t end
redis.call('SET', KEYS[1], string.format('%.6f', free + tonumber(ARGV[1])), 'EX', tonumber(ARGV[2]))
return string.format('%.6f', free - t)
"""
LEASE_TTL = 6.0  # a shard silent for this long is dead
LEASE_REFRESH = 1.5
LEASE_DONE = 600.0  # seconds a finished shard's lease stays, saying "done", while Prefect records its end
OPENING_TIMEOUT = 60.0  # seconds the opening waits for every shard's opening batch (each starts a process)
STOP_POLL = 0.1  # seconds a shard may go without re-reading its launch's stop request
STOP_TELLING = 60.0  # seconds a launch tries to write its stop request while Redis refuses
LATE = 0.02  # seconds a request may leave after its pacing slot; later, it takes the next free slot
WINDOW_SECONDS = 60  # the longest window a pace is counted over whole (`window`)

# A chunk enters only while no stop was requested: checked and counted in one step.
_ENTER = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('incr', KEYS[2])
redis.call('expire', KEYS[2], ARGV[1])
return 1
"""


def connect(url: str) -> Any:
    """A Redis client for `url`, checked; ClarionError saying what to do when it cannot be reached."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise ClarionError(
            f"cannot reach Redis at CLARION_REDIS_URL ({_shown(url)}): {type(exc).__name__}: {exc}; "
            "start Redis or fix the URL (e.g. redis://127.0.0.1:6379/0)"
        ) from None
    return client


def window(rate: float) -> Any:
    """The moving window that caps `rate` a second: whole messages over whole seconds, never more than the
    rate (200/s: 200 in 1 s; 1.5/s: 3 in 2 s; 0.5/s: 1 in 2 s; 0.01/s: 1 in 100 s). A window of
    int(rate) a second admitted nothing below 1/s, and a sender waited on it for ever."""
    from limits import RateLimitItemPerSecond

    best = (0.0, 0, 1)  # (rate kept, messages, seconds)
    for seconds in range(1, WINDOW_SECONDS + 1):
        amount = math.floor(rate * seconds + 1e-9)
        if amount and amount / seconds > best[0]:
            best = (amount / seconds, amount, seconds)
            if amount == rate * seconds:
                break  # exact
    if not best[1]:  # slower than one a WINDOW_SECONDS: one in as many seconds as that takes
        best = (rate, 1, math.ceil(1 / rate - 1e-9))
    return RateLimitItemPerSecond(best[1], best[2])


def _shown(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


class _SharedGate(Gate):
    def __init__(self, coordination: RedisCoordination, run_id: str, opening: bool) -> None:
        self._c, self._run_id, self._opening, self._done = coordination, run_id, opening, False

    def open(self) -> None:
        if self._done:
            return
        self._done = True
        c = self._c
        if not c.redis.exists(c.key(self._run_id, "armed")):
            return  # no opening in progress: send now
        if self._opening:
            c.redis.sadd(c.key(self._run_id, "ready"), f"{c.instance}:{threading.get_ident()}")
        instant = c.wait_instant(self._run_id, OPENING_TIMEOUT * (1 if self._opening else 2))
        if instant is not None:
            c.sleep_until(instant)

    def leave(self) -> None:
        if self._opening:
            self.open()


class RedisCoordination(Coordination):
    """The coordination of one launch, shared with its shards through Redis (see the module docstring)."""

    def __init__(self, url: str, *, launch: str, client: Any = None) -> None:
        self.url = url
        self.redis = client if client is not None else connect(url)
        self.launch = launch  # the launch's run id: its stop request and in-flight count
        self.instance = f"{time.time_ns():x}"
        self._offset = self._clock_offset()
        self._limiter: Any = None
        self._reserve: Any = None
        self._lock = threading.Lock()
        self._stop_key, self._flight_key = self.key(launch, "stop"), self.key(launch, "in_flight")
        self._why: str | None = None
        self._checked = 0.0
        self._enter = self.redis.register_script(_ENTER)

    def key(self, run_id: str, *parts: str) -> str:
        return ":".join(("clarion", run_id, *parts))

    def _touch(self, *keys: str) -> None:
        pipe = self.redis.pipeline()
        for key in keys:
            pipe.expire(key, TTL)
        pipe.execute()

    # -- time ---------------------------------------------------------------------------------------

    def _clock_offset(self) -> float:
        """Redis' clock minus this host's, from the quickest of a few round trips."""
        best: tuple[float, float] | None = None
        for _ in range(5):
            before = time.time()
            seconds, micros = self.redis.time()
            after = time.time()
            trip = after - before
            if best is None or trip < best[0]:
                best = (trip, seconds + micros / 1e6 - (before + after) / 2)
        assert best is not None
        return best[1]

    def now(self) -> float:
        """Now on Redis' clock (the clock every shard agrees on)."""
        return time.time() + self._offset

    def sleep_until(self, instant: float) -> None:
        delay = instant - self.now()
        if delay > 0:
            time.sleep(delay)

    # -- the breaker --------------------------------------------------------------------------------

    def stopped(self, run_id: str, channel: str) -> str | None:
        value = self.redis.get(self.key(run_id, channel, "stopped"))
        if value is not None:
            return str(value.decode())
        if self.redis.exists(self.key(run_id, "interrupt")):
            return INTERRUPTED
        return None

    def chunk_done(self, run_id: str, channel: str, *, exhausted: bool, why: str) -> None:
        count_key = self.key(run_id, channel, "exhausted")
        if not exhausted:
            self.redis.set(count_key, 0, ex=TTL)
            return
        count = int(self.redis.incr(count_key))
        self._touch(count_key)
        if count >= STOP_AFTER:
            self.redis.set(
                self.key(run_id, channel, "stopped"), f"{why} ({count} chunks in a row)", nx=True, ex=TTL
            )

    def interrupt(self, run_id: str) -> None:
        """Every shard of the run stops before its next chunk."""
        self.redis.set(self.key(run_id, "interrupt"), "1", ex=TTL)

    def restart(self, run_id: str) -> None:
        """A new launch of the run (a resume) tries every channel again, with no stop requested: its own
        and its child runs' (a rollout's, a Thompson rollout's waves', the share kits'), which it sends
        too."""
        runs = (run_id, rollout_run_id(run_id), bandit_run_id(run_id, "*"), kit_run_id(run_id, "*"))
        keys = [
            key
            for run in runs
            for suffix in ("stopped", "exhausted")
            for key in self.redis.scan_iter(match=self.key(run, "*", suffix), count=1000)
        ]
        self.redis.delete(*keys, self.key(run_id, "interrupt"), self._stop_key, self._flight_key)

    # -- the opening --------------------------------------------------------------------------------

    def open_gate(self, run_id: str, parties: int) -> None:
        """Arm the opening, and release it (in a thread) once `parties` opening batches are ready."""
        armed, ready, opening = (self.key(run_id, k) for k in ("armed", "ready", "opening"))
        self.redis.delete(ready, opening)
        self.redis.set(armed, parties, ex=TTL)
        threading.Thread(target=self._release, args=(run_id, parties), daemon=True).start()

    def _release(self, run_id: str, parties: int) -> None:
        deadline = time.monotonic() + OPENING_TIMEOUT
        ready = self.key(run_id, "ready")
        while time.monotonic() < deadline and int(self.redis.scard(ready)) < parties:
            time.sleep(0.01)
        if int(self.redis.scard(ready)) < parties:
            log.warning("run %s: an opening batch was late; the others went ahead", run_id)
        self.redis.set(self.key(run_id, "opening"), repr(self.now() + LEAD), nx=True, ex=TTL)

    def wait_instant(self, run_id: str, timeout: float) -> float | None:
        """The opening instant once it is set (None when none comes within `timeout`)."""
        key = self.key(run_id, "opening")
        deadline = time.monotonic() + timeout
        while True:
            value = self.redis.get(key)
            if value is not None:
                return float(value)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)

    def gate(self, run_id: str, opening: bool) -> Gate:
        return _SharedGate(self, run_id, opening)

    def close_gate(self, run_id: str) -> None:
        self.redis.delete(self.key(run_id, "armed"), self.key(run_id, "ready"))

    # -- pacing -------------------------------------------------------------------------------------

    def _windows(self) -> Any:
        with self._lock:
            if self._limiter is None:
                from limits.storage import RedisStorage
                from limits.strategies import MovingWindowRateLimiter

                self._limiter = MovingWindowRateLimiter(RedisStorage(self.url, key_prefix="clarion-pacing"))
            return self._limiter

    def pace(self, run_id: str, channel: str, pacing: Pacing, messages: int) -> None:
        limiter = self._windows()
        if pacing.requests_per_second:
            self._space(run_id, channel, "r", 1 / pacing.requests_per_second)
            self._take(limiter, window(pacing.requests_per_second), (run_id, channel, "r"), 1)
        if pacing.messages_per_second:
            self._space(run_id, channel, "m", messages / pacing.messages_per_second)
            self._take(limiter, window(pacing.messages_per_second), (run_id, channel, "m"), messages)

    def _space(self, run_id: str, channel: str, kind: str, seconds: float) -> None:
        """Wait for this request's slot on the channel's shared schedule (`seconds` of it are its own)."""
        with self._lock:
            if self._reserve is None:
                self._reserve = self.redis.register_script(_RESERVE)
            reserve = self._reserve
        key = self.key(run_id, f"slot:{channel}:{kind}")
        while (wait := float(reserve(keys=[key], args=[seconds, TTL]))) > 0:
            due = time.monotonic() + wait
            time.sleep(wait)
            if time.monotonic() - due <= LATE:
                return
            # woken too late for the slot (the machine stalled): the threads that slept through theirs
            # would all send at once, a burst over the rate at the provider; a new slot instead

    @staticmethod
    def _take(limiter: Any, item: Any, ids: tuple[str, ...], cost: int) -> None:
        """Hit the moving window for `cost`, sleeping until it moves when it is full. A request carrying
        more messages than a whole window takes the window's worth at a time."""
        left = cost
        while left > 0:
            step = min(left, item.amount)
            while not limiter.hit(item, *ids, cost=step):
                reset = limiter.get_window_stats(item, *ids).reset_time
                time.sleep(min(max(reset - time.time(), 0.001), item.get_expiry()))
            left -= step

    # -- stopping -----------------------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        """Stop this process's sends at once, and every shard's through Redis. Called from a signal
        handler: the Redis write happens in a thread (the handler may have interrupted a Redis call of
        this same thread, holding the connection pool's lock)."""
        self._why = self._why or why

        def tell() -> None:  # again until Redis takes it (a blip), for STOP_TELLING seconds at most
            from redis import RedisError

            deadline = time.monotonic() + STOP_TELLING
            while True:
                try:
                    self.redis.set(self._stop_key, why, nx=True, ex=TTL)
                    return
                except RedisError as exc:
                    if time.monotonic() >= deadline:
                        what = type(exc).__name__
                        log.error("could not tell the shards to stop (%s): they send to their end", what)
                        return
                    time.sleep(0.25)

        threading.Thread(target=tell, daemon=True, name="clarion-stop").start()

    def stop_requested(self) -> str | None:
        if self._why is not None:
            return self._why  # a stop is never taken back within a launch
        now = time.monotonic()
        if now - self._checked < STOP_POLL:
            return None
        value = self.redis.get(self._stop_key)
        self._checked = now
        if value is not None:
            self._why = value.decode()
        return self._why

    def wait_for_stop(self, seconds: float) -> bool:
        deadline = time.monotonic() + max(seconds, 0.0)
        while True:
            if self.stop_requested() is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, STOP_POLL))

    def enter_request(self) -> bool:
        if self._why is not None:
            return False
        entered = bool(self._enter(keys=[self._stop_key, self._flight_key], args=[TTL]))
        if not entered:
            self.stop_requested()
        return entered

    def leave_request(self) -> None:
        self.redis.decr(self._flight_key)

    def settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        while int(self.redis.get(self._flight_key) or 0) > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # -- liveness -----------------------------------------------------------------------------------

    def lease(self, run_id: str, shard: str) -> threading.Event:
        """Keep this shard's lease fresh until the returned event is set (the shard is done). A finished
        shard's lease says so for LEASE_DONE seconds: its flow run is still Running until Prefect records
        the end, and a lease gone meanwhile would read as a death (and start the shard again)."""
        key = self.key(run_id, "lease", shard)
        done = threading.Event()

        def refresh() -> None:
            from redis import RedisError

            failing = False
            while not done.is_set():
                try:
                    self.redis.set(key, self.instance, px=int(LEASE_TTL * 1000))
                    failing = False
                except RedisError as exc:  # a blip: the lease lasts LEASE_TTL, the next refresh tries again
                    if not failing:
                        why = type(exc).__name__
                        log.warning("shard %s: its lease could not be refreshed (%s)", shard, why)
                    failing = True
                done.wait(LEASE_REFRESH)
            with contextlib.suppress(RedisError):  # else gone with the lease: the launch reads Prefect's end
                self.redis.set(key, "done", px=int(LEASE_DONE * 1000))

        self.redis.set(key, self.instance, px=int(LEASE_TTL * 1000))
        threading.Thread(target=refresh, daemon=True, name=f"lease-{shard}").start()
        return done

    def alive(self, run_id: str, shard: str) -> bool:
        return bool(self.redis.exists(self.key(run_id, "lease", shard)))


__all__ = ["RedisCoordination", "connect"]
