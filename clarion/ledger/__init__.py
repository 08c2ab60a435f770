"""The send ledger: what was planned, claimed and sent, per run, channel and recipient.

    ledger = Ledger()            # CLARION_DATABASE_URL, else SQLite in CLARION_HOME (.clarion/clarion.db)
    ledger.migrate()
    ledger.create_run(run_id, campaign=..., campaign_file=..., digest=...)
    ledger.plan_sends(run_id, planned)                 # idempotent
    claimed = ledger.begin(run_id, "email", ids)       # committed before the provider is called
    ledger.settle(run_id, "email", settlements)

See store.py for the guarantees, database.py for how SQLite and PostgreSQL are set up.
"""

from clarion.ledger.bulk import PLAN_ROWS
from clarion.ledger.errors import DatabaseUnavailable, LedgerError, LedgerNotMigrated, RunExists, RunNotFound
from clarion.ledger.events import Click, Conversion, Engagement, Outside, ProviderEvent, run_key_hex
from clarion.ledger.rows import (
    RESENDABLE,
    DueSend,
    PlannedSend,
    RunRecord,
    RunStatus,
    SendFields,
    SendReason,
    SendRow,
    SendState,
    Settlement,
    SummaryRow,
)
from clarion.ledger.store import Ledger
from clarion.ledger.suppressions import Suppression

__all__ = [
    "PLAN_ROWS",
    "RESENDABLE",
    "Click",
    "Conversion",
    "DatabaseUnavailable",
    "DueSend",
    "Engagement",
    "Ledger",
    "LedgerError",
    "LedgerNotMigrated",
    "Outside",
    "PlannedSend",
    "ProviderEvent",
    "RunExists",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "SendFields",
    "SendReason",
    "SendRow",
    "SendState",
    "Settlement",
    "SummaryRow",
    "Suppression",
    "run_key_hex",
]
