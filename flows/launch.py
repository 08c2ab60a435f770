"""The launch flow: plan a run, pass its approval gate, then send wave after wave (steps, deferred texts,
a rollout's second half), batch by batch, and publish the results.

Parameters stay small (a campaign path and a run id; never the audience). Tasks get batch descriptors,
so task runs grow with batches, not contacts. A channel that fails never stops the others.

Waiting happens where it survives a restart: in a deployment, the flow schedules a continuation run of
its own deployment for the next wave and ends; run by hand (`clarion run`), it sleeps, and a resume after a
crash waits only what is left, because every due time derives from the launch instant in the ledger.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from clarion.base.settings import ClarionSettings
from clarion.campaign.kits import check_kits, kit_run_id
from clarion.engine.plan import Batch, plan_run
from clarion.engine.schedule import LAUNCHED, ROLLOUT, Wave, decide_rollout, rollout_run_id, utcnow, waves
from clarion.engine.send import (
    BatchOutcome,
    ChannelStopped,
    close_gate,
    loaded_campaign,
    open_gate,
    restart_channels,
    send_batch,
    stopped_reason,
    warm_up,
)
from clarion.flows.approval import approval_gate
from clarion.flows.artifacts import artifact_key, publish_report
from clarion.flows.naming import flow_run_name, resolve_run_id, schedule_slot
from clarion.ledger import Ledger, RunStatus
from clarion.ledger.results import format_reasons, run_results

MAX_WORKERS = int(os.environ.get("CLARION_MAX_WORKERS", "8"))
#: Waits shorter than this are slept through even in a deployment (a continuation run costs seconds).
SLEEP_WITHIN = timedelta(seconds=float(os.environ.get("CLARION_SLEEP_WITHIN", "120")))
PREFETCH_WAIT = 300.0  # a scheduled run started this early (or less) waits for its slot before sending


@lru_cache(maxsize=4)
def _ledger(url: str) -> Ledger:
    ledger = Ledger(url)
    ledger.migrate()
    return ledger


def ledger() -> Ledger:
    """This process's ledger, on CLARION_DATABASE_URL or the SQLite file in CLARION_HOME."""
    return _ledger(ClarionSettings().ledger_url())


@task(name="plan", task_run_name="plan-{run_id}")
def plan_task(
    campaign_path: str, run_id: str, resend_uncertain: bool, rollout_of: tuple[str, str] | None = None
) -> list[Batch]:
    plan = plan_run(ledger(), campaign_path, run_id, resend_uncertain=resend_uncertain, rollout_of=rollout_of)
    logger = get_run_logger()
    logger.info("%s run %s: %d batches", "resumed" if plan.resumed else "planned", run_id, len(plan.batches))
    return plan.batches


@task(name="send-batch", task_run_name="{step}-{batch.channel}-batch-{batch.number}")
def send_batch_task(campaign_path: str, batch: Batch, step: str) -> BatchOutcome:
    """One batch. Untagged on purpose: Prefect acquires tag concurrency slots for every tagged task run,
    which held some channels' first batches back ~2 s at launch; the name carries step and channel, and
    the flow run is tagged with them (`_tag_flow_run`)."""
    return send_batch(ledger(), campaign_path, batch)


@flow(
    name="clarion-launch",
    flow_run_name=flow_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),  # type: ignore[arg-type]
    validate_parameters=True,
)
def launch(
    campaign_path: str,
    run_id: str | None = None,
    resend_uncertain: bool = False,
    trigger: dict[str, Any] | None = None,
    approved_by: str | None = None,
) -> dict[str, Any]:
    """Send one campaign run: every channel of a wave at the same moment; returns per channel x variant
    results. `run_id` None derives it from the schedule slot or the triggering event (`trigger`), so the
    same slot or event never starts the campaign twice."""
    slot = schedule_slot(run_id, trigger)
    run_id = resolve_run_id(campaign_path, run_id, trigger)
    store = ledger()
    restart_channels(run_id)
    warm_up(campaign_path)  # credentials and SDKs first: a missing key stops the run before it is planned
    batches = plan_task(campaign_path, run_id, resend_uncertain)
    campaign = loaded_campaign(campaign_path).campaign
    kits = {kit.name: loaded for kit, loaded in check_kits(loaded_campaign(campaign_path))}
    verdict = approval_gate(store, campaign_path, run_id, approved_by)
    if verdict is not None:  # rejected or expired: nothing was sent, nothing will be
        store.set_run_status(run_id, verdict[0], error=verdict[1])
        _publish(run_id, [], {})
        return {"run_id": run_id, "status": verdict[0].value, "results": [], "errors": {}}
    store.set_run_status(run_id, RunStatus.RUNNING)
    _not_before(slot)
    launched = datetime.fromisoformat(store.decide(run_id, LAUNCHED, utcnow().isoformat()))
    plan = waves(campaign, launched, {name: tuple(k.campaign.channels) for name, k in kits.items()})
    errors: dict[str, list[str]] = {}
    rollout_batches: list[Batch] = []
    kit_batches: dict[str, list[Batch]] = {}
    while True:
        now, sent = utcnow(), False
        for wave in (w for w in plan if w.at <= now):
            path = str(kits[wave.kit].path) if wave.kit else campaign_path
            todo = _prepare(path, run_id, wave, batches, rollout_batches, kit_batches)
            # a stopped channel waits for a resume
            todo = [b for b in todo if _channel_key(wave, b.channel) not in errors]
            if todo:
                _send_wave(path, run_id, wave, todo, errors)
                sent = True
        wake = _next_wake(store, run_id, plan, now, set(errors))
        if wake is None or (wake <= now and not sent):
            break
        if _continue_later(campaign_path, run_id, wake):
            store.set_run_status(run_id, RunStatus.WAITING)
            _publish(run_id, run_results_dicts(store, run_id), errors)
            return {"run_id": run_id, "status": "waiting", "next": wake.isoformat(), "errors": errors}
        delay = (wake - utcnow()).total_seconds()
        if delay > 0:
            get_run_logger().info("run %s: next wave at %s (in %.0f s)", run_id, wake.isoformat(), delay)
            time.sleep(delay)
    status = RunStatus.COMPLETED if not errors else RunStatus.FAILED
    store.set_run_status(
        run_id, status, error="; ".join(e for v in errors.values() for e in v)[:2000] or None
    )
    results = run_results_dicts(store, run_id)
    _publish(run_id, results, errors)
    out: dict[str, Any] = {"run_id": run_id, "status": status.value, "results": results, "errors": errors}
    if campaign.rollout is not None:
        child = rollout_run_id(run_id)
        out["rollout"] = {**store.decisions(run_id).get(ROLLOUT, {}), "run_id": child}
        child_status = RunStatus.COMPLETED if not errors else RunStatus.FAILED
        if store.get_run(child) is not None:
            store.set_run_status(child, child_status)
            _publish(child, run_results_dicts(store, child), {})
            out["rollout"]["results"] = run_results_dicts(store, child)
    if kits:
        out["kits"] = {}
        for name in kits:
            child = kit_run_id(run_id, name)
            if store.get_run(child) is None:
                continue
            failed = [e for key, v in errors.items() if key.startswith(f"kit-{name}:") for e in v]
            store.set_run_status(child, RunStatus.FAILED if failed else RunStatus.COMPLETED)
            _publish(child, run_results_dicts(store, child), {})
            out["kits"][name] = {"run_id": child, "results": run_results_dicts(store, child)}
    return out


def _channel_key(wave: Wave, channel: str) -> str:
    """Errors are kept per channel; a share kit's channels are apart from the campaign's own."""
    return f"kit-{wave.kit}:{channel}" if wave.kit else channel


def run_results_dicts(store: Ledger, run_id: str) -> list[dict[str, Any]]:
    return [r.as_dict() for r in run_results(store, run_id)]


def _prepare(
    campaign_path: str,
    run_id: str,
    wave: Wave,
    batches: list[Batch],
    rollout_batches: list[Batch],
    kit_batches: dict[str, list[Batch]],
) -> list[Batch]:
    """The batches of `wave` that have sends due now (after its condition skipped whoever already acted).

    `campaign_path` is the wave's own file: the campaign's, or a share kit's."""
    store = ledger()
    target = run_id
    source = batches
    if wave.kit is not None:
        target = kit_run_id(run_id, wave.kit)
        if wave.kit not in kit_batches:
            kit_batches[wave.kit] = plan_task(campaign_path, target, False)
            store.set_run_status(target, RunStatus.RUNNING)
        source = kit_batches[wave.kit]
    elif wave.rollout:
        target = rollout_run_id(run_id)
        if not rollout_batches:
            campaign = loaded_campaign(campaign_path).campaign
            assert campaign.rollout is not None
            decision = store.decide(
                run_id, ROLLOUT, decide_rollout(store, run_id, campaign, campaign.rollout).as_dict()
            )
            get_run_logger().info(
                "run %s: rollout sends %s: %s", run_id, decision["winner"], decision["text"]
            )
            _publish_rollout(run_id, decision)
            rollout_batches.extend(plan_task(campaign_path, target, False, (run_id, decision["winner"])))
            store.set_run_status(target, RunStatus.RUNNING)
        source = rollout_batches
    store.decide(run_id, f"wave:{wave.name}", utcnow().isoformat())  # when it began, for the record
    if wave.only_if is not None:
        for channel in wave.channels:
            skipped = store.skip_engaged(target, channel, wave.only_if)
            if skipped:
                get_run_logger().info("step %s: %d %s contacts already acted", wave.name, skipped, channel)
    due = {channel: set(store.batches(target, channel)) for channel in wave.channels}
    return [b for b in source if b.channel in due and b.number in due[b.channel]]


def _send_wave(
    campaign_path: str, run_id: str, wave: Wave, todo: list[Batch], errors: dict[str, list[str]]
) -> None:
    target = todo[0].run_id
    opening = sum(1 for b in todo if b.opening)
    if 0 < opening <= MAX_WORKERS:  # each waits in a worker thread: more than the pool holds would stall
        open_gate(target, opening)
    futures: dict[PrefectFuture[BatchOutcome], Batch] = {}
    for batch in todo:
        futures[send_batch_task.submit(campaign_path, batch, wave.name)] = batch
    progress = cast(  # after the submissions: nothing stands between the launch and the first batches
        UUID,
        create_progress_artifact(
            progress=0.0,
            key=artifact_key(f"progress-{wave.name}", run_id),
            description=f"Clarion run {run_id}, step {wave.name}: batches sent",
        ),
    )
    _tag_flow_run([f"step:{wave.name}", *(f"channel:{c}" for c in sorted({b.channel for b in todo}))])
    for done, future in enumerate(as_completed(list(futures)), start=1):
        batch = futures[future]
        if done == len(futures) or done % max(1, len(futures) // 20) == 0:
            update_progress_artifact(progress, progress=100.0 * done / len(futures))
        key = _channel_key(wave, batch.channel)
        problem = None
        try:  # waits for the task's final state (the state seen first may not be final yet)
            future.result(raise_on_failure=True)
        except ChannelStopped as exc:
            problem = str(exc)
        except Exception as exc:  # a task's crash is reported beside the others' results
            problem = f"batch {batch.number}: {type(exc).__name__}: {exc}"
        if problem is not None and problem not in errors.get(key, []):
            errors.setdefault(key, []).append(problem)
    # a channel stopped by its last chunks has no batch left to raise ChannelStopped: ask
    for channel in sorted({b.channel for b in todo}):
        why = stopped_reason(target, channel)
        key = _channel_key(wave, channel)
        if why is not None and why not in errors.get(key, []):
            errors.setdefault(key, []).append(why)
    close_gate(target)
    rows = [
        {k: (format_reasons(v) if k == "reasons" else v) for k, v in r.items()}
        for r in run_results_dicts(ledger(), target)
        if r["channel"] in wave.channels
    ]
    create_table_artifact(
        key=artifact_key(f"step-{wave.name}", run_id),
        table=rows,
        description=f"Clarion run {run_id}, step {wave.name}: per channel x variant",
    )


def _tag_flow_run(tags: list[str]) -> None:
    """Add tags to this flow run (the UI filters by them); a failure to tag never stops a send."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(str(flow_run.id)))
            merged = sorted(set(current.tags) | {"clarion", *tags})
            if set(merged) != set(current.tags):
                client.update_flow_run(UUID(str(flow_run.id)), tags=merged)
    except Exception as exc:  # tagging is for people, not for the run
        get_run_logger().warning("could not tag the flow run: %s", exc)


def _not_before(slot: datetime | None) -> None:
    """A scheduled launch never sends before its slot: workers start scheduled runs a few seconds early
    (prefetch), which is when planning and the checks happen; the first message waits for the slot."""
    if slot is None:
        return
    early = (slot - utcnow()).total_seconds()
    if 0 < early <= PREFETCH_WAIT:
        get_run_logger().info("waiting %.1f s for the scheduled time %s", early, slot.isoformat())
        time.sleep(early)


def _next_wake(
    store: Ledger, run_id: str, plan: list[Wave], now: datetime, stopped: set[str]
) -> datetime | None:
    """When something is next due: a later wave, or a send deferred to a contact's local hours."""
    times = [w.at for w in plan if w.at > now]
    started = [w for w in plan if w.at <= now]
    for wave in started:
        target = rollout_run_id(run_id) if wave.rollout else run_id
        if wave.kit is not None:
            target = kit_run_id(run_id, wave.kit)
        if store.get_run(target) is None:
            continue
        deferred = store.next_due(target, [c for c in wave.channels if _channel_key(wave, c) not in stopped])
        if deferred is not None:
            times.append(max(deferred, now))
    return min(times) if times else None


def _continue_later(campaign_path: str, run_id: str, wake: datetime) -> bool:
    """In a deployment, and the wait is long: schedule this run's continuation there, and end this one."""
    from prefect.runtime import deployment, flow_run

    deployment_id = deployment.id
    if not deployment_id or wake - utcnow() <= SLEEP_WITHIN:
        return False
    scheduled = flow_run.scheduled_start_time
    if isinstance(scheduled, datetime) and scheduled >= wake:
        # this is the continuation for `wake`, started a moment early (runners prefetch scheduled runs):
        # scheduling it again would find itself by its idempotency key, and the run would stop there
        return False
    from prefect.deployments import run_deployment

    run_deployment(
        name=deployment_id,
        parameters={"campaign_path": campaign_path, "run_id": run_id},
        scheduled_time=wake,
        timeout=0,
        idempotency_key=f"{run_id}@{wake.astimezone(UTC).isoformat()}",
        tags=["clarion", "continuation"],
        as_subflow=False,  # a run of its own in the UI, named by the run id, not a child of this one
    )
    get_run_logger().info("run %s: continues at %s in a scheduled run", run_id, wake.isoformat())
    return True


def _publish_rollout(run_id: str, decision: dict[str, Any]) -> None:
    verb = "won" if decision["decided"] else "is the fallback"
    create_markdown_artifact(
        key=artifact_key("rollout", run_id),
        markdown=(
            f"# Rollout of {run_id}\n\n**{decision['winner']}** {verb} "
            f"({decision['metric']}).\n\n{decision['text']}\n\n"
            f"The rest of the audience gets {decision['winner']} in run `{rollout_run_id(run_id)}`; "
            "the holdout gets nothing.\n"
        ),
        description=f"Clarion run {run_id}: the rollout's decision",
    )


def _publish(run_id: str, results: list[dict[str, Any]], errors: dict[str, list[str]]) -> None:
    publish_report(ledger(), run_id)
    rows = [{k: (format_reasons(v) if k == "reasons" else v) for k, v in r.items()} for r in results]
    create_table_artifact(
        key=artifact_key("results", run_id),
        table=rows,
        description=f"Clarion run {run_id}: per channel x variant",
    )
    if errors:
        lines = "\n".join(f"- **{cid}**: {e}" for cid, errs in errors.items() for e in errs[:5])
        create_markdown_artifact(markdown=f"# Channel errors in {run_id}\n\n{lines}\n")


__all__ = ["launch", "ledger"]
