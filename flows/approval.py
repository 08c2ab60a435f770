"""The approval gate: after planning and rendering, before anything is sent, the flow run pauses with a
Prefect RunInput form showing the pre-flight checks, the counts and a preview of every message; one
approver says go (or no), from the Prefect UI or from any shell with `clarion approve|reject RUN_ID`.
Unanswered for `approval.timeout`, the run expires and sends nothing.

The decision is kept in the ledger, so a resumed run does not ask twice. `answer()` is the other end:
`clarion approve|reject` find the paused flow run on the Prefect server and resume it with the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings
from clarion.engine.context import RunContext
from clarion.engine.preflight import APPROVAL, approval_request, preflight, preview_markdown
from clarion.engine.schedule import utcnow
from clarion.engine.waiting import APPROVAL_REQUEST
from clarion.flows.artifacts import artifact_key
from clarion.ledger import RunStatus


class ApprovalInput(RunInput):
    """What an approver answers (the Prefect UI shows it as a form)."""

    approved: bool
    approver: str
    reason: str = ""


def approval_gate(
    run: RunContext, approved_by: str | None, waiting: Callable[[], None] | None = None
) -> tuple[RunStatus, str] | None:
    """None: go on and send. Otherwise the run's final status and why (rejected, expired). `waiting` is
    called when the run is about to wait for an approver (the launch lets its idle send helpers go)."""
    store, loaded, run_id = run.ledger, run.loaded, run.run_id
    gate = loaded.campaign.approval
    if gate is None or not gate.required:
        return None
    logger = get_run_logger()
    recorded = store.decisions(run_id).get(APPROVAL)
    if recorded is None and approved_by:
        if not gate.allows(approved_by):
            return (
                RunStatus.CANCELLED,
                f"{approved_by!r} is not one of the approvers ({', '.join(gate.approvers)})",
            )
        recorded = store.decide(run_id, APPROVAL, _decision(True, approved_by, "approved when launched"))
    if recorded is None:
        checks = preflight(run)
        request = approval_request(run, checks, utcnow())
        store.note(run_id, APPROVAL_REQUEST, request)  # what the console shows the approvers
        markdown = preview_markdown(request)
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
        if waiting is not None:
            waiting()
        try:
            answer = pause_flow_run(
                wait_for_input=ApprovalInput.with_initial_data(
                    description=markdown, approved=False, approver=""
                ),
                timeout=int(gate.timeout.total_seconds()),
                poll_interval=int(ClarionSettings().approval_poll),
                key=f"approval-{run_id}",
            )
        except FlowPauseTimeout:
            store.decide(run_id, APPROVAL, {"approved": False, "expired": True, "at": utcnow().isoformat()})
            return RunStatus.EXPIRED, f"no approval within {gate.timeout}: nothing was sent"
        approver = answer.approver.strip()
        if answer.approved and not gate.allows(approver):
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


def answer(run_id: str, *, approved: bool, approver: str, reason: str = "") -> dict[str, Any]:
    """Resume the paused launch of `run_id` with an answer; ClarionError saying why when it cannot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ClarionError(
            "approving needs the Prefect server the run waits on: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api) in this shell"
        )
    flow_filter = FlowRunFilter(
        name=FlowRunFilterName(any_=[run_id]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    )
    with get_client(sync_client=True) as client:
        # an explicit sort: the 3.8 client sends `null` by default, which the 3.8 server refuses (422)
        paused = client.read_flow_runs(flow_run_filter=flow_filter, sort=FlowRunSort.START_TIME_DESC, limit=5)
    if not paused:
        raise ClarionError(
            f"no launch of run {run_id!r} is waiting for approval on {PREFECT_API_URL.value()} "
            "(check the id with `clarion runs`; an expired or answered run cannot be approved)"
        )
    values = {"approved": approved, "approver": approver, "reason": reason}
    try:
        resume_flow_run(paused[0].id, run_input=values)
    except FlowPauseTimeout:
        raise ClarionError(f"run {run_id!r} can no longer be approved: its approval timed out") from None
    return {"run_id": run_id, "flow_run_id": str(paused[0].id), **values}


__all__ = ["ApprovalInput", "answer", "approval_gate"]
