"""Flow-run heartbeats that stop the moment the flow run ends, for the launches Clarion runs itself.

Prefect's engine emits a `prefect.flow-run.heartbeat` event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds
(180 by default) from a thread of its own, and joins that thread when the flow's function has returned. The
thread sleeps in whole seconds between looks at its stop flag, so a flow run's end waits 0-1 s for it after
the Completed state is already set (0.83 and 0.91 s at the end of two 100,000-email `clarion run`s).
The events matter: Prefect's documented automation for zombie runs (docs.prefect.io/v3/advanced/
detect-zombie-flows) marks a Running flow run Crashed when they stop. So `prompt_heartbeats` turns
Prefect's thread off for one flow call and emits the same event, with the same resource and related
resources (the flow, the deployment, the tags), from a thread that waits on an Event: it stops at once.

`clarion run` calls the launch this way, and so does `clarion worker` (clarion.flows.runner) for the
deployments' runs it serves: their processes end, and free their slot, when the run does. Flow runs that
Prefect's own workers start (the shards on a process work pool) keep Prefect's heartbeats.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import SettingsContext
from prefect.events import emit_event
from prefect.events.related import tags_as_related_resources
from prefect.events.schemas.events import RelatedResource
from prefect.settings import get_current_settings

log = logging.getLogger(__name__)

HEARTBEAT = "prefect.flow-run.heartbeat"
F = TypeVar("F", bound=Flow[Any, Any])


class Heartbeats:
    """Beats for one flow run every `seconds`, the first as it enters Running (as Prefect's own do)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_running(self, flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
        """Prefect's `on_running` hook: start beating (once: a flow run enters Running once a call)."""
        if self._thread is not None or self._stop.is_set():
            return
        resource, related = _event_template(flow, flow_run)
        context = contextvars.copy_context()  # this flow run's settings: the same API, never a stale one
        self._thread = threading.Thread(
            target=context.run, args=(self._beat, resource, related), name="clarion-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self, resource: dict[str, str], related: list[RelatedResource]) -> None:
        while True:
            try:
                emit_event(event=HEARTBEAT, resource=resource, related=related)
            except Exception:  # a heartbeat lost is not worth a run: Prefect's own are best-effort too
                log.debug("heartbeat not emitted", exc_info=True)
            if self._stop.wait(self.seconds):
                return

    def stop(self) -> None:
        """No more beats; returns once the thread has ended (at once: it waits on the stop event)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _event_template(flow: Flow[Any, Any], flow_run: FlowRun) -> tuple[dict[str, str], list[RelatedResource]]:
    from prefect import __version__

    resource = {
        "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
        "prefect.resource.name": flow_run.name or "",
        "prefect.version": __version__,
    }
    related = [
        RelatedResource.model_validate(
            {
                "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": flow.name,
            }
        )
    ]
    if flow_run.deployment_id:
        related.append(
            RelatedResource.model_validate(
                {
                    "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        )
    related += tags_as_related_resources(set(flow_run.tags or []))
    return resource, related


@contextmanager
def prompt_heartbeats(flow: F) -> Iterator[F]:
    """`flow` with heartbeats that stop when it returns, for calling it in this thread inside the block.

    Prefect's heartbeat thread is off in the block (its setting read as None there), and Clarion's beats
    every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds instead; where Prefect's settings hold no frequency
    (heartbeats off), `flow` itself and no beats."""
    settings = get_current_settings()
    seconds = settings.flows.heartbeat_frequency
    if seconds is None:
        yield flow
        return
    beats = Heartbeats(seconds)
    quiet = settings.model_copy(
        update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})}
    )
    current = SettingsContext.get()
    assert current is not None  # Prefect keeps a global one
    try:
        with SettingsContext(profile=current.profile, settings=quiet):
            yield cast(F, flow.with_options(on_running=[*flow.on_running_hooks, beats.on_running]))
    finally:
        beats.stop()
