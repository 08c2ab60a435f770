"""Migrations: from an empty database to head, idempotent, safe to run from several places at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text

import clarion
from clarion.ledger import Ledger, LedgerNotMigrated, SendState, Settlement
from clarion.ledger.migrate import HEAD, MIGRATIONS, VERSION_TABLE, alembic_config, at_head, head_revisions
from clarion.ledger.schema import metadata
from tests.ledger.support import planned


def tables(ledger: Ledger) -> set[str]:
    return set(inspect(ledger.engine).get_table_names())


def current(ledger: Ledger) -> set[str]:
    with ledger.engine.connect() as conn:
        return set(
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
        )


def test_migrate_from_empty_creates_the_tables_at_head(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    assert tables(ledger) == set()
    ledger.migrate()
    assert {"runs", "assignments", "sends", VERSION_TABLE} <= tables(ledger)
    assert current(ledger) == head_revisions()


def test_head_names_the_newest_script_so_a_ledger_at_it_is_told_without_alembic(
    open_ledger: Callable[[], Ledger],
) -> None:
    """`migrate` skips Alembic when the version table says HEAD: HEAD must be the scripts' head, or a ledger
    one script behind would be taken as current and never upgraded."""
    assert head_revisions() == {HEAD}
    ledger = open_ledger()
    with ledger.engine.begin() as conn:
        assert not at_head(conn)  # no version table yet
        command.upgrade(alembic_config(conn), "0009_planned_index")
        assert not at_head(conn)
    ledger.migrate()
    with ledger.engine.connect() as conn:
        assert at_head(conn)


def test_migrate_again_changes_nothing(ledger: Ledger) -> None:
    ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")
    ledger.migrate()
    ledger.migrate()
    assert current(ledger) == head_revisions()
    assert ledger.get_run("r") is not None


def test_the_migrations_build_exactly_the_schema_the_code_uses(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        assert compare_metadata(context, metadata) == []


def _index_sql(ledger: Ledger, name: str) -> str | None:
    """How the database itself defines an index (None: there is no such index)."""
    with ledger.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            query = (
                "SELECT indexdef FROM pg_indexes WHERE indexname = :name AND schemaname = current_schema()"
            )
        else:
            query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
        found = conn.execute(text(query), {"name": name}).scalar()
    return str(found) if found is not None else None


def test_a_ledger_with_sends_in_flight_upgrades_to_the_planned_only_index(
    open_ledger: Callable[[], Ledger],
) -> None:
    """Revision 0009 on a ledger in use: the state and batch indexes give way to one of planned sends only,
    and the run goes on where it was (what was claimed stays claimed, what was planned is still found)."""
    ledger = open_ledger()
    with ledger.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0008_experiment")
    ledger.create_run("r", campaign="c", campaign_file="c.yaml", digest="d")
    ledger.plan_sends("r", planned(30, batch_size=10))
    claimed = ledger.begin("r", "email", [f"c{seq:05d}" for seq in range(15)])
    ledger.settle("r", "email", [Settlement(r, SendState.SENT, provider_id="m1") for r in claimed[:10]])
    assert _index_sql(ledger, "ix_sends_run_id_channel_state_batch") is not None

    ledger.migrate()

    assert current(ledger) == head_revisions()
    assert _index_sql(ledger, "ix_sends_run_id_channel_state_batch") is None
    assert _index_sql(ledger, "ix_sends_run_id_channel_batch_seq") is None
    definition = _index_sql(ledger, "ix_sends_planned") or ""
    assert "state" in definition and "'planned'" in definition, definition
    assert ledger.batches("r", "email") == [1, 2]  # batch 0 is all claimed; 1 is half planned
    assert ledger.begin("r", "email", [f"c{seq:05d}" for seq in range(10, 20)]) == [
        f"c{seq:05d}" for seq in range(15, 20)
    ]
    counts: dict[SendState, int] = {}
    for row in ledger.summary("r"):
        counts[row.state] = counts.get(row.state, 0) + row.count
    assert counts == {SendState.SENT: 10, SendState.IN_FLIGHT: 10, SendState.PLANNED: 10}


def test_a_ledger_with_capped_addresses_upgrades_to_the_window_index(
    open_ledger: Callable[[], Ledger],
) -> None:
    """Revision 0010 on a ledger in use: the address-key index gives way to one on planned_at, and the
    frequency cap answers exactly as before (which addresses already had their sends in the window)."""
    ledger = open_ledger()
    with ledger.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009_planned_index")
    for run in ("r1", "r2", "r3"):
        ledger.create_run(run, campaign="c", campaign_file="c.yaml", digest="d")
        # c00000-c00002 reached by every run, the rest by r1 alone
        keys = [f"k{i}" if i < 3 or run == "r1" else None for i in range(6)]
        ledger.plan_sends(run, [s._replace(address_key=k) for s, k in zip(planned(6), keys, strict=True)])
    since = datetime.now(UTC) - timedelta(days=1)
    before = ledger.capped(None, since, 2, excluding="r3")
    assert before == {"k0", "k1", "k2"}
    assert _index_sql(ledger, "ix_sends_address_key_planned_at") is not None

    ledger.migrate()

    assert current(ledger) == head_revisions()
    assert _index_sql(ledger, "ix_sends_address_key_planned_at") is None
    assert "planned_at" in (_index_sql(ledger, "ix_sends_planned_at") or "")
    assert ledger.capped(None, since, 2, excluding="r3") == before
    assert ledger.capped(None, datetime.now(UTC) + timedelta(seconds=1), 1, excluding="r3") == set()


@pytest.mark.parametrize(
    "database_url", ["sqlite"], indirect=True
)  # PostgreSQL's plan follows its statistics
def test_the_frequency_cap_reads_its_window_through_the_index(ledger: Ledger) -> None:
    """The cap's question reads the sends planned in its window, not every send ever planned."""
    executed: list[tuple[str, Any]] = []

    def seen(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        executed.append((statement, parameters))

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        ledger.capped(None, datetime.now(UTC) - timedelta(days=7), 2, excluding="r")
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    [(query, parameters)] = [(s, p) for s, p in executed if "address_key" in s]
    with ledger.engine.connect() as conn:  # the statement as the ledger ran it, with its own parameters
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", parameters).fetchall()
    assert any("USING INDEX ix_sends_planned_at" in str(row) for row in plan), plan


def test_concurrent_migrations_from_threads_all_succeed(open_ledger: Callable[[], Ledger]) -> None:
    ledgers = [open_ledger() for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ledgers))

    def migrate(ledger: Ledger) -> None:
        barrier.wait()
        try:
            ledger.migrate()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current(ledgers[0]) == head_revisions()


def test_an_unmigrated_database_says_to_migrate(open_ledger: Callable[[], Ledger]) -> None:
    with pytest.raises(LedgerNotMigrated, match=r"migrate\(\)"):
        open_ledger().list_runs()


def test_the_migration_scripts_ship_inside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # found from the package, wherever the process runs
    assert MIGRATIONS.is_relative_to(Path(clarion.__file__).parent)
    assert (MIGRATIONS / "env.py").is_file()
    assert head_revisions() == {"0010_cap_window_index"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_is_set_up_for_concurrent_writers(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        settings = {
            name: conn.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }
    assert settings == {"journal_mode": "wal", "busy_timeout": 30_000, "foreign_keys": 1, "synchronous": 1}
