"""The report as a terminal table, as CSV (safe to open in a spreadsheet) and as flat rows for both."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

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


def flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per channel x variant, with the primary metric's comparison against the channel's baseline."""
    out = []
    for channel in report["channels"]:
        clicks = _by_name(channel.get("clicks"))
        conversions = _by_name(channel.get("conversions"))
        primary = channel.get("conversions") or channel.get("clicks") or {}
        comparisons = {c["name"]: c for c in primary.get("comparisons", [])}
        for row in channel["rows"]:
            v = row["variant"]
            click, conv, comp = clicks.get(v, {}), conversions.get(v, {}), comparisons.get(v, {})
            out.append(
                {
                    "channel": channel["channel"],
                    "variant": v,
                    "exposure_basis": channel["exposure_basis"],
                    "exposures": row["exposures"],
                    "sent": row["sent"],
                    "delivered": row["delivered"],
                    "clicks": row["clicks"],
                    "click_rate": click.get("rate"),
                    "click_rate_low": click.get("rate_low"),
                    "click_rate_high": click.get("rate_high"),
                    "conversions": row["conversions"],
                    "conversion_rate": conv.get("rate"),
                    "conversion_rate_low": conv.get("rate_low"),
                    "conversion_rate_high": conv.get("rate_high"),
                    "revenue": row["revenue"],
                    "revenue_per_recipient": conv.get("revenue_per_recipient"),
                    "lift_abs": comp.get("lift_abs"),
                    "lift_abs_low": comp.get("lift_abs_low"),
                    "lift_abs_high": comp.get("lift_abs_high"),
                    "p_value": comp.get("p_value"),
                    "p_adjusted": comp.get("p_adjusted"),
                    "prob_best": _by_name(primary).get(v, {}).get("prob_best"),
                    "verdict": channel["verdict"]["text"],
                }
            )
    return out


def _by_name(analysis: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {arm["name"]: arm for arm in (analysis or {}).get("arms", [])}


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula is quoted (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def to_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in flat_rows(report):
        writer.writerow({k: safe_cell(row[k]) for k in CSV_COLUMNS})
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


def terminal(report: dict[str, Any]) -> Group:
    """Rich renderables: a table per channel and its verdict, then the overall comparison with the holdout."""
    parts: list[Any] = []
    run = report["run"]
    metric = "conversion rate" if report["metric"] == "conversion_rate" else "click rate"
    parts.append(
        Text(f"Run {run['id']} ({run['campaign']}, {run['status']}): verdicts on {metric}", style="bold")
    )
    rows = flat_rows(report)
    for channel in report["channels"]:
        table = Table(
            title=f"{channel['channel']} ({channel['kind']}; exposures = {channel['exposure_basis']})"
        )
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
        for row in (r for r in rows if r["channel"] == channel["channel"]):
            table.add_row(
                Text(row["variant"]),
                _n(row["exposures"]),
                _n(row["clicks"]),
                f"{pct(row['click_rate'])} ({interval(row['click_rate_low'], row['click_rate_high'])})",
                _n(row["conversions"]),
                _rate_with_interval(row, "conversion_rate"),
                "–" if row["revenue_per_recipient"] is None else f"{row['revenue_per_recipient']:.2f}",
                points(row["lift_abs_low"], row["lift_abs_high"]) or "baseline",
                "" if row["p_adjusted"] is None else f"{row['p_adjusted']:.3g}",
                pct(row["prob_best"], 0),
            )
        parts.append(table)
        parts.append(
            Text(
                "→ " + channel["verdict"]["text"], style="bold green" if channel["verdict"]["winner"] else ""
            )
        )
    overall = report["overall"].get("analysis")
    if overall:
        table = Table(title=f"All channels, per arm (baseline: {report['overall']['baseline']})")
        for name in ("arm", "contacts", "converted", "rate (95% CI)", "revenue/contact", "lift", "p (Holm)"):
            table.add_column(name, justify="left" if name == "arm" else "right")
        comparisons = {c["name"]: c for c in overall.get("comparisons", [])}
        for arm in overall["arms"]:
            comp = comparisons.get(arm["name"], {})
            table.add_row(
                Text(arm["name"]),
                _n(arm["exposures"]),
                _n(arm["successes"]),
                f"{pct(arm['rate'], 2)} ({interval(arm['rate_low'], arm['rate_high'], 2)})",
                "–" if arm.get("revenue_per_recipient") is None else f"{arm['revenue_per_recipient']:.2f}",
                points(comp.get("lift_abs_low"), comp.get("lift_abs_high")) or "baseline",
                "" if comp.get("p_adjusted") is None else f"{comp['p_adjusted']:.3g}",
            )
        parts.append(table)
        parts.append(Text("→ " + overall["verdict"]["text"]))
        srm = overall.get("srm")
        if srm and srm.get("flagged"):
            parts.append(
                Text(
                    f"Sample-ratio mismatch (p = {srm['p_value']:.2g}): no verdict can be trusted.",
                    style="bold red",
                )
            )
    return Group(*parts)


def _rate_with_interval(row: dict[str, Any], key: str) -> str:
    if row[key] is None:
        return "–"
    return f"{pct(row[key], 2)} ({interval(row[f'{key}_low'], row[f'{key}_high'], 2)})"


def _n(value: Any) -> str:
    return "–" if value is None else f"{value:,}"
