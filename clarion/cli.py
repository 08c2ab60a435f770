"""The `clarion` command line.

User mistakes arrive here as ClarionError: printed to stderr as `FILE:LINE:COL: message`, exit status 1,
no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from channels.base import Message
from clarion.errors import CampaignInvalid, ClarionError

app = typer.Typer(
    name="clarion",
    help="One campaign file, one call to action, every channel at the same moment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


@app.command()
@user_errors
def validate(files: Annotated[list[Path], typer.Argument(help="Campaign files (YAML).")]) -> None:
    """Check campaign files, their templates and every contact; exit 1 listing every problem."""
    from clarion.validate import validate_campaign

    failed = 0
    for path in files:
        try:
            report = validate_campaign(path)
        except CampaignInvalid as exc:
            failed += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        arms = ", ".join(f"{arm} {n:,}" for arm, n in sorted(report.arms.items()))
        reach = ", ".join(f"{cid} {n:,}" for cid, n in report.reachable.items())
        out.print(
            f"[green]valid[/]: {path}: {report.contacts:,} contacts ({arms})"
            + (f"; reachable: {reach}" if reach else ""),
            highlight=False,
        )
    if failed:
        err.print(f"{failed} of {len(files)} campaign file(s) invalid", markup=False)
        raise typer.Exit(1)


def _message_row(message: Message) -> dict[str, Any]:
    row: dict[str, Any] = {
        "channel": message.channel,
        "provider": message.provider,
        "kind": message.kind.value,
        "variant": message.variant,
        "contact": message.contact_id,
        "to": message.to,
        "link": message.link,
        "text": message.text,
    }
    if message.subject is not None or message.html is not None:
        row["subject"] = message.subject
        row["html"] = message.html
    row.update(message.metrics)
    return row


@app.command()
@user_errors
def preview(
    file: FileArg,
    contact: Annotated[
        str | None, typer.Option(help="Contact id to render for (default: the first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Render every channel x variant of a campaign for one contact."""
    from clarion.validate import preview as render_preview

    messages = render_preview(file, contact)
    if as_json:
        sys.stdout.write(json.dumps([_message_row(m) for m in messages], indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(
        title=f"{file} - preview for contact {messages[0].contact_id or '(first)'}", show_lines=True
    )
    for column in ("channel", "variant", "message", "size"):
        table.add_column(column, overflow="fold")
    for m in messages:
        body = Text()
        if m.subject is not None:
            body.append("Subject: ", style="bold").append(f"{m.subject}\n\n")
        body.append(m.text)
        size = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in m.metrics.items())
        table.add_row(Text(f"{m.channel}\n({m.provider})"), Text(m.variant), body, Text(size))
    out.print(table)


@app.command()
def schema() -> None:
    """Print the campaign format's JSON Schema (for editor completion)."""
    from clarion.model import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


def main() -> None:
    app()
