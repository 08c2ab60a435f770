"""A run's results per channel x variant, read from the ledger (the source of truth for what was sent)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clarion.ledger import Ledger, SendState


@dataclass
class ChannelVariantResult:
    channel: str
    variant: str
    planned: int = 0  # every send the plan holds, whatever became of it
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    pending: int = 0  # planned, not attempted yet (a run that stopped early)
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "variant": self.variant,
            "planned": self.planned,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "uncertain": self.uncertain,
            "pending": self.pending,
            "reasons": dict(sorted(self.reasons.items())),
        }


_COUNTED = {
    SendState.SENT: "sent",
    SendState.FAILED: "failed",
    SendState.SKIPPED: "skipped",
    SendState.UNCERTAIN: "uncertain",
    SendState.PLANNED: "pending",
    SendState.IN_FLIGHT: "uncertain",
}


def run_results(ledger: Ledger, run_id: str) -> list[ChannelVariantResult]:
    table: dict[tuple[str, str], ChannelVariantResult] = {}
    for row in ledger.summary(run_id):
        key = (row.channel, row.variant)
        entry = table.setdefault(key, ChannelVariantResult(row.channel, row.variant))
        entry.planned += row.count
        name = _COUNTED[SendState(row.state)]
        setattr(entry, name, getattr(entry, name) + row.count)
        if row.reason and name in ("sent", "failed", "skipped", "uncertain"):  # sent: reconciled
            entry.reasons[f"{name}: {row.reason}"] += row.count
    return [table[key] for key in sorted(table)]


@dataclass
class ChannelTotals:
    """One channel's counts over its variants (what progress bars and `clarion status` show)."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    pending: int = 0

    @property
    def due(self) -> int:
        """What the channel is to send: planned, less who was skipped (no address, opted out...)."""
        return self.planned - self.skipped

    @property
    def done(self) -> int:
        """What reached an end: sent, failed or uncertain."""
        return self.sent + self.failed + self.uncertain


def channel_totals(results: Iterable[ChannelVariantResult]) -> dict[str, ChannelTotals]:
    """Per-channel totals of per channel x variant results, in the results' order."""
    totals: dict[str, ChannelTotals] = {}
    for r in results:
        t = totals.setdefault(r.channel, ChannelTotals())
        t.planned += r.planned
        t.sent += r.sent
        t.failed += r.failed
        t.skipped += r.skipped
        t.uncertain += r.uncertain
        t.pending += r.pending
    return totals


def format_reasons(reasons: dict[str, int]) -> str:
    """`{"skipped: no_address": 194}` as people read it in a table: `skipped: no_address (194)`."""
    return "; ".join(f"{reason} ({n:,})" for reason, n in sorted(reasons.items()))
