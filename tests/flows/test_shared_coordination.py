"""The Redis coordination's pieces the sharded launch depends on, against a real Redis: two coordination
objects stand for two worker processes (they share only the Redis server)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

from clarion.engine.shared import LEASE_REFRESH, RedisCoordination


def _pair(redis_url: str) -> tuple[RedisCoordination, RedisCoordination, str]:
    run_id = f"shared-{uuid.uuid4().hex[:8]}"
    return (
        RedisCoordination(redis_url, launch=run_id),
        RedisCoordination(redis_url, launch=run_id),
        run_id,
    )


def test_a_finished_shard_is_not_read_as_dead(redis_url: str) -> None:
    # The launch watches a shard's lease until Prefect records the shard's end, which can come seconds
    # after the shard's work: a lease gone in between was read as a death and the shard started again.
    shard, launch, run_id = _pair(redis_url)
    done = shard.lease(run_id, "wave-0")
    assert launch.alive(run_id, "wave-0")
    done.set()
    time.sleep(LEASE_REFRESH + 0.5)  # the refresher has seen `done` and written its last word
    assert launch.alive(run_id, "wave-0"), "a finished shard's lease vanished before its flow run ended"


def test_the_opening_waits_for_a_shard_that_starts_late(redis_url: str) -> None:
    # Three opening batches on different workers; one is ready 3 s after the others (its worker was slow
    # to start the process): nobody sends before it is ready, and all open at one instant.
    launch, _, run_id = _pair(redis_url)
    launch.open_gate(run_id, parties=3)
    opened: list[float] = []

    def batch(delay: float) -> None:
        worker = RedisCoordination(redis_url, launch=run_id)
        time.sleep(delay)
        worker.gate(run_id, opening=True).open()
        opened.append(worker.now())

    threads = [threading.Thread(target=batch, args=(d,)) for d in (0.0, 0.2, 3.0)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(opened) == 3
    assert time.monotonic() - started >= 3.0, "the early batches did not wait for the late one"
    assert max(opened) - min(opened) < 0.5, f"opening spread {max(opened) - min(opened):.2f} s"


def test_pacing_spreads_the_shards_sends_through_each_second(redis_url: str) -> None:
    # Two workers, two send threads each, one text per request at 100/s across all of them. A moving window
    # alone admits a second's worth at its start: sends that then leave a little late bunch at the provider
    # over the limit (230 in a 1-s window at 200/s, measured). Each request has its own slot instead.
    from clarion.channels.base import Pacing

    first, second, run_id = _pair(redis_url)
    pacing = Pacing(messages_per_second=100)
    times: list[float] = []
    lock = threading.Lock()

    def send(coordination: RedisCoordination, count: int) -> None:
        for _ in range(count):
            coordination.pace(run_id, "sms", pacing, 1)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(c, 75)) for c in (first, first, second, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times.sort()

    assert len(times) == 300
    assert _busiest(times, 1.0) <= 100 + 5, "more than the rate in one second"
    quarter = _busiest(times, 0.25)
    assert quarter <= 40, f"{quarter} sends in a quarter second: a burst, not a pace"
    assert 300 / (times[-1] - times[0]) >= 90, "the pace fell well below the rate"


SENDER = """
import sys, threading, time
from clarion.channels.base import Pacing
from clarion.engine.shared import RedisCoordination

url, run_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
coordination = RedisCoordination(url, launch=run_id)
pacing = Pacing(messages_per_second=100)
stamps = []

def send():
    for _ in range(count):
        coordination.pace(run_id, "sms", pacing, 1)
        stamps.append(time.time())

threads = [threading.Thread(target=send) for _ in range(8)]
print("sending", flush=True)
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("\\n".join(map(repr, stamps)))
"""


def test_a_stalled_machine_does_not_send_its_missed_slots_at_once(redis_url: str) -> None:
    # Two worker processes, eight send threads each, 100/s across them. Mid-run both are stopped for 0.3 s
    # (SIGSTOP: a machine too busy to schedule them). Each thread slept toward a slot that passed meanwhile;
    # sent on waking, the sixteen left within a few ms, a burst at the provider (227 in a 1-s window at
    # 200/s on four workers, measured). A thread woken too late takes a new slot instead.
    # The senders' own stamps are read: on a loaded machine (CI's other tests beside this one) a process
    # descheduled for tens of ms stamps several sends at once, 18 and 21 seen with the code right. Sending
    # the missed slots at once gives 26 in every trial, so the best of up to three trials is what counts.
    trials = []
    for _ in range(3):
        trials.append(_busiest(_stalled_run(redis_url), 0.1))
        if trials[-1] <= 17:
            break
    # 10 a tenth of a second at the rate; 12 measured on a quiet machine, with the tolerance (LATE); 26 in
    # each trial when the missed slots were sent on waking
    assert min(trials) <= 17, f"{trials} sends in a tenth of a second at 100/s: the missed slots went at once"


def _stalled_run(redis_url: str) -> list[float]:
    """The send instants of two paced worker processes stopped together for 0.3 s early in their run."""
    import os
    import signal
    import subprocess
    import sys

    run_id = f"stall-{uuid.uuid4().hex[:8]}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, redis_url, run_id, "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "sending\n"
    time.sleep(0.5)  # 4 s of sending in all: the stall comes early in it
    for worker in workers:
        os.kill(worker.pid, signal.SIGSTOP)
    time.sleep(0.3)
    for worker in workers:
        os.kill(worker.pid, signal.SIGCONT)
    answers = [worker.communicate(timeout=60) for worker in workers]
    times = sorted(float(line) for out, _ in answers for line in out.split())
    # a sender that failed says why (one CI run under load 5-9 had 200 of 400, with nothing to tell why)
    assert len(times) == 400, "\n".join(errors[-2000:] for _, errors in answers)
    return times


def _busiest(times: list[float], width: float) -> int:
    """The most of the sorted instants `times` in any span `width` seconds long."""
    j, most = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        most = max(most, i - j + 1)
    return most


def test_every_shard_that_sends_a_channel_is_waited_for_at_the_opening() -> None:
    # The plan makes one batch per channel an opening batch; dealt to shards, only the shard that got it
    # held the opening back, so a shard whose process started late could begin after the others. Each
    # shard's first batch of each channel now opens with the others, and comes first in its shard so that
    # it has a thread to wait in.
    from clarion.engine.plan import Batch
    from clarion.flows.shard import deal

    posts = [Batch("r", "x", i, i, i, -1, 1, opening=True) for i in range(2)]
    sms = [Batch("r", "sms", n, n * 10, n * 10 + 9, n * 100, 10, opening=n == 0) for n in range(9)]
    email = [Batch("r", "email", n, n * 10, n * 10 + 9, n * 100, 10, opening=n == 0) for n in range(3)]
    batches = [*posts, sms[0], email[0], *email[1:], *sms[1:]]
    shards = deal(batches, 4, threads=8)
    assert sorted((b.channel, b.number) for s in shards for b in s) == sorted(
        (b.channel, b.number) for b in batches
    ), "a batch was lost or dealt twice"
    assert [b for b in posts if b not in shards[0] + shards[1]] == []
    for shard in shards:
        openings = [b for b in shard if b.opening]
        assert shard[: len(openings)] == openings, "an opening batch waits behind another batch"
        channels = {b.channel for b in shard}
        assert channels <= {b.channel for b in openings if b.channel != "x"} | {"x"}
    assert len(deal(sms, 2, threads=1)[0]) == 5  # one opening a thread at most: the rest wait their turn
    assert [b.opening for b in deal(sms, 2, threads=1)[0]] == [True, False, False, False, False]


def test_a_pace_slower_than_one_a_second_holds_across_workers(redis_url: str) -> None:
    # A post every two seconds (X's pace is often below 1/s): the moving window was int(0.5) = 0 messages a
    # second, which admits nothing, and the sender waited on it for ever, its claimed posts in flight.
    from clarion.channels.base import Pacing

    first, second, run_id = _pair(redis_url)
    pacing = Pacing(messages_per_second=0.5)
    times: list[float] = []

    def send() -> None:
        for coordination in (first, second, first):
            coordination.pace(run_id, "x", pacing, 1)
            times.append(time.monotonic())

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(30)
    assert not sender.is_alive(), "the pace never let a post go"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1.9, f"posts {gaps} s apart at 0.5/s across two workers"


def test_a_paces_window_never_lets_more_through_than_its_rate() -> None:
    # Whole messages over whole seconds: 1.5/s was capped at int(1.5) = 1/s before
    from clarion.engine.shared import window

    for rate, messages, seconds in [(200, 200, 1), (1.5, 3, 2), (0.5, 1, 2), (0.3, 3, 10), (0.01, 1, 100)]:
        item = window(rate)
        assert (item.amount, item.multiples) == (messages, seconds), rate
    for rate in (0.7, 2.7, 33.3, 199.9, 1 / 7):
        item = window(rate)
        assert 0.9 * rate <= item.amount / item.multiples <= rate, rate


def test_a_shards_lease_outlives_a_short_redis_outage(redis_url: str) -> None:
    # The lease's refresher died at its first Redis error: after a blip of a second or two the shard, still
    # sending, lost its lease for good, and the launch started it again (what the first had in flight
    # listed uncertain, its answers lost). It now tries again at the next refresh.
    from urllib.parse import urlsplit

    from clarion.engine.shared import LEASE_TTL
    from tests.conftest import Forwarder

    relay = Forwarder(redis_url)
    shard = RedisCoordination(relay.url, launch="lease-blip")
    launch = RedisCoordination(redis_url, launch="lease-blip")
    done = shard.lease("lease-blip", "wave-0")
    relay.cut()
    time.sleep(LEASE_REFRESH * 2)  # two refreshes fail
    back = Forwarder(redis_url, port=urlsplit(relay.url).port or 0)
    try:
        time.sleep(LEASE_TTL + LEASE_REFRESH)  # the lease set before the outage has expired by now
        assert launch.alive("lease-blip", "wave-0"), "a shard lost its lease for good to a 3-s outage"
    finally:
        done.set()
        back.cut()


def test_a_resumed_launch_tries_its_child_runs_stopped_channels_again(redis_url: str) -> None:
    # The breaker's keys of a launch's child runs (a kit's, a rollout's, a Thompson wave's) outlived a
    # resume for a day: the resumed launch's shards found those channels stopped at once, and sent none.
    from clarion.engine.coordination import STOP_AFTER

    launch, _, run_id = _pair(redis_url)
    children = [f"{run_id}-kit-volunteers", f"{run_id}-rollout", f"{run_id}-wave-2"]
    for run in [run_id, *children]:
        for _ in range(STOP_AFTER):
            launch.chunk_done(run, "email", exhausted=True, why="SendGrid kept failing")
        assert launch.stopped(run, "email") is not None
    other = f"{run_id}x"  # another run whose id starts the same way is not this launch's
    for _ in range(STOP_AFTER):
        launch.chunk_done(other, "email", exhausted=True, why="SendGrid kept failing")
    RedisCoordination(redis_url, launch=run_id).restart(run_id)
    assert [launch.stopped(run, "email") for run in [run_id, *children]] == [None] * 4
    assert launch.stopped(other, "email") is not None


def test_a_stop_asked_while_redis_is_away_reaches_the_shards_when_it_is_back(redis_url: str) -> None:
    # Ctrl-C on a sharded launch writes the stop request to Redis once: written in a blip, it was lost, and
    # the shards sent their whole wave while the launch gave up waiting for them.
    from urllib.parse import urlsplit

    from tests.conftest import Forwarder

    relay = Forwarder(redis_url)
    run_id = f"stop-blip-{uuid.uuid4().hex[:6]}"
    launch = RedisCoordination(relay.url, launch=run_id)
    shard = RedisCoordination(redis_url, launch=run_id)
    relay.cut()
    launch.request_stop("SIGINT received")
    time.sleep(1.0)
    back = Forwarder(redis_url, port=urlsplit(relay.url).port or 0)
    try:
        deadline = time.monotonic() + 10
        while shard.stop_requested() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert shard.stop_requested() == "SIGINT received"
    finally:
        back.cut()
