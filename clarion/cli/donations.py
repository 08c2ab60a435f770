"""`clarion donations demo`: a gift through ActBlue, attributed by refcode, played in-process (make demo)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer

from clarion.cli import params
from clarion.cli.app import command_group, err, resolve_run, user_errors
from clarion.ledger import Ledger

donations_app = typer.Typer(
    help="Donation platforms (ActBlue, Action Network, Stripe).", no_args_is_help=True
)


@donations_app.command("demo")
@user_errors
def demo(
    run_id: Annotated[
        str, typer.Argument(parser=params.RUN_ID, help="The run (or `latest`).", show_default=False)
    ] = "latest",
    channel: Annotated[
        str, typer.Option("--channel", parser=params.CHANNEL, help="Whose link the donor follows.")
    ] = "email",
    amount: Annotated[
        float, typer.Option("--amount", min=1, max=100_000, help="The gift, in dollars.")
    ] = 25.0,
) -> None:
    """A supporter follows the run's tracked link to ActBlue and gives; ActBlue's webhook (sent twice)
    is attributed to the contact's channel and variant by refcode. In-process: nothing leaves the machine."""
    from clarion.sandbox.donations import play

    ledger = Ledger.open()
    rid = resolve_run(ledger, run_id)
    shown = play(ledger, rid, channel=channel, amount=Decimal(str(amount)))
    err.print(f"contact {shown.contact} follows their {shown.channel} link to {shown.landing}", markup=False)
    err.print(
        f"ActBlue posts a ${shown.amount:.2f} gift with refcode {shown.refcode}: {shown.first}; "
        f"redelivered: {shown.again}",
        markup=False,
    )
    before, after = shown.conversions
    err.print(
        f"attributed by refcode to contact {shown.contact}, channel {shown.channel}, "
        f"variant {shown.variant}; recorded once: that channel and variant's conversions went from "
        f"{before:,} to {after:,}",
        markup=False,
    )


commands = command_group()
commands.add_typer(donations_app, name="donations")
