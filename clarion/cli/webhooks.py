"""`clarion webhooks`: the outbound events of `webhooks_out` (status, deliver, retry, list, test).

The events wait in the ledger's outbox (clarion.tracking.outbound); `clarion serve` delivers them as it
runs, and these commands show and steer the queue from any shell.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Annotated

import httpx
import typer
from rich.table import Table

from clarion.base.errors import ClarionError
from clarion.base.settings import TrackingSettings
from clarion.cli import params
from clarion.cli.app import command_group, err, out, user_errors
from clarion.ledger import Ledger
from clarion.tracking.outbound import shown

webhooks_app = typer.Typer(
    help="Outbound events (webhooks_out): what waits, what failed, deliver now, retry the dead.",
    no_args_is_help=True,
)


@webhooks_app.command("status")
@user_errors
def status(json_out: Annotated[bool, typer.Option("--json", help="As JSON.")] = False) -> None:
    """Per endpoint: events pending, delivered and dead, and when the next try is due."""
    ledger = Ledger.open()
    rows = ledger.outbox_summary()
    summary: dict[str, dict[str, object]] = {}
    for url, state, count, next_at in rows:
        entry = summary.setdefault(url, {"pending": 0, "delivered": 0, "dead": 0, "next_at": None})
        entry[state] = count
        if state == "pending" and next_at is not None:
            entry["next_at"] = next_at.isoformat()
    if json_out:
        out.print_json(json.dumps(summary))
        return
    if not summary:
        err.print("no outbound events yet: add `webhooks_out:` to a campaign and run it", markup=False)
        return
    table = Table("endpoint", "pending", "delivered", "dead", "next try")
    for url, entry in sorted(summary.items()):
        table.add_row(
            shown(url),
            *(f"{entry[k]:,}" for k in ("pending", "delivered", "dead")),
            str(entry["next_at"] or "-"),
        )
    out.print(table)


@webhooks_app.command("list")
@user_errors
def list_events(
    state: Annotated[
        str | None, typer.Option("--state", parser=params.OUTBOX_STATE, help="pending, delivered or dead.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="How many, newest first.")] = 20,
) -> None:
    """The newest outbound events, with their tries and last error."""
    if state not in (None, "pending", "delivered", "dead"):
        raise ClarionError(f"--state {state!r}: give pending, delivered or dead")
    items = Ledger.open().outbox_items(state=state, limit=limit)
    table = Table("event id", "type", "endpoint", "state", "tries", "last error")
    for item in items:
        table.add_row(
            item.event_id, item.kind, shown(item.url), item.state, str(item.attempts), item.last_error or ""
        )
    out.print(table)


@webhooks_app.command("deliver")
@user_errors
def deliver_now(
    every: Annotated[
        float | None,
        typer.Option(
            "--every", min=1, max=86_400, help="Keep delivering, a round every SECONDS (Ctrl-C stops)."
        ),
    ] = None,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run each round as the Prefect flow clarion-webhooks.")
    ] = False,
) -> None:
    """Queue the runs' new events and post what is due (once, or every N seconds)."""
    from clarion.tracking.outbound import deliver, fill

    settings = TrackingSettings()
    ledger = Ledger.open()
    with httpx.Client(timeout=settings.clarion_webhooks_timeout) as client:
        while True:
            if prefect:
                from clarion.flows.outbound import webhooks_out

                counts = webhooks_out()
            else:
                queued = fill(ledger)
                done = deliver(
                    ledger, client, environ=os.environ, max_attempts=settings.clarion_webhooks_max_attempts
                )
                counts = {
                    "queued": queued,
                    "delivered": done.delivered,
                    "failed": done.failed,
                    "dead": done.dead,
                }
            err.print(", ".join(f"{k} {v:,}" for k, v in counts.items()), markup=False)
            if every is None:
                return
            try:
                time.sleep(every)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None


@webhooks_app.command("retry")
@user_errors
def retry(
    url: Annotated[
        str | None, typer.Option("--url", parser=params.HTTP_URL, help="Only this endpoint.")
    ] = None,
) -> None:
    """Dead events (their tries ran out) are tried again from now."""
    count = Ledger.open().outbox_requeue(url=url)
    err.print(f"{count:,} dead event(s) pending again", markup=False)


@webhooks_app.command("purge")
@user_errors
def purge(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", parser=params.DURATION, help="Delivered longer ago than this (e.g. 30d, 12h)."
        ),
    ] = "30d",
) -> None:
    """Forget delivered events older than the given age (pending and dead ones are kept)."""
    from datetime import timedelta

    from clarion.base.timing import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise ClarionError(f"--older-than {older_than!r}: {exc}") from None
    if age < timedelta(0):
        raise ClarionError("--older-than must not be negative")
    count = Ledger.open().outbox_purge(datetime.now(UTC) - age)
    err.print(f"{count:,} delivered event(s) forgotten", markup=False)


@webhooks_app.command("test")
@user_errors
def test(
    url: Annotated[
        str, typer.Argument(parser=params.HTTP_URL, help="The endpoint's URL.", show_default=False)
    ],
    secret_env: Annotated[
        str,
        typer.Option(
            "--secret-env",
            parser=params.ENV_NAME,
            help="The environment variable holding its secret.",
            show_default=False,
        ),
    ],
) -> None:
    """Post one signed `ping` event to an endpoint now and show its answer (nothing is queued)."""
    from clarion.base import signing
    from clarion.tracking.outbound import EVENT_ID_HEADER, EVENT_TYPE_HEADER, body, event_id

    secret = os.environ.get(secret_env, "")
    if not secret:
        raise ClarionError(f"the environment variable {secret_env} (the endpoint's secret) is not set")
    now = datetime.now(UTC)
    ident = event_id("ping", url, now.isoformat())
    payload = body("ping", ident, now).encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: ident,
        EVENT_TYPE_HEADER: "ping",
        **signing.signed_headers(secret.encode(), payload),
    }
    try:
        response = httpx.post(
            url, content=payload, headers=headers, timeout=TrackingSettings().clarion_webhooks_timeout
        )
    except httpx.HTTPError as exc:
        raise ClarionError(f"{shown(url)}: cannot reach it ({type(exc).__name__})") from None
    err.print(f"{shown(url)} answered {response.status_code} {response.reason_phrase}", markup=False)
    if not 200 <= response.status_code < 300:
        raise typer.Exit(1)


commands = command_group()
commands.add_typer(webhooks_app, name="webhooks")
