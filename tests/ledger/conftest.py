"""Ledger fixtures: every test runs on SQLite (a file in tmp_path) and on PostgreSQL (a schema of its own).

PostgreSQL is the server named by CLARION_TEST_POSTGRES_URL (default: the local test database). When it
cannot be reached the PostgreSQL cases are skipped with the reason, or fail when CLARION_REQUIRE_POSTGRES=1
(for a CI that must cover PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clarion.ledger import Ledger
from tests.ledger.support import planned

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def open_ledger(database_url: str) -> Iterator[Callable[[], Ledger]]:
    """Opens more Ledgers on the same database (as other threads' or processes' would be); all closed after."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = Ledger(database_url)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[[], Ledger]) -> Ledger:
    """A migrated, empty ledger."""
    ledger = open_ledger()
    ledger.migrate()
    return ledger


@pytest.fixture
def new_run(ledger: Ledger) -> Callable[..., str]:
    """Creates a run and plans `count` email sends for it; returns the run id."""

    def make(run_id: str = "appeal-20261122-1830-ab12", count: int = 0, batch_size: int = 100) -> str:
        ledger.create_run(run_id, campaign="appeal", campaign_file="appeal.yaml", digest="d" * 64)
        if count:
            ledger.plan_sends(run_id, planned(count, batch_size=batch_size))
        return run_id

    return make
