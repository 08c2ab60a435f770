"""A new launch's openings sent while the rest of its audience is planned (clarion.engine.plan.Opener).

A launch plans every contact before it sends: a million contacts take tens of seconds. When nothing found
while planning can stop the run (its files validated before, or the send helper `clarion run` asked to
validate them found them valid meanwhile; no approval gate, no slot still ahead, a first step at the launch
instant with no condition, a new run, sent from this process), `Openings` plans it in a thread of its own:
the launch (clarion/flows/launch.py) sends the posts and each channel's first batch as soon as their rows
are committed, and the rest of the first step when planning ends.
"""

from __future__ import annotations

import contextvars
import threading
from datetime import datetime

from clarion.engine.context import RunContext
from clarion.engine.coordination import LocalCoordination
from clarion.engine.plan import Batch
from clarion.engine.schedule import utcnow
from clarion.flows.tasks import plan_task

#: A launch that sends its openings before planning ends lets them go alone, planning paused, until the
#: first of them is done, or this long (the openings of a paced channel take longer)
OPENINGS_ALONE = 2.0


class Openings:
    """A new launch planned in a thread of its own, so that the first step's openings (the posts and each
    channel's first batch) go as soon as they are planned, not after the last contact
    (clarion.engine.plan.Opener): a million contacts take tens of seconds to plan.

    Only where nothing can stop the run once it is planning: the campaign's files validated before, or a
    send helper validating them found them valid (else planning renders and checks every message itself,
    and hands nothing early: clarion.engine.plan.Checker), no approval gate, no slot still ahead, a first
    step at the launch instant with no condition, a new run (a resume plans what is left before it
    sends), sent from this process (a send pool's shards open as before)."""

    def __init__(self, run: RunContext, channels: frozenset[str]) -> None:
        self.channels = channels
        self._coordination = run.coordination
        self._cond = threading.Condition()
        self._openings: list[Batch] | None = None
        self._planned: list[Batch] | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._sent = threading.Event()
        context = contextvars.copy_context()  # the flow run's: planning is a task run of this flow run
        self._thread = threading.Thread(
            target=context.run, args=(self._plan, run), name="clarion-planning", daemon=True
        )
        self._thread.start()

    @classmethod
    def begin(cls, run: RunContext, slot: datetime | None) -> Openings | None:
        """Planning started in its thread, or None where the launch plans first and then sends."""
        campaign = run.loaded.campaign
        first, gate = campaign.step_plan()[0], campaign.approval
        if (
            not isinstance(run.coordination, LocalCoordination)
            or (gate is not None and gate.required)
            or (slot is not None and slot > utcnow())
            or first.after
            or first.only_if is not None
            or run.ledger.get_run(run.run_id) is not None
        ):
            return None
        return cls(run, frozenset(first.channels))

    def _plan(self, run: RunContext) -> None:
        try:
            planned = plan_task(run, run.run_id, False, opener=self)
        except BaseException as exc:  # raised again in the flow's thread (`rest`)
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        else:
            with self._cond:
                self._planned = planned
                self._cond.notify_all()

    def opened(self, batches: list[Batch]) -> None:
        """Planning's thread hands the openings, then waits while they go (until the first is done, every
        opening being past the gate then; at most OPENINGS_ALONE s): the two would share one interpreter
        and, on SQLite, one writer."""
        with self._cond:
            self._openings = batches
            self._cond.notify_all()
        self._sent.wait(OPENINGS_ALONE)

    def sent(self) -> None:
        """The openings went (or the launch ends): planning goes on."""
        self._sent.set()

    def stopped(self) -> bool:
        """Whether planning should stop: the launch ends, or was asked to stop (a signal)."""
        return self._stop.is_set() or self._coordination.stop_requested() is not None

    def first(self) -> tuple[list[Batch], bool]:
        """(the openings, True) once they are planned and committed, while planning goes on; (every batch,
        False) when planning ended first."""
        with self._cond:
            self._cond.wait_for(lambda: self._openings is not None or self._thread_done)
            if not self._thread_done:
                assert self._openings is not None
                return self._openings, True
        return self.rest(), False

    @property
    def _thread_done(self) -> bool:
        return self._planned is not None or self._error is not None

    def rest(self) -> list[Batch]:
        """Every batch of the run (the openings among them), once planning ended; its error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._planned is not None
        return self._planned

    def end(self) -> None:
        """The launch ends: planning still going stops (a resume plans the rest), and is waited for."""
        self._stop.set()
        self._sent.set()
        self._thread.join()


__all__ = ["OPENINGS_ALONE", "Openings"]
