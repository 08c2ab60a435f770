"""The ledger's mistakes a person can act on; each is a `ClarionError`, shown without a traceback."""

from __future__ import annotations

from clarion.base.errors import ClarionError


class LedgerError(ClarionError):
    """Something about the send ledger (its database, or a run in it) that the user can fix."""


class RunNotFound(LedgerError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} in the ledger; `clarion runs` lists the runs it holds")


class RunExists(LedgerError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} already exists in the ledger; resume it with --run-id {run_id}, "
            "or start a new run without --run-id"
        )


class DatabaseUnavailable(LedgerError):
    """The ledger's database cannot be opened or reached; the URL in the message never shows a password."""


class LedgerNotMigrated(LedgerError):
    """The database is reachable but its ledger tables are missing or older than this Clarion."""
