"""`clarion suppress`: the suppression store from the command line (add, import, export, list, remove).

Addresses are normalised the way the send engine compares them (lower-case email, E.164 phone); the kind
(email or sms) is inferred from the address unless given. Imports read a CSV with an `email`, `phone` or
`address` column (the export format of SendGrid's suppression lists and of most CRMs), report every bad
line with its number, and add nothing unless every line is good (`--skip-invalid` adds the good ones).
Exports are CSV with formula-like cells neutralised, so a spreadsheet cannot run them.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clarion.base.addresses import kind_of, suppression_form
from clarion.base.consent import Kind, Reason
from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings
from clarion.cli import params
from clarion.cli.app import command_group
from clarion.ledger import Ledger, Suppression

suppress_app = typer.Typer(
    help="The suppression store: addresses that get no email or no texts, from any campaign.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_COLUMNS = ("address", "email", "phone")
_BY_COLUMN = {"email": Kind.EMAIL, "phone": Kind.SMS}
_E164 = re.compile(r"^\+[1-9]\d{6,14}\Z")
KindOption = Annotated[
    Kind | None, typer.Option("--kind", help="email or sms (default: inferred from each address).")
]


def _ledger() -> Ledger:
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    return ledger


def _entry(raw: str, kind: Kind | None, reason: str, source: str, region: str) -> Suppression:
    chosen = kind or kind_of(raw)
    return Suppression(chosen.value, suppression_form(chosen, raw, region), reason, source)


@suppress_app.command("add")
def add(
    addresses: Annotated[
        list[str], typer.Argument(parser=params.ADDRESS, help="Email addresses or phone numbers.")
    ],
    kind: KindOption = None,
    reason: Annotated[
        str, typer.Option(parser=params.TEXT, help="Why (kept with the record).")
    ] = Reason.MANUAL.value,
    region: Annotated[
        str, typer.Option(parser=params.REGION, help="Region of numbers written without +country.")
    ] = "US",
) -> None:
    """Suppress addresses: no campaign sends them that kind of message again (until `remove`)."""
    try:
        entries = [_entry(a, kind, reason, "cli", region) for a in addresses]
    except ClarionError as exc:
        err.print(f"error: {exc}; nothing was added", markup=False)
        raise typer.Exit(1) from None
    added = _ledger().suppress(entries)
    out.print(f"{added} suppressed ({len(entries) - added} already were)", markup=False)


@suppress_app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="CSV with an address, email or phone column."
        ),
    ],
    kind: KindOption = None,
    reason: Annotated[
        str, typer.Option(parser=params.TEXT, help="Why (kept with each record).")
    ] = Reason.MANUAL.value,
    region: Annotated[
        str, typer.Option(parser=params.REGION, help="Region of numbers written without +country.")
    ] = "US",
    skip_invalid: Annotated[bool, typer.Option(help="Add the good lines even if some are bad.")] = False,
) -> None:
    """Import a suppression list (e.g. SendGrid's, or your CRM's opt-outs)."""
    entries, problems = _read(file, kind, reason, region, stop_after=None if skip_invalid else 21)
    for problem in problems[:20]:
        err.print(problem, markup=False)
    if len(problems) > 20:
        more = f"{len(problems) - 20:,}" if skip_invalid else "more"
        err.print(f"... and {more} bad lines", markup=False)
    if problems and not skip_invalid:
        many = f"{len(problems)}" if len(problems) <= 20 else "more than 20"
        err.print(f"{file}: {many} bad line(s); nothing was imported (fix them, or --skip-invalid)")
        raise typer.Exit(1)
    added = _ledger().suppress(entries)
    out.print(f"{file}: {len(entries):,} addresses read, {added:,} newly suppressed", markup=False)
    if problems:
        raise typer.Exit(1)


def _read(
    file: Path, kind: Kind | None, reason: str, region: str, *, stop_after: int | None = None
) -> tuple[list[Suppression], list[str]]:
    """The file's addresses and its bad lines; reading stops at `stop_after` bad lines (when nothing will
    be imported anyway: a wrong file of a million lines is said wrong in a second, not in minutes)."""
    try:
        handle = file.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        err.print(f"error: {file}: cannot be read ({exc.strerror})", markup=False)
        raise typer.Exit(1) from None
    entries, problems = [], []
    with handle:
        try:
            reader = csv.DictReader(handle)
            columns = [c for c in (reader.fieldnames or []) if c.strip().lower() in _COLUMNS]
            if not columns:
                found = ", ".join(reader.fieldnames or []) or "none"
                err.print(f"error: {file}:1: needs an address, email or phone column (found: {found})")
                raise typer.Exit(1)
            for row in reader:
                for column in columns:
                    raw = (row.get(column) or "").strip()
                    if not raw:
                        continue
                    column_kind = kind or _BY_COLUMN.get(column.strip().lower())
                    try:
                        entries.append(_entry(raw, column_kind, reason, f"import:{file.name}", region))
                    except ClarionError as exc:
                        problems.append(f"{file}:{reader.line_num}: {column}: {exc}")
                if stop_after is not None and len(problems) >= stop_after:
                    break
        except (UnicodeDecodeError, csv.Error) as exc:
            err.print(f"error: {file}: not a UTF-8 CSV file ({exc}); nothing was imported", markup=False)
            raise typer.Exit(1) from None
    return entries, problems


@suppress_app.command("export")
def export(
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False, writable=True, help="Output file (default stdout)."),
    ] = None,
    kind: KindOption = None,
    include_lifted: Annotated[bool, typer.Option(help="Also those who opted back in.")] = False,
) -> None:
    """Export the suppression store as CSV (kind, address, reason, source, created_at, lifted_at)."""
    from clarion.analysis.report.formats import safe_cell  # the report's stack (scipy) loads only here

    try:
        handle = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as exc:
        err.print(
            f"error: --out {output}: cannot write ({exc.strerror}); name a file in a folder that exists"
        )
        raise typer.Exit(1) from None
    try:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["kind", "address", "reason", "source", "created_at", "lifted_at"])
        count = 0
        for s in _ledger().suppressions(kind.value if kind else None, include_lifted=include_lifted):
            created = s.created_at.isoformat() if s.created_at else ""
            lifted = s.lifted_at.isoformat() if s.lifted_at else ""
            # a number in E.164 (validated when stored) is digits after "+": no formula, kept as it is
            address = s.address if _E164.match(s.address) else safe_cell(s.address)
            writer.writerow([s.kind, address, safe_cell(s.reason), safe_cell(s.source), created, lifted])
            count += 1
    finally:
        if output:
            handle.close()
    if output:
        out.print(f"{count:,} suppressions written to {output}", markup=False)


@suppress_app.command("list")
def list_(
    kind: KindOption = None,
    limit: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Show at most this many (newest last).")
    ] = 50,
) -> None:
    """Show how many addresses are suppressed, and the first of them."""
    ledger = _ledger()
    counts = ledger.suppression_counts()
    table = Table("kind", "address", "reason", "source", "since")
    for shown, s in enumerate(ledger.suppressions(kind.value if kind else None)):
        if shown >= limit:
            break
        since = s.created_at.strftime("%Y-%m-%d %H:%M") if s.created_at else ""
        table.add_row(s.kind, s.address, s.reason, s.source, since)
    out.print(table)
    total = ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items())) or "none"
    out.print(f"suppressed: {total}", markup=False)


@suppress_app.command("remove")
def remove(
    addresses: Annotated[
        list[str], typer.Argument(parser=params.ADDRESS, help="Email addresses or phone numbers.")
    ],
    kind: KindOption = None,
    region: Annotated[
        str, typer.Option(parser=params.REGION, help="Region of numbers written without +country.")
    ] = "US",
) -> None:
    """Lift suppressions: the person opted back in (keep their consent on record). The history is kept."""
    ledger = _ledger()
    missing = []
    for raw in addresses:
        try:
            entry = _entry(raw, kind, Reason.MANUAL, "cli", region)
        except ClarionError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
        if not ledger.lift(entry.kind, entry.address):
            missing.append(raw)
    if missing:
        err.print(f"not suppressed: {', '.join(missing)}", markup=False)
        raise typer.Exit(1)
    out.print(f"{len(addresses)} opted back in", markup=False)


commands = command_group()
commands.add_typer(suppress_app, name="suppress")
