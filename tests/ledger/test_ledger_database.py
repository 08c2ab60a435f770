"""Which database the ledger opens, and what a person reads when it cannot."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from clarion.base.errors import ClarionError
from clarion.ledger import DatabaseUnavailable, Ledger, LedgerError


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_server_is_named_without_its_password() -> None:
    port = closed_port()
    ledger = Ledger(f"postgresql+psycopg://clarion:s3cret-pw@127.0.0.1:{port}/clarion")
    try:
        for call in (ledger.migrate, ledger.list_runs):
            with pytest.raises(DatabaseUnavailable) as caught:
                call()
            message = str(caught.value)
            assert f"postgresql+psycopg://clarion:***@127.0.0.1:{port}/clarion" in message
            assert "s3cret-pw" not in message
            assert "server is running" in message and "CLARION_DATABASE_URL" in message
            assert isinstance(caught.value, ClarionError)
        assert "s3cret-pw" not in repr(ledger)
    finally:
        ledger.close()


def test_a_sqlite_file_that_cannot_be_opened_says_what_to_check(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}")  # a folder, not a file
    with pytest.raises(
        DatabaseUnavailable, match=r"cannot open the ledger database sqlite:///.*folder exists"
    ):
        ledger.migrate()
    ledger.close()


def test_a_sqlite_folder_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DatabaseUnavailable, match=r"cannot create the folder .*not-a-folder"):
        Ledger(f"sqlite:///{blocker}/ledger.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://clarion:pw@db/clarion", r"SQLite or PostgreSQL, not 'mysql'.*\*\*\*"),
        ("definitely not a url", r"not a database URL; set CLARION_DATABASE_URL"),
    ],
    ids=["unsupported", "garbage"],
)
def test_a_bad_url_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as caught:
        Ledger(url)
    assert "pw@" not in str(caught.value)


def test_the_default_is_sqlite_in_clarion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "state" / "clarion"
    monkeypatch.setenv("CLARION_HOME", str(home))
    with Ledger() as ledger:
        ledger.migrate()
        assert ledger.url.get_backend_name() == "sqlite"
        assert Path(ledger.url.database or "") == (home / "clarion.db").resolve()
    assert (home / "clarion.db").is_file()


def test_clarion_database_url_overrides_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARION_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'ledger.db'}")
    with Ledger() as ledger:
        ledger.migrate()
    assert (tmp_path / "elsewhere" / "ledger.db").is_file()


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    with Ledger("postgres://clarion@127.0.0.1/clarion") as ledger:
        assert ledger.url.drivername == "postgresql+psycopg"


def test_after_the_process_exits_the_database_file_alone_holds_every_write(tmp_path: Path) -> None:
    """`clarion` leaves its heap out of the collector's last pass at exit (before_exit): the ledger's
    connections are closed at exit all the same, so SQLite folds its write-ahead log into the file."""
    database = tmp_path / "clarion.db"
    script = f"""
from clarion.base.runtime import before_exit
from clarion.ledger import Ledger

ledger = Ledger.open("sqlite:///{database}")
ledger.create_run("run-1", campaign="c", campaign_file="c.yaml", digest="d")
holder = {{"ledger": ledger}}
holder["self"] = holder  # a cycle: only the collector would have freed the ledger
del ledger
before_exit()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    wal = tmp_path / "clarion.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy"
    alone.mkdir()
    shutil.copy(database, alone / "clarion.db")  # the file without its -wal, as a backup would take it
    with closing(sqlite3.connect(alone / "clarion.db")) as copy:
        assert copy.execute("SELECT id FROM runs").fetchall() == [("run-1",)]
