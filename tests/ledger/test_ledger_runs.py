"""Runs: created once, found by id, listed newest first, statuses that stamp when a run finished."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clarion.base.errors import ClarionError
from clarion.ledger import Ledger, PlannedSend, RunExists, RunNotFound, RunStatus, SendState, Settlement

RUN = "debate-night-appeal-20261122-1830-ab12"


def create(ledger: Ledger, run_id: str = RUN, **kw: Any) -> None:
    ledger.create_run(
        run_id, campaign="debate-night-appeal", campaign_file="debate.yaml", digest="f" * 64, **kw
    )


def test_a_created_run_reads_back_as_it_was_written(ledger: Ledger) -> None:
    before = datetime.now(UTC)
    created = ledger.create_run(
        RUN,
        campaign="debate-night-appeal",
        campaign_file="examples/debate-night/campaign.yaml",
        digest="f" * 64,
        options={"resend_uncertain": False, "channels": ["email", "sms"]},
    )
    found = ledger.get_run(RUN)
    assert found == created
    assert found.status is RunStatus.PLANNED
    assert found.campaign_file == "examples/debate-night/campaign.yaml"
    assert found.options == {"resend_uncertain": False, "channels": ["email", "sms"]}
    assert found.created_at.tzinfo is UTC and before - timedelta(seconds=1) <= found.created_at
    assert found.finished_at is None and found.error is None


def test_creating_a_run_twice_is_refused_with_what_to_do(ledger: Ledger) -> None:
    create(ledger)
    with pytest.raises(RunExists, match=r"already exists.*--run-id") as caught:
        create(ledger)
    assert isinstance(caught.value, ClarionError)


def test_an_unknown_run_is_none(ledger: Ledger) -> None:
    assert ledger.get_run("nope") is None


def test_runs_are_listed_newest_first(ledger: Ledger) -> None:
    for n in range(5):
        create(ledger, f"run-{n}")
    assert [r.id for r in ledger.list_runs()] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.id for r in ledger.list_runs(limit=2)] == ["run-4", "run-3"]


def test_a_finished_status_stamps_finished_at_and_a_resume_clears_it(ledger: Ledger) -> None:
    create(ledger)
    ledger.set_run_status(RUN, RunStatus.RUNNING)
    assert ledger.get_run(RUN).finished_at is None  # type: ignore[union-attr]
    ledger.set_run_status(RUN, RunStatus.FAILED, error="email batch 3: provider down")
    failed = ledger.get_run(RUN)
    assert failed is not None
    assert (failed.status, failed.error) == (RunStatus.FAILED, "email batch 3: provider down")
    assert failed.finished_at is not None and failed.finished_at >= failed.created_at
    ledger.set_run_status(RUN, "running")
    resumed = ledger.get_run(RUN)
    assert resumed is not None
    assert (resumed.status, resumed.error, resumed.finished_at) == (RunStatus.RUNNING, None, None)


def test_a_status_outside_the_list_is_a_bug(ledger: Ledger) -> None:
    create(ledger)
    with pytest.raises(ValueError):
        ledger.set_run_status(RUN, "done")


UNKNOWN_RUN_CALLS: dict[str, Callable[[Ledger], object]] = {
    "set_run_status": lambda lg: lg.set_run_status("nope", RunStatus.RUNNING),
    "add_assignments": lambda lg: lg.add_assignments("nope", [(0, "c1", "a")]),
    "plan_sends": lambda lg: lg.plan_sends("nope", [PlannedSend("email", "a", "c1", "c1", 0, 0)]),
    "begin": lambda lg: lg.begin("nope", "email", ["c1"]),
    "settle": lambda lg: lg.settle("nope", "email", [Settlement("c1", SendState.SENT)]),
    "release": lambda lg: lg.release("nope", "email", ["c1"]),
    "skip": lambda lg: lg.skip("nope", "email", [("c1", "no_address")]),
    "mark_uncertain": lambda lg: lg.mark_uncertain("nope"),
    "requeue_uncertain": lambda lg: lg.requeue_uncertain("nope"),
    "pending": lambda lg: lg.pending("nope", "email", 0),
    "batches": lambda lg: lg.batches("nope", "email"),
    "summary": lambda lg: lg.summary("nope"),
    "arm_counts": lambda lg: lg.arm_counts("nope"),
    "sends": lambda lg: lg.sends("nope"),
}


@pytest.mark.parametrize("call", UNKNOWN_RUN_CALLS.values(), ids=UNKNOWN_RUN_CALLS.keys())
def test_an_unknown_run_id_is_a_clear_error(ledger: Ledger, call: Callable[[Ledger], object]) -> None:
    with pytest.raises(RunNotFound, match=r"no run 'nope' in the ledger; `clarion runs` lists"):
        call(ledger)
