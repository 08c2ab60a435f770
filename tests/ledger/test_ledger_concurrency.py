"""Many senders at once: each recipient claimed by exactly one, no row lost, no lock or deadlock errors.

Threads share one Ledger (as the flow's task runner does); processes each open their own (as separate
workers do). Claims overlap on purpose: every sender tries every recipient, in its own order.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from clarion.base.consent import Kind
from clarion.ledger import Ledger, SendState, Settlement, SummaryRow, Suppression
from tests.ledger.support import claim_and_settle, migrate_in_process, plan_in_process, planned

RECIPIENTS = 2_000


def shuffled(items: list[str], seed: int) -> list[str]:
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy


def all_sent_once(ledger: Ledger, run: str, count: int) -> None:
    rows = list(ledger.sends(run))
    assert len(rows) == count
    assert {(r.state, r.attempts) for r in rows} == {(SendState.SENT, 1)}
    assert all(r.provider_id == f"p-{r.recipient}" for r in rows)


def test_threads_never_claim_the_same_recipient(ledger: Ledger, new_run: Callable[..., str]) -> None:
    run = new_run(count=RECIPIENTS, batch_size=RECIPIENTS)
    everyone = [r.recipient for r in ledger.pending(run, "email", 0)]
    start = threading.Barrier(8)

    def sender(seed: int) -> list[str]:
        start.wait()
        return claim_with(ledger, run, shuffled(everyone, seed), chunk=100)

    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(sender, range(8)))
    counts = Counter(r for claimed in claims for r in claimed)
    assert set(counts) == set(everyone)
    assert set(counts.values()) == {1}
    assert sum(len(c) for c in claims) == RECIPIENTS
    all_sent_once(ledger, run, RECIPIENTS)


def claim_with(ledger: Ledger, run: str, recipients: list[str], chunk: int) -> list[str]:
    got: list[str] = []
    for i in range(0, len(recipients), chunk):
        claimed = ledger.begin(run, "email", recipients[i : i + chunk])
        ledger.settle(run, "email", [Settlement(r, SendState.SENT, provider_id=f"p-{r}") for r in claimed])
        got.extend(claimed)
    return got


def test_threads_planning_and_sending_different_runs_lose_nothing(
    ledger: Ledger, new_run: Callable[..., str]
) -> None:
    runs = [new_run(f"run-{n}") for n in range(4)]

    def worker(run: str) -> None:
        for start in range(0, 3_000, 500):  # planning in pieces, as the planner flushes
            ledger.plan_sends(run, planned(500, start=start))
            ledger.add_assignments(run, [(s, f"c{s:05d}", "a") for s in range(start, start + 500)])
            batch = [f"c{s:05d}" for s in range(start, start + 500)]
            claim_with(ledger, run, batch, chunk=100)
            ledger.summary(run)  # readers alongside the writers

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(worker, runs))
    for run in runs:
        assert ledger.summary(run) == [
            SummaryRow("email", "a", SendState.SENT, None, 1_500),
            SummaryRow("email", "b", SendState.SENT, None, 1_500),
        ]
        assert ledger.arm_counts(run) == {"a": 3_000}


@pytest.fixture(scope="module")
def processes() -> Iterator[multiprocessing.pool.Pool]:
    """Three fresh interpreters (spawn: nothing inherited, as separate workers would be)."""
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        yield pool


def test_processes_planning_and_claiming_at_once_count_each_send_once(
    ledger: Ledger, new_run: Callable[..., str], database_url: str, processes: multiprocessing.pool.Pool
) -> None:
    run = new_run()
    # three planners, overlapping slices of one audience: 0-2999, 1000-3999, 2000-4999
    added = processes.starmap(
        plan_in_process, [(database_url, run, start, 3_000) for start in (0, 1_000, 2_000)]
    )
    assert sum(added) == 5_000
    everyone = [f"c{s:05d}" for s in range(5_000)]
    claims = processes.starmap(
        claim_and_settle, [(database_url, run, shuffled(everyone, n), 250) for n in range(3)]
    )
    counts = Counter(r for claimed in claims for r in claimed)
    assert set(counts) == set(everyone)
    assert set(counts.values()) == {1}
    all_sent_once(ledger, run, 5_000)


def test_processes_migrating_a_new_database_at_once_all_succeed(
    database_url: str, processes: multiprocessing.pool.Pool
) -> None:
    assert processes.map(migrate_in_process, [database_url] * 3) == ["0", "0", "0"]


def test_opt_outs_arriving_while_runs_send_are_all_kept(ledger: Ledger, new_run: Callable[..., str]) -> None:
    """The tracking service records opt-outs (overlapping: the same person by two routes) while senders
    claim and settle: every suppression is there once, nothing waits on a lock forever."""
    run = new_run(count=RECIPIENTS, batch_size=RECIPIENTS)
    everyone = [r.recipient for r in ledger.pending(run, "email", 0)]
    addresses = [f"person{n}@example.org" for n in range(600)]
    start = threading.Barrier(6)

    def opt_outs(seed: int) -> None:
        start.wait()
        mine = shuffled(addresses, seed)[:400]  # three writers cover the 600, overlapping
        for i in range(0, len(mine), 20):
            ledger.suppress(
                Suppression(Kind.EMAIL, a, "unsubscribe_link", f"w{seed}") for a in mine[i : i + 20]
            )
            ledger.suppressed(Kind.EMAIL, mine[i : i + 20])  # the senders' check, alongside

    def sender(seed: int) -> list[str]:
        start.wait()
        return claim_with(ledger, run, shuffled(everyone, seed), chunk=100)

    with ThreadPoolExecutor(max_workers=6) as pool:
        writers = [pool.submit(opt_outs, seed) for seed in range(3)]
        senders = [pool.submit(sender, seed) for seed in range(3)]
        claims = [f.result(timeout=120) for f in senders]
        for f in writers:
            f.result(timeout=120)
    assert ledger.suppressed(Kind.EMAIL) >= set(shuffled(addresses, 0)[:400])
    covered = {a for seed in range(3) for a in shuffled(addresses, seed)[:400]}
    assert ledger.suppressed(Kind.EMAIL) == covered
    assert ledger.suppression_counts() == {"email": len(covered)}
    assert Counter(r for c in claims for r in c) == Counter(everyone)
