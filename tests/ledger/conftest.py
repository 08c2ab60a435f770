"""Ledger fixtures: every test runs on SQLite (a file in tmp_path) and on PostgreSQL (a schema of its own).

PostgreSQL is the server named by CLARION_TEST_POSTGRES_URL (default: the local test database). When it
cannot be reached the PostgreSQL cases are skipped with the reason, or fail when CLARION_REQUIRE_POSTGRES=1
(for a CI that must cover PostgreSQL).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from clarion.ledger import Ledger
from clarion.ledger.database import resolve_url
from tests.ledger.support import planned

POSTGRES_URL = resolve_url(
    os.environ.get("CLARION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """An engine on the test server (for creating and dropping schemas), or a skip saying why not."""
    url = POSTGRES_URL
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        reason = (
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is not reachable "
            f"({str(exc.orig).splitlines()[0]}); "
            "set CLARION_TEST_POSTGRES_URL to a server, or CLARION_REQUIRE_POSTGRES=1 to make this a failure"
        )
        if os.environ.get("CLARION_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: Engine) -> Iterator[str]:
    """A URL whose connections work in a fresh schema (search_path set through libpq options)."""
    schema = f"clarion_test_{uuid.uuid4().hex[:12]}"
    with postgres_server.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = POSTGRES_URL.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with postgres_server.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


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
