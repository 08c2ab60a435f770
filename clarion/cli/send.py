"""Commands that send and watch runs: run, runs, status."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import FileArg, command_group, err, out, resolve_run, user_errors
from clarion.cli.interrupt import Interrupted

if TYPE_CHECKING:
    from clarion.campaign.loader import LoadedCampaign
    from clarion.engine.outcome import RunOutcome

commands = command_group()


def _results_table(result: RunOutcome) -> Table:
    from clarion.ledger.results import format_reasons

    table = Table(title=f"run {result.run_id}: {result.status}")
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
    for r in result.results:
        table.add_row(
            r.channel,
            r.variant,
            *(f"{n:,}" for n in (r.planned, r.sent, r.failed, r.skipped, r.uncertain, r.pending)),
            Text(format_reasons(r.reasons)),
        )
    return table


@commands.command()
@user_errors
def run(
    file: FileArg,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            parser=params.NEW_RUN_ID,
            help="Resume this run (after a crash or Ctrl-C) instead of a new one.",
        ),
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
            exists=True,
            dir_okay=False,
            readable=True,
            help="With --sandbox: simulated recipients click and convert as this file says, through the "
            "tracking service (started here); the report follows.",
        ),
    ] = None,
    approved_by: Annotated[
        str | None,
        typer.Option(
            "--approved-by",
            parser=params.NAME,
            help="For a campaign with `approval:`: you are one of its approvers and approve it now.",
        ),
    ] = None,
    send_pool: Annotated[
        str | None,
        typer.Option(
            "--send-pool",
            parser=params.POOL,
            help="Send the batches as shards on this Prefect work pool's workers (CLARION_SEND_POOL; "
            "needs PREFECT_API_URL, CLARION_REDIS_URL and a PostgreSQL ledger).",
        ),
    ] = None,
    shards: Annotated[
        int | None, typer.Option("--shards", min=1, max=256, help="Shards per wave on the pool.")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="With --run-id: send again the failures whose provider answer proves the message was not "
            "taken (5xx, 429, connection refused, or not received per `clarion reconcile`); never "
            "rejections, never uncertain sends.",
        ),
    ] = False,
    with_console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="With --sandbox: serve the operators' console here too, and print its address and a "
            "sign-in token valid while the run lasts.",
        ),
    ] = False,
) -> None:
    """Send a campaign: every channel at the same moment (step by step, with `steps:`), through a Prefect
    flow run in this process (its batches in this process, or as shards on a work pool)."""
    import os

    if send_pool is not None:
        os.environ["CLARION_SEND_POOL"] = send_pool
    if shards is not None:
        os.environ["CLARION_SHARDS"] = str(shards)
    _check_pool()

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # Clarion never phones home
    # Prefect's temporary server gets 20 s to start by default; a busy machine needs more (and said
    # "did not start in time" otherwise)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from clarion.campaign.loader import load_campaign

    loaded = load_campaign(file)  # the file's own problems, before any flow starts
    loaded.contacts()
    _check_approval(loaded.campaign, approved_by)
    if retry_failed:
        _check_retry(run_id)
    console = None if as_json else err
    if engage is not None and not sandbox:
        raise ClarionError("--engage simulates recipients in the provider sandbox: add --sandbox")
    if with_console and not sandbox:
        raise ClarionError(
            "--console serves a console for a sandbox run: add --sandbox (for real runs, use `clarion serve`)"
        )
    _prestart_helpers(loaded)  # before the launch imports its own machinery: the helper imports meanwhile
    from clarion.cli.runner import run_campaign, sandbox_environment
    from clarion.engine.plan import new_run_id

    rid = run_id or new_run_id(loaded.campaign.name)
    with contextlib.ExitStack() as stack:
        if sandbox:
            box = stack.enter_context(sandbox_environment())
            err.print(f"provider sandbox at {box.url} (dummy credentials)", markup=False, highlight=False)
        if engage is not None or with_console:
            from clarion.cli.runner import local_service

            service = stack.enter_context(local_service(box, engage, console=with_console))
            if engage is not None:
                err.print(f"tracking service at {service.url}; simulated recipients engage", markup=False)
            if service.console_token is not None:
                err.print(
                    f"console at {service.url}/console/ (sign in with token {service.console_token}; "
                    "it works while this run lasts)",
                    markup=False,
                )
        what = "resuming" if _known_run(rid) else "starting"
        err.print(f"run {rid}: {what}", markup=False, highlight=False)
        try:
            result = run_campaign(
                str(file),
                rid,
                resend_uncertain=resend_uncertain,
                console=console,
                approved_by=approved_by,
                retry_failed=retry_failed,
                child_runs=_child_runs(loaded.campaign, rid),
            )
        except Interrupted as stop:
            _interrupted(stop, file, as_json=as_json)
        if sandbox and not as_json:
            err.print(f"the sandbox received {len(box.messages()):,} messages", markup=False, highlight=False)
        if engage is not None:
            _finish_engagement(box, rid, quiet=as_json)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        out.print(_results_table(result))
        for channel, errors in result.errors.items():
            for line in errors[:5]:
                err.print(f"channel {channel}: {line}", markup=False)
    if not result.completed:
        raise typer.Exit(1)


def _prestart_helpers(loaded: LoadedCampaign) -> None:
    """The launch's local send helpers, started now: each imports Clarion (about a second) while this
    process imports Prefect, and is ready when planning begins (clarion/engine/spawn.py). On a SQLite
    ledger, the first validates the campaign's files (if they never did) while the launch plans; on
    PostgreSQL it plans half of a new run's contacts instead (clarion/engine/helpers.py), which gains more
    (measured: README, "First message of a big audience")."""
    from clarion.base.settings import ClarionSettings
    from clarion.engine.spawn import prestart, wanted

    settings = ClarionSettings()
    if settings.send_pool:
        return  # the pool's workers send
    count = wanted(settings.send_helpers, loaded)
    check = None if settings.postgres_ledger else loaded.path
    if count:
        with contextlib.suppress(OSError):  # the launch starts them itself (or sends alone, with a warning)
            prestart(count, check=check)


def _check_pool() -> None:
    """A send pool needs a Prefect server the workers reach, Redis, and a ledger they all share."""
    import os

    from clarion.base.settings import ClarionSettings

    settings = ClarionSettings()
    if not settings.send_pool:
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise ClarionError(
            f"send pool {settings.send_pool!r}: its workers take shards from a Prefect server: start one "
            "(`clarion devstack up`, or `prefect server start`) and set PREFECT_API_URL"
        )
    if not settings.redis_url:
        raise ClarionError(
            f"send pool {settings.send_pool!r}: the shards share pacing, stopped channels and the opening "
            "instant through Redis: set CLARION_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    if not settings.postgres_ledger:
        raise ClarionError(
            f"send pool {settings.send_pool!r}: the workers share the ledger: set CLARION_DATABASE_URL to "
            "PostgreSQL (postgresql+psycopg://...); a SQLite file is this machine's alone"
        )


def _check_retry(run_id: str | None) -> None:
    """--retry-failed names a run the ledger holds; say what will be sent again, and what will not."""
    from clarion.ledger import RESENDABLE, Ledger, SendState

    if run_id is None:
        raise ClarionError("--retry-failed sends a run's failures again: name the run with --run-id RUN")
    ledger = Ledger.open()
    if ledger.get_run(run_id) is None:
        raise ClarionError(f"--retry-failed: run {run_id!r} is not in the ledger (see `clarion runs`)")
    failed = [r for r in ledger.summary(run_id) if r.state is SendState.FAILED]
    again = sum(r.count for r in failed if r.reason in RESENDABLE)
    kept = sum(r.count for r in failed if r.reason not in RESENDABLE)
    err.print(
        f"run {run_id}: {again:,} failed sends will be sent again (the provider never took them)"
        + (f"; {kept:,} refused for good (rejected) will not" if kept else ""),
        markup=False,
        highlight=False,
    )


def _child_runs(campaign: Any, run_id: str) -> tuple[str, ...]:
    """The runs a launch may send besides its own: its rollout's (or Thompson waves') and its kits'."""
    from clarion.engine.schedule import child_runs

    return child_runs(campaign, run_id)


def _interrupted(stop: Interrupted, file: Path, *, as_json: bool) -> NoReturn:
    """One line: what stopped the run and how to resume it; exit 128 + the signal (1 for a lost server).

    A flow left behind (its Prefect server gone) may hold threads that never end: exit at once, the
    ledger already says where the run stands."""
    import os
    import shlex

    resume = f"clarion run {shlex.quote(str(file))} --run-id {shlex.quote(stop.run_id)}"
    if as_json:
        payload = {"run_id": stop.run_id, "status": "interrupted", "why": stop.why, "resume": resume}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    err.print(f"run {stop.run_id} interrupted ({stop.why}); resume with: {resume}", markup=False)
    if stop.abandoned:
        from clarion.cli.interrupt import stop_temporary_servers

        stop_temporary_servers()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.exit_code)
    raise typer.Exit(stop.exit_code)


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


@commands.command()
@user_errors
def runs(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List runs recorded in the ledger."""
    from clarion.ledger import Ledger

    records = Ledger.open().list_runs(limit=limit)
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


@commands.command()
@user_errors
def status(
    run_id: Annotated[
        str,
        typer.Argument(
            parser=params.RUN_ID, help="Run id (see `clarion runs`), or `latest`.", show_default=False
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Where one run stands: its state, what each channel sent and holds back (until when), what it waits
    for, and what recipients did since."""
    from dataclasses import asdict

    from clarion.engine.waiting import Explainer
    from clarion.ledger import Ledger, RunNotFound, RunStatus
    from clarion.ledger.results import channel_totals, run_results

    store = Ledger.open()
    rid = resolve_run(store, run_id)
    record = store.get_run(rid)
    if record is None:
        raise RunNotFound(rid)
    from clarion.analysis.report.experiment import window_of

    engagement = store.engagement(rid, window_of(record.options))  # what the report counts, too
    waits = Explainer(store).explain(rid)
    channels = {cid: asdict(t) for cid, t in channel_totals(run_results(store, rid)).items()}
    for cid, counts in channels.items():
        counts["deferred"] = waits.deferred_count(cid)
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
        "waiting": waits.as_dict(),
    }
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out.print(f"run {rid} ({record.campaign}): {record.status}", markup=False, highlight=False)
    if record.error:
        label = "stopped" if record.status is RunStatus.INTERRUPTED else "error"
        out.print(f"{label}: {record.error}", markup=False, highlight=False)
    table = Table(title="per channel")
    columns = (
        "planned",
        "sent",
        "failed",
        "skipped",
        "uncertain",
        "pending",
        "deferred",
        "delivered",
        "clicks",
    )
    table.add_column("channel")
    for column in columns:
        table.add_column(column, justify="right")
    for channel, counts in channels.items():
        table.add_row(Text(channel), *(f"{counts.get(c, 0):,}" for c in columns))
    out.print(table)
    for line in waits.lines():
        out.print(line, markup=False, highlight=False)
    out.print(f"contacts who converted (any route): {converted:,}", markup=False, highlight=False)
