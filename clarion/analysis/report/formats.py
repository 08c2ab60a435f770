"""The report as a terminal table, as CSV (safe to open in a spreadsheet) and as flat rows for both."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from clarion.analysis.report.model import Report
from clarion.analysis.stats import Analysis, ArmStats

CSV_COLUMNS = (
    "channel",
    "variant",
    "exposure_basis",
    "exposures",
    "sent",
    "delivered",
    "clicks",
    "click_rate",
    "click_rate_low",
    "click_rate_high",
    "conversions",
    "conversion_rate",
    "conversion_rate_low",
    "conversion_rate_high",
    "revenue",
    "revenue_per_recipient",
    "lift_abs",
    "lift_abs_low",
    "lift_abs_high",
    "p_value",
    "p_adjusted",
    "prob_best",
    "verdict",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FlatRow:
    """One channel x variant with its primary metric's comparison against the channel's baseline: a row of
    the CSV, the terminal table, the HTML table and the Prefect artifact."""

    channel: str
    variant: str
    exposure_basis: str
    exposures: int | None
    sent: int
    delivered: int
    clicks: int
    click_rate: float | None
    click_rate_low: float | None
    click_rate_high: float | None
    conversions: int
    conversion_rate: float | None
    conversion_rate_low: float | None
    conversion_rate_high: float | None
    revenue: float
    revenue_per_recipient: float | None
    lift_abs: float | None
    lift_abs_low: float | None
    lift_abs_high: float | None
    p_value: float | None
    p_adjusted: float | None
    prob_best: float | None
    verdict: str


def flat_rows(report: Report) -> list[FlatRow]:
    """One row per channel x variant, with the primary metric's comparison against the channel's baseline."""
    out = []
    for channel in report.channels:
        clicks = _arms(channel.clicks)
        conversions = _arms(channel.conversions)
        primary = channel.primary
        comparisons = {c.name: c for c in primary.comparisons} if primary else {}
        best = _arms(primary)
        for row in channel.rows:
            v = row.variant
            click, conv, comp = clicks.get(v), conversions.get(v), comparisons.get(v)
            out.append(
                FlatRow(
                    channel=channel.channel,
                    variant=v,
                    exposure_basis=channel.exposure_basis,
                    exposures=row.exposures,
                    sent=row.sent,
                    delivered=row.delivered,
                    clicks=row.clicks,
                    click_rate=click.rate if click else None,
                    click_rate_low=click.rate_low if click else None,
                    click_rate_high=click.rate_high if click else None,
                    conversions=row.conversions,
                    conversion_rate=conv.rate if conv else None,
                    conversion_rate_low=conv.rate_low if conv else None,
                    conversion_rate_high=conv.rate_high if conv else None,
                    revenue=row.revenue,
                    revenue_per_recipient=conv.revenue_per_recipient if conv else None,
                    lift_abs=_finite(comp.lift_abs) if comp else None,
                    lift_abs_low=_finite(comp.lift_abs_low) if comp else None,
                    lift_abs_high=_finite(comp.lift_abs_high) if comp else None,
                    p_value=_finite(comp.p_value) if comp else None,
                    p_adjusted=_finite(comp.p_adjusted) if comp else None,
                    prob_best=best[v].prob_best if v in best else None,
                    verdict=channel.verdict.text,
                )
            )
    return out


def _arms(analysis: Analysis | None) -> dict[str, ArmStats]:
    return {arm.name: arm for arm in analysis.arms} if analysis else {}


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula is quoted (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in flat_rows(report):
        values = asdict(row)
        writer.writerow({k: safe_cell(values[k]) for k in CSV_COLUMNS})
    return buffer.getvalue()


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def interval(low: float | None, high: float | None, digits: int = 1) -> str:
    return "" if low is None or high is None else f"{low * 100:.{digits}f}–{high * 100:.{digits}f}%"


def points(low: float | None, high: float | None) -> str:
    """A lift's interval in percentage points (two decimals: lifts of conversion rates are small)."""
    if low is None or high is None:
        return ""
    return f"{low * 100:+.2f} to {high * 100:+.2f} pts"


#: A post's public metrics as every provider reports them (channels map their own names onto these).
ENGAGEMENT = (
    ("impression_count", "impressions"),
    ("like_count", "likes"),
    ("retweet_count", "reposts"),
    ("reply_count", "replies"),
    ("quote_count", "quotes"),
    ("bookmark_count", "bookmarks"),
)


def _engagement(rows: Any) -> str:
    """`variant: 85 likes, 15 reposts, ...` for each post whose metrics were collected."""
    found = []
    for row in rows:
        if row.social:
            counts = ", ".join(
                f"{row.social[key]:,} {label}" for key, label in ENGAGEMENT if key in row.social
            )
            found.append(f"{row.variant}: {counts}")
    return "; ".join(found)


def terminal(report: Report) -> Group:
    """Rich renderables: a table per channel and its verdict, then the overall comparison with the holdout."""
    parts: list[Any] = []
    run = report.run
    metric = "conversion rate" if report.metric == "conversion_rate" else "click rate"
    parts.append(Text(f"Run {run.id} ({run.campaign}, {run.status}): verdicts on {metric}", style="bold"))
    rows = flat_rows(report)
    for channel in report.channels:
        table = Table(title=f"{channel.channel} ({channel.kind}; exposures = {channel.exposure_basis})")
        for name in (
            "variant",
            "exposures",
            "clicks",
            "CTR (95% CI)",
            "conv.",
            "conv. rate (95% CI)",
            "revenue/recip.",
            "lift vs baseline",
            "p (Holm)",
            "P(best)",
        ):
            table.add_column(name, justify="left" if name == "variant" else "right")
        for row in (r for r in rows if r.channel == channel.channel):
            table.add_row(
                Text(row.variant),
                _n(row.exposures),
                _n(row.clicks),
                f"{pct(row.click_rate)} ({interval(row.click_rate_low, row.click_rate_high)})",
                _n(row.conversions),
                _rate_with_interval(row.conversion_rate, row.conversion_rate_low, row.conversion_rate_high),
                "–" if row.revenue_per_recipient is None else f"{row.revenue_per_recipient:.2f}",
                points(row.lift_abs_low, row.lift_abs_high) or "baseline",
                "" if row.p_adjusted is None else f"{row.p_adjusted:.3g}",
                pct(row.prob_best, 0),
            )
        parts.append(table)
        parts.append(Text("→ " + channel.verdict.text, style="bold green" if channel.verdict.winner else ""))
        if engagement := _engagement(channel.rows):
            parts.append(Text(f"  engagement: {engagement}"))
    overall = report.overall.analysis
    if overall:
        table = Table(title=f"All channels, per arm (baseline: {report.overall.baseline})")
        for name in ("arm", "contacts", "converted", "rate (95% CI)", "revenue/contact", "lift", "p (Holm)"):
            table.add_column(name, justify="left" if name == "arm" else "right")
        comparisons = {c.name: c for c in overall.comparisons}
        for arm in overall.arms:
            comp = comparisons.get(arm.name)
            table.add_row(
                Text(arm.name),
                _n(arm.exposures),
                _n(arm.successes),
                f"{pct(arm.rate, 2)} ({interval(arm.rate_low, arm.rate_high, 2)})",
                "–" if arm.revenue_per_recipient is None else f"{arm.revenue_per_recipient:.2f}",
                (points(comp.lift_abs_low, comp.lift_abs_high) if comp else "") or "baseline",
                "" if comp is None or comp.p_adjusted is None else f"{comp.p_adjusted:.3g}",
            )
        parts.append(table)
        parts.append(Text("→ " + overall.verdict.text))
        if overall.srm and overall.srm.flagged:
            parts.append(
                Text(
                    f"Sample-ratio mismatch (p = {overall.srm.p_value:.2g}): no verdict can be trusted.",
                    style="bold red",
                )
            )
    return Group(*parts)


def _rate_with_interval(rate: float | None, low: float | None, high: float | None) -> str:
    if rate is None:
        return "–"
    return f"{pct(rate, 2)} ({interval(low, high, 2)})"


def _n(value: Any) -> str:
    return "–" if value is None else f"{value:,}"
