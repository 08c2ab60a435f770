"""Planning's rows written by a local send helper (clarion/engine/helpers.py, `HelperWriter`): while the
launch reads and plans its audience, a helper process writes the chunks of rows it hands out. The ledger
ends up exactly as when the launch writes them itself, and a chunk whose helper died, or whose write failed
there, is written by the launch: nothing is missing when sending begins."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.coordination import LocalCoordination
from clarion.engine.helpers import Helpers
from clarion.engine.plan import plan_run
from clarion.ledger import Ledger, PlannedSend
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign

pytestmark = pytest.mark.slow  # a helper process starts (an interpreter, imports): a second or two each


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    if request.param == "postgresql":  # the helper opens the same ledger from the URL it is handed
        monkeypatch.setenv("CLARION_DATABASE_URL", request.getfixturevalue("postgres_url"))
    store = Ledger.open(ClarionSettings().ledger_url())
    yield store
    store.close()


@pytest.fixture
def helpers(tmp_path: Path, ledger: Ledger, providers: Sandbox) -> Iterator[tuple[Helpers, Path]]:
    """One helper process for a campaign of 2,000 contacts (its adapters pointed at the sandbox)."""
    path = write_campaign(tmp_path, 2000)
    started = Helpers(LocalCoordination(), 1)
    started.start(path, "rows-warm", ledger.url.render_as_string(hide_password=False))
    try:
        yield started, path
    finally:
        started.close()


def _ready(helpers: Helpers, ledger: Ledger) -> None:
    """Hand the helper one chunk (a run of its own) and wait until it wrote it: it is taking rows."""
    ledger.create_run("rows-warm", campaign="flow-test", campaign_file="c.yaml", digest="d" * 64)
    writer = helpers.writer(ledger)
    writer.write("rows-warm", [(0, "warm-1", "a")], [])
    deadline = time.monotonic() + 60
    while not helpers.board.wrote.get("helper-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert helpers.board.wrote.get("helper-1") == 1, "the helper never wrote rows"
    writer.wait()


def _rows(ledger: Ledger, run_id: str) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    sends = {
        (s.channel, s.variant, s.contact_id, s.recipient, s.seq, s.batch, str(s.state), s.reason)
        for s in ledger.sends(run_id)
    }
    arms = set(ledger.assigned(run_id))
    return sends, arms


def test_rows_a_helper_wrote_are_those_the_launch_would_have_written(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    started, path = helpers
    _ready(started, ledger)
    loaded = load_campaign(path)
    writer = started.writer(ledger)
    writer.rows = 100  # many chunks, so that the helper takes some while the launch plans
    handed = plan_run(ledger, loaded, "rows-handed", writer=writer)
    in_place = plan_run(ledger, loaded, "rows-in-place")

    assert started.board.wrote.get("helper-1", 0) > 1, "the helper wrote none of the plan's rows"
    assert handed.batches == [replace(b, run_id="rows-handed") for b in in_place.batches]
    assert _rows(ledger, "rows-handed") == _rows(ledger, "rows-in-place")
    assert len(_rows(ledger, "rows-handed")[1]) == 2000


@pytest.mark.parametrize("how", ["killed", "failed"])
def test_a_chunk_whose_helper_died_or_failed_is_written_by_the_launch(
    helpers: tuple[Helpers, Path], ledger: Ledger, how: str
) -> None:
    started, _ = helpers
    _ready(started, ledger)
    before = dict(started.board.wrote)
    (pid,) = [p.pid for p in started._procs.values()]  # gone, so that nothing but the test takes rows
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while started.alive("helper-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    ledger.create_run("rows-lost", campaign="flow-test", campaign_file="c.yaml", digest="d" * 64)
    sends = [PlannedSend("email", "a", f"c-{i}", f"c-{i}", i, 0) for i in range(300)]
    writer = started.writer(ledger)
    writer.write("rows-lost", [(i, f"c-{i}", "a") for i in range(300)], sends)
    # the helper's side of taking a chunk, as the helper did before it died (or failed to write it)
    taken = started.board.take_rows("helper-1", 0)
    assert taken is not None and taken is not False
    if how == "failed":
        started.board.rows_written("helper-1", taken.number, "OperationalError: database is locked")
    writer.wait()

    assert {s.recipient for s in ledger.sends("rows-lost")} == {f"c-{i}" for i in range(300)}
    assert len(ledger.assigned("rows-lost")) == 300
    assert started.board.wrote == before, "a chunk no helper wrote was counted as written"
