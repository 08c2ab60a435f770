"""The launch's tasks: planning a run, and sending one batch (in the launch's threads, or a shard's).

Both get the launch's `RunContext` (the campaign loaded once, the ledger, the adapters, the coordination)
and small descriptors; `cache_policy=NONE`: Prefect need not hash a context to cache what must never be
cached (a send).
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from clarion.engine.bandit import WavePlan
from clarion.engine.context import RunContext
from clarion.engine.helpers import Helpers
from clarion.engine.plan import Batch, Opener, PlanningStopped, plan_run
from clarion.engine.send import BatchOutcome, send_batch


@task(name="plan", task_run_name="plan-{run_id}", cache_policy=NONE)
def plan_task(
    run: RunContext,
    run_id: str,
    resend_uncertain: bool,
    rollout_of: tuple[str, str] | None = None,
    retry_failed: bool = False,
    wave: WavePlan | None = None,
    opener: Opener | None = None,
) -> list[Batch]:
    try:
        plan = plan_run(
            run.ledger,
            run.campaign(run_id),
            run_id,
            resend_uncertain=resend_uncertain,
            retry_failed=retry_failed,
            rollout_of=rollout_of,
            wave=wave,
            writer=run.helpers.writer(run.ledger) if run.helpers is not None else None,
            opener=opener,
            checker=run.helpers.check if run.helpers is not None else None,
        )
    except PlanningStopped as exc:  # the launch sent its openings, then was asked to stop: a resume plans on
        get_run_logger().info("%s", exc)
        return []
    logger = get_run_logger()
    logger.info("%s run %s: %d batches", "resumed" if plan.resumed else "planned", run_id, len(plan.batches))
    return plan.batches


@task(name="send-batch", task_run_name="{step}-{batch.channel}-batch-{batch.number}", cache_policy=NONE)
def send_batch_task(run: RunContext, batch: Batch, step: str) -> BatchOutcome:
    """One batch. Untagged on purpose: Prefect acquires tag concurrency slots for every tagged task run,
    which held some channels' first batches back ~2 s at launch; the name carries step and channel, and
    the flow run is tagged with them (`_tag_flow_run`). A batch a local send helper took is sent there, and
    this task waits for its answer (clarion/engine/helpers.py)."""
    helpers: Helpers | None = run.helpers
    if helpers is None:
        return send_batch(run, batch)
    return helpers.send(run, batch)


__all__ = ["plan_task", "send_batch_task"]
