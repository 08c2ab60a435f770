"""The collector settings of a process that plans and sends in bulk (clarion.base.runtime)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from clarion.base.runtime import YOUNG_THRESHOLD, for_bulk_work


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_young_generation_is_collected_less_often_and_the_older_ones_as_before(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    for_bulk_work()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    for_bulk_work()  # a second launch in the same process changes nothing
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


def test_a_collector_set_by_the_operator_is_left_alone(thresholds: None) -> None:
    gc.set_threshold(0, 10, 10)  # automatic collection off on purpose
    for_bulk_work()
    assert gc.get_threshold() == (0, 10, 10)
    gc.set_threshold(200_000, 5, 5)  # already collecting less often
    for_bulk_work()
    assert gc.get_threshold() == (200_000, 5, 5)


def test_at_exit_what_exists_is_left_out_of_the_last_collection() -> None:
    from clarion.base.runtime import before_exit

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector could free it

    gc.disable()  # no automatic pass may free the cycle before the test looks
    try:
        gc.collect()
        Node()
        frozen = gc.get_freeze_count()
        before_exit()
        assert gc.get_freeze_count() > frozen
        assert gc.collect() == 0  # the unreachable cycle made before is not walked any more
        gc.unfreeze()
        assert gc.collect() >= 1  # unfrozen, it is found and freed: nothing else was changed
    finally:
        gc.unfreeze()
        gc.enable()
