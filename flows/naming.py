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
from clarion.engine.send import loaded_campaign


def resolve_run_id(campaign_path: str, run_id: str | None, trigger: dict[str, Any] | None) -> str:
    if run_id:
        return run_id
    name = loaded_campaign(campaign_path).campaign.name
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
    """The launch flow run's name: its run id (computed as the flow will)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    try:
        return resolve_run_id(str(params["campaign_path"]), params.get("run_id"), params.get("trigger"))
    except Exception:  # the name is a label: a campaign that cannot load fails in the flow, with its message
        return str(params.get("run_id") or "clarion-launch")


__all__ = ["flow_run_name", "resolve_run_id"]
