"""`clarion console`: who may sign in to the console of `clarion serve` (/console)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from clarion.cli import params
from clarion.cli.app import command_group, err, out, user_errors

console_app = typer.Typer(
    help="Operators of the console (`clarion serve`, /console): sign-in tokens, stored hashed.",
    no_args_is_help=True,
)


@console_app.command("add-user")
@user_errors
def add_user(
    name: Annotated[
        str, typer.Argument(parser=params.NAME, help="The operator's name (as campaigns list approvers).")
    ],
    new_token: Annotated[
        bool, typer.Option("--new-token", help="The user exists: issue a new token (the old one stops).")
    ] = False,
) -> None:
    """Add an operator and print their sign-in token (shown once: only its hash is kept)."""
    from clarion.base.errors import ClarionError
    from clarion.console.auth import issue_token
    from clarion.ledger import Ledger
    from clarion.ledger.console import UserExists

    try:
        token = issue_token(Ledger.open(), name, replace=new_token)
    except UserExists:
        raise ClarionError(
            f"console user {name!r} exists already: `clarion console add-user {name} --new-token` issues a "
            "new token (the old one stops working)"
        ) from None
    out.print(token, markup=False, highlight=False, soft_wrap=True)
    err.print(
        f"console user {name}: sign in at /console of `clarion serve` with the token above (shown once)",
        markup=False,
    )


@console_app.command("remove-user")
@user_errors
def remove_user(
    name: Annotated[str, typer.Argument(parser=params.NAME, help="The operator's name.")],
) -> None:
    """Remove an operator: their token stops working and their sessions end."""
    from clarion.base.errors import ClarionError
    from clarion.ledger import Ledger

    if not Ledger.open().remove_console_user(name):
        raise ClarionError(f"no console user {name!r} (see `clarion console users`)")
    out.print(f"console user {name} removed", markup=False, highlight=False)


@console_app.command("users")
@user_errors
def users() -> None:
    """List the operators (never their tokens)."""
    from clarion.ledger import Ledger

    table = Table(title="console users")
    for column in ("name", "created", "token issued", "last signed in"):
        table.add_column(column)
    for user in Ledger.open().console_users():
        table.add_row(
            Text(user.name),
            user.created_at.isoformat(timespec="seconds"),
            user.token_issued_at.isoformat(timespec="seconds"),
            user.last_seen_at.isoformat(timespec="seconds") if user.last_seen_at else "never",
        )
    out.print(table)


commands = command_group()
commands.add_typer(console_app, name="console")
