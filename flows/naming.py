"""Run ids for launches that did not name one: derived from what started them, so that the same schedule
slot or the same event always maps to the same run, and a second start of it resumes (sending nothing
twice) instead of launching the campaign again. The flow run carries the run id as its name.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from clarion.engine.plan import new_run_id


def resolve_run_id(campaign: str, run_id: str | None, trigger: dict[str, Any] | None) -> str:
    """The run id of a launch of campaign `campaign`: the one given, else the event's, else the slot's."""
    if run_id:
        return run_id
    name = campaign
    if trigger and trigger.get("id"):
        return f"{name}-evt-{_event_key(str(trigger['id']))}"
    slot = _scheduled_start()
    if slot is not None:
        return f"{name}-{slot.astimezone(UTC):%Y%m%dt%H%M%S}"
    return new_run_id(name)


def schedule_slot(run_id: str | None, trigger: dict[str, Any] | None) -> datetime | None:
    """The schedule slot (an `at:` instant, a cron time) a launch was started for; None for a launch that
    was named (`clarion run`), triggered by an event, or started outside a flow run."""
    if run_id or (trigger and trigger.get("id")):
        return None
    return _scheduled_start()


def _event_key(event_id: str) -> str:
    try:
        return uuid.UUID(event_id).hex[:16]
    except ValueError:
        return re.sub(r"[^a-z0-9]", "", event_id.lower())[:16] or "event"


def _scheduled_start() -> datetime | None:
    """The flow run's scheduled start (a schedule slot, or when a manual run was asked for)."""
    from prefect.runtime import flow_run

    if not flow_run.id:
        return None
    value = flow_run.scheduled_start_time
    return value if isinstance(value, datetime) else None


def flow_run_name() -> str:
    """The launch flow run's name: its run id, computed as the flow will, without loading the campaign:
    a deployment is named after its campaign (flows/deploy.py), and `clarion run` names its run."""
    from prefect.runtime import deployment, flow_run

    params = flow_run.parameters or {}
    campaign = deployment.name
    if not params.get("run_id") and not campaign:
        return "clarion-launch"
    return resolve_run_id(str(campaign or ""), params.get("run_id"), params.get("trigger"))


__all__ = ["flow_run_name", "resolve_run_id"]
