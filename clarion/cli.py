"""The `clarion` command line.

User mistakes arrive here as ClarionError: printed to stderr as `FILE:LINE:COL: message`, exit status 1,
no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
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
        plural = "contact" if report.contacts == 1 else "contacts"
        summary = f": {path}: {report.contacts:,} {plural} ({arms})" + (
            f"; reachable: {reach}" if reach else ""
        )
        out.print(Text.assemble(("valid", "green"), summary), highlight=False, soft_wrap=True)
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
    contact_id = next((m.contact_id for m in messages if m.contact_id is not None), None)
    table = Table(title=Text(f"{file} - preview for contact {contact_id or '(first)'}"), show_lines=True)
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


def _results_table(result: dict[str, Any]) -> Table:
    from clarion.results import format_reasons

    table = Table(title=f"run {result['run_id']}: {result['status']}")
    for column in (
        "channel",
        "variant",
        "planned",
        "sent",
        "failed",
        "skipped",
        "uncertain",
        "pending",
        "reasons",
    ):
        table.add_column(
            column, justify="right" if column not in ("channel", "variant", "reasons") else "left"
        )
    for r in result["results"]:
        reasons = format_reasons(r["reasons"])
        table.add_row(
            r["channel"],
            r["variant"],
            *(f"{r[k]:,}" for k in ("planned", "sent", "failed", "skipped", "uncertain", "pending")),
            Text(reasons),
        )
    return table


@app.command()
@user_errors
def run(
    file: FileArg,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Resume this run (after a crash or Ctrl-C) instead of a new one."),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Send to the local provider sandbox with dummy credentials.")
    ] = False,
    resend_uncertain: Annotated[
        bool,
        typer.Option(
            "--resend-uncertain",
            help="On resume, send again what was in flight at the crash (it may arrive twice).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Send a campaign: every channel at the same moment, through a Prefect flow run."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # Clarion never phones home
    from clarion.loader import load_campaign
    from clarion.plan import new_run_id
    from clarion.runner import run_campaign, sandbox_environment
    from clarion.validate import open_contacts

    loaded = load_campaign(file)  # the file's own problems, before any flow starts
    open_contacts(loaded)
    rid = run_id or new_run_id(loaded.campaign.name)
    console = None if as_json else err
    with contextlib.ExitStack() as stack:
        if sandbox:
            box = stack.enter_context(sandbox_environment())
            err.print(f"provider sandbox at {box.url} (dummy credentials)", markup=False, highlight=False)
        err.print(f"run {rid}: {'resuming' if run_id else 'starting'}", markup=False, highlight=False)
        result = run_campaign(str(file), rid, resend_uncertain=resend_uncertain, console=console)
        if sandbox and not as_json:
            err.print(f"the sandbox received {len(box.messages()):,} messages", markup=False, highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        out.print(_results_table(result))
        for channel, errors in result["errors"].items():
            for line in errors[:5]:
                err.print(f"channel {channel}: {line}", markup=False)
    if result["status"] != "completed":
        raise typer.Exit(1)


@app.command()
@user_errors
def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List runs recorded in the ledger."""
    from flows.launch import ledger

    records = ledger().list_runs(limit=limit)
    rows = [
        {
            "run_id": r.id,
            "campaign": r.campaign,
            "status": str(r.status),
            "created_at": r.created_at.isoformat(timespec="seconds"),
            "finished_at": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
        }
        for r in records
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="runs")
    for column in ("run_id", "campaign", "status", "created_at", "finished_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(Text(str(row[c] or "")) for c in ("run_id", "campaign", "status", "created_at", "finished_at"))
        )
    out.print(table)


@app.command("sandbox")
@user_errors
def sandbox_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8025,
    faults: Annotated[
        Path | None, typer.Option(help="YAML or JSON file of fault settings per provider.", exists=True)
    ] = None,
) -> None:
    """Serve the provider sandbox (SendGrid, Twilio, X emulators) until Ctrl-C."""
    from clarion.sandbox import serve

    config = None
    if faults is not None:
        import yaml

        config = yaml.safe_load(faults.read_text())
    err.print(f"provider sandbox on http://127.0.0.1:{port}/ (Ctrl-C to stop)", markup=False)
    serve(host="127.0.0.1", port=port, faults=config)


@app.command()
def schema() -> None:
    """Print the campaign format's JSON Schema (for editor completion)."""
    from clarion.model import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


def main() -> None:
    app()
