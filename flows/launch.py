"""The launch flow: plan a run, then send every channel at once, batch by batch, and publish the results.

Parameters stay small (a campaign path and a run id; never the audience). Tasks get batch descriptors,
so task runs grow with batches, not contacts. A channel that fails never stops the others.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import ThreadPoolTaskRunner

from clarion.dispatch import (
    BatchOutcome,
    ChannelStopped,
    open_gate,
    restart_channels,
    send_batch,
    warm_up,
)
from clarion.ledger import Ledger, RunStatus
from clarion.plan import Batch, plan_run
from clarion.results import format_reasons, run_results
from clarion.settings import ClarionSettings

MAX_WORKERS = int(os.environ.get("CLARION_MAX_WORKERS", "8"))


@lru_cache(maxsize=4)
def _ledger(url: str) -> Ledger:
    ledger = Ledger(url)
    ledger.migrate()
    return ledger


def ledger() -> Ledger:
    """This process's ledger, on CLARION_DATABASE_URL or the SQLite file in CLARION_HOME."""
    return _ledger(ClarionSettings().ledger_url())


@task(name="plan", task_run_name="plan-{run_id}")
def plan_task(campaign_path: str, run_id: str, resend_uncertain: bool) -> list[Batch]:
    plan = plan_run(ledger(), campaign_path, run_id, resend_uncertain=resend_uncertain)
    logger = get_run_logger()
    logger.info("%s run %s: %d batches", "resumed" if plan.resumed else "planned", run_id, len(plan.batches))
    return plan.batches


@task(name="send-batch", task_run_name="{batch.channel}-batch-{batch.number}")
def send_batch_task(campaign_path: str, batch: Batch) -> BatchOutcome:
    return send_batch(ledger(), campaign_path, batch)


def _artifact_key(run_id: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in f"results-{run_id}".lower())[:100]


@flow(
    name="clarion-launch",
    flow_run_name="{run_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),  # type: ignore[arg-type]
    validate_parameters=True,
)
def launch(campaign_path: str, run_id: str, resend_uncertain: bool = False) -> dict[str, Any]:
    """Send one campaign run to every channel at the same moment; returns per channel x variant results."""
    store = ledger()
    restart_channels(run_id)
    warm_up(campaign_path)  # credentials and SDKs first: a missing key stops the run before it is planned
    batches = plan_task(campaign_path, run_id, resend_uncertain)
    store.set_run_status(run_id, RunStatus.RUNNING)
    opening = sum(1 for b in batches if b.opening)
    if opening <= MAX_WORKERS:  # each waits in a worker thread: more than the pool holds would stall
        open_gate(run_id, opening)
    futures: list[tuple[Batch, PrefectFuture[BatchOutcome]]] = []
    for batch in batches:
        sender = send_batch_task.with_options(tags=["clarion", f"channel:{batch.channel}"])
        futures.append((batch, sender.submit(campaign_path, batch)))
    wait([f for _, f in futures])
    errors: dict[str, list[str]] = {}
    for batch, future in futures:
        if future.state.is_failed():
            try:
                future.result(raise_on_failure=True)
            except ChannelStopped as exc:
                if str(exc) not in errors.get(batch.channel, []):
                    errors.setdefault(batch.channel, []).append(str(exc))
            except Exception as exc:  # a task's crash is reported beside the others' results
                errors.setdefault(batch.channel, []).append(
                    f"batch {batch.number}: {type(exc).__name__}: {exc}"
                )
    results = [r.as_dict() for r in run_results(store, run_id)]
    status = RunStatus.COMPLETED if not errors else RunStatus.FAILED
    store.set_run_status(
        run_id, status, error="; ".join(e for v in errors.values() for e in v)[:2000] or None
    )
    _publish(run_id, results, errors)
    return {"run_id": run_id, "status": status.value, "results": results, "errors": errors}


def _publish(run_id: str, results: list[dict[str, Any]], errors: dict[str, list[str]]) -> None:
    rows = [{k: (format_reasons(v) if k == "reasons" else v) for k, v in r.items()} for r in results]
    create_table_artifact(
        key=_artifact_key(run_id),
        table=rows,
        description=f"Clarion run {run_id}: per channel x variant",
    )
    if errors:
        lines = "\n".join(f"- **{cid}**: {e}" for cid, errs in errors.items() for e in errs[:5])
        create_markdown_artifact(markdown=f"# Channel errors in {run_id}\n\n{lines}\n")


__all__ = ["launch", "ledger"]
