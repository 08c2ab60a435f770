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

from clarion.base.errors import CampaignInvalid, ClarionError
from clarion.channels.base import Message

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
    from clarion.messages.validate import validate_campaign

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
        reach = ", ".join(
            f"{cid} {n:,}" + (f" ({report.consented[cid]:,} agreed to it)" if cid in report.consented else "")
            for cid, n in report.reachable.items()
        )
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
    from clarion.messages.validate import preview as render_preview

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
    from clarion.ledger.results import format_reasons

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
    engage: Annotated[
        Path | None,
        typer.Option(
            "--engage",
            help="With --sandbox: simulated recipients click and convert as this file says, through the "
            "tracking service (started here); the report follows.",
        ),
    ] = None,
    approved_by: Annotated[
        str | None,
        typer.Option(
            "--approved-by",
            help="For a campaign with `approval:`: you are one of its approvers and approve it now.",
        ),
    ] = None,
) -> None:
    """Send a campaign: every channel at the same moment (step by step, with `steps:`), through a Prefect
    flow run in this process."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # Clarion never phones home
    from clarion.campaign.loader import load_campaign
    from clarion.cli.runner import run_campaign, sandbox_environment
    from clarion.engine.plan import new_run_id
    from clarion.messages.validate import open_contacts

    loaded = load_campaign(file)  # the file's own problems, before any flow starts
    open_contacts(loaded)
    _check_approval(loaded.campaign, approved_by)
    rid = run_id or new_run_id(loaded.campaign.name)
    console = None if as_json else err
    if engage is not None and not sandbox:
        raise ClarionError("--engage simulates recipients in the provider sandbox: add --sandbox")
    with contextlib.ExitStack() as stack:
        if sandbox:
            box = stack.enter_context(sandbox_environment())
            err.print(f"provider sandbox at {box.url} (dummy credentials)", markup=False, highlight=False)
        if engage is not None:
            from clarion.cli.runner import engaged

            tracking = stack.enter_context(engaged(box, engage))
            err.print(f"tracking service at {tracking}; simulated recipients engage", markup=False)
        what = "resuming" if _known_run(rid) else "starting"
        err.print(f"run {rid}: {what}", markup=False, highlight=False)
        result = run_campaign(
            str(file), rid, resend_uncertain=resend_uncertain, console=console, approved_by=approved_by
        )
        if sandbox and not as_json:
            err.print(f"the sandbox received {len(box.messages()):,} messages", markup=False, highlight=False)
        if engage is not None:
            _finish_engagement(box, rid, quiet=as_json)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        out.print(_results_table(result))
        for channel, errors in result["errors"].items():
            for line in errors[:5]:
                err.print(f"channel {channel}: {line}", markup=False)
    if result["status"] != "completed":
        raise typer.Exit(1)


def _known_run(run_id: str) -> bool:
    """Whether the ledger already holds this run (a new or unreachable ledger: no)."""
    from sqlalchemy.exc import SQLAlchemyError

    from clarion.base.settings import ClarionSettings
    from clarion.ledger import Ledger, LedgerError

    try:
        return Ledger(ClarionSettings().ledger_url()).get_run(run_id) is not None
    except (LedgerError, ClarionError, SQLAlchemyError):
        return False


def _check_approval(campaign: Any, approved_by: str | None) -> None:
    import os

    gate = campaign.approval
    if gate is None or not gate.required:
        return
    if approved_by is not None:
        if gate.approvers and approved_by not in gate.approvers:
            raise ClarionError(
                f"--approved-by {approved_by!r}: not one of this campaign's approvers "
                f"({', '.join(gate.approvers)})"
            )
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise ClarionError(
            "this campaign needs approval (`approval.required`), and an approver in another shell can only "
            "reach a run on a Prefect server: start one (`prefect server start`) and set PREFECT_API_URL, "
            "deploy the campaign (`clarion deploy`), or approve it yourself with --approved-by NAME"
        )


def _finish_engagement(box: Any, run_id: str, *, quiet: bool) -> None:
    """Wait for the simulated recipients, then pull the posts' metrics into the ledger."""
    from clarion.flows.collect import collect as collect_flow

    with err.status("waiting for the simulated recipients' clicks, events and conversions"):
        stats = box.wait_engaged(timeout=600)
    err.print(
        f"engagement: {stats['clicks']:,} clicks, {stats['conversions']:,} conversions, "
        f"{stats['events_posted']:,} email events, {stats['callbacks_posted']:,} SMS callbacks, "
        f"opt-outs: {stats['unsubscribes']:,} unsubscribed, {stats['spam_reports']:,} spam reports, "
        f"{stats['stops']:,} STOP replies"
        + (f", {stats['failures']:,} failed requests" if stats["failures"] else ""),
        markup=False,
    )
    collect_flow(run_id)
    if not quiet:
        err.print(f"compare the variants: clarion report {run_id}", markup=False)


@app.command()
@user_errors
def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List runs recorded in the ledger."""
    from clarion.flows.launch import ledger

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


@app.command()
@user_errors
def status(
    run_id: Annotated[
        str, typer.Argument(help="Run id (see `clarion runs`), or `latest`.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Where one run stands: its state, what each channel sent, and what recipients did since."""
    from clarion.flows.launch import ledger
    from clarion.ledger.results import run_results

    store = ledger()
    rid = _run_id(store, run_id)
    record = store.get_run(rid)
    if record is None:
        from clarion.ledger import RunNotFound

        raise RunNotFound(rid)
    engagement = store.engagement(rid)
    channels: dict[str, dict[str, int]] = {}
    for r in run_results(store, rid):
        entry = channels.setdefault(
            r.channel, dict.fromkeys(("planned", "sent", "failed", "skipped", "uncertain", "pending"), 0)
        )
        for key in entry:
            entry[key] += getattr(r, key)
    for (channel, _variant, kind), people in engagement.events.items():
        if kind == "delivered" and channel in channels:
            channels[channel]["delivered"] = channels[channel].get("delivered", 0) + people
    for (channel, _variant), clicks in engagement.unique_clicks.items():
        if channel in channels:
            channels[channel]["clicks"] = channels[channel].get("clicks", 0) + clicks
    converted = sum(people for people, *_ in engagement.arm_conversions.values())
    data = {
        "run_id": rid,
        "campaign": record.campaign,
        "status": str(record.status),
        "created_at": record.created_at.isoformat(timespec="seconds"),
        "finished_at": record.finished_at.isoformat(timespec="seconds") if record.finished_at else None,
        "error": record.error,
        "channels": channels,
        "contacts_converted": converted,
    }
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out.print(f"run {rid} ({record.campaign}): {record.status}", markup=False, highlight=False)
    if record.error:
        out.print(f"error: {record.error}", markup=False, highlight=False)
    table = Table(title="per channel")
    columns = ("planned", "sent", "failed", "skipped", "uncertain", "pending", "delivered", "clicks")
    table.add_column("channel")
    for column in columns:
        table.add_column(column, justify="right")
    for channel, counts in channels.items():
        table.add_row(Text(channel), *(f"{counts.get(c, 0):,}" for c in columns))
    out.print(table)
    out.print(f"contacts who converted (any route): {converted:,}", markup=False, highlight=False)


@app.command("sandbox")
@user_errors
def sandbox_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8025,
    faults: Annotated[
        Path | None, typer.Option(help="YAML or JSON file of fault settings per provider.", exists=True)
    ] = None,
    engage: Annotated[
        Path | None,
        typer.Option(
            "--engage",
            help="Engagement settings (YAML, with tracking_url and the webhook secrets): simulated "
            "recipients click and convert through the tracking service at tracking_url.",
            exists=True,
        ),
    ] = None,
) -> None:
    """Serve the provider sandbox (SendGrid, Twilio, X emulators) until Ctrl-C."""
    from clarion.sandbox import EngagementConfig, serve

    config = None
    if faults is not None:
        import yaml

        config = yaml.safe_load(faults.read_text())
    engagement = None
    if engage is not None:
        try:
            engagement = EngagementConfig.load(engage)
        except ValueError as exc:
            raise ClarionError(f"{engage}: {exc}") from None
    err.print(f"provider sandbox on http://127.0.0.1:{port}/ (Ctrl-C to stop)", markup=False)
    serve(host="127.0.0.1", port=port, faults=config, engagement=engagement)


def _run_id(ledger: Any, run_id: str) -> str:
    """`latest` names the newest run."""
    if run_id != "latest":
        return run_id
    newest = ledger.list_runs(limit=1)
    if not newest:
        raise ClarionError("no runs in the ledger yet; start one with `clarion run FILE`")
    return str(newest[0].id)


@app.command()
@user_errors
def report(
    run_id: Annotated[
        str, typer.Argument(help="Run id (see `clarion runs`), or `latest`.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print one row per channel x variant as CSV.")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML page to this file.")
    ] = None,
) -> None:
    """Compare the variants of a run per channel (and against the holdout), with verdicts."""
    from clarion.analysis.report import build_report, render_html, terminal, to_csv
    from clarion.flows.launch import ledger

    store = ledger()
    data = build_report(store, _run_id(store, run_id))
    if html is not None:
        try:
            html.write_text(render_html(data), encoding="utf-8")
        except OSError as exc:
            raise ClarionError(f"{html}: cannot write the report ({exc.strerror})") from None
        err.print(f"report written to {html}", markup=False)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(to_csv(data))
    elif html is None:
        out.print(terminal(data))


@app.command()
@user_errors
def compare(
    counts: Annotated[Path, typer.Argument(help="CSV: variant,exposures,conversions[,revenue,revenue_sq].")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    mde: Annotated[
        float | None, typer.Option(help="Absolute lift to detect (e.g. 0.01): recipients needed per arm.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level, after Holm's adjustment.")] = 0.05,
) -> None:
    """The report's statistics on counts from elsewhere; the first row is the baseline."""
    from clarion.analysis.compare import compare_command

    if not 0 < alpha < 1:
        raise ClarionError(f"--alpha {alpha}: give a level between 0 and 1, e.g. 0.05")
    compare_command(counts, as_json=as_json, mde=mde, alpha=alpha, console=out)


conversions_app = typer.Typer(help="Conversions measured outside tracked links.", no_args_is_help=True)
app.add_typer(conversions_app, name="conversions")


@conversions_app.command("import")
@user_errors
def conversions_import(
    file: Annotated[Path, typer.Argument(help="CSV export: email or phone, amount, time (id, currency).")],
    run: Annotated[str, typer.Option("--run", help="The run the conversions are measured for, or `latest`.")],
    currency: Annotated[str, typer.Option(help="Currency of rows without a currency column.")] = "USD",
) -> None:
    """Record conversions from a CSV export, joined to the run's contacts (how the holdout is measured)."""
    from clarion.flows.launch import ledger
    from clarion.tracking.conversions import import_conversions

    store = ledger()
    rid = _run_id(store, run)
    result = import_conversions(store, file, rid, currency=currency)
    out.print(
        f"{result.rows:,} rows read, {result.recorded:,} conversions recorded for run {rid}", markup=False
    )
    if result.unmatched_lines:
        lines = ", ".join(str(n) for n in result.unmatched_lines[:10])
        more = f" and {len(result.unmatched_lines) - 10:,} more" if len(result.unmatched_lines) > 10 else ""
        err.print(
            f"{len(result.unmatched_lines):,} rows match no contact of the run (lines {lines}{more}); "
            "they are not recorded",
            markup=False,
        )


@app.command()
@user_errors
def collect(
    run_id: Annotated[str, typer.Argument(help="Run id, or `latest`.", show_default=False)],
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Ask the local provider sandbox.")] = False,
) -> None:
    """Pull the public metrics (impressions, likes, reposts...) of a run's social posts into the ledger."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from clarion.flows.collect import collect as collect_flow
    from clarion.flows.launch import ledger

    rid = _run_id(ledger(), run_id)
    if sandbox and not os.environ.get("CLARION_X_URL"):
        raise ClarionError("--sandbox needs CLARION_X_URL (the URL `clarion sandbox` prints)")
    found = collect_flow(rid)
    out.print(f"metrics of {len(found)} post(s) recorded for run {rid}", markup=False)


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 behind a proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    """Serve the tracking service: tracked links, SendGrid/Twilio webhooks and conversions, into the ledger.

    Keys come from the environment: CLARION_SECRET_KEY (links), SENDGRID_WEBHOOK_PUBLIC_KEY,
    TWILIO_AUTH_TOKEN, CLARION_CONVERSION_SECRET; a webhook whose key is unset is refused.
    """
    import logging

    import uvicorn

    from clarion.tracking import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tracking_app = build_app()
    err.print(f"tracking service on http://{host}:{port}/ (Ctrl-C to stop)", markup=False)
    uvicorn.run(
        tracking_app, host=host, port=port, access_log=access_log, proxy_headers=True, log_level="info"
    )


@app.command()
def schema() -> None:
    """Print the campaign format's JSON Schema (for editor completion)."""
    from clarion.campaign.model import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


# The operations commands (deploy, worker, trigger, approve, reject) live in their own module, on this app.
from clarion.cli import ops  # noqa: E402, F401


def main() -> None:
    app()


from clarion.cli.suppress import suppress_app  # noqa: E402

app.add_typer(suppress_app, name="suppress")
