"""Pacing and retry timing: limits hold across threads, waits honour what the provider asked."""

from __future__ import annotations

import threading
import time

from clarion.engine.coordination import TokenBucket
from clarion.engine.retry import backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_spaces_requests_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(21):
        bucket.take()
    assert abs(clock.now - 2.0) < 1e-9  # the first is free, the next 20 take 0.1 s each


def test_big_take_waits_proportionally() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=1000, clock=clock, sleep=clock.sleep)
    bucket.take(1000)  # the burst
    bucket.take(1000)  # a full second more
    assert abs(clock.now - 1.0) < 1e-9


def test_bucket_holds_across_threads_in_real_time() -> None:
    bucket = TokenBucket(200, burst=1)
    start = time.monotonic()

    def worker() -> None:
        for _ in range(25):
            bucket.take()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert elapsed >= 99 / 200 * 0.95  # 100 takes at 200/s: about half a second, never much faster


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    assert all(0 <= backoff(1, None) <= 0.5 for _ in range(100))
    assert all(0 <= backoff(10, None, cap=30) <= 30 for _ in range(100))
    assert all(backoff(1, 7.0) >= 7.0 for _ in range(100))


def test_a_paced_channel_claims_what_its_pace_sends_in_a_quarter_second() -> None:
    from clarion.channels.base import Pacing
    from clarion.engine.send import PER_MESSAGE_CLAIM, per_message_claim

    assert per_message_claim(Pacing(), 8) == PER_MESSAGE_CLAIM  # unpaced: as many as a claim takes
    assert per_message_claim(Pacing(messages_per_second=200), 8) == 6  # 25 a second for each of 8 threads
    assert per_message_claim(Pacing(messages_per_second=200, requests_per_second=40), 8) == 1  # the slower
    assert per_message_claim(Pacing(messages_per_second=1), 8) == 1  # never none
    assert per_message_claim(Pacing(messages_per_second=100_000), 8) == PER_MESSAGE_CLAIM  # never more
