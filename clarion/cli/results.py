"""Commands about results: report, compare, conversions import, collect."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import command_group, err, out, resolve_run, user_errors

commands = command_group()


@commands.command()
@user_errors
def report(
    run_id: Annotated[
        str,
        typer.Argument(
            parser=params.RUN_OR_FILE,
            help="Run id (see `clarion runs`), `latest`, or a responder file (its funnel per rule).",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print one row per channel x variant as CSV.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", dir_okay=False, writable=True, help="Write a self-contained HTML page to this file."
        ),
    ] = None,
) -> None:
    """Compare the variants of a run per channel (and against the holdout), with verdicts; for a
    responder, its funnel per rule (inbound -> matched -> replied -> clicked -> converted)."""
    from clarion.analysis.report import build_report, render_html, terminal, to_csv
    from clarion.cli.responders import responder_report
    from clarion.ledger import Ledger

    if responder_report(run_id, as_json=as_json):
        return
    store = Ledger.open()
    data = build_report(store, resolve_run(store, run_id))
    if html is not None:
        try:
            html.write_text(render_html(data), encoding="utf-8")
        except OSError as exc:
            raise ClarionError(f"{html}: cannot write the report ({exc.strerror})") from None
        err.print(f"report written to {html}", markup=False)
    if as_json:
        sys.stdout.write(json.dumps(data.as_dict(), indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(to_csv(data))
    elif html is None:
        out.print(terminal(data))


@commands.command()
@user_errors
def compare(
    counts: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV: variant,exposures,conversions[,revenue,revenue_sq].",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    mde: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Absolute lift to detect (e.g. 0.01): recipients needed per arm."),
    ] = None,
    alpha: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="Significance level, after Holm's adjustment.")
    ] = 0.05,
) -> None:
    """The report's statistics on counts from elsewhere; the first row is the baseline."""
    from clarion.analysis.compare import compare_command

    if not 0 < alpha < 1:
        raise ClarionError(f"--alpha {alpha}: give a level between 0 and 1, e.g. 0.05")
    compare_command(counts, as_json=as_json, mde=mde, alpha=alpha, console=out)


conversions_app = typer.Typer(help="Conversions measured outside tracked links.", no_args_is_help=True)
commands.add_typer(conversions_app, name="conversions")


@conversions_app.command("import")
@user_errors
def conversions_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV export: email or phone, amount, time (id, currency).",
        ),
    ],
    run: Annotated[
        str,
        typer.Option(
            "--run", parser=params.RUN_ID, help="The run the conversions are measured for, or `latest`."
        ),
    ],
    currency: Annotated[
        str, typer.Option(parser=params.CURRENCY, help="Currency of rows without a currency column.")
    ] = "USD",
) -> None:
    """Record conversions from a CSV export, joined to the run's contacts (how the holdout is measured)."""
    from clarion.ledger import Ledger
    from clarion.tracking.conversions import import_conversions

    store = Ledger.open()
    rid = resolve_run(store, run)
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


@commands.command()
@user_errors
def collect(
    run_id: Annotated[
        str, typer.Argument(parser=params.RUN_ID, help="Run id, or `latest`.", show_default=False)
    ],
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Ask the local provider sandbox.")] = False,
) -> None:
    """Pull the public metrics (impressions, likes, reposts...) of a run's social posts into the ledger."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from clarion.flows.collect import collect as collect_flow
    from clarion.ledger import Ledger

    rid = resolve_run(Ledger.open(), run_id)
    if sandbox and not os.environ.get("CLARION_X_URL"):
        raise ClarionError("--sandbox needs CLARION_X_URL (the URL `clarion sandbox` prints)")
    found = collect_flow(rid)
    out.print(f"metrics of {len(found)} post(s) recorded for run {rid}", markup=False)
