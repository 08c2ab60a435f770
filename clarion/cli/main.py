"""`clarion`: every command, gathered from the modules of clarion/cli/ (the console script's entry)."""

from __future__ import annotations

from clarion.cli import campaign, ops, reconcile, results, send, services  # noqa: F401  (each adds its commands)
from clarion.cli.app import app
from clarion.cli.console import console_app
from clarion.cli.donations import donations_app
from clarion.cli.email import email_app
from clarion.cli.responders import responders_app
from clarion.cli.suppress import suppress_app
from clarion.cli.webhooks import webhooks_app

app.add_typer(suppress_app, name="suppress")
app.add_typer(responders_app, name="responders")
app.add_typer(console_app, name="console")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(email_app, name="email")
app.add_typer(donations_app, name="donations")


def main() -> None:
    app()


__all__ = ["app", "main"]
