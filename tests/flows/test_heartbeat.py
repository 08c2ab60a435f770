"""A launch run by hand (`clarion run`) ends when its flow returns, not up to a second later, and still
emits Prefect's flow-run heartbeat, which zombie-run automations read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from prefect.context import FlowRunContext
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from clarion.flows.heartbeat import HEARTBEAT, prompt_heartbeats


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventsWorker]:
    """Every event this process emits, kept instead of sent (Prefect's own recording client)."""
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    yield worker
    worker.drain()


def test_a_flow_run_by_hand_returns_at_once_and_beats_once_as_it_starts(
    prefect_server: str, events: EventsWorker
) -> None:
    seen: dict[str, Any] = {}

    @flow(name="clarion-heartbeat-probe")
    def probe() -> str:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        seen["returned"] = time.monotonic()
        return str(context.flow_run.id)

    with prompt_heartbeats(probe) as probing:
        flow_run_id = probing()
        after_return = time.monotonic() - seen["returned"]

    # Prefect's own heartbeat thread starts sleeping (in whole seconds) as the flow starts, and its join
    # holds the call until it wakes: about a second for a flow this short
    assert after_return < 0.6, f"the call returned {after_return:.2f} s after the flow did"
    events.drain()
    client = AssertingEventsClient.last
    assert client is not None
    beats = [
        e
        for e in client.events
        if e.event == HEARTBEAT and e.resource.id == f"prefect.flow-run.{flow_run_id}"
    ]
    assert len(beats) == 1, "one heartbeat as the run starts (then one every 180 s), and Prefect's not too"
    related = {r.role: r.id for r in beats[0].related}
    assert related["flow"].startswith("prefect.flow.")
    assert beats[0].resource.name


def test_with_heartbeats_off_the_flow_is_called_as_it_is_and_nothing_beats(
    prefect_server: str, events: EventsWorker
) -> None:
    from prefect.context import SettingsContext
    from prefect.settings import get_current_settings

    @flow(name="clarion-heartbeat-off")
    def probe() -> str:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        return str(context.flow_run.id)

    settings = get_current_settings()
    off = settings.model_copy(
        update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})}
    )
    with (
        SettingsContext(profile=SettingsContext.get().profile, settings=off),
        prompt_heartbeats(probe) as probing,
    ):
        assert probing is probe
        flow_run_id = probing()
    events.drain()
    client = AssertingEventsClient.last
    assert client is not None
    assert not [e for e in client.events if e.event == HEARTBEAT and flow_run_id in e.resource.id]
