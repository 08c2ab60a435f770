"""The `clarion` command line's shared parts: the consoles, how user mistakes end, and the typer app each
module of commands declares its commands on.

User mistakes arrive here as ClarionError: printed to stderr as `FILE:LINE:COL: message`, exit status 1,
no traceback. Anything else is a bug and keeps its traceback. The commands live in the modules beside this
one, by what they are about; clarion/cli/main.py puts them together, importing a module only when one of
its commands runs (or its help is asked for).
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


def command_group() -> typer.Typer:
    """The typer app one module of clarion/cli/ declares its commands on (its `commands`), which
    clarion/cli/main.py imports only when one of them is asked for (clarion/cli/lazy.py)."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


# Tables are read in logs and CI output too: there, lay them out wider than rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 140)


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
