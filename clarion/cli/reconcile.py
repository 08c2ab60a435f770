"""`clarion reconcile RUN`: ask the providers what became of a run's uncertain sends, and settle them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import command_group, err, out, resolve_run, user_errors

commands = command_group()


@commands.command()
@user_errors
def reconcile(
    run_id: Annotated[
        str,
        typer.Argument(
            parser=params.RUN_ID, help="Run id (see `clarion runs`), or `latest`.", show_default=False
        ),
    ],
    campaign: Annotated[
        Path | None,
        typer.Option(
            "--campaign",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The run's campaign file, when it is no longer at the path `clarion run` was given.",
        ),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option(
            "--grace",
            parser=params.DURATION,
            help="Settle a send as not received only when it was attempted longer ago than this (e.g. "
            "0s, 5m); default: the time each provider may take to list a message (Twilio and X 60 s, "
            "SendGrid 10 min).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Settle a run's uncertain sends by asking each provider: sent (with its id) when it has the message,
    failed (`not_received`) when its listing proves it does not; the rest stay uncertain, with the
    reason. Nothing is sent; `clarion run FILE --run-id RUN --retry-failed` resends what was not received."""
    from clarion.base.timing import parse_duration
    from clarion.campaign.loader import load_campaign
    from clarion.engine.reconcile import reconcile_run
    from clarion.ledger import Ledger

    try:
        wait = None if grace is None else parse_duration(grace)
    except ValueError as exc:
        raise ClarionError(f"--grace: {exc}") from None
    ledger = Ledger.open()
    rid = resolve_run(ledger, run_id)
    loaded = load_campaign(campaign) if campaign is not None else None
    result = reconcile_run(ledger, rid, loaded=loaded, grace=wait)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        return
    if not result.channels:
        out.print(f"run {rid}: no uncertain sends; nothing to settle", markup=False, highlight=False)
        return
    table = Table(title=f"run {rid}: uncertain sends, settled by asking the providers")
    for column in ("channel", "provider", "uncertain before", "sent", "not received", "still uncertain"):
        table.add_column(column, justify="left" if column in ("channel", "provider") else "right")
    for c in result.channels:
        figures = (c.uncertain_before, c.sent, c.failed, c.uncertain)
        table.add_row(Text(c.channel), Text(c.provider), *(f"{n:,}" for n in figures))
    out.print(table)
    for c in result.channels:
        for why, count in c.why.most_common():
            err.print(f"{c.channel}: {count:,} still uncertain: {why}", markup=False, highlight=False)
    if any(c.failed for c in result.channels):
        record = ledger.get_run(rid)
        file = campaign or (record.campaign_file if record else "CAMPAIGN")
        err.print(
            f"the providers never got {sum(c.failed for c in result.channels):,} of them (failed, "
            f"not_received); send those again with: clarion run {file} --run-id {rid} --retry-failed",
            markup=False,
            highlight=False,
        )
