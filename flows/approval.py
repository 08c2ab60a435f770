"""The approval gate: after planning and rendering, before anything is sent, the flow run pauses with a
Prefect RunInput form showing the pre-flight checks, the counts and a preview of every message; one
approver says go (or no), from the Prefect UI or from any shell with `clarion approve|reject RUN_ID`.
Unanswered for `approval.timeout`, the run expires and sends nothing.

The decision is kept in the ledger, so a resumed run does not ask twice.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from clarion.campaign.kits import load_kits
from clarion.engine.approval import APPROVAL, approver_allowed, preflight, preview_markdown
from clarion.engine.schedule import utcnow
from clarion.engine.send import loaded_campaign
from clarion.flows.artifacts import artifact_key
from clarion.ledger import Ledger, RunStatus

POLL_SECONDS = int(os.environ.get("CLARION_APPROVAL_POLL", "2"))


class ApprovalInput(RunInput):
    """What an approver answers (the Prefect UI shows it as a form)."""

    approved: bool
    approver: str
    reason: str = ""


def approval_gate(
    store: Ledger, campaign_path: str, run_id: str, approved_by: str | None
) -> tuple[RunStatus, str] | None:
    """None: go on and send. Otherwise the run's final status and why (rejected, expired)."""
    loaded = loaded_campaign(campaign_path)
    gate = loaded.campaign.approval
    if gate is None or not gate.required:
        return None
    logger = get_run_logger()
    recorded = store.decisions(run_id).get(APPROVAL)
    if recorded is None and approved_by:
        if not approver_allowed(gate, approved_by):
            return (
                RunStatus.CANCELLED,
                f"{approved_by!r} is not one of the approvers ({', '.join(gate.approvers)})",
            )
        recorded = store.decide(run_id, APPROVAL, _decision(True, approved_by, "approved when launched"))
    if recorded is None:
        kits = [kit for _, kit in load_kits(loaded)]
        checks = preflight(loaded, store, run_id, kits)
        markdown = preview_markdown(loaded, store, run_id, checks)
        create_markdown_artifact(
            key=artifact_key("approval", run_id),
            markdown=markdown,
            description=f"Clarion run {run_id}: what the approver is asked to send",
        )
        failed = [c for c in checks if not c.ok]
        if failed:
            reason = "pre-flight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            return RunStatus.FAILED, reason
        store.set_run_status(run_id, RunStatus.AWAITING_APPROVAL)
        logger.info(
            "run %s waits for approval (%s) for %s: `clarion approve %s` or the Prefect UI",
            run_id,
            ", ".join(gate.approvers) or "anyone",
            gate.timeout,
            run_id,
        )
        try:
            answer = pause_flow_run(
                wait_for_input=ApprovalInput.with_initial_data(
                    description=markdown, approved=False, approver=""
                ),
                timeout=int(gate.timeout.total_seconds()),
                poll_interval=POLL_SECONDS,
                key=f"approval-{run_id}",
            )
        except FlowPauseTimeout:
            store.decide(run_id, APPROVAL, {"approved": False, "expired": True, "at": utcnow().isoformat()})
            return RunStatus.EXPIRED, f"no approval within {gate.timeout}: nothing was sent"
        approver = answer.approver.strip()
        if answer.approved and not approver_allowed(gate, approver):
            return (
                RunStatus.CANCELLED,
                f"{approver!r} is not one of the approvers ({', '.join(gate.approvers)})",
            )
        recorded = store.decide(run_id, APPROVAL, _decision(answer.approved, approver, answer.reason))
    if recorded.get("approved"):
        logger.info("run %s approved by %s", run_id, recorded.get("by"))
        return None
    if recorded.get("expired"):
        return RunStatus.EXPIRED, "the approval expired: nothing was sent"
    return (
        RunStatus.CANCELLED,
        f"rejected by {recorded.get('by')}: {recorded.get('reason') or 'no reason given'}",
    )


def _decision(approved: bool, by: str, reason: str) -> dict[str, Any]:
    return {"approved": approved, "by": by, "reason": reason, "at": utcnow().isoformat()}


__all__ = ["ApprovalInput", "approval_gate"]
