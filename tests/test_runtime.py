"""The collector settings of a process that plans and sends in bulk (clarion.base.runtime)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from clarion.base.runtime import YOUNG_THRESHOLD, bulk_work


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_inside_bulk_work_the_young_generation_is_collected_less_often_and_as_before_after(
    thresholds: None,
) -> None:
    gc.set_threshold(700, 10, 10)
    with bulk_work():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        with bulk_work():  # a scan inside a launch's sending: nothing changes
            assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_threads_leaving_in_any_order_restore_the_threshold_once_the_last_has_left(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    first, second = bulk_work(), bulk_work()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the thread that came first leaves first
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)  # the other is still sending
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_an_error_inside_still_restores_the_threshold(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), bulk_work():
        raise RuntimeError("a planning error")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_collector_set_by_the_operator_is_left_alone(thresholds: None) -> None:
    gc.set_threshold(0, 10, 10)  # automatic collection off on purpose
    with bulk_work():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)
    gc.set_threshold(200_000, 5, 5)  # already collecting less often
    with bulk_work():
        assert gc.get_threshold() == (200_000, 5, 5)
    assert gc.get_threshold() == (200_000, 5, 5)


def test_cyclic_garbage_made_while_waiting_is_collected_as_usual(thresholds: None) -> None:
    """What a sharded launch does while it watches its shards (reads their flow runs, each leaving a
    reference cycle) is collected at CPython's pace once the bulk work is over, not 70 times less often."""
    gc.set_threshold(700, 10, 10)
    with bulk_work():
        pass  # planned and sent
    gc.collect()

    class Read:
        def __init__(self) -> None:
            self.me = self
            self.payload = bytearray(10_000)

    alive = weakref.WeakSet[Read]()
    for _ in range(2_000):
        read = Read()
        alive.add(read)
        del read
    assert len(alive) < 1_000  # at 50,000 none of the 2,000 would have been freed yet


class Node:
    """A reference cycle: only the collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def manual_collection() -> Iterator[None]:
    """No automatic pass may free a cycle before the test looks; the heap is unfrozen after."""
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


def test_at_exit_what_exists_is_left_out_of_the_last_collection(manual_collection: None) -> None:
    from clarion.base.runtime import before_exit

    gc.collect()
    node = weakref.ref(Node())
    frozen = gc.get_freeze_count()
    before_exit()
    assert gc.get_freeze_count() > frozen
    # the cycle made before is not walked any more (asked by name: other threads of the test process,
    # Prefect's among them, may leave garbage of their own for the same pass, as happened in CI once)
    gc.collect()
    assert node() is not None
    gc.unfreeze()
    gc.collect()
    assert node() is None  # unfrozen, it is found and freed: nothing else was changed


def test_during_a_run_start_up_s_objects_are_left_out_and_collected_again_after(
    manual_collection: None,
) -> None:
    """`clarion run` leaves what it holds before the flow starts out of the collector's passes while the
    run goes on, and puts it back after: a cycle start-up left behind is still freed, only later, and a
    cycle the run makes is freed meanwhile as ever."""
    from clarion.base.runtime import startup_left_out

    gc.collect()
    before = weakref.ref(Node())  # start-up's garbage, made before the run
    with pytest.raises(RuntimeError), startup_left_out():
        made = weakref.ref(Node())  # the run's own
        gc.collect()
        assert made() is None  # freed while the run goes on
        assert before() is not None  # left out of the passes
        raise RuntimeError("the run failed")  # the heap is put back all the same
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None  # put back: freed at the next pass
