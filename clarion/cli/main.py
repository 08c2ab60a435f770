"""`clarion`: every command, gathered from the modules of clarion/cli/ (the console script's entry).

A command's module is imported when the command runs or its help is asked for (clarion/cli/lazy.py):
`clarion trigger` loads clarion/cli/ops.py and what it needs to POST an event, not the ledger, the
campaign model or the providers' SDKs. `clarion --help` lists every command, so it imports them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import typer

from clarion.base.errors import ClarionError
from clarion.base.runtime import before_exit
from clarion.cli.app import err
from clarion.cli.lazy import LazyGroup

#: Every command of `clarion`, in the order `clarion --help` lists them, and the module of clarion/cli/
#: that declares it on its `commands`.
COMMANDS = {
    "validate": "campaign",
    "preview": "campaign",
    "schema": "campaign",
    "deploy": "ops",
    "worker": "ops",
    "trigger": "ops",
    "approve": "ops",
    "reject": "ops",
    "reconcile": "reconcile",
    "report": "results",
    "compare": "results",
    "collect": "results",
    "run": "send",
    "runs": "send",
    "status": "send",
    "sandbox": "services",
    "serve": "services",
    "conversions": "results",
    "devstack": "services",
    "suppress": "suppress",
    "responders": "responders",
    "console": "console",
    "webhooks": "webhooks",
    "email": "email",
    "donations": "donations",
}


class ClarionGroup(LazyGroup):
    modules: ClassVar[Mapping[str, str]] = {
        name: f"clarion.cli.{module}" for name, module in COMMANDS.items()
    }


app = typer.Typer(
    name="clarion",
    cls=ClarionGroup,
    help="One campaign file, one call to action, every channel at the same moment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _startup() -> None:
    """Before any command: dependencies kept quiet, and every setting read from the environment checked,
    so that a malformed one is named before anything starts (or writes)."""
    from clarion import channels
    from clarion.base.settings import check_environment, quiet_dependencies

    quiet_dependencies()
    try:
        check_environment(extra=channels.settings_models())
    except ClarionError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None


def main() -> None:
    try:
        app()
    finally:
        before_exit()


__all__ = ["COMMANDS", "app", "main"]
