"""Builders shared by the ledger tests, and the work of the child processes in the multi-process tests.

The process functions live here, in an importable module, so that `spawn` children can find them.
"""

from __future__ import annotations

from clarion.ledger import Ledger, PlannedSend, SendState, Settlement


def planned(
    count: int, channel: str = "email", *, batch_size: int = 100, start: int = 0
) -> list[PlannedSend]:
    """`count` sends to contacts c00000.., alternating variants a/b, in batches of `batch_size`."""
    return [
        PlannedSend(
            channel=channel,
            variant="ab"[seq % 2],
            contact_id=f"c{seq:05d}",
            recipient=f"c{seq:05d}",
            seq=seq,
            batch=seq // batch_size,
        )
        for seq in range(start, start + count)
    ]


def claim_and_settle(url: str, run_id: str, recipients: list[str], chunk: int) -> list[str]:
    """What one sender does: claim chunk by chunk and settle what it got. Returns what it claimed."""
    with Ledger(url) as ledger:
        got: list[str] = []
        for start in range(0, len(recipients), chunk):
            claimed = ledger.begin(run_id, "email", recipients[start : start + chunk])
            ledger.settle(
                run_id, "email", [Settlement(r, SendState.SENT, provider_id=f"p-{r}") for r in claimed]
            )
            got.extend(claimed)
        return got


def migrate_in_process(url: str) -> str:
    """Migrate from another process; returns the run count, proving the tables are usable."""
    with Ledger(url) as ledger:
        ledger.migrate()
        return str(len(ledger.list_runs()))


def plan_in_process(url: str, run_id: str, start: int, count: int) -> int:
    """What a planner in another process does: migrate, then plan an overlapping slice. Returns rows new."""
    with Ledger(url) as ledger:
        ledger.migrate()
        return ledger.plan_sends(run_id, planned(count, start=start))
