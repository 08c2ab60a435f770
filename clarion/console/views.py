"""What the console's pages show, read from the ledger: plain data for the templates.

Every function runs in a worker thread (the ledger is synchronous) and returns dicts and lists, so the live
stream can render the same fragments the page was first drawn with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clarion.base import addresses
from clarion.base.errors import ClarionError
from clarion.engine.waiting import APPROVAL_REQUEST, Explainer
from clarion.ledger import Ledger, RunRecord, RunStatus
from clarion.ledger.results import channel_totals, run_results

RUNS_SHOWN = 30
SKEW_WINDOW = timedelta(seconds=60)  # channels whose first message came this close to the first one's


@dataclass
class Views:
    """The console's reads on one ledger (one per app; the explainer keeps loaded campaigns)."""

    ledger: Ledger

    def __post_init__(self) -> None:
        self.explainer = Explainer(self.ledger)

    def runs(self) -> list[dict[str, Any]]:
        return [self._run_row(record) for record in self.ledger.list_runs(limit=RUNS_SHOWN)]

    def _run_row(self, record: RunRecord) -> dict[str, Any]:
        waits = self.explainer.explain(record.id) if _may_wait(record.status) else None
        channels = []
        for channel, t in channel_totals(run_results(self.ledger, record.id)).items():
            deferred = waits.deferred_count(channel) if waits else 0
            channels.append(
                {
                    "channel": channel,
                    "planned": t.planned,
                    "due": t.due,
                    "sent": t.sent,
                    "deferred": deferred,
                    "waiting": max(t.pending - deferred, 0),
                    "failed": t.failed,
                    "uncertain": t.uncertain,
                    "skipped": t.skipped,
                    "deferred_text": waits.channel_text(channel, limit=1) if waits else "",
                }
            )
        return {
            "id": record.id,
            "campaign": record.campaign,
            "status": str(record.status),
            "created_at": _when(record.created_at),
            "error": record.error,
            "channels": channels,
            "skew": self.skew(record.id),
            "waits": waits.lines() if waits else [],
            "awaiting_approval": record.status is RunStatus.AWAITING_APPROVAL,
        }

    def run(self, run_id: str) -> dict[str, Any] | None:
        record = self.ledger.get_run(run_id)
        return None if record is None else self._run_row(record)

    def skew(self, run_id: str) -> dict[str, Any] | None:
        """When each channel's first message went, from the first one; the spread of those that opened
        the run together (within SKEW_WINDOW: later steps start later on purpose)."""
        first = self.ledger.first_sent(run_id)
        if not first:
            return None
        start = min(first.values())
        together = {c: at for c, at in first.items() if at - start <= SKEW_WINDOW}
        spread = max(together.values()) - start
        return {
            "channels": [
                {"channel": c, "after_ms": round((at - start).total_seconds() * 1000)}
                for c, at in sorted(first.items(), key=lambda item: item[1])
            ],
            "skew_ms": round(spread.total_seconds() * 1000),
            "opened": len(together),
        }

    def report(self, run_id: str) -> dict[str, Any] | None:
        """The run's report (build_report) with its charts' geometry, or None before anything was sent."""
        from clarion.analysis.report import build_report, page_context

        report = build_report(self.ledger, run_id)
        if not any(row.sent for channel in report.channels for row in channel.rows):
            return None
        return page_context(report)

    def approvals(self, user: str) -> list[dict[str, Any]]:
        """Runs waiting at their approval gate, with what their approvers are asked."""
        waiting = [r for r in self.ledger.list_runs(limit=200) if r.status is RunStatus.AWAITING_APPROVAL]
        return [self.approval(record, user) for record in waiting]

    def approval(self, record: RunRecord, user: str) -> dict[str, Any]:
        request = dict(record.decisions.get(APPROVAL_REQUEST) or {})
        waits = self.explainer.explain(record.id)
        approvers = list(waits.approval.approvers) if waits.approval else request.get("approvers", [])
        expires = waits.approval.expires if waits.approval else None
        return {
            "id": record.id,
            "campaign": record.campaign,
            "request": request,
            "approvers": approvers,
            "expires": _when(expires) if expires else None,
            "may_answer": bool(user) and (not approvers or user in approvers),
        }

    def lookup(self, raw: str) -> dict[str, Any]:
        """Whether an address is suppressed, for which kind of message, since when and why."""
        raw = raw.strip()
        try:
            kind = addresses.kind_of(raw)
            address = addresses.suppression_form(kind, raw)
        except ClarionError as exc:
            return {"error": str(exc), "address": raw}
        found = self.ledger.suppression(kind.value, address)
        result: dict[str, Any] = {
            "error": None,
            "address": address,
            "kind": kind.value,
            "suppressed": False,
            "lifted": None,
        }
        if found is not None:
            result.update(
                suppressed=found.active,
                reason=found.reason,
                source=found.source,
                detail=found.detail,
                since=_when(found.created_at),
                lifted=_when(found.lifted_at) if found.lifted_at else None,
            )
        return result

    def counts(self) -> dict[str, int]:
        return self.ledger.suppression_counts()


def _may_wait(status: RunStatus) -> bool:
    return status in (
        RunStatus.RUNNING,
        RunStatus.WAITING,
        RunStatus.AWAITING_APPROVAL,
        RunStatus.INTERRUPTED,
        RunStatus.PLANNED,
    )


def _when(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["Views"]
