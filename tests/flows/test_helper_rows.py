"""Planning with a local send helper (clarion/engine/helpers.py). Either the helper writes the chunks of
rows the launch hands out while it reads on (`HelperWriter`), or, for a new run, it plans the second half
of the contacts file itself while the launch plans the first (clarion.engine.plan, `_Split`).

Either way the ledger ends up as one pass by the launch alone leaves it (the second half's batches are
numbered higher), nothing is missing when sending begins whatever the helper did (died, failed, declined),
and a problem anywhere in the file is listed as one pass lists it."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clarion.base.errors import CampaignInvalid
from clarion.base.settings import ClarionSettings
from clarion.campaign.contacts import ContactsFile
from clarion.campaign.loader import campaign_digest, load_campaign
from clarion.engine import plan
from clarion.engine.coordination import LocalCoordination
from clarion.engine.helpers import Helpers
from clarion.engine.plan import Batch, Plan, plan_part, plan_run
from clarion.ledger import Ledger, PlannedSend, RunStatus
from clarion.messages.validate import validate
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
def helpers(
    tmp_path: Path, ledger: Ledger, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Helpers, Path]]:
    """One helper process for a campaign of 2,000 contacts (its adapters pointed at the sandbox), a file
    planned in halves here (at 100 KB, where a real launch waits for 1 MB)."""
    monkeypatch.setattr(plan, "HALVES_BYTES", 10_000)
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
    writer.parts = None  # rows handed, not a part of the file (tested below)
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


def test_chunks_waiting_for_a_helper_are_written_together(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    """A helper behind the launch (contact ids in no order make each row cost a page write) writes the
    chunks that waited while it wrote in one transaction, and answers for each: every row once, each chunk
    counted. One transaction's rows share their planned_at; chunk by chunk, each chunk had its own."""
    started, _ = helpers
    _ready(started, ledger)
    before = started.board.wrote.get("helper-1", 0)
    ledger.create_run("rows-merged", campaign="flow-test", campaign_file="c.yaml", digest="d" * 64)
    writer = started.writer(ledger)
    size, chunks = 5_000, 8
    for n in range(chunks):
        seqs = range(n * size, (n + 1) * size)
        ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, str(seq))) for seq in seqs]  # in no order, as UUIDs are
        sends = [
            PlannedSend("email", "a", cid, cid, seq, seq // 1000) for cid, seq in zip(ids, seqs, strict=True)
        ]
        writer.write("rows-merged", [(seq, cid, "a") for cid, seq in zip(ids, seqs, strict=True)], sends)
    writer.wait()

    written = list(ledger.sends("rows-merged"))
    assert len(written) == len({s.recipient for s in written}) == size * chunks
    assert len(ledger.assigned("rows-merged")) == size * chunks
    assert started.board.wrote.get("helper-1", 0) - before == 2 * size * chunks, (
        "not every chunk by the helper"
    )
    transactions = {s.planned_at for s in written}
    assert len(transactions) < chunks, f"{len(transactions)} transactions for {chunks} chunks"


def _same_plan(ledger: Ledger, split: Plan, one_pass: Plan) -> None:
    """The split run's rows and batches are the one-pass run's, its report counts the same, and every send
    planned is in one of its batches, once, within the batch's contacts."""
    assert _rows(ledger, split.run_id) == _rows(ledger, one_pass.run_id)
    assert len(_rows(ledger, split.run_id)[1]) == 2000
    assert split.batches == [replace(b, run_id=split.run_id) for b in one_pass.batches]
    assert split.report is not None and one_pass.report is not None
    for name in ("contacts", "arms", "reachable", "consented", "withheld"):
        assert getattr(split.report, name) == getattr(one_pass.report, name), name
    batches: dict[tuple[str, int], Batch] = {(b.channel, b.number): b for b in split.batches}
    assert len(batches) == len(split.batches)
    found: dict[tuple[str, int], int] = {}
    for send in ledger.sends(split.run_id):
        if send.batch < 0 or send.contact_id is None:
            continue
        batch = batches[(send.channel, send.batch)]
        assert batch.seq_start <= send.seq <= batch.seq_end
        found[(send.channel, send.batch)] = found.get((send.channel, send.batch), 0) + 1
    assert found == {key: b.size for key, b in batches.items() if b.offset >= 0}


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)  # SQLite: one writer at a time
def test_a_helper_plans_the_second_half_of_a_new_runs_file_as_one_pass_would(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    started, path = helpers
    _ready(started, ledger)
    loaded = load_campaign(path)
    before = started.board.wrote.get("helper-1", 0)
    split = plan_run(ledger, loaded, "split", writer=started.writer(ledger))
    one_pass = plan_run(ledger, loaded, "one-pass")

    assert started.board.wrote.get("helper-1", 0) > before + 1000, "the helper planned no part"
    _same_plan(ledger, split, one_pass)
    # a resume plans again in one pass, and finds the same batches (what the ledger holds is sent)
    assert plan_run(ledger, loaded, "split").batches == split.batches


@pytest.mark.parametrize("ledger", ["sqlite"], indirect=True)
def test_on_sqlite_a_helper_writes_the_launchs_rows_instead_of_planning_a_half(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    """SQLite lets one writer in at a time: a helper planning half the file would write beside the launch,
    and each would wait for the other (measured: no faster). The launch reads it all, the helper writes."""
    started, path = helpers
    _ready(started, ledger)
    before = started.board.wrote.get("helper-1", 0)
    writer = started.writer(ledger)
    writer.rows = 100
    handed = plan_run(ledger, load_campaign(path), "sqlite-rows", writer=writer)

    run = ledger.get_run("sqlite-rows")
    assert run is not None and run.options[plan.HALVES] is False
    assert started.board.wrote.get("helper-1", 0) > before + 100  # chunks of the launch's rows
    numbers = sorted(b.number for b in handed.batches if b.channel == "sms")
    assert numbers == list(range(len(numbers)))


def test_a_run_planned_before_halves_were_numbered_apart_is_resumed_as_it_was(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    _, path = helpers
    loaded = load_campaign(path)
    ledger.create_run(
        "older", campaign="flow-test", campaign_file=str(path), digest=campaign_digest(loaded), options={}
    )
    numbers = sorted(b.number for b in plan_run(ledger, loaded, "older").batches if b.channel == "email")
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)  # SQLite: one writer at a time
def test_a_helper_that_dies_while_it_plans_leaves_its_part_to_the_launch(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    """The helper took the part, wrote some or all of it, and died without answering: the launch plans
    the part itself, with the rows and batch numbers the helper was writing (its inserts skip those)."""
    started, path = helpers
    (pid,) = [p.pid for p in started._procs.values()]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while started.alive("helper-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    loaded = load_campaign(path)
    other = Ledger(ledger.url)  # the dead helper's own connection
    took: list[object] = []

    def dead_helper() -> None:  # its side until it died: took the part, planned it, never answered
        part = started.board.take_part("helper-1", 30)
        took.append(part)
        if part is not None and part is not False:
            plan_part(other, loaded, part)

    thread = threading.Thread(target=dead_helper)
    thread.start()
    split = plan_run(ledger, loaded, "split-died", writer=started.writer(ledger))
    thread.join(60)
    other.close()
    one_pass = plan_run(ledger, loaded, "one-pass-died")

    assert took and took[0] not in (None, False), "the part was not taken before the launch reached it"
    _same_plan(ledger, split, one_pass)


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)  # SQLite: one writer at a time
@pytest.mark.parametrize("where", ["both halves", "across the halves only"])
def test_a_problem_anywhere_in_a_split_file_is_listed_as_one_pass_lists_it(
    helpers: tuple[Helpers, Path], ledger: Ledger, where: str
) -> None:
    """A bad line in each half, or only an id of the first half again in the second (each half alone is
    fine: the helper plans its part, and the ledger's one assignment per contact tells)."""
    started, path = helpers
    contacts = path.parent / "contacts.csv"
    lines = contacts.read_text().splitlines(keepends=True)
    first = lines[10].split(",")[0]
    lines[1800] = first + lines[1800][lines[1800].index(",") :]  # an id of the launch's half again
    bad = {1801}
    if where == "both halves":
        lines[300] = lines[300].replace("@", " at ", 1)  # a bad address in the launch's half
        lines[1500] = lines[1500].replace("@", " at ", 1)  # and one in the helper's
        bad |= {301, 1501}
    contacts.write_text("".join(lines))
    _ready(started, ledger)
    loaded = load_campaign(path)
    with pytest.raises(CampaignInvalid) as one_pass:
        validate(loaded)
    with pytest.raises(CampaignInvalid) as split:
        plan_run(ledger, loaded, f"split-bad-{len(bad)}", writer=started.writer(ledger))

    assert split.value.problems == one_pass.value.problems
    listed = " ".join(str(p) for p in split.value.problems)
    assert all(f"(line {n})" in listed for n in bad), listed
    run = ledger.get_run(f"split-bad-{len(bad)}")
    assert run is not None and run.status is RunStatus.FAILED


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)  # SQLite: one writer at a time
def test_a_middle_inside_a_quoted_value_is_found_out_and_the_launch_reads_on(
    helpers: tuple[Helpers, Path], ledger: Ledger
) -> None:
    """A stray quote before the middle evens the count for a line inside a quoted value: the helper, which
    reads from the top before it writes anything, finds no record starts there and declines."""
    started, path = helpers
    contacts = path.parent / "contacts.csv"
    header, *rows = contacts.read_text().splitlines()
    notes = [""] * len(rows)
    notes[5] = '5" tall'  # a literal quote inside an unquoted value: legal CSV
    notes[1000] = '"' + "\n".join(f"line {i} of a long note" for i in range(3000)) + '"'
    lines = [f"{header},note", *(f"{row},{note}" for row, note in zip(rows, notes, strict=True))]
    contacts.write_text("\n".join(lines) + "\n")
    audience = ContactsFile(contacts)
    middle = audience.middle()
    assert middle is not None and audience.count_before(middle) is None  # the count was fooled
    _ready(started, ledger)
    loaded = load_campaign(path)
    before = started.board.wrote.get("helper-1", 0)
    split = plan_run(ledger, loaded, "split-quoted", writer=started.writer(ledger))
    one_pass = plan_run(ledger, loaded, "one-pass-quoted")

    assert started.board.wrote.get("helper-1", 0) == before  # it declined: wrote nothing
    _same_plan(ledger, split, one_pass)
