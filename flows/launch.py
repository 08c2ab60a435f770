"""The launch flow: plan a run, pass its approval gate, then send wave after wave (steps, deferred texts,
a rollout's second half or its Thompson waves (clarion.flows.bandit), share kits), batch by batch, and
publish the results.

The flow run loads the campaign once and opens the ledger once (a `RunContext` its tasks share). Its
parameters stay small (a campaign path and a run id; never the audience); tasks get batch descriptors, so
task runs grow with batches, not contacts. A channel that fails never stops the others. A new run of
files that validated before sends its openings while the rest is planned (clarion/flows/openings.py).

Waiting happens where it survives a restart: in a deployment, the flow schedules a continuation run of
its own deployment for the next wave and ends; run by hand (`clarion run`), it sleeps, and a resume after a
crash waits only what is left, because every due time derives from the launch instant in the ledger.

`clarion run` hands the flow the launch's `Coordination`, so that a signal can ask it to stop sending new
requests: the batches settle what is in flight and return, the flow marks the run `interrupted` and ends
(a wait for the next wave ends at once too). Deployments build their own.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from clarion.base.errors import ClarionError
from clarion.base.runtime import bulk_work
from clarion.base.settings import ClarionSettings
from clarion.campaign.kits import kit_run_id
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.campaign.model import Rollout
from clarion.engine.context import RunContext
from clarion.engine.coordination import Coordination, LocalCoordination
from clarion.engine.helpers import Helpers
from clarion.engine.outcome import ChildOutcome, RolloutOutcome, RunOutcome
from clarion.engine.plan import Batch
from clarion.engine.schedule import (
    LAUNCHED,
    ROLLOUT,
    RolloutDecision,
    Wave,
    child_runs,
    decide_rollout,
    rollout_run_id,
    sequential_rollout,
    utcnow,
    waves,
)
from clarion.engine.send import BatchOutcome, ChannelStopped
from clarion.engine.shared import RedisCoordination
from clarion.engine.spawn import wanted
from clarion.flows.approval import approval_gate
from clarion.flows.artifacts import artifact_key, publish_results, publish_rollout
from clarion.flows.bandit import finish_waves, wave_plan
from clarion.flows.naming import flow_run_name, resolve_run_id, schedule_slot
from clarion.flows.openings import Openings
from clarion.flows.shard import Shards
from clarion.flows.tasks import plan_task, send_batch_task
from clarion.ledger import Ledger, RunStatus
from clarion.ledger.results import ChannelVariantResult, format_reasons, run_results
from clarion.messages.validate import check_kits

SETTINGS = ClarionSettings()
#: Waits shorter than this are slept through even in a deployment (a continuation run costs seconds).
SLEEP_WITHIN = timedelta(seconds=SETTINGS.sleep_within)
PREFETCH_WAIT = 300.0  # a scheduled run started this early (or less) waits for its slot before sending
#: A step's progress artifact is updated at most this often (and when the step ends): each update is a
#: request to the Prefect server from the flow's thread, about 12 ms holding the interpreter beside the
#: send threads; twenty of them were 0.25 s of an 8-second 100,000-email run.
PROGRESS_EVERY = 1.0
#: A launch about to wait this long or longer (a later step; any approval gate, whose answer comes when a
#: person gives it) lets its local send helpers go meanwhile (about 100 MB each); the next wave starts new
#: ones (about a second's start-up, while the launch's own threads send).
IDLE_HELPERS = 30.0


@flow(
    name="clarion-launch",
    flow_run_name=flow_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=SETTINGS.max_workers),  # type: ignore[arg-type]
    validate_parameters=True,
)
def launch(
    campaign_path: str,
    run_id: str | None = None,
    resend_uncertain: bool = False,
    trigger: dict[str, Any] | None = None,
    approved_by: str | None = None,
    retry_failed: bool = False,
    coordination: Coordination | None = None,
) -> RunOutcome:
    """Send one campaign run: every channel of a wave at the same moment; returns per channel x variant
    results. `run_id` None derives it from the schedule slot or the triggering event (`trigger`), so the
    same slot or event never starts the campaign twice. `retry_failed` (a resume) sends again the failures
    whose provider answer proves the message was not taken, the rollout's and the kits' too.
    `coordination`: in-process callers only (the object `clarion run` asks to stop on a signal); None
    builds one for this flow run (`coordination_for`)."""
    loaded = load_campaign(campaign_path)
    kits = {kit.name: kit_campaign for kit, kit_campaign in check_kits(loaded)}
    slot = schedule_slot(run_id, trigger)
    run_id = resolve_run_id(loaded.campaign.name, run_id, trigger)
    run = RunContext(
        Ledger.open(), loaded, run_id, kits, coordination=coordination or coordination_for(run_id)
    )
    try:
        run.warm()  # credentials and SDKs first: a missing key stops the run before it is planned
        run.helpers = start_helpers(run)  # before planning: they start up while this process plans
        return _launch(run, slot, resend_uncertain, retry_failed, approved_by)
    finally:
        if run.helpers is not None:
            run.helpers.close()
        run.ledger.close()  # its pooled connections end with the flow run (an in-process caller goes on)


def _launch(
    run: RunContext,
    slot: datetime | None,
    resend_uncertain: bool,
    retry_failed: bool,
    approved_by: str | None,
) -> RunOutcome:
    """The launch once its context (and any helpers) is there: plan, pass the gate, send wave after wave."""
    openings = Openings.begin(run, slot)
    try:
        return _launch_planned(run, slot, resend_uncertain, retry_failed, approved_by, openings)
    finally:
        if openings is not None:  # a launch that ends early (stopped, failed) stops its planning too
            openings.end()


def _launch_planned(
    run: RunContext,
    slot: datetime | None,
    resend_uncertain: bool,
    retry_failed: bool,
    approved_by: str | None,
    openings: Openings | None,
) -> RunOutcome:
    """`_launch` with its planning begun in a thread (`openings`), or not yet begun (None)."""
    loaded, run_id = run.loaded, run.run_id
    if openings is not None:
        batches, later = openings.first()
    else:
        batches, later = plan_task(run, run_id, resend_uncertain, retry_failed=retry_failed), False
    store = run.ledger
    helpers = _Resting(run)
    verdict = approval_gate(run, approved_by, waiting=helpers.rest)
    if verdict is not None:  # rejected or expired: nothing was sent, nothing will be
        store.set_run_status(run_id, verdict[0], error=verdict[1])
        publish_results(store, run_id, [], {})
        return RunOutcome(run_id, verdict[0].value)
    store.set_run_status(run_id, RunStatus.RUNNING)
    _not_before(slot)
    launched = datetime.fromisoformat(store.decide(run_id, LAUNCHED, utcnow().isoformat()))
    kit_channels = {name: tuple(k.campaign.channels) for name, k in run.kits.items()}
    plan = waves(loaded.campaign, launched, kit_channels)
    sending = _Waves(run, batches, retry_failed, launched)
    if later:  # the first step's openings go now; the rest of it when planning ends (the loop below)
        assert openings is not None
        get_run_logger().info("run %s: its openings go while the rest of its contacts are planned", run_id)
        sending.first_done = openings.sent  # through the gate, all of them: planning goes on
        if todo := sending.due(plan[0]):
            sending.send(plan[0], todo)
        openings.sent()
        if why := run.coordination.stop_requested():
            return _interrupted(run, why)
        sending.batches[run_id] = openings.rest()
    begun: set[str] = set()  # waves gone out, a sequential rollout's before its max_wait among them
    while True:
        now, sent = utcnow(), False
        for wave in (w for w in plan if w.at <= now or sending.decided_early(w, now)):
            if run.coordination.stop_requested():
                break
            if wave.name not in begun:  # its first time: a rollout's or a kit's run is planned in `due`
                begun.add(wave.name)
                helpers.wake()
            todo = sending.due(wave)
            if todo:
                helpers.wake()  # a past wave's sends deferred to local hours, say
                sending.send(wave, todo)
                sent = True
        if why := run.coordination.stop_requested():
            return _interrupted(run, why)
        wake = _next_wake(store, run_id, plan, now, set(sending.errors), begun)
        look = sending.next_look(plan)
        if look is not None and (wake is None or look < wake):
            wake = max(look, now)
        if wake is None or (wake <= now and not sent):
            break
        if _continue_later(loaded, run_id, wake):
            store.set_run_status(run_id, RunStatus.WAITING)
            results = run_results(store, run_id)
            publish_results(store, run_id, results, sending.errors)
            return RunOutcome(run_id, "waiting", results, sending.errors, next=wake)
        delay = (wake - utcnow()).total_seconds()
        if delay >= IDLE_HELPERS:
            helpers.rest()
        if delay > 0:
            get_run_logger().info("run %s: next wave at %s (in %.0f s)", run_id, wake.isoformat(), delay)
            if run.coordination.wait_for_stop(delay):
                return _interrupted(run, run.coordination.stop_requested() or "stopped")
    return _finish(run, sending, helpers)


class _Resting:
    """A launch's local send helpers let go while it waits long (`IDLE_HELPERS`), and started again for the
    next wave; what the helpers did before they rested is kept for the run's outcome."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.resting = False
        self.taken: Counter[str] = Counter()  # batches and rows of the helpers let go
        self.wrote: Counter[str] = Counter()

    def rest(self) -> None:
        helpers = self.run.helpers
        if helpers is None:
            return
        self.taken.update(helpers.board.taken)
        self.wrote.update(helpers.board.wrote)
        self.run.helpers = None
        helpers.close()
        self.resting = True
        get_run_logger().info("run %s: its send helpers rest while it waits", self.run.run_id)

    def wake(self) -> None:
        if self.resting:
            self.resting = False
            self.run.helpers = start_helpers(self.run, check=False)  # planned: nothing left to validate

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Batches each helper took and rows each wrote, over the launch (before and after any rest)."""
        taken, wrote = Counter(self.taken), Counter(self.wrote)
        if self.run.helpers is not None:
            taken.update(self.run.helpers.board.taken)
            wrote.update(self.run.helpers.board.wrote)
        return {k: n for k, n in taken.items() if n}, {k: n for k, n in wrote.items() if n}


def start_helpers(run: RunContext, check: bool = True) -> Helpers | None:
    """This machine's send helpers for a launch sending from this process (CLARION_SEND_HELPERS), started;
    None when there are none (a send pool's shards, a small audience, one core). `check`: on SQLite, the
    first validates files that never did while the launch plans (`Helpers.start`; on PostgreSQL a helper
    plans half of a new run instead)."""
    if not isinstance(run.coordination, LocalCoordination):
        return None
    setting = ClarionSettings().send_helpers  # read now: a test or an embedding process may change it
    count = wanted(setting, run.loaded)
    if not count:
        return None
    url = run.ledger.url
    check = check and url.get_backend_name() != "postgresql"
    helpers: Helpers | None = None
    try:
        helpers = Helpers(run.coordination, count)
        helpers.start(run.loaded.path, run.run_id, url.render_as_string(hide_password=False), check=check)
    except OSError as exc:  # a helper is a speed-up: without one, the launch sends everything itself
        get_run_logger().warning("run %s: no send helper (%s); sending from this process", run.run_id, exc)
        if helpers is not None:
            helpers.close()
        return None
    return helpers


def coordination_for(run_id: str) -> Coordination:
    """A new launch's coordination: in this process (threads), or shared through Redis with the shards of
    a send pool (its stopped channels, stop request and in-flight count reset: a resume tries again)."""
    if not SETTINGS.send_pool:
        return LocalCoordination()
    if not SETTINGS.redis_url:
        raise ClarionError(
            f"CLARION_SEND_POOL={SETTINGS.send_pool!r} sends this launch's batches on several workers, which "
            "must share the run's pacing, stopped channels and opening instant: set CLARION_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0), or unset CLARION_SEND_POOL to send from this process"
        )
    shared = RedisCoordination(SETTINGS.redis_url, launch=run_id)
    shared.restart(run_id)
    return shared


def _interrupted(run: RunContext, why: str) -> RunOutcome:
    """Asked to stop: the run (and any child run it was sending) is `interrupted`, resumable as it is.

    The ledger first: publishing to Prefect may fail when its server went down with the signal."""
    store, run_id = run.ledger, run.run_id
    for child in child_runs(run.loaded.campaign, run_id):
        if (record := store.get_run(child)) is not None and not record.status.finished:
            store.set_run_status(child, RunStatus.INTERRUPTED, error=why)
    store.set_run_status(run_id, RunStatus.INTERRUPTED, error=why)
    results = run_results(store, run_id)
    try:
        publish_results(store, run_id, results, {})
    except Exception as exc:  # the Prefect server may be gone: the ledger already holds the truth
        get_run_logger().warning("run %s: results not published to Prefect: %s", run_id, type(exc).__name__)
    return RunOutcome(run_id, RunStatus.INTERRUPTED.value, results)


class _Waves:
    """The batches of a launch's runs (its own, a rollout's, its kits') and what stopped their channels."""

    def __init__(
        self,
        run: RunContext,
        batches: list[Batch],
        retry_failed: bool = False,
        launched: datetime | None = None,
    ) -> None:
        self.run = run
        self.launched = launched or utcnow()
        self._look = 1  # a sequential rollout's next look, counted in check_every from the launch
        self._early: RolloutDecision | None = None
        self.retry_failed = retry_failed  # a resume's --retry-failed reaches the rollout and kit runs too
        self.batches: dict[str, list[Batch]] = {run.run_id: batches}  # target run id -> its batches
        self.errors: dict[str, list[str]] = {}  # channel key -> why it stopped
        self.warmed = False  # the report's statistics are loading beside the sending
        self.first_done: Callable[[], None] | None = None  # called once, when a wave's first batch is done
        #: each target run's results as read at the end of its last wave (a million sends take a second
        #: to count): the launch's end reuses them, unless a wave of that run began since
        self._results: dict[str, list[ChannelVariantResult]] = {}

    def due(self, wave: Wave) -> list[Batch]:
        """The batches of `wave` that have sends due now (after its condition skipped whoever acted), but
        for channels that stopped (they wait for a resume)."""
        run, store = self.run, self.run.ledger
        target = wave.target(run.run_id)
        self._results.pop(target, None)  # this wave may skip or send some of the run's sends
        if target not in self.batches:  # a kit, the rollout or a Thompson wave: planned when its wave comes
            rollout_of = None
            if wave.rollout:
                rollout_of = (run.run_id, self._decide_rollout())
            allocated = wave_plan(run, wave.bandit) if wave.bandit is not None else None
            self.batches[target] = plan_task(run, target, False, rollout_of, self.retry_failed, allocated)
            store.set_run_status(target, RunStatus.RUNNING)
        store.decide(run.run_id, f"wave:{wave.name}", utcnow().isoformat())  # when it began, for the record
        if wave.only_if is not None:
            for channel in wave.channels:
                skipped = store.skip_engaged(target, channel, wave.only_if, machines=self._machines(target))
                if skipped:
                    get_run_logger().info(
                        "step %s: %d %s contacts already acted", wave.name, skipped, channel
                    )
        due = {channel: set(store.batches(target, channel)) for channel in wave.channels}
        return [
            b
            for b in self.batches[target]
            if b.channel in due
            and b.number in due[b.channel]
            and _channel_key(wave, b.channel) not in self.errors
        ]

    def _machines(self, target: str) -> set[int]:
        """Contacts whose every click was a scanner's: a step's `not_clicked` still reaches them."""
        from clarion.analysis.clicks import Rules, automated_clickers

        store = self.run.ledger
        record = store.get_run(target)
        rules = Rules.from_options((record.options if record else {}).get("automated_clicks"))
        return automated_clickers(store.link_hits(target), store.delivered_times(target), rules)

    def _sequential(self) -> Rollout | None:
        rollout = self.run.loaded.campaign.rollout
        return rollout if rollout is not None and rollout.decide == "sequential" else None

    def decided_early(self, wave: Wave, now: datetime) -> bool:
        """A sequential rollout's wave is due before `max_wait` once the always-valid test names a winner,
        read every `check_every` (reading it more often would be valid too; it would only cost queries)."""
        rollout = self._sequential()
        if not wave.rollout or rollout is None:
            return False
        run = self.run
        if self._early is not None or rollout_run_id(run.run_id) in self.batches:
            return True
        record = run.ledger.get_run(run.run_id)
        if record is not None and ROLLOUT in (record.decisions or {}):
            return True  # decided before a resume
        if now < self.launched + self._look * rollout.check_every:
            return False
        while self.launched + self._look * rollout.check_every <= now:
            self._look += 1
        self._early = sequential_rollout(run.ledger, run.run_id, run.loaded.campaign, rollout)
        if self._early is None:
            get_run_logger().info("run %s: the always-valid test does not decide yet", run.run_id)
        return self._early is not None

    def next_look(self, plan: list[Wave]) -> datetime | None:
        """When a sequential rollout that has not decided looks next (None otherwise)."""
        rollout = self._sequential()
        if rollout is None or self._early is not None or rollout_run_id(self.run.run_id) in self.batches:
            return None
        look = self.launched + self._look * rollout.check_every
        latest = next((w.at for w in plan if w.rollout), None)
        return look if latest is None or look < latest else None

    def _decide_rollout(self) -> str:
        run = self.run
        campaign = run.loaded.campaign
        assert campaign.rollout is not None
        decision = self._early or decide_rollout(run.ledger, run.run_id, campaign, campaign.rollout)
        recorded = run.ledger.decide(run.run_id, ROLLOUT, decision.as_dict())
        get_run_logger().info(
            "run %s: rollout sends %s: %s", run.run_id, recorded["winner"], recorded["text"]
        )
        publish_rollout(run.run_id, recorded)
        return str(recorded["winner"])

    def send(self, wave: Wave, todo: list[Batch]) -> None:
        """Every batch of the wave at once; each channel's opening batches meet at the run's gate."""
        coordination = self.run.coordination
        if isinstance(coordination, RedisCoordination):  # on the send pool's workers, as shards
            assert SETTINGS.send_pool is not None  # watching them is not bulk work: collected as usual
            shards = Shards(self.run, coordination, SETTINGS.send_pool, SETTINGS.shards)
            for problem in shards.send(wave.name, todo):  # a shard that failed for good: its channels wait
                for channel in sorted({b.channel for b in todo}):
                    self._stopped(wave, channel, problem)
            self._after(wave, todo)
            return
        with bulk_work():  # the batches go out from this process's threads
            self._send_here(wave, todo)

    def _send_here(self, wave: Wave, todo: list[Batch]) -> None:
        run, target, coordination = self.run, todo[0].run_id, self.run.coordination
        opening = sum(1 for b in todo if b.opening)
        if 0 < opening <= SETTINGS.max_workers:  # each waits in a worker thread: more would stall the pool
            coordination.open_gate(target, opening)
        if run.helpers is not None:  # the helpers take batches from the back while these tasks go
            run.helpers.board.post(todo)
        futures: dict[PrefectFuture[BatchOutcome], Batch] = {
            send_batch_task.submit(run, batch, wave.name): batch for batch in todo
        }
        progress = cast(  # after the submissions: nothing stands between the launch and the first batches
            UUID,
            create_progress_artifact(
                progress=0.0,
                key=artifact_key(f"progress-{wave.name}", run.run_id),
                description=f"Clarion run {run.run_id}, step {wave.name}: batches sent",
            ),
        )
        _tag_flow_run([f"step:{wave.name}", *(f"channel:{c}" for c in sorted({b.channel for b in todo}))])
        shown = time.monotonic()
        for done, future in enumerate(as_completed(list(futures)), start=1):
            batch = futures[future]
            if not self.warmed:  # a batch is done, so the openings went out: nothing left to slow down
                self.warmed = True
                _warm_report()
            if (first_done := self.first_done) is not None:
                self.first_done = None
                first_done()
            now = time.monotonic()
            if done == len(futures) or (
                done % max(1, len(futures) // 20) == 0 and now - shown >= PROGRESS_EVERY
            ):
                update_progress_artifact(progress, progress=100.0 * done / len(futures))
                shown = now
            try:  # waits for the task's final state (the state seen first may not be final yet)
                future.result(raise_on_failure=True)
            except ChannelStopped as exc:
                self._stopped(wave, batch.channel, str(exc))
            except Exception as exc:  # a task's crash is reported beside the others' results
                self._stopped(wave, batch.channel, f"batch {batch.number}: {type(exc).__name__}: {exc}")
        if run.helpers is not None:
            run.helpers.board.withdraw()
        self._after(wave, todo)

    def _after(self, wave: Wave, todo: list[Batch]) -> None:
        """Every channel the wave stopped, the gate closed, the step's table in the UI."""
        run, target, coordination = self.run, todo[0].run_id, self.run.coordination
        # a channel stopped by its last chunks has no batch left to raise ChannelStopped: ask
        for channel in sorted({b.channel for b in todo}):
            why = coordination.stopped(target, channel)
            if why is not None:
                self._stopped(wave, channel, why)
        coordination.close_gate(target)
        rows = [
            {**r.as_dict(), "reasons": format_reasons(r.reasons)}
            for r in self._results_after_wave(target)
            if r.channel in wave.channels
        ]
        create_table_artifact(
            key=artifact_key(f"step-{wave.name}", run.run_id),
            table=rows,
            description=f"Clarion run {run.run_id}, step {wave.name}: per channel x variant",
        )

    def _results_after_wave(self, target: str) -> list[ChannelVariantResult]:
        results = self._results[target] = run_results(self.run.ledger, target)
        return results

    def results(self, target: str) -> list[ChannelVariantResult]:
        """A run's results: as its last wave left them, or read now."""
        found = self._results.get(target)
        return found if found is not None else run_results(self.run.ledger, target)

    def _stopped(self, wave: Wave, channel: str, why: str) -> None:
        found = self.errors.setdefault(_channel_key(wave, channel), [])
        if why not in found:
            found.append(why)


def _channel_key(wave: Wave, channel: str) -> str:
    """Errors are kept per channel; a share kit's channels are apart from the campaign's own."""
    return f"kit-{wave.kit}:{channel}" if wave.kit else channel


def _finish(run: RunContext, sending: _Waves, helpers: _Resting) -> RunOutcome:
    """Every wave sent (or its channels stopped): the runs' final states, published."""
    store, run_id, errors = run.ledger, run.run_id, sending.errors
    status = RunStatus.COMPLETED if not errors else RunStatus.FAILED
    store.set_run_status(
        run_id, status, error="; ".join(e for v in errors.values() for e in v)[:2000] or None
    )
    results = sending.results(run_id)  # nothing of the run changed since its last wave counted them
    publish_results(store, run_id, results, errors)
    outcome = RunOutcome(run_id, status.value, results, errors, waves=finish_waves(run, status))
    outcome.helpers, outcome.helper_rows = helpers.counts()  # empty when the launch had none
    if run.loaded.campaign.rollout is not None and run.loaded.campaign.rollout.strategy == "fixed":
        child = rollout_run_id(run_id)
        decision = store.decisions(run_id).get(ROLLOUT, {})
        child_results = []
        if store.get_run(child) is not None:
            store.set_run_status(child, status)
            child_results = sending.results(child)
            publish_results(store, child, child_results, {})
        outcome.rollout = RolloutOutcome(
            child,
            child_results,
            winner=str(decision.get("winner", "")),
            decided=bool(decision.get("decided", False)),
            text=str(decision.get("text", "")),
            metric=str(decision.get("metric", "")),
        )
    for name in run.kits:
        child = kit_run_id(run_id, name)
        if store.get_run(child) is None:
            continue
        failed = [e for key, v in errors.items() if key.startswith(f"kit-{name}:") for e in v]
        store.set_run_status(child, RunStatus.FAILED if failed else RunStatus.COMPLETED)
        child_results = sending.results(child)
        publish_results(store, child, child_results, {})
        outcome.kits[name] = ChildOutcome(child, child_results)
    return outcome


def _warm_report() -> None:
    """Load the report's modules (its statistics, formats and templates) beside the sending, which mostly
    waits on the network and the ledger, instead of after it: the run's results are published the moment
    its last batch settles."""

    def load() -> None:
        with contextlib.suppress(Exception):  # publishing imports it again, and reports any failure
            importlib.import_module("clarion.analysis.report")

    threading.Thread(target=load, name="clarion-warm-report", daemon=True).start()


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
    store: Ledger, run_id: str, plan: list[Wave], now: datetime, stopped: set[str], begun: set[str]
) -> datetime | None:
    """When something is next due: a later wave, or a send deferred to a contact's local hours. A wave
    that went out before its time (`begun`: a sequential rollout decided early) is not waited for again."""
    times = [w.at for w in plan if w.at > now and w.name not in begun]
    started = [w for w in plan if w.at <= now or w.name in begun]
    for wave in started:
        target = wave.target(run_id)
        if store.get_run(target) is None:
            continue
        deferred = store.next_due(target, [c for c in wave.channels if _channel_key(wave, c) not in stopped])
        if deferred is not None:
            times.append(max(deferred, now))
    return min(times) if times else None


def _continue_later(loaded: LoadedCampaign, run_id: str, wake: datetime) -> bool:
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
        parameters={"campaign_path": str(loaded.path), "run_id": run_id},
        scheduled_time=wake,
        timeout=0,
        idempotency_key=f"{run_id}@{wake.astimezone(UTC).isoformat()}",
        tags=["clarion", "continuation"],
        as_subflow=False,  # a run of its own in the UI, named by the run id, not a child of this one
    )
    get_run_logger().info("run %s: continues at %s in a scheduled run", run_id, wake.isoformat())
    return True


__all__ = ["launch"]
