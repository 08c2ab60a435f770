"""The `clarion` command line's shared parts: the consoles, how user mistakes end, and the typer app each
module of commands declares its commands on.

User mistakes arrive here as ClarionError: printed to stderr as `FILE:LINE:COL: message`, exit status 1,
no traceback. Anything else is a bug and keeps its traceback. The commands live in the modules beside this
one, by what they are about; clarion/cli/main.py puts them together, importing a module only when one of
its commands runs (or its help is asked for).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from clarion.base.errors import CampaignInvalid, ClarionError

if TYPE_CHECKING:  # the commands' shared parts stay light to import
    from clarion.campaign.loader import LoadedCampaign


def command_group() -> typer.Typer:
    """The typer app one module of clarion/cli/ declares its commands on (its `commands`), which
    clarion/cli/main.py imports only when one of them is asked for (clarion/cli/lazy.py)."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


# Tables are read in logs and CI output too: there, lay them out wider than rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 140)


#: A contacts file this big (about 10,000 contacts) gets a progress bar while it is checked
BIG_CONTACTS_BYTES = 1_000_000


@contextmanager
def checking(loaded: LoadedCampaign) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr (a terminal's, gone once done) while a big contacts file is checked: the
    `progress` of `validate_once` (clarion.messages.validated), or None where there is no bar to show."""
    path = loaded.contacts_path
    size = path.stat().st_size if loaded.campaign.audience.contacts and path.is_file() else 0
    if not err.is_terminal or size < BIG_CONTACTS_BYTES:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("checking {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(str(path), total=size)
        yield lambda done, total: bar.update(task, completed=done, total=total)


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
