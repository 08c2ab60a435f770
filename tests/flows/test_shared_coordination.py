"""The Redis coordination's pieces the sharded launch depends on, against a real Redis: two coordination
objects stand for two worker processes (they share only the Redis server)."""

from __future__ import annotations

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
