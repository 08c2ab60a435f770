"""`clarion compare COUNTS.csv`: the report's statistics on counts from elsewhere (a spreadsheet, a tool).

The file is CSV (UTF-8) with a header and one row per arm, the first row the baseline. Columns, in any
order: `variant,exposures,conversions`, optionally `revenue` (the arm's total) and `revenue_sq` (the sum over
recipients of each one's revenue squared, which Welch's test on revenue per recipient needs; a blank cell
means not measured). Any other column, a duplicate variant, a count that is not a whole number, more
conversions than exposures, a revenue_sq no set of amounts could give, or fewer than two rows is a
ClarionError naming FILE:LINE and the column - never a traceback.

`--mde` turns the question around: how many recipients per arm (two-sided alpha, 80% power; the formula is
in power.py) would detect an absolute lift of that size from the baseline's observed rate. It takes
the alpha as given: with several variants, Holm's adjustment asks for a little more than this.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from clarion.analysis.report.formats import pct
from clarion.analysis.stats import Analysis, Arm, analyse, sample_size
from clarion.base.errors import ClarionError

REQUIRED = ("variant", "exposures", "conversions")
OPTIONAL = ("revenue", "revenue_sq")
HEADER = ",".join(REQUIRED)
_COUNT = re.compile(r"[0-9]+")


def read_counts(path: Path) -> list[Arm]:
    """The arms of a counts file, the baseline first; every mistake is a ClarionError at FILE:LINE."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ClarionError(f"{path}: cannot read ({exc.strerror}); give a CSV file of counts") from None
    arms: list[Arm] = []
    with handle:
        reader = csv.DictReader(handle, strict=True)
        lines = reader.reader  # its line_num counts the line being parsed, even when parsing it fails
        try:
            header = _check_header(path, reader.fieldnames)
            seen: set[str] = set()
            for row in reader:
                arms.append(_arm(path, lines.line_num, header, row, seen))
        except csv.Error as exc:
            raise ClarionError(f"{path}:{lines.line_num}: not valid CSV ({exc}); save it as CSV") from None
        except UnicodeDecodeError:
            raise ClarionError(
                f"{path}: not a UTF-8 text file; export the counts as CSV (UTF-8) with the header {HEADER}"
            ) from None
    if len(arms) < 2:
        found = f"only {arms[0].name!r}" if arms else "no data rows"
        raise ClarionError(
            f"{path}:{lines.line_num}: {found}; give the baseline's row, then at least one variant's row"
        )
    return arms


def _check_header(path: Path, fieldnames: Sequence[str] | None) -> list[str]:
    header = [h.strip() for h in fieldnames or []]
    if not header:
        raise ClarionError(f"{path}:1: the file is empty; start it with the header {HEADER}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        hint = "; is it comma-separated?" if len(header) == 1 and len(header[0]) > len("variant") else ""
        raise ClarionError(
            f"{path}:1: missing column(s) {', '.join(missing)}; the header needs {HEADER}{hint}"
        )
    unknown = [
        repr(c) if c else "an unnamed column (a trailing comma?)"
        for c in header
        if c not in REQUIRED + OPTIONAL
    ]
    if unknown:
        raise ClarionError(
            f"{path}:1: unknown column(s) {', '.join(unknown)}; remove them (allowed: "
            f"{', '.join(REQUIRED + OPTIONAL)})"
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ClarionError(f"{path}:1: column(s) {', '.join(twice)} appear twice; keep one of each")
    if "revenue_sq" in header and "revenue" not in header:
        raise ClarionError(f"{path}:1: revenue_sq needs a revenue column (each arm's total revenue) too")
    return header


def _arm(path: Path, line: int, header: list[str], row: dict[str | None, Any], seen: set[str]) -> Arm:
    where = f"{path}:{line}"
    if None in row:  # csv.DictReader files the fields beyond the header under None
        raise ClarionError(
            f"{where}: {len(header) + len(row[None])} fields, but the header has {len(header)}; "
            "remove the extra fields (a comma inside a name needs quotes)"
        )
    values = {k.strip(): v.strip() for k, v in row.items() if k is not None and v is not None}
    short = [c for c in header if c not in values]
    if short:
        raise ClarionError(
            f"{where}: {short[0]}: missing; the row has fewer fields than the header ({HEADER}...)"
        )
    name = values["variant"]
    if not name:
        raise ClarionError(f"{where}: variant: empty; name each row's variant")
    if name in seen:
        raise ClarionError(f"{where}: variant: {name!r} appears twice; give one row per variant")
    seen.add(name)
    counts: dict[str, int] = {}
    for column in REQUIRED[1:]:
        raw = values[column]
        if not _COUNT.fullmatch(raw):
            raise ClarionError(
                f"{where}: {column}: {raw!r} is not a whole number of 0 or more; write digits, e.g. 1200"
            )
        counts[column] = int(raw)
    exposures, conversions = counts["exposures"], counts["conversions"]
    if conversions > exposures:
        raise ClarionError(
            f"{where}: conversions: {conversions:,} is more than exposures ({exposures:,}); "
            "check the columns (conversions are counted among the exposed recipients)"
        )
    revenue = _amount(where, "revenue", values.get("revenue", ""))
    revenue_sq = _amount(where, "revenue_sq", values.get("revenue_sq", ""))
    _check_revenue(where, exposures, revenue, revenue_sq)
    return Arm(name, exposures, conversions, revenue=revenue, revenue_sq=revenue_sq)


def _amount(where: str, column: str, raw: str) -> float | None:
    """An optional amount: blank means not measured for this arm."""
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ClarionError(
            f"{where}: {column}: {raw!r} is not a number; write it like 1234.50, or leave it blank"
        )
    return value


def _check_revenue(where: str, exposures: int, revenue: float | None, revenue_sq: float | None) -> None:
    if exposures == 0 and revenue:
        raise ClarionError(f"{where}: revenue: {revenue:g} from 0 exposures; check the row")
    if revenue_sq is None:
        return
    if revenue is None:
        raise ClarionError(f"{where}: revenue: blank, but revenue_sq is given; give both or neither")
    # Cauchy-Schwarz: the sum of the squares of n amounts is at least (their sum)^2 / n.
    least = revenue * revenue / exposures if exposures else 0.0
    if revenue_sq < least * (1 - 1e-9) or revenue_sq < 0:
        raise ClarionError(
            f"{where}: revenue_sq: {revenue_sq:g} cannot come from {exposures:,} recipients whose revenue "
            f"totals {revenue:g} (it is at least {least:g}); give the sum over recipients of each one's "
            "revenue squared"
        )


POWER = 0.8


def mde_sizes(arms: list[Arm], mde: float, alpha: float) -> dict[str, Any]:
    """Recipients per arm to detect an absolute lift of `mde` from the baseline's observed rate."""
    base = arms[0].rate
    if base is None:
        raise ClarionError(f"--mde: the baseline {arms[0].name!r} has no exposures, so no rate to start from")
    if not 0 < mde < 1:
        raise ClarionError(
            f"--mde {mde}: give the absolute lift to detect as a fraction, e.g. 0.01 for one percentage point"
        )
    if base + mde > 1:
        raise ClarionError(
            f"--mde {mde}: the baseline's rate {base:.2%} plus {mde:.2%} is above 100%; give a smaller lift"
        )
    per_arm = sample_size(base, base + mde, alpha=alpha, power=POWER)
    return {
        "baseline_rate": base,
        "mde_abs": mde,
        "mde_rel": mde / base if base else None,
        "alpha": alpha,
        "power": POWER,
        "per_arm": per_arm,
        "total": per_arm * len(arms) if per_arm is not None else None,
    }


def _input_row(arm: Arm) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": arm.name, "exposures": arm.exposures, "conversions": arm.successes}
    if arm.revenue is not None:
        row["revenue"] = arm.revenue
    if arm.revenue_sq is not None:
        row["revenue_sq"] = arm.revenue_sq
    return row


def compare_command(path: Path, *, as_json: bool, mde: float | None, alpha: float, console: Console) -> None:
    """Read the counts, analyse them against the first row, print a table and the verdict (or JSON)."""
    arms = read_counts(path)
    analysis = analyse(arms, alpha=alpha)
    sizes = mde_sizes(arms, mde, alpha) if mde is not None else None
    if as_json:
        data = {"input": [_input_row(a) for a in arms], "analysis": analysis.to_dict(), "mde": sizes}
        sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
        return
    console.print(_table(path, analysis, with_revenue=any(a.revenue is not None for a in arms)))
    console.print(Text("→ " + analysis.verdict.text))
    if sizes is not None:
        console.print(_mde_table(sizes))


def _table(path: Path, analysis: Analysis, *, with_revenue: bool) -> Table:
    columns = ["variant", "exposures", "conversions", "rate", "lift, pts", "rel. lift", "p (Holm)", "P(best)"]
    columns += ["revenue per\nrecipient (p)"] if with_revenue else []
    comparisons = {c.name: c for c in analysis.comparisons}
    rows = []
    for arm in analysis.arms:
        c = comparisons.get(arm.name)
        cells = [
            arm.name,
            f"{arm.exposures:,}",
            f"{arm.successes:,}",
            f"{pct(arm.rate, 2)} ({_interval(arm.rate_low, arm.rate_high)})",
            _lift(c.lift_abs, c.lift_abs_low, c.lift_abs_high, 2) if c else "baseline",
            _lift(c.lift_rel, c.lift_rel_low, c.lift_rel_high, 0, "%") if c else "",
            f"{_p(c.p_value)} ({_p(c.p_adjusted)})" if c else "",
            pct(arm.prob_best, 0),
        ]
        if with_revenue:
            per = arm.revenue_per_recipient
            cells.append(("–" if per is None else f"{per:,.2f}") + (f" ({_p(c.revenue_p)})" if c else ""))
        rows.append(cells)
    table = Table(title=Text(f"{path.name}: conversions against {analysis.baseline}, with 95% intervals"))
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"{low * 100:.1f}–{high * 100:.1f}"


def _lift(value: float | None, low: float | None, high: float | None, digits: int, unit: str = "") -> str:
    """`+1.20 [+0.35, +2.05]`; `–` where the lift is undefined (e.g. a baseline rate of 0)."""
    if value is None:
        return "–"
    text = f"{value * 100:+.{digits}f}{unit}"
    if low is None or high is None:
        return text
    return f"{text} [{low * 100:+.{digits}f}, {high * 100:+.{digits}f}]"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 0.0001 else f"{value:.2g}"


def _mde_table(sizes: dict[str, Any]) -> Table:
    table = Table(title=Text(f"to detect a lift of {sizes['mde_abs'] * 100:.2f} pts from the baseline"))
    for name in ("baseline rate", "lift (abs)", "lift (rel)", "alpha", "power", "per arm", "in all"):
        table.add_column(name, justify="right")
    rel = sizes["mde_rel"]
    table.add_row(
        pct(sizes["baseline_rate"], 2),
        f"+{sizes['mde_abs'] * 100:.2f} pts",
        "–" if rel is None else f"+{rel * 100:.1f}%",
        f"{sizes['alpha']:g}",
        f"{sizes['power']:.0%}",
        f"{sizes['per_arm']:,} recipients",
        f"{sizes['total']:,}",
    )
    return table
