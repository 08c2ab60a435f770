"""Sending: claim (begin), settle, release, skip; a crash's in-flight sends become uncertain on resume."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from clarion.ledger import Ledger, SendRow, SendState, Settlement, SummaryRow, Suppression

SENT = SendState.SENT


def rows(ledger: Ledger, run: str) -> dict[str, SendRow]:
    return {r.recipient: r for r in ledger.sends(run)}


def test_begin_claims_only_planned_sends_once(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=5)
    assert ledger.begin(run, "email", ["c00000", "c00001"]) == ["c00000", "c00001"]
    assert ledger.begin(run, "email", ["c00001", "c00002"]) == ["c00002"]
    after = rows(ledger, run)
    assert {r for r, row in after.items() if row.state is SendState.IN_FLIGHT} == {
        "c00000",
        "c00001",
        "c00002",
    }
    assert after["c00000"].attempts == 1 and after["c00000"].attempted_at is not None
    assert after["c00003"].attempts == 0 and after["c00003"].attempted_at is None


def test_begin_keeps_the_callers_order_and_ignores_unknowns(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=5)
    assert ledger.begin(run, "email", ["c00004", "nobody", "c00002", "c00004"]) == ["c00004", "c00002"]
    assert ledger.begin(run, "sms", ["c00000"]) == []  # planned for email only
    assert ledger.begin(run, "email", []) == []


def test_begin_takes_more_than_one_statements_worth(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=2_500, batch_size=2_500)
    everyone = [r.recipient for r in ledger.pending(run, "email", 0)]
    assert ledger.begin(run, "email", everyone) == everyone
    assert ledger.pending(run, "email", 0) == []


def test_settle_records_what_the_provider_said(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=4)
    ledger.begin(run, "email", ["c00000", "c00001", "c00002"])
    settled = ledger.settle(
        run,
        "email",
        [
            Settlement("c00000", SENT, provider_id="SG.abc"),
            Settlement("c00001", SendState.FAILED, reason="rejected", error="[400] invalid email address"),
            Settlement("c00002", SendState.UNCERTAIN, reason="timeout", error="read timed out"),
        ],
    )
    assert settled == 3
    after = rows(ledger, run)
    sent, failed, uncertain = after["c00000"], after["c00001"], after["c00002"]
    assert (sent.state, sent.provider_id, sent.reason, sent.error) == (SENT, "SG.abc", None, None)
    assert (failed.state, failed.reason, failed.error) == (
        SendState.FAILED,
        "rejected",
        "[400] invalid email address",
    )
    assert (uncertain.state, uncertain.reason) == (SendState.UNCERTAIN, "timeout")
    assert (
        sent.settled_at is not None and sent.attempted_at is not None and sent.settled_at >= sent.attempted_at
    )
    assert after["c00003"].state is SendState.PLANNED


def test_settling_what_is_not_in_flight_changes_nothing(
    ledger: Ledger, new_run: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    run = new_run(count=3)
    ledger.begin(run, "email", ["c00000"])
    ledger.settle(run, "email", [Settlement("c00000", SENT, provider_id="first")])
    with caplog.at_level(logging.WARNING, logger="clarion.ledger"):
        again = ledger.settle(
            run,
            "email",
            [Settlement("c00000", SendState.FAILED), Settlement("c00001", SENT, provider_id="x")],
        )
    assert again == 0
    after = rows(ledger, run)
    assert (after["c00000"].state, after["c00000"].provider_id) == (SENT, "first")
    assert after["c00001"].state is SendState.PLANNED  # never claimed: never marked sent
    assert "settle appeal-20261122-1830-ab12/email: 2 sends were not in_flight" in caplog.text


def test_a_settlement_is_sent_failed_or_uncertain(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="sent, failed or uncertain"):
        Settlement("c1", SendState.PLANNED)


def test_release_returns_a_send_to_be_retried_keeping_its_attempts(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=2)
    ledger.begin(run, "email", ["c00000", "c00001"])
    assert ledger.release(run, "email", ["c00000"]) == 1
    assert ledger.release(run, "email", ["c00000"]) == 0  # already planned again
    assert [r.recipient for r in ledger.pending(run, "email", 0)] == ["c00000"]
    assert ledger.begin(run, "email", ["c00000"]) == ["c00000"]
    assert rows(ledger, run)["c00000"].attempts == 2


def test_skip_marks_planned_sends_with_a_reason(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=3)
    ledger.begin(run, "email", ["c00002"])
    skipped = ledger.skip(
        run,
        "email",
        [("c00000", "render_error"), ("c00001", "render_error", "unknown variable 'x'"), ("c00002", "x")],
    )
    assert skipped == 2  # c00002 is in flight: not skipped
    after = rows(ledger, run)
    assert (after["c00000"].state, after["c00000"].reason, after["c00000"].error) == (
        SendState.SKIPPED,
        "render_error",
        None,
    )
    assert after["c00001"].error == "unknown variable 'x'"
    assert after["c00002"].state is SendState.IN_FLIGHT
    assert ledger.begin(run, "email", ["c00000", "c00001"]) == []


def test_a_resume_marks_in_flight_sends_uncertain_and_never_resends_them(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=4)
    ledger.begin(run, "email", ["c00000", "c00001", "c00002"])
    ledger.settle(run, "email", [Settlement("c00000", SENT, provider_id="p0")])
    # the process dies here, with c00001 and c00002 in flight; the resume:
    assert ledger.mark_uncertain(run) == 2
    assert ledger.mark_uncertain(run) == 0
    after = rows(ledger, run)
    assert {r: (row.state, row.reason) for r, row in after.items() if row.state is SendState.UNCERTAIN} == {
        "c00001": (SendState.UNCERTAIN, "crash_in_flight"),
        "c00002": (SendState.UNCERTAIN, "crash_in_flight"),
    }
    assert ledger.begin(run, "email", ["c00000", "c00001", "c00002", "c00003"]) == ["c00003"]


def test_resend_uncertain_plans_them_again(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=3)
    ledger.begin(run, "email", ["c00000", "c00001"])
    ledger.settle(run, "email", [Settlement("c00001", SendState.UNCERTAIN, reason="timeout")])
    ledger.mark_uncertain(run)
    assert ledger.requeue_uncertain(run) == 2
    assert ledger.begin(run, "email", ["c00000", "c00001"]) == ["c00000", "c00001"]
    again = rows(ledger, run)["c00001"]
    assert (again.attempts, again.reason, again.settled_at) == (2, None, None)


def test_summary_follows_every_move(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=8)
    ledger.begin(run, "email", ["c00000", "c00001", "c00002", "c00003", "c00004"])
    ledger.settle(
        run,
        "email",
        [
            Settlement("c00000", SENT, provider_id="p0"),
            Settlement("c00001", SENT, provider_id="p1"),
            Settlement("c00002", SendState.FAILED, reason="rejected", error="[21211] invalid number"),
        ],
    )
    ledger.skip(run, "email", [("c00006", "opted_out")])
    ledger.mark_uncertain(run)
    assert ledger.summary(run) == [
        SummaryRow("email", "a", SendState.FAILED, "rejected", 1),  # c00002
        SummaryRow("email", "a", SendState.SENT, None, 1),  # c00000
        SummaryRow("email", "a", SendState.SKIPPED, "opted_out", 1),  # c00006
        SummaryRow("email", "a", SendState.UNCERTAIN, "crash_in_flight", 1),  # c00004
        SummaryRow("email", "b", SendState.PLANNED, None, 2),  # c00005, c00007
        SummaryRow("email", "b", SendState.SENT, None, 1),  # c00001
        SummaryRow("email", "b", SendState.UNCERTAIN, "crash_in_flight", 1),  # c00003
    ]


def test_sends_streams_a_run_filtered_by_channel_and_state(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=6_000, batch_size=1_000)
    ledger.begin(run, "email", [f"c{i:05d}" for i in range(10)])
    stream = ledger.sends(run, channel="email", state="in_flight")
    assert [r.seq for r in stream] == list(range(10))
    assert sum(1 for _ in ledger.sends(run)) == 6_000
    assert list(ledger.sends(run, channel="sms")) == []
    half_read = ledger.sends(run)
    assert next(half_read).seq == 0
    half_read.close()  # releases the connection (and its cursor)


# -- settling the uncertain, and retrying what was provably not taken ------------------------------------


def _uncertain_and_failed(ledger: Ledger, run: str) -> None:
    ledger.begin(run, "email", ["c00000", "c00001", "c00002", "c00003", "c00004"])
    ledger.settle(
        run,
        "email",
        [
            Settlement("c00000", SendState.UNCERTAIN, reason="timeout", error="read timed out"),
            Settlement("c00001", SendState.UNCERTAIN, reason="crash_in_flight"),
            Settlement("c00002", SendState.FAILED, reason="retries_exhausted", error="[503] unavailable"),
            Settlement("c00003", SendState.FAILED, reason="rejected", error="[400] invalid email address"),
            Settlement("c00004", SENT, provider_id="SG.kept"),
        ],
    )


def test_resolve_uncertain_moves_only_uncertain_sends_with_when_and_why(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=6)
    _uncertain_and_failed(ledger, run)

    moved = ledger.resolve_uncertain(
        run,
        "email",
        [
            Settlement(
                "c00000", SENT, "SG.found", "reconciled", "was uncertain (timeout); SendGrid lists it"
            ),
            Settlement("c00001", SendState.FAILED, None, "not_received", "was uncertain; not listed"),
            Settlement("c00004", SendState.FAILED, None, "not_received", "a sent one never changes"),
            Settlement("c00005", SENT, "SG.x", "reconciled", "a planned one never changes"),
        ],
    )

    after = rows(ledger, run)
    assert moved == 2
    assert (after["c00000"].state, after["c00000"].provider_id, after["c00000"].reason) == (
        SENT,
        "SG.found",
        "reconciled",
    )
    assert after["c00000"].error == "was uncertain (timeout); SendGrid lists it"
    assert after["c00000"].settled_at is not None and after["c00000"].attempts == 1
    assert (after["c00001"].state, after["c00001"].reason) == (SendState.FAILED, "not_received")
    assert (after["c00004"].state, after["c00004"].provider_id) == (SENT, "SG.kept")
    assert after["c00005"].state is SendState.PLANNED
    with pytest.raises(ValueError, match="sent or failed"):
        ledger.resolve_uncertain(run, "email", [Settlement("c00000", SendState.UNCERTAIN, reason="x")])


def test_requeue_failed_plans_again_only_what_the_provider_never_took(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    run = new_run(count=6)
    _uncertain_and_failed(ledger, run)
    ledger.resolve_uncertain(run, "email", [Settlement("c00001", SendState.FAILED, None, "not_received", "")])

    assert ledger.requeue_failed(run) == 2  # retries exhausted (5xx), and not received

    after = rows(ledger, run)
    for recipient in ("c00001", "c00002"):
        row = after[recipient]
        assert (row.state, row.reason, row.error, row.settled_at) == (SendState.PLANNED, None, None, None)
        assert row.attempts == 1
    assert (after["c00003"].state, after["c00003"].reason) == (SendState.FAILED, "rejected")
    assert (after["c00000"].state, after["c00000"].reason) == (SendState.UNCERTAIN, "timeout")
    assert after["c00004"].state is SENT
    assert ledger.requeue_failed(run) == 0


def test_a_batch_s_opt_out_check_finds_every_suppressed_address_among_thousands(ledger: Ledger) -> None:
    """What a send task asks before sending a batch: which of its addresses opted out. Thousands at once
    (more than one statement's worth), repeats among them, and an address that opted back in is free."""
    addresses = [f"p{i:05d}@example.org" for i in range(12_000)]
    opted_out = [*addresses[::997], addresses[4_999], addresses[5_000], addresses[-1]]
    ledger.suppress(Suppression("email", a, "unsubscribe", "test") for a in opted_out)
    ledger.suppress([Suppression("sms", addresses[1], "stop", "test")])  # another kind: not email's
    assert ledger.lift("email", addresses[997])

    asked = [*addresses, *addresses[:100]]
    assert ledger.suppressed("email", asked) == set(opted_out) - {addresses[997]}
    assert ledger.suppressed("email", []) == set()


def test_the_send_path_finds_a_batch_s_rows_by_their_ids(ledger: Ledger, new_run: Callable[..., str]) -> None:
    """A send task reads its batch's rows with their ids and claims, settles and releases them by id: the
    same moves as by recipient, and an id that is not this run's and channel's moves nothing."""
    run = new_run(count=300, batch_size=100)
    other = new_run("other-run", count=300, batch_size=100)
    due = ledger.due_in_batch(run, "email", 1)
    ids = {row.recipient: row.id for row in due}
    assert [row.recipient for row in due] == [f"c{seq:05d}" for seq in range(100, 200)]
    assert len(set(ids.values())) == 100
    foreign = {"c00150": ledger.due_in_batch(other, "email", 1)[50].id}  # the other run's c00150

    assert ledger.begin(run, "email", ["c00150"], foreign) == []
    assert ledger.begin(run, "email", list(ids)[:60], ids) == list(ids)[:60]
    assert ledger.begin(run, "email", list(ids)[:60], ids) == []  # claimed once
    same = [Settlement(r, SENT, provider_id="SG.request-1") for r in list(ids)[:30]]
    each = [Settlement(r, SENT, provider_id=f"SM{r}") for r in list(ids)[30:50]]
    assert ledger.settle(run, "email", same, ids) == 30
    assert ledger.settle(run, "email", each, ids) == 20
    assert ledger.settle(run, "email", same, ids) == 0  # settled already
    assert ledger.release(run, "email", list(ids)[50:60], ids) == 10

    after = rows(ledger, run)
    assert {r for r, row in after.items() if row.state is SENT} == set(list(ids)[:50])
    assert after["c00149"].provider_id == "SMc00149" and after["c00100"].provider_id == "SG.request-1"
    assert [r.recipient for r in ledger.pending(run, "email", 1)] == list(ids)[50:]
    assert after["c00155"].attempts == 1 and after["c00150"].state is SendState.PLANNED
    assert {row.state for row in rows(ledger, other).values()} == {SendState.PLANNED}


@pytest.mark.parametrize(
    "database_url", ["sqlite"], indirect=True
)  # PostgreSQL's plan follows its statistics
def test_claims_and_settlements_by_id_look_each_row_up(ledger: Ledger, new_run: Callable[..., str]) -> None:
    """By id, each row is looked up by its key, never found by walking the (run, channel, ...) indexes:
    without statistics SQLite's planner took the planned-sends index, every planned row of the channel per
    claim, and for contact ids in no order (UUIDs) the recipient index cost a random page read per row."""
    run = new_run(count=3_000, batch_size=1_000)
    ids = {row.recipient: row.id for row in ledger.due_in_batch(run, "email", 1)}
    executed: list[tuple[str, Any]] = []

    def seen(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        if statement.startswith("UPDATE"):
            executed.append((statement, parameters[0] if isinstance(parameters, list) else parameters))

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        claimed = ledger.begin(run, "email", list(ids), ids)
        ledger.settle(run, "email", [Settlement(r, SENT, provider_id="SG.one") for r in claimed[:500]], ids)
        ledger.settle(
            run, "email", [Settlement(r, SENT, provider_id=f"SM{r}") for r in claimed[500:900]], ids
        )
        ledger.release(run, "email", claimed[900:], ids)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    assert len(executed) == 4
    with ledger.engine.connect() as conn:  # each statement as the ledger ran it, with its own parameters
        for statement, parameters in executed:
            plan = [str(row) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            assert any("USING INTEGER PRIMARY KEY" in step for step in plan), (statement, plan)
            assert not any("INDEX" in step.replace("VIRTUAL TABLE INDEX", "") for step in plan), plan


def test_a_batchs_due_rows_are_its_pending_sends_narrowed(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    """What a send task reads of its batch (`due_in_batch`, read as driver SQL on SQLite) is `pending`'s rows,
    field for field: a send deferred to a past instant is due, with that instant read back in UTC, one
    deferred to later is not, and a claimed one is no longer due."""
    run = new_run(count=300, batch_size=100)
    now = datetime.now(UTC)
    past, later = now - timedelta(minutes=5), now + timedelta(hours=2)
    assert ledger.defer(run, "email", [("c00110", past), ("c00120", later)]) == 2
    assert ledger.begin(run, "email", ["c00130"]) == ["c00130"]

    due = ledger.due_in_batch(run, "email", 1)
    pending = ledger.pending(run, "email", 1)
    assert [(d.recipient, d.variant, d.not_before, d.id) for d in due] == [
        (p.recipient, p.variant, p.not_before, p.id) for p in pending
    ]
    found = {d.recipient: d for d in due}
    assert len(found) == 98 and "c00120" not in found and "c00130" not in found
    assert found["c00110"].not_before == past and found["c00110"].not_before.tzinfo is not None
    assert found["c00111"].not_before is None
