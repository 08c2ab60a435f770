"""A run's report: per channel x variant comparison with verdicts, as terminal tables, JSON, CSV or HTML."""

from clarion.analysis.report.build import build_report
from clarion.analysis.report.formats import terminal, to_csv
from clarion.analysis.report.html import render_html

__all__ = ["build_report", "render_html", "terminal", "to_csv"]
