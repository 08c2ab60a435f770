"""Send shards: a wave's batches split across the workers of a Prefect work pool, as child flow runs.

With CLARION_SEND_POOL set, the launch flow does not send a wave's batches in its own threads: it splits
them into CLARION_SHARDS shards and starts each as a run of the `clarion-send` deployment on that pool
(`run_deployment`, a child of the launch in the Prefect UI). Any worker of the pool runs a shard; its
batches are small descriptors (where their contacts start in the file), the campaign is named by path and
digest, and the shard refuses to send if the file changed. Everything the shards share (the opening
instant, pacing, the stopped-channel breaker) goes through Redis (clarion/engine/shared.py).

Why child flow runs rather than Prefect task workers or Dask (README, Scale-out): a flow run is a durable
record with a state the launch can watch and a crash can be detected from; a killed task worker leaves its
task run Running forever, and Dask re-runs completed tasks when a worker dies, which for sends means
sending twice. Each shard keeps a lease in Redis while it runs; when a shard's lease expires (its process
or machine died) or Prefect marks it Crashed, the launch starts it again: the new attempt lists what the
dead one had in flight as uncertain and sends only what was never claimed, so no one gets a message twice.
Each attempt is named for its sending (`<run>-<step>-<shard>@<sending>.<attempt>`): its lease, and its
idempotency key, which Prefect would otherwise answer with an earlier launch's ended run (a resume).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any, cast
from uuid import UUID, uuid4

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from clarion.base.errors import ClarionError
from clarion.base.runtime import bulk_work
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import campaign_digest, load_campaign
from clarion.engine.context import RunContext
from clarion.engine.plan import Batch
from clarion.engine.send import BatchOutcome, ChannelStopped
from clarion.engine.shared import LEASE_TTL, RedisCoordination
from clarion.flows.tasks import send_batch_task
from clarion.ledger import Ledger
from clarion.messages.validate import check_kits

SETTINGS = ClarionSettings()
SEND_FLOW = "clarion-send"
SEND_DEPLOYMENT = f"{SEND_FLOW}/{SEND_FLOW}"
MAX_ATTEMPTS = 3
START_GRACE = 120.0  # seconds a shard may take to start (a worker picks it up, imports, connects)
WATCH_PATIENCE = 60.0  # seconds the launch goes on watching its shards while it cannot see them


@flow(
    name=SEND_FLOW,
    flow_run_name="{run_id}-{step}-shard-{shard}",
    task_runner=ThreadPoolTaskRunner(max_workers=SETTINGS.max_workers),  # type: ignore[arg-type]
)
def send_shard(
    campaign_path: str,
    digest: str,
    run_id: str,
    step: str,
    shard: str,
    batches: list[dict[str, Any]],
    after_crash: bool = False,
) -> None:
    """Send one shard of a wave: these batches of launch `run_id` (its own run, a rollout's or a kit's)."""
    if not SETTINGS.redis_url:
        raise ClarionError("a send shard needs CLARION_REDIS_URL (the Redis its launch coordinates through)")
    loaded = load_campaign(campaign_path)
    if campaign_digest(loaded) != digest:
        raise ClarionError(
            f"{campaign_path} changed since run {run_id} was planned: this worker sees another campaign "
            "(every worker needs the same campaign files)"
        )
    kits = {kit.name: kit_campaign for kit, kit_campaign in check_kits(loaded)}
    coordination = RedisCoordination(SETTINGS.redis_url, launch=run_id)
    plan = [Batch(**b) for b in batches]
    target = plan[0].run_id
    done = coordination.lease(target, shard)
    try:
        with bulk_work():  # the shard's batches go out from this process's threads
            run = RunContext(Ledger.open(), loaded, run_id, kits, coordination=coordination)
            if after_crash:  # the attempt before died: what it had in flight may have gone out
                run.ledger.mark_uncertain_batches(target, [(b.channel, b.number) for b in plan])
            futures: dict[PrefectFuture[BatchOutcome], Batch] = {
                send_batch_task.submit(run, batch, step): batch for batch in plan
            }
            failures = []
            for future in as_completed(list(futures)):
                try:
                    future.result(raise_on_failure=True)
                except ChannelStopped:
                    pass  # the launch reads every stopped channel from the coordination
                except Exception as exc:
                    failures.append(f"batch {futures[future].number}: {type(exc).__name__}: {exc}")
            if failures:
                raise RuntimeError("; ".join(failures[:5]))
    finally:
        done.set()


def deal(batches: list[Batch], count: int, threads: int) -> list[list[Batch]]:
    """`batches` dealt round-robin into at most `count` shards, each shard's first batch of each channel
    made one of the opening batches and put first, so that the opening instant waits for every shard that
    sends the channel (not only the one dealt its opening batch: a shard whose process started late would
    otherwise send after the others). At most `threads` openings a shard, as each
    waits in one of its threads: more would hold its other openings back until the gate's timeout."""
    shards = []
    for dealt in (batches[i::count] for i in range(count)):
        if not dealt:
            continue
        first: set[str] = set()
        openings = 0
        for j, batch in enumerate(dealt):
            if batch.opening:
                openings += 1
            elif batch.channel not in first and openings < threads:
                dealt[j] = replace(batch, opening=True)
                openings += 1
            first.add(batch.channel)
        shards.append(sorted(dealt, key=lambda b: not b.opening))  # stable: the plan's order otherwise
    return shards


class Shards:
    """The launch's side: start a wave's shards on the pool, watch them, start a dead one again."""

    def __init__(self, run: RunContext, coordination: RedisCoordination, pool: str, count: int) -> None:
        self.run, self.coordination, self.pool, self.count = run, coordination, pool, count

    def send(self, step: str, batches: list[Batch]) -> list[str]:
        """Send `batches` as shards; returns what went wrong (a shard that failed for good)."""
        from prefect.deployments import run_deployment

        shards = deal(batches, self.count, SETTINGS.max_workers)
        target = batches[0].run_id
        if opening := sum(1 for shard in shards for b in shard if b.opening):
            self.coordination.open_gate(target, opening)
        digest = campaign_digest(self.run.loaded)  # a shard checks the launch's own campaign file
        # Each attempt of each shard has a name of its own, for its lease and as Prefect's idempotency key
        # (Prefect answers a key it has seen with that flow run): this sending of the step (a resume, or a
        # step sent again for its deferred sends) is told from any before, whose shards ended, and a new
        # attempt's lease from the one of the attempt that died.
        dispatch = uuid4().hex[:8]
        attempts = dict.fromkeys(range(len(shards)), 0)
        names: dict[int, str] = {}
        runs: dict[int, UUID] = {}
        started: dict[int, float] = {}

        def start(i: int) -> None:
            attempts[i] += 1
            name = names[i] = f"{target}-{step}-{i}@{dispatch}.{attempts[i]}"
            flow_run = cast(
                FlowRun,
                run_deployment(
                    name=SEND_DEPLOYMENT,
                    parameters={
                        "campaign_path": str(self.run.loaded.path.resolve()),
                        "digest": digest,
                        "run_id": self.run.run_id,
                        "step": step,
                        "shard": name,
                        "batches": [asdict(b) for b in shards[i]],
                        "after_crash": attempts[i] > 1,
                    },
                    timeout=0,
                    as_subflow=True,
                    idempotency_key=name,
                    tags=["clarion", "shard"],
                ),
            )
            runs[i] = flow_run.id
            started[i] = time.monotonic()

        for i in range(len(shards)):
            start(i)
        return self._watch(target, names, runs, started, attempts, start)

    def _watch(
        self,
        target: str,
        names: dict[int, str],
        runs: dict[int, UUID],
        started: dict[int, float],
        attempts: dict[int, int],
        start: Any,
    ) -> list[str]:
        from httpx import HTTPError
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.states import Crashed
        from redis import RedisError

        log = get_run_logger()
        problems: list[str] = []
        leased: set[int] = set()
        pending = set(runs)

        def look(client: Any) -> None:
            for i in sorted(pending):
                flow_run = client.read_flow_run(runs[i])
                state = flow_run.state
                alive = self.coordination.alive(target, names[i])
                if alive:
                    leased.add(i)
                dead = state is not None and state.type is StateType.CRASHED
                if not dead and state is not None and not state.is_final():
                    silent = time.monotonic() - started[i]
                    if (i in leased and not alive) or (i not in leased and silent > START_GRACE):
                        client.set_flow_run_state(
                            runs[i],
                            Crashed(message=f"shard lease lost for {LEASE_TTL:.0f} s"),
                            force=True,
                        )
                        dead = True
                if dead:
                    leased.discard(i)
                    if attempts[i] >= MAX_ATTEMPTS:
                        problems.append(f"shard {i} died {attempts[i]} times; its batches wait for a resume")
                        pending.discard(i)
                    else:
                        log.warning("run %s: shard %d died; starting it again", target, i)
                        start(i)
                    continue
                if state is not None and state.is_final():
                    pending.discard(i)
                    if not state.is_completed():
                        problems.append(f"shard {i}: {state.message or state.name}")

        blind: float | None = None  # since when the launch cannot see its shards (Prefect's API, Redis)
        with get_client(sync_client=True) as client:
            while pending:
                time.sleep(1.0)
                try:
                    look(client)
                except (HTTPError, RedisError, OSError) as exc:
                    now = time.monotonic()
                    if blind is None:
                        blind = now
                        why = type(exc).__name__
                        log.warning("run %s: cannot see its shards (%s); trying again", target, why)
                    if now - blind > WATCH_PATIENCE:  # the shards go on; a resume waits for them
                        raise
                    continue
                blind = None
        return problems


__all__ = ["SEND_DEPLOYMENT", "Shards", "deal", "send_shard"]
