"""Planning: every assignment and send written once, however often planning runs (a resume plans again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from clarion.ledger import Ledger, PlannedSend, SendState, SummaryRow
from clarion.ledger.bulk import CHUNK
from tests.ledger.support import planned


def test_planning_twice_writes_each_send_once(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    assert ledger.plan_sends(run, planned(250)) == 250
    assert ledger.plan_sends(run, planned(250)) == 0
    assert ledger.plan_sends(run, planned(300)) == 50  # a resume that finds 50 more rows plans only those
    assert len(list(ledger.sends(run))) == 300


def test_planning_across_chunks_counts_only_new_rows(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    first = CHUNK + 1_000
    assert ledger.plan_sends(run, iter(planned(first))) == first  # any iterable, streamed in chunks
    assert ledger.plan_sends(run, iter(planned(2 * CHUNK))) == 2 * CHUNK - first
    assert sum(row.count for row in ledger.summary(run)) == 2 * CHUNK


def test_assignments_are_idempotent_and_counted_per_arm(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    rows = [(seq, f"c{seq:05d}", ("a", "b", "holdout")[seq % 3]) for seq in range(3_000)]
    assert ledger.add_assignments(run, rows) == 3_000
    assert ledger.add_assignments(run, rows) == 0
    assert ledger.add_assignments(run, [(0, "c00000", "b")]) == 0  # an existing assignment is never changed
    assert ledger.arm_counts(run) == {"a": 1_000, "b": 1_000, "holdout": 1_000}


def test_a_send_planned_with_a_reason_is_skipped_at_once(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    ledger.plan_sends(
        run,
        [
            PlannedSend("sms", "a", "c1", "c1", seq=1, batch=0),
            PlannedSend("sms", "b", "c2", "c2", seq=2, batch=-1, skip_reason="no_address"),
        ],
    )
    skipped = next(ledger.sends(run, state=SendState.SKIPPED))
    assert (skipped.recipient, skipped.reason, skipped.batch, skipped.attempts) == ("c2", "no_address", -1, 0)
    assert skipped.settled_at is not None
    assert [r.recipient for r in ledger.pending(run, "sms", 0)] == ["c1"]
    assert ledger.batches(run, "sms") == [0]


def test_a_social_post_is_one_send_to_everyone(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    posts = [PlannedSend("x", v, None, f"post:{v}", seq=i, batch=i) for i, v in enumerate("ab")]
    assert ledger.plan_sends(run, posts) == 2
    assert ledger.plan_sends(run, posts) == 0
    rows = list(ledger.sends(run, channel="x"))
    assert [(r.recipient, r.contact_id, r.variant) for r in rows] == [
        ("post:a", None, "a"),
        ("post:b", None, "b"),
    ]


def test_one_contact_is_one_send_per_channel(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    assert ledger.plan_sends(run, planned(10, "email") + planned(10, "sms")) == 20
    assert {r.channel for r in ledger.sends(run)} == {"email", "sms"}


def test_pending_lists_one_batch_in_audience_order(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=1_000, batch_size=250)
    assert ledger.batches(run, "email") == [0, 1, 2, 3]
    rows = ledger.pending(run, "email", 2)
    assert [r.seq for r in rows] == list(range(500, 750))
    first = rows[0]
    assert (first.run_id, first.channel, first.state, first.attempts) == (run, "email", SendState.PLANNED, 0)
    assert first.planned_at.tzinfo is not None and first.attempted_at is None
    assert ledger.pending(run, "email", 9) == []


def test_summary_counts_by_channel_variant_state_and_reason(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=10)
    ledger.plan_sends(run, [PlannedSend("email", "a", "z", "z", seq=99, batch=-1, skip_reason="no_address")])
    assert ledger.summary(run) == [
        SummaryRow("email", "a", SendState.PLANNED, None, 5),
        SummaryRow("email", "a", SendState.SKIPPED, "no_address", 1),
        SummaryRow("email", "b", SendState.PLANNED, None, 5),
    ]


def test_a_run_with_nothing_planned_has_an_empty_summary(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run()
    assert ledger.summary(run) == []
    assert ledger.arm_counts(run) == {}
    assert ledger.batches(run, "email") == []
    assert list(ledger.sends(run)) == []


@pytest.mark.parametrize(
    "database_url", ["sqlite"], indirect=True
)  # PostgreSQL's plan follows its statistics
def test_a_run_s_summary_reads_its_rows_in_the_table_s_order(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    """A run's whole-run reads (its summary, the report's first sends) go through its rows in the order they
    were planned, not through the index led by contact id, which for ids in no order (UUIDs) was a page from
    anywhere per row. A run whose rows are spread among a bigger run's is read through the index after all;
    both count the same."""
    executed: list[tuple[str, Any]] = []

    def seen(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        if "count(*)" in statement and "GROUP BY" in statement:
            executed.append((statement, parameters))

    def plan_of_summary(run: str) -> list[str]:
        executed.clear()
        event.listen(ledger.engine, "before_cursor_execute", seen)
        try:
            ledger.summary(run)
        finally:
            event.remove(ledger.engine, "before_cursor_execute", seen)
        [(statement, parameters)] = executed
        with ledger.engine.connect() as conn:
            return [str(row) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]

    run = new_run(count=3_000)
    assert any("INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in step for step in plan_of_summary(run))
    assert sum(row.count for row in ledger.summary(run)) == 3_000

    spread = new_run("spread-run", count=10)
    new_run("big-run", count=3_000)
    ledger.plan_sends(spread, planned(10, start=10))
    assert any("sqlite_autoindex_sends_1" in step for step in plan_of_summary(spread))
    assert ledger.summary(spread) == [
        SummaryRow("email", "a", SendState.PLANNED, None, 10),
        SummaryRow("email", "b", SendState.PLANNED, None, 10),
    ]
