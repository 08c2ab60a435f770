"""`clarion email cancel`: take back a run's scheduled email (send_at_local) before it is delivered.

Emails sent with `send_at_local` are handed to SendGrid with a per-recipient `send_at` and a batch id
(kept in the ledger). Cancelling asks SendGrid to cancel every batch of the run (Cancel Scheduled Sends);
the ledger's sends still due later become failed with the reason `cancelled`. Emails whose time has come
were delivered already and stay sent. SendGrid asks for a cancellation at least 10 minutes before the
send time to be sure it takes effect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from clarion.base.errors import ClarionError
from clarion.campaign.loader import load_campaign
from clarion.channels.base import ProviderError
from clarion.cli import params
from clarion.cli.app import command_group, err, out, resolve_run, user_errors
from clarion.engine.context import make_adapter
from clarion.ledger import Ledger, RunNotFound

email_app = typer.Typer(
    help="Email scheduled for the recipients' local time (send_at_local).", no_args_is_help=True
)


@email_app.command("cancel")
@user_errors
def cancel(
    run_id: Annotated[
        str, typer.Argument(parser=params.RUN_ID, help="The run (or `latest`).", show_default=False)
    ],
    campaign: Annotated[
        Path | None,
        typer.Option(
            "--campaign",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The campaign file, if it moved since the run.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Cancel a run's scheduled email not yet delivered (SendGrid batch ids); the rest stays as it is."""
    given = load_campaign(campaign) if campaign else None  # a wrong file is said first, whatever the run
    ledger = Ledger.open()
    rid = resolve_run(ledger, run_id)
    record = ledger.get_run(rid)
    if record is None:
        raise RunNotFound(rid)
    batches = ledger.scheduled_batch_ids(rid)
    if not batches:
        err.print(f"run {rid} has no scheduled email left to cancel", markup=False)
        return
    loaded = given or load_campaign(record.campaign_file)
    cancelled: dict[str, int] = {}
    for channel, _provider, batch_id in batches:
        if channel not in loaded.campaign.channels:
            raise ClarionError(f"channel {channel!r} of run {rid} is not in {loaded.path}; give --campaign")
        adapter = make_adapter(loaded, channel)
        try:
            adapter.cancel_scheduled(batch_id)
        except ProviderError as exc:
            raise ClarionError(f"channel {channel}: {exc.message}; nothing more was cancelled") from None
        moved = ledger.cancel_scheduled(rid, channel, batch_id, datetime.now(UTC))
        cancelled[channel] = cancelled.get(channel, 0) + moved
    if json_out:
        out.print_json(json.dumps({"run": rid, "cancelled": cancelled}))
        return
    for channel, count in cancelled.items():
        err.print(f"{channel}: {count:,} scheduled email(s) cancelled", markup=False)


commands = command_group()
commands.add_typer(email_app, name="email")
