"""`clarion worker`: serve campaigns' deployments from warm processes, so an event starts sending in ~1 s.

Prefect's own runner (`flow.serve`) and its process worker start every flow run in a fresh interpreter, which
spends 2-3 s importing Prefect and Clarion before the first message can leave. This runner registers the
campaigns' deployments (no work pool: this process serves them), polls the server every POLL seconds for
their Scheduled runs that are due (or due within PREFETCH seconds: a scheduled launch waits for its slot
itself), claims each by proposing Pending (a run another runner claimed first is refused: several runners
can serve the same campaigns), and runs it with Prefect's flow engine in a process forked from a
forkserver that has already imported Prefect and the launch flow. One fresh pre-forked process per flow
run (`max_tasks_per_child=1`), so runs never share state; `limit` of them at once.

It uses the engine's own entry points (`propose_state`, `load_flow_run`, `run_flow`), what Prefect's workers
and `python -m prefect.engine` call: Prefect is pinned below 3.9 and tests/flows/test_operations.py runs
this runner end to end (events, continuations, approval from another shell, cron slots).
"""

from __future__ import annotations

import asyncio
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

POLL = 0.25  # seconds between polls for due runs
PREFETCH = 10.0  # claim scheduled runs this early; the launch waits for its slot before sending
#: What every flow run's process has imported before it is forked (this module too: it runs `execute`;
#: and what Prefect's engine imports only once a flow or task runs).
PRELOAD = [
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
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

    from clarion.flows.launch import launch

    flow_run = load_flow_run(UUID(flow_run_id))
    state = cast(State[Any], run_flow(launch, flow_run=flow_run, return_type="state"))
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

    running: set[asyncio.Future[str]] = set()
    async with get_client() as client:
        while True:
            free = slots - len(running)
            if free > 0:
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
                for run in runs:
                    try:
                        state = await propose_state(client, Pending(), flow_run_id=run.id)
                    except Abort:
                        continue  # another runner has it
                    if not state.is_pending():
                        continue
                    log.info("flow run %s (%s): starting", run.name, run.id)
                    future = loop.run_in_executor(pool, execute, str(run.id))
                    running.add(future)
                    future.add_done_callback(_finished(running))
            await asyncio.sleep(POLL)


def _finished(running: set[asyncio.Future[str]]) -> Callable[[asyncio.Future[str]], None]:
    def done(future: asyncio.Future[str]) -> None:
        running.discard(future)
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("a flow run's process failed: %s: %s", type(exc).__name__, exc)
        else:
            log.info("flow run %s", future.result())

    return done


__all__ = ["PRELOAD", "execute", "preload", "serve"]
