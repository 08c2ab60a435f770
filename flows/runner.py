"""`clarion worker`: serve campaigns' deployments from warm processes, so an event starts sending in ~1 s.

Prefect's own runner (`flow.serve`) and its process worker start every flow run in a fresh interpreter, which
spends 2-3 s importing Prefect and Clarion before the first message can leave. This runner registers the
campaigns' deployments (no work pool: this process serves them), looks for their Scheduled runs that are
due (or due within PREFETCH seconds: a scheduled launch waits for its slot itself) as soon as the server's
event stream announces one (`prefect.flow-run.Scheduled`), and every HEARD_POLL seconds in case an event
was missed (every POLL seconds while the stream cannot be heard), claims each by proposing Pending (a run
another runner claimed first is refused: several runners can serve the same campaigns), and runs it with
Prefect's flow engine in a process forked from a forkserver that has already imported Prefect and the
launch flow. One fresh pre-forked process per flow run (`max_tasks_per_child=1`), so runs never share
state; `limit` of them at once (a run's end frees its slot and looks again at once).

It uses the engine's own entry points (`propose_state`, `load_flow_run`, `run_flow`), what Prefect's workers
and `python -m prefect.engine` call: Prefect is pinned below 3.9 and tests/flows/test_operations.py runs
this runner end to end (events, continuations, approval from another shell, cron slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from prefect.client.schemas.objects import State
from prefect.deployments.runner import RunnerDeployment

log = logging.getLogger("clarion.worker")

POLL = 0.25  # seconds between polls for due runs, while the server's events cannot be heard
HEARD_POLL = 1.0  # ... while they can: a Scheduled flow run's event wakes the poll at once
RELISTEN = 30.0  # seconds before a lost event subscription is tried again
PREFETCH = 10.0  # claim scheduled runs this early; the launch waits for its slot before sending
#: What every flow run's process has imported before it is forked (this module too: it runs `execute`;
#: and what Prefect's engine imports only once a flow or task runs).
PRELOAD = [
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "clarion.flows.heartbeat",
    "clarion.flows.launch",
    "clarion.flows.runner",
]


def preload(providers: set[str]) -> list[str]:
    """PRELOAD and, for each provider, its adapter and what a launch imports lazily to send on it
    (`Channel.preload`: X's tweepy and text rules took ~1 s of an event's way to its first message)."""
    from clarion import channels

    modules = list(PRELOAD)
    for provider in sorted(providers):
        adapter = channels.get(provider)
        modules += [adapter.__module__, *adapter.preload]
    return list(dict.fromkeys(modules))


def execute(flow_run_id: str) -> str:
    """Run one claimed flow run of the launch flow, in a pre-forked process."""
    from prefect.flow_engine import load_flow_run, run_flow

    from clarion.flows.heartbeat import prompt_heartbeats
    from clarion.flows.launch import launch

    flow_run = load_flow_run(UUID(flow_run_id))
    with prompt_heartbeats(launch) as launching:  # the slot is free when the run ends, not up to 1 s on
        state = cast(State[Any], run_flow(launching, flow_run=flow_run, return_type="state"))
    return f"{flow_run_id} {state.type.value}"


async def serve(
    deployments: list[RunnerDeployment], *, limit: int | None = None, modules: list[str] | None = None
) -> None:
    """Register `deployments` and run their due flow runs until SIGINT or SIGTERM. `modules`: what the
    flow runs' processes import before they are forked (default PRELOAD; `preload(providers)`)."""
    slots = limit or 4
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(modules or PRELOAD)
    pool = ProcessPoolExecutor(slots, mp_context=context, max_tasks_per_child=1)
    # the processes forked (their imports done) before the deployments and their triggers exist: once an
    # event can start a run, a warm process is waiting for it
    await asyncio.get_running_loop().run_in_executor(None, lambda: list(pool.map(abs, range(slots))))
    ids = [UUID(str(await cast(Awaitable[UUID], deployment.apply()))) for deployment in deployments]
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await _poll(loop, pool, ids, slots)
    except asyncio.CancelledError:
        pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # claimed runs finish; nothing new is claimed


async def _poll(
    loop: asyncio.AbstractEventLoop, pool: ProcessPoolExecutor, ids: list[UUID], slots: int
) -> None:
    from prefect import get_client

    running: set[asyncio.Future[str]] = set()
    wake, listening = asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(_listen(ids, wake, listening))
    try:
        async with get_client() as client:
            while True:
                wake.clear()  # before reading: a run scheduled while we read wakes the next round
                if (free := slots - len(running)) > 0:
                    for run_id in await _claim_due(client, ids, free):
                        future = loop.run_in_executor(pool, execute, str(run_id))
                        running.add(future)
                        future.add_done_callback(_finished(running, wake))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), HEARD_POLL if listening.is_set() else POLL)
                if listener.done():
                    listening.clear()
                    listener = asyncio.create_task(_listen(ids, wake, listening, after=RELISTEN))
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)  # its socket closed before the loop ends


async def _claim_due(client: Any, ids: list[UUID], free: int) -> list[UUID]:
    """Claim (propose Pending) up to `free` of the deployments' Scheduled runs that are due or nearly."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import Abort
    from prefect.states import Pending
    from prefect.types._datetime import now
    from prefect.utilities.engine import propose_state

    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                before_=now("UTC") + timedelta(seconds=PREFETCH)
            ),
        ),
        limit=free,
        sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,  # explicit: the 3.8 server refuses null
    )
    claimed = []
    for run in runs:
        try:
            state = await propose_state(client, Pending(), flow_run_id=run.id)
        except Abort:
            continue  # another runner has it
        if state.is_pending():
            log.info("flow run %s (%s): starting", run.name, run.id)
            claimed.append(run.id)
    return claimed


async def _listen(ids: list[UUID], wake: asyncio.Event, listening: asyncio.Event, after: float = 0.0) -> None:
    """Set `wake` whenever the server says one of the deployments has a new Scheduled flow run (an
    automation answering an event, `prefect deployment run`, a schedule's slot), so that the run starts
    without waiting for the next poll. `listening` is set while subscribed; a lost subscription ends this
    (the poll goes on every POLL seconds) and is tried again after RELISTEN seconds."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    await asyncio.sleep(after)
    served = {f"prefect.deployment.{i}" for i in ids}
    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
        related=EventRelatedFilter(id=sorted(served)),
    )
    try:
        async with get_events_subscriber(filter=wanted, reconnection_attempts=2) as events:
            listening.set()
            async for event in events:
                # the 3.8 server's stream applies the event names, not the related resources: ours only
                if any(resource.id in served for resource in event.related):
                    wake.set()
    except Exception as exc:  # whatever ends it, the poll goes on without it
        say = log.debug if after else log.warning  # said once; the retries every RELISTEN s, quietly
        say("not hearing the server's events (%s: %s); polling every %ss", type(exc).__name__, exc, POLL)


def _finished(
    running: set[asyncio.Future[str]], wake: asyncio.Event
) -> Callable[[asyncio.Future[str]], None]:
    def done(future: asyncio.Future[str]) -> None:
        running.discard(future)
        wake.set()  # a slot is free: a due run that found none waits no longer than this
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("a flow run's process failed: %s: %s", type(exc).__name__, exc)
        else:
            log.info("flow run %s", future.result())

    return done


__all__ = ["PRELOAD", "execute", "preload", "serve"]
