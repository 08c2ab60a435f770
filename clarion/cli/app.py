"""The `clarion` command line's shared parts: the typer app, the consoles, and how user mistakes end.

User mistakes arrive here as ClarionError: printed to stderr as `FILE:LINE:COL: message`, exit status 1,
no traceback. Anything else is a bug and keeps its traceback. The commands live in the modules beside this
one, by what they are about; clarion/cli/main.py puts them together.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from clarion.base.errors import CampaignInvalid, ClarionError

app = typer.Typer(
    name="clarion",
    help="One campaign file, one call to action, every channel at the same moment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables are read in logs and CI output too: there, lay them out wider than rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 140)


@app.callback()
def _startup() -> None:
    """Before any command: dependencies kept quiet, and every setting read from the environment checked,
    so that a malformed one is named before anything starts (or writes)."""
    from clarion import channels
    from clarion.base.settings import check_environment, quiet_dependencies

    quiet_dependencies()
    try:
        check_environment(extra=[adapter.settings_model for adapter in channels.adapters()])
    except ClarionError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None


P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn ClarionError into a clear message on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CampaignInvalid as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            raise typer.Exit(1) from None
        except ClarionError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None

    return wrapper


FileArg = Annotated[Path, typer.Argument(help="Campaign file (YAML).", show_default=False)]


def resolve_run(ledger: Any, run_id: str) -> str:
    """`latest` names the newest campaign run (a responder's run is not one, nor a Thompson wave's: its
    launch run holds the waves' report); any other id is as it is."""
    if run_id != "latest":
        return run_id
    newest = [r for r in ledger.list_runs(limit=50) if not {"responder", "wave_of"} & set(r.options)]
    if not newest:
        raise ClarionError("no runs in the ledger yet; start one with `clarion run FILE`")
    return str(newest[0].id)
