"""Clarion processes writing one SQLite ledger take turns on a lock file beside it (WriterTurns): a writer
goes in as soon as the last one is done, instead of sleeping in SQLite's busy handler. The lock only
speeds up the queue SQLite keeps anyway: it is let go whatever the transaction did, and a holder that
never lets go delays the others by the busy timeout, never stops them."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarion.ledger import Ledger, RunExists, database


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def _other_process_holds(path: Path) -> int:
    """The turn, taken as another process would: a lock belongs to an open file, so a second one conflicts."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_writer_waits_for_the_turn_and_goes_in_once_it_is_let_go(ledger: Ledger, tmp_path: Path) -> None:
    held = _other_process_holds(tmp_path / "ledger.db-writer")
    done: list[float] = []

    def write() -> None:
        ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")
        done.append(time.monotonic())

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    assert not done and ledger.get_run("r") is None  # still waiting its turn
    released = time.monotonic()
    fcntl.flock(held, fcntl.LOCK_UN)
    writer.join(10)
    os.close(held)
    assert done and ledger.get_run("r") is not None
    # it noticed the release (it looks every millisecond), not the end of the busy timeout (30 s)
    assert done[0] - released < 2


def test_the_turn_is_let_go_when_a_write_fails(ledger: Ledger, tmp_path: Path) -> None:
    ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")
    with pytest.raises(RunExists):
        ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")  # exists already
    fd = _other_process_holds(tmp_path / "ledger.db-writer")  # raises BlockingIOError if still held
    os.close(fd)


def test_a_turn_never_let_go_delays_writers_by_the_busy_timeout_and_stops_none(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    held = _other_process_holds(tmp_path / "ledger.db-writer")  # a stuck process that holds no SQLite lock
    try:
        started = time.monotonic()
        ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")
        assert 0.5 <= time.monotonic() - started < 5
        assert ledger.get_run("r") is not None
    finally:
        os.close(held)
