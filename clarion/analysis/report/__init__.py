"""A run's report: per channel x variant comparison with verdicts, as terminal tables, JSON, CSV or HTML."""

from clarion.analysis.report.build import build_report
from clarion.analysis.report.formats import terminal, to_csv
from clarion.analysis.report.html import FILTERS, page_context, render_html, report_templates

__all__ = ["FILTERS", "build_report", "page_context", "render_html", "report_templates", "terminal", "to_csv"]
