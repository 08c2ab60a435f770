"""Campaigns as Prefect deployments of the launch flow: one per campaign file, named after the campaign,
with its schedule (`cron:`), its one launch (`at:`) or its event trigger (`on_event:`).

`clarion deploy FILE...` registers them on the Prefect server; `clarion worker FOLDER` serves every
campaign of a folder (flow.serve: it polls the server and runs what is due in subprocesses); with
`--pool NAME`, `clarion deploy` registers them on a work pool instead, for `prefect worker start`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect.client.schemas.objects import FlowRun
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from clarion.base.identifiers import EVENT_RESOURCE
from clarion.campaign.loader import load_campaign
from clarion.campaign.model import Campaign
from clarion.flows.launch import launch

#: The event's own id decides the run id (flows/naming.py): the same event never launches twice.
#: Explicit string templates: Prefect 3.8 turns a bare "{{ event.id }}" into `| tojson`, which cannot
#: serialise the event's UUID and datetime, and the automation then fails to start the run.
TRIGGER_PARAMETERS = {
    key: {"__prefect_kind": "jinja", "template": "{{ event." + key + " }}"}
    for key in ("id", "event", "occurred")
}


def deployment_name(campaign: Campaign) -> str:
    return campaign.name


def full_name(campaign: Campaign) -> str:
    """How run_deployment and the CLI name it: flow/deployment."""
    return f"{launch.name}/{deployment_name(campaign)}"


def build(path: Path, pool: str | None = None) -> tuple[RunnerDeployment, Campaign]:
    """The deployment of one campaign file (validated first: the loader's errors name file and line)."""
    loaded = load_campaign(path)
    campaign = loaded.campaign
    schedule = campaign.schedule
    kwargs: dict[str, Any] = {
        "name": deployment_name(campaign),
        "parameters": {"campaign_path": str(Path(path).resolve())},
        "tags": ["clarion", f"campaign:{campaign.name}", *(f"channel:{c}" for c in campaign.channels)],
        "description": campaign.description or f"Clarion campaign {campaign.name}",
    }
    if schedule is not None and schedule.cron is not None:
        kwargs["schedules"] = [Cron(schedule.cron, timezone=schedule.timezone)]
    if schedule is not None and schedule.on_event is not None:
        kwargs["triggers"] = [
            DeploymentEventTrigger(
                name=f"{campaign.name} on {schedule.on_event}",
                expect={schedule.on_event},
                match={"prefect.resource.id": f"{EVENT_RESOURCE}.*"},
                parameters={"trigger": TRIGGER_PARAMETERS},
            )
        ]
    # a module entrypoint (clarion.flows.launch.launch): a worker imports the installed package, from any
    # folder, instead of looking for a file in a checkout
    deployment = launch.to_deployment(entrypoint_type=EntrypointType.MODULE_PATH, **kwargs)
    return cast(RunnerDeployment, deployment), campaign


def register(paths: list[Path], *, pool: str | None = None) -> list[dict[str, Any]]:
    """Register (or update) each campaign's deployment; a one-time `at:` launch is scheduled as a run."""
    from prefect.deployments import run_deployment

    done = []
    for path in paths:
        deployment, campaign = build(path, pool)
        deployment_id = cast(UUID, deployment.apply(work_pool_name=pool) if pool else deployment.apply())
        entry: dict[str, Any] = {
            "campaign": campaign.name,
            "deployment": full_name(campaign),
            "id": str(deployment_id),
        }
        schedule = campaign.schedule
        if schedule is not None and schedule.at is not None:
            run = cast(
                FlowRun,
                run_deployment(
                    name=deployment_id,
                    scheduled_time=schedule.at,
                    timeout=0,
                    idempotency_key=f"{campaign.name}@{schedule.at.isoformat()}",
                    tags=["clarion", "scheduled-at"],
                ),
            )
            entry["scheduled_run"] = str(run.id)
        entry["when"] = _when(campaign)
        done.append(entry)
    return done


def _when(campaign: Campaign) -> str:
    schedule = campaign.schedule
    if schedule is None:
        return "on demand (Prefect UI, or `prefect deployment run`)"
    if schedule.at is not None:
        return f"once, at {schedule.at.isoformat()}"
    if schedule.cron is not None:
        return f"cron {schedule.cron!r} ({schedule.timezone})"
    return f"on event {schedule.on_event!r} (`clarion trigger {schedule.on_event}`)"


def register_send_deployment(pool: str, api_url: str | None = None) -> None:
    """The `clarion-send` deployment on `pool`, where launches with CLARION_SEND_POOL send their shards (a
    module entrypoint: the pool's workers import the installed package). `api_url`: another server than
    PREFECT_API_URL's."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from clarion.flows.shard import SEND_FLOW, send_shard

    with temporary_settings({PREFECT_API_URL: api_url} if api_url else {}):
        deployment = send_shard.to_deployment(name=SEND_FLOW, entrypoint_type=EntrypointType.MODULE_PATH)
        cast(RunnerDeployment, deployment).apply(work_pool_name=pool)


def campaign_files(folder: Path) -> list[Path]:
    """Every campaign file of a folder (its subfolders too): YAML files with a top-level `channels:`."""
    import yaml

    found = []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if isinstance(data, dict) and "channels" in data and "cta" in data:
            found.append(path)
    return found


def serve(paths: list[Path], *, limit: int | None = None) -> None:
    """Serve the campaigns' deployments from warm processes until interrupted (clarion/flows/runner.py)."""
    import asyncio

    from clarion.flows import runner

    built = [build(path) for path in paths]
    providers = {config.provider for _, campaign in built for config in campaign.channels.values()}
    modules = runner.preload(providers)
    asyncio.run(runner.serve([deployment for deployment, _ in built], limit=limit, modules=modules))


__all__ = ["build", "campaign_files", "full_name", "register", "register_send_deployment", "serve"]
