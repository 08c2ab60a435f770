"""The report as one self-contained HTML page: tables, verdicts and inline SVG charts, no scripts, no CDN.

A marketer forwards it as an attachment; it must open anywhere, offline, and show the same numbers as the
terminal. Charts are drawn here as SVG (rates with their 95% intervals per channel x variant, cumulative
clicks and conversions, social metrics); the page is rendered by Jinja with autoescaping on, so nothing in a
campaign's names can inject markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from clarion.analysis.report.formats import FlatRow, flat_rows, interval, pct, points
from clarion.analysis.report.model import Report, Timeline

TEMPLATE = Path(__file__).with_name("report.html.j2")
BAR_HEIGHT, LABEL_WIDTH, PLOT_WIDTH = 22, 170, 520


def render_html(report: Report) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    return env.get_template(TEMPLATE.name).render(**page_context(report))


def report_templates() -> jinja2.BaseLoader:
    """Where the report's templates are (`report_body.html.j2` is its content, for other pages to include)."""
    return jinja2.FileSystemLoader(TEMPLATE.parent)


def page_context(report: Report) -> dict[str, Any]:
    """What the report's templates show: the report, its rows flat, the charts' geometry (the console
    renders the same with its own page around it)."""
    rows = flat_rows(report)
    metric = report.metric
    return {
        "report": report,
        "rows": rows,
        "metric_name": "conversion rate" if metric == "conversion_rate" else "click rate",
        "rate_chart": _rate_chart(rows, metric),
        "timeline_chart": _timeline_chart(report.timeline),
        "social": [
            (channel.channel, row.variant, row.social or {})
            for channel in report.channels
            if channel.kind == "social"
            for row in channel.rows
        ],
    }


def _n(value: Any) -> str:
    return "–" if value is None else f"{value:,}"


FILTERS = {"pct": pct, "interval": interval, "points": points, "n": _n}


def _rate_chart(rows: list[FlatRow], metric: str) -> dict[str, Any]:
    """One line per channel x variant: the rate as a dot, its 95% interval as a bar."""

    def rates(row: FlatRow) -> tuple[float | None, float | None, float | None]:
        if metric == "conversion_rate":
            return row.conversion_rate, row.conversion_rate_low, row.conversion_rate_high
        return row.click_rate, row.click_rate_low, row.click_rate_high

    items = [
        (row, rate, low or rate, high or rate)
        for row in rows
        for rate, low, high in [rates(row)]
        if rate is not None
    ]
    top = max([high for _, _, _, high in items if high is not None] + [1e-9])
    scale = PLOT_WIDTH / top
    lines = []
    for i, (row, rate, low, high) in enumerate(items):
        assert rate is not None and low is not None and high is not None
        y = 10 + i * BAR_HEIGHT
        lines.append(
            {
                "label": f"{row.channel} · {row.variant}",
                "y": y,
                "x_low": LABEL_WIDTH + low * scale,
                "x_high": LABEL_WIDTH + high * scale,
                "x_rate": LABEL_WIDTH + rate * scale,
                "text": f"{pct(rate, 2)} ({interval(low, high)})",
            }
        )
    return {
        "lines": lines,
        "height": 20 + len(lines) * BAR_HEIGHT,
        "width": LABEL_WIDTH + PLOT_WIDTH + 150,
        "axis_x": LABEL_WIDTH,
        "max_label": pct(top, 1),
        "max_x": LABEL_WIDTH + PLOT_WIDTH,
    }


def _timeline_chart(timeline: Timeline) -> dict[str, Any]:
    points_ = timeline.points
    width, height = 640, 200
    if not points_:
        return {"clicks": "", "conversions": "", "width": width, "height": height, "empty": True}
    last = points_[-1]
    x_max = max(last.seconds, 1)
    y_max = max(last.clicks, last.conversions, 1)

    def path(name: str) -> str:
        coords = [
            (40 + p.seconds / x_max * (width - 60), height - 25 - getattr(p, name) / y_max * (height - 45))
            for p in points_
        ]
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in [(40, height - 25), *coords])

    return {
        "clicks": path("clicks"),
        "conversions": path("conversions"),
        "width": width,
        "height": height,
        "empty": False,
        "y_max": y_max,
        "x_max": round(x_max),
        "total_clicks": last.clicks,
        "total_conversions": last.conversions,
    }
