"""Operations commands: campaigns as Prefect deployments (`deploy`, `worker`), events (`trigger`) and the
approval gate (`approve`, `reject`). They talk to a Prefect server: PREFECT_API_URL must name one.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import checking, command_group, err, out, resolve_run, user_errors

commands = command_group()


def _need_server(what: str) -> str:
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        raise ClarionError(
            f"{what} needs a Prefect server: start one with `prefect server start` and set "
            "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) in this shell"
        )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return url


def _check(path: Path) -> None:
    """A campaign file's problems (file and line) before the server is asked; for a contacts file, every
    contact and message too, as `clarion validate` checks them: a bad row is found now, not when the event
    comes. What validated is remembered in CLARION_HOME (clarion.messages.validated), so a launch on this
    home checks no message again and sends its openings while it plans. A query's rows are read, and
    checked, when a run starts."""
    from clarion.campaign.loader import load_campaign
    from clarion.messages.validated import validate_once

    loaded = load_campaign(path)
    if loaded.campaign.audience.contacts is not None:
        with checking(loaded) as progress:
            validate_once(loaded, progress)


@commands.command()
@user_errors
def deploy(
    files: Annotated[list[Path], typer.Argument(help="Campaign files (YAML).", show_default=False)],
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool",
            parser=params.POOL,
            help="Register on this work pool (for `prefect worker start --pool NAME`).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    send_pool: Annotated[
        str | None,
        typer.Option(
            "--send-pool",
            parser=params.POOL,
            help="Also register the send deployment on this work pool, where launches with "
            "CLARION_SEND_POOL send their shards.",
        ),
    ] = None,
) -> None:
    """Register campaigns as Prefect deployments, with their schedule or event trigger (each file checked as
    `clarion validate` does first; nothing is registered while one has a problem)."""
    for path in files:
        _check(path)
    _need_server("clarion deploy")
    from clarion.flows.deploy import register, register_send_deployment

    if send_pool is not None:
        register_send_deployment(send_pool)
        err.print(f"send deployment registered on pool {send_pool!r}", markup=False)
    done = register(files, pool=pool)
    if as_json:
        sys.stdout.write(json.dumps(done, indent=2) + "\n")
        return
    for entry in done:
        out.print(f"deployed {entry['deployment']}: {entry['when']}", markup=False, highlight=False)
    if pool is None:
        err.print("serve them with `clarion worker FOLDER` (or FILE...)", markup=False)


@commands.command()
@user_errors
def worker(
    paths: Annotated[
        list[Path], typer.Argument(help="Campaign files, or folders of them.", show_default=False)
    ],
    limit: Annotated[
        int | None, typer.Option(min=1, max=1000, help="At most this many runs at once.")
    ] = None,
) -> None:
    """Serve the campaigns' deployments: run what their schedules and triggers start, until Ctrl-C (each
    file checked as `clarion validate` does first; nothing is served while one has a problem)."""
    from clarion.flows.deploy import campaign_files, serve

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(campaign_files(path))
        elif path.exists():
            files.append(path)
        else:
            raise ClarionError(f"{path}: no such file or folder")
    if not files:
        raise ClarionError(
            f"no campaign files (YAML with `cta:` and `channels:`) in {', '.join(map(str, paths))}"
        )
    for path in files:
        _check(path)
    _need_server("clarion worker")
    err.print(
        f"serving {len(files)} campaign(s) from {os.environ['PREFECT_API_URL']}; Ctrl-C stops", markup=False
    )
    serve(files, limit=limit)


@commands.command()
@user_errors
def trigger(
    event: Annotated[
        str, typer.Argument(parser=params.EVENT, help="Event name, e.g. debate.ended.", show_default=False)
    ],
    payload: Annotated[
        str | None, typer.Option(parser=params.JSON_OBJECT, help="JSON object carried with the event.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            parser=params.TEXT,
            help="Idempotency key: the same key is the same event, which launches only once.",
        ),
    ] = None,
) -> None:
    """Emit an event; campaigns deployed with `schedule: {on_event: NAME}` launch on it."""
    _need_server("clarion trigger")
    data: dict[str, Any] = json.loads(payload) if payload is not None else {}  # checked by its parser
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"clarion:{event}:{key}") if key else uuid.uuid4()
    sent = emit(event, data, event_id)
    out.print(f"emitted {event} (id {sent})", markup=False, highlight=False)


def emit(event: str, payload: dict[str, Any], event_id: uuid.UUID) -> str:
    """Send one event to the Prefect server (its REST events endpoint, without loading Prefect: a second
    saved here is a second sooner on the night); the Prefect client's websocket where that is refused."""
    from datetime import UTC, datetime

    import httpx

    from clarion.base.identifiers import EVENT_RESOURCE

    record = {
        "id": str(event_id),
        "occurred": datetime.now(UTC).isoformat(),
        "event": event,
        "resource": {"prefect.resource.id": f"{EVENT_RESOURCE}.{event}"},
        "related": [],
        "payload": payload,
    }
    url = os.environ["PREFECT_API_URL"].rstrip("/")
    headers = {}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    elif auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        response = httpx.post(f"{url}/events", json=[record], headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        raise ClarionError(f"cannot reach the Prefect server at {url}: {type(exc).__name__}") from None
    if response.status_code in (404, 405):  # a server without the REST endpoint (Prefect Cloud)
        _emit_with_prefect(record)
    elif response.status_code in (401, 403):
        raise ClarionError(
            f"the Prefect server at {url} refused the event (HTTP {response.status_code}): "
            "check PREFECT_API_KEY"
        )
    elif response.status_code >= 300:
        raise ClarionError(
            f"the Prefect server at {url} refused the event: "
            f"HTTP {response.status_code} {response.text[:300]}"
        )
    return str(event_id)


def _emit_with_prefect(record: dict[str, Any]) -> None:
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(Event.model_validate(record))

    asyncio.run(send())


def _answer(run_id: str, *, approved: bool, approver: str | None, reason: str) -> None:
    from clarion.campaign.loader import load_campaign
    from clarion.engine.preflight import default_approver
    from clarion.flows.approval import answer
    from clarion.ledger import Ledger, RunNotFound

    _need_server("clarion approve/reject")
    store = Ledger.open()
    rid = resolve_run(store, run_id)
    run = store.get_run(rid)
    if run is None:
        raise RunNotFound(rid)
    who = approver or default_approver()
    try:
        gate = load_campaign(run.campaign_file).campaign.approval
    except ClarionError:
        gate = None  # the file moved: the flow checks the approver itself
    if gate is not None and not gate.allows(who):
        raise ClarionError(
            f"{who!r} is not one of this campaign's approvers ({', '.join(gate.approvers)}); use --as NAME"
        )
    answer(rid, approved=approved, approver=who, reason=reason)
    verb = "approved" if approved else "rejected"
    out.print(f"run {rid} {verb} by {who}", markup=False, highlight=False)


@commands.command()
@user_errors
def approve(
    run_id: Annotated[
        str, typer.Argument(parser=params.RUN_ID, help="Run id (or `latest`).", show_default=False)
    ],
    as_: Annotated[
        str | None, typer.Option("--as", parser=params.NAME, help="Approver name (default: your user name).")
    ] = None,
) -> None:
    """Approve a run waiting at its approval gate: it starts sending."""
    _answer(run_id, approved=True, approver=as_, reason="")


@commands.command()
@user_errors
def reject(
    run_id: Annotated[
        str, typer.Argument(parser=params.RUN_ID, help="Run id (or `latest`).", show_default=False)
    ],
    reason: Annotated[str | None, typer.Option(parser=params.TEXT, help="Why (kept with the run).")] = None,
    as_: Annotated[
        str | None, typer.Option("--as", parser=params.NAME, help="Approver name (default: your user name).")
    ] = None,
) -> None:
    """Reject a run waiting at its approval gate: it sends nothing."""
    if reason is None or not reason.strip():
        raise ClarionError("say why with --reason '...': it is kept with the run")
    _answer(run_id, approved=False, approver=as_, reason=reason)
